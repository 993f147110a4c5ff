//! Spectral envelope: LSF dequantisation (TS 26.090 §5.2.5 / `d_plsf_3.c`, `d_plsf_5.c`),
//! LSF↔LSP conversion, LSP interpolation and the LSP → LP coefficient transform (`lsp_az.c`).

use crate::ops::{
    add, l_extract, l_mac, l_msu, l_mult, l_shl, l_shr_r, mpy_32_16, mult, negate, round, sub,
};
use crate::tables::{
    ACOS_SLOPE, COS_TABLE, DICO1_LSF_3, DICO1_LSF_5, DICO2_LSF_3, DICO2_LSF_5, DICO3_LSF_3,
    DICO3_LSF_5, DICO4_LSF_5, DICO5_LSF_5, MEAN_LSF_3, MEAN_LSF_5, MR515_3_LSF, MR795_1_LSF,
    PRED_FAC_3,
};

/// LP order.
pub(crate) const M: usize = 10;
/// Coefficients per LP filter.
pub(crate) const MP1: usize = M + 1;
/// Minimum distance between quantised LSFs.
const LSF_GAP: i16 = 205;
/// LSP of the reset state.
pub(crate) const LSP_INIT: [i16; M] = [
    30000, 26000, 21000, 15000, 8000, 0, -8000, -15000, -21000, -26000,
];

/// Which quantiser layout a 3-split decode uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split3 {
    /// 4.75 and 5.15 kbit/s: halved second split, small third codebook.
    Low,
    /// 5.9, 6.7, 7.4, 10.2 kbit/s.
    Normal,
    /// 7.95 kbit/s: larger first codebook.
    Mr795,
    /// SID frames: no MA prediction factor.
    Sid,
}

/// The LSF quantiser's memory (`D_plsfState`).
#[derive(Clone)]
pub(crate) struct LsfState {
    /// Previous prediction residual.
    pub(crate) past_r_q: [i16; M],
    /// Previous quantised LSFs.
    pub(crate) past_lsf_q: [i16; M],
}

impl LsfState {
    pub(crate) fn new() -> Self {
        LsfState {
            past_r_q: [0; M],
            past_lsf_q: MEAN_LSF_5,
        }
    }

    /// 3-split dequantisation (all rates but 12.2, and SID). `idx` holds the three indices.
    pub(crate) fn decode3(&mut self, kind: Split3, bad: bool, idx: &[i16], lsp: &mut [i16; M]) {
        let mut lsf = [0i16; M];
        if bad {
            // Fade towards the mean, keep the predictor consistent with what was "received".
            for i in 0..M {
                lsf[i] = add(mult(MEAN_LSF_3[i], 3277), mult(self.past_lsf_q[i], 29491));
            }
            for i in 0..M {
                let pred = if kind == Split3::Sid {
                    add(MEAN_LSF_3[i], self.past_r_q[i])
                } else {
                    add(MEAN_LSF_3[i], mult(self.past_r_q[i], PRED_FAC_3[i]))
                };
                self.past_r_q[i] = sub(lsf[i], pred);
            }
        } else {
            let (cb1, cb3): (&[i16], &[i16]) = match kind {
                Split3::Low => (&DICO1_LSF_3, &MR515_3_LSF),
                Split3::Mr795 => (&MR795_1_LSF, &DICO3_LSF_3),
                _ => (&DICO1_LSF_3, &DICO3_LSF_3),
            };
            let i1 = (idx[0] as u16 as usize) * 3;
            let mut i2 = idx[1] as u16 as usize;
            if kind == Split3::Low {
                i2 <<= 1;
            }
            let i2 = i2 * 3;
            let i3 = (idx[2] as u16 as usize) * 4;
            let mut r = [0i16; M];
            // Indices are in range for every layout's field widths; clamp for safety anyway.
            let i1 = i1.min(cb1.len() - 3);
            let i2 = i2.min(DICO2_LSF_3.len() - 3);
            let i3 = i3.min(cb3.len() - 4);
            r[0..3].copy_from_slice(&cb1[i1..i1 + 3]);
            r[3..6].copy_from_slice(&DICO2_LSF_3[i2..i2 + 3]);
            r[6..10].copy_from_slice(&cb3[i3..i3 + 4]);
            for i in 0..M {
                let pred = if kind == Split3::Sid {
                    add(MEAN_LSF_3[i], self.past_r_q[i])
                } else {
                    add(MEAN_LSF_3[i], mult(self.past_r_q[i], PRED_FAC_3[i]))
                };
                lsf[i] = add(r[i], pred);
            }
            self.past_r_q = r;
        }
        reorder(&mut lsf);
        self.past_lsf_q = lsf;
        lsf_to_lsp(&lsf, lsp);
    }

