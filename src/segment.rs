//! Speech segmentation: 16 kHz mono slices in, [`Segment`]s of at most 60 s out.
//!
//! [`Segmenter`] is a state machine with no I/O: push slices of any size, get segments
//! `[start, end)` in samples on the original timeline (sample `k` is time `k / 16000` s), then
//! [`Segmenter::finish`]. The same audio pushed in different slice sizes gives the same
//! segments. [`Cutter`] adds a bounded ring of audio and hands out each segment with its
//! samples; [`SegmentPlan`] is the JSON manifest of a run (or its "no speech" outcome).
//!
//! # How segments are made
//! Frames of 30 ms ([`crate::vad::FRAME`]) are classified by [`crate::vad::VoiceDetector`]
//! (energy gate, level-normalised WebRTC VAD, music / tone check). Then:
//! - a *run* of speech opens at the first voiced frame and closes once
//!   [`SegmenterOptions::min_silence`] of unvoiced frames follow its last voiced frame;
//! - a run with fewer than [`SegmenterOptions::min_speech`] of voiced frames is a blip and is
//!   dropped;
//! - each kept run is padded by [`SegmenterOptions::padding`] on both sides; when two runs are
//!   closer than twice the padding, the gap is shared (the segments then touch) at the boundary
//!   between its two adjacent quietest frames, ties to the middle: in digital silence that is
//!   the middle, in noise it keeps the cut out of word ends fading under the noise;
//! - a run that would exceed [`SegmenterOptions::max_len`] (padding included) is split at the
//!   longest pause (unvoiced frames; ties go to the quieter, then the later pause) in the second
//!   half of the allowed window, between the pause's two adjacent quietest frames (its middle
//!   when it has only one frame), or, when there is no pause at all, at the middle of the
//!   quietest frame. Every piece is ≤ `max_len`; the piece boundaries touch;
//! - with [`Packing::Packed`], neighbouring segments are merged while the merged segment stays
//!   ≤ `target` and the silence between them is ≤ [`SegmenterOptions::max_pack_gap`].
//!
//! # Defaults
//! `max_len` 30 s (never above [`MAX_SEGMENT`] = 60 s), `min_silence` 300 ms, `padding` 300 ms,
//! `min_speech` 120 ms, `packing` [`Packing::Utterance`], `max_pack_gap` 1.5 s, VAD as
//! [`crate::vad::VadOptions::default`].
//!
//! # Memory and latency bound
//! The segmenter keeps O(`max_len` / 30 ms) frame decisions and no audio. After pushing up to
//! position `p`, every segment still to come starts at ≥ `p − `[`Segmenter::lookback`], where
//! `lookback = max_len + target (Packed only) + 2·padding + (min_speech_frames + 1)·(min_silence
//! + 30 ms) + 14·30 ms`; with the defaults that is about 32.5 s. A caller therefore needs to
//! keep only the last `lookback` samples of audio ([`Cutter`] does exactly that).

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::export::write_atomic;
use crate::time::{self, Samples, RATE};
use crate::vad::{FrameInfo, VadOptions, VoiceDetector, DELAY_FRAMES, FRAME, FRAME_U64};
use crate::{Error, ErrorKind, Result};

/// The longest segment the synchronous API accepts, padding included: 60.0 s.
pub const MAX_SEGMENT: Samples = 60 * RATE as Samples;

const MS: Samples = RATE as Samples / 1000;
/// Initial capacity of the frame-energy history (enough for the default padding).
const RECENT_FRAMES: usize = 24;

/// A stretch of speech on the original timeline, `[start, end)` in samples at 16 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// First sample, inclusive.
    pub start: Samples,
    /// One past the last sample.
    pub end: Samples,
    /// Fraction of the segment's duration that was voiced frames (0 to 1).
    pub speech_ratio: f32,
}

impl Segment {
    /// Length in samples.
    pub fn len(&self) -> Samples {
        self.end.saturating_sub(self.start)
    }

    /// True for a zero-length segment (never emitted by the segmenter).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How utterances become segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Packing {
    /// One utterance (run of speech) per segment: good for subtitles. The default.
    #[default]
    Utterance,
    /// Neighbouring utterances merged while the segment stays ≤ `target` samples (padding
    /// included): fewer, longer requests. `target` must be ≤ `max_len`.
    Packed {
        /// The longest merged segment, in samples.
        target: Samples,
    },
}

