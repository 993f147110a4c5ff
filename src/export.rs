//! Stage `export`: a [`Transcript`] as JSON, SRT, WebVTT, RTTM or plain text.
//!
//! Every writer takes any [`Write`]; [`write_path`] writes a file atomically (a temporary file
//! in the same directory, synced, then renamed over the target), so a reader never sees a
//! half-written transcript.
//!
//! Conventions shared by the subtitle formats:
//! - times are the segment's sample times rounded to the millisecond; a cue that would be
//!   zero-length after rounding, or has no text, is left out (RTTM keeps text-less speaker
//!   turns); cues are numbered (SRT) consecutively from 1 over what is written;
//! - cues are written in order of start time (a stable sort, so equal starts keep the
//!   transcript's order); cues may overlap (different speakers talking at once), which SRT,
//!   WebVTT and RTTM all allow;
//! - hours are at least two digits and grow past 99 (`100:00:00,000`);
//! - text is cleaned so it cannot break the format: no blank lines, no `-->`
//!   (SRT: becomes `->`; WebVTT: `<`, `>` and `&` are escaped), no `\r`.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::atomic::write_atomic;
use crate::time::to_ms;
use crate::transcript::{Transcript, TranscriptSegment};
use crate::{Error, Result};

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// The transcript JSON (see [`crate::transcript`] for its shape).
    Json,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles with `<v speaker>` voice spans.
    Vtt,
    /// NIST RTTM speaker turns.
    Rttm,
    /// Plain text, one segment per line, the speaker named when it changes.
    Text,
}

impl Format {
    /// Every format, in the order above.
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Srt,
        Format::Vtt,
        Format::Rttm,
        Format::Text,
    ];

    /// The file extension, without the dot (`json`, `srt`, `vtt`, `rttm`, `txt`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Srt => "srt",
            Format::Vtt => "vtt",
            Format::Rttm => "rttm",
            Format::Text => "txt",
        }
    }

    /// Parses a format name as given on a command line (`json`, `srt`, `vtt`/`webvtt`,
    /// `rttm`, `txt`/`text`), case-insensitively.
    pub fn from_name(name: &str) -> Result<Format> {
        match name.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "srt" => Ok(Format::Srt),
            "vtt" | "webvtt" => Ok(Format::Vtt),
            "rttm" => Ok(Format::Rttm),
            "txt" | "text" => Ok(Format::Text),
            other => Err(Error::config(format!(
                "unknown output format {other:?} (expected json, srt, vtt, rttm or txt)"
            ))),
        }
    }

    /// Writes `t` in this format to `w`.
    pub fn write<W: Write>(self, t: &Transcript, w: W) -> Result<()> {
        match self {
            Format::Json => to_json(t, w),
            Format::Srt => to_srt(t, w),
            Format::Vtt => to_vtt(t, w),
            Format::Rttm => to_rttm(t, w),
            Format::Text => to_text(t, w),
        }
    }

    /// Renders `t` in this format to a string.
    pub fn render(self, t: &Transcript) -> Result<String> {
        let mut v = Vec::new();
        self.write(t, &mut v)?;
        String::from_utf8(v).map_err(|e| {
            Error::new(crate::ErrorKind::Encode {
                what: e.to_string(),
            })
        })
    }
}

/// Writes the transcript JSON (pretty-printed, trailing newline).
pub fn to_json<W: Write>(t: &Transcript, w: W) -> Result<()> {
    let mut w = BufWriter::new(w);
    serde_json::to_writer_pretty(&mut w, t).map_err(|e| match e.io_error_kind() {
        Some(kind) => Error::io(None, io::Error::new(kind, e.to_string())),
        None => Error::new(crate::ErrorKind::Encode {
            what: e.to_string(),
        }),
    })?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}

/// Writes SubRip: cues numbered from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the speaker named
/// (`speaker_0: ...`) on the first cue and whenever it changes.
pub fn to_srt<W: Write>(t: &Transcript, w: W) -> Result<()> {
    let mut w = BufWriter::new(w);
    let mut n = 0u64;
    let mut last_speaker: Option<&str> = None;
    for seg in by_start(t) {
        let Some((a, b)) = cue_ms(seg) else { continue };
        let lines = clean_lines(&seg.text, |l| l.replace("-->", "->"));
        if lines.is_empty() {
            continue;
        }
        n += 1;
        writeln!(w, "{n}")?;
        writeln!(w, "{} --> {}", clock(a, ','), clock(b, ','))?;
        let speaker = seg.speaker.as_deref();
        let mut first = true;
        for line in lines {
            if first && speaker.is_some() && speaker != last_speaker {
                let name = one_line(speaker.unwrap_or_default()).replace("-->", "->");
                writeln!(w, "{name}: {line}")?;
            } else {
                writeln!(w, "{line}")?;
            }
            first = false;
        }
        last_speaker = speaker;
        writeln!(w)?;
    }
    w.flush()?;
    Ok(())
}

