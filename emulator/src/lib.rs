//! A faithful local emulator of the Botlhale AI speech API, the test server of `asr-pipeline`.
//!
//! Like stripe-mock or localstack, it serves the vendor's contract (`api-contract.md`) on
//! `127.0.0.1` so that the client, the pipeline and users' own code can be tested without an
//! account or a network:
//!
//! | route | what it does |
//! |---|---|
//! | `POST /generateAuthToken` | form `REFRESH_TOKEN` → `{"AuthenticationResult": {..}}`; IdTokens expire after [`EmulatorConfig::token_lifetime`] |
//! | `POST /asr` | multipart `SpeechFile`, `SampleRate`, `LanguageCode?`; ≤ 60.0 s, rate 8000..=48000 and equal to the file's |
//! | `POST /asr/async/upload` | `OrgID`, `SampleRate`, `LanguageCode?`, `Diarization?` → a presigned POST form with a real SigV4 policy |
//! | `POST /s3/{bucket}` | the S3 browser-POST receiver that verifies that form like S3 does (XML errors) |
//! | `GET /asr/async/status` | `{"data": [{"OrgID", "id" (> 2^53), "process", "processTime", "status"}]}` |
//! | `GET /asr/async/data`, `/asr/async/getdata` | timestamps in ms with float noise, true to the uploaded audio ([`DataRoutes`]) |
//! | `POST /asr/async/upload/vela` | `org_id`, `metadata?` → presigned POST; per-org minute allocation |
//! | `POST /vela/chats` ([`EmulatorConfig::chats_path`]) | `org_id`, `chats` (JSON array), `metadata?` |
//! | `POST /startConversation`, `/message` | the chatbot |
//! | `POST /translate`, `/tts` | translation (to English) and speech synthesis; `GET /tts/audio/{id}` serves the audio |
//!
//! Every route but the token, S3 and TTS-audio routes needs `Authorization: Bearer <IdToken>`;
//! a missing, unknown or expired token gets `401` with an empty body.
//!
//! # How honest it is
//! It performs **no speech recognition**. `/asr` answers
//! `"[emulator] 12.345 s, crc32 0a1b2c3d"`: the decoded duration and a CRC-32 (IEEE) of the
//! decoded audio (its mono mixdown as 16-bit little-endian PCM). The async data
//! has one entry per non-silent region found by an energy detector (10 ms frames, −40 dBFS,
//! gaps under 300 ms merged, edges refined to the sample), so its `start`/`end` are the true
//! times of sound in the uploaded file; the speaker is told by the region's zero-crossing
//! frequency (below or above 400 Hz: two voices), and voices are numbered per job in the order
//! they are first heard, as a diarizing service does: `speaker_0` is whichever speaks first in
//! the uploaded file (only with `Diarization=True`; without it every region is `speaker_0`).
//! So one voice can carry different labels in two jobs, as in two parts of a long file. The
//! language is the requested
//! `LanguageCode` or [`EmulatorConfig::default_language`] (nothing is detected); the text is
//! `"[emulator] region k, 1.234 s"`. AMR is accepted but not decoded: its duration comes from
//! the frame count, the checksum is over its bytes, and it is one region.
//!
//! # Undocumented behaviour, as chosen here
//! - Error entity (400 and other JSON errors): `{"error": {"code": "AudioTooLong", "description": ".."}}`.
//! - A wrong refresh token: `400` `{"error": {"code": "NotAuthorizedException", ..}}`.
//! - An exhausted Vela minute allocation: `403` `{"message": "minute allocation exhausted", "minute_allocation": .., "minutes_used": ..}`.
//! - Data for a job still running: `{"status": "running", "filename": ..}` without timestamps;
//!   for an unknown file `{"status": "unknown", "timestamps": []}`; for an upload that could not
//!   be decoded, status `failed` in both status and data.
//! - Chats upload: `{"message": "chats received", "org_id", "count"}`.
//! - An async upload longer than 400 minutes ([`EmulatorConfig::async_max_seconds`]) is
//!   accepted by the storage and then reported `failed`.
//!
//! # Faults
//! [`FaultConfig`]: a seeded fraction of attempts answers 429 (with `Retry-After`), 500, 503,
//! is dropped without a response, or is delayed. The draw depends only on the seed, the
//! logical request and how often it was seen, so it is reproducible under concurrency. A fault
//! replaces the whole response and has no side effect (no job, no token, no stored upload).
//! Every request is recorded ([`RunningEmulator::requests`]) with a key identifying the
//! logical request, so tests can count retries.
//!
//! # Capacity, latency, bandwidth
//! To test a client's concurrency control and slow uplinks:
//! [`EmulatorConfig::asr_capacity`] serves at most that many `POST /asr` at once and answers
//! 429 beyond it, [`EmulatorConfig::asr_latency`] holds each accepted request that long,
//! [`EmulatorConfig::asr_workers`] processes at most that many at once and queues the rest (a
//! service that slows down instead of refusing), and [`RunningEmulator::asr_stats`] reports
//! requests accepted and refused and the peak and time-weighted mean in flight. [`EmulatorConfig::upload_bytes_per_sec`] reads storage
//! uploads no faster than that.
//!
//! # Memory
//! Uploads to the S3 route are streamed to a file in the upload directory, never held in
//! memory, whatever their size. Bodies of the other routes (at most 128 MB) are buffered, as
//! `/asr` needs the whole clip; decoding and analysis stream in blocks of a few thousand
//! samples.
//!
//! # Running it as a process
//! ```text
//! cargo run -p botlhale-emulator -- --port 8080 --seed 7 --fault-rate 0.3
//! ```
//! prints the base URL and a refresh token, then serves until killed.
//!
//! # Example
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use botlhale_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig::default()).await?;
//! println!("{} {}", emu.base_url(), emu.refresh_token());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Handler helpers return the HTTP response to send as their error value.
#![allow(clippy::result_large_err)]

mod asr;
mod capacity;
pub mod faults;
mod s3;
pub mod sigv4;
mod state;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub use capacity::AsrStats;
pub use faults::{FaultConfig, FaultKind};
use sha2::{Digest, Sha256};
use state::{dmy_hms, FormInfo, Shared};

