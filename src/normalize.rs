//! Stage `normalize`: DC removal and loudness normalisation of 16 kHz mono audio for ASR.
//!
//! # What it does
//! * **DC removal** ([`DcBlocker`]): a streaming one-pole/one-zero high-pass,
//!   `y[n] = x[n] − x[n−1] + R·y[n−1]` with `R = exp(−2π·fc/16000)` and corner
//!   `fc` = [`DC_CORNER_HZ`] (20 Hz, −3 dB; −0.3 dB at 80 Hz, flat above). It does not move
//!   anything in time (no delay to compensate); a DC step settles with a time constant of 8 ms.
//! * **Loudness** ([`LoudnessMeter`]): ITU-R BS.1770-4 integrated loudness measured with the
//!   `ebur128` crate (K-weighting; 400 ms blocks; absolute gate −70 LUFS; relative gate −10 LU).
//!   The gates make it a speech-gated measure for recordings of speech: pauses, silence and
//!   low background between phrases do not count. The meter uses ebur128's histogram mode, so
//!   its memory is constant whatever the duration. Audio shorter than one 400 ms block is
//!   measured ungated (K-weighted energy over its whole length).
//! * **Gain** ([`Loudness::gain`]): `target_lufs − loudness`, at most
//!   `max_gain_db` (so near-silence and faint noise are not boosted absurdly), then lowered
//!   further if needed so the sample peak lands at or below `ceiling_dbfs`: the output never
//!   clips. Audio with no block above the −70 LUFS gate (digital silence) keeps gain 1.
//!
//! Defaults (see [`NormalizeOptions`]): target −23 LUFS (EBU R128), ceiling −1 dBFS, max gain
//! +40 dB (enough to bring speech peaking at −45 dBFS up to the target).
//!
//! # Streaming design (no whole file in memory)
//! Loudness needs the whole signal before the gain is known, so the gain is never applied
//! inside one streaming pass over a file:
//! * The stream ([`crate::stream::AudioStream`]) removes DC and, by default, only measures
//!   ([`crate::stream::Normalization::DcOnly`]); its meter's result is available at the end.
//! * **Per segment** (the sync route): each segment (≤ 60 s, the unit sent over the wire) is
//!   normalised on its own by [`normalize_in_place`]. Segments are held in memory anyway.
//! * **Whole file** (the async route, one upload): a measuring pass
//!   ([`crate::stream::measure_path`] → [`Loudness`]), then a gain pass: a second stream with
//!   [`crate::stream::Normalization::Fixed`]`(loudness.gain(&opts))`. The second pass sees the
//!   same samples as the first (same decode, resample and DC filter), so the measured peak
//!   holds and the gain cannot clip.

use ebur128::{EbuR128, Mode};

use crate::time::RATE;

/// Corner frequency of [`DcBlocker`], in Hz (−3 dB point of the high-pass).
pub const DC_CORNER_HZ: f64 = 20.0;

/// Loudness targets and limits for normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct NormalizeOptions {
    /// Integrated loudness to bring speech to, in LUFS. Default −23 LUFS (EBU R128).
    pub target_lufs: f64,
    /// Highest sample peak allowed after the gain, in dBFS. Default −1 dBFS.
    pub ceiling_dbfs: f64,
    /// Largest gain ever applied, in dB. Default +40 dB: speech at −45 dBFS peak reaches the
    /// target; noise and near-silence are not raised further than that.
    pub max_gain_db: f64,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        NormalizeOptions {
            target_lufs: -23.0,
            ceiling_dbfs: -1.0,
            max_gain_db: 40.0,
        }
    }
}

impl NormalizeOptions {
    /// Options with the given loudness target and the default ceiling and max gain.
    pub fn with_target(target_lufs: f64) -> Self {
        NormalizeOptions {
            target_lufs,
            ..Self::default()
        }
    }
}

/// Streaming DC removal at 16 kHz: a one-pole high-pass with its corner at [`DC_CORNER_HZ`].
///
/// Keeps its state across calls, so a stream can be fed block by block. The filter starts
/// from the first sample's value (as if the signal had been there forever), so an offset
/// present from time 0 causes no step transient.
#[derive(Debug, Clone)]
pub struct DcBlocker {
    r: f32,
    x1: f32,
    y1: f32,
    primed: bool,
}