/// Writes WebVTT: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm` whose text is
/// wrapped in `<v speaker>` when the segment has a speaker.
pub fn to_vtt<W: Write>(t: &Transcript, w: W) -> Result<()> {
    let mut w = BufWriter::new(w);
    writeln!(w, "WEBVTT")?;
    writeln!(w)?;
    for seg in by_start(t) {
        let Some((a, b)) = cue_ms(seg) else { continue };
        let lines = clean_lines(&seg.text, vtt_escape);
        if lines.is_empty() {
            continue;
        }
        writeln!(w, "{} --> {}", clock(a, '.'), clock(b, '.'))?;
        let text = lines.join("\n");
        match seg.speaker.as_deref() {
            Some(s) => writeln!(w, "<v {}>{text}", vtt_escape(&one_line(s)))?,
            None => writeln!(w, "{text}")?,
        }
        writeln!(w)?;
    }
    w.flush()?;
    Ok(())
}

/// Writes RTTM: one `SPEAKER <file> <chnl> <start> <dur> <NA> <NA> <speaker> <NA> <NA>` line
/// per segment (seconds with 3 decimals). `<file>` is the source's name without extension, and
/// the speaker label, with whitespace replaced by `_`; a segment without speaker is `unknown`.
/// `<chnl>` is the 1-based channel of a separately transcribed channel
/// ([`TranscriptSegment::channel`] + 1), else 1.
pub fn to_rttm<W: Write>(t: &Transcript, w: W) -> Result<()> {
    let mut w = BufWriter::new(w);
    let file = rttm_file_id(&t.metadata.source);
    for seg in &t.segments {
        let Some((a, b)) = cue_ms(seg) else { continue };
        let speaker = seg
            .speaker
            .as_deref()
            .map(no_space)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        let chnl = seg.channel.map_or(1, |c| u32::from(c) + 1);
        writeln!(
            w,
            "SPEAKER {file} {chnl} {} {} <NA> <NA> {speaker} <NA> <NA>",
            secs3(a),
            secs3(b - a)
        )?;
    }
    w.flush()?;
    Ok(())
}

/// Writes plain text: one segment per line (zero-length ones left out, like the subtitles);
/// the speaker (`speaker_0: `) is named on the first
/// line and whenever it changes.
pub fn to_text<W: Write>(t: &Transcript, w: W) -> Result<()> {
    let mut w = BufWriter::new(w);
    let mut last_speaker: Option<&str> = None;
    for seg in &t.segments {
        if cue_ms(seg).is_none() {
            continue;
        }
        let text = clean_lines(&seg.text, str::to_string).join(" ");
        if text.is_empty() {
            continue;
        }
        let speaker = seg.speaker.as_deref();
        match speaker {
            Some(s) if speaker != last_speaker => writeln!(w, "{}: {text}", one_line(s))?,
            _ => writeln!(w, "{text}")?,
        }
        last_speaker = speaker;
    }
    w.flush()?;
    Ok(())
}

/// The RTTM file id for a source name: its file name without extension, whitespace replaced
/// by `_`; `audio` when nothing is left.
pub(crate) fn rttm_file_id(source: &str) -> String {
    let name = Path::new(source)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = no_space(&name);
    if id.is_empty() {
        "audio".to_string()
    } else {
        id
    }
}

/// Writes `t` to `path` in `format`, atomically (temp file in the same directory + rename).
pub fn write_path(format: Format, t: &Transcript, path: &Path) -> Result<()> {
    write_atomic(path, |w| format.write(t, w))
}

/// The segments in order of start (stable): a transcript built by hand may be unsorted, and
/// subtitle players expect cues by start time.
fn by_start(t: &Transcript) -> Vec<&TranscriptSegment> {
    let mut v: Vec<&TranscriptSegment> = t.segments.iter().collect();
    v.sort_by_key(|s| s.start);
    v
}

/// The cue's start and end in whole milliseconds, or `None` when it would be zero-length.
fn cue_ms(seg: &TranscriptSegment) -> Option<(u64, u64)> {
    let a = to_ms(seg.start);
    let b = to_ms(seg.end.max(seg.start));
    (b > a).then_some((a, b))
}

/// `HH:MM:SS<sep>mmm` (hours grow past two digits).
fn clock(ms: u64, sep: char) -> String {
    let h = ms / 3_600_000;
    let m = ms / 60_000 % 60;
    let s = ms / 1000 % 60;
    format!("{h:02}:{m:02}:{s:02}{sep}{:03}", ms % 1000)
}

/// `S.mmm` seconds.
fn secs3(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Splits text into non-blank, trimmed lines, each passed through `clean`.
fn clean_lines(text: &str, clean: impl Fn(&str) -> String) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(clean)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Collapses all whitespace (newlines included) into single spaces.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Replaces runs of whitespace with `_`.
fn no_space(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join("_")
}

/// Escapes `&`, `<` and `>` for WebVTT cue text.
fn vtt_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats() {
        assert_eq!(clock(0, ','), "00:00:00,000");
        assert_eq!(clock(3_723_004, '.'), "01:02:03.004");
        assert_eq!(clock(100 * 3_600_000 + 1, ','), "100:00:00,001");
        assert_eq!(secs3(1005), "1.005");
    }

    #[test]
    fn rttm_ids_have_no_spaces() {
        assert_eq!(rttm_file_id("dir/call 17 b.wav"), "call_17_b");
        assert_eq!(rttm_file_id(""), "audio");
    }
}