/// Which of the two documented data paths exist (the vendor's page names both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataRoutes {
    /// Only `/asr/async/data` (the page's heading).
    Data,
    /// Only `/asr/async/getdata` (the page's example URL); `/data` answers 404.
    GetData,
    /// Both.
    Both,
}

/// The units of `start` / `end` in the async data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimestampUnits {
    /// Milliseconds, as the vendor's example reads.
    Milliseconds,
    /// Seconds.
    Seconds,
}

/// Which field layout the presigned upload form of `/asr/async/upload` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureStyle {
    /// `x-amz-algorithm`, `x-amz-credential`, `x-amz-date`, `x-amz-signature` (the Vela page).
    V4,
    /// `AWSAccessKeyId`, `signature` (the ASR page); see [`sigv4::sign_policy_v2`].
    V2,
}

/// The word a finished job's status uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DoneWord {
    /// `complete` or `completed`, chosen per job from the seed.
    BySeed,
    /// Always `complete`.
    Complete,
    /// Always `completed`.
    Completed,
}

/// The emulator's settings. Every default is documented on its field.
#[derive(Clone)]
#[non_exhaustive]
pub struct EmulatorConfig {
    /// TCP port on 127.0.0.1. Default 0 (an ephemeral port).
    pub port: u16,
    /// Seed of every random choice (tokens, keys, ids, faults, status words). Default 0.
    pub seed: u64,
    /// The refresh token accepted by `/generateAuthToken`. Default `None`: derived from the seed.
    pub refresh_token: Option<String>,
    /// The organisation id. Default `"emulator-org"`.
    pub org_id: String,
    /// IdToken lifetime in emulated time (`ExpiresIn` reports it). Default 3600 s.
    pub token_lifetime: Duration,
    /// Presigned form lifetime in emulated time. Default 3600 s.
    pub form_lifetime: Duration,
    /// Emulated seconds per real second for lifetimes and processing delays: at 3600.0 a
    /// 3600 s token expires after one real second. Default 1.0.
    pub time_scale: f64,
    /// Fault injection. Default: none.
    pub faults: FaultConfig,
    /// Extra latency added to every response. Default 0.
    pub latency: Duration,
    /// Most `POST /asr` requests served at once; beyond it the service answers 429 (without
    /// `Retry-After`, as a busy service may). Default `None` (no limit).
    /// [`RunningEmulator::asr_stats`] counts what was in flight.
    pub asr_capacity: Option<usize>,
    /// How long each accepted `POST /asr` request is held before its answer (the service's
    /// processing time; it counts against [`EmulatorConfig::asr_capacity`]). Default 0.
    pub asr_latency: Duration,
    /// Most `POST /asr` requests processed at once; the others wait for a free worker before
    /// their [`EmulatorConfig::asr_latency`] (they count as in flight): a service that queues,
    /// so that its answers slow down under load. Default `None` (no queue).
    pub asr_workers: Option<usize>,
    /// Upload bandwidth of the storage route (`POST /s3/...`), bytes per second: the body
    /// is read no faster (a slow uplink). Default `None` (as fast as it comes).
    pub upload_bytes_per_sec: Option<u64>,
    /// Fixed processing time of an async job (emulated). Default 2 s.
    pub async_base_delay: Duration,
    /// Async processing speed in audio seconds per emulated second. Default 60.0.
    pub async_speed: f64,
    /// Longest audio an async job takes, seconds; a longer upload ends as a `failed` job.
    /// Default 24 000 (400 minutes, the vendor's limit).
    pub async_max_seconds: f64,
    /// Which data paths exist. Default [`DataRoutes::Both`].
    pub data_routes: DataRoutes,
    /// Units of async timestamps. Default milliseconds.
    pub timestamp_units: TimestampUnits,
    /// Send `start`, `end` and the `time` numbers as JSON strings. Default false.
    pub numbers_as_strings: bool,
    /// Field layout of the `/asr/async/upload` form. Default [`SignatureStyle::V4`]. Vela forms
    /// are always V4.
    pub signature_style: SignatureStyle,
    /// Adds a `success_action_status` field (and its policy condition) to upload forms, so
    /// that S3 answers 200 or 201 (with a `PostResponse` XML body) instead of 204.
    /// Default `None` (204).
    pub success_action_status: Option<u16>,
    /// Upper bound of the policy's `content-length-range`. Default 5 GiB.
    pub max_upload_bytes: u64,
    /// Vela minute allocation per organisation, in minutes of uploaded audio. Default 60.0.
    pub vela_minute_allocation: f64,
    /// Path of the chats upload (not given by the vendor). Default `"/vela/chats"`.
    pub chats_path: String,
    /// Finished-status word. Default [`DoneWord::BySeed`].
    pub done_word: DoneWord,
    /// Language reported when none was requested. Default `"en-ZA"`.
    pub default_language: String,
    /// Silence threshold of the region detector, dBFS (RMS of 10 ms frames). Default −40.
    pub silence_threshold_dbfs: f32,
    /// Where uploads are stored. Default `None`: a fresh directory under the system temp
    /// directory, removed at shutdown.
    pub upload_dir: Option<PathBuf>,
}

