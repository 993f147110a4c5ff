//! LP synthesis and inverse filtering (`syn_filt.c`, `residu.c`).
//!
//! Both compute, per sample, `round(L_shl(Σ 2·a·x, 3))` with a saturating accumulator. When the
//! filter's absolute coefficient sum is below 2^15 (in Q12 terms: below 8.0), no partial sum can
//! leave the 32-bit range for any 16-bit signal, and plain `i32` arithmetic is exact; only the
//! final shift and rounding can saturate, and that is a clamp. Filters outside the bound take a
//! path that reproduces the reference's sequential saturation.
//!
//! The decoder needs to know whether the synthesis filter saturated (the reference's `Overflow`
//! flag; it then rescales the excitation). The fast path does not track it inside the recursion,
//! which is latency-bound: saturation always leaves an output on a rail (±32767/-32768), so a
//! block with a railed output is simply recomputed the reference's way, which yields the flag.

use crate::lsf::{M, MP1};
use crate::ops::{l_mac, l_msu, l_mult, l_shl, round};

/// Largest block filtered at once.
const MAX_LEN: usize = 40;

/// True if Σ|a| guarantees a non-saturating accumulator.
#[inline(always)]
fn bounded(a: &[i16; MP1]) -> bool {
    a.iter().map(|&c| (c as i32).abs()).sum::<i32>() < 32768
}

/// `round(L_shl(2·t, 3))` for an exact accumulator `t` (so `2·t` is the reference's `s`):
/// saturation happens exactly when `t` leaves [-2^27, 0x07FF_F7FF], and at those two bounds the
/// unsaturated formula already yields -32768 and 32767, so clamping `t` first is exact.
#[inline(always)]
fn finish(t: i32) -> i16 {
    ((t.clamp(-0x0800_0000, 0x07FF_F7FF) << 4).wrapping_add(0x8000) >> 16) as i16
}

/// One output of the fast synthesis recursion at ring phase `P` (output index mod M): slot
/// `(P + M - k) % M` holds y[i-k]. The ten products are spelt out so that every index is a
/// compile-time constant; the newest output's product comes last, alone on the critical path.
#[inline(always)]
fn ring_step<const P: usize>(r: &mut [i32; M], c: &[i32; M], a0: i32, x: i16) -> i16 {
    let older = x as i32 * a0
        - c[9] * r[P % M]
        - c[8] * r[(P + 1) % M]
        - c[7] * r[(P + 2) % M]
        - c[6] * r[(P + 3) % M]
        - c[5] * r[(P + 4) % M]
        - c[4] * r[(P + 5) % M]
        - c[3] * r[(P + 6) % M]
        - c[2] * r[(P + 7) % M]
        - c[1] * r[(P + 8) % M];
    // round(L_shl(2t, 3)) = (t + 2^11) >> 12 while that fits 16 bits; saturation is a cold
    // branch (predicted away) rather than a select on the critical path.
    let mut v = (older - c[0] * r[(P + 9) % M] + 0x800) >> 12;
    if v != v as i16 as i32 {
        v = rail(v);
    }
    r[P] = v;
    v as i16
}

/// The saturated value of an out-of-range synthesis output.
#[cold]
#[inline(never)]
fn rail(v: i32) -> i32 {
    v.clamp(-32768, 32767)
}

/// Synthesis filter 1/A(z): `y = x` filtered with memory `mem` (the last M outputs of the
/// previous block, oldest first). `x` and `y` have the same length (≤ 40). Returns true if the
/// reference would have raised its overflow flag. Does not update `mem`.
pub(crate) fn synthesis(a: &[i16; MP1], x: &[i16], y: &mut [i16], mem: &[i16; M]) -> bool {
    synthesis_beside(a, x, y, mem, |_| {})
}

