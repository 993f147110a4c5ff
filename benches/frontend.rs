//! Criterion benches for the front end, one group per stage: decode (the committed format
//! fixtures, from memory), resample, normalize, and the full stream (generated 10 s speech-like
//! input from memory, and each fixture file through decode → 16 kHz → DC + meter). Throughput is reported in input samples per second; x-realtime is
//! throughput / input rate.

use std::num::NonZeroU32;

use asr_pipeline::decode::Decoder;
use asr_pipeline::normalize::{normalize_in_place, DcBlocker, LoudnessMeter, NormalizeOptions};
use asr_pipeline::resample::Resampler;
use asr_pipeline::stream::{AudioStream, MonoSource, StreamOptions};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn nz(r: u32) -> NonZeroU32 {
    NonZeroU32::new(r).unwrap()
}

/// `secs` of a speech-like signal at `rate`: harmonic phrases with pauses.
fn speechlike(rate: u32, secs: f64) -> Vec<f32> {
    let n = (secs * f64::from(rate)) as usize;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            phase +=
                2.0 * std::f64::consts::PI * (140.0 + 30.0 * (1.3 * t).sin()) / f64::from(rate);
            let env = if t % 3.0 < 2.0 {
                (2.0 * std::f64::consts::PI * 4.0 * t).sin().abs()
            } else {
                0.0
            };
            (0.3 * env
                * (1..=8)
                    .map(|k| (k as f64 * phase).sin() / k as f64)
                    .sum::<f64>()) as f32
        })
        .collect()
}

fn resample(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample");
    for rate in [8_000u32, 22_050, 44_100, 48_000, 96_000] {
        let x = speechlike(rate, 10.0);
        g.throughput(Throughput::Elements(x.len() as u64));
        let mut r = Resampler::new(nz(rate)).unwrap();
        let mut out = Vec::with_capacity(200_000);
        g.bench_function(format!("{rate}Hz_to_16k_10s"), |b| {
            b.iter(|| {
                out.clear();
                // Decoder-sized packets (FLAC: 4096 frames).
                for chunk in x.chunks(4096) {
                    r.process(chunk, &mut out).unwrap();
                }
                r.finish(&mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    let x = speechlike(16_000, 10.0);
    g.throughput(Throughput::Elements(x.len() as u64));
    g.bench_function("dc_blocker_10s", |b| {
        let mut dc = DcBlocker::new();
        b.iter_batched_ref(|| x.clone(), |y| dc.process(y), BatchSize::LargeInput)
    });
    g.bench_function("loudness_meter_10s", |b| {
        b.iter(|| {
            let mut m = LoudnessMeter::new();
            for chunk in x.chunks(4000) {
                m.feed(chunk);
            }
            black_box(m.loudness())
        })
    });
    // The same in 10 ms blocks (the meter filters runs of 128 samples and more in pieces side
    // by side, shorter ones a sample at a time).
    g.bench_function("loudness_meter_10s_in_160", |b| {
        b.iter(|| {
            let mut m = LoudnessMeter::new();
            for chunk in x.chunks(160) {
                m.feed(chunk);
            }
            black_box(m.loudness())
        })
    });
    let opts = NormalizeOptions::default();
    g.bench_function("normalize_in_place_10s", |b| {
        b.iter_batched_ref(
            || x.clone(),
            |y| black_box(normalize_in_place(y, &opts)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// An in-memory source handing out decoder-sized packets.
struct Mem<'a> {
    rate: NonZeroU32,
    x: &'a [f32],
    pos: usize,
}

impl MonoSource for Mem<'_> {
    fn sample_rate(&self) -> NonZeroU32 {
        self.rate
    }
    fn read_mono(&mut self, out: &mut Vec<f32>) -> asr_pipeline::Result<usize> {
        let n = (self.x.len() - self.pos).min(4096);
        out.extend_from_slice(&self.x[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    for rate in [8_000u32, 16_000, 44_100, 48_000] {
        let x = speechlike(rate, 10.0);
        g.throughput(Throughput::Elements(x.len() as u64));
        g.bench_function(format!("mem_{rate}Hz_10s"), |b| {
            b.iter(|| {
                let src = Mem {
                    rate: nz(rate),
                    x: &x,
                    pos: 0,
                };
                let mut s = AudioStream::from_source(src, None, StreamOptions::default()).unwrap();
                while let Some(b) = s.next_block().unwrap() {
                    black_box(b.samples.len());
                }
                black_box(s.loudness())
            })
        });
    }
    g.finish();
}

/// The committed stereo fixtures (a few seconds each), decoded from memory.
fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/formats");
    [
        "tone_44k1_stereo.flac",
        "tone_44k1_stereo.mp3",
        "tone_44k1_stereo.ogg",
        "tone_44k1_stereo.m4a",
        "tone_48k_mono.opus",
        "tone_8k_ulaw.wav",
        "tone_8k.amr",
    ]
    .into_iter()
    .filter_map(|f| std::fs::read(dir.join(f)).ok().map(|b| (f, b)))
    .collect()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, bytes) in fixtures() {
        let mut d = Decoder::from_reader(std::io::Cursor::new(bytes.clone()), None).unwrap();
        let mut buf = Vec::new();
        while d.read_mono(&mut buf).unwrap() > 0 {}
        g.throughput(Throughput::Elements(buf.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut d =
                    Decoder::from_reader(std::io::Cursor::new(bytes.clone()), None).unwrap();
                let mut out = Vec::with_capacity(8192);
                let mut n = 0;
                loop {
                    out.clear();
                    match d.read_mono(&mut out).unwrap() {
                        0 => break,
                        k => n += k,
                    }
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

fn stream_file(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_file");
    for (name, bytes) in fixtures() {
        let mut d = Decoder::from_reader(std::io::Cursor::new(bytes.clone()), None).unwrap();
        let mut buf = Vec::new();
        while d.read_mono(&mut buf).unwrap() > 0 {}
        g.throughput(Throughput::Elements(buf.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = AudioStream::from_reader(
                    std::io::Cursor::new(bytes.clone()),
                    None,
                    StreamOptions::default(),
                )
                .unwrap();
                while let Some(b) = s.next_block().unwrap() {
                    black_box(b.samples.len());
                }
                black_box(s.loudness())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, resample, normalize, stream, stream_file);
criterion_main!(benches);
