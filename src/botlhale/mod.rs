//! Stage `botlhale`: a typed async client for the Botlhale AI speech API.
//!
//! What it does, in one place (the remote contract is `shared/api-contract.md`):
//!
//! - **Auth** ([`Credentials`]): a ready IdToken, or a refresh token traded at
//!   `POST /generateAuthToken` and renewed before it expires and once on a 401. Tokens live in
//!   [`Secret`] and never appear in logs, errors or `Debug`.
//! - **Sync** [`Client::transcribe_sync`]: `POST /asr` with a clip of at most 60 s.
//! - **Async** [`Client::upload_async`] asks `POST /asr/async/upload` for a presigned S3 POST
//!   and streams the file to it (every field verbatim and in order, then the file as the last
//!   part `file`, with an exact `Content-Length`, never held in memory); an expired form is
//!   renewed. [`Client::status`], [`Client::data`] (`/asr/async/data`, falling back to
//!   `/asr/async/getdata` on 404) and the poller [`Client::poll`], which can be resumed from the
//!   server's file name alone, in another process.
//! - **Vela** calls and chats, the **chatbot**, **translation** and **TTS**.
//! - **Retries** decided by one pure function, [`retry::decide`]: 408, 429, 5xx, timeouts,
//!   connect errors and dropped connections retry with capped, jittered exponential backoff,
//!   `Retry-After` first; other 4xx are final ([`crate::ErrorKind::Api`] keeps status and
//!   body); an exhausted quota is [`crate::ErrorKind::QuotaExhausted`] and never retried.
//!   Request bodies are rebuilt for every attempt.
//! - A concurrency limit shared by all clones of a client; configurable base URL, timeouts and
//!   user agent. Uploads have no overall time limit: an attempt fails when it stalls
//!   ([`ClientBuilder::upload_stall_timeout`]).
//!
//! ```no_run
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use asr_pipeline::botlhale::{AsyncUpload, Client, Credentials, Language, PollOptions, Secret, SyncRequest};
//!
//! # async fn run() -> asr_pipeline::Result<()> {
//! let client = Client::builder()
//!     .credentials(Credentials::RefreshToken(Secret::new("…")))
//!     .org_id("my-org")
//!     .concurrency(4)
//!     .build()?;
//!
//! // A short clip, synchronously.
//! let wav = std::fs::read("clip.wav")?;
//! let rate = NonZeroU32::new(16_000).unwrap();
//! let sync = client
//!     .transcribe_sync(SyncRequest::new(wav, "clip.wav", rate).language(Language::IsiZulu))
//!     .await?;
//! println!("{}", sync.transcription);
//!
//! // A long recording: upload, then poll (resumable later with `job.file_name`).
//! let job = client.upload_async(AsyncUpload::new("call.flac", rate).diarization(true)).await?;
//! let result = client.poll(&job.file_name, PollOptions::for_audio(Duration::from_secs(1800))).await?;
//! for t in &result.timestamps {
//!     println!("{:>8.0} {:>8.0} {:?} {}", t.start_ms, t.end_ms, t.speaker, t.transcription);
//! }
//! # Ok(()) }
//! ```

mod adaptive;
mod asynch;
mod auth;
mod bot;
mod chat;
mod h1;
mod limit;
mod poll;
mod retry;
mod sync;
mod translate;
mod tts;
mod types;
mod upload;
mod vela;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};

pub use asynch::{AsyncJob, AsyncUpload};
pub use auth::{Credentials, Secret};
pub use bot::{MessageContent, MessageRequest, ResponseType, StartConversation};
pub use chat::{ChatMessage, ChatMetadata, ChatSender, ChatUpload};
pub use limit::{Limiter, Permit};
pub use poll::PollOptions;
pub use retry::{decide, Decision, Outcome, RetryPolicy};
pub use sync::SyncRequest;
pub use translate::TranslateRequest;
pub use tts::TtsRequest;
pub use types::{
    AsyncResult, BotReply, Button, Conversation, Entity, JobStatus, JobStatusReport, Language,
    PresignedPost, ProcessingTime, SpeechSynthesis, StatusEntry, SyncTranscription, TimeReading,
    TimedText, Translation,
};
pub use upload::UploadProgress;
pub use vela::{VelaCallUpload, VelaMetadata};

