//! Shared by `amrnb/tests/oracle.rs` and `amrwb/tests/oracle.rs` (through `#[path]`): real speech encoded with
//! rvoip-codec-core's encoder in every mode (with DTX, mode switches, damaged, lost and
//! reserved frames, random payloads), decoded by rvoip-codec-core's decoder (the oracle, the
//! decoder asr-pipeline used before, a port of the 3GPP fixed-point reference) and by ours, compared
//! frame by frame (bit-exact, or at least 40 dB SNR per frame kind) and summed per frame kind.

#![allow(dead_code)] // each user takes what it needs

use std::collections::BTreeMap;
use std::path::Path;

use codec_core::codecs::amr::AmrCodec;
use codec_core::types::{CodecConfig, CodedFrame, FrameKind, VariableRateCodec};

/// The decoder under test, NB or WB.
pub trait Under {
    /// AMR-WB?
    const WIDE: bool;
    /// Samples per frame.
    const FL: usize;
    /// Payload octets per frame type.
    const SIZES: [usize; 16];
    fn new() -> Self;
    fn decode(&mut self, ft: u8, q: bool, payload: &[u8], out: &mut [i16]);
    fn lost(&mut self, out: &mut [i16]);
}

/// `ours!(amrnb, false)` / `ours!(amrwb, true)`: the decoder under test, `Ours`, a wrapper of
/// that crate's `Decoder` implementing [`Under`] (for the oracle test and the bench alike).
macro_rules! ours {
    ($krate:ident, $wide:expr) => {
        struct Ours($krate::Decoder);

        impl common::Under for Ours {
            const WIDE: bool = $wide;
            const FL: usize = $krate::FRAME_LEN;
            const SIZES: [usize; 16] = $krate::PAYLOAD_BYTES;
            fn new() -> Self {
                Ours($krate::Decoder::new())
            }
            fn decode(&mut self, ft: u8, q: bool, payload: &[u8], out: &mut [i16]) {
                let out: &mut [i16; $krate::FRAME_LEN] = out.try_into().unwrap();
                self.0.decode(ft, q, payload, out);
            }
            fn lost(&mut self, out: &mut [i16]) {
                let out: &mut [i16; $krate::FRAME_LEN] = out.try_into().unwrap();
                self.0.decode_lost(out);
            }
        }
    };
}

/// What one frame of a test stream is.
#[derive(Clone, Debug)]
pub enum Frame {
    /// A storage-format frame: type, Q bit, payload.
    Coded(u8, bool, Vec<u8>),
    /// Missing (the transport's loss).
    Lost,
}

fn modes<U: Under>() -> u8 {
    if U::WIDE {
        9
    } else {
        8
    }
}
fn sid_ft<U: Under>() -> u8 {
    if U::WIDE {
        9
    } else {
        8
    }
}

/// The frame kind a frame is counted under.
fn kind<U: Under>(f: &Frame) -> String {
    match f {
        Frame::Lost => "lost (transport)".into(),
        Frame::Coded(ft, q, p) => {
            let ft = *ft;
            if ft < modes::<U>() {
                if *q {
                    format!("speech mode {ft}")
                } else {
                    "speech bad (Q=0)".into()
                }
            } else if ft == sid_ft::<U>() {
                if !q {
                    "SID bad (Q=0)".into()
                } else if p.get(4).is_some_and(|b| b & 0x10 != 0) {
                    "SID_UPDATE".into()
                } else {
                    "SID_FIRST".into()
                }
            } else if ft == 15 {
                "NO_DATA".into()
            } else if U::WIDE && ft == 14 {
                "SPEECH_LOST (FT 14)".into()
            } else {
                "reserved type".into()
            }
        }
    }
}

