//! The stream's timing contract, end to end: exact length and block positions for several
//! rates, a click at a known time landing on the right 16 kHz sample, errors mid-stream
//! delivered after the audio, normalisation modes.

use std::num::NonZeroU32;

use asr_pipeline::error::ErrorKind;
use asr_pipeline::normalize::{NormalizeOptions, DC_CORNER_HZ};
use asr_pipeline::stream::{AudioStream, MonoSource, Normalization, StreamOptions};
use asr_pipeline::time::rescale;
use asr_pipeline::{Error, Result};

/// A tiny in-test source: `signal` at `rate`, delivered in packets of cycling sizes, optionally
/// failing (Truncated) after `fail_after` frames.
struct TestSource {
    rate: NonZeroU32,
    signal: Vec<f32>,
    pos: usize,
    packets: Vec<usize>,
    k: usize,
    fail_after: Option<usize>,
}

impl TestSource {
    fn new(rate: u32, signal: Vec<f32>, packets: &[usize]) -> Self {
        TestSource {
            rate: NonZeroU32::new(rate).unwrap(),
            signal,
            pos: 0,
            packets: packets.to_vec(),
            k: 0,
            fail_after: None,
        }
    }
}

impl MonoSource for TestSource {
    fn sample_rate(&self) -> NonZeroU32 {
        self.rate
    }
    fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        let limit = self
            .fail_after
            .unwrap_or(self.signal.len())
            .min(self.signal.len());
        if self.pos >= limit {
            if self.fail_after.is_some() {
                return Err(Error::new(ErrorKind::Truncated {
                    path: None,
                    decoded_frames: self.pos as u64,
                    sample_rate: self.rate.get(),
                    what: "test break".into(),
                }));
            }
            return Ok(0);
        }
        let n = self.packets[self.k % self.packets.len()].min(limit - self.pos);
        self.k += 1;
        out.extend_from_slice(&self.signal[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Drains the stream, checking block contiguity; returns the samples and the error, if any.
fn drain(s: &mut AudioStream<TestSource>) -> (Vec<f32>, Option<Error>) {
    let mut all = Vec::new();
    loop {
        match s.next_block() {
            Ok(Some(b)) => {
                assert_eq!(b.start, all.len() as u64, "blocks are contiguous");
                assert!(!b.samples.is_empty());
                all.extend_from_slice(b.samples);
            }
            Ok(None) => return (all, None),
            Err(e) => return (all, Some(e)),
        }
    }
}

fn argmax_abs(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if v.abs() > x[best].abs() {
            best = i;
        }
    }
    best
}

const RATES: [u32; 8] = [
    8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000, 192_000,
];

#[test]
fn length_and_positions_are_exact() {
    for rate in RATES {
        for n in [0usize, 1, 4_321, rate as usize * 3 + 17] {
            let src = TestSource::new(rate, vec![0.1; n], &[1152, 4096, 37]);
            let mut s = AudioStream::from_source(src, None, StreamOptions::default()).unwrap();
            let (all, err) = drain(&mut s);
            assert!(err.is_none());
            let want = rescale(n as u64, NonZeroU32::new(rate).unwrap());
            assert_eq!(all.len() as u64, want, "rate {rate}, n {n}");
            assert_eq!(s.position(), want);
            assert_eq!(s.frames_in(), n as u64);
            // Ended streams stay ended.
            assert!(s.next_block().unwrap().is_none());
        }
    }
}

#[test]
fn a_source_s_nan_infinity_or_huge_value_does_not_silence_the_rest_of_the_stream() {
    // A 200 Hz tone from a source of its own with five bad samples early on: left in, they
    // would spread through the resampler and the DC blocker to the end, or make rubato panic.
    for rate in [16_000u32, 44_100] {
        let n = rate as usize * 3;
        let mut x: Vec<f32> = (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 200.0 * i as f32 / rate as f32).sin())
            .collect();
        x[1000] = f32::NAN;
        x[1001] = f32::INFINITY;
        x[5000] = f32::NEG_INFINITY;
        // Finite but far beyond full scale: overflowed the resampler's FFT into NaN.
        x[6000] = 3.0e38;
        x[6001] = -3.0e38;
        let src = TestSource::new(rate, x, &[4096, 777]);
        let mut s = AudioStream::from_source(src, None, StreamOptions::default()).unwrap();
        let (all, err) = drain(&mut s);
        assert!(err.is_none());
        assert!(all.iter().all(|v| v.is_finite()), "rate {rate}");
        // The tone is all there after the first half second.
        let tail = &all[8000..];
        let rms = (tail.iter().map(|v| v * v).sum::<f32>() / tail.len() as f32).sqrt();
        assert!(
            (rms - 0.5 / 2f32.sqrt()).abs() < 0.01,
            "rate {rate}: rms {rms}"
        );
    }
}

#[test]
fn click_lands_on_its_16k_sample_through_the_stream() {
    for rate in RATES {
        let n = rate as usize * 4;
        let t = 2.345_678f64;
        let i = (t * f64::from(rate)).round() as usize;
        let mut x = vec![0.0f32; n];
        x[i] = 0.9;
        let src = TestSource::new(rate, x, &[4608, 1000, 333]);
        let mut s = AudioStream::from_source(src, None, StreamOptions::default()).unwrap();
        // Find the click by block position (not by concatenation only).
        let mut best = (0u64, 0.0f32);
        while let Some(b) = s.next_block().unwrap() {
            for (k, v) in b.samples.iter().enumerate() {
                if v.abs() > best.1 {
                    best = (b.start + k as u64, v.abs());
                }
            }
        }
        let expected = (i as f64 * 16_000.0 / f64::from(rate)).round() as i64;
        assert!(
            (best.0 as i64 - expected).abs() <= 1,
            "rate {rate}: click at {} expected {expected}",
            best.0
        );
    }
}

#[test]
fn truncated_source_delivers_audio_then_the_error() {
    let rate = 44_100;
    let mut x = vec![0.0f32; rate * 2];
    x[rate] = 0.8; // click at 1.0 s
    let mut src = TestSource::new(rate as u32, x, &[4096]);
    src.fail_after = Some(rate + rate / 2); // breaks at 1.5 s
    let mut s = AudioStream::from_source(
        src,
        Some(std::path::Path::new("broken.flac")),
        StreamOptions::default(),
    )
    .unwrap();
    let (all, err) = drain(&mut s);
    let err = err.expect("the break is reported");
    match err.kind() {
        ErrorKind::Truncated {
            decoded_frames,
            sample_rate,
            ..
        } => {
            assert_eq!(
                all.len() as u64,
                rescale(*decoded_frames, NonZeroU32::new(*sample_rate).unwrap())
            );
        }
        k => panic!("unexpected {k:?}"),
    }
    assert_eq!(err.path(), Some(std::path::Path::new("broken.flac")));
    assert_eq!(all.len(), 24_000);
    assert!((argmax_abs(&all) as i64 - 16_000).abs() <= 1);
    assert!(s.next_block().unwrap().is_none());
}

#[test]
fn source_failing_at_once_reports_the_error() {
    let mut src = TestSource::new(48_000, vec![0.0; 10], &[10]);
    src.fail_after = Some(0);
    let mut s = AudioStream::from_source(src, None, StreamOptions::default()).unwrap();
    let (all, err) = drain(&mut s);
    assert!(all.is_empty());
    assert!(err.is_some());
}

#[test]
fn unsupported_rate_is_a_typed_error_naming_the_file() {
    let src = TestSource::new(4_000, vec![0.0; 10], &[10]);
    let e = AudioStream::from_source(
        src,
        Some(std::path::Path::new("x.wav")),
        StreamOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Unsupported { .. }), "{e}");
    assert_eq!(e.path(), Some(std::path::Path::new("x.wav")));
}

