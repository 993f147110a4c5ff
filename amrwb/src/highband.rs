//! The 6.4–7 kHz band (TS 26.190 §6.3): random noise scaled to the excitation energy,
//! weighted by the spectral tilt (or the transmitted 23.85 kbit/s gain), shaped by the
//! weighted LP filter (an extrapolated order-20 filter at 6.60 kbit/s), band-passed and
//! added to the resampled core.

use crate::acelp::L_SUBFR;
use crate::lp::{isf_to_isp, isp_to_a, M, M16K};
use crate::ops::{
    add, clamp16, div_s, energy12, extract_h, isqrt_n, l_add, l_extract, l_mac, l_mult, l_shl,
    l_sub, mult, mult_v, noise, norm_l, norm_s, peak, round, scale_sig, shl, sub, sum_squares,
};
use crate::synth::L_SUBFR16K;
use crate::tables::{FIR_6K_7K, FIR_7K, HP_GAIN};

/// The noise recurrence `s ← 31821·s + 13849 (mod 2^16)` applied four times:
/// `s ← NOISE_MUL4·s + NOISE_ADD4`.
const NOISE_MUL4: i16 = {
    let a: i32 = 31821;
    (a.wrapping_mul(a).wrapping_mul(a).wrapping_mul(a)) as i16
};
/// See [`NOISE_MUL4`]: `c·(1 + a + a² + a³)` for `a = 31821`, `c = 13849`.
const NOISE_ADD4: i16 = {
    let a: i32 = 31821;
    let c: i32 = 13849;
    let a2 = a.wrapping_mul(a);
    let a3 = a2.wrapping_mul(a);
    (c.wrapping_mul(1i32.wrapping_add(a).wrapping_add(a2).wrapping_add(a3))) as i16
};

/// Taps of the band filters.
const L_FIR: usize = 31;

/// High-band state.
#[derive(Clone)]
pub(crate) struct HighBand {
    /// Noise generator seed.
    seed: i16,
    /// Synthesis memory of the shaping filter (order 20; order 16 uses the last 16).
    syn: [i16; M16K],
    /// 6–7 kHz band-pass memory.
    bp: [i16; L_FIR - 1],
    /// 7 kHz low-pass memory (23.85 kbit/s).
    lp: [i16; L_FIR - 1],
}

/// What the high band needs from the frame.
pub(crate) struct HfInput<'a> {
    /// Subframe LP filter (Q12).
    pub a: &'a [i16; M + 1],
    /// The excitation fed to the core synthesis.
    pub exc: &'a [i16; L_SUBFR],
    /// Its scaling.
    pub q_new: i32,
    /// Transmitted gain index (23.85 kbit/s, good frames) or `None`.
    pub hf_gain: Option<u16>,
    /// Interpolated ISFs for the 6.60 kbit/s order-20 filter, or `None`.
    pub isf: Option<&'a [i16; M]>,
    /// Whether the 7 kHz low-pass applies (23.85 kbit/s).
    pub lowpass: bool,
    /// Frames since the encoder last flagged voice activity.
    pub vad_hist: i16,
}

impl HighBand {
    pub(crate) fn new() -> Self {
        HighBand {
            seed: 21845,
            syn: [0; M16K],
            bp: [0; L_FIR - 1],
            lp: [0; L_FIR - 1],
        }
    }

    /// Clears the part of the shaping memory that only the order-20 filter uses.
    pub(crate) fn clear_wide_memory(&mut self) {
        self.syn[..M16K - M].fill(0);
    }

