//! What the emulator "hears": format sniffing, decoding (WAV via hound, FLAC and Ogg Vorbis via
//! Symphonia, AMR by frame count only), a checksum, and an energy detector for the async
//! timestamps. No speech recognition happens anywhere.
//!
//! Region detection, on the mono mixdown (mean of channels) at the file's own rate:
//! - 10 ms frames; a frame is loud when its RMS is above the threshold (default −40 dBFS,
//!   i.e. 0.01 of full scale);
//! - loud frames separated by less than 300 ms of quiet frames belong to one region;
//! - region edges are refined to the sample: the start is the first sample whose magnitude is
//!   above the threshold (looking one frame back), the end is one past the last such sample;
//! - regions shorter than 30 ms are dropped;
//! - voice: the region's dominant frequency estimated from its zero-crossing rate
//!   (`crossings / 2 / seconds`, over its loud frames): below 400 Hz or not. The answer
//!   numbers the voices in the order a job first hears them (`speaker_0` first). Without
//!   diarization every region is `speaker_0`.
//!
//! The checksum is the CRC-32 (IEEE) of the mono mixdown quantised to 16-bit little-endian
//! PCM (`round(clamp(x) * 32767)`); for AMR, which is not decoded, of the file's bytes.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

/// Container kinds the vendor accepts (wav, amr, flac, ogg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioKind {
    Wav,
    Flac,
    Ogg,
    Amr,
}

impl AudioKind {
    /// The usual file extension.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            AudioKind::Wav => "wav",
            AudioKind::Flac => "flac",
            AudioKind::Ogg => "ogg",
            AudioKind::Amr => "amr",
        }
    }

    pub(crate) fn sniff(head: &[u8]) -> Option<AudioKind> {
        if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
            Some(AudioKind::Wav)
        } else if head.starts_with(b"fLaC") {
            Some(AudioKind::Flac)
        } else if head.starts_with(b"OggS") {
            Some(AudioKind::Ogg)
        } else if head.starts_with(b"#!AMR") {
            Some(AudioKind::Amr)
        } else {
            None
        }
    }
}

/// A detected non-silent region, in frames at the file's rate, `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Region {
    pub start: u64,
    pub end: u64,
    /// 0 below 400 Hz dominant frequency, else 1.
    pub speaker: u8,
}

/// What the emulator knows about an audio file.
#[derive(Debug, Clone)]
pub(crate) struct AudioSummary {
    pub kind: AudioKind,
    pub sample_rate: u32,
    pub frames: u64,
    pub crc32: u32,
    pub regions: Vec<Region>,
}

impl AudioSummary {
    pub(crate) fn seconds(&self) -> f64 {
        if self.sample_rate == 0 {
            0.0
        } else {
            self.frames as f64 / f64::from(self.sample_rate)
        }
    }
}

/// Why audio was refused.
#[derive(Debug, Clone)]
pub(crate) enum AudioError {
    Unsupported(String),
    Malformed(String),
}

impl std::fmt::Display for AudioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioError::Unsupported(s) | AudioError::Malformed(s) => f.write_str(s),
        }
    }
}

// ---- CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) ----

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[derive(Debug, Clone)]
pub(crate) struct Crc32(u32);

