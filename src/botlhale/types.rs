//! Typed, tolerant views of what the service sends and accepts.
//!
//! Parsing is strict JSON but lenient in shape: numbers may arrive as strings (`"30.0"`,
//! `"16000"`), unknown fields are ignored, optional fields may be missing, and the snake-case
//! variants of the newer pages (`transcription`, `s3_filename`, `date_received`) are accepted
//! through serde aliases. Job ids are integers above 2^53 and are parsed without going through
//! `f64`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

// ---------------------------------------------------------------------------------------------
// Languages

/// A language, known by its BCP-47-like tag (`zu-ZA`) and by its name (`IsiZulu`); the service
/// uses both. Tags follow the vendor's table, quirks included (`vr-ZA` for Tshivenda, `ka-KE`
/// for Kamba, `sh-ZM` for Shona); the standard tags `ve-ZA`, `kam-KE` and `sn-ZW` are accepted too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Language {
    /// English, `en-ZA`.
    English,
    /// isiZulu, `zu-ZA`.
    IsiZulu,
    /// isiXhosa, `xh-ZA`.
    IsiXhosa,
    /// Sesotho, `st-ZA`.
    Sesotho,
    /// Setswana, `tn-ZA`.
    Setswana,
    /// Sepedi, `nso-ZA`.
    Sepedi,
    /// Tshivenda, `vr-ZA` (sic; BCP-47 would be `ve-ZA`).
    Tshivenda,
    /// Xitsonga, `ts-ZA`.
    Xitsonga,
    /// Afrikaans, `af-ZA`.
    Afrikaans,
    /// Kiswahili, `sw-KE`.
    Kiswahili,
    /// Kamba, `ka-KE` (sic; `ka` is Georgian in BCP-47).
    Kamba,
    /// Kikuyu, `ki-KE`.
    Kikuyu,
    /// Kinyarwanda, `rw-RW`.
    Kinyarwanda,
    /// Shona, `sh-ZM` (sic).
    Shona,
    /// Ewe, `ee-GH`.
    Ewe,
    /// Anything else, kept verbatim.
    Other(String),
}

/// (language, vendor tag, vendor name, other accepted spellings, lower case).
const LANGUAGES: &[(Language, &str, &str, &[&str])] = &[
    (Language::English, "en-ZA", "English", &["en", "english"]),
    (Language::IsiZulu, "zu-ZA", "IsiZulu", &["zu", "zulu"]),
    (Language::IsiXhosa, "xh-ZA", "IsiXhosa", &["xh", "xhosa"]),
    (
        Language::Sesotho,
        "st-ZA",
        "Sesotho",
        &["st", "sotho", "southern sotho"],
    ),
    (Language::Setswana, "tn-ZA", "Setswana", &["tn", "tswana"]),
    (
        Language::Sepedi,
        "nso-ZA",
        "Sepedi",
        &["nso", "pedi", "northern sotho", "sesotho sa leboa"],
    ),
    (
        Language::Tshivenda,
        "vr-ZA",
        "Tshivenda",
        &["ve-za", "ve", "venda"],
    ),
    (Language::Xitsonga, "ts-ZA", "Xitsonga", &["ts", "tsonga"]),
    (Language::Afrikaans, "af-ZA", "Afrikaans", &["af"]),
    (
        Language::Kiswahili,
        "sw-KE",
        "Kiswahili",
        &["sw", "swahili"],
    ),
    (
        Language::Kamba,
        "ka-KE",
        "Kamba",
        &["kam-ke", "kam", "kikamba"],
    ),
    (Language::Kikuyu, "ki-KE", "Kikuyu", &["ki", "gikuyu"]),
    (Language::Kinyarwanda, "rw-RW", "Kinyarwanda", &["rw"]),
    (Language::Shona, "sh-ZM", "Shona", &["sn-zw", "sn-zm", "sn"]),
    (Language::Ewe, "ee-GH", "Ewe", &["ee"]),
];

impl Language {
    /// Parses a tag or a name, case-insensitively (`zu-ZA`, `zu_za`, `IsiZulu`, `isiZulu`,
    /// `Zulu`). Unknown values become [`Language::Other`] with the input trimmed.
    pub fn parse(s: &str) -> Language {
        let t = s.trim();
        let lower = t.to_ascii_lowercase().replace('_', "-");
        for (lang, tag, name, aliases) in LANGUAGES {
            if lower == tag.to_ascii_lowercase()
                || lower == name.to_ascii_lowercase()
                || aliases.contains(&lower.as_str())
            {
                return lang.clone();
            }
        }
        Language::Other(t.to_string())
    }

    /// The tag the service expects in requests (`zu-ZA`, `vr-ZA`...); `Other` as given.
    pub fn tag(&self) -> &str {
        match self {
            Language::Other(s) => s,
            known => LANGUAGES
                .iter()
                .find(|(l, ..)| l == known)
                .map_or("", |(_, tag, ..)| tag),
        }
    }

