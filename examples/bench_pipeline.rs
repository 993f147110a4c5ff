//! Benchmark: a long input through the SYNC route (or, with `--route async`, the async route)
//! against the emulator; prints x-realtime and the process's peak RSS (VmHWM, Linux).
//!
//! ```text
//! cargo run --release --example bench_pipeline -- --minutes 400 [--every 4] [--concurrency 4]
//!     [--base-url URL --refresh-token TOKEN --org-id ORG]   # an emulator in another process
//!     [--route async]      # analysis pass + FLAC encoding pass + upload + poll, in-process
//!     [--channels 2]       # a 2-channel file, turns alternating between the channels
//!                          # (ChannelMode::Auto transcribes each channel on its own)
//!                          # emulator only (its processing speed is set to be instant)
//! ```
//!
//! Without `--base-url` the emulator runs in this process, so the peak RSS includes it (and its
//! log of every request). With `--base-url` (e.g. from `cargo run --release -p
//! botlhale-emulator`) the RSS is the pipeline's alone.
//!
//! The input is a 16 kHz 16-bit mono WAV file that is never stored: a `Read + Seek` that
//! synthesises it on the fly (speech units from `testdata/speech/` every `--every` seconds on
//! average, in a faint noise floor), so the decoder, resampler check, VAD, segmenter,
//! normalisation, WAV encoding and HTTP requests all run for real, and the measurement is not
//! dominated by disk reads. One line of JSON is printed at the end.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asr_pipeline::botlhale::{Client, Credentials, PollOptions, Secret};
use asr_pipeline::channels::ChannelMode;
use asr_pipeline::pipeline::{Job, Pipeline, Progress, Route};
use botlhale_emulator::{Emulator, EmulatorConfig};

const SR: u64 = 16_000;

/// Synthesised WAV: header + samples computed from the position.
struct SynthWav {
    len: u64,
    pos: u64,
    channels: u64,
    /// Sorted by start: (start frame, unit, channel).
    placed: Vec<(u64, Arc<Vec<i16>>, u64)>,
}

impl SynthWav {
    fn total(&self) -> u64 {
        44 + 2 * self.channels * self.len
    }
    fn header(&self) -> [u8; 44] {
        let ch = self.channels;
        let data = u32::try_from(self.len * 2 * ch).expect("input under 4 GiB");
        let mut h = [0u8; 44];
        h[0..4].copy_from_slice(b"RIFF");
        h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
        h[8..16].copy_from_slice(b"WAVEfmt ");
        h[16..20].copy_from_slice(&16u32.to_le_bytes());
        h[20..22].copy_from_slice(&1u16.to_le_bytes());
        h[22..24].copy_from_slice(&(ch as u16).to_le_bytes());
        h[24..28].copy_from_slice(&16_000u32.to_le_bytes());
        h[28..32].copy_from_slice(&(32_000 * ch as u32).to_le_bytes());
        h[32..34].copy_from_slice(&(2 * ch as u16).to_le_bytes());
        h[34..36].copy_from_slice(&16u16.to_le_bytes());
        h[36..40].copy_from_slice(b"data");
        h[40..44].copy_from_slice(&data.to_le_bytes());
        h
    }
}

impl Read for SynthWav {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64)
            .min(self.total().saturating_sub(self.pos))
            .min(1 << 16) as usize;
        let buf = &mut buf[..n];
        let (lo, hi) = (self.pos, self.pos + n as u64);
        // faint deterministic noise floor (±2 LSB) from the byte position
        for (i, b) in buf.iter_mut().enumerate() {
            let at = lo + i as u64;
            *b = if at.is_multiple_of(2) {
                (at.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62) as u8
            } else {
                0
            };
        }
        let h = self.header();
        for at in lo..hi.min(44) {
            buf[(at - lo) as usize] = h[at as usize];
        }
        // units overlapping [lo, hi)
        let w = 2 * self.channels;
        let first = self
            .placed
            .partition_point(|(s, u, _)| 44 + w * (s + u.len() as u64) <= lo);
        for (s, u, c) in &self.placed[first..] {
            let ua = 44 + w * s;
            if ua >= hi {
                break;
            }
            let ub = ua + w * u.len() as u64;
            for at in ua.max(lo)..ub.min(hi) {
                let off = at - ua;
                if off % w / 2 != *c {
                    continue;
                }
                let k = (off / w) as usize;
                buf[(at - lo) as usize] = u[k].to_le_bytes()[(off % 2) as usize];
            }
        }
        self.pos = hi;
        Ok(n)
    }
}

