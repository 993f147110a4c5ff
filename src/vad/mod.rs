//! Frame-level voice activity on 16 kHz mono `f32` audio.
//!
//! [`VoiceDetector`] cuts nothing and keeps no audio: it is fed whole frames of [`FRAME`]
//! samples (32 ms at [`crate::time::RATE`]) and returns one [`FrameInfo`] per frame, after a
//! fixed delay of [`DELAY_FRAMES`] frames (the tone check looks that far ahead). The
//! [`crate::segment::Segmenter`] builds on it; most callers want that instead.
//!
//! Each frame goes through three tests:
//!
//! 1. **Energy gate.** The frame's energy in dB is compared with a running noise floor
//!    (minimum tracker: starts at the first frame, follows drops of up to 6 dB at once and
//!    larger ones once they have lasted 96 ms, rises 0.06 dB per frame, 2 dB/s; on a line
//!    with noise, up to 256 ms of digital silence leaves it alone and the model does not
//!    hear such holes: a lost packet filled with zeros is no floor) and a running speech
//!    level (peak tracker: follows
//!    rises at once, decays 0.03 dB per frame, 1 dB/s, never below the floor + 15 dB, so that
//!    dead air on a noisy line is not taken for quieter speech). A frame is *silent* when it is
//!    digital silence or more than 45 dB below the speech level, and *quiet* when it is
//!    silent or less than 3 dB above the floor. Silent frames are never voiced
//!    and skip the neural model (what makes silence and dead air almost free); quiet frames
//!    are voiced only when the model is sure on its own (see below), so that speech a few dB
//!    above a noisy line is kept and the noise between words is not.
//! 2. **Speech model.** A pure-Rust implementation of the Silero VAD network (v6, 16 kHz;
//!    weights from the `silero-vad` package, MIT licence, embedded in the library) scores the
//!    frame, after an automatic gain that lifts a quiet recording's running speech level to
//!    −20 dBFS (at most 60 dB; louder sound is never turned down, so loud
//!    music does not push the speech after it under), so that a recording at −45 dBFS and the
//!    same at −20 dBFS reach the model alike. It was trained to answer *speech* and not music, noise or tones: this is
//!    what keeps hold music out. A frame is speech once its probability reaches
//!    [`VadOptions::threshold`], and stays speech until it falls below
//!    [`VadOptions::neg_threshold`]; a quiet frame needs [`VadOptions::threshold`] itself.
//!    The model is recurrent and remembers what it heard: after a long stretch of music it
//!    would not say "speech" for the first words after it. So at a pause of 640 ms or more
//!    (20 dB or more below the speech level), or of 256 ms of digital silence, that follows
//!    a second or more of sound it called not speech, its state is put back to
//!    the one it had at the last pause after speech (a fresh model's before any), and the next run of speech counts only
//!    once it lasts 256 ms with one frame at 0.9 or more (a restored model may answer "speech" to the first notes of more
//!    music). In a noisy recording the model hears the line's noise between words too, and
//!    after a second and more of nothing but that noise, the sound that follows is heard from
//!    the state the model had 320 ms into the noise (otherwise, after seconds of noise, it
//!    answered 0.00 to the first 300 ms of a loud reply; a clean recording's model, which
//!    skips its silences, has no such lag). On a line so noisy (speech less than 25 dB above
//!    it) that hold music sits in the noise too, the state put back is the one taken 320 ms
//!    into the noise right after the last words, as long as the noise floor is back where it
//!    was then (after 25 s of such music the model answered 0.00 to 11 s of speech 9 dB above
//!    the noise).
//! 3. **Tone check** (on by default, [`VadOptions::reject_music`]): tones, chords and other
//!    *stationary* sounds keep their spectral envelope and zero-crossing rate for hundreds of
//!    milliseconds, while speech changes every few tens of milliseconds. When at least
//!    85 % of the loud frames in a centred window of
//!    `2 * DELAY_FRAMES + 1` frames are steady, the frame is flagged and is not voiced. It costs
//!    about five multiply-adds per sample. On a noisy line (speech less than 25 dB above the
//!    noise floor) these features drown in the noise, so there the check also measures the
//!    spectrum above the noise (a 512-point FFT per frame, less twice a per-bin noise floor,
//!    312 Hz–3.4 kHz): when 60 % of the window's frames keep it (cosine similarity ≥ 0.8 with
//!    the frame 64 ms back), the frame is music. Sustained notes keep their partials in place;
//!    speech moves its harmonics and formants. On the corpus's call at 5 dB SNR it took the
//!    hold music sent from 6.1 % to 1.0 % and changed no utterance.
//!
//! The detector is `Send`; make one per stream.

use std::collections::VecDeque;
use std::fmt;

mod silero;

