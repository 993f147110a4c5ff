//! Pitch lag decoding (`dec_lag3.c`, `dec_lag6.c`) and the adaptive codebook: the fractional
//! interpolation of the past excitation (`pred_lt.c`).

use crate::ops::{add, mult};
use crate::tables::INTER_6;

/// Shortest lag at 12.2 kbit/s.
pub(crate) const PIT_MIN_MR122: i16 = 18;
/// Shortest lag at the other rates.
pub(crate) const PIT_MIN: i16 = 20;
/// Longest lag.
pub(crate) const PIT_MAX: i16 = 143;
/// Subframe length.
pub(crate) const L_SUBFR: usize = 40;
/// Past excitation kept for the adaptive codebook: the longest lag plus the interpolation reach
/// (`PIT_MAX + L_INTERPOL`).
pub(crate) const HIST: usize = 154;

/// A decoded lag: integer part and fraction (in thirds or sixths).
#[derive(Clone, Copy)]
pub(crate) struct Lag {
    pub(crate) int: i16,
    pub(crate) frac: i16,
}

/// Lag of a 1/3-resolution mode (`Dec_lag3`). `absolute` for subframes 1 and 3 (and all four at
/// 4.75/5.15 except where delta-coded); `four_bit` selects the 4-bit delta code.
pub(crate) fn decode_lag3(
    index: i16,
    t0_min: i16,
    t0_max: i16,
    absolute: bool,
    prev: i16,
    four_bit: bool,
) -> Lag {
    if absolute {
        if index < 197 {
            let int = add(mult(add(index, 2), 10923), 19);
            Lag {
                int,
                frac: index.wrapping_sub(3 * int).wrapping_add(58),
            }
        } else {
            Lag {
                int: index - 112,
                frac: 0,
            }
        }
    } else if !four_bit {
        let i = mult(add(index, 2), 10923) - 1;
        Lag {
            int: i + t0_min,
            frac: index - 2 - 3 * i,
        }
    } else {
        let mut centre = prev;
        if centre - t0_min > 5 {
            centre = t0_min + 5;
        }
        if t0_max - centre > 4 {
            centre = t0_max - 4;
        }
        if index < 4 {
            Lag {
                int: centre - 5 + index,
                frac: 0,
            }
        } else if index < 12 {
            let i = mult(index - 5, 10923) - 1;
            Lag {
                int: i + centre,
                frac: index - 9 - 3 * i,
            }
        } else {
            Lag {
                int: index - 12 + centre + 1,
                frac: 0,
            }
        }
    }
}

/// Lag of the 1/6-resolution 12.2 kbit/s mode (`Dec_lag6`); `prev` is the previous subframe's lag.
pub(crate) fn decode_lag6(index: i16, absolute: bool, prev: i16) -> Lag {
    if absolute {
        if index < 463 {
            let int = mult(index + 5, 5462) + 17;
            Lag {
                int,
                frac: index - 6 * int + 105,
            }
        } else {
            Lag {
                int: index - 368,
                frac: 0,
            }
        }
    } else {
        // Search window of the delta code: 10 lags around the previous one, kept inside
        // [PIT_MIN_MR122, PIT_MAX].
        let t0_min = (prev - 5).clamp(PIT_MIN_MR122, PIT_MAX - 9);
        let i = mult(index + 5, 5462) - 1;
        Lag {
            int: i + t0_min,
            frac: index - 3 - 6 * i,
        }
    }
}

/// Window of a block of outputs: up to 40 outputs, each reading 24 samples.
const WIN: usize = L_SUBFR + 23;

/// Sum of |coefficients| per interpolation phase: bounds the accumulator (see `predict`).
const fn phase_weights() -> [i32; 6] {
    let mut w = [0i32; 6];
    let mut f = 0;
    while f < 6 {
        let mut s = 0;
        let mut k = 0;
        while k < 10 {
            s += (INTER_6[f + 6 * k] as i32).abs() + (INTER_6[6 - f + 6 * k] as i32).abs();
            k += 1;
        }
        w[f] = s;
        f += 1;
    }
    w
}

const PHASE_WEIGHT: [i32; 6] = phase_weights();