    /// The name the service uses in some responses (`IsiZulu`, `English`...); `Other` as given.
    pub fn name(&self) -> &str {
        match self {
            Language::Other(s) => s,
            known => LANGUAGES
                .iter()
                .find(|(l, ..)| l == known)
                .map_or("", |(_, _, name, _)| name),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

impl std::str::FromStr for Language {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Language::parse(s))
    }
}

impl Serialize for Language {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.tag())
    }
}

impl<'de> Deserialize<'de> for Language {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Language::parse(&s))
    }
}

// ---------------------------------------------------------------------------------------------
// Lenient scalars

/// Deserializes a number that may arrive as a JSON number or a string (`"30.0"`).
pub(crate) fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number or a numeric string")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| E::custom(format!("not a number: {v:?}")))
        }
    }
    d.deserialize_any(V)
}

/// Like [`lenient_f64`], for optional fields; `null` and `""` give `None`.
pub(crate) fn lenient_opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(#[serde(deserialize_with = "lenient_f64")] f64),
        Str(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Num(x)) => Ok(Some(x)),
        Some(Raw::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::Str(s)) => Err(de::Error::custom(format!("not a number: {s:?}"))),
    }
}

/// Deserializes an unsigned integer that may arrive as a JSON integer or a string of digits,
/// never through `f64` (ids exceed 2^53). A float (`1.5`, or an integer too large for `u64`,
/// which serde_json hands over as a float) is an error, not a silently rounded id.
pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an unsigned integer or a string of digits")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("negative integer {v}")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            Err(E::custom(format!(
                "{v} is not an exact integer (refusing to round an id through f64)"
            )))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            let t = v.trim();
            // "16000.0" is accepted only when the fraction is zero.
            let digits = t.strip_suffix(".0").unwrap_or(t);
            digits
                .parse::<u64>()
                .map_err(|_| E::custom(format!("not an unsigned integer: {v:?}")))
        }
    }
    d.deserialize_any(V)
}

/// Like [`lenient_u64`], for optional fields; `null` and `""` give `None`.
pub(crate) fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(#[serde(deserialize_with = "lenient_u64")] u64),
        Str(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Int(x)) => Ok(Some(x)),
        Some(Raw::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::Str(s)) => Err(de::Error::custom(format!("not an unsigned integer: {s:?}"))),
    }
}

/// Deserializes any scalar as text: strings as they are, numbers and booleans in their JSON
/// spelling (`"processTime"` arrives as a string or a number).
pub(crate) fn lenient_opt_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// Auth

/// `POST /generateAuthToken` answer.
#[derive(Debug, Deserialize)]
pub(crate) struct AuthResponse {
    #[serde(rename = "AuthenticationResult")]
    pub result: AuthResult,
}

/// The token part. Deliberately not `Debug`-printable with its secrets: see the manual impl.
#[derive(Deserialize)]
pub(crate) struct AuthResult {
    #[serde(rename = "IdToken")]
    pub id_token: String,
    #[serde(rename = "ExpiresIn", default, deserialize_with = "lenient_opt_u64")]
    pub expires_in: Option<u64>,
}

impl fmt::Debug for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthResult")
            .field("id_token", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Sync ASR

/// The answer of a synchronous transcription (`POST /asr`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SyncTranscription {
    /// The transcript text.
    #[serde(rename = "Transcription", alias = "transcription", default)]
    pub transcription: String,
    /// The language the service recognised or was told.
    #[serde(
        rename = "LanguageCode",
        alias = "language_code",
        alias = "language",
        default
    )]
    pub language: Option<Language>,
    /// The rate the service resampled to, when it says.
    #[serde(
        rename = "NewSampleRate",
        alias = "new_sample_rate",
        default,
        deserialize_with = "lenient_opt_u64"
    )]
    pub new_sample_rate: Option<u64>,
    /// The server's name for the stored clip (never a local path).
    #[serde(
        rename = "SpeechFile",
        alias = "s3_filename",
        alias = "speech_file",
        default
    )]
    pub speech_file: Option<String>,
    /// When the server received the request (`DD/MM/YYYY HH:mm:ss`), as sent.
    #[serde(rename = "DateReceived", alias = "date_received", default)]
    pub date_received: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Async: presigned form, status, data

/// A presigned S3 POST form: the URL and the fields to send verbatim, in the order received.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct PresignedPost {
    /// Where to POST the upload.
    pub url: String,
    /// Form fields, in the order the server sent them.
    pub fields: Vec<(String, String)>,
}

impl PresignedPost {
    /// Builds a form from its parts (for callers that obtained one elsewhere).
    pub fn new(url: impl Into<String>, fields: Vec<(String, String)>) -> Self {
        PresignedPost {
            url: url.into(),
            fields,
        }
    }

