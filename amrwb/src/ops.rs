//! Fixed-point primitives with the rounding and saturation of the ITU-T/3GPP basic operators
//! (TS 26.173 `basicop`), written as plain inline functions on `i16`/`i32`.
//!
//! There is no global overflow flag: every function saturates on its own result, which is all
//! the decoder ever observes. Hot loops elsewhere use wider plain arithmetic where a bound on
//! the operands rules overflow out, and say why at the spot.

use crate::tables::{ISQRT_TABLE, LOG2_TABLE, POW2_TABLE};

/// The saturated value of an out-of-range result (kept out of line so that the in-range
/// case is a predicted branch rather than a data dependency).
#[cold]
#[inline(never)]
fn saturate16(x: i32) -> i16 {
    if x > 0 {
        i16::MAX
    } else {
        i16::MIN
    }
}

/// The saturated value of an out-of-range 32-bit result.
#[cold]
#[inline(never)]
fn saturate32(positive: bool) -> i32 {
    if positive {
        i32::MAX
    } else {
        i32::MIN
    }
}

/// Clamps to the 16-bit range.
#[inline(always)]
pub(crate) fn sat16(x: i32) -> i16 {
    if i32::from(x as i16) == x {
        x as i16
    } else {
        saturate16(x)
    }
}

/// Clamps to the 16-bit range without branches (for loops that should vectorise).
#[inline(always)]
pub(crate) fn clamp16(x: i32) -> i16 {
    x.clamp(-32768, 32767) as i16
}

/// `mult` without branches (for loops that should vectorise).
#[inline(always)]
pub(crate) fn mult_v(a: i16, b: i16) -> i16 {
    clamp16((i32::from(a) * i32::from(b)) >> 15)
}

/// A bound on the largest magnitude in `x` (their bitwise OR: at least the maximum, less
/// than twice it), cheap to vectorise.
#[inline(always)]
pub(crate) fn peak(x: &[i16]) -> u16 {
    x.iter().fold(0u16, |m, &v| m | v.unsigned_abs())
}

/// Clamps a 64-bit value to the 32-bit range.
#[inline(always)]
pub(crate) fn sat32(x: i64) -> i32 {
    if i64::from(x as i32) == x {
        x as i32
    } else {
        saturate32(x > 0)
    }
}

/// Saturating 16-bit addition.
#[inline(always)]
pub(crate) fn add(a: i16, b: i16) -> i16 {
    a.saturating_add(b)
}

/// Saturating 16-bit subtraction.
#[inline(always)]
pub(crate) fn sub(a: i16, b: i16) -> i16 {
    a.saturating_sub(b)
}

/// Q15 product, truncated: `(a·b) >> 15`.
#[inline(always)]
pub(crate) fn mult(a: i16, b: i16) -> i16 {
    sat16((i32::from(a) * i32::from(b)) >> 15)
}

/// Q15 product, rounded.
#[inline(always)]
pub(crate) fn mult_r(a: i16, b: i16) -> i16 {
    sat16((i32::from(a) * i32::from(b) + 0x4000) >> 15)
}

/// `2·a·b` as a 32-bit value (saturates only for `-32768²`).
#[inline(always)]
pub(crate) fn l_mult(a: i16, b: i16) -> i32 {
    let p = i32::from(a) * i32::from(b);
    if p == 0x4000_0000 {
        i32::MAX
    } else {
        p << 1
    }
}

/// Saturating 32-bit addition.
#[inline(always)]
pub(crate) fn l_add(a: i32, b: i32) -> i32 {
    match a.checked_add(b) {
        Some(v) => v,
        None => saturate32(a > 0),
    }
}

/// Saturating 32-bit subtraction.
#[inline(always)]
pub(crate) fn l_sub(a: i32, b: i32) -> i32 {
    match a.checked_sub(b) {
        Some(v) => v,
        None => saturate32(a >= 0),
    }
}

/// `acc + 2·a·b`, saturating.
#[inline(always)]
pub(crate) fn l_mac(acc: i32, a: i16, b: i16) -> i32 {
    l_add(acc, l_mult(a, b))
}

/// `acc − 2·a·b`, saturating.
#[inline(always)]
pub(crate) fn l_msu(acc: i32, a: i16, b: i16) -> i32 {
    l_sub(acc, l_mult(a, b))
}

/// The high half of a 32-bit value.
#[inline(always)]
pub(crate) fn extract_h(x: i32) -> i16 {
    (x >> 16) as i16
}

/// Rounds a 32-bit value to its high half.
#[inline(always)]
pub(crate) fn round(x: i32) -> i16 {
    extract_h(l_add(x, 0x8000))
}

/// Shift left (right for negative `n`) with saturation.
#[inline(always)]
pub(crate) fn l_shl(x: i32, n: i32) -> i32 {
    if n <= 0 {
        x >> (-n).min(31)
    } else {
        let y = x.wrapping_shl(n as u32);
        if n < 32 && (y >> n) == x {
            y
        } else if x == 0 {
            0
        } else {
            saturate32(x > 0)
        }
    }
}

