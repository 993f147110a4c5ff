//! Payload unpacking (TS 26.101 bit order, RFC 4867 octet alignment).
//!
//! The storage format carries each frame's bits in order of subjective importance; the decoder
//! reads fixed-width parameters in codec order. At compile time the reference's `sort_*` table
//! is inverted, so that for each codec-order bit we know which payload bit carries it; each
//! parameter is then assembled most significant bit first, in a register.

use crate::tables::{
    BITNO_102, BITNO_122, BITNO_475, BITNO_515, BITNO_59, BITNO_67, BITNO_74, BITNO_795, BITNO_SID,
    SORT_102, SORT_122, SORT_475, SORT_515, SORT_59, SORT_67, SORT_74, SORT_795, SORT_SID,
};

/// Most parameters in any frame (12.2 kbit/s).
pub(crate) const MAX_PARAMS: usize = 57;
/// Most bits in any frame (12.2 kbit/s).
const MAX_BITS: usize = 244;
/// Index of the SID layout among the maps.
pub(crate) const SID: usize = 8;

/// One layout's bit map.
struct BitMap {
    /// Bits in the frame.
    len: usize,
    /// For codec-order bit `c`: the payload bit that carries it.
    source: [u8; MAX_BITS],
    /// Parameter widths in decoding order.
    widths: &'static [u8],
}

/// Inverts a sort table (payload bit `i` is codec bit `sort[i]`).
const fn fold(sort: &[u16], widths: &'static [u8]) -> BitMap {
    let mut total = 0;
    let mut p = 0;
    while p < widths.len() {
        total += widths[p] as usize;
        p += 1;
    }
    assert!(total == sort.len() && sort.len() <= MAX_BITS);
    let mut map = BitMap {
        len: sort.len(),
        source: [0; MAX_BITS],
        widths,
    };
    let mut i = 0;
    while i < sort.len() {
        map.source[sort[i] as usize] = i as u8;
        i += 1;
    }
    map
}

/// The maps of modes 0–7 and of the SID layout.
static MAPS: [BitMap; 9] = [
    fold(&SORT_475, &BITNO_475),
    fold(&SORT_515, &BITNO_515),
    fold(&SORT_59, &BITNO_59),
    fold(&SORT_67, &BITNO_67),
    fold(&SORT_74, &BITNO_74),
    fold(&SORT_795, &BITNO_795),
    fold(&SORT_102, &BITNO_102),
    fold(&SORT_122, &BITNO_122),
    fold(&SORT_SID, &BITNO_SID),
];

/// Parameter widths per layout, for `build_CN_param`.
pub(crate) static WIDTHS: [&[u8]; 9] = [
    &BITNO_475, &BITNO_515, &BITNO_59, &BITNO_67, &BITNO_74, &BITNO_795, &BITNO_102, &BITNO_122,
    &BITNO_SID,
];

/// Unpacks the parameters of layout `layout` (0–7 speech, [`SID`]) from `payload` into `params`.
/// Returns false (leaving `params` unspecified) if the payload is too short.
pub(crate) fn unpack(layout: usize, payload: &[u8], params: &mut [i16; MAX_PARAMS]) -> bool {
    let map = &MAPS[layout.min(SID)];
    if payload.len() * 8 < map.len {
        return false;
    }
    let mut c = 0;
    for (&w, p) in map.widths.iter().zip(params.iter_mut()) {
        let mut v = 0i16;
        for _ in 0..w {
            let i = map.source[c] as usize;
            c += 1;
            v = (v << 1) | ((payload[i >> 3] >> (7 - (i & 7))) & 1) as i16;
        }
        *p = v;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacking_matches_the_oracle() {
        let mut r = 0x1234_5678u32;
        for layout in 0..9usize {
            for _ in 0..200 {
                let payload: Vec<u8> = (0..31)
                    .map(|_| {
                        r ^= r << 13;
                        r ^= r >> 17;
                        r ^= r << 5;
                        r as u8
                    })
                    .collect();
                let n = MAPS[layout].len.div_ceil(8);
                let want =
                    codec_core::codecs::amr::nb::bitstream::parse(layout as u8, &payload[..n])
                        .unwrap();
                let mut got = [0i16; MAX_PARAMS];
                assert!(unpack(layout, &payload[..n], &mut got));
                let got: Vec<u16> = got[..want.len()].iter().map(|&v| v as u16).collect();
                assert_eq!(want, got, "layout {layout}");
            }
        }
    }
}