/// Internal parsers, reachable for the fuzz targets in `fuzz/` only: not part of the API.
#[doc(hidden)]
pub mod __fuzz {
    pub use super::h1::parse_answer as parse_storage_answer;
    pub use super::retry::parse_retry_after;
    pub use super::upload::parse_s3_error;
}

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.botlhale.xyz";
/// The documented data path.
pub(crate) const DEFAULT_DATA_PATH: &str = "/asr/async/data";
/// The path the vendor's example uses instead; tried on 404.
pub(crate) const FALLBACK_DATA_PATH: &str = "/asr/async/getdata";

/// Bodies larger than this are refused rather than buffered (JSON answers are small).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Error bodies are cut to this many bytes in errors.
const MAX_ERROR_BODY: usize = 2048;

/// Configures a [`Client`]; every setting has a documented default.
#[derive(Clone)]
#[must_use]
pub struct ClientBuilder {
    base_url: String,
    credentials: Option<Credentials>,
    org_id: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    upload_stall: Duration,
    user_agent: String,
    concurrency: usize,
    adaptive: bool,
    retry: RetryPolicy,
    data_path: String,
    data_fallback_path: Option<String>,
    chats_path: Option<String>,
    token_margin: Duration,
    form_max_age: Duration,
    form_expiry_margin: Duration,
    limiter: Option<Arc<dyn Limiter>>,
}

/// How many form secret values [`Client::redact`] remembers (a few forms' worth).
const MAX_FORM_SECRETS: usize = 32;

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("credentials", &self.credentials)
            .field("org_id", &self.org_id)
            .field("concurrency", &self.concurrency)
            .field("limiter", &self.limiter.as_ref().map(|_| "shared"))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            base_url: DEFAULT_BASE_URL.to_string(),
            credentials: None,
            org_id: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            upload_stall: Duration::from_secs(60),
            user_agent: format!("asr-pipeline/{}", env!("CARGO_PKG_VERSION")),
            concurrency: 16,
            adaptive: true,
            retry: RetryPolicy::default(),
            data_path: DEFAULT_DATA_PATH.to_string(),
            data_fallback_path: Some(FALLBACK_DATA_PATH.to_string()),
            chats_path: None,
            token_margin: Duration::from_secs(300),
            form_max_age: Duration::from_secs(55 * 60),
            form_expiry_margin: Duration::from_secs(60),
            limiter: None,
        }
    }
}

