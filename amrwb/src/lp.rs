//! The LP envelope: ISF dequantisation (split-multistage VQ with MA prediction, and its
//! bad-frame substitute), ISF→ISP conversion, per-subframe interpolation and ISP→A(z).

use crate::ops::{
    add, extract_h, l_add, l_extract, l_mac, l_mult, l_shl, l_shr_r, l_sub, mpy_32_16, mult,
    norm_l, round, shl, sub,
};
use crate::tables::{
    COS_TABLE, DICO1_ISF, DICO21_ISF, DICO21_ISF_36B, DICO22_ISF, DICO22_ISF_36B, DICO23_ISF,
    DICO23_ISF_36B, DICO24_ISF, DICO25_ISF, DICO2_ISF, ISF_INIT, MEAN_ISF,
};

/// LP order at 12.8 kHz.
pub(crate) const M: usize = 16;
/// LP order of the 6.60 kbit/s high-band filter.
pub(crate) const M16K: usize = 20;

/// MA prediction factor (1/3, Q15).
const MU: i16 = 10923;
/// Bad-frame weight of the previous ISFs (0.9, Q15).
const ALPHA: i16 = 29491;
/// `1 − ALPHA`.
const ONE_ALPHA: i16 = 3277;
/// Minimum ISF spacing, Q15 normalised (50 Hz).
pub(crate) const ISF_GAP: i16 = 128;

/// Subframe interpolation weights of the new ISPs (Q15).
pub(crate) const INTERP_FRAC: [i16; 4] = [14746, 26214, 31457, 32767];

/// Adds codebook row `index` (`dim` wide) of `book` into `dst`, saturating.
#[inline]
fn add_row(dst: &mut [i16], book: &[i16], index: u16, dim: usize) {
    let base = usize::from(index) * dim;
    if let Some(row) = book.get(base..base + dim) {
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = add(*d, v);
        }
    }
}

/// The ISF dequantiser's memory.
#[derive(Clone)]
pub(crate) struct IsfDecoder {
    /// Quantised prediction residual of the previous frame.
    past_q: [i16; M],
    /// The previous frame's ISFs (after reordering).
    old: [i16; M],
    /// The last three good frames' ISFs (before reordering), newest first.
    history: [[i16; M]; 3],
}

impl IsfDecoder {
    pub(crate) fn new() -> Self {
        IsfDecoder {
            past_q: [0; M],
            old: ISF_INIT,
            history: [ISF_INIT; 3],
        }
    }

    /// Decodes one frame's ISFs: from the indices, or (bad frame) from history.
    pub(crate) fn decode(&mut self, six_sixty: bool, idx: &[u16; 7], bad: bool) -> [i16; M] {
        let mut isf = [0i16; M];
        if !bad {
            add_row(&mut isf[..9], &DICO1_ISF, idx[0], 9);
            add_row(&mut isf[9..], &DICO2_ISF, idx[1], 7);
            if six_sixty {
                add_row(&mut isf[..5], &DICO21_ISF_36B, idx[2], 5);
                add_row(&mut isf[5..9], &DICO22_ISF_36B, idx[3], 4);
                add_row(&mut isf[9..], &DICO23_ISF_36B, idx[4], 7);
            } else {
                add_row(&mut isf[..3], &DICO21_ISF, idx[2], 3);
                add_row(&mut isf[3..6], &DICO22_ISF, idx[3], 3);
                add_row(&mut isf[6..9], &DICO23_ISF, idx[4], 3);
                add_row(&mut isf[9..12], &DICO24_ISF, idx[5], 3);
                add_row(&mut isf[12..], &DICO25_ISF, idx[6], 4);
            }
            for i in 0..M {
                let residual = isf[i];
                isf[i] = add(add(residual, MEAN_ISF[i]), mult(MU, self.past_q[i]));
                self.past_q[i] = residual;
            }
            self.history = [isf, self.history[0], self.history[1]];
        } else {
            // Pull the last frame's ISFs 10 % toward the long-term mean of recent frames.
            let mut mean = [0i16; M];
            for i in 0..M {
                let mut acc = l_mult(MEAN_ISF[i], 8192);
                for h in &self.history {
                    acc = l_mac(acc, h[i], 8192);
                }
                mean[i] = round(acc);
            }
            for i in 0..M {
                isf[i] = add(mult(ALPHA, self.old[i]), mult(ONE_ALPHA, mean[i]));
            }
            for i in 0..M {
                let predicted = add(mean[i], mult(self.past_q[i], MU));
                self.past_q[i] = sub(isf[i], predicted) >> 1;
            }
        }
        reorder(&mut isf, ISF_GAP);
        self.old = isf;
        isf
    }
}

