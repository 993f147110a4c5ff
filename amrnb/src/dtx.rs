//! Discontinuous transmission, receive side (TS 26.092/26.093, `dtx_dec.c`): the DTX state
//! machine, comfort-noise generation from SID parameters (or from the decoder's own history for a
//! `SID_FIRST`), and the history update run on every speech frame.

use crate::filter::synthesis;
use crate::gain::{GainSmoother, Predictor};
use crate::lag::L_SUBFR;
use crate::lsf::{lsf_to_lsp, lsp_to_az, lsp_to_lsf, reorder, LsfState, Split3, LSP_INIT, M, MP1};
use crate::ops::{
    abs_s, add, div_s, l_mac, l_mult, l_shl, l_shr, l_shr_r, log2, mult, norm_l, pow2, round, shl,
    shr, sub,
};
use crate::tables::PAST_RQ_INIT;

const HIST: usize = 8;
const HANG: i16 = 7;
const ELAPSED_THRESH: i16 = 24 + 7 - 1;
const MAX_EMPTY: i16 = 50;

/// How a frame arrived, as the receiver classifies it (`RXFrameType`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Rx {
    SpeechGood,
    SpeechBad,
    SidFirst,
    SidUpdate,
    SidBad,
    NoData,
}

/// Global DTX state (`DTXStateType`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DtxState {
    Speech,
    Dtx,
    DtxMute,
}

/// Comfort-noise generator state (`dtx_decState`).
#[derive(Clone)]
pub(crate) struct Dtx {
    since_last_sid: i16,
    true_sid_period_inv: i16,
    log_en: i16,
    old_log_en: i16,
    pn_seed: i32,
    lsp: [i16; M],
    lsp_old: [i16; M],
    lsf_hist: [[i16; M]; HIST],
    lsf_hist_ptr: usize,
    lsf_hist_mean: [[i16; M]; HIST],
    log_pg_mean: i16,
    log_en_hist: [i16; HIST],
    log_en_hist_ptr: usize,
    log_en_adjust: i16,
    hangover_count: i16,
    elapsed: i16,
    sid_frame: bool,
    valid_data: bool,
    hangover_added: bool,
    pub(crate) global: DtxState,
    data_updated: bool,
}

/// Mode-dependent level offsets of comfort noise, Q11.
const LOG_EN_ADJUST: [i16; 9] = [-1023, -878, -732, -586, -440, -294, -148, 0, 0];
/// Attenuation of the LSF variability per coefficient.
const HIST_MEAN_SCALE: [i16; M] = [20000, 20000, 20000, 20000, 20000, 18000, 16384, 8192, 0, 0];

impl Dtx {
    pub(crate) fn new() -> Self {
        let lsf0 = [
            1384, 2077, 3420, 5108, 6742, 8122, 9863, 11092, 12714, 13701,
        ];
        Dtx {
            since_last_sid: 0,
            true_sid_period_inv: 1 << 13,
            log_en: 3500,
            old_log_en: 3500,
            pn_seed: 0x7081_6958,
            lsp: LSP_INIT,
            lsp_old: LSP_INIT,
            lsf_hist: [lsf0; HIST],
            lsf_hist_ptr: 0,
            lsf_hist_mean: [[0; M]; HIST],
            log_pg_mean: 0,
            log_en_hist: [3500; HIST],
            log_en_hist_ptr: 0,
            log_en_adjust: 0,
            hangover_count: HANG,
            elapsed: 32767,
            sid_frame: false,
            valid_data: false,
            hangover_added: false,
            global: DtxState::Dtx,
            data_updated: false,
        }
    }