impl Default for DcBlocker {
    fn default() -> Self {
        Self::new()
    }
}

impl DcBlocker {
    /// A DC blocker for 16 kHz audio with its corner at [`DC_CORNER_HZ`].
    pub fn new() -> Self {
        let r = (-2.0 * std::f64::consts::PI * DC_CORNER_HZ / f64::from(RATE)).exp() as f32;
        DcBlocker {
            r,
            x1: 0.0,
            y1: 0.0,
            primed: false,
        }
    }

    /// Filters `samples` in place, continuing from the previous call.
    pub fn process(&mut self, samples: &mut [f32]) {
        if !self.primed {
            // Start as if the first sample had always been there: a recording that starts
            // with an offset gives no step transient (which would eat the peak headroom).
            if let Some(first) = samples.first() {
                self.x1 = *first;
                self.primed = true;
            }
        }
        let (r, mut x1, mut y1) = (self.r, self.x1, self.y1);
        for s in samples.iter_mut() {
            let x = *s;
            let y = x - x1 + r * y1;
            x1 = x;
            y1 = y;
            *s = y;
        }
        // Flush denormals so long silences stay fast.
        if y1.abs() < 1e-30 {
            y1 = 0.0;
        }
        self.x1 = x1;
        self.y1 = y1;
    }

    /// Forgets the filter state (for a new, unrelated stream).
    pub fn reset(&mut self) {
        self.x1 = 0.0;
        self.y1 = 0.0;
        self.primed = false;
    }
}

/// The result of a loudness measurement: what the gain computation needs, small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Loudness {
    /// Gated integrated loudness in LUFS; `-inf` when nothing was above the −70 LUFS gate.
    pub integrated_lufs: f64,
    /// Largest absolute sample value seen (linear, 1.0 = full scale).
    pub peak: f32,
    /// Number of samples measured (at 16 kHz).
    pub samples: u64,
}

impl Loudness {
    /// The gain (linear) that brings this audio to `opts.target_lufs`, limited to
    /// `opts.max_gain_db` and by the peak to `opts.ceiling_dbfs`. 1.0 for silence.
    pub fn gain(&self, opts: &NormalizeOptions) -> f32 {
        let l = self.integrated_lufs;
        let mut gain_db = if l.is_finite() {
            (opts.target_lufs - l).min(opts.max_gain_db)
        } else {
            0.0
        };
        let peak = f64::from(self.peak);
        if peak > 0.0 && peak.is_finite() {
            let headroom_db = opts.ceiling_dbfs - 20.0 * peak.log10();
            gain_db = gain_db.min(headroom_db);
        }
        let g = 10f64.powf(gain_db / 20.0);
        if g.is_finite() {
            g as f32
        } else {
            1.0
        }
    }
}

/// Streaming loudness and peak meter for 16 kHz mono audio (BS.1770-4, gated; see the module
/// docs). Constant memory.
pub struct LoudnessMeter {
    ebu: EbuR128,
    peak: f32,
    samples: u64,
}

impl std::fmt::Debug for LoudnessMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoudnessMeter")
            .field("peak", &self.peak)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

impl Default for LoudnessMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl LoudnessMeter {
    /// A meter for 16 kHz mono audio.
    pub fn new() -> Self {
        // One channel at 16 kHz is always a valid ebur128 configuration: this cannot fail on
        // any input (ebur128 only refuses 0 or > 64 channels and rates outside 16 Hz–2.8 MHz).
        #[allow(clippy::expect_used)]
        let ebu = EbuR128::new(1, RATE, Mode::I | Mode::HISTOGRAM)
            .expect("ebur128 accepts 1 channel at 16 kHz");
        LoudnessMeter {
            ebu,
            peak: 0.0,
            samples: 0,
        }
    }

    /// Adds 16 kHz mono samples to the measurement.
    pub fn feed(&mut self, samples: &[f32]) {
        // Mono frames are always whole frames: ebur128 has nothing to refuse here.
        let _ = self.ebu.add_frames_f32(samples);
        self.peak = samples
            .iter()
            .fold(self.peak, |m, v| if v.abs() > m { v.abs() } else { m });
        self.samples += samples.len() as u64;
    }