/// Options of the [`Segmenter`]; every field has a documented default.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SegmenterOptions {
    /// Longest segment, padding included, in samples. Default 30 s; at most [`MAX_SEGMENT`]
    /// (60 s), at least 2 s + 2 × `padding`.
    pub max_len: Samples,
    /// Unvoiced time that ends a run of speech. Default 300 ms; at least one frame (30 ms).
    pub min_silence: Samples,
    /// Silence kept before and after each run. Default 300 ms (real speech fades out over
    /// 200 ms and more); at most 2 s.
    pub padding: Samples,
    /// Runs with less voiced time than this are dropped as blips. Default 120 ms; at most 2 s.
    pub min_speech: Samples,
    /// Packing policy. Default [`Packing::Utterance`].
    pub packing: Packing,
    /// [`Packing::Packed`] never merges across more silence than this. Default 1.5 s; at most
    /// [`MAX_SEGMENT`] (60 s: a longer gap could never be merged anyway).
    pub max_pack_gap: Samples,
    /// Frame-level detector options. Default [`VadOptions::default`].
    pub vad: VadOptions,
}

impl Default for SegmenterOptions {
    fn default() -> Self {
        SegmenterOptions {
            max_len: 30 * RATE as Samples,
            min_silence: 300 * MS,
            padding: 300 * MS,
            min_speech: 120 * MS,
            packing: Packing::Utterance,
            max_pack_gap: 1500 * MS,
            vad: VadOptions::default(),
        }
    }
}

impl SegmenterOptions {
    /// Checks the options; every violation is an [`ErrorKind::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        let secs = |s: Samples| time::to_secs(s);
        if self.max_len > MAX_SEGMENT {
            return Err(Error::config(format!(
                "segment max_len {:.3} s exceeds the API limit of 60.0 s (padding included)",
                secs(self.max_len)
            )));
        }
        if self.padding > 2 * RATE as Samples {
            return Err(Error::config(format!(
                "segment padding {:.3} s is above 2 s",
                secs(self.padding)
            )));
        }
        if self.max_len < 2 * RATE as Samples + 2 * self.padding {
            return Err(Error::config(format!(
                "segment max_len {:.3} s is below 2 s + twice the padding",
                secs(self.max_len)
            )));
        }
        if self.min_silence < FRAME_U64 || self.min_silence > 10 * RATE as Samples {
            return Err(Error::config(format!(
                "segment min_silence {:.3} s must be between 30 ms and 10 s",
                secs(self.min_silence)
            )));
        }
        if self.min_speech > 2 * RATE as Samples {
            return Err(Error::config(format!(
                "segment min_speech {:.3} s is above 2 s",
                secs(self.min_speech)
            )));
        }
        if let Packing::Packed { target } = self.packing {
            if target == 0 || target > self.max_len {
                return Err(Error::config(format!(
                    "packing target {:.3} s must be above 0 and at most max_len {:.3} s",
                    secs(target),
                    secs(self.max_len)
                )));
            }
        }
        if self.max_pack_gap > MAX_SEGMENT {
            return Err(Error::config(format!(
                "segment max_pack_gap {:.3} s is above 60 s",
                secs(self.max_pack_gap)
            )));
        }
        if self.vad.aggressiveness > 3 {
            return Err(Error::config(format!(
                "VAD aggressiveness must be 0 to 3, got {}",
                self.vad.aggressiveness
            )));
        }
        Ok(())
    }

    fn min_speech_frames(&self) -> u64 {
        self.min_speech.div_ceil(FRAME_U64).max(1)
    }

    fn min_silence_frames(&self) -> u64 {
        self.min_silence.div_ceil(FRAME_U64).max(1)
    }
}

/// Frame counts of a run so far: what the input was made of. Used for the "no speech" reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameStats {
    /// Frames analysed (30 ms each; the last one may be partial).
    pub frames: u64,
    /// Frames judged speech.
    pub voiced: u64,
    /// Frames flagged by the music / tone check.
    pub music: u64,
    /// Frames near the noise floor or digital silence.
    pub quiet: u64,
    /// Segments emitted.
    pub segments: u64,
}

/// Why a run produced no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoSpeech {
    /// No audio at all.
    Empty,
    /// Silence or steady noise only.
    Silence,
    /// Mostly music, tones or hold music.
    Music,
    /// Sound that is neither speech nor music (noise, clicks, blips too short to be speech).
    NoSpeechFound,
}

impl fmt::Display for NoSpeech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoSpeech::Empty => "no speech: the input has no audio",
            NoSpeech::Silence => "no speech: the input is silence or steady noise",
            NoSpeech::Music => "no speech: the input is music, tones or hold music",
            NoSpeech::NoSpeechFound => "no speech found in the input",
        })
    }
}