/// Adaptive codebook vector (`Pred_lt_3or6`): writes `exc[HIST..HIST+40]` from the past
/// excitation `exc[..HIST]` delayed by `lag`. `thirds` is true for 1/3-resolution fractions.
pub(crate) fn predict(exc: &mut [i16; HIST + L_SUBFR], lag: Lag, thirds: bool) {
    let mut frac = -lag.frac;
    if thirds {
        frac <<= 1;
    }
    // The integer lag is within [17, 144] for every decodable index; clamp so that damaged input
    // can never read outside the history (10 is the shortest lag the filter can reach back over).
    let mut t0 = (lag.int as i32).clamp(10, PIT_MAX as i32 + 1) as usize;
    let frac = if frac < 0 {
        t0 += 1;
        (frac + 6).clamp(0, 5) as usize
    } else {
        (frac as usize).min(5)
    };
    // One 20-tap filter over exc[-T0+j-9 ..= -T0+j+10]: the left side's taps reversed, then the
    // right side's, so each output is a single contiguous dot product.
    let mut taps = [0i16; 24];
    for k in 0..10 {
        taps[9 - k] = INTER_6[frac + 6 * k];
        taps[10 + k] = INTER_6[6 - frac + 6 * k];
    }
    // Each output is round(Σ 2·x·c) with a saturating accumulator. When every input sample is
    // below `limit` in magnitude no partial sum can leave the 32-bit range, so plain arithmetic
    // gives the same result; outputs feed later inputs when the lag is short, so the bound is
    // tracked as samples are produced.
    let limit = (i32::MAX / 2 - 0x8000) / PHASE_WEIGHT[frac];
    let start = HIST - t0; // index of x0 = exc[-T0] (already moved back for a folded phase)
    let mut peak = exc[start - 9..HIST]
        .iter()
        .fold(0i32, |m, &v| m.max((v as i32).abs()));
    // Output j reads samples up to exc[-T0 + j + 10], so the outputs of a block of (t0 - 10)
    // consecutive samples depend only on samples before the block: each block is computed at
    // once (tap-major, which vectorises), while the magnitude bound still holds.
    let mut first = 0;
    let span = t0 - 10;
    while first < L_SUBFR && peak < limit && span > 0 {
        let end = (first + span).min(L_SUBFR);
        // The block's inputs, zero-padded so that every output reads a full 24-sample window
        // (20 taps and 4 zero taps: three 8-lane multiply-adds per output).
        let base = start + first - 9;
        let avail = (HIST + L_SUBFR - base).min(WIN);
        let mut win = [0i16; WIN];
        win[..avail].copy_from_slice(&exc[base..base + avail]);
        for j in 0..end - first {
            let w: &[i16; 24] = win[j..j + 24].try_into().unwrap_or(&[0; 24]);
            let s: i32 = w
                .iter()
                .zip(&taps)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
            // round(2·s) without saturation risk: |2·s| < 2^31 here.
            let out = ((2 * s + 0x8000) >> 16) as i16;
            exc[HIST + first + j] = out;
            peak = peak.max((out as i32).abs());
        }
        first = end;
    }
    for j in first..L_SUBFR {
        let x1 = start + j; // exc[-T0 + j]
        let w: &[i16; 20] = exc[x1 - 9..x1 + 11].try_into().unwrap_or(&[0; 20]);
        // Past the magnitude bound: the reference's order, alternately left tap k and right tap k.
        let mut s: i32 = 0;
        for k in 0..10 {
            s = crate::ops::l_mac(s, w[9 - k], taps[9 - k]);
            s = crate::ops::l_mac(s, w[10 + k], taps[10 + k]);
        }
        let out = crate::ops::round(s);
        exc[HIST + j] = out;
        peak = peak.max((out as i32).abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec_core::codecs::amr::nb::lag as theirs;

    #[test]
    fn adaptive_codebook_matches_the_oracle() {
        let mut r = 0x2545_f491u32;
        let mut rnd = |n: u32| {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            r % n
        };
        let mut ctx = Default::default();
        for k in 0..20000 {
            let six = k % 2 == 0;
            let res = theirs::LagResolution::for_mode(if six { 7 } else { 4 });
            let mut ex = theirs::Excitation::new();
            let amp = [100u32, 3000, 20000, 32767][rnd(4) as usize];
            let mut ours = [0i16; HIST + L_SUBFR];
            for (i, s) in ex.all_mut().iter_mut().enumerate() {
                let v = (rnd(2 * amp + 1) as i32 - amp as i32) as i16;
                s.0 = v;
                ours[i] = v;
            }
            let mut w = ex.all()[0];
            let index = rnd(if six { 463 } else { 197 }) as i16;
            w.0 = index;
            let lag = theirs::absolute_lag(&mut ctx, w, res);
            ex.predict(&mut ctx, lag);
            let l = if six {
                decode_lag6(index, true, 0)
            } else {
                decode_lag3(index, 0, 0, true, 0, false)
            };
            predict(&mut ours, l, !six);
            let t: Vec<i16> = ex.subframe().iter().map(|w| w.0).collect();
            assert_eq!(
                t,
                ours[HIST..].to_vec(),
                "iteration {k} index {index} six {six}"
            );
        }
    }
}
