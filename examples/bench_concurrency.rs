//! Benchmark: how many requests the bulk batch keeps in flight against a service of a given
//! capacity (the emulator refuses `/asr` requests beyond it with 429), and how many 429s
//! that costs, with the adaptive limit (the default) or a fixed one.
//!
//! ```text
//! cargo run --release --example bench_concurrency -- [--capacities 3,6,12,24]
//!     [--requests 480] [--latency-ms 500] [--fixed N]
//! ```
//!
//! Each run is what `transcribe_folder` does by default (`--jobs 2 --concurrency 16`, adaptive)
//! on recordings of 40 utterances each, 3 s apart (one request per utterance), against an
//! emulator in this process whose every accepted request takes `--latency-ms`. `--fixed N`
//! runs with a fixed limit of N instead (the behaviour before the adaptive limit, whose default
//! was 4). Prints one line per capacity: requests answered, 429s (% of all requests), requests
//! in flight on average (over the whole run, ramp-up and tail included) and at most, wall time.

use std::path::Path;
use std::time::{Duration, Instant};

use asr_pipeline::batch::{Batch, BatchOptions};
use asr_pipeline::botlhale::{Client, Credentials, Secret};
use asr_pipeline::pipeline::Pipeline;
use botlhale_emulator::{Emulator, EmulatorConfig};

fn unit(name: &str) -> Vec<i16> {
    let path = format!("{}/testdata/speech/{name}.wav", env!("CARGO_MANIFEST_DIR"));
    hound::WavReader::open(path)
        .expect("speech sample")
        .into_samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect()
}

/// `files` 16 kHz recordings of 40 utterances, 3 s apart.
fn calls(root: &Path, files: usize) {
    let units: Vec<Vec<i16>> = ["u1_yes_please", "u2_hello", "u3_hold", "u4_tn", "u5_af"]
        .iter()
        .map(|u| unit(u))
        .collect();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for i in 0..files {
        let mut w =
            hound::WavWriter::create(root.join(format!("call {i}.wav")), spec).expect("wav");
        for k in 0..40 {
            for _ in 0..48_000 {
                w.write_sample(0i16).expect("write");
            }
            for &s in &units[(k + i) % units.len()] {
                w.write_sample(s).expect("write");
            }
        }
        w.finalize().expect("finalize");
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let capacities: Vec<usize> = arg(&args, "--capacities")
        .unwrap_or_else(|| "3,6,12,24".into())
        .split(',')
        .map(|c| c.parse().expect("capacity"))
        .collect();
    let requests: usize = arg(&args, "--requests").map_or(480, |r| r.parse().expect("requests"));
    let latency = Duration::from_millis(
        arg(&args, "--latency-ms").map_or(500, |l| l.parse().expect("latency")),
    );
    let fixed: Option<usize> = arg(&args, "--fixed").map(|f| f.parse().expect("fixed"));
    let files = requests.div_ceil(40);
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).expect("dir");
    calls(&input, files);
    let mode = match fixed {
        Some(n) => format!("fixed {n}"),
        None => "adaptive, ceiling 16".into(),
    };
    println!(
        "# {files} recordings, {} requests, {} ms per request, --jobs 2, {mode}",
        files * 40,
        latency.as_millis()
    );
    println!("capacity  answered  429s  429_%  mean_in_flight  peak  wall_s");
    for capacity in capacities {
        let mut cfg = EmulatorConfig::default();
        cfg.asr_capacity = Some(capacity);
        cfg.asr_latency = latency;
        let emu = Emulator::start(cfg).await.expect("emulator");
        let client = Client::builder()
            .base_url(emu.base_url())
            .credentials(Credentials::RefreshToken(Secret::new(emu.refresh_token())))
            .org_id(emu.org_id())
            .concurrency(fixed.unwrap_or(16))
            .adaptive_concurrency(fixed.is_none())
            .build()
            .expect("client");
        let pipeline = Pipeline::builder()
            .client(client)
            .concurrency(fixed.unwrap_or(16))
            .build()
            .expect("pipeline");
        let out = dir.path().join(format!("out-{capacity}"));
        let batch = Batch::open(std::slice::from_ref(&input), &out, BatchOptions::default())
            .expect("batch");
        let t0 = Instant::now();
        let summary = batch
            .transcribe(&pipeline, std::future::pending())
            .await
            .expect("summary");
        let wall = t0.elapsed().as_secs_f64();
        assert_eq!(summary.counts.done, files, "every file done");
        let s = emu.asr_stats();
        let all = (s.accepted + s.refused).max(1);
        println!(
            "{capacity:>8}  {:>8}  {:>4}  {:>5.2}  {:>14.2}  {:>4}  {wall:>6.1}",
            s.accepted,
            s.refused,
            100.0 * s.refused as f64 / all as f64,
            s.mean_in_flight,
            s.peak_in_flight,
        );
    }
}