impl ClientBuilder {
    /// The API's base URL. Default [`DEFAULT_BASE_URL`]; a path prefix is kept.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }
    /// How to authenticate. Required.
    pub fn credentials(mut self, c: Credentials) -> Self {
        self.credentials = Some(c);
        self
    }
    /// The organisation id, required by the async and Vela endpoints. Default none.
    pub fn org_id(mut self, id: impl Into<String>) -> Self {
        self.org_id = Some(id.into());
        self
    }
    /// TCP/TLS connect timeout. Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Timeout of one API request, response included. Default 120 s. An upload has no overall
    /// limit: it fails when it stalls ([`ClientBuilder::upload_stall_timeout`]), or when its
    /// answer has not come this long (plus as long again as handing the file over took: the
    /// network's buffers drain at the link's rate) after the whole file was handed over.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// An upload attempt fails when no byte of it went out for this long (a dead link); a slow
    /// link that keeps moving completes, however long the file. Default 60 s.
    pub fn upload_stall_timeout(mut self, d: Duration) -> Self {
        self.upload_stall = d.max(Duration::from_millis(100));
        self
    }
    /// The `User-Agent` header. Default `asr-pipeline/<version>`.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }
    /// The most requests in flight at once, across all clones of the client. Default 16.
    /// With [`ClientBuilder::adaptive_concurrency`] (the default) this is the ceiling of the
    /// adaptive limit; without, the limit itself.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Adapt the number of requests in flight to what the service accepts. Default true.
    ///
    /// The limit starts at 4 (or the [`ClientBuilder::concurrency`] ceiling if lower). It
    /// grows by about one per round of requests while the limit is in use and no 429 or 503
    /// comes back, and it is multiplied by 0.75 on each 429 or 503, which is retried as
    /// [`RetryPolicy`] says, `Retry-After` honoured. The limit just below the one that
    /// overloaded is remembered: the limit regrows to it quickly, then tries one more only
    /// after 64 requests answered at it. So a service that takes 3 at once sees a 429 about
    /// once per 65 requests, not every few.
    /// [`Client::concurrency_limit`] tells the current limit.
    pub fn adaptive_concurrency(mut self, on: bool) -> Self {
        self.adaptive = on;
        self
    }
    /// A further limit on requests in flight, asked before each attempt once the client's own
    /// [`ClientBuilder::concurrency`] slot is held: for example one shared by every worker of
    /// a distributed batch. Default none.
    pub fn limiter(mut self, limiter: Arc<dyn Limiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }
    /// The retry policy. Default [`RetryPolicy::default`].
    pub fn retry(mut self, p: RetryPolicy) -> Self {
        self.retry = p;
        self
    }
    /// The data path. Default `/asr/async/data`.
    pub fn data_path(mut self, p: impl Into<String>) -> Self {
        self.data_path = p.into();
        self
    }
    /// The path tried when the data path answers 404; `None` disables the fallback. Default
    /// `/asr/async/getdata`.
    pub fn data_fallback_path(mut self, p: Option<String>) -> Self {
        self.data_fallback_path = p;
        self
    }
    /// The Vela chats upload path (the vendor does not publish it). Default none: chats uploads
    /// fail with [`crate::ErrorKind::InvalidConfig`] until set.
    pub fn chats_path(mut self, p: impl Into<String>) -> Self {
        self.chats_path = Some(p.into());
        self
    }
    /// How long before expiry an IdToken is renewed. Default 5 min (at most a tenth of the
    /// token's lifetime).
    pub fn token_renewal_margin(mut self, d: Duration) -> Self {
        self.token_margin = d;
        self
    }
    /// A presigned form older than this is replaced before uploading. Default 55 min (the
    /// vendor's forms live an hour).
    pub fn form_max_age(mut self, d: Duration) -> Self {
        self.form_max_age = d;
        self
    }
    /// A form whose policy expires within this margin is replaced before uploading. Default 60 s.
    pub fn form_expiry_margin(mut self, d: Duration) -> Self {
        self.form_expiry_margin = d;
        self
    }

    /// Reads `BOTLHALE_REFRESH_TOKEN` (preferred, renewable) or `BOTLHALE_TOKEN`,
    /// `BOTLHALE_ORG_ID` and the optional `BOTLHALE_BASE_URL` into this builder.
    pub fn from_env(mut self) -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        self.credentials = match (var("BOTLHALE_REFRESH_TOKEN"), var("BOTLHALE_TOKEN")) {
            (Some(r), _) => Some(Credentials::RefreshToken(Secret::new(r.trim()))),
            (None, Some(t)) => Some(Credentials::IdToken(Secret::new(t.trim()))),
            (None, None) => {
                return Err(Error::config(
                    "neither BOTLHALE_REFRESH_TOKEN nor BOTLHALE_TOKEN is set",
                ))
            }
        };
        if let Some(o) = var("BOTLHALE_ORG_ID") {
            self.org_id = Some(o);
        }
        if let Some(u) = var("BOTLHALE_BASE_URL") {
            self.base_url = u;
        }
        Ok(self)
    }

    /// Builds the client. Fails on missing credentials, a bad base URL or a zero limit.
    pub fn build(self) -> Result<Client> {
        let credentials = self
            .credentials
            .ok_or_else(|| Error::config("botlhale client: credentials are required"))?;
        let base = url::Url::parse(&self.base_url)
            .map_err(|e| Error::config(format!("base URL {:?}: {e}", self.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::config(format!(
                "base URL {:?}: not http(s)",
                self.base_url
            )));
        }
        if self.concurrency == 0 {
            return Err(Error::config(
                "botlhale client: concurrency must be at least 1",
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::config(
                "retry policy: max_attempts must be at least 1",
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(self.user_agent.clone())
            .build()
            .map_err(|e| Error::config(format!("HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: self.base_url.trim_end_matches('/').to_string(),
                auth: auth::Auth::new(credentials, self.token_margin),
                org_id: self.org_id,
                gate: adaptive::Gate::new(self.concurrency, self.adaptive),
                retry: self.retry,
                request_timeout: self.request_timeout,
                upload_stall: self.upload_stall,
                data_path: self.data_path,
                data_fallback_path: self.data_fallback_path,
                data_use_fallback: AtomicBool::new(false),
                form_secrets: std::sync::Mutex::new(std::collections::VecDeque::new()),
                chats_path: self.chats_path,
                form_max_age: self.form_max_age,
                form_expiry_margin: self.form_expiry_margin,
                limiter: self.limiter,
                connect_timeout: self.connect_timeout,
                user_agent: self.user_agent,
            }),
        })
    }
}

/// The API client. Cheap to clone; clones share the token, the connection pool and the
/// concurrency limit.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: auth::Auth,
    org_id: Option<String>,
    gate: Arc<adaptive::Gate>,
    retry: RetryPolicy,
    request_timeout: Duration,
    upload_stall: Duration,
    data_path: String,
    data_fallback_path: Option<String>,
    data_use_fallback: AtomicBool,
    chats_path: Option<String>,
    form_max_age: Duration,
    form_expiry_margin: Duration,
    limiter: Option<Arc<dyn Limiter>>,
    /// Credential values of the most recent upload forms (policy, signature, session token,
    /// credential), so [`Client::redact`] removes them from error texts too. Bounded.
    form_secrets: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// For uploads on their own connection ([`h1`]).
    connect_timeout: Duration,
    user_agent: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base)
            .field("credentials", &self.inner.auth.credentials)
            .field("org_id", &self.inner.org_id)
            .finish_non_exhaustive()
    }
}

