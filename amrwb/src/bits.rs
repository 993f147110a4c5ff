//! Frame payloads (TS 26.201 octet order) to decoder parameters (TS 26.190 §7 bit allocation).
//!
//! The storage format carries the bits ordered by subjective importance; the per-mode sort
//! tables map each transmitted bit back to its place in the parameter sequence.

use crate::tables::{
    SORT_1265, SORT_1425, SORT_1585, SORT_1825, SORT_1985, SORT_2305, SORT_2385, SORT_660,
    SORT_885, SORT_SID,
};

/// Bits per speech frame, by mode.
pub(crate) const FRAME_BITS: [usize; 9] = [132, 177, 253, 285, 317, 365, 397, 461, 477];

const PIT_MIN: i16 = 34;
const PIT_FR2: i16 = 128;
const PIT_FR1_9B: i16 = 160;
const PIT_FR1_8B: i16 = 92;
const PIT_MAX: i16 = 231;

/// One subframe's parameters.
#[derive(Clone, Copy, Default)]
pub(crate) struct Subframe {
    /// Integer pitch lag.
    pub lag: i16,
    /// Quarter-sample fraction of the lag (0..=3).
    pub frac: i16,
    /// The LTP low-pass selection bit (`true`: no filtering). Always `false` at ≤ 8.85.
    pub no_lp: bool,
    /// Algebraic codebook indices (as many as the mode uses).
    pub pulses: [u16; 8],
    /// Gain codebook index.
    pub gain: u16,
    /// 23.85 kbit/s high-band gain index.
    pub hf_gain: u16,
}

/// One speech frame's parameters.
#[derive(Clone, Copy, Default)]
pub(crate) struct SpeechParams {
    /// The VAD flag.
    pub vad: bool,
    /// ISF indices (5 at 6.60, else 7).
    pub isf: [u16; 7],
    /// The four subframes.
    pub sub: [Subframe; 4],
}

/// `inv[p]` is the transmitted position of parameter-order bit `p`: the inverse of a sort
/// table (which gives, for each transmitted bit, its parameter-order position).
const fn invert<const N: usize>(sort: &[u16; N]) -> [u16; N] {
    let mut inv = [0u16; N];
    let mut i = 0;
    while i < N {
        inv[sort[i] as usize] = i as u16;
        i += 1;
    }
    inv
}

static INV_660: [u16; 132] = invert(&SORT_660);
static INV_885: [u16; 177] = invert(&SORT_885);
static INV_1265: [u16; 253] = invert(&SORT_1265);
static INV_1425: [u16; 285] = invert(&SORT_1425);
static INV_1585: [u16; 317] = invert(&SORT_1585);
static INV_1825: [u16; 365] = invert(&SORT_1825);
static INV_1985: [u16; 397] = invert(&SORT_1985);
static INV_2305: [u16; 461] = invert(&SORT_2305);
static INV_2385: [u16; 477] = invert(&SORT_2385);
static INV_SID: [u16; 35] = invert(&SORT_SID);

/// A cursor over a payload's bits in parameter order.
struct Reader<'a> {
    payload: &'a [u8],
    order: &'static [u16],
    at: usize,
}

impl Reader<'_> {
    #[inline(always)]
    fn take(&mut self, width: usize) -> u16 {
        let mut v = 0u16;
        for _ in 0..width {
            // The widths read per mode sum to the mode's bit count, so `at` stays inside
            // `order`, and the caller checked that the payload holds every listed bit.
            let pos = usize::from(self.order.get(self.at).copied().unwrap_or(0));
            let bit = self
                .payload
                .get(pos >> 3)
                .map_or(0, |b| (b >> (7 - (pos & 7))) & 1);
            v = (v << 1) | u16::from(bit);
            self.at += 1;
        }
        v
    }
}

fn inverse_table(mode: usize) -> &'static [u16] {
    match mode {
        0 => &INV_660,
        1 => &INV_885,
        2 => &INV_1265,
        3 => &INV_1425,
        4 => &INV_1585,
        5 => &INV_1825,
        6 => &INV_1985,
        7 => &INV_2305,
        _ => &INV_2385,
    }
}

/// Algebraic codebook field widths per subframe, by mode.
fn pulse_widths(mode: usize) -> &'static [usize] {
    match mode {
        0 => &[12],
        1 => &[5, 5, 5, 5],
        2 => &[9, 9, 9, 9],
        3 => &[13, 13, 9, 9],
        4 => &[13, 13, 13, 13],
        5 => &[2, 2, 2, 2, 14, 14, 14, 14],
        6 => &[10, 10, 2, 2, 10, 10, 14, 14],
        _ => &[11, 11, 11, 11, 11, 11, 11, 11],
    }
}

