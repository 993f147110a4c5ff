//! Deterministic, bounded "fuzz" suite for the decoder (issue 2, "Bad input"), run by plain
//! `cargo test --test robustness` on the stable toolchain.
//!
//! Every committed fixture under `testdata/formats/` and `testdata/speech/`, plus WAV variants
//! generated here, is damaged in many ways: truncated at every byte of its first 512 and at a
//! spread of later offsets, bytes flipped at seeded positions (`fastrand`, fixed seeds),
//! header fields (WAV `fmt `/`data`, FLAC STREAMINFO, Ogg page granules / segment tables with
//! the CRC recomputed, MP4 box sizes and table counts, MP3 frame headers and Xing fields, AMR
//! ToC bytes) set to 0 / all-ones / absurd values, chunks duplicated or removed. Each input goes
//! through `Decoder::from_reader` + `read_mono` to the end, which must:
//! - not panic: the decoder converts a panic of a third-party codec into an error whose text
//!   says "panicked"; such conversions are counted and must be none;
//! - terminate: at most 10× the original frames + 1 s are accepted, and a watchdog aborts the
//!   process (naming the case) when one input takes more than 20 s;
//! - fail, if it fails, with a typed kind (`Malformed`, `Truncated`, `Unsupported`,
//!   `UnrecognizedFormat`, `Empty`) that names the file given.
//!
//! A subset also goes through `AudioStream`, which must hand out its blocks, then the error
//! (once), then `None`. Counts per format are printed (`--nocapture`); with `FUZZ_SHOW=1` in
//! the environment every error message is printed too, to review what users would read.
//! `FUZZ_MUTATIONS=N` and `FUZZ_SEED=K` run more / other seeded mutations locally.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asr_pipeline::decode::Decoder;
use asr_pipeline::stream::{AudioStream, StreamOptions};
use asr_pipeline::ErrorKind;

const NAME: &str = "/fuzz/input.bin";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Aborts the process if one case runs for more than 20 s (a hang), naming the case.
struct Watchdog {
    slot: Arc<Mutex<(String, Instant)>>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    fn new() -> Watchdog {
        let slot = Arc::new(Mutex::new((String::new(), Instant::now())));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (slot.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let g = s.lock().unwrap_or_else(|e| e.into_inner());
                if g.1.elapsed() > Duration::from_secs(20) {
                    eprintln!("HANG: case {:?} runs for more than 20 s", g.0);
                    std::process::abort();
                }
            }
        });
        Watchdog { slot, stop }
    }

    fn case(&self, name: &str) {
        let mut g = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        g.0.clear();
        g.0.push_str(name);
        g.1 = Instant::now();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Stats {
    runs: u64,
    clean: u64,
    by_kind: BTreeMap<&'static str, u64>,
    /// Panics inside a decoder that `Decoder` turned into errors.
    panics: Vec<String>,
    /// Hard failures (bad kind, missing path, unbounded output).
    failures: Vec<String>,
    stream_runs: u64,
}

impl Stats {
    fn report(&self, what: &str) {
        println!(
            "{what}: {} decoder runs ({} clean, errors {:?}), {} stream runs, {} converted panics",
            self.runs,
            self.clean,
            self.by_kind,
            self.stream_runs,
            self.panics.len()
        );
    }

    fn assert_ok(&self, what: &str) {
        self.report(what);
        let mut msg = String::new();
        for f in self.failures.iter().take(20) {
            msg.push_str(f);
            msg.push('\n');
        }
        for p in self.panics.iter().take(20) {
            msg.push_str("converted panic: ");
            msg.push_str(p);
            msg.push('\n');
        }
        assert!(
            self.failures.is_empty() && self.panics.is_empty(),
            "{what}: {} failures, {} converted panics:\n{msg}",
            self.failures.len(),
            self.panics.len()
        );
    }
}

fn kind_name(k: &ErrorKind) -> Option<&'static str> {
    Some(match k {
        ErrorKind::Empty { .. } => "Empty",
        ErrorKind::UnrecognizedFormat { .. } => "UnrecognizedFormat",
        ErrorKind::Unsupported { .. } => "Unsupported",
        ErrorKind::Malformed { .. } => "Malformed",
        ErrorKind::Truncated { .. } => "Truncated",
        _ => return None,
    })
}

/// Checks one error: typed kind, names the file; records converted panics.
fn check_err(case: &str, e: &asr_pipeline::Error, stats: &mut Stats) {
    let Some(k) = kind_name(e.kind()) else {
        stats
            .failures
            .push(format!("{case}: unexpected error kind {:?}", e.kind()));
        return;
    };
    *stats.by_kind.entry(k).or_default() += 1;
    if std::env::var_os("FUZZ_SHOW").is_some() {
        println!("MSG {case} => {e}");
    }
    if e.path() != Some(Path::new(NAME)) {
        stats
            .failures
            .push(format!("{case}: error does not name the file: {e}"));
    }
    let text = e.to_string();
    if text.contains("panicked") {
        stats.panics.push(format!("{case}: {text}"));
    }
}

/// Decodes `bytes` to the end with a bound on the output; returns the frames decoded.
fn run(case: &str, bytes: Vec<u8>, bound: u64, stats: &mut Stats) -> u64 {
    stats.runs += 1;
    let mut d = match Decoder::from_reader(Cursor::new(bytes), Some(Path::new(NAME))) {
        Ok(d) => d,
        Err(e) => {
            check_err(case, &e, stats);
            return 0;
        }
    };
    let rate = u64::from(d.info().sample_rate.get());
    let limit = bound.saturating_mul(10) + rate;
    let mut buf = Vec::with_capacity(8192);
    let mut total = 0u64;
    loop {
        buf.clear();
        match d.read_mono(&mut buf) {
            Ok(0) => {
                stats.clean += 1;
                break;
            }
            Ok(n) => {
                assert_eq!(n, buf.len(), "{case}: read_mono count");
                total += n as u64;
                if total > limit {
                    stats.failures.push(format!(
                        "{case}: {total} frames decoded, more than the bound {limit}"
                    ));
                    break;
                }
            }
            Err(e) => {
                check_err(case, &e, stats);
                if let ErrorKind::Truncated { decoded_frames, .. } = e.kind() {
                    if *decoded_frames != total {
                        stats.failures.push(format!(
                            "{case}: Truncated says {decoded_frames} frames, {total} were delivered"
                        ));
                    }
                }
                match d.read_mono(&mut buf) {
                    Ok(0) => {}
                    other => stats
                        .failures
                        .push(format!("{case}: after an error, read_mono gave {other:?}")),
                }
                break;
            }
        }
    }
    total
}