    /// 12.2 kbit/s split-matrix dequantisation: two LSP sets (mid-frame and end-frame).
    pub(crate) fn decode5(
        &mut self,
        bad: bool,
        idx: &[i16],
        lsp1: &mut [i16; M],
        lsp2: &mut [i16; M],
    ) {
        const PRED_FAC: i16 = 21299;
        let mut lsf1 = [0i16; M];
        let mut lsf2 = [0i16; M];
        if bad {
            for i in 0..M {
                lsf1[i] = add(mult(MEAN_LSF_5[i], 1639), mult(self.past_lsf_q[i], 31128));
                lsf2[i] = lsf1[i];
                let pred = add(MEAN_LSF_5[i], mult(self.past_r_q[i], PRED_FAC));
                self.past_r_q[i] = sub(lsf2[i], pred);
            }
        } else {
            let mut r1 = [0i16; M];
            let mut r2 = [0i16; M];
            let books: [&[i16]; 5] = [
                &DICO1_LSF_5,
                &DICO2_LSF_5,
                &DICO3_LSF_5,
                &DICO4_LSF_5,
                &DICO5_LSF_5,
            ];
            for (k, book) in books.iter().enumerate() {
                let raw = idx[k] as u16 as usize;
                // The third codebook is signed: its index carries the sign in bit 0.
                let (row, neg) = if k == 2 {
                    (raw >> 1, raw & 1 != 0)
                } else {
                    (raw, false)
                };
                let at = (row * 4).min(book.len() - 4);
                let e = &book[at..at + 4];
                let v = if neg {
                    [negate(e[0]), negate(e[1]), negate(e[2]), negate(e[3])]
                } else {
                    [e[0], e[1], e[2], e[3]]
                };
                r1[2 * k] = v[0];
                r1[2 * k + 1] = v[1];
                r2[2 * k] = v[2];
                r2[2 * k + 1] = v[3];
            }
            for i in 0..M {
                let pred = add(MEAN_LSF_5[i], mult(self.past_r_q[i], PRED_FAC));
                lsf1[i] = add(r1[i], pred);
                lsf2[i] = add(r2[i], pred);
            }
            self.past_r_q = r2;
        }
        reorder(&mut lsf1);
        reorder(&mut lsf2);
        self.past_lsf_q = lsf2;
        lsf_to_lsp(&lsf1, lsp1);
        lsf_to_lsp(&lsf2, lsp2);
    }
}

/// Enforces the minimum LSF spacing (`Reorder_lsf`).
pub(crate) fn reorder(lsf: &mut [i16; M]) {
    let mut min = LSF_GAP;
    for v in lsf.iter_mut() {
        if *v < min {
            *v = min;
        }
        min = add(*v, LSF_GAP);
    }
}

/// LSF (0..16384 ≙ 0..π… in the reference's Q scale) to LSP (cosine domain) (`Lsf_lsp`).
pub(crate) fn lsf_to_lsp(lsf: &[i16; M], lsp: &mut [i16; M]) {
    for (o, &f) in lsp.iter_mut().zip(lsf) {
        // In range for any reordered LSF below 16384; clamp so garbage cannot index out.
        let ind = ((f >> 8).clamp(0, 63)) as usize;
        let offset = (f & 0xff) as i32;
        let t0 = COS_TABLE[ind] as i32;
        let t1 = COS_TABLE[ind + 1] as i32;
        // L_mult(diff, offset) >> 9 == (diff * offset) >> 8; no overflow: |diff| < 2^15, offset < 2^8.
        *o = add(COS_TABLE[ind], (((t1 - t0) * offset) >> 8) as i16);
    }
}

/// LSP to LSF (`Lsp_lsf`).
pub(crate) fn lsp_to_lsf(lsp: &[i16; M], lsf: &mut [i16; M]) {
    let mut ind: usize = 63;
    for i in (0..M).rev() {
        let v = lsp[i];
        while ind > 0 && COS_TABLE[ind] < v {
            ind -= 1;
        }
        // round(L_shl(L_mult(diff, slope), 3)), saturating as the reference does (only a
        // non-monotonic input could get near the limits).
        let diff = sub(v, COS_TABLE[ind]);
        let r = round(l_shl(l_mult(diff, ACOS_SLOPE[ind]), 3));
        lsf[i] = add(r, (ind as i16) << 8);
    }
}

