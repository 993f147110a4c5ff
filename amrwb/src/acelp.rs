//! The algebraic (fixed) codebook: pulse positions and signs from the transmitted indices
//! (TS 26.190 §5.8), for all nine modes.
//!
//! A pulse is coded as a position within its track plus a sign bit at weight `2^N`; several
//! pulses in one track share sign bits by position order, and larger sets split the track in
//! halves. Each helper returns "position codes": bits 0..3 the slot in the track, bit 4 set
//! for a negative pulse.

/// Subframe length.
pub(crate) const L_SUBFR: usize = 64;

/// Slots per track in the 4-track codebooks.
const NB_POS: i32 = 16;

/// One pulse in `N` position bits plus a sign bit.
#[inline]
fn one(index: i32, n: i32, offset: i32) -> i32 {
    let mut p = (index & ((1 << n) - 1)) + offset;
    if (index >> n) & 1 == 1 {
        p += NB_POS;
    }
    p
}

/// Two pulses in `2N+1` bits: one shared sign, the order of the positions tells the other.
#[inline]
fn two(index: i32, n: i32, offset: i32, out: &mut [i32]) {
    let mask = (1 << n) - 1;
    let mut p1 = ((index >> n) & mask) + offset;
    let mut p2 = (index & mask) + offset;
    let negative = (index >> (2 * n)) & 1 == 1;
    if p2 < p1 {
        if negative {
            p1 += NB_POS;
        } else {
            p2 += NB_POS;
        }
    } else if negative {
        p1 += NB_POS;
        p2 += NB_POS;
    }
    out[0] = p1;
    out[1] = p2;
}

/// Three pulses in `3N+1` bits: two in one half of the track, one anywhere.
#[inline]
fn three(index: i32, n: i32, offset: i32, out: &mut [i32]) {
    let half = if (index >> (2 * n - 1)) & 1 != 0 {
        offset + (1 << (n - 1))
    } else {
        offset
    };
    two(index & ((1 << (2 * n - 1)) - 1), n - 1, half, out);
    out[2] = one((index >> (2 * n)) & ((1 << (n + 1)) - 1), n, offset);
}

/// Four pulses in `4N+1` bits (the building block of the 4N coding).
#[inline]
fn four_n1(index: i32, n: i32, offset: i32, out: &mut [i32]) {
    let half = if (index >> (2 * n - 1)) & 1 != 0 {
        offset + (1 << (n - 1))
    } else {
        offset
    };
    two(index & ((1 << (2 * n - 1)) - 1), n - 1, half, out);
    two(
        (index >> (2 * n)) & ((1 << (2 * n + 1)) - 1),
        n,
        offset,
        &mut out[2..],
    );
}

/// Four pulses in `4N` bits: two bits say how they split between the track halves.
#[inline]
fn four(index: i32, n: i32, offset: i32, out: &mut [i32]) {
    let n1 = n - 1;
    let upper = offset + (1 << n1);
    match (index >> (4 * n - 2)) & 3 {
        0 => {
            let base = if (index >> (4 * n1 + 1)) & 1 != 0 {
                upper
            } else {
                offset
            };
            four_n1(index, n1, base, out);
        }
        1 => {
            out[0] = one(index >> (3 * n1 + 1), n1, offset);
            three(index, n1, upper, &mut out[1..]);
        }
        2 => {
            two(index >> (2 * n1 + 1), n1, offset, out);
            two(index, n1, upper, &mut out[2..]);
        }
        _ => {
            three(index >> (n1 + 1), n1, offset, out);
            out[3] = one(index, n1, upper);
        }
    }
}

/// Five pulses in `5N` bits.
#[inline]
fn five(index: i32, n: i32, offset: i32, out: &mut [i32]) {
    let n1 = n - 1;
    let upper = offset + (1 << n1);
    let rest = index >> (2 * n + 1);
    let base = if (index >> (5 * n - 1)) & 1 != 0 {
        upper
    } else {
        offset
    };
    three(rest, n1, base, out);
    two(index, n, offset, &mut out[3..]);
}

/// Six pulses in `6N − 2` bits.
#[inline]
fn six(index: i32, n: i32, offset: i32, out: &mut [i32]) {
    let n1 = n - 1;
    let upper = offset + (1 << n1);
    let (a, b) = if (index >> (6 * n - 5)) & 1 == 0 {
        (offset, upper)
    } else {
        (upper, offset)
    };
    match (index >> (6 * n - 4)) & 3 {
        0 => {
            five(index >> n, n1, a, out);
            out[5] = one(index, n1, a);
        }
        1 => {
            five(index >> n, n1, a, out);
            out[5] = one(index, n1, b);
        }
        2 => {
            four(index >> (2 * n1 + 1), n1, a, out);
            two(index, n1, b, &mut out[4..]);
        }
        _ => {
            three(index >> (3 * n1 + 1), n1, offset, out);
            three(index, n1, upper, &mut out[3..]);
        }
    }
}

/// Adds pulses of amplitude ±512 (Q9) on track `track`.
#[inline]
fn place(code: &mut [i16; L_SUBFR], track: usize, positions: &[i32]) {
    for &p in positions {
        let slot = (((p & (NB_POS - 1)) as usize) << 2) + track;
        let delta = if p & NB_POS == 0 { 512 } else { -512 };
        // At most six pulses of ±512 per slot: no overflow.
        code[slot & (L_SUBFR - 1)] += delta;
    }
}

/// Decodes one subframe's innovation for `mode` (0..=8) from its indices.
pub(crate) fn decode(mode: usize, idx: &[u16; 8], code: &mut [i16; L_SUBFR]) {
    *code = [0; L_SUBFR];
    let ix = |k: usize| i32::from(idx[k]);
    let mut pos = [0i32; 6];
    match mode {
        0 => {
            // Two tracks of 32 positions, one pulse each, 12 bits.
            let index = ix(0);
            let i = ((index >> 5) & 0x3e) as usize;
            code[i] = if (index >> 6) & 32 == 0 { 512 } else { -512 };
            let i = (((index & 0x1f) << 1) + 1) as usize;
            code[i] = if index & 32 == 0 { 512 } else { -512 };
        }
        1 => {
            for t in 0..4 {
                pos[0] = one(ix(t), 4, 0);
                place(code, t, &pos[..1]);
            }
        }
        2 => {
            for t in 0..4 {
                two(ix(t), 4, 0, &mut pos);
                place(code, t, &pos[..2]);
            }
        }
        3 => {
            for t in 0..2 {
                three(ix(t), 4, 0, &mut pos);
                place(code, t, &pos[..3]);
            }
            for t in 2..4 {
                two(ix(t), 4, 0, &mut pos);
                place(code, t, &pos[..2]);
            }
        }
        4 => {
            for t in 0..4 {
                three(ix(t), 4, 0, &mut pos);
                place(code, t, &pos[..3]);
            }
        }
        5 => {
            for t in 0..4 {
                four((ix(t) << 14) + ix(t + 4), 4, 0, &mut pos);
                place(code, t, &pos[..4]);
            }
        }
        6 => {
            for t in 0..2 {
                five((ix(t) << 10) + ix(t + 4), 4, 0, &mut pos);
                place(code, t, &pos[..5]);
            }
            for t in 2..4 {
                four((ix(t) << 14) + ix(t + 4), 4, 0, &mut pos);
                place(code, t, &pos[..4]);
            }
        }
        _ => {
            for t in 0..4 {
                six((ix(t) << 11) + ix(t + 4), 4, 0, &mut pos);
                place(code, t, &pos[..6]);
            }
        }
    }
}
