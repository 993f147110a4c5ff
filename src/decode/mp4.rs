//! Encoder priming and padding for AAC in MP4/M4A, which Symphonia 0.6 does not apply (its
//! isomp4 reader ignores edit lists). Read from the first sound track's edit list (`elst`), or
//! failing that from iTunes' `iTunSMPB` tag.

use std::io::{Read, Seek, SeekFrom};

use super::malformed;
use super::probe::read_up_to;
use super::source::Src;
use crate::error::Result;

/// The part of the decoded track to present, in frames at the track's sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trim {
    /// Frames to drop at the start (encoder priming).
    pub(crate) skip: u64,
    /// Frames to keep after that, when known (the rest is padding).
    pub(crate) keep: Option<u64>,
}

/// Largest `moov` box we read into memory (its sample tables grow with duration: about 6 MB
/// for 10 hours of AAC).
const MAX_MOOV: u64 = 64 << 20;

/// A trim as stored: in media / movie time-scale units, or (time scales 0) in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawTrim {
    skip: u64,
    media_ts: u32,
    keep: Option<u64>,
    movie_ts: u32,
}

impl RawTrim {
    /// The trim in frames at `rate`.
    pub(crate) fn at_rate(self, rate: u32) -> Option<Trim> {
        if self.media_ts == 0 {
            return Some(Trim {
                skip: self.skip,
                keep: self.keep,
            });
        }
        Some(Trim {
            skip: rescale(self.skip, self.media_ts, rate)?,
            keep: match self.keep {
                Some(k) => Some(rescale(k, self.movie_ts, rate)?),
                None => None,
            },
        })
    }
}

/// Finds the raw trim of the first sound track. Leaves `src` at 0.
pub(crate) fn trim(src: &mut Src) -> Result<Option<RawTrim>> {
    let len = src.len();
    let mut pos = 0u64;
    let mut found = None;
    for _ in 0..1000 {
        if pos + 8 > len {
            break;
        }
        src.seek(SeekFrom::Start(pos))?;
        let mut h = [0u8; 16];
        if read_up_to(src, &mut h[..8])? < 8 {
            break;
        }
        let mut size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let mut hdr = 8;
        if size == 1 {
            if read_up_to(src, &mut h[8..16])? < 8 {
                break;
            }
            size = u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
            hdr = 16;
        } else if size == 0 {
            size = len - pos;
        }
        if size < hdr {
            break;
        }
        if &h[4..8] == b"moov" {
            let body = (size - hdr).min(len - pos - hdr);
            if body <= MAX_MOOV {
                let mut moov = Vec::new();
                Read::take(&mut *src, body).read_to_end(&mut moov)?;
                check_sample_tables(&moov)?;
                found = parse_moov(&moov);
            }
            break;
        }
        pos += size;
    }
    src.seek(SeekFrom::Start(0))?;
    Ok(found)
}

