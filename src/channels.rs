//! Stage `channels`: which channels of a recording are transcribed, mixed or each on its own.
//!
//! Call-centre systems usually record each party on its own channel (agent left, customer
//! right). Mixing them to mono puts overlapping speech into one request and loses who spoke;
//! transcribing each channel on its own keeps both and labels every segment with its channel.
//! [`ChannelMode`] chooses:
//!
//! - [`ChannelMode::Mix`]: the mean of all channels, one track (what a mono file is anyway).
//! - [`ChannelMode::Separate`]: each channel (or each listed channel) is its own track, with
//!   its own resampler, normaliser and segmenter; segments are labelled with the channel's
//!   name.
//! - [`ChannelMode::Auto`] (the default): a 2-channel file is judged on its first minutes
//!   (at most [`AUTO_WINDOW_SECS`] s, earlier once both channels have spoken enough):
//!   channels with little correlation whose sound is mostly one channel's at a time (one
//!   channel 12 dB or more above the other in most 20 ms frames) are different talkers and
//!   go [`ChannelMode::Separate`] (also when one channel is still silent at the end of the
//!   window: a party that has not spoken yet); stereo music, a duplicated mono signal, a
//!   file without sound, and any file with more than 2 channels are mixed.
//!
//! The file is decoded once whatever the mode: the channels are taken from the same decoded
//! frames. Auto's judging window is held in memory (at most `AUTO_WINDOW_SECS` s of both
//! channels at 16 kHz, 15 MB) and then handed on unchanged, so the decision costs no second
//! decoding and no audio.
//!
//! The judge and the chooser here are state machines without I/O: they see 16 kHz blocks of
//! each channel and hand out blocks of the chosen tracks.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::{Samples, RATE};
use crate::{Error, ErrorKind, Result};

/// How the channels of a recording are transcribed. Default [`ChannelMode::Auto`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ChannelMode {
    /// Mix every channel to mono (mean of the channels) and transcribe one track.
    Mix,
    /// Transcribe each channel on its own: every channel when the list is empty, else the
    /// listed channel indices (0-based, each once; e.g. `vec![2]` for the centre channel of
    /// a 5.1 file). A file without a listed channel fails with
    /// [`crate::ErrorKind::Unsupported`] (a per-file error: a batch goes on).
    Separate(Vec<u16>),
    /// [`ChannelMode::Separate`] for 2-channel files whose channels carry different
    /// talkers, [`ChannelMode::Mix`] otherwise (see the module docs).
    #[default]
    Auto,
}

impl ChannelMode {
    /// Parses `mix`, `auto`, `separate` or `separate:0,2` (the CLI's `--channels`).
    pub fn from_name(s: &str) -> Result<ChannelMode> {
        let s = s.trim();
        match s {
            "mix" => return Ok(ChannelMode::Mix),
            "auto" => return Ok(ChannelMode::Auto),
            "separate" => return Ok(ChannelMode::Separate(Vec::new())),
            _ => {}
        }
        let bad = || {
            Error::config(format!(
                "channel mode {s:?}: expected mix, auto, separate or separate:<indices> (e.g. separate:0,2)"
            ))
        };
        let list = s.strip_prefix("separate:").ok_or_else(bad)?;
        let mut v = Vec::new();
        for i in list.split(',') {
            let i: u16 = i.trim().parse().map_err(|_| bad())?;
            if v.contains(&i) {
                return Err(bad());
            }
            v.push(i);
        }
        Ok(ChannelMode::Separate(v))
    }

