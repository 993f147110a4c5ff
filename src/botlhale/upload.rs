//! Streaming a file to a presigned S3 POST form.
//!
//! S3's browser-POST protocol wants a `multipart/form-data` body with every form field first,
//! in order, and the file as the last part, named `file`; it refuses chunked bodies. So the
//! body is built by hand as a stream: the prefix (all fields and the file part's header, a
//! few KB), the file read from disk in 64 KiB chunks, and the suffix (the closing boundary),
//! with an exact `Content-Length` computed up front. Memory stays at a few chunks whatever the
//! file size. The body is rebuilt, and the file reopened, for every attempt.
//!
//! A refused upload answers an S3 XML error (`<Error><Code>…</Code><Message>…</Message>`),
//! reported as [`ErrorKind::UploadRejected`].

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::types::PresignedPost;
use super::Watch;
use super::{h1, Attempt, Call, Client};
use crate::error::{Error, ErrorKind, Result};

/// Chunk size of the file stream.
const CHUNK: usize = 64 * 1024;

/// [`UploadProgress`] is called at most once per this many file bytes (and at the end).
pub const PROGRESS_STEP: u64 = 1024 * 1024;

/// A callback told how far an upload has got: `(file bytes sent, file length)`. Called
/// about every MiB and once when the whole file has been sent; counts
/// restart from 0 on a retried attempt. It runs on the runtime: keep it short.
#[derive(Clone)]
pub struct UploadProgress(Arc<dyn Fn(u64, u64) + Send + Sync>);

impl UploadProgress {
    /// Wraps a callback `f(sent, total)`.
    pub fn new(f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        UploadProgress(Arc::new(f))
    }

    /// Calls the callback.
    pub fn report(&self, sent: u64, total: u64) {
        (self.0)(sent, total)
    }
}

impl std::fmt::Debug for UploadProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadProgress(..)")
    }
}

/// The fixed parts of a streamed multipart body around the file.
///
/// Its `Debug` prints lengths only: the prefix holds every form field verbatim, and the
/// policy, signature, credential and session token are credentials.
#[derive(Clone)]
pub struct MultipartPlan {
    /// The boundary (without the leading dashes).
    pub boundary: String,
    /// Every field, then the file part's header.
    pub prefix: Bytes,
    /// The closing boundary.
    pub suffix: Bytes,
    /// The file's length.
    pub file_len: u64,
}

impl std::fmt::Debug for MultipartPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartPlan")
            .field("boundary", &self.boundary)
            .field("prefix_len", &self.prefix.len())
            .field("suffix_len", &self.suffix.len())
            .field("file_len", &self.file_len)
            .finish()
    }
}

/// True for a presigned form field whose value is a credential (policy, signature,
/// credential, session token, access key id): such values are never printed.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    matches!(
        n.as_str(),
        "policy" | "signature" | "awsaccesskeyid" | "x-amz-signature" | "x-amz-credential"
    ) || n.contains("security-token")
        || n.contains("signature")
        || n.contains("credential")
}