    /// Synthesises one subframe's high band and adds it to `out` (the resampled core).
    /// `core` is the 12.8 kHz core output high-passed at 400 Hz, for the tilt measure.
    pub(crate) fn run(
        &mut self,
        inp: &HfInput<'_>,
        core: &[i16; L_SUBFR],
        out: &mut [i16; L_SUBFR16K],
    ) {
        let mut hf = [0i16; L_SUBFR16K];
        // The generator's sequence, four interleaved chains at a time: s[n + 4] is an affine
        // function of s[n] modulo 2^16 (the reference's recurrence applied four times), so
        // the four chains run independently.
        let mut lanes = [0i16; 4];
        for l in &mut lanes {
            *l = noise(&mut self.seed);
        }
        for (k, chunk) in hf.chunks_exact_mut(4).enumerate() {
            if k > 0 {
                for l in &mut lanes {
                    *l = l.wrapping_mul(NOISE_MUL4).wrapping_add(NOISE_ADD4);
                }
            }
            for (v, &l) in chunk.iter_mut().zip(&lanes) {
                *v = l >> 3;
            }
        }
        self.seed = lanes[3];

        // Scale the noise to the excitation's energy.
        let mut exc = *inp.exc;
        scale_sig(&mut exc, -3);
        let q = inp.q_new - 3;
        let (e, exp_e) = energy12(&exc);
        let ener = extract_h(e);
        let exp_e = exp_e - 2 * q;
        let (n, mut exp) = energy12(&hf);
        let mut t = extract_h(n);
        if t > ener {
            t >>= 1;
            exp += 1;
        }
        let mut frac = i32::from(div_s(t, ener)) << 16;
        let mut exp = exp - exp_e;
        isqrt_n(&mut frac, &mut exp);
        let scale = extract_h(l_shl(frac, exp + 1));
        for v in hf.iter_mut() {
            *v = mult_v(*v, scale);
        }

        // Spectral tilt of the core → high-band gain.
        let energy64 = 1 + 2 * sum_squares(core);
        let acc = energy64.min(i64::from(i32::MAX)) as i32;
        let sh = norm_l(acc);
        let energy = extract_h(l_shl(acc, sh));
        // |Σ 2·s[i]·s[i−1]| ≤ Σ s² + Σ s² < 2^31 whenever the energy sum is below 2^30, and
        // then the saturating running sum is the plain one.
        let acc = if energy64 < 1 << 30 {
            let mut c = 1i32;
            for i in 1..L_SUBFR {
                c += 2 * i32::from(core[i]) * i32::from(core[i - 1]);
            }
            c
        } else {
            let mut c = 1i32;
            for i in 1..L_SUBFR {
                c = l_mac(c, core[i], core[i - 1]);
            }
            c
        };
        let corr = extract_h(l_shl(acc, sh));
        let tilt = if corr > 0 { div_s(corr, energy) } else { 0 };

        if let Some(index) = inp.hf_gain {
            let g = HP_GAIN[usize::from(index) & 15];
            for v in hf.iter_mut() {
                *v = clamp16(i32::from(mult_v(*v, g)) << 1);
            }
        } else {
            let gain1 = sub(32767, tilt);
            let gain2 = shl(mult(gain1, 20480), 1);
            let mut g = if inp.vad_hist > 0 {
                mult(32767, gain2)
            } else {
                mult(32767, gain1)
            };
            if g != 0 {
                g = add(g, 1);
            }
            let g = g.max(3277);
            for v in hf.iter_mut() {
                *v = mult_v(*v, g);
            }
        }

        // Spectral shaping.
        if let Some(isf) = inp.isf {
            let mut hf_isf = [0i16; M16K];
            hf_isf[..M].copy_from_slice(isf);
            extrapolate_isf(&mut hf_isf);
            let mut isp = [0i16; M16K];
            isf_to_isp(&hf_isf, &mut isp);
            let mut a = [0i16; M16K + 1];
            isp_to_a(&isp, &mut a, M16K, false);
            let mut ap = [0i16; M16K + 1];
            weight(&a, &mut ap, 29491);
            shape::<M16K>(&ap, &mut hf, &mut self.syn);
        } else {
            let mut ap = [0i16; M + 1];
            weight(inp.a, &mut ap, 19661);
            shape::<M>(&ap, &mut hf, &mut self.syn[M16K - M..]);
        }

        fir(&FIR_6K_7K, BP_SUM_ABS, &mut self.bp, &mut hf, 2);
        if inp.lowpass {
            fir(&FIR_7K, LP_SUM_ABS, &mut self.lp, &mut hf, 0);
        }
        for (o, &h) in out.iter_mut().zip(&hf) {
            *o = add(*o, h);
        }
    }
}

