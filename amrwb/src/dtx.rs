//! Discontinuous transmission on the receive side (TS 26.193 / TS 26.192): the frame-type
//! state machine, the speech history a `SID_FIRST` is built from, and comfort-noise
//! parameters (ISFs, excitation) for each comfort-noise frame.

use crate::lp::{reorder, ISF_GAP, M};
use crate::ops::{
    add, div_s, energy12, extract_h, isqrt_n, l_add, l_mac, l_mult, l_shl, l_shr, log2, mult,
    mult_r, noise, norm_l, pow2, shl, shr, sub, sum_squares,
};
use crate::tables::{DICO1_NS, DICO2_NS, DICO3_NS, DICO4_NS, DICO5_NS, ISF_INIT, MEAN_ISF_NOISE};

const HIST: usize = 8;
const HANG_CONST: i16 = 7;
const ELAPSED_THRESH: i16 = 24 + 7 - 1;
const MAX_EMPTY_THRESH: i16 = 50;
const LOG_EN_INIT: i16 = 3500;

/// What the receiver was handed this frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rx {
    SpeechGood,
    SpeechBad,
    SpeechLost,
    SidFirst,
    SidUpdate,
    SidBad,
    NoData,
}

impl Rx {
    fn is_sid(self) -> bool {
        matches!(self, Rx::SidFirst | Rx::SidUpdate | Rx::SidBad)
    }
}

/// The decoder's DTX state for a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Speech,
    Cn,
    Mute,
}

/// Decoded SID contents.
#[derive(Clone, Copy)]
pub(crate) struct Sid {
    pub isf: [u16; 5],
    pub energy: i16,
    pub dither: bool,
}

/// The receive-side DTX handler and comfort-noise generator.
#[derive(Clone)]
pub(crate) struct Dtx {
    since_sid: i16,
    period_inv: i16,
    log_en: i16,
    old_log_en: i16,
    isf: [i16; M],
    isf_old: [i16; M],
    cng_seed: i16,
    isf_hist: [[i16; M]; HIST],
    log_en_hist: [i16; HIST],
    hist_ptr: usize,
    hangover: i16,
    elapsed: i16,
    sid_frame: bool,
    valid: bool,
    hangover_added: bool,
    pub(crate) global: State,
    updated: bool,
    dither_seed: i16,
    dither: bool,
    vad_hist: i16,
}

impl Dtx {
    pub(crate) fn new() -> Self {
        Dtx {
            since_sid: 0,
            period_inv: 8192,
            log_en: LOG_EN_INIT,
            old_log_en: LOG_EN_INIT,
            isf: ISF_INIT,
            isf_old: ISF_INIT,
            cng_seed: 21845,
            isf_hist: [ISF_INIT; HIST],
            log_en_hist: [LOG_EN_INIT >> 3; HIST],
            hist_ptr: 0,
            hangover: HANG_CONST,
            elapsed: 32767,
            sid_frame: false,
            valid: false,
            hangover_added: false,
            global: State::Speech,
            updated: false,
            dither_seed: 21845,
            dither: false,
            vad_hist: 0,
        }
    }