/// [`synthesis`], running `beside(i)` once for every sample index `i` alongside it.
///
/// The recursion is bound by its own latency, so an independent recursion (the output
/// high-pass filter of the previous block) interleaved into the same loop runs nearly for free.
/// `beside` must not depend on this filter's output.
#[inline(always)]
pub(crate) fn synthesis_beside<F: FnMut(usize)>(
    a: &[i16; MP1],
    x: &[i16],
    y: &mut [i16],
    mem: &[i16; M],
    mut beside: F,
) -> bool {
    let n = x.len().min(y.len()).min(MAX_LEN);
    let (x, y) = (&x[..n], &mut y[..n]);
    let mut beside_done = false;
    if bounded(a) {
        // No partial sum can saturate; only the final shift/round can, which `ring_step` handles
        // exactly. Tracking the reference's overflow flag inside the recursion costs registers it
        // cannot spare, so it is recovered afterwards: saturation can only have happened if an
        // output sits on a rail, and then the block is simply redone the reference's way.
        let a0 = a[0] as i32;
        let c: [i32; M] = core::array::from_fn(|k| a[k + 1] as i32);
        // Ring of the last M outputs, kept in registers: before output i, slot (i - k) mod M
        // holds y[i-k] for k = 1..=M. The loop is unrolled M times so every slot is a constant.
        let mut r: [i32; M] = core::array::from_fn(|k| mem[k] as i32);
        let mut xs = x.chunks_exact(M);
        let mut ys = y.chunks_exact_mut(M);
        let mut base = 0;
        for (xb, yb) in (&mut xs).zip(&mut ys) {
            yb[0] = ring_step::<0>(&mut r, &c, a0, xb[0]);
            beside(base);
            yb[1] = ring_step::<1>(&mut r, &c, a0, xb[1]);
            beside(base + 1);
            yb[2] = ring_step::<2>(&mut r, &c, a0, xb[2]);
            beside(base + 2);
            yb[3] = ring_step::<3>(&mut r, &c, a0, xb[3]);
            beside(base + 3);
            yb[4] = ring_step::<4>(&mut r, &c, a0, xb[4]);
            beside(base + 4);
            yb[5] = ring_step::<5>(&mut r, &c, a0, xb[5]);
            beside(base + 5);
            yb[6] = ring_step::<6>(&mut r, &c, a0, xb[6]);
            beside(base + 6);
            yb[7] = ring_step::<7>(&mut r, &c, a0, xb[7]);
            beside(base + 7);
            yb[8] = ring_step::<8>(&mut r, &c, a0, xb[8]);
            beside(base + 8);
            yb[9] = ring_step::<9>(&mut r, &c, a0, xb[9]);
            beside(base + 9);
            base += M;
        }
        // A tail shorter than M (the 22-sample impulse responses) starts again at phase 0.
        for (j, (o, &xv)) in ys
            .into_remainder()
            .iter_mut()
            .zip(xs.remainder())
            .enumerate()
        {
            *o = match j {
                0 => ring_step::<0>(&mut r, &c, a0, xv),
                1 => ring_step::<1>(&mut r, &c, a0, xv),
                2 => ring_step::<2>(&mut r, &c, a0, xv),
                3 => ring_step::<3>(&mut r, &c, a0, xv),
                4 => ring_step::<4>(&mut r, &c, a0, xv),
                5 => ring_step::<5>(&mut r, &c, a0, xv),
                6 => ring_step::<6>(&mut r, &c, a0, xv),
                7 => ring_step::<7>(&mut r, &c, a0, xv),
                _ => ring_step::<8>(&mut r, &c, a0, xv),
            };
            beside(base + j);
        }
        if !y.iter().any(|&v| v == i16::MAX || v == i16::MIN) {
            return false;
        }
        beside_done = true;
    }
    if !beside_done {
        for i in 0..n {
            beside(i);
        }
    }
    // The reference's sequential saturating accumulation.
    let mut buf = [0i16; M + MAX_LEN];
    buf[..M].copy_from_slice(mem);
    let mut overflow = false;
    for i in 0..n {
        let mut s = l_mult(x[i], a[0]);
        let mut o = s == i32::MAX && x[i] == i16::MIN && a[0] == i16::MIN;
        for j in 1..=M {
            let p = l_mult(a[j], buf[M + i - j]);
            let exact = s as i64 - p as i64;
            o |= exact != (exact as i32) as i64 || (a[j] == i16::MIN && buf[M + i - j] == i16::MIN);
            s = l_msu(s, a[j], buf[M + i - j]);
        }
        let wide = (s as i64) << 3;
        o |= wide != (wide as i32) as i64;
        let l = l_shl(s, 3);
        o |= l > 0x7FFF_7FFF;
        overflow |= o;
        buf[M + i] = round(l);
    }
    y.copy_from_slice(&buf[M..M + n]);
    overflow
}

/// Inverse filter A(z): `y[i] = Σ a[j]·x[i-j]`, where `x` carries M samples of history before the
/// `y.len()` samples to filter.
pub(crate) fn residual(a: &[i16; MP1], x: &[i16], y: &mut [i16]) {
    let n = y.len().min(x.len().saturating_sub(M));
    if bounded(a) {
        let rev: [i32; MP1] = core::array::from_fn(|k| a[M - k] as i32);
        for i in 0..n {
            let w: &[i16; MP1] = x[i..i + MP1].try_into().unwrap_or(&[0; MP1]); // x[i-10] .. x[i]
            let mut t: i32 = 0;
            for k in 0..MP1 {
                t += rev[k] * w[k] as i32;
            }
            y[i] = finish(t);
        }
    } else {
        for i in 0..n {
            let mut s = l_mult(x[i + M], a[0]);
            for j in 1..=M {
                s = l_mac(s, a[j], x[i + M - j]);
            }
            y[i] = round(l_shl(s, 3));
        }
    }
}