/// Polynomial coefficients of one LSP half (`Get_lsp_pol`), Q24.
#[inline]
fn lsp_poly(lsp: &[i16; M], odd: usize) -> [i32; 6] {
    let mut f = [0i32; 6];
    f[0] = 0x0100_0000; // L_mult(4096, 2048)
    f[1] = l_msu(0, lsp[odd], 512);
    for i in 2..=5 {
        let c = lsp[odd + 2 * (i - 1)];
        f[i] = f[i - 2];
        for j in (2..=i).rev() {
            let (hi, lo) = l_extract(f[j - 1]);
            let t0 = l_shl(mpy_32_16(hi, lo, c), 1);
            f[j] = f[j].saturating_add(f[j - 2]).saturating_sub(t0);
        }
        f[1] = l_msu(f[1], c, 512);
    }
    f
}

/// `lsp_poly` in plain 64-bit arithmetic: `Mpy_32_16(L_Extract(f), c)` is exactly
/// `2·(((f >> 1)·c) >> 15)`. Returns `None` if any value leaves ±2^30, where the reference's
/// saturation could start to matter.
#[inline]
fn lsp_poly_fast(lsp: &[i16; M], odd: usize) -> Option<[i64; 6]> {
    const LIMIT: i64 = 1 << 30;
    let mut f = [0i64; 6];
    f[0] = 0x0100_0000;
    f[1] = -1024 * lsp[odd] as i64;
    let mut peak: i64 = 0;
    for i in 2..=5 {
        let c = lsp[odd + 2 * (i - 1)] as i64;
        f[i] = f[i - 2];
        for j in (2..=i).rev() {
            let t0 = 4 * (((f[j - 1] >> 1) * c) >> 15);
            f[j] = f[j] + f[j - 2] - t0;
            peak = peak.max(f[j].abs());
        }
        f[1] -= 1024 * c;
        peak = peak.max(f[1].abs());
    }
    (peak < LIMIT).then_some(f)
}

/// LSP to LP coefficients, `a[0] = 4096` (Q12) (`Lsp_Az`).
pub(crate) fn lsp_to_az(lsp: &[i16; M], a: &mut [i16; MP1]) {
    a[0] = 4096;
    if let (Some(mut f1), Some(mut f2)) = (lsp_poly_fast(lsp, 0), lsp_poly_fast(lsp, 1)) {
        // |f| < 2^30, so the first combination stays inside 32 bits; the second is checked.
        for i in (1..=5).rev() {
            f1[i] += f1[i - 1];
            f2[i] -= f2[i - 1];
        }
        let fits = (1..=5).all(|i| {
            let (p, q) = (f1[i] + f2[i], f1[i] - f2[i]);
            p as i32 as i64 == p && q as i32 as i64 == q
        });
        if fits {
            for i in 1..=5 {
                // L_shr_r(x, 13) = (x + 2^12) >> 13
                a[i] = ((f1[i] + f2[i] + 4096) >> 13) as i16;
                a[11 - i] = ((f1[i] - f2[i] + 4096) >> 13) as i16;
            }
            return;
        }
    }
    let mut f1 = lsp_poly(lsp, 0);
    let mut f2 = lsp_poly(lsp, 1);
    for i in (1..=5).rev() {
        f1[i] = f1[i].saturating_add(f1[i - 1]);
        f2[i] = f2[i].saturating_sub(f2[i - 1]);
    }
    for i in 1..=5 {
        a[i] = l_shr_r(f1[i].saturating_add(f2[i]), 13) as i16;
        a[11 - i] = l_shr_r(f1[i].saturating_sub(f2[i]), 13) as i16;
    }
}

/// Interpolates four subframe filters from the previous and current LSPs (`Int_lpc_1to3`).
pub(crate) fn interpolate_1to3(old: &[i16; M], new: &[i16; M], az: &mut [[i16; MP1]; 4]) {
    let mut lsp = [0i16; M];
    for i in 0..M {
        lsp[i] = add(new[i] >> 2, sub(old[i], old[i] >> 2));
    }
    lsp_to_az(&lsp, &mut az[0]);
    for i in 0..M {
        lsp[i] = add(old[i] >> 1, new[i] >> 1);
    }
    lsp_to_az(&lsp, &mut az[1]);
    for i in 0..M {
        lsp[i] = add(old[i] >> 2, sub(new[i], new[i] >> 2));
    }
    lsp_to_az(&lsp, &mut az[2]);
    lsp_to_az(new, &mut az[3]);
}

/// 12.2 kbit/s interpolation with a transmitted mid-frame set (`Int_lpc_1and3`).
pub(crate) fn interpolate_1and3(
    old: &[i16; M],
    mid: &[i16; M],
    new: &[i16; M],
    az: &mut [[i16; MP1]; 4],
) {
    let mut lsp = [0i16; M];
    for i in 0..M {
        lsp[i] = (old[i] >> 1) + (mid[i] >> 1);
    }
    lsp_to_az(&lsp, &mut az[0]);
    lsp_to_az(mid, &mut az[1]);
    for i in 0..M {
        lsp[i] = (mid[i] >> 1) + (new[i] >> 1);
    }
    lsp_to_az(&lsp, &mut az[2]);
    lsp_to_az(new, &mut az[3]);
}

