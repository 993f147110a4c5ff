//! Excitation post-processing of the decoder: phase dispersion (`ph_disp.c`), excitation energy
//! control in noise (`ex_ctrl.c`), the energy match of the pitch-sharpened excitation (`agc2`),
//! and the background-noise detector that drives the concealment decisions (`bgnscd.c`).

use crate::lag::L_SUBFR;
use crate::ops::{
    add, div_s, energy_scaled, inv_sqrt, l_mult, l_shl, l_shr, median, mix_block, mult, norm_l,
    norm_s, round, shl, sub,
};
use crate::tables::{PH_IMP_LOW, PH_IMP_LOW_MR795, PH_IMP_MID, PH_IMP_MID_MR795};

/// Phase-dispersion state (`ph_dispState`).
#[derive(Clone)]
pub(crate) struct PhaseDispersion {
    gain_mem: [i16; 5],
    prev_state: i16,
    prev_cb_gain: i16,
    pub(crate) lock_full: bool,
    onset: i16,
}

impl PhaseDispersion {
    pub(crate) fn new() -> Self {
        PhaseDispersion {
            gain_mem: [0; 5],
            prev_state: 0,
            prev_cb_gain: 0,
            lock_full: false,
            onset: 0,
        }
    }

    /// Disperses the innovation's pulses (for the low rates) and forms the enhanced excitation
    /// `x = pitch_fac·x + cb_gain·inno` (`ph_disp`). `x` holds the adaptive codebook vector.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply(
        &mut self,
        mode: u8,
        x: &mut [i16; L_SUBFR],
        cb_gain: i16,
        ltp_gain: i16,
        inno: &mut [i16; L_SUBFR],
        pitch_fac: i16,
        shift: i16,
    ) {
        const THR1: i16 = 9830;
        const THR2: i16 = 14746;
        self.gain_mem = [
            ltp_gain,
            self.gain_mem[0],
            self.gain_mem[1],
            self.gain_mem[2],
            self.gain_mem[3],
        ];
        let mut imp: i16 = if ltp_gain < THR2 {
            if ltp_gain > THR1 {
                1
            } else {
                0
            }
        } else {
            2
        };
        // round(L_shl(L_mult(prev, 16384), 2)) == saturate(2·prev)
        let threshold = round(l_shl(l_mult(self.prev_cb_gain, 16384), 2));
        if cb_gain > threshold {
            self.onset = 2;
        } else if self.onset > 0 {
            self.onset -= 1;
        }
        if self.onset == 0 {
            let low = self.gain_mem.iter().filter(|&&g| g < THR1).count();
            if low > 2 {
                imp = 0;
            }
        }
        if imp > self.prev_state + 1 && self.onset == 0 {
            imp -= 1;
        }
        if imp < 2 && self.onset > 0 {
            imp += 1;
        }
        if cb_gain < 10 {
            imp = 2;
        }
        if self.lock_full {
            imp = 0;
        }
        self.prev_state = imp;
        self.prev_cb_gain = cb_gain;

        if mode != 7 && mode != 6 && mode != 4 && imp < 2 {
            let saved = *inno;
            let table: &[i16; L_SUBFR] = match (mode == 5, imp == 0) {
                (true, true) => &PH_IMP_LOW_MR795,
                (true, false) => &PH_IMP_MID_MR795,
                (false, true) => &PH_IMP_LOW,
                (false, false) => &PH_IMP_MID,
            };
            *inno = [0; L_SUBFR];
            for (pos, &amp) in saved.iter().enumerate() {
                if amp == 0 {
                    continue;
                }
                // Circular convolution of the pulse with the dispersion impulse.
                let (tail, head) = table.split_at(L_SUBFR - pos);
                for (o, &h) in inno[pos..].iter_mut().zip(tail) {
                    *o = add(*o, mult(amp, h));
                }
                for (o, &h) in inno[..pos].iter_mut().zip(head) {
                    *o = add(*o, mult(amp, h));
                }
            }
        }
        let adaptive = *x;
        mix_block(x, &adaptive, pitch_fac, inno, cb_gain, shift);
    }
}

