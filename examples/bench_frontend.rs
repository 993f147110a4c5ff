//! Front-end benchmark: decode → 16 kHz → DC removal + loudness metering (+ gain pass), timed,
//! with peak RSS. Used by `scripts/bench_frontend.sh`; see BENCHMARKS.md.
//!
//! ```text
//! bench_frontend FILE               decode → 16 kHz → DC removal + loudness meter + gain, one pass
//! bench_frontend --two-pass FILE    measuring pass (measure_path), then the gain pass
//! bench_frontend --synth RATE MIN   a generated source (no decoder), e.g. the 400-minute memory run
//! bench_frontend --gen OUT MIN      writes MIN minutes of speech-like 16 kHz audio as WAV or FLAC
//!                                   (by OUT's extension) with our own encoders (no ffmpeg needed)
//! ```
//! Output: `key<TAB>value` lines (`input`, `codec`, `rate`, `channels`, `secs`, `wall`, `cpu`, `xrt`, `xrt_cpu`,
//! `samples16k`, `lufs`, `peak`) and at the end `peak_rss_mb` (VmHWM from /proc/self/status).

use std::num::NonZeroU32;
use std::time::Instant;

use asr_pipeline::normalize::Loudness;
use asr_pipeline::stream::{measure_path, AudioStream, MonoSource, Normalization, StreamOptions};
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

/// CPU time of this process so far, in seconds (/proc/self/schedstat: ns on a CPU). On a
/// loaded machine this is the fairer measure of one-core speed than wall time.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |ns| ns / 1e9)
}

/// Reads the stream to the end; touches every sample so nothing is optimised away.
fn drain<S: MonoSource>(s: &mut AudioStream<S>) -> Result<u64> {
    let mut acc = 0.0f32;
    while let Some(b) = s.next_block()? {
        acc = b.samples.iter().fold(acc, |m, v| m.max(v.abs()));
    }
    std::hint::black_box(acc);
    Ok(s.position())
}

fn report(secs: f64, wall: f64, cpu: f64, samples: u64, l: Option<Loudness>) {
    let (lufs, peak) = l.map_or((f64::NAN, f32::NAN), |l| (l.integrated_lufs, l.peak));
    println!("secs\t{secs:.3}");
    println!("wall\t{wall:.3}");
    println!("cpu\t{cpu:.3}");
    println!("xrt\t{:.0}", secs / wall);
    println!("xrt_cpu\t{:.0}", secs / cpu);
    println!("samples16k\t{samples}");
    println!("lufs\t{lufs:.2}");
    println!("peak\t{peak:.4}");
}

type AnyResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or("missing argument; see the doc comment")
    };
    match arg(0)? {
        "--synth" => {
            let rate = NonZeroU32::new(arg(1)?.parse()?).ok_or("rate 0")?;
            let minutes: u64 = arg(2)?.parse()?;
            println!("input\tsynth {} Hz {minutes} min", rate.get());
            let (t0, c0) = (Instant::now(), cpu_secs());
            let src = Synth::new(rate, minutes * 60 * u64::from(rate.get()));
            let mut s = AudioStream::from_source(src, None, StreamOptions::default())?;
            let n = drain(&mut s)?;
            report(
                (minutes * 60) as f64,
                t0.elapsed().as_secs_f64(),
                cpu_secs() - c0,
                n,
                s.loudness(),
            );
        }
        "--gen" => gen(std::path::Path::new(arg(1)?), arg(2)?.parse()?)?,
        "--two-pass" => {
            let path = std::path::Path::new(arg(1)?);
            let (t0, c0) = (Instant::now(), cpu_secs());
            let loud = measure_path(path)?;
            let gain = loud.gain(&Default::default());
            let mut s = AudioStream::open(
                path,
                StreamOptions::with_normalization(Normalization::Fixed(gain)),
            )?;
            describe(path, &s);
            let n = drain(&mut s)?;
            let secs = n as f64 / 16_000.0;
            report(
                secs,
                t0.elapsed().as_secs_f64(),
                cpu_secs() - c0,
                n,
                s.loudness(),
            );
            println!("gain\t{gain:.4}");
        }
        _ => {
            let path = std::path::Path::new(arg(0)?);
            let (t0, c0) = (Instant::now(), cpu_secs());
            // One pass with everything the front end does per sample: decode, downmix,
            // resample, DC removal, loudness metering and a (fixed) gain.
            let mut s = AudioStream::open(
                path,
                StreamOptions::with_normalization(Normalization::Fixed(0.5)),
            )?;
            describe(path, &s);
            let n = drain(&mut s)?;
            let secs = s.source().frames_decoded() as f64 / f64::from(s.info().sample_rate.get());
            report(
                secs,
                t0.elapsed().as_secs_f64(),
                cpu_secs() - c0,
                n,
                s.loudness(),
            );
        }
    }
    println!("peak_rss_mb\t{:.1}", peak_rss_mb());
    Ok(())
}

fn describe(path: &std::path::Path, s: &AudioStream) {
    let i = s.info();
    println!("input\t{}", path.display());
    println!("codec\t{:?}/{}", i.format, i.codec);
    println!("rate\t{}", i.sample_rate);
    println!("channels\t{}", i.channels);
}

/// Writes `minutes` of speech-like 16 kHz mono audio with our own encoders.
fn gen(out: &std::path::Path, minutes: u64) -> AnyResult<()> {
    use asr_pipeline::encode::{FlacWriter, WavWriter};
    let rate = NonZeroU32::new(16_000).ok_or("rate")?;
    let total = minutes * 60 * 16_000;
    let mut src = Synth::new(rate, total);
    let tmp = out.with_extension("tmp");
    let file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let flac = out.extension().is_some_and(|e| e == "flac");
    let mut buf = Vec::new();
    if flac {
        let mut w = FlacWriter::new(file, rate)?;
        while {
            buf.clear();
            src.read_mono(&mut buf)? > 0
        } {
            w.write(&buf)?;
        }
        w.finish()?;
    } else {
        let mut w = WavWriter::new(file, rate, Some(total))?;
        while {
            buf.clear();
            src.read_mono(&mut buf)? > 0
        } {
            w.write(&buf)?;
        }
        w.finish()?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}