/// Shift right (left for negative `n`) with saturation.
#[inline(always)]
pub(crate) fn l_shr(x: i32, n: i32) -> i32 {
    if n >= 0 {
        x >> n.min(31)
    } else {
        l_shl(x, -n)
    }
}

/// Rounding shift right of a 32-bit value (`L_shr_r`).
#[inline(always)]
pub(crate) fn l_shr_r(x: i32, n: i32) -> i32 {
    if n > 31 {
        0
    } else if n > 0 {
        let y = x >> n;
        if x & (1 << (n - 1)) != 0 {
            y + 1
        } else {
            y
        }
    } else {
        l_shl(x, -n)
    }
}

/// 16-bit shift left (right for negative `n`) with saturation.
#[inline(always)]
pub(crate) fn shl(x: i16, n: i32) -> i16 {
    if n <= 0 {
        x >> (-n).min(15)
    } else {
        sat16(i32::from(x) << n.min(16))
    }
}

/// 16-bit shift right (left for negative `n`) with saturation.
#[inline(always)]
pub(crate) fn shr(x: i16, n: i32) -> i16 {
    shl(x, -n)
}

/// Left shifts that normalise a 16-bit value (0 for 0).
#[inline(always)]
pub(crate) fn norm_s(x: i16) -> i32 {
    if x == 0 {
        0
    } else if x == -1 {
        15
    } else {
        let v = if x < 0 { !x } else { x };
        (v.leading_zeros() as i32) - 1
    }
}

/// Left shifts that normalise a 32-bit value (0 for 0).
#[inline(always)]
pub(crate) fn norm_l(x: i32) -> i32 {
    if x == 0 {
        0
    } else if x == -1 {
        31
    } else {
        let v = if x < 0 { !x } else { x };
        (v.leading_zeros() as i32) - 1
    }
}

/// Q15 quotient `num / den` for `0 ≤ num ≤ den`; anything else (which the reference treats
/// as a fatal error) yields 0, and `num == den` yields 32767.
#[inline]
pub(crate) fn div_s(num: i16, den: i16) -> i16 {
    if num <= 0 || den <= 0 || num > den {
        return 0;
    }
    if num == den {
        return 32767;
    }
    // Exact: the 15-bit restoring division of the reference equals the integer quotient.
    ((i32::from(num) << 15) / i32::from(den)) as i16
}

/// Splits a 32-bit value into the reference's double-precision `(hi, lo)` pair.
#[inline(always)]
pub(crate) fn l_extract(x: i32) -> (i16, i16) {
    let hi = (x >> 16) as i16;
    let lo = ((x >> 1) - (i32::from(hi) << 15)) as i16;
    (hi, lo)
}

/// `(hi, lo) × n` in double precision (`Mpy_32_16`).
#[inline(always)]
pub(crate) fn mpy_32_16(hi: i16, lo: i16, n: i16) -> i32 {
    l_mac(l_mult(hi, n), mult(lo, n), 1)
}

/// `1/sqrt` of a normalised `(frac, exp)` pair (`Isqrt_n`), in place.
#[inline]
pub(crate) fn isqrt_n(frac: &mut i32, exp: &mut i32) {
    if *frac <= 0 {
        *exp = 0;
        *frac = 0x7fff_ffff;
        return;
    }
    if *exp & 1 == 1 {
        *frac >>= 1;
    }
    *exp = -((*exp - 1) >> 1);
    *frac >>= 9;
    let i = ((*frac >> 16) - 16).clamp(0, 47) as usize;
    *frac >>= 1;
    let a = (*frac & 0x7fff) as i16;
    let t = ISQRT_TABLE[i];
    let slope = t - ISQRT_TABLE[i + 1];
    *frac = l_msu(i32::from(t) << 16, slope, a);
}

/// `1/sqrt(x)` of a 32-bit value (`Isqrt`).
#[inline]
pub(crate) fn isqrt(x: i32) -> i32 {
    let s = norm_l(x);
    let mut frac = l_shl(x, s);
    let mut exp = 31 - s;
    isqrt_n(&mut frac, &mut exp);
    l_shl(frac, exp)
}

/// `2^(exponent + fraction/32768)` (`Pow2`).
#[inline]
pub(crate) fn pow2(exponent: i32, fraction: i16) -> i32 {
    let l = l_mult(fraction, 32);
    let i = ((l >> 16) as usize).min(31);
    let a = ((l >> 1) & 0x7fff) as i16;
    let t = POW2_TABLE[i];
    let slope = t - POW2_TABLE[i + 1];
    let r = l_msu(i32::from(t) << 16, slope, a);
    l_shr_r(r, 30 - exponent)
}

/// `log2(x)` of a positive 32-bit value as `(exponent, fraction)` (`Log2`).
#[inline]
pub(crate) fn log2(x: i32) -> (i32, i16) {
    if x <= 0 {
        return (0, 0);
    }
    let s = norm_l(x);
    let n = x << s;
    let exponent = 30 - s;
    let shifted = n >> 9;
    let i = (((shifted >> 16) - 32).clamp(0, 31)) as usize;
    let a = ((shifted >> 1) & 0x7fff) as i16;
    let t = LOG2_TABLE[i];
    let slope = t - LOG2_TABLE[i + 1];
    let y = l_msu(i32::from(t) << 16, slope, a);
    (exponent, extract_h(y))
}

