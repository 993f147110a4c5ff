//! Deterministic fault injection.
//!
//! Whether an attempt is faulted is a pure function of the seed, the attempt's logical
//! request key (see [`super::RequestRecord::attempt_key`]) and how many times that key was
//! seen before: `SHA-256(seed ‖ key ‖ n)` read as a number in `[0, 1)` is compared with the
//! rate, and another part of the hash picks the kind among the enabled ones. So a run is
//! reproducible whatever order concurrent requests arrive in, and a retried request meets a
//! fresh draw. `max_consecutive` caps how many failing faults one key may meet in a row, so
//! that a client with a bounded retry budget always gets through.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// A kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// `429 Too Many Requests` with a `Retry-After` header (seconds).
    TooManyRequests,
    /// `500 Internal Server Error` with a JSON error entity.
    InternalError,
    /// `503 Service Unavailable` with a JSON error entity.
    Unavailable,
    /// The connection is closed without any response bytes.
    DropConnection,
    /// The request is served normally after an extra delay ([`FaultConfig::latency`]).
    Latency,
}

impl FaultKind {
    /// True for the kinds that replace the response (everything but `Latency`).
    pub fn fails(self) -> bool {
        !matches!(self, FaultKind::Latency)
    }
}

/// Fault injection settings; the default injects nothing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Fraction of attempts that meet a fault, 0.0 to 1.0. Default 0.0 (none).
    pub rate: f64,
    /// The kinds to draw from, uniformly. Default: all five kinds.
    pub kinds: Vec<FaultKind>,
    /// The `Retry-After` value (seconds) sent with 429. Default 1.
    pub retry_after_secs: u32,
    /// The delay of a `Latency` fault. Default 200 ms.
    pub latency: Duration,
    /// At most this many failing faults in a row for one logical request; the next attempt
    /// is served. Default `Some(3)`. `None` leaves it to chance.
    pub max_consecutive: Option<u32>,
    /// Path prefixes faults apply to (e.g. `["/asr", "/s3/"]`); `None` (default): every route.
    pub routes: Option<Vec<String>>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            rate: 0.0,
            kinds: vec![
                FaultKind::TooManyRequests,
                FaultKind::InternalError,
                FaultKind::Unavailable,
                FaultKind::DropConnection,
                FaultKind::Latency,
            ],
            retry_after_secs: 1,
            latency: Duration::from_millis(200),
            max_consecutive: Some(3),
            routes: None,
        }
    }
}

impl FaultConfig {
    /// Faults at `rate` with the other settings at their defaults.
    pub fn with_rate(rate: f64) -> Self {
        FaultConfig {
            rate,
            ..FaultConfig::default()
        }
    }

    pub(crate) fn applies_to(&self, path: &str) -> bool {
        match &self.routes {
            None => true,
            Some(list) => list.iter().any(|p| path.starts_with(p.as_str())),
        }
    }

    /// The draw for attempt `n` (0-based) of `key` under `seed`, ignoring `max_consecutive`.
    pub(crate) fn draw(&self, seed: u64, key: &str, n: u32) -> Option<FaultKind> {
        if self.rate <= 0.0 || self.kinds.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(key.as_bytes());
        h.update(n.to_le_bytes());
        let d = h.finalize();
        let mut a = [0u8; 8];
        a.copy_from_slice(&d[..8]);
        let u = (u64::from_le_bytes(a) >> 11) as f64 / (1u64 << 53) as f64;
        if u >= self.rate {
            return None;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[8..16]);
        let idx = (u64::from_le_bytes(b) % self.kinds.len() as u64) as usize;
        self.kinds.get(idx).copied()
    }
}

impl FaultConfig {
    /// A seed- and key-determined coin flip (used for per-job choices such as the status word).
    pub(crate) fn draw_bit(&self, seed: u64, key: &str) -> bool {
        let mut h = Sha256::new();
        h.update(b"bit");
        h.update(seed.to_le_bytes());
        h.update(key.as_bytes());
        h.finalize()[0] & 1 == 1
    }
}
