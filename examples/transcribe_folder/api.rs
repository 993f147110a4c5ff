//! The API side: credentials from the environment (or the bundled emulator without them),
//! and the engine that sends each file through the pipeline.

use anyhow::{bail, Context};
use asr_pipeline::botlhale::{Client, Credentials, Secret, DEFAULT_BASE_URL};
use asr_pipeline::export::Format as ExportFormat;
use asr_pipeline::pipeline::{Job as PJob, Pipeline, Progress, Route};
use asr_pipeline::transcript::Transcript;
use botlhale_emulator::{EmulatorConfig, RunningEmulator};

use crate::args::{Args, OutFormat, RouteArg};
use crate::engine::{Engine, FileError, Finished, Job};

/// How to reach the API. Holds no secret: the client reads the credentials itself
/// ([`asr_pipeline::botlhale::ClientBuilder::from_env`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// Credentials are in the environment; false: start the bundled emulator.
    pub credentials: bool,
    /// The base URL: `--endpoint`, else `BOTLHALE_BASE_URL`, else production.
    pub endpoint: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Access {
    /// Checks `BOTLHALE_REFRESH_TOKEN` / `BOTLHALE_TOKEN`, `BOTLHALE_ORG_ID` and
    /// `BOTLHALE_BASE_URL`.
    pub fn from_env(endpoint: Option<&str>) -> anyhow::Result<Access> {
        let token = env("BOTLHALE_REFRESH_TOKEN").is_some() || env("BOTLHALE_TOKEN").is_some();
        Access::from_vars(
            token,
            env("BOTLHALE_ORG_ID").is_some(),
            endpoint
                .map(str::to_string)
                .or_else(|| env("BOTLHALE_BASE_URL")),
        )
    }

    fn from_vars(token: bool, org: bool, endpoint: Option<String>) -> anyhow::Result<Access> {
        match (token, org) {
            (true, false) => bail!(
                "BOTLHALE_TOKEN or BOTLHALE_REFRESH_TOKEN is set but BOTLHALE_ORG_ID is not: set it too"
            ),
            (false, _) if endpoint.is_some() => bail!(
                "--endpoint (or BOTLHALE_BASE_URL) needs credentials: set BOTLHALE_REFRESH_TOKEN (or BOTLHALE_TOKEN) and BOTLHALE_ORG_ID"
            ),
            _ => {}
        }
        Ok(Access {
            credentials: token,
            endpoint: endpoint.unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
        })
    }

    /// What answers, for the journal's settings: `emulator` or the base URL. Results from the
    /// emulator are placeholders: a later run with credentials redoes them.
    pub fn identity(&self) -> String {
        if self.credentials {
            self.endpoint.clone()
        } else {
            "emulator".into()
        }
    }
}

/// Sends each file through the pipeline.
pub struct ApiEngine {
    pipeline: Pipeline,
    base_url: String,
    /// The bundled emulator, kept running while the engine lives (stopped when dropped).
    emulator: Option<RunningEmulator>,
}