/// Samples per analysis frame: 32 ms at 16 kHz (the speech model's chunk).
pub const FRAME: usize = 512;
/// [`FRAME`] as a sample count on the timeline.
pub const FRAME_U64: u64 = FRAME as u64;
/// Frames of look-ahead: [`VoiceDetector::push_frame`] returns the decision for the frame
/// pushed this many frames earlier.
pub const DELAY_FRAMES: usize = 12;
/// The automatic gain lifts the running speech level (frame RMS) to this, in dBFS, and never
/// lowers it.
pub(crate) const TARGET_DBFS: f32 = -20.0;
/// The automatic gain never exceeds this, in dB (it is the floor of the speech-level estimate).
pub(crate) const MAX_GAIN_DB: f32 = 60.0;
/// The speech-level estimate decays by this many dB per frame (1 dB/s).
pub(crate) const LEVEL_DECAY_DB: f32 = 0.03;
/// The speech-level estimate stays at least this many dB above the noise floor.
pub(crate) const LEVEL_ABOVE_FLOOR_DB: f32 = 15.0;
/// The noise-floor estimate rises by this many dB per frame while frames are above it (2 dB/s).
pub(crate) const FLOOR_RISE_DB: f32 = 0.06;
/// A frame less than this many dB above the noise floor is quiet.
pub(crate) const NOISE_MARGIN_DB: f32 = 3.0;
/// A frame at least this many dB above the noise floor (and within [`LOUD_RANGE_DB`] of the
/// speech level) is *loud*: sound the segmenter keeps at the edges of an utterance even where
/// the speech model has already stopped (soft onsets, fading word ends).
pub(crate) const LOUD_MARGIN_DB: f32 = 10.0;
/// How far under the speech level a loud frame may lie: 45 dB (the reverberant word ends of
/// studio recordings fade to 36–40 dB under their peak; 35 dB cut them).
pub(crate) const LOUD_RANGE_DB: f32 = 45.0;
/// Skipped frames after sound that still go through the speech model (320 ms).
const MODEL_QUIET_FRAMES: u32 = 10;
/// Sounding frames the speech model calls not speech (about 1 s) after which the next pause
/// puts back the model's state from the last pause after speech.
const FORGET_AFTER_FRAMES: u32 = 31;
/// Quiet frames that make a pause for the model's state (640 ms): shorter pauses inside music
/// would let the restored state answer "speech" to the music that follows.
const FORGET_PAUSE_FRAMES: u32 = 20;
/// Frames of digital silence that make a pause (256 ms); shorter, on a line with noise, it is
/// a hole (lost packets): the floor stays the line's and the model does not hear it. Such a
/// pause is one for the model's state too: music has no stretch of exact zeros inside it,
/// while a recording that cuts from hold music to speech may have one shorter than
/// [`FORGET_PAUSE_FRAMES`] (after 0.6 s of zeros following a melody the model answered 0.00
/// to a real 1.1 s prompt).
const DIGITAL_PAUSE_FRAMES: u32 = 8;
/// A frame more than this many dB under the noise floor lowers it only once such frames have
/// lasted [`FLOOR_JUMP_FRAMES`]: a lost packet filled with zeros, and the frames partly in it
/// or in the filters' tails into it (−40, −54 and −89 dBFS on a −31 dBFS line), are no floor.
/// Line noise moves by less from one 32 ms frame to the next.
const FLOOR_JUMP_DB: f32 = 6.0;
/// See [`FLOOR_JUMP_DB`] (96 ms).
const FLOOR_JUMP_FRAMES: u32 = 3;
/// A pause frame for the model's state is quiet and this many dB below the speech level: a
/// steady piece of music lifts the noise floor to itself, and its own frames are then quiet.
const PAUSE_BELOW_LEVEL_DB: f32 = 20.0;
/// See [`Pending::probation`] (256 ms).
const PROBATION_FRAMES: u32 = 8;
/// A run of speech on probation needs one frame at least this probable (speech reaches it
/// within a few frames; music that fools a restored model hovers around 0.5).
const PROBATION_PROB: f32 = 0.9;
/// A recording whose speech level is at least this many dB above its noise floor is clean:
/// its quiet frames skip the speech model.
pub(crate) const CLEAN_SNR_DB: f32 = 40.0;
/// A frame more than this many dB below the speech level is quiet.
pub(crate) const LEVEL_RANGE_DB: f32 = 45.0;
/// Frame distance in the music check: features compared with the frame this many frames back.
pub(crate) const STEADY_LAG: usize = 2;
/// Fraction of loud frames in the music window that must be steady to call it music.
pub(crate) const MUSIC_STEADY_FRACTION: f32 = 0.85;
/// A recording whose speech is less than this many dB above its noise floor is a noisy line:
/// its music check also uses the spectrum above the noise (see [`Spectral`]). Cleaner ones
/// keep to the tone check: there sustained vowels can look as steady as notes (at 35 dB, the
/// spectral check cut the faint ends of two words).
const NOISY_SNR_DB: f32 = 25.0;
/// Frames are measured by [`Spectral`] below this SNR; the margin above [`NOISY_SNR_DB`]
/// keeps its noise estimate current when a recording hovers around that limit.
const SPECTRAL_SNR_DB: f32 = NOISY_SNR_DB + 6.0;
/// Two spectra (above the noise, [`STEADY_LAG`] frames apart) at least this similar (cosine)
/// are steady: in 5 dB of line noise, the median of hold music is 0.84 and of speech 0.67.
const SPECTRAL_STEADY_SIM: f32 = 0.8;
/// Fraction of the music window's frames that must be spectrally steady to call it music in
/// a noisy recording.
const SPECTRAL_STEADY_FRACTION: f32 = 0.6;

const MIN_DB: f32 = -120.0;
/// Frame energies are clamped to this (input far outside [−1, 1]).
const MAX_DB: f32 = 40.0;
const LAGS: [usize; 4] = [1, 2, 4, 8];
const N_FEAT: usize = LAGS.len() + 1;
/// Per-feature tolerance of "unchanged" in the steadiness test (zcr, r1, r2, r4, r8).
const STEADY_TOL: [f32; N_FEAT] = [0.02, 0.03, 0.06, 0.10, 0.15];

/// Options of the [`VoiceDetector`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VadOptions {
    /// Speech-model probability at which a frame becomes speech. Default 0.5 (Silero's own).
    pub threshold: f32,
    /// Probability below which speech ends. Default 0.35 (`threshold − 0.15`, Silero's own).
    pub neg_threshold: f32,
    /// Run the tone check. Default `true`.
    pub reject_music: bool,
}

impl Default for VadOptions {
    fn default() -> Self {
        VadOptions {
            threshold: 0.5,
            neg_threshold: 0.35,
            reject_music: true,
        }
    }
}

impl VadOptions {
    /// Checks the options: `0 < neg_threshold ≤ threshold < 1`, else an
    /// [`crate::ErrorKind::InvalidConfig`].
    pub fn validate(&self) -> crate::Result<()> {
        let ok = self.neg_threshold > 0.0
            && self.neg_threshold <= self.threshold
            && self.threshold < 1.0;
        if ok {
            Ok(())
        } else {
            Err(crate::Error::config(format!(
                "VAD thresholds must satisfy 0 < neg_threshold ({}) <= threshold ({}) < 1",
                self.neg_threshold, self.threshold
            )))
        }
    }
}

/// The decision about one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameInfo {
    /// Speech: not quiet, the speech model said speech, and not a tone.
    pub voiced: bool,
    /// Quiet by the energy gate (near the noise floor or far below the speech level).
    pub quiet: bool,
    /// Not speech although loud: the speech model's "no" (music, noise), the tone check, or on
    /// a noisy line the spectral check (see the module docs).
    pub music: bool,
    /// The speech model's probability (0 for quiet frames, which skip it).
    pub prob: f32,
    /// Frame energy in dBFS (mean square, floored at −120).
    pub db: f32,
    /// Well above the noise floor (10 dB or more) and within 45 dB of the speech level: sound
    /// the segmenter keeps at the edges of an utterance where the model has already stopped.
    pub loud: bool,
    /// The running noise-floor estimate at this frame, in dBFS (it follows the quietest
    /// frames down at once and rises by 2 dB/s while the sound stays above it).
    pub floor_db: f32,
    /// The running speech level above the running noise floor, in dB: how far word ends can
    /// fade before the noise hides them. At least 15 dB (the level estimate does not sink
    /// into the noise during dead air).
    pub snr_db: f32,
}