    /// The mode as text (what [`ChannelMode::from_name`] reads back).
    pub fn name(&self) -> String {
        match self {
            ChannelMode::Mix => "mix".into(),
            ChannelMode::Auto => "auto".into(),
            ChannelMode::Separate(v) if v.is_empty() => "separate".into(),
            ChannelMode::Separate(v) => format!(
                "separate:{}",
                v.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// The longest stretch [`ChannelMode::Auto`] judges before deciding: 120 s.
pub const AUTO_WINDOW_SECS: u32 = 120;

/// Auto decides early once this much audio was judged (30 s) ...
const EARLY_AFTER: Samples = 30 * RATE as Samples;
/// ... and each channel was active for at least this long (5 s).
const EARLY_ACTIVE: Samples = 5 * RATE as Samples;
/// Judging frame: 20 ms.
const FRAME: usize = RATE as usize / 50;
/// Separation needs at least one channel active for this long (1 s) in the window.
const MIN_ACTIVE: Samples = RATE as Samples;
/// Different talkers: |correlation| below this ...
const MAX_CORRELATION: f64 = 0.5;
/// ... and at most this share of the sounding frames with both channels sounding.
const MAX_OVERLAP: f64 = 0.4;
/// A channel this much louder than the other in a frame has it to itself: 12 dB.
const DOMINANT_DB: f64 = 12.0;

/// What [`ChannelMode::Auto`] measured on a 2-channel file, recorded in the transcript.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AutoStats {
    /// Seconds of audio judged.
    pub judged_secs: f64,
    /// Correlation of the two channels at lag 0 over the frames where either is active
    /// (1 for a duplicated mono signal, about 0 for two talkers).
    pub correlation: f64,
    /// Correlation of the two channels' loudness (dB per 20 ms frame) over the frames where
    /// either is active: near 1 when both follow the same sound (music, one voice twice), 0 or
    /// below when they take turns.
    pub envelope: f64,
    /// Of the frames where either channel sounds, the share where neither is 12 dB or more
    /// louder than the other, each measured from its own loud level (95th percentile of its
    /// frames): both sound at once (low for two parties taking turns, high for music or one
    /// signal twice).
    pub overlap: f64,
    /// Seconds each channel was active.
    pub active_secs: [f64; 2],
}

/// Per-frame measurements of two channels: the judge of [`ChannelMode::Auto`].
#[derive(Debug, Default)]
struct Judge {
    /// (energy of channel 0, energy of channel 1, cross product) per complete frame.
    frames: Vec<[f64; 3]>,
    /// The frame being summed.
    acc: [f64; 3],
    fill: usize,
}

impl Judge {
    fn push(&mut self, a: &[f32], b: &[f32]) {
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x), f64::from(y));
            self.acc[0] += x * x;
            self.acc[1] += y * y;
            self.acc[2] += x * y;
            self.fill += 1;
            if self.fill == FRAME {
                self.frames.push(self.acc);
                self.acc = [0.0; 3];
                self.fill = 0;
            }
        }
    }

    fn judged(&self) -> Samples {
        (self.frames.len() * FRAME) as Samples
    }

    /// Which frames channel `ch` is active in: 12 dB over its noise floor (10th percentile
    /// of frame energies), at most 40 dB under its loud frames (95th percentile), and above
    /// −70 dBFS; and the level of its loud frames.
    fn activity(&self, ch: usize) -> (Vec<bool>, f64) {
        let db = |e: f64| 10.0 * (e / FRAME as f64 + 1e-20).log10();
        let mut sorted: Vec<f64> = self.frames.iter().map(|f| db(f[ch])).collect();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(-200.0)
        };
        let loud = pick(0.95);
        let threshold = (pick(0.10) + 12.0).max(loud - 40.0).max(-70.0);
        (
            self.frames.iter().map(|f| db(f[ch]) > threshold).collect(),
            loud,
        )
    }

    fn stats(&self) -> AutoStats {
        let ((a, mut loud0), (b, mut loud1)) = (self.activity(0), self.activity(1));
        // A channel that has not spoken has no level of its own: compare it on the other's.
        let spoke =
            |v: &[bool]| (v.iter().filter(|&&x| x).count() * FRAME) as Samples >= MIN_ACTIVE;
        match (spoke(&a), spoke(&b)) {
            (true, false) => loud1 = loud0,
            (false, true) => loud0 = loud1,
            _ => {}
        }
        let db = |e: f64| 10.0 * (e / FRAME as f64 + 1e-20).log10();
        let (mut both, mut any) = (0usize, 0usize);
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        let mut pairs = Vec::new();
        for ((f, &x), &y) in self.frames.iter().zip(&a).zip(&b) {
            if !(x || y) {
                continue;
            }
            any += 1;
            sxx += f[0];
            syy += f[1];
            sxy += f[2];
            let (d0, d1) = (db(f[0]), db(f[1]));
            pairs.push((d0, d1));
            // Both sound in this frame: neither channel is DOMINANT_DB above the other, each
            // measured from its own loud level (the two legs of a call are recorded at
            // different levels). One talker with the other party silent is 25 dB and more
            // apart; music, one voice twice, a stereo recording of one room a few dB.
            if ((d0 - loud0) - (d1 - loud1)).abs() < DOMINANT_DB {
                both += 1;
            }
        }
        let secs = |n: usize| (n * FRAME) as f64 / f64::from(RATE);
        let correlation = if sxx > 0.0 && syy > 0.0 {
            sxy / (sxx * syy).sqrt()
        } else {
            0.0
        };
        AutoStats {
            judged_secs: secs(self.frames.len()),
            correlation,
            envelope: pearson(&pairs),
            overlap: if any > 0 {
                both as f64 / any as f64
            } else {
                0.0
            },
            active_secs: [
                secs(a.iter().filter(|&&x| x).count()),
                secs(b.iter().filter(|&&x| x).count()),
            ],
        }
    }
}