impl FrameStats {
    /// The "no speech" reason when no segment was emitted, `None` otherwise.
    pub fn no_speech(&self) -> Option<NoSpeech> {
        if self.segments > 0 {
            None
        } else if self.frames == 0 {
            Some(NoSpeech::Empty)
        } else if self.music * 2 >= self.frames.saturating_sub(self.quiet).max(1) && self.music > 0
        {
            Some(NoSpeech::Music)
        } else if self.quiet * 10 >= self.frames * 9 {
            Some(NoSpeech::Silence)
        } else {
            Some(NoSpeech::NoSpeechFound)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Hist {
    voiced: bool,
    db: f32,
}

#[derive(Debug)]
struct Run {
    /// Start of the current piece (padded, shared middle, or a forced cut).
    piece_start: Samples,
    /// Start of the first voiced frame of the run.
    speech_start: Samples,
    /// End of the last voiced frame.
    last_voiced_end: Samples,
    /// Voiced frames in the current piece.
    voiced: u64,
    /// The run has enough voiced frames to be kept.
    valid: bool,
    /// The current piece began at a forced cut.
    cut_start: bool,
    /// Frame index of `hist[0]`.
    hist_base: u64,
    hist: VecDeque<Hist>,
}

/// A piece whose end is not decided yet (waiting to know whether the next run is close).
#[derive(Debug, Clone, Copy)]
struct Pending {
    start: Samples,
    speech_end: Samples,
    voiced: u64,
}

#[derive(Debug, Clone, Copy)]
struct Acc {
    start: Samples,
    end: Samples,
    voiced: u64,
}

/// The segmentation state machine. Not `Send` (it owns a WebRTC VAD): one per worker thread.
#[derive(Debug)]
pub struct Segmenter {
    opts: SegmenterOptions,
    det: VoiceDetector,
    carry: Vec<f32>,
    pushed: Samples,
    /// Index of the next frame to receive a decision.
    next_frame: u64,
    run: Option<Run>,
    pending: Option<Pending>,
    acc: Option<Acc>,
    /// End of the last committed segment piece: later segments start at or after it.
    floor: Samples,
    stats: FrameStats,
    infos: Vec<FrameInfo>,
    /// Energy (dB) of the last frames, newest at the back: where to share a short gap.
    recent_db: VecDeque<f32>,
    finished: bool,
}

impl Segmenter {
    /// A segmenter with the given options (checked by [`SegmenterOptions::validate`]).
    pub fn new(opts: SegmenterOptions) -> Result<Self> {
        opts.validate()?;
        Ok(Segmenter {
            det: VoiceDetector::new(opts.vad.clone())?,
            opts,
            carry: Vec::with_capacity(FRAME),
            pushed: 0,
            next_frame: 0,
            run: None,
            pending: None,
            acc: None,
            floor: 0,
            stats: FrameStats::default(),
            infos: Vec::with_capacity(4),
            recent_db: VecDeque::with_capacity(RECENT_FRAMES),
            finished: false,
        })
    }

    /// The options in use.
    pub fn options(&self) -> &SegmenterOptions {
        &self.opts
    }

    /// The latency / memory bound in samples: after pushing up to position `p`, every segment
    /// still to come starts at ≥ `p − lookback()` (see the module docs for the formula).
    pub fn lookback(&self) -> Samples {
        let o = &self.opts;
        let target = match o.packing {
            Packing::Packed { target } => target,
            Packing::Utterance => 0,
        };
        let silence = o.min_silence_frames() * FRAME_U64;
        o.max_len
            + target
            + 2 * o.padding
            + (o.min_speech_frames() + 1) * (silence + FRAME_U64)
            + (DELAY_FRAMES as u64 + 2) * FRAME_U64
    }

    /// Samples pushed so far: the current position on the timeline.
    pub fn position(&self) -> Samples {
        self.pushed
    }

    /// Frame counts so far (for the "no speech" reason, see [`FrameStats::no_speech`]).
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// Feeds the next samples (16 kHz mono, any slice size, continuing the timeline) and
    /// appends every segment that is now final to `out`. Ignored after [`Segmenter::finish`].
    pub fn push(&mut self, mut samples: &[f32], out: &mut Vec<Segment>) {
        if self.finished {
            return;
        }
        self.pushed += samples.len() as u64;
        if !self.carry.is_empty() {
            let take = (FRAME - self.carry.len()).min(samples.len());
            let (head, rest) = samples.split_at(take);
            self.carry.extend_from_slice(head);
            samples = rest;
            if self.carry.len() == FRAME {
                let frame = std::mem::take(&mut self.carry);
                self.feed_frame(&frame, out);
                self.carry = frame;
                self.carry.clear();
            }
        }
        let mut chunks = samples.chunks_exact(FRAME);
        for frame in &mut chunks {
            self.feed_frame(frame, out);
        }
        self.carry.extend_from_slice(chunks.remainder());
    }

    /// Ends the input: decides the held-back frames and appends every remaining segment. The
    /// last segment ends at most at the total pushed length. Further pushes are ignored.
    pub fn finish(&mut self, out: &mut Vec<Segment>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if !self.carry.is_empty() {
            let frame = std::mem::take(&mut self.carry);
            self.feed_frame(&frame, out);
        }
        let mut infos = std::mem::take(&mut self.infos);
        infos.clear();
        self.det.flush(&mut infos);
        for info in infos.drain(..) {
            self.on_frame(info, out);
        }
        self.infos = infos;
        let total = self.pushed;
        if let Some(run) = self.run.take() {
            if run.valid || run.cut_start {
                self.commit_pending(run.speech_start, run.piece_start, out);
                self.pending = Some(Pending {
                    start: run.piece_start,
                    speech_end: run.last_voiced_end,
                    voiced: run.voiced,
                });
            }
        }
        if let Some(p) = self.pending.take() {
            let end = (p.speech_end + self.opts.padding).min(total);
            self.emit(p.start, end, p.voiced, out);
        }
        if let Some(a) = self.acc.take() {
            self.output(a, out);
        }
    }

    fn feed_frame(&mut self, frame: &[f32], out: &mut Vec<Segment>) {
        if let Some(info) = self.det.push_frame(frame) {
            self.on_frame(info, out);
        }
    }

    fn on_frame(&mut self, f: FrameInfo, out: &mut Vec<Segment>) {
        let k = self.next_frame;
        self.next_frame += 1;
        if self.recent_db.len() >= self.recent_frames() {
            self.recent_db.pop_front();
        }
        self.recent_db.push_back(f.db);
        let a = k * FRAME_U64;
        let b = a + FRAME_U64;
        self.stats.frames += 1;
        self.stats.voiced += u64::from(f.voiced);
        self.stats.music += u64::from(f.music);
        self.stats.quiet += u64::from(f.quiet);
        let pad = self.opts.padding;
        let h = Hist {
            voiced: f.voiced,
            db: f.db,
        };

        match self.run.as_mut() {
            None => {
                if f.voiced {
                    let piece_start = self.padded_start(a);
                    let mut hist = VecDeque::with_capacity(64);
                    hist.push_back(h);
                    self.run = Some(Run {
                        piece_start,
                        speech_start: a,
                        last_voiced_end: b,
                        voiced: 1,
                        valid: false,
                        cut_start: false,
                        hist_base: k,
                        hist,
                    });
                }
            }
            Some(run) => {
                run.hist.push_back(h);
                let need_cut = f.voiced && b + pad > run.piece_start + self.opts.max_len;
                let close = !f.voiced
                    && b - run.last_voiced_end >= self.opts.min_silence_frames() * FRAME_U64;
                if need_cut {
                    self.force_cut(a, out);
                }
                if f.voiced {
                    if let Some(run) = self.run.as_mut() {
                        run.last_voiced_end = b;
                        run.voiced += 1;
                    }
                } else if close {
                    if let Some(run) = self.run.take() {
                        if run.valid || run.cut_start {
                            self.commit_pending(run.speech_start, run.piece_start, out);
                            self.pending = Some(Pending {
                                start: run.piece_start,
                                speech_end: run.last_voiced_end,
                                voiced: run.voiced,
                            });
                        }
                    }
                }
            }
        }

        // Validation of a young run commits the previous piece's end.
        let min_frames = self.opts.min_speech_frames();
        let validate = match self.run.as_mut() {
            Some(run) if !run.valid && (run.voiced >= min_frames || run.cut_start) => {
                run.valid = true;
                Some((run.speech_start, run.piece_start))
            }
            _ => None,
        };
        if let Some((s, shared)) = validate {
            self.commit_pending(s, shared, out);
        }

        // A pending end is final once no run can start within twice the padding.
        if let Some(p) = self.pending {
            let horizon = p.speech_end + 2 * pad;
            let next_possible = self.run.as_ref().map_or(b, |r| r.speech_start);
            if next_possible >= horizon {
                self.pending = None;
                self.emit(p.start, p.speech_end + pad, p.voiced, out);
            }
        }

        // Packed: flush the accumulated segment once nothing to come can join it.
        if let (Some(acc), Packing::Packed { target }) = (self.acc, self.opts.packing) {
            let next_lb = match (&self.pending, &self.run) {
                (Some(p), _) => Some(p.start),
                (None, Some(r)) => Some(r.piece_start),
                (None, None) => Some(b.saturating_sub(pad).max(self.floor)),
            };
            if let Some(lb) = next_lb {
                if lb >= acc.start + target || lb > acc.end + self.opts.max_pack_gap {
                    self.acc = None;
                    self.output(acc, out);
                }
            }
        }

        // Keep the history bounded even when a run stays open without voiced frames.
        if let Some(run) = self.run.as_mut() {
            let keep = (self.opts.max_len / FRAME_U64 + 2) as usize;
            while run.hist.len() > keep {
                run.hist.pop_front();
                run.hist_base += 1;
            }
        }
    }

    /// Frames of energy history kept: a shared gap is shorter than twice the padding.
    fn recent_frames(&self) -> usize {
        usize::try_from(2 * self.opts.padding / FRAME_U64 + 3).unwrap_or(RECENT_FRAMES)
    }

    /// Padded start of a run whose first voiced frame starts at `s`.
    fn padded_start(&self, s: Samples) -> Samples {
        let pad = self.opts.padding;
        let start = match self.pending {
            Some(p) if s < p.speech_end + 2 * pad => self.share_point(p.speech_end, s),
            _ => s.saturating_sub(pad),
        };
        start.max(self.floor)
    }

    /// Where two runs closer than twice the padding share the gap `[from, to)` (frame
    /// boundaries, `to` the start of the newest frame): at the boundary between the two
    /// adjacent gap frames with the least energy, ties to the one nearest the middle; at the
    /// middle when the gap has fewer than two frames. In noise the gap's edges are word ends and
    /// starts buried under the noise, a little louder than the true pause, so its middle can
    /// fall inside a fading word; in digital silence this is the middle, to the frame.
    fn share_point(&self, from: Samples, to: Samples) -> Samples {
        let middle = from + (to - from) / 2;
        // Frame index of the newest frame in `recent_db` is `next_frame - 1`.
        let newest = self.next_frame.saturating_sub(1);
        let db = |frame: u64| -> Option<f32> {
            let back = newest.checked_sub(frame)?;
            let i = self
                .recent_db
                .len()
                .checked_sub(1 + usize::try_from(back).ok()?)?;
            self.recent_db.get(i).copied()
        };
        let (fa, fb) = (from / FRAME_U64, to / FRAME_U64);
        let mut best: Option<(f32, Samples, Samples)> = None;
        for m in fa + 1..fb {
            let (Some(x), Some(y)) = (db(m - 1), db(m)) else {
                continue;
            };
            let at = m * FRAME_U64;
            let key = (x + y, at.abs_diff(middle));
            if best.is_none_or(|(e, d, _)| key.0 < e || (key.0 == e && key.1 < d)) {
                best = Some((key.0, key.1, at));
            }
        }
        best.map_or(middle, |(_, _, at)| at)
    }

    /// Decides the end of the pending piece, now that a kept run starts at `s`.
    /// `shared` is the run's start, which [`Segmenter::padded_start`] put at the shared point
    /// when the gap is short.
    fn commit_pending(&mut self, s: Samples, shared: Samples, out: &mut Vec<Segment>) {
        if let Some(p) = self.pending.take() {
            let pad = self.opts.padding;
            let end = if s < p.speech_end + 2 * pad {
                shared
            } else {
                p.speech_end + pad
            };
            self.emit(p.start, end, p.voiced, out);
        }
    }

    /// Splits the open run before the voiced frame starting at `a`.
    fn force_cut(&mut self, a: Samples, out: &mut Vec<Segment>) {
        if let Some((s, shared)) = self
            .run
            .as_ref()
            .filter(|r| !r.valid)
            .map(|r| (r.speech_start, r.piece_start))
        {
            self.commit_pending(s, shared, out);
        }
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let limit = run.piece_start + self.opts.max_len;
        let hi = a.min(limit);
        let lo = (run.piece_start + self.opts.max_len / 2).min(hi);
        // Best pause: (length inside [lo, hi], -mean dB, position); cut at its middle.
        let mut best: Option<(Samples, f32, Samples)> = None;
        let mut quietest: Option<(f32, Samples)> = None;
        let mut i = 0usize;
        let n = run.hist.len();
        while i < n {
            let fa = (run.hist_base + i as u64) * FRAME_U64;
            let Some(hi_frame) = run.hist.get(i).copied() else {
                break;
            };
            if fa + FRAME_U64 <= lo || fa >= hi {
                i += 1;
                continue;
            }
            if fa >= lo && fa + FRAME_U64 <= hi && quietest.is_none_or(|(db, _)| hi_frame.db <= db)
            {
                quietest = Some((hi_frame.db, fa + FRAME_U64 / 2));
            }
            if hi_frame.voiced {
                i += 1;
                continue;
            }
            let mut j = i;
            let mut sum_db = 0f32;
            while let Some(x) = run.hist.get(j) {
                if x.voiced {
                    break;
                }
                sum_db += x.db;
                j += 1;
            }
            let ps = fa.max(lo);
            let pe = ((run.hist_base + j as u64) * FRAME_U64).min(hi);
            if pe > ps {
                let len = pe - ps;
                let mean = sum_db / (j - i) as f32;
                // Cut between the two adjacent frames of the pause (inside the window) with the
                // least energy: in noise a pause's edges are word ends and starts buried under
                // the noise, a little louder than the true gap, so the pause's middle can fall
                // inside a fading word; the quietest pair is the best guess of the gap. Falls
                // back to the middle when fewer than two frames of the pause are in the window.
                let mut quietest_pair: Option<(f32, Samples)> = None;
                let mut prev: Option<f32> = None;
                for k in i..j {
                    let ka = (run.hist_base + k as u64) * FRAME_U64;
                    let inside = ka >= lo && ka + FRAME_U64 <= hi;
                    let db = run.hist.get(k).map(|x| x.db).filter(|_| inside);
                    if let (Some(a), Some(b)) = (prev, db) {
                        if quietest_pair.is_none_or(|(q, _)| a + b <= q) {
                            quietest_pair = Some((a + b, ka));
                        }
                    }
                    prev = db;
                }
                let mid = quietest_pair.map_or(ps + len / 2, |(_, at)| at);
                let better = match best {
                    None => true,
                    Some((bl, bdb, _)) => len > bl || (len == bl && mean <= bdb),
                };
                if better {
                    best = Some((len, mean, mid));
                }
            }
            i = j.max(i + 1);
        }
        let cut = match (best, quietest) {
            (Some((_, _, mid)), _) => mid,
            (None, Some((_, mid))) => mid,
            (None, None) => hi,
        }
        .clamp(run.piece_start + 1, limit);

        // Split the history at the cut.
        let cut_frame = cut / FRAME_U64;
        let mut voiced_before = 0u64;
        let mut first_voiced_after: Option<Samples> = None;
        for (i, x) in run.hist.iter().enumerate() {
            let fi = run.hist_base + i as u64;
            if !x.voiced {
                continue;
            }
            if (fi + 1) * FRAME_U64 <= cut {
                voiced_before += 1;
            } else if first_voiced_after.is_none() {
                first_voiced_after = Some((fi * FRAME_U64).max(cut));
            }
        }
        let start = run.piece_start;
        let after = run.voiced.saturating_sub(voiced_before);
        run.piece_start = cut;
        run.speech_start = first_voiced_after.unwrap_or(a);
        run.voiced = after;
        run.cut_start = true;
        run.valid = true;
        while run.hist_base < cut_frame && !run.hist.is_empty() {
            run.hist.pop_front();
            run.hist_base += 1;
        }
        // The pending piece (if any) ended long before this run began: it was committed when
        // the run became valid. Emit the finished piece with its fixed end.
        self.emit(start, cut, voiced_before, out);
    }

    /// A piece is final: pass it to the packer.
    fn emit(&mut self, start: Samples, end: Samples, voiced: u64, out: &mut Vec<Segment>) {
        // The zero-padded final frame must not stretch a segment past the input.
        let end = end.min(self.pushed);
        let start = start.max(self.floor);
        if end <= start {
            return;
        }
        self.floor = end;
        let piece = Acc { start, end, voiced };
        match self.opts.packing {
            Packing::Utterance => self.output(piece, out),
            Packing::Packed { target } => match self.acc {
                Some(acc)
                    if piece.end - acc.start <= target
                        && piece.start.saturating_sub(acc.end) <= self.opts.max_pack_gap =>
                {
                    self.acc = Some(Acc {
                        start: acc.start,
                        end: piece.end,
                        voiced: acc.voiced + piece.voiced,
                    });
                }
                Some(acc) => {
                    self.acc = Some(piece);
                    self.output(acc, out);
                }
                None => self.acc = Some(piece),
            },
        }
    }

    fn output(&mut self, a: Acc, out: &mut Vec<Segment>) {
        let len = a.end - a.start;
        let ratio = ((a.voiced * FRAME_U64) as f64 / len as f64).min(1.0) as f32;
        self.stats.segments += 1;
        out.push(Segment {
            start: a.start,
            end: a.end,
            speech_ratio: ratio,
        });
    }
}

/// A [`Segmenter`] with a bounded ring of audio: hands out each segment with its samples.
///
/// Memory: at most [`Segmenter::lookback`] + 1 s of samples, whatever the input length.
#[derive(Debug)]
pub struct Cutter {
    seg: Segmenter,
    ring: VecDeque<f32>,
    /// Timeline position of `ring[0]`.
    ring_start: Samples,
    keep: usize,
    segs: Vec<Segment>,
}

/// Input is fed to the segmenter in chunks of at most this many samples (1 s), which bounds the
/// ring to `lookback + CHUNK`.
const CHUNK: usize = RATE as usize;

impl Cutter {
    /// A cutter with the given segmenter options.
    pub fn new(opts: SegmenterOptions) -> Result<Self> {
        let seg = Segmenter::new(opts)?;
        let keep = usize::try_from(seg.lookback()).unwrap_or(usize::MAX);
        Ok(Cutter {
            seg,
            ring: VecDeque::with_capacity(keep.saturating_add(CHUNK).min(1 << 22)),
            ring_start: 0,
            keep,
            segs: Vec::new(),
        })
    }

    /// The segmenter inside (options, stats, position).
    pub fn segmenter(&self) -> &Segmenter {
        &self.seg
    }

    /// Samples of audio held right now (bounded by `lookback + 1 s`).
    pub fn buffered(&self) -> usize {
        self.ring.len()
    }

    /// Feeds samples; appends each segment that is now final with a copy of its audio.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<(Segment, Vec<f32>)>) {
        for chunk in samples.chunks(CHUNK) {
            self.ring.extend(chunk.iter().copied());
            self.seg.push(chunk, &mut self.segs);
            self.drain(out);
            let excess = self.ring.len().saturating_sub(self.keep);
            self.ring.drain(..excess);
            self.ring_start += excess as u64;
        }
    }

    /// Ends the input and appends the remaining segments with their audio.
    pub fn finish(&mut self, out: &mut Vec<(Segment, Vec<f32>)>) {
        self.seg.finish(&mut self.segs);
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<(Segment, Vec<f32>)>) {
        for s in self.segs.drain(..) {
            let from = s.start.saturating_sub(self.ring_start) as usize;
            let to = (s.end.saturating_sub(self.ring_start) as usize).min(self.ring.len());
            let audio: Vec<f32> = self.ring.range(from.min(to)..to).copied().collect();
            out.push((s, audio));
        }
    }
}

/// One entry of a [`SegmentPlan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSegment {
    /// 0-based position in the plan.
    pub index: usize,
    /// Start in milliseconds (rounded to nearest).
    pub start_ms: u64,
    /// End in milliseconds (rounded to nearest).
    pub end_ms: u64,
    /// Start in samples at 16 kHz (exact).
    pub start_sample: Samples,
    /// End in samples at 16 kHz, exclusive (exact).
    pub end_sample: Samples,
    /// Fraction of the segment that was voiced frames.
    pub speech_ratio: f32,
    /// The segment's audio file, relative to the manifest, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The segmentation of one input: a JSON manifest, or a "no speech" outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentPlan {
    /// The input's name (file path or URL) as the caller gave it.
    pub source: Option<String>,
    /// The input's container / codec as decoded (e.g. `"mp3"`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_codec: Option<String>,
    /// The input's native sample rate in Hz, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sample_rate: Option<u32>,
    /// The input's channel count (downmixed to mono before segmentation), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_channels: Option<u16>,
    /// Sample rate of the sample positions: always 16000.
    pub sample_rate: u32,
    /// Input length in samples at 16 kHz.
    pub total_samples: Samples,
    /// Input length in milliseconds.
    pub total_ms: u64,
    /// The segments, in order, non-overlapping.
    pub segments: Vec<PlannedSegment>,
    /// Why there are no segments (`None` when there are some).
    pub no_speech: Option<NoSpeech>,
    /// Frame counts of the analysis.
    pub stats: FrameStats,
}

impl SegmentPlan {
    /// Builds the plan of `segments` over an input of `total_samples`.
    pub fn new(
        source: Option<String>,
        segments: &[Segment],
        total_samples: Samples,
        stats: FrameStats,
    ) -> SegmentPlan {
        let segments: Vec<PlannedSegment> = segments
            .iter()
            .enumerate()
            .map(|(index, s)| PlannedSegment {
                index,
                start_ms: time::to_ms(s.start),
                end_ms: time::to_ms(s.end),
                start_sample: s.start,
                end_sample: s.end,
                speech_ratio: s.speech_ratio,
                file: None,
            })
            .collect();
        let no_speech = if segments.is_empty() {
            Some(stats.no_speech().unwrap_or(NoSpeech::NoSpeechFound))
        } else {
            None
        };
        SegmentPlan {
            source,
            source_codec: None,
            source_sample_rate: None,
            source_channels: None,
            sample_rate: RATE,
            total_samples,
            total_ms: time::to_ms(total_samples),
            segments,
            no_speech,
            stats,
        }
    }