#[derive(Clone, Copy)]
struct Pending {
    db: f32,
    loud: bool,
    floor_db: f32,
    snr_db: f32,
    prob: f32,
    quiet: bool,
    /// Quiet by level alone (digital silence or far below the speech level), whatever the
    /// noise floor: a steady tone sets the noise floor but still counts in the music window.
    silent: bool,
    vad: bool,
    steady: bool,
    /// The frame [`STEADY_LAG`] frames back exists and is not silent, so `steady` means
    /// something.
    compared: bool,
    /// See [`Analysed::spectral_steady`].
    spectral_steady: bool,
    spectral_compared: bool,
    /// Analysed on probation: after the model's state was put back at a pause after other
    /// sound, a run of speech counts only once it lasts [`PROBATION_FRAMES`] and
    /// reaches [`PROBATION_PROB`] once.
    probation: bool,
    /// Frames of speech by the model up to and including this one.
    run: u32,
    /// The highest probability in that run.
    run_peak: f32,
}

/// One frame as the [`Analyser`] leaves it: everything the detector needs that does not depend
/// on the speech model's recurrent state, so it can be computed ahead on another thread.
#[derive(Clone)]
pub(crate) struct Analysed {
    db: f32,
    loud: bool,
    floor_db: f32,
    snr_db: f32,
    quiet: bool,
    silent: bool,
    steady: bool,
    compared: bool,
    /// Spectrally steady (see [`Spectral`]); `spectral_compared` when measured at all.
    spectral_steady: bool,
    spectral_compared: bool,
    /// The speech model hears this frame: `pre` holds its input gates. Otherwise its
    /// probability is 0.
    model: bool,
    /// A pause frame for the model's state: quiet and [`PAUSE_BELOW_LEVEL_DB`] below the
    /// speech level.
    pause: bool,
    /// This frame is the [`FORGET_PAUSE_FRAMES`]th pause frame in a row.
    pause_reached: bool,
    pre: silero::Pre,
}

impl Default for Analysed {
    fn default() -> Self {
        Analysed {
            db: MIN_DB,
            loud: false,
            floor_db: MIN_DB,
            snr_db: 0.0,
            quiet: true,
            silent: true,
            steady: false,
            compared: false,
            spectral_steady: false,
            spectral_compared: false,
            model: false,
            pause: false,
            pause_reached: false,
            pre: [0.0; silero::GATES],
        }
    }
}

impl fmt::Debug for Analysed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Analysed")
            .field("db", &self.db)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// The first half of the [`VoiceDetector`]: frames the samples, measures each frame (energy
/// gate, level and noise-floor trackers, tone features) and runs the state-free half of the
/// speech model on the frames it hears. Its output depends on the audio alone, so a stream's
/// analysis can run on its own thread ahead of the second half
/// ([`VoiceDetector::push_analysed`]); both halves together give exactly the decisions of
/// [`VoiceDetector::push_frame`].
pub(crate) struct Analyser {
    front: silero::Front,
    reject_music: bool,
    /// Frames analysed (saturating).
    frames_seen: u32,
    /// Consecutive quiet frames up to now (saturating).
    quiet_run: u32,
    /// Consecutive frames of digital silence up to now (saturating).
    digital_run: u32,
    /// Consecutive pause frames up to now (saturating).
    gate_quiet_run: u32,
    level_db: f32,
    floor_db: f32,
    /// The floor was last set by a frame of sound (a line's noise), not by digital silence.
    floor_from_sound: bool,
    /// A fall far under the floor in progress: the loudest of its frames and their number.
    floor_jump: Option<(f32, u32)>,
    /// Tone features of the last [`STEADY_LAG`] frames (`None`: silent), oldest first.
    history: VecDeque<Option<[f32; N_FEAT]>>,
    spectral: Spectral,
    /// Samples of an incomplete frame, for [`Analyser::push`].
    carry: Vec<f32>,
    /// Where in [`Analyser::push`]'s output the frames of the model's batch are.
    pending: Vec<usize>,
    gained: Box<[f32; FRAME]>,
    fbuf: Box<[f32; FRAME]>,
}

impl fmt::Debug for Analyser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Analyser")
            .field("level_db", &self.level_db)
            .field("floor_db", &self.floor_db)
            .finish_non_exhaustive()
    }
}

impl Analyser {
    /// An analyser for the given options (only `reject_music` matters here).
    pub(crate) fn new(opts: &VadOptions) -> crate::Result<Self> {
        Ok(Analyser {
            front: silero::Front::new()?,
            reject_music: opts.reject_music,
            frames_seen: 0,
            quiet_run: 0,
            digital_run: 0,
            gate_quiet_run: 0,
            level_db: MIN_DB,
            floor_db: f32::INFINITY,
            floor_from_sound: false,
            floor_jump: None,
            history: VecDeque::with_capacity(STEADY_LAG + 1),
            spectral: Spectral::new(),
            carry: Vec::with_capacity(FRAME),
            pending: Vec::with_capacity(silero::BATCH),
            gained: Box::new([0.0; FRAME]),
            fbuf: Box::new([0.0; FRAME]),
        })
    }

    /// Frames `samples` (continuing the previous call's) and appends one analysis per whole
    /// frame to `out`; an incomplete frame waits for the next call or [`Analyser::finish`].
    pub(crate) fn push(&mut self, mut samples: &[f32], out: &mut Vec<Analysed>) {
        if !self.carry.is_empty() {
            let take = (FRAME - self.carry.len()).min(samples.len());
            let (head, rest) = samples.split_at(take);
            self.carry.extend_from_slice(head);
            samples = rest;
            if self.carry.len() == FRAME {
                let frame = std::mem::take(&mut self.carry);
                self.analyse_onto(&frame, out);
                self.carry = frame;
                self.carry.clear();
            }
        }
        let mut chunks = samples.chunks_exact(FRAME);
        for frame in &mut chunks {
            self.analyse_onto(frame, out);
        }
        self.carry.extend_from_slice(chunks.remainder());
        self.flush(out);
    }

