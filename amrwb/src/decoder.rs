//! The frame decoder (TS 26.190 §6, TS 26.191, TS 26.193): the DTX handler classifies each
//! frame; speech frames run the ACELP decoder at 12.8 kHz (LP filters from the ISFs,
//! adaptive and algebraic codebooks, gains, post-processing), are resampled to 16 kHz and
//! get the 6.4–7 kHz band added; comfort-noise frames run the same synthesis on a noise
//! excitation.
//!
//! Each speech subframe builds its excitation twice. The adaptive codebook stores the sum
//! of the scaled adaptive vector and the scaled innovation as transmitted, so that its
//! memory stays in step with the encoder's. The synthesis filter is fed a second version in
//! which the innovation has been dispersed, its gain smoothed by the noise enhancer and its
//! spectrum shaped by the pitch enhancer (plus, at 6.60 and 8.85 kbit/s, a gain-controlled
//! pitch boost); these enhancements never enter the decoder's memory.
//!
//! # Agreement with the oracle
//!
//! Output is verified bit-exact with rvoip-codec-core 0.4 (the decoder asr-pipeline used
//! before; a port of the 3GPP fixed-point reference), not with 3GPP conformance vectors,
//! which were not available. Where that decoder's comfort-noise, DTX and erasure handling
//! departs from the reference C code, this decoder follows it. The deviations a reader
//! comparing with the reference would otherwise take for mistakes:
//! - a SID frame's comfort noise is synthesised in the mode its own mode-indication field
//!   names (the last speech mode when the field is out of range);
//! - comfort noise takes the transmitted 23.85 kbit/s high-band gain path (index 1) only
//!   for a SID_UPDATE, not for SID_FIRST or a bad SID;
//! - after every comfort-noise frame the erasure state (BFH state, previous-frame-bad flag,
//!   pitch-lag history and its generators) and the ISF dequantiser's memories (prediction
//!   residual, last ISFs, three-frame mean buffer) restart from their initial values, where
//!   the reference code sets the BFH state to 5 on the first speech frame after DTX;
//! - the DTX handler's hangover tracking (`encState` in `rx_amr_wb_dtx_handler`) counts a
//!   NO_DATA frame as encoder DTX only while in comfort noise or once at least seven
//!   consecutive decoded speech frames carried VAD = 0; the reference counts every NO_DATA
//!   frame (see `Dtx::encoder_dtx`);
//! - the output keeps its two least significant bits (the reference tools clear them).

use crate::acelp::{self, L_SUBFR};
use crate::bits::{SidParams, SpeechParams, Subframe as SubframeParams};
use crate::dtx::{Dtx, Rx, Sid, State};
use crate::enhance::{agc2, pitch_enhance, voice_factor, Dispersion, NoiseEnhancer};
use crate::gain::GainDecoder;
use crate::highband::{HfInput, HighBand};
use crate::lp::{interpolate, isf_to_isp, isp_to_a, stability, IsfDecoder, INTERP_FRAC, M};
use crate::ops::{
    add, extract_h, l_mac, l_msu, l_mult, l_shl, l_shr, mult, noise, norm_s, round, scale_sig, shl,
    shr, sub,
};
use crate::pitch::{predict, smooth, LagHistory, L_INTERPOL, PIT_MAX};
use crate::synth::{CoreChain, Upsampler, L_SUBFR16K};
use crate::tables::ISF_INIT;

/// Excitation history kept across frames.
const HIST: usize = PIT_MAX + L_INTERPOL;
/// The excitation buffer: history, one frame, and the one sample the predictor reads ahead.
const EXC_LEN: usize = HIST + 4 * L_SUBFR + 1;
/// Largest excitation scaling.
const Q_MAX: i16 = 8;
/// Pitch sharpening factor of the innovation (0.85, Q15).
const PIT_SHARP: i16 = 27853;

