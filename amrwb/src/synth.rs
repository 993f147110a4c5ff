//! The 12.8 kHz core synthesis: the LP synthesis filter in double precision, de-emphasis,
//! the 50 Hz high-pass, and the 12.8 → 16 kHz resampler (TS 26.190 §6.2–6.3).

use crate::acelp::L_SUBFR;
use crate::lp::M;
use crate::ops::{clamp16, extract_h, l_mac, l_msu, l_shl, norm_s, peak, round, sat32};
use crate::tables::FIR_UP;

/// Output samples per subframe at 16 kHz.
pub(crate) const L_SUBFR16K: usize = 80;

/// `Σ x·y` over a 16-sample window, wrapping (callers bound the true sum).
///
/// Kept out of line: alone it vectorises (`pmaddwd` on x86-64); inlined twice into the
/// filter loop it does not.
#[inline(never)]
fn dot16(x: &[i16; M], y: &[i16; M]) -> i32 {
    x.iter().zip(y).fold(0i32, |acc, (&a, &b)| {
        acc.wrapping_add(i32::from(a) * i32::from(b))
    })
}

/// The 12.8 kHz core chain with its memories: `1/A(z)` on the excitation in double
/// precision (`Syn_filt_32`: a high word and a 12-bit low word per sample), de-emphasis,
/// the 50 Hz high-pass, and the 400 Hz high-pass whose output only feeds the high band's
/// tilt measure.
///
/// The four recursions run fused, sample by sample, so that their dependency chains
/// overlap in the CPU.
#[derive(Clone, Copy)]
pub(crate) struct CoreChain {
    hi: [i16; M],
    lo: [i16; M],
    deemph: i16,
    hp50: Biquad,
    hp400: Biquad,
}

impl CoreChain {
    pub(crate) fn new() -> Self {
        CoreChain {
            hi: [0; M],
            lo: [0; M],
            deemph: 0,
            hp50: Biquad::default(),
            hp400: Biquad::default(),
        }
    }