/// Reads the 16-bit mono WAV files of `testdata/speech`.
fn speech_16k() -> Vec<i16> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/speech");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        let b = std::fs::read(&p).unwrap();
        // Walk the RIFF chunks to `data`.
        let mut pos = 12;
        while pos + 8 <= b.len() {
            let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
            if &b[pos..pos + 4] == b"data" {
                let end = (pos + 8 + len).min(b.len());
                out.extend(
                    b[pos + 8..end]
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]])),
                );
                break;
            }
            pos += 8 + len + (len & 1);
        }
    }
    assert!(
        out.len() > 16_000 * 8,
        "speech units missing: {}",
        out.len()
    );
    out
}

/// The test signal at the codec's rate: every speech unit three times (as recorded, 12 dB
/// louder and clipped, 26 dB quieter), with 1.2 s of faint noise between units so that DTX
/// starts, hangs over and sends SID updates.
pub fn signal<U: Under>() -> Vec<i16> {
    let s16 = speech_16k();
    let speech: Vec<i16> = if U::WIDE {
        s16
    } else {
        // 2:1 with a short half-band-ish smoother: a test input, not a resampler.
        s16.chunks_exact(2)
            .enumerate()
            .map(|(i, c)| {
                let prev = if i > 0 { s16[2 * i - 1] } else { 0 };
                ((i32::from(prev) + 2 * i32::from(c[0]) + i32::from(c[1])) / 4) as i16
            })
            .collect()
    };
    let rate = if U::WIDE { 16_000 } else { 8_000 };
    let mut rng = 0x1234_5678u32;
    let mut noise = |amp: f32| {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        ((rng as f32 / u32::MAX as f32 - 0.5) * 2.0 * amp) as i16
    };
    let mut out = Vec::new();
    // Units are split where the files joined: cut the speech into ~1.5 s pieces.
    let piece = rate * 3 / 2;
    for gain in [1.0f32, 4.0, 0.05] {
        for chunk in speech.chunks(piece) {
            out.extend(
                chunk
                    .iter()
                    .map(|&v| (f32::from(v) * gain).clamp(-32768.0, 32767.0) as i16),
            );
            for _ in 0..rate * 6 / 5 {
                out.push(noise(30.0));
            }
        }
    }
    let fl = U::FL;
    out.truncate(out.len() / fl * fl);
    out
}

/// Encodes `pcm` in `mode` (DTX on or off) into storage-format frames.
pub fn encode<U: Under>(pcm: &[i16], mode: u8, dtx: bool) -> Vec<Frame> {
    let cfg = if U::WIDE {
        CodecConfig::amr_wb()
    } else {
        CodecConfig::amr_nb()
    }
    .with_amr_mode_set(&[mode])
    .with_amr_dtx(dtx);
    let mut enc = AmrCodec::new(&cfg).unwrap();
    pcm.chunks_exact(U::FL)
        .map(|c| {
            let f = enc.encode_frame(c).unwrap();
            let ft = match f.kind {
                FrameKind::Speech => f.mode,
                FrameKind::ComfortNoise => sid_ft::<U>(),
                _ => 15,
            };
            let mut data = f.data;
            data.resize(U::SIZES[usize::from(ft)], 0);
            Frame::Coded(ft, true, data)
        })
        .collect()
}

/// Damages a stream the ways real files are damaged: Q=0 frames, single and burst losses,
/// a reserved frame type now and then.
pub fn damage<U: Under>(frames: &mut [Frame], seed: u32) {
    let mut r = seed | 1;
    let mut next = || {
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        r
    };
    let mut i = 0;
    while i < frames.len() {
        match next() % 40 {
            0 | 1 => {
                if let Frame::Coded(_, q, _) = &mut frames[i] {
                    *q = false;
                }
            }
            2 => frames[i] = Frame::Lost,
            3 => {
                for f in frames.iter_mut().skip(i).take(4) {
                    *f = Frame::Lost;
                }
                i += 3;
            }
            4 => {
                let ft = if U::WIDE { 14 } else { 12 };
                frames[i] = Frame::Coded(ft, true, Vec::new());
            }
            _ => {}
        }
        i += 1;
    }
}

