//! Decoding every supported format: duration to the sample, content (tone frequency, level,
//! onset time, correlation for lossless formats), and bad input.
//!
//! The committed fixtures (testdata/formats, see its README) are all the same signal:
//! 0.25 s of silence, 1 s of a sine at amplitude 0.5, 0.25 s of silence (1.5 s).

use std::f64::consts::PI;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use asr_pipeline::decode::{Decoder, Format};
use asr_pipeline::ErrorKind;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/formats")
        .join(name)
}

/// Decodes everything; panics on error.
fn decode_all(d: &mut Decoder) -> Vec<f32> {
    let mut out = Vec::new();
    loop {
        let n = d.read_mono(&mut out).expect("decode");
        if n == 0 {
            break;
        }
    }
    assert_eq!(out.len() as u64, d.frames_decoded());
    out
}

fn decode_path(p: &Path) -> (Vec<f32>, Decoder) {
    let mut d = Decoder::open(p).expect("open");
    let pcm = decode_all(&mut d);
    (pcm, d)
}

fn decode_bytes(b: Vec<u8>) -> asr_pipeline::Result<(Vec<f32>, Decoder)> {
    let mut d = Decoder::from_reader(Cursor::new(b), Some(Path::new("mem.bin")))?;
    let mut out = Vec::new();
    while d.read_mono(&mut out)? > 0 {}
    Ok((out, d))
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Frequency from zero crossings (linear interpolation at each crossing).
fn zc_freq(x: &[f32], rate: u32) -> f64 {
    let mut first = None;
    let mut last = 0.0;
    let mut count = 0usize;
    for i in 1..x.len() {
        let (a, b) = (f64::from(x[i - 1]), f64::from(x[i]));
        if a < 0.0 && b >= 0.0 {
            let t = (i - 1) as f64 + a / (a - b);
            if first.is_none() {
                first = Some(t);
            } else {
                count += 1;
            }
            last = t;
        }
    }
    count as f64 * f64::from(rate) / (last - first.unwrap_or(0.0))
}

/// First sample where the 1 ms envelope reaches half of the tone's amplitude 0.5.
fn onset(x: &[f32], rate: u32) -> usize {
    let w = (rate / 1000) as usize;
    for i in 0..x.len().saturating_sub(w) {
        if x[i..i + w].iter().any(|&v| v.abs() >= 0.25) {
            return x[i..i + w].iter().position(|&v| v.abs() >= 0.25).unwrap() + i;
        }
    }
    usize::MAX
}

/// The reference signal of the fixtures.
fn reference(rate: u32, freq: f64) -> Vec<f32> {
    let r = rate as usize;
    let mut v = vec![0.0f32; r / 4];
    v.extend((0..r).map(|n| (0.5 * (2.0 * PI * freq * n as f64 / f64::from(rate)).sin()) as f32));
    v.extend(std::iter::repeat_n(0.0, r / 4));
    v
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]), f64::from(b[i]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

/// Checks a decoded fixture: exact length, tone frequency and level in the middle, onset
/// at 0.25 s within `onset_tol` samples, silence at both ends.
fn check_tone(pcm: &[f32], rate: u32, freq: f64, onset_tol: usize, level_tol_db: f64) {
    let r = rate as usize;
    assert_eq!(pcm.len(), r * 3 / 2, "duration to the sample");
    let mid = &pcm[r / 2..r];
    let f = zc_freq(mid, rate);
    assert!(
        (f - freq).abs() < freq * 0.002,
        "frequency {f} Hz, want {freq}"
    );
    let level = 20.0 * (rms(mid) / (0.5 / 2f64.sqrt())).log10();
    assert!(level.abs() < level_tol_db, "level {level:+.2} dB off");
    let o = onset(pcm, rate);
    let want = onset(&reference(rate, freq), rate);
    assert!(
        o.abs_diff(want) <= onset_tol,
        "onset at {o}, want {want} ± {onset_tol}"
    );
    assert!(rms(&pcm[..r / 5]) < 0.01, "leading silence");
    assert!(rms(&pcm[pcm.len() - r / 5..]) < 0.01, "trailing silence");
}

#[test]
fn flac_stereo_fixture_is_lossless() {
    let (pcm, d) = decode_path(&fixture("tone_44k1_stereo.flac"));
    assert_eq!(d.info().format, Format::Flac);
    assert_eq!(d.info().sample_rate.get(), 44_100);
    assert_eq!(d.info().channels.get(), 2);
    assert_eq!(d.info().frames_hint, Some(66_150));
    check_tone(&pcm, 44_100, 1000.0, 1, 0.05);
    let c = correlation(&pcm, &reference(44_100, 1000.0));
    assert!(c >= 0.9999, "correlation {c}");
}

#[test]
fn ulaw_wav_fixture() {
    let (pcm, d) = decode_path(&fixture("tone_8k_ulaw.wav"));
    assert_eq!(d.info().format, Format::Wav);
    check_tone(&pcm, 8000, 440.0, 1, 0.1);
    let c = correlation(&pcm, &reference(8000, 440.0));
    assert!(c >= 0.99, "correlation {c}");
}

#[test]
fn vorbis_fixture() {
    let (pcm, d) = decode_path(&fixture("tone_44k1_stereo.ogg"));
    assert_eq!(d.info().format, Format::OggVorbis);
    check_tone(&pcm, 44_100, 1000.0, 44, 0.5);
}

#[test]
fn opus_fixture() {
    let (pcm, d) = decode_path(&fixture("tone_48k_mono.opus"));
    assert_eq!(d.info().format, Format::OggOpus);
    assert_eq!(d.info().sample_rate.get(), 48_000);
    check_tone(&pcm, 48_000, 1000.0, 48, 0.5);
    assert_eq!(d.packets_skipped(), 0);
}

#[test]
fn mp3_fixture_gapless() {
    let (pcm, d) = decode_path(&fixture("tone_44k1_stereo.mp3"));
    assert_eq!(d.info().format, Format::Mp3);
    check_tone(&pcm, 44_100, 1000.0, 44, 0.5);
}

#[test]
fn m4a_fixture_priming_trimmed() {
    let (pcm, d) = decode_path(&fixture("tone_44k1_stereo.m4a"));
    assert_eq!(d.info().format, Format::Mp4Aac);
    check_tone(&pcm, 44_100, 1000.0, 44, 0.5);
}

#[test]
fn amr_nb_fixture() {
    let (pcm, d) = decode_path(&fixture("tone_8k.amr"));
    assert_eq!(d.info().format, Format::AmrNb);
    assert_eq!(d.info().sample_rate.get(), 8000);
    // AMR is a speech codec: its excitation builds up over the first frame of a sudden tone,
    // so the onset (by our half-amplitude threshold) comes up to one 20 ms frame late. The
    // sox/opencore decode of this file has the same onset (our decode is bit-exact with it).
    check_tone(&pcm, 8000, 440.0, 160, 3.0);
}

// ---------------------------------------------------------------------------------------------
// WAV variants, generated here.

/// Sine at `freq`, amplitude `amp`, `n` frames at `rate`.
fn sine(n: usize, rate: u32, freq: f64, amp: f64) -> Vec<f64> {
    (0..n)
        .map(|i| amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin())
        .collect()
}

/// A WAV file: `fmt ` with `tag` (or WAVE_FORMAT_EXTENSIBLE carrying `tag` as sub-format),
/// then `data`. `riff_data_len` overrides the data chunk size field.
fn wav_file(
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    extensible: bool,
    data: &[u8],
    data_len_field: Option<u32>,
) -> Vec<u8> {
    let align = channels.wrapping_mul(bits.div_ceil(8));
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&(if extensible { 0xFFFEu16 } else { tag }).to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&rate.wrapping_mul(u32::from(align)).to_le_bytes());
    fmt.extend_from_slice(&align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    if extensible {
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        let mask: u32 = if channels == 2 {
            3
        } else {
            (1u32 << channels.min(18)) - 1
        };
        fmt.extend_from_slice(&mask.to_le_bytes());
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
        ]);
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    let riff = 4 + 8 + fmt.len() + 8 + data.len();
    out.extend_from_slice(&(riff as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(&fmt);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len_field.unwrap_or(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn ulaw(s: i16) -> u8 {
    let mut x = i32::from(s);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(32635) + 0x84;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && x & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mant = (x >> (exp + 3)) & 0x0F;
    !(sign | (exp << 4) as u8 | mant as u8)
}

fn alaw(s: i16) -> u8 {
    let mut v = i32::from(s) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let ends = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let seg = ends.iter().position(|&e| v <= e).unwrap_or(8);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mut a = (seg as i32) << 4;
    a |= if seg < 2 {
        (v >> 1) & 0xF
    } else {
        (v >> seg) & 0xF
    };
    (a as u8) ^ mask
}

/// Encodes interleaved samples in `[-1, 1)` for a WAV `tag`/`bits` combination.
fn encode_samples(x: &[f64], tag: u16, bits: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in x {
        match (tag, bits) {
            (1, 8) => out.push(((v * 128.0).round() as i32 + 128).clamp(0, 255) as u8),
            (1, 16) => out.extend_from_slice(&((v * 32768.0).round() as i16).to_le_bytes()),
            (1, 24) => {
                out.extend_from_slice(&((v * 8_388_608.0).round() as i32).to_le_bytes()[..3])
            }
            (1, 32) => out.extend_from_slice(&((v * 2_147_483_648.0).round() as i32).to_le_bytes()),
            (3, 32) => out.extend_from_slice(&(v as f32).to_le_bytes()),
            (3, 64) => out.extend_from_slice(&v.to_le_bytes()),
            (6, 8) => out.push(alaw((v * 32768.0) as i16)),
            (7, 8) => out.push(ulaw((v * 32768.0) as i16)),
            _ => unreachable!(),
        }
    }
    out
}

#[test]
fn wav_variants_decode_and_downmix_to_the_mean() {
    let rate = 16_000;
    let n = 24_000;
    // Channel c carries the same 440 Hz sine at amplitude 0.1 × (c + 1): the mean of channels
    // is that sine at 0.1 × (channels + 1) / 2.
    for &(tag, bits) in &[
        (1, 8),
        (1, 16),
        (1, 24),
        (1, 32),
        (3, 32),
        (3, 64),
        (6, 8),
        (7, 8),
    ] {
        for &channels in &[1u16, 2, 6] {
            for &ext in &[false, true] {
                let chans: Vec<Vec<f64>> = (0..channels)
                    .map(|c| sine(n, rate, 440.0, 0.1 * f64::from(c + 1)))
                    .collect();
                let inter: Vec<f64> = (0..n)
                    .flat_map(|i| chans.iter().map(move |ch| ch[i]))
                    .collect();
                let bytes = wav_file(
                    tag,
                    channels,
                    rate,
                    bits,
                    ext,
                    &encode_samples(&inter, tag, bits),
                    None,
                );
                let what = format!("tag {tag} bits {bits} ch {channels} ext {ext}");
                let (pcm, d) = decode_bytes(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(d.info().format, Format::Wav);
                assert_eq!(d.info().channels.get(), channels, "{what}");
                assert_eq!(d.info().frames_hint, Some(n as u64), "{what}");
                assert_eq!(pcm.len(), n, "{what}");
                let want = sine(n, rate, 440.0, 0.1 * f64::from(channels + 1) / 2.0);
                let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
                let c = correlation(&pcm, &want);
                assert!(c >= 0.999, "{what}: correlation {c}");
                let ratio = rms(&pcm) / rms(&want);
                assert!((ratio - 1.0).abs() < 0.02, "{what}: level ratio {ratio}");
                let f = zc_freq(&pcm, rate);
                assert!((f - 440.0).abs() < 0.5, "{what}: {f} Hz");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AMR: DTX, lost frames, AMR-WB.

use codec_core::codecs::amr::AmrCodec;
use codec_core::types::{CodecConfig, FrameKind, VariableRateCodec};

/// Encodes 16-bit PCM into an AMR storage file with rvoip-codec-core's encoder.
/// Returns the file and the number of (speech, SID, NO_DATA) frames.
fn amr_encode(pcm: &[i16], wide: bool, dtx: bool) -> (Vec<u8>, [usize; 3]) {
    let cfg = if wide {
        CodecConfig::amr_wb()
    } else {
        CodecConfig::amr_nb()
    }
    .with_amr_dtx(dtx);
    let mut enc = AmrCodec::new(&cfg).unwrap();
    let fl = if wide { 320 } else { 160 };
    let mut out = Vec::from(if wide {
        &b"#!AMR-WB\n"[..]
    } else {
        &b"#!AMR\n"[..]
    });
    let mut counts = [0; 3];
    for chunk in pcm.chunks_exact(fl) {
        let f = enc.encode_frame(chunk).unwrap();
        let ft = match f.kind {
            FrameKind::Speech => {
                counts[0] += 1;
                f.mode
            }
            FrameKind::ComfortNoise => {
                counts[1] += 1;
                if wide {
                    9
                } else {
                    8
                }
            }
            _ => {
                counts[2] += 1;
                15
            }
        };
        out.push((ft << 3) | 0x04);
        out.extend_from_slice(&f.data);
    }
    (out, counts)
}

#[test]
fn amr_nb_with_dtx_keeps_its_duration() {
    // 30 s: 1 s of tone, 2 s of near-silence (DTX: SID + NO_DATA), repeated.
    let rate = 8000usize;
    let mut pcm = Vec::with_capacity(30 * rate);
    let mut noise = fastrand::Rng::with_seed(7);
    for i in 0..30 * rate {
        let t = i as f64 / rate as f64;
        let v = if (i / rate) % 3 == 0 {
            0.3 * (2.0 * PI * 440.0 * t).sin()
        } else {
            (noise.f64() - 0.5) * 0.001
        };
        pcm.push((v * 32767.0) as i16);
    }
    let (file, [speech, sid, nodata]) = amr_encode(&pcm, false, true);
    assert!(
        sid > 0 && nodata > 100 && speech > 100,
        "{speech} {sid} {nodata}"
    );
    let (out, d) = decode_bytes(file).unwrap();
    assert_eq!(d.info().format, Format::AmrNb);
    assert_eq!(out.len(), 30 * rate, "30.00 s exactly");
    // The tone seconds are loud, the DTX seconds quiet.
    assert!(rms(&out[rate / 2..rate]) > 0.1);
    assert!(rms(&out[rate * 3 / 2..rate * 2]) < 0.01);
}

#[test]
fn amr_nb_no_data_sid_and_lost_frames_each_keep_20ms() {
    // Rewrite frames of the sox-made fixture: NO_DATA, a reserved type and a damaged (Q=0)
    // frame all stay 20 ms long.
    let bytes = std::fs::read(fixture("tone_8k.amr")).unwrap();
    let mut out = bytes[..6].to_vec();
    let mut pos = 6;
    let mut idx = 0;
    while pos < bytes.len() {
        let toc = bytes[pos];
        let len = 1 + [12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0]
            [usize::from((toc >> 3) & 15)];
        match idx {
            20..=29 => out.push(15 << 3 | 4), // NO_DATA
            30 => out.push(12 << 3 | 4),      // reserved type: no payload
            40 => {
                out.push(toc & !0x04); // Q = 0: damaged
                out.extend_from_slice(&bytes[pos + 1..pos + len]);
            }
            _ => out.extend_from_slice(&bytes[pos..pos + len]),
        }
        pos += len;
        idx += 1;
    }
    let (pcm, _) = decode_bytes(out).unwrap();
    assert_eq!(pcm.len(), 12_000);
}

#[test]
fn amr_wb_tone_round_trip() {
    let rate = 16_000u32;
    let r = rate as usize;
    let src = reference(rate, 1000.0);
    let pcm: Vec<i16> = src
        .iter()
        .map(|&v| (f64::from(v) * 32767.0) as i16)
        .collect();
    let (file, [speech, _, _]) = amr_encode(&pcm, true, false);
    assert_eq!(speech, 75);
    let (out, d) = decode_bytes(file).unwrap();
    assert_eq!(d.info().format, Format::AmrWb);
    assert_eq!(d.info().sample_rate.get(), rate);
    assert_eq!(out.len(), r * 3 / 2);
    check_tone(&out, rate, 1000.0, 320, 3.0);
}
