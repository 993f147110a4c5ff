//! The adaptive codebook: fractional-lag prediction from the past excitation, its optional
//! low-pass smoothing, and the pitch-lag substitute for damaged or lost frames.

use crate::ops::{add, clamp16, l_mac, l_mult, mult, noise, round, sat16, sub};
use crate::tables::INTER4_2;

/// Longest pitch lag.
pub(crate) const PIT_MAX: usize = 231;
/// Half-length of the fractional interpolation filter, plus one.
pub(crate) const L_INTERPOL: usize = 17;
/// Taps per side of the quarter-sample interpolator.
const HALF_TAPS: usize = 16;

/// The interpolator split by phase: `PHASES[p][i]` is tap `i` of phase `p`.
const PHASES: [[i16; 2 * HALF_TAPS]; 4] = {
    let mut out = [[0i16; 2 * HALF_TAPS]; 4];
    let mut p = 0;
    while p < 4 {
        let mut i = 0;
        while i < 2 * HALF_TAPS {
            out[p][i] = INTER4_2[4 * i + p];
            i += 1;
        }
        p += 1;
    }
    out
};

/// Writes `len` samples of the adaptive codebook vector at `buf[pos..]`, interpolated from
/// the excitation `lag + frac/4` samples back (`Pred_lt4`). Requires
/// `pos ≥ lag + HALF_TAPS + 1` and `pos + len + HALF_TAPS ≤ buf.len()`; the caller's buffer
/// layout guarantees both for `lag ≤ PIT_MAX`.
pub(crate) fn predict(buf: &mut [i16], pos: usize, lag: usize, frac: i16, len: usize) {
    let mut start = pos - lag;
    let mut phase = -frac;
    if phase < 0 {
        phase += 4;
        start -= 1;
    }
    start -= HALF_TAPS - 1;
    let taps = &PHASES[(3 - phase) as usize & 3];
    // Output j reads buf[start + j ..][..32], which ends below pos + j − (lag − 16): for
    // lags of 81 and more no output depends on another, and the sums run tap by tap across
    // all 65 outputs (which vectorises); shorter lags go output by output.
    if lag >= len + HALF_TAPS && len == L_PRED {
        let mut acc = [0x2000i32; L_PRED];
        for (t, &c) in taps.iter().enumerate() {
            let c = i32::from(c);
            // Σ|taps| < 50 000 per phase, so the sums of 32 products stay below 2^31.
            for (a, &x) in acc.iter_mut().zip(&buf[start + t..start + t + L_PRED]) {
                *a += i32::from(x) * c;
            }
        }
        for (o, &a) in buf[pos..pos + L_PRED].iter_mut().zip(&acc) {
            *o = clamp16(a >> 14);
        }
    } else {
        for j in 0..len {
            let x: &[i16; 2 * HALF_TAPS] = buf[start + j..start + j + 2 * HALF_TAPS]
                .try_into()
                .unwrap_or(&[0; 2 * HALF_TAPS]);
            buf[pos + j] = sat16((dot32(x, taps) + 0x2000) >> 14);
        }
    }
}

/// `Σ x·y` over 32 taps. Σ|taps| < 50 000 per phase, so the sum stays below 2^31.
///
/// Kept out of line: alone it vectorises (`pmaddwd` on x86-64).
#[inline(never)]
fn dot32(x: &[i16; 2 * HALF_TAPS], y: &[i16; 2 * HALF_TAPS]) -> i32 {
    x.iter().zip(y).fold(0i32, |acc, (&a, &b)| {
        acc.wrapping_add(i32::from(a) * i32::from(b))
    })
}

/// Samples the decoder predicts per subframe (one more than the subframe: the LTP low-pass
/// reads ahead).
pub(crate) const L_PRED: usize = 65;

/// The 3-tap low-pass the encoder may select for the adaptive codebook vector, applied to
/// `buf[pos..pos + 64]` (reads one sample either side).
pub(crate) fn smooth(buf: &mut [i16], pos: usize) {
    let mut out = [0i16; 64];
    for (i, o) in out.iter_mut().enumerate() {
        let k = pos + i;
        *o = round(l_mac(
            l_mac(l_mult(buf[k - 1], 5898), buf[k], 20972),
            buf[k + 1],
            5898,
        ));
    }
    buf[pos..pos + 64].copy_from_slice(&out);
}

