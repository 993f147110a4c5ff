//! Speech segmentation: 16 kHz mono slices in, [`Segment`]s (API requests) of at most 60 s out.
//!
//! [`Segmenter`] is a state machine with no I/O: push slices of any size, get segments on the
//! original timeline (sample `k` is time `k / 16000` s), then [`Segmenter::finish`]. The same
//! audio pushed in different slice sizes gives the same segments. [`Cutter`] adds a bounded ring
//! of audio and hands out each segment with the audio to send; [`SegmentPlan`] is the JSON
//! manifest of a run (or its "no speech" outcome).
//!
//! # How segments are made
//! 1. **Frames.** Each 32 ms frame ([`crate::vad::FRAME`]) is classified by
//!    [`crate::vad::VoiceDetector`] (energy gate, level-normalised Silero speech model, tone
//!    check).
//! 2. **Utterances.** A run of speech opens at the first voiced frame and closes once
//!    [`SegmenterOptions::min_silence`] of unvoiced frames follow its last voiced frame. A run
//!    with less than [`SegmenterOptions::min_speech`] of voiced frames is a blip and is dropped.
//!    With [`crate::vad::VadOptions::reject_music`] (the default) a run whose level stays
//!    within 5 dB from its second voiced frame to its last, and that runs straight into
//!    sound the model does not call speech (not one frame quiet for `min_silence`, and not
//!    the word's own fading end sinking into the noise), is dropped too: it is the first
//!    notes of music that the model took for speech (speech rises and falls with its
//!    syllables, and a pause or the next word follows it). Pieces after a forced cut and a
//!    run at the very end of the input are always kept.
//!    A run whose padded length would pass [`SegmenterOptions::max_len`] (a stretch of speech
//!    with no pause as long as `min_silence`) is cut at its longest pause in the second half of
//!    the allowed window (the pause with the most frames at the noise floor first, then the
//!    longest, then the quieter, then the later: where the model lets go of loud speech for
//!    a few frames is no pause), between the pause's two
//!    quietest adjacent frames, or, with no pause at all, in the quietest frame. This is the
//!    only place where an utterance is ever split.
//!
//!    An utterance's end is moved out over the loud frames right after its last voiced frame
//!    (a word end the model has let go of), and, in noise, by up to 160 ms more at a request's
//!    end (inside a request the gap after it is kept from the end as heard). Its *fading
//!    end* is measured too: the frames after the last voiced one that are still 6 dB above the
//!    noise floor (as it was when the utterance began) and keep falling (under the loudest of
//!    its last voiced frames + 3 dB − 1 dB per frame, and 1 dB under the frames 256 ms before;
//!    music, steady noise or a new onset does not fall), at most 1 s. Closing an utterance
//!    waits for its fading end (speech after a pause of `min_silence` still opens a new
//!    utterance), and a request that ends with the utterance ends no earlier than it (a studio's reverberation takes 0.5–1 s to fall
//!    40 dB, and the speech model lets go of it at once).
//! 3. **Requests.** [`Packing::Utterance`] sends each utterance alone, padded by
//!    [`SegmenterOptions::padding`] on both sides (a gap shorter than twice the padding is
//!    shared at its quietest point, so neighbours touch; on a noisy line, below 25 dB SNR,
//!    the word before keeps 160 ms after its end as heard and the rest goes to the next
//!    utterance, whose soft start the noise buries). [`Packing::Packed`] collects
//!    neighbouring utterances into one request while its *billed* length (the audio actually
//!    sent) stays within `target`:
//!    - silence between two utterances of a request longer than
//!      [`SegmenterOptions::max_gap`] is shortened to `max_gap` (its middle is left out; 70 %
//!      of what is kept follows the word end, or the word's whole fading end when longer); the
//!      segment's [`Segment::kept`] time map records which stretches of the original timeline
//!      were sent, so the segment's `start` and `end` stay on the original timeline;
//!    - when the next utterance does not fit, the request is closed at the **longest gap**
//!      between its utterances among the cut points that leave it at least half full (a turn
//!      change, about 1 s, wins over a pause inside a turn, 0.2–0.5 s); never at a shorter gap
//!      when the window offers a longer one;
//!    - a gap longer than [`SegmenterOptions::max_pack_gap`] always ends the request (so one
//!      request never spans dead air or hold music, and its text keeps a useful time span);
//!    - a request's span on the original timeline stays within `2 × max_len`.
//!
//! Every request's billed length is ≤ `max_len` ≤ [`MAX_SEGMENT`] (60 s), padding included.
//!
//! # Defaults
//! `max_len` 60 s, `target` of [`Packing::Packed`] chosen by the caller (the pipeline uses
//! 30 s), `min_silence` 300 ms, `padding` 300 ms, `max_gap` 200 ms, `min_speech` 120 ms,
//! `packing` [`Packing::Utterance`], `max_pack_gap` 1.5 s, VAD as
//! [`crate::vad::VadOptions::default`].
//!
//! # Memory and latency bound
//! The segmenter keeps O(`max_len` / 32 ms) frame decisions and no audio. After pushing up to
//! position `p`, every segment still to come starts at ≥ `p − `[`Segmenter::lookback`] (about
//! 186 s with the defaults). A caller therefore needs to keep only the last `lookback` samples of
//! audio ([`Cutter`] does exactly that).

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::{self, Samples, TimeMap, RATE};
use crate::vad::{Analysed, FrameInfo, VadOptions, VoiceDetector, DELAY_FRAMES, FRAME, FRAME_U64};
use crate::{Error, Result};

