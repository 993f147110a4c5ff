//! Post-processing of the excitation (TS 26.190 §6.1): voicing factor, phase dispersion of
//! the innovation at low rates, the noise enhancer (code-gain smoothing), the pitch enhancer
//! (a high-pass on the innovation) and the energy-preserving gain control of the 6.60/8.85
//! pitch sharpening.

use crate::acelp::L_SUBFR;
use crate::ops::{
    add, clamp16, div_s, energy12, extract_h, isqrt, l_add, l_extract, l_msu, l_mult, l_shl, l_shr,
    mpy_32_16, mult, norm_l, norm_s, round, shl, shr, sub,
};
use crate::tables::{PH_IMP_LOW, PH_IMP_MID};

/// Voicing factor in Q15: +1 voiced (adaptive part dominates) … −1 unvoiced.
pub(crate) fn voice_factor(
    exc: &[i16; L_SUBFR],
    q_exc: i32,
    gain_pit: i16,
    code: &[i16; L_SUBFR],
    gain_code: i16,
) -> i16 {
    let (e1, x1) = energy12(exc);
    let mut ener1 = extract_h(e1);
    let mut exp1 = x1 - 2 * q_exc;
    let sq = l_mult(gain_pit, gain_pit);
    let s = norm_l(sq);
    ener1 = mult(ener1, extract_h(l_shl(sq, s)));
    exp1 -= s + 10;

    let (e2, x2) = energy12(code);
    let mut ener2 = extract_h(e2);
    let s = norm_s(gain_code);
    let g = shl(gain_code, s);
    ener2 = mult(ener2, mult(g, g));
    let exp2 = x2 - 2 * s;

    let d = exp1 - exp2;
    if d >= 0 {
        ener1 = shr(ener1, 1);
        ener2 = shr(ener2, d + 1);
    } else {
        ener1 = shr(ener1, 1 - d);
        ener2 = shr(ener2, 1);
    }
    let diff = sub(ener1, ener2);
    let total = add(add(ener1, ener2), 1);
    if diff >= 0 {
        div_s(diff, total)
    } else {
        div_s(diff.saturating_neg(), total).saturating_neg()
    }
}

/// Adaptive phase dispersion of the innovation.
#[derive(Clone, Default)]
pub(crate) struct Dispersion {
    prev_state: i16,
    prev_gain_code: i16,
    prev_gain_pit: [i16; 6],
}

impl Dispersion {
    /// Disperses `code` in place. `level` is 0 (6.60), 1 (8.85) or 2 (off, higher rates:
    /// only the state is tracked).
    pub(crate) fn apply(
        &mut self,
        gain_code: i16,
        gain_pit: i16,
        code: &mut [i16; L_SUBFR],
        level: i16,
    ) {
        let mut state: i16 = if gain_pit < 9830 {
            0
        } else if gain_pit < 14746 {
            1
        } else {
            2
        };
        self.prev_gain_pit.rotate_right(1);
        self.prev_gain_pit[0] = gain_pit;
        if sub(gain_code, self.prev_gain_code) > shl(self.prev_gain_code, 1) {
            // Onset: less dispersion.
            if state < 2 {
                state += 1;
            }
        } else {
            let weak = self.prev_gain_pit.iter().filter(|&&g| g < 9830).count();
            if weak > 2 {
                state = 0;
            }
            if state > self.prev_state + 1 {
                state -= 1;
            }
        }
        self.prev_gain_code = gain_code;
        self.prev_state = state;
        let imp: &[i16; 64] = match state + level {
            0 => &PH_IMP_LOW,
            1 => &PH_IMP_MID,
            _ => return,
        };
        let mut acc = [0i16; 2 * L_SUBFR];
        for (i, &c) in code.iter().enumerate() {
            if c != 0 {
                // Branch-free `add(acc, mult_r(c, h))`, so that the loop vectorises.
                for (a, &h) in acc[i..i + L_SUBFR].iter_mut().zip(imp) {
                    let p = clamp16((i32::from(c) * i32::from(h) + 0x4000) >> 15);
                    *a = a.saturating_add(p);
                }
            }
        }
        for i in 0..L_SUBFR {
            code[i] = add(acc[i], acc[i + L_SUBFR]);
        }
    }
}

/// The noise enhancer (TS 26.190 §6.1.4): a code-gain level that follows the code gain with
/// limited slew; on stable, unvoiced frames the code gain is pulled towards that level,
/// which smooths the energy fluctuations of background noise.
#[derive(Clone, Default)]
pub(crate) struct NoiseEnhancer {
    /// The slowly tracking code-gain level (Q16).
    level: i32,
}