/// A successful answer: the whole (bounded) body.
pub(crate) struct Reply {
    pub body: Bytes,
}

/// How one logical call is sent.
pub(crate) struct Call<'a> {
    /// For errors and logs, e.g. `POST /asr`.
    pub endpoint: &'a str,
    /// Sends `Authorization: Bearer <IdToken>` (never to presigned upload URLs).
    pub auth: bool,
    /// Applies [`retry::is_quota_exhausted`] to error answers.
    pub detect_quota: bool,
    /// Overrides the client's request timeout.
    pub timeout: Option<Duration>,
    /// An upload: no overall timeout; the attempt fails when its body stalls or when the
    /// answer is late after the body has gone. Made afresh per attempt by the `build` closure.
    pub watch: Option<Arc<Mutex<Option<Watch>>>>,
}

/// Watches one upload attempt: when its body last moved, and when it ended.
#[derive(Clone, Debug)]
pub(crate) struct Watch {
    start: Instant,
    /// Milliseconds from `start` of the last chunk sent.
    last: Arc<AtomicU64>,
    /// Milliseconds from `start` when the last chunk went (`u64::MAX`: not yet).
    done: Arc<AtomicU64>,
    /// Milliseconds from `start` when the exchange began (after the gate and the limiter).
    began: Arc<AtomicU64>,
    stall: Duration,
    answer: Duration,
}