fn speechlike(rate: u32, secs: f64, peak: f32, dc: f32) -> Vec<f32> {
    let n = (secs * f64::from(rate)) as usize;
    let mut phase = 0.0f64;
    let mut x: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let f0 = 130.0 + 50.0 * (2.0 * std::f64::consts::PI * 0.4 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / f64::from(rate);
            let env = if t % 2.5 < 1.8 {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * 3.5 * t).cos()).powi(2)
            } else {
                0.0
            };
            (env * (1..=10)
                .map(|k| (k as f64 * phase).sin() / k as f64)
                .sum::<f64>()) as f32
        })
        .collect();
    let p = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    x.iter_mut().for_each(|v| *v = *v * peak / p + dc);
    x
}

#[test]
fn two_pass_normalisation_levels_quiet_and_loud_inputs() {
    let opts = NormalizeOptions::default();
    let mut levels = Vec::new();
    for (peak_dbfs, dc) in [(-45.0f32, 0.01f32), (-3.0, 0.0)] {
        let x = speechlike(44_100, 12.0, 10f32.powf(peak_dbfs / 20.0), dc);
        // Pass 1: measure.
        let mut s = AudioStream::from_source(
            TestSource::new(44_100, x.clone(), &[4096]),
            None,
            StreamOptions::default(),
        )
        .unwrap();
        drain(&mut s);
        let loud = s.loudness().unwrap();
        let gain = loud.gain(&opts);
        // Pass 2: apply.
        let mut s = AudioStream::from_source(
            TestSource::new(44_100, x, &[4096]),
            None,
            StreamOptions::with_normalization(Normalization::Fixed(gain)),
        )
        .unwrap();
        let (y, _) = drain(&mut s);
        let peak = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak <= 10f32.powf(-1.0 / 20.0) + 1e-6, "peak {peak}");
        let mean = y.iter().map(|v| f64::from(*v)).sum::<f64>() / y.len() as f64;
        assert!(
            mean.abs() < 1e-3,
            "DC left: {mean} (corner {DC_CORNER_HZ} Hz)"
        );
        let ms = y.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / y.len() as f64;
        levels.push(10.0 * ms.log10());
    }
    assert!((levels[0] - levels[1]).abs() < 1.0, "{levels:?}");
}

