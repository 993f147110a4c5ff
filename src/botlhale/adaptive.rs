//! The client's limit on requests in flight: fixed, or adaptive (additive increase while the
//! limit is in use and no overload comes back, multiplicative decrease on 429/503, and a
//! remembered ceiling above which the limit is probed only rarely).
//!
//! The rule is TCP's congestion control applied to concurrency, as in Netflix's
//! concurrency-limits (AIMD): until the first overload each answered request that found the
//! limit in use adds 1 (slow start: the limit doubles per round of requests), then `1/limit`
//! (about one more per round); an overload answer multiplies the limit by 0.75, once per round:
//! the other overloads of requests sent before that decrease are the same congestion. Plain AIMD keeps probing one above the service's capacity every few rounds, and each
//! probe costs a 429; a small capacity would see a 429 every few requests. So an overload also
//! records the ceiling (one below the limit that overloaded): the limit grows back to it
//! quickly, then tries one more only after [`PROBE_EVERY`] answered requests at it. A probe
//! that passes raises the ceiling.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The adaptive limit starts here (or at the ceiling, if lower).
pub(crate) const START: usize = 4;
/// Multiplier of the limit on an overload answer.
const BACKOFF: f64 = 0.75;
/// Answered requests at the remembered ceiling before the limit tries one more.
pub(crate) const PROBE_EVERY: u32 = 64;

/// The limit's state machine: no clock, no I/O.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Aimd {
    limit: f64,
    max: f64,
    /// The highest limit known to pass, since the last overload.
    ceiling: Option<f64>,
    /// Answered requests at the ceiling since the last probe.
    at_ceiling: u32,
    /// Decreases so far: an overload of a request sent before the last one is not counted.
    generation: u64,
}

impl Aimd {
    /// A limit between 1 and `max`, starting at [`START`].
    pub(crate) fn new(max: usize) -> Aimd {
        let max = max.max(1) as f64;
        Aimd {
            limit: (START as f64).min(max),
            max,
            ceiling: None,
            at_ceiling: 0,
            generation: 0,
        }
    }

    /// The generation a request sent now belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Requests allowed in flight now.
    pub(crate) fn limit(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    /// A request was answered without overload while `in_flight` requests (itself
    /// included) were out.
    pub(crate) fn on_success(&mut self, in_flight: usize) {
        // Only a limit in use learns anything: an idle client does not grow it.
        if in_flight < self.limit() {
            return;
        }
        match self.ceiling {
            Some(c) if self.limit >= c => {
                if self.limit.floor() > c {
                    // A probe above the ceiling passed: the service takes this many.
                    self.ceiling = Some(self.limit.floor());
                }
                self.at_ceiling += 1;
                if self.at_ceiling >= PROBE_EVERY {
                    self.at_ceiling = 0;
                    self.limit = (self.limit.floor() + 1.0).min(self.max);
                }
            }
            Some(c) => self.limit = (self.limit + 1.0 / self.limit).min(c).min(self.max),
            // Slow start: nothing is known of the service's capacity yet.
            None => self.limit = (self.limit + 1.0).min(self.max),
        }
    }

    /// The service said it is overloaded (429 or 503) to a request sent in `generation`.
    pub(crate) fn on_overload(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        self.generation += 1;
        self.ceiling = Some((self.limit.floor() - 1.0).max(1.0));
        self.limit = (self.limit * BACKOFF).max(1.0);
        self.at_ceiling = 0;
    }
}

/// What an answered attempt tells the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Answered (whatever the status) without overload.
    Success,
    /// 429 or 503.
    Overload,
    /// No answer (a transport failure): says nothing about the service's capacity.
    Nothing,
}

/// The gate every attempt passes: at most the limit in flight.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    notify: Notify,
}

#[derive(Debug)]
struct GateState {
    in_flight: usize,
    /// `None`: a fixed limit of `max`.
    aimd: Option<Aimd>,
    max: usize,
}

impl GateState {
    fn limit(&self) -> usize {
        self.aimd.as_ref().map_or(self.max, Aimd::limit)
    }
}

impl Gate {
    /// A gate of at most `max` in flight, adaptive or fixed.
    pub(crate) fn new(max: usize, adaptive: bool) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(GateState {
                in_flight: 0,
                aimd: adaptive.then(|| Aimd::new(max)),
                max: max.max(1),
            }),
            notify: Notify::new(),
        })
    }

    /// Requests allowed in flight now.
    pub(crate) fn limit(&self) -> usize {
        self.state.lock().map(|s| s.limit()).unwrap_or(1)
    }

    /// Waits for a slot.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(mut s) = self.state.lock() {
                if s.in_flight < s.limit() {
                    s.in_flight += 1;
                    return Slot {
                        gate: self.clone(),
                        signal: Signal::Nothing,
                        generation: s.aimd.as_ref().map_or(0, Aimd::generation),
                    };
                }
            }
            notified.await;
        }
    }
}