/// `round(2·(c·g·2^6 + 2·a·p))` per sample with the reference's saturations
/// (`L_shl(L_mac(L_shl(L_mult(c, g), 5), a, p), 1)` then `round`): the excitation from an
/// innovation `c` with gain `g` and an adaptive part `a` with gain `p`.
fn mix(code: &[i16; L_SUBFR], g: i16, adaptive: &[i16; L_SUBFR], p: i16, out: &mut [i16; L_SUBFR]) {
    let pc = i64::from(code.iter().fold(0u16, |m, &v| m | v.unsigned_abs()));
    let pa = i64::from(adaptive.iter().fold(0u16, |m, &v| m | v.unsigned_abs()));
    // Below this bound (OR-ed magnitudes bound the maxima) no step can saturate, except
    // the final rounding, which clamps.
    if pc * i64::from(g).abs() * 64 + 2 * pa * i64::from(p).abs() < 1 << 30 {
        for ((o, &c), &a) in out.iter_mut().zip(code).zip(adaptive) {
            let v = ((i32::from(c) * i32::from(g)) << 6) + 2 * i32::from(a) * i32::from(p);
            *o = (((v << 1) + 0x8000) >> 16).min(32767) as i16;
        }
    } else {
        for ((o, &c), &a) in out.iter_mut().zip(code).zip(adaptive) {
            let acc = l_shl(l_mult(c, g), 5);
            *o = round(l_shl(l_mac(acc, a, p), 1));
        }
    }
}

/// One received frame, as the core decoder sees it.
#[derive(Clone, Copy)]
pub(crate) enum Frame<'a> {
    /// Speech parameters; `intact` is false for a damaged frame (Q bit clear).
    Speech {
        params: &'a SpeechParams,
        intact: bool,
    },
    /// A speech frame the transport lost.
    Lost,
    /// A SID (first, update or bad) with its parameters when they could be read.
    Sid { kind: Rx, params: Option<SidParams> },
    /// NO_DATA: nothing sent (a DTX gap).
    NoData,
}

impl Frame<'_> {
    /// The reference's receive type (`RX_*`).
    fn rx(&self) -> Rx {
        match *self {
            Frame::Speech { intact: true, .. } => Rx::SpeechGood,
            Frame::Speech { intact: false, .. } => Rx::SpeechBad,
            Frame::Lost => Rx::SpeechLost,
            Frame::Sid { kind, .. } => kind,
            Frame::NoData => Rx::NoData,
        }
    }
}

/// Decoder state that belongs to a talk spurt: a comfort-noise frame clears all of it, so
/// that the next speech frame starts from the initial state.
#[derive(Clone)]
struct Spurt {
    isf_dec: IsfDecoder,
    /// Past excitation, then the current frame (scaled by `2^exc_shift`).
    exc: [i16; EXC_LEN],
    /// The scaling of `exc` in the previous subframe.
    exc_shift: i16,
    /// Headroom of the last four subframes' excitation, newest first.
    headroom: [i16; 4],
    dispersion: Dispersion,
    enhancer: NoiseEnhancer,
    /// Tilt pre-emphasis factor of the next innovation (Q15).
    tilt: i16,
    /// The previous frame's ISPs; `None` until the first speech frame of the spurt,
    /// which then interpolates from its own.
    isp_prev: Option<[i16; M]>,
    /// Erasure state 0..=6: rises on each bad frame, halves on each good one.
    severity: i16,
    this_bad: bool,
    last_bad: bool,
    lags: LagHistory,
    /// Generator of the random innovation of lost frames.
    lost_seed: i16,
}

impl Spurt {
    fn new() -> Self {
        Spurt {
            isf_dec: IsfDecoder::new(),
            exc: [0; EXC_LEN],
            exc_shift: Q_MAX,
            headroom: [Q_MAX; 4],
            dispersion: Dispersion::default(),
            enhancer: NoiseEnhancer::default(),
            tilt: 0,
            isp_prev: None,
            severity: 0,
            this_bad: false,
            last_bad: false,
            lags: LagHistory::new(),
            lost_seed: 21845,
        }
    }
}