    /// Runs one subframe: `exc` (scaled by `2^q_new`) through `1/A(z)` and the filters;
    /// `out50` is the core output, `out400` its 400 Hz high-passed copy.
    ///
    /// The synthesis sums run in wrapping 32-bit arithmetic with the newest output taken
    /// from registers (so that the loop never reloads a just-stored sample). Afterwards a
    /// bound on every partial sum of the reference's saturating `L_msu`/`L_mac` chain,
    /// `2·Σ|a|·(1 + max|hi|) + 2·|a0|·max|exc| < 2^31` (the low words are below 2^12, so
    /// their chain stays in range when `Σ|a| < 2^18`), proves the wrapped values are the
    /// true ones; otherwise the subframe is recomputed with the saturating operators.
    pub(crate) fn run(
        &mut self,
        a: &[i16; M + 1],
        exc: &[i16; L_SUBFR],
        q_new: i32,
        out50: &mut [i16; L_SUBFR],
        out400: &mut [i16; L_SUBFR],
    ) {
        let s = norm_s(a[0]) - 2;
        let a0 = a[0] >> (4 + q_new).clamp(0, 15);
        let sum_a: i64 = a[1..].iter().map(|&c| i64::from(c).abs()).sum();
        if sum_a < 1 << 18 {
            let saved = *self;
            // Indices 0..2 are padding, 2..M + 2 the memory, output i lands at M + 2 + i.
            // The window [i..i + M] holds every past output the sums need but the two newest
            // (taken from registers, so that the loop never reloads a recently stored value):
            // element k is output n − (M + 2 − k) for n = M + 2 + i; elements 0, 1 unused.
            const P: usize = 2;
            let mut hi = [0i16; M + L_SUBFR + P];
            let mut lo = [0i16; M + L_SUBFR + P];
            hi[P..P + M].copy_from_slice(&self.hi);
            lo[P..P + M].copy_from_slice(&self.lo);
            let mut rev = [0i16; M];
            for k in P..M {
                rev[k] = a[M + P - k];
            }
            let (a1, a2) = (i32::from(a[1]), i32::from(a[2]));
            let (mut hi1, mut hi2) = (hi[P + M - 1], hi[P + M - 2]);
            let (mut lo1, mut lo2) = (lo[P + M - 1], lo[P + M - 2]);
            let mut de = self.deemph;
            let mut hp50 = self.hp50;
            let mut hp400 = self.hp400;
            // Peaks for the filters' exactness checks, states included.
            let (mut y50, mut x50) = hp50.state_peaks();
            let (mut y400, x400) = hp400.state_peaks();
            let mut de_ok = true;
            for i in 0..L_SUBFR {
                let wl: &[i16; M] = lo[i..i + M].try_into().unwrap_or(&[0; M]);
                let wh: &[i16; M] = hi[i..i + M].try_into().unwrap_or(&[0; M]);
                // Low words are below 2^12: with Σ|a| < 2^18 this sum is exact; the
                // high-word sum wraps and is validated by the bound checked below.
                let sl = dot16(wl, &rev)
                    .wrapping_add(i32::from(lo2) * a2)
                    .wrapping_add(i32::from(lo1) * a1);
                let sh = dot16(wh, &rev)
                    .wrapping_add(i32::from(hi2) * a2)
                    .wrapping_add(i32::from(hi1) * a1);
                let acc = (sl.wrapping_mul(-2) >> 12)
                    .wrapping_add(2 * i32::from(exc[i]) * i32::from(a0))
                    .wrapping_sub(sh.wrapping_mul(2));
                let acc = l_shl(acc, 3 + s);
                let prev_hi = extract_h(acc);
                let prev_lo = ((acc >> 4) & 0xfff) as i16;
                (hi2, hi1, lo2, lo1) = (hi1, prev_hi, lo1, prev_lo);
                hi[P + M + i] = prev_hi;
                lo[P + M + i] = prev_lo;
                let (d, ok) = deemph_fast(prev_hi, prev_lo, de);
                de = d;
                de_ok &= ok;
                x50 |= de.unsigned_abs();
                let z = hp50.step_fast(de, HP50.0, HP50.1, HP50.2, HP50.3);
                y50 |= hp50.y1_hi().unsigned_abs();
                out50[i] = z;
                out400[i] = hp400.step_fast(z, HP400.0, HP400.1, HP400.2, HP400.3);
                y400 |= hp400.y1_hi().unsigned_abs();
            }
            // An OR of magnitudes bounds their maximum.
            let max_hi = i64::from(peak(&hi));
            let max_exc = i64::from(exc.iter().fold(0u16, |m, &v| m | v.unsigned_abs()));
            if 2 * sum_a * (1 + max_hi) + 2 * i64::from(a0).abs() * max_exc < i64::from(i32::MAX)
                && de_ok
                && Biquad::fits(y50, x50, HP50.0, HP50.1)
                && Biquad::fits(y400, x400 | peak(out50), HP400.0, HP400.1)
            {
                self.hi.copy_from_slice(&hi[L_SUBFR + P..]);
                self.lo.copy_from_slice(&lo[L_SUBFR + P..]);
                self.deemph = de;
                self.hp50 = hp50;
                self.hp400 = hp400;
                return;
            }
            *self = saved;
        }
        self.run_exact(a, exc, a0, s, out50, out400);
    }

    /// The reference's operator-by-operator computation (any input).
    fn run_exact(
        &mut self,
        a: &[i16; M + 1],
        exc: &[i16; L_SUBFR],
        a0: i16,
        s: i32,
        out50: &mut [i16; L_SUBFR],
        out400: &mut [i16; L_SUBFR],
    ) {
        let mut hi = [0i16; M + L_SUBFR];
        let mut lo = [0i16; M + L_SUBFR];
        hi[..M].copy_from_slice(&self.hi);
        lo[..M].copy_from_slice(&self.lo);
        for i in 0..L_SUBFR {
            let n = M + i;
            let mut acc = 0i32;
            for j in 1..=M {
                acc = l_msu(acc, lo[n - j], a[j]);
            }
            acc >>= 12;
            acc = l_mac(acc, exc[i], a0);
            for j in 1..=M {
                acc = l_msu(acc, hi[n - j], a[j]);
            }
            let acc = l_shl(acc, 3 + s);
            let h = extract_h(acc);
            hi[n] = h;
            lo[n] = ((acc >> 4) - (i32::from(h) << 12)) as i16;
            self.deemph = deemph_step(h, lo[n], self.deemph);
            out50[i] = self
                .hp50
                .step_exact(self.deemph, HP50.0, HP50.1, HP50.2, HP50.3);
            out400[i] = self
                .hp400
                .step_exact(out50[i], HP400.0, HP400.1, HP400.2, HP400.3);
        }
        self.hi.copy_from_slice(&hi[L_SUBFR..]);
        self.lo.copy_from_slice(&lo[L_SUBFR..]);
    }
}