#[test]
fn off_leaves_samples_alone_and_dc_only_removes_offset() {
    let x = vec![0.25f32; 16_000 * 2];
    let run = |norm| {
        let mut s = AudioStream::from_source(
            TestSource::new(16_000, x.clone(), &[1000]),
            None,
            StreamOptions::with_normalization(norm),
        )
        .unwrap();
        drain(&mut s).0
    };
    assert_eq!(run(Normalization::Off), x);
    let y = run(Normalization::DcOnly);
    assert!(
        y.iter().all(|v| v.abs() < 1e-6),
        "constant input → zero after DC removal"
    );
    assert!(AudioStream::from_source(
        TestSource::new(16_000, vec![], &[1]),
        None,
        StreamOptions::with_normalization(Normalization::Fixed(f32::NAN)),
    )
    .is_err());
}

// ---------------------------------------------------------------------------------------------
// Through the real decoder: files written by our own encoders, read back from memory.
// ---------------------------------------------------------------------------------------------

use asr_pipeline::encode::{FlacWriter, WavWriter};
use asr_pipeline::stream::measure_path;
use std::io::Cursor;

fn wav(rate: u32, x: &[f32]) -> Vec<u8> {
    let mut w = WavWriter::new(
        Vec::new(),
        NonZeroU32::new(rate).unwrap(),
        Some(x.len() as u64),
    )
    .unwrap();
    w.write(x).unwrap();
    w.finish().unwrap()
}

fn flac(rate: u32, x: &[f32]) -> Vec<u8> {
    let mut w = FlacWriter::new(Vec::new(), NonZeroU32::new(rate).unwrap()).unwrap();
    for c in x.chunks(10_000) {
        w.write(c).unwrap();
    }
    w.finish().unwrap()
}

fn drain_any(s: &mut AudioStream) -> (Vec<f32>, Option<Error>) {
    let mut all = Vec::new();
    loop {
        match s.next_block() {
            Ok(Some(b)) => {
                assert_eq!(b.start, all.len() as u64);
                all.extend_from_slice(b.samples);
            }
            Ok(None) => return (all, None),
            Err(e) => return (all, Some(e)),
        }
    }
}