impl Crc32 {
    pub(crate) fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    pub(crate) fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    pub(crate) fn finish(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

// ---- streaming analyser ----

struct Frame {
    loud: bool,
    first_loud: Option<u64>,
    last_loud: Option<u64>,
}

struct Open {
    start: u64,
    last_loud: u64,
    quiet_frames: u64,
    crossings: u64,
    loud_samples: u64,
}

/// Streaming detector + checksum over mono samples.
pub(crate) struct Analyzer {
    rate: u32,
    threshold: f32,
    frame_len: usize,
    gap_frames: u64,
    min_len: u64,
    pos: u64,
    buf: Vec<f32>,
    prev: Option<Frame>,
    open: Option<Open>,
    regions: Vec<Region>,
    crc: Crc32,
    pcm: Vec<u8>,
}

impl Analyzer {
    pub(crate) fn new(rate: u32, threshold: f32) -> Self {
        let frame_len = (rate / 100).max(1) as usize;
        Analyzer {
            rate,
            threshold,
            frame_len,
            gap_frames: 30,
            min_len: u64::from(rate) * 30 / 1000,
            pos: 0,
            buf: Vec::with_capacity(frame_len),
            prev: None,
            open: None,
            regions: Vec::new(),
            crc: Crc32::new(),
            pcm: Vec::with_capacity(8192),
        }
    }

    pub(crate) fn feed(&mut self, mono: &[f32]) {
        self.pcm.clear();
        for &x in mono {
            let q = (x.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            self.pcm.extend_from_slice(&q.to_le_bytes());
        }
        self.crc.update(&self.pcm);
        let mut rest = mono;
        while !rest.is_empty() {
            let take = (self.frame_len - self.buf.len()).min(rest.len());
            let (a, b) = rest.split_at(take);
            self.buf.extend_from_slice(a);
            rest = b;
            if self.buf.len() == self.frame_len {
                self.frame();
            }
        }
    }

    fn frame(&mut self) {
        let start = self.pos;
        let n = self.buf.len();
        if n == 0 {
            return;
        }
        let mut energy = 0.0f64;
        let mut first = None;
        let mut last = None;
        let mut crossings = 0u64;
        let mut prev_sign = self.buf.first().is_some_and(|x| *x >= 0.0);
        for (i, &x) in self.buf.iter().enumerate() {
            energy += f64::from(x) * f64::from(x);
            if x.abs() > self.threshold {
                if first.is_none() {
                    first = Some(start + i as u64);
                }
                last = Some(start + i as u64);
            }
            let s = x >= 0.0;
            if s != prev_sign {
                crossings += 1;
                prev_sign = s;
            }
        }
        let rms = (energy / n as f64).sqrt();
        let frame = Frame {
            loud: rms > f64::from(self.threshold),
            first_loud: first,
            last_loud: last,
        };
        match &mut self.open {
            Some(o) => {
                if let Some(l) = frame.last_loud {
                    o.last_loud = l;
                }
                if frame.loud {
                    o.quiet_frames = 0;
                    o.crossings += crossings;
                    o.loud_samples += n as u64;
                } else {
                    o.quiet_frames += 1;
                    if o.quiet_frames >= self.gap_frames {
                        self.close();
                    }
                }
            }
            None => {
                if frame.loud {
                    let s = self
                        .prev
                        .as_ref()
                        .and_then(|p| p.first_loud)
                        .or(frame.first_loud)
                        .unwrap_or(start);
                    self.open = Some(Open {
                        start: s,
                        last_loud: frame.last_loud.unwrap_or(start + n as u64 - 1),
                        quiet_frames: 0,
                        crossings,
                        loud_samples: n as u64,
                    });
                }
            }
        }
        self.pos += n as u64;
        self.buf.clear();
        self.prev = Some(frame);
    }

    fn close(&mut self) {
        if let Some(o) = self.open.take() {
            let end = o.last_loud + 1;
            if end.saturating_sub(o.start) >= self.min_len {
                let secs = o.loud_samples as f64 / f64::from(self.rate.max(1));
                let freq = if secs > 0.0 {
                    o.crossings as f64 / 2.0 / secs
                } else {
                    0.0
                };
                self.regions.push(Region {
                    start: o.start,
                    end,
                    speaker: u8::from(freq >= 400.0),
                });
            }
        }
    }

    pub(crate) fn finish(mut self, kind: AudioKind) -> AudioSummary {
        if !self.buf.is_empty() {
            self.frame();
        }
        self.close();
        AudioSummary {
            kind,
            sample_rate: self.rate,
            frames: self.pos,
            crc32: self.crc.finish(),
            regions: self.regions,
        }
    }
}

/// Analyses audio in memory.
pub(crate) fn analyze_bytes(bytes: &[u8], threshold: f32) -> Result<AudioSummary, AudioError> {
    let kind = AudioKind::sniff(bytes).ok_or_else(|| {
        AudioError::Unsupported(
            "unsupported file type: only wav, flac, ogg and amr are accepted".into(),
        )
    })?;
    match kind {
        AudioKind::Wav => wav(Cursor::new(bytes), threshold),
        AudioKind::Amr => amr(bytes),
        AudioKind::Flac | AudioKind::Ogg => {
            let mut v = bytes.to_vec();
            if let Some((at, fix)) = flac_block_size_fix(&mut Cursor::new(&v)) {
                v[at as usize..at as usize + 2].copy_from_slice(&fix);
            }
            symph(Box::new(Cursor::new(v)), kind, threshold)
        }
    }
}

/// Analyses an audio file on disk, streaming.
pub(crate) fn analyze_path(path: &Path, threshold: f32) -> Result<AudioSummary, AudioError> {
    let io = |e: std::io::Error| AudioError::Malformed(format!("cannot read upload: {e}"));
    let mut f = File::open(path).map_err(io)?;
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(io)? {
            0 => break,
            k => got += k,
        }
    }
    let kind = AudioKind::sniff(&head[..got]).ok_or_else(|| {
        AudioError::Unsupported(
            "unsupported file type: only wav, flac, ogg and amr are accepted".into(),
        )
    })?;
    f.rewind().map_err(io)?;
    match kind {
        AudioKind::Wav => wav(BufReader::new(f), threshold),
        AudioKind::Amr => {
            // AMR files are small (12.2 kbit/s): 400 minutes is about 37 MB.
            let mut v = Vec::new();
            f.read_to_end(&mut v).map_err(io)?;
            amr(&v)
        }
        AudioKind::Flac | AudioKind::Ogg => {
            let patch = flac_block_size_fix(&mut f);
            f.rewind().map_err(io)?;
            let len = f.metadata().map_err(io)?.len();
            symph(
                Box::new(Patched {
                    inner: f,
                    pos: 0,
                    len,
                    patch,
                }),
                kind,
                threshold,
            )
        }
    }
}

/// FLAC streams whose STREAMINFO says `min_block_size < max_block_size` (the short last block
/// counted, as `flacenc` writes them) while their frames use the fixed blocking strategy are
/// valid for ffmpeg and libFLAC, but Symphonia then rejects every frame header. Returns the
/// offset of `min_block_size` and the value to read there (equal to `max_block_size`) for
/// such streams.
fn flac_block_size_fix<R: Read + Seek>(r: &mut R) -> Option<(u64, [u8; 2])> {
    let mut head = [0u8; 42];
    r.rewind().ok()?;
    r.read_exact(&mut head).ok()?;
    if &head[0..4] != b"fLaC" || head[4] & 0x7F != 0 {
        return None;
    }
    let (min, max) = ([head[8], head[9]], [head[10], head[11]]);
    if u16::from_be_bytes(min) >= u16::from_be_bytes(max) {
        return None;
    }
    // Walk the metadata blocks to the first frame.
    let mut pos = 4u64;
    loop {
        r.seek(std::io::SeekFrom::Start(pos)).ok()?;
        let mut h = [0u8; 4];
        r.read_exact(&mut h).ok()?;
        let len = u64::from(u32::from_be_bytes([0, h[1], h[2], h[3]]));
        pos += 4 + len;
        if h[0] & 0x80 != 0 {
            break;
        }
    }
    r.seek(std::io::SeekFrom::Start(pos)).ok()?;
    let mut sync = [0u8; 2];
    r.read_exact(&mut sync).ok()?;
    // 0xFFF8: fixed blocking strategy.
    (sync == [0xFF, 0xF8]).then_some((8, max))
}

/// A file with two bytes replaced (see [`flac_block_size_fix`]).
struct Patched {
    inner: File,
    pos: u64,
    len: u64,
    patch: Option<(u64, [u8; 2])>,
}

impl Read for Patched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some((at, bytes)) = self.patch {
            for (i, b) in bytes.iter().enumerate() {
                let abs = at + i as u64;
                if abs >= self.pos && abs < self.pos + n as u64 {
                    if let Some(slot) = buf.get_mut((abs - self.pos) as usize) {
                        *slot = *b;
                    }
                }
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Patched {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }
}

impl MediaSource for Patched {
    fn is_seekable(&self) -> bool {
        true
    }
    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}

fn wav<R: Read>(r: R, threshold: f32) -> Result<AudioSummary, AudioError> {
    let mut reader =
        hound::WavReader::new(r).map_err(|e| AudioError::Malformed(format!("invalid WAV: {e}")))?;
    let spec = reader.spec();
    let ch = usize::from(spec.channels);
    if ch == 0 || spec.sample_rate == 0 {
        return Err(AudioError::Malformed(
            "invalid WAV: zero channels or rate".into(),
        ));
    }
    let mut an = Analyzer::new(spec.sample_rate, threshold);
    let mut mono = Vec::with_capacity(4096);
    let mut acc = 0.0f32;
    let mut k = 0usize;
    let mut push = |x: f32, mono: &mut Vec<f32>, an: &mut Analyzer| {
        acc += x;
        k += 1;
        if k == ch {
            mono.push(acc / ch as f32);
            acc = 0.0;
            k = 0;
            if mono.len() == 4096 {
                an.feed(mono);
                mono.clear();
            }
        }
    };
    let bad = |e: hound::Error| AudioError::Malformed(format!("invalid WAV data: {e}"));
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                push(s.map_err(bad)?, &mut mono, &mut an);
            }
        }
        hound::SampleFormat::Int => {
            let bits = u32::from(spec.bits_per_sample).clamp(1, 32);
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for s in reader.samples::<i32>() {
                push(s.map_err(bad)? as f32 * scale, &mut mono, &mut an);
            }
        }
    }
    an.feed(&mono);
    Ok(an.finish(AudioKind::Wav))
}