/// Refuses sample tables whose counts overflow the 32-bit sample numbers Symphonia's isomp4
/// reader adds up unchecked (`stts` counts summed in a `u32`, `stsc` first chunk + sample
/// index): a panic in debug builds, wrapped (wrong) timestamps in release.
fn check_sample_tables(moov: &[u8]) -> Result<()> {
    for (k, trak) in boxes(moov) {
        if k != b"trak" {
            continue;
        }
        let Some(stbl) = child(trak, b"mdia")
            .and_then(|m| child(m, b"minf"))
            .and_then(|m| child(m, b"stbl"))
        else {
            continue;
        };
        // stts: version/flags, entry count, then (sample count, sample delta) pairs.
        let mut samples = 0u32;
        if let Some(stts) = child(stbl, b"stts") {
            let count = be32(stts, 4).unwrap_or(0) as usize;
            for i in 0..count.min(stts.len().saturating_sub(8) / 8) {
                let n = be32(stts, 8 + 8 * i).unwrap_or(0);
                samples = samples.checked_add(n).ok_or_else(|| {
                    malformed("MP4 time-to-sample table (stts) counts more than 2^32 samples")
                })?;
            }
        }
        // stsc: version/flags, entry count, then (first chunk, samples per chunk, desc) triples.
        if let Some(stsc) = child(stbl, b"stsc") {
            let count = be32(stsc, 4).unwrap_or(0) as usize;
            for i in 0..count.min(stsc.len().saturating_sub(8) / 12) {
                let first = be32(stsc, 8 + 12 * i).unwrap_or(0);
                if first.checked_add(samples).is_none() {
                    return Err(malformed(format!(
                        "MP4 sample-to-chunk table (stsc) names chunk {first}"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some((u64::from(be32(b, at)?) << 32) | u64::from(be32(b, at + 4)?))
}

/// Iterates the child boxes of `b` as (type, body).
fn boxes(b: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let size = be32(b, pos)? as usize;
        let kind = b.get(pos + 4..pos + 8)?;
        let (hdr, size) = match size {
            0 => (8, b.len() - pos),
            1 => (16, usize::try_from(be64(b, pos + 8)?).ok()?),
            s => (8, s),
        };
        if size < hdr {
            return None;
        }
        let body = b.get(pos + hdr..pos.checked_add(size)?)?;
        pos += size;
        Some((kind, body))
    })
}

fn child<'a>(b: &'a [u8], kind: &[u8]) -> Option<&'a [u8]> {
    boxes(b).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

fn parse_moov(moov: &[u8]) -> Option<RawTrim> {
    let mvhd = child(moov, b"mvhd")?;
    let movie_ts = if mvhd.first() == Some(&1) {
        be32(mvhd, 20)?
    } else {
        be32(mvhd, 12)?
    };
    for (k, trak) in boxes(moov) {
        if k != b"trak" {
            continue;
        }
        let mdia = child(trak, b"mdia")?;
        let hdlr = child(mdia, b"hdlr")?;
        if hdlr.get(8..12) != Some(b"soun".as_slice()) {
            continue;
        }
        let mdhd = child(mdia, b"mdhd")?;
        let media_ts = if mdhd.first() == Some(&1) {
            be32(mdhd, 20)?
        } else {
            be32(mdhd, 12)?
        };
        if let Some(t) = child(trak, b"edts")
            .and_then(|e| child(e, b"elst"))
            .and_then(|elst| from_elst(elst, movie_ts, media_ts))
        {
            return Some(t);
        }
        break;
    }
    from_itunsmpb(moov)
}

/// Scales `v` from `from` units per second to `to` units per second, rounding to nearest.
fn rescale(v: u64, from: u32, to: u32) -> Option<u64> {
    if from == 0 {
        return None;
    }
    let v = (u128::from(v) * u128::from(to) * 2 + u128::from(from)) / (2 * u128::from(from));
    u64::try_from(v).ok()
}

fn from_elst(elst: &[u8], movie_ts: u32, media_ts: u32) -> Option<RawTrim> {
    let v1 = elst.first() == Some(&1);
    let count = be32(elst, 4)? as usize;
    let entry = if v1 { 20 } else { 12 };
    let mut edits = Vec::new();
    for i in 0..count.min(elst.len() / entry) {
        let at = 8 + i * entry;
        let (dur, time) = if v1 {
            (be64(elst, at)?, be64(elst, at + 8)? as i64)
        } else {
            (
                u64::from(be32(elst, at)?),
                i64::from(be32(elst, at + 4)? as i32),
            )
        };
        if time >= 0 {
            edits.push((dur, time as u64));
        }
    }
    // One real edit is the priming/padding case; anything else is an edit we do not apply.
    let [(dur, time)] = edits[..] else {
        return None;
    };
    if media_ts == 0 || movie_ts == 0 {
        return None;
    }
    Some(RawTrim {
        skip: time,
        media_ts,
        keep: (dur > 0).then_some(dur),
        movie_ts,
    })
}

/// `iTunSMPB`: " 00000000 DELAY PADDING TOTAL ..." in hex.
fn from_itunsmpb(moov: &[u8]) -> Option<RawTrim> {
    let key = b"iTunSMPB";
    let at = moov.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = moov.get(at..)?;
    let d = rest.windows(4).position(|w| w == b"data")? + 4 + 8;
    let text = rest.get(d..(d + 120).min(rest.len()))?;
    let text: String = text
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| char::from(c))
        .collect();
    let f: Vec<u64> = text
        .split_whitespace()
        .filter_map(|s| u64::from_str_radix(s, 16).ok())
        .collect();
    let (delay, total) = (*f.get(1)?, *f.get(3)?);
    Some(RawTrim {
        skip: delay,
        media_ts: 0,
        keep: (total > 0).then_some(total),
        movie_ts: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_list_v0_gives_priming_and_length() {
        // version 0, one entry: segment 1500 ms (movie scale 1000), media time 1024.
        let mut elst = vec![0, 0, 0, 0, 0, 0, 0, 1];
        elst.extend_from_slice(&1500u32.to_be_bytes());
        elst.extend_from_slice(&1024i32.to_be_bytes());
        elst.extend_from_slice(&[0, 1, 0, 0]);
        let raw = from_elst(&elst, 1000, 44_100).unwrap();
        assert_eq!(
            raw.at_rate(44_100),
            Some(Trim {
                skip: 1024,
                keep: Some(66_150)
            })
        );
        // An empty edit (-1) before it is ignored; two real edits are not applied.
        let mut two = vec![0, 0, 0, 0, 0, 0, 0, 2];
        two.extend_from_slice(&elst[8..]);
        two.extend_from_slice(&elst[8..]);
        assert_eq!(from_elst(&two, 1000, 44_100), None);
    }

    #[test]
    fn itunsmpb() {
        let mut moov = b"....----....mean....com.apple.iTunes....name....iTunSMPB".to_vec();
        moov.extend_from_slice(b"\0\0\0\x6cdata\0\0\0\x01\0\0\0\0");
        moov.extend_from_slice(b" 00000000 00000840 000001CC 0000000000010266 00000000");
        let t = from_itunsmpb(&moov).unwrap().at_rate(44_100).unwrap();
        assert_eq!(
            t,
            Trim {
                skip: 0x840,
                keep: Some(0x10266)
            }
        );
    }
}