    /// Runs once per frame, before decoding: decides speech vs comfort noise vs mute.
    pub(crate) fn receive(&mut self, rx: Rx) -> State {
        let continuing = matches!(self.global, State::Cn | State::Mute)
            && matches!(rx, Rx::NoData | Rx::SpeechBad | Rx::SpeechLost);
        let state = if rx.is_sid() || continuing {
            let stay_muted = self.global == State::Mute
                && matches!(rx, Rx::SidBad | Rx::SidFirst | Rx::SpeechLost | Rx::NoData);
            let mut s = if stay_muted { State::Mute } else { State::Cn };
            self.since_sid = add(self.since_sid, 1);
            if rx != Rx::SidUpdate && self.since_sid > MAX_EMPTY_THRESH {
                s = State::Mute;
            }
            s
        } else {
            self.since_sid = 0;
            State::Speech
        };
        if !self.updated && rx == Rx::SidUpdate {
            self.elapsed = 0;
        }
        self.elapsed = add(self.elapsed, 1);
        self.hangover_added = false;
        let encoder_in_dtx = rx.is_sid()
            || (rx == Rx::NoData && (self.global != State::Speech || self.vad_hist >= HANG_CONST));
        if encoder_in_dtx {
            if self.elapsed > ELAPSED_THRESH {
                self.hangover_added = true;
                self.elapsed = 0;
                self.hangover = 0;
            } else if self.hangover == 0 {
                self.elapsed = 0;
            } else {
                self.hangover -= 1;
            }
        } else {
            self.hangover = HANG_CONST;
        }
        if state != State::Speech {
            self.sid_frame = false;
            self.valid = false;
            match rx {
                Rx::SidFirst => self.sid_frame = true,
                Rx::SidUpdate => {
                    self.sid_frame = true;
                    self.valid = true;
                }
                Rx::SidBad => {
                    self.sid_frame = true;
                    self.hangover_added = false;
                }
                _ => {}
            }
        }
        state
    }

    /// Records a decoded speech frame: its ISFs and the energy of its excitation (`exc` at
    /// its natural scale).
    pub(crate) fn observe_speech(&mut self, isf: &[i16; M], exc: &[i16; 256], vad: bool) {
        self.hist_ptr = (self.hist_ptr + 1) % HIST;
        self.isf_hist[self.hist_ptr] = *isf;
        // A saturating sum of non-negative terms is the clamped exact sum.
        let e = (2 * sum_squares(exc)).min(i64::from(i32::MAX)) as i32;
        let (ex, mant) = log2(e >> 1);
        let log_en = add(shl(ex as i16, 7), shr(mant, 8));
        self.log_en_hist[self.hist_ptr] = sub(log_en, 1024);
        self.vad_hist = if vad { 0 } else { add(self.vad_hist, 1) };
    }

    /// The comfort-noise ISFs and excitation for this frame.
    pub(crate) fn comfort_noise(
        &mut self,
        state: State,
        sid: Option<Sid>,
        exc: &mut [i16; 256],
    ) -> [i16; M] {
        if self.hangover_added && self.sid_frame {
            self.backward_analysis();
        }
        if self.sid_frame {
            self.isf_old = self.isf;
            self.old_log_en = self.log_en;
            if let Some(sid) = sid.filter(|_| self.valid) {
                let period = self.since_sid.min(32);
                self.period_inv = if period >= 2 {
                    div_s(1 << 10, shl(period, 10))
                } else {
                    1 << 14
                };
                self.isf = dequantise_sid(&sid.isf);
                self.log_en = mult(shl(sid.energy, 9), 12483);
                self.dither = sid.dither;
                if !self.updated || self.global == State::Speech {
                    self.isf_old = self.isf;
                    self.old_log_en = self.log_en;
                }
            }
        }
        if self.sid_frame && self.valid {
            self.since_sid = 0;
        }
        // Interpolate between the previous and the newest SID parameters.
        let mut factor = mult(shl(self.since_sid, 10), self.period_inv).min(1024);
        factor = shl(factor, 4);
        let mut energy = l_mult(factor, self.log_en);
        let mut isf = [0i16; M];
        for (o, &t) in isf.iter_mut().zip(&self.isf) {
            *o = mult(factor, t);
        }
        let comp = sub(16384, factor);
        energy = l_mac(energy, comp, self.old_log_en);
        for (o, &p) in isf.iter_mut().zip(&self.isf_old) {
            *o = shl(add(*o, mult(comp, p)), 1);
        }
        if self.dither {
            self.apply_dither(&mut isf, &mut energy);
        }
        if state == State::Mute {
            let mut period = self.since_sid.min(32);
            if period <= 0 {
                period = 8;
            }
            self.period_inv = div_s(1 << 10, shl(period, 10));
            self.since_sid = 0;
            self.old_log_en = self.log_en;
            self.log_en = sub(self.log_en, 64);
        }
        self.excitation(energy, exc);
        if self.sid_frame && (self.valid || self.hangover_added) {
            self.since_sid = 0;
            self.updated = true;
        }
        isf
    }