impl Watch {
    fn new(stall: Duration, answer: Duration) -> Watch {
        Watch {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
            done: Arc::new(AtomicU64::new(u64::MAX)),
            began: Arc::new(AtomicU64::new(0)),
            stall,
            answer,
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The exchange begins: the stall timer and the time to hand the body over run from
    /// here, not from when the attempt started waiting for the gate or the limiter.
    fn begin(&self) {
        let now = self.ms();
        self.began.store(now, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
    }

    /// A chunk of the body went out.
    pub(crate) fn moved(&self) {
        self.last.store(self.ms(), Ordering::Relaxed);
    }

    /// The whole body went out.
    pub(crate) fn finished(&self) {
        self.done.store(self.ms(), Ordering::Relaxed);
    }

    /// Resolves when the attempt should be abandoned, with why.
    async fn expired(&self) -> String {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.ms();
            let done = self.done.load(Ordering::Relaxed);
            if done == u64::MAX {
                let idle = now.saturating_sub(self.last.load(Ordering::Relaxed));
                if Duration::from_millis(idle) >= self.stall {
                    return format!("the upload stalled: nothing sent for {idle} ms");
                }
            } else {
                // The last chunk left the client, not the machine: the network's buffers may
                // still hold megabytes, drained at the link's rate. They took at most as long
                // to fill as the body took to hand over, so that much more is allowed, plus
                // the time the service may take to answer.
                let handing = done.saturating_sub(self.began.load(Ordering::Relaxed));
                let grace = self.answer + Duration::from_millis(handing);
                if Duration::from_millis(now.saturating_sub(done)) >= grace {
                    return format!(
                        "no answer {:.0} s after the whole upload was handed to the network",
                        grace.as_secs_f64()
                    );
                }
            }
        }
    }
}

impl Client {
    /// A builder with every default (see [`ClientBuilder`]).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from the environment (see [`ClientBuilder::from_env`]).
    pub fn from_env() -> Result<Client> {
        ClientBuilder::default().from_env()?.build()
    }

    /// The base URL in use, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Requests allowed in flight now: the adaptive limit (see
    /// [`ClientBuilder::adaptive_concurrency`]), or the fixed one.
    pub fn concurrency_limit(&self) -> usize {
        self.inner.gate.limit()
    }

    /// The organisation id, if configured.
    pub fn org_id(&self) -> Option<&str> {
        self.inner.org_id.as_deref()
    }

    pub(crate) fn require_org_id(&self, endpoint: &str) -> Result<&str> {
        self.org_id()
            .ok_or_else(|| Error::config(format!("{endpoint}: an organisation id is required")))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.inner.base)
        } else {
            format!("{}/{path}", self.inner.base)
        }
    }

