//! The client against the project's emulator (`botlhale_emulator`): every endpoint, the
//! error kinds the emulator can produce, token renewal (before expiry and on 401), form
//! expiry, the data-path variants and units, and a run with 30 % injected faults where every
//! call completes and no logical request is sent more often than the retry policy allows
//! (counted from the emulator's request log).

use std::collections::HashMap;
use std::io::Cursor;
use std::num::NonZeroU32;
use std::time::Duration;

use asr_pipeline::botlhale::{
    AsyncUpload, ChatMessage, ChatSender, ChatUpload, Client, Credentials, JobStatus, Language,
    MessageRequest, PollOptions, ResponseType, RetryPolicy, Secret, StartConversation, SyncRequest,
    TimeReading, TranslateRequest, TtsRequest, VelaCallUpload, VelaMetadata,
};
use asr_pipeline::ErrorKind;
use botlhale_emulator::{
    DataRoutes, Emulator, EmulatorConfig, FaultConfig, RunningEmulator, SignatureStyle,
    TimestampUnits,
};

/// A 16-bit mono WAV of `secs` seconds: silence with sine bursts `(from, to, hz)`.
fn wav(rate: u32, secs: f64, bursts: &[(f64, f64, f64)]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        let n = (secs * f64::from(rate)).round() as u64;
        for i in 0..n {
            let t = i as f64 / f64::from(rate);
            let mut x = 0.0;
            for &(a, b, f) in bursts {
                if t >= a && t < b {
                    x += 0.5 * (2.0 * std::f64::consts::PI * f * t).sin();
                }
            }
            w.write_sample((x * 32767.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
    cur.into_inner()
}

fn cfg() -> EmulatorConfig {
    let mut c = EmulatorConfig::default();
    c.async_base_delay = Duration::from_millis(100);
    c.async_speed = 1e6;
    c
}

fn rate() -> NonZeroU32 {
    NonZeroU32::new(16_000).unwrap()
}

fn client_for(emu: &RunningEmulator, attempts: u32) -> Client {
    Client::builder()
        .base_url(emu.base_url())
        .credentials(Credentials::RefreshToken(Secret::new(emu.refresh_token())))
        .org_id(emu.org_id())
        .retry(RetryPolicy::new(
            attempts,
            Duration::from_millis(5),
            Duration::from_millis(40),
        ))
        .chats_path("/vela/chats")
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn fast_poll() -> PollOptions {
    PollOptions::default().with_delays(
        Duration::from_millis(20),
        Duration::from_millis(100),
        Duration::from_secs(20),
    )
}

fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

/// Requests the emulator's storage route (`/s3/...`) received.
fn storage_posts(emu: &RunningEmulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.path.starts_with("/s3/"))
        .count()
}

fn count(emu: &RunningEmulator, method: &str, path: &str) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

#[tokio::test]
async fn sync_and_async_flows_true_to_the_audio() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let c = client_for(&emu, 3);
    let clip = wav(16_000, 2.0, &[(0.5, 1.5, 300.0)]);
    let r = c
        .transcribe_sync(SyncRequest::new(clip, "clip.wav", rate()).language(Language::IsiZulu))
        .await
        .unwrap();
    assert!(r.transcription.starts_with("[emulator] 2.000 s"), "{r:?}");
    assert_eq!(r.language, Some(Language::IsiZulu));

    // Async: two regions of sound at 1.0–2.0 s (low) and 3.0–3.5 s (high), diarized.
    let long = wav(16_000, 5.0, &[(1.0, 2.0, 200.0), (3.0, 3.5, 1500.0)]);
    let (_d, path) = write_temp(&long, "call.wav");
    let job = c
        .upload_async(
            AsyncUpload::new(&path, rate())
                .diarization(true)
                .language(Language::Sepedi),
        )
        .await
        .unwrap();
    assert!(emu.uploaded_file(&job.file_name).is_some());
    assert_eq!(
        std::fs::read(emu.uploaded_file(&job.file_name).unwrap()).unwrap(),
        long
    );
    let res = c.poll(&job.file_name, fast_poll()).await.unwrap();
    assert_eq!(res.status, JobStatus::Complete);
    assert_eq!(res.time_reading, TimeReading::Milliseconds);
    assert_eq!(res.timestamps.len(), 2, "{res:?}");
    let t0 = &res.timestamps[0];
    let t1 = &res.timestamps[1];
    assert!((t0.start_ms - 1000.0).abs() < 15.0, "{t0:?}");
    assert!((t0.end_ms - 2000.0).abs() < 15.0, "{t0:?}");
    assert!((t1.start_ms - 3000.0).abs() < 15.0, "{t1:?}");
    assert!((t1.end_ms - 3500.0).abs() < 15.0, "{t1:?}");
    assert_eq!(t0.speaker.as_deref(), Some("speaker_0"));
    assert_eq!(t1.speaker.as_deref(), Some("speaker_1"));
    assert_eq!(t0.language, Some(Language::Sepedi));
    let st = c.status(&job.file_name).await.unwrap();
    assert_eq!(st.status(), JobStatus::Complete);
    assert!(st.data[0].id.unwrap() > 1 << 53);
    emu.shutdown().await;
}

#[tokio::test]
async fn v2_forms_getdata_only_and_timestamps_in_seconds_as_strings() {
    let mut c0 = cfg();
    c0.signature_style = SignatureStyle::V2;
    c0.data_routes = DataRoutes::GetData;
    c0.timestamp_units = TimestampUnits::Seconds;
    c0.numbers_as_strings = true;
    let emu = Emulator::start(c0).await.unwrap();
    let c = client_for(&emu, 3);
    let long = wav(16_000, 4.0, &[(1.0, 2.5, 300.0)]);
    let (_d, path) = write_temp(&long, "call.wav");
    let form = c
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    assert!(form.field("AWSAccessKeyId").is_some() && form.field("signature").is_some());
    let job = c
        .upload_async(AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    let res = c.poll(&job.file_name, fast_poll()).await.unwrap();
    assert_eq!(res.time_reading, TimeReading::Seconds);
    assert_eq!(res.timestamps.len(), 1);
    assert!((res.timestamps[0].start_ms - 1000.0).abs() < 15.0);
    assert!((res.timestamps[0].end_ms - 2500.0).abs() < 15.0);
    // /data answered 404 once, then the client went to /getdata directly.
    let before = count(&emu, "GET", "/asr/async/data");
    assert_eq!(before, 1);
    c.data(&job.file_name).await.unwrap();
    assert_eq!(count(&emu, "GET", "/asr/async/data"), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn error_kinds_from_the_emulator() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let c = client_for(&emu, 3);
    // Over 60 s: 400 with an error entity, final, sent once.
    let e = c
        .transcribe_sync(SyncRequest::new(
            wav(8000, 61.0, &[]),
            "long.wav",
            NonZeroU32::new(8000).unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Api { status: 400, attempts: 1, body, .. } if body.contains("AudioTooLong")),
        "{e}"
    );
    assert_eq!(count(&emu, "POST", "/asr"), 1);
    // A sample rate that disagrees with the file.
    let e = c
        .transcribe_sync(SyncRequest::new(
            wav(16_000, 1.0, &[]),
            "a.wav",
            NonZeroU32::new(8000).unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Api { status: 400, .. }),
        "{e}"
    );

    // A wrong refresh token: Auth, and the token is not in the error.
    let bad = Client::builder()
        .base_url(emu.base_url())
        .credentials(Credentials::RefreshToken("not-the-token".into()))
        .build()
        .unwrap();
    let e = bad
        .translate(&TranslateRequest::new("x", None))
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Auth { .. }), "{e}");
    assert!(!format!("{e} {e:?}").contains("not-the-token"));

    // Vela minute allocation used up: QuotaExhausted, sent once.
    emu.set_vela_minutes_used(emu.org_id(), 1e6);
    let (_d, path) = write_temp(&wav(16_000, 1.0, &[]), "v.wav");
    let e = c
        .vela_upload_call(VelaCallUpload::new(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::QuotaExhausted { status: 403, .. }),
        "{e}"
    );
    assert_eq!(count(&emu, "POST", "/asr/async/upload/vela"), 1);

    // A tampered form: UploadRejected with S3's code, nothing stored.
    let mut form = c
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    for (k, v) in &mut form.fields {
        if k == "x-amz-signature" {
            v.replace_range(0..1, if v.starts_with('0') { "1" } else { "0" });
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
    assert!(emu.uploaded_file(form.key().unwrap()).is_none());

    // An undecodable upload: the job fails on the server: JobFailed.
    let (_d2, junk) = write_temp(&[7u8; 5000], "junk.wav");
    let job = c
        .upload_async(AsyncUpload::new(&junk, rate()))
        .await
        .unwrap();
    let e = c.poll(&job.file_name, fast_poll()).await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::JobFailed { file_name, .. } if *file_name == job.file_name),
        "{e}"
    );

    // Unknown file: status `unknown`, the poller waits until its deadline: PollDeadline.
    let e = c
        .poll(
            "asr_no_such_file.wav",
            PollOptions::default().with_delays(
                Duration::from_millis(10),
                Duration::from_millis(20),
                Duration::from_millis(150),
            ),
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::PollDeadline { .. }), "{e}");

    // Emulator gone: Transport after the policy's attempts.
    let base = emu.base_url().to_string();
    emu.shutdown().await;
    let e = c
        .translate(&TranslateRequest::new("x", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Transport { attempts: 3, .. }),
        "{e} ({base})"
    );
}

#[tokio::test]
async fn poll_deadline_then_resume_in_a_fresh_client() {
    let mut c0 = cfg();
    c0.async_base_delay = Duration::from_millis(600);
    let emu = Emulator::start(c0).await.unwrap();
    let c = client_for(&emu, 3);
    let (_d, path) = write_temp(&wav(16_000, 2.0, &[(0.5, 1.0, 300.0)]), "a.wav");
    let job = c
        .upload_async(AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    let short = PollOptions::default().with_delays(
        Duration::from_millis(10),
        Duration::from_millis(20),
        Duration::from_millis(100),
    );
    let e = c.poll(&job.file_name, short).await.unwrap_err();
    let ErrorKind::PollDeadline { file_name, .. } = e.kind() else {
        panic!("{e}")
    };
    // Only the name crosses over, as it would to another process.
    let name = file_name.clone();
    drop(c);
    let fresh = client_for(&emu, 3);
    let res = fresh.poll(&name, fast_poll()).await.unwrap();
    assert_eq!(res.timestamps.len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn token_renewed_before_expiry_and_once_on_401() {
    let mut c0 = cfg();
    c0.token_lifetime = Duration::from_secs(2);
    let emu = Emulator::start(c0).await.unwrap();
    let c = client_for(&emu, 3);
    c.translate(&TranslateRequest::new("a", None))
        .await
        .unwrap();
    assert_eq!(count(&emu, "POST", "/generateAuthToken"), 1);
    // ExpiresIn 2 → renewed 1.8 s after minting, before the server would refuse it.
    tokio::time::sleep(Duration::from_millis(1850)).await;
    c.translate(&TranslateRequest::new("b", None))
        .await
        .unwrap();
    assert_eq!(count(&emu, "POST", "/generateAuthToken"), 2);
    assert!(emu.requests().iter().all(|r| r.status != 401));

    // The server drops every token: one 401, one renewal, success.
    emu.expire_tokens();
    c.translate(&TranslateRequest::new("c", None))
        .await
        .unwrap();
    assert_eq!(count(&emu, "POST", "/generateAuthToken"), 3);
    let c_sends = emu
        .requests()
        .iter()
        .filter(|r| r.path == "/translate")
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(c_sends, [200, 200, 401, 200]);
    emu.shutdown().await;
}

#[tokio::test]
async fn stale_form_is_renewed_before_upload() {
    let mut c0 = cfg();
    c0.time_scale = 3600.0 * 2.0; // a 3600 s form lives half a real second
    c0.token_lifetime = Duration::from_secs(3600 * 10_000);
    let emu = Emulator::start(c0).await.unwrap();
    let c = Client::builder()
        .base_url(emu.base_url())
        .credentials(Credentials::RefreshToken(emu.refresh_token().into()))
        .org_id(emu.org_id())
        .form_expiry_margin(Duration::ZERO)
        .build()
        .unwrap();
    let data = wav(16_000, 1.0, &[(0.2, 0.6, 300.0)]);
    let (_d, path) = write_temp(&data, "a.wav");
    let req = AsyncUpload::new(&path, rate());
    let old = c.upload_form(&req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let job = c.upload_async_with_form(&req, old.clone()).await.unwrap();
    assert_eq!(job.form_renewals, 1);
    assert_ne!(Some(job.file_name.as_str()), old.key());
    // The stale form was never used.
    assert_eq!(count(&emu, "POST", "/asr/async/upload"), 2);
    let s3: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/s3/"))
        .collect();
    assert_eq!(s3.len(), 1, "{s3:?}");
    assert_eq!(s3[0].status / 100, 2);
    assert_eq!(
        std::fs::read(emu.uploaded_file(&job.file_name).unwrap()).unwrap(),
        data
    );
    // And the expired form, sent as is, is refused as expired by the emulator's S3.
    let e = c
        .upload_to_form(&old, &path, "audio/wav")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::UploadRejected { code, message, .. } if code == "AccessDenied" && message.contains("expired")),
        "{e}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn vela_chats_chatbot_translate_tts() {
    let emu = Emulator::start(cfg()).await.unwrap();
    let c = client_for(&emu, 3);
    let data = wav(16_000, 1.0, &[(0.2, 0.6, 300.0)]);
    let (_d, path) = write_temp(&data, "call.wav");
    let job = c
        .vela_upload_call(
            VelaCallUpload::new(&path).metadata(VelaMetadata::new("agent@x.co", "06/08/2024")),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(emu.uploaded_file(&job.file_name).unwrap()).unwrap(),
        data
    );
    let ans = c
        .vela_upload_chats(&ChatUpload::new(vec![
            ChatMessage::new("Sawubona", "06/08/2024, 09:15", ChatSender::User)
                .language(Language::IsiZulu),
            ChatMessage::new("Ngiyakwamukela", "06/08/2024, 09:15", ChatSender::Bot),
            ChatMessage::new("Ngiyabonga", "06/08/2024, 09:16", ChatSender::Agent),
        ]))
        .await
        .unwrap();
    assert_eq!(ans["count"], 3, "{ans}");

    let conv = c
        .start_conversation(&StartConversation::new("bot-1", Language::English))
        .await
        .unwrap();
    assert!(!conv.conversation_id.is_empty());
    let reply = c
        .message(&MessageRequest::text(
            "bot-1",
            Language::English,
            &conv.conversation_id,
            "hello",
        ))
        .await
        .unwrap();
    assert_eq!(
        reply.conversation_id.as_deref(),
        Some(conv.conversation_id.as_str())
    );
    assert!(!reply.text_response.is_empty());
    let reply = c
        .message(
            &MessageRequest::speech(
                "bot-1",
                Language::English,
                &conv.conversation_id,
                wav(16_000, 1.0, &[(0.1, 0.9, 300.0)]),
                "q.wav",
            )
            .respond_with(ResponseType::Speech),
        )
        .await
        .unwrap();
    assert!(reply.transcription.is_some(), "{reply:?}");
    assert!(reply.speech_response_url.is_some(), "{reply:?}");

    let t = c
        .translate(&TranslateRequest::new("Molo", Some(Language::IsiXhosa)))
        .await
        .unwrap();
    assert!(!t.translation.is_empty());
    let s = c
        .tts(&TtsRequest::new("Molo", Language::IsiXhosa))
        .await
        .unwrap();
    assert_eq!(s.language, Some(Language::IsiXhosa));
    assert!(!s.speech_response_url.is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn thirty_percent_faults_all_calls_complete_within_the_policy() {
    let attempts = 8;
    let mut c0 = cfg();
    c0.seed = 2026;
    let mut f = FaultConfig::with_rate(0.3);
    f.retry_after_secs = 0;
    f.latency = Duration::from_millis(20);
    f.max_consecutive = None; // left to chance (seeded)
    c0.faults = f;
    let emu = Emulator::start(c0).await.unwrap();
    let c = client_for(&emu, attempts);

    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.translate(&TranslateRequest::new(format!("text {i}"), None))
                .await
                .map(|t| t.translation)
        }));
    }
    for i in 0..6u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let clip = wav(16_000, 0.5 + f64::from(i) * 0.1, &[(0.1, 0.3, 300.0)]);
            c.transcribe_sync(SyncRequest::new(clip, "c.wav", rate()))
                .await
                .map(|t| t.transcription)
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert!(r.is_ok(), "call {i} did not complete: {r:?}");
    }
    // A whole async job, too.
    let data = wav(16_000, 3.0, &[(1.0, 2.0, 300.0)]);
    let (_d, path) = write_temp(&data, "a.wav");
    let job = c
        .upload_async(AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    let res = c.poll(&job.file_name, fast_poll()).await.unwrap();
    assert_eq!(res.timestamps.len(), 1);
    assert_eq!(
        std::fs::read(emu.uploaded_file(&job.file_name).unwrap()).unwrap(),
        data
    );

    let log = emu.requests();
    let faulted = log
        .iter()
        .filter(|r| r.fault.is_some_and(|f| f.fails()))
        .count();
    assert!(faulted > 10, "faults were injected: {faulted}");
    // Per logical request (the emulator's attempt key), never more sends than the policy
    // allows. Status/data polls repeat the same request by design and are excluded.
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for r in &log {
        if r.path.starts_with("/asr/async/status") || r.path.contains("data") {
            continue;
        }
        if let Some(k) = &r.attempt_key {
            *per_key
                .entry(format!("{} {} {k}", r.method, r.path))
                .or_default() += 1;
        }
    }
    let worst = per_key.values().copied().max().unwrap_or(0);
    assert!(
        worst <= attempts as usize,
        "a request was sent {worst} times: {per_key:?}"
    );
    assert!(worst > 1, "some request was retried");
    emu.shutdown().await;
}

/// An upload on a slow link finishes in one attempt, however long it takes, as long as it
/// moves (the loopback's socket buffers swallow most of this file at once: what is measured
/// is that the answer is waited for while they drain, and nothing is sent twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_that_keeps_moving_completes_in_one_attempt() {
    let mut c = cfg();
    c.upload_bytes_per_sec = Some(150_000);
    let emu = Emulator::start(c).await.unwrap();
    let client = Client::builder()
        .base_url(emu.base_url())
        .credentials(Credentials::RefreshToken(Secret::new(emu.refresh_token())))
        .org_id(emu.org_id())
        .request_timeout(Duration::from_secs(6))
        .upload_stall_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    // 20 s of 16 kHz audio: 640 kB, over 4 s at 150 kB/s.
    let audio = wav(16_000, 20.0, &[(1.0, 3.0, 300.0)]);
    let (_d, path) = write_temp(&audio, "slow.wav");
    let t = std::time::Instant::now();
    let job = client
        .upload_async(AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(storage_posts(&emu), 1, "one attempt");
    assert_eq!(
        std::fs::read(emu.uploaded_file(&job.file_name).unwrap()).unwrap(),
        audio
    );
}

/// A link that stops moving fails the attempt after the stall timeout, not after the whole
/// file's worth of time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_fails_after_the_stall_timeout() {
    // A storage endpoint that accepts the connection and never reads.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            keep.push(s);
        }
    });
    let emu = Emulator::start(cfg()).await.unwrap();
    let client = Client::builder()
        .base_url(emu.base_url())
        .credentials(Credentials::RefreshToken(Secret::new(emu.refresh_token())))
        .org_id(emu.org_id())
        .retry(RetryPolicy::new(
            1,
            Duration::from_millis(5),
            Duration::from_millis(40),
        ))
        .request_timeout(Duration::from_secs(30))
        .upload_stall_timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    // 8 MB: far more than the socket buffers hold.
    let audio = wav(16_000, 250.0, &[(1.0, 3.0, 300.0)]);
    let (_d, path) = write_temp(&audio, "stuck.wav");
    let mut form = client
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    form.url = format!("http://{addr}/");
    let t = std::time::Instant::now();
    let e = client
        .upload_to_form(&form, &path, "audio/wav")
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert!(e.to_string().contains("stalled"), "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    held.abort();
}

/// The emulator refuses a form on its fields, before the file, and closes, as S3 does: on a
/// slow link the client reports the refusal after one attempt and within a second, instead
/// of sending the 32 MB file (about 4 minutes at this rate), let alone three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_reported_after_one_attempt_without_sending_the_file() {
    let mut c = cfg();
    c.upload_bytes_per_sec = Some(150_000);
    let emu = Emulator::start(c).await.unwrap();
    let client = client_for(&emu, 4);
    let audio = wav(16_000, 1000.0, &[(1.0, 3.0, 300.0)]);
    let (_d, path) = write_temp(&audio, "big.wav");
    let mut form = client
        .upload_form(&AsyncUpload::new(&path, rate()))
        .await
        .unwrap();
    for (k, v) in &mut form.fields {
        if k.to_ascii_lowercase().contains("signature") {
            v.replace_range(..4, "0000");
        }
    }
    let t = std::time::Instant::now();
    let e = client
        .upload_to_form(&form, &path, "audio/wav")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::UploadRejected { status: 403, code, .. } if code == "SignatureDoesNotMatch"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(storage_posts(&emu), 1, "one attempt");
    emu.shutdown().await;
}