/// Per-frame values every subframe of a speech frame needs.
struct FrameInfo {
    mode: usize,
    bad: bool,
    lost: bool,
    /// The frame's ISFs and the previous frame's (6.60 kbit/s high band only).
    isf: [i16; M],
    isf_prev: [i16; M],
    /// ISF stability (Q15), for the noise enhancer.
    stability: i16,
}

/// Everything the decoder remembers between frames.
#[derive(Clone)]
pub(crate) struct Core {
    spurt: Spurt,
    gains: GainDecoder,
    chain: CoreChain,
    upsampler: Upsampler,
    high: HighBand,
    /// The last frame's ISFs, speech or comfort noise.
    isf_old: [i16; M],
    dtx: Dtx,
    /// Consecutive good frames the encoder's VAD marked inactive.
    vad_hist: i16,
}

impl Core {
    pub(crate) fn new() -> Self {
        Core {
            spurt: Spurt::new(),
            gains: GainDecoder::new(),
            chain: CoreChain::new(),
            upsampler: Upsampler::new(),
            high: HighBand::new(),
            isf_old: ISF_INIT,
            dtx: Dtx::new(),
            vad_hist: 0,
        }
    }

    /// Decodes one frame of `mode` (for a SID its own mode indication, otherwise the last
    /// speech mode) into 320 samples. As in the reference decoder, the DTX handler first
    /// decides from the receive type whether this frame is speech or comfort noise; a
    /// speech-path frame without parameters (lost, or NO_DATA inside a talk spurt) is
    /// concealed.
    pub(crate) fn decode(&mut self, mode: usize, frame: Frame<'_>, out: &mut [i16; 320]) {
        let mode = mode.min(8);
        let state = self.dtx.receive(frame.rx());
        if state != State::Speech {
            let update = match frame {
                Frame::Sid {
                    kind: Rx::SidUpdate,
                    params: Some(p),
                } => Some(Sid {
                    isf: p.isf,
                    energy: p.energy,
                    dither: p.dither,
                }),
                _ => None,
            };
            self.comfort_noise(state, mode, update, out);
            return;
        }
        match frame {
            Frame::Speech { params, intact } => self.speech(mode, params, !intact, false, out),
            _ => self.speech(mode, &SpeechParams::default(), true, true, out),
        }
        self.dtx.global = State::Speech;
    }

    /// A speech frame: good, damaged (`bad`, parameters still used where the reference uses
    /// them) or lost (`lost`, parameters ignored).
    fn speech(
        &mut self,
        mode: usize,
        p: &SpeechParams,
        bad: bool,
        lost: bool,
        out: &mut [i16; 320],
    ) {
        let sp = &mut self.spurt;
        sp.last_bad = sp.this_bad;
        sp.this_bad = bad;
        sp.severity = if bad {
            (sp.severity + 1).min(6)
        } else {
            sp.severity >> 1
        };
        if !bad {
            self.vad_hist = if p.vad {
                0
            } else {
                self.vad_hist.saturating_add(1)
            };
        }

        // LP filters: this frame's ISFs, interpolated in the ISP domain per subframe.
        let isf = sp.isf_dec.decode(mode == 0, &p.isf, bad);
        let info = FrameInfo {
            mode,
            bad,
            lost,
            isf,
            isf_prev: self.isf_old,
            stability: stability(&isf, &self.isf_old),
        };
        self.isf_old = isf;
        let mut isp = [0i16; M];
        isf_to_isp(&isf, &mut isp);
        let isp_prev = sp.isp_prev.unwrap_or(isp);
        sp.isp_prev = Some(isp);
        let mut filters = [[0i16; M + 1]; 4];
        interpolate(&isp_prev, &isp, &mut filters);

        let blocks = out.as_chunks_mut::<L_SUBFR16K>().0;
        let mut shift = 0i16;
        for (sf, block) in blocks.iter_mut().enumerate() {
            shift = self.speech_subframe(&info, sf, &p.sub[sf], &filters[sf], block);
        }

        // Slide the excitation history; DTX keeps the frame's excitation at natural scale.
        let exc = &mut self.spurt.exc;
        let mut natural = [0i16; 4 * L_SUBFR];
        natural.copy_from_slice(&exc[HIST..HIST + 4 * L_SUBFR]);
        exc.copy_within(4 * L_SUBFR..4 * L_SUBFR + HIST, 0);
        scale_sig(&mut natural, -i32::from(shift));
        self.dtx.observe_speech(&isf, &natural, p.vad);
    }