    /// Ends the input: an incomplete last frame is analysed zero-padded.
    pub(crate) fn finish(&mut self, out: &mut Vec<Analysed>) {
        if !self.carry.is_empty() {
            let frame = std::mem::take(&mut self.carry);
            self.analyse_onto(&frame, out);
        }
        self.flush(out);
    }

    /// Analyses `frame` into a new entry of `out`; its model input ([`Analysed::pre`]) comes
    /// with the batch it joins (see [`Analyser::flush`]).
    fn analyse_onto(&mut self, frame: &[f32], out: &mut Vec<Analysed>) {
        out.push(Analysed::default());
        let i = out.len() - 1;
        if self.analyse_frame(frame, &mut out[i]) {
            self.pending.push(i);
            if self.front.ready() == silero::BATCH {
                self.flush(out);
            }
        }
    }

    /// Runs the speech model's state-free half on the frames waiting for it, all at once (the
    /// weights are read once per batch), and fills in their [`Analysed::pre`].
    fn flush(&mut self, out: &mut [Analysed]) {
        if self.pending.is_empty() {
            return;
        }
        let pres = self.front.run();
        for (&i, p) in self.pending.iter().zip(pres) {
            if let Some(a) = out.get_mut(i) {
                a.pre = *p;
            }
        }
        self.pending.clear();
    }

    /// Analyses one frame of up to [`FRAME`] samples (a shorter one is zero-padded, extra
    /// samples are ignored) into `a`.
    pub(crate) fn analyse(&mut self, frame: &[f32], a: &mut Analysed) {
        debug_assert!(self.pending.is_empty());
        if self.analyse_frame(frame, a) {
            if let Some(p) = self.front.run().first() {
                a.pre = *p;
            }
        }
    }

    /// [`Analyser::analyse`] up to the speech model: `true` when the frame goes through it,
    /// prepared in the model's batch and not yet run.
    fn analyse_frame(&mut self, frame: &[f32], a: &mut Analysed) -> bool {
        // A fixed-size, zero-padded copy: no bounds checks below, and a short final frame is
        // measured like a full one.
        let x = &mut self.fbuf;
        let n = frame.len().min(FRAME);
        x[..n].copy_from_slice(&frame[..n]);
        x[n..].fill(0.0);
        let x = &self.fbuf;

        let mut r = [0f32; LAGS.len() + 1];
        r[0] = dot(&x[..], &x[..]);
        let any = r[0] > 0.0 && self.reject_music;
        let mut zc = 0u32;
        if any {
            // The zero crossings and the four autocorrelation lags.
            for (r, &lag) in r[1..].iter_mut().zip(&LAGS) {
                *r = dot(&x[lag..], &x[..FRAME - lag]);
            }
            zc = x
                .windows(2)
                .map(|w| u32::from((w[0] >= 0.0) != (w[1] >= 0.0)))
                .sum();
        }
        let ms = r[0] / FRAME as f32;
        let db = 10.0 * (ms + 1e-12).log10();
        // NaN / infinite samples must not poison the trackers for the rest of the input.
        let db = if db.is_finite() {
            db.clamp(MIN_DB, MAX_DB)
        } else {
            MIN_DB
        };

        // Level and floor trackers, in dB so they commute with a gain. A hole in a line with
        // noise (a lost packet a VoIP recorder fills with zeros) says nothing about the line:
        // up to DIGITAL_PAUSE_FRAMES of digital silence leave the floor as it is, and a
        // sudden fall far under it counts only once it lasts (FLOOR_JUMP_FRAMES). Taken at once, the hole's −90 to −120 dB
        // took the floor 40 s to climb back from, and all that time a noisy line was taken
        // for a clean one (the corpus's 5 dB call with such holes lost 4 replies and sent
        // 2.4 % of its hold music). A recording whose pauses are all digital silence keeps
        // its floor there.
        let digital = db <= MIN_DB + 1.0;
        self.digital_run = if digital {
            self.digital_run.saturating_add(1)
        } else {
            0
        };
        // Longer digital silence is a real pause (a mute, the end of hold music): the floor
        // follows it as it follows any sound.
        let in_hole = digital && self.floor_from_sound && self.digital_run <= DIGITAL_PAUSE_FRAMES;
        if digital {
            self.floor_jump = None;
            if !in_hole {
                if db < self.floor_db {
                    self.floor_db = db;
                    self.floor_from_sound = false;
                } else {
                    self.floor_db += FLOOR_RISE_DB;
                }
            }
        } else if self.floor_db.is_finite() && db < self.floor_db - FLOOR_JUMP_DB {
            // A sudden fall far under the floor: taken once it has lasted FLOOR_JUMP_FRAMES,
            // at the loudest of those frames.
            let (low, n) = self.floor_jump.map_or((db, 1), |(l, n)| (l.max(db), n + 1));
            if n >= FLOOR_JUMP_FRAMES {
                self.floor_db = low;
                self.floor_from_sound = true;
                self.floor_jump = None;
            } else {
                self.floor_jump = Some((low, n));
            }
        } else {
            self.floor_jump = None;
            if db < self.floor_db {
                self.floor_db = db;
                self.floor_from_sound = true;
            } else {
                self.floor_db += FLOOR_RISE_DB;
            }
        }
        // The level never sinks into the noise: over seconds of dead air on a noisy line the
        // peak tracker would follow the noise down, and the gain below would then lift the
        // noise to the level of speech (the model, fed that for 15 s, missed the first 300 ms
        // of the loud reply that followed).
        self.level_db = db
            .max(self.level_db - LEVEL_DECAY_DB)
            .max(self.floor_db + LEVEL_ABOVE_FLOOR_DB);

        let silent = digital || db < self.level_db - LEVEL_RANGE_DB;
        let quiet = silent || db < self.floor_db + NOISE_MARGIN_DB;
        // In the first second the noise floor is not known yet (a file may start with speech):
        // any frame that is not silent counts as loud.
        self.frames_seen = self.frames_seen.saturating_add(1);
        let loud = (db >= self.floor_db + LOUD_MARGIN_DB || (self.frames_seen <= 31 && !silent))
            && db >= self.level_db - LOUD_RANGE_DB;

        // Which frames the model hears. In a noisy recording (speech less than
        // CLEAN_SNR_DB above the noise floor), every frame but silence: speech sits only a few
        // dB above the noise and the energy gate alone would lose it. In a clean one, quiet
        // frames too are skipped. Either way the model hears the first MODEL_QUIET_FRAMES
        // skipped frames after sound, so that its recurrent state leaves "speech" before
        // whatever comes next (hold music right after a turn would otherwise start with the
        // state of the speech before it).
        let snr_db = (self.level_db - self.floor_db).max(0.0);
        let spectral = if self.reject_music && !silent && snr_db < SPECTRAL_SNR_DB {
            self.spectral.measure(&self.fbuf)
        } else {
            self.spectral.skip(silent);
            None
        };
        let skippable = silent || (quiet && snr_db >= CLEAN_SNR_DB);
        self.quiet_run = if skippable {
            self.quiet_run.saturating_add(1)
        } else {
            0
        };
        // A hole in a line with noise (a lost packet filled with zeros: digital silence, or
        // frames far under the floor) is not heard by the model at all: its state goes on
        // from the line's sound (having heard the hole, it answered 0.3–0.5 instead of
        // 0.75–0.86 to a faint reply right after one).
        let hole = self.floor_jump.is_some() || in_hole;
        let model = !(hole || (skippable && self.quiet_run > MODEL_QUIET_FRAMES));
        if model {
            let level = self.level_db.max(TARGET_DBFS - MAX_GAIN_DB);
            // Only quiet recordings are lifted; loud sound (music before a turn) never pushes
            // the speech after it down.
            let gain = 10f32.powf((TARGET_DBFS - level).max(0.0) / 20.0);
            for (o, &x) in self.gained.iter_mut().zip(self.fbuf.iter()) {
                *o = (x * gain).clamp(-1.0, 1.0);
            }
            self.front.prepare(&self.gained[..]);
        }

        // Pauses for the model's state (see `VoiceDetector::step`).
        let pause = quiet && db < self.level_db - PAUSE_BELOW_LEVEL_DB;
        self.gate_quiet_run = if pause {
            self.gate_quiet_run.saturating_add(1)
        } else {
            0
        };

        let mut feat = [0f32; N_FEAT];
        feat[0] = zc as f32 / FRAME as f32;
        if r[0] > 0.0 {
            for j in 0..LAGS.len() {
                feat[j + 1] = r[j + 1] / r[0];
            }
        }
        let old = if self.history.len() >= STEADY_LAG {
            self.history.front().copied().flatten()
        } else {
            None
        };
        let compared = old.is_some();
        let steady = old.is_some_and(|old| {
            feat.iter()
                .zip(&old)
                .zip(&STEADY_TOL)
                .all(|((a, b), t)| (a - b).abs() <= *t)
        });
        if self.history.len() >= STEADY_LAG {
            self.history.pop_front();
        }
        self.history.push_back((!silent).then_some(feat));
        a.db = db;
        a.loud = loud;
        a.floor_db = self.floor_db;
        a.snr_db = snr_db;
        a.quiet = quiet;
        a.silent = silent;
        a.steady = steady;
        a.compared = compared;
        a.spectral_steady = spectral.is_some_and(|sim| sim >= SPECTRAL_STEADY_SIM);
        a.spectral_compared = spectral.is_some();
        a.model = model;
        a.pause = pause;
        // Either count may come first in a pause, and both may come: at the second the
        // model's tally (speech and other sound heard since the last pause) has been reset
        // by the first and is zero, so nothing more happens.
        a.pause_reached = self.gate_quiet_run == FORGET_PAUSE_FRAMES
            || (pause && self.digital_run == DIGITAL_PAUSE_FRAMES);
        model
    }
}

