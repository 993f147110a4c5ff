//! Front-end benchmark: decode → 16 kHz → DC removal + loudness metering (+ gain pass), timed,
//! with peak RSS. Used by `scripts/bench.sh`; see BENCHMARKS.md.
//!
//! ```text
//! bench_frontend [--two-pass] FILE...          decode each file through AudioStream
//! bench_frontend --synth RATE MINUTES          a generated source (no decoder), e.g. the
//!                                              400-minute memory run
//! ```
//! Prints one line per input: `name secs wall_s x_realtime samples_16k loudness peak` and, at
//! the end, `peak_rss_mb` (VmHWM from /proc/self/status).

use std::num::NonZeroU32;
use std::time::Instant;

use asr_pipeline::stream::{AudioStream, MonoSource, StreamOptions};
use asr_pipeline::Result;

/// Generated audio at `rate`: a 10 s cycle (1 s of a 150 Hz tone, 9 s of silence), computed
/// once and copied out, so the source itself costs next to nothing.
struct Synth {
    rate: NonZeroU32,
    left: u64,
    cycle: Vec<f32>,
    pos: usize,
}

impl Synth {
    fn new(rate: NonZeroU32, frames: u64) -> Self {
        let r = f64::from(rate.get());
        let cycle = (0..rate.get() as usize * 10)
            .map(|i| {
                let t = i as f64 / r;
                if t < 1.0 {
                    (0.3 * (2.0 * std::f64::consts::PI * 150.0 * t).sin()) as f32
                } else {
                    0.0
                }
            })
            .collect();
        Synth {
            rate,
            left: frames,
            cycle,
            pos: 0,
        }
    }
}

impl MonoSource for Synth {
    fn sample_rate(&self) -> NonZeroU32 {
        self.rate
    }
    fn read_mono(&mut self, out: &mut Vec<f32>) -> Result<usize> {
        let n = (self.left.min(4096) as usize).min(self.cycle.len() - self.pos);
        out.extend_from_slice(&self.cycle[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.cycle.len();
        self.left -= n as u64;
        Ok(n)
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn drain<S: MonoSource>(s: &mut AudioStream<S>) -> Result<(u64, f32)> {
    // Touch every sample so nothing is optimised away.
    let mut acc = 0.0f32;
    while let Some(b) = s.next_block()? {
        acc += b.samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    }
    Ok((s.position(), acc))
}

fn report(
    name: &str,
    secs: f64,
    wall: f64,
    samples: u64,
    l: Option<asr_pipeline::normalize::Loudness>,
) {
    let (lufs, peak) = l.map_or((f64::NAN, f32::NAN), |l| (l.integrated_lufs, l.peak));
    println!(
        "{name}\t{secs:.1}s\twall {wall:.3}s\t{:.0}x realtime\t{samples} samples@16k\t{lufs:.1} LUFS\tpeak {peak:.3}",
        secs / wall
    );
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--synth") {
        let rate: u32 = args.get(1).ok_or("--synth RATE MINUTES")?.parse()?;
        let minutes: u64 = args.get(2).ok_or("--synth RATE MINUTES")?.parse()?;
        let rate = NonZeroU32::new(rate).ok_or("rate 0")?;
        let src = Synth::new(rate, minutes * 60 * u64::from(rate.get()));
        let t0 = Instant::now();
        let mut s = AudioStream::from_source(src, None, StreamOptions::default())?;
        let (n, _) = drain(&mut s)?;
        report(
            &format!("synth {}Hz {minutes}min", rate.get()),
            (minutes * 60) as f64,
            t0.elapsed().as_secs_f64(),
            n,
            s.loudness(),
        );
    } else {
        bench_files(&args)?;
    }
    println!("peak_rss_mb\t{:.1}", peak_rss_mb());
    Ok(())
}

fn bench_files(_args: &[String]) -> std::result::Result<(), Box<dyn std::error::Error>> {
    Err("file mode needs the decoder (not merged yet)".into())
}
