//! Content probing: which container / codec a byte stream holds, from its first bytes only.
//!
//! The file name is never consulted. Each check is a fixed magic number, except MP3 without an
//! ID3 tag, which needs two consecutive valid frame headers so that random bytes starting with
//! `0xFF 0xE?` are not taken for audio.

use std::io::{Read, Seek, SeekFrom};

use super::AudioFormat;
use crate::error::{Error, ErrorKind, Result};

/// How many bytes the probe looks at (an Ogg page header with a full segment table and the
/// first 8 bytes of its first packet fit).
const PROBE_LEN: usize = 27 + 255 + 16;

/// Reads up to `buf.len()` bytes, stopping early only at end of input.
pub(crate) fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Probes `r` from its current position and seeks back to where it started.
pub(crate) fn probe<R: Read + Seek>(r: &mut R) -> Result<AudioFormat> {
    let start = r.stream_position()?;
    let mut head = [0u8; PROBE_LEN];
    let n = read_up_to(r, &mut head)?;
    let head = &head[..n];
    let found = classify(head, r, start);
    r.seek(SeekFrom::Start(start))?;
    found
}

fn unsupported(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unsupported {
        path: None,
        what: what.into(),
    })
}

fn classify<R: Read + Seek>(head: &[u8], r: &mut R, start: u64) -> Result<AudioFormat> {
    if head.is_empty() {
        return Err(Error::new(ErrorKind::Empty { path: None }));
    }
    let f = |x| Ok(x);
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        return f(AudioFormat::Wav);
    }
    if head.len() >= 12 && (&head[0..4] == b"RF64" || &head[0..4] == b"BW64") {
        return Err(unsupported("RF64/BW64 (64-bit WAV) files"));
    }
    if head.len() >= 4 && &head[0..4] == b"RIFX" {
        return Err(unsupported("big-endian RIFX WAV files"));
    }
    if head.starts_with(b"fLaC") {
        return f(AudioFormat::Flac);
    }
    if head.starts_with(b"OggS") {
        return ogg_codec(head);
    }
    // Multichannel AMR first: "#!AMR_MC1.0\n" shares the "#!AMR" prefix.
    if head.starts_with(b"#!AMR_MC1.0\n") || head.starts_with(b"#!AMR-WB_MC1.0\n") {
        return Err(unsupported(
            "multichannel AMR storage format (#!AMR_MC1.0 / #!AMR-WB_MC1.0)",
        ));
    }
    if head.starts_with(b"#!AMR-WB\n") {
        return f(AudioFormat::AmrWb);
    }
    if head.starts_with(b"#!AMR\n") {
        return f(AudioFormat::AmrNb);
    }
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return f(AudioFormat::Mp4Aac);
    }
    if head.len() >= 10 && head.starts_with(b"ID3") {
        // Skip the ID3v2 tag (syncsafe size) and look at what follows it.
        let size = head[6..10]
            .iter()
            .fold(0u64, |a, &b| (a << 7) | u64::from(b & 0x7f));
        let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
        r.seek(SeekFrom::Start(start + 10 + size + footer))?;
        let mut after = [0u8; 4];
        let k = read_up_to(r, &mut after)?;
        if k == 4 && &after == b"fLaC" {
            return f(AudioFormat::Flac);
        }
        if k == 4 && is_adts(&after) {
            return Err(unsupported("raw AAC in ADTS framing (use M4A)"));
        }
        return f(AudioFormat::Mp3);
    }
    if let Some(len) = mpa_frame_len(head) {
        // Demand a second frame header right after the first one.
        r.seek(SeekFrom::Start(start + len as u64))?;
        let mut next = [0u8; 4];
        let k = read_up_to(r, &mut next)?;
        if k < 4 || mpa_frame_len(&next).is_some() {
            return f(AudioFormat::Mp3);
        }
    }
    if head.len() >= 4 && is_adts(head) {
        return Err(unsupported("raw AAC in ADTS framing (use M4A)"));
    }
    Err(Error::new(ErrorKind::UnrecognizedFormat {
        path: None,
        detail: describe(head),
    }))
}

fn is_adts(h: &[u8]) -> bool {
    h.len() >= 2 && h[0] == 0xFF && (h[1] & 0xF6) == 0xF0
}