    /// Next DTX state for a received frame (`rx_dtx_handler`).
    pub(crate) fn receive(&mut self, rx: Rx) -> DtxState {
        let quiet = matches!(self.global, DtxState::Dtx | DtxState::DtxMute);
        let new = if matches!(rx, Rx::SidFirst | Rx::SidUpdate | Rx::SidBad)
            || (quiet && matches!(rx, Rx::NoData | Rx::SpeechBad))
        {
            let mut s = DtxState::Dtx;
            if self.global == DtxState::DtxMute
                && matches!(rx, Rx::SidBad | Rx::SidFirst | Rx::NoData)
            {
                s = DtxState::DtxMute;
            }
            self.since_last_sid = self.since_last_sid.saturating_add(1);
            if rx != Rx::SidUpdate && self.since_last_sid > MAX_EMPTY {
                s = DtxState::DtxMute;
            }
            s
        } else {
            self.since_last_sid = 0;
            DtxState::Speech
        };
        if !self.data_updated && rx == Rx::SidUpdate {
            self.elapsed = 0;
        }
        self.elapsed = self.elapsed.saturating_add(1);
        self.hangover_added = false;
        let enc_speech = match rx {
            Rx::SidFirst | Rx::SidUpdate | Rx::SidBad => false,
            Rx::NoData => new == DtxState::Speech,
            _ => true,
        };
        if enc_speech {
            self.hangover_count = HANG;
        } else if self.elapsed > ELAPSED_THRESH {
            self.hangover_added = true;
            self.elapsed = 0;
            self.hangover_count = 0;
        } else if self.hangover_count == 0 {
            self.elapsed = 0;
        } else {
            self.hangover_count -= 1;
        }
        if new != DtxState::Speech {
            self.sid_frame = false;
            self.valid_data = false;
            match rx {
                Rx::SidFirst => self.sid_frame = true,
                Rx::SidUpdate => {
                    self.sid_frame = true;
                    self.valid_data = true;
                }
                Rx::SidBad => {
                    self.sid_frame = true;
                    self.hangover_added = false;
                }
                _ => {}
            }
        }
        new
    }