#[test]
fn decoded_files_keep_exact_length_and_click_time() {
    for (rate, kind) in [
        (8_000u32, "wav"),
        (22_050, "flac"),
        (44_100, "wav"),
        (48_000, "flac"),
        (96_000, "wav"),
    ] {
        let n = rate as usize * 3 + 123;
        let i = (1.234_5 * f64::from(rate)) as usize;
        let mut x = vec![0.0f32; n];
        x[i] = 0.9;
        let bytes = if kind == "wav" {
            wav(rate, &x)
        } else {
            flac(rate, &x)
        };
        let mut s =
            AudioStream::from_reader(Cursor::new(bytes), None, StreamOptions::default()).unwrap();
        assert_eq!(s.info().sample_rate.get(), rate);
        let (all, err) = drain_any(&mut s);
        assert!(err.is_none(), "{rate} {kind}: {err:?}");
        assert_eq!(
            all.len() as u64,
            rescale(n as u64, NonZeroU32::new(rate).unwrap()),
            "{rate} {kind}"
        );
        let expected = (i as f64 * 16_000.0 / f64::from(rate)).round() as i64;
        assert!(
            (argmax_abs(&all) as i64 - expected).abs() <= 1,
            "{rate} {kind}"
        );
    }
}

/// An Opus stream is synthesised at 16 kHz by the decoder itself (no 48 kHz pass through the
/// resampler): the stream says so, and the 1.5 s fixture comes out as exactly 1.5 s with the
/// tone starting at 0.25 s.
#[test]
fn opus_is_decoded_at_16k_with_the_exact_length() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/formats/tone_48k_mono.opus");
    let mut s = AudioStream::open(&path, StreamOptions::default()).unwrap();
    assert_eq!(s.info().sample_rate.get(), 16_000);
    let (all, err) = drain_any(&mut s);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(all.len(), 24_000);
    let onset = all.iter().position(|v| v.abs() > 0.1).unwrap_or(0);
    assert!((3_990..=4_020).contains(&onset), "tone starts at {onset}");
}

#[test]
fn truncated_file_delivers_what_decoded_then_the_error() {
    let rate = 44_100u32;
    let x: Vec<f32> = (0..rate as usize * 2)
        .map(|i| ((i as f32) * 0.05).sin() * 0.5)
        .collect();
    let mut bytes = wav(rate, &x);
    bytes.truncate(44 + rate as usize * 2); // header + 1 s of 16-bit mono
    let mut s = AudioStream::from_reader(
        Cursor::new(bytes),
        Some(std::path::Path::new("cut.wav")),
        StreamOptions::default(),
    )
    .unwrap();
    let (all, err) = drain_any(&mut s);
    let err = err.expect("truncation is reported");
    let ErrorKind::Truncated {
        decoded_frames,
        sample_rate,
        ..
    } = err.kind()
    else {
        panic!("{err}");
    };
    assert_eq!(*sample_rate, rate);
    assert!(*decoded_frames > 0);
    assert_eq!(
        all.len() as u64,
        rescale(*decoded_frames, NonZeroU32::new(rate).unwrap())
    );
    assert_eq!(err.path(), Some(std::path::Path::new("cut.wav")));
    assert!(s.next_block().unwrap().is_none());
}

#[test]
fn measure_path_then_fixed_gain_normalises_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quiet.wav");
    let x = speechlike(48_000, 8.0, 10f32.powf(-40.0 / 20.0), 0.0);
    std::fs::write(&path, wav(48_000, &x)).unwrap();
    let opts = NormalizeOptions::default();
    let loud = measure_path(&path).unwrap();
    assert!(loud.integrated_lufs < -45.0, "{loud:?}");
    let g = loud.gain(&opts);
    let mut s = AudioStream::open(
        &path,
        StreamOptions::with_normalization(Normalization::Fixed(g)),
    )
    .unwrap();
    let (y, err) = drain_any(&mut s);
    assert!(err.is_none());
    let mut m = asr_pipeline::normalize::LoudnessMeter::new();
    m.feed(&y);
    assert!(
        (m.loudness_lufs() - opts.target_lufs).abs() < 0.5,
        "{}",
        m.loudness_lufs()
    );
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let e = AudioStream::open(
        std::path::Path::new("/nonexistent/x.flac"),
        StreamOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.path(), Some(std::path::Path::new("/nonexistent/x.flac")));
}