impl NoiseEnhancer {
    /// Returns the smoothed code gain (Q16) for code gain `gain_code` (Q16, never negative).
    pub(crate) fn apply(&mut self, gain_code: i32, voice_fac: i16, stab_fac: i16) -> i32 {
        let (g_hi, g_lo) = l_extract(gain_code);
        // Per subframe the level may rise to 1.19·g or fall to 0.84·g. For g ≥ 0 the
        // bounds bracket g, so limiting the old level to them is the reference's
        // "rise while below, fall while above" test.
        let fall_to = mpy_32_16(g_hi, g_lo, 27536);
        let rise_to = l_add(gain_code, mpy_32_16(g_hi, g_lo, 6226));
        self.level = self.level.max(fall_to).min(rise_to);

        // Pull weight: stability × unvoicing (1 − v/2, with v ∈ [−1, 1] in Q15).
        let pull = mult(stab_fac, sub(16384, shr(voice_fac, 1)));
        let (l_hi, l_lo) = l_extract(self.level);
        l_add(
            mpy_32_16(g_hi, g_lo, sub(32767, pull)),
            mpy_32_16(l_hi, l_lo, pull),
        )
    }
}

/// The pitch enhancer's high-pass on the innovation: `c[i] − s·(c[i−1] + c[i+1])`.
pub(crate) fn pitch_enhance(code: &[i16; L_SUBFR], voice_fac: i16, out: &mut [i16; L_SUBFR]) {
    let s = add(shr(voice_fac, 3), 4096);
    let peak = code.iter().fold(0u16, |m, &v| m | v.unsigned_abs());
    // 0 ≤ s < 2^13: with |c| < 2^14 neither subtraction can leave 32 bits.
    if peak < 1 << 14 && s >= 0 {
        let s = i32::from(s);
        let at = |i: usize| i32::from(code[i]);
        out[0] = (((at(0) << 16) - 2 * at(1) * s + 0x8000) >> 16) as i16;
        for i in 1..L_SUBFR - 1 {
            out[i] = (((at(i) << 16) - 2 * (at(i + 1) + at(i - 1)) * s + 0x8000) >> 16) as i16;
        }
        out[L_SUBFR - 1] =
            (((at(L_SUBFR - 1) << 16) - 2 * at(L_SUBFR - 2) * s + 0x8000) >> 16) as i16;
        return;
    }
    out[0] = round(l_msu(i32::from(code[0]) << 16, code[1], s));
    for i in 1..L_SUBFR - 1 {
        out[i] = round(l_msu(
            l_msu(i32::from(code[i]) << 16, code[i + 1], s),
            code[i - 1],
            s,
        ));
    }
    out[L_SUBFR - 1] = round(l_msu(
        i32::from(code[L_SUBFR - 1]) << 16,
        code[L_SUBFR - 2],
        s,
    ));
}

/// Rescales `out` to the energy of `input` (`agc2`).
pub(crate) fn agc2(input: &[i16; L_SUBFR], out: &mut [i16; L_SUBFR]) {
    // Non-negative terms: the saturating running sum is the exact sum clamped once.
    let energy = |v: &[i16; L_SUBFR]| {
        let s: i64 = v
            .iter()
            .map(|&x| 2 * i64::from(x >> 2) * i64::from(x >> 2))
            .sum();
        s.min(i64::from(i32::MAX)) as i32
    };
    let e_out = energy(out);
    if e_out == 0 {
        return;
    }
    let mut exp = norm_l(e_out) - 1;
    let gain_out = round(l_shl(e_out, exp));
    let e_in = energy(input);
    let g0 = if e_in == 0 {
        0
    } else {
        let i = norm_l(e_in);
        let gain_in = round(l_shl(e_in, i));
        exp -= i;
        let ratio = l_shr(l_shl(i32::from(div_s(gain_out, gain_in)), 7), exp);
        round(l_shl(isqrt(ratio), 9))
    };
    // extract_h(L_shl(L_mult(v, g0), 2)), branch-free: v·g0·8 saturated to 32 bits.
    for v in out.iter_mut() {
        let p = (i64::from(*v) * i64::from(g0) * 8).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
        *v = (p >> 16) as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_pitch_enhancer_equals_the_reference_operators() {
        let mut seed = 99u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for trial in 0..5000u32 {
            let mut code = [0i16; L_SUBFR];
            for c in code.iter_mut() {
                *c = ((next() >> 16) as u16 as i16) >> (trial % 16);
            }
            let voice = (next() >> 16) as u16 as i16;
            let mut fast = [0i16; L_SUBFR];
            pitch_enhance(&code, voice, &mut fast);
            let s = add(shr(voice, 3), 4096);
            let mut want = [0i16; L_SUBFR];
            want[0] = round(l_msu(i32::from(code[0]) << 16, code[1], s));
            for i in 1..L_SUBFR - 1 {
                want[i] = round(l_msu(
                    l_msu(i32::from(code[i]) << 16, code[i + 1], s),
                    code[i - 1],
                    s,
                ));
            }
            want[L_SUBFR - 1] = round(l_msu(
                i32::from(code[L_SUBFR - 1]) << 16,
                code[L_SUBFR - 2],
                s,
            ));
            assert_eq!(fast, want, "trial {trial}");
        }
    }
}