impl std::fmt::Debug for EmulatorConfig {
    /// The refresh token is redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("port", &self.port)
            .field("seed", &self.seed)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("org_id", &self.org_id)
            .field("token_lifetime", &self.token_lifetime)
            .field("form_lifetime", &self.form_lifetime)
            .field("time_scale", &self.time_scale)
            .field("faults", &self.faults)
            .field("latency", &self.latency)
            .field("asr_capacity", &self.asr_capacity)
            .field("asr_workers", &self.asr_workers)
            .field("asr_latency", &self.asr_latency)
            .field("upload_bytes_per_sec", &self.upload_bytes_per_sec)
            .field("async_base_delay", &self.async_base_delay)
            .field("async_speed", &self.async_speed)
            .field("async_max_seconds", &self.async_max_seconds)
            .field("data_routes", &self.data_routes)
            .field("timestamp_units", &self.timestamp_units)
            .field("numbers_as_strings", &self.numbers_as_strings)
            .field("signature_style", &self.signature_style)
            .field("success_action_status", &self.success_action_status)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("vela_minute_allocation", &self.vela_minute_allocation)
            .field("chats_path", &self.chats_path)
            .field("done_word", &self.done_word)
            .field("default_language", &self.default_language)
            .field("silence_threshold_dbfs", &self.silence_threshold_dbfs)
            .field("upload_dir", &self.upload_dir)
            .finish()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            port: 0,
            seed: 0,
            refresh_token: None,
            org_id: "emulator-org".into(),
            token_lifetime: Duration::from_secs(3600),
            form_lifetime: Duration::from_secs(3600),
            time_scale: 1.0,
            faults: FaultConfig::default(),
            latency: Duration::ZERO,
            asr_capacity: None,
            asr_workers: None,
            asr_latency: Duration::ZERO,
            upload_bytes_per_sec: None,
            async_base_delay: Duration::from_secs(2),
            async_speed: 60.0,
            async_max_seconds: 24_000.0,
            data_routes: DataRoutes::Both,
            timestamp_units: TimestampUnits::Milliseconds,
            numbers_as_strings: false,
            signature_style: SignatureStyle::V4,
            success_action_status: None,
            max_upload_bytes: 5 << 30,
            vela_minute_allocation: 60.0,
            chats_path: "/vela/chats".into(),
            done_word: DoneWord::BySeed,
            default_language: "en-ZA".into(),
            silence_threshold_dbfs: -40.0,
            upload_dir: None,
        }
    }
}

impl EmulatorConfig {
    /// The defaults, except that async jobs finish almost at once (100 ms base delay, 10^6
    /// audio seconds per second): for tests that poll.
    pub fn fast() -> Self {
        EmulatorConfig {
            async_base_delay: Duration::from_millis(100),
            async_speed: 1e6,
            ..EmulatorConfig::default()
        }
    }
}

/// One request the emulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Status answered; 0 when the connection was dropped without a response.
    pub status: u16,
    /// Identifies the logical request: equal for two attempts with the same method, path,
    /// query and body (multipart boundary ignored; the token is not part of it). For S3
    /// uploads: the object key and the file's SHA-256. Repeated polls of one job share a key
    /// too, so count retries per path.
    pub attempt_key: Option<String>,
    /// The fault injected into this attempt, if any.
    pub fault: Option<FaultKind>,
}

/// Starts emulators.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Binds `127.0.0.1:port` and serves in a background task.
    /// Errors: the port cannot be bound, or the upload directory cannot be created (the
    /// error names it).
    pub async fn start(cfg: EmulatorConfig) -> io::Result<RunningEmulator> {
        let listener = TcpListener::bind(("127.0.0.1", cfg.port)).await?;
        let addr = listener.local_addr()?;
        let (dir, owns_dir) = match &cfg.upload_dir {
            Some(d) => (d.clone(), false),
            None => {
                let nanos = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                (
                    std::env::temp_dir().join(format!(
                        "asr-emulator-{}-{}-{nanos}",
                        std::process::id(),
                        addr.port()
                    )),
                    true,
                )
            }
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let shared = Shared::new(cfg, format!("http://{addr}"), dir);
        let app = router(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                KillListener(listener),
                app.into_make_service_with_connect_info::<ConnHandle>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        });
        Ok(RunningEmulator {
            shared,
            stop: Some(tx),
            task: Some(task),
            owns_dir,
        })
    }
}

/// A running emulator; dropping it stops the server (use [`RunningEmulator::shutdown`] to wait).
pub struct RunningEmulator {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    owns_dir: bool,
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

impl RunningEmulator {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The refresh token `/generateAuthToken` accepts.
    pub fn refresh_token(&self) -> &str {
        &self.shared.refresh_token
    }

    /// The organisation id the async routes accept.
    pub fn org_id(&self) -> &str {
        &self.shared.cfg.org_id
    }

    /// Where accepted uploads are stored (removed at shutdown or drop when the emulator
    /// created it).
    pub fn upload_dir(&self) -> &std::path::Path {
        &self.shared.upload_dir
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.cfg
    }

    /// Every request received so far, in order of completion.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Forgets the request log (not the fault counters).
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// What the `POST /asr` route saw since the start (or [`RunningEmulator::reset_asr_stats`]):
    /// requests accepted and refused at capacity, peak and mean in flight.
    pub fn asr_stats(&self) -> AsrStats {
        self.shared.capacity.stats()
    }

    /// Starts the `/asr` statistics afresh.
    pub fn reset_asr_stats(&self) {
        self.shared.capacity.reset();
    }

    /// Mints an IdToken directly, as `/generateAuthToken` would (not logged as a request).
    pub fn mint_id_token(&self) -> String {
        self.shared.mint_id_token()
    }

    /// Expires every IdToken issued so far (the next use gets 401).
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for exp in self.shared.lock().tokens.values_mut() {
            *exp = now;
        }
    }

    /// Sets the minutes of audio an organisation has used against its Vela allocation.
    pub fn set_vela_minutes_used(&self, org_id: &str, minutes: f64) {
        self.shared
            .lock()
            .vela_used_secs
            .insert(org_id.to_string(), minutes * 60.0);
    }

    /// The stored upload for an object key, if one was accepted.
    pub fn uploaded_file(&self, key: &str) -> Option<PathBuf> {
        let p = self.shared.upload_dir.join(s3::safe_name(key));
        p.is_file().then_some(p)
    }

    /// Stops accepting connections, waits (at most 5 s) for the server task, removes the
    /// upload directory it created.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.shared.upload_dir);
            self.owns_dir = false;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.cleanup();
    }
}

// ---------------------------------------------------------------------------------------
// Connections that a handler can drop without answering.

struct KillListener(TcpListener);