    /// Gated integrated loudness so far, in LUFS; `-inf` when no block passed the gates.
    /// Audio shorter than one 400 ms block is measured ungated over its whole length.
    pub fn loudness_lufs(&self) -> f64 {
        let gated = self.ebu.loudness_global().unwrap_or(f64::NEG_INFINITY);
        if self.samples < u64::from(RATE) * 4 / 10 && self.samples > 0 {
            // No complete gating block: K-weighted energy over everything seen.
            let ms = (self.samples * 1000 / u64::from(RATE)).max(1) as u32;
            let l = self.ebu.loudness_window(ms).unwrap_or(f64::NEG_INFINITY);
            if l.is_finite() && l > -70.0 {
                return l;
            }
            return f64::NEG_INFINITY;
        }
        gated
    }

    /// Largest absolute sample value seen so far (linear).
    pub fn peak(&self) -> f32 {
        self.peak
    }

    /// Samples measured so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The measurement so far.
    pub fn loudness(&self) -> Loudness {
        Loudness {
            integrated_lufs: self.loudness_lufs(),
            peak: self.peak,
            samples: self.samples,
        }
    }

    /// Starts a new measurement.
    pub fn reset(&mut self) {
        self.ebu.reset();
        self.peak = 0.0;
        self.samples = 0;
    }
}

/// The gain (linear) that brings what `meter` measured to the target; never clips
/// (see [`Loudness::gain`]).
pub(crate) fn gain_for(meter: &LoudnessMeter, opts: &NormalizeOptions) -> f32 {
    meter.loudness().gain(opts)
}

/// Multiplies `samples` by `gain` in place (the gain pass).
pub(crate) fn apply_gain(samples: &mut [f32], gain: f32) {
    if gain != 1.0 {
        samples.iter_mut().for_each(|s| *s *= gain);
    }
}