/// Pearson correlation of the pairs (0 when undefined).
fn pearson(v: &[(f64, f64)]) -> f64 {
    let n = v.len() as f64;
    if v.len() < 2 {
        return 0.0;
    }
    let (mx, my) = v
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in v {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    if sxx > 0.0 && syy > 0.0 {
        sxy / (sxx * syy).sqrt()
    } else {
        0.0
    }
}

/// Whether `s` says the two channels carry different talkers. A channel silent all through
/// the window counts as a party that has not spoken yet (a call that starts with the agent's
/// greeting or hold music): separating costs nothing there (a silent channel sends nothing)
/// and keeps who speaks once it does.
fn different_talkers(s: &AutoStats) -> bool {
    let min_active = MIN_ACTIVE as f64 / f64::from(RATE);
    s.active_secs.iter().any(|&t| t >= min_active)
        && s.correlation.abs() < MAX_CORRELATION
        && s.overlap < MAX_OVERLAP
}

/// What the chooser decided.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Choice {
    /// The file's channel index of each track; `None`: the one track is the mix.
    pub(crate) channels: Option<Vec<u16>>,
    /// Auto's measurements, when it judged.
    pub(crate) auto: Option<AutoStats>,
}

/// How the stream feeds the chooser: what each lane is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lanes {
    /// One lane: the decoder's mix (or a mono file).
    Mixed,
    /// One lane per listed channel of the file, decided already.
    Channels(Vec<u16>),
    /// Both channels of a 2-channel file, for Auto to judge.
    Judge,
}

/// Which lanes a file needs under `mode`, given its channel count.
pub(crate) fn lanes(mode: &ChannelMode, channels: u16) -> Result<Lanes> {
    Ok(match mode {
        ChannelMode::Mix => Lanes::Mixed,
        ChannelMode::Auto if channels == 2 => Lanes::Judge,
        ChannelMode::Auto => Lanes::Mixed,
        ChannelMode::Separate(list) if list.is_empty() => Lanes::Channels((0..channels).collect()),
        ChannelMode::Separate(list) => {
            if let Some(bad) = list.iter().find(|&&i| i >= channels) {
                return Err(Error::new(ErrorKind::Unsupported {
                    path: None,
                    what: format!(
                        "channel {bad} was asked for; the file has {channels} channel(s) (0 to {})",
                        channels.saturating_sub(1)
                    ),
                }));
            }
            Lanes::Channels(list.clone())
        }
    })
}

/// Holds lanes of 16 kHz audio until it knows which tracks to hand out, then hands them out
/// in order, each block covering the same stretch of time on every track.
#[derive(Debug)]
pub(crate) struct Chooser {
    judge: Option<Judge>,
    choice: Option<Choice>,
    /// Lane samples not handed out yet (one queue per lane).
    held: Vec<VecDeque<f32>>,
    window: Samples,
    next_look: Samples,
}

impl Chooser {
    /// A chooser for `lanes` (from [`lanes`]).
    pub(crate) fn new(lanes: &Lanes) -> Chooser {
        let (n, judge, choice) = match lanes {
            Lanes::Mixed => (
                1,
                None,
                Some(Choice {
                    channels: None,
                    auto: None,
                }),
            ),
            Lanes::Channels(c) => (
                c.len(),
                None,
                Some(Choice {
                    channels: Some(c.clone()),
                    auto: None,
                }),
            ),
            Lanes::Judge => (2, Some(Judge::default()), None),
        };
        Chooser {
            judge,
            choice,
            held: vec![VecDeque::new(); n],
            window: Samples::from(AUTO_WINDOW_SECS) * RATE as Samples,
            next_look: RATE as Samples,
        }
    }

    /// How many tracks will come out, once decided.
    pub(crate) fn choice(&self) -> Option<&Choice> {
        self.choice.as_ref()
    }