struct KillIo {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

/// Per-connection handle (connect info) through which a fault drops the connection.
#[derive(Clone, Debug)]
struct ConnHandle(Arc<AtomicBool>);

impl ConnHandle {
    fn kill(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl axum::serve::Listener for KillListener {
    type Io = KillIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, a)) => {
                    let _ = s.set_nodelay(true);
                    return (
                        KillIo {
                            inner: s,
                            kill: Arc::new(AtomicBool::new(false)),
                        },
                        a,
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, KillListener>>
    for ConnHandle
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, KillListener>) -> Self {
        ConnHandle(stream.io().kill.clone())
    }
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "emulator: dropped connection",
    )
}

impl AsyncRead for KillIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------
// Router, request log, faults, auth.

/// Response extension: the logical request key computed by a handler (S3 route).
#[derive(Clone)]
pub(crate) struct AttemptKey(pub String);

/// Response extension: drop the connection instead of answering.
#[derive(Clone)]
pub(crate) struct DropConn;

/// Response extension: the fault a handler injected.
#[derive(Clone)]
pub(crate) struct Injected(pub FaultKind);

const MAX_API_BODY: usize = 128 << 20;

fn router(sh: Arc<Shared>) -> Router {
    let mut protected = Router::new()
        .route("/asr", post(asr_sync))
        .route("/asr/async/upload", post(async_upload))
        .route("/asr/async/upload/vela", post(vela_upload))
        .route("/asr/async/status", get(async_status))
        .route("/startConversation", post(start_conversation))
        .route("/message", post(message))
        .route("/translate", post(translate))
        .route("/tts", post(tts))
        .route(&sh.cfg.chats_path, post(chats));
    if matches!(sh.cfg.data_routes, DataRoutes::Data | DataRoutes::Both) {
        protected = protected.route("/asr/async/data", get(async_data));
    }
    if matches!(sh.cfg.data_routes, DataRoutes::GetData | DataRoutes::Both) {
        protected = protected.route("/asr/async/getdata", get(async_data));
    }
    let protected = protected
        .route_layer(middleware::from_fn_with_state(sh.clone(), auth))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_API_BODY));
    Router::new()
        .route(
            "/generateAuthToken",
            post(generate_token).layer(axum::extract::DefaultBodyLimit::max(MAX_API_BODY)),
        )
        // Uploads are streamed to disk, unbounded here: the policy's content-length-range
        // is the limit, as on S3.
        .route(
            "/s3/{bucket}",
            post(s3::post_object).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/s3/{bucket}/",
            post(s3::post_object).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/tts/audio/{id}", get(tts_audio))
        .merge(protected)
        .layer(middleware::from_fn_with_state(sh.clone(), front))
        .with_state(sh)
}

/// Logs every request, computes its logical key, injects faults.
async fn front(
    State(sh): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    if !sh.cfg.latency.is_zero() {
        tokio::time::sleep(sh.cfg.latency).await;
    }
    if path.starts_with("/s3/") {
        // The S3 handler streams its body; it computes the key and draws faults itself.
        let resp = next.run(req).await;
        let key = resp.extensions().get::<AttemptKey>().map(|k| k.0.clone());
        let fault = resp.extensions().get::<Injected>().map(|k| k.0);
        let dropped = resp.extensions().get::<DropConn>().is_some();
        if dropped {
            conn.kill();
        }
        sh.record(RequestRecord {
            method,
            path,
            status: if dropped { 0 } else { resp.status().as_u16() },
            attempt_key: key,
            fault,
        });
        return resp;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_API_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let resp = api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                "request body too large or unreadable",
            );
            sh.record(RequestRecord {
                method,
                path,
                status: resp.status().as_u16(),
                attempt_key: None,
                fault: None,
            });
            return resp;
        }
    };
    let key = request_key(&parts, &bytes);
    let fault = sh.decide_fault(&path, &key);
    if let Some(kind) = fault {
        if kind.fails() {
            let resp = fault_response(kind, sh.cfg.faults.retry_after_secs);
            let dropped = kind == FaultKind::DropConnection;
            if dropped {
                conn.kill();
            }
            sh.record(RequestRecord {
                method,
                path,
                status: if dropped { 0 } else { resp.status().as_u16() },
                attempt_key: Some(key),
                fault: Some(kind),
            });
            return resp;
        }
        tokio::time::sleep(sh.cfg.faults.latency).await;
    }
    // The service's capacity and processing time (sync transcription only).
    let slot = if path == "/asr" && method == "POST" {
        match sh.capacity.try_enter(sh.cfg.asr_capacity) {
            Some(slot) => Some(slot),
            None => {
                let resp = api_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "the service is at capacity; try again later",
                );
                sh.record(RequestRecord {
                    method,
                    path,
                    status: resp.status().as_u16(),
                    attempt_key: Some(key),
                    fault: None,
                });
                return resp;
            }
        }
    } else {
        None
    };
    let worker = match (&slot, &sh.workers) {
        (Some(_), Some(w)) => w.clone().acquire_owned().await.ok(),
        _ => None,
    };
    if slot.is_some() && !sh.cfg.asr_latency.is_zero() {
        tokio::time::sleep(sh.cfg.asr_latency).await;
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    drop(worker);
    drop(slot);
    sh.record(RequestRecord {
        method,
        path,
        status: resp.status().as_u16(),
        attempt_key: Some(key),
        fault,
    });
    resp
}

fn boundary_of(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    ct.split(';').find_map(|p| {
        let p = p.trim();
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Feeds `hay` to the hasher with every occurrence of `needle` left out (no copy).
fn hash_without(h: &mut Sha256, hay: &[u8], needle: &[u8]) {
    if needle.is_empty() {
        h.update(hay);
        return;
    }
    let mut from = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if hay[i] == needle[0] && hay[i..].starts_with(needle) {
            h.update(&hay[from..i]);
            i += needle.len();
            from = i;
        } else {
            i += 1;
        }
    }
    h.update(&hay[from..]);
}

fn request_key(parts: &axum::http::request::Parts, body: &[u8]) -> String {
    let mut q: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    q.sort();
    let q = serde_json::to_string(&q).unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        parts.method.as_str().as_bytes(),
        parts.uri.path().as_bytes(),
        q.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let boundary = boundary_of(&parts.headers).unwrap_or_default();
    hash_without(&mut h, body, boundary.as_bytes());
    hex::encode(&h.finalize()[..16])
}

pub(crate) fn fault_response(kind: FaultKind, retry_after: u32) -> Response {
    match kind {
        FaultKind::TooManyRequests => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"message": "Too Many Requests"})),
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            r
        }
        FaultKind::InternalError => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "[emulator] injected fault",
        ),
        FaultKind::Unavailable | FaultKind::Latency => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "[emulator] injected fault",
        ),
        FaultKind::DropConnection => {
            let mut r = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            r.extensions_mut().insert(DropConn);
            r
        }
    }
}