    /// Subframe `sf` of a speech frame into `out`; returns the excitation's scaling.
    fn speech_subframe(
        &mut self,
        f: &FrameInfo,
        sf: usize,
        s: &SubframeParams,
        a: &[i16; M + 1],
        out: &mut [i16; L_SUBFR16K],
    ) -> i16 {
        let low_rate = f.mode <= 1;
        let sp = &mut self.spurt;
        let pos = HIST + sf * L_SUBFR;

        // Adaptive codebook. A bad frame's lag is checked against (or replaced from) the
        // lag history, at integer resolution. Parsed and substituted lags lie in 34..=231;
        // the clamp only guarantees that no input moves the reads outside the buffer.
        let (lag, frac) = if f.bad {
            (sp.lags.substitute(s.lag, f.lost), 0)
        } else {
            (s.lag, s.frac)
        };
        let lag = lag.clamp(20, PIT_MAX as i16);
        predict(&mut sp.exc, pos, lag as usize, frac, L_SUBFR + 1);
        if !f.lost && !s.no_lp {
            smooth(&mut sp.exc, pos);
        }

        // Innovation: the algebraic codevector, or noise for a lost frame; then tilt and
        // pitch sharpening.
        let mut code = [0i16; L_SUBFR];
        if f.lost {
            code.iter_mut()
                .for_each(|c| *c = noise(&mut sp.lost_seed) >> 3);
        } else {
            acelp::decode(f.mode, &s.pulses, &mut code);
        }
        shape_innovation(&mut code, sp.tilt, lag as usize + usize::from(frac > 2));

        let g = self.gains.decode(
            s.gain,
            low_rate,
            &code,
            f.bad,
            f.lost,
            sp.severity as usize,
            self.vad_hist,
            sp.last_bad,
        );
        if !f.bad {
            sp.lags.push(lag, g.pitch);
        }

        // Scale the excitation for as much precision as the last subframes' headroom
        // allows (at most Q_MAX bits), rescaling the history to match.
        let allowed = sp.headroom.iter().copied().fold(Q_MAX, i16::min);
        let mut shift = 0i16;
        let mut code_gain = g.code;
        while code_gain < 0x0800_0000 && shift < allowed {
            code_gain <<= 1;
            shift += 1;
        }
        let code_gain = round(code_gain);
        if shift != sp.exc_shift {
            scale_sig(
                &mut sp.exc[pos - HIST..pos + L_SUBFR],
                i32::from(shift - sp.exc_shift),
            );
        }
        sp.exc_shift = shift;

        // The adaptive codebook's memory takes the plain sum of both contributions.
        let mut adaptive = [0i16; L_SUBFR];
        adaptive.copy_from_slice(&sp.exc[pos..pos + L_SUBFR]);
        let mut plain = [0i16; L_SUBFR];
        mix(&code, code_gain, &adaptive, g.pitch, &mut plain);
        sp.exc[pos..pos + L_SUBFR].copy_from_slice(&plain);
        let largest = plain.iter().fold(1i16, |m, &v| m.max(v.saturating_abs()));
        sp.headroom.copy_within(..3, 1);
        sp.headroom[0] = sub(add(norm_s(largest) as i16, shift), 1);

        // Voicing of this subframe sets the next innovation's tilt.
        let mut adaptive_q = adaptive;
        scale_sig(&mut adaptive_q, -3);
        let voicing = voice_factor(&adaptive_q, -3, g.pitch, &code, code_gain);
        sp.tilt = add(shr(voicing, 2), 8192);

        // What the synthesis hears: dispersed, noise-enhanced and pitch-enhanced innovation
        // on the same adaptive part, and at the low rates an extra pitch boost, gain-matched.
        let boost = shl(g.pitch, 1);
        let boosted = low_rate && boost > 16384;
        let level = f.mode.min(2) as i16;
        sp.dispersion
            .apply(extract_h(g.code), g.pitch, &mut code, level);
        let smoothed_gain = sp.enhancer.apply(g.code, voicing, f.stability);
        let mut enhanced = [0i16; L_SUBFR];
        pitch_enhance(&code, voicing, &mut enhanced);
        let mut heard = [0i16; L_SUBFR];
        mix(
            &enhanced,
            round(l_shl(smoothed_gain, i32::from(shift))),
            &adaptive,
            g.pitch,
            &mut heard,
        );
        if boosted {
            let mut with_boost = [0i16; L_SUBFR];
            for ((o, &x), &h) in with_boost.iter_mut().zip(&adaptive_q).zip(&heard) {
                let extra = round(l_shr(l_mult(mult(x, boost), g.pitch), 1));
                *o = add(extra, h);
            }
            agc2(&heard, &mut with_boost);
            heard = with_boost;
        }

        // 6.60 kbit/s: the high band's filter comes from ISFs interpolated per subframe.
        let mut sub_isf = [0i16; M];
        let hf_isf = (f.mode == 0).then(|| {
            let w = INTERP_FRAC[sf];
            let w_prev = sub(32767, w);
            for ((o, &old), &new) in sub_isf.iter_mut().zip(&f.isf_prev).zip(&f.isf) {
                *o = round(l_mac(l_mult(old, w_prev), new, w));
            }
            &sub_isf
        });
        let hf_gain = (f.mode == 8 && !f.bad).then_some(s.hf_gain);
        self.synthesise(a, &heard, shift, hf_gain, hf_isf, f.mode == 8, out);
        shift
    }