impl Seek for SynthWav {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::End(d) => i128::from(self.total()) + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        self.pos = u64::try_from(p)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "negative seek"))?;
        Ok(self.pos)
    }
}

fn units() -> anyhow::Result<Vec<Arc<Vec<i16>>>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/speech");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let mut r = hound::WavReader::open(p)?;
            Ok(Arc::new(r.samples::<i16>().collect::<Result<Vec<_>, _>>()?))
        })
        .collect()
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut minutes = 400.0f64;
    let mut every = 4.0f64;
    let mut concurrency = 4usize;
    let mut channels = 1u64;
    let mut route = Route::Sync;
    let mut external: (Option<String>, Option<String>, Option<String>) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--minutes" => minutes = val()?.parse()?,
            "--every" => every = val()?.parse()?,
            "--concurrency" => concurrency = val()?.parse()?,
            "--channels" => channels = val()?.parse()?,
            "--route" => {
                route = match val()?.as_str() {
                    "sync" => Route::Sync,
                    "async" => Route::Async,
                    other => anyhow::bail!("--route sync|async, not {other}"),
                }
            }
            "--base-url" => external.0 = Some(val()?),
            "--refresh-token" => external.1 = Some(val()?),
            "--org-id" => external.2 = Some(val()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let units = units()?;
    let len = (minutes * 60.0 * SR as f64) as u64;
    let mut rng = fastrand::Rng::with_seed(1);
    let mut placed = Vec::new();
    let mut t = SR / 2;
    let mut k = 0;
    while let Some(u) = units.get(k % units.len()) {
        if t + u.len() as u64 + SR > len {
            break;
        }
        // Turns alternate between the channels of a 2-channel file.
        placed.push((t, u.clone(), k as u64 % channels));
        t += u.len() as u64 + SR / 2 + (rng.f64() * every * SR as f64) as u64;
        k += 1;
    }
    let wav = SynthWav {
        len,
        pos: 0,
        channels,
        placed,
    };

    let (emu, base_url, token, org) = match external {
        (Some(url), Some(token), org) if route == Route::Sync => {
            (None, url, token, org.unwrap_or_default())
        }
        (None, None, None) => {
            let mut cfg = EmulatorConfig::default();
            cfg.async_base_delay = Duration::from_millis(10);
            cfg.async_speed = 1.0e9;
            let emu = Emulator::start(cfg).await?;
            let (u, t, o) = (
                emu.base_url().to_string(),
                emu.refresh_token().to_string(),
                emu.org_id().to_string(),
            );
            (Some(emu), u, t, o)
        }
        _ => anyhow::bail!("--base-url needs --refresh-token (and --org-id), and the sync route"),
    };
    let client = Client::builder()
        .base_url(base_url)
        .credentials(Credentials::RefreshToken(Secret::new(token)))
        .org_id(org)
        .build()?;
    let done = Arc::new(AtomicU64::new(0));
    let d2 = done.clone();
    let pipeline = Pipeline::builder()
        .client(client)
        .route(route)
        .concurrency(concurrency)
        .channels(ChannelMode::Auto)
        .poll_options(Some(PollOptions::default().with_delays(
            Duration::from_millis(50),
            Duration::from_millis(500),
            Duration::from_secs(3600),
        )))
        .progress(move |p| {
            if let Progress::SegmentDone { .. } = p {
                d2.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()?;
    let start = Instant::now();
    let transcript = pipeline
        .transcribe(Job::reader(wav, format!("synthetic {minutes} min.wav")))
        .await?;
    let wall = start.elapsed().as_secs_f64();
    let audio = len as f64 / SR as f64;
    println!(
        "{}",
        serde_json::json!({
            "route": if route == Route::Sync { "sync" } else { "async" },
            "parts": transcript.metadata.parts.len(),
            "audio_minutes": minutes,
            "units": k,
            "segments": transcript.segments.len(),
            "requests": transcript.metadata.requests,
            "audio_seconds_sent": transcript.metadata.audio_seconds_sent,
            "wall_seconds": wall,
            "x_realtime": audio / wall,
            "peak_rss_mib": peak_rss_kib().map(|k| k as f64 / 1024.0),
            "concurrency": concurrency,
            "file_channels": channels,
            "separate_channels": transcript.metadata.channels.as_ref().map_or(0, |c| c.separate.len()),
            "emulator": if emu.is_some() { "in-process" } else { "external" },
        })
    );
    if let Some(emu) = emu {
        emu.shutdown().await;
    }
    Ok(())
}