/// Bandwidth expansion `a[i]·γ^i`.
fn weight(a: &[i16], ap: &mut [i16], gamma: i16) {
    let m = a.len() - 1;
    ap[0] = a[0];
    let mut fac = gamma;
    for i in 1..m {
        ap[i] = round(l_mult(a[i], fac));
        fac = round(l_mult(fac, gamma));
    }
    ap[m] = round(l_mult(a[m], fac));
}

/// All-pole filter `1/A(z)` in place, order `N` (`ap` has `N + 1` coefficients), memory
/// `mem` (`N` samples), with the reference's Q12 normalisation by `a[0]`.
///
/// Runs in wrapping 32-bit arithmetic over fixed windows (vectorised), then checks the bound
/// `2·(|a0|·max|x| + Σ|a_j|·max|y|) < 2^31` over the block: when it holds no partial sum of
/// the reference's saturating `L_msu` chain can have saturated and the result is exact;
/// otherwise the block is redone with the saturating operators.
fn shape<const N: usize>(ap: &[i16], sig: &mut [i16; L_SUBFR16K], mem: &mut [i16]) {
    // y[..2] is padding, y[2..2 + N] the memory, output i lands at y[2 + N + i]. The two
    // newest past outputs come from registers (one scalar multiply on the critical path);
    // the window y[i..i + N] supplies the rest, so the loop never reloads a recently stored
    // sample. Window element k is output n − (N + 2 − k) for n = N + 2 + i; elements 0 and
    // 1 are unused.
    const P: usize = 2;
    let mut y = [0i16; L_SUBFR16K + M16K + P];
    y[P..P + N].copy_from_slice(&mem[..N]);
    let s = norm_s(ap[0]) - 2;
    let a0 = ap[0] >> 1;
    let mut rev = [0i16; N];
    for k in P..N {
        rev[k] = ap[N + P - k];
    }
    let (c1, c2) = (i32::from(ap[1]), i32::from(ap[2]));
    let input = *sig;
    let (mut p1, mut p2) = (y[P + N - 1], y[P + N - 2]);
    for i in 0..L_SUBFR16K {
        let w: &[i16; N] = y[i..i + N].try_into().unwrap_or(&[0; N]);
        let far = w.iter().zip(&rev).fold(0i32, |acc, (&a, &b)| {
            acc.wrapping_add(i32::from(a) * i32::from(b))
        });
        let base = (2 * i32::from(input[i]) * i32::from(a0))
            .wrapping_sub(far.wrapping_add(i32::from(p2) * c2).wrapping_mul(2));
        let acc = base.wrapping_sub((i32::from(p1) * c1).wrapping_mul(2));
        p2 = p1;
        p1 = round(l_shl(acc, 3 + s));
        y[P + N + i] = p1;
    }
    let sum_a: i64 = ap[1..=N].iter().map(|&c| i64::from(c).abs()).sum();
    let max_y = i64::from(peak(&y[P..P + N + L_SUBFR16K]));
    let max_x = i64::from(peak(&input));
    if 2 * (i64::from(a0).abs() * max_x + sum_a * max_y) >= i64::from(i32::MAX) {
        shape_exact::<N>(ap, sig, mem);
        return;
    }
    sig.copy_from_slice(&y[P + N..P + N + L_SUBFR16K]);
    mem[..N].copy_from_slice(&y[P + L_SUBFR16K..P + L_SUBFR16K + N]);
}

/// [`shape`] with the reference's saturating operators, for any input.
fn shape_exact<const N: usize>(ap: &[i16], sig: &mut [i16; L_SUBFR16K], mem: &mut [i16]) {
    let s = norm_s(ap[0]) - 2;
    let a0 = ap[0] >> 1;
    let mut y = [0i16; L_SUBFR16K + M16K];
    y[..N].copy_from_slice(&mem[..N]);
    for i in 0..L_SUBFR16K {
        let n = N + i;
        let mut acc = l_mult(sig[i], a0);
        for j in 1..=N {
            acc = l_sub(acc, l_mult(ap[j], y[n - j]));
        }
        y[n] = round(l_shl(acc, 3 + s));
    }
    sig.copy_from_slice(&y[N..N + L_SUBFR16K]);
    mem[..N].copy_from_slice(&y[L_SUBFR16K..L_SUBFR16K + N]);
}