/// Parses a speech payload of `mode` (0..=8). `None` if the payload is too short.
pub(crate) fn parse_speech(mode: usize, payload: &[u8]) -> Option<SpeechParams> {
    let nbits = FRAME_BITS[mode.min(8)];
    if payload.len() * 8 < nbits {
        return None;
    }
    let mut r = Reader {
        payload,
        order: inverse_table(mode),
        at: 0,
    };
    let mut p = SpeechParams {
        vad: r.take(1) == 1,
        ..SpeechParams::default()
    };
    if mode == 0 {
        for (slot, w) in p.isf.iter_mut().zip([8, 8, 7, 7, 6]) {
            *slot = r.take(w);
        }
    } else {
        for (slot, w) in p.isf.iter_mut().zip([8, 8, 6, 7, 7, 5, 5]) {
            *slot = r.take(w);
        }
    }
    let low_rate = mode <= 1;
    let mut t0_min = PIT_MIN;
    for (sf, s) in p.sub.iter_mut().enumerate() {
        let absolute = sf == 0 || (sf == 2 && mode > 0);
        if absolute {
            let (lag, frac) = if low_rate {
                let index = r.take(8) as i16;
                if index < (PIT_FR1_8B - PIT_MIN) * 2 {
                    let lag = PIT_MIN + (index >> 1);
                    (lag, (index - ((lag - PIT_MIN) << 1)) << 1)
                } else {
                    (index + PIT_FR1_8B - (PIT_FR1_8B - PIT_MIN) * 2, 0)
                }
            } else {
                let index = r.take(9) as i16;
                if index < (PIT_FR2 - PIT_MIN) * 4 {
                    let lag = PIT_MIN + (index >> 2);
                    (lag, index - ((lag - PIT_MIN) << 2))
                } else if index < (PIT_FR2 - PIT_MIN) * 4 + (PIT_FR1_9B - PIT_FR2) * 2 {
                    let index = index - (PIT_FR2 - PIT_MIN) * 4;
                    let lag = PIT_FR2 + (index >> 1);
                    (lag, (index - ((lag - PIT_FR2) << 1)) << 1)
                } else {
                    (
                        index + PIT_FR1_9B - (PIT_FR2 - PIT_MIN) * 4 - (PIT_FR1_9B - PIT_FR2) * 2,
                        0,
                    )
                }
            };
            s.lag = lag;
            s.frac = frac;
            t0_min = (lag - 8).max(PIT_MIN);
            if t0_min + 15 > PIT_MAX {
                t0_min = PIT_MAX - 15;
            }
        } else if low_rate {
            let index = r.take(5) as i16;
            s.lag = t0_min + (index >> 1);
            s.frac = (index - ((s.lag - t0_min) << 1)) << 1;
        } else {
            let index = r.take(6) as i16;
            s.lag = t0_min + (index >> 2);
            s.frac = index - ((s.lag - t0_min) << 2);
        }
        s.no_lp = if low_rate { false } else { r.take(1) == 1 };
        for (slot, &w) in s.pulses.iter_mut().zip(pulse_widths(mode)) {
            *slot = r.take(w);
        }
        s.gain = r.take(if low_rate { 6 } else { 7 });
        if mode == 8 {
            s.hf_gain = r.take(4);
        }
    }
    Some(p)
}

/// A SID frame's comfort-noise parameters.
#[derive(Clone, Copy, Default)]
pub(crate) struct SidParams {
    /// ISF split-VQ indices.
    pub isf: [u16; 5],
    /// Quantised log energy.
    pub energy: i16,
    /// Whether the encoder asks for dithering.
    pub dither: bool,
}

/// Parses the 35 comfort-noise bits of a SID payload (at least 5 octets).
pub(crate) fn parse_sid(payload: &[u8]) -> Option<SidParams> {
    if payload.len() < 5 {
        return None;
    }
    let mut r = Reader {
        payload,
        order: &INV_SID,
        at: 0,
    };
    let isf = [r.take(6), r.take(6), r.take(6), r.take(5), r.take(5)];
    let energy = r.take(6) as i16;
    let dither = r.take(1) == 1;
    Some(SidParams {
        isf,
        energy,
        dither,
    })
}
