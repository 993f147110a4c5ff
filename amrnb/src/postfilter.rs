//! Adaptive post-filter (`pstfilt.c`: formant filter, tilt compensation, gain control) and the
//! output high-pass filter with ×2 up-scaling (`post_pro.c`).

use crate::enhance::energy_gain;
use crate::filter::{residual, synthesis, synthesis_beside};
use crate::lag::L_SUBFR;
use crate::lsf::{M, MP1};
use crate::ops::{div_s, energy, l_mac, mult, round, sat32, sub};

const L_FRAME: usize = 160;
/// Length of the truncated impulse response used for the tilt estimate.
const L_H: usize = 22;
const MU: i16 = 26214;
const AGC_FAC: i16 = 29491;

const GAMMA3_MR122: [i16; M] = [22938, 16057, 11240, 7868, 5508, 3856, 2699, 1889, 1322, 925];
const GAMMA3: [i16; M] = [18022, 9912, 5451, 2998, 1649, 907, 499, 274, 151, 83];
const GAMMA4_MR122: [i16; M] = [
    24576, 18432, 13824, 10368, 7776, 5832, 4374, 3281, 2461, 1846,
];
const GAMMA4: [i16; M] = [22938, 16057, 11240, 7868, 5508, 3856, 2699, 1889, 1322, 925];

/// Post-filter state (`Post_FilterState`).
#[derive(Clone)]
pub(crate) struct PostFilter {
    mem_syn: [i16; M],
    /// Previous frame's last M input samples, then this frame's input.
    work: [i16; M + L_FRAME],
    preemph_mem: i16,
    past_gain: i16,
}

/// Bandwidth-expanded copy of an LP filter (`Weight_Ai`).
#[inline]
fn weight(a: &[i16; MP1], fac: &[i16; M]) -> [i16; MP1] {
    let mut w = [0i16; MP1];
    w[0] = a[0];
    for i in 1..=M {
        // round(L_mult(a, fac)): fac < 2^15, so no saturation.
        w[i] = ((a[i] as i32 * fac[i - 1] as i32 + 0x4000) >> 15) as i16;
    }
    w
}

impl PostFilter {
    pub(crate) fn new() -> Self {
        PostFilter {
            mem_syn: [0; M],
            work: [0; M + L_FRAME],
            preemph_mem: 0,
            past_gain: 4096,
        }
    }