/// The same input through `AudioStream`: blocks, then at most one error, then `None`.
fn run_stream(case: &str, bytes: Vec<u8>, bound: u64, stats: &mut Stats) {
    stats.stream_runs += 1;
    let opts = StreamOptions::default();
    let mut s = match AudioStream::from_reader(Cursor::new(bytes), Some(Path::new(NAME)), opts) {
        Ok(s) => s,
        Err(e) => {
            if kind_name(e.kind()).is_none() || e.path() != Some(Path::new(NAME)) {
                stats
                    .failures
                    .push(format!("{case}: stream open error {e} ({:?})", e.kind()));
            }
            return;
        }
    };
    // 16 kHz samples: 10× the input bound (at ≥ 1 kHz) + 1 s, generously.
    let limit = bound.saturating_mul(160) + 16_000;
    let mut samples = 0u64;
    loop {
        match s.next_block() {
            Ok(Some(b)) => {
                if b.start != samples {
                    stats.failures.push(format!(
                        "{case}: block starts at {}, {samples} handed out",
                        b.start
                    ));
                }
                samples += b.samples.len() as u64;
                if samples > limit {
                    stats
                        .failures
                        .push(format!("{case}: stream exceeds {limit} samples"));
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                if kind_name(e.kind()).is_none() || e.path() != Some(Path::new(NAME)) {
                    stats
                        .failures
                        .push(format!("{case}: stream error {e} ({:?})", e.kind()));
                }
                match s.next_block() {
                    Ok(None) => {}
                    Ok(Some(_)) => stats
                        .failures
                        .push(format!("{case}: stream delivers a block after its error")),
                    Err(e) => stats
                        .failures
                        .push(format!("{case}: stream repeats an error: {e}")),
                }
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Frames of the undamaged input (which must decode cleanly).
fn baseline(case: &str, bytes: &[u8]) -> u64 {
    let mut d = Decoder::from_reader(Cursor::new(bytes.to_vec()), Some(Path::new(NAME)))
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut buf = Vec::new();
    while d
        .read_mono(&mut buf)
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        > 0
    {}
    buf.len() as u64
}

/// A WAV file from parts; `fmt_extra` follows the 16 standard `fmt ` bytes.
#[allow(clippy::too_many_arguments)]
fn wav(
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    align: u16,
    fmt_extra: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&rate.wrapping_mul(u32::from(align)).to_le_bytes());
    fmt.extend_from_slice(&align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    fmt.extend_from_slice(fmt_extra);
    let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(&fmt);
    if fmt.len() % 2 == 1 {
        out.push(0);
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    let riff = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff.to_le_bytes());
    out
}

/// Generated WAV variants: (name, bytes). 0.25 s each, a tone in every channel.
fn wav_variants() -> Vec<(String, Vec<u8>)> {
    let tone = |n: usize, rate: u32| -> Vec<f64> {
        (0..n)
            .map(|i| 0.5 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin())
            .collect()
    };
    let mut v = Vec::new();
    let x = tone(4000, 16_000);
    let s16: Vec<u8> = x
        .iter()
        .flat_map(|&s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    v.push(("pcm16_mono".into(), wav(1, 1, 16_000, 16, 2, &[], &s16)));
    let st: Vec<u8> = x
        .iter()
        .flat_map(|&s| {
            let b = ((s * 32767.0) as i16).to_le_bytes();
            [b[0], b[1], b[0], b[1]]
        })
        .collect();
    v.push(("pcm16_stereo".into(), wav(1, 2, 16_000, 16, 4, &[], &st)));
    let s24: Vec<u8> = x
        .iter()
        .flat_map(|&s| {
            let b = ((s * 8_388_607.0) as i32).to_le_bytes();
            [b[0], b[1], b[2]]
        })
        .collect();
    v.push(("pcm24_mono".into(), wav(1, 1, 16_000, 24, 3, &[], &s24)));
    let u8s: Vec<u8> = x
        .iter()
        .map(|&s| ((s * 127.0) as i32 + 128) as u8)
        .collect();
    v.push(("pcm8_mono".into(), wav(1, 1, 16_000, 8, 1, &[], &u8s)));
    let f32s: Vec<u8> = x.iter().flat_map(|&s| (s as f32).to_le_bytes()).collect();
    v.push(("float32_mono".into(), wav(3, 1, 16_000, 32, 4, &[], &f32s)));
    let f64s: Vec<u8> = x.iter().flat_map(|&s| s.to_le_bytes()).collect();
    v.push((
        "float64_mono".into(),
        wav(3, 1, 16_000, 64, 8, &[0, 0], &f64s),
    ));
    // A-law, 16-byte fmt (the telephony form).
    let alaw: Vec<u8> = x
        .iter()
        .map(|&s| ((s * 100.0) as i8 as u8) ^ 0x55)
        .collect();
    v.push(("alaw_fmt16".into(), wav(6, 1, 8_000, 8, 1, &[], &alaw)));
    // WAVE_FORMAT_EXTENSIBLE, 6 channels of 16-bit PCM.
    let mut ext = Vec::new();
    ext.extend_from_slice(&22u16.to_le_bytes());
    ext.extend_from_slice(&16u16.to_le_bytes());
    ext.extend_from_slice(&0x3Fu32.to_le_bytes());
    ext.extend_from_slice(&1u16.to_le_bytes());
    ext.extend_from_slice(&[
        0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
    ]);
    let six: Vec<u8> = x[..2000]
        .iter()
        .flat_map(|&s| {
            let b = ((s * 32767.0) as i16).to_le_bytes();
            std::iter::repeat_n(b, 6).flatten()
        })
        .collect();
    v.push((
        "extensible_6ch".into(),
        wav(0xFFFE, 6, 16_000, 16, 12, &ext, &six),
    ));
    // IMA ADPCM, mono, 256-byte blocks of 505 samples; any payload bytes are valid.
    let mut rng = fastrand::Rng::with_seed(7);
    let mut adpcm: Vec<u8> = (0..256 * 8).map(|_| rng.u8(..)).collect();
    for b in adpcm.chunks_mut(256) {
        b[2] %= 89; // step index
        b[3] = 0;
    }
    let extra = [2u8, 0, 0xF9, 0x01]; // cbSize 2, 505 samples per block
    v.push((
        "ima_adpcm".into(),
        wav(0x11, 1, 8_000, 4, 256, &extra, &adpcm),
    ));
    v
}

// ---------------------------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------------------------

/// Truncation offsets: every byte of the first 512, then `spread` offsets across the rest.
fn truncations(len: usize, spread: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..len.min(512)).collect();
    if len > 512 {
        for i in 0..spread {
            v.push(512 + (len - 512) * i / spread);
        }
        v.push(len - 1);
    }
    v
}

/// Seeded byte mutations: `n` inputs, each with 1 to 8 changed bytes (some in the first 1 KiB,
/// where the headers are), or a run of bytes replaced.
fn mutations(b: &[u8], seed: u64, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut m = b.to_vec();
        let k = match i % 4 {
            0 | 1 => 1,
            2 => rng.usize(2..=8),
            _ => 0,
        };
        let head = m.len().min(1024);
        for _ in 0..k {
            let at = if rng.bool() {
                rng.usize(..head)
            } else {
                rng.usize(..m.len())
            };
            m[at] = match rng.u8(..4) {
                0 => 0,
                1 => 0xFF,
                2 => m[at] ^ (1 << rng.u8(..8)),
                _ => rng.u8(..),
            };
        }
        if k == 0 {
            // A run of 4..64 random bytes.
            let len = rng.usize(4..64).min(m.len());
            let at = rng.usize(..=m.len() - len);
            for x in &mut m[at..at + len] {
                *x = rng.u8(..);
            }
        }
        out.push((format!("mut{i}"), m));
    }
    out
}

fn put_le(b: &mut [u8], at: usize, width: usize, v: u64) {
    for i in 0..width {
        if let Some(x) = b.get_mut(at + i) {
            *x = (v >> (8 * i)) as u8;
        }
    }
}

fn put_be(b: &mut [u8], at: usize, width: usize, v: u64) {
    for i in 0..width {
        if let Some(x) = b.get_mut(at + i) {
            *x = (v >> (8 * (width - 1 - i))) as u8;
        }
    }
}

/// Values a field of `width` bytes is set to.
fn absurd(width: usize) -> Vec<u64> {
    let max = if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let mut v = vec![0, 1, 2, 3, 7, 0xFF, max, max / 2, max - 1];
    if width >= 2 {
        v.extend([0xFFFF, 0x8000]);
    }
    if width >= 4 {
        v.extend([0x7FFF_FFFF, 0x8000_0000, 192_001, 1_000_000_000]);
    }
    v.into_iter().map(|x| x & max).collect()
}

/// RIFF chunks after the 12-byte header: (id, start of header, body length).
fn riff_chunks(b: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut v = Vec::new();
    let mut pos = 12;
    while pos + 8 <= b.len() && v.len() < 64 {
        let id = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3]];
        let size = u32::from_le_bytes([b[pos + 4], b[pos + 5], b[pos + 6], b[pos + 7]]) as usize;
        v.push((id, pos, size));
        pos = pos
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    v
}

fn wav_fields(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let chunks = riff_chunks(b);
    let mut fields = vec![("riff_size".to_string(), 4usize, 4usize)];
    for &(id, at, _) in &chunks {
        let name = String::from_utf8_lossy(&id).trim().to_string();
        fields.push((format!("{name}_size"), at + 4, 4));
        if &id == b"fmt " {
            let f = at + 8;
            for (n, off, w) in [
                ("tag", 0, 2),
                ("channels", 2, 2),
                ("rate", 4, 4),
                ("byte_rate", 8, 4),
                ("block_align", 12, 2),
                ("bits", 14, 2),
                ("cb_size", 16, 2),
                ("valid_bits", 18, 2),
                ("channel_mask", 20, 4),
                ("subformat", 24, 2),
            ] {
                fields.push((n.to_string(), f + off, w));
            }
        }
    }
    for (n, at, w) in fields {
        if at + w > b.len() {
            continue;
        }
        for v in absurd(w) {
            let mut m = b.to_vec();
            put_le(&mut m, at, w, v);
            out.push((format!("{n}={v:#x}"), m));
        }
    }
    // Chunk surgery.
    let body = |c: &([u8; 4], usize, usize)| -> Vec<u8> {
        let end = (c.1 + 8 + c.2 + (c.2 & 1)).min(b.len());
        b[c.1..end].to_vec()
    };
    for c in &chunks {
        let name = String::from_utf8_lossy(&c.0).trim().to_string();
        // Removed.
        let mut m = b[..c.1].to_vec();
        m.extend_from_slice(&b[(c.1 + 8 + c.2 + (c.2 & 1)).min(b.len())..]);
        out.push((format!("remove_{name}"), m));
        // Duplicated in place.
        let mut m = b[..c.1].to_vec();
        m.extend_from_slice(&body(c));
        m.extend_from_slice(&b[c.1..]);
        out.push((format!("dup_{name}"), m));
    }
    // Junk chunks before the first chunk: odd size, huge size, zero size.
    for (n, size, len) in [
        ("junk_odd", 3u32, 3usize),
        ("junk_zero", 0, 0),
        ("junk_huge", 0xFFFF_FFF0, 16),
    ] {
        let mut m = b[..12].to_vec();
        m.extend_from_slice(b"LIST");
        m.extend_from_slice(&size.to_le_bytes());
        m.extend(std::iter::repeat_n(0x41u8, len + (len & 1)));
        m.extend_from_slice(&b[12..]);
        out.push((n.to_string(), m));
    }
    // A data chunk appended after the real one, and a header-only file.
    let mut m = b.to_vec();
    if let Some(d) = chunks.iter().find(|c| &c.0 == b"data") {
        m.extend_from_slice(&body(d));
        out.push(("second_data".into(), m));
        out.push(("header_only".into(), b[..d.1 + 8].to_vec()));
    }
    out
}

fn set_bits(b: &mut [u8], bit: usize, n: usize, v: u64) {
    for i in 0..n {
        let pos = bit + i;
        let on = (v >> (n - 1 - i)) & 1 == 1;
        if let Some(x) = b.get_mut(pos / 8) {
            let mask = 0x80 >> (pos % 8);
            if on {
                *x |= mask;
            } else {
                *x &= !mask;
            }
        }
    }
}

fn flac_fields(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // STREAMINFO body at byte 8: fields as (name, bit offset, bits).
    let si = 8 * 8;
    for (n, off, bits) in [
        ("min_block", 0, 16),
        ("max_block", 16, 16),
        ("min_frame", 32, 24),
        ("max_frame", 56, 24),
        ("rate", 80, 20),
        ("channels", 100, 3),
        ("bps", 103, 5),
        ("total", 108, 36),
    ] {
        let max = (1u64 << bits) - 1;
        for v in [0, 1, 2, 15, 16, 17, 4096, 65535, max / 2, max] {
            let v = v & max;
            let mut m = b.to_vec();
            set_bits(&mut m, si + off, bits, v);
            out.push((format!("streaminfo_{n}={v}"), m));
        }
    }
    // Metadata block headers: walk them, set type / length / last flag.
    let mut pos = 4;
    let mut k = 0;
    while pos + 4 <= b.len() && k < 16 {
        let len = (usize::from(b[pos + 1]) << 16)
            | (usize::from(b[pos + 2]) << 8)
            | usize::from(b[pos + 3]);
        for v in [0u64, 1, 33, 34, 35, 0xFFFFFF] {
            let mut m = b.to_vec();
            put_be(&mut m, pos + 1, 3, v);
            out.push((format!("block{k}_len={v}"), m));
        }
        for t in [0u8, 1, 3, 4, 6, 127, 0x80] {
            let mut m = b.to_vec();
            m[pos] = (m[pos] & 0x80) ^ t;
            out.push((format!("block{k}_type={t}"), m));
        }
        let last = b[pos] & 0x80 != 0;
        let mut m = b.to_vec();
        m[pos] ^= 0x80;
        out.push((format!("block{k}_lastflag"), m));
        if last {
            break;
        }
        pos += 4 + len;
        k += 1;
    }
    // Frame headers: the first few sync codes after the metadata.
    let mut frames = 0;
    let mut i = pos;
    while i + 8 < b.len() && frames < 4 {
        if b[i] == 0xFF && b[i + 1] & 0xFE == 0xF8 {
            for (n, at, val) in [
                ("blocksize_rate", 2, 0xFFu8),
                ("blocksize_rate0", 2, 0x00),
                ("chan_bps", 3, 0xFF),
                ("chan_bps0", 3, 0x00),
                ("number", 4, 0xFF),
            ] {
                let mut m = b.to_vec();
                m[i + at] = val;
                out.push((format!("frame{frames}_{n}"), m));
            }
            frames += 1;
            i += 64;
        } else {
            i += 1;
        }
    }
    out
}

/// Ogg CRC-32 (polynomial 0x04c11db7, no reflection, init 0).
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Ogg pages: (start, header length, total length).
fn ogg_pages(b: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    let mut pos = 0;
    while pos + 27 <= b.len() && &b[pos..pos + 4] == b"OggS" {
        let nseg = usize::from(b[pos + 26]);
        let Some(table) = b.get(pos + 27..pos + 27 + nseg) else {
            break;
        };
        let body: usize = table.iter().map(|&x| usize::from(x)).sum();
        v.push((pos, 27 + nseg, 27 + nseg + body));
        pos += 27 + nseg + body;
    }
    v
}

fn fix_crc(m: &mut [u8], start: usize, len: usize) {
    let Some(page) = m.get_mut(start..start + len) else {
        return;
    };
    page[22..26].fill(0);
    let c = ogg_crc(page);
    page[22..26].copy_from_slice(&c.to_le_bytes());
}

/// One edit of a file in place.
type Edit = Box<dyn Fn(&mut Vec<u8>)>;

fn ogg_fields(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // Seeded mutations with every page checksum recomputed, so that the damage reaches the
    // codec instead of stopping at the CRC check (mutations that break the page structure
    // keep the CRCs of the pages after the break).
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let count = env("FUZZ_MUTATIONS").map_or(160, |n| n as usize);
    for (n, mut m) in mutations(b, 500 + env("FUZZ_SEED").unwrap_or(0) * 1000, count) {
        for (start, _, len) in ogg_pages(&m) {
            fix_crc(&mut m, start, len);
        }
        out.push((format!("{n}_crc_fixed"), m));
    }
    let pages = ogg_pages(b);
    let n = pages.len();
    let chosen: Vec<usize> = (0..n)
        .filter(|&i| i < 4 || i + 2 >= n || i == n / 2)
        .collect();
    for &pi in &chosen {
        let (start, hlen, len) = pages[pi];
        let mut edits: Vec<(String, Edit)> = Vec::new();
        for g in [0u64, 1, 311, 312, 313, u64::MAX, u64::MAX - 1, 1 << 62] {
            edits.push((
                format!("granule={g:#x}"),
                Box::new(move |m: &mut Vec<u8>| put_le(m, start + 6, 8, g)),
            ));
        }
        for f in [0u8, 1, 2, 4, 5, 6, 7, 0xFF] {
            edits.push((
                format!("flags={f}"),
                Box::new(move |m: &mut Vec<u8>| m[start + 5] = f),
            ));
        }
        edits.push((
            "version=1".into(),
            Box::new(move |m: &mut Vec<u8>| m[start + 4] = 1),
        ));
        edits.push((
            "serial+1".into(),
            Box::new(move |m: &mut Vec<u8>| m[start + 14] ^= 1),
        ));
        edits.push((
            "seqno=max".into(),
            Box::new(move |m: &mut Vec<u8>| put_le(m, start + 18, 4, 0xFFFF_FFFF)),
        ));
        for v in [0u8, 0xFF] {
            // Every lacing value, and the segment count.
            edits.push((
                format!("lacing_all={v}"),
                Box::new(move |m: &mut Vec<u8>| {
                    for x in &mut m[start + 27..start + hlen] {
                        *x = v;
                    }
                }),
            ));
            edits.push((
                format!("nseg={v}"),
                Box::new(move |m: &mut Vec<u8>| m[start + 26] = v),
            ));
        }
        if hlen > 27 {
            edits.push((
                "lacing0=1".into(),
                Box::new(move |m: &mut Vec<u8>| m[start + 27] = 1),
            ));
        }
        // Packet body: the first bytes (TOC / header packets).
        for off in [0usize, 1, 8, 9, 10, 11, 16, 17, 18] {
            if hlen + off < len {
                for v in [0u8, 0xFF, 3] {
                    edits.push((
                        format!("body{off}={v}"),
                        Box::new(move |m: &mut Vec<u8>| m[start + hlen + off] = v),
                    ));
                }
            }
        }
        for (name, f) in edits {
            let mut m = b.to_vec();
            f(&mut m);
            out.push((format!("page{pi}_{name}_badcrc"), m.clone()));
            fix_crc(&mut m, start, len);
            out.push((format!("page{pi}_{name}"), m));
        }
        // Page removed / duplicated.
        let mut m = b[..start].to_vec();
        m.extend_from_slice(&b[start + len..]);
        out.push((format!("page{pi}_removed"), m));
        let mut m = b[..start + len].to_vec();
        m.extend_from_slice(&b[start..]);
        out.push((format!("page{pi}_dup"), m));
    }
    out
}

/// MP4 boxes, recursively into known containers: (type, start, header length).
fn mp4_boxes(
    b: &[u8],
    from: usize,
    to: usize,
    depth: usize,
    out: &mut Vec<([u8; 4], usize, usize)>,
) {
    let mut pos = from;
    while pos + 8 <= to && out.len() < 400 {
        let size = u32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]) as usize;
        let kind = [b[pos + 4], b[pos + 5], b[pos + 6], b[pos + 7]];
        let (hdr, size) = match size {
            0 => (8, to - pos),
            1 => {
                if pos + 16 > to {
                    return;
                }
                let s = u64::from_be_bytes(b[pos + 8..pos + 16].try_into().unwrap_or([0; 8]));
                (16, usize::try_from(s).unwrap_or(usize::MAX))
            }
            s => (8, s),
        };
        if size < hdr || pos + size > to {
            return;
        }
        out.push((kind, pos, hdr));
        let inner = match &kind {
            b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"edts" | b"udta" | b"dinf" => {
                Some(0)
            }
            b"meta" => Some(4),
            b"stsd" => Some(8),
            b"mp4a" => Some(28),
            _ => None,
        };
        if let (Some(skip), true) = (inner, depth < 8) {
            mp4_boxes(b, pos + hdr + skip, pos + size, depth + 1, out);
        }
        pos += size;
    }
}

fn mp4_fields(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut boxes = Vec::new();
    mp4_boxes(b, 0, b.len(), 0, &mut boxes);
    for &(kind, at, hdr) in &boxes {
        let name = String::from_utf8_lossy(&kind).to_string();
        let size = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        for v in [
            0u32,
            1,
            7,
            8,
            9,
            size.wrapping_sub(1),
            size + 1,
            0x7FFF_FFFF,
            u32::MAX,
        ] {
            let mut m = b.to_vec();
            put_be(&mut m, at, 4, u64::from(v));
            out.push((format!("{name}@{at}_size={v:#x}"), m));
        }
        // The first words of the body (version/flags, counts, time scales, sample rate).
        let words = match &kind {
            b"stsz" | b"stco" | b"co64" | b"stts" | b"stsc" | b"stss" | b"elst" | b"ctts" => 4,
            b"mdhd" | b"mvhd" | b"tkhd" | b"hdlr" => 6,
            b"mp4a" => 8,
            b"esds" => 6,
            b"stsd" => 2,
            _ => 0,
        };
        for w in 0..words {
            for v in [0u32, 1, 0xFFFF, 0x7FFF_FFFF, u32::MAX] {
                let mut m = b.to_vec();
                put_be(&mut m, at + hdr + 4 * w, 4, u64::from(v));
                out.push((format!("{name}@{at}_word{w}={v:#x}"), m));
            }
        }
    }
    out
}

/// MP3: frame headers and the Xing/Info/LAME fields of the first frame.
fn mp3_fields(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    if b.starts_with(b"ID3") && b.len() > 10 {
        start = 10
            + b[6..10]
                .iter()
                .fold(0usize, |a, &x| (a << 7) | usize::from(x & 0x7f));
        for v in [0u8, 0x7F, 0xFF] {
            let mut m = b.to_vec();
            m[6..10].fill(v);
            out.push((format!("id3_size={v:#x}"), m));
        }
        let mut m = b.to_vec();
        m[5] ^= 0x10; // footer flag
        out.push(("id3_footer".into(), m));
    }
    // Frame headers: the first 3 frames and one in the middle.
    let mut heads = Vec::new();
    let mut i = start;
    while i + 4 < b.len() && heads.len() < 64 {
        if b[i] == 0xFF && b[i + 1] & 0xE0 == 0xE0 {
            heads.push(i);
            i += 100;
        } else {
            i += 1;
        }
    }
    let pick: Vec<usize> = heads
        .iter()
        .enumerate()
        .filter(|(k, _)| *k < 3 || *k == heads.len() / 2)
        .map(|(_, &h)| h)
        .collect();
    for h in pick {
        for (n, at, val) in [
            ("b1_ff", 1usize, 0xFFu8),
            ("b1_e0", 1, 0xE0),
            ("b1_layer1", 1, 0xFF),
            ("b1_v25", 1, 0xE3),
            ("b2_ff", 2, 0xFF),
            ("b2_00", 2, 0x00),
            ("b2_f0", 2, 0xF0),
            ("b2_0c", 2, 0x0C),
            ("b3_ff", 3, 0xFF),
            ("b3_00", 3, 0x00),
        ] {
            let mut m = b.to_vec();
            m[h + at] = val;
            out.push((format!("frame@{h}_{n}"), m));
        }
    }
    // Xing / Info fields.
    if let Some(x) = b
        .windows(4)
        .take(4096)
        .position(|w| w == b"Xing" || w == b"Info")
    {
        for (n, off, w) in [
            ("flags", 4usize, 4usize),
            ("frames", 8, 4),
            ("bytes", 12, 4),
        ] {
            for v in [0u64, 1, 0xFFFF_FFFF, 0x7FFF_FFFF] {
                let mut m = b.to_vec();
                put_be(&mut m, x + off, w, v);
                out.push((format!("xing_{n}={v:#x}"), m));
            }
        }
        if let Some(l) = b[x..].windows(4).take(300).position(|w| w == b"LAME") {
            // Encoder delay / padding: 12 + 12 bits at LAME+21.
            let at = x + l + 21;
            for v in [0u64, 0xFFFFFF, 0xFFF000, 0x000FFF] {
                let mut m = b.to_vec();
                put_be(&mut m, at, 3, v);
                out.push((format!("lame_delay_pad={v:#x}"), m));
            }
        }
    }
    out
}

/// AMR: ToC bytes of a few frames set to every frame type, Q on and off.
fn amr_fields(b: &[u8], wide: bool) -> Vec<(String, Vec<u8>)> {
    const NB: [usize; 16] = [12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0];
    const WB: [usize; 16] = [17, 23, 32, 36, 40, 46, 50, 58, 60, 5, 0, 0, 0, 0, 0, 0];
    let sizes = if wide { WB } else { NB };
    let magic = if wide { 9 } else { 6 };
    let mut tocs = Vec::new();
    let mut pos = magic;
    while pos < b.len() {
        tocs.push(pos);
        pos += 1 + sizes[usize::from((b[pos] >> 3) & 0x0F)];
    }
    let n = tocs.len();
    let mut out = Vec::new();
    for (k, &at) in tocs.iter().enumerate() {
        if !(k < 2 || k == n / 2 || k + 1 == n) {
            continue;
        }
        for ft in 0..16u8 {
            for q in [0u8, 4] {
                let mut m = b.to_vec();
                m[at] = (ft << 3) | q;
                out.push((format!("toc{k}_ft{ft}_q{q}"), m));
            }
        }
        let mut m = b.to_vec();
        m[at] = 0xFF;
        out.push((format!("toc{k}_ff"), m));
    }
    // Every ToC set to NO_DATA / SID / a reserved type: the whole file in DTX.
    for ft in [8u8, 9, 12, 14, 15] {
        let mut m = b.to_vec();
        for &at in &tocs {
            m[at] = (ft << 3) | 4;
        }
        out.push((format!("all_ft{ft}"), m));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

struct Plan {
    /// Truncations beyond the first 512 bytes.
    spread: usize,
    mutations: usize,
    /// Every `stream_every`-th damaged input also goes through `AudioStream`.
    stream_every: usize,
}

fn fuzz_one(
    dog: &Watchdog,
    label: &str,
    bytes: &[u8],
    fields: Vec<(String, Vec<u8>)>,
    seed: u64,
    plan: &Plan,
    stats: &mut Stats,
) {
    let orig = baseline(label, bytes);
    let mut k = 0usize;
    let mut go = |case: String, m: Vec<u8>, stats: &mut Stats| {
        dog.case(&case);
        k += 1;
        if k.is_multiple_of(plan.stream_every) {
            run_stream(&case, m.clone(), orig, stats);
        }
        run(&case, m, orig, stats);
    };
    for t in truncations(bytes.len(), plan.spread) {
        go(format!("{label}: cut at {t}"), bytes[..t].to_vec(), stats);
    }
    // Deeper local runs: FUZZ_MUTATIONS=5000 FUZZ_SEED=7 cargo test --test robustness.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let count = env("FUZZ_MUTATIONS").map_or(plan.mutations, |n| n as usize);
    let seed = seed + env("FUZZ_SEED").unwrap_or(0) * 1000;
    for (n, m) in mutations(bytes, seed, count) {
        go(format!("{label}: {n} (seed {seed})"), m, stats);
    }
    for (n, m) in fields {
        go(format!("{label}: {n}"), m, stats);
    }
}

fn fuzz_files(files: &[(&str, u64)], plan: Plan, what: &str) {
    let dog = Watchdog::new();
    let mut all = Stats::default();
    for &(rel, seed) in files {
        let b = fixture(rel);
        let fields = if rel.ends_with(".wav") {
            wav_fields(&b)
        } else if rel.ends_with(".flac") {
            flac_fields(&b)
        } else if rel.ends_with(".ogg") || rel.ends_with(".opus") {
            ogg_fields(&b)
        } else if rel.ends_with(".m4a") {
            mp4_fields(&b)
        } else if rel.ends_with(".mp3") {
            mp3_fields(&b)
        } else if rel.ends_with("_wb.amr") {
            amr_fields(&b, true)
        } else {
            amr_fields(&b, false)
        };
        let mut s = Stats::default();
        fuzz_one(&dog, rel, &b, fields, seed, &plan, &mut s);
        s.report(rel);
        all.runs += s.runs;
        all.clean += s.clean;
        all.stream_runs += s.stream_runs;
        for (k, v) in s.by_kind {
            *all.by_kind.entry(k).or_default() += v;
        }
        all.panics.extend(s.panics);
        all.failures.extend(s.failures);
    }
    all.assert_ok(what);
}

const PLAN: Plan = Plan {
    spread: 96,
    mutations: 320,
    stream_every: 7,
};

#[test]
fn fuzz_wav_fixtures() {
    fuzz_files(
        &[
            ("formats/tone_8k_ulaw.wav", 1),
            ("speech/u1_yes_please.wav", 2),
            ("speech/u2_hello.wav", 4),
            ("speech/u3_hold.wav", 5),
            ("speech/u4_tn.wav", 3),
            ("speech/u5_af.wav", 6),
            ("speech/u6_number.wav", 7),
        ],
        PLAN,
        "WAV fixtures",
    );
}

#[test]
fn fuzz_flac() {
    fuzz_files(&[("formats/tone_44k1_stereo.flac", 11)], PLAN, "FLAC");
}

#[test]
fn fuzz_ogg_vorbis() {
    fuzz_files(&[("formats/tone_44k1_stereo.ogg", 21)], PLAN, "Ogg Vorbis");
}

#[test]
fn fuzz_ogg_opus() {
    fuzz_files(&[("formats/tone_48k_mono.opus", 31)], PLAN, "Ogg Opus");
}

#[test]
fn fuzz_mp3() {
    fuzz_files(&[("formats/tone_44k1_stereo.mp3", 41)], PLAN, "MP3");
}

#[test]
fn fuzz_m4a() {
    fuzz_files(&[("formats/tone_44k1_stereo.m4a", 51)], PLAN, "MP4/AAC");
}

#[test]
fn fuzz_amr() {
    fuzz_files(
        &[("formats/tone_8k.amr", 61), ("formats/tone_16k_wb.amr", 62)],
        PLAN,
        "AMR",
    );
}

#[test]
fn fuzz_generated_wav_variants() {
    let dog = Watchdog::new();
    let mut all = Stats::default();
    let plan = Plan {
        spread: 32,
        mutations: 96,
        stream_every: 9,
    };
    for (i, (name, b)) in wav_variants().into_iter().enumerate() {
        let fields = wav_fields(&b);
        fuzz_one(&dog, &name, &b, fields, 100 + i as u64, &plan, &mut all);
    }
    all.assert_ok("generated WAV variants");
}

/// Random bytes behind each magic number, and random bytes alone.
#[test]
fn fuzz_random_bytes_behind_magic() {
    let dog = Watchdog::new();
    let mut s = Stats::default();
    let mut rng = fastrand::Rng::with_seed(99);
    let magics: [&[u8]; 9] = [
        b"RIFF\x24\0\0\0WAVEfmt ",
        b"fLaC",
        b"fLaC\0\0\0\x22",
        b"OggS\0\x02",
        b"#!AMR\n",
        b"#!AMR-WB\n",
        b"\0\0\0\x20ftypM4A ",
        b"ID3\x04\0\0\0\0\0\0",
        b"",
    ];
    for (mi, magic) in magics.iter().enumerate() {
        for i in 0..60 {
            let len = [0usize, 1, 7, 33, 100, 1000, 5000][i % 7];
            let mut b = magic.to_vec();
            b.extend((0..len).map(|_| rng.u8(..)));
            let case = format!("magic{mi} + {len} random bytes (#{i})");
            dog.case(&case);
            run(&case, b, 48_000, &mut s);
        }
    }
    s.assert_ok("random bytes behind magic numbers");
}

// ---------------------------------------------------------------------------------------------
// Regression tests: the minimal reproducers of what the fuzzing found.
// ---------------------------------------------------------------------------------------------

/// A decoder error's text, failing the test on a converted panic.
fn decode_strict(b: Vec<u8>) -> asr_pipeline::Result<Vec<f32>> {
    let mut d = Decoder::from_reader(Cursor::new(b), Some(Path::new(NAME)))?;
    let mut out = Vec::new();
    loop {
        match d.read_mono(&mut out) {
            Ok(0) => return Ok(out),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

fn assert_no_panic<T>(r: &asr_pipeline::Result<T>) {
    if let Err(e) = r {
        assert!(!e.to_string().contains("panicked"), "converted panic: {e}");
    }
}

/// WAVE_FORMAT_EXTENSIBLE, 6 channels, channel mask 0x80000000: Symphonia's mask repair
/// shifted by 32 (`attempt to shift left with overflow`). The mask is now rewritten.
#[test]
fn regression_wav_extensible_mask_bit31() {
    let variants = wav_variants();
    let (_, b) = variants
        .iter()
        .find(|(n, _)| n == "extensible_6ch")
        .expect("variant");
    let mask_at = 12 + 8 + 20;
    assert_eq!(&b[mask_at..mask_at + 4], &0x3Fu32.to_le_bytes());
    let clean = decode_strict(b.clone()).expect("canonical mask decodes");
    for mask in [0x8000_0000u32, 0, 1, u32::MAX, 0x0004_0000] {
        let mut m = b.clone();
        m[mask_at..mask_at + 4].copy_from_slice(&mask.to_le_bytes());
        let r = decode_strict(m);
        assert_no_panic(&r);
        assert_eq!(r.expect("decodes"), clean, "mask {mask:#x}");
    }
    // More channels than a mask can name: refused, not a panic.
    let mut m = b.clone();
    m[12 + 8 + 2..12 + 8 + 4].copy_from_slice(&40u16.to_le_bytes());
    m[12 + 8 + 12..12 + 8 + 14].copy_from_slice(&80u16.to_le_bytes());
    let r = decode_strict(m);
    assert_no_panic(&r);
    assert!(
        matches!(r.unwrap_err().kind(), ErrorKind::Unsupported { .. }),
        "40 channels"
    );
}

/// The offset of the first box `kind` in an MP4 file (searched as bytes: the fixtures hold
/// each table once).
fn find_box(b: &[u8], kind: &[u8; 4]) -> usize {
    b.windows(4).position(|w| w == kind).expect("box") - 4
}

/// M4A whose `stts` first entry counts 0xFFFFFFFF samples: Symphonia's isomp4 summed the
/// counts in a `u32` (`attempt to add with overflow` in stts.rs). Now refused as Malformed.
#[test]
fn regression_mp4_stts_sample_count_overflow() {
    let b = fixture("formats/tone_44k1_stereo.m4a");
    let stts = find_box(&b, b"stts");
    // Entry count ≥ 2 (full frames, then the last one), then the first entry's sample
    // count at body + 8: set to a value that makes the sum overflow.
    assert!(u32::from_be_bytes(b[stts + 12..stts + 16].try_into().unwrap()) >= 2);
    for v in [u32::MAX, u32::MAX - 1] {
        let mut m = b.clone();
        m[stts + 16..stts + 20].copy_from_slice(&v.to_be_bytes());
        let r = decode_strict(m);
        assert_no_panic(&r);
        let e = r.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Malformed { .. }),
            "{v:#x}: {e}"
        );
        assert_eq!(e.path(), Some(Path::new(NAME)));
    }
    // stsc naming chunk 0xFFFFFFF0: first chunk + sample index overflows.
    let stsc = find_box(&b, b"stsc");
    let mut m = b.clone();
    m[stsc + 16..stsc + 20].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    let r = decode_strict(m);
    assert_no_panic(&r);
    assert!(r.is_err());
    // The undamaged fixture still decodes.
    assert!(decode_strict(b).is_ok());
}

/// An M4A cut anywhere inside its trailing `moov` (the usual layout, not "faststart") was
/// reported as `Unsupported` ("isomp4: missing moov atom"), as if the codec were the problem.
/// It is `Malformed`, and says the file is cut short.
#[test]
fn regression_m4a_cut_before_its_moov_is_malformed() {
    let b = fixture("formats/tone_44k1_stereo.m4a");
    let moov = find_box(&b, b"moov");
    assert!(moov > b.len() / 2, "the fixture keeps its moov at the end");
    for cut in [moov, moov + 8, moov + 100, b.len() - 1] {
        let e = decode_strict(b[..cut].to_vec()).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Malformed { .. }),
            "cut at {cut}: {e}"
        );
        assert!(e.to_string().contains("cut short"), "{e}");
    }
}

/// An Ogg Opus file cut mid-page said only "Ogg: I/O error" (the `ogg` crate's text for any
/// read error). It now says the file ends inside an Ogg page.
#[test]
fn regression_opus_cut_mid_page_says_so() {
    let b = fixture("formats/tone_48k_mono.opus");
    let e = decode_strict(b[..b.len() - 10].to_vec()).unwrap_err();
    match e.kind() {
        ErrorKind::Truncated { decoded_frames, .. } => assert!(*decoded_frames > 0, "{e}"),
        _ => panic!("{e}"),
    }
    assert!(e.to_string().contains("ends inside an Ogg page"), "{e}");
}

/// Ogg Vorbis with a damaged setup header (seeded mutation 154 of seed 500, page checksums
/// recomputed): Symphonia's bit reader said "unexpected end of bitstream" as an
/// `io::Error`, which came out as `ErrorKind::Io`, as if the disk had failed. Now `Malformed`.
#[test]
fn regression_vorbis_corrupt_header_is_malformed_not_io() {
    let b = fixture("formats/tone_44k1_stereo.ogg");
    let (_, mut m) = mutations(&b, 500, 155).pop().expect("mutation");
    for (start, _, len) in ogg_pages(&m) {
        fix_crc(&mut m, start, len);
    }
    let e = decode_strict(m).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Malformed { .. }), "{e:?}");
    assert_eq!(e.path(), Some(Path::new(NAME)));
}