    /// The value of field `name` (case-insensitive), if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The object key, which is the server's file name of the job.
    pub fn key(&self) -> Option<&str> {
        self.field("key")
    }
}

impl fmt::Debug for PresignedPost {
    /// Prints the URL without its query and field names with the key only: policies,
    /// signatures and session tokens are credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.url.split('?').next().unwrap_or("");
        let names: Vec<&str> = self.fields.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("PresignedPost")
            .field("url", &url)
            .field("key", &self.key())
            .field("fields", &names)
            .finish()
    }
}

impl<'de> Deserialize<'de> for PresignedPost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(alias = "URL", alias = "upload_url")]
            url: String,
            #[serde(alias = "Fields", deserialize_with = "ordered_fields")]
            fields: Vec<(String, String)>,
        }
        let raw = Raw::deserialize(d)?;
        Ok(PresignedPost {
            url: raw.url,
            fields: raw.fields,
        })
    }
}

/// Reads a JSON object into `(name, value)` pairs in document order (serde_json visits map
/// entries in order); scalar non-string values are kept in their JSON spelling.
fn ordered_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of form fields")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

/// What the server says about an async job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobStatus {
    /// Still being processed (`running`, `processing`, `queued`, `pending`, `in_progress`).
    Running,
    /// Finished (`complete`, `completed`, `done`, `finished`, `success`, `succeeded`).
    Complete,
    /// The server gave up (`failed`, `failure`, `error`, `errored`); the raw text is kept.
    Failed(String),
    /// The server says `unknown`.
    Unknown,
    /// The status list was empty (the job is not registered yet, or not at all).
    NoData,
    /// A value not listed above, kept verbatim.
    Other(String),
}

impl JobStatus {
    /// Classifies a status string, case-insensitively.
    pub fn parse(s: &str) -> JobStatus {
        let l = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        match l.as_str() {
            "running" | "processing" | "queued" | "pending" | "in_progress" | "started"
            | "submitted" => JobStatus::Running,
            "complete" | "completed" | "done" | "finished" | "success" | "succeeded" => {
                JobStatus::Complete
            }
            "failed" | "failure" | "error" | "errored" => JobStatus::Failed(s.to_string()),
            "unknown" => JobStatus::Unknown,
            "" => JobStatus::NoData,
            _ => JobStatus::Other(s.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for JobStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(lenient_opt_string(d)?
            .map(|s| JobStatus::parse(&s))
            .unwrap_or(JobStatus::NoData))
    }
}

/// One row of `GET /asr/async/status`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct StatusEntry {
    /// Organisation id.
    #[serde(rename = "OrgID", alias = "org_id", default)]
    pub org_id: Option<String>,
    /// The job id (above 2^53; exact).
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub id: Option<u64>,
    /// The server's file name of the job.
    #[serde(default, alias = "filename", alias = "FileName")]
    pub process: Option<String>,
    /// Processing time, as sent.
    #[serde(
        rename = "processTime",
        alias = "process_time",
        default,
        deserialize_with = "lenient_opt_string"
    )]
    pub process_time: Option<String>,
    /// The job's status.
    #[serde(default = "no_data")]
    pub status: JobStatus,
}

fn no_data() -> JobStatus {
    JobStatus::NoData
}

/// The answer of `GET /asr/async/status`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct JobStatusReport {
    /// The rows, usually one.
    #[serde(default, alias = "Data")]
    pub data: Vec<StatusEntry>,
}

impl JobStatusReport {
    /// The status of the job: the first row's, or [`JobStatus::NoData`] when the list is empty.
    pub fn status(&self) -> JobStatus {
        self.data
            .first()
            .map_or(JobStatus::NoData, |e| e.status.clone())
    }
}

/// The server-side processing times of an async job, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[non_exhaustive]
pub struct ProcessingTime {
    /// Seconds spent on diarization.
    #[serde(default, deserialize_with = "lenient_opt_f64")]
    pub diarization: Option<f64>,
    /// Seconds spent on recognition.
    #[serde(default, deserialize_with = "lenient_opt_f64")]
    pub recognition: Option<f64>,
}

/// How the raw `start` / `end` values of an async result were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeReading {
    /// Read as milliseconds: some end lies beyond `audio_length` in seconds, and every end fits
    /// within it in milliseconds.
    Milliseconds,
    /// Read as seconds: every end fits within `audio_length` in seconds.
    Seconds,
    /// No `audio_length` to decide from: read as milliseconds, as the vendor's example does.
    /// Callers that care should check the result against the audio they sent.
    AssumedMilliseconds,
    /// No timestamps at all: nothing to read.
    NoTimestamps,
}

/// One timed piece of an async transcript; times are already in milliseconds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TimedText {
    /// Start, in milliseconds from the beginning of the uploaded audio.
    pub start_ms: f64,
    /// End, in milliseconds.
    pub end_ms: f64,
    /// Speaker label (`speaker_0`...), when diarized.
    pub speaker: Option<String>,
    /// Language of the piece.
    pub language: Option<Language>,
    /// The text.
    pub transcription: String,
    /// The server's name for the piece (never a local path).
    pub filename: Option<String>,
}

