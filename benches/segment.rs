//! Segmenter speed on realistic 16 kHz audio: the speech units of testdata/speech (real
//! telephone prompts and espeak-ng units)
//! separated by pauses, clean and in 20 dB pink noise, plus hold-music-like tones and silence;
//! with and without the music / tone check, to measure what the check costs.
//!
//! Throughput is in samples per second: divide by 16 000 for the realtime factor. Times are the
//! benchmarking thread's CPU time on Linux (`/proc/thread-self/schedstat`), wall time elsewhere,
//! so a loaded machine does not distort them.
//! `cargo bench --bench segment`
use std::f32::consts::TAU;
use std::time::{Duration, Instant};

use asr_pipeline::segment::{Segment, Segmenter, SegmenterOptions};
use asr_pipeline::vad::VadOptions;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SR: usize = 16_000;
const UNITS: [&str; 9] = [
    "r1_please_hold",
    "r2_one_moment",
    "r3_two_nine",
    "u1_yes_please",
    "u2_hello",
    "u3_hold",
    "u4_tn",
    "u5_af",
    "u6_number",
];

fn units() -> Vec<Vec<f32>> {
    UNITS
        .iter()
        .map(|n| {
            let path = format!("{}/testdata/speech/{n}.wav", env!("CARGO_MANIFEST_DIR"));
            hound::WavReader::open(&path)
                .expect("speech unit")
                .into_samples::<i16>()
                .map(|s| f32::from(s.unwrap_or(0)) / 32768.0)
                .collect()
        })
        .collect()
}

/// About 60 s of conversation-like audio: units with 0.1 to 1.5 s pauses.
fn conversation(noise_snr_db: Option<f32>) -> Vec<f32> {
    let us = units();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = Vec::with_capacity(62 * SR);
    while out.len() < 60 * SR {
        out.extend_from_slice(&us[rng.usize(0..us.len())]);
        out.extend(std::iter::repeat_n(0.0, rng.usize(SR / 10..SR * 3 / 2)));
    }
    if let Some(snr) = noise_snr_db {
        let p: f32 = out.iter().map(|x| x * x).sum::<f32>() / out.len() as f32;
        let g = (p / 10f32.powf(snr / 10.0)).sqrt() * 3.0;
        let (mut b0, mut b1, mut b2) = (0f32, 0f32, 0f32);
        for x in &mut out {
            let w = rng.f32() * 2.0 - 1.0;
            b0 = 0.99765 * b0 + w * 0.0990460;
            b1 = 0.96300 * b1 + w * 0.2965164;
            b2 = 0.57000 * b2 + w * 1.0526913;
            *x += g * (b0 + b1 + b2 + w * 0.1848) / 5.0;
        }
    }
    out
}

fn hold_music() -> Vec<f32> {
    let notes = [262.0f32, 294.0, 330.0, 349.0, 392.0, 349.0, 330.0, 294.0];
    (0..60 * SR)
        .map(|i| {
            let f0 = notes[(i / (SR / 4)) % notes.len()];
            let t = i as f32 / SR as f32;
            (1..=5)
                .map(|h| (TAU * f0 * h as f32 * t).sin() / h as f32)
                .sum::<f32>()
                * 0.1
        })
        .collect()
}

fn run(audio: &[f32], opts: &SegmenterOptions) -> usize {
    let mut s = Segmenter::new(opts.clone()).expect("options");
    let mut out: Vec<Segment> = Vec::new();
    for block in audio.chunks(4096) {
        s.push(block, &mut out);
    }
    s.finish(&mut out);
    out.len()
}

/// CPU time of the calling thread in ns (Linux `/proc/thread-self/schedstat`), so that the
/// numbers mean something on a shared, overloaded machine; `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Times `iters` runs by thread CPU time when available, else by wall time.
fn timed(iters: u64, audio: &[f32], opts: &SegmenterOptions) -> Duration {
    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    for _ in 0..iters {
        black_box(run(black_box(audio), opts));
    }
    match (cpu, thread_cpu_ns()) {
        (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
        _ => wall.elapsed(),
    }
}

fn stage(c: &mut Criterion) {
    let inputs = [
        ("speech_clean", conversation(None)),
        ("speech_pink_20db", conversation(Some(20.0))),
        ("hold_music", hold_music()),
        ("silence", vec![0.0; 60 * SR]),
    ];
    let mut g = c.benchmark_group("segmenter_60s");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, audio) in &inputs {
        g.throughput(Throughput::Elements(audio.len() as u64));
        for music_check in [true, false] {
            let mut vad = VadOptions::default();
            vad.reject_music = music_check;
            let mut opts = SegmenterOptions::default();
            opts.vad = vad;
            let id = if music_check {
                "with_music_check"
            } else {
                "vad_only"
            };
            g.bench_with_input(BenchmarkId::new(id, name), audio, |b, a| {
                b.iter_custom(|iters| timed(iters, a, &opts))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, stage);
criterion_main!(benches);
