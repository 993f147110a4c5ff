//! The API side: credentials from the environment (or the bundled emulator without them),
//! and the engine that sends each file through the pipeline.

use std::fmt;

use anyhow::{bail, Context};
use asr_pipeline::botlhale::{Client, Credentials, Secret};
use asr_pipeline::emulator::{EmulatorConfig, RunningEmulator};
use asr_pipeline::export::Format as ExportFormat;
use asr_pipeline::pipeline::{Job as PJob, Pipeline, Progress, Route};
use asr_pipeline::transcript::Transcript;

use crate::args::{Args, OutFormat, RouteArg};
use crate::engine::{Engine, FileError, Finished, Job};

/// The production base URL.
pub const PRODUCTION: &str = "https://api.botlhale.xyz";

/// A credential from the environment. Never printed.
#[derive(Clone)]
pub enum Credential {
    /// `BOTLHALE_TOKEN`: a ready IdToken.
    IdToken(String),
    /// `BOTLHALE_REFRESH_TOKEN`: renewed into IdTokens by the client.
    RefreshToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::IdToken(_) => f.write_str("IdToken(<redacted>)"),
            Credential::RefreshToken(_) => f.write_str("RefreshToken(<redacted>)"),
        }
    }
}

/// How to reach the API.
#[derive(Debug, Clone)]
pub struct Access {
    /// Credential and organisation id; `None`: start the bundled emulator.
    pub credentials: Option<(Credential, String)>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Access {
    /// Reads `BOTLHALE_TOKEN` / `BOTLHALE_REFRESH_TOKEN` and `BOTLHALE_ORG_ID`.
    pub fn from_env(endpoint: Option<&str>) -> anyhow::Result<Access> {
        Access::from_vars(
            env("BOTLHALE_TOKEN"),
            env("BOTLHALE_REFRESH_TOKEN"),
            env("BOTLHALE_ORG_ID"),
            endpoint,
        )
    }

    fn from_vars(
        token: Option<String>,
        refresh: Option<String>,
        org: Option<String>,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Access> {
        let cred = match (token, refresh) {
            (Some(t), _) => Some(Credential::IdToken(t)),
            (None, Some(r)) => Some(Credential::RefreshToken(r)),
            (None, None) => None,
        };
        let credentials = match (cred, org) {
            (Some(c), Some(o)) => Some((c, o)),
            (Some(_), None) => bail!(
                "BOTLHALE_TOKEN or BOTLHALE_REFRESH_TOKEN is set but BOTLHALE_ORG_ID is not: set it too"
            ),
            (None, _) if endpoint.is_some() => bail!(
                "--endpoint needs credentials: set BOTLHALE_TOKEN (or BOTLHALE_REFRESH_TOKEN) and BOTLHALE_ORG_ID"
            ),
            (None, _) => None,
        };
        Ok(Access {
            credentials,
            endpoint: endpoint.map(str::to_string),
        })
    }

    /// What answers, for the journal's settings: `emulator` or the base URL. Results from the
    /// emulator are placeholders: a later run with credentials redoes them.
    pub fn identity(&self) -> String {
        match (&self.credentials, &self.endpoint) {
            (None, _) => "emulator".into(),
            (Some(_), Some(e)) => e.clone(),
            (Some(_), None) => PRODUCTION.into(),
        }
    }
}

/// Sends each file through the pipeline.
pub struct ApiEngine {
    pipeline: Pipeline,
    base_url: String,
    /// The bundled emulator, kept running while the engine lives.
    emulator: Option<Emulator>,
}

/// The running emulator: stopped when dropped.
type Emulator = RunningEmulator;

impl ApiEngine {
    /// Connects (starting the emulator, loudly, when there are no credentials).
    pub async fn start(access: &Access, args: &Args) -> anyhow::Result<ApiEngine> {
        let (credentials, org, base_url, emulator) = match &access.credentials {
            Some((c, org)) => {
                let c = match c {
                    Credential::IdToken(t) => Credentials::IdToken(Secret::new(t.clone())),
                    Credential::RefreshToken(t) => {
                        Credentials::RefreshToken(Secret::new(t.clone()))
                    }
                };
                let url = access
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| PRODUCTION.to_string());
                (c, org.clone(), url, None)
            }
            None => {
                let (url, token, org, handle) = start_emulator().await?;
                banner(&url);
                (
                    Credentials::RefreshToken(Secret::new(token)),
                    org,
                    url,
                    Some(handle),
                )
            }
        };
        let client = Client::builder()
            .base_url(base_url.clone())
            .credentials(credentials)
            .org_id(org)
            .concurrency(args.concurrency.get())
            .build()
            .context("building the API client")?;
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

/// Starts the bundled emulator on 127.0.0.1; returns its base URL, refresh token, org id and a
/// handle that keeps it running.
async fn start_emulator() -> anyhow::Result<(String, String, String, Emulator)> {
    let emu = asr_pipeline::emulator::Emulator::start(EmulatorConfig::default())
        .await
        .context("starting the bundled emulator")?;
    Ok((
        emu.base_url().to_string(),
        emu.refresh_token().to_string(),
        emu.org_id().to_string(),
        emu,
    ))
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

    fn s(v: &str) -> Option<String> {
        Some(v.into())
    }

    #[test]
    fn credentials_from_the_environment() {
        let a = Access::from_vars(None, None, None, None).unwrap();
        assert!(a.credentials.is_none());
        assert_eq!(a.identity(), "emulator");
        let a = Access::from_vars(s("tok"), s("ref"), s("org"), None).unwrap();
        assert!(matches!(a.credentials, Some((Credential::IdToken(_), _))));
        assert_eq!(a.identity(), PRODUCTION);
        let a = Access::from_vars(None, s("ref"), s("org"), Some("http://127.0.0.1:1")).unwrap();
        assert!(matches!(
            a.credentials,
            Some((Credential::RefreshToken(_), _))
        ));
        assert_eq!(a.identity(), "http://127.0.0.1:1");
        assert!(Access::from_vars(s("tok"), None, None, None).is_err());
        assert!(Access::from_vars(None, None, None, Some("http://x")).is_err());
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let a = Access::from_vars(s("secret-tok"), None, s("org"), None).unwrap();
        let d = format!("{a:?}");
        assert!(!d.contains("secret-tok"), "{d}");
    }
}