async fn auth(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, tok) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| tok.trim().to_string())
        })
        .is_some_and(|t| sh.token_valid(&t));
    if !ok {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    next.run(req).await
}

/// The JSON error entity: `{"error": {"code", "description"}}`.
pub(crate) fn api_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "description": description}})),
    )
        .into_response()
}

fn bad(code: &str, description: &str) -> Response {
    api_error(StatusCode::BAD_REQUEST, code, description)
}

// ---------------------------------------------------------------------------------------
// Forms.

enum FormValue {
    Text(String),
    File(Bytes),
}

struct Form(Vec<(String, FormValue)>);

impl Form {
    fn text(&self, name: &str) -> Option<&str> {
        self.0.iter().find_map(|(n, v)| match v {
            FormValue::Text(t) if n == name => Some(t.as_str()),
            _ => None,
        })
    }
    fn bytes(&self, name: &str) -> Option<Bytes> {
        self.0.iter().find_map(|(n, v)| match v {
            FormValue::File(b) if n == name => Some(b.clone()),
            FormValue::Text(t) if n == name => Some(Bytes::copy_from_slice(t.as_bytes())),
            _ => None,
        })
    }
    fn required(&self, name: &str) -> Result<&str, Response> {
        match self.text(name).map(str::trim) {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(bad(
                "MissingParameter",
                &format!("the required parameter '{name}' is missing"),
            )),
        }
    }
}

/// Reads a multipart or urlencoded form (query parameters are appended after the body's).
async fn read_form(req: Request) -> Result<Form, Response> {
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut out = Vec::new();
    if ct.starts_with("multipart/form-data") {
        let mut mp = axum::extract::Multipart::from_request(req, &())
            .await
            .map_err(|e| bad("MalformedRequest", &format!("invalid multipart body: {e}")))?;
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    return Err(bad(
                        "MalformedRequest",
                        &format!("invalid multipart body: {e}"),
                    ))
                }
            };
            let name = field.name().unwrap_or("").to_string();
            let is_file = field.file_name().is_some();
            let data = field
                .bytes()
                .await
                .map_err(|e| bad("MalformedRequest", &format!("invalid multipart body: {e}")))?;
            let v = if is_file {
                FormValue::File(data)
            } else {
                FormValue::Text(String::from_utf8_lossy(&data).into_owned())
            };
            out.push((name, v));
        }
    } else {
        let body = axum::body::to_bytes(req.into_body(), MAX_API_BODY)
            .await
            .map_err(|e| bad("MalformedRequest", &format!("unreadable body: {e}")))?;
        out.extend(
            url::form_urlencoded::parse(&body)
                .into_owned()
                .map(|(k, v)| (k, FormValue::Text(v))),
        );
    }
    out.extend(query.into_iter().map(|(k, v)| (k, FormValue::Text(v))));
    Ok(Form(out))
}

fn parse_rate(s: &str) -> Option<u32> {
    let s = s.trim().replace([' ', '_'], "");
    s.parse::<u32>().ok().or_else(|| {
        let f = s.parse::<f64>().ok()?;
        (f.fract() == 0.0 && f > 0.0 && f < 1e9).then_some(f as u32)
    })
}

fn check_rate(s: &str) -> Result<u32, Response> {
    match parse_rate(s) {
        Some(r) if (8_000..=48_000).contains(&r) => Ok(r),
        _ => Err(bad(
            "InvalidSampleRate",
            &format!("SampleRate '{s}' is not supported: use 8000 to 48000 Hz"),
        )),
    }
}

fn parse_bool(s: Option<&str>) -> Result<bool, Response> {
    match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(bad(
            "InvalidParameter",
            &format!("Diarization must be True or False, not '{other}'"),
        )),
    }
}

/// (tag, name) of the vendor's languages.
const LANGUAGES: &[(&str, &str)] = &[
    ("en-ZA", "English"),
    ("zu-ZA", "IsiZulu"),
    ("xh-ZA", "IsiXhosa"),
    ("st-ZA", "Sesotho"),
    ("tn-ZA", "Setswana"),
    ("nso-ZA", "Sepedi"),
    ("vr-ZA", "Tshivenda"),
    ("ts-ZA", "Xitsonga"),
    ("af-ZA", "Afrikaans"),
    ("sw-KE", "Kiswahili"),
    ("ka-KE", "Kamba"),
    ("ki-KE", "Kikuyu"),
    ("rw-RW", "Kinyarwanda"),
    ("sh-ZM", "Shona"),
    ("ee-GH", "Ewe"),
];

/// Accepts a tag or a name; returns (tag, name).
fn language(s: &str) -> Option<(&'static str, &'static str)> {
    let s = s.trim();
    LANGUAGES
        .iter()
        .find(|(t, n)| t.eq_ignore_ascii_case(s) || n.eq_ignore_ascii_case(s))
        .copied()
}

fn check_language(s: Option<&str>) -> Result<Option<&'static str>, Response> {
    match s.map(str::trim) {
        None | Some("") => Ok(None),
        Some(l) => language(l).map(|(t, _)| Some(t)).ok_or_else(|| {
            bad(
                "UnsupportedLanguage",
                &format!("LanguageCode '{l}' is not supported"),
            )
        }),
    }
}

fn now_dmy() -> String {
    dmy_hms(SystemTime::now())
}

// ---------------------------------------------------------------------------------------
// Handlers.