impl ApiEngine {
    /// Connects (starting the emulator, loudly, when there are no credentials).
    pub async fn start(access: &Access, args: &Args) -> anyhow::Result<ApiEngine> {
        let (builder, emulator) = if access.credentials {
            let b = Client::builder()
                .from_env()
                .context("reading the credentials")?
                .base_url(access.endpoint.clone());
            (b, None)
        } else {
            let emu = botlhale_emulator::Emulator::start(EmulatorConfig::fast())
                .await
                .context("starting the bundled emulator")?;
            banner(emu.base_url());
            let b = Client::builder()
                .base_url(emu.base_url())
                .credentials(Credentials::RefreshToken(Secret::new(emu.refresh_token())))
                .org_id(emu.org_id());
            (b, Some(emu))
        };
        let client = builder
            .concurrency(args.concurrency.get())
            .build()
            .context("building the API client")?;
        let base_url = client.base_url().to_string();
        let route = match args.route {
            RouteArg::Auto => Route::Auto,
            RouteArg::Sync => Route::Sync,
            RouteArg::Async => Route::Async,
        };
        let pipeline = Pipeline::builder()
            .client(client)
            .route(route)
            .language(args.language.clone())
            .diarization(args.diarization)
            .concurrency(args.concurrency.get())
            .build()
            .context("building the pipeline")?;
        Ok(ApiEngine {
            pipeline,
            base_url,
            emulator,
        })
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// True when the bundled emulator answers.
    pub fn is_emulator(&self) -> bool {
        self.emulator.is_some()
    }
}

/// The loud notice that the answers are placeholders.
fn banner(url: &str) {
    let line = "=".repeat(78);
    eprintln!(
        "{line}\n\
         NO CREDENTIALS FOUND: using the bundled EMULATOR of the Botlhale API at {url}\n\
         The transcripts are PLACEHOLDERS (the emulator does not recognise speech).\n\
         Everything else is real: decoding, segmentation, requests, merging, outputs.\n\
         For real transcripts set BOTLHALE_TOKEN (or BOTLHALE_REFRESH_TOKEN) and\n\
         BOTLHALE_ORG_ID, then run again (placeholder results are redone).\n\
         {line}"
    );
}

impl Engine for ApiEngine {
    async fn process(&self, job: Job<'_>) -> Result<Finished, FileError> {
        if job.reexport {
            match saved_transcript(&job) {
                Ok(t) => return write_transcript(&job, &t),
                Err(e) => {
                    tracing::info!("{}: transcribing again ({e:#})", job.input.path.display())
                }
            }
        }
        let events = job.events.clone();
        let decoded = std::sync::Mutex::new(0.0f64);
        let cb = move |p: &Progress| match p {
            Progress::Uploaded(part) => {
                // Journaled (and synced) before the pipeline goes on to poll: a kill from
                // here on resumes polling instead of uploading again.
                if let Err(e) = events.uploaded(part.clone()) {
                    tracing::error!("could not journal an upload: {e:#}");
                }
            }
            Progress::Decoded { seconds, pass: 1 } => {
                if let Ok(mut d) = decoded.lock() {
                    if *seconds > *d {
                        events.audio(*seconds - *d);
                        *d = *seconds;
                    }
                }
            }
            _ => {}
        };
        let pjob = PJob::path(job.input.path.clone())
            .progress(cb)
            .resume(job.resume.clone());
        let transcript = self
            .pipeline
            .transcribe(pjob)
            .await
            .map_err(|e| FileError::from_lib(&e.with_path(&job.input.path)))?;
        write_transcript(&job, &transcript)
    }
}

/// The transcript JSON written by an earlier run.
fn saved_transcript(job: &Job<'_>) -> anyhow::Result<Transcript> {
    let path = job.out.path(&job.name.rel(".json"))?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Transcript::from_json(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Writes every requested format of `t` (each atomically; JSON first).
pub fn write_transcript(job: &Job<'_>, t: &Transcript) -> Result<Finished, FileError> {
    let mut outputs = Vec::new();
    for f in job.formats {
        let format = match f {
            OutFormat::Json => ExportFormat::Json,
            OutFormat::Srt => ExportFormat::Srt,
            OutFormat::Vtt => ExportFormat::Vtt,
            OutFormat::Rttm => ExportFormat::Rttm,
            OutFormat::Txt => ExportFormat::Text,
        };
        let rel = job.name.rel(&format!(".{}", format.extension()));
        job.out
            .write_with(&rel, |w| format.write(t, w))
            .map_err(FileError::output)?;
        outputs.push(rel);
    }
    Ok(Finished {
        audio_secs: asr_pipeline::time::to_secs(t.metadata.duration),
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_the_environment() {
        let a = Access::from_vars(false, false, None).unwrap();
        assert!(!a.credentials);
        assert_eq!(a.identity(), "emulator");
        let a = Access::from_vars(true, true, None).unwrap();
        assert_eq!(a.identity(), DEFAULT_BASE_URL);
        let a = Access::from_vars(true, true, Some("http://127.0.0.1:1".into())).unwrap();
        assert_eq!(a.identity(), "http://127.0.0.1:1");
        assert!(Access::from_vars(true, false, None).is_err(), "no org id");
        assert!(
            Access::from_vars(false, true, Some("http://x".into())).is_err(),
            "an endpoint without credentials"
        );
    }
}
