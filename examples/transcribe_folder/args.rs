//! Command-line arguments.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use asr_pipeline::channels::ChannelMode;
use asr_pipeline::export::Format;
use clap::{Parser, ValueEnum};

/// Transcribe every audio file under the given files and folders through the Botlhale AI speech
/// API, resumably, into a mirror of the input tree under `--out`.
///
/// Credentials come from the environment: `BOTLHALE_TOKEN` (an IdToken) or
/// `BOTLHALE_REFRESH_TOKEN`, plus `BOTLHALE_ORG_ID`. With none set, the bundled emulator of the
/// API is started on 127.0.0.1: its transcripts are placeholders, everything else is real.
#[derive(Debug, Clone, Parser)]
#[command(name = "transcribe_folder", version, about, long_about)]
pub struct Args {
    /// Audio files and folders (folders are walked recursively; non-audio files are skipped).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// Output folder: mirrors the input tree; `summary.json` and `journal.jsonl` at its top.
    /// Must not lie inside an input folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Output formats, comma separated. `<name>.json` is always written.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "json")]
    pub formats: Vec<OutFormat>,

    /// How each file is sent: `sync` (speech segments of at most 60 s, many in flight), `async`
    /// (the whole file uploaded and polled; needed for diarization) or `auto` (async with
    /// `--diarization`, sync otherwise).
    #[arg(long, value_enum, default_value_t = RouteArg::Auto)]
    pub route: RouteArg,

    /// Language of the recordings, as a BCP-47 tag (`zu-ZA`, `en-ZA`, ...). Omitted: the
    /// service's default (detected per sentence on the async route).
    #[arg(long, value_name = "CODE", value_parser = parse_language)]
    pub language: Option<String>,

    /// Ask for speaker diarization (async route).
    #[arg(long)]
    pub diarization: bool,

    /// How the channels of a file are transcribed: `auto` (a 2-channel call with one talker
    /// per channel is transcribed per channel, anything else mixed), `mix`, `separate` (each
    /// channel on its own) or `separate:2` / `separate:0,2` (only those channels, 0-based).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_channels)]
    pub channels: ChannelMode,

    /// Names of the channels, comma separated (`agent,customer`): the speaker of each
    /// channel's segments. Default `channel_0`, `channel_1`, ...
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub channel_names: Vec<String>,

    /// Files processed in parallel.
    #[arg(long, value_name = "N", default_value = "2")]
    pub jobs: NonZeroUsize,

    /// The most API requests in flight at once, over all files. The number actually in
    /// flight adapts to what the service accepts: it starts at 4, grows while answers come
    /// back without 429/503, and backs off when they do (`--fixed-concurrency` keeps it at N).
    #[arg(long, value_name = "N", default_value = "16")]
    pub concurrency: NonZeroUsize,

    /// Keep exactly `--concurrency` requests in flight instead of adapting.
    #[arg(long)]
    pub fixed_concurrency: bool,

    /// Base URL of the API (default: `BOTLHALE_BASE_URL`, else https://api.botlhale.xyz).
    /// Needs credentials in the environment.
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub endpoint: Option<String>,

    /// No API at all: write each input's speech segments as 16 kHz WAV files plus a
    /// `manifest.json` (start/end in ms), for use with another ASR system.
    #[arg(long, conflicts_with_all = ["route", "language", "diarization", "endpoint", "channels", "channel_names"])]
    pub split_only: bool,

    /// No progress bars: plain log lines on stderr (also the behaviour when stderr is not a
    /// terminal).
    #[arg(long, short)]
    pub quiet: bool,

    /// Redo every file, even those the journal says are finished (not with `--queue`: a job
    /// shared by workers that start at different times would redo files once per worker; use
    /// another `--out` to redo a shared job).
    #[arg(long, conflicts_with = "queue")]
    pub force: bool,

    /// Share the job with other workers through this Redis server
    /// (`redis://[:password@]host:port/[db]`): run the same command (same inputs, same
    /// `--out` on shared storage, same options) on one machine or many, start more later,
    /// stop any of them; each takes files until the whole job is done. The job's state is
    /// kept in Redis instead of `journal.jsonl`; `--concurrency` is then the limit of requests
    /// in flight over all workers together.
    #[arg(long, value_name = "URL")]
    pub queue: Option<String>,

    /// With `--queue`: print the job's counts (files queued, in progress, done, failed) and
    /// exit.
    #[arg(long, requires = "queue")]
    pub status: bool,

    /// With `--queue`: seconds after which a file held by a worker that stopped (killed, cut
    /// off from Redis) is taken over by another worker.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub lease: f64,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum OutFormat {
    /// The transcript JSON (always written).
    Json,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles with `<v speaker>` cues.
    Vtt,
    /// RTTM speaker turns.
    Rttm,
    /// Plain text.
    Txt,
}

/// The `--route` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouteArg {
    /// Async with `--diarization`, sync otherwise.
    Auto,
    /// Segments of at most 60 s to `POST /asr`.
    Sync,
    /// The whole file to the asynchronous API.
    Async,
}

impl Args {
    /// Checks the combinations clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.diarization && self.route == RouteArg::Sync {
            anyhow::bail!("--diarization needs the async route: use --route async or auto");
        }
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.channel_names {
            if n.trim().is_empty() || !seen.insert(n.trim()) {
                anyhow::bail!("--channel-names: names must be non-empty and distinct ({n:?})");
            }
        }
        Ok(())
    }

    /// The formats to write, in the library's terms (JSON is always written).
    pub fn formats(&self) -> Vec<Format> {
        let mut f: Vec<OutFormat> = self.formats.clone();
        f.push(OutFormat::Json);
        f.sort();
        f.dedup();
        f.into_iter()
            .map(|f| match f {
                OutFormat::Json => Format::Json,
                OutFormat::Srt => Format::Srt,
                OutFormat::Vtt => Format::Vtt,
                OutFormat::Rttm => Format::Rttm,
                OutFormat::Txt => Format::Text,
            })
            .collect()
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.2..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: seconds between 0.2 and 86400")),
    }
}

fn parse_channels(s: &str) -> Result<ChannelMode, String> {
    ChannelMode::from_name(s).map_err(|e| e.to_string())
}

fn parse_language(s: &str) -> Result<String, String> {
    // BCP-47 shape only (letters, digits and '-'); the service decides what it supports.
    let ok = !s.is_empty()
        && s.len() <= 35
        && s.split('-')
            .all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a BCP-47 language tag such as zu-ZA"))
    }
}

fn parse_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(s.trim_end_matches('/').to_string())
        }
        Ok(_) => Err(format!("{s:?}: only http(s) URLs with a host are accepted")),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}