/// Escapes a value for a `Content-Disposition` quoted string the way browsers do.
fn quote(s: &str) -> String {
    s.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

impl MultipartPlan {
    /// Lays out `fields` (in order), then the file part `file` named `file_name` of type
    /// `mime` and `file_len` bytes.
    pub fn new(fields: &[(String, String)], file_name: &str, mime: &str, file_len: u64) -> Self {
        let boundary = loop {
            let b = format!(
                "asr-pipeline-{:016x}{:016x}",
                fastrand::u64(..),
                fastrand::u64(..)
            );
            if !fields.iter().any(|(k, v)| k.contains(&b) || v.contains(&b)) {
                break b;
            }
        };
        let mut prefix = String::new();
        for (k, v) in fields {
            prefix.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{v}\r\n",
                quote(k)
            ));
        }
        prefix.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            quote(file_name),
            quote(mime)
        ));
        let suffix = format!("\r\n--{boundary}--\r\n");
        MultipartPlan {
            boundary,
            prefix: Bytes::from(prefix),
            suffix: Bytes::from(suffix),
            file_len,
        }
    }

    /// The exact body length.
    pub fn content_length(&self) -> u64 {
        self.prefix.len() as u64 + self.file_len + self.suffix.len() as u64
    }

    /// The `Content-Type` header value.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The body as a stream that opens `path` itself (asynchronously, on tokio's blocking
    /// pool) when first polled: a request builder needs no file I/O on the runtime thread.
    /// An open failure ends the body with that error.
    /// With `progress`, reports the file bytes sent (see [`UploadProgress`]).
    pub fn body_stream_from_path(
        &self,
        path: std::path::PathBuf,
        progress: Option<UploadProgress>,
        watch: Option<Watch>,
    ) -> futures_util::stream::BoxStream<'static, io::Result<Bytes>> {
        let plan = self.clone();
        let s = stream::once(async move { tokio::fs::File::open(&path).await })
            .map(move |r| match r {
                Ok(file) => plan
                    .stream_with_progress(file, progress.clone(), watch.clone())
                    .left_stream(),
                Err(e) => {
                    stream::once(std::future::ready(Err::<Bytes, io::Error>(e))).right_stream()
                }
            })
            .flatten();
        s.boxed()
    }

    /// The body as a stream of chunks over an open file.
    #[cfg(test)]
    pub fn stream(
        &self,
        file: tokio::fs::File,
    ) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
        self.stream_with_progress(file, None, None)
    }

    /// [`MultipartPlan::stream`], reporting the file bytes sent to `progress` about every
    /// [`PROGRESS_STEP`] and when the whole file has gone.
    pub fn stream_with_progress(
        &self,
        file: tokio::fs::File,
        progress: Option<UploadProgress>,
        watch: Option<Watch>,
    ) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
        let expected = self.file_len;
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let file_stream = ReaderStream::with_capacity(file.take(expected), CHUNK).map(move |r| {
            if let Ok(b) = &r {
                let n = b.len() as u64;
                let before = counter.fetch_add(n, Ordering::Relaxed);
                let now = before + n;
                if let Some(w) = &watch {
                    // The transport pulls the next chunk only when the previous one is on
                    // its way: pulls are progress.
                    w.moved();
                    if now >= expected {
                        w.finished();
                    }
                }
                if let Some(p) = &progress {
                    if now / PROGRESS_STEP > before / PROGRESS_STEP || now == expected {
                        p.report(now, expected);
                    }
                }
            }
            r
        });
        let suffix = self.suffix.clone();
        let tail = stream::once(async move {
            let got = seen.load(Ordering::Relaxed);
            if got == expected {
                Ok(suffix)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file shrank while uploading: {got} of {expected} bytes"),
                ))
            }
        });
        stream::once(std::future::ready(Ok::<Bytes, io::Error>(
            self.prefix.clone(),
        )))
        .chain(file_stream)
        .chain(tail)
    }
}

/// The `<Code>` and `<Message>` of an S3 XML error body, when it is one.
pub fn parse_s3_error(body: &str) -> Option<(String, String)> {
    fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = s.find(&open)? + open.len();
        let end = s[start..].find(&close)? + start;
        Some(&s[start..end])
    }
    if !body.contains("<Error>") {
        return None;
    }
    let code = tag(body, "Code")?;
    let message = tag(body, "Message").unwrap_or("");
    Some((xml_unescape(code), xml_unescape(message)))
}

/// True for S3's `400 RequestTimeout`: the body stopped coming for a while. That is the
/// network, not a refusal of the form, and the upload is worth another attempt.
pub(crate) fn is_stalled_body(status: u16, body: &[u8]) -> bool {
    status == 400
        && parse_s3_error(&String::from_utf8_lossy(body))
            .is_some_and(|(code, _)| code == "RequestTimeout")
}

/// Replaces every credential value of `form` found in `s` with `***`.
fn scrub(s: &str, form: &PresignedPost) -> String {
    let mut s = s.to_string();
    for (k, v) in &form.fields {
        if is_secret_field(k) && v.len() >= 4 {
            s = s.replace(v.as_str(), "***");
        }
    }
    s
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// True when an upload refusal means the form (or its session token) expired.
pub fn is_expiry_rejection(code: &str, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    matches!(
        code,
        "ExpiredToken" | "RequestExpired" | "TokenRefreshRequired" | "ExpiredPolicy"
    ) || (code == "AccessDenied" && (m.contains("expired") || m.contains("expiration")))
}

/// The policy's `expiration`, decoded from the base64 `policy` field, if it has one.
pub fn policy_expiration(form: &PresignedPost) -> Option<SystemTime> {
    let policy = form.field("policy").or_else(|| form.field("Policy"))?;
    let json = base64_decode(policy)?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    parse_iso8601(v.get("expiration")?.as_str()?)
}

/// Decodes standard base64 (padding optional); `None` on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b'\r' | b'\n' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (the form S3 policies use) as UTC.
fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.trim().strip_suffix('Z').unwrap_or(s.trim());
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// A form with the time the client received it.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedForm {
    pub form: PresignedPost,
    pub received: tokio::time::Instant,
}