/// Excitation energy control in background noise (`Ex_ctrl`).
pub(crate) fn control_energy(
    exc: &mut [i16; L_SUBFR],
    energy: i16,
    hist: &[i16; 9],
    voiced_hangover: i16,
    prev_bad: bool,
) {
    let mut avg = median(hist);
    let mut prev = add(hist[7], hist[8]) >> 1;
    if hist[8] < prev {
        prev = hist[8];
    }
    if energy < avg && energy > 5 {
        let mut test = shl(prev, 2);
        if voiced_hangover < 7 || prev_bad {
            test = sub(test, prev);
        }
        if avg > test {
            avg = test;
        }
        let exp = norm_s(energy);
        let e = div_s(16383, shl(energy, exp));
        let t = l_shr(l_mult(avg, e), 20 - exp);
        // The reference's `carefulFlag` cap (3072) is never set by the decoder.
        let scale = t.min(32767) as i16;
        for v in exc.iter_mut() {
            *v = (l_mult(scale, *v) >> 11) as i16;
        }
    }
}

/// `sqrt(energy(reference) / energy(out))` in Q12, the gain both `agc` and `agc2` start from:
/// `None` when `out` is silent (nothing to scale), 0 when `reference` is.
pub(crate) fn energy_gain(reference: &[i16], out: &[i16]) -> Option<i16> {
    let s = energy_scaled(out);
    if s == 0 {
        return None;
    }
    let mut exp = norm_l(s) - 1;
    let gain_out = round(l_shl(s, exp));
    let s = energy_scaled(reference);
    if s == 0 {
        return Some(0);
    }
    let i = norm_l(s);
    let gain_in = round(l_shl(s, i));
    exp -= i;
    let mut l = div_s(gain_out, gain_in) as i32;
    l = l_shl(l, 7);
    l = l_shr(l, exp);
    Some(round(l_shl(inv_sqrt(l), 9)))
}

/// Scales `out` to the energy of `reference` (`agc2`).
pub(crate) fn match_energy(reference: &[i16; L_SUBFR], out: &mut [i16; L_SUBFR]) {
    let Some(g0) = energy_gain(reference, out) else {
        return;
    };
    for v in out.iter_mut() {
        *v = (l_shl(l_mult(*v, g0), 3) >> 16) as i16;
    }
}

/// Background-noise detector (`Bgn_scdState`).
#[derive(Clone)]
pub(crate) struct NoiseDetector {
    energy_hist: [i16; 60],
    hangover: i16,
}

impl NoiseDetector {
    pub(crate) fn new() -> Self {
        NoiseDetector {
            energy_hist: [0; 60],
            hangover: 0,
        }
    }

    /// Classifies the frame; returns whether it is background noise and updates the voiced
    /// hangover counter (`Bgn_scd`).
    /// `frame_energy` is the frame's `Σ L_mult(x, x)` (`ops::energy`).
    pub(crate) fn update(
        &mut self,
        ltp_hist: &[i16; 9],
        frame_energy: i32,
        voiced_hangover: &mut i16,
    ) -> bool {
        let s = frame_energy;
        let curr = if s > 0x1fff_ffff {
            i16::MAX
        } else {
            (s >> 14) as i16
        };
        let min = *self.energy_hist.iter().min().unwrap_or(&0);
        let floor = shl(min, 4);
        let max = *self.energy_hist[..56].iter().max().unwrap_or(&0);
        let max_last = *self.energy_hist[40..].iter().max().unwrap_or(&0);
        if max > 20 && curr < 17578 && curr > 20 && (curr < floor || max_last < 1953) {
            self.hangover = (self.hangover + 1).min(30);
        } else {
            self.hangover = 0;
        }
        let noise = self.hangover > 1;
        self.energy_hist.copy_within(1.., 0);
        self.energy_hist[59] = curr;
        let limit = if self.hangover > 15 {
            16383
        } else if self.hangover > 8 {
            15565
        } else {
            13926
        };
        let tail: &[i16; 5] = ltp_hist[4..].try_into().unwrap_or(&[0; 5]);
        let mut voiced = median(tail) > limit;
        if self.hangover > 20 {
            voiced = median(ltp_hist) > limit;
        }
        if voiced {
            *voiced_hangover = 0;
        } else {
            *voiced_hangover = (*voiced_hangover + 1).min(10);
        }
        noise
    }
}
