//! Runs the local Botlhale API emulator as a process.
//!
//! ```text
//! cargo run -p botlhale-emulator -- --port 8080 --seed 7 --fault-rate 0.3
//! ```
//!
//! Prints `BASE_URL=...`, `BOTLHALE_REFRESH_TOKEN=...`, `ORG_ID=...` and `UPLOAD_DIR=...`
//! (one per line, easy to `eval` or parse), then serves until killed. Uploads are kept in
//! `UPLOAD_DIR` (a fresh directory under the system temp directory unless `--upload-dir` is
//! given); a killed process leaves it behind, so remove it when done.

use std::time::Duration;

use botlhale_emulator::{
    DataRoutes, Emulator, EmulatorConfig, FaultConfig, SignatureStyle, TimestampUnits,
};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "A local emulator of the Botlhale AI speech API (no speech recognition)")]
struct Args {
    /// Port on 127.0.0.1 (0: ephemeral).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seed of every random choice (tokens, keys, faults).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of requests that meet an injected fault (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Retry-After seconds sent with injected 429s.
    #[arg(long, default_value_t = 1)]
    retry_after: u32,
    /// Fixed refresh token (default: derived from the seed).
    #[arg(long)]
    refresh_token: Option<String>,
    /// Organisation id.
    #[arg(long, default_value = "emulator-org")]
    org_id: String,
    /// Emulated seconds per real second (3600: a one-hour token lasts a second).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Token lifetime in emulated seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
    /// Extra latency per response, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Most `POST /asr` requests served at once (429 beyond). Default: no limit.
    #[arg(long)]
    asr_capacity: Option<usize>,
    /// Most `POST /asr` requests processed at once; the others queue. Default: no queue.
    #[arg(long)]
    asr_workers: Option<usize>,
    /// Processing time of each `POST /asr` request, milliseconds.
    #[arg(long, default_value_t = 0)]
    asr_latency_ms: u64,
    /// Upload bandwidth of the storage route, bytes per second. Default: no limit.
    #[arg(long)]
    upload_bytes_per_sec: Option<u64>,
    /// Which data path exists: data, getdata or both.
    #[arg(long, default_value = "both")]
    data_route: String,
    /// Async timestamps in seconds instead of milliseconds.
    #[arg(long)]
    seconds: bool,
    /// Send async numbers as strings.
    #[arg(long)]
    numbers_as_strings: bool,
    /// SigV2-style field names in /asr/async/upload forms.
    #[arg(long)]
    sigv2: bool,
    /// Directory for accepted uploads (default: a fresh one under the temp directory).
    #[arg(long)]
    upload_dir: Option<std::path::PathBuf>,
    /// Vela minute allocation per organisation.
    #[arg(long, default_value_t = 60.0)]
    vela_minutes: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut cfg = EmulatorConfig::default();
    cfg.port = a.port;
    cfg.seed = a.seed;
    cfg.refresh_token = a.refresh_token;
    cfg.org_id = a.org_id;
    cfg.time_scale = a.time_scale;
    cfg.token_lifetime = Duration::from_secs(a.token_lifetime);
    cfg.latency = Duration::from_millis(a.latency_ms);
    cfg.asr_capacity = a.asr_capacity;
    cfg.asr_workers = a.asr_workers;
    cfg.asr_latency = Duration::from_millis(a.asr_latency_ms);
    cfg.upload_bytes_per_sec = a.upload_bytes_per_sec;
    let mut faults = FaultConfig::with_rate(a.fault_rate);
    faults.retry_after_secs = a.retry_after;
    cfg.faults = faults;
    cfg.data_routes = match a.data_route.as_str() {
        "data" => DataRoutes::Data,
        "getdata" => DataRoutes::GetData,
        "both" => DataRoutes::Both,
        other => anyhow::bail!("--data-route must be data, getdata or both, not {other}"),
    };
    if a.seconds {
        cfg.timestamp_units = TimestampUnits::Seconds;
    }
    cfg.numbers_as_strings = a.numbers_as_strings;
    if a.sigv2 {
        cfg.signature_style = SignatureStyle::V2;
    }
    cfg.vela_minute_allocation = a.vela_minutes;
    cfg.upload_dir = a.upload_dir;
    let emu = Emulator::start(cfg).await?;
    println!("BASE_URL={}", emu.base_url());
    println!("BOTLHALE_REFRESH_TOKEN={}", emu.refresh_token());
    println!("ORG_ID={}", emu.org_id());
    println!("UPLOAD_DIR={}", emu.upload_dir().display());
    std::future::pending::<()>().await;
    Ok(())
}