/// `Σ a[i]·b[i]` over the shorter of the two, in eight interleaved partial sums (which the
/// compiler turns into vector arithmetic; one running sum is a chain of dependent adds).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Spectral steadiness above the noise, for the music check of noisy recordings: the power
/// spectrum of each frame (512-point FFT, Hann window, 31.25 Hz bins from 312 Hz to 3.4 kHz,
/// the telephone band) less twice a per-bin noise floor (a minimum tracker rising 2 dB/s, as
/// the frame's own), and the cosine similarity of its square root with the frame's
/// [`STEADY_LAG`] frames back. Sustained notes keep their partials where they were; speech
/// moves its harmonics and formants within 64 ms, and broadband line noise is mostly taken
/// out by the subtraction.
struct Spectral {
    fft: std::sync::Arc<dyn realfft::RealToComplex<f32>>,
    input: Vec<f32>,
    output: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    window: Vec<f32>,
    /// Per bin: the noise floor (power); `INFINITY` until measured.
    floor: Vec<f32>,
    /// The last [`STEADY_LAG`] frames' spectra above the noise (`None`: not measured), oldest
    /// first.
    history: VecDeque<Option<Vec<f32>>>,
    /// The last frame was measured (the floor is current).
    live: bool,
    /// A buffer that left the history, for the next measurement.
    spare: Option<Vec<f32>>,
}

/// [`Spectral`]'s band, in FFT bins of 31.25 Hz.
const SPECTRAL_BINS: std::ops::Range<usize> = 10..110;

impl Spectral {
    fn new() -> Spectral {
        let fft = realfft::RealFftPlanner::<f32>::new().plan_fft_forward(FRAME);
        let window = (0..FRAME)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / FRAME as f32).cos())
            .collect();
        Spectral {
            input: fft.make_input_vec(),
            output: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            window,
            floor: vec![f32::INFINITY; SPECTRAL_BINS.len()],
            history: VecDeque::with_capacity(STEADY_LAG + 1),
            live: false,
            spare: None,
        }
    }

    /// A frame not measured (silent, or a clean recording's).
    fn skip(&mut self, silent: bool) {
        if !silent {
            // Measured again later, the floor starts afresh.
            self.live = false;
        }
        self.push(None);
    }

    fn push(&mut self, v: Option<Vec<f32>>) {
        if self.history.len() >= STEADY_LAG {
            self.spare = self.history.pop_front().flatten().or(self.spare.take());
        }
        self.history.push_back(v);
    }

    /// Measures `frame`: its similarity with the frame [`STEADY_LAG`] back, when that one was
    /// measured and both have sound above the noise.
    fn measure(&mut self, frame: &[f32; FRAME]) -> Option<f32> {
        if !self.live {
            self.floor.fill(f32::INFINITY);
            self.live = true;
        }
        for ((d, &x), &w) in self.input.iter_mut().zip(frame).zip(&self.window) {
            *d = x * w;
        }
        // Sizes come from the plan itself: this cannot fail.
        let _ = self
            .fft
            .process_with_scratch(&mut self.input, &mut self.output, &mut self.scratch);
        let rise = 10f32.powf(FLOOR_RISE_DB / 10.0);
        // The buffer of a frame that left the history, when there is one.
        let mut v = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(SPECTRAL_BINS.len()));
        v.clear();
        for (f, z) in self.floor.iter_mut().zip(&self.output[SPECTRAL_BINS]) {
            let p = z.norm_sqr();
            *f = if p < *f { p } else { *f * rise };
            v.push((p - 2.0 * *f).max(0.0).sqrt());
        }
        let sim = self
            .history
            .front()
            .filter(|_| self.history.len() >= STEADY_LAG)
            .and_then(Option::as_ref)
            .and_then(|o| {
                let (mut dot, mut a, mut b) = (0f32, 0f32, 0f32);
                for (x, y) in v.iter().zip(o) {
                    dot += x * y;
                    a += x * x;
                    b += y * y;
                }
                (a > 0.0 && b > 0.0 && (dot / (a * b).sqrt()).is_finite())
                    .then(|| dot / (a * b).sqrt())
            });
        self.push(Some(v));
        sim
    }
}