    fn backward_analysis(&mut self) {
        let newest = self.hist_ptr;
        let dup = (newest + 1) % HIST;
        self.isf_hist[dup] = self.isf_hist[newest];
        self.log_en_hist[dup] = self.log_en_hist[newest];
        let mut log_en = 0i16;
        for &v in &self.log_en_hist {
            log_en = add(log_en, v);
        }
        let mut sums = [0i32; M];
        for frame in &self.isf_hist {
            for (s, &v) in sums.iter_mut().zip(frame) {
                *s = l_add(*s, i32::from(v));
            }
        }
        let log_en = add(shr(log_en, 1), 1024).max(0);
        self.log_en = log_en;
        for (o, &s) in self.isf.iter_mut().zip(&sums) {
            *o = (s >> 3) as i16;
        }
    }

    fn excitation(&mut self, energy: i32, exc: &mut [i16; 256]) {
        let energy = l_shr(energy, 9);
        let ex = extract_h(energy);
        let rem = l_sub_deposit(energy, ex);
        let mant = (l_shr(rem, 1)) as i16;
        let ex = add(ex, 15);
        let level32 = pow2(i32::from(ex), mant);
        let sh = norm_l(level32);
        let level = extract_h(l_shl(level32, sh));
        let level_exp = 15 - sh;
        for v in exc.iter_mut() {
            *v = noise(&mut self.cng_seed) >> 4;
        }
        let (mut e, mut ee) = energy12(exc);
        isqrt_n(&mut e, &mut ee);
        let gain = mult(level, extract_h(e));
        let total = level_exp + ee + 4;
        for v in exc.iter_mut() {
            *v = shl(mult(*v, gain), total);
        }
    }

    fn apply_dither(&mut self, isf: &mut [i16; M], energy: &mut i32) {
        let tri = |seed: &mut i16| add(noise(seed) >> 1, noise(seed) >> 1);
        let p = tri(&mut self.dither_seed);
        *energy = l_add(*energy, l_mult(p, 75)).max(0);
        let mut factor: i16 = 256;
        let p = tri(&mut self.dither_seed);
        let c = add(isf[0], mult_r(p, factor));
        isf[0] = if c < ISF_GAP { ISF_GAP } else { c };
        for i in 1..M - 1 {
            factor = add(factor, 2);
            let p = tri(&mut self.dither_seed);
            let c = add(isf[i], mult_r(p, factor));
            isf[i] = if sub(c, isf[i - 1]) < 448 {
                add(isf[i - 1], 448)
            } else {
                c
            };
        }
        if isf[M - 2] > 16384 {
            isf[M - 2] = 16384;
        }
    }
}

/// `L_sub(x, L_deposit_h(hi))` for the exponent/mantissa split of the CN energy.
#[inline]
fn l_sub_deposit(x: i32, hi: i16) -> i32 {
    x.saturating_sub(i32::from(hi) << 16)
}

/// Dequantises the SID's ISF indices (split VQ, no prediction).
fn dequantise_sid(idx: &[u16; 5]) -> [i16; M] {
    let mut isf = [0i16; M];
    let splits: [(usize, usize, &[i16]); 5] = [
        (0, 2, &DICO1_NS),
        (2, 3, &DICO2_NS),
        (5, 3, &DICO3_NS),
        (8, 4, &DICO4_NS),
        (12, 4, &DICO5_NS),
    ];
    for (&i, &(off, dim, book)) in idx.iter().zip(&splits) {
        let base = usize::from(i) * dim;
        if let Some(row) = book.get(base..base + dim) {
            isf[off..off + dim].copy_from_slice(row);
        }
    }
    for (v, &m) in isf.iter_mut().zip(&MEAN_ISF_NOISE) {
        *v = add(*v, m);
    }
    reorder(&mut isf, ISF_GAP);
    isf
}