/// `Dot_product12(x, x)`: `1 + 2·Σ x²` (saturating), normalised; returns `(sum, exp)`.
///
/// Every term is non-negative, so the reference's saturating running sum equals the exact
/// sum clamped once at the end.
#[inline]
pub(crate) fn energy12(x: &[i16]) -> (i32, i32) {
    let sum = 1 + 2 * sum_squares(x);
    let sum = sum.min(i64::from(i32::MAX)) as i32;
    let s = norm_l(sum);
    (sum << s, 30 - s)
}

/// `Σ x²` exactly.
#[inline]
pub(crate) fn sum_squares(x: &[i16]) -> i64 {
    // Each square is below 2^30; chunks of 2 fit an i32 lane before widening.
    x.iter()
        .map(|&v| i64::from(i32::from(v) * i32::from(v)))
        .sum()
}

/// Rescales a signal by `2^exp` with rounding and saturation (`Scale_sig`).
#[inline]
pub(crate) fn scale_sig(x: &mut [i16], exp: i32) {
    if exp > 0 {
        for v in x.iter_mut() {
            *v = round(l_shl(i32::from(*v) << 16, exp));
        }
    } else if exp < 0 {
        let e = (-exp).min(31);
        for v in x.iter_mut() {
            // |v·2^16 >> e| < 2^31 − 2^15, so the rounding add cannot overflow.
            *v = ((((i32::from(*v) << 16) >> e) + 0x8000) >> 16) as i16;
        }
    }
}

/// The median of five values.
#[inline]
pub(crate) fn median5(x: &[i16; 5]) -> i16 {
    let mut v = *x;
    v.sort_unstable();
    v[2]
}

/// The reference's 16-bit linear congruential noise generator.
#[inline(always)]
pub(crate) fn noise(seed: &mut i16) -> i16 {
    // seed·31821 fits in i32; the reference keeps the low 16 bits of the sum.
    *seed = (i32::from(*seed) * 31821 + 13849) as i16;
    *seed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward definitions of the ITU-T basic operators, for comparison.
    fn ref_l_shl(x: i32, n: i32) -> i32 {
        if n <= 0 {
            return x >> (-n).min(31);
        }
        let mut v = i64::from(x);
        for _ in 0..n {
            v *= 2;
            if v > i64::from(i32::MAX) {
                return i32::MAX;
            }
            if v < i64::from(i32::MIN) {
                return i32::MIN;
            }
        }
        v as i32
    }

    fn ref_norm_l(x: i32) -> i32 {
        if x == 0 {
            return 0;
        }
        let mut v = x;
        let mut n = 0;
        if v == -1 {
            return 31;
        }
        if v < 0 {
            v = !v;
        }
        while v < 0x4000_0000 {
            v <<= 1;
            n += 1;
        }
        n
    }

    fn ref_div_s(num: i16, den: i16) -> i16 {
        if num == den {
            return 32767;
        }
        let (mut n, d) = (i32::from(num), i32::from(den));
        let mut out = 0i32;
        for _ in 0..15 {
            out <<= 1;
            n <<= 1;
            if n >= d {
                n -= d;
                out += 1;
            }
        }
        out as i16
    }

    #[test]
    fn basic_operators_match_their_definitions() {
        let mut seed = 2024u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..200_000 {
            let x = next() as i32 >> (next() % 31);
            let n = (next() % 40) as i32 - 8;
            assert_eq!(l_shl(x, n), ref_l_shl(x, n), "l_shl({x}, {n})");
            assert_eq!(norm_l(x), ref_norm_l(x), "norm_l({x})");
            let a = (next() >> 16) as u16 as i16;
            let b = (next() >> 16) as u16 as i16;
            assert_eq!(
                norm_s(a),
                ref_norm_l(i32::from(a) << 16).min(15),
                "norm_s({a})"
            );
            assert_eq!(
                l_mult(a, b),
                (2 * i64::from(a) * i64::from(b)).min(i64::from(i32::MAX)) as i32
            );
            let (num, den) = (
                a.unsigned_abs().min(b.unsigned_abs()) as i16,
                a.unsigned_abs().max(b.unsigned_abs()).max(1) as i16,
            );
            if num >= 0 && den > 0 && num <= den {
                assert_eq!(div_s(num, den), ref_div_s(num, den), "div_s({num}, {den})");
            }
            let (hi, lo) = l_extract(x);
            assert_eq!((i32::from(hi) << 16) + (i32::from(lo) << 1), x & !1);
        }
    }

    #[test]
    fn energy_equals_the_saturating_running_sum() {
        let mut seed = 5u32;
        for trial in 0..2000u32 {
            let mut x = [0i16; 80];
            for v in x.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *v = ((seed >> 16) as u16 as i16) >> (trial % 16);
            }
            let mut sum = 1i32;
            for &v in &x {
                sum = l_mac(sum, v, v);
            }
            let s = norm_l(sum);
            assert_eq!(energy12(&x), (sum << s, 30 - s));
        }
    }
}
