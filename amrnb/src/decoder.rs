//! The frame decoder (TS 26.090 §6, `dec_amr.c` + `sp_dec.c`): dispatch between speech and
//! comfort noise, the per-subframe excitation and synthesis, bad-frame handling (TS 26.091), and
//! the post-processing chain.

use crate::bits::{MAX_PARAMS, WIDTHS};
use crate::codebook::{
    eight_pulses_31, four_pulses_17, sharpen, ten_pulses_35, three_pulses_14, two_pulses_11,
    two_pulses_9, Code,
};
use crate::dtx::{Dtx, DtxState, Rx};
use crate::enhance::{control_energy, match_energy, NoiseDetector, PhaseDispersion};
use crate::filter::synthesis;
use crate::gain::{
    decode_code_gain, decode_joint, decode_pitch_gain, CodeConceal, Conditions, GainSmoother,
    PitchConceal, Predictor,
};
use crate::lag::{decode_lag3, decode_lag6, predict, Lag, HIST, L_SUBFR, PIT_MAX, PIT_MIN};
use crate::lsf::{
    average_update, interpolate_1and3, interpolate_1to3, interpolate_lsf, lsf_to_lsp, LsfState,
    Split3, LSP_INIT, M, MP1,
};
use crate::ops::{add, energy, l_mult, l_shr, mix_block, mult, round, shl, sqrt_l_exp};
use crate::postfilter::{HighPass, PostFilter};
use crate::tables::{MEAN_LSF_5, WINDOW_200_40};

/// Samples per frame.
pub(crate) const L_FRAME: usize = 160;
/// Upper limit of the pitch-sharpening factor, Q14.
const SHARPMAX: i16 = 13017;
/// Initial value of the lost-frame parameter generator.
const NODATA_SEED: i16 = 21845;

/// Complete decoder state (`Speech_Decode_FrameState`).
#[derive(Clone)]
pub(crate) struct Core {
    lsf: LsfState,
    /// Past excitation (`HIST` samples) followed by the current subframe.
    exc: [i16; HIST + L_SUBFR],
    pred: Predictor,
    pitch_conceal: PitchConceal,
    code_conceal: CodeConceal,
    smoother: GainSmoother,
    dispersion: PhaseDispersion,
    noise: NoiseDetector,
    lsf_mean: [i16; M],
    post: PostFilter,
    high_pass: HighPass,
    dtx: Dtx,
    lsp_old: [i16; M],
    mem_syn: [i16; M],
    sharp: i16,
    old_t0: i16,
    lag_received: i16,
    /// Consecutive-erasure state, 0..=6.
    erasures: i16,
    prev_bad: bool,
    exc_energy_hist: [i16; 9],
    ltp_gain_hist: [i16; 9],
    background: bool,
    voiced_hangover: i16,
    nodata_seed: i16,
}

impl Core {
    pub(crate) fn new() -> Self {
        Core {
            lsf: LsfState::new(),
            exc: [0; HIST + L_SUBFR],
            pred: Predictor::new(),
            pitch_conceal: PitchConceal::new(),
            code_conceal: CodeConceal::new(),
            smoother: GainSmoother::new(),
            dispersion: PhaseDispersion::new(),
            noise: NoiseDetector::new(),
            lsf_mean: MEAN_LSF_5,
            post: PostFilter::new(),
            high_pass: HighPass::new(),
            dtx: Dtx::new(),
            lsp_old: LSP_INIT,
            mem_syn: [0; M],
            sharp: 0,
            old_t0: 40,
            lag_received: 40,
            erasures: 0,
            prev_bad: false,
            exc_energy_hist: [0; 9],
            ltp_gain_hist: [0; 9],
            background: false,
            voiced_hangover: 0,
            nodata_seed: NODATA_SEED,
        }
    }

    /// The partial reset that precedes every comfort-noise frame (`Decoder_amr_reset(MRDTX)`):
    /// the synthesis memory, LSP history, excitation energy history, LSF average, gain predictor
    /// and DTX state survive; everything else returns to its home value.
    fn reset_for_dtx(&mut self) {
        self.exc = [0; HIST + L_SUBFR];
        self.sharp = 0;
        self.old_t0 = 40;
        self.prev_bad = false;
        self.erasures = 0;
        self.lag_received = 40;
        self.background = false;
        self.voiced_hangover = 0;
        self.ltp_gain_hist = [0; 9];
        self.smoother = GainSmoother::new();
        self.lsf = LsfState::new();
        self.pitch_conceal = PitchConceal::new();
        self.code_conceal = CodeConceal::new();
        self.noise = NoiseDetector::new();
        self.nodata_seed = NODATA_SEED;
        self.dispersion = PhaseDispersion::new();
    }

