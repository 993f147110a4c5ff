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

/// Subframes of pitch history kept for concealment.
const LAG_MEMORY: usize = 5;
/// A pitch gain above this (0.5, Q14) counts as strongly voiced.
const VOICED_GAIN: i16 = 8192;
/// A smallest pitch gain below this (0.4, Q14) marks a weak history.
const WEAK_GAIN: i16 = 6554;

/// Pitch history used to substitute a lag in damaged and lost frames (`lagconc`,
/// TS 26.191 §6.2.1). Both rings hold the last good subframes, newest at index 0.
#[derive(Clone)]
pub(crate) struct LagHistory {
    lag_ring: [i16; LAG_MEMORY],
    gain_ring: [i16; LAG_MEMORY],
    /// State of the generator that jitters a reconstructed lag.
    jitter_seed: i16,
}

/// What the history says about the recent pitch.
struct LagProfile {
    lowest: i16,
    highest: i16,
    /// `highest − lowest`.
    range: i16,
    /// The smallest of the remembered pitch gains.
    weakest_gain: i16,
    /// Both of the last two pitch gains exceed [`VOICED_GAIN`].
    strongly_voiced: bool,
}

impl LagHistory {
    pub(crate) fn new() -> Self {
        LagHistory {
            lag_ring: [64; LAG_MEMORY],
            gain_ring: [0; LAG_MEMORY],
            jitter_seed: 21845,
        }
    }

    /// Records a good subframe's lag and pitch gain.
    pub(crate) fn push(&mut self, lag: i16, gain: i16) {
        self.lag_ring.copy_within(..LAG_MEMORY - 1, 1);
        self.lag_ring[0] = lag;
        self.gain_ring.copy_within(..LAG_MEMORY - 1, 1);
        self.gain_ring[0] = gain;
    }

    fn profile(&self) -> LagProfile {
        let lowest = self.lag_ring.iter().copied().min().unwrap_or(64);
        let highest = self.lag_ring.iter().copied().max().unwrap_or(64);
        LagProfile {
            lowest,
            highest,
            range: sub(highest, lowest),
            weakest_gain: self.gain_ring.iter().copied().min().unwrap_or(0),
            strongly_voiced: self.gain_ring[0] > VOICED_GAIN && self.gain_ring[1] > VOICED_GAIN,
        }
    }

    /// A lag for a bad subframe. A damaged frame's `received` lag is kept when the history
    /// makes it believable; otherwise (and always for a lost frame) the lag is rebuilt from
    /// the history and limited to the remembered range.
    pub(crate) fn substitute(&mut self, received: i16, lost: bool) -> i16 {
        let h = self.profile();
        if !lost && self.believable(received, &h) {
            return received;
        }
        let stationary = h.weakest_gain > VOICED_GAIN && h.range < 10;
        let rebuilt = if stationary || h.strongly_voiced {
            // For a lost frame the reference repeats its "previous lag" when stationary;
            // that is the newest good lag here as well.
            self.lag_ring[0]
        } else {
            self.reconstruct()
        };
        rebuilt.min(h.highest).max(h.lowest)
    }

    /// The reference's five acceptance tests for a damaged frame's lag, in its order.
    fn believable(&self, lag: i16, h: &LagProfile) -> bool {
        let strictly_inside = lag > h.lowest && lag < h.highest;
        // A narrow history, and the lag within 5 of it.
        if h.range < 10 && lag > sub(h.lowest, 5) && sub(lag, h.highest) < 5 {
            return true;
        }
        // Voiced, and the lag within 10 of the newest one.
        let from_newest = sub(lag, self.lag_ring[0]);
        if h.strongly_voiced && from_newest > -10 && from_newest < 10 {
            return true;
        }
        // The newest gain is the weakest and low: a new pitch may be starting.
        if h.weakest_gain < WEAK_GAIN && self.gain_ring[0] == h.weakest_gain && strictly_inside {
            return true;
        }
        if h.range < 70 && strictly_inside {
            return true;
        }
        // Above the mean (saturating sum times 1/5) but below the largest.
        let total = self.lag_ring.iter().fold(0i16, |s, &l| add(s, l));
        let average = mult(total, 6554);
        lag > average && lag < h.highest
    }

    /// The mean of the three largest remembered lags, moved by a random amount of up to
    /// half their spread (the spread capped at 40).
    fn reconstruct(&mut self) -> i16 {
        let mut ordered = self.lag_ring;
        ordered.sort_unstable();
        let [_, _, third, second, largest] = ordered;
        let spread = sub(largest, third).min(40);
        let offset = mult(spread >> 1, noise(&mut self.jitter_seed));
        add(mult(add(add(third, second), largest), 10923), offset)
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
