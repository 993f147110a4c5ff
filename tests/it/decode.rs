//! Decoding every supported format: duration to the sample, content (tone frequency, level,
//! onset time, correlation for lossless formats), and bad input.
//!
//! The committed fixtures (testdata/formats, see its README) are all the same signal:
//! 0.25 s of silence, 1 s of a sine at amplitude 0.5, 0.25 s of silence (1.5 s).

use std::f64::consts::PI;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use asr_pipeline::decode::{AudioFormat, Decoder};
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
    assert_eq!(d.info().format, AudioFormat::Flac);
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
    assert_eq!(d.info().format, AudioFormat::Wav);
    check_tone(&pcm, 8000, 440.0, 1, 0.1);
    let c = correlation(&pcm, &reference(8000, 440.0));
    assert!(c >= 0.99, "correlation {c}");
}

#[test]
fn vorbis_fixture() {
    let (pcm, d) = decode_path(&fixture("tone_44k1_stereo.ogg"));
    assert_eq!(d.info().format, AudioFormat::OggVorbis);
    check_tone(&pcm, 44_100, 1000.0, 44, 0.5);
}

#[test]
fn opus_fixture() {
    let (pcm, d) = decode_path(&fixture("tone_48k_mono.opus"));
    assert_eq!(d.info().format, AudioFormat::OggOpus);
    assert_eq!(d.info().sample_rate.get(), 48_000);
    assert_eq!(d.info().frames_hint, Some(72_000));
    check_tone(&pcm, 48_000, 1000.0, 48, 0.5);
    assert_eq!(d.packets_skipped(), 0);
}

#[test]
fn mp3_fixture_gapless() {
    let (pcm, d) = decode_path(&fixture("tone_44k1_stereo.mp3"));
    assert_eq!(d.info().format, AudioFormat::Mp3);
    assert_eq!(d.info().frames_hint, Some(66_150));
    check_tone(&pcm, 44_100, 1000.0, 44, 0.5);
}

#[test]
fn mp3_without_lame_header_trims_the_decoder_delay() {
    // The fixture with its Xing/LAME "Info" frame removed (the first MP3 frame): the decoder
    // can no longer know the encoder delay, but the 529-frame decoder delay is still trimmed,
    // so the tone starts one LAME encoder delay (576 frames) late, not 1105.
    let b = std::fs::read(fixture("tone_44k1_stereo.mp3")).unwrap();
    let mut start = 0;
    if b.starts_with(b"ID3") {
        let size = b[6..10]
            .iter()
            .fold(0usize, |a, &x| (a << 7) | usize::from(x & 0x7f));
        start = 10 + size;
    }
    // The Info frame: 96 kbit/s, 44.1 kHz, no padding bit -> 144 * 96000 / 44100 = 313 bytes.
    let info = &b[start..start + 313];
    assert!(info.windows(4).any(|w| w == b"Info" || w == b"Xing"));
    let mut stripped = b[..start].to_vec();
    stripped.extend_from_slice(&b[start + 313..]);
    let (pcm, _) = decode_bytes(stripped).unwrap();
    let late = onset(&pcm, 44_100) as i64 - onset(&reference(44_100, 1000.0), 44_100) as i64;
    assert!((late - 576).abs() <= 44, "onset {late} frames late");
}

#[test]
fn m4a_fixture_priming_trimmed() {
    let (pcm, d) = decode_path(&fixture("tone_44k1_stereo.m4a"));
    assert_eq!(d.info().format, AudioFormat::Mp4Aac);
    assert_eq!(d.info().frames_hint, Some(66_150));
    check_tone(&pcm, 44_100, 1000.0, 44, 0.5);
}