    /// Decodes one frame of type `rx` in speech mode `mode` (0–7) from `params`.
    pub(crate) fn frame(
        &mut self,
        rx: Rx,
        mode: u8,
        params: &mut [i16; MAX_PARAMS],
        out: &mut [i16; L_FRAME],
    ) {
        let mode = mode.min(7);
        let mut az = [[0i16; MP1]; 4];
        let new_state = self.dtx.receive(rx);
        if new_state != DtxState::Speech {
            self.reset_for_dtx();
            self.dtx.comfort_noise(
                new_state,
                mode as usize,
                &params[..],
                &mut self.mem_syn,
                &mut self.lsf,
                &mut self.pred,
                &mut self.smoother,
                out,
                &mut az,
            );
            lsf_to_lsp(&self.lsf.past_lsf_q, &mut self.lsp_old);
            average_update(&mut self.lsf_mean, &self.lsf.past_lsf_q);
        } else {
            let bad = matches!(rx, Rx::SpeechBad | Rx::NoData);
            if rx == Rx::NoData {
                self.random_params(mode, params);
            }
            self.speech(mode, bad, params, out, &mut az);
        }
        self.dtx.global = new_state;
        self.post.run(mode, out, &az, &mut self.high_pass);
        for v in out.iter_mut() {
            *v &= !7; // 13-bit output
        }
    }

    /// Parameters for a frame that never arrived (`build_CN_param`): the codebooks read them,
    /// the concealment ignores the rest.
    fn random_params(&mut self, mode: u8, params: &mut [i16; MAX_PARAMS]) {
        self.nodata_seed = (self.nodata_seed as i32 * 31821 + 13849) as i16;
        let start = (self.nodata_seed & 0x7f) as usize;
        let widths = WIDTHS[mode as usize];
        for (i, (&w, p)) in widths.iter().zip(params.iter_mut()).enumerate() {
            *p = WINDOW_200_40[start + i] & !((-1i32 << w) as i16);
        }
    }

