//! Fixed-point primitives with the semantics of the TS 26.073 basic operators.
//!
//! The reference expresses every computation through a small set of saturating 16/32-bit
//! operators. These are the same operators as plain inlined functions on `i16`/`i32`: they
//! saturate exactly where the reference does, but keep no global overflow flag (the one place the
//! decoder consults that flag, the synthesis filter, detects overflow itself; see `filter`).
//! Hot loops elsewhere use plain integer arithmetic where the bounds make saturation impossible.

use crate::tables::{INV_SQRT_TAB, LOG2_TAB, POW2_TAB, SQRT_TAB};

/// Clamps a 32-bit value to the 16-bit range.
#[inline(always)]
pub(crate) fn sat16(x: i32) -> i16 {
    x.clamp(-32768, 32767) as i16
}

/// Clamps a 64-bit value to the 32-bit range.
#[inline(always)]
pub(crate) fn sat32(x: i64) -> i32 {
    x.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Saturating 16-bit addition (`add`).
#[inline(always)]
pub(crate) fn add(a: i16, b: i16) -> i16 {
    a.saturating_add(b)
}

/// Saturating 16-bit subtraction (`sub`).
#[inline(always)]
pub(crate) fn sub(a: i16, b: i16) -> i16 {
    a.saturating_sub(b)
}

/// Q15 multiplication, truncating (`mult`).
#[inline(always)]
pub(crate) fn mult(a: i16, b: i16) -> i16 {
    sat16((a as i32 * b as i32) >> 15)
}

/// 16×16 → 32 fractional multiplication (`L_mult`): `2·a·b`, saturated.
#[inline(always)]
pub(crate) fn l_mult(a: i16, b: i16) -> i32 {
    let p = a as i32 * b as i32;
    if p == 0x4000_0000 {
        i32::MAX
    } else {
        p << 1
    }
}

/// Multiply-accumulate (`L_mac`).
#[inline(always)]
pub(crate) fn l_mac(acc: i32, a: i16, b: i16) -> i32 {
    acc.saturating_add(l_mult(a, b))
}

/// Multiply-subtract (`L_msu`).
#[inline(always)]
pub(crate) fn l_msu(acc: i32, a: i16, b: i16) -> i32 {
    acc.saturating_sub(l_mult(a, b))
}

/// Saturating absolute value (`abs_s`).
#[inline(always)]
pub(crate) fn abs_s(a: i16) -> i16 {
    if a == i16::MIN {
        i16::MAX
    } else {
        a.abs()
    }
}

/// Saturating negation (`negate`).
#[inline(always)]
pub(crate) fn negate(a: i16) -> i16 {
    if a == i16::MIN {
        i16::MAX
    } else {
        -a
    }
}

/// Rounds a 32-bit value to its high half (`round`).
#[inline(always)]
pub(crate) fn round(l: i32) -> i16 {
    (l.saturating_add(0x8000) >> 16) as i16
}

/// Arithmetic shift right of a 16-bit value, negative counts shift left (`shr`).
#[inline(always)]
pub(crate) fn shr(a: i16, n: i16) -> i16 {
    if n < 0 {
        shl(a, n.saturating_neg())
    } else if n >= 15 {
        if a < 0 {
            -1
        } else {
            0
        }
    } else {
        a >> n
    }
}

/// Saturating shift left of a 16-bit value, negative counts shift right (`shl`).
#[inline(always)]
pub(crate) fn shl(a: i16, n: i16) -> i16 {
    if n < 0 {
        shr(a, n.saturating_neg())
    } else if n > 15 {
        if a == 0 {
            0
        } else if a > 0 {
            i16::MAX
        } else {
            i16::MIN
        }
    } else {
        sat16((a as i32) << n)
    }
}

/// Shift right with rounding (`shr_r`).
#[inline(always)]
pub(crate) fn shr_r(a: i16, n: i16) -> i16 {
    if n > 15 {
        0
    } else {
        let r = shr(a, n);
        if n > 0 && (a & (1 << (n - 1))) != 0 {
            r.saturating_add(1)
        } else {
            r
        }
    }
}

/// Saturating 32-bit shift left, negative counts shift right (`L_shl`).
#[inline(always)]
pub(crate) fn l_shl(l: i32, n: i16) -> i32 {
    if n <= 0 {
        l_shr(l, n.saturating_neg())
    } else if n >= 32 {
        if l == 0 {
            0
        } else if l > 0 {
            i32::MAX
        } else {
            i32::MIN
        }
    } else {
        sat32((l as i64) << n)
    }
}

/// `round(L_shl(L_mac(L_mult(x, fx), y, fy), shift))` over a block, `shift` 1 or 2: the
/// excitation mixing step. Written with 32-bit compares only so that it vectorises.
#[inline]
pub(crate) fn mix_block(out: &mut [i16], x: &[i16], fx: i16, y: &[i16], fy: i16, shift: i16) {
    #[inline(always)]
    fn run<const S: u32>(out: &mut [i16], x: &[i16], fx: i16, y: &[i16], fy: i16) {
        let hi = i32::MAX >> S;
        let lo = i32::MIN >> S;
        for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
            let l = l_mult(a, fx).saturating_add(l_mult(b, fy));
            let l = if l > hi {
                i32::MAX
            } else if l < lo {
                i32::MIN
            } else {
                l << S
            };
            *o = round(l);
        }
    }
    if shift == 2 {
        run::<2>(out, x, fx, y, fy);
    } else {
        run::<1>(out, x, fx, y, fy);
    }
}