impl TimedText {
    /// The start rounded to whole milliseconds.
    pub fn start_ms_rounded(&self) -> u64 {
        self.start_ms.round().max(0.0) as u64
    }
    /// The end rounded to whole milliseconds.
    pub fn end_ms_rounded(&self) -> u64 {
        self.end_ms.round().max(0.0) as u64
    }
}

/// The result of an async job (`GET /asr/async/data`), with times normalised to milliseconds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AsyncResult {
    /// The status in the data answer.
    pub status: JobStatus,
    /// The audio length in seconds, as the server measured it.
    pub audio_length_secs: Option<f64>,
    /// The server's file name.
    pub filename: Option<String>,
    /// Server processing times.
    pub time: Option<ProcessingTime>,
    /// The timed pieces, in the order received.
    pub timestamps: Vec<TimedText>,
    /// How `start` / `end` were read (see [`TimeReading`]).
    pub time_reading: TimeReading,
    /// Pieces left out because their own times were unusable (negative, not finite, or an
    /// end before the start); the rest of the job is kept. 0 for a clean answer.
    pub dropped: usize,
}

#[derive(Deserialize)]
pub(crate) struct RawAsyncResult {
    #[serde(default, deserialize_with = "lenient_opt_f64", alias = "AudioLength")]
    audio_length: Option<f64>,
    #[serde(default, alias = "FileName", alias = "s3_filename")]
    filename: Option<String>,
    #[serde(default = "no_data", alias = "Status")]
    status: JobStatus,
    #[serde(default)]
    time: Option<ProcessingTime>,
    #[serde(default, alias = "Timestamps")]
    timestamps: Vec<RawTimed>,
}

#[derive(Deserialize)]
struct RawTimed {
    #[serde(deserialize_with = "lenient_f64")]
    start: f64,
    #[serde(deserialize_with = "lenient_f64")]
    end: f64,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    speaker: Option<String>,
    #[serde(default, alias = "LanguageCode", alias = "language_code")]
    language: Option<Language>,
    #[serde(default, alias = "Transcription", alias = "text")]
    transcription: Option<String>,
    #[serde(default)]
    filename: Option<String>,
}

/// Relative and absolute slack when comparing timestamps with `audio_length` (float noise,
/// rounding of the reported length).
const LENGTH_REL_TOL: f64 = 0.02;
const LENGTH_ABS_TOL_SECS: f64 = 0.5;

impl AsyncResult {
    /// Parses a data answer and normalises its times to milliseconds (see [`TimeReading`]).
    /// A piece whose own times are unusable (negative, not finite, or ending before it
    /// starts) is left out and counted in [`AsyncResult::dropped`] (with a warning): one bad
    /// piece does not lose a paid job. Errors (as text) only when the answer does not parse or
    /// neither unit reading fits `audio_length`.
    pub fn from_json(body: &[u8]) -> Result<AsyncResult, String> {
        let raw: RawAsyncResult = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        AsyncResult::from_raw(raw)
    }