/// `Σ|taps|`, for the overflow bound of the fast FIR path.
const fn sum_abs(taps: &[i16; L_FIR]) -> i64 {
    let mut s = 0i64;
    let mut i = 0;
    while i < L_FIR {
        s += (taps[i] as i64).abs();
        i += 1;
    }
    s
}

/// `Σ|taps|` of the band-pass.
const BP_SUM_ABS: i64 = sum_abs(&FIR_6K_7K);
/// `Σ|taps|` of the 7 kHz low-pass.
const LP_SUM_ABS: i64 = sum_abs(&FIR_7K);

/// A symmetric 31-tap FIR with memory, input pre-shifted right by `prescale`; `sum_abs` is
/// `Σ|taps|`.
///
/// The reference accumulates with a saturating `L_mac` per tap. When
/// `2·max|x|·Σ|taps| + 2^15 < 2^31` no partial sum can saturate, so plain 32-bit
/// arithmetic in any order gives the same result; that is the (vectorised) common case,
/// and the exact tap-by-tap saturating form covers the rest.
fn fir(
    taps: &[i16; L_FIR],
    sum_abs: i64,
    mem: &mut [i16; L_FIR - 1],
    sig: &mut [i16; L_SUBFR16K],
    prescale: i32,
) {
    let mut x = [0i16; L_SUBFR16K + L_FIR];
    x[..L_FIR - 1].copy_from_slice(mem);
    for (d, &s) in x[L_FIR - 1..L_FIR - 1 + L_SUBFR16K]
        .iter_mut()
        .zip(sig.iter())
    {
        *d = s >> prescale;
    }
    let top = i64::from(peak(&x));
    if 2 * top * sum_abs + 0x8000 < i64::from(i32::MAX) {
        let mut acc = [0i32; L_SUBFR16K];
        if prescale >= 2 {
            // The band-pass is symmetric (linear phase) and its input pre-shifted to 14 bits:
            // fold the window in 16 bits first, then 16 multiplies per output instead of 31.
            let centre = i32::from(taps[L_FIR / 2]);
            for (a, &xv) in acc.iter_mut().zip(&x[L_FIR / 2..L_FIR / 2 + L_SUBFR16K]) {
                *a = i32::from(xv) * centre;
            }
            for j in 0..L_FIR / 2 {
                let c = taps[j];
                let early = &x[j..j + L_SUBFR16K];
                let late = &x[L_FIR - 1 - j..L_FIR - 1 - j + L_SUBFR16K];
                for ((a, &u), &v) in acc.iter_mut().zip(early).zip(late) {
                    // |u|, |v| ≤ 2^13: the pair fits 16 bits.
                    *a += i32::from(u + v) * i32::from(c);
                }
            }
        } else {
            for (j, &c) in taps.iter().enumerate() {
                for (a, &xv) in acc.iter_mut().zip(&x[j..j + L_SUBFR16K]) {
                    *a += i32::from(xv) * i32::from(c);
                }
            }
        }
        for (o, &a) in sig.iter_mut().zip(&acc) {
            *o = ((2 * a + 0x8000) >> 16) as i16;
        }
    } else {
        fir_exact(taps, &x, sig);
    }
    mem.copy_from_slice(&x[L_SUBFR16K..L_SUBFR16K + L_FIR - 1]);
}

/// The FIR's outputs from the (pre-shifted) window `x`, with the reference's saturating
/// accumulation.
fn fir_exact(taps: &[i16; L_FIR], x: &[i16; L_SUBFR16K + L_FIR], sig: &mut [i16; L_SUBFR16K]) {
    for (i, o) in sig.iter_mut().enumerate() {
        let mut acc = 0i32;
        for (&xv, &c) in x[i..i + L_FIR].iter().zip(taps) {
            acc = l_mac(acc, xv, c);
        }
        *o = round(acc);
    }
}

