//! The retry policy and the one pure function that applies it.
//!
//! Every request the client sends (API calls, token minting, presigned uploads) goes through
//! [`decide`]: after each failed attempt the client classifies what happened into an
//! [`Outcome`] and asks `decide` whether to try again and after how long.
//!
//! The table (`attempt` counts the attempts already made, starting at 1):
//!
//! | outcome | decision |
//! |---|---|
//! | 408, 429 (not quota), 500, 502, 503, 504 and any other 5xx except 501 / 505 | retry while `attempt < max_attempts` |
//! | timeout, connect error, dropped connection | retry while `attempt < max_attempts` |
//! | quota / minute allocation exhausted (see [`is_quota_exhausted`]) | give up (never retried) |
//! | any other status (other 4xx, 501, 505, 1xx-3xx) | give up (final) |
//! | other transport errors (bad URL, builder errors) | give up |
//!
//! The delay is `Retry-After` when the server sent one (seconds or an HTTP date), exactly,
//! unless it exceeds [`RetryPolicy::max_retry_after`] (then the client gives up rather than
//! sleep that long). Otherwise it is capped exponential backoff with "equal jitter":
//! `d = min(max_delay, base_delay * 2^(attempt-1))`, waited `d/2 + u * d/2` with
//! `u ∈ [0, 1)` derived from [`RetryPolicy::jitter_seed`] and `attempt`. The client draws a
//! fresh random seed per logical request, so `decide` stays a pure function of its inputs while
//! concurrent clients do not retry in lockstep.

use std::time::{Duration, SystemTime};

/// How many times, and how patiently, a request is retried.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Total attempts per request, the first one included. Default 5. 1 disables retries.
    pub max_attempts: u32,
    /// The first backoff step. Default 500 ms.
    pub base_delay: Duration,
    /// The cap on one backoff step. Default 30 s.
    pub max_delay: Duration,
    /// The longest `Retry-After` the client is willing to honour; a longer one ends the retries.
    /// Default 120 s.
    pub max_retry_after: Duration,
    /// Seeds the jitter. The client replaces it with a random value for every request; set it in
    /// tests to make `decide` reproducible. Default 0.
    pub jitter_seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            jitter_seed: 0,
        }
    }
}

impl RetryPolicy {
    /// A policy with `max_attempts` attempts and the given backoff bounds, other fields default.
    pub fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        RetryPolicy {
            max_attempts,
            base_delay,
            max_delay,
            ..RetryPolicy::default()
        }
    }

    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }
}

/// What one failed attempt came to, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The server answered with this status.
    Status {
        /// HTTP status code.
        status: u16,
        /// The parsed `Retry-After` header, if any.
        retry_after: Option<Duration>,
        /// True when the answer says the quota or minute allocation is used up.
        quota_exhausted: bool,
    },
    /// The request or the response timed out.
    Timeout,
    /// The connection could not be established.
    Connect,
    /// The connection dropped mid-request or mid-response.
    Dropped,
    /// Any other failure (bad URL, a body that could not be built): never retried.
    Other,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this delay.
    Retry(Duration),
    /// Stop and report the last outcome.
    GiveUp,
}

/// Decides whether to retry after `attempt` attempts (1 = the first one failed) ended in
/// `outcome`, under `policy`. Pure: same inputs, same answer. See the module docs for the table.
pub fn decide(attempt: u32, outcome: &Outcome, policy: &RetryPolicy) -> Decision {
    let retryable = match outcome {
        Outcome::Status {
            status,
            quota_exhausted,
            ..
        } => !quota_exhausted && is_retryable_status(*status),
        Outcome::Timeout | Outcome::Connect | Outcome::Dropped => true,
        Outcome::Other => false,
    };
    if !retryable || attempt >= policy.max_attempts {
        return Decision::GiveUp;
    }
    if let Outcome::Status {
        retry_after: Some(after),
        ..
    } = outcome
    {
        return if *after > policy.max_retry_after {
            Decision::GiveUp
        } else {
            Decision::Retry(*after)
        };
    }
    let exp = attempt.saturating_sub(1).min(30);
    let step = policy
        .base_delay
        .checked_mul(1u32 << exp)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay);
    let u = unit_interval(policy.jitter_seed, attempt);
    let half = step / 2;
    Decision::Retry(half + half.mul_f64(u))
}

/// True for statuses that may succeed when sent again: 408, 429 and 5xx except 501 and 505.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || ((500..600).contains(&status) && !matches!(status, 501 | 505))
}

/// Detects an exhausted quota or minute allocation (the vendor documents neither status nor
/// body). Rule: a 402 always; a 400, 403 or 429 whose body mentions `quota`,
/// `minute_allocation` / `minute allocation`, `allocation exceeded` / `allocation exhausted` or
/// `out of minutes` (case-insensitive). Anything else is not a quota error.
pub fn is_quota_exhausted(status: u16, body: &str) -> bool {
    if status == 402 {
        return true;
    }
    if !matches!(status, 400 | 403 | 429) {
        return false;
    }
    let b = body.to_ascii_lowercase();
    [
        "quota",
        "minute_allocation",
        "minute allocation",
        "minuteallocation",
        "allocation exceeded",
        "allocation exhausted",
        "out of minutes",
    ]
    .iter()
    .any(|needle| b.contains(needle))
}