/// Enforces a minimum distance between consecutive ISFs (the last one excepted).
pub(crate) fn reorder(isf: &mut [i16], gap: i16) {
    let n = isf.len();
    let mut floor = gap;
    for v in isf.iter_mut().take(n - 1) {
        if *v < floor {
            *v = floor;
        }
        floor = add(*v, gap);
    }
}

/// ISFs (normalised frequencies, the last one halved) to ISPs (cosines), in place.
pub(crate) fn isf_to_isp(isf: &[i16], isp: &mut [i16]) {
    let m = isf.len();
    isp[..m].copy_from_slice(isf);
    isp[m - 1] = shl(isf[m - 1], 1);
    for v in isp.iter_mut().take(m) {
        // ISFs lie in 0..16384 (after doubling, the last in 0..32768); clamping the index
        // only matters for corrupt input and keeps the table read in range.
        let ind = usize::try_from(*v >> 7).unwrap_or(0).min(127);
        let offset = i32::from(*v & 0x7f);
        let step = i32::from(COS_TABLE[ind + 1]) - i32::from(COS_TABLE[ind]);
        // |step·offset·2| < 2^24: no saturation.
        *v = add(COS_TABLE[ind], ((step * offset * 2) >> 8) as i16);
    }
}

/// Expands the ISPs at even positions into the polynomial `f` (`Get_isp_pol`), Q23, or Q21
/// with `wide` (the order-20 variant).
fn isp_poly(isp: &[i16], f: &mut [i32; 11], n: usize, wide: bool) {
    let (one, scale) = if wide { (1 << 21, 64) } else { (1 << 23, 256) };
    // First in 64 bits without saturation, OR-ing the magnitudes of the values the reference
    // computes: if none reaches 2^31 the saturating operators never saturated. (Checking the
    // shifted product t, the difference and the new coefficient suffices: |t| < 2^31 bounds
    // the Mpy_32_16 result and its high part.) Wrapping arithmetic: a value can only wrap
    // after an earlier one passed 2^31, which the flag has already caught.
    let mut g = [0i64; 11];
    g[0] = one;
    g[1] = -i64::from(isp[0]) * 2 * scale;
    let mut mag = 0i64;
    for i in 2..=n {
        let x = i64::from(isp[2 * (i - 1)]);
        g[i] = g[i - 2];
        for j in (2..=i).rev() {
            // Mpy_32_16 on the (hi, lo) split of g[j − 1]: 2·hi·x + 2·((lo·x) >> 15).
            let hi = g[j - 1] >> 16;
            let lo = (g[j - 1] >> 1) & 0x7fff;
            let m = (2 * hi).wrapping_mul(x).wrapping_add(2 * ((lo * x) >> 15));
            let t = m.wrapping_mul(2);
            let d = g[j].wrapping_sub(t);
            g[j] = d.wrapping_add(g[j - 2]);
            mag |= (t ^ (t >> 63)) | (d ^ (d >> 63)) | (g[j] ^ (g[j] >> 63));
        }
        g[1] = g[1].wrapping_sub(x * 2 * scale);
        mag |= g[1] ^ (g[1] >> 63);
    }
    let fits = mag < 1 << 31;
    if fits {
        for (o, &v) in f.iter_mut().zip(&g) {
            *o = v as i32;
        }
        return;
    }
    f[0] = one as i32;
    f[1] = -i32::from(isp[0]) * 2 * scale as i32;
    for i in 2..=n {
        let x = isp[2 * (i - 1)];
        f[i] = f[i - 2];
        for j in (2..=i).rev() {
            let (hi, lo) = l_extract(f[j - 1]);
            let t = l_shl(mpy_32_16(hi, lo, x), 1);
            f[j] = l_add(l_sub(f[j], t), f[j - 2]);
        }
        f[1] = l_sub(f[1], i32::from(x) * 2 * scale as i32);
    }
}