impl ReceivedForm {
    pub fn new(form: PresignedPost) -> Self {
        ReceivedForm {
            form,
            received: tokio::time::Instant::now(),
        }
    }
}

impl Client {
    /// True when `f` should be replaced before uploading: older than the configured maximum
    /// age, or its policy expires within the margin.
    pub(crate) fn form_is_stale(&self, f: &ReceivedForm) -> bool {
        if f.received.elapsed() >= self.inner.form_max_age {
            return true;
        }
        match policy_expiration(&f.form) {
            Some(exp) => SystemTime::now() + self.inner.form_expiry_margin >= exp,
            None => false,
        }
    }

    /// Streams the file at `path` to a presigned POST form: every field verbatim and in
    /// order, then the file as the last part `file`. Retries as the policy says (the file is
    /// reopened per attempt). A refusal is [`ErrorKind::UploadRejected`].
    pub async fn upload_to_form(
        &self,
        form: &PresignedPost,
        path: &Path,
        mime: &str,
    ) -> Result<()> {
        self.upload_to_form_with_progress(form, path, mime, None)
            .await
    }

    /// [`Client::upload_to_form`], reporting the file bytes sent to `progress` (see
    /// [`UploadProgress`]).
    pub async fn upload_to_form_with_progress(
        &self,
        form: &PresignedPost,
        path: &Path,
        mime: &str,
        progress: Option<UploadProgress>,
    ) -> Result<()> {
        const EP: &str = "POST presigned upload";
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::io(Some(path), e))?;
        if !meta.is_file() {
            return Err(Error::io(
                Some(path),
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        let file_name = super::sync::safe_file_name(
            &path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "audio".into()),
        );
        self.remember_form_secrets(form);
        let plan = MultipartPlan::new(&form.fields, &file_name, mime, meta.len());
        let len = plan.content_length();
        let url = form.url.clone();
        let slot = Arc::new(std::sync::Mutex::new(None));
        let result = self
            .send(
                Call {
                    endpoint: EP,
                    auth: false,
                    detect_quota: false,
                    timeout: None,
                    watch: Some(slot.clone()),
                },
                |http| {
                    // A fresh watch per attempt: the body stream reports to it.
                    let watch = self.upload_watch();
                    if let Ok(mut g) = slot.lock() {
                        *g = Some(watch.clone());
                    }
                    // The file is (re)opened by the body stream itself, off the runtime
                    // thread; `metadata` above already checked it is there.
                    let body = plan.body_stream_from_path(
                        path.to_path_buf(),
                        progress.clone(),
                        Some(watch),
                    );
                    if h1::proxied(&url) {
                        return Ok(Attempt::Reqwest(
                            http.post(&url)
                                .header(reqwest::header::CONTENT_TYPE, plan.content_type())
                                .header(reqwest::header::CONTENT_LENGTH, len)
                                .body(reqwest::Body::wrap_stream(body)),
                        ));
                    }
                    let url = url::Url::parse(&url).map_err(|e| {
                        Error::config(format!("{EP}: the form's URL does not parse: {e}"))
                    })?;
                    Ok(Attempt::Own(h1::Post {
                        url,
                        headers: vec![
                            ("Content-Type", plan.content_type()),
                            ("Content-Length", len.to_string()),
                            ("User-Agent", self.inner.user_agent.clone()),
                        ],
                        body,
                        connect_timeout: self.inner.connect_timeout,
                        max_body: super::MAX_BODY,
                    }))
                },
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.into_kind() {
                ErrorKind::Api { status, body, .. } => {
                    // Keep S3's Code and Message only (never the rest of the document, which
                    // can echo form fields); a body that is not an S3 error is withheld.
                    let (code, message) = parse_s3_error(&body).unwrap_or_else(|| {
                        (
                            format!("HTTP{status}"),
                            format!(
                                "not an S3 error document; body withheld: may contain \
                                 credentials ({} bytes)",
                                body.len()
                            ),
                        )
                    });
                    Error::new(ErrorKind::UploadRejected {
                        status,
                        code: scrub(&code, form),
                        message: scrub(&message, form),
                    })
                }
                other => Error::new(other),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plans_debug_shows_lengths_not_the_form_fields() {
        let fields = vec![
            ("key".to_string(), "uploads/a.wav".to_string()),
            ("policy".to_string(), "c2VjcmV0LXBvbGljeQ==".to_string()),
            ("x-amz-signature".to_string(), "deadbeefcafe".to_string()),
        ];
        let dbg = format!("{:?}", MultipartPlan::new(&fields, "a.wav", "audio/wav", 5));
        assert!(
            !dbg.contains("c2VjcmV0LXBvbGljeQ==") && !dbg.contains("deadbeefcafe"),
            "{dbg}"
        );
    }

    #[test]
    fn multipart_layout_is_exact_and_ordered() {
        let fields = vec![
            ("key".to_string(), "asr_1.wav".to_string()),
            ("policy".to_string(), "cG9s".to_string()),
            ("x-amz-signature".to_string(), "ab\"c".to_string()),
        ];
        let p = MultipartPlan::new(&fields, "a.wav", "audio/wav", 5);
        let prefix = std::str::from_utf8(&p.prefix).unwrap();
        let i_key = prefix.find("name=\"key\"").unwrap();
        let i_pol = prefix.find("name=\"policy\"").unwrap();
        let i_sig = prefix.find("name=\"x-amz-signature\"").unwrap();
        let i_file = prefix.find("name=\"file\"; filename=\"a.wav\"").unwrap();
        assert!(i_key < i_pol && i_pol < i_sig && i_sig < i_file);
        // Values are verbatim.
        assert!(prefix.contains("\r\n\r\nab\"c\r\n"));
        assert!(prefix.ends_with("Content-Type: audio/wav\r\n\r\n"));
        assert_eq!(
            std::str::from_utf8(&p.suffix).unwrap(),
            format!("\r\n--{}--\r\n", p.boundary)
        );
        assert_eq!(
            p.content_length(),
            p.prefix.len() as u64 + 5 + p.suffix.len() as u64
        );
    }

    #[tokio::test]
    async fn body_stream_matches_content_length_and_catches_short_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let fields = vec![("key".to_string(), "k".to_string())];
        let plan = MultipartPlan::new(
            &fields,
            "x.bin",
            "application/octet-stream",
            data.len() as u64,
        );
        let body = collect(plan.stream(tokio::fs::File::open(&path).await.unwrap()))
            .await
            .unwrap();
        assert_eq!(body.len() as u64, plan.content_length());
        assert_eq!(
            &body[plan.prefix.len()..plan.prefix.len() + data.len()],
            &data[..]
        );
        // The plan claims more than the file holds: the stream errors instead of ending short.
        let lying = MultipartPlan::new(&fields, "x.bin", "a/b", data.len() as u64 + 10);
        assert!(
            collect(lying.stream(tokio::fs::File::open(&path).await.unwrap()))
                .await
                .is_err()
        );
    }

    async fn collect(
        s: impl futures_util::Stream<Item = io::Result<Bytes>>,
    ) -> io::Result<Vec<u8>> {
        let mut s = std::pin::pin!(s);
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[test]
    fn s3_errors_and_expiry() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message><RequestId>1</RequestId></Error>";
        let (c, m) = parse_s3_error(body).unwrap();
        assert_eq!(c, "AccessDenied");
        assert!(is_expiry_rejection(&c, &m));
        let (c, m) = parse_s3_error(
            "<Error><Code>SignatureDoesNotMatch</Code><Message>a &amp; b</Message></Error>",
        )
        .unwrap();
        assert_eq!(m, "a & b");
        assert!(!is_expiry_rejection(&c, &m));
        assert!(is_expiry_rejection("ExpiredToken", ""));
        assert!(!is_expiry_rejection(
            "AccessDenied",
            "Invalid according to Policy: Policy Condition failed"
        ));
        assert_eq!(parse_s3_error("{\"json\":1}"), None);
    }

    /// 2026-11-23T12:00:00Z (computed independently with Python's calendar.timegm).
    const EXP_2026_11_23_NOON: u64 = 1_795_435_200;

    #[test]
    fn policy_expiration_is_decoded() {
        // {"expiration": "2026-11-23T12:00:00.000Z", "conditions": []}
        let policy =
            "eyJleHBpcmF0aW9uIjogIjIwMjYtMTEtMjNUMTI6MDA6MDAuMDAwWiIsICJjb25kaXRpb25zIjogW119";
        let form = PresignedPost::new("u", vec![("policy".into(), policy.into())]);
        let exp = policy_expiration(&form).unwrap();
        assert_eq!(
            exp.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            EXP_2026_11_23_NOON
        );
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_iso8601("2000-03-01T00:00:01Z"),
            Some(UNIX_EPOCH + Duration::from_secs(951_868_801))
        );
        assert_eq!(parse_iso8601("garbage"), None);
        assert_eq!(policy_expiration(&PresignedPost::new("u", vec![])), None);
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("a*"), None);
    }
}