/// `Σ L_mult(x, x)` accumulated with `L_mac` from zero: all terms are non-negative, so the
/// saturating running sum equals the exact sum saturated once. Squares are formed in 32 bits
/// and summed in 64 (a shape the compiler vectorises).
#[inline]
pub(crate) fn energy(x: &[i16]) -> i32 {
    let e: u64 = x.iter().map(|&v| (v as i32 * v as i32) as u32 as u64).sum();
    (2 * e).min(i32::MAX as u64) as i32
}

/// `energy_new` of the reference's gain control: Σx²·2 / 16, or, when that sum saturates,
/// Σ(x/4)²·2 (`energy_old`).
#[inline]
pub(crate) fn energy_scaled(x: &[i16]) -> i32 {
    let s = energy(x);
    if s != i32::MAX {
        s >> 4
    } else {
        let e: u64 = x
            .iter()
            .map(|&v| ((v >> 2) as i32 * (v >> 2) as i32) as u64)
            .sum();
        (2 * e).min(i32::MAX as u64) as i32
    }
}

/// Arithmetic 32-bit shift right, negative counts shift left (`L_shr`).
#[inline(always)]
pub(crate) fn l_shr(l: i32, n: i16) -> i32 {
    if n < 0 {
        l_shl(l, n.saturating_neg())
    } else if n >= 31 {
        if l < 0 {
            -1
        } else {
            0
        }
    } else {
        l >> n
    }
}

/// 32-bit shift right with rounding (`L_shr_r`).
#[inline(always)]
pub(crate) fn l_shr_r(l: i32, n: i16) -> i32 {
    if n > 31 {
        0
    } else {
        let r = l_shr(l, n);
        if n > 0 && (l & (1i32 << (n - 1))) != 0 {
            r.saturating_add(1)
        } else {
            r
        }
    }
}

/// Leading sign bits of a 16-bit value (`norm_s`); 0 for 0.
#[inline(always)]
pub(crate) fn norm_s(a: i16) -> i16 {
    if a == 0 {
        0
    } else if a == -1 {
        15
    } else {
        let v = if a < 0 { !a } else { a };
        (v.leading_zeros() as i16) - 1
    }
}

/// Leading sign bits of a 32-bit value (`norm_l`); 0 for 0.
#[inline(always)]
pub(crate) fn norm_l(l: i32) -> i16 {
    if l == 0 {
        0
    } else if l == -1 {
        31
    } else {
        let v = if l < 0 { !l } else { l };
        (v.leading_zeros() as i16) - 1
    }
}

/// Fractional division `a / b` in Q15 for `0 <= a <= b`, `b > 0` (`div_s`).
///
/// Out-of-contract arguments (which the reference aborts on) return 0, or `i16::MAX` when
/// `a >= b`, so that damaged input can never stop the decoder.
#[inline]
pub(crate) fn div_s(a: i16, b: i16) -> i16 {
    if a <= 0 || b <= 0 {
        return 0;
    }
    if a >= b {
        return i16::MAX;
    }
    // The reference's 15-step restoring division yields exactly floor(a·2^15 / b) for
    // 0 < a < b; one integer division computes the same quotient.
    (((a as i32) << 15) / b as i32) as i16
}

/// `L_Extract`: splits a 32-bit value into a high word and a 15-bit low word.
#[inline(always)]
pub(crate) fn l_extract(l: i32) -> (i16, i16) {
    let hi = (l >> 16) as i16;
    let lo = l_msu(l >> 1, hi, 16384) as i16;
    (hi, lo)
}

