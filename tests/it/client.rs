//! Integration tests of the client against a small scripted server in this file (an axum
//! handler on 127.0.0.1): every endpoint, every error kind, token minting and renewal, form
//! expiry, the data-path fallback, the poller and its deadline, retries (counted from the
//! server's request log) and the concurrency limit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asr_pipeline::botlhale::{
    AsyncUpload, ChatMessage, ChatSender, ChatUpload, Client, Credentials, JobStatus, Language,
    MessageRequest, PollOptions, ResponseType, RetryPolicy, Secret, StartConversation, SyncRequest,
    TimeReading, TranslateRequest, TtsRequest, VelaCallUpload, VelaMetadata,
};
use asr_pipeline::ErrorKind;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;

const REFRESH: &str = "refresh-SECRET-1234";
const ORG: &str = "org-42";

/// A canned answer queued for a path, served before the normal behaviour.
#[derive(Clone)]
enum Canned {
    Status(u16, Vec<(&'static str, String)>, String),
    /// Sends 200 headers, then breaks the body: the client sees a dropped connection.
    Drop,
    /// Waits, then answers normally.
    Delay(Duration),
}

/// (method, path, `Authorization` header).
type LogEntry = (String, String, Option<String>);
/// (part names in order, file bytes) of a stored upload.
type Upload = (Vec<String>, Vec<u8>);

#[derive(Default)]
struct Mock {
    base: Mutex<String>,
    /// (method, path, authorization header) of every request, in order.
    log: Mutex<Vec<LogEntry>>,
    canned: Mutex<HashMap<String, VecDeque<Canned>>>,
    minted: AtomicUsize,
    valid_tokens: Mutex<HashSet<String>>,
    expires_in: Mutex<u64>,
    /// Seconds from now to the expiration of issued forms (negative: already expired).
    form_valid_secs: Mutex<i64>,
    /// Validity of the next forms, before falling back to `form_valid_secs`.
    form_valid_queue: Mutex<VecDeque<i64>>,
    /// Keys the storage refuses as expired (once each).
    s3_expire_keys: Mutex<HashSet<String>>,
    /// key → (part names in order, file bytes).
    uploads: Mutex<HashMap<String, Upload>>,
    forms_issued: AtomicUsize,
    /// Status polls before a job completes; `usize::MAX` never.
    polls_to_complete: Mutex<usize>,
    polls: AtomicUsize,
    fail_job: Mutex<bool>,
    data_404: Mutex<bool>,
    data_body: Mutex<Option<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    quota_exhausted: Mutex<bool>,
    /// Seeded fault injection on every endpoint but token minting: (rate, rng).
    faults: Mutex<Option<(f64, fastrand::Rng)>>,
    /// The `Text` field of every `/translate` request, in order (to count attempts per call).
    translate_texts: Mutex<Vec<String>>,
}

impl Mock {
    fn count(&self, method: &str, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == method && p == path)
            .count()
    }
    fn push(&self, path: &str, c: Canned) {
        self.canned
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .push_back(c);
    }
}

fn json(status: u16, v: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Splits a multipart body into (name, filename, value) parts, in order.
fn multipart(headers: &HeaderMap, body: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(b) = ct.split("boundary=").nth(1) else {
        return vec![];
    };
    let delim = format!("--{}", b.trim_matches('"'));
    let mut out = Vec::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    while let Some(i) = find(rest, delim.as_bytes()) {
        rest = &rest[i + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let rest2 = &rest[2..];
        let Some(h_end) = find(rest2, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest2[..h_end]).to_string();
        let content = &rest2[h_end + 4..];
        let next = find(content, format!("\r\n{delim}").as_bytes()).unwrap_or(content.len());
        let name = head
            .split("name=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        let filename = head
            .split("filename=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(str::to_string);
        out.push((name, filename, content[..next].to_vec()));
        rest = &content[next..];
    }
    out
}

fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn handler(
    State(m): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    m.log
        .lock()
        .unwrap()
        .push((method.to_string(), path.clone(), auth.clone()));
    let now = m.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    m.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let r = respond(&m, &method, &uri, &headers, &body, auth).await;
    m.in_flight.fetch_sub(1, Ordering::SeqCst);
    r
}

async fn respond(
    m: &Arc<Mock>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    auth: Option<String>,
) -> Response {
    let path = uri.path();
    let canned = m
        .canned
        .lock()
        .unwrap()
        .get_mut(path)
        .and_then(VecDeque::pop_front);
    match canned {
        Some(Canned::Status(s, hs, b)) => {
            let mut r = (StatusCode::from_u16(s).unwrap(), b).into_response();
            for (k, v) in hs {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            return r;
        }
        Some(Canned::Drop) => {
            let s = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("dropped"))
            });
            return Response::new(Body::from_stream(s));
        }
        Some(Canned::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    if path == "/translate" {
        let text = form_fields(body).remove("Text").unwrap_or_default();
        m.translate_texts.lock().unwrap().push(text);
    }
    if path != "/generateAuthToken" {
        let fault = m
            .faults
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|(rate, rng)| (rng.f64() < *rate).then(|| rng.u8(0..4)));
        match fault {
            Some(0) => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "0")],
                    "slow down",
                )
                    .into_response()
            }
            Some(1) => return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
            Some(2) => return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response(),
            Some(_) => {
                let s = futures_util::stream::once(async {
                    Err::<Bytes, std::io::Error>(std::io::Error::other("dropped"))
                });
                return Response::new(Body::from_stream(s));
            }
            None => {}
        }
    }
    let base = m.base.lock().unwrap().clone();
    if path == "/generateAuthToken" {
        let f = form_fields(body);
        if f.get("REFRESH_TOKEN").map(String::as_str) != Some(REFRESH) {
            return json(401, serde_json::json!({"message": "bad refresh token"}));
        }
        let n = m.minted.fetch_add(1, Ordering::SeqCst) + 1;
        let tok = format!("idtoken-{n}");
        m.valid_tokens.lock().unwrap().insert(tok.clone());
        let exp = *m.expires_in.lock().unwrap();
        return json(
            200,
            serde_json::json!({"AuthenticationResult": {"AccessToken": "a", "ExpiresIn": exp,
                "IdToken": tok, "RefreshToken": REFRESH, "TokenType": "Bearer"}}),
        );
    }
    if path == "/s3" {
        let parts = multipart(headers, body);
        let names: Vec<String> = parts.iter().map(|p| p.0.clone()).collect();
        let key = parts
            .iter()
            .find(|p| p.0 == "key")
            .map(|p| String::from_utf8_lossy(&p.2).to_string())
            .unwrap_or_default();
        if names.last().map(String::as_str) != Some("file") {
            return (
                StatusCode::BAD_REQUEST,
                "<Error><Code>InvalidArgument</Code><Message>file must be last</Message></Error>",
            )
                .into_response();
        }
        if m.s3_expire_keys.lock().unwrap().remove(&key) {
            return (StatusCode::FORBIDDEN, "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message></Error>").into_response();
        }
        let sig = parts
            .iter()
            .find(|p| p.0 == "signature")
            .map(|p| p.2.clone());
        if sig.as_deref() != Some(b"sig-ok".as_slice()) {
            return (StatusCode::FORBIDDEN, "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>").into_response();
        }
        let file = parts.last().map(|p| p.2.clone()).unwrap_or_default();
        m.uploads.lock().unwrap().insert(key, (names, file));
        return StatusCode::NO_CONTENT.into_response();
    }
    // Everything else needs a valid IdToken.
    let token = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    if !m.valid_tokens.lock().unwrap().contains(token) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let form_answer = |m: &Mock| {
        let n = m.forms_issued.fetch_add(1, Ordering::SeqCst) + 1;
        let queued = m.form_valid_queue.lock().unwrap().pop_front();
        let valid = queued.unwrap_or(*m.form_valid_secs.lock().unwrap());
        let exp = if valid >= 0 {
            SystemTime::now() + Duration::from_secs(valid as u64)
        } else {
            SystemTime::now() - Duration::from_secs((-valid) as u64)
        };
        let policy = base64::engine::general_purpose::STANDARD
            .encode(serde_json::json!({"expiration": rfc3339(exp), "conditions": []}).to_string());
        // Field order on the wire: AWSAccessKeyId, key, policy, signature, token.
        let body = format!(
            r#"{{"fields": {{"AWSAccessKeyId": "AKIA", "key": "asr_job{n}_16000.wav", "policy": "{policy}", "signature": "sig-ok", "x-amz-security-token": "sts"}}, "url": "{base}/s3"}}"#
        );
        (StatusCode::OK, body).into_response()
    };
    match (method.as_str(), path) {
        ("POST", "/asr") => {
            let parts = multipart(headers, body);
            let file = parts.iter().find(|p| p.0 == "SpeechFile");
            let rate = parts.iter().find(|p| p.0 == "SampleRate");
            let lang = parts
                .iter()
                .find(|p| p.0 == "LanguageCode")
                .map(|p| String::from_utf8_lossy(&p.2).to_string());
            match (file, rate) {
                (Some(f), Some(r)) => json(
                    200,
                    serde_json::json!({"DateReceived": "09/03/2023 11:21:07",
                        "LanguageCode": lang.unwrap_or_else(|| "zu-ZA".into()),
                        "NewSampleRate": String::from_utf8_lossy(&r.2),
                        "SpeechFile": format!("asr_{}", f.1.clone().unwrap_or_default()),
                        "Transcription": format!("bytes={}", f.2.len())}),
                ),
                _ => json(
                    400,
                    serde_json::json!({"error": {"code": 1001, "description": "SpeechFile and SampleRate are required"}}),
                ),
            }
        }
        ("POST", "/asr/async/upload") => {
            let parts = multipart(headers, body);
            if !parts
                .iter()
                .any(|p| p.0 == "OrgID" && p.2 == ORG.as_bytes())
            {
                return json(400, serde_json::json!({"error": "OrgID"}));
            }
            form_answer(m)
        }
        ("POST", "/asr/async/upload/vela") => {
            if *m.quota_exhausted.lock().unwrap() {
                return json(
                    403,
                    serde_json::json!({"message": "Organisation has exceeded its minute_allocation"}),
                );
            }
            let parts = multipart(headers, body);
            let meta = parts.iter().find(|p| p.0 == "metadata");
            if let Some(meta) = meta {
                let v: serde_json::Value = serde_json::from_slice(&meta.2).unwrap();
                assert!(v.get("email").is_some());
            }
            form_answer(m)
        }
        ("GET", "/asr/async/status") => {
            let q = form_fields(uri.query().unwrap_or("").as_bytes());
            let name = q.get("FileName").cloned().unwrap_or_default();
            let n = m.polls.fetch_add(1, Ordering::SeqCst) + 1;
            let status = if *m.fail_job.lock().unwrap() {
                "failed"
            } else if n >= *m.polls_to_complete.lock().unwrap() {
                "completed"
            } else {
                "running"
            };
            let body = format!(
                r#"{{"data":[{{"OrgID":"{ORG}","id":207891841473145364,"process":"{name}","processTime":"processTime","status":"{status}"}}]}}"#
            );
            (StatusCode::OK, body).into_response()
        }
        ("GET", "/asr/async/data") if *m.data_404.lock().unwrap() => {
            StatusCode::NOT_FOUND.into_response()
        }
        ("GET", "/asr/async/data") | ("GET", "/asr/async/getdata") => {
            let body = m.data_body.lock().unwrap().clone().unwrap_or_else(|| {
                r#"{"audio_length": "30.0", "filename": "/x.wav", "status": "complete",
                    "time": {"diarization": 6.8, "recognition": 4.1},
                    "timestamps": [
                      {"start": 660.0000000000003, "end": 1260.0000000000005, "speaker": "speaker_0", "language": "nso-ZA", "transcription": "a"},
                      {"start": 29220.00000000035, "end": 30000.000000000353, "speaker": "speaker_1", "language": "nso-ZA", "transcription": "b"}]}"#
                    .to_string()
            });
            (StatusCode::OK, body).into_response()
        }
        ("POST", "/vela/chats") => {
            let parts = multipart(headers, body);
            let chats = parts.iter().find(|p| p.0 == "chats").unwrap();
            let v: Vec<serde_json::Value> = serde_json::from_slice(&chats.2).unwrap();
            json(
                200,
                serde_json::json!({"status": "ok", "messages": v.len()}),
            )
        }
        ("POST", "/startConversation") => {
            let f = form_fields(body);
            json(
                200,
                serde_json::json!({"ConversationID": f.get("ConversationID").cloned().unwrap_or_else(|| "conv-1".into()),
                    "LanguageCode": "English", "UserID": "u-1"}),
            )
        }
        ("POST", "/message") => {
            let parts = multipart(headers, body);
            let get = |n: &str| {
                parts
                    .iter()
                    .find(|p| p.0 == n)
                    .map(|p| String::from_utf8_lossy(&p.2).to_string())
            };
            let speech = get("MessageType").as_deref() == Some("speech");
            let mut v = serde_json::json!({"BotID": get("BotID"), "Buttons": [{"payload": "/small", "title": "Small"}],
                "Confidence": "0.99", "ConversationID": get("ConversationID"), "DateReceived": "16/06/2021 10:36:26",
                "Entities": [], "Intent": "order", "LanguageCode": "en-ZA", "MessageID": "m1",
                "TextMsg": get("TextMsg"), "TextResponse": ["What size?"]});
            if speech {
                let len = parts
                    .iter()
                    .find(|p| p.0 == "SpeechFile")
                    .map_or(0, |p| p.2.len());
                v["Transcription"] = format!("speech bytes={len}").into();
            }
            if get("ResponseType").as_deref() == Some("speech") {
                v["SpeechResponseURL"] = "http://x/reply.wav".into();
            }
            json(200, v)
        }
        ("POST", "/translate") => {
            let f = form_fields(body);
            let text = f.get("Text").cloned().unwrap_or_default();
            json(
                200,
                serde_json::json!({"Characters": text.chars().count(), "DateReceived": "d", "Translation": format!("EN({text})")}),
            )
        }
        ("POST", "/tts") => {
            let f = form_fields(body);
            let lang = asr_pipeline::botlhale::Language::parse(f.get("LanguageCode").unwrap());
            json(
                200,
                serde_json::json!({"DateReceived": "d", "LanguageCode": lang.name(), "SpeechResponseURL": "http://x/tts.wav", "TextMsg": f.get("TextMsg")}),
            )
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start() -> (Arc<Mock>, String) {
    let m = Arc::new(Mock::default());
    *m.expires_in.lock().unwrap() = 3600;
    *m.form_valid_secs.lock().unwrap() = 3600;
    *m.polls_to_complete.lock().unwrap() = 3;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *m.base.lock().unwrap() = base.clone();
    let app = axum::Router::new().fallback(handler).with_state(m.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (m, base)
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(
        attempts,
        Duration::from_millis(5),
        Duration::from_millis(20),
    )
}

fn client(base: &str) -> Client {
    Client::builder()
        .base_url(base)
        .credentials(Credentials::RefreshToken(Secret::new(REFRESH)))
        .org_id(ORG)
        .retry(fast_retry(4))
        .chats_path("/vela/chats")
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn fast_poll(deadline: Duration) -> PollOptions {
    PollOptions::default().with_delays(
        Duration::from_millis(5),
        Duration::from_millis(20),
        deadline,
    )
}

fn rate() -> NonZeroU32 {
    NonZeroU32::new(16_000).unwrap()
}

fn temp_audio(len: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    (dir, path, data)
}

#[tokio::test]
async fn sync_transcription_mints_a_token_and_sends_the_form() {
    let (m, base) = start().await;
    let c = client(&base);
    let r = c
        .transcribe_sync(
            SyncRequest::new(vec![1u8; 1234], "clip.wav", rate()).language(Language::IsiXhosa),
        )
        .await
        .unwrap();
    assert_eq!(r.transcription, "bytes=1234");
    assert_eq!(r.language, Some(Language::IsiXhosa));
    assert_eq!(r.new_sample_rate, Some(16_000));
    assert_eq!(r.speech_file.as_deref(), Some("asr_clip.wav"));
    assert_eq!(m.minted.load(Ordering::SeqCst), 1);
    // The token is reused.
    c.transcribe_sync(SyncRequest::new(vec![0u8; 10], "b.wav", rate()))
        .await
        .unwrap();
    assert_eq!(m.minted.load(Ordering::SeqCst), 1);
    let log = m.log.lock().unwrap();
    assert_eq!(log[1].2.as_deref(), Some("Bearer idtoken-1"));
}

#[tokio::test]
async fn async_upload_streams_fields_in_order_then_polls_and_falls_back_to_getdata() {
    let (m, base) = start().await;
    *m.data_404.lock().unwrap() = true;
    let c = client(&base);
    let (_d, path, data) = temp_audio(200_000);
    let job = c
        .upload_async(AsyncUpload::new(&path, rate()).diarization(true))
        .await
        .unwrap();
    assert_eq!(job.file_name, "asr_job1_16000.wav");
    assert_eq!(job.form_renewals, 0);
    {
        let uploads = m.uploads.lock().unwrap();
        let (names, bytes) = &uploads["asr_job1_16000.wav"];
        assert_eq!(
            names,
            &[
                "AWSAccessKeyId",
                "key",
                "policy",
                "signature",
                "x-amz-security-token",
                "file"
            ]
        );
        assert!(bytes == &data, "uploaded bytes differ");
    }
    // The S3 upload carries no bearer token.
    assert!(m
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|(meth, p, a)| meth == "POST" && p == "/s3" && a.is_none()));

    let r = c
        .poll(&job.file_name, fast_poll(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(r.time_reading, TimeReading::Milliseconds);
    assert_eq!(r.timestamps.len(), 2);
    assert_eq!(r.timestamps[1].end_ms_rounded(), 30_000);
    assert!(m.polls.load(Ordering::SeqCst) >= 3);
    assert_eq!(m.count("GET", "/asr/async/data"), 1);
    assert_eq!(m.count("GET", "/asr/async/getdata"), 1);
    // The fallback is remembered.
    c.data(&job.file_name).await.unwrap();
    assert_eq!(m.count("GET", "/asr/async/data"), 1);
    assert_eq!(m.count("GET", "/asr/async/getdata"), 2);
    let st = c.status(&job.file_name).await.unwrap();
    assert_eq!(st.data[0].id, Some(207_891_841_473_145_364));
}

#[tokio::test]
async fn data_in_seconds_and_inconsistent_data() {
    let (m, base) = start().await;
    let c = client(&base);
    *m.data_body.lock().unwrap() = Some(
        r#"{"audio_length": 30, "status": "completed", "timestamps": [{"start": "0.5", "end": 29.9, "transcription": "x"}]}"#.into(),
    );
    let r = c.data("asr_x.wav").await.unwrap();
    assert_eq!(r.time_reading, TimeReading::Seconds);
    assert_eq!(r.timestamps[0].start_ms_rounded(), 500);
    assert_eq!(r.timestamps[0].end_ms_rounded(), 29_900);
    *m.data_body.lock().unwrap() =
        Some(r#"{"audio_length": 30, "timestamps": [{"start": 0, "end": 90000}]}"#.into());
    let e = c.data("asr_x.wav").await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Parse { .. }), "{e}");
    *m.data_body.lock().unwrap() = Some("<html>oops</html>".into());
    let e = c.data("asr_x.wav").await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Parse { .. }), "{e}");
}

#[tokio::test]
async fn poll_deadline_is_not_a_failure_and_can_be_resumed_elsewhere() {
    let (m, base) = start().await;
    *m.polls_to_complete.lock().unwrap() = usize::MAX;
    let c = client(&base);
    let e = c
        .poll("asr_job9_16000.wav", fast_poll(Duration::from_millis(80)))
        .await
        .unwrap_err();
    match e.kind() {
        ErrorKind::PollDeadline { file_name, .. } => assert_eq!(file_name, "asr_job9_16000.wav"),
        other => panic!("expected PollDeadline, got {other:?}"),
    }
    assert!(e.is_transient());
    // Another client (as another process would) resumes with only the name.
    *m.polls_to_complete.lock().unwrap() = 0;
    let other = client(&base);
    let r = other
        .poll("asr_job9_16000.wav", fast_poll(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(r.status, JobStatus::Complete);
}

#[tokio::test]
async fn failed_job_is_job_failed() {
    let (m, base) = start().await;
    *m.fail_job.lock().unwrap() = true;
    let e = client(&base)
        .poll("asr_f.wav", fast_poll(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::JobFailed { file_name, status } if file_name == "asr_f.wav" && status == "failed"),
        "{e}"
    );
}

#[tokio::test]
async fn token_is_renewed_before_expiry() {
    let (m, base) = start().await;
    *m.expires_in.lock().unwrap() = 2; // renewed at 1.8 s
    let c = client(&base);
    c.translate(&TranslateRequest::new("a", None))
        .await
        .unwrap();
    c.translate(&TranslateRequest::new("b", None))
        .await
        .unwrap();
    assert_eq!(m.minted.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1850)).await;
    c.translate(&TranslateRequest::new("c", None))
        .await
        .unwrap();
    assert_eq!(m.minted.load(Ordering::SeqCst), 2);
    // No request was answered 401: renewal happened before.
    assert_eq!(m.count("POST", "/translate"), 3);
}

#[tokio::test]
async fn token_is_renewed_once_on_401_then_auth_error() {
    let (m, base) = start().await;
    let c = client(&base);
    c.tts(&TtsRequest::new("x", Language::IsiXhosa))
        .await
        .unwrap();
    // The server forgets the token: one 401, one renewal, success.
    m.valid_tokens.lock().unwrap().clear();
    let r = c
        .tts(&TtsRequest::new("x", Language::IsiXhosa))
        .await
        .unwrap();
    assert_eq!(r.language, Some(Language::IsiXhosa));
    assert_eq!(m.minted.load(Ordering::SeqCst), 2);
    assert_eq!(m.count("POST", "/tts"), 3);
    // A 401 that survives renewal is an Auth error, after exactly one renewal.
    m.push("/tts", Canned::Status(401, vec![], String::new()));
    m.push(
        "/tts",
        Canned::Status(401, vec![], format!("token {REFRESH} refused")),
    );
    let e = c
        .tts(&TtsRequest::new("x", Language::IsiXhosa))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Auth { status: 401, .. }),
        "{e}"
    );
    assert_eq!(m.minted.load(Ordering::SeqCst), 3);
    assert_eq!(m.count("POST", "/tts"), 5);
    // The echoed refresh token is redacted from the error.
    assert!(!format!("{e} {e:?}").contains(REFRESH), "{e:?}");
}

#[tokio::test]
async fn bad_refresh_token_and_plain_id_token() {
    let (m, base) = start().await;
    let c = Client::builder()
        .base_url(&base)
        .credentials(Credentials::RefreshToken("wrong-refresh".into()))
        .retry(fast_retry(3))
        .build()
        .unwrap();
    let e = c
        .translate(&TranslateRequest::new("a", None))
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Auth { .. }), "{e}");
    assert!(!format!("{e:?}").contains("wrong-refresh"));
    assert_eq!(m.count("POST", "/generateAuthToken"), 1);
    // A ready IdToken is used as is; a 401 on it is final (nothing to renew with).
    m.valid_tokens.lock().unwrap().insert("ready-token".into());
    let c = Client::builder()
        .base_url(&base)
        .credentials(Credentials::IdToken("ready-token".into()))
        .build()
        .unwrap();
    c.translate(&TranslateRequest::new("a", None))
        .await
        .unwrap();
    m.valid_tokens.lock().unwrap().clear();
    let e = c
        .translate(&TranslateRequest::new("a", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Auth { status: 401, .. }),
        "{e}"
    );
    assert!(!format!("{e:?}").contains("ready-token"));
    assert_eq!(m.count("POST", "/generateAuthToken"), 1);
}