mod cutter;
mod pack;
mod plan;

pub use cutter::Cutter;
pub use plan::{PlannedSegment, SegmentPlan};

use pack::{Packer, Utt};

/// The longest segment the synchronous API accepts, padding included: 60.0 s.
pub const MAX_SEGMENT: Samples = 60 * RATE as Samples;

const MS: Samples = RATE as Samples / 1000;
/// The most frames an utterance's edge is moved out over loud frames the model did not call
/// speech (320 ms).
const EDGE_FRAMES: usize = 10;
/// The most frames of a word's fading end kept after the last voiced frame of the last
/// utterance of a request (1 s: a studio's reverberation takes 0.5–1 s to fall 40 dB).
const TAIL_FRAMES: u64 = 32;
/// A fading end stays under the loudest of the utterance's last voiced frames by this much
/// plus [`TAIL_DECAY_DB`] per frame: sound that does not keep falling (music after a turn, a
/// new onset) is not a word's end.
const TAIL_HEADROOM_DB: f32 = 3.0;
/// See [`TAIL_HEADROOM_DB`]: 1 dB per 32 ms frame, 31 dB per second (reverberation falls
/// 60 dB in 0.3–1 s).
const TAIL_DECAY_DB: f32 = 1.0;
/// A word's fading end is sound at least this many dB above the noise floor as it was when
/// the utterance began (a 32 ms frame of steady noise varies by well under 1 dB; the running
/// floor itself creeps up during long speech).
const TAIL_MARGIN_DB: f32 = 6.0;
/// A fading end keeps falling: each frame is at least [`FALL_DB`] under the loudest of the
/// frames this many frames before it and the two before those (256–320 ms), so steady sound
/// (noise, a held note) is not taken for one.
const FALL_FRAMES: u64 = 8;
/// See [`FALL_FRAMES`]: 1 dB (reverberation falls 10 dB and more in that time, steady noise
/// flickers by well under 1 dB).
const FALL_DB: f32 = 1.0;
/// Voiced frames before the end whose loudest sets where a fading end starts.
const TAIL_REF_FRAMES: u64 = 4;
/// The most frames kept after an utterance's last frame in heavy noise (160 ms).
const NOISE_TAIL_FRAMES: usize = 5;
/// See [`Run::runs_into_sound`]: the most a run's level may vary, from its second voiced
/// frame to its last, for the run to be taken for the onset of music (5 dB).
const FLAT_RANGE_DB: f32 = 5.0;
/// Below this SNR a shared gap goes to the next utterance (see [`Segmenter::share_point`]).
const NOISY_GAP_SNR_DB: f32 = 25.0;
/// Initial capacity of the frame-energy history (enough for the default padding).
const RECENT_FRAMES: usize = 24;

/// One request: a stretch of the original timeline, `[start, end)` in samples at 16 kHz, and
/// the parts of it that are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// First sample, inclusive.
    pub start: Samples,
    /// One past the last sample.
    pub end: Samples,
    /// Fraction of the billed audio that was voiced frames (0 to 1).
    pub speech_ratio: f32,
    /// The stretches of `[start, end)` that are sent, in order: the request's audio is their
    /// concatenation (uploaded position ↔ original position). Long silences between utterances
    /// are left out; the first span starts at `start` and the last ends at `end`.
    pub kept: TimeMap,
}

impl Segment {
    /// A segment sending the whole of `[start, end)`.
    pub fn whole(start: Samples, end: Samples, speech_ratio: f32) -> Segment {
        let mut kept = TimeMap::new();
        // In order and non-overlapping by construction: cannot fail.
        let _ = kept.push(start, end.saturating_sub(start));
        Segment {
            start,
            end,
            speech_ratio,
            kept,
        }
    }

    /// Length of `[start, end)` on the original timeline, in samples.
    pub fn len(&self) -> Samples {
        self.end.saturating_sub(self.start)
    }

    /// Length of the audio sent (the billed length), in samples: at most [`Segment::len`].
    pub fn billed(&self) -> Samples {
        self.kept.uploaded_len()
    }

    /// True for a zero-length segment (never emitted by the segmenter).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How utterances become requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Packing {
    /// One utterance per segment: good for subtitles. The default.
    #[default]
    Utterance,
    /// Neighbouring utterances collected into one request while its billed length (padding and
    /// kept gaps included) stays ≤ `target` samples: fewer, fuller requests, little silence
    /// billed. `target` must be ≤ `max_len`.
    Packed {
        /// The longest billed request, in samples.
        target: Samples,
    },
}