    /// Filters one frame in place with the frame's four LP filters (`Post_Filter`), then with
    /// the output high-pass filter `hp` (`Post_Process`). The high-pass filtering of each
    /// subframe runs interleaved with the post-filter's synthesis of the next one.
    pub(crate) fn run(
        &mut self,
        mode: u8,
        syn: &mut [i16; L_FRAME],
        az: &[[i16; MP1]; 4],
        hp: &mut HighPass,
    ) {
        self.work[M..].copy_from_slice(syn);
        let (g3, g4) = if mode == 7 || mode == 6 {
            (&GAMMA3_MR122, &GAMMA4_MR122)
        } else {
            (&GAMMA3, &GAMMA4)
        };
        for (sf, a) in az.iter().enumerate() {
            let base = sf * L_SUBFR;
            let ap3 = weight(a, g3);
            let ap4 = weight(a, g4);
            let mut res = [0i16; L_SUBFR];
            residual(&ap3, &self.work[base..base + M + L_SUBFR], &mut res);

            // Tilt: first reflection coefficient of the truncated response of A(z/g3)/A(z/g4).
            let mut h_in = [0i16; L_H];
            h_in[..MP1].copy_from_slice(&ap3);
            let mut h = [0i16; L_H];
            synthesis(&ap4, &h_in, &mut h, &[0; M]);
            let e0 = energy(&h);
            // |Σ 2·h[i]·h[i+1]| ≤ Σ h², so while the energy stays below 2^30 no partial sum of
            // the reference's saturating accumulation can reach 2^31: a plain sum is exact.
            let e1 = if e0 < 1 << 30 {
                h.windows(2)
                    .map(|w| 2 * w[0] as i32 * w[1] as i32)
                    .sum::<i32>()
            } else {
                h.windows(2).fold(0i32, |acc, w| l_mac(acc, w[0], w[1]))
            };
            let t1 = (e0 >> 16) as i16;
            let mut t2 = (e1 >> 16) as i16;
            if t2 <= 0 {
                t2 = 0;
            } else {
                t2 = div_s(mult(t2, MU), t1);
            }

            // Tilt compensation (pre-emphasis) of the residual, in place, backwards.
            let last = res[L_SUBFR - 1];
            for i in (1..L_SUBFR).rev() {
                res[i] = sub(res[i], mult(t2, res[i - 1]));
            }
            res[0] = sub(res[0], mult(t2, self.preemph_mem));
            self.preemph_mem = last;

            let (done, rest) = syn.split_at_mut(base);
            let out = &mut rest[..L_SUBFR];
            if sf == 0 {
                synthesis(&ap4, &res, out, &self.mem_syn);
            } else {
                // The previous subframe is final: high-pass it alongside this synthesis.
                let prev = &mut done[base - L_SUBFR..];
                let input: [i16; L_SUBFR] = prev.try_into().unwrap_or([0; L_SUBFR]);
                let mut pass = hp.start();
                synthesis_beside(&ap4, &res, out, &self.mem_syn, |i| pass.step(i, input[i]));
                hp.commit(prev, &pass);
            }
            self.mem_syn.copy_from_slice(&out[L_SUBFR - M..]);

            self.gain_control(sf, out);
        }
        self.work.copy_within(L_FRAME.., 0);
        let last = &mut syn[L_FRAME - L_SUBFR..];
        let input: [i16; L_SUBFR] = (&*last).try_into().unwrap_or([0; L_SUBFR]);
        let mut pass = hp.start();
        for (i, &v) in input.iter().enumerate() {
            pass.step(i, v);
        }
        hp.commit(last, &pass);
    }

    /// Adaptive gain control of one subframe towards the unfiltered energy (`agc`).
    fn gain_control(&mut self, sf: usize, out: &mut [i16]) {
        let input = &self.work[M + sf * L_SUBFR..M + (sf + 1) * L_SUBFR];
        let Some(g0) = energy_gain(input, out) else {
            self.past_gain = 0;
            return;
        };
        let g0 = mult(g0, 32767 - AGC_FAC);
        // Both the carried gain and g0 are non-negative and 0.9·32767 + g0 < 2^15, so the
        // reference's saturating `mult`/`add` reduce to plain arithmetic here, and with a
        // non-negative gain `L_mult` cannot saturate: only the ×8 shift can.
        // The gain recursion g ← ⌊0.9·g⌋ + g0 is serial, but once it reaches its fixed point it
        // stays there: the gains are found first (stopping early at the fixed point), and the
        // scaling then runs as an independent, vectorisable pass.
        let mut gains = [0i32; L_SUBFR];
        let mut gain = self.past_gain.max(0) as i32;
        let g0 = g0.max(0) as i32;
        let mut i = 0;
        while i < L_SUBFR {
            let next = ((gain * AGC_FAC as i32) >> 15) + g0;
            gains[i] = next;
            i += 1;
            if next == gain {
                break;
            }
            gain = next;
        }
        let settled = gains[i - 1];
        gains[i..].fill(settled);
        for (v, &g) in out.iter_mut().zip(gains.iter()) {
            *v = (sat32((*v as i64 * g as i64) << 4) >> 16) as i16;
        }
        self.past_gain = settled as i16;
    }
}

const B: [i16; 3] = [7699, -15398, 7699];
const A1: i16 = 15836;
const A2: i16 = -7667;

/// Output high-pass filter (cut-off 60 Hz) with ×2 gain (`Post_Process`).
///
/// The reference keeps its two past outputs in double precision (`L_Extract` into a high word and
/// a 15-bit low word) and multiplies them with `Mpy_32_16`. For a value `l` that is exactly
/// `2·(((l >> 1)·n) >> 15)`, so the state is kept as the 32-bit value itself.
#[derive(Clone)]
pub(crate) struct HighPass {
    y1: i32,
    y2: i32,
    x0: i16,
    x1: i16,
}