async fn generate_token(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let rt = match form.required("REFRESH_TOKEN") {
        Ok(t) => t,
        Err(r) => return r,
    };
    if rt != sh.refresh_token {
        return bad("NotAuthorizedException", "Invalid Refresh Token");
    }
    let id = sh.mint_id_token();
    let access = format!("emu-access-{}", sh.random(40));
    axum::Json(json!({"AuthenticationResult": {
        "AccessToken": access,
        "ExpiresIn": sh.cfg.token_lifetime.as_secs(),
        "IdToken": id,
        "RefreshToken": sh.refresh_token,
        "TokenType": "Bearer",
    }}))
    .into_response()
}

async fn analyze_in_background(bytes: Bytes, thr: f32) -> Result<asr::AudioSummary, Response> {
    match tokio::task::spawn_blocking(move || asr::analyze_bytes(&bytes, thr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(asr::AudioError::Unsupported(m))) => Err(bad("UnsupportedFileType", &m)),
        Ok(Err(asr::AudioError::Malformed(m))) => Err(bad("InvalidAudio", &m)),
        Err(_) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "analysis failed",
        )),
    }
}

fn threshold(sh: &Shared) -> f32 {
    10f32.powf(sh.cfg.silence_threshold_dbfs / 20.0)
}

fn honest_text(s: &asr::AudioSummary) -> String {
    format!("[emulator] {:.3} s, crc32 {:08x}", s.seconds(), s.crc32)
}

async fn asr_sync(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(audio) = form.bytes("SpeechFile") else {
        return bad(
            "MissingParameter",
            "the required parameter 'SpeechFile' is missing",
        );
    };
    let rate = match form.required("SampleRate").and_then(check_rate) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let lang = match check_language(form.text("LanguageCode")) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let summary = match analyze_in_background(audio, threshold(&sh)).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if summary.sample_rate != rate {
        return bad(
            "SampleRateMismatch",
            &format!(
                "SampleRate {rate} does not match the audio's sample rate {}",
                summary.sample_rate
            ),
        );
    }
    if summary.seconds() > 60.0 {
        return bad(
            "AudioTooLong",
            &format!(
                "the audio is {:.3} s long; synchronous requests take at most 60 s (use the async API)",
                summary.seconds()
            ),
        );
    }
    let lang = lang.unwrap_or_else(|| {
        language(&sh.cfg.default_language)
            .map(|l| l.0)
            .unwrap_or("en-ZA")
    });
    axum::Json(json!({
        "DateReceived": now_dmy(),
        "LanguageCode": lang,
        "NewSampleRate": rate.to_string(),
        "SpeechFile": format!(
            "asr_{}_{lang}__{}.{}",
            sh.random(12),
            sh.random(12),
            summary.kind.extension()
        ),
        "Transcription": honest_text(&summary),
    }))
    .into_response()
}

fn issue_form(sh: &Shared, key: &str, style: SignatureStyle) -> Value {
    let expires = SystemTime::now() + sh.scaled(sh.cfg.form_lifetime);
    let range = Some(1..=sh.cfg.max_upload_bytes);
    let extra: Vec<sigv4::Condition> = sh
        .cfg
        .success_action_status
        .map(|st| sigv4::Condition::Eq("success_action_status".into(), st.to_string()))
        .into_iter()
        .collect();
    let post = match style {
        SignatureStyle::V4 => sigv4::presign_post_at(
            &sh.s3_creds,
            state::REGION,
            "s3",
            state::BUCKET,
            key,
            SystemTime::now(),
            expires,
            range,
            &extra,
        ),
        SignatureStyle::V2 => {
            sigv4::presign_post_v2(&sh.s3_creds, state::BUCKET, key, expires, range, &extra)
        }
    };
    let fields: serde_json::Map<String, Value> = post
        .fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({"fields": fields, "url": format!("{}/s3/{}", sh.base_url, state::BUCKET)})
}

async fn async_upload(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let org = match form.required("OrgID") {
        Ok(o) => o,
        Err(r) => return r,
    };
    if org != sh.cfg.org_id {
        return api_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "OrgID does not belong to this account",
        );
    }
    let rate = match form.required("SampleRate").and_then(check_rate) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let lang = match check_language(form.text("LanguageCode")) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let diar = match parse_bool(form.text("Diarization")) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let key = format!(
        "asr_{}__{rate}_{}_{}.wav",
        sh.random(12),
        u8::from(diar),
        sh.random(12)
    );
    sh.lock().forms.insert(
        key.clone(),
        FormInfo {
            org_id: org.to_string(),
            language: lang.map(str::to_string),
            diarization: diar,
            vela: false,
        },
    );
    axum::Json(issue_form(&sh, &key, sh.cfg.signature_style)).into_response()
}

async fn vela_upload(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let org = match form.required("org_id") {
        Ok(o) => o.to_string(),
        Err(r) => return r,
    };
    if let Some(m) = form.text("metadata").filter(|m| !m.trim().is_empty()) {
        if !serde_json::from_str::<Value>(m).is_ok_and(|v| v.is_object()) {
            return bad("InvalidParameter", "metadata must be a JSON object");
        }
    }
    let used = sh.lock().vela_used_secs.get(&org).copied().unwrap_or(0.0) / 60.0;
    if used >= sh.cfg.vela_minute_allocation {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({
                "message": "minute allocation exhausted",
                "minute_allocation": sh.cfg.vela_minute_allocation,
                "minutes_used": used,
            })),
        )
            .into_response();
    }
    let key = format!("vela_{}_{}.wav", sh.random(12), sh.random(12));
    sh.lock().forms.insert(
        key.clone(),
        FormInfo {
            org_id: org,
            language: None,
            diarization: true,
            vela: true,
        },
    );
    axum::Json(issue_form(&sh, &key, SignatureStyle::V4)).into_response()
}

#[derive(serde::Deserialize)]
struct JobQuery {
    #[serde(rename = "OrgID")]
    org_id: Option<String>,
    #[serde(rename = "FileName")]
    file_name: Option<String>,
}