/// A slot of the [`Gate`]; tells the limit what its attempt found when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Arc<Gate>,
    signal: Signal,
    generation: u64,
}

impl Slot {
    /// What the attempt found.
    pub(crate) fn report(&mut self, signal: Signal) {
        self.signal = signal;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.gate.state.lock() {
            let in_flight = s.in_flight;
            if let Some(a) = s.aimd.as_mut() {
                match self.signal {
                    Signal::Success => a.on_success(in_flight),
                    Signal::Overload => a.on_overload(self.generation),
                    Signal::Nothing => {}
                }
            }
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.gate.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that takes `capacity` at once, driven by a client that always has work:
    /// returns the mean limit and the share of overload answers over `rounds` requests.
    fn drive(capacity: usize, max: usize, rounds: usize) -> (f64, f64) {
        let mut a = Aimd::new(max);
        let (mut sum, mut overloads) = (0.0, 0);
        for _ in 0..rounds {
            let l = a.limit();
            sum += l as f64;
            // The limit is in use; an attempt beyond capacity is refused.
            if l > capacity {
                // One round's worth of requests beyond capacity are refused together;
                // the limit counts it once.
                overloads += 1;
                a.on_overload(a.generation());
            } else {
                a.on_success(l);
            }
        }
        (sum / rounds as f64, overloads as f64 / rounds as f64)
    }

    #[test]
    fn settles_near_capacity_with_few_overloads() {
        let (mean, refused) = drive(12, 32, 2000);
        assert!((10.5..=12.5).contains(&mean), "{mean}");
        assert!(refused < 0.02, "{refused}");
        let (mean, refused) = drive(3, 32, 2000);
        assert!(mean <= 3.1, "{mean}");
        assert!(refused < 0.02, "{refused}");
        // Plain AIMD (no ceiling) would refuse far more at a small capacity.
        let (_, plain) = {
            let mut a = Aimd::new(32);
            let mut o = 0;
            for _ in 0..2000 {
                if a.limit() > 3 {
                    o += 1;
                    a.on_overload(a.generation());
                    a.ceiling = None;
                } else {
                    a.on_success(a.limit());
                }
            }
            (0, o as f64 / 2000.0)
        };
        assert!(plain > 0.1, "{plain}");
    }

    #[test]
    fn grows_only_when_used_never_past_max_and_follows_a_larger_capacity() {
        let mut a = Aimd::new(6);
        for _ in 0..100 {
            a.on_success(1);
        }
        assert_eq!(a.limit(), START, "idle: no growth");
        for _ in 0..100 {
            let l = a.limit();
            a.on_success(l);
        }
        assert_eq!(a.limit(), 6, "capped at the maximum");
        // Capacity 3, then 10: the ceiling rises by probes.
        let mut a = Aimd::new(32);
        for _ in 0..200 {
            if a.limit() > 3 {
                a.on_overload(a.generation())
            } else {
                let l = a.limit();
                a.on_success(l)
            }
        }
        assert_eq!(a.limit(), 3);
        for _ in 0..(PROBE_EVERY as usize * 8) {
            if a.limit() > 10 {
                a.on_overload(a.generation())
            } else {
                let l = a.limit();
                a.on_success(l)
            }
        }
        assert!(a.limit() >= 8, "{}", a.limit());
    }

    #[tokio::test]
    async fn the_gate_holds_the_limit_and_releases_waiters() {
        let gate = Gate::new(2, false);
        let a = gate.acquire().await;
        let _b = gate.acquire().await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), gate.acquire());
        assert!(waiting.await.is_err(), "a third waits");
        let g = gate.clone();
        let third = tokio::spawn(async move { g.acquire().await });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        drop(a);
        let slot = tokio::time::timeout(std::time::Duration::from_secs(1), third)
            .await
            .expect("released")
            .expect("join");
        drop(slot);
        let adaptive = Gate::new(32, true);
        assert_eq!(adaptive.limit(), START);
        // Three requests of one round all refused: one congestion, one decrease.
        let mut round = Vec::new();
        for _ in 0..3 {
            round.push(adaptive.acquire().await);
        }
        for mut s in round {
            s.report(Signal::Overload);
        }
        assert_eq!(adaptive.limit(), 3);
    }
}