    pub(crate) fn from_raw(mut raw: RawAsyncResult) -> Result<AsyncResult, String> {
        let audio = raw.audio_length.filter(|l| l.is_finite() && *l > 0.0);
        let before = raw.timestamps.len();
        let mut first_bad: Option<String> = None;
        let mut i = 0usize;
        raw.timestamps.retain(|t| {
            let bad = !t.start.is_finite()
                || !t.end.is_finite()
                || t.start < 0.0
                || t.end < 0.0
                || t.end + 1e-6 < t.start;
            if bad && first_bad.is_none() {
                first_bad = Some(format!("timestamp {i}: start {} / end {}", t.start, t.end));
            }
            i += 1;
            !bad
        });
        let dropped = before - raw.timestamps.len();
        if let Some(first) = &first_bad {
            tracing::warn!(
                dropped,
                of = before,
                first = %first,
                "async result: pieces with unusable times left out"
            );
        }
        let max_end = raw.timestamps.iter().fold(0.0f64, |m, t| m.max(t.end));
        let reading = if raw.timestamps.is_empty() {
            TimeReading::NoTimestamps
        } else if let Some(len) = audio {
            let limit = len * (1.0 + LENGTH_REL_TOL) + LENGTH_ABS_TOL_SECS;
            if max_end <= limit {
                TimeReading::Seconds
            } else if max_end / 1000.0 <= limit {
                TimeReading::Milliseconds
            } else {
                return Err(format!(
                    "timestamps end at {max_end}, beyond audio_length {len} s read as seconds or as milliseconds"
                ));
            }
        } else {
            TimeReading::AssumedMilliseconds
        };
        let scale = if reading == TimeReading::Seconds {
            1000.0
        } else {
            1.0
        };
        let timestamps = raw
            .timestamps
            .into_iter()
            .map(|t| TimedText {
                start_ms: t.start * scale,
                end_ms: t.end * scale,
                speaker: t.speaker,
                language: t.language,
                transcription: t.transcription.unwrap_or_default(),
                filename: t.filename,
            })
            .collect();
        Ok(AsyncResult {
            status: raw.status,
            audio_length_secs: raw.audio_length,
            filename: raw.filename,
            time: raw.time,
            timestamps,
            time_reading: reading,
            dropped,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Chatbot, translation, TTS

/// The answer of `POST /startConversation`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Conversation {
    /// The conversation id (valid 24 hours).
    #[serde(rename = "ConversationID", alias = "conversation_id")]
    pub conversation_id: String,
    /// The conversation's language (the service answers with a name, e.g. `English`).
    #[serde(rename = "LanguageCode", alias = "language_code", default)]
    pub language: Option<Language>,
    /// The user id.
    #[serde(rename = "UserID", alias = "user_id", default)]
    pub user_id: Option<String>,
}

/// A quick-reply button of a bot answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Button {
    /// What choosing the button sends.
    #[serde(default)]
    pub payload: String,
    /// The label.
    #[serde(default)]
    pub title: String,
}

/// An entity the bot recognised in the user's message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Entity {
    /// Confidence in [0, 1].
    #[serde(default, deserialize_with = "lenient_opt_f64")]
    pub confidence_entity: Option<f64>,
    /// Start offset in the message.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub start: Option<u64>,
    /// End offset in the message.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub end: Option<u64>,
    /// The entity type.
    #[serde(default)]
    pub entity: String,
    /// The value, as sent (usually a string).
    #[serde(default)]
    pub value: serde_json::Value,
}

/// The answer of `POST /message`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct BotReply {
    /// The bot.
    #[serde(rename = "BotID", default)]
    pub bot_id: Option<String>,
    /// Quick-reply buttons.
    #[serde(rename = "Buttons", default)]
    pub buttons: Vec<Button>,
    /// Intent confidence (sent as a number or a string).
    #[serde(rename = "Confidence", default, deserialize_with = "lenient_opt_f64")]
    pub confidence: Option<f64>,
    /// The conversation.
    #[serde(rename = "ConversationID", default)]
    pub conversation_id: Option<String>,
    /// When the server received the message, as sent.
    #[serde(rename = "DateReceived", alias = "date_received", default)]
    pub date_received: Option<String>,
    /// Recognised entities.
    #[serde(rename = "Entities", default)]
    pub entities: Vec<Entity>,
    /// The recognised intent.
    #[serde(rename = "Intent", default)]
    pub intent: Option<String>,
    /// The language (a tag or a name on the wire).
    #[serde(rename = "LanguageCode", default)]
    pub language: Option<Language>,
    /// The message id.
    #[serde(rename = "MessageID", default)]
    pub message_id: Option<String>,
    /// The user's text as the bot understood it.
    #[serde(rename = "TextMsg", default)]
    pub text_msg: Option<String>,
    /// The bot's answers.
    #[serde(rename = "TextResponse", default)]
    pub text_response: Vec<String>,
    /// Where to fetch the spoken answer (speech responses).
    #[serde(rename = "SpeechResponseURL", default)]
    pub speech_response_url: Option<String>,
    /// The transcription of a speech message.
    #[serde(rename = "Transcription", alias = "transcription", default)]
    pub transcription: Option<String>,
    /// The user id.
    #[serde(rename = "UserID", default)]
    pub user_id: Option<String>,
    /// Bot-specific payload, as sent.
    #[serde(default)]
    pub custom: Option<serde_json::Value>,
}

/// The answer of `POST /translate`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Translation {
    /// The English translation.
    #[serde(rename = "Translation", alias = "translation", default)]
    pub translation: String,
    /// Characters billed.
    #[serde(rename = "Characters", default, deserialize_with = "lenient_opt_u64")]
    pub characters: Option<u64>,
    /// When the server received the request, as sent.
    #[serde(rename = "DateReceived", alias = "date_received", default)]
    pub date_received: Option<String>,
}