#[test]
fn amr_nb_fixture() {
    let (pcm, d) = decode_path(&fixture("tone_8k.amr"));
    assert_eq!(d.info().format, AudioFormat::AmrNb);
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
                assert_eq!(d.info().format, AudioFormat::Wav);
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

/// A read hands out a bounded number of frames whatever the sample size: the stream after the
/// decoder sizes its queues in reads, and 64 KiB of 8 kHz µ-law (one byte a frame) would be
/// 8 s of audio in one read.
#[test]
fn wav_reads_are_bounded_in_frames() {
    let n = 100_003;
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    for (tag, bits, width) in [(7u16, 8u16, 1usize), (1, 16, 2)] {
        let bytes = wav_file(tag, 1, 8000, bits, false, &data[..n - n % width], None);
        let mut d = Decoder::from_reader(Cursor::new(bytes), None).unwrap();
        let (mut out, mut total, mut largest) = (Vec::new(), 0, 0);
        loop {
            let got = d.read_mono(&mut out).unwrap();
            if got == 0 {
                break;
            }
            total += got;
            largest = largest.max(got);
        }
        assert_eq!(total, n / width, "tag {tag}");
        assert!(largest <= 8192, "tag {tag}: a read of {largest} frames");
    }
}

/// The plain sample formats of WAV, read straight from the data chunk: exact values (the
/// conversions Symphonia made, which decoded them before), the codec names Symphonia reported,
/// the mean of the channels, every channel interleaved, and whole frames only.
#[test]
fn wav_plain_formats_exact_values() {
    let le24 = |v: i32| v.to_le_bytes()[..3].to_vec();
    #[allow(clippy::type_complexity)]
    let cases: Vec<(u16, u16, &str, Vec<Vec<u8>>, [f32; 4])> = vec![
        (
            1,
            8,
            "pcm_u8",
            [0u8, 128, 255, 1].map(|b| vec![b]).to_vec(),
            [-1.0, 0.0, 127.0 / 128.0, 1.0 / 128.0 - 1.0],
        ),
        (
            1,
            16,
            "pcm_s16le",
            [i16::MIN, 0, i16::MAX, -1]
                .map(|v| v.to_le_bytes().to_vec())
                .to_vec(),
            [-1.0, 0.0, 32767.0 / 32768.0, -1.0 / 32768.0],
        ),
        (
            1,
            24,
            "pcm_s24le",
            [-8_388_608, 0, 8_388_607, -1].map(le24).to_vec(),
            [-1.0, 0.0, 8_388_607.0 / 8_388_608.0, -1.0 / 8_388_608.0],
        ),
        (
            1,
            32,
            "pcm_s32le",
            [i32::MIN, 0, i32::MAX, -1]
                .map(|v| v.to_le_bytes().to_vec())
                .to_vec(),
            // i32::MAX / 2³¹ rounds to 1.0 in f32.
            [-1.0, 0.0, 1.0, -1.0 / 2_147_483_648.0],
        ),
        (
            3,
            32,
            "pcm_f32le",
            [-1.0f32, 0.0, 0.75, 2.5]
                .map(|v| v.to_le_bytes().to_vec())
                .to_vec(),
            [-1.0, 0.0, 0.75, 2.5],
        ),
        (
            3,
            64,
            "pcm_f64le",
            [-1.0f64, 0.0, 0.1, 1e300]
                .map(|v| v.to_le_bytes().to_vec())
                .to_vec(),
            [-1.0, 0.0, 0.1f64 as f32, f32::INFINITY],
        ),
        (
            6,
            8,
            "pcm_alaw",
            [0xD5u8, 0x55, 0x2A, 0xAA].map(|b| vec![b]).to_vec(),
            [
                8.0 / 32768.0,
                -8.0 / 32768.0,
                -32256.0 / 32768.0,
                32256.0 / 32768.0,
            ],
        ),
        (
            7,
            8,
            "pcm_mulaw",
            [0xFFu8, 0x7F, 0x00, 0x80].map(|b| vec![b]).to_vec(),
            [0.0, 0.0, -32124.0 / 32768.0, 32124.0 / 32768.0],
        ),
    ];
    let rate = 8000;
    for (tag, bits, codec, coded, values) in cases {
        for channels in [1u16, 2, 3] {
            for ext in [false, true] {
                let what = format!("{codec} ch {channels} ext {ext}");
                let ch = usize::from(channels);
                // Channel c of frame i carries value (i + c) % 4.
                let n = 1001;
                let mut data = Vec::new();
                let mut want_inter = Vec::new();
                let mut want_mono = Vec::new();
                for i in 0..n {
                    let mut acc = 0.0f32;
                    for c in 0..ch {
                        data.extend_from_slice(&coded[(i + c) % 4]);
                        want_inter.push(values[(i + c) % 4]);
                        acc += values[(i + c) % 4];
                    }
                    want_mono.push(match ch {
                        1 => values[i % 4],
                        2 => (values[i % 4] + values[(i + 1) % 4]) * 0.5,
                        _ => acc * (1.0 / ch as f32),
                    });
                }
                // The decoder hands out a sample that is not a finite number as 0, and clips
                // the rest to full scale.
                for v in want_inter.iter_mut().chain(&mut want_mono) {
                    *v = if v.is_finite() {
                        v.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    };
                }
                let frame = data.len() / n;
                // A partial last frame is not decoded, and is no error.
                let mut partial = data.clone();
                partial.extend_from_slice(&vec![0x11; frame - 1]);
                let bytes = wav_file(tag, channels, rate, bits, ext, &partial, None);
                let mut d = Decoder::from_reader(Cursor::new(bytes.clone()), None).unwrap();
                assert_eq!(d.info().codec, codec, "{what}");
                assert_eq!(d.info().frames_hint, Some(n as u64), "{what}");
                assert_eq!(d.info().channels.get(), channels, "{what}");
                let mono = decode_all(&mut d);
                assert_eq!(mono.len(), n, "{what}");
                for (i, (a, b)) in mono.iter().zip(&want_mono).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{what}: frame {i}: {a} vs {b}");
                }
                let mut d = Decoder::from_reader(Cursor::new(bytes), None).unwrap();
                let mut inter = Vec::new();
                while d.read_interleaved(&mut inter).unwrap() > 0 {}
                assert_eq!(inter.len(), n * ch, "{what}");
                for (i, (a, b)) in inter.iter().zip(&want_inter).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{what}: sample {i}: {a} vs {b}");
                }
                // A data chunk that claims 3 frames more than the file holds: what is there,
                // then Truncated, naming the file.
                let claims = (data.len() + 3 * frame) as u32;
                let bytes = wav_file(tag, channels, rate, bits, ext, &data, Some(claims));
                let (frames, e) = decode_until_error(bytes);
                assert_eq!(frames, n, "{what}");
                let e = e.unwrap_or_else(|| panic!("{what}: no truncation"));
                assert!(
                    matches!(e.kind(), ErrorKind::Truncated { decoded_frames, sample_rate: 8000, .. } if *decoded_frames == n as u64),
                    "{what}: {e}"
                );
                assert!(e.to_string().starts_with("bad.bin: "), "{e}");
            }
        }
    }
}