/// Decodes a stream with the oracle, driven exactly as asr-pipeline drove it
/// (`src/decode/amr.rs` before this crate).
pub fn oracle<U: Under>(frames: &[Frame]) -> Vec<i16> {
    let cfg = if U::WIDE {
        CodecConfig::amr_wb()
    } else {
        CodecConfig::amr_nb()
    };
    let mut codec = AmrCodec::new(&cfg).unwrap();
    let (speech_max, sid, lost_ft) = if U::WIDE { (8, 9, 14) } else { (7, 8, 99) };
    let mut mode = if U::WIDE { 8 } else { 7 };
    let mut out = Vec::with_capacity(frames.len() * U::FL);
    for f in frames {
        let frame = match f {
            Frame::Lost => CodedFrame {
                kind: FrameKind::Lost,
                mode,
                quality_ok: false,
                data: Vec::new(),
            },
            Frame::Coded(ft, q, data) => {
                let kind = if *ft <= speech_max {
                    mode = *ft;
                    FrameKind::Speech
                } else if *ft == sid {
                    FrameKind::ComfortNoise
                } else if *ft == lost_ft {
                    FrameKind::Lost
                } else {
                    FrameKind::NoData
                };
                CodedFrame {
                    kind,
                    mode,
                    quality_ok: *q,
                    data: data.clone(),
                }
            }
        };
        let pcm = match codec.decode_frame(&frame) {
            Ok(p) if p.len() == U::FL => p,
            _ => {
                let lost = CodedFrame {
                    kind: FrameKind::Lost,
                    mode,
                    quality_ok: false,
                    data: Vec::new(),
                };
                match codec.decode_frame(&lost) {
                    Ok(p) if p.len() == U::FL => p,
                    _ => vec![0; U::FL],
                }
            }
        };
        out.extend_from_slice(&pcm);
    }
    out
}

/// Decodes a stream with the decoder under test.
pub fn ours<U: Under>(frames: &[Frame]) -> Vec<i16> {
    let mut d = U::new();
    let mut out = vec![0i16; frames.len() * U::FL];
    for (f, o) in frames.iter().zip(out.chunks_exact_mut(U::FL)) {
        match f {
            Frame::Lost => d.lost(o),
            Frame::Coded(ft, q, p) => d.decode(*ft, *q, p, o),
        }
    }
    out
}

/// Per-kind tallies: frames, bit-exact frames, reference energy, error energy.
#[derive(Default)]
pub struct Tally(BTreeMap<String, [f64; 4]>);

impl Tally {
    pub fn add<U: Under>(&mut self, frames: &[Frame], want: &[i16], got: &[i16]) {
        assert_eq!(want.len(), frames.len() * U::FL);
        assert_eq!(got.len(), want.len(), "length must be exact");
        for ((f, w), g) in frames
            .iter()
            .zip(want.chunks_exact(U::FL))
            .zip(got.chunks_exact(U::FL))
        {
            let t = self.0.entry(kind::<U>(f)).or_default();
            t[0] += 1.0;
            if w == g {
                t[1] += 1.0;
            }
            for (&a, &b) in w.iter().zip(g) {
                let (a, b) = (f64::from(a), f64::from(b));
                t[2] += a * a;
                t[3] += (a - b) * (a - b);
            }
        }
    }

    /// Prints the table and returns the kinds below `min_db`.
    pub fn report(&self, min_db: f64) -> Vec<String> {
        let mut bad = Vec::new();
        println!(
            "{:<22} {:>7} {:>10} {:>9}",
            "frame kind", "frames", "bit-exact", "SNR dB"
        );
        for (k, t) in &self.0 {
            let snr = if t[3] == 0.0 {
                f64::INFINITY
            } else {
                10.0 * (t[2].max(1.0) / t[3]).log10()
            };
            println!("{k:<22} {:>7} {:>10} {snr:>9.1}", t[0], t[1]);
            if snr < min_db {
                bad.push(format!("{k}: {snr:.1} dB"));
            }
        }
        bad
    }
}