/// Normalises one segment (16 kHz mono, DC already removed) in place: measures it, applies
/// its gain (see [`Loudness::gain`]) and returns the gain used. The result never exceeds `opts.ceiling_dbfs`.
pub fn normalize_in_place(samples: &mut [f32], opts: &NormalizeOptions) -> f32 {
    let mut meter = LoudnessMeter::new();
    meter.feed(samples);
    let g = gain_for(&meter, opts);
    apply_gain(samples, g);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech-like test signal at 16 kHz: harmonic "voiced" phrases with a gliding pitch,
    /// syllable-rate amplitude modulation and pauses; peak normalised to `peak_dbfs`.
    fn speechlike(secs: f64, peak_dbfs: f64) -> Vec<f32> {
        let n = (secs * f64::from(RATE)) as usize;
        let mut phase = 0.0f64;
        let mut x: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(RATE);
                // 2.2 s phrases, 0.8 s pauses.
                let in_phrase = (t % 3.0) < 2.2;
                let f0 = 140.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.3 * t).sin();
                phase += 2.0 * std::f64::consts::PI * f0 / f64::from(RATE);
                let env = if in_phrase {
                    (0.5 - 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).cos()).powi(2)
                } else {
                    0.0
                };
                let voiced: f64 = (1..=12).map(|k| (k as f64 * phase).sin() / k as f64).sum();
                env * voiced
            })
            .collect();
        let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let scale = 10f64.powf(peak_dbfs / 20.0) / peak;
        x.iter_mut().for_each(|v| *v *= scale);
        x.into_iter().map(|v| v as f32).collect()
    }

    fn rms_db(x: &[f32]) -> f64 {
        let ms = x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64;
        10.0 * ms.log10()
    }

    fn peak(x: &[f32]) -> f32 {
        x.iter().fold(0.0, |m, v| m.max(v.abs()))
    }

    #[test]
    fn quiet_and_loud_recordings_come_out_within_1_db() {
        let opts = NormalizeOptions::default();
        let mut outs = Vec::new();
        for (peak_dbfs, dc) in [(-45.0, 0.02f32), (-3.0, 0.0), (-20.0, -0.1)] {
            let mut x = speechlike(20.0, peak_dbfs);
            x.iter_mut().for_each(|v| *v += dc);
            let mut dcb = DcBlocker::new();
            dcb.process(&mut x);
            let g = normalize_in_place(&mut x, &opts);
            assert!(g > 0.0);
            assert!(
                peak(&x) <= 10f32.powf(-1.0 / 20.0) + 1e-6,
                "clipped: {}",
                peak(&x)
            );
            let mut m = LoudnessMeter::new();
            m.feed(&x);
            let l = m.loudness_lufs();
            assert!((l - opts.target_lufs).abs() < 0.5, "{peak_dbfs}: {l} LUFS");
            outs.push(rms_db(&x[RATE as usize..]));
        }
        for o in &outs {
            assert!((o - outs[0]).abs() < 1.0, "levels differ: {outs:?}");
        }
    }

    #[test]
    fn gain_is_limited_by_the_peak() {
        // Very low loudness but one full-scale click: the click must stay under the ceiling.
        let mut x = speechlike(5.0, -40.0);
        x[40_000] = 0.5;
        let opts = NormalizeOptions::default();
        let g = normalize_in_place(&mut x, &opts);
        let ceiling = 10f32.powf(-1.0 / 20.0);
        assert!(peak(&x) <= ceiling + 1e-6, "peak {}", peak(&x));
        assert!((g - ceiling / 0.5).abs() < 1e-3, "gain {g}");
    }

    #[test]
    fn noise_is_not_boosted_beyond_max_gain() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut x: Vec<f32> = (0..RATE as usize * 3)
            .map(|_| (rng.f32() - 0.5) * 1e-3)
            .collect();
        let opts = NormalizeOptions::default();
        let g = normalize_in_place(&mut x, &opts);
        assert!(
            (20.0 * f64::from(g).log10() - opts.max_gain_db).abs() < 1e-3,
            "gain {g}"
        );
    }

    #[test]
    fn silence_keeps_unity_gain() {
        let mut x = vec![0.0f32; 32_000];
        assert_eq!(
            normalize_in_place(&mut x, &NormalizeOptions::default()),
            1.0
        );
        assert!(x.iter().all(|v| *v == 0.0));
        let mut empty: [f32; 0] = [];
        assert_eq!(
            normalize_in_place(&mut empty, &NormalizeOptions::default()),
            1.0
        );
    }

    #[test]
    fn short_segments_are_normalised_too() {
        // 250 ms: shorter than one gating block.
        let mut x = speechlike(3.0, -30.0)[8000..12_000].to_vec();
        let g = normalize_in_place(&mut x, &NormalizeOptions::default());
        assert!(g > 2.0, "gain {g}");
    }

    #[test]
    fn dc_blocker_removes_offset_and_keeps_speech_band() {
        let mut dcb = DcBlocker::new();
        let n = RATE as usize * 2;
        let mut x: Vec<f32> = (0..n)
            .map(|i| {
                0.3 + 0.5 * (2.0 * std::f32::consts::PI * 100.0 * i as f32 / RATE as f32).sin()
            })
            .collect();
        // Block by block, with odd sizes.
        for chunk in x.chunks_mut(777) {
            dcb.process(chunk);
        }
        let tail = &x[RATE as usize..];
        let mean = tail.iter().map(|v| f64::from(*v)).sum::<f64>() / tail.len() as f64;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        let p = peak(tail);
        assert!((0.49..=0.51).contains(&p), "100 Hz amplitude {p}");
    }

    #[test]
    fn gain_respects_max_and_target() {
        let opts = NormalizeOptions::default();
        let l = |lufs| Loudness {
            integrated_lufs: lufs,
            peak: 0.001,
            samples: 16_000,
        };
        // Far too quiet: max gain (peak 0.001 allows +59 dB).
        assert!((20.0 * f64::from(l(-90.0).gain(&opts)).log10() - 40.0).abs() < 1e-3);
        // Too loud: attenuate to the target.
        let g = Loudness {
            peak: 0.9,
            ..l(-13.0)
        }
        .gain(&opts);
        assert!((20.0 * f64::from(g).log10() + 10.0).abs() < 1e-3);
        assert_eq!(l(f64::NEG_INFINITY).gain(&opts), 1.0);
    }
}
