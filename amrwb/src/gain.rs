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
        // Innovation energy → 1/sqrt, Q?: the gain that normalises the codevector.
        let (mut frac, mut exp) = energy12(code);
        exp -= 24;
        isqrt_n(&mut frac, &mut exp);
        let inov = extract_h(l_shl(frac, exp - 3));
        let state = state.min(6);

        if bad {
            let mut pitch = median5(&self.pitch_hist);
            if pitch > 15565 {
                pitch = 15565;
            }
            self.past_pitch = pitch;
            let pitch_out = mult(
                if lost {
                    PDOWN_LOST[state]
                } else {
                    PDOWN_BAD[state]
                },
                pitch,
            );
            let median_code = median5(&self.code_hist);
            self.past_code = if vad_hist > 2 {
                median_code
            } else {
                mult(
                    if lost {
                        CDOWN_LOST[state]
                    } else {
                        CDOWN_BAD[state]
                    },
                    median_code,
                )
            };
            let mut acc = 0i32;
            for &e in &self.past_energy {
                acc = l_mac(acc, e, 8192);
            }
            let e = sub(extract_h(acc), 3072).max(-14336);
            self.push_energy(e);
            self.push_hist();
            return Gains {
                pitch: pitch_out,
                code: l_mult(self.past_code, inov),
            };
        }

        // Predicted code-gain energy, converted to a linear gain gcode0 · 2^exp.
        let mut acc = 30i32 << 24;
        for (&c, &e) in PRED.iter().zip(&self.past_energy) {
            acc = l_mac(acc, c, e);
        }
        let g0 = extract_h(acc);
        let acc = l_mult(g0, 5443) >> 8;
        let (e0, f0) = l_extract(acc);
        let gcode0 = pow2(14, f0) as i16;
        let e0 = i32::from(e0) - 14;

        let table: &[i16] = if six_bits { &QUA_GAIN_6B } else { &QUA_GAIN_7B };
        let base = usize::from(index) * 2;
        let pitch = table.get(base).copied().unwrap_or(0);
        let g_code = table.get(base + 1).copied().unwrap_or(0);

        let mut gain = l_shl(l_mult(g_code, gcode0), e0 + 4);
        if prev_bad {
            let ceiling = l_mult(self.prev_code, 5120);
            if gain > ceiling && gain > 6_553_600 {
                gain = ceiling;
            }
        }
        self.past_code = round(l_shl(gain, 3));
        self.past_pitch = pitch;
        self.prev_code = self.past_code;
        self.push_hist();

        let (hi, lo) = l_extract(gain);
        let code_gain = l_shl(mpy_32_16(hi, lo, inov), 3);

        let (e, f) = log2(i32::from(g_code));
        let energy = (mpy_32_16((e - 11) as i16, f, 24660) >> 3) as i16;
        self.push_energy(energy);
        Gains {
            pitch,
            code: code_gain,
        }
    }
}