#[tokio::test]
async fn retryable_faults_are_retried_within_the_policy() {
    let (m, base) = start().await;
    let c = client(&base); // 4 attempts
    c.translate(&TranslateRequest::new("warm", None))
        .await
        .unwrap();
    m.push("/translate", Canned::Status(503, vec![], "busy".into()));
    m.push(
        "/translate",
        Canned::Status(429, vec![("retry-after", "0".into())], "slow down".into()),
    );
    m.push("/translate", Canned::Drop);
    let t = c
        .translate(&TranslateRequest::new("Molo", Some(Language::IsiXhosa)))
        .await
        .unwrap();
    assert_eq!(t.translation, "EN(Molo)");
    assert_eq!(t.characters, Some(4));
    assert_eq!(m.count("POST", "/translate"), 1 + 4);
    // Exhausted: four 500s → Api error after exactly 4 attempts.
    for _ in 0..5 {
        m.push("/translate", Canned::Status(500, vec![], "boom".into()));
    }
    let e = c
        .translate(&TranslateRequest::new("x", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Api { status: 500, attempts: 4, body, .. } if body == "boom"),
        "{e}"
    );
    assert_eq!(m.count("POST", "/translate"), 1 + 4 + 4);
    assert!(e.is_transient());
}

#[tokio::test]
async fn final_4xx_keeps_status_and_body_and_is_sent_once() {
    let (m, base) = start().await;
    let c = client(&base);
    // Missing SampleRate: the mock answers 400 with an error entity.
    m.push(
        "/asr",
        Canned::Status(
            400,
            vec![],
            r#"{"error": {"code": 1002, "description": "audio longer than 60 s"}}"#.into(),
        ),
    );
    let e = c
        .transcribe_sync(SyncRequest::new(vec![0u8; 10], "a.wav", rate()))
        .await
        .unwrap_err();
    match e.kind() {
        ErrorKind::Api {
            status,
            body,
            attempts,
            endpoint,
        } => {
            assert_eq!(*status, 400);
            assert!(body.contains("longer than 60 s"));
            assert_eq!(*attempts, 1);
            assert_eq!(endpoint, "POST /asr");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m.count("POST", "/asr"), 1);
    assert!(!e.is_transient());
    // A body that echoes the current IdToken is redacted.
    m.push(
        "/asr",
        Canned::Status(403, vec![], "token idtoken-1 lacks permission".into()),
    );
    let e = c
        .transcribe_sync(SyncRequest::new(vec![0u8; 10], "a.wav", rate()))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Auth { status: 403, .. }),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains("idtoken-1"), "{e:?}");
    assert!(format!("{e}").contains("token *** lacks"), "{e}");
    // 404 is final too.
    m.push("/asr", Canned::Status(404, vec![], String::new()));
    let e = c
        .transcribe_sync(SyncRequest::new(vec![0u8; 10], "a.wav", rate()))
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Api { status: 404, .. }));
    assert_eq!(m.count("POST", "/asr"), 3);
}

