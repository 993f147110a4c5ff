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
//!
//! A service may queue instead of refusing: then the answers of the timed requests (sync
//! transcription) slow down as the limit passes what it serves at once. As in TCP Vegas, a
//! *latency jump* is a congestion signal too. A request's latency depends on its size, so
//! each is compared with the baseline of its size class (sizes within a factor of two,
//! [`CLASSES`]): the lowest moving average of that class's latencies seen. When the recent
//! ratio to the baseline (a moving average over about four answers, [`SHORT_WEIGHT`]) reaches
//! [`LATENCY_JUMP`] while the limit is in use, the limit is multiplied by [`LATENCY_BACKOFF`], once per round,
//! and slow start ends; above [`GROW_BELOW`] it holds. Answers to requests sent before a decrease do not count towards the
//! next one, and a round is judged on at least as many answers as the limit (requests sent
//! after a decrease still queue behind older ones). When cutting the limit to [`GIVE_UP`] of
//! what it was at the first jump has not brought the latency back under the jump, the service
//! became slower whatever the load: every baseline is raised by the ratio instead of the
//! limit shrinking further.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The adaptive limit starts here (or at the ceiling, if lower).
pub(crate) const START: usize = 4;
/// Multiplier of the limit on an overload answer.
const BACKOFF: f64 = 0.75;
/// Answered requests at the remembered ceiling before the limit tries one more.
pub(crate) const PROBE_EVERY: u32 = 64;
/// Weight of the newest sample in the recent averages.
const SHORT_WEIGHT: f64 = 0.25;
/// Recent latency over the baseline at which the service is taken to be queueing.
const LATENCY_JUMP: f64 = 2.0;
/// Recent latency over the baseline under which the limit may grow; between this and
/// [`LATENCY_JUMP`] it holds.
const GROW_BELOW: f64 = 1.5;
/// Size classes of timed requests: class `k` holds bodies of 2^k × 16 KiB up to twice that
/// (the last one everything larger; 16 kHz 16-bit audio is 32 KiB per second).
const CLASSES: usize = 8;
/// Multiplier of the limit on a latency jump (gentler than on a refusal).
const LATENCY_BACKOFF: f64 = 0.9;
/// Timed answers of one round before its latency is judged (at least the limit: the
/// requests sent after a decrease still queue behind the ones sent before it).
const MIN_SAMPLES: u32 = 4;
/// The limit, as a fraction of what it was at the first jump, at which a latency that stays
/// up is taken for a slower service rather than our load.
const GIVE_UP: f64 = 0.4;

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
    /// Growing by one per answer until the first congestion signal.
    slow_start: bool,
    /// Recent ratio of timed answers' latency to their class's baseline.
    short: Option<f64>,
    /// Timed answers judged since the last decrease.
    samples: u32,
    /// Per size class: moving average of the latency (s) and its lowest value (the baseline).
    classes: [(Option<f64>, Option<f64>); CLASSES],
    /// The limit when the latency first jumped, while it stays up.
    jumped_at: Option<f64>,
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
            slow_start: true,
            short: None,
            samples: 0,
            classes: [(None, None); CLASSES],
            jumped_at: None,
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

    /// A request sent in `generation` was answered without overload while `in_flight`
    /// requests (itself included) were out; for a timed request, its latency and body size.
    pub(crate) fn on_success(
        &mut self,
        in_flight: usize,
        timed: Option<(Duration, u64)>,
        generation: u64,
    ) {
        let in_use = in_flight >= self.limit();
        if let Some((l, bytes)) = timed.filter(|_| generation == self.generation) {
            let l = l.as_secs_f64().max(1e-6);
            let class = ((bytes >> 14).max(1).ilog2() as usize).min(CLASSES - 1);
            let (avg, base) = &mut self.classes[class];
            let a = avg.map_or(l, |a| a + SHORT_WEIGHT * (l - a));
            *avg = Some(a);
            let b = base.map_or(a, |b: f64| b.min(a));
            *base = Some(b);
            let ratio = l / b;
            let short = self.short.map_or(ratio, |s| s + SHORT_WEIGHT * (ratio - s));
            self.short = Some(short);
            self.samples += 1;
            let judged = self.samples >= MIN_SAMPLES.max(self.limit() as u32);
            if in_use && judged && short >= LATENCY_JUMP {
                match self.jumped_at {
                    // Cut to GIVE_UP and still slow: not our load, a slower service.
                    Some(first) if self.limit <= first * GIVE_UP => {
                        for (_, base) in self.classes.iter_mut() {
                            *base = base.map(|b| b * short);
                        }
                        self.short = Some(1.0);
                        self.jumped_at = None;
                    }
                    first => {
                        self.jumped_at = Some(first.unwrap_or(self.limit));
                        self.decrease(LATENCY_BACKOFF);
                        return;
                    }
                }
            } else if judged {
                self.jumped_at = None;
            }
        }
        // Only a limit in use learns anything: an idle client does not grow it. Nor does a
        // limit whose answers are already slower than alone: it holds.
        let slowed = self.short.is_some_and(|s| s >= GROW_BELOW);
        if !in_use || slowed {
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
            None if self.slow_start => self.limit = (self.limit + 1.0).min(self.max),
            None => self.limit = (self.limit + 1.0 / self.limit).min(self.max),
        }
    }

    /// A congestion signal of the current round: the limit times `factor`, a new round.
    fn decrease(&mut self, factor: f64) {
        self.generation += 1;
        self.limit = (self.limit * factor).max(1.0);
        self.slow_start = false;
        // The recent latency is kept (the limit holds while it is up) but judged afresh.
        self.samples = 0;
    }

    /// The service said it is overloaded (429 or 503) to a request sent in `generation`.
    pub(crate) fn on_overload(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        self.ceiling = Some((self.limit.floor() - 1.0).max(1.0));
        self.decrease(BACKOFF);
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

    /// Waits for a slot; `timed`: the body size of an attempt whose latency is a congestion
    /// signal (see the module docs).
    pub(crate) async fn acquire(self: &Arc<Self>, timed: Option<u64>) -> Slot {
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
                        sent: timed.map(|bytes| (Instant::now(), bytes)),
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
    /// When the slot was granted and the body size, for a timed attempt.
    sent: Option<(Instant, u64)>,
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
                    Signal::Success => a.on_success(
                        in_flight,
                        self.sent.map(|(t, bytes)| (t.elapsed(), bytes)),
                        self.generation,
                    ),
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
                a.on_success(l, None, 0);
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
                    a.on_success(a.limit(), None, 0);
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
            a.on_success(1, None, 0);
        }
        assert_eq!(a.limit(), START, "idle: no growth");
        for _ in 0..100 {
            let l = a.limit();
            a.on_success(l, None, 0);
        }
        assert_eq!(a.limit(), 6, "capped at the maximum");
        // Capacity 3, then 10: the ceiling rises by probes.
        let mut a = Aimd::new(32);
        for _ in 0..200 {
            if a.limit() > 3 {
                a.on_overload(a.generation())
            } else {
                let l = a.limit();
                a.on_success(l, None, 0)
            }
        }
        assert_eq!(a.limit(), 3);
        for _ in 0..(PROBE_EVERY as usize * 8) {
            if a.limit() > 10 {
                a.on_overload(a.generation())
            } else {
                let l = a.limit();
                a.on_success(l, None, 0)
            }
        }
        assert!(a.limit() >= 8, "{}", a.limit());
    }

    /// A service that serves `workers` at once in `service` and queues the rest, driven by a
    /// client that always has work (latency jitter ±`jitter` of it): the mean limit.
    fn drive_queue(workers: usize, max: usize, jitter: f64, rounds: usize) -> f64 {
        let mut a = Aimd::new(max);
        let mut rng = fastrand::Rng::with_seed(9);
        let service = 0.5;
        let mut sum = 0.0;
        for _ in 0..rounds {
            let l = a.limit();
            sum += l as f64;
            let queued = (l as f64 / workers as f64).max(1.0);
            let secs = service * queued * (1.0 + jitter * (2.0 * rng.f64() - 1.0));
            a.on_success(
                l,
                Some((Duration::from_secs_f64(secs), 1 << 20)),
                a.generation(),
            );
        }
        sum / rounds as f64
    }

    #[test]
    fn a_queueing_service_is_not_flooded_and_steady_latency_does_not_hold_the_limit_back() {
        // 4 served at once, ceiling 16: without the latency signal the limit would sit at 16
        // with answers 4x slower; it stays where latency has at most doubled.
        let mean = drive_queue(4, 16, 0.0, 2000);
        assert!(mean <= 8.5, "{mean}");
        assert!(mean >= 4.0, "{mean}");
        let mean = drive_queue(4, 16, 0.3, 2000);
        assert!(mean <= 8.5, "{mean}");
        // A service that serves everything at once: the limit reaches the ceiling, jitter
        // and all.
        let mean = drive_queue(64, 16, 0.3, 2000);
        assert!(mean >= 15.0, "{mean}");
        // Requests of 1-30 s of audio (latency 0.2 s + 0.1 s per second of it), short ones
        // first, then long ones: different sizes are not taken for a queue...
        let mut rng = fastrand::Rng::with_seed(3);
        let mut a = Aimd::new(16);
        let mut sum = 0.0;
        for i in 0..2000 {
            let l = a.limit();
            sum += l as f64;
            let secs = if i < 300 {
                rng.f64() * 3.0 + 1.0
            } else {
                rng.f64() * 29.0 + 1.0
            };
            let latency = Duration::from_secs_f64(0.2 + 0.1 * secs);
            a.on_success(l, Some((latency, (secs * 32_000.0) as u64)), a.generation());
        }
        assert!(sum / 2000.0 >= 15.0, "{}", sum / 2000.0);
        // ...and the same sizes from a service that serves 4 at once are.
        let mut a = Aimd::new(16);
        let mut sum = 0.0;
        for _ in 0..2000 {
            let l = a.limit();
            sum += l as f64;
            let secs = rng.f64() * 29.0 + 1.0;
            let queued = (l as f64 / 4.0).max(1.0);
            let latency = Duration::from_secs_f64((0.2 + 0.1 * secs) * queued);
            a.on_success(l, Some((latency, (secs * 32_000.0) as u64)), a.generation());
        }
        assert!(sum / 2000.0 <= 9.0, "{}", sum / 2000.0);
        // A service that becomes 3x slower whatever the load: the limit gives up at most
        // 60 %, then grows back.
        let mut a = Aimd::new(16);
        let mut lowest = 16;
        for i in 0..1500 {
            let l = a.limit();
            if i >= 100 {
                lowest = lowest.min(l);
            }
            let secs = if i < 100 { 0.5 } else { 1.5 };
            a.on_success(
                l,
                Some((Duration::from_secs_f64(secs), 1 << 20)),
                a.generation(),
            );
        }
        assert!(lowest >= 6, "{lowest}");
        assert!(a.limit() >= 15, "{}", a.limit());
    }

    #[tokio::test]
    async fn the_gate_holds_the_limit_and_releases_waiters() {
        let gate = Gate::new(2, false);
        let a = gate.acquire(None).await;
        let _b = gate.acquire(None).await;
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), gate.acquire(None));
        assert!(waiting.await.is_err(), "a third waits");
        let g = gate.clone();
        let third = tokio::spawn(async move { g.acquire(None).await });
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
            round.push(adaptive.acquire(None).await);
        }
        for mut s in round {
            s.report(Signal::Overload);
        }
        assert_eq!(adaptive.limit(), 3);
    }
}