#[test]
fn wav_is_read_in_bounded_blocks() {
    // 10 s of 48 kHz stereo 16-bit: every read hands out at most 8 192 frames (32 KiB of the
    // data chunk here), whatever the file's length.
    let n = 480_000;
    let x = sine(n, 48_000, 440.0, 0.5);
    let inter: Vec<f64> = x.iter().flat_map(|&v| [v, -v]).collect();
    let bytes = wav_file(
        1,
        2,
        48_000,
        16,
        false,
        &encode_samples(&inter, 1, 16),
        None,
    );
    let mut d = Decoder::from_reader(Cursor::new(bytes), None).unwrap();
    let mut out = Vec::new();
    let mut reads = 0;
    loop {
        let before = out.len();
        let got = d.read_mono(&mut out).unwrap();
        if got == 0 {
            break;
        }
        assert!(got <= 8_192, "{got} frames in one read");
        assert_eq!(out.len() - before, got);
        reads += 1;
    }
    assert_eq!(out.len(), n);
    assert!(reads >= n / 8_192, "{reads} reads");
    // L and -L: the mean is exactly 0.
    assert!(out.iter().all(|&v| v == 0.0));
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
        let v = if (i / rate).is_multiple_of(3) {
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
    assert_eq!(d.info().format, AudioFormat::AmrNb);
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
    let (pcm, d) = decode_bytes(out).unwrap();
    assert_eq!(pcm.len(), 12_000);
    // The reserved type and the damaged frame carried nothing usable; NO_DATA is DTX, not loss.
    assert_eq!(d.packets_skipped(), 2);
}

#[test]
fn amr_wb_fixture() {
    let (pcm, d) = decode_path(&fixture("tone_16k_wb.amr"));
    assert_eq!(d.info().format, AudioFormat::AmrWb);
    assert_eq!(d.info().sample_rate.get(), 16_000);
    check_tone(&pcm, 16_000, 1000.0, 320, 3.0);
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
    assert_eq!(d.info().format, AudioFormat::AmrWb);
    assert_eq!(d.info().sample_rate.get(), rate);
    assert_eq!(out.len(), r * 3 / 2);
    check_tone(&out, rate, 1000.0, 320, 3.0);
}

// ---------------------------------------------------------------------------------------------
// Bad input: typed errors naming the file, no panic, no hang.

fn pcm16_wav(rate: u32, secs: f64) -> Vec<u8> {
    let n = (f64::from(rate) * secs) as usize;
    wav_file(
        1,
        1,
        rate,
        16,
        false,
        &encode_samples(&sine(n, rate, 440.0, 0.5), 1, 16),
        None,
    )
}

/// Decodes `bytes` to the end or to the first error, returning (frames, error).
fn decode_until_error(bytes: Vec<u8>) -> (usize, Option<asr_pipeline::Error>) {
    let mut d = match Decoder::from_reader(Cursor::new(bytes), Some(Path::new("bad.bin"))) {
        Ok(d) => d,
        Err(e) => return (0, Some(e)),
    };
    let mut out = Vec::new();
    loop {
        match d.read_mono(&mut out) {
            Ok(0) => return (out.len(), None),
            Ok(_) => assert!(
                out.len() < 100_000_000,
                "runaway decode: {:?} {:?}",
                d.info(),
                d.packets_skipped()
            ),
            Err(e) => {
                assert_eq!(out.len() as u64, d.frames_decoded());
                // After an error the stream is over.
                assert_eq!(d.read_mono(&mut out).unwrap(), 0);
                return (out.len(), Some(e));
            }
        }
    }
}

fn err_of(bytes: Vec<u8>) -> asr_pipeline::Error {
    let (_, e) = decode_until_error(bytes);
    let e = e.expect("an error");
    assert_eq!(e.path(), Some(Path::new("bad.bin")), "{e}");
    assert!(e.to_string().starts_with("bad.bin: "), "{e}");
    e
}

#[test]
fn empty_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.wav");
    std::fs::write(&p, b"").unwrap();
    let e = Decoder::open(&p).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Empty { .. }), "{e}");
    assert_eq!(e.path(), Some(p.as_path()));
}

