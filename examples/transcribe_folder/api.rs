//! The API side: credentials from the environment (or the bundled emulator without them),
//! and the pipeline built from them and the arguments.

use anyhow::{bail, Context};
use asr_pipeline::botlhale::{Client, ClientBuilder, Credentials, Secret, DEFAULT_BASE_URL};
use asr_pipeline::pipeline::{Pipeline, Route};
use botlhale_emulator::{EmulatorConfig, RunningEmulator};

use crate::args::{Args, RouteArg};

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

/// Where requests go (starting the emulator, loudly, when there are no credentials): the
/// client's settings, and the emulator behind them, which answers while it is kept.
pub async fn client(
    access: &Access,
    args: &Args,
) -> anyhow::Result<(ClientBuilder, Option<RunningEmulator>)> {
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
    let builder = builder
        .concurrency(args.concurrency.get())
        .adaptive_concurrency(!args.fixed_concurrency);
    Ok((builder, emulator))
}

/// A client that is never used to send anything: the settings of a pipeline built on it name
/// a shared job (what answers is in the batch's options, not in the client).
pub fn idle_client() -> anyhow::Result<Client> {
    Client::builder()
        .base_url("http://127.0.0.1:9")
        .credentials(Credentials::IdToken(Secret::new("unused")))
        .org_id("unused")
        .build()
        .context("building a client")
}

/// The pipeline the arguments describe, on `client`.
pub fn pipeline(args: &Args, client: Client) -> anyhow::Result<Pipeline> {
    let route = match args.route {
        RouteArg::Auto => Route::Auto,
        RouteArg::Sync => Route::Sync,
        RouteArg::Async => Route::Async,
    };
    Pipeline::builder()
        .client(client)
        .route(route)
        .language(args.language.clone())
        .diarization(args.diarization)
        .channels(args.channels.clone())
        .channel_names(args.channel_names.iter().map(|n| n.trim()))
        .concurrency(args.concurrency.get())
        .build()
        .context("building the pipeline")
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