fn job_query(q: &JobQuery) -> Result<(String, String), Response> {
    let org = q.org_id.as_deref().unwrap_or("").trim();
    let file = q.file_name.as_deref().unwrap_or("").trim();
    if org.is_empty() {
        return Err(bad(
            "MissingParameter",
            "the required parameter 'OrgID' is missing",
        ));
    }
    if file.is_empty() {
        return Err(bad(
            "MissingParameter",
            "the required parameter 'FileName' is missing",
        ));
    }
    Ok((org.to_string(), file.trim_start_matches('/').to_string()))
}

enum JobState {
    Running,
    Failed(String),
    Done(&'static str, asr::AudioSummary),
}

fn job_state(sh: &Shared, org: &str, file: &str) -> Option<(u64, SystemTime, FormInfo, JobState)> {
    let g = sh.lock();
    let job = g.jobs.get(file)?;
    if job.form.org_id != org {
        return None;
    }
    let st = match (&job.analysis, job.ready_at) {
        (Some(Err(e)), _) => JobState::Failed(e.clone()),
        (Some(Ok(s)), Some(ready)) if Instant::now() >= ready => {
            JobState::Done(job.done_word, s.clone())
        }
        _ => JobState::Running,
    };
    Some((job.id, job.uploaded_wall, job.form.clone(), st))
}

async fn async_status(State(sh): State<Arc<Shared>>, Query(q): Query<JobQuery>) -> Response {
    let (org, file) = match job_query(&q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let data = match job_state(&sh, &org, &file) {
        None => vec![],
        Some((id, wall, _, st)) => {
            let status = match st {
                JobState::Running => "running",
                JobState::Failed(_) => "failed",
                JobState::Done(w, _) => w,
            };
            vec![json!({
                "OrgID": org,
                "id": id,
                "process": file,
                "processTime": dmy_hms(wall),
                "status": status,
            })]
        }
    };
    axum::Json(json!({ "data": data })).into_response()
}

/// Float noise like the vendor's (`2309.9999999999995`): a few ulps, fixed per entry.
fn noisy(v: f64, salt: u64) -> f64 {
    if v == 0.0 {
        return v;
    }
    let k = (salt % 7) as f64 - 3.0;
    v + v * f64::EPSILON * k
}

fn seconds_string(secs: f64) -> String {
    let r = (secs * 1000.0).round() / 1000.0;
    if r.fract() == 0.0 {
        format!("{r:.1}")
    } else {
        format!("{r}")
    }
}

async fn async_data(State(sh): State<Arc<Shared>>, Query(q): Query<JobQuery>) -> Response {
    let (org, file) = match job_query(&q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let filename = format!("/{file}");
    let Some((_, _, form, st)) = job_state(&sh, &org, &file) else {
        return axum::Json(json!({"status": "unknown", "filename": filename, "timestamps": []}))
            .into_response();
    };
    let (word, s) = match st {
        JobState::Running => {
            return axum::Json(json!({"status": "running", "filename": filename})).into_response()
        }
        JobState::Failed(e) => {
            return axum::Json(json!({"status": "failed", "filename": filename, "error": e}))
                .into_response()
        }
        JobState::Done(w, s) => (w, s),
    };
    let lang = form
        .language
        .clone()
        .or_else(|| language(&sh.cfg.default_language).map(|l| l.0.to_string()))
        .unwrap_or_else(|| "en-ZA".into());
    let rate = f64::from(s.sample_rate.max(1));
    let salt0 = u64::from(s.crc32);
    let strings = sh.cfg.numbers_as_strings;
    let num = |v: f64| -> Value {
        if strings {
            Value::String(format!("{v:?}"))
        } else {
            json!(v)
        }
    };
    // Voices are numbered in the order they are first heard in this job.
    let first_voice = s.regions.first().map_or(0, |r| r.speaker);
    let mut ts = Vec::with_capacity(s.regions.len());
    for (i, r) in s.regions.iter().enumerate() {
        let k = i + 1;
        let (mut a, mut b) = (r.start as f64 / rate * 1000.0, r.end as f64 / rate * 1000.0);
        if sh.cfg.timestamp_units == TimestampUnits::Seconds {
            a /= 1000.0;
            b /= 1000.0;
        }
        let a = noisy(a, salt0.wrapping_add(2 * k as u64));
        let b = noisy(b, salt0.wrapping_add(2 * k as u64 + 1));
        let speaker = if form.diarization {
            format!("speaker_{}", u8::from(r.speaker != first_voice))
        } else {
            "speaker_0".to_string()
        };
        let dur = (r.end - r.start) as f64 / rate;
        ts.push(json!({
            "start": num(a),
            "end": num(b),
            "speaker": speaker,
            "language": lang,
            "filename": format!("{k}_{speaker}_{a:?}_{b:?}_{lang}.wav"),
            "transcription": format!("[emulator] region {k}, {dur:.3} s"),
        }));
    }
    let secs = s.seconds();
    let mut time = serde_json::Map::new();
    if form.diarization {
        time.insert("diarization".into(), num(secs * 0.227 + 0.5));
    }
    time.insert("recognition".into(), num(secs * 0.137 + 0.25));
    axum::Json(json!({
        "audio_length": seconds_string(secs),
        "filename": filename,
        "status": word,
        "time": time,
        "timestamps": ts,
    }))
    .into_response()
}

async fn chats(State(_sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let org = match form.required("org_id") {
        Ok(o) => o.to_string(),
        Err(r) => return r,
    };
    let raw = match form.required("chats") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(Value::Array(msgs)) = serde_json::from_str::<Value>(raw) else {
        return bad("InvalidParameter", "chats must be a JSON array of messages");
    };
    for (i, m) in msgs.iter().enumerate() {
        let text = m.get("message").and_then(Value::as_str);
        let time = m.get("time").and_then(Value::as_str);
        let sender = m
            .get("sender")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let ok_time = time.is_some_and(valid_chat_date);
        let ok_sender = matches!(sender.as_deref(), Some("agent" | "user" | "bot"));
        let ok_lang = match m.get("language") {
            None | Some(Value::Null) => true,
            Some(Value::String(l)) => language(l).is_some(),
            _ => false,
        };
        if text.is_none() || !ok_time || !ok_sender || !ok_lang {
            return bad(
                "InvalidParameter",
                &format!("chats[{i}] must have message, time (DD/MM/YYYY, HH:mm), sender (agent|user|bot) and an optional supported language"),
            );
        }
    }
    if let Some(meta) = form.text("metadata").filter(|m| !m.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(meta) else {
            return bad("InvalidParameter", "metadata must be a JSON object");
        };
        if let Some(d) = v.get("date").and_then(Value::as_str) {
            if !valid_chat_date(d) {
                return bad(
                    "InvalidParameter",
                    "metadata.date must be DD/MM/YYYY, HH:mm",
                );
            }
        }
    }
    axum::Json(json!({"message": "chats received", "org_id": org, "count": msgs.len()}))
        .into_response()
}

/// `DD/MM/YYYY, HH:mm`.
fn valid_chat_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b'/',
            10 => *c == b',',
            11 => *c == b' ',
            14 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

async fn start_conversation(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = form.required("BotID") {
        return r;
    }
    let lang = match form.required("LanguageCode") {
        Ok(l) => match language(l) {
            Some(l) => l,
            None => {
                return bad(
                    "UnsupportedLanguage",
                    &format!("LanguageCode '{l}' is not supported"),
                )
            }
        },
        Err(r) => return r,
    };
    let conv = form
        .text("ConversationID")
        .filter(|c| !c.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| sh.random(12));
    let user = form
        .text("UserID")
        .filter(|c| !c.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| conv.clone());
    let exp = Instant::now() + sh.scaled(Duration::from_secs(24 * 3600));
    sh.lock().conversations.insert(conv.clone(), exp);
    axum::Json(json!({"ConversationID": conv, "LanguageCode": lang.1, "UserID": user}))
        .into_response()
}

async fn message(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let fields = [
        "BotID",
        "LanguageCode",
        "ConversationID",
        "MessageType",
        "ResponseType",
    ];
    for f in fields {
        if let Err(r) = form.required(f) {
            return r;
        }
    }
    let bot = form.text("BotID").unwrap_or_default().to_string();
    let conv = form.text("ConversationID").unwrap_or_default().to_string();
    let Some(lang) = language(form.text("LanguageCode").unwrap_or_default()) else {
        return bad("UnsupportedLanguage", "LanguageCode is not supported");
    };
    let alive = sh
        .lock()
        .conversations
        .get(&conv)
        .is_some_and(|e| Instant::now() < *e);
    if !alive {
        return bad(
            "InvalidConversationID",
            "unknown or expired ConversationID: call /startConversation",
        );
    }
    let mtype = form
        .text("MessageType")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let rtype = form
        .text("ResponseType")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !matches!(rtype.as_str(), "text" | "speech") {
        return bad("InvalidParameter", "ResponseType must be text or speech");
    }
    let mut out = json!({
        "BotID": bot,
        "Buttons": [{"payload": "/inform{\"emulator\":\"yes\"}", "title": "yes"}],
        "Confidence": "1.0",
        "ConversationID": conv,
        "DateReceived": now_dmy(),
        "Entities": [],
        "Intent": "emulator_echo",
        "LanguageCode": lang.1,
        "MessageID": sh.random(12),
        "UserID": conv,
        "custom": "",
    });
    let text = match mtype.as_str() {
        "text" => match form.required("TextMsg") {
            Ok(t) => t.to_string(),
            Err(r) => return r,
        },
        "speech" => {
            let Some(audio) = form.bytes("SpeechFile") else {
                return bad(
                    "MissingParameter",
                    "the required parameter 'SpeechFile' is missing",
                );
            };
            match analyze_in_background(audio, threshold(&sh)).await {
                Ok(s) => {
                    let t = honest_text(&s);
                    out["Transcription"] = json!(t);
                    t
                }
                Err(r) => return r,
            }
        }
        _ => return bad("InvalidParameter", "MessageType must be text or speech"),
    };
    out["TextMsg"] = json!(text);
    out["TextResponse"] = json!([format!(
        "[emulator] received {} characters",
        text.chars().count()
    )]);
    if rtype == "speech" {
        out["SpeechResponseURL"] =
            json!(format!("{}/tts/audio/{}.wav", sh.base_url, sh.random(12)));
    }
    axum::Json(out).into_response()
}

async fn translate(State(_sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let text = match form.required("Text") {
        Ok(t) => t.to_string(),
        Err(r) => return r,
    };
    let src = match check_language(form.text("LanguageCode")) {
        Ok(l) => l.unwrap_or("auto"),
        Err(r) => return r,
    };
    axum::Json(json!({
        "Characters": text.chars().count(),
        "DateReceived": now_dmy(),
        "Translation": format!("[emulator] not translated ({src} → en): {text}"),
    }))
    .into_response()
}

async fn tts(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let text = match form.required("TextMsg") {
        Ok(t) => t.to_string(),
        Err(r) => return r,
    };
    let lang = match form.required("LanguageCode") {
        Ok(l) => match language(l) {
            Some(l) => l,
            None => {
                return bad(
                    "UnsupportedLanguage",
                    &format!("LanguageCode '{l}' is not supported"),
                )
            }
        },
        Err(r) => return r,
    };
    axum::Json(json!({
        "DateReceived": now_dmy(),
        "LanguageCode": lang.1,
        "SpeechResponseURL": format!("{}/tts/audio/{}.wav", sh.base_url, sh.random(12)),
        "TextMsg": text,
    }))
    .into_response()
}

/// A short 16 kHz WAV tone standing in for synthesised speech.
async fn tts_audio(UrlPath(_id): UrlPath<String>) -> Response {
    let rate = 16_000u32;
    let n = rate / 2;
    let mut v = Vec::with_capacity(44 + n as usize * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + n * 2).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(n * 2).to_le_bytes());
    for i in 0..n {
        let x = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin() * 8000.0;
        v.extend_from_slice(&(x as i16).to_le_bytes());
    }
    ([(header::CONTENT_TYPE, "audio/wav")], v).into_response()
}