    /// One subframe of core synthesis plus high band into `out`.
    #[allow(clippy::too_many_arguments)]
    fn synthesise(
        &mut self,
        a: &[i16; M + 1],
        exc: &[i16; L_SUBFR],
        shift: i16,
        hf_gain: Option<u16>,
        isf: Option<&[i16; M]>,
        lowpass: bool,
        out: &mut [i16; L_SUBFR16K],
    ) {
        let q_new = i32::from(shift);
        let mut core = [0i16; L_SUBFR];
        let mut tilt_input = [0i16; L_SUBFR];
        self.chain.run(a, exc, q_new, &mut core, &mut tilt_input);
        self.upsampler.run(&core, out);
        if isf.is_none() {
            self.high.clear_wide_memory();
        }
        let inp = HfInput {
            a,
            exc,
            q_new,
            hf_gain,
            isf,
            lowpass,
            vad_hist: self.vad_hist,
        };
        self.high.run(&inp, &tilt_input, out);
    }

    /// A comfort-noise (or muted) frame; `update` holds a valid SID_UPDATE's parameters.
    /// Afterwards the talk-spurt state starts over, as the reference resets its speech
    /// decoder after each comfort-noise frame.
    fn comfort_noise(
        &mut self,
        state: State,
        mode: usize,
        update: Option<Sid>,
        out: &mut [i16; 320],
    ) {
        let mut exc = [0i16; 4 * L_SUBFR];
        let isf = self.dtx.comfort_noise(state, update, &mut exc);
        let mut isp = [0i16; M];
        isf_to_isp(&isf, &mut isp);
        let mut a = [0i16; M + 1];
        isp_to_a(&isp, &mut a, M, true);
        let wide = mode == 8;
        // See the deviation list: only a SID_UPDATE takes the transmitted-gain path.
        let hf_gain = (wide && update.is_some()).then_some(1);
        let blocks = out.as_chunks_mut::<L_SUBFR16K>().0;
        for (block, part) in blocks.iter_mut().zip(exc.as_chunks::<L_SUBFR>().0) {
            self.synthesise(&a, part, 0, hf_gain, None, wide, block);
        }
        self.spurt = Spurt::new();
        self.isf_old = isf;
        self.dtx.global = state;
    }
}