/// Frame-level voice activity detector: energy gate + gain-normalised speech model + tone
/// check.
pub struct VoiceDetector {
    /// The first half, for [`VoiceDetector::push_frame`].
    analyser: Analyser,
    /// Scratch for [`VoiceDetector::push_frame`].
    scratch: Box<Analysed>,
    model: silero::Recurrent,
    /// Since the last pause: sounding frames the model called speech (saturating).
    heard_speech: u32,
    /// Since the last pause: sounding frames the model called not speech (saturating).
    heard_other: u32,
    /// The model's state at the last pause after speech, or a fresh model's.
    warm: silero::State,
    /// Consecutive quiet frames of a noisy recording that the model heard and called not
    /// speech (saturating).
    noise_run: u32,
    /// The model's state [`MODEL_QUIET_FRAMES`] into the current `noise_run`.
    noise_state: Option<silero::State>,
    /// The model's state [`MODEL_QUIET_FRAMES`] into the last noise run that began as speech
    /// ended, and the noise floor then: what the model heard after the last words.
    noise_warm: Option<(silero::State, f32)>,
    /// Frames since the last one in speech (saturating).
    since_speech: u32,
    /// The SNR estimate at the last sounding frame in speech.
    speech_snr: f32,
    /// Frames are on probation (see [`Pending::probation`]).
    probation: bool,
    /// Consecutive frames of speech by the model (saturating).
    vad_run: u32,
    /// The highest probability in the current run of speech.
    run_peak: f32,
    /// Inside speech by the model's hysteresis.
    in_speech: bool,
    opts: VadOptions,
    /// Frames pushed but not yet decided, plus the window behind them.
    window: VecDeque<Pending>,
    /// Index in `window` of the next frame to decide.
    next: usize,
}

impl fmt::Debug for VoiceDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VoiceDetector")
            .field("opts", &self.opts)
            .field("level_db", &self.analyser.level_db)
            .field("floor_db", &self.analyser.floor_db)
            .finish_non_exhaustive()
    }
}

impl VoiceDetector {
    /// A detector with the given options (checked by [`VadOptions::validate`]).
    pub fn new(opts: VadOptions) -> crate::Result<Self> {
        opts.validate()?;
        Ok(VoiceDetector {
            analyser: Analyser::new(&opts)?,
            scratch: Box::default(),
            model: silero::Recurrent::new()?,
            heard_speech: 0,
            heard_other: 0,
            warm: silero::State::zero(),
            noise_run: 0,
            noise_state: None,
            noise_warm: None,
            since_speech: u32::MAX,
            speech_snr: f32::INFINITY,
            probation: false,
            vad_run: 0,
            run_peak: 0.0,
            in_speech: false,
            opts,
            window: VecDeque::with_capacity(2 * DELAY_FRAMES + 2),
            next: 0,
        })
    }

    /// Analyses one frame of [`FRAME`] samples (a shorter final frame is zero-padded, extra
    /// samples are ignored). Returns the decision for the frame pushed [`DELAY_FRAMES`] frames
    /// ago, or `None` while the look-ahead fills.
    pub fn push_frame(&mut self, frame: &[f32]) -> Option<FrameInfo> {
        let mut a = std::mem::take(&mut self.scratch);
        self.analyser.analyse(frame, &mut a);
        let r = self.push_analysed(&a);
        self.scratch = a;
        r
    }

    /// The detector's own first half: [`Segmenter::push`](crate::segment::Segmenter::push)
    /// frames and analyses through it.
    pub(crate) fn analyser(&mut self) -> &mut Analyser {
        &mut self.analyser
    }

    /// [`VoiceDetector::push_frame`] for a frame already through an [`Analyser`] (the same
    /// stream's, in order): the second half of the detector.
    pub(crate) fn push_analysed(&mut self, a: &Analysed) -> Option<FrameInfo> {
        let p = self.step(a);
        self.window.push_back(p);
        if self.window.len() > self.next + DELAY_FRAMES {
            Some(self.decide())
        } else {
            None
        }
    }

    /// Decides every frame still held back (end of input), appending to `out`.
    pub fn flush(&mut self, out: &mut Vec<FrameInfo>) {
        while self.next < self.window.len() {
            out.push(self.decide());
        }
    }