fn amr(bytes: &[u8]) -> Result<AudioSummary, AudioError> {
    const NB: [usize; 16] = [12, 13, 15, 17, 19, 20, 26, 31, 5, 6, 5, 5, 0, 0, 0, 0];
    const WB: [usize; 16] = [17, 23, 32, 36, 40, 46, 50, 58, 60, 5, 0, 0, 0, 0, 0, 0];
    let (rate, sizes, mut pos) = if bytes.starts_with(b"#!AMR-WB\n") {
        (16_000u32, &WB, 9usize)
    } else if bytes.starts_with(b"#!AMR\n") {
        (8_000u32, &NB, 6usize)
    } else {
        return Err(AudioError::Unsupported(
            "unsupported AMR variant (multichannel AMR is not accepted)".into(),
        ));
    };
    let mut frames = 0u64;
    while let Some(&h) = bytes.get(pos) {
        let ft = usize::from((h >> 3) & 0x0F);
        pos += 1 + sizes.get(ft).copied().unwrap_or(0);
        frames += 1;
    }
    let mut crc = Crc32::new();
    crc.update(bytes);
    let per = u64::from(rate / 50);
    let total = frames * per;
    Ok(AudioSummary {
        kind: AudioKind::Amr,
        sample_rate: rate,
        frames: total,
        crc32: crc.finish(),
        // Not decoded: the whole file is reported as one region.
        regions: if total > 0 {
            vec![Region {
                start: 0,
                end: total,
                speaker: 0,
            }]
        } else {
            Vec::new()
        },
    })
}