/// M4A whose `stts` gives every sample a duration of 2^20 frames and whose `stsz` makes every
/// packet one byte long: each packet fails to decode and was replaced by silence of its
/// (untrusted) duration, capped per packet only (10 s at 192 kHz), so 19 KB decoded to over
/// an hour of silence. The silence inserted in all is now capped at that plus the audio that
/// really decoded.
#[test]
fn regression_mp4_silence_bomb_from_stts_durations() {
    let b = fixture("formats/tone_44k1_stereo.m4a");
    let mut m = b.clone();
    let stts = find_box(&m, b"stts");
    let count = u32::from_be_bytes(m[stts + 12..stts + 16].try_into().unwrap()) as usize;
    for i in 0..count {
        let at = stts + 16 + 8 * i + 4;
        m[at..at + 4].copy_from_slice(&(1u32 << 20).to_be_bytes());
    }
    // stsz: version/flags, sample size 0 (table follows), count, sizes.
    let stsz = find_box(&m, b"stsz");
    assert_eq!(&m[stsz + 12..stsz + 16], &[0, 0, 0, 0]);
    let n = u32::from_be_bytes(m[stsz + 16..stsz + 20].try_into().unwrap()) as usize;
    for i in 0..n {
        let at = stsz + 20 + 4 * i;
        m[at..at + 4].copy_from_slice(&1u32.to_be_bytes());
    }
    // No edit list (its length would end the stream after 1.5 s).
    let edts = find_box(&m, b"edts");
    m[edts + 4..edts + 8].copy_from_slice(b"free");
    let mut d = Decoder::from_reader(Cursor::new(m), Some(Path::new(NAME))).expect("opens");
    let mut out = Vec::new();
    let mut total = 0u64;
    loop {
        out.clear();
        match d.read_mono(&mut out) {
            Ok(0) => break,
            Err(e) => {
                println!("{e}");
                break;
            }
            Ok(n) => total += n as u64,
        }
        // 10 s at 192 kHz of silence in all (no audio decoded).
        assert!(total <= 1_920_000, "{total} frames of silence and counting");
    }
    println!("{total} frames, {} packets skipped", d.packets_skipped());
    // Without the cap, these 3 packets alone gave 3 × 2^20 frames.
    assert!(d.packets_skipped() >= 2, "the packets do fail to decode");
}