    /// Hands the lanes' new samples (all the same length) straight out as the tracks when
    /// the choice is made and nothing is held: swapped into `out` (one `Vec` per track), or
    /// mixed into `out[0]`. Returns the samples per track, or `None` when the chooser must
    /// hold them ([`Chooser::push`]).
    pub(crate) fn pass(
        &mut self,
        lanes: &mut [Vec<f32>],
        out: &mut Vec<Vec<f32>>,
    ) -> Option<usize> {
        let choice = self.choice.as_ref()?;
        if self.held.iter().any(|q| !q.is_empty()) {
            return None;
        }
        let n = lanes.iter().map(Vec::len).min().unwrap_or(0);
        lanes.iter_mut().for_each(|l| l.truncate(n));
        if choice.channels.is_none() && lanes.len() > 1 {
            // Auto chose the mix: the mean of the lanes.
            out.resize_with(1, Vec::new);
            let t = &mut out[0];
            t.clear();
            t.extend_from_slice(&lanes[0]);
            for l in &lanes[1..] {
                t.iter_mut().zip(l).for_each(|(o, x)| *o += x);
            }
            let k = 1.0 / lanes.len() as f32;
            t.iter_mut().for_each(|x| *x *= k);
        } else {
            out.resize_with(lanes.len(), Vec::new);
            for (t, l) in out.iter_mut().zip(lanes.iter_mut()) {
                std::mem::swap(t, l);
            }
        }
        Some(n)
    }

    /// Holds one block of every lane (all the same length).
    pub(crate) fn push<L: AsRef<[f32]>>(&mut self, lanes: &[L]) {
        for (q, l) in self.held.iter_mut().zip(lanes) {
            q.extend(l.as_ref().iter().copied());
        }
        let [a, b] = lanes else {
            return;
        };
        let (a, b) = (a.as_ref(), b.as_ref());
        // Look again every second of audio, at exactly that sample whatever the block sizes
        // (they differ between one thread and a read-ahead): the same input, the same choice.
        let mut at = 0;
        while at < a.len() {
            let Some(j) = self.judge.as_mut() else {
                return;
            };
            // Samples up to the frame that completes the next look.
            let need = usize::try_from(self.next_look.saturating_sub(j.judged()))
                .unwrap_or(usize::MAX)
                .saturating_sub(j.fill)
                .max(1);
            let end = at.saturating_add(need).min(a.len()).min(b.len());
            if end <= at {
                return;
            }
            j.push(&a[at..end], &b[at..end]);
            at = end;
            if j.judged() >= self.next_look {
                self.next_look = j.judged() + RATE as Samples;
                self.consider(false);
            }
        }
    }

    /// The input ended: decide with what was seen.
    pub(crate) fn finish(&mut self) {
        self.consider(true);
    }

    fn consider(&mut self, end: bool) {
        let Some(j) = &self.judge else {
            return;
        };
        let s = j.stats();
        let judged = j.judged();
        let min_active = EARLY_ACTIVE as f64 / f64::from(RATE);
        let early = judged >= EARLY_AFTER && s.active_secs.iter().all(|&t| t >= min_active);
        if !(end || early || judged >= self.window) {
            return;
        }
        let separate = different_talkers(&s);
        tracing::debug!(
            separate,
            correlation = s.correlation,
            overlap = s.overlap,
            judged_secs = s.judged_secs,
            "channels judged"
        );
        self.choice = Some(Choice {
            channels: separate.then(|| vec![0, 1]),
            auto: Some(s),
        });
        self.judge = None;
    }