/// Options of the [`Segmenter`]; every field has a documented default.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SegmenterOptions {
    /// Longest segment (billed audio, padding included), in samples. Default 60 s
    /// ([`MAX_SEGMENT`], the API's limit); at least 2 s + 2 × `padding`. A stretch of speech
    /// longer than this with no pause of `min_silence` is cut at its longest shorter pause.
    pub max_len: Samples,
    /// Unvoiced time that ends an utterance. Default 300 ms; at least one frame (32 ms).
    pub min_silence: Samples,
    /// Silence kept before and after each request (and each utterance with
    /// [`Packing::Utterance`]). Default 300 ms (real speech fades out over 200 ms and more);
    /// at most 2 s.
    pub padding: Samples,
    /// [`Packing::Packed`]: silence between two utterances of one request is shortened to this
    /// (its middle left out, the time map keeps the original times). Default 200 ms; at most
    /// 60 s (which keeps every gap whole).
    pub max_gap: Samples,
    /// Runs with less voiced time than this are dropped as blips. Default 120 ms; at most 2 s.
    pub min_speech: Samples,
    /// Packing policy. Default [`Packing::Utterance`].
    pub packing: Packing,
    /// [`Packing::Packed`] never joins utterances across more silence than this. Default 1.5 s;
    /// at most [`MAX_SEGMENT`] (60 s).
    pub max_pack_gap: Samples,
    /// Frame-level detector options. Default [`VadOptions::default`].
    pub vad: VadOptions,
}

impl Default for SegmenterOptions {
    fn default() -> Self {
        SegmenterOptions {
            max_len: MAX_SEGMENT,
            min_silence: 300 * MS,
            padding: 300 * MS,
            max_gap: 200 * MS,
            min_speech: 120 * MS,
            packing: Packing::Utterance,
            max_pack_gap: 1500 * MS,
            vad: VadOptions::default(),
        }
    }
}

impl SegmenterOptions {
    /// The pipeline's defaults for API requests: [`SegmenterOptions::default`] with
    /// [`Packing::Packed`] to a 30 s target (requests never above 60 s).
    pub fn requests() -> SegmenterOptions {
        SegmenterOptions {
            packing: Packing::Packed {
                target: 30 * RATE as Samples,
            },
            ..SegmenterOptions::default()
        }
    }