/// One step of the de-emphasis `1/(1 − 0.68 z⁻¹)` from the double-precision synthesis
/// (`Deemph_32`); `prev` is the previous output.
#[inline(always)]
fn deemph_step(hi: i16, lo: i16, prev: i16) -> i16 {
    // PREEMPH_FAC / 2 in Q15.
    const FAC: i16 = 11141;
    // hi·2^16 + lo·16 cannot overflow (lo < 2^12); the shifts and the feedback term
    // saturate like the reference's `L_shl`/`L_mac`.
    let acc = (i32::from(hi) << 16) + (i32::from(lo) << 4);
    let acc = sat32(i64::from(acc) << 3);
    let acc = sat32(i64::from(acc) + 2 * i64::from(prev) * i64::from(FAC));
    let acc = sat32(i64::from(acc) << 1);
    round(acc)
}

/// [`deemph_step`] without the intermediate saturations, and whether that was exact: the
/// three saturating steps can only bite when the final 64-bit value leaves the 32-bit range
/// (|x·8 + f| < 2^30 implies |x·8| < 2^31 for |f| < 2^30).
#[inline(always)]
fn deemph_fast(hi: i16, lo: i16, prev: i16) -> (i16, bool) {
    const FAC: i64 = 11141;
    let acc = (i64::from(hi) << 16) + (i64::from(lo) << 4);
    let v = ((acc << 3) + 2 * i64::from(prev) * FAC) << 1;
    let ok = v.abs() < 1 << 31;
    (((v + 0x8000) >> 16).min(32767) as i16, ok)
}

/// A second-order IIR section in the reference's double-precision form, used for the 50 Hz
/// and 400 Hz high-passes.
///
/// The reference keeps each past output as a high word and a 15-bit low word of
/// `acc >> 1`; this keeps that value whole (`y1`, `y2`), from which both words follow.
#[derive(Clone, Copy, Default)]
pub(crate) struct Biquad {
    y1: i32,
    y2: i32,
    x0: i16,
    x1: i16,
}

/// The reference's `(hi, lo)` split of a past output.
#[inline(always)]
fn words(y: i32) -> (i16, i16) {
    ((y >> 15) as i16, (y & 0x7fff) as i16)
}

impl Biquad {
    /// One sample, in the reference's operator-by-operator form. `a` feedback and `b`
    /// feedforward taps; `gain_shift` is the post-sum left shift (2 for the 50 Hz filter, 1
    /// for 400 Hz); `out_shift` the extra shift of the output rounding (1 and 0).
    #[inline(always)]
    fn step_exact(
        &mut self,
        x: i16,
        a: [i16; 2],
        b: [i16; 3],
        gain_shift: i32,
        out_shift: i32,
    ) -> i16 {
        let x2 = self.x1;
        self.x1 = self.x0;
        self.x0 = x;
        let (y1_hi, y1_lo) = words(self.y1);
        let (y2_hi, y2_lo) = words(self.y2);
        let mut acc = 16384i32;
        acc = l_mac(acc, y1_lo, a[0]);
        acc = l_mac(acc, y2_lo, a[1]);
        acc >>= 15;
        acc = l_mac(acc, y1_hi, a[0]);
        acc = l_mac(acc, y2_hi, a[1]);
        acc = l_mac(acc, self.x0, b[0]);
        acc = l_mac(acc, self.x1, b[1]);
        acc = l_mac(acc, x2, b[2]);
        let acc = l_shl(acc, gain_shift);
        self.y2 = self.y1;
        self.y1 = acc >> 1;
        round(l_shl(acc, out_shift))
    }