    /// Generates one frame of comfort noise (`dtx_dec`). `params` are the SID parameters (read
    /// only for a valid SID_UPDATE). Writes the synthesis and the four (identical) LP filters for
    /// the post-filter.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn comfort_noise(
        &mut self,
        new_state: DtxState,
        mode: usize,
        params: &[i16],
        mem_syn: &mut [i16; M],
        lsf_state: &mut LsfState,
        pred: &mut Predictor,
        smoother: &mut GainSmoother,
        synth: &mut [i16; 160],
        az: &mut [[i16; MP1]; 4],
    ) {
        let mode = mode.min(8);
        if self.hangover_added && self.sid_frame {
            // SID after a hangover: describe the noise from the decoder's own recent history.
            self.log_en_adjust = LOG_EN_ADJUST[mode];
            let next = (self.lsf_hist_ptr + 1) % HIST;
            self.lsf_hist[next] = self.lsf_hist[self.lsf_hist_ptr];
            let next = (self.log_en_hist_ptr + 1) % HIST;
            self.log_en_hist[next] = self.log_en_hist[self.log_en_hist_ptr];
            let mut log_en: i16 = 0;
            let mut sum = [0i32; M];
            for i in 0..HIST {
                log_en = add(log_en, self.log_en_hist[i] >> 3);
                for j in 0..M {
                    sum[j] += self.lsf_hist[i][j] as i32; // 8 × i16: cannot overflow
                }
            }
            let mut lsf = [0i16; M];
            for j in 0..M {
                lsf[j] = (sum[j] >> 3) as i16;
            }
            lsf_to_lsp(&lsf, &mut self.lsp);
            self.log_en = sub(log_en, self.log_en_adjust);
            // Variability of each LSF around its mean, soft- then hard-limited.
            self.lsf_hist_mean = self.lsf_hist;
            for i in 0..M {
                let mean =
                    (self.lsf_hist_mean.iter().map(|r| r[i] as i32).sum::<i32>() >> 3) as i16;
                for row in self.lsf_hist_mean.iter_mut() {
                    let d = mult(sub(row[i], mean), HIST_MEAN_SCALE[i]);
                    let neg = d < 0;
                    let mut v = abs_s(d);
                    if v > 655 {
                        v = 655 + ((v - 655) >> 2);
                    }
                    if v > 1310 {
                        v = 1310;
                    }
                    row[i] = if neg { -v } else { v };
                }
            }
        }

        if self.sid_frame {
            self.lsp_old = self.lsp;
            self.old_log_en = self.log_en;
            if self.valid_data {
                let len = self.since_last_sid.min(32);
                self.since_last_sid = 0;
                self.true_sid_period_inv = if len >= 2 {
                    div_s(1 << 10, shl(len, 10))
                } else {
                    1 << 14
                };
                let init = (params[0] & 7) as usize * M;
                lsf_state
                    .past_r_q
                    .copy_from_slice(&PAST_RQ_INIT[init..init + M]);
                let mut lsp = [0i16; M];
                lsf_state.decode3(Split3::Sid, false, &params[1..4], &mut lsp);
                self.lsp = lsp;
                lsf_state.past_r_q = [0; M];
                let index = params[4] & 63;
                self.log_en = shl(index, 9) - 5120;
                if index == 0 {
                    self.log_en = i16::MIN;
                }
                if !self.data_updated || self.global == DtxState::Speech {
                    self.lsp_old = self.lsp;
                    self.old_log_en = self.log_en;
                }
            }
            // Seed the gain predictor from the noise level.
            let init = sub(shr(self.log_en, 1), 9000).clamp(-14436, 0);
            pred.past = [init; 4];
            let init122 = mult(5443, init);
            pred.past_mr122 = [init122; 4];
        }

        // Level adjustment follows the speech mode slowly.
        self.log_en_adjust = add(
            mult(self.log_en_adjust, 29491),
            shr(mult(shl(LOG_EN_ADJUST[mode], 5), 3277), 5),
        );

        // Interpolate between the last two SID descriptions.
        let mut int_fac = shl(add(1, self.since_last_sid), 10);
        int_fac = mult(int_fac, self.true_sid_period_inv);
        if int_fac > 1024 {
            int_fac = 1024;
        }
        int_fac = shl(int_fac, 4);
        let mut l_log_en = l_mult(int_fac, self.log_en);
        let mut lsp_int = [0i16; M];
        for i in 0..M {
            lsp_int[i] = mult(int_fac, self.lsp[i]);
        }
        let int_fac = sub(16384, int_fac);
        l_log_en = l_mac(l_log_en, int_fac, self.old_log_en);
        for i in 0..M {
            lsp_int[i] = shl(add(lsp_int[i], mult(int_fac, self.lsp_old[i])), 1);
        }

        // Spectral variability, stronger for low prediction gain.
        let mut variab = sub(4096, mult(sub(self.log_pg_mean, 2457), 9830));
        variab = variab.clamp(0, 4096);
        let variab = shl(variab, 3);
        let row = pseudonoise(&mut self.pn_seed, 3) as usize & 7;
        let mut lsf_int = [0i16; M];
        lsp_to_lsf(&lsp_int, &mut lsf_int);
        let mut lsf_var = lsf_int;
        for i in 0..M {
            lsf_var[i] = add(lsf_var[i], mult(variab, self.lsf_hist_mean[row][i]));
        }
        reorder(&mut lsf_int);
        reorder(&mut lsf_var);
        lsf_state.past_lsf_q = lsf_int;
        let mut lsp_var = [0i16; M];
        lsf_to_lsp(&lsf_int, &mut lsp_int);
        lsf_to_lsp(&lsf_var, &mut lsp_var);
        let mut a = [0i16; MP1];
        let mut a_var = [0i16; MP1];
        lsp_to_az(&lsp_int, &mut a);
        lsp_to_az(&lsp_var, &mut a_var);
        *az = [a; 4];

        // Prediction gain of the spectrum, to normalise the level.
        let refl = reflection(&a);
        let mut pred_err = i16::MAX;
        for &r in &refl {
            pred_err = mult(pred_err, sub(i16::MAX, mult(r, r)));
        }
        let (e, m) = log2(pred_err as i32);
        let log_pg = shl(e - 15, 12);
        let log_pg = shr(sub(0, add(log_pg, shr(m, 3))), 1);
        self.log_pg_mean = add(mult(29491, self.log_pg_mean), mult(3277, log_pg));

        let mut l = l_shr(l_log_en, 10);
        l = l.saturating_add(4 * 65536);
        l = l.saturating_sub(l_shl(log_pg as i32, 4));
        l = l.saturating_add(l_shl(self.log_en_adjust as i32, 5));
        let e = (l >> 16) as i16;
        let m = l_shr(l.saturating_sub((e as i32) << 16), 1) as i16;
        let level = pow2(e, m) as i16;

        for sf in 0..4 {
            let mut ex = [0i16; L_SUBFR];
            cn_code(&mut self.pn_seed, &mut ex);
            for v in ex.iter_mut() {
                *v = mult(level, *v);
            }
            let out = &mut synth[sf * L_SUBFR..(sf + 1) * L_SUBFR];
            synthesis(&a_var, &ex, out, mem_syn);
            mem_syn.copy_from_slice(&out[L_SUBFR - M..]);
        }

        smoother.hang_var = 20;
        smoother.hang_count = 0;

        if new_state == DtxState::DtxMute {
            let mut len = self.since_last_sid;
            if len > 32 {
                len = 32;
            } else if len <= 0 {
                len = 8;
            }
            self.true_sid_period_inv = div_s(1 << 10, shl(len, 10));
            self.since_last_sid = 0;
            self.lsp_old = self.lsp;
            self.old_log_en = self.log_en;
            self.log_en = sub(self.log_en, 256);
        }
        if self.sid_frame && (self.valid_data || self.hangover_added) {
            self.since_last_sid = 0;
            self.data_updated = true;
        }
    }

    /// Records a decoded speech frame's spectrum and energy (`dtx_dec_activity_update`).
    /// `frame_energy` is the frame's `Σ L_mult(x, x)`.
    pub(crate) fn observe(&mut self, lsf: &[i16; M], frame_energy: i32) {
        self.lsf_hist_ptr = (self.lsf_hist_ptr + 1) % HIST;
        self.lsf_hist[self.lsf_hist_ptr] = *lsf;
        let en = frame_energy;
        let (e, m) = log2(en);
        let log_en = add(shl(e, 10), shr(m, 5));
        let log_en = sub(log_en, 7497 + 1024);
        self.log_en_hist_ptr = (self.log_en_hist_ptr + 1) % HIST;
        self.log_en_hist[self.log_en_hist_ptr] = log_en;
    }
}