/// The answer of `POST /tts`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct SpeechSynthesis {
    /// Where to fetch the audio.
    #[serde(rename = "SpeechResponseURL", alias = "speech_response_url")]
    pub speech_response_url: String,
    /// The language (the service answers with a name, e.g. `IsiXhosa`).
    #[serde(rename = "LanguageCode", default)]
    pub language: Option<Language>,
    /// The text that was spoken.
    #[serde(rename = "TextMsg", default)]
    pub text_msg: Option<String>,
    /// When the server received the request, as sent.
    #[serde(rename = "DateReceived", alias = "date_received", default)]
    pub date_received: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_and_names_both_ways() {
        for (lang, tag, name, _) in LANGUAGES {
            assert_eq!(&Language::parse(tag), lang);
            assert_eq!(&Language::parse(name), lang);
            assert_eq!(&Language::parse(&tag.to_lowercase()), lang);
            assert_eq!(lang.tag(), *tag);
            assert_eq!(lang.name(), *name);
        }
        assert_eq!(Language::parse("zu-ZA").name(), "IsiZulu");
        assert_eq!(Language::parse("IsiZulu").tag(), "zu-ZA");
        assert_eq!(Language::parse("isiXhosa"), Language::IsiXhosa);
        // Quirks: the vendor's tags are what we send, the standard ones are understood.
        assert_eq!(Language::parse("ve-ZA").tag(), "vr-ZA");
        assert_eq!(Language::parse("kam-KE").tag(), "ka-KE");
        assert_eq!(Language::parse("sn-ZW").tag(), "sh-ZM");
        assert_eq!(Language::parse("zu_za"), Language::IsiZulu);
        assert_eq!(Language::parse(" fr-FR "), Language::Other("fr-FR".into()));
        assert_eq!(Language::Other("fr-FR".into()).tag(), "fr-FR");
        let j = serde_json::to_string(&Language::Sepedi).unwrap();
        assert_eq!(j, "\"nso-ZA\"");
        let back: Language = serde_json::from_str("\"Sepedi\"").unwrap();
        assert_eq!(back, Language::Sepedi);
    }

    #[test]
    fn sync_answer_both_spellings() {
        let a: SyncTranscription = serde_json::from_str(
            r#"{"DateReceived": "09/03/2023 11:21:07", "LanguageCode": "zu-ZA", "NewSampleRate": "16000",
                "SpeechFile": "asr_6fFd.wav", "Transcription": "izithombe zakhe", "Extra": [1,2]}"#,
        )
        .unwrap();
        assert_eq!(a.transcription, "izithombe zakhe");
        assert_eq!(a.language, Some(Language::IsiZulu));
        assert_eq!(a.new_sample_rate, Some(16000));
        assert_eq!(a.speech_file.as_deref(), Some("asr_6fFd.wav"));
        let b: SyncTranscription = serde_json::from_str(
            r#"{"transcription": "hello", "s3_filename": "x.wav", "date_received": "now", "NewSampleRate": 8000}"#,
        )
        .unwrap();
        assert_eq!(b.transcription, "hello");
        assert_eq!(b.speech_file.as_deref(), Some("x.wav"));
        assert_eq!(b.date_received.as_deref(), Some("now"));
        assert_eq!(b.new_sample_rate, Some(8000));
        assert_eq!(b.language, None);
        let c: SyncTranscription = serde_json::from_str(r#"{"Transcription": ""}"#).unwrap();
        assert_eq!(c.new_sample_rate, None);
        assert!(serde_json::from_str::<SyncTranscription>(r#"{"NewSampleRate": "fast"}"#).is_err());
    }

    #[test]
    fn status_id_above_2_pow_53_is_exact() {
        for body in [
            r#"{"data":[{"OrgID":"o","id":207891841473145364,"process":"a.wav","processTime":"processTime","status":"running"}]}"#,
            r#"{"data":[{"OrgID":"o","id":"207891841473145364","process":"a.wav","processTime":12.5,"status":"running","new":true}]}"#,
        ] {
            let r: JobStatusReport = serde_json::from_str(body).unwrap();
            assert_eq!(r.data[0].id, Some(207_891_841_473_145_364));
            assert_ne!(207_891_841_473_145_364f64 as u64, 207_891_841_473_145_364);
            assert_eq!(r.status(), JobStatus::Running);
        }
        // A float id is refused, not rounded.
        assert!(serde_json::from_str::<JobStatusReport>(r#"{"data":[{"id":2.5e17}]}"#).is_err());
        assert!(serde_json::from_str::<JobStatusReport>(r#"{"data":[{"id":-3}]}"#).is_err());
        // Above u64: serde_json would hand over an f64; refused.
        assert!(serde_json::from_str::<JobStatusReport>(
            r#"{"data":[{"id":99999999999999999999}]}"#
        )
        .is_err());
    }

    #[test]
    fn every_status_value() {
        let s = |v: &str| {
            let body = format!(r#"{{"data":[{{"status":{v}}}]}}"#);
            serde_json::from_str::<JobStatusReport>(&body)
                .unwrap()
                .status()
        };
        assert_eq!(s("\"running\""), JobStatus::Running);
        assert_eq!(s("\"RUNNING\""), JobStatus::Running);
        assert_eq!(s("\"complete\""), JobStatus::Complete);
        assert_eq!(s("\"completed\""), JobStatus::Complete);
        assert_eq!(s("\"failed\""), JobStatus::Failed("failed".into()));
        assert_eq!(s("\"error\""), JobStatus::Failed("error".into()));
        assert_eq!(s("\"unknown\""), JobStatus::Unknown);
        assert_eq!(s("\"\""), JobStatus::NoData);
        assert_eq!(s("null"), JobStatus::NoData);
        assert_eq!(s("\"paused\""), JobStatus::Other("paused".into()));
        let empty: JobStatusReport = serde_json::from_str(r#"{"data":[]}"#).unwrap();
        assert_eq!(empty.status(), JobStatus::NoData);
        let missing: JobStatusReport = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(missing.status(), JobStatus::NoData);
    }

    const VENDOR_DATA: &str = r#"{"audio_length": "30.0", "filename": "/x.wav", "status": "complete",
        "time": {"diarization": 6.815945625305176, "recognition": "4.098539113998413"},
        "timestamps": [
          {"end": 1260.0000000000005, "filename": "1_speaker_0_660.0000000000003_1260.0000000000005_nso-ZA.wav",
           "language": "nso-ZA", "speaker": "speaker_0", "start": 660.0000000000003, "transcription": "a"},
          {"end": "2310.0000000000014", "language": "Sepedi", "speaker": "speaker_1", "start": "1260.000000000001", "transcription": "b"},
          {"end": 30000.000000000353, "language": "nso-ZA", "speaker": "speaker_0", "start": 29220.00000000035, "transcription": "c"}
        ]}"#;

    #[test]
    fn data_in_milliseconds_is_read_as_milliseconds() {
        let r = AsyncResult::from_json(VENDOR_DATA.as_bytes()).unwrap();
        assert_eq!(r.time_reading, TimeReading::Milliseconds);
        assert_eq!(r.status, JobStatus::Complete);
        assert_eq!(r.audio_length_secs, Some(30.0));
        assert_eq!(r.timestamps.len(), 3);
        assert_eq!(r.timestamps[0].start_ms_rounded(), 660);
        assert_eq!(r.timestamps[1].end_ms_rounded(), 2310);
        assert_eq!(r.timestamps[1].language, Some(Language::Sepedi));
        assert_eq!(r.timestamps[2].end_ms_rounded(), 30000);
        assert_eq!(r.time.unwrap().recognition, Some(4.098539113998413));
    }

    #[test]
    fn data_in_seconds_is_read_as_seconds() {
        let body = r#"{"audio_length": 30, "status": "completed", "timestamps": [
            {"start": 0.66, "end": 1.26, "transcription": "a"},
            {"start": "29.22", "end": 30.000000001, "transcription": "b"}]}"#;
        let r = AsyncResult::from_json(body.as_bytes()).unwrap();
        assert_eq!(r.time_reading, TimeReading::Seconds);
        assert_eq!(r.timestamps[0].start_ms_rounded(), 660);
        assert_eq!(r.timestamps[1].end_ms_rounded(), 30000);
        assert!((r.timestamps[0].end_ms - 1260.0).abs() < 1e-6);
    }

    #[test]
    fn inconsistent_units_are_an_error_not_a_guess() {
        // 30 s of audio but an end at 90 000: neither 90 000 s nor 90 s fits.
        let body = r#"{"audio_length": "30.0", "timestamps": [{"start": 0, "end": 90000}]}"#;
        let e = AsyncResult::from_json(body.as_bytes()).unwrap_err();
        assert!(e.contains("beyond audio_length"), "{e}");
        // 40 000 on 30 s audio: 40 000 s and 40 s are both too long.
        let body = r#"{"audio_length": 30, "timestamps": [{"start": 0, "end": 40000}]}"#;
        assert!(AsyncResult::from_json(body.as_bytes()).is_err());
    }

    #[test]
    fn a_piece_ending_before_it_starts_is_dropped_not_the_job() {
        let body = r#"{"audio_length": 30, "timestamps": [
            {"start": 0.5, "end": 1.5, "transcription": "a"},
            {"start": 5, "end": 2, "transcription": "bad"},
            {"start": -1, "end": 2, "transcription": "negative"},
            {"start": 20, "end": 29.5, "transcription": "c"}]}"#;
        let r = AsyncResult::from_json(body.as_bytes()).unwrap();
        assert_eq!(r.dropped, 2);
        assert_eq!(r.time_reading, TimeReading::Seconds);
        let kept: Vec<_> = r
            .timestamps
            .iter()
            .map(|t| {
                (
                    t.transcription.as_str(),
                    t.start_ms_rounded(),
                    t.end_ms_rounded(),
                )
            })
            .collect();
        assert_eq!(kept, vec![("a", 500, 1500), ("c", 20_000, 29_500)]);
        // The unit decision is still strict: a kept piece beyond both readings is an error.
        let body = r#"{"audio_length": 30, "timestamps": [
            {"start": 5, "end": 2}, {"start": 0, "end": 90000}]}"#;
        assert!(AsyncResult::from_json(body.as_bytes()).is_err());
        // A clean answer drops nothing.
        let body = r#"{"audio_length": 30, "timestamps": [{"start": 0, "end": 1}]}"#;
        assert_eq!(AsyncResult::from_json(body.as_bytes()).unwrap().dropped, 0);
    }

    #[test]
    fn missing_length_and_missing_fields() {
        let body = r#"{"timestamps": [{"start": 10, "end": 20}]}"#;
        let r = AsyncResult::from_json(body.as_bytes()).unwrap();
        assert_eq!(r.time_reading, TimeReading::AssumedMilliseconds);
        assert_eq!(r.timestamps[0].end_ms, 20.0);
        assert_eq!(r.timestamps[0].transcription, "");
        assert_eq!(r.status, JobStatus::NoData);
        let r = AsyncResult::from_json(br#"{"status":"running","audio_length":"30.0"}"#).unwrap();
        assert_eq!(r.time_reading, TimeReading::NoTimestamps);
        assert_eq!(r.status, JobStatus::Running);
        assert!(AsyncResult::from_json(b"{\"timestamps\": 3}").is_err());
    }

    #[test]
    fn presigned_fields_keep_their_order_and_both_styles() {
        let v2 = r#"{"fields": {"AWSAccessKeyId": "AK", "key": "asr_h17.wav", "policy": "cG9s",
                     "signature": "sig", "x-amz-security-token": "tok"}, "url": "https://b.s3.amazonaws.com/"}"#;
        let p: PresignedPost = serde_json::from_str(v2).unwrap();
        let names: Vec<_> = p.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "AWSAccessKeyId",
                "key",
                "policy",
                "signature",
                "x-amz-security-token"
            ]
        );
        assert_eq!(p.key(), Some("asr_h17.wav"));
        let v4 = r#"{"url": "http://127.0.0.1:9/b", "fields": {"key": "k", "x-amz-algorithm": "AWS4-HMAC-SHA256",
                     "x-amz-credential": "c", "x-amz-date": "20260101T000000Z", "policy": "p", "x-amz-signature": "s",
                     "success_action_status": 201}}"#;
        let p: PresignedPost = serde_json::from_str(v4).unwrap();
        let names: Vec<_> = p.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "key",
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "policy",
                "x-amz-signature",
                "success_action_status"
            ]
        );
        assert_eq!(p.field("SUCCESS_ACTION_STATUS"), Some("201"));
        // Debug shows neither the signature nor the token.
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("\"s\"") && !dbg.contains("20260101"), "{dbg}");
    }

    #[test]
    fn bot_translate_tts_answers() {
        let r: BotReply = serde_json::from_str(
            r#"{"BotID":"b","Buttons":[{"payload":"/small","title":"Small"}],"Confidence":"0.9999912977218628",
                "ConversationID":"c","DateReceived":"16/06/2021 10:36:26",
                "Entities":[{"confidence_entity":0.82,"end":17,"entity":"coffee_type","start":12,"value":"caffe latte"}],
                "Intent":"order_coffee","LanguageCode":"English","MessageID":"m","Transcription":"Can I get a latte",
                "TextResponse":["What size?"],"custom":""}"#,
        )
        .unwrap();
        assert_eq!(r.confidence, Some(0.9999912977218628));
        assert_eq!(r.language, Some(Language::English));
        assert_eq!(r.entities[0].end, Some(17));
        assert_eq!(r.transcription.as_deref(), Some("Can I get a latte"));
        let r: BotReply = serde_json::from_str(r#"{"Confidence":1.0}"#).unwrap();
        assert_eq!(r.confidence, Some(1.0));
        let t: Translation = serde_json::from_str(
            r#"{"Characters": 40, "DateReceived": "09/03/2023 11:16:47", "Translation": "When"}"#,
        )
        .unwrap();
        assert_eq!(t.characters, Some(40));
        let s: SpeechSynthesis = serde_json::from_str(
            r#"{"DateReceived": "d", "LanguageCode": "IsiXhosa", "SpeechResponseURL": "http://x/y.wav", "TextMsg": "t"}"#,
        )
        .unwrap();
        assert_eq!(s.language, Some(Language::IsiXhosa));
        let c: Conversation = serde_json::from_str(
            r#"{"ConversationID": "c1", "LanguageCode": "English", "UserID": "u"}"#,
        )
        .unwrap();
        assert_eq!(c.language.unwrap().tag(), "en-ZA");
    }

    #[test]
    fn auth_answer_is_redacted_in_debug() {
        let a: AuthResponse = serde_json::from_str(
            r#"{"AuthenticationResult": {"AccessToken": "acc", "ExpiresIn": "3600", "IdToken": "SECRETID", "RefreshToken": "r", "TokenType": "Bearer"}}"#,
        )
        .unwrap();
        assert_eq!(a.result.expires_in, Some(3600));
        assert!(!format!("{a:?}").contains("SECRETID"));
    }
}