fn symph(
    src: Box<dyn MediaSource>,
    kind: AudioKind,
    threshold: f32,
) -> Result<AudioSummary, AudioError> {
    use symphonia::core::errors::Error as SErr;
    let mss = MediaSourceStream::new(src, Default::default());
    let mut hint = Hint::new();
    hint.with_extension(if kind == AudioKind::Flac {
        "flac"
    } else {
        "ogg"
    });
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| AudioError::Malformed(format!("cannot read container: {e}")))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::Malformed("no audio track".into()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::Unsupported("not an audio codec".into()))?
        .clone();
    let rate = params
        .sample_rate
        .filter(|r| *r > 0)
        .ok_or_else(|| AudioError::Malformed("no sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::Unsupported(format!("unsupported codec: {e}")))?;
    let mut an = Analyzer::new(rate, threshold);
    let mut inter: Vec<f32> = Vec::new();
    let mut mono: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(AudioError::Malformed(format!("broken stream: {e}"))),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(b) => b,
            Err(SErr::DecodeError(_)) => continue,
            Err(e) => return Err(AudioError::Malformed(format!("decode failed: {e}"))),
        };
        let ch = buf.spec().channels().count().max(1);
        buf.copy_to_vec_interleaved::<f32>(&mut inter);
        mono.clear();
        mono.extend(
            inter
                .chunks_exact(ch)
                .map(|c| c.iter().sum::<f32>() / ch as f32),
        );
        an.feed(&mono);
    }
    Ok(an.finish(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn regions_are_sample_accurate() {
        let rate = 16_000u32;
        let mut x = vec![0.0f32; rate as usize * 3];
        // 200 Hz from 0.5 s to 1.25 s; 1 kHz from 2.0 s to 2.5 s.
        for (i, s) in x.iter_mut().enumerate() {
            let t = i as f32 / rate as f32;
            if (8_000..20_000).contains(&i) {
                *s = 0.5 * (2.0 * std::f32::consts::PI * 200.0 * t).sin();
            }
            if (32_000..40_000).contains(&i) {
                *s = 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * t).sin();
            }
        }
        let mut a = Analyzer::new(rate, 0.01);
        for c in x.chunks(777) {
            a.feed(c);
        }
        let s = a.finish(AudioKind::Wav);
        assert_eq!(s.frames, 48_000);
        assert_eq!(s.regions.len(), 2, "{:?}", s.regions);
        let r0 = &s.regions[0];
        let r1 = &s.regions[1];
        assert!(
            r0.start.abs_diff(8_000) <= 16 && r0.end.abs_diff(20_000) <= 16,
            "{r0:?}"
        );
        assert!(
            r1.start.abs_diff(32_000) <= 16 && r1.end.abs_diff(40_000) <= 16,
            "{r1:?}"
        );
        assert_eq!((r0.speaker, r1.speaker), (0, 1));
    }
}
