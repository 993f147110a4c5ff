//! The crate's one error type.
//!
//! Modelled on rust-csv: [`Error`] is a small boxed handle around a `#[non_exhaustive]`
//! [`ErrorKind`] that says what went wrong and where (which file, which position, which
//! endpoint). Every variant is meant to be read by a person; the variants that carry a
//! decoded length let a caller keep a file that broke mid-stream.
//!
//! Tokens never appear here: HTTP bodies are kept, request headers are not.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A specialised `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from any stage of the pipeline; see [`Error::kind`] for what went wrong.
pub struct Error(Box<ErrorKind>);

/// What went wrong. New variants may be added in minor releases.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing a file failed.
    Io {
        /// The file, when known.
        path: Option<PathBuf>,
        /// The underlying error.
        source: io::Error,
    },
    /// The input has no bytes at all.
    Empty {
        /// The file, when known.
        path: Option<PathBuf>,
    },
    /// The content matched no supported container or codec (probed by content, not by name).
    UnrecognizedFormat {
        /// The file, when known.
        path: Option<PathBuf>,
        /// What was seen, e.g. the first bytes.
        detail: String,
    },
    /// The format was recognised but this variant of it is not supported (codec, channel layout).
    Unsupported {
        /// The file, when known.
        path: Option<PathBuf>,
        /// What is not supported.
        what: String,
    },
    /// The stream's header or parameters are invalid (zero or absurd rate, channel count, sizes).
    Malformed {
        /// The file, when known.
        path: Option<PathBuf>,
        /// What is wrong.
        what: String,
    },
    /// The stream broke part way through. `decoded_frames` frames at `sample_rate` decoded
    /// cleanly before the break; the caller may keep or drop them.
    Truncated {
        /// The file, when known.
        path: Option<PathBuf>,
        /// Frames (per channel) that decoded cleanly before the break, at the input rate.
        decoded_frames: u64,
        /// The input sample rate that `decoded_frames` counts in.
        sample_rate: u32,
        /// What broke.
        what: String,
    },
    /// An option or argument is out of range.
    InvalidConfig {
        /// What is wrong with it.
        what: String,
    },
    /// Encoding audio for upload failed.
    Encode {
        /// What failed.
        what: String,
    },
    /// A network request could not be completed (connect, timeout, dropped connection), after
    /// every retry the policy allowed.
    Transport {
        /// The endpoint, e.g. `POST /asr`.
        endpoint: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last underlying error, as text.
        message: String,
    },
    /// The server answered with a final (non-retryable) status, or a retryable one after every
    /// retry the policy allowed.
    Api {
        /// The endpoint, e.g. `POST /asr`.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The response body (truncated), for the vendor's error entity.
        body: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The credentials were refused (401/403), after one token renewal.
    Auth {
        /// The endpoint.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The response body (truncated); never contains a token.
        body: String,
    },
    /// The organisation's minute allocation or quota is used up; never retried.
    QuotaExhausted {
        /// The endpoint.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The response body (truncated).
        body: String,
    },
    /// The presigned upload was refused by the storage service (S3 XML error).
    UploadRejected {
        /// The HTTP status code.
        status: u16,
        /// The S3 error code, e.g. `SignatureDoesNotMatch`.
        code: String,
        /// The S3 error message.
        message: String,
    },
    /// A response could not be understood.
    Parse {
        /// The endpoint.
        endpoint: String,
        /// What could not be parsed, with a short excerpt of the body.
        what: String,
    },
    /// The server reported that an async job failed.
    JobFailed {
        /// The server's file name of the job.
        file_name: String,
        /// The status the server reported.
        status: String,
    },
    /// The client stopped waiting for an async job; the job itself was not reported as failed.
    /// Polling can be resumed later, in this or another process, with `file_name`.
    PollDeadline {
        /// The server's file name of the job, to resume polling with.
        file_name: String,
        /// How long the client waited, in seconds.
        waited_secs: u64,
    },
    /// The work was abandoned: its caller stopped waiting (a dropped future, a cancelled
    /// batch). Nothing is wrong with the input; a later run does it.
    Cancelled,
    /// An output of a [`crate::batch`] could not be written where it belongs (a symbolic
    /// link or a file in the way, an output folder overlapping the inputs). The input is
    /// fine; a later run tries again.
    Output {
        /// The output path concerned.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A bug or a broken environment inside this crate (a worker thread that panicked or
    /// vanished). Not the input's fault; worth reporting.
    Internal {
        /// What failed.
        what: String,
    },
    /// The shared work queue of a [`crate::batch`] run by several workers (for example a
    /// Redis server) could not be reached or answered wrongly. Every further file would
    /// fail the same way, so the batch stops; a later run goes on where the job was.
    Queue {
        /// What failed, naming the queue's address (never its password).
        what: String,
    },
}

impl Error {
    /// Creates an error of the given kind.
    pub fn new(kind: ErrorKind) -> Error {
        Error(Box::new(kind))
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// Unwraps the kind.
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// Builds an [`ErrorKind::InvalidConfig`].
    pub fn config(what: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidConfig { what: what.into() })
    }

    /// Builds an [`ErrorKind::Io`] for `path`.
    pub fn io(path: Option<&Path>, source: io::Error) -> Error {
        Error::new(ErrorKind::Io {
            path: path.map(Path::to_path_buf),
            source,
        })
    }

    /// The file this error is about, when it is about one.
    pub fn path(&self) -> Option<&Path> {
        match &*self.0 {
            ErrorKind::Io { path, .. }
            | ErrorKind::Empty { path }
            | ErrorKind::UnrecognizedFormat { path, .. }
            | ErrorKind::Unsupported { path, .. }
            | ErrorKind::Malformed { path, .. }
            | ErrorKind::Truncated { path, .. } => path.as_deref(),
            ErrorKind::Output { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Attaches `path` to a file-related error that does not name one yet; other errors are
    /// returned unchanged.
    pub fn with_path(mut self, new: &Path) -> Error {
        match &mut *self.0 {
            ErrorKind::Io { path, .. }
            | ErrorKind::Empty { path }
            | ErrorKind::UnrecognizedFormat { path, .. }
            | ErrorKind::Unsupported { path, .. }
            | ErrorKind::Malformed { path, .. }
            | ErrorKind::Truncated { path, .. }
                if path.is_none() =>
            {
                *path = Some(new.to_path_buf());
            }
            _ => {}
        }
        self
    }

    /// Builds an [`ErrorKind::Output`].
    pub(crate) fn output(path: &Path, what: impl Into<String>) -> Error {
        Error::new(ErrorKind::Output {
            path: path.to_path_buf(),
            what: what.into(),
        })
    }

    /// Builds an [`ErrorKind::Internal`].
    pub(crate) fn internal(what: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal { what: what.into() })
    }

    // The error policy: the three questions below are the only place that decides what an
    // error means for retries and batches; the client's retry loop, the pipeline and the
    // batch runner ask them rather than matching kinds themselves.

    /// True when retrying the same call later may succeed (transport failures and server-side
    /// faults that outlived the retry policy). Final answers (4xx, bad input, quota) are false.
    pub fn is_transient(&self) -> bool {
        match &*self.0 {
            ErrorKind::Transport { .. } | ErrorKind::PollDeadline { .. } => true,
            ErrorKind::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// True when the input itself is at fault (empty, not audio, an unsupported variant,
    /// malformed, or broken part way): trying it again gives the same error until the file
    /// changes. Everything else may succeed on a later run.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            &*self.0,
            ErrorKind::Empty { .. }
                | ErrorKind::UnrecognizedFormat { .. }
                | ErrorKind::Unsupported { .. }
                | ErrorKind::Malformed { .. }
                | ErrorKind::Truncated { .. }
        )
    }

    /// True when every further call or file would fail the same way, so a batch should stop
    /// and leave the rest for a later run: credentials refused, the quota used up, invalid
    /// options, or the run cancelled. Also what makes one file stop sending its other
    /// requests.
    pub fn stops_batch(&self) -> bool {
        matches!(
            &*self.0,
            ErrorKind::Auth { .. }
                | ErrorKind::QuotaExhausted { .. }
                | ErrorKind::InvalidConfig { .. }
                | ErrorKind::Cancelled
                | ErrorKind::Queue { .. }
        )
    }

    /// The kind's name (`"Truncated"`, `"Auth"`, ...), stable across releases, for logs,
    /// summaries and metrics.
    pub fn kind_name(&self) -> &'static str {
        match &*self.0 {
            ErrorKind::Io { .. } => "Io",
            ErrorKind::Empty { .. } => "Empty",
            ErrorKind::UnrecognizedFormat { .. } => "UnrecognizedFormat",
            ErrorKind::Unsupported { .. } => "Unsupported",
            ErrorKind::Malformed { .. } => "Malformed",
            ErrorKind::Truncated { .. } => "Truncated",
            ErrorKind::InvalidConfig { .. } => "InvalidConfig",
            ErrorKind::Encode { .. } => "Encode",
            ErrorKind::Transport { .. } => "Transport",
            ErrorKind::Api { .. } => "Api",
            ErrorKind::Auth { .. } => "Auth",
            ErrorKind::QuotaExhausted { .. } => "QuotaExhausted",
            ErrorKind::UploadRejected { .. } => "UploadRejected",
            ErrorKind::Parse { .. } => "Parse",
            ErrorKind::JobFailed { .. } => "JobFailed",
            ErrorKind::PollDeadline { .. } => "PollDeadline",
            ErrorKind::Cancelled => "Cancelled",
            ErrorKind::Output { .. } => "Output",
            ErrorKind::Internal { .. } => "Internal",
            ErrorKind::Queue { .. } => "Queue",
        }
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error::new(kind)
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Error {
        Error::io(None, source)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

fn file(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            ErrorKind::Io { path, source } => write!(f, "{}I/O error: {source}", file(path)),
            ErrorKind::Empty { path } => write!(f, "{}the file is empty", file(path)),
            ErrorKind::UnrecognizedFormat { path, detail } => {
                write!(f, "{}not a recognised audio format ({detail})", file(path))
            }
            ErrorKind::Unsupported { path, what } => write!(f, "{}unsupported: {what}", file(path)),
            ErrorKind::Malformed { path, what } => write!(f, "{}malformed: {what}", file(path)),
            ErrorKind::Truncated {
                path,
                decoded_frames,
                sample_rate,
                what,
            } => {
                let secs = *decoded_frames as f64 / f64::from((*sample_rate).max(1));
                write!(
                    f,
                    "{}stream broke after {decoded_frames} frames ({secs:.3} s) decoded cleanly: {what}",
                    file(path)
                )
            }
            ErrorKind::InvalidConfig { what } => write!(f, "invalid configuration: {what}"),
            ErrorKind::Encode { what } => write!(f, "encoding failed: {what}"),
            ErrorKind::Transport {
                endpoint,
                attempts,
                message,
            } => write!(f, "{endpoint}: network failure after {attempts} attempt(s): {message}"),
            ErrorKind::Api {
                endpoint,
                status,
                body,
                attempts,
            } => write!(f, "{endpoint}: HTTP {status} after {attempts} attempt(s): {body}"),
            ErrorKind::Auth {
                endpoint,
                status,
                body,
            } => write!(f, "{endpoint}: credentials refused (HTTP {status}): {body}"),
            ErrorKind::QuotaExhausted {
                endpoint,
                status,
                body,
            } => write!(f, "{endpoint}: minute allocation or quota used up (HTTP {status}): {body}"),
            ErrorKind::UploadRejected {
                status,
                code,
                message,
            } => write!(f, "upload refused by storage (HTTP {status}, {code}): {message}"),
            ErrorKind::Parse { endpoint, what } => write!(f, "{endpoint}: unexpected response: {what}"),
            ErrorKind::JobFailed { file_name, status } => {
                write!(f, "async job {file_name} failed on the server (status {status:?})")
            }
            ErrorKind::PollDeadline {
                file_name,
                waited_secs,
            } => write!(
                f,
                "stopped waiting for async job {file_name} after {waited_secs} s; it may still finish: resume polling with its file name"
            ),
            ErrorKind::Cancelled => write!(f, "cancelled: the run was abandoned"),
            ErrorKind::Output { path, what } => {
                write!(f, "{}: cannot write the output: {what}", path.display())
            }
            ErrorKind::Internal { what } => write!(f, "internal error (a bug): {what}"),
            ErrorKind::Queue { what } => write!(f, "work queue: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            ErrorKind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_policy_for_retries_bad_inputs_and_batches() {
        let bad = Error::new(ErrorKind::Malformed {
            path: None,
            what: "rate 0".into(),
        });
        assert!(bad.is_bad_input() && !bad.is_transient() && !bad.stops_batch());
        assert_eq!(bad.kind_name(), "Malformed");
        let auth = Error::new(ErrorKind::Auth {
            endpoint: "POST /asr".into(),
            status: 401,
            body: String::new(),
        });
        assert!(auth.stops_batch() && !auth.is_bad_input() && !auth.is_transient());
        let down = Error::new(ErrorKind::Api {
            endpoint: "POST /asr".into(),
            status: 503,
            body: String::new(),
            attempts: 5,
        });
        assert!(down.is_transient() && !down.stops_batch() && !down.is_bad_input());
        let cancelled = Error::new(ErrorKind::Cancelled);
        assert!(cancelled.stops_batch() && !cancelled.is_bad_input());
        assert_eq!(cancelled.kind_name(), "Cancelled");
        let bug = Error::internal("decoding thread failed");
        assert!(!bug.stops_batch() && !bug.is_bad_input() && !bug.is_transient());
        assert!(bug.to_string().contains("decoding thread failed"));
        assert!(!matches!(bug.kind(), ErrorKind::InvalidConfig { .. }));
    }

    #[test]
    fn display_names_the_file() {
        let e = Error::new(ErrorKind::Empty { path: None }).with_path(Path::new("calls/a b.wav"));
        assert_eq!(e.to_string(), "calls/a b.wav: the file is empty");
        assert_eq!(e.path(), Some(Path::new("calls/a b.wav")));
    }

    #[test]
    fn with_path_keeps_the_first_path() {
        let e = Error::io(Some(Path::new("x.wav")), io::ErrorKind::NotFound.into())
            .with_path(Path::new("y"));
        assert_eq!(e.path(), Some(Path::new("x.wav")));
    }

    #[test]
    fn transient_only_for_retryable_faults() {
        let api = |status| {
            Error::new(ErrorKind::Api {
                endpoint: "POST /asr".into(),
                status,
                body: String::new(),
                attempts: 1,
            })
        };
        assert!(api(503).is_transient());
        assert!(api(429).is_transient());
        assert!(!api(400).is_transient());
        assert!(!Error::config("x").is_transient());
    }

    #[test]
    fn truncated_reports_clean_duration() {
        let e = Error::new(ErrorKind::Truncated {
            path: Some("a.flac".into()),
            decoded_frames: 48_000,
            sample_rate: 16_000,
            what: "bad frame".into(),
        });
        assert!(e.to_string().contains("3.000 s"), "{e}");
    }
}