/// Energy-style correlation `Σ ((d[k] − m)·(d[k − shift] − m))²` of the normalised ISF
/// differences over `k = 7..M − 2`, each product squared in the reference's double-precision
/// format (`L_Extract` then `Mpy_32`) and the terms summed with saturation.
fn spacing_correlation(d: &[i16; M - 2], m: i16, shift: usize) -> i32 {
    (7..M - 2).fold(0i32, |total, k| {
        let prod = l_mult(sub(d[k], m), sub(d[k - shift], m));
        let (hi, lo) = l_extract(prod);
        let cross = mult(hi, lo);
        let square = l_mac(l_mac(l_mult(hi, hi), cross, 1), cross, 1);
        l_add(total, square)
    })
}

/// Extends 16 interpolated ISFs to the 20 of the order-20 high-band filter, in place
/// (`isf_extrapolation`, TS 26.190 §6.3.2.1). The spacing pattern of the upper ISFs is
/// repeated with the period (2, 3 or 4 differences back) whose differences correlate best,
/// the new ISFs are stretched so that the last lands near a target derived from the lowest
/// ISFs (at most 7.5 kHz), any two-step gap is widened to at least 500 Hz, and the whole
/// vector is rescaled from the 12.8 kHz to the 16 kHz grid. The caller converts to ISPs.
fn extrapolate_isf(isf: &mut [i16; M16K]) {
    /// 1/12 in Q15: weight of each of the twelve differences in their mean.
    const ONE_TWELFTH: i16 = 2731;
    /// Minimum distance between ISF n and ISF n − 2 (500 Hz on the 12.8 kHz grid).
    const MIN_TWO_STEP: i16 = 1280;
    /// Ceiling of the stretched last ISF (7.5 kHz).
    const TOP: i16 = 19456;
    /// 12.8/16 in Q15.
    const RESCALE: i16 = 26214;
    const FIRST_NEW: usize = M - 1;
    const LAST_NEW: usize = M16K - 2;

    // The order-16 vector's last entry (the ISP-side coefficient) moves to the end.
    isf[M16K - 1] = isf[M - 1];

    // Differences of the first fifteen ISFs; their mean over the upper twelve.
    let mut d = [0i16; M - 2];
    for (k, dk) in d.iter_mut().enumerate() {
        *dk = sub(isf[k + 1], isf[k]);
    }
    let mean = round(d[2..].iter().fold(0i32, |s, &v| l_mac(s, v, ONE_TWELFTH)));

    // Normalise (largest positive difference) before correlating.
    let norm = norm_s(d.iter().copied().fold(0i16, i16::max));
    d.iter_mut().for_each(|v| *v = shl(*v, norm));
    let mean = shl(mean, norm);
    let by_shift = [2usize, 3, 4].map(|shift| spacing_correlation(&d, mean, shift));
    // Strictly greater wins; a tie between the first two goes to the longer shift.
    let mut period = if by_shift[0] > by_shift[1] { 2 } else { 3 };
    if by_shift[2] > by_shift[period - 2] {
        period = 4;
    }

    // Continue the pattern: ISF n repeats the step that led to ISF n − period.
    for n in FIRST_NEW..=LAST_NEW {
        isf[n] = add(isf[n - 1], sub(isf[n - period], isf[n - period - 1]));
    }

    // Stretch the continuation so that its end moves to the target:
    // ratio = (target − isf[M−2]) / (isf[LAST_NEW] − isf[M−2]), as a normalised quotient.
    let target = add(mult(sub(isf[2], add(isf[4], isf[3])), 5461), 20390).min(TOP);
    let numer = sub(target, isf[M - 2]);
    let denom = sub(isf[LAST_NEW], isf[M - 2]);
    let num_norm = norm_s(numer) - 1;
    let den_norm = norm_s(denom);
    let ratio = div_s(shl(numer, num_norm), shl(denom, den_norm));
    let ratio_shift = den_norm - num_norm;
    let mut steps = [0i16; LAST_NEW - FIRST_NEW + 1];
    for (j, step) in steps.iter_mut().enumerate() {
        let n = FIRST_NEW + j;
        *step = shl(mult(sub(isf[n], isf[n - 1]), ratio), ratio_shift);
    }

    // Two consecutive steps must span MIN_TWO_STEP: the smaller step is enlarged (the
    // earlier one when the later is larger, otherwise the later).
    for j in 1..steps.len() {
        let (early, late) = (steps[j - 1], steps[j]);
        if sub(add(early, late), MIN_TWO_STEP) < 0 {
            if late > early {
                steps[j - 1] = sub(MIN_TWO_STEP, late);
            } else {
                steps[j] = sub(MIN_TWO_STEP, early);
            }
        }
    }
    for (j, &step) in steps.iter().enumerate() {
        let n = FIRST_NEW + j;
        isf[n] = add(isf[n - 1], step);
    }

    for v in isf[..M16K - 1].iter_mut() {
        *v = mult(*v, RESCALE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u32) -> u32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        *seed
    }

    /// A random 16-bit value at one of several magnitudes (including full scale).
    fn sample(seed: &mut u32) -> i16 {
        let r = rng(seed);
        let v = (r >> 16) as u16 as i16;
        match r % 4 {
            0 => v >> 10,
            1 => v >> 5,
            2 => v >> 2,
            _ => v,
        }
    }

    #[test]
    fn fast_shaping_equals_the_reference_operators() {
        let mut seed = 0x1234_5678u32;
        for trial in 0..3000usize {
            let level = trial % 4;
            let mut ap = [0i16; M16K + 1];
            ap[0] = if trial.is_multiple_of(7) {
                4096 >> (trial % 4)
            } else {
                4096
            };
            for c in ap.iter_mut().skip(1) {
                *c = sample(&mut seed) >> (3 - level);
            }
            let mut sig = [0i16; L_SUBFR16K];
            for v in sig.iter_mut() {
                *v = sample(&mut seed);
            }
            let mut mem = [0i16; M16K];
            for v in mem.iter_mut() {
                *v = sample(&mut seed);
            }
            let (mut s1, mut m1, mut s2, mut m2) = (sig, mem, sig, mem);
            if trial.is_multiple_of(2) {
                shape::<M16K>(&ap, &mut s1, &mut m1);
                shape_exact::<M16K>(&ap, &mut s2, &mut m2);
            } else {
                shape::<M>(&ap[..=M], &mut s1, &mut m1[..M]);
                shape_exact::<M>(&ap[..=M], &mut s2, &mut m2[..M]);
            }
            assert_eq!((s1, m1), (s2, m2), "trial {trial}");
        }
    }

    #[test]
    fn fast_band_filters_equal_the_reference_operators() {
        let mut seed = 0x9e37_79b9u32;
        for trial in 0..2000 {
            let mut sig = [0i16; L_SUBFR16K];
            for v in sig.iter_mut() {
                *v = sample(&mut seed);
            }
            let mut mem = [0i16; L_FIR - 1];
            for v in mem.iter_mut() {
                *v = sample(&mut seed) >> 2;
            }
            for (taps, sum, pre) in [(&FIR_6K_7K, BP_SUM_ABS, 2), (&FIR_7K, LP_SUM_ABS, 0)] {
                let (mut s1, mut m1) = (sig, mem);
                fir(taps, sum, &mut m1, &mut s1, pre);
                let mut x = [0i16; L_SUBFR16K + L_FIR];
                x[..L_FIR - 1].copy_from_slice(&mem);
                for (d, &v) in x[L_FIR - 1..L_FIR - 1 + L_SUBFR16K].iter_mut().zip(&sig) {
                    *d = v >> pre;
                }
                let mut s2 = sig;
                fir_exact(taps, &x, &mut s2);
                assert_eq!(s1, s2, "trial {trial}, prescale {pre}");
                assert_eq!(&m1[..], &x[L_SUBFR16K..L_SUBFR16K + L_FIR - 1]);
            }
        }
    }

    #[test]
    fn the_four_lane_noise_equals_the_reference_generator() {
        let mut hb = HighBand::new();
        let mut seed = hb.seed;
        let exc = [0i16; L_SUBFR];
        let a = [4096i16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let core = [0i16; L_SUBFR];
        let mut out = [0i16; L_SUBFR16K];
        let inp = HfInput {
            a: &a,
            exc: &exc,
            q_new: 0,
            hf_gain: None,
            isf: None,
            lowpass: false,
            vad_hist: 0,
        };
        for _ in 0..5 {
            hb.run(&inp, &core, &mut out);
            for _ in 0..L_SUBFR16K {
                noise(&mut seed);
            }
            assert_eq!(hb.seed, seed);
        }
    }
}