/// Parses a `Retry-After` value: delta-seconds, or an HTTP date (taken relative to `now`; a date
/// in the past means zero). Unparsable values give `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && (0.0..1e9).contains(&secs) {
            return Some(Duration::from_secs_f64(secs));
        }
        return None;
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A deterministic value in [0, 1) from a seed and the attempt number (splitmix64).
fn unit_interval(seed: u64, attempt: u32) -> f64 {
    let mut z = seed ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> Outcome {
        Outcome::Status {
            status: s,
            retry_after: None,
            quota_exhausted: false,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(60),
            jitter_seed: 42,
        }
    }

    #[test]
    fn every_status_code_is_classified() {
        let p = policy();
        for s in 100u16..600 {
            let d = decide(1, &status(s), &p);
            let expect_retry = s == 408 || s == 429 || (s >= 500 && s != 501 && s != 505);
            assert_eq!(
                matches!(d, Decision::Retry(_)),
                expect_retry,
                "status {s} gave {d:?}"
            );
        }
    }

    #[test]
    fn transport_outcomes_retry_and_other_does_not() {
        let p = policy();
        for o in [Outcome::Timeout, Outcome::Connect, Outcome::Dropped] {
            assert!(matches!(decide(1, &o, &p), Decision::Retry(_)), "{o:?}");
            assert!(matches!(decide(3, &o, &p), Decision::Retry(_)), "{o:?}");
            assert_eq!(decide(4, &o, &p), Decision::GiveUp, "{o:?}");
        }
        assert_eq!(decide(1, &Outcome::Other, &p), Decision::GiveUp);
    }

    #[test]
    fn attempts_are_bounded() {
        let p = policy();
        for o in [status(429), status(500), status(503), Outcome::Timeout] {
            for attempt in 1..10 {
                let d = decide(attempt, &o, &p);
                assert_eq!(
                    attempt < 4,
                    matches!(d, Decision::Retry(_)),
                    "{o:?} #{attempt}"
                );
            }
        }
        let once = RetryPolicy::none();
        assert_eq!(decide(1, &status(503), &once), Decision::GiveUp);
    }

    #[test]
    fn quota_is_never_retried_even_as_429() {
        let p = policy();
        for s in [400, 402, 403, 429] {
            let o = Outcome::Status {
                status: s,
                retry_after: Some(Duration::from_secs(1)),
                quota_exhausted: true,
            };
            assert_eq!(decide(1, &o, &p), Decision::GiveUp, "{s}");
        }
    }

    #[test]
    fn retry_after_comes_first_and_is_bounded() {
        let p = policy();
        let o = |secs| Outcome::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
            quota_exhausted: false,
        };
        // Larger than max_delay: still honoured exactly.
        assert_eq!(
            decide(1, &o(7), &p),
            Decision::Retry(Duration::from_secs(7))
        );
        assert_eq!(decide(1, &o(0), &p), Decision::Retry(Duration::ZERO));
        assert_eq!(decide(1, &o(61), &p), Decision::GiveUp);
        // Still bounded in count.
        assert_eq!(decide(4, &o(1), &p), Decision::GiveUp);
        // On a 503 too.
        let o503 = Outcome::Status {
            status: 503,
            retry_after: Some(Duration::from_secs(2)),
            quota_exhausted: false,
        };
        assert_eq!(
            decide(2, &o503, &p),
            Decision::Retry(Duration::from_secs(2))
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_bounds() {
        let mut p = policy();
        p.max_attempts = 20;
        for seed in 0..200u64 {
            p.jitter_seed = seed;
            for attempt in 1..15u32 {
                let Decision::Retry(d) = decide(attempt, &Outcome::Timeout, &p) else {
                    panic!("no retry at {attempt}");
                };
                let step = (100u64 << (attempt - 1).min(20)).min(1000);
                let (lo, hi) = (step / 2, step);
                let ms = d.as_secs_f64() * 1000.0;
                assert!(
                    ms >= lo as f64 - 1e-6 && ms < hi as f64 + 1e-6,
                    "attempt {attempt} seed {seed}: {ms} not in [{lo}, {hi})"
                );
            }
        }
        // Jitter really varies with the seed.
        let ds: std::collections::BTreeSet<_> = (0..50u64)
            .map(|seed| {
                p.jitter_seed = seed;
                decide(3, &Outcome::Dropped, &p)
            })
            .map(|d| format!("{d:?}"))
            .collect();
        assert!(ds.len() > 10, "{ds:?}");
        // And is reproducible.
        p.jitter_seed = 9;
        assert_eq!(
            decide(2, &Outcome::Connect, &p),
            decide(2, &Outcome::Connect, &p)
        );
    }

    #[test]
    fn quota_detection_rule() {
        assert!(is_quota_exhausted(402, ""));
        assert!(is_quota_exhausted(
            403,
            r#"{"error":"minute_allocation exceeded"}"#
        ));
        assert!(is_quota_exhausted(400, "Monthly QUOTA reached"));
        assert!(is_quota_exhausted(
            429,
            "Minute allocation exhausted for org"
        ));
        assert!(!is_quota_exhausted(429, "slow down"));
        assert!(!is_quota_exhausted(403, "forbidden"));
        assert!(!is_quota_exhausted(500, "quota service down"));
        assert!(!is_quota_exhausted(404, "quota"));
    }

    #[test]
    fn retry_after_parsing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        // 2015-10-21 07:28:00 GMT is 1445412480.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-4", now), None);
    }
}
