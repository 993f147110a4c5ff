//! Algebraic (fixed) codebooks of the eight modes (`d2_9pf.c` … `d1035pf.c`) and the pitch
//! sharpening applied to the decoded innovation.

use crate::lag::L_SUBFR;
use crate::ops::{add, mult, negate};
use crate::tables::{DGRAY, START_POS_9};

/// Innovation vector of one subframe.
pub(crate) type Code = [i16; L_SUBFR];

/// Pulse amplitude of the 2-, 3- and 4-pulse codebooks for a sign bit.
#[inline(always)]
fn amp(sign_bit: i16) -> i16 {
    (sign_bit & 1) * 16383 - 8192
}

/// 4.75/5.15 kbit/s: two pulses, 9 bits, track pair chosen by subframe and one index bit.
pub(crate) fn two_pulses_9(subframe: usize, signs: i16, index: i16, code: &mut Code) {
    let k = subframe * 2 + ((index & 64) >> 3) as usize; // track pair row: 8 entries per half
    let p0 = (index & 7) as usize * 5 + START_POS_9[k & 15] as usize;
    let p1 = ((index >> 3) & 7) as usize * 5 + START_POS_9[(k + 1) & 15] as usize;
    *code = [0; L_SUBFR];
    code[p0.min(L_SUBFR - 1)] = amp(signs);
    code[p1.min(L_SUBFR - 1)] = amp(signs >> 1);
}

/// 5.9 kbit/s: two pulses, 11 bits.
pub(crate) fn two_pulses_11(signs: i16, index: i16, code: &mut Code) {
    let j = (index & 1) as usize;
    let p0 = ((index >> 1) & 7) as usize * 5 + j * 2 + 1;
    let j = ((index >> 4) & 3) as usize;
    let i = ((index >> 6) & 7) as usize;
    let p1 = if j == 3 { i * 5 + 4 } else { i * 5 + j };
    *code = [0; L_SUBFR];
    code[p0] = amp(signs);
    code[p1] = amp(signs >> 1);
}

/// 6.7 kbit/s: three pulses, 14 bits.
pub(crate) fn three_pulses_14(signs: i16, index: i16, code: &mut Code) {
    let p0 = (index & 7) as usize * 5;
    let p1 = ((index >> 4) & 7) as usize * 5 + ((index >> 3) & 1) as usize * 2 + 1;
    let p2 = ((index >> 8) & 7) as usize * 5 + ((index >> 7) & 1) as usize * 2 + 2;
    *code = [0; L_SUBFR];
    code[p0] = amp(signs);
    code[p1] = amp(signs >> 1);
    code[p2] = amp(signs >> 2);
}

/// 7.4/7.95 kbit/s: four pulses, 17 bits, Gray-coded positions.
pub(crate) fn four_pulses_17(signs: i16, index: i16, code: &mut Code) {
    let g = |v: i16| DGRAY[(v & 7) as usize] as usize;
    let p0 = g(index) * 5;
    let p1 = g(index >> 3) * 5 + 1;
    let p2 = g(index >> 6) * 5 + 2;
    let p3 = g(index >> 10) * 5 + 3 + ((index >> 9) & 1) as usize;
    *code = [0; L_SUBFR];
    code[p0] = amp(signs);
    code[p1] = amp(signs >> 1);
    code[p2] = amp(signs >> 2);
    code[p3] = amp(signs >> 3);
}

/// Splits a 10-bit compressed triple of track positions (`decompress10`).
fn unpack_triple(msbs: i16, lsbs: i16) -> (i16, i16, i16) {
    let msbs = msbs.min(124); // codes 125..127 are unused; keep positions on the grid
    let ia0 = mult(msbs, 1311); // msbs / 25
    let ia = msbs - ia0 * 25; // msbs % 25
    let ib = ia - mult(ia, 6554) * 5; // ia % 5
    let ic = lsbs & 3;
    let a = (ib << 1) + (ic & 1);
    let b = (mult(ia, 6554) << 1) + (ic >> 1);
    let c = (lsbs >> 2) + (ia0 << 1);
    (a, b, c)
}