#[tokio::test]
async fn quota_exhaustion_is_its_own_kind_and_never_retried() {
    let (m, base) = start().await;
    let c = client(&base);
    *m.quota_exhausted.lock().unwrap() = true;
    let (_d, path, _) = temp_audio(100);
    let e = c
        .vela_upload_call(VelaCallUpload::new(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::QuotaExhausted { status: 403, .. }),
        "{e}"
    );
    assert_eq!(m.count("POST", "/asr/async/upload/vela"), 1);
    // 402, and a 429 that names the quota, are quota errors as well.
    m.push(
        "/asr",
        Canned::Status(402, vec![], "payment required".into()),
    );
    let e = c
        .transcribe_sync(SyncRequest::new(vec![0u8; 10], "a.wav", rate()))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::QuotaExhausted { status: 402, .. }),
        "{e}"
    );
    m.push(
        "/asr",
        Canned::Status(
            429,
            vec![("retry-after", "0".into())],
            "monthly quota exceeded".into(),
        ),
    );
    let e = c
        .transcribe_sync(SyncRequest::new(vec![0u8; 10], "a.wav", rate()))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::QuotaExhausted { status: 429, .. }),
        "{e}"
    );
    assert_eq!(m.count("POST", "/asr"), 2);
    assert!(!e.is_transient());
}