    fn decide(&mut self) -> FrameInfo {
        let i = self.next;
        let Some(cur) = self.window.get(i).copied() else {
            // Unreachable by construction; a quiet frame is the harmless answer.
            return FrameInfo {
                voiced: false,
                quiet: true,
                music: false,
                prob: 0.0,
                db: MIN_DB,
                loud: false,
                floor_db: MIN_DB,
                snr_db: 0.0,
            };
        };
        // Whether at least `fraction` of the window's compared frames (4 or more) are steady by
        // `test` (`None`: not compared). A frame right after silence has nothing to be
        // compared with: it counts neither as steady nor as changing (else every onset of a
        // tone would look like change).
        let window = || self.window.iter().skip(i.saturating_sub(DELAY_FRAMES));
        let mostly_steady = |test: fn(&Pending) -> Option<bool>, fraction: f32| {
            let (seen, steady) = window()
                .filter(|p| !p.silent)
                .filter_map(test)
                .fold((0u32, 0u32), |(n, k), st| (n + 1, k + u32::from(st)));
            seen >= 4 && steady as f32 >= fraction * seen as f32
        };
        let music = self.opts.reject_music
            && !cur.silent
            && (mostly_steady(|p| p.compared.then_some(p.steady), MUSIC_STEADY_FRACTION)
                // In a noisy recording the features above drown in the noise; the spectrum
                // above the noise keeps music's sustained partials apart from speech.
                || (cur.snr_db < NOISY_SNR_DB
                    && mostly_steady(
                        |p| p.spectral_compared.then_some(p.spectral_steady),
                        SPECTRAL_STEADY_FRACTION,
                    )));
        // A run of speech on probation that ends within the look-ahead before it lasts
        // PROBATION_FRAMES, or in which the model is not once sure (PROBATION_PROB) by the end
        // of the look-ahead, is the restored model's first reaction to more music, not speech.
        let rejected = cur.probation && cur.vad && {
            let mut j = i;
            while self.window.get(j + 1).is_some_and(|p| p.vad) {
                j += 1;
            }
            let ended = j + 1 < self.window.len();
            let (run, peak) = self.window.get(j).map_or((0, 0.0), |p| (p.run, p.run_peak));
            (ended && run < PROBATION_FRAMES) || peak < PROBATION_PROB
        };
        let music = music || rejected;
        self.next += 1;
        while self.next > DELAY_FRAMES {
            self.window.pop_front();
            self.next -= 1;
        }
        FrameInfo {
            // Near the noise floor, the model's hysteresis is not enough: a quiet frame is
            // speech only when the model says so on its own (probability ≥ threshold).
            voiced: cur.vad
                && !cur.silent
                && !music
                && (!cur.quiet || cur.prob >= self.opts.threshold),
            quiet: cur.quiet,
            music: music || (!cur.quiet && !cur.vad),
            prob: cur.prob,
            db: cur.db,
            loud: cur.loud,
            floor_db: cur.floor_db,
            snr_db: cur.snr_db,
        }
    }