    /// The current IdToken, minting or renewing it when needed.
    async fn token(&self) -> Result<Secret> {
        let mut cache = self.inner.auth.cache.lock().await;
        if let Some(c) = &*cache {
            if c.renew_at.is_none_or(|t| Instant::now() < t) {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.mint().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    /// Renews after a 401 answered to `stale`, unless another request already did.
    async fn renew_after_401(&self, stale: &Secret) -> Result<()> {
        let mut cache = self.inner.auth.cache.lock().await;
        if let Some(c) = &*cache {
            if c.token != *stale {
                return Ok(());
            }
        }
        *cache = Some(self.mint().await?);
        Ok(())
    }

    /// Trades the refresh token for an IdToken.
    async fn mint(&self) -> Result<auth::Cached> {
        const EP: &str = "POST /generateAuthToken";
        let auth::Credentials::RefreshToken(refresh) = &self.inner.auth.credentials else {
            return Err(Error::new(ErrorKind::Auth {
                endpoint: EP.into(),
                status: 401,
                body: "the IdToken was refused and no refresh token is configured".into(),
            }));
        };
        let url = self.url("/generateAuthToken");
        let refresh = refresh.clone();
        // Boxed: `send` calls `token`, which calls `mint` (never recursively at run time:
        // this call does not authenticate).
        let reply = Box::pin(self.send(
            Call {
                endpoint: EP,
                auth: false,
                detect_quota: false,
                timeout: None,
                watch: None,
            },
            |http| Ok(http.post(&url).form(&[("REFRESH_TOKEN", refresh.expose())])),
        ))
        .await
        .map_err(|e| match e.into_kind() {
            ErrorKind::Api {
                endpoint,
                status,
                body,
                ..
            } if (400..500).contains(&status) && status != 429 => Error::new(ErrorKind::Auth {
                endpoint,
                status,
                body,
            }),
            other => Error::new(other),
        })?;
        // Never echo this body: it holds tokens.
        let parsed: types::AuthResponse = serde_json::from_slice(&reply.body).map_err(|e| {
            Error::new(ErrorKind::Parse {
                endpoint: EP.into(),
                what: format!("token answer not understood ({e}); body withheld"),
            })
        })?;
        if parsed.result.id_token.is_empty() {
            return Err(Error::new(ErrorKind::Parse {
                endpoint: EP.into(),
                what: "empty IdToken".into(),
            }));
        }
        let renew_at = self
            .inner
            .auth
            .renew_at(Instant::now(), parsed.result.expires_in);
        tracing::debug!(
            expires_in = parsed.result.expires_in,
            "botlhale: minted an IdToken"
        );
        let token = Secret::new(parsed.result.id_token);
        if let Ok(mut last) = self.inner.auth.last_minted.lock() {
            *last = Some(token.clone());
        }
        Ok(auth::Cached {
            token,
            renew_at: Some(renew_at),
        })
    }

    /// Replaces every known secret in `s` with `***`.
    fn redact(&self, mut s: String) -> String {
        let mut secrets: Vec<String> = Vec::new();
        match &self.inner.auth.credentials {
            Credentials::IdToken(t) | Credentials::RefreshToken(t) => {
                secrets.push(t.expose().to_string())
            }
        }
        if let Ok(last) = self.inner.auth.last_minted.lock() {
            if let Some(t) = &*last {
                secrets.push(t.expose().to_string());
            }
        }
        if let Ok(f) = self.inner.form_secrets.lock() {
            secrets.extend(f.iter().cloned());
        }
        for sec in secrets {
            if sec.len() >= 4 {
                s = s.replace(&sec, "***");
            }
        }
        s
    }

    /// Remembers the credential values of an upload form (see
    /// [`upload::is_secret_field`]) so that [`Client::redact`] removes them from error texts.
    pub(crate) fn remember_form_secrets(&self, form: &types::PresignedPost) {
        if let Ok(mut f) = self.inner.form_secrets.lock() {
            for (k, v) in &form.fields {
                if upload::is_secret_field(k) && v.len() >= 4 && !f.contains(v) {
                    f.push_back(v.clone());
                    while f.len() > MAX_FORM_SECRETS {
                        f.pop_front();
                    }
                }
            }
        }
    }

    fn error_body(&self, body: &[u8]) -> String {
        let cut = &body[..body.len().min(MAX_ERROR_BODY)];
        let mut s = String::from_utf8_lossy(cut).into_owned();
        if body.len() > MAX_ERROR_BODY {
            s.push('…');
        }
        self.redact(s)
    }

    /// Sends one logical call: a fresh request from `build` per attempt, the bearer token,
    /// the concurrency permit, one token renewal on 401, and retries as [`decide`] says.
    pub(crate) async fn send<F, R>(&self, call: Call<'_>, build: F) -> Result<Reply>
    where
        F: Fn(&reqwest::Client) -> Result<R>,
        R: Into<Attempt>,
    {
        let mut policy = self.inner.retry.clone();
        policy.jitter_seed = fastrand::u64(..);
        let mut attempt: u32 = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let token = if call.auth {
                Some(self.token().await?)
            } else {
                None
            };
            // `build` makes the attempt's fresh watch, if any: read it after.
            let attempt_request = build(&self.inner.http)?.into();
            // An upload's attempt is watched instead of timed as a whole (see `Watch`).
            let watch = call
                .watch
                .as_ref()
                .and_then(|w| w.lock().ok().and_then(|g| g.clone()));
            let rb = match attempt_request {
                Attempt::Reqwest(mut r) => {
                    if let Some(t) = &token {
                        r = r.bearer_auth(t.expose());
                    }
                    if let Some(t) = call.timeout {
                        r = r.timeout(t);
                    }
                    if watch.is_some() {
                        r = r.timeout(Duration::from_secs(7 * 24 * 3600));
                    }
                    Attempt::Reqwest(r)
                }
                own => own,
            };
            let result = {
                let mut slot = self.inner.gate.acquire().await;
                let _shared = match &self.inner.limiter {
                    Some(l) => Some(l.acquire().await?),
                    None => None,
                };
                let r = match &watch {
                    None => exchange(rb).await,
                    Some(w) => tokio::select! {
                        // The stall timer runs from here: waiting for the gate, the
                        // limiter or nothing at all is not a stalled upload.
                        r = async {
                            w.begin();
                            exchange(rb).await
                        } => r,
                        why = w.expired() => Err((Outcome::Timeout, why)),
                    },
                };
                let r = match r {
                    Ok((status, _, body))
                        if watch.is_some() && upload::is_stalled_body(status, &body) =>
                    {
                        Err((
                            Outcome::Dropped,
                            "storage timed out waiting for the body (S3 RequestTimeout)".into(),
                        ))
                    }
                    r => r,
                };
                slot.report(match &r {
                    Ok((429 | 503, _, _)) => adaptive::Signal::Overload,
                    Ok(_) => adaptive::Signal::Success,
                    Err(_) => adaptive::Signal::Nothing,
                });
                r
            };
            match result {
                Ok((status, _, body)) if (200..300).contains(&status) => {
                    tracing::debug!(endpoint = call.endpoint, status, attempt, "botlhale: ok");
                    return Ok(Reply { body });
                }
                Ok((401, _, body)) if call.auth => {
                    if !renewed && self.inner.auth.can_renew() {
                        renewed = true;
                        attempt -= 1; // the renewal retry is allowed on top of the policy
                        tracing::debug!(endpoint = call.endpoint, "botlhale: 401, renewing token");
                        if let Some(t) = &token {
                            self.renew_after_401(t).await?;
                        }
                        continue;
                    }
                    return Err(Error::new(ErrorKind::Auth {
                        endpoint: call.endpoint.into(),
                        status: 401,
                        body: self.error_body(&body),
                    }));
                }
                Ok((status, retry_after, body)) => {
                    let body_text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
                    let quota = call.detect_quota && retry::is_quota_exhausted(status, &body_text);
                    if quota {
                        return Err(Error::new(ErrorKind::QuotaExhausted {
                            endpoint: call.endpoint.into(),
                            status,
                            body: self.error_body(&body),
                        }));
                    }
                    if status == 403 && call.auth {
                        return Err(Error::new(ErrorKind::Auth {
                            endpoint: call.endpoint.into(),
                            status,
                            body: self.error_body(&body),
                        }));
                    }
                    let o = Outcome::Status {
                        status,
                        retry_after,
                        quota_exhausted: false,
                    };
                    match decide(attempt, &o, &policy) {
                        Decision::Retry(d) => {
                            tracing::debug!(
                                endpoint = call.endpoint,
                                status,
                                attempt,
                                ?d,
                                "botlhale: retrying"
                            );
                            tokio::time::sleep(d).await;
                            continue;
                        }
                        Decision::GiveUp => {
                            return Err(Error::new(ErrorKind::Api {
                                endpoint: call.endpoint.into(),
                                status,
                                body: self.error_body(&body),
                                attempts: attempt,
                            }))
                        }
                    }
                }
                Err((o, message)) => match decide(attempt, &o, &policy) {
                    Decision::Retry(d) => {
                        tracing::debug!(
                            endpoint = call.endpoint,
                            attempt,
                            ?o,
                            ?d,
                            "botlhale: retrying"
                        );
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    Decision::GiveUp => {
                        return Err(Error::new(ErrorKind::Transport {
                            endpoint: call.endpoint.into(),
                            attempts: attempt,
                            message: self.redact(message),
                        }))
                    }
                },
            }
        }
    }

    /// Sends an authenticated API call and parses its JSON answer as `T`.
    pub(crate) async fn call_json<T, F>(
        &self,
        endpoint: &str,
        detect_quota: bool,
        build: F,
    ) -> Result<T>
    where
        T: DeserializeOwned,
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    {
        let reply = self
            .send(
                Call {
                    endpoint,
                    auth: true,
                    detect_quota,
                    timeout: None,
                    watch: None,
                },
                build,
            )
            .await?;
        self.parse(endpoint, &reply.body)
    }

    /// Like [`Client::call_json`] for answers that carry credentials (upload forms): an
    /// answer that does not parse is reported without its body.
    pub(crate) async fn call_json_withheld<T, F>(
        &self,
        endpoint: &str,
        detect_quota: bool,
        build: F,
    ) -> Result<T>
    where
        T: DeserializeOwned,
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder>,
    {
        let reply = self
            .send(
                Call {
                    endpoint,
                    auth: true,
                    detect_quota,
                    timeout: None,
                    watch: None,
                },
                build,
            )
            .await?;
        parse_withheld(endpoint, &reply.body)
    }

    pub(crate) fn parse<T: DeserializeOwned>(&self, endpoint: &str, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| {
            let excerpt = self.error_body(&body[..body.len().min(200)]);
            Error::new(ErrorKind::Parse {
                endpoint: endpoint.into(),
                what: format!("{e}; body starts {excerpt:?}"),
            })
        })
    }

    /// A fresh watch for one upload attempt's body.
    pub(crate) fn upload_watch(&self) -> Watch {
        Watch::new(self.inner.upload_stall, self.inner.request_timeout)
    }

    pub(crate) fn data_paths(&self) -> (String, Option<String>) {
        let primary = self.inner.data_path.clone();
        let fallback = self.inner.data_fallback_path.clone();
        if self.inner.data_use_fallback.load(Ordering::Relaxed) {
            if let Some(f) = fallback {
                return (f, None);
            }
        }
        (primary, fallback)
    }

    pub(crate) fn remember_data_fallback(&self) {
        self.inner.data_use_fallback.store(true, Ordering::Relaxed);
    }
}

/// Parses an answer that may hold credentials (an upload form): on failure the error says
/// what serde said about its shape and the body's length, never the body.
pub(crate) fn parse_withheld<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's message can quote a value ("invalid type: string \"...\""): keep only
        // its category and position.
        let kind = match e.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        Error::new(ErrorKind::Parse {
            endpoint: endpoint.into(),
            what: format!(
                "{kind} at line {} column {}; body withheld: may contain credentials ({} bytes)",
                e.line(),
                e.column(),
                body.len()
            ),
        })
    })
}