/// Ogg Vorbis with damaged headers or packets (seeded mutations, page checksums recomputed;
/// found by `FUZZ_MUTATIONS=2500 FUZZ_SEED=4` and `FUZZ_MUTATIONS=2000 FUZZ_SEED=9`) panic
/// inside Symphonia 0.6.1, not in our code:
/// - seed 4500 #653, #1282: `symphonia-format-ogg` `mappings/vorbis.rs` `read_setup`
///   (codebook entries × dimensions unchecked): `attempt to multiply with overflow` (debug);
/// - seed 9500 #42: `symphonia-codec-vorbis` `codebook.rs:136` `synthesize_codewords`:
///   `assertion failed: len <= 32` (release too);
/// - seed 9500 #1972: `symphonia-codec-vorbis` `floor.rs:793` `Floor1::synthesis`:
///   `attempt to divide by zero` (release too).
///
/// Until they are fixed upstream the decoder's `catch_unwind` is what stands between them
/// and the caller, so this test pins that: a typed `Malformed` (header) or `Truncated`
/// (packet) that names the file, never an unwinding panic.
#[test]
fn regression_vorbis_setup_overflow_upstream_is_contained() {
    let b = fixture("formats/tone_44k1_stereo.ogg");
    for (seed, k) in [(4500, 653usize), (4500, 1282), (9500, 42), (9500, 1972)] {
        let (_, mut m) = mutations(&b, seed, k + 1).pop().expect("mutation");
        for (start, _, len) in ogg_pages(&m) {
            fix_crc(&mut m, start, len);
        }
        let e = decode_strict(m).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::Malformed { .. } | ErrorKind::Truncated { .. }
            ),
            "{e}"
        );
        assert_eq!(e.path(), Some(Path::new(NAME)));
    }
}