/// 10.2 kbit/s: eight pulses, 31 bits (4 sign bits + three compressed position fields).
pub(crate) fn eight_pulses_31(p: &[i16], code: &mut Code) {
    let mut pos = [0i16; 8];
    let (a, b, c) = unpack_triple(p[4] >> 3, p[4] & 7);
    pos[0] = a;
    pos[4] = b;
    pos[1] = c;
    let (a, b, c) = unpack_triple(p[5] >> 3, p[5] & 7);
    pos[2] = a;
    pos[6] = b;
    pos[5] = c;
    // The last field packs two positions in 7 bits.
    let msbs = p[6] >> 2;
    let lsbs = p[6] & 3;
    let v = msbs * 25 + 12; // L_shr(L_mult(msbs, 25), 1) + 12
    let m = v >> 5; // 0..24
    let q5 = mult(m, 6554); // m / 5
    let mut ib = m - q5 * 5;
    if q5 & 1 == 1 {
        ib = 4 - ib;
    }
    pos[3] = (ib << 1) + (lsbs & 1);
    pos[7] = (q5 << 1) + (lsbs >> 1);

    *code = [0; L_SUBFR];
    for j in 0..4 {
        let pos1 = ((pos[j] as usize) << 2) + j;
        let mut sign: i16 = if p[j] == 0 { 8191 } else { -8191 };
        if pos1 < L_SUBFR {
            code[pos1] = sign;
        }
        let pos2 = ((pos[j + 4] as usize) << 2) + j;
        if pos2 < pos1 {
            sign = negate(sign);
        }
        if pos2 < L_SUBFR {
            code[pos2] = add(code[pos2], sign);
        }
    }
}

/// 12.2 kbit/s: ten pulses, 35 bits (5 × (3+1) + 5 × 3), Gray-coded positions.
pub(crate) fn ten_pulses_35(p: &[i16], code: &mut Code) {
    *code = [0; L_SUBFR];
    for j in 0..5 {
        let t = p[j];
        let pos1 = DGRAY[(t & 7) as usize] as usize * 5 + j;
        let mut sign: i16 = if (t >> 3) & 1 == 0 { 4096 } else { -4096 };
        code[pos1] = sign;
        let pos2 = DGRAY[(p[j + 5] & 7) as usize] as usize * 5 + j;
        if pos2 < pos1 {
            sign = negate(sign);
        }
        code[pos2] = add(code[pos2], sign);
    }
}

/// Pitch sharpening of the innovation: `c[i] += factor · c[i - lag]` for `i >= lag` (in place,
/// so the filter feeds back on itself).
pub(crate) fn sharpen(code: &mut Code, lag: i16, factor: i16) {
    let t0 = lag.max(0) as usize;
    for i in t0..L_SUBFR {
        code[i] = add(code[i], mult(code[i - t0], factor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec_core::codecs::amr::nb::codebook::FixedCodebook;

    #[test]
    fn codebooks_match_the_oracle() {
        let mut r = 0x2545_f491u32;
        let mut rnd = |bits: u32| {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            (r & ((1 << bits) - 1)) as u16
        };
        for _ in 0..3000 {
            let f7 = [rnd(1), rnd(1), rnd(1), rnd(1), rnd(10), rnd(10), rnd(7)];
            let theirs = FixedCodebook::EightPulses31Bit(f7).decode(&mut Default::default());
            let mut ours = [0i16; L_SUBFR];
            let p: Vec<i16> = f7.iter().map(|&v| v as i16).collect();
            eight_pulses_31(&p, &mut ours);
            let t: Vec<i16> = theirs.iter().map(|w| w.0).collect();
            assert_eq!(t, ours.to_vec(), "8 pulses {f7:?}");
            let mut f10 = [0u16; 10];
            for (i, f) in f10.iter_mut().enumerate() {
                *f = rnd(if i < 5 { 4 } else { 3 });
            }
            let theirs = FixedCodebook::TenPulses35Bit(f10).decode(&mut Default::default());
            let p: Vec<i16> = f10.iter().map(|&v| v as i16).collect();
            ten_pulses_35(&p, &mut ours);
            let t: Vec<i16> = theirs.iter().map(|w| w.0).collect();
            assert_eq!(t, ours.to_vec(), "10 pulses");
        }
    }
}