#[tokio::test]
async fn expired_forms_are_renewed_before_and_after_upload() {
    let (m, base) = start().await;
    let c = client(&base);
    let (_d, path, data) = temp_audio(5000);
    // Before: the first form is issued already expired (policy expiration 10 s ago), the
    // next one is valid.
    m.form_valid_queue.lock().unwrap().push_back(-10);
    let job = c
        .upload_async(AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    assert_eq!(m.count("POST", "/asr/async/upload"), 2);
    assert_eq!(job.form_renewals, 1);
    assert_eq!(job.file_name, "asr_job2_16000.wav");
    assert_eq!(
        m.count("POST", "/s3"),
        1,
        "no upload against the expired form"
    );
    assert_eq!(m.uploads.lock().unwrap()[&job.file_name].1, data);

    // After: storage refuses the form as expired; a new form is fetched and used.
    let before_forms = m.count("POST", "/asr/async/upload");
    let next_key = format!(
        "asr_job{}_16000.wav",
        m.forms_issued.load(Ordering::SeqCst) + 1
    );
    m.s3_expire_keys.lock().unwrap().insert(next_key.clone());
    let job = c
        .upload_async(AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    assert_eq!(job.form_renewals, 1);
    assert_ne!(job.file_name, next_key);
    assert_eq!(m.count("POST", "/asr/async/upload"), before_forms + 2);
    assert_eq!(m.count("POST", "/s3"), 3);
    assert!(m.uploads.lock().unwrap().contains_key(&job.file_name));
}

#[tokio::test]
async fn upload_rejected_carries_the_s3_code() {
    let (m, base) = start().await;
    let c = client(&base);
    let (_d, path, _) = temp_audio(100);
    let mut form = c
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    for (k, v) in &mut form.fields {
        if k == "signature" {
            *v = "tampered".into();
        }
    }
    let e = c
        .upload_to_form(&form, &path, "audio/wav")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::UploadRejected { status: 403, code, .. } if code == "SignatureDoesNotMatch"),
        "{e}"
    );
    assert_eq!(m.count("POST", "/s3"), 1);
}

