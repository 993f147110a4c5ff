//! Pitch and code gains: the jointly quantised pair with MA-predicted code-gain energy
//! (TS 26.190 §6.1), and the attenuated substitutes for damaged and lost frames (TS 26.191).

use crate::acelp::L_SUBFR;
use crate::ops::{
    energy12, extract_h, isqrt_n, l_extract, l_mac, l_mult, l_shl, log2, median5, mpy_32_16, mult,
    pow2, round, sub,
};
use crate::tables::{QUA_GAIN_6B, QUA_GAIN_7B};

/// MA predictor of the code-gain energy (Q13).
const PRED: [i16; 4] = [4096, 3277, 2458, 1638];
/// Pitch-gain attenuation by erasure state, lost frames.
const PDOWN_LOST: [i16; 7] = [32767, 31130, 29491, 24576, 7537, 1638, 328];
/// Code-gain attenuation by erasure state, lost frames.
const CDOWN_LOST: [i16; 7] = [32767, 16384, 8192, 8192, 8192, 4915, 3277];
/// Pitch-gain attenuation by erasure state, damaged frames.
const PDOWN_BAD: [i16; 7] = [32767, 32113, 31457, 24576, 7537, 1638, 328];
/// Code-gain attenuation by erasure state, damaged frames.
const CDOWN_BAD: [i16; 7] = [32767, 32113, 32113, 32113, 32113, 32113, 22938];

/// The gain decoder's memory.
#[derive(Clone)]
pub(crate) struct GainDecoder {
    /// Past quantised code-gain energies (Q10, log2), newest first.
    past_energy: [i16; 4],
    /// Last pitch gain.
    past_pitch: i16,
    /// Last code gain (Q3).
    past_code: i16,
    /// Code gain of the last good subframe, for the first good frame after an erasure.
    prev_code: i16,
    /// Pitch gains, oldest first.
    pitch_hist: [i16; 5],
    /// Code gains, oldest first.
    code_hist: [i16; 5],
}

/// Decoded gains.
pub(crate) struct Gains {
    /// Pitch gain, Q14.
    pub pitch: i16,
    /// Code gain, Q16.
    pub code: i32,
}

impl GainDecoder {
    pub(crate) fn new() -> Self {
        GainDecoder {
            past_energy: [-14336; 4],
            past_pitch: 0,
            past_code: 0,
            prev_code: 0,
            pitch_hist: [0; 5],
            code_hist: [0; 5],
        }
    }

    fn push_hist(&mut self) {
        self.pitch_hist.rotate_left(1);
        self.pitch_hist[4] = self.past_pitch;
        self.code_hist.rotate_left(1);
        self.code_hist[4] = self.past_code;
    }

    fn push_energy(&mut self, e: i16) {
        self.past_energy = [
            e,
            self.past_energy[0],
            self.past_energy[1],
            self.past_energy[2],
        ];
    }

    /// Decodes (or, for a bad frame, substitutes) one subframe's gains. `state` is the
    /// erasure state 0..=6.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decode(
        &mut self,
        index: u16,
        six_bits: bool,
        code: &[i16; L_SUBFR],
        bad: bool,
        lost: bool,
        state: usize,
        vad_hist: i16,
        prev_bad: bool,
    ) -> Gains {
        // 1/sqrt of the innovation's energy per sample: the factor that normalises it.
        let (mut frac, mut exp) = energy12(code);
        exp -= 24;
        isqrt_n(&mut frac, &mut exp);
        let inov = extract_h(l_shl(frac, exp - 3));
        if bad {
            self.conceal(lost, state.min(6), vad_hist, inov)
        } else {
            self.dequantise(index, six_bits, prev_bad, inov)
        }
    }

    /// Substitute gains for a damaged or lost subframe (TS 26.191 §6.2.3): the medians of
    /// the last five gains, attenuated by the erasure state (the code gain only while the
    /// VAD has seen speech recently), and a predictor memory pulled 3 dB below its mean.
    fn conceal(&mut self, lost: bool, state: usize, vad_hist: i16, inov: i16) -> Gains {
        let (pitch_down, code_down) = if lost {
            (PDOWN_LOST[state], CDOWN_LOST[state])
        } else {
            (PDOWN_BAD[state], CDOWN_BAD[state])
        };
        self.past_pitch = median5(&self.pitch_hist).min(15565);
        let code_median = median5(&self.code_hist);
        self.past_code = if vad_hist <= 2 {
            mult(code_down, code_median)
        } else {
            code_median
        };
        // Mean of the four stored energies (each weighted by 1/4), less 3 dB (Q10).
        let mean_energy = extract_h(
            self.past_energy
                .iter()
                .fold(0i32, |s, &e| l_mac(s, e, 8192)),
        );
        self.push_energy(sub(mean_energy, 3072).max(-14336));
        self.push_hist();
        Gains {
            pitch: mult(pitch_down, self.past_pitch),
            code: l_mult(self.past_code, inov),
        }
    }

    /// Gains of a good subframe from the joint codebook `index` and the MA prediction of
    /// the code-gain energy (TS 26.190 §6.1).
    fn dequantise(&mut self, index: u16, six_bits: bool, prev_bad: bool, inov: i16) -> Gains {
        /// 100 in Q16: a code gain above this, just after an erasure, may not exceed
        /// 1.25 times the last good one.
        const LARGE_AFTER_ERASURE: i32 = 100 << 16;

        // Predicted energy (mean 30 dB in Q24 plus the MA sum), then 10^(E/20) as
        // gcode0 · 2^(e0 − 14).
        let predicted = extract_h(
            PRED.iter()
                .zip(&self.past_energy)
                .fold(30i32 << 24, |s, (&c, &e)| l_mac(s, c, e)),
        );
        let (e0, f0) = l_extract(l_mult(predicted, 5443) >> 8);
        let gcode0 = pow2(14, f0) as i16;
        let e0 = i32::from(e0) - 14;

        let book: &[i16] = if six_bits { &QUA_GAIN_6B } else { &QUA_GAIN_7B };
        let row = usize::from(index) * 2;
        let pitch = book.get(row).copied().unwrap_or(0);
        let correction = book.get(row + 1).copied().unwrap_or(0);

        let mut gain_q16 = l_shl(l_mult(correction, gcode0), e0 + 4);
        if prev_bad {
            // Q3 · 5120 · 2 = 1.25 in Q16.
            let allowed = l_mult(self.prev_code, 5120);
            if gain_q16 > LARGE_AFTER_ERASURE && gain_q16 > allowed {
                gain_q16 = allowed;
            }
        }
        self.past_code = round(l_shl(gain_q16, 3));
        self.prev_code = self.past_code;
        self.past_pitch = pitch;
        self.push_hist();

        // The quantised correction's energy, 20·log10 in Q10, feeds the predictor.
        let (e, f) = log2(i32::from(correction));
        self.push_energy((mpy_32_16((e - 11) as i16, f, 24660) >> 3) as i16);

        let (hi, lo) = l_extract(gain_q16);
        Gains {
            pitch,
            code: l_shl(mpy_32_16(hi, lo, inov), 3),
        }
    }
}