    /// The speech decoder proper (`Decoder_amr`, speech branch).
    fn speech(
        &mut self,
        mode: u8,
        bad: bool,
        p: &[i16; MAX_PARAMS],
        synth: &mut [i16; L_FRAME],
        az: &mut [[i16; MP1]; 4],
    ) {
        if bad {
            self.erasures += 1;
        } else if self.erasures == 6 {
            self.erasures = 5;
        } else {
            self.erasures = 0;
        }
        if self.erasures > 6 {
            self.erasures = 6;
        }
        match self.dtx.global {
            DtxState::Dtx => {
                self.erasures = 5;
                self.prev_bad = false;
            }
            DtxState::DtxMute => {
                self.erasures = 5;
                self.prev_bad = true;
            }
            DtxState::Speech => {}
        }
        let state = self.erasures as usize;
        let prev_lsf = self.lsf.past_lsf_q;

        // Spectrum.
        let mut lsp_new = [0i16; M];
        let mut cursor;
        if mode != 7 {
            let kind = match mode {
                0 | 1 => Split3::Low,
                5 => Split3::Mr795,
                _ => Split3::Normal,
            };
            self.lsf.decode3(kind, bad, &p[0..3], &mut lsp_new);
            interpolate_1to3(&self.lsp_old, &lsp_new, az);
            cursor = 3;
        } else {
            let mut lsp_mid = [0i16; M];
            self.lsf.decode5(bad, &p[0..5], &mut lsp_mid, &mut lsp_new);
            interpolate_1and3(&self.lsp_old, &lsp_mid, &lsp_new, az);
            cursor = 5;
        }
        self.lsp_old = lsp_new;

        let cond = Conditions {
            bad,
            prev_bad: self.prev_bad,
            background: self.background,
            voiced_hangover: self.voiced_hangover,
        };
        let low_rate = mode <= 2;
        let mut index_mr475 = 0i16;
        let next = |c: &mut usize| {
            let v = p[(*c).min(MAX_PARAMS - 1)];
            *c += 1;
            v
        };

        for sf in 0..4 {
            let even = sf % 2 == 0;
            let absolute = sf == 0 || (sf == 2 && mode > 1);
            let index = next(&mut cursor);

            // Adaptive codebook.
            let lag = if mode != 7 {
                let (below, range) = if mode == 5 { (10, 19) } else { (5, 9) };
                let mut t0_min = (self.old_t0 - below).max(PIT_MIN);
                let mut t0_max = t0_min + range;
                if t0_max > PIT_MAX {
                    t0_max = PIT_MAX;
                    t0_min = t0_max - range;
                }
                let mut lag = decode_lag3(index, t0_min, t0_max, absolute, self.old_t0, mode <= 3);
                self.lag_received = lag.int;
                if bad {
                    if self.old_t0 < PIT_MAX {
                        self.old_t0 += 1;
                    }
                    lag = Lag {
                        int: self.old_t0,
                        frac: 0,
                    };
                    if self.background && self.voiced_hangover > 4 && low_rate {
                        lag.int = self.lag_received;
                    }
                }
                predict(&mut self.exc, lag, true);
                lag
            } else {
                let mut lag = decode_lag6(index, absolute, self.old_t0);
                if bad || (!absolute && index >= 61) {
                    self.lag_received = lag.int;
                    lag = Lag {
                        int: self.old_t0,
                        frac: 0,
                    };
                }
                predict(&mut self.exc, lag, false);
                lag
            };

            // Algebraic codebook (12.2 reads its pitch gain first).
            let mut code: Code = [0; L_SUBFR];
            let mut gain_pit = 0i16;
            let sharp_factor = match mode {
                0 | 1 => {
                    let pos = next(&mut cursor);
                    let sign = next(&mut cursor);
                    two_pulses_9(sf, sign, pos, &mut code);
                    shl(self.sharp, 1)
                }
                2 => {
                    let pos = next(&mut cursor);
                    let sign = next(&mut cursor);
                    two_pulses_11(sign, pos, &mut code);
                    shl(self.sharp, 1)
                }
                3 => {
                    let pos = next(&mut cursor);
                    let sign = next(&mut cursor);
                    three_pulses_14(sign, pos, &mut code);
                    shl(self.sharp, 1)
                }
                4 | 5 => {
                    let pos = next(&mut cursor);
                    let sign = next(&mut cursor);
                    four_pulses_17(sign, pos, &mut code);
                    shl(self.sharp, 1)
                }
                6 => {
                    let c = cursor.min(MAX_PARAMS - 7);
                    eight_pulses_31(&p[c..c + 7], &mut code);
                    cursor += 7;
                    shl(self.sharp, 1)
                }
                _ => {
                    let gi = next(&mut cursor);
                    let g = if bad {
                        self.pitch_conceal.conceal(state)
                    } else {
                        decode_pitch_gain(7, gi)
                    };
                    gain_pit = self.pitch_conceal.update(bad, self.prev_bad, g);
                    let c = cursor.min(MAX_PARAMS - 10);
                    ten_pulses_35(&p[c..c + 10], &mut code);
                    cursor += 10;
                    shl(gain_pit, 1)
                }
            };
            sharpen(&mut code, lag.int, sharp_factor);

            // Gains.
            let gain_code;
            let mut pit_sharp;
            match mode {
                0..=4 | 6 => {
                    let gi = if mode == 0 {
                        if even {
                            index_mr475 = next(&mut cursor);
                        }
                        index_mr475
                    } else {
                        next(&mut cursor)
                    };
                    let (gp, gc) = if bad {
                        let gp = self.pitch_conceal.conceal(state);
                        (gp, self.code_conceal.conceal(&mut self.pred, state))
                    } else {
                        decode_joint(&mut self.pred, mode, gi, &code, even)
                    };
                    gain_pit = self.pitch_conceal.update(bad, self.prev_bad, gp);
                    gain_code = self.code_conceal.update(bad, self.prev_bad, gc);
                    pit_sharp = gain_pit.min(SHARPMAX);
                    if mode == 6 && self.old_t0 > (L_SUBFR as i16 + 5) {
                        pit_sharp >>= 2;
                    }
                }
                5 => {
                    let gi = next(&mut cursor);
                    let gp = if bad {
                        self.pitch_conceal.conceal(state)
                    } else {
                        decode_pitch_gain(5, gi)
                    };
                    gain_pit = self.pitch_conceal.update(bad, self.prev_bad, gp);
                    let ci = next(&mut cursor);
                    let gc = if bad {
                        self.code_conceal.conceal(&mut self.pred, state)
                    } else {
                        decode_code_gain(&mut self.pred, 5, ci, &code)
                    };
                    gain_code = self.code_conceal.update(bad, self.prev_bad, gc);
                    pit_sharp = gain_pit.min(SHARPMAX);
                }
                _ => {
                    let ci = next(&mut cursor);
                    let gc = if bad {
                        self.code_conceal.conceal(&mut self.pred, state)
                    } else {
                        decode_code_gain(&mut self.pred, 7, ci, &code)
                    };
                    gain_code = self.code_conceal.update(bad, self.prev_bad, gc);
                    pit_sharp = gain_pit;
                }
            }
            if mode != 0 || !even {
                self.sharp = gain_pit.min(SHARPMAX);
            }
            let pit_sharp = shl(pit_sharp, 1);

            // Pitch-emphasised copy of the adaptive vector, used when the gain is high.
            let emphasised = pit_sharp > 16384;
            let mut excp = [0i16; L_SUBFR];
            if emphasised {
                for (o, &e) in excp.iter_mut().zip(&self.exc[HIST..]) {
                    let mut l = l_mult(mult(e, pit_sharp), gain_pit);
                    if mode == 7 {
                        l >>= 1;
                    }
                    *o = round(l);
                }
            }

            if !bad {
                self.ltp_gain_hist.copy_within(1.., 0);
                self.ltp_gain_hist[8] = gain_pit;
            }
            if (self.prev_bad || bad) && self.background && low_rate {
                if gain_pit > 12288 {
                    gain_pit = ((gain_pit - 12288) >> 1) + 12288;
                }
                if gain_pit > 14745 {
                    gain_pit = 14745;
                }
            }

            // Smoothed code gain for the enhanced excitation.
            let mut lsf_i = [0i16; M];
            interpolate_lsf(&prev_lsf, &self.lsf.past_lsf_q, sf, &mut lsf_i);
            let mut gain_mix = self
                .smoother
                .smooth(mode, gain_code, &lsf_i, &self.lsf_mean, cond);
            if mode > 3 && mode != 6 {
                gain_mix = gain_code;
            }
            let (pitch_fac, shift) = if mode <= 6 {
                (gain_pit, 1)
            } else {
                (gain_pit >> 1, 2)
            };

            // Total excitation into the history; the enhanced copy goes to synthesis.
            let mut enhanced = [0i16; L_SUBFR];
            enhanced.copy_from_slice(&self.exc[HIST..]);
            mix_block(
                &mut self.exc[HIST..],
                &enhanced,
                pitch_fac,
                &code,
                gain_code,
                shift,
            );
            self.dispersion.lock_full =
                low_rate && self.voiced_hangover > 3 && self.background && bad;
            self.dispersion.apply(
                mode,
                &mut enhanced,
                gain_mix,
                gain_pit,
                &mut code,
                pitch_fac,
                shift,
            );

            // Excitation energy (RMS), for the control in noise.
            let l = energy(&enhanced) >> 1;
            let (root, e) = sqrt_l_exp(l);
            let energy = (l_shr(root, (e >> 1) + 15) >> 2) as i16;
            if low_rate
                && self.voiced_hangover > 5
                && self.background
                && self.erasures < 4
                && (bad || self.prev_bad)
            {
                control_energy(
                    &mut enhanced,
                    energy,
                    &self.exc_energy_hist,
                    self.voiced_hangover,
                    self.prev_bad,
                );
            }
            if !(self.background && (bad || self.prev_bad) && self.erasures < 4) {
                self.exc_energy_hist.copy_within(1.., 0);
                self.exc_energy_hist[8] = energy;
            }

            // Synthesis, rescaling the excitation history if the filter overflows.
            let out = &mut synth[sf * L_SUBFR..(sf + 1) * L_SUBFR];
            let a = &az[sf];
            let overflow = if emphasised {
                for (x, &e) in excp.iter_mut().zip(&enhanced) {
                    *x = add(*x, e);
                }
                match_energy(&enhanced, &mut excp);
                synthesis(a, &excp, out, &self.mem_syn)
            } else {
                synthesis(a, &enhanced, out, &self.mem_syn)
            };
            if overflow {
                for v in self.exc.iter_mut() {
                    *v >>= 2;
                }
                for v in enhanced.iter_mut() {
                    *v >>= 2;
                }
                synthesis(a, &enhanced, out, &self.mem_syn);
            }
            self.mem_syn.copy_from_slice(&out[L_SUBFR - M..]);
            self.exc.copy_within(L_SUBFR.., 0);
            self.old_t0 = lag.int;
        }

        let frame_energy = energy(synth);
        self.background =
            self.noise
                .update(&self.ltp_gain_hist, frame_energy, &mut self.voiced_hangover);
        self.dtx.observe(&self.lsf.past_lsf_q, frame_energy);
        self.prev_bad = bad;
        average_update(&mut self.lsf_mean, &self.lsf.past_lsf_q);
    }
}