/// The length in bytes of the MPEG audio (layer I/II/III) frame whose header starts `h`, or
/// `None` if `h` does not start with a valid header.
pub(crate) fn mpa_frame_len(h: &[u8]) -> Option<usize> {
    if h.len() < 4 || h[0] != 0xFF || (h[1] & 0xE0) != 0xE0 {
        return None;
    }
    let version = (h[1] >> 3) & 3; // 0: 2.5, 1: reserved, 2: v2, 3: v1
    let layer = (h[1] >> 1) & 3; // 1: III, 2: II, 3: I
    let br_idx = usize::from(h[2] >> 4);
    let sr_idx = usize::from((h[2] >> 2) & 3);
    let padding = usize::from((h[2] >> 1) & 1);
    if version == 1 || layer == 0 || br_idx == 0 || br_idx == 15 || sr_idx == 3 {
        return None;
    }
    const V1: [[u32; 15]; 3] = [
        [
            0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ],
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ],
        [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ],
    ];
    const V2: [[u32; 15]; 2] = [
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ],
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ];
    let rates = [44_100u32, 48_000, 32_000];
    let rate = match version {
        3 => rates[sr_idx],
        2 => rates[sr_idx] / 2,
        _ => rates[sr_idx] / 4,
    };
    let li = usize::from(3 - layer); // 0: I, 1: II, 2: III
    let kbps = if version == 3 {
        V1[li][br_idx]
    } else {
        V2[usize::from(li > 0)][br_idx]
    };
    let bps = kbps * 1000;
    let len = match li {
        0 => (12 * bps / rate + padding as u32) * 4,
        1 => 144 * bps / rate + padding as u32,
        _ if version == 3 => 144 * bps / rate + padding as u32,
        _ => 72 * bps / rate + padding as u32,
    };
    (len >= 4).then_some(len as usize)
}

/// Finds the codec of an Ogg stream from the first packet of its first page.
fn ogg_codec(head: &[u8]) -> Result<AudioFormat> {
    if head.len() < 27 {
        return Err(Error::new(ErrorKind::Malformed {
            path: None,
            what: "Ogg page header cut short".into(),
        }));
    }
    let nseg = usize::from(head[26]);
    let first = head.get(27 + nseg..).unwrap_or(&[]);
    if first.starts_with(b"OpusHead") {
        return Ok(AudioFormat::OggOpus);
    }
    if first.starts_with(b"\x01vorbis") {
        return Ok(AudioFormat::OggVorbis);
    }
    let what = if first.starts_with(b"\x7fFLAC") {
        "FLAC in Ogg"
    } else if first.starts_with(b"Speex") {
        "Speex in Ogg"
    } else if first.starts_with(b"\x80theora") {
        "Theora video in Ogg"
    } else if first.len() < 8 {
        return Err(Error::new(ErrorKind::Malformed {
            path: None,
            what: "Ogg first page cut short".into(),
        }));
    } else {
        "an unknown codec in Ogg"
    };
    Err(unsupported(what))
}

/// A short description of unrecognised content for the error message.
fn describe(head: &[u8]) -> String {
    let shown = &head[..head.len().min(8)];
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    let texty = head
        .iter()
        .take(64)
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if texty {
        format!("looks like text; first bytes {}", hex.join(" "))
    } else {
        format!("first bytes {}", hex.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn p(b: &[u8]) -> Result<AudioFormat> {
        probe(&mut Cursor::new(b.to_vec()))
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(p(b"RIFF\0\0\0\0WAVEfmt ").unwrap(), AudioFormat::Wav);
        assert_eq!(p(b"fLaC\0\0\0\x22").unwrap(), AudioFormat::Flac);
        assert_eq!(p(b"#!AMR\n\x3c").unwrap(), AudioFormat::AmrNb);
        assert_eq!(p(b"#!AMR-WB\n\x3c").unwrap(), AudioFormat::AmrWb);
        assert_eq!(
            p(b"\0\0\0\x20ftypM4A \0\0\0\0").unwrap(),
            AudioFormat::Mp4Aac
        );
        assert_eq!(
            p(b"ID3\x04\0\0\0\0\0\0\xff\xfb\x90\x00").unwrap(),
            AudioFormat::Mp3
        );
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            p(b"").unwrap_err().kind(),
            ErrorKind::Empty { .. }
        ));
        assert!(matches!(
            p(b"hello, this is text").unwrap_err().kind(),
            ErrorKind::UnrecognizedFormat { .. }
        ));
        assert!(matches!(
            p(b"#!AMR_MC1.0\n\0\0\0\x01").unwrap_err().kind(),
            ErrorKind::Unsupported { .. }
        ));
        assert!(matches!(
            p(b"#!AMR-WB_MC1.0\n\0\0\0\x01").unwrap_err().kind(),
            ErrorKind::Unsupported { .. }
        ));
        // A lone frame sync followed by garbage is not MP3.
        let mut b = vec![0xFF, 0xFB, 0x90, 0x00];
        b.extend(std::iter::repeat_n(0x55u8, 1000));
        assert!(matches!(
            p(&b).unwrap_err().kind(),
            ErrorKind::UnrecognizedFormat { .. }
        ));
    }
}