/// Pitch history used to substitute a lag in damaged and lost frames (TS 26.191).
#[derive(Clone)]
pub(crate) struct LagHistory {
    /// Last five good lags, newest first.
    lags: [i16; 5],
    /// Last five good pitch gains, oldest first.
    gains: [i16; 5],
    /// The newest good lag.
    last: i16,
    /// Jitter generator for the weighted guess.
    seed: i16,
}

impl LagHistory {
    pub(crate) fn new() -> Self {
        LagHistory {
            lags: [64; 5],
            gains: [0; 5],
            last: 64,
            seed: 21845,
        }
    }

    /// Records a good subframe's lag and pitch gain.
    pub(crate) fn push(&mut self, lag: i16, gain: i16) {
        self.lags = [lag, self.lags[0], self.lags[1], self.lags[2], self.lags[3]];
        self.gains = [
            self.gains[1],
            self.gains[2],
            self.gains[3],
            self.gains[4],
            gain,
        ];
        self.last = lag;
    }

    /// A lag for a bad subframe: `received` if plausible (damaged frames only), else one
    /// derived from the history.
    pub(crate) fn substitute(&mut self, received: i16, lost: bool) -> i16 {
        let newest = self.lags[0];
        let last_gain = self.gains[4];
        let prev_gain = self.gains[3];
        let min_lag = *self.lags.iter().min().unwrap_or(&64);
        let max_lag = *self.lags.iter().max().unwrap_or(&64);
        let min_gain = *self.gains.iter().min().unwrap_or(&0);
        let spread = sub(max_lag, min_lag);
        let steady = min_gain > 8192 && spread < 10;
        let voiced = last_gain > 8192 && prev_gain > 8192;
        let chosen = if lost {
            if steady {
                self.last
            } else if voiced {
                newest
            } else {
                self.guess()
            }
        } else {
            let t = received;
            let near = {
                let gap = sub(t, newest);
                gap > -10 && gap < 10
            };
            let inside = t > min_lag && t < max_lag;
            let mut sum = 0i16;
            for &l in &self.lags {
                sum = add(sum, l);
            }
            let mean = mult(sum, 6554);
            let plausible = (spread < 10 && t > sub(min_lag, 5) && sub(t, max_lag) < 5)
                || (voiced && near)
                || (min_gain < 6554 && last_gain == min_gain && inside)
                || (spread < 70 && inside)
                || (t > mean && t < max_lag);
            if plausible {
                return t;
            }
            if steady || voiced {
                newest
            } else {
                self.guess()
            }
        };
        chosen.clamp(min_lag, max_lag.max(min_lag))
    }

    /// Mean of the three largest lags plus a random jitter.
    fn guess(&mut self) -> i16 {
        let mut s = self.lags;
        s.sort_unstable();
        let gap = sub(s[4], s[2]).min(40);
        let jitter = mult(gap >> 1, noise(&mut self.seed));
        add(mult(add(add(s[2], s[3]), s[4]), 10923), jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorised long-lag path equals the output-by-output interpolation.
    #[test]
    fn both_prediction_paths_agree() {
        let mut seed = 31337u32;
        for trial in 0..2000u32 {
            let mut buf = [0i16; PIT_MAX + L_INTERPOL + 4 * 64 + 1];
            for v in buf.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *v = ((seed >> 16) as u16 as i16) >> (trial % 3);
            }
            let pos = PIT_MAX + L_INTERPOL + 64 * (trial as usize % 4);
            let lag = 34 + (trial as usize * 7) % (PIT_MAX - 33);
            let frac = (trial % 4) as i16;
            let mut fast = buf;
            predict(&mut fast, pos, lag, frac, L_PRED);
            // Output by output (the reference's order).
            let mut want = buf;
            let mut start = pos - lag;
            let mut phase = -frac;
            if phase < 0 {
                phase += 4;
                start -= 1;
            }
            start -= HALF_TAPS - 1;
            for j in 0..L_PRED {
                let mut sum = 0i64;
                for i in 0..2 * HALF_TAPS {
                    sum += 2
                        * i64::from(want[start + j + i])
                        * i64::from(INTER4_2[4 * i + (3 - phase) as usize]);
                }
                want[pos + j] = ((sum * 2 + 0x8000) >> 16).clamp(-32768, 32767) as i16;
            }
            assert_eq!(&fast[..], &want[..], "trial {trial}, lag {lag}");
        }
    }
}