    /// The speech model's recurrent half and everything that depends on its answers.
    fn step(&mut self, a: &Analysed) -> Pending {
        // A noisy recording's quiet frames all go through the model (speech may sit just above
        // the noise). After seconds of nothing but the line's noise its state no longer
        // answers the first syllables of a reply (0.00 for 300 ms of speech 14 dB above the
        // noise), while a clean recording's model, which skips its silences, answers at once.
        // So when sound follows a second or more of such noise, the model goes on from the
        // state it had MODEL_QUIET_FRAMES into the noise, as if the noise had been that short.
        // On a line as noisy as 5 dB SNR, hold music sits in the noise as well: its frames are
        // quiet, and a snapshot taken in it is the music's. So when the line is that noisy and
        // its noise floor is back where it was after the last words (not lifted by music),
        // the state put back is the one taken then.
        if !a.quiet {
            if self.noise_run >= FORGET_AFTER_FRAMES {
                let warm = self
                    .noise_warm
                    .as_ref()
                    .filter(|(_, floor)| {
                        self.speech_snr < NOISY_SNR_DB && a.floor_db <= floor + NOISE_MARGIN_DB
                    })
                    .map(|(s, _)| s);
                if let Some(s) = warm.or(self.noise_state.as_ref()) {
                    self.model.set_state(s);
                }
            }
            self.noise_run = 0;
            self.noise_state = None;
        }
        let prob = if a.model {
            self.model.step(&a.pre)
        } else {
            0.0
        };
        if a.quiet && a.model {
            if prob < self.opts.threshold {
                self.noise_run = self.noise_run.saturating_add(1);
                if self.noise_run == MODEL_QUIET_FRAMES {
                    let st = self.model.state();
                    // This noise run began as speech ended (the hangover's frames included).
                    if self.since_speech <= MODEL_QUIET_FRAMES + 2 {
                        self.noise_warm = Some((st.clone(), a.floor_db));
                    }
                    self.noise_state = Some(st);
                }
            } else {
                self.noise_run = 0;
                self.noise_state = None;
            }
        }
        self.in_speech = if self.in_speech {
            prob >= self.opts.neg_threshold
        } else {
            prob >= self.opts.threshold
        };
        let vad = self.in_speech;
        self.since_speech = if vad {
            0
        } else {
            self.since_speech.saturating_add(1)
        };
        if vad && !a.quiet {
            self.speech_snr = a.snr_db;
        }
        if vad {
            self.vad_run = self.vad_run.saturating_add(1);
            self.run_peak = self.run_peak.max(prob);
        } else {
            self.vad_run = 0;
            self.run_peak = 0.0;
        }
        if self.vad_run >= PROBATION_FRAMES && self.run_peak >= PROBATION_PROB {
            self.probation = false;
        }

        // The model's recurrent state remembers long stretches of music: after a minute of
        // hold music it can take seconds of speech to say "speech" again (the agent's first
        // words after the hold were lost). So at each pause of FORGET_PAUSE_FRAMES quiet
        // frames well below the speech level, its state is either remembered (the sound before
        // the pause was mostly speech) or replaced by the state remembered at the last pause
        // after speech (the sound before the pause was a second or more of something else).
        // The first run of speech after a replacement is on probation.
        if a.pause {
            if a.pause_reached {
                if self.heard_speech > self.heard_other {
                    self.warm = self.model.state();
                } else if self.heard_other >= FORGET_AFTER_FRAMES {
                    self.model.set_state(&self.warm);
                    self.probation = true;
                    // The snapshot of this quiet run was taken before the state was put back:
                    // it is the music's.
                    self.noise_state = None;
                }
                self.heard_speech = 0;
                self.heard_other = 0;
            }
        } else if vad {
            self.heard_speech = self.heard_speech.saturating_add(1);
        } else {
            self.heard_other = self.heard_other.saturating_add(1);
        }
        Pending {
            db: a.db,
            loud: a.loud,
            floor_db: a.floor_db,
            snr_db: a.snr_db,
            prob,
            quiet: a.quiet,
            silent: a.silent,
            vad,
            steady: a.steady,
            compared: a.compared,
            spectral_steady: a.spectral_steady,
            spectral_compared: a.spectral_compared,
            probation: self.probation,
            run: self.vad_run,
            run_peak: self.run_peak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(samples: &[f32]) -> Vec<FrameInfo> {
        let mut d = VoiceDetector::new(VadOptions::default()).unwrap();
        let mut out = Vec::new();
        for f in samples.chunks(FRAME) {
            out.extend(d.push_frame(f));
        }
        d.flush(&mut out);
        out
    }

    #[test]
    fn silence_is_quiet_and_one_decision_per_frame() {
        let out = run(&vec![0.0; FRAME * 20 + 7]);
        assert_eq!(out.len(), 21);
        assert!(out.iter().all(|f| f.quiet && !f.voiced));
    }

    #[test]
    fn dead_air_on_a_noisy_line_does_not_pull_the_speech_level_into_the_noise() {
        // 1 s of sound at -20 dBFS, then 20 s of line noise at -38 dBFS: the peak tracker
        // alone would sink 19 dB, to the noise itself, and the gain would lift the noise to
        // the level of speech.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |rms: f32| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rms * ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.46
        };
        let mut x: Vec<f32> = (0..16_000).map(|_| noise(0.1)).collect();
        x.extend((0..20 * 16_000).map(|_| noise(0.0126)));
        let out = run(&x[..x.len() / FRAME * FRAME]);
        let last = out.last().unwrap();
        assert!((-39.0..-37.0).contains(&last.floor_db), "{last:?}");
        assert!(last.snr_db >= LEVEL_ABOVE_FLOOR_DB - 0.01, "{last:?}");
        assert!(last.snr_db < LEVEL_ABOVE_FLOOR_DB + 1.0, "{last:?}");
    }

    #[test]
    fn a_lost_packet_on_a_noisy_line_is_no_noise_floor() {
        // Line noise at about -31 dBFS with a lost packet every second, filled with zeros
        // (40-90 ms), with and without a filter's tail into it: the noise floor stays near
        // the line's (frames partly in a hole pull it down by a few dB; it used to fall to
        // the hole's -120 or -90 dB and take 40 s to climb back), and the model never hears
        // the holes.
        let mut rng = fastrand::Rng::with_seed(5);
        let mut x: Vec<f32> = Vec::new();
        for k in 0..12 {
            x.extend((0..16_000).map(|_| (rng.f32() - 0.5) * 0.1));
            let hole = 640 + 160 * (k % 4);
            let tail = if k % 2 == 0 { 0.002 } else { 0.0 };
            x.extend((0..hole).map(|i| tail * (rng.f32() - 0.5) * (-(i as f32) / 40.0).exp()));
        }
        let out = run(&x[..x.len() / FRAME * FRAME]);
        // After the first second (the floor is not known before).
        for f in out.iter().skip(40) {
            assert!((-40.0..-29.0).contains(&f.floor_db), "{f:?}");
            if f.db < -60.0 {
                assert_eq!(f.prob, 0.0, "{f:?}");
            }
        }
    }

    #[test]
    fn a_chord_in_line_noise_is_spectrally_steady_and_gliding_harmonics_are_not() {
        // After 1 s of white noise alone, both a few dB above it: chords that change every
        // 0.4 s (a note held for seconds becomes part of the noise floor, as it should), and
        // a "voice" whose pitch glides as speech does.
        let mut rng = fastrand::Rng::with_seed(9);
        let n = 90 * FRAME;
        let lead = 16_000;
        let noise: Vec<f32> = (0..n).map(|_| (rng.f32() - 0.5) * 0.05).collect();
        let chords = [
            [261.6f32, 329.6, 392.0],
            [293.7, 370.0, 440.0],
            [246.9, 311.1, 370.0],
        ];
        let chord: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let c = &chords[(i / 6_400) % chords.len()];
                let on = if i >= lead { 0.03 } else { 0.0 };
                c.iter()
                    .map(|f| (2.0 * std::f32::consts::PI * f * t).sin() * on)
                    .sum()
            })
            .collect();
        let mut phase = 0f32;
        let voice: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let f0 = 140.0 + 60.0 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
                phase += 2.0 * std::f32::consts::PI * f0 / 16_000.0;
                let on = if i >= lead { 0.03 } else { 0.0 };
                (1..=20)
                    .map(|k| (k as f32 * phase).sin() / k as f32)
                    .sum::<f32>()
                    * on
            })
            .collect();
        let steady_share = |x: &[f32]| {
            let mut s = Spectral::new();
            let mut frame = [0f32; FRAME];
            let (mut steady, mut seen) = (0, 0);
            for (k, (c, nz)) in x
                .chunks_exact(FRAME)
                .zip(noise.chunks_exact(FRAME))
                .enumerate()
            {
                for ((d, a), b) in frame.iter_mut().zip(c).zip(nz) {
                    *d = a + b;
                }
                let sim = s.measure(&frame);
                if k * FRAME < lead + 2 * FRAME {
                    continue;
                }
                if let Some(sim) = sim {
                    seen += 1;
                    steady += usize::from(sim >= SPECTRAL_STEADY_SIM);
                }
            }
            steady as f32 / seen.max(1) as f32
        };
        let (c, v) = (steady_share(&chord), steady_share(&voice));
        // The music window needs SPECTRAL_STEADY_FRACTION (0.6) of its frames steady.
        assert!(c >= 0.9, "chord: {c}");
        assert!(v <= 0.4, "voice: {v}");
    }

    #[test]
    fn steady_tone_is_music_not_speech() {
        let tone: Vec<f32> = (0..16_000 * 2)
            .map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin())
            .collect();
        let out = run(&tone);
        let voiced = out.iter().filter(|f| f.voiced).count();
        assert_eq!(voiced, 0, "{out:?}");
    }

    #[test]
    fn nan_and_infinite_samples_do_not_break_later_frames() {
        let mut x = vec![f32::NAN; FRAME * 3];
        x.extend(vec![f32::INFINITY; FRAME * 3]);
        x.extend(vec![f32::NEG_INFINITY; FRAME]);
        x.extend(vec![0.0; FRAME * 30]);
        // A noise-like, non-steady signal after the garbage is still measured normally.
        let mut seed = 1u32;
        let tail: Vec<f32> = (0..FRAME * 20)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        x.extend(&tail);
        let out = run(&x);
        assert_eq!(out.len(), x.len().div_ceil(FRAME));
        let last = out.last().unwrap();
        assert!(last.db > -20.0 && last.db < 0.0, "{last:?}");
        assert!(!last.quiet, "the trackers were poisoned: {last:?}");
        assert!(out.iter().all(|f| f.db.is_finite()));
    }

    #[test]
    fn bad_thresholds_are_rejected() {
        for (t, n) in [(0.5, 0.6), (1.0, 0.5), (0.5, 0.0), (f32::NAN, 0.3)] {
            let o = VadOptions {
                threshold: t,
                neg_threshold: n,
                ..VadOptions::default()
            };
            assert!(VoiceDetector::new(o).is_err(), "{t} {n}");
        }
    }
}