/// `f` over `items`, on as many threads as the machine has (the streams are independent).
fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let next = queue.lock().unwrap().next();
                        let Some((i, item)) = next else { break done };
                        done.push((i, f(item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    out.sort_by_key(|&(i, _)| i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Every stream of the test: each mode with DTX, each mode damaged, mode switches, random
/// payloads.
pub fn streams<U: Under>() -> Vec<(String, Vec<Frame>)> {
    let pcm = signal::<U>();
    let mut all = Vec::new();
    let per_mode: Vec<Vec<Frame>> =
        par_map((0..modes::<U>()).collect(), |m| encode::<U>(&pcm, m, true));
    for (m, frames) in per_mode.iter().enumerate() {
        all.push((format!("mode {m}, DTX"), frames.clone()));
        let mut d = frames.clone();
        damage::<U>(&mut d, 0x9e37_79b9 ^ m as u32);
        all.push((format!("mode {m}, DTX, damaged"), d));
    }
    // Mode switches every 7 frames, DTX off, then damaged.
    let no_dtx: Vec<Vec<Frame>> =
        par_map((0..modes::<U>()).collect(), |m| encode::<U>(&pcm, m, false));
    let n = no_dtx[0].len();
    let switching: Vec<Frame> = (0..n)
        .map(|i| no_dtx[(i / 7 * 5) % no_dtx.len()][i].clone())
        .collect();
    all.push(("mode switches".into(), switching.clone()));
    let mut d = switching;
    damage::<U>(&mut d, 77);
    all.push(("mode switches, damaged".into(), d));
    // Random payloads of every type: any bits are a valid frame.
    let mut r = 0xdead_beefu32;
    let random: Vec<Frame> = (0..3000)
        .map(|_| {
            r ^= r << 13;
            r ^= r >> 17;
            r ^= r << 5;
            let ft = if r.is_multiple_of(5) {
                (r >> 8) as u8 % 16
            } else {
                (r >> 8) as u8 % modes::<U>()
            };
            let payload = (0..U::SIZES[usize::from(ft)])
                .map(|_| {
                    r ^= r << 13;
                    r ^= r >> 17;
                    r ^= r << 5;
                    r as u8
                })
                .collect();
            Frame::Coded(ft, !r.is_multiple_of(11), payload)
        })
        .collect();
    all.push(("random payloads".into(), random));
    all
}

/// The whole comparison. Panics with the kinds below 40 dB SNR (the floor issue 14 set), and,
/// since both decoders reached it, with the streams that are not bit-exact: any difference
/// from the reference is now a regression.
pub fn run<U: Under>() {
    let mut tally = Tally::default();
    let mut inexact = Vec::new();
    let decoded = par_map(streams::<U>(), |(name, frames)| {
        let want = oracle::<U>(&frames);
        let got = ours::<U>(&frames);
        (name, frames, want, got)
    });
    for (name, frames, want, got) in decoded {
        let exact = want
            .chunks_exact(U::FL)
            .zip(got.chunks_exact(U::FL))
            .filter(|(a, b)| a == b)
            .count();
        let first = want.iter().zip(&got).position(|(a, b)| a != b);
        println!(
            "{name:<28} {} frames, {exact} bit-exact, first difference at {}",
            frames.len(),
            first.map_or("none".into(), |i| format!(
                "frame {} ({:?})",
                i / U::FL,
                kind::<U>(&frames[i / U::FL])
            ))
        );
        if first.is_some() {
            inexact.push(name);
        }
        tally.add::<U>(&frames, &want, &got);
    }
    let bad = tally.report(40.0);
    assert!(
        bad.is_empty(),
        "below 40 dB SNR against the oracle: {bad:?}"
    );
    assert!(inexact.is_empty(), "not bit-exact: {inexact:?}");
}
