//! Waiting for an async job.
//!
//! The poller asks `status` after [`PollOptions::first_delay`], then at intervals growing by
//! [`PollOptions::growth`] up to [`PollOptions::max_interval`] (about 45 s). When the status
//! says complete it fetches `data`; when it says failed it returns
//! [`ErrorKind::JobFailed`]. Transient errors while polling (network, 5xx after retries) do not
//! end the wait. When the overall deadline passes the poller returns
//! [`ErrorKind::PollDeadline`] with the server's file name: the job itself was not reported as
//! failed, and [`Client::poll`] can be called again later, in this or another process, with
//! just that name.
//!
//! The deadline scales with the audio: [`PollOptions::for_audio`] gives
//! `deadline = 10 min + 2 × audio length` (the service processes faster than real time; twice
//! the length plus a fixed allowance for queueing covers a slow day without waiting forever).

use std::time::Duration;

use tokio::time::Instant;

use super::types::{AsyncResult, JobStatus};
use super::Client;
use crate::error::{Error, ErrorKind, Result};

/// How patiently to wait for an async job. All delays are configurable so tests run fast.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PollOptions {
    /// Wait before the first status request. Default 3 s.
    pub first_delay: Duration,
    /// The longest wait between two status requests. Default 45 s.
    pub max_interval: Duration,
    /// Factor applied to the wait after each status request. Default 1.5.
    pub growth: f64,
    /// The overall client-side deadline. Default 1 h; see [`PollOptions::for_audio`].
    pub deadline: Duration,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            first_delay: Duration::from_secs(3),
            max_interval: Duration::from_secs(45),
            growth: 1.5,
            deadline: Duration::from_secs(3600),
        }
    }
}

impl PollOptions {
    /// Defaults with the deadline `10 min + 2 × audio` for `audio` of the given length.
    pub fn for_audio(audio: Duration) -> Self {
        PollOptions {
            deadline: Self::deadline_for(audio),
            ..PollOptions::default()
        }
    }

    /// The documented deadline formula: `10 min + 2 × audio`.
    pub fn deadline_for(audio: Duration) -> Duration {
        Duration::from_secs(600).saturating_add(audio.saturating_mul(2))
    }

    /// Sets the delays (first, max interval) and the deadline.
    #[must_use]
    pub fn with_delays(
        mut self,
        first: Duration,
        max_interval: Duration,
        deadline: Duration,
    ) -> Self {
        self.first_delay = first;
        self.max_interval = max_interval;
        self.deadline = deadline;
        self
    }

    /// The wait before status request `n` (0-based), before the deadline clamps it.
    pub fn interval(&self, n: u32) -> Duration {
        let g = if self.growth.is_finite() && self.growth >= 1.0 {
            self.growth
        } else {
            1.0
        };
        let secs = self.first_delay.as_secs_f64() * g.powi(n.min(64) as i32);
        Duration::from_secs_f64(secs.min(self.max_interval.as_secs_f64()))
            .max(Duration::ZERO)
            .min(self.max_interval.max(self.first_delay))
    }
}

impl Client {
    /// Waits for the job `file_name` and returns its result. Needs only the server's file name,
    /// so a wait cut short by [`ErrorKind::PollDeadline`] can be resumed anywhere.
    pub async fn poll(&self, file_name: &str, opts: PollOptions) -> Result<AsyncResult> {
        let start = Instant::now();
        let deadline = start + opts.deadline;
        let mut n = 0u32;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(ErrorKind::PollDeadline {
                    file_name: file_name.to_string(),
                    waited_secs: start.elapsed().as_secs(),
                }));
            }
            tokio::time::sleep(opts.interval(n).min(deadline - now)).await;
            n = n.saturating_add(1);
            let status = match self.status(file_name).await {
                Ok(r) => r.status(),
                Err(e) if e.is_transient() => {
                    tracing::debug!(file_name, error = %e, "botlhale: status failed, still polling");
                    continue;
                }
                Err(e) => return Err(e),
            };
            match status {
                JobStatus::Complete => match self.data(file_name).await {
                    Ok(r) => match &r.status {
                        JobStatus::Failed(s) => {
                            return Err(Error::new(ErrorKind::JobFailed {
                                file_name: file_name.to_string(),
                                status: s.clone(),
                            }))
                        }
                        // Not ready after all (the data lags the status): keep waiting.
                        JobStatus::Running => continue,
                        JobStatus::Unknown if r.timestamps.is_empty() => continue,
                        _ => return Ok(r),
                    },
                    Err(e) if e.is_transient() => continue,
                    Err(e) => return Err(e),
                },
                JobStatus::Failed(s) => {
                    return Err(Error::new(ErrorKind::JobFailed {
                        file_name: file_name.to_string(),
                        status: s,
                    }))
                }
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_grow_to_the_cap() {
        let o = PollOptions::default();
        assert_eq!(o.interval(0), Duration::from_secs(3));
        assert_eq!(o.interval(1), Duration::from_secs_f64(4.5));
        assert!(o.interval(3) > o.interval(2));
        assert_eq!(o.interval(10), Duration::from_secs(45));
        assert_eq!(o.interval(1000), Duration::from_secs(45));
        let mut weird = o.clone();
        weird.growth = f64::NAN;
        assert_eq!(weird.interval(5), Duration::from_secs(3));
    }

    #[test]
    fn deadline_scales_with_audio() {
        assert_eq!(
            PollOptions::for_audio(Duration::from_secs(1800)).deadline,
            Duration::from_secs(600 + 3600)
        );
        assert_eq!(
            PollOptions::deadline_for(Duration::ZERO),
            Duration::from_secs(600)
        );
        assert_eq!(
            PollOptions::deadline_for(Duration::from_secs(400 * 60)),
            Duration::from_secs(600 + 48_000)
        );
    }
}
