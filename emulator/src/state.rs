//! The emulator's shared state: tokens, issued forms, jobs, the request log, fault counters.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::asr::AudioSummary;
use super::faults::FaultKind;
use super::sigv4::Credentials;
use super::{EmulatorConfig, RequestRecord};

/// The form a key was issued with (what the upload endpoint was told).
#[derive(Debug, Clone)]
pub(crate) struct FormInfo {
    pub org_id: String,
    pub language: Option<String>,
    pub diarization: bool,
    pub vela: bool,
}

/// An uploaded file being "processed".
#[derive(Debug)]
pub(crate) struct Job {
    pub form: FormInfo,
    pub id: u64,
    pub uploaded_at: Instant,
    pub uploaded_wall: SystemTime,
    /// `None` while analysing; the audio summary or why it failed.
    pub analysis: Option<Result<AudioSummary, String>>,
    /// When the job reports completion (set when the analysis finishes).
    pub ready_at: Option<Instant>,
    /// Seed-chosen wording of the finished status: `complete` or `completed`.
    pub done_word: &'static str,
}

pub(crate) struct Inner {
    pub rng: fastrand::Rng,
    pub tokens: HashMap<String, Instant>,
    pub requests: Vec<RequestRecord>,
    pub attempts: HashMap<String, u32>,
    pub consecutive: HashMap<String, u32>,
    pub forms: HashMap<String, FormInfo>,
    pub jobs: HashMap<String, Job>,
    pub vela_used_secs: HashMap<String, f64>,
    pub conversations: HashMap<String, Instant>,
}

pub(crate) struct Shared {
    pub cfg: EmulatorConfig,
    pub base_url: String,
    pub refresh_token: String,
    pub s3_creds: Credentials,
    pub upload_dir: PathBuf,
    pub capacity: super::capacity::Capacity,
    /// [`EmulatorConfig::asr_workers`]: requests beyond it wait for a worker.
    pub workers: Option<Arc<tokio::sync::Semaphore>>,
    inner: Mutex<Inner>,
}

pub(crate) const REGION: &str = "af-south-1";
pub(crate) const BUCKET: &str = "botlhale-asr-async-emulator";

impl Shared {
    pub(crate) fn new(cfg: EmulatorConfig, base_url: String, upload_dir: PathBuf) -> Arc<Self> {
        let mut rng = fastrand::Rng::with_seed(cfg.seed);
        let refresh_token = cfg
            .refresh_token
            .clone()
            .unwrap_or_else(|| format!("emu-refresh-{}", alnum(&mut rng, 32)));
        let s3_creds = Credentials::new(
            format!("ASIAEMULATOR{}", alnum(&mut rng, 8).to_ascii_uppercase()),
            alnum(&mut rng, 40),
        )
        .with_session_token(format!("emu-session-{}", alnum(&mut rng, 48)));
        Arc::new(Shared {
            base_url,
            refresh_token,
            s3_creds,
            upload_dir,
            capacity: Default::default(),
            workers: cfg
                .asr_workers
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1)))),
            inner: Mutex::new(Inner {
                rng,
                tokens: HashMap::new(),
                requests: Vec::new(),
                attempts: HashMap::new(),
                consecutive: HashMap::new(),
                forms: HashMap::new(),
                jobs: HashMap::new(),
                vela_used_secs: HashMap::new(),
                conversations: HashMap::new(),
            }),
            cfg,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters to an emulator; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A duration of emulated time as real time (divided by `time_scale`).
    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        let s = if self.cfg.time_scale.is_finite() && self.cfg.time_scale > 0.0 {
            self.cfg.time_scale
        } else {
            1.0
        };
        d.div_f64(s)
    }

    pub(crate) fn mint_id_token(&self) -> String {
        let mut g = self.lock();
        let tok = format!("emu-id-{}", alnum(&mut g.rng, 40));
        let exp = Instant::now() + self.scaled(self.cfg.token_lifetime);
        g.tokens.insert(tok.clone(), exp);
        tok
    }

    pub(crate) fn token_valid(&self, tok: &str) -> bool {
        let g = self.lock();
        g.tokens.get(tok).is_some_and(|exp| Instant::now() < *exp)
    }

    pub(crate) fn random(&self, n: usize) -> String {
        alnum(&mut self.lock().rng, n)
    }

    /// Records an attempt and draws its fault: see [`super::faults`].
    pub(crate) fn decide_fault(&self, path: &str, key: &str) -> Option<FaultKind> {
        let f = &self.cfg.faults;
        let mut g = self.lock();
        let n = {
            let e = g.attempts.entry(key.to_string()).or_insert(0);
            let n = *e;
            *e += 1;
            n
        };
        if !f.applies_to(path) {
            return None;
        }
        let draw = f.draw(self.cfg.seed, key, n);
        let run = g.consecutive.entry(key.to_string()).or_insert(0);
        match draw {
            Some(k) if k.fails() => {
                if f.max_consecutive.is_some_and(|m| *run >= m) {
                    *run = 0;
                    None
                } else {
                    *run += 1;
                    Some(k)
                }
            }
            other => {
                *run = 0;
                other
            }
        }
    }

    pub(crate) fn record(&self, rec: RequestRecord) {
        self.lock().requests.push(rec);
    }
}

pub(crate) fn alnum(rng: &mut fastrand::Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| char::from(A[rng.usize(..A.len())]))
        .collect()
}

/// First 16 bytes of SHA-256 as hex.
pub(crate) fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..16])
}

/// `DD/MM/YYYY HH:mm:ss` (UTC), the vendor's response date format.
pub(crate) fn dmy_hms(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, _) = super::sigv4::utc_fields(t);
    format!("{d:02}/{m:02}/{y:04} {hh:02}:{mm:02}:{ss:02}")
}