    /// One sample in plain arithmetic, exact whenever every partial sum of the reference's
    /// high-word chain stays inside 32 bits — which [`Biquad::fits`] checks for a block
    /// afterwards. (The low-word chain never saturates: low words lie in 0..2^15 and the two
    /// feedback taps have opposite signs, the first positive, so it stays within
    /// `16384 + 2^15·2·a[0] < 2^31`.) With y = hi·2^15 + lo, the reference's
    /// `((16384 + 2·a·lo) >> 15) + 2·a·hi` is `(16384 + 2·a·y) >> 15` — one product per tap.
    /// The shifts keep their saturation.
    #[inline(always)]
    fn step_fast(
        &mut self,
        x: i16,
        a: [i16; 2],
        b: [i16; 3],
        gain_shift: i32,
        out_shift: i32,
    ) -> i16 {
        let x2 = self.x1;
        self.x1 = self.x0;
        self.x0 = x;
        let fb = (16384
            + 2 * i64::from(a[0]) * i64::from(self.y1)
            + 2 * i64::from(a[1]) * i64::from(self.y2))
            >> 15;
        let feed = i32::from(self.x0) * i32::from(b[0])
            + i32::from(self.x1) * i32::from(b[1])
            + i32::from(x2) * i32::from(b[2]);
        let acc = (fb as i32).wrapping_add(2 * feed);
        let acc = l_shl(acc, gain_shift);
        self.y2 = self.y1;
        self.y1 = acc >> 1;
        round(l_shl(acc, out_shift))
    }

    /// The high word of the newest past output.
    #[inline(always)]
    fn y1_hi(&self) -> i16 {
        (self.y1 >> 15) as i16
    }

    /// Whether plain arithmetic was exact over a block whose high words (state included)
    /// and inputs (state included) are bounded in magnitude by `max_y` and `max_x` (ORs of
    /// magnitudes, which bound the maxima): every partial sum of the high-word chain is then
    /// below `2·(max_y·Σ|a| + max_x·Σ|b|) + 2^16 < 2^31`.
    #[inline(always)]
    fn fits(max_y: u16, max_x: u16, a: [i16; 2], b: [i16; 3]) -> bool {
        let sa = i64::from(a[0]).abs() + i64::from(a[1]).abs();
        let sb = i64::from(b[0]).abs() + i64::from(b[1]).abs() + i64::from(b[2]).abs();
        i64::from(max_y) * sa + i64::from(max_x) * sb < 1_073_000_000
    }

    /// Bounds (ORs) of the state magnitudes `(high words, inputs)`.
    #[inline(always)]
    fn state_peaks(&self) -> (u16, u16) {
        (
            words(self.y1).0.unsigned_abs() | words(self.y2).0.unsigned_abs(),
            self.x0.unsigned_abs() | self.x1.unsigned_abs(),
        )
    }
}

/// The 50 Hz high-pass at 12.8 kHz: feedback, feedforward, shifts.
const HP50: ([i16; 2], [i16; 3], i32, i32) = ([16211, -8021], [4053, -8106, 4053], 2, 1);
/// The 400 Hz high-pass at 12.8 kHz (for the spectral tilt).
const HP400: ([i16; 2], [i16; 3], i32, i32) = ([29280, -14160], [915, -1830, 915], 1, 0);

/// Taps per side of the resampling filter.
const NB_COEF_UP: usize = 12;

/// `FIR_UP` split by phase and padded to 32 taps: `UP_PHASES[p][t]` is tap `t` of phase `p`
/// (phase 4 is the identity and not stored).
static UP_PHASES: [[i16; 32]; 4] = {
    let mut out = [[0i16; 32]; 4];
    let mut p = 0;
    while p < 4 {
        let mut t = 0;
        while t < 2 * NB_COEF_UP {
            out[p][t] = FIR_UP[5 * t + p];
            t += 1;
        }
        p += 1;
    }
    out
};

/// `Σ x·y` over 32 samples, wrapping (callers bound the true sum).
///
/// Kept out of line: alone it vectorises (`pmaddwd` on x86-64).
#[inline(never)]
fn dot32(x: &[i16; 32], y: &[i16; 32]) -> i32 {
    x.iter().zip(y).fold(0i32, |acc, (&a, &b)| {
        acc.wrapping_add(i32::from(a) * i32::from(b))
    })
}

/// The 12.8 → 16 kHz interpolator (factor 5/4).
#[derive(Clone)]
pub(crate) struct Upsampler {
    mem: [i16; 2 * NB_COEF_UP],
}

impl Upsampler {
    pub(crate) fn new() -> Self {
        Upsampler {
            mem: [0; 2 * NB_COEF_UP],
        }
    }