#[test]
fn text_named_mp3_is_unrecognized() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("song.mp3");
    std::fs::write(&p, "This is not audio.\nJust some notes about a meeting.\n").unwrap();
    let e = Decoder::open(&p).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::UnrecognizedFormat { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("song.mp3"), "{e}");
    assert!(e.to_string().contains("text"), "{e}");
}

#[test]
fn missing_file_is_io_error_with_path() {
    let e = Decoder::open(Path::new("/nonexistent/x.flac")).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Io { .. }), "{e}");
    assert_eq!(e.path(), Some(Path::new("/nonexistent/x.flac")));
}

#[test]
fn random_bytes_are_unrecognized() {
    let mut rng = fastrand::Rng::with_seed(42);
    for _ in 0..200 {
        let len = rng.usize(1..4096);
        let mut b: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        // Keep clear of the magic numbers this test is not about.
        if b.len() >= 4 && matches!(&b[..4], b"RIFF" | b"fLaC" | b"OggS" | b"ID3\x03" | b"#!AM") {
            b[0] = b'x';
        }
        if b.len() >= 2 && b[0] == 0xFF {
            b[0] = 0;
        }
        let e = err_of(b);
        assert!(
            matches!(e.kind(), ErrorKind::UnrecognizedFormat { .. }),
            "{e}"
        );
    }
}

#[test]
fn garbage_after_every_magic_gives_typed_errors() {
    let magics: [&[u8]; 9] = [
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"fLaC",
        b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x13OpusHead",
        b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1e\x01vorbis",
        b"ID3\x03\x00\x00\x00\x00\x00\x00",
        b"\x00\x00\x00\x18ftypM4A ",
        b"#!AMR\n",
        b"#!AMR-WB\n",
        b"\xff\xfb\x90\x00",
    ];
    let mut rng = fastrand::Rng::with_seed(1);
    for m in magics {
        for _ in 0..40 {
            let mut b = m.to_vec();
            let len = rng.usize(0..3000);
            b.extend((0..len).map(|_| rng.u8(..)));
            // Anything but a panic or a hang: an error, or (AMR: any byte is a ToC) audio.
            let (frames, e) = decode_until_error(b);
            if let Some(e) = e {
                assert_eq!(e.path(), Some(Path::new("bad.bin")), "{e}");
            } else {
                assert!(frames < 10_000_000);
            }
        }
    }
}

