//! The `/asr` capacity of the emulated service: at most `asr_capacity` requests in flight
//! (429 with `Retry-After` beyond it), each held for `asr_latency`, and the statistics a
//! client's concurrency control is judged by (peak and time-weighted mean in flight).

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the `/asr` route saw: how many requests were in flight, and how many were refused.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct AsrStats {
    /// Requests accepted (served, whatever their answer).
    pub accepted: u64,
    /// Requests refused with 429 because the capacity was reached.
    pub refused: u64,
    /// Most requests in flight at once.
    pub peak_in_flight: usize,
    /// Requests in flight on average, weighted by time, from the first `/asr` request to the
    /// last one's end (or now, while some are in flight).
    pub mean_in_flight: f64,
}

#[derive(Debug, Default)]
struct Meter {
    now: usize,
    stats: AsrStats,
    /// Σ in-flight × seconds, and the span it covers.
    area: f64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Meter {
    fn advance(&mut self, at: Instant) {
        if let Some(last) = self.last {
            self.area += self.now as f64 * at.saturating_duration_since(last).as_secs_f64();
        }
        self.first.get_or_insert(at);
        self.last = Some(at);
    }

    fn mean(&self) -> f64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) if l > f => self.area / l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Counts `/asr` requests in flight against a capacity.
#[derive(Debug, Clone, Default)]
pub(crate) struct Capacity {
    meter: Arc<Mutex<Meter>>,
}

/// One accepted request; its end is recorded when dropped (also when the client goes away).
pub(crate) struct Slot {
    meter: Arc<Mutex<Meter>>,
}

impl Capacity {
    /// A slot, or `None` when `limit` requests are in flight already.
    pub(crate) fn try_enter(&self, limit: Option<usize>) -> Option<Slot> {
        let mut m = self.meter.lock().unwrap_or_else(|e| e.into_inner());
        m.advance(Instant::now());
        if limit.is_some_and(|l| m.now >= l) {
            m.stats.refused += 1;
            return None;
        }
        m.now += 1;
        m.stats.accepted += 1;
        m.stats.peak_in_flight = m.stats.peak_in_flight.max(m.now);
        Some(Slot {
            meter: self.meter.clone(),
        })
    }

    pub(crate) fn stats(&self) -> AsrStats {
        let mut m = self.meter.lock().unwrap_or_else(|e| e.into_inner());
        if m.now > 0 {
            m.advance(Instant::now());
        }
        AsrStats {
            mean_in_flight: m.mean(),
            ..m.stats
        }
    }

    /// Forgets the statistics (the requests in flight stay counted).
    pub(crate) fn reset(&self) {
        let mut m = self.meter.lock().unwrap_or_else(|e| e.into_inner());
        let now = m.now;
        *m = Meter {
            now,
            ..Meter::default()
        };
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.meter.lock().unwrap_or_else(|e| e.into_inner());
        m.advance(Instant::now());
        m.now = m.now.saturating_sub(1);
    }
}