/// A garbled form answer, or a storage refusal that is not an S3 error document, can hold
/// the form's credentials: neither the errors' Display nor their Debug may echo them.
#[tokio::test]
async fn garbled_form_answers_and_odd_refusals_never_echo_credentials() {
    const SECRETS: [&str; 3] = ["POLICY-SECRET-0001", "SIG-SECRET-0002", "STS-SECRET-0003"];
    let garbled = format!(
        r#"{{"fields": {{"policy": "{}", "signature": "{}", "x-amz-security-token": "{}", "#,
        SECRETS[0], SECRETS[1], SECRETS[2]
    );
    let wrong_shape = format!(
        r#"{{"url": ["{}"], "fields": {{"x-amz-security-token": "{}"}}}}"#,
        SECRETS[1], SECRETS[2]
    );
    let (m, base) = start().await;
    let c = client(&base);
    let (_d, path, _) = temp_audio(100);
    for (ep, body) in [
        ("/asr/async/upload", &garbled),
        ("/asr/async/upload", &wrong_shape),
        ("/asr/async/upload/vela", &garbled),
    ] {
        m.canned
            .lock()
            .unwrap()
            .entry(ep.into())
            .or_default()
            .push_back(Canned::Status(200, vec![], body.clone()));
        let e = if ep.ends_with("vela") {
            c.vela_upload_form(&VelaCallUpload::new(&path))
                .await
                .unwrap_err()
        } else {
            c.upload_form(&AsyncUpload::new(&path, rate()))
                .await
                .unwrap_err()
        };
        assert!(matches!(e.kind(), ErrorKind::Parse { .. }), "{e}");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("withheld"), "{shown}");
        for sec in SECRETS {
            assert!(!shown.contains(sec), "{ep}: {shown}");
        }
    }

    // A real form, then a refusal whose body is not S3 XML but echoes the form's fields.
    let form = c
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    let echoed: String = form
        .fields
        .iter()
        .map(|(k, v)| format!("{k}={v};"))
        .collect();
    m.canned
        .lock()
        .unwrap()
        .entry("/s3".into())
        .or_default()
        .push_back(Canned::Status(400, vec![], format!("bad form: {echoed}")));
    let e = c
        .upload_to_form(&form, &path, "audio/wav")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::UploadRejected { status: 400, .. }),
        "{e}"
    );
    let shown = format!("{e} {e:?}");
    for (k, v) in &form.fields {
        if k != "key" {
            assert!(!shown.contains(v.as_str()), "{k} echoed: {shown}");
        }
    }
}

