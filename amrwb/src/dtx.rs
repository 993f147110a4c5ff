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

    /// Runs once per frame, before decoding (`rx_amr_wb_dtx_handler`, TS 26.193 §5.1):
    /// decides speech vs comfort noise vs mute, keeps the hangover bookkeeping in step with
    /// the encoder's, and notes whether this frame brings SID data.
    pub(crate) fn receive(&mut self, rx: Rx) -> State {
        let next = self.next_state(rx);
        self.follow_encoder_hangover(rx);
        if next != State::Speech {
            self.note_sid_kind(rx);
        }
        next
    }

    /// The receiver's state for this frame. A SID always means comfort noise; so does a gap
    /// or a damaged frame while already in comfort noise. Mute continues through frames that
    /// bring no fresh parameters, and starts when no SID update has come for too long.
    fn next_state(&mut self, rx: Rx) -> State {
        let in_cn = self.global != State::Speech;
        let gap = matches!(rx, Rx::NoData | Rx::SpeechBad | Rx::SpeechLost);
        let comfort = rx.is_sid() || (in_cn && gap);
        if !comfort {
            self.since_sid = 0;
            return State::Speech;
        }
        let keeps_mute = matches!(rx, Rx::SidBad | Rx::SidFirst | Rx::SpeechLost | Rx::NoData);
        self.since_sid = add(self.since_sid, 1);
        let stale = rx != Rx::SidUpdate && self.since_sid > MAX_EMPTY_THRESH;
        if stale || (self.global == State::Mute && keeps_mute) {
            State::Mute
        } else {
            State::Cn
        }
    }

    /// Whether the encoder is taken to be in DTX this frame (the reference's `encState`).
    ///
    /// Deviation, kept for agreement with the oracle (rvoip-codec-core 0.4): the reference
    /// counts every NO_DATA frame as encoder DTX; here a NO_DATA frame inside a talk spurt
    /// counts only once the last [`HANG_CONST`] or more speech frames decoded carried a VAD
    /// flag of 0 (lost frames count as inactive).
    fn encoder_dtx(&self, rx: Rx) -> bool {
        match rx {
            Rx::SidFirst | Rx::SidUpdate | Rx::SidBad => true,
            Rx::NoData => self.global != State::Speech || self.vad_hist >= HANG_CONST,
            Rx::SpeechGood | Rx::SpeechBad | Rx::SpeechLost => false,
        }
    }

    /// Tracks the encoder's hangover: after a long enough stretch of speech analysis the
    /// encoder appends [`HANG_CONST`] frames of hangover before its first SID, which the
    /// decoder mirrors to know when a SID_FIRST's parameters must come from its own history.
    fn follow_encoder_hangover(&mut self, rx: Rx) {
        // The first SID_UPDATE after start-up (or a handover) restarts the count.
        if rx == Rx::SidUpdate && !self.updated {
            self.elapsed = 0;
        }
        self.elapsed = add(self.elapsed, 1);
        self.hangover_added = false;
        if !self.encoder_dtx(rx) {
            self.hangover = HANG_CONST;
        } else if self.elapsed > ELAPSED_THRESH {
            self.hangover_added = true;
            self.elapsed = 0;
            self.hangover = 0;
        } else if self.hangover == 0 {
            self.elapsed = 0;
        } else {
            self.hangover -= 1;
        }
    }

    /// For a comfort-noise frame: is it a SID, and are its parameters usable? A bad SID
    /// never triggers the backward analysis (the old parameters are kept instead).
    fn note_sid_kind(&mut self, rx: Rx) {
        self.sid_frame = rx.is_sid();
        self.valid = rx == Rx::SidUpdate;
        if rx == Rx::SidBad {
            self.hangover_added = false;
        }
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

    /// The comfort-noise ISFs and excitation for this frame (`dtx_dec_amr_wb`,
    /// TS 26.193 §6). `sid` carries the parameters of a valid SID_UPDATE.
    pub(crate) fn comfort_noise(
        &mut self,
        state: State,
        sid: Option<Sid>,
        exc: &mut [i16; 256],
    ) -> [i16; M] {
        if self.sid_frame {
            if self.hangover_added {
                // SID after a hangover: the parameters come from the decoded speech.
                self.average_history();
            }
            self.take_sid(sid);
        }
        let (isf, log_energy) = self.interpolated();
        if state == State::Mute {
            self.fade_step();
        }
        self.excitation(log_energy, exc);
        if self.sid_frame && (self.valid || self.hangover_added) {
            self.since_sid = 0;
            self.updated = true;
        }
        isf
    }

    /// On a SID frame: the current parameters become the interpolation's starting point,
    /// and a valid update's dequantised parameters the new end point.
    fn take_sid(&mut self, sid: Option<Sid>) {
        self.isf_old = self.isf;
        self.old_log_en = self.log_en;
        if !self.valid {
            return;
        }
        if let Some(update) = sid {
            // Interpolation runs over as many frames as the last SID period (2..=32 frames).
            let frames = self.since_sid.min(32);
            self.period_inv = if frames < 2 {
                1 << 14
            } else {
                div_s(1 << 10, shl(frames, 10))
            };
            self.isf = dequantise_sid(&update.isf);
            // Index / 2.625 in Q9 (log2 of the energy plus 2).
            self.log_en = mult(shl(update.energy, 9), 12483);
            self.dither = update.dither;
            // No interpolation right after start-up or right after speech.
            if self.global == State::Speech || !self.updated {
                self.isf_old = self.isf;
                self.old_log_en = self.log_en;
            }
        }
        self.since_sid = 0;
    }

    /// The frame's ISFs (Q15) and log energy (Q24, log2 + 2), interpolated from the previous
    /// towards the newest SID parameters by the frames elapsed since the SID, dithered when
    /// the noise is non-stationary.
    fn interpolated(&mut self) -> ([i16; M], i32) {
        // Weight of the newest parameters, Q14 (at most 1).
        let w_new = shl(mult(shl(self.since_sid, 10), self.period_inv).min(1024), 4);
        let w_old = sub(16384, w_new);
        let log_energy = l_mac(l_mult(w_new, self.log_en), w_old, self.old_log_en);
        let mut isf = [0i16; M];
        for ((out, &new), &old) in isf.iter_mut().zip(&self.isf).zip(&self.isf_old) {
            *out = shl(add(mult(w_new, new), mult(w_old, old)), 1);
        }
        let mut log_energy = log_energy;
        if self.dither {
            self.apply_dither(&mut isf, &mut log_energy);
        }
        (isf, log_energy)
    }

    /// Mute: restart the interpolation towards an energy 3/8 dB lower.
    fn fade_step(&mut self) {
        // An empty period would divide by zero in the reference; eight frames stand in.
        let frames = match self.since_sid.min(32) {
            f if f <= 0 => 8,
            f => f,
        };
        self.period_inv = div_s(1 << 10, shl(frames, 10));
        self.since_sid = 0;
        self.old_log_en = self.log_en;
        self.log_en = sub(self.log_en, 64);
    }

    /// SID parameters from the speech history: the mean ISFs and log energy of the last
    /// eight frames, the most recent frame counted twice (it overwrites the oldest).
    fn average_history(&mut self) {
        let oldest = (self.hist_ptr + 1) % HIST;
        self.isf_hist[oldest] = self.isf_hist[self.hist_ptr];
        self.log_en_hist[oldest] = self.log_en_hist[self.hist_ptr];
        // The stored energies are already divided by eight: their sum is the mean (Q10).
        let energy_q10 = self.log_en_hist.iter().fold(0i16, |s, &e| add(s, e));
        // To Q9, offset by 2 so that Pow2 later sees a non-negative value.
        self.log_en = add(shr(energy_q10, 1), 1024).max(0);
        for (k, out) in self.isf.iter_mut().enumerate() {
            let total = self
                .isf_hist
                .iter()
                .fold(0i32, |s, frame| l_add(s, i32::from(frame[k])));
            *out = (total >> 3) as i16;
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