    /// Checks the options; every violation is an [`crate::ErrorKind::InvalidConfig`].
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
                "segment min_silence {:.3} s must be between 32 ms and 10 s",
                secs(self.min_silence)
            )));
        }
        if self.min_speech > 2 * RATE as Samples {
            return Err(Error::config(format!(
                "segment min_speech {:.3} s is above 2 s",
                secs(self.min_speech)
            )));
        }
        if self.max_gap > MAX_SEGMENT {
            return Err(Error::config(format!(
                "segment max_gap {:.3} s is above 60 s",
                secs(self.max_gap)
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
        self.vad.validate()?;
        Ok(())
    }

    fn min_speech_frames(&self) -> u64 {
        self.min_speech.div_ceil(FRAME_U64).max(1)
    }

    fn min_silence_frames(&self) -> u64 {
        self.min_silence.div_ceil(FRAME_U64).max(1)
    }

    /// The longest span on the original timeline that one request may cover.
    fn max_envelope(&self) -> Samples {
        2 * self.max_len
    }
}

/// Frame counts of a run so far: what the input was made of. Used for the "no speech" reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameStats {
    /// Frames analysed (32 ms each; the last one may be partial).
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
    loud: bool,
    quiet: bool,
    db: f32,
}

/// The utterance being read.
#[derive(Debug)]
struct Run {
    /// Start of the current piece: its padded start (shared with the previous utterance when
    /// close), or the position of a forced cut.
    piece_start: Samples,
    /// Where the piece's padding may begin: `piece_start`, or the shared point.
    shared: bool,
    /// Start of the first voiced frame of the current piece, or earlier over the loud frames
    /// of a soft onset (see [`Segmenter::onset`]).
    speech_start: Samples,
    /// Start of the first voiced frame of the current piece.
    first_voiced: Samples,
    /// End of the last voiced frame.
    last_voiced_end: Samples,
    /// Voiced frames in the current piece.
    voiced: u64,
    /// The run has enough voiced frames to be kept.
    valid: bool,
    /// The current piece began at a forced cut.
    cut_start: bool,
    /// The noise floor (dBFS) when the utterance began.
    floor_db: f32,
    /// Frame index of `hist[0]`.
    hist_base: u64,
    hist: VecDeque<Hist>,
}

impl Run {
    fn hist_at(&self, frame: u64) -> Option<&Hist> {
        frame
            .checked_sub(self.hist_base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.hist.get(i))
    }

    /// End of the word's fading end after the last voiced frame: the frames after it that are
    /// still sound above the noise floor ([`TAIL_MARGIN_DB`]), not voiced, under a falling
    /// ceiling ([`TAIL_HEADROOM_DB`]) and falling themselves ([`FALL_FRAMES`]), at most
    /// [`TAIL_FRAMES`] after the last voiced frame.
    fn tail_end(&self) -> Samples {
        let first = self.last_voiced_end / FRAME_U64;
        let top = (first.saturating_sub(TAIL_REF_FRAMES)..first)
            .filter_map(|k| self.hist_at(k))
            .map(|h| h.db)
            .fold(f32::MIN, f32::max);
        let mut end = self.last_voiced_end;
        for j in 0..TAIL_FRAMES {
            let Some(h) = self.hist_at(first + j) else {
                break;
            };
            let ceiling = top + TAIL_HEADROOM_DB - TAIL_DECAY_DB * j as f32;
            // Against the loudest of three frames 256-320 ms before: reverberation flickers
            // by a few dB from frame to frame.
            let before = (FALL_FRAMES..FALL_FRAMES + 3)
                .filter(|&d| d <= j)
                .filter_map(|d| self.hist_at(first + j - d))
                .map(|x| x.db)
                .fold(f32::MIN, f32::max);
            let steady = j >= FALL_FRAMES && h.db > before - FALL_DB;
            if h.voiced || h.db < self.floor_db + TAIL_MARGIN_DB || h.db > ceiling || steady {
                break;
            }
            end = (first + j + 1) * FRAME_U64;
        }
        end
    }

    /// The run is the first notes of music that the speech model took for speech: from its
    /// second voiced frame to its last the level stays within [`FLAT_RANGE_DB`], and after it
    /// the sound goes on, not one frame quiet, for `after` frames and more, and is not the
    /// run's own fading end sinking into the noise. A piece that began at a forced cut, and a
    /// run with fewer than `after` frames after it (the end of the input), are kept.
    ///
    /// Speech rises and falls with its syllables: over the corpus's utterances the level
    /// spans 20–47 dB in clean calls and 7 dB and more at 5 dB SNR, and after the last word
    /// comes a pause (quiet) or the next word (voiced). The model takes the first second of
    /// some hold music for speech, and only the music check's later frames or the model
    /// itself let go of it; until then that second was sent.
    fn runs_into_sound(&self, after: u64) -> bool {
        let first = self.first_voiced / FRAME_U64;
        let last = self.last_voiced_end / FRAME_U64;
        if self.cut_start || first < self.hist_base || after == 0 {
            return false;
        }
        // The first voiced frame is left out: it straddles the sound's onset. Fewer than
        // three frames say nothing about how a sound moves.
        let (n, lo, hi) = (first + 1..last)
            .filter_map(|k| self.hist_at(k))
            .fold((0, f32::MAX, f32::MIN), |(n, lo, hi), h| {
                (n + 1, lo.min(h.db), hi.max(h.db))
            });
        let flat = n >= 3 && hi - lo <= FLAT_RANGE_DB;
        // The sound after it: never quiet, never voiced,
        let goes_on =
            (last..last + after).all(|k| self.hist_at(k).is_some_and(|h| !h.quiet && !h.voiced));
        // and not the word's own fading end: one that falls through all of those frames and
        // then sinks into the noise or meets the next word. (A decaying note falls too, but
        // then the music goes on: the fading end stops at a steady or louder frame.)
        let word_end = || {
            let tail = self.tail_end();
            tail >= self.last_voiced_end + after * FRAME_U64
                && self
                    .hist_at(tail / FRAME_U64)
                    .is_none_or(|h| h.quiet || h.voiced || h.db < self.floor_db + TAIL_MARGIN_DB)
        };
        flat && goes_on && !word_end()
    }

    /// The fading end after the last voiced frame is still going at `b` (the end of the
    /// newest frame): closing the run waits for it, at most [`TAIL_FRAMES`].
    fn fading(&self, b: Samples) -> bool {
        b < self.last_voiced_end + TAIL_FRAMES * FRAME_U64 && self.tail_end() >= b
    }
}

/// The segmentation state machine.
#[derive(Debug)]
pub struct Segmenter {
    opts: SegmenterOptions,
    det: VoiceDetector,
    /// Frames analysed by [`Segmenter::push`] (reused).
    frames: Vec<Analysed>,
    pushed: Samples,
    /// Index of the next frame to receive a decision.
    next_frame: u64,
    run: Option<Run>,
    /// End of the last utterance handed to the packer.
    last_utt_end: Option<Samples>,
    packer: Packer,
    stats: FrameStats,
    infos: Vec<FrameInfo>,
    /// Energy (dB) of the last frames, newest at the back: where to share a short gap.
    recent_db: VecDeque<f32>,
    /// Loudness of the same frames (see [`crate::vad::FrameInfo::loud`]).
    recent_loud: VecDeque<bool>,
    /// Speech level above the noise floor at the newest frame, dB.
    snr_db: f32,
    finished: bool,
}

impl Segmenter {
    /// A segmenter with the given options (checked by [`SegmenterOptions::validate`]).
    pub fn new(opts: SegmenterOptions) -> Result<Self> {
        opts.validate()?;
        Ok(Segmenter {
            det: VoiceDetector::new(opts.vad.clone())?,
            packer: Packer::new(&opts),
            opts,
            frames: Vec::new(),
            pushed: 0,
            next_frame: 0,
            run: None,
            last_utt_end: None,
            stats: FrameStats::default(),
            infos: Vec::with_capacity(4),
            recent_db: VecDeque::with_capacity(RECENT_FRAMES),
            recent_loud: VecDeque::with_capacity(RECENT_FRAMES),
            snr_db: 0.0,
            finished: false,
        })
    }

    /// The options in use.
    pub fn options(&self) -> &SegmenterOptions {
        &self.opts
    }

    /// The latency / memory bound in samples: after pushing up to position `p`, every segment
    /// still to come starts at ≥ `p − lookback()`. It is the longest request span
    /// (`2 × max_len`), plus the longest utterance (`max_len`), plus what may separate them
    /// (`max_pack_gap` or twice the padding), plus the blips and hangover that may delay a
    /// decision, plus the detector's look-ahead.
    pub fn lookback(&self) -> Samples {
        let o = &self.opts;
        let silence = o.min_silence_frames() * FRAME_U64;
        o.max_envelope()
            + o.max_len
            + o.max_pack_gap.max(2 * o.padding)
            + 2 * o.padding
            + (o.min_speech_frames() + 1) * (silence + FRAME_U64)
            + (DELAY_FRAMES as u64 + 2 + TAIL_FRAMES) * FRAME_U64
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
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<Segment>) {
        if self.finished {
            return;
        }
        // In pieces of about 2 s: the analysed frames wait only that long (each holds the
        // speech model's input gates, as much memory as its audio).
        let mut frames = std::mem::take(&mut self.frames);
        for piece in samples.chunks(64 * FRAME) {
            frames.clear();
            self.det.analyser().push(piece, &mut frames);
            self.push_analysed(piece.len(), &frames, out);
        }
        self.frames = frames;
    }

    /// [`Segmenter::push`] with the first half of the detector done elsewhere: `samples` more
    /// samples continue the timeline, and `frames` are the frames a [`crate::vad::Analyser`] of this
    /// stream completed with them (see [`crate::pipeline`]'s analysis thread). At the end, the
    /// analyser's last frames ([`crate::vad::Analyser::finish`]) come with `samples == 0`, before
    /// [`Segmenter::finish`].
    pub(crate) fn push_analysed(
        &mut self,
        samples: usize,
        frames: &[Analysed],
        out: &mut Vec<Segment>,
    ) {
        if self.finished {
            return;
        }
        self.pushed += samples as u64;
        for a in frames {
            if let Some(info) = self.det.push_analysed(a) {
                self.on_frame(info, out);
            }
        }
    }

    /// Ends the input: decides the held-back frames and appends every remaining segment. The
    /// last segment ends at most at the total pushed length. Further pushes are ignored.
    pub fn finish(&mut self, out: &mut Vec<Segment>) {
        if self.finished {
            return;
        }
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        self.det.analyser().finish(&mut frames);
        self.push_analysed(0, &frames, out);
        self.frames = frames;
        self.finished = true;
        let mut infos = std::mem::take(&mut self.infos);
        infos.clear();
        self.det.flush(&mut infos);
        for info in infos.drain(..) {
            self.on_frame(info, out);
        }
        self.infos = infos;
        self.end_run(out);
        self.packer.finish(self.pushed, &mut self.stats, out);
    }

    fn on_frame(&mut self, f: FrameInfo, out: &mut Vec<Segment>) {
        let k = self.next_frame;
        self.next_frame += 1;
        if self.recent_db.len() >= self.recent_frames() {
            self.recent_db.pop_front();
            self.recent_loud.pop_front();
        }
        self.recent_db.push_back(f.db);
        self.recent_loud.push_back(f.loud);
        self.snr_db = f.snr_db;
        let a = k * FRAME_U64;
        let b = a + FRAME_U64;
        self.stats.frames += 1;
        self.stats.voiced += u64::from(f.voiced);
        self.stats.music += u64::from(f.music);
        self.stats.quiet += u64::from(f.quiet);
        let pad = self.opts.padding;
        let h = Hist {
            voiced: f.voiced,
            loud: f.loud,
            quiet: f.quiet,
            db: f.db,
        };

        // Speech again after a pause of `min_silence` while the run waited for its fading end:
        // the run ends here (its fading end stops at this frame) and this frame opens the next.
        let silence = self.opts.min_silence_frames() * FRAME_U64;
        if f.voiced
            && self
                .run
                .as_ref()
                .is_some_and(|r| a.saturating_sub(r.last_voiced_end) >= silence)
        {
            // Nothing of the ended run may reach into this frame: it is the next onset.
            self.end_run_before(a, out);
        }

        match self.run.as_mut() {
            None => {
                if f.voiced {
                    let a = self.onset(a);
                    let (piece_start, shared) = self.padded_start(a);
                    let mut hist = VecDeque::with_capacity(64);
                    hist.push_back(h);
                    self.run = Some(Run {
                        piece_start,
                        shared,
                        speech_start: a,
                        first_voiced: k * FRAME_U64,
                        last_voiced_end: b,
                        voiced: 1,
                        valid: false,
                        cut_start: false,
                        floor_db: f.floor_db,
                        hist_base: k,
                        hist,
                    });
                }
            }
            Some(run) => {
                run.hist.push_back(h);
                let need_cut = f.voiced && b + pad > run.piece_start + self.opts.max_len;
                let close = !f.voiced && b - run.last_voiced_end >= silence;
                if need_cut {
                    self.force_cut(a, out);
                }
                if f.voiced {
                    if let Some(run) = self.run.as_mut() {
                        run.last_voiced_end = b;
                        run.voiced += 1;
                    }
                } else if close && !self.run.as_ref().is_some_and(|r| r.valid && r.fading(b)) {
                    self.end_run(out);
                }
            }
        }

        let min_frames = self.opts.min_speech_frames();
        if let Some(run) = self.run.as_mut() {
            if !run.valid && (run.voiced >= min_frames || run.cut_start) {
                run.valid = true;
            }
        }

        // Nothing to come can start before this: the packer may close its open request.
        let next_possible = self.run.as_ref().map_or(b, |r| r.speech_start);
        self.packer.idle(next_possible, &mut self.stats, out);

        // Keep the history bounded even when a run stays open without voiced frames.
        if let Some(run) = self.run.as_mut() {
            let keep = (self.opts.max_len / FRAME_U64 + 2) as usize;
            while run.hist.len() > keep {
                run.hist.pop_front();
                run.hist_base += 1;
            }
        }
    }

    /// Where speech whose first voiced frame starts at `a` really begins: earlier by the loud
    /// frames right before it (a soft onset the model has not called speech yet), at most
    /// [`EDGE_FRAMES`], never before the previous utterance's end.
    fn onset(&self, a: Samples) -> Samples {
        let limit = self.last_utt_end.unwrap_or(0);
        let mut s = a;
        // The newest frame in `recent_loud` is the voiced frame at `a` itself. One frame
        // that is not loud between loud ones (a stop consonant's closure, the dip after a
        // breath) does not end the onset.
        let back: Vec<bool> = self
            .recent_loud
            .iter()
            .rev()
            .skip(1)
            .take(EDGE_FRAMES)
            .copied()
            .collect();
        let mut i = 0;
        while let Some(&loud) = back.get(i) {
            let bridged = !loud && back.get(i + 1).copied().unwrap_or(false);
            if (!loud && !bridged) || s < limit + FRAME_U64 {
                break;
            }
            s -= FRAME_U64;
            i += 1;
        }
        s
    }

    /// The open run has ended: kept (see [`Segmenter::close_run`]) or dropped as a blip.
    fn end_run(&mut self, out: &mut Vec<Segment>) {
        self.end_run_before(self.next_frame * FRAME_U64, out);
    }

    /// [`Segmenter::end_run`] with the run's end, moved out or not, kept at or before `limit`.
    fn end_run_before(&mut self, limit: Samples, out: &mut Vec<Segment>) {
        if let Some(run) = self.run.take() {
            if run.valid || run.cut_start {
                self.close_run(run, limit, out);
            }
        }
    }

    /// A kept run has ended (or the input has): its last piece goes to the packer. Its end and
    /// fading end stay at or before `limit` (the next onset, or the end of what was seen).
    fn close_run(&mut self, mut run: Run, limit: Samples, out: &mut Vec<Segment>) {
        if self.opts.vad.reject_music && run.runs_into_sound(self.opts.min_silence_frames()) {
            return;
        }
        // A fading word end the model has stopped calling speech: the loud frames right
        // after the last voiced one, at most EDGE_FRAMES.
        let tail = run.tail_end();
        let last = (run.last_voiced_end / FRAME_U64).saturating_sub(run.hist_base) as usize;
        for h in run.hist.iter().skip(last).take(EDGE_FRAMES) {
            if !h.loud || h.voiced {
                break;
            }
            run.last_voiced_end += FRAME_U64;
        }
        // In noise a word's end sinks under the noise before the model or the energy can see
        // it: the less room between speech and noise, the more is kept after the last frame
        // seen (NOISE_TAIL_FRAMES at 15 dB, the least room the level estimate allows; nothing
        // from 25 dB up). Inside a request the gap after the word is kept from the end as
        // heard, as in a clean recording: only a request's end keeps this extension.
        let extra = self.noise_tail_frames();
        let seen = (self.next_frame * FRAME_U64).min(limit);
        run.last_voiced_end = run.last_voiced_end.min(seen);
        let heard = run.last_voiced_end;
        run.last_voiced_end = (heard + extra * FRAME_U64).min(seen);
        let fade = tail.clamp(heard, seen);
        let tail = tail.clamp(run.last_voiced_end, seen);
        let utt = Utt {
            start: if run.cut_start {
                run.piece_start
            } else {
                run.speech_start
            },
            end: run.last_voiced_end,
            tail,
            heard,
            fade,
            lead: run.piece_start,
            shared: run.shared,
            voiced: run.voiced,
            cut_before: run.cut_start,
            cut_after: false,
        };
        self.last_utt_end = Some(utt.tail);
        self.packer.push(utt, &mut self.stats, out);
    }

    /// Frames kept after an utterance's last frame heard, at a request's end, at the current
    /// SNR: [`NOISE_TAIL_FRAMES`] at 15 dB and below, none from 25 dB up.
    fn noise_tail_frames(&self) -> u64 {
        ((25.0 - self.snr_db) / 2.0).clamp(0.0, NOISE_TAIL_FRAMES as f32) as u64
    }

    /// Frames of energy history kept: a shared gap is shorter than twice the padding.
    fn recent_frames(&self) -> usize {
        usize::try_from(2 * self.opts.padding / FRAME_U64 + 3).unwrap_or(RECENT_FRAMES)
    }

    /// Padded start of a run whose first voiced frame starts at `s`, and whether it is shared
    /// with the previous utterance (closer than twice the padding).
    fn padded_start(&self, s: Samples) -> (Samples, bool) {
        let pad = self.opts.padding;
        let floor = self.packer.floor();
        match self.last_utt_end {
            Some(e) if s < e + 2 * pad => (self.share_point(e, s).max(floor), true),
            _ => (s.saturating_sub(pad).max(floor), false),
        }
    }

    /// Where two utterances closer than twice the padding share the gap `[from, to)` (frame
    /// boundaries, `to` the start of the newest frame): at the boundary between the two
    /// adjacent gap frames with the least energy, ties to the one nearest the middle; at the
    /// middle when the gap has fewer than two frames. In noise the gap's edges are word ends and
    /// starts buried under the noise, a little louder than the true pause, so its middle can
    /// fall inside a fading word; in digital silence this is the middle, to the frame.
    ///
    /// On a line below [`NOISY_GAP_SNR_DB`] the whole gap goes to the next utterance: the end
    /// before it has already been moved out over its loud frames, its fading end and the
    /// whole noise tail (160 ms), while
    /// the next one's soft start is buried (on the corpus's 5 dB call the model called a word
    /// speech 350 ms after it began, and the quietest frames of its gap lay inside it).
    fn share_point(&self, from: Samples, to: Samples) -> Samples {
        if to <= from {
            // Touching (or, defensively, overlapping) neighbours share the onset.
            return to;
        }
        if self.snr_db < NOISY_GAP_SNR_DB {
            // The end before the gap keeps NOISE_TAIL_FRAMES after the word as heard in all
            // (`close_run` moved it out by the part of them the SNR called for).
            let margin = NOISE_TAIL_FRAMES as u64 - self.noise_tail_frames();
            return (from + margin * FRAME_U64).min(to);
        }
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

    /// Splits the open run before the voiced frame starting at `a`.
    fn force_cut(&mut self, a: Samples, out: &mut Vec<Segment>) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let limit = run.piece_start + self.opts.max_len;
        let hi = a.min(limit);
        let lo = (run.piece_start + self.opts.max_len / 2).min(hi);
        // Best pause: (frames at the noise floor inside [lo, hi], length inside [lo, hi],
        // -mean dB, position). Frames at the floor come first: where the model lets go of
        // loud speech for a few frames (it did, for 224 ms inside a real "please hold"), that
        // stretch is no pause, however long, while two frames of silence between two words
        // are one.
        let mut best: Option<(u64, Samples, f32, Samples)> = None;
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
            let mut at_floor = 0u64;
            while let Some(x) = run.hist.get(j) {
                if x.voiced {
                    break;
                }
                sum_db += x.db;
                let xa = (run.hist_base + j as u64) * FRAME_U64;
                if x.quiet && xa >= lo && xa + FRAME_U64 <= hi {
                    at_floor += 1;
                }
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
                    Some((bq, bl, bdb, _)) => {
                        (at_floor, len) > (bq, bl) || (at_floor == bq && len == bl && mean <= bdb)
                    }
                };
                if better {
                    best = Some((at_floor, len, mean, mid));
                }
            }
            i = j.max(i + 1);
        }
        let cut = match (best, quietest) {
            (Some((_, _, _, mid)), _) => mid,
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
        let utt = Utt {
            start: if run.cut_start {
                run.piece_start
            } else {
                run.speech_start
            },
            end: cut,
            tail: cut,
            heard: cut,
            fade: cut,
            lead: run.piece_start,
            shared: run.shared,
            voiced: voiced_before,
            cut_before: run.cut_start,
            cut_after: true,
        };
        let after = run.voiced.saturating_sub(voiced_before);
        run.piece_start = cut;
        run.shared = false;
        run.speech_start = first_voiced_after.unwrap_or(a);
        run.first_voiced = run.speech_start;
        run.voiced = after;
        run.cut_start = true;
        run.valid = true;
        while run.hist_base < cut_frame && !run.hist.is_empty() {
            run.hist.pop_front();
            run.hist_base += 1;
        }
        self.last_utt_end = Some(cut);
        self.packer.push(utt, &mut self.stats, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

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

    /// A frame as the detector would report it, on a noise floor at -60 dBFS.
    fn frame(voiced: bool, db: f32) -> FrameInfo {
        let floor = -60.0;
        FrameInfo {
            voiced,
            quiet: db < floor + 3.0,
            music: false,
            prob: if voiced { 0.9 } else { 0.1 },
            db,
            loud: db >= floor + 10.0,
            floor_db: floor,
            snr_db: 15.0,
        }
    }

    /// Feeds `frames` to `seg` as the detector would, then ends the input: every request.
    fn feed(seg: &mut Segmenter, frames: impl IntoIterator<Item = FrameInfo>) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut n = 0u64;
        for f in frames {
            seg.on_frame(f, &mut out);
            n += 1;
        }
        seg.pushed = n * FRAME_U64;
        seg.end_run(&mut out);
        seg.packer.finish(seg.pushed, &mut seg.stats, &mut out);
        out
    }

    /// Two utterances 12 frames apart, the gap's quietest pair of frames near its end; on a
    /// line at `snr_db`. Returns the second request's start, in frames.
    fn shared_start(snr_db: f32) -> u64 {
        let gap = (0..12).map(|j| (false, if j == 9 || j == 10 { -59.5 } else { -57.0 }));
        let utterance = std::iter::repeat_n((true, -40.0), 30).chain(gap);
        let levels = std::iter::repeat_n((false, -60.0), 40)
            .chain(utterance.clone())
            .chain(utterance)
            .chain(std::iter::repeat_n((false, -60.0), 60));
        let mut seg = Segmenter::new(SegmenterOptions::default()).unwrap();
        let out = feed(
            &mut seg,
            levels.map(|(v, db)| FrameInfo {
                snr_db,
                ..frame(v, db)
            }),
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].end, out[1].start, "{out:?}");
        out[1].start / FRAME_U64
    }

    /// Silence, 30 voiced frames at the levels `voiced(j)`, then 100 frames at the levels
    /// `after(j)` that the model does not call speech, then silence: the requests made.
    fn run_then(
        voiced: impl Fn(usize) -> f32,
        after: impl Fn(usize) -> f32,
        reject_music: bool,
    ) -> Vec<Segment> {
        let mut opts = SegmenterOptions::default();
        opts.vad.reject_music = reject_music;
        let levels = std::iter::repeat_n((false, -60.0), 40)
            .chain((0..30).map(|j| (true, voiced(j))))
            .chain((0..100).map(|j| (false, after(j))))
            .chain(std::iter::repeat_n((false, -60.0), 40));
        feed(
            &mut Segmenter::new(opts).unwrap(),
            levels.map(|(v, db)| frame(v, db)),
        )
    }

    #[test]
    fn a_flat_sound_that_goes_on_unvoiced_is_music_not_speech() {
        let flat = |j: usize| -30.0 + (j % 3) as f32;
        let syllables = |j: usize| -30.0 - 3.0 * (j % 4) as f32;
        let steady = |_| -32.0;
        // Level within 5 dB, and the sound goes on: the first notes of music.
        assert!(run_then(flat, steady, true).is_empty());
        // A decaying note (1 dB a frame for 12 frames), then the music goes on: music.
        let decaying = |j: usize| -31.0 - j.min(12) as f32;
        assert!(run_then(flat, decaying, true).is_empty());
        // The first voiced frame straddles the onset and is left out of the range.
        let onset = |j: usize| if j == 0 { -50.0 } else { flat(j) };
        assert!(run_then(onset, steady, true).is_empty());
        // Speech rises and falls (9 dB here): sent, whatever follows.
        assert_eq!(run_then(syllables, steady, true).len(), 1);
        // So is a 6 dB range.
        let six = |j: usize| -30.0 - 6.0 * (j % 2) as f32;
        assert_eq!(run_then(six, steady, true).len(), 1);
        // A flat word followed by a pause, even one 9 frames on: sent.
        assert_eq!(run_then(flat, |_| -60.0, true).len(), 1);
        let pause_late = |j: usize| if j >= 9 { -60.0 } else { -32.0 };
        assert_eq!(run_then(flat, pause_late, true).len(), 1);
        // A flat word whose own fading end falls for 16 frames (0.8 dB a frame) into the
        // noise: sent.
        let fading = |j: usize| {
            if j < 16 {
                -31.0 - 0.8 * j as f32
            } else {
                -60.0
            }
        };
        assert_eq!(run_then(flat, fading, true).len(), 1);
        // Without the music check nothing is dropped.
        assert_eq!(run_then(flat, steady, false).len(), 1);
    }

    #[test]
    fn on_a_noisy_line_a_shared_gap_goes_to_the_next_onset() {
        // Clean: the boundary between the gap's two quietest frames (frame 40 + 30 + 10).
        assert_eq!(shared_start(40.0), 80);
        // At 10 dB SNR the next utterance's soft start is buried under the noise (the model
        // called it speech 350 ms after it began, on the corpus's 5 dB call) while the end
        // before it has been moved out by the noise tail (5 frames): the gap from there on
        // goes to the next utterance.
        assert_eq!(shared_start(10.0), 75);
        // At 20 dB the end before the gap was moved out by only 2 frames of noise tail: it
        // keeps 5 frames after the word in all, and the rest goes to the next utterance.
        assert_eq!(shared_start(20.0), 75);
        // From 25 dB up, the quietest pair again.
        assert_eq!(shared_start(26.0), 80);
    }

    #[test]
    fn a_moved_out_word_end_never_reaches_past_the_next_onset() {
        // Speech, then 10 frames the model lets go of that are loud and falling (a word end in
        // noise), then speech again: the first run closes at the new onset. Its end, moved out
        // over the loud frames and by the noise tail, used to reach into the onset's frame;
        // the next request's shared start then wrapped around (a debug panic; in release,
        // segments near 2^63 and every later request dropped).
        let word = std::iter::repeat_n((true, -45.0), 20);
        let falling_end = (0..10).map(|j| (false, -46.0 - 0.6 * j as f32));
        let mut levels: Vec<(bool, f32)> = vec![(false, -60.0); 40];
        for _ in 0..3 {
            levels.extend(word.clone().chain(falling_end.clone()));
        }
        levels.extend(word.clone());
        levels.extend(std::iter::repeat_n((false, -60.0), 200));
        for _ in 0..3 {
            levels.extend(word.clone().chain(std::iter::repeat_n((false, -60.0), 40)));
        }
        let mut seg = Segmenter::new(SegmenterOptions::default()).unwrap();
        let out = feed(&mut seg, levels.into_iter().map(|(v, db)| frame(v, db)));
        assert!(!out.is_empty());
        let mut prev_end = 0;
        for r in &out {
            assert!(
                r.start >= prev_end && r.start < r.end && r.end <= seg.pushed,
                "{out:?}"
            );
            assert!(r.billed() <= 10 * RATE as Samples, "{out:?}");
            prev_end = r.end;
        }
        // Every voiced frame is sent.
        let voiced: Vec<(Samples, Samples)> = (0..4)
            .map(|i| 40 + 30 * i)
            .chain((0..3).map(|i| 40 + 120 + 200 + 60 * i))
            .map(|f| (f * FRAME_U64, (f + 20) * FRAME_U64))
            .collect();
        for (a, b) in voiced {
            assert!(
                out.iter().any(|r| r.start <= a && r.end >= b),
                "{a}..{b}: {out:?}"
            );
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