#[tokio::test]
async fn upload_progress_is_reported_about_every_mib() {
    let (m, base) = start().await;
    let c = client(&base);
    // Under the scripted server's 2 MB body limit.
    let len = 1024 * 1024 + 500_000;
    let (_d, path, data) = temp_audio(len);
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let sink = seen.clone();
    let job = c
        .upload_async(
            AsyncUpload::new(&path, rate()).progress(move |sent, total| {
                sink.lock().unwrap().push((sent, total));
            }),
        )
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let len = len as u64;
    // Past each MiB once, then the end; never more than the file.
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (i, &(sent, total)) in seen.iter().enumerate() {
        assert_eq!(total, len);
        if i < 1 {
            assert!(sent >= (i as u64 + 1) << 20 && sent < ((i as u64 + 1) << 20) + 65_536);
        }
    }
    assert_eq!(seen.last().copied(), Some((len, len)));
    let stored = m
        .uploads
        .lock()
        .unwrap()
        .get(&job.file_name)
        .cloned()
        .unwrap();
    assert_eq!(stored.1, data);
}

#[tokio::test]
async fn transport_errors_after_bounded_attempts() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let c = Client::builder()
        .base_url(&dead)
        .credentials(Credentials::IdToken("t".into()))
        .retry(fast_retry(3))
        .build()
        .unwrap();
    let e = c
        .translate(&TranslateRequest::new("a", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Transport { attempts: 3, .. }),
        "{e}"
    );
    // Timeouts: the server is slower than the request timeout on every attempt.
    let (m, base) = start().await;
    let c = Client::builder()
        .base_url(&base)
        .credentials(Credentials::RefreshToken(REFRESH.into()))
        .retry(fast_retry(2))
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    c.translate(&TranslateRequest::new("warm", None))
        .await
        .unwrap();
    m.push("/translate", Canned::Delay(Duration::from_secs(2)));
    m.push("/translate", Canned::Delay(Duration::from_secs(2)));
    let e = c
        .translate(&TranslateRequest::new("a", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Transport { attempts: 2, .. }),
        "{e}"
    );
    assert_eq!(m.count("POST", "/translate"), 3);
}