/// `Mpy_32_16(L_Extract(l), n)`.
#[inline(always)]
fn mpy(l: i32, n: i16) -> i64 {
    2 * (((l >> 1) as i64 * n as i64) >> 15)
}

impl HighPass {
    pub(crate) fn new() -> Self {
        HighPass {
            y1: 0,
            y2: 0,
            x0: 0,
            x1: 0,
        }
    }

    /// Filters one frame in place.
    #[cfg(test)]
    pub(crate) fn run(&mut self, sig: &mut [i16; L_FRAME]) {
        for block in sig.chunks_exact_mut(L_SUBFR) {
            let input: &[i16; L_SUBFR] = &block.try_into().unwrap_or([0; L_SUBFR]);
            let mut pass = self.start();
            for (i, &v) in input.iter().enumerate() {
                pass.step(i, v);
            }
            self.commit(block, &pass);
        }
    }

    /// Starts a speculative pass over one 40-sample block (see [`HighPassBlock`]).
    pub(crate) fn start(&self) -> HighPassBlock {
        HighPassBlock {
            u1: (self.y1 >> 1) as i64,
            u2: (self.y2 >> 1) as i64,
            x0: self.x0,
            x1: self.x1,
            bad: false,
            acc: [0; L_SUBFR],
        }
    }

    /// Ends a pass over `block` (still holding the pass's input): writes the output and adopts
    /// the new state, or, if the pass could not be exact, filters the block the reference's way.
    pub(crate) fn commit(&mut self, block: &mut [i16], pass: &HighPassBlock) {
        if pass.bad {
            self.run_exact(block);
            return;
        }
        self.y1 = (2 * pass.u1) as i32;
        self.y2 = (2 * pass.u2) as i32;
        self.x0 = pass.x0;
        self.x1 = pass.x1;
        // round(L_shl(l, 1)): clamping l first is exact (see `filter::finish` for the argument).
        for (v, &l) in block.iter_mut().zip(pass.acc.iter()) {
            *v = ((l.clamp(-0x4000_0000, 0x3FFF_BFFF) << 1).wrapping_add(0x8000) >> 16) as i16;
        }
    }

    /// The reference's arithmetic, saturating at every step.
    fn run_exact(&mut self, sig: &mut [i16]) {
        // The first three accumulations cannot leave the 32-bit range (|y terms| ≤ 1.55·2^30,
        // |b0·x| ≤ 2^29 ⇒ < 2^31), so only the last two additions and the shifts need clamping.
        for v in sig.iter_mut() {
            let x2 = self.x1;
            self.x1 = self.x0;
            self.x0 = *v;
            let mut l = mpy(self.y1, A1) + mpy(self.y2, A2) + 2 * self.x0 as i64 * B[0] as i64;
            l = sat32(l + 2 * self.x1 as i64 * B[1] as i64) as i64;
            l = sat32(l + 2 * x2 as i64 * B[2] as i64) as i64;
            let l = sat32(l << 2);
            *v = round(sat32((l as i64) << 1));
            self.y2 = self.y1;
            self.y1 = l;
        }
    }
}

/// One speculative 40-sample pass of the high-pass filter, without the accumulator's
/// saturation (which needs an extreme signal): if any step would have saturated, `bad` is set and
/// [`HighPass::commit`] redoes the block exactly. Kept apart from the filter state so that the
/// pass can run interleaved with the post-filter's synthesis of the next subframe.
pub(crate) struct HighPassBlock {
    /// `l >> 1` of the last two outputs (the only form in which the recursion reads them; on
    /// this path every l is 4·sum with |sum| < 2^29, so this is exactly 2·sum).
    u1: i64,
    u2: i64,
    x0: i16,
    x1: i16,
    bad: bool,
    /// The 32-bit outputs `l` of the block.
    acc: [i32; L_SUBFR],
}