    /// Segments the whole of `samples` (16 kHz mono) in one call.
    pub fn from_samples(
        source: Option<String>,
        samples: &[f32],
        opts: SegmenterOptions,
    ) -> Result<SegmentPlan> {
        let mut seg = Segmenter::new(opts)?;
        let mut out = Vec::new();
        seg.push(samples, &mut out);
        seg.finish(&mut out);
        Ok(SegmentPlan::new(source, &out, seg.position(), seg.stats()))
    }

    /// Records what the input was before decoding (codec, native rate, channels).
    pub fn with_source_info(
        mut self,
        codec: impl Into<String>,
        sample_rate: u32,
        channels: u16,
    ) -> SegmentPlan {
        self.source_codec = Some(codec.into());
        self.source_sample_rate = Some(sample_rate);
        self.source_channels = Some(channels);
        self
    }

    /// True when there is no segment: nothing to send to the API; see [`SegmentPlan::no_speech`].
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The file name used for segment `index` by [`SegmentPlan::write_segment_wav`]:
    /// `seg-00000.wav`.
    pub fn segment_file_name(index: usize) -> String {
        format!("seg-{index:05}.wav")
    }

    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| {
            Error::new(ErrorKind::Encode {
                what: format!("segment manifest: {e}"),
            })
        })
    }

    /// Parses a manifest written by [`SegmentPlan::to_json`].
    pub fn from_json(text: &str) -> Result<SegmentPlan> {
        serde_json::from_str(text).map_err(|e| {
            Error::new(ErrorKind::Malformed {
                path: None,
                what: format!("segment manifest: {e}"),
            })
        })
    }

    /// Writes the manifest to `path` (temp file + rename).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        write_atomic(path, |w| Ok(w.write_all(json.as_bytes())?))
    }

    /// Writes segment `index`'s audio (16 kHz samples of that segment, e.g. from [`Cutter`]) as
    /// `dir/seg-NNNNN.wav`, records the file name in the plan and returns the path.
    pub fn write_segment_wav(
        &mut self,
        dir: &Path,
        index: usize,
        samples: &[f32],
    ) -> Result<PathBuf> {
        let name = Self::segment_file_name(index);
        let path = dir.join(&name);
        let bytes = crate::encode::wav_bytes(samples, time::RATE_NZ);
        write_atomic(&path, |w| Ok(w.write_all(&bytes)?))?;
        if let Some(s) = self.segments.get_mut(index) {
            s.file = Some(name);
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_above_sixty_seconds_are_rejected() {
        let o = SegmenterOptions {
            max_len: MAX_SEGMENT + 1,
            ..SegmenterOptions::default()
        };
        assert!(matches!(
            Segmenter::new(o).unwrap_err().kind(),
            ErrorKind::InvalidConfig { .. }
        ));
        let o = SegmenterOptions {
            max_len: MAX_SEGMENT,
            packing: Packing::Packed {
                target: MAX_SEGMENT + 1,
            },
            ..SegmenterOptions::default()
        };
        assert!(Segmenter::new(o).is_err());
        let o = SegmenterOptions {
            max_len: MAX_SEGMENT,
            ..SegmenterOptions::default()
        };
        assert!(Segmenter::new(o).is_ok());
    }

    #[test]
    fn absurd_max_pack_gap_is_rejected() {
        for gap in [MAX_SEGMENT + 1, u64::MAX] {
            let o = SegmenterOptions {
                max_pack_gap: gap,
                packing: Packing::Packed {
                    target: 20 * RATE as Samples,
                },
                ..SegmenterOptions::default()
            };
            let e = Segmenter::new(o).unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::InvalidConfig { .. }), "{e}");
            assert!(e.to_string().contains("max_pack_gap"), "{e}");
        }
        for gap in [0, MAX_SEGMENT] {
            let o = SegmenterOptions {
                max_pack_gap: gap,
                ..SegmenterOptions::default()
            };
            assert!(Segmenter::new(o).is_ok());
        }
    }

    #[test]
    fn silence_gives_no_speech() {
        let plan =
            SegmentPlan::from_samples(None, &vec![0.0; 16_000 * 3], SegmenterOptions::default())
                .unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.no_speech, Some(NoSpeech::Silence));
        let plan = SegmentPlan::from_samples(None, &[], SegmenterOptions::default()).unwrap();
        assert_eq!(plan.no_speech, Some(NoSpeech::Empty));
    }

    #[test]
    fn wav_bytes_round_trip() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 / 1000.0) - 0.5).collect();
        // Segments are written with the crate's one WAV encoder.
        let bytes = crate::encode::wav_bytes(&x, time::RATE_NZ);
        let r = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(r.spec().sample_rate, RATE);
        let back: Vec<i16> = r.into_samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(back.len(), 1000);
        // The encoder's scale is 32768: 0.999 → 32735.2 → 32735 (32767 would give 32734).
        assert_eq!(back[0], -16384);
        let y = crate::encode::wav_bytes(&[0.999], time::RATE_NZ);
        assert_eq!(i16::from_le_bytes([y[44], y[45]]), 32735);
    }
}
