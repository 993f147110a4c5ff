//! Benchmark: one async upload of a large file through a slow uplink, against the emulator
//! in this process, whose storage route reads the body no faster than `--rate` bytes per
//! second. Prints the attempts the storage saw, the wall time, the rate achieved and the
//! client's peak RSS.
//!
//! ```text
//! cargo run --release --example bench_upload -- [--mb 300] [--rate 100000]
//! ```
//!
//! The file is a 16 kHz mono WAV of `--mb` megabytes (10⁶ bytes) of a quiet tone, written to
//! a temporary directory. The client keeps its defaults (upload stall timeout 60 s, request
//! timeout 120 s): the question is whether a long upload on a slow link completes in one
//! attempt, as it must.

use std::io::Write;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use asr_pipeline::botlhale::{AsyncUpload, Client, Credentials, Secret};
use botlhale_emulator::{Emulator, EmulatorConfig};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
        .unwrap_or(default)
}

/// Peak resident set of this process (`VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1000.0)
}

#[tokio::main]
async fn main() {
    let mb = arg("--mb", 300);
    let rate = arg("--rate", 100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("long call.wav");
    let bytes = mb * 1_000_000;
    let data_len = (bytes - 44) & !1;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut h = Vec::with_capacity(44);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&16_000u32.to_le_bytes());
        h.extend_from_slice(&32_000u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&(data_len as u32).to_le_bytes());
        f.write_all(&h).expect("write");
        let period: Vec<u8> = (0..80)
            .flat_map(|i| {
                let x = (2.0 * std::f64::consts::PI * f64::from(i) / 80.0).sin();
                ((x * 3000.0) as i16).to_le_bytes()
            })
            .collect();
        let mut left = data_len as usize;
        while left > 0 {
            let n = left.min(period.len());
            f.write_all(&period[..n]).expect("write");
            left -= n;
        }
        f.flush().expect("flush");
    }
    let mut cfg = EmulatorConfig::default();
    cfg.upload_bytes_per_sec = Some(rate);
    cfg.max_upload_bytes = bytes * 2;
    cfg.async_max_seconds = 1.0e9;
    let emu = Emulator::start(cfg).await.expect("emulator");
    let client = Client::builder()
        .base_url(emu.base_url())
        .credentials(Credentials::RefreshToken(Secret::new(emu.refresh_token())))
        .org_id(emu.org_id())
        .build()
        .expect("client");
    let t = Instant::now();
    let r = client
        .upload_async(AsyncUpload::new(
            &path,
            NonZeroU32::new(16_000).expect("rate"),
        ))
        .await;
    let wall = t.elapsed();
    let attempts = emu
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/s3/"))
        .count();
    let secs = wall
        .as_secs_f64()
        .max(Duration::from_millis(1).as_secs_f64());
    println!(
        "{mb} MB at {rate} B/s: {} after {attempts} storage attempt(s), {:.0} s, {:.0} B/s, \
         client peak RSS {:.1} MB",
        match &r {
            Ok(_) => "uploaded".to_string(),
            Err(e) => format!("FAILED ({e})"),
        },
        secs,
        bytes as f64 / secs,
        peak_rss_mb()
    );
    emu.shutdown().await;
}