/// ISPs to LP coefficients A(z) in Q12 (`Isp_Az`). `m` is 16 or 20; `adaptive` rescales
/// coefficients that would overflow Q12 (comfort noise).
pub(crate) fn isp_to_a(isp: &[i16], a: &mut [i16], m: usize, adaptive: bool) {
    let nc = m / 2;
    let wide = nc > 8;
    // F1 from the even-indexed ISPs, F2 from the odd ones; the order-20 polynomials are
    // built at a quarter of the scale and brought back up here.
    let (mut f1, mut f2) = ([0i32; 11], [0i32; 11]);
    isp_poly(isp, &mut f1, nc, wide);
    isp_poly(&isp[1..], &mut f2, nc - 1, wide);
    if wide {
        let (low1, low2) = (&mut f1[..=nc], &mut f2[..nc]);
        low1.iter_mut().chain(low2).for_each(|v| *v = l_shl(*v, 2));
    }
    // F2 times (1 − z⁻²) restores its roots at z = ±1.
    for i in (2..nc).rev() {
        f2[i] = l_sub(f2[i], f2[i - 2]);
    }
    // Then F1·(1 + isp[m−1]) and F2·(1 − isp[m−1]).
    let last = isp[m - 1];
    for (p1, p2) in f1[..nc].iter_mut().zip(&mut f2[..nc]) {
        let (h1, l1) = l_extract(*p1);
        *p1 = l_add(*p1, mpy_32_16(h1, l1, last));
        let (h2, l2) = l_extract(*p2);
        *p2 = l_sub(*p2, mpy_32_16(h2, l2, last));
    }
    // A(z) = (F1(z) + F2(z)) / 2 in its symmetric and antisymmetric halves, from Q23 to
    // Q(12 − extra): `spread` writes a[1..nc] and a[m − nc + 1..m] with rounding, and
    // returns the largest magnitude among the unshifted values.
    let spread = |a: &mut [i16], shift: i32| {
        let mut peak = 0i32;
        for i in 1..nc {
            let (sum, diff) = (l_add(f1[i], f2[i]), l_sub(f1[i], f2[i]));
            peak |= sum.saturating_abs() | diff.saturating_abs();
            a[i] = l_shr_r(sum, shift) as i16;
            a[m - i] = l_shr_r(diff, shift) as i16;
        }
        peak
    };
    let peak = spread(a, 12);
    // Comfort noise only: when the Q12 values overflowed, redo them with `extra` bits less
    // precision (and a[0] = 1 in that format).
    let extra = if adaptive {
        (4 - norm_l(peak)).max(0)
    } else {
        0
    };
    let mut a0 = 4096i16;
    if extra > 0 {
        spread(a, 12 + extra);
        a0 >>= extra;
    }
    a[0] = a0;
    let (hi, lo) = l_extract(f1[nc]);
    a[nc] = l_shr_r(l_add(f1[nc], mpy_32_16(hi, lo, last)), 12 + extra) as i16;
    // a[m] = isp[m − 1] in the same format: shr_r(last, 3 + extra).
    let sh = 3 + extra;
    a[m] = ((i32::from(last) + (1 << (sh - 1))) >> sh) as i16;
}

/// The four subframes' A(z) from the previous and current ISPs.
pub(crate) fn interpolate(isp_old: &[i16; M], isp_new: &[i16; M], az: &mut [[i16; M + 1]; 4]) {
    for (k, a) in az.iter_mut().enumerate().take(3) {
        // Weights of the current and the previous frame, summing to exactly 1 (Q15).
        let w_cur = INTERP_FRAC[k];
        let w_prev = add(sub(32767, w_cur), 1);
        let mut isp = [0i16; M];
        for ((o, &prev), &cur) in isp.iter_mut().zip(isp_old).zip(isp_new) {
            *o = round(l_mac(l_mult(prev, w_prev), cur, w_cur));
        }
        isp_to_a(&isp, a, M, false);
    }
    isp_to_a(isp_new, &mut az[3], M, false);
}

/// Stability of the LP filter from the ISF change since the last frame, Q15 (1 = stable).
pub(crate) fn stability(isf: &[i16; M], isf_old: &[i16; M]) -> i16 {
    let mut acc = 0i32;
    for i in 0..M - 1 {
        let d = sub(isf[i], isf_old[i]);
        acc = l_mac(acc, d, d);
    }
    let t = extract_h(l_shl(acc, 8));
    let t = mult(t, 26214);
    let t = sub(20480, t);
    shl(t, 1).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 64-bit polynomial expansion equals the saturating one, including for ISPs that
    /// make the reference saturate.
    #[test]
    fn polynomial_expansion_equals_the_reference_operators() {
        let mut seed = 4711u32;
        for trial in 0..20_000u32 {
            let mut isp = [0i16; M16K];
            for v in isp.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *v = (seed >> 16) as u16 as i16;
            }
            if trial % 3 == 0 {
                isp[0] = -32768;
            }
            for (n, wide) in [(8, false), (7, false), (10, true), (9, true)] {
                let mut fast = [0i32; 11];
                isp_poly(&isp, &mut fast, n, wide);
                let (one, scale) = if wide { (1 << 21, 64) } else { (1 << 23, 256) };
                let mut f = [0i32; 11];
                f[0] = one;
                f[1] = -i32::from(isp[0]) * 2 * scale;
                for i in 2..=n {
                    let x = isp[2 * (i - 1)];
                    f[i] = f[i - 2];
                    for j in (2..=i).rev() {
                        let (hi, lo) = l_extract(f[j - 1]);
                        let t = l_shl(mpy_32_16(hi, lo, x), 1);
                        f[j] = l_add(l_sub(f[j], t), f[j - 2]);
                    }
                    f[1] = l_sub(f[1], i32::from(x) * 2 * scale);
                }
                assert_eq!(fast, f, "trial {trial}, n {n}");
            }
        }
    }
}