/// `Mpy_32_16`: (hi, lo) double-precision value times a 16-bit value.
#[inline(always)]
pub(crate) fn mpy_32_16(hi: i16, lo: i16, n: i16) -> i32 {
    l_mac(l_mult(hi, n), mult(lo, n), 1)
}

/// `Log2_norm`: log2 of an already normalised value, as (exponent, fraction).
#[inline]
pub(crate) fn log2_norm(l: i32, exp: i16) -> (i16, i16) {
    if l <= 0 {
        return (0, 0);
    }
    let exponent = 30 - exp;
    let x = l >> 9;
    let i = ((x >> 16) as i16 - 32) as usize & 31; // in 0..=31 for a normalised input
    let a = ((x >> 1) & 0x7fff) as i16;
    let t0 = LOG2_TAB[i];
    let t1 = LOG2_TAB[i + 1];
    let y = l_msu((t0 as i32) << 16, t0.wrapping_sub(t1), a);
    (exponent, (y >> 16) as i16)
}

/// `Log2`: log2 of a positive 32-bit value, as (exponent, fraction).
#[inline]
pub(crate) fn log2(l: i32) -> (i16, i16) {
    let e = norm_l(l);
    log2_norm(l_shl(l, e), e)
}

/// `Pow2`: 2^(exponent + fraction), fraction in Q15.
#[inline]
pub(crate) fn pow2(exponent: i16, fraction: i16) -> i32 {
    let x = l_mult(fraction, 32);
    let i = ((x >> 16) as usize) & 31;
    let a = ((x >> 1) & 0x7fff) as i16;
    let t0 = POW2_TAB[i];
    let t1 = POW2_TAB[i + 1];
    let y = l_msu((t0 as i32) << 16, t0.wrapping_sub(t1), a);
    l_shr_r(y, 30i16.saturating_sub(exponent))
}

/// `sqrt_l_exp`: square root of a positive value, returned with its (even) exponent.
#[inline]
pub(crate) fn sqrt_l_exp(l: i32) -> (i32, i16) {
    if l <= 0 {
        return (0, 0);
    }
    let e = norm_l(l) & !1;
    let x = l_shl(l, e) >> 9;
    let i = ((x >> 16) as i16 - 16) as usize & 63;
    let i = i.min(47);
    let a = ((x >> 1) & 0x7fff) as i16;
    let t0 = SQRT_TAB[i];
    let t1 = SQRT_TAB[i + 1];
    (l_msu((t0 as i32) << 16, t0.wrapping_sub(t1), a), e)
}

/// `Inv_sqrt`: 1/sqrt of a positive value (Q-format as in the reference).
#[inline]
pub(crate) fn inv_sqrt(l: i32) -> i32 {
    if l <= 0 {
        return 0x3fff_ffff;
    }
    let e = norm_l(l);
    let mut x = l_shl(l, e);
    let mut exp = 30 - e;
    if exp & 1 == 0 {
        x >>= 1;
    }
    exp = (exp >> 1) + 1;
    x >>= 9;
    let i = ((x >> 16) as i16 - 16) as usize & 63;
    let i = i.min(47);
    let a = ((x >> 1) & 0x7fff) as i16;
    let t0 = INV_SQRT_TAB[i];
    let t1 = INV_SQRT_TAB[i + 1];
    let y = l_msu((t0 as i32) << 16, t0.wrapping_sub(t1), a);
    l_shr(y, exp)
}

/// Median of an odd-length set (`gmed_n`), n ≤ 9.
#[inline]
pub(crate) fn median<const N: usize>(v: &[i16; N]) -> i16 {
    let mut s = *v;
    s.sort_unstable();
    s[N / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn div_s_matches_definition() {
        for &(a, b) in &[(1i16, 2i16), (100, 32767), (16383, 16384), (8192, 30000)] {
            let q = div_s(a, b);
            assert_eq!(q as i32, ((a as i32) << 15) / b as i32);
        }
    }

    #[test]
    fn norms() {
        assert_eq!(norm_s(1), 14);
        assert_eq!(norm_s(-1), 15);
        assert_eq!(norm_s(16384), 0);
        assert_eq!(norm_s(-16384), 1);
        assert_eq!(norm_s(-16385), 0);
        assert_eq!(norm_l(1), 30);
        assert_eq!(norm_l(0x4000_0000), 0);
        assert_eq!(norm_l(-0x4000_0000), 1);
    }
}