/// Tilt pre-emphasis `c[i] − t·c[i−1]`, then pitch sharpening `c[i] + 0.85·c[i − lag]` for
/// lags shorter than the subframe, of the innovation. Each filter reads only input samples
/// (pre-emphasis reads backwards, and the sharpening lag of at least 34 exceeds
/// 64 − 34), so both work from a copy; small vectors take an exact non-saturating path.
fn shape_innovation(code: &mut [i16; L_SUBFR], tilt: i16, lag: usize) {
    let magnitude =
        |v: &[i16; L_SUBFR]| i64::from(v.iter().fold(0u16, |m, &x| m | x.unsigned_abs()));
    let input = *code;
    // 0 ≤ tilt < 2^14: |c·2^16 − 2·c'·t| ≤ m·(2^16 + 2^15) < 2^31 − 2^15 for m < 21 000.
    if magnitude(&input) < 21_000 {
        let t = i32::from(tilt);
        for i in 1..L_SUBFR {
            let v = (i32::from(input[i]) << 16) - 2 * i32::from(input[i - 1]) * t;
            code[i] = ((v + 0x8000) >> 16) as i16;
        }
    } else {
        for i in (1..L_SUBFR).rev() {
            code[i] = round(l_msu(i32::from(code[i]) << 16, code[i - 1], tilt));
        }
    }
    if lag >= L_SUBFR {
        return;
    }
    let input = *code;
    // |c·2^16 + 2·c'·27853| ≤ m·121 242 < 2^31 − 2^15 for m < 17 000.
    if magnitude(&input) < 17_000 {
        for i in lag..L_SUBFR {
            let v =
                (i32::from(input[i]) << 16) + 2 * i32::from(input[i - lag]) * i32::from(PIT_SHARP);
            code[i] = ((v + 0x8000) >> 16) as i16;
        }
    } else {
        for i in lag..L_SUBFR {
            code[i] = round(l_mac(i32::from(code[i]) << 16, code[i - lag], PIT_SHARP));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u32) -> u32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        *seed
    }

    #[test]
    fn the_excitation_mix_equals_the_reference_operators() {
        let mut seed = 777u32;
        for trial in 0..5000u32 {
            let shift = trial % 16;
            let mut code = [0i16; L_SUBFR];
            let mut adaptive = [0i16; L_SUBFR];
            for (c, a) in code.iter_mut().zip(adaptive.iter_mut()) {
                *c = ((rng(&mut seed) >> 16) as u16 as i16) >> shift;
                *a = ((rng(&mut seed) >> 16) as u16 as i16) >> (15 - shift);
            }
            let g = ((rng(&mut seed) >> 17) as i16) >> (trial % 13);
            let p = ((rng(&mut seed) >> 18) as i16) >> (trial % 5);
            let mut fast = [0i16; L_SUBFR];
            mix(&code, g, &adaptive, p, &mut fast);
            for i in 0..L_SUBFR {
                let acc = l_shl(l_mult(code[i], g), 5);
                let want = round(l_shl(l_mac(acc, adaptive[i], p), 1));
                assert_eq!(fast[i], want, "trial {trial}, sample {i}");
            }
        }
    }

    /// Arbitrary bytes as every frame type, with losses: never a panic (debug builds check
    /// arithmetic overflow too), always a full frame.
    #[test]
    fn arbitrary_input_never_panics() {
        let mut seed = 4242u32;
        let mut d = crate::Decoder::new();
        let mut out = [0i16; 320];
        for i in 0..3000u32 {
            let ft = (rng(&mut seed) % 16) as u8;
            let len = if i.is_multiple_of(9) {
                (rng(&mut seed) % 70) as usize
            } else {
                crate::PAYLOAD_BYTES[usize::from(ft)]
            };
            let payload: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            if i.is_multiple_of(31) {
                d.decode_lost(&mut out);
            } else {
                d.decode(ft, !rng(&mut seed).is_multiple_of(5), &payload, &mut out);
            }
        }
    }
}