#[test]
fn header_only_is_truncated_at_zero() {
    let wav = pcm16_wav(16_000, 1.0);
    let e = err_of(wav[..44].to_vec());
    match e.kind() {
        ErrorKind::Truncated { decoded_frames, .. } => assert_eq!(*decoded_frames, 0),
        other => panic!("{other:?}"),
    }
    // FLAC: every metadata block, no frame.
    let flac = std::fs::read(fixture("tone_44k1_stereo.flac")).unwrap();
    let mut pos = 4;
    loop {
        let last = flac[pos] & 0x80 != 0;
        let len = u32::from_be_bytes([0, flac[pos + 1], flac[pos + 2], flac[pos + 3]]) as usize;
        pos += 4 + len;
        if last {
            break;
        }
    }
    // (Symphonia's FLAC reader wants the first frame while opening: Malformed then.)
    let e = err_of(flac[..pos].to_vec());
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Truncated {
                decoded_frames: 0,
                ..
            } | ErrorKind::Malformed { .. }
        ),
        "{e}"
    );
    // Cut inside the header itself.
    let e = err_of(wav[..30].to_vec());
    assert!(matches!(e.kind(), ErrorKind::Malformed { .. }), "{e}");
}

/// Cutting a file part way: frames first, then `Truncated` with the clean length.
fn check_cut(name: &str, fraction: f64) {
    let full = std::fs::read(fixture(name)).unwrap();
    let (all, e) = decode_until_error(full.clone());
    assert!(e.is_none());
    let cut = (full.len() as f64 * fraction) as usize;
    let (frames, e) = decode_until_error(full[..cut].to_vec());
    let e = e.unwrap_or_else(|| panic!("{name}: cut file decoded without error ({frames} frames)"));
    match e.kind() {
        ErrorKind::Truncated {
            decoded_frames,
            sample_rate,
            ..
        } => {
            assert_eq!(*decoded_frames, frames as u64, "{name}");
            assert!(*sample_rate > 0);
            assert!(frames > 0 && frames < all, "{name}: {frames} of {all}");
        }
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn truncated_mid_stream_returns_frames_then_truncated() {
    check_cut("tone_44k1_stereo.flac", 0.6);
    check_cut("tone_8k_ulaw.wav", 0.6);
    // WAV cut mid-sample (odd length).
    let mut wav = pcm16_wav(16_000, 1.0);
    wav.truncate(44 + 2 * 8000 + 1);
    let (frames, e) = decode_until_error(wav);
    assert_eq!(frames, 8000);
    assert!(matches!(
        e.unwrap().kind(),
        ErrorKind::Truncated {
            decoded_frames: 8000,
            ..
        }
    ));
    // AMR cut inside a frame.
    let amr = std::fs::read(fixture("tone_8k.amr")).unwrap();
    let (frames, e) = decode_until_error(amr[..amr.len() - 5].to_vec());
    assert_eq!(frames, 12_000 - 160);
    assert!(matches!(e.unwrap().kind(), ErrorKind::Truncated { .. }));
}

#[test]
fn lossy_files_cut_part_way_keep_what_decoded() {
    // Ogg and MP3 have no exact length in their headers: a cut at a packet boundary may end
    // cleanly, so these accept either a clean shorter stream or Truncated, never a panic.
    for name in [
        "tone_48k_mono.opus",
        "tone_44k1_stereo.ogg",
        "tone_44k1_stereo.mp3",
    ] {
        let full = std::fs::read(fixture(name)).unwrap();
        // Vorbis setup headers are several KB of a 11 KB file: cut late enough to be in audio.
        let cut = full.len() * 9 / 10;
        let (frames, e) = decode_until_error(full[..cut].to_vec());
        assert!(frames > 0, "{name}: {e:?}");
        if let Some(e) = e {
            assert!(
                matches!(e.kind(), ErrorKind::Truncated { decoded_frames, .. } if *decoded_frames == frames as u64),
                "{name}: {e}"
            );
        }
    }
}

#[test]
fn wav_claiming_4gb_with_one_second_present() {
    let rate = 8000;
    let data = encode_samples(&sine(rate as usize, rate, 440.0, 0.5), 1, 16);
    let bytes = wav_file(1, 1, rate, 16, false, &data, Some(0xFFFF_FF00));
    let mut d = Decoder::from_reader(Cursor::new(bytes), Some(Path::new("big.wav"))).unwrap();
    // The hint is what is present, not what the header claims.
    assert_eq!(d.info().frames_hint, Some(8000));
    let mut out = Vec::new();
    let e = loop {
        match d.read_mono(&mut out) {
            Ok(0) => panic!("no truncation reported"),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert_eq!(out.len(), 8000);
    assert!(out.capacity() < 1 << 20, "allocation sized by the header");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Truncated {
                decoded_frames: 8000,
                sample_rate: 8000,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("big.wav"));
    // 0xFFFFFFFF is the streaming writers' "unknown length": read to the end, no error.
    let bytes = wav_file(1, 1, rate, 16, false, &data, Some(u32::MAX));
    let (pcm, _) = decode_bytes(bytes).unwrap();
    assert_eq!(pcm.len(), 8000);
}

#[test]
fn unsupported_codecs_are_named() {
    // GSM 6.10 in WAV.
    let bytes = wav_file(0x31, 1, 8000, 0, false, &[0u8; 650], None);
    let e = err_of(bytes);
    assert!(matches!(e.kind(), ErrorKind::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("GSM"), "{e}");
    // Multichannel AMR.
    for magic in [&b"#!AMR_MC1.0\n"[..], &b"#!AMR-WB_MC1.0\n"[..]] {
        let mut b = magic.to_vec();
        b.extend_from_slice(&[0, 0, 0, 2, 0x3c, 0x3c]);
        let e = err_of(b);
        assert!(matches!(e.kind(), ErrorKind::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("multichannel AMR"), "{e}");
    }
}

#[test]
fn absurd_rates_and_channel_counts_are_malformed() {
    for (rate, channels) in [(0, 1), (10_000_000, 1), (8000, 0), (8000, 300)] {
        let bytes = wav_file(1, channels, rate, 16, false, &[0u8; 1200], None);
        let e = err_of(bytes);
        assert!(
            matches!(e.kind(), ErrorKind::Malformed { .. }),
            "rate {rate} channels {channels}: {e}"
        );
    }
}

#[test]
fn recoverable_packet_errors_keep_time() {
    // Corrupt the payload of some MP3 frames (not their headers): the decoder may reject
    // them; time must be kept either way.
    let mut b = std::fs::read(fixture("tone_44k1_stereo.mp3")).unwrap();
    let mid = b.len() / 2;
    let mut rng = fastrand::Rng::with_seed(3);
    for x in &mut b[mid..mid + 600] {
        *x = rng.u8(..);
    }
    let (frames, e) = decode_until_error(b);
    if e.is_none() {
        // Frame sync may be lost in the garbage: within one MP3 frame per damaged frame.
        assert!(frames.abs_diff(66_150) <= 1152 * 3, "{frames}");
    }
}

#[test]
fn damaged_flac_frame_is_skipped_and_time_kept() {
    let mut b = std::fs::read(fixture("tone_44k1_stereo.flac")).unwrap();
    let mid = b.len() / 2;
    let mut rng = fastrand::Rng::with_seed(5);
    for x in &mut b[mid..mid + 200] {
        *x = rng.u8(..);
    }
    let (pcm, d) = decode_bytes(b).unwrap();
    assert_eq!(pcm.len(), 66_150, "duration kept");
    assert!(d.packets_skipped() >= 1);
    // Audio after the damage is still in its place.
    let r = reference(44_100, 1000.0);
    let tail = 66_150 - 15_000..66_150 - 11_025;
    assert!(correlation(&pcm[tail.clone()], &r[tail]) > 0.9999);
}

#[test]
fn decoder_is_send() {
    fn send<T: Send>() {}
    send::<Decoder>();
}