#[tokio::test]
async fn concurrency_limit_is_shared_by_clones() {
    let (m, base) = start().await;
    let c = Client::builder()
        .base_url(&base)
        .credentials(Credentials::RefreshToken(REFRESH.into()))
        .concurrency(2)
        .build()
        .unwrap();
    c.translate(&TranslateRequest::new("warm", None))
        .await
        .unwrap();
    for _ in 0..8 {
        m.push("/translate", Canned::Delay(Duration::from_millis(60)));
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.translate(&TranslateRequest::new(format!("t{i}"), None))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(m.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn vela_chats_bot_translate_tts() {
    let (m, base) = start().await;
    let c = client(&base);
    let (_d, path, data) = temp_audio(3000);
    let job = c
        .vela_upload_call(
            VelaCallUpload::new(&path).metadata(VelaMetadata::new("agent@x.co", "2024-08-06")),
        )
        .await
        .unwrap();
    assert_eq!(m.uploads.lock().unwrap()[&job.file_name].1, data);

    let ans = c
        .vela_upload_chats(&ChatUpload::new(vec![
            ChatMessage::new("Sawubona", "06/08/2024, 09:15", ChatSender::User)
                .language(Language::IsiZulu),
            ChatMessage::new("Hi", "06/08/2024, 09:15", ChatSender::Bot),
        ]))
        .await
        .unwrap();
    assert_eq!(ans["messages"], 2);

    let conv = c
        .start_conversation(&StartConversation::new("bot-1", Language::English))
        .await
        .unwrap();
    assert_eq!(conv.conversation_id, "conv-1");
    assert_eq!(conv.language, Some(Language::English));
    let reply = c
        .message(&MessageRequest::text(
            "bot-1",
            Language::English,
            &conv.conversation_id,
            "hello",
        ))
        .await
        .unwrap();
    assert_eq!(reply.text_msg.as_deref(), Some("hello"));
    assert_eq!(reply.confidence, Some(0.99));
    assert_eq!(reply.text_response, ["What size?"]);
    assert_eq!(reply.speech_response_url, None);
    let reply = c
        .message(
            &MessageRequest::speech(
                "bot-1",
                Language::English,
                "conv-1",
                vec![9u8; 777],
                "q.wav",
            )
            .respond_with(ResponseType::Speech),
        )
        .await
        .unwrap();
    assert_eq!(reply.transcription.as_deref(), Some("speech bytes=777"));
    assert_eq!(
        reply.speech_response_url.as_deref(),
        Some("http://x/reply.wav")
    );

    let tts = c
        .tts(&TtsRequest::new("Molo", Language::parse("xh-ZA")))
        .await
        .unwrap();
    assert_eq!(tts.language, Some(Language::IsiXhosa));
    assert_eq!(tts.speech_response_url, "http://x/tts.wav");

    // Chats without a configured path is a config error, not a request.
    let no_chats = Client::builder()
        .base_url(&base)
        .credentials(Credentials::RefreshToken(REFRESH.into()))
        .org_id(ORG)
        .build()
        .unwrap();
    let e = no_chats
        .vela_upload_chats(&ChatUpload::new(vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidConfig { .. }));
    // Async endpoints without an org id: config error.
    let no_org = Client::builder()
        .base_url(&base)
        .credentials(Credentials::RefreshToken(REFRESH.into()))
        .build()
        .unwrap();
    assert!(matches!(
        no_org.status("x").await.unwrap_err().kind(),
        ErrorKind::InvalidConfig { .. }
    ));
}

#[tokio::test]
async fn thirty_percent_faults_every_call_completes_within_the_policy() {
    let (m, base) = start().await;
    let attempts = 8;
    let c = Client::builder()
        .base_url(&base)
        .credentials(Credentials::RefreshToken(REFRESH.into()))
        .org_id(ORG)
        .retry(fast_retry(attempts))
        .build()
        .unwrap();
    *m.faults.lock().unwrap() = Some((0.3, fastrand::Rng::with_seed(7)));
    let calls = 60;
    for i in 0..calls {
        let t = c
            .translate(&TranslateRequest::new(format!("call-{i}"), None))
            .await
            .unwrap_or_else(|e| panic!("call {i} did not complete: {e}"));
        assert_eq!(t.translation, format!("EN(call-{i})"));
    }
    // A whole async job under faults too.
    let (_d, path, data) = temp_audio(50_000);
    let job = c
        .upload_async(AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    let r = c
        .poll(&job.file_name, fast_poll(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(r.timestamps.len(), 2);
    assert_eq!(m.uploads.lock().unwrap()[&job.file_name].1, data);

    let texts = m.translate_texts.lock().unwrap().clone();
    let mut faulted_calls = 0;
    for i in 0..calls {
        let n = texts.iter().filter(|t| **t == format!("call-{i}")).count();
        assert!(
            (1..=attempts as usize).contains(&n),
            "call {i} was sent {n} times"
        );
        if n > 1 {
            faulted_calls += 1;
        }
    }
    // The faults really happened (about 30 % of first attempts).
    assert!(
        faulted_calls >= calls / 6,
        "only {faulted_calls} calls saw a fault"
    );
    // Never more sends than attempts allow, in total.
    assert!(texts.len() <= calls * attempts as usize);
}

/// How a scripted storage server refuses an upload before it has read the file.
#[derive(Clone, Copy, Debug)]
struct EarlyRefusal {
    /// Body bytes read before answering.
    read_first: usize,
    /// `Content-Length` on the answer (else chunked, or delimited by the close).
    framing: &'static str,
    /// Reads on (discarding) for a while after answering instead of closing at once.
    linger: bool,
}

/// A storage server on 127.0.0.1 that refuses every upload with S3's `AccessDenied` the way
/// `refusal` says, then closes; returns its URL and a count of (connections, body bytes read).
async fn refusing_storage(refusal: EarlyRefusal) -> (String, Arc<(AtomicUsize, AtomicUsize)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bucket", listener.local_addr().unwrap());
    let seen = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let counts = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            counts.0.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                let head_end = loop {
                    if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                };
                let mut body = got.len() - head_end;
                while body < refusal.read_first {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body += n,
                    }
                }
                counts.1.fetch_add(body, Ordering::SeqCst);
                let xml =
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                           <Message>Invalid according to Policy: Policy Condition failed: \
                           [\"eq\", \"$key\", \"x\"]</Message></Error>";
                let framed = match refusal.framing {
                    "length" => format!("Content-Length: {}\r\n\r\n{xml}", xml.len()),
                    "chunked" => format!(
                        "Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                        10,
                        &xml[..10],
                        xml.len() - 10,
                        &xml[10..]
                    ),
                    _ => format!("\r\n{xml}"),
                };
                let answer = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n{framed}"
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                if refusal.linger {
                    let _ = s.shutdown().await;
                    let until = tokio::time::Instant::now() + Duration::from_secs(2);
                    while let Ok(Ok(n)) = tokio::time::timeout_at(until, s.read(&mut buf)).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
                // Dropped with the client's bytes unread: the close is a reset.
            });
        }
    });
    (url, seen)
}

/// Storage refuses a POST as soon as it has read the form's fields, answers and closes while
/// the client is still sending a file far larger than the socket buffers: the client reads
/// the refusal, reports S3's code after one attempt and stops sending.
#[tokio::test]
async fn a_refusal_answered_before_the_file_is_read_is_reported_after_one_attempt() {
    let (_m, base) = start().await;
    let c = client(&base);
    let (_d, path, _) = temp_audio(48 << 20);
    let form = c
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    for read_first in [0, 1 << 20] {
        for framing in ["length", "chunked", "close"] {
            for linger in [false, true] {
                let r = EarlyRefusal {
                    read_first,
                    framing,
                    linger,
                };
                let (url, seen) = refusing_storage(r).await;
                let mut form = form.clone();
                form.url = url;
                let e = c
                    .upload_to_form(&form, &path, "audio/wav")
                    .await
                    .unwrap_err();
                assert!(
                    matches!(e.kind(), ErrorKind::UploadRejected { status: 403, code, message }
                        if code == "AccessDenied" && message.contains("Policy Condition failed")),
                    "{r:?}: {e}"
                );
                assert_eq!(seen.0.load(Ordering::SeqCst), 1, "{r:?}: connections");
                assert!(seen.1.load(Ordering::SeqCst) < 8 << 20, "{r:?}");
            }
        }
    }
}

/// A storage server that takes the request's head and a little of the body, then resets
/// the connection without answering: a network failure, retried within the policy.
#[tokio::test]
async fn a_reset_without_an_answer_is_a_retried_network_failure() {
    use tokio::io::AsyncReadExt;
    let (_m, base) = start().await;
    let c = client(&base);
    let (_d, path, _) = temp_audio(8 << 20);
    let form = c
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut form = form.clone();
    form.url = format!("http://{}/bucket", listener.local_addr().unwrap());
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 64 * 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let e = c
        .upload_to_form(&form, &path, "audio/wav")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Transport { attempts: 4, .. }),
        "{e}"
    );
    assert_eq!(conns.load(Ordering::SeqCst), 4);
}

/// S3 answers `400 RequestTimeout` when an upload's body stopped coming for a while: that is
/// the network, not the form, and the upload is tried again (here it then succeeds).
#[tokio::test]
async fn storage_timing_out_on_a_stalled_body_is_retried() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_m, base) = start().await;
    let c = client(&base);
    let (_d, path, _) = temp_audio(2 << 20);
    let mut form = c
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    form.url = format!("http://{}/bucket", listener.local_addr().unwrap());
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let (head_end, len) = loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..i]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    break (i + 4, len);
                }
            };
            let answer = if first {
                let xml = "<Error><Code>RequestTimeout</Code><Message>Your socket connection to \
                           the server was not read from or written to within the timeout \
                           period.</Message></Error>";
                format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                    xml.len()
                )
            } else {
                while got.len() < head_end + len {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
                "HTTP/1.1 204 No Content\r\n\r\n".to_string()
            };
            s.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    c.upload_to_form(&form, &path, "audio/wav").await.unwrap();
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}