    /// Hands out up to `max` samples of every chosen track into `out` (cleared first; one
    /// `Vec` per track); returns how many samples each got (0: nothing ready).
    pub(crate) fn take(&mut self, out: &mut Vec<Vec<f32>>, max: usize) -> usize {
        let Some(choice) = &self.choice else {
            return 0;
        };
        let n = self.held.first().map_or(0, VecDeque::len).min(max);
        let tracks = if choice.channels.is_none() {
            1
        } else {
            self.held.len()
        };
        out.resize_with(tracks, Vec::new);
        out.iter_mut().for_each(Vec::clear);
        if n == 0 {
            return 0;
        }
        if choice.channels.is_none() && self.held.len() > 1 {
            // Auto chose the mix: the mean of the lanes.
            let k = 1.0 / self.held.len() as f32;
            let (first, rest) = self.held.split_at_mut(1);
            let t = &mut out[0];
            t.extend(first[0].drain(..n));
            for q in rest {
                for (o, x) in t.iter_mut().zip(q.drain(..n)) {
                    *o += x;
                }
            }
            t.iter_mut().for_each(|x| *x *= k);
        } else {
            for (t, q) in out.iter_mut().zip(self.held.iter_mut()) {
                t.extend(q.drain(..n));
            }
        }
        if self
            .held
            .first()
            .is_some_and(|q| q.is_empty() && q.capacity() > max.saturating_mul(4))
        {
            // The judging window is handed on: its memory is not needed again.
            self.held.iter_mut().for_each(VecDeque::shrink_to_fit);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, f: f32, amp: f32) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (std::f32::consts::TAU * f * i as f32 / RATE as f32).sin())
            .collect()
    }

    #[test]
    fn names_round_trip() {
        for m in [
            ChannelMode::Mix,
            ChannelMode::Auto,
            ChannelMode::Separate(vec![]),
            ChannelMode::Separate(vec![2, 0]),
        ] {
            assert_eq!(ChannelMode::from_name(&m.name()).unwrap(), m);
        }
        for bad in ["", "both", "separate:", "separate:1,1", "separate:x"] {
            assert!(ChannelMode::from_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lanes_follow_the_mode_and_the_channel_count() {
        assert_eq!(lanes(&ChannelMode::Auto, 1).unwrap(), Lanes::Mixed);
        assert_eq!(lanes(&ChannelMode::Auto, 2).unwrap(), Lanes::Judge);
        assert_eq!(lanes(&ChannelMode::Auto, 6).unwrap(), Lanes::Mixed);
        assert_eq!(
            lanes(&ChannelMode::Separate(vec![]), 3).unwrap(),
            Lanes::Channels(vec![0, 1, 2])
        );
        assert_eq!(
            lanes(&ChannelMode::Separate(vec![2]), 6).unwrap(),
            Lanes::Channels(vec![2])
        );
        assert!(lanes(&ChannelMode::Separate(vec![2]), 2).is_err());
    }

    /// Talkers taking turns: 2 s bursts alternating between the channels.
    fn turns(secs: usize) -> (Vec<f32>, Vec<f32>) {
        let n = secs * RATE as usize;
        let mut a = vec![0.0; n];
        let mut b = vec![0.0; n];
        let t = tone(n, 220.0, 0.3);
        let u = tone(n, 330.0, 0.3);
        for i in 0..n {
            if (i / (2 * RATE as usize)).is_multiple_of(2) {
                a[i] = t[i];
            } else {
                b[i] = u[i];
            }
        }
        (a, b)
    }

    /// Feeds `a` and `b` the way the stream does (straight through once decided and empty,
    /// held otherwise) and collects every track handed out.
    fn run(a: &[f32], b: &[f32]) -> (Chooser, Vec<Vec<f32>>) {
        let mut c = Chooser::new(&Lanes::Judge);
        let mut got: Vec<Vec<f32>> = Vec::new();
        let mut out = Vec::new();
        let mut collect = |out: &Vec<Vec<f32>>| {
            got.resize_with(out.len(), Vec::new);
            for (g, o) in got.iter_mut().zip(out) {
                g.extend_from_slice(o);
            }
        };
        for (x, y) in a.chunks(4000).zip(b.chunks(4000)) {
            let mut lanes = vec![x.to_vec(), y.to_vec()];
            if c.pass(&mut lanes, &mut out).is_some() {
                collect(&out);
            } else {
                c.push(&lanes);
            }
            while c.take(&mut out, 1000) > 0 {
                collect(&out);
            }
        }
        c.finish();
        while c.take(&mut out, 1000) > 0 {
            collect(&out);
        }
        (c, got)
    }

    #[test]
    fn turns_on_two_channels_are_separated_early_and_nothing_is_lost() {
        let (a, b) = turns(60);
        let (c, got) = run(&a, &b);
        let choice = c.choice().unwrap();
        assert_eq!(choice.channels, Some(vec![0, 1]));
        let s = choice.auto.unwrap();
        assert!(s.judged_secs < 40.0, "{s:?}");
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn a_quiet_leg_and_a_noisy_leg_are_still_separated() {
        // Agent at about −33 dBFS on a clean line, customer at −20 dBFS over line noise at
        // −45 dBFS: in absolute terms the agent barely rises over the customer's noise.
        let (a, b) = turns(60);
        let mut rng = fastrand::Rng::with_seed(3);
        let a: Vec<f32> = a.iter().map(|x| x * 0.075).collect();
        let b: Vec<f32> = b
            .iter()
            .map(|x| x + 0.0056 * 1.7 * (rng.f32() - 0.5) * 2.0)
            .collect();
        let (c, _) = run(&a, &b);
        let choice = c.choice().unwrap();
        assert_eq!(choice.channels, Some(vec![0, 1]), "{:?}", choice.auto);
    }

    #[test]
    fn echo_of_the_agent_on_the_customer_line_is_still_separated() {
        // The customer's line carries the agent's voice back 15 dB down, 40 ms late.
        let (a, b) = turns(60);
        let delay = 640;
        let b: Vec<f32> = b
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.18 * i.checked_sub(delay).map_or(0.0, |j| a[j]))
            .collect();
        let (c, _) = run(&a, &b);
        let choice = c.choice().unwrap();
        assert_eq!(choice.channels, Some(vec![0, 1]), "{:?}", choice.auto);
    }

    #[test]
    fn the_same_signal_twice_is_mixed() {
        let (a, b) = turns(60);
        let m: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let (c, got) = run(&m, &m);
        assert_eq!(c.choice().unwrap().channels, None);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len(), m.len());
        assert!(got[0].iter().zip(&m).all(|(x, y)| (x - y).abs() < 1e-6));
    }

    #[test]
    fn a_channel_silent_through_the_window_is_still_separated() {
        let (a, _) = turns(150);
        let z = vec![0.0; a.len()];
        let (c, got) = run(&a, &z);
        let choice = c.choice().unwrap();
        assert_eq!(choice.channels, Some(vec![0, 1]));
        // It waited the whole window for the silent party.
        assert!(choice.auto.unwrap().judged_secs >= f64::from(AUTO_WINDOW_SECS));
        assert_eq!(got, vec![a, z]);
    }

    #[test]
    fn silence_on_both_channels_is_mixed() {
        let z = vec![0.0; 20 * RATE as usize];
        let (c, _) = run(&z, &z);
        assert_eq!(c.choice().unwrap().channels, None);
    }

    #[test]
    fn nothing_comes_out_before_the_decision() {
        let (a, b) = turns(10);
        let mut c = Chooser::new(&Lanes::Judge);
        let mut out = Vec::new();
        c.push(&[&a, &b]);
        assert_eq!(c.take(&mut out, usize::MAX), 0);
        c.finish();
        assert_eq!(c.take(&mut out, usize::MAX), a.len());
    }
}

/// For the fuzz target `fuzz/fuzz_targets/channels.rs` only: not part of the API.
#[doc(hidden)]
pub mod __fuzz {
    use super::ChannelMode;
    use crate::decode::Decoder;
    use crate::stream::{TrackOptions, TrackStream};

    /// Decodes `data` into the tracks `mode` chooses, up to `cap` samples per track,
    /// checking that blocks follow each other on the timeline and that every track of a
    /// block has the same length. Errors of the input end the run.
    pub fn tracks(data: &[u8], mode: &ChannelMode, cap: u64) {
        let Ok(d) = Decoder::from_reader(std::io::Cursor::new(data.to_vec()), None) else {
            return;
        };
        let Ok(lanes) = super::lanes(mode, d.info().channels.get()) else {
            return;
        };
        let Ok(mut s) = TrackStream::new(Box::new(d), &lanes, None, TrackOptions::default()) else {
            return;
        };
        let mut next = 0u64;
        while next < cap {
            match s.next_block() {
                Ok(Some(b)) => {
                    assert_eq!(b.start, next, "a block off the timeline");
                    let n = b.len();
                    assert!(
                        b.tracks.iter().all(|t| t.len() == n),
                        "tracks of unequal length"
                    );
                    assert!(b.tracks.iter().flatten().all(|v| v.is_finite()));
                    next += n as u64;
                }
                Ok(None) | Err(_) => {
                    // Everything decoded was handed out, exactly, whether the input ended
                    // or broke; after the end or the error, nothing more.
                    let want = crate::time::rescale(s.frames_in(), s.rate_in());
                    assert_eq!(next, want, "samples handed out vs frames decoded");
                    assert!(matches!(s.next_block(), Ok(None)), "output after the end");
                    break;
                }
            }
        }
    }
}