    pub(crate) fn run(&mut self, input: &[i16; L_SUBFR], out: &mut [i16; L_SUBFR16K]) {
        // History, input, and zero padding so that every filter window is 32 wide.
        let mut sig = [0i16; 2 * NB_COEF_UP + L_SUBFR + 8];
        sig[..2 * NB_COEF_UP].copy_from_slice(&self.mem);
        sig[2 * NB_COEF_UP..2 * NB_COEF_UP + L_SUBFR].copy_from_slice(input);
        // Output 5b + k (k = 0..4) sits at input position 4b + 4k/5: k = 0 falls on input
        // sample 4b + 12; for k ≥ 1 it is phase k − 1 of the filter over sig[4b + k ..][..24]
        // (taps padded to 32 with zeros, windows reading into the zero padding of `sig`).
        for b in 0..L_SUBFR16K / 5 {
            out[5 * b] = sig[4 * b + NB_COEF_UP];
            for k in 1..5 {
                let x: &[i16; 32] = sig[4 * b + k..4 * b + k + 32]
                    .try_into()
                    .unwrap_or(&[0; 32]);
                // Σ|taps| of any phase < 40 000, so 24 products of 16-bit samples stay
                // inside 2^31.
                out[5 * b + k] = clamp16((dot32(x, &UP_PHASES[k - 1]) + 0x2000) >> 14);
            }
        }
        self.mem
            .copy_from_slice(&sig[L_SUBFR..L_SUBFR + 2 * NB_COEF_UP]);
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

    fn sample(seed: &mut u32, shift: u32) -> i16 {
        ((rng(seed) >> 16) as u16 as i16) >> shift
    }

    /// The fused fast path (with its fallback) equals the operator-by-operator reference
    /// over streams of subframes, from gentle to saturating inputs and filters.
    #[test]
    fn the_core_chain_equals_the_reference_operators() {
        let mut seed = 0xdead_beefu32;
        for stream in 0..300u32 {
            let mut fast = CoreChain::new();
            let mut exact = CoreChain::new();
            let coef_shift = 2 + stream % 6;
            let exc_shift = stream % 12;
            for sub in 0..8 {
                let mut a = [0i16; M + 1];
                let q = (stream + sub) % 3;
                a[0] = 4096 >> q;
                for c in a.iter_mut().skip(1) {
                    *c = sample(&mut seed, coef_shift);
                }
                let mut exc = [0i16; L_SUBFR];
                for v in exc.iter_mut() {
                    *v = sample(&mut seed, exc_shift);
                }
                let q_new = (sub % 9) as i32;
                let (mut f50, mut f400, mut e50, mut e400) =
                    ([0i16; L_SUBFR], [0; L_SUBFR], [0; L_SUBFR], [0; L_SUBFR]);
                fast.run(&a, &exc, q_new, &mut f50, &mut f400);
                let s = norm_s(a[0]) - 2;
                let a0 = a[0] >> (4 + q_new).clamp(0, 15);
                exact.run_exact(&a, &exc, a0, s, &mut e50, &mut e400);
                assert_eq!((f50, f400), (e50, e400), "stream {stream}, subframe {sub}");
                assert_eq!(fast.hi, exact.hi);
                assert_eq!(fast.lo, exact.lo);
                assert_eq!(fast.deemph, exact.deemph);
            }
        }
    }

    /// The vectorised resampler equals the reference's per-output interpolation.
    #[test]
    fn the_upsampler_equals_the_reference_interpolation() {
        let mut seed = 12345u32;
        let mut up = Upsampler::new();
        let mut history = vec![0i16; 2 * NB_COEF_UP];
        for _ in 0..200 {
            let mut input = [0i16; L_SUBFR];
            for v in input.iter_mut() {
                let shift = rng(&mut seed) % 4;
                *v = sample(&mut seed, shift);
            }
            let mut out = [0i16; L_SUBFR16K];
            up.run(&input, &mut out);
            history.extend_from_slice(&input);
            let base = history.len() - L_SUBFR - 2 * NB_COEF_UP;
            let sig = &history[base..];
            for (j, &o) in out.iter().enumerate() {
                let pos = 4 * j;
                let (i, frac) = (pos / 5, pos % 5);
                // Interpol(&sig_d[i], fir_up, frac, 5, 12) with sig_d = sig[12..].
                let mut sum = 0i64;
                for t in 0..2 * NB_COEF_UP {
                    sum += 2 * i64::from(sig[i + 1 + t]) * i64::from(FIR_UP[4 - frac + 5 * t]);
                }
                let want = ((sum * 2 + 0x8000) >> 16).clamp(-32768, 32767) as i16;
                assert_eq!(o, want, "output {j}");
            }
        }
    }
}