/// Subframe LSF interpolation for the gain smoother (`Int_lsf`).
pub(crate) fn interpolate_lsf(old: &[i16; M], new: &[i16; M], subframe: usize, out: &mut [i16; M]) {
    for i in 0..M {
        out[i] = match subframe {
            0 => add(old[i] - (old[i] >> 2), new[i] >> 2),
            1 => (old[i] >> 1) + (new[i] >> 1),
            2 => add(old[i] >> 2, new[i] - (new[i] >> 2)),
            _ => new[i],
        };
    }
}

/// Slow average of the LSFs (`lsp_avg`), used by the gain smoother.
pub(crate) fn average_update(mean: &mut [i16; M], lsf: &[i16; M]) {
    const EXPCONST: i16 = 5243;
    for i in 0..M {
        let mut l = (mean[i] as i32) << 16;
        l = l_msu(l, EXPCONST, mean[i]);
        l = l_mac(l, EXPCONST, lsf[i]);
        mean[i] = round(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers in a Debug rendering (the oracle's word type is not nameable from outside).
    pub(crate) fn nums(s: &str) -> Vec<i16> {
        s.split(|c: char| !(c.is_ascii_digit() || c == '-'))
            .filter(|t| !t.is_empty() && *t != "-" && *t != "16")
            .map(|t| t.parse().unwrap())
            .collect()
    }

    #[test]
    fn lsp_to_az_fast_path_matches_the_exact_one() {
        let mut r = 0x2545_f491u32;
        let mut rnd = |n: u32| {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            r % n
        };
        for k in 0..20000 {
            let mut lsp = [0i16; M];
            for v in lsp.iter_mut() {
                *v = (rnd(65536) as i32 - 32768) as i16;
            }
            if k % 2 == 0 {
                lsp.sort_unstable_by(|a, b| b.cmp(a));
            }
            let mut fast = [0i16; MP1];
            lsp_to_az(&lsp, &mut fast);
            let mut f1 = lsp_poly(&lsp, 0);
            let mut f2 = lsp_poly(&lsp, 1);
            for i in (1..=5).rev() {
                f1[i] = f1[i].saturating_add(f1[i - 1]);
                f2[i] = f2[i].saturating_sub(f2[i - 1]);
            }
            let mut exact = [4096i16; MP1];
            for i in 1..=5 {
                exact[i] = l_shr_r(f1[i].saturating_add(f2[i]), 13) as i16;
                exact[11 - i] = l_shr_r(f1[i].saturating_sub(f2[i]), 13) as i16;
            }
            assert_eq!(fast, exact, "{lsp:?}");
        }
    }

    #[test]
    fn lsf_decoding_matches_the_oracle() {
        use codec_core::codecs::amr::nb::lsp::LsfDecoder;
        let mut r = 0x2545_f491u32;
        let mut rnd = |n: u32| {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            (r % n) as i16
        };
        for mode in 0..8u8 {
            let mut theirs = LsfDecoder::at_reset();
            let mut ours = LsfState::new();
            for frame in 0..200 {
                let bad = frame % 7 == 3;
                if mode == 7 {
                    let idx = [rnd(128), rnd(256), rnd(512), rnd(256), rnd(64)];
                    let uidx: Vec<u16> = idx.iter().map(|&v| v as u16).collect();
                    let (m, n) = theirs.decode_pair(&uidx, bad);
                    let (mut a, mut b) = ([0; M], [0; M]);
                    ours.decode5(bad, &idx, &mut a, &mut b);
                    assert_eq!(nums(&format!("{m:?}")), a.to_vec(), "mid, frame {frame}");
                    assert_eq!(nums(&format!("{n:?}")), b.to_vec(), "new, frame {frame}");
                } else {
                    let w = crate::bits::WIDTHS[mode as usize];
                    let idx = [rnd(1 << w[0]), rnd(1 << w[1]), rnd(1 << w[2])];
                    let uidx: Vec<u16> = idx.iter().map(|&v| v as u16).collect();
                    let n = theirs.decode(mode, &uidx, bad);
                    let kind = match mode {
                        0 | 1 => Split3::Low,
                        5 => Split3::Mr795,
                        _ => Split3::Normal,
                    };
                    let mut b = [0; M];
                    ours.decode3(kind, bad, &idx, &mut b);
                    assert_eq!(
                        nums(&format!("{n:?}")),
                        b.to_vec(),
                        "mode {mode} frame {frame}"
                    );
                }
            }
        }
    }
}