/// Pseudo-random bits from a 31-bit LFSR (`pseudonoise`).
pub(crate) fn pseudonoise(seed: &mut i32, bits: u32) -> i16 {
    let mut out: i16 = 0;
    for _ in 0..bits {
        let s = *seed;
        let feedback = (s & 1) ^ ((s >> 28) & 1);
        out = (out << 1) | (s & 1) as i16;
        *seed = s >> 1;
        if feedback != 0 {
            *seed |= 0x4000_0000;
        }
    }
    out
}

/// Random 10-pulse comfort-noise innovation (`build_CN_code`).
fn cn_code(seed: &mut i32, code: &mut [i16; L_SUBFR]) {
    *code = [0; L_SUBFR];
    for k in 0..10 {
        let i = pseudonoise(seed, 2) as usize * 10 + k;
        let sign = pseudonoise(seed, 1);
        code[i] = if sign > 0 { 4096 } else { -4096 };
    }
}

/// Reflection coefficients of an LP filter, Q15 (`A_Refl`); all zero if unstable.
fn reflection(a: &[i16; MP1]) -> [i16; M] {
    let mut refl = [0i16; M];
    let mut st = [0i16; M];
    st.copy_from_slice(&a[1..]);
    let mut next = [0i16; M];
    for i in (0..M).rev() {
        if abs_s(st[i]) >= 4096 {
            return [0; M];
        }
        refl[i] = shl(st[i], 3);
        let l = i32::MAX.saturating_sub(l_mult(refl[i], refl[i]));
        let norm_shift = norm_l(l);
        let scale = 15 - norm_shift;
        let norm_prod = round(l_shl(l, norm_shift));
        let m = div_s(16384, norm_prod);
        for j in 0..i {
            let acc = ((st[j] as i32) << 16).saturating_sub(l_mult(refl[i], st[i - j - 1]));
            let t = round(acc);
            let l = l_shr_r(l_mult(m, t), scale);
            if !(-32767..=32767).contains(&l) {
                return [0; M];
            }
            next[j] = l as i16;
        }
        st[..i].copy_from_slice(&next[..i]);
    }
    refl
}