impl HighPassBlock {
    /// Sample `i` of the block, input `v`.
    #[inline(always)]
    pub(crate) fn step(&mut self, i: usize, v: i16) {
        let x2 = self.x1;
        self.x1 = self.x0;
        self.x0 = v;
        let sum = 2 * (((self.u1 * A1 as i64) >> 15) + ((self.u2 * A2 as i64) >> 15))
            + 2 * (self.x0 as i64 * B[0] as i64
                + self.x1 as i64 * B[1] as i64
                + x2 as i64 * B[2] as i64);
        // The reference saturates after adding b1·x1, after b2·x2, and in the ×4 shift; with
        // |sum| < 2^29 none of these can trigger (the partial sums differ by < 2^30).
        self.bad |= (sum + (1 << 29)) as u64 >= 1 << 30;
        self.acc[i] = (sum << 2) as i32;
        self.u2 = self.u1;
        self.u1 = 2 * sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsf::{lsf_to_lsp, lsp_to_az};

    #[test]
    fn high_pass_matches_the_oracle_including_saturation() {
        use codec_core::codecs::amr::nb::postfilter::PostProcessor;
        let mut r = 0x1234_5678u32;
        let mut theirs = PostProcessor::new();
        let mut ours = HighPass::new();
        let mut ctx = Default::default();
        let mut sig_t = [Default::default(); 160];
        PostProcessor::new().process(&mut ctx, &mut sig_t);
        for frame in 0..400 {
            let mut sig = [0i16; 160];
            for (i, v) in sig.iter_mut().enumerate() {
                r ^= r << 13;
                r ^= r >> 17;
                r ^= r << 5;
                *v = match frame % 4 {
                    // Full-scale square waves drive the filter into saturation.
                    0 => {
                        if (i / (1 + frame % 7)) % 2 == 0 {
                            32767
                        } else {
                            -32768
                        }
                    }
                    1 => (r as i16) >> 4,
                    _ => r as i16,
                };
            }
            for i in 0..160 {
                sig_t[i].0 = sig[i];
            }
            theirs.process(&mut ctx, &mut sig_t);
            ours.run(&mut sig);
            let t: Vec<i16> = sig_t.iter().map(|w| w.0).collect();
            assert_eq!(t, sig.to_vec(), "frame {frame}");
        }
    }

    #[test]
    fn post_filter_matches_the_oracle() {
        use codec_core::codecs::amr::nb::postfilter::{PostFilter as Theirs, PostProcessor};
        let mut r = 0x9e37_79b9u32;
        let mut rnd = |n: i32| {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            (r % (2 * n as u32 + 1)) as i32 - n
        };
        for mode in [4u8, 6, 7] {
            let mut theirs = Theirs::new();
            let mut hp = PostProcessor::new();
            let mut ours = PostFilter::new();
            let mut ours_hp = HighPass::new();
            let mut ctx = Default::default();
            let mut syn_t = [Default::default(); 160];
            let mut az_t = [Default::default(); 44];
            theirs.clone().process(&mut ctx, mode, &mut syn_t, &az_t);
            for frame in 0..50 {
                let mut az = [[0i16; MP1]; 4];
                for a in az.iter_mut() {
                    let mut lsf = [0i16; M];
                    for (i, f) in lsf.iter_mut().enumerate() {
                        *f = (1400 * (i as i32 + 1) + rnd(300)) as i16;
                    }
                    let mut lsp = [0i16; M];
                    lsf_to_lsp(&lsf, &mut lsp);
                    lsp_to_az(&lsp, a);
                }
                let amp = [30, 3000, 20000][frame % 3];
                let mut syn = [0i16; 160];
                for s in syn.iter_mut() {
                    *s = rnd(amp) as i16;
                }
                for i in 0..160 {
                    syn_t[i].0 = syn[i];
                }
                for i in 0..44 {
                    az_t[i].0 = az[i / 11][i % 11];
                }
                theirs.process(&mut ctx, mode, &mut syn_t, &az_t);
                hp.process(&mut ctx, &mut syn_t);
                ours.run(mode, &mut syn, &az, &mut ours_hp);
                let t: Vec<i16> = syn_t.iter().map(|w| w.0).collect();
                assert_eq!(
                    t,
                    syn.to_vec(),
                    "post filter + high pass, mode {mode} frame {frame}"
                );
            }
        }
    }
}