/// One attempt's request, ready to send.
pub(crate) enum Attempt {
    /// Through the shared `reqwest` client (every API call).
    Reqwest(reqwest::RequestBuilder),
    /// On a connection of its own that reads early answers (presigned uploads).
    Own(h1::Post),
}

impl From<reqwest::RequestBuilder> for Attempt {
    fn from(r: reqwest::RequestBuilder) -> Self {
        Attempt::Reqwest(r)
    }
}

/// One HTTP exchange: status, parsed `Retry-After` and the bounded body, or a classified
/// transport failure with its message (URL stripped).
async fn exchange(rb: Attempt) -> std::result::Result<h1::Answer, h1::Failure> {
    let rb = match rb {
        Attempt::Reqwest(r) => r,
        Attempt::Own(p) => return p.exchange().await,
    };
    let mut resp = rb.send().await.map_err(classify)?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
    let mut body = Vec::new();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            // An error answer counts by its status even when its body breaks off (a
            // server that answers and closes at once).
            Err(_) if !(200..300).contains(&status) => break,
            Err(e) => return Err(classify(e)),
        };
        if body.len() + chunk.len() > MAX_BODY {
            return Err((
                Outcome::Other,
                format!("response body larger than {MAX_BODY} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, retry_after, Bytes::from(body)))
}

fn classify(e: reqwest::Error) -> (Outcome, String) {
    let outcome = if e.is_timeout() {
        Outcome::Timeout
    } else if e.is_connect() {
        Outcome::Connect
    } else if e.is_request() || e.is_body() || e.is_decode() {
        Outcome::Dropped
    } else {
        Outcome::Other
    };
    let e = e.without_url();
    let mut message = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    (outcome, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates_and_debug_hides_tokens() {
        assert!(Client::builder().build().is_err());
        let c = Client::builder()
            .credentials(Credentials::IdToken(Secret::new("TOPSECRET")))
            .base_url("http://127.0.0.1:1/prefix/")
            .build()
            .unwrap();
        assert_eq!(c.url("/asr"), "http://127.0.0.1:1/prefix/asr");
        let dbg = format!(
            "{c:?} {:?}",
            Client::builder().credentials(Credentials::IdToken("TOPSECRET".into()))
        );
        assert!(!dbg.contains("TOPSECRET"), "{dbg}");
        assert!(Client::builder()
            .credentials(Credentials::IdToken("t".into()))
            .base_url("ftp://x")
            .build()
            .is_err());
        assert!(Client::builder()
            .credentials(Credentials::IdToken("t".into()))
            .concurrency(0)
            .build()
            .is_err());
    }

    #[test]
    fn redaction_removes_known_tokens() {
        let c = Client::builder()
            .credentials(Credentials::RefreshToken(Secret::new("REFRESH-abc")))
            .build()
            .unwrap();
        assert_eq!(
            c.error_body(b"bad token REFRESH-abc given"),
            "bad token *** given"
        );
        let long = vec![b'x'; MAX_ERROR_BODY + 10];
        assert_eq!(c.error_body(&long).chars().count(), MAX_ERROR_BODY + 1);
    }
}
