//! The emulator, driven with raw reqwest over 127.0.0.1: every route's happy path and error
//! statuses, the S3 POST verification, deterministic faults.

use std::io::Cursor;
use std::time::Duration;

use base64::Engine as _;
use botlhale_emulator::{
    sigv4, DataRoutes, DoneWord, Emulator, EmulatorConfig, FaultConfig, FaultKind, RunningEmulator,
    SignatureStyle, TimestampUnits,
};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

/// A 16-bit mono WAV of `secs` seconds with sine bursts `(start_s, end_s, freq_hz)`.
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
                let (sa, sb) = (
                    (a * f64::from(rate)).round() as u64,
                    (b * f64::from(rate)).round() as u64,
                );
                if (sa..sb).contains(&i) {
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
    EmulatorConfig::fast()
}

async fn start(c: EmulatorConfig) -> RunningEmulator {
    Emulator::start(c).await.expect("emulator starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn id_token(emu: &RunningEmulator, c: &reqwest::Client) -> String {
    let r = c
        .post(format!("{}/generateAuthToken", emu.base_url()))
        .form(&[("REFRESH_TOKEN", emu.refresh_token())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["AuthenticationResult"]["IdToken"]
        .as_str()
        .unwrap()
        .to_string()
}

fn asr_form(audio: Vec<u8>, rate: &str) -> Form {
    Form::new()
        .text("SampleRate", rate.to_string())
        .text("LanguageCode", "zu-ZA")
        .part(
            "SpeechFile",
            Part::bytes(audio)
                .file_name("a.wav")
                .mime_str("audio/wav")
                .unwrap(),
        )
}

async fn post_asr(
    emu: &RunningEmulator,
    c: &reqwest::Client,
    tok: &str,
    audio: Vec<u8>,
    rate: &str,
) -> (u16, String) {
    let r = c
        .post(format!("{}/asr", emu.base_url()))
        .bearer_auth(tok)
        .multipart(asr_form(audio, rate))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or("").to_string()
}

fn s3_code(body: &str) -> String {
    let a = body.find("<Code>").map(|i| i + 6).unwrap_or(0);
    let b = body.find("</Code>").unwrap_or(a);
    body[a..b].to_string()
}

async fn upload_form(
    emu: &RunningEmulator,
    c: &reqwest::Client,
    tok: &str,
    diarization: bool,
) -> (String, Vec<(String, String)>) {
    let r = c
        .post(format!("{}/asr/async/upload", emu.base_url()))
        .bearer_auth(tok)
        .form(&[
            ("OrgID", emu.org_id()),
            ("SampleRate", "16000"),
            ("LanguageCode", "nso-ZA"),
            ("Diarization", if diarization { "True" } else { "False" }),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let url = v["url"].as_str().unwrap().to_string();
    let fields = v["fields"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (url, fields)
}

async fn s3_post(
    c: &reqwest::Client,
    url: &str,
    fields: &[(String, String)],
    file: Vec<u8>,
) -> (u16, String) {
    let mut form = Form::new();
    for (k, v) in fields {
        form = form.text(k.clone(), v.clone());
    }
    form = form.part("file", Part::bytes(file).file_name("x.wav"));
    let r = c.post(url).multipart(form).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn key_of(fields: &[(String, String)]) -> String {
    fields.iter().find(|(k, _)| k == "key").unwrap().1.clone()
}

async fn get_json(c: &reqwest::Client, url: String, tok: &str) -> (u16, Value) {
    let r = c.get(url).bearer_auth(tok).send().await.unwrap();
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::Null))
}

async fn wait_done(emu: &RunningEmulator, c: &reqwest::Client, tok: &str, key: &str) -> String {
    for _ in 0..600 {
        let (s, v) = get_json(
            c,
            format!(
                "{}/asr/async/status?OrgID={}&FileName={key}",
                emu.base_url(),
                emu.org_id()
            ),
            tok,
        )
        .await;
        assert_eq!(s, 200);
        let st = v["data"][0]["status"].as_str().unwrap_or("").to_string();
        if st != "running" {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job never finished");
}

#[tokio::test]
async fn token_minting_and_expiry() {
    let emu = start(cfg()).await;
    let c = http();
    let r = c
        .post(format!("{}/generateAuthToken", emu.base_url()))
        .form(&[("REFRESH_TOKEN", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(format!("{}/generateAuthToken", emu.base_url()))
        .form(&[("REFRESH_TOKEN", emu.refresh_token())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let a = &v["AuthenticationResult"];
    assert_eq!(a["ExpiresIn"], 3600);
    assert_eq!(a["TokenType"], "Bearer");
    assert_eq!(a["RefreshToken"], emu.refresh_token());
    assert!(a["AccessToken"].is_string());
    let tok = a["IdToken"].as_str().unwrap().to_string();
    let status = format!(
        "{}/asr/async/status?OrgID={}&FileName=nothing.wav",
        emu.base_url(),
        emu.org_id()
    );
    let (s, v) = get_json(&c, status.clone(), &tok).await;
    assert_eq!((s, v["data"].as_array().map(Vec::len)), (200, Some(0)));
    // No token, a wrong one, an expired one: 401 with an empty body.
    let r = c.get(&status).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().is_empty());
    let r = c
        .get(&status)
        .bearer_auth("emu-id-forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    emu.expire_tokens();
    let r = c.get(&status).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn time_scale_makes_an_hour_token_expire_quickly() {
    let mut c0 = cfg();
    c0.time_scale = 3600.0; // a 3600 s token lives one second
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let status = format!(
        "{}/asr/async/status?OrgID={}&FileName=x",
        emu.base_url(),
        emu.org_id()
    );
    assert_eq!(get_json(&c, status.clone(), &tok).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get_json(&c, status, &tok).await.0, 401);
    emu.shutdown().await;
}

#[tokio::test]
async fn asr_sync_transcript_is_deterministic_and_honest() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let audio = wav(16_000, 2.5, &[(0.5, 2.0, 220.0)]);
    let (s, body) = post_asr(&emu, &c, &tok, audio.clone(), "16000").await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["LanguageCode"], "zu-ZA");
    assert_eq!(v["NewSampleRate"], "16000");
    assert!(v["SpeechFile"].as_str().unwrap().starts_with("asr_"));
    let date = v["DateReceived"].as_str().unwrap();
    assert_eq!(date.len(), 19, "{date}");
    assert_eq!((&date[2..3], &date[5..6], &date[10..11]), ("/", "/", " "));
    let text = v["Transcription"].as_str().unwrap().to_string();
    assert!(text.starts_with("[emulator] 2.500 s, crc32 "), "{text}");
    // Same audio, same text; other audio, other checksum.
    let (_, body2) = post_asr(&emu, &c, &tok, audio, "16000").await;
    let v2: Value = serde_json::from_str(&body2).unwrap();
    assert_eq!(v2["Transcription"], text.as_str());
    let other = wav(16_000, 2.5, &[(0.5, 2.0, 440.0)]);
    let (_, body3) = post_asr(&emu, &c, &tok, other, "16000").await;
    let v3: Value = serde_json::from_str(&body3).unwrap();
    assert_ne!(v3["Transcription"], text.as_str());
    emu.shutdown().await;
}

#[tokio::test]
async fn asr_sync_refusals() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    // The limit is 60.0 s: exactly 60 s passes, 60.1 s does not.
    let (s, b) = post_asr(&emu, &c, &tok, wav(8_000, 60.0, &[]), "8000").await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post_asr(&emu, &c, &tok, wav(8_000, 60.1, &[]), "8000").await;
    assert_eq!((s, error_code(&b).as_str()), (400, "AudioTooLong"), "{b}");
    // Rate outside 8000..=48000, or not the file's.
    let (s, b) = post_asr(&emu, &c, &tok, wav(8_000, 1.0, &[]), "7999").await;
    assert_eq!((s, error_code(&b).as_str()), (400, "InvalidSampleRate"));
    let (s, b) = post_asr(&emu, &c, &tok, wav(16_000, 1.0, &[]), "48001").await;
    assert_eq!((s, error_code(&b).as_str()), (400, "InvalidSampleRate"));
    let (s, b) = post_asr(&emu, &c, &tok, wav(16_000, 1.0, &[]), "8000").await;
    assert_eq!((s, error_code(&b).as_str()), (400, "SampleRateMismatch"));
    // Not audio, or a format the vendor does not take.
    let (s, b) = post_asr(
        &emu,
        &c,
        &tok,
        b"ID3\x04not really an mp3".to_vec(),
        "16000",
    )
    .await;
    assert_eq!((s, error_code(&b).as_str()), (400, "UnsupportedFileType"));
    // Missing fields.
    let r = c
        .post(format!("{}/asr", emu.base_url()))
        .bearer_auth(&tok)
        .multipart(Form::new().text("SampleRate", "16000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.text().await.unwrap()), "MissingParameter");
    emu.shutdown().await;
}

#[tokio::test]
async fn asr_sync_accepts_amr_by_frame_count() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    // 50 frames of AMR-NB 12.2 kbit/s (mode 7: 1 header byte + 31 bytes) = 1.000 s.
    let mut amr = b"#!AMR\n".to_vec();
    for i in 0..50u8 {
        amr.push(7 << 3 | 0x04);
        amr.extend(std::iter::repeat_n(i, 31));
    }
    let (s, b) = post_asr(&emu, &c, &tok, amr, "8000").await;
    assert_eq!(s, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(v["Transcription"]
        .as_str()
        .unwrap()
        .starts_with("[emulator] 1.000 s"));
    emu.shutdown().await;
}

#[tokio::test]
async fn async_flow_timestamps_are_true_to_the_audio() {
    let mut c0 = cfg();
    c0.done_word = DoneWord::Completed;
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, true).await;
    assert!(url.starts_with(emu.base_url()));
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    for n in [
        "key",
        "policy",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-signature",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let key = key_of(&fields);
    assert!(
        key.starts_with("asr_") && key.contains("__16000_1_"),
        "{key}"
    );
    // The policy is a real SigV4 POST policy.
    let policy = &fields.iter().find(|(k, _)| k == "policy").unwrap().1;
    let pj: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(policy)
            .unwrap(),
    )
    .unwrap();
    assert!(sigv4::parse_iso8601(pj["expiration"].as_str().unwrap()).is_some());
    let conds = pj["conditions"].to_string();
    for needle in ["content-length-range", "$key", "x-amz-credential", "bucket"] {
        assert!(conds.contains(needle), "{conds}");
    }
    // Not uploaded yet: nothing to report.
    let status = format!(
        "{}/asr/async/status?OrgID={}&FileName={key}",
        emu.base_url(),
        emu.org_id()
    );
    let (_, v) = get_json(&c, status.clone(), &tok).await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0));
    // Speech at known places: low voice 0.66–1.26 s, high voice 2.31–2.70 s, low 5.0–7.5 s.
    let audio = wav(
        16_000,
        9.0,
        &[(0.66, 1.26, 150.0), (2.31, 2.70, 1200.0), (5.0, 7.5, 180.0)],
    );
    let (s, b) = s3_post(&c, &url, &fields, audio.clone()).await;
    assert_eq!(s, 204, "{b}");
    let stored = emu.uploaded_file(&key).expect("stored");
    assert_eq!(std::fs::read(stored).unwrap(), audio);
    let (_, v) = get_json(&c, status, &tok).await;
    let row = &v["data"][0];
    assert_eq!(row["OrgID"], emu.org_id());
    assert_eq!(row["process"], key.as_str());
    assert!(row["id"].as_u64().unwrap() > 1u64 << 53);
    assert_eq!(wait_done(&emu, &c, &tok, &key).await, "completed");
    for path in ["data", "getdata"] {
        let (s, v) = get_json(
            &c,
            format!(
                "{}/asr/async/{path}?OrgID={}&FileName={key}",
                emu.base_url(),
                emu.org_id()
            ),
            &tok,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v["audio_length"], "9.0");
        assert_eq!(v["filename"], format!("/{key}"));
        assert_eq!(v["status"], "completed");
        let ts = v["timestamps"].as_array().unwrap();
        let want = [
            (660.0, 1260.0, "speaker_0"),
            (2310.0, 2700.0, "speaker_1"),
            (5000.0, 7500.0, "speaker_0"),
        ];
        assert_eq!(ts.len(), want.len(), "{ts:?}");
        for (t, (a, b, spk)) in ts.iter().zip(want) {
            let (sa, sb) = (t["start"].as_f64().unwrap(), t["end"].as_f64().unwrap());
            assert!((sa - a).abs() <= 10.0 && (sb - b).abs() <= 10.0, "{t}");
            assert_eq!(t["speaker"], spk);
            assert_eq!(t["language"], "nso-ZA");
            assert!(t["transcription"]
                .as_str()
                .unwrap()
                .starts_with("[emulator] region "));
        }
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn data_route_variants_and_units() {
    let mut c0 = cfg();
    c0.data_routes = DataRoutes::GetData;
    c0.timestamp_units = TimestampUnits::Seconds;
    c0.numbers_as_strings = true;
    c0.signature_style = SignatureStyle::V2;
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        names.contains(&"AWSAccessKeyId") && names.contains(&"signature"),
        "{names:?}"
    );
    let key = key_of(&fields);
    let (s, b) = s3_post(&c, &url, &fields, wav(16_000, 3.0, &[(1.0, 2.0, 1000.0)])).await;
    assert_eq!(s, 204, "{b}");
    let st = wait_done(&emu, &c, &tok, &key).await;
    assert!(st == "complete" || st == "completed", "{st}");
    let q = format!("OrgID={}&FileName={key}", emu.org_id());
    let r = c
        .get(format!("{}/asr/async/data?{q}", emu.base_url()))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (s, v) = get_json(
        &c,
        format!("{}/asr/async/getdata?{q}", emu.base_url()),
        &tok,
    )
    .await;
    assert_eq!(s, 200);
    let t = &v["timestamps"][0];
    let start: f64 = t["start"].as_str().unwrap().parse().unwrap();
    let end: f64 = t["end"].as_str().unwrap().parse().unwrap();
    assert!(
        (start - 1.0).abs() < 0.01 && (end - 2.0).abs() < 0.01,
        "{t}"
    );
    // Without diarization every region is speaker_0, even a high voice.
    assert_eq!(t["speaker"], "speaker_0");
    emu.shutdown().await;
}

#[tokio::test]
async fn s3_post_verification_refuses_like_s3() {
    let mut c0 = cfg();
    c0.max_upload_bytes = 50_000;
    c0.form_lifetime = Duration::from_secs(3600);
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    let small = wav(16_000, 0.5, &[]);

    // Tampered signature.
    let mut t = fields.clone();
    for (k, v) in &mut t {
        if k == "x-amz-signature" {
            *v = v.chars().rev().collect();
        }
    }
    let (s, b) = s3_post(&c, &url, &t, small.clone()).await;
    assert_eq!(
        (s, s3_code(&b).as_str()),
        (403, "SignatureDoesNotMatch"),
        "{b}"
    );
    assert!(b.contains("<Error>") && b.contains("<Message>"));

    // Tampered policy (a larger content-length-range), signature unchanged.
    let mut t = fields.clone();
    for (k, v) in &mut t {
        if k == "policy" {
            let e = base64::engine::general_purpose::STANDARD;
            let p = String::from_utf8(e.decode(&*v).unwrap()).unwrap();
            *v = e.encode(p.replace("50000", "99999999"));
        }
    }
    let (s, b) = s3_post(&c, &url, &t, small.clone()).await;
    assert_eq!(
        (s, s3_code(&b).as_str()),
        (403, "SignatureDoesNotMatch"),
        "{b}"
    );

    // Another key than the policy allows.
    let mut t = fields.clone();
    for (k, v) in &mut t {
        if k == "key" {
            *v = "someone_elses.wav".into();
        }
    }
    let (s, b) = s3_post(&c, &url, &t, small.clone()).await;
    assert_eq!((s, s3_code(&b).as_str()), (403, "AccessDenied"), "{b}");
    assert!(b.contains("Policy Condition failed"), "{b}");

    // A field the policy does not name.
    let mut t = fields.clone();
    t.insert(1, ("acl".into(), "public-read".into()));
    let (s, b) = s3_post(&c, &url, &t, small.clone()).await;
    assert_eq!((s, s3_code(&b).as_str()), (403, "AccessDenied"), "{b}");
    assert!(b.contains("Extra input fields"), "{b}");

    // Too large for content-length-range.
    let (s, b) = s3_post(&c, &url, &fields, vec![0u8; 50_001]).await;
    assert_eq!((s, s3_code(&b).as_str()), (400, "EntityTooLarge"), "{b}");
    // Empty file: below the range's minimum of 1.
    let (s, b) = s3_post(&c, &url, &fields, Vec::new()).await;
    assert_eq!((s, s3_code(&b).as_str()), (400, "EntityTooSmall"), "{b}");

    // The file not last: the signature after it is ignored, as S3 ignores it.
    let sig = fields
        .iter()
        .find(|(k, _)| k == "x-amz-signature")
        .cloned()
        .unwrap();
    let mut form = Form::new();
    for (k, v) in fields.iter().filter(|(k, _)| k != "x-amz-signature") {
        form = form.text(k.clone(), v.clone());
    }
    form = form
        .part("file", Part::bytes(small.clone()).file_name("x.wav"))
        .text(sig.0, sig.1);
    let r = c.post(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s3_code(&r.text().await.unwrap()), "InvalidArgument");

    // No Content-Length (chunked): 411.
    let mut form = Form::new();
    for (k, v) in &fields {
        form = form.text(k.clone(), v.clone());
    }
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(small.clone())]);
    form = form.part(
        "file",
        Part::stream(reqwest::Body::wrap_stream(stream)).file_name("x.wav"),
    );
    let r = c.post(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 411);
    assert_eq!(s3_code(&r.text().await.unwrap()), "MissingContentLength");

    // None of the refusals created a job; the intact form still works.
    let key = key_of(&fields);
    assert!(emu.uploaded_file(&key).is_none());
    let (s, b) = s3_post(&c, &url, &fields, small).await;
    assert_eq!(s, 204, "{b}");
    emu.shutdown().await;
}

#[tokio::test]
async fn s3_form_expires() {
    let mut c0 = cfg();
    c0.time_scale = 3600.0 * 2.0; // the 3600 s form lives half a second
    c0.token_lifetime = Duration::from_secs(3600 * 1000);
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, b) = s3_post(&c, &url, &fields, wav(16_000, 0.5, &[])).await;
    assert_eq!((s, s3_code(&b).as_str()), (403, "AccessDenied"), "{b}");
    assert!(b.contains("Policy expired"), "{b}");
    emu.shutdown().await;
}

#[tokio::test]
async fn upload_form_refusals() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let url = format!("{}/asr/async/upload", emu.base_url());
    let send = |f: Vec<(&'static str, String)>| {
        let c = c.clone();
        let url = url.clone();
        let tok = tok.clone();
        async move {
            let r = c.post(url).bearer_auth(tok).form(&f).send().await.unwrap();
            (r.status().as_u16(), error_code(&r.text().await.unwrap()))
        }
    };
    let org = emu.org_id().to_string();
    assert_eq!(
        send(vec![("SampleRate", "16000".into())]).await,
        (400, "MissingParameter".into())
    );
    assert_eq!(
        send(vec![("OrgID", org.clone()), ("SampleRate", "96000".into())]).await,
        (400, "InvalidSampleRate".into())
    );
    assert_eq!(
        send(vec![
            ("OrgID", org.clone()),
            ("SampleRate", "16000".into()),
            ("Diarization", "maybe".into())
        ])
        .await,
        (400, "InvalidParameter".into())
    );
    assert_eq!(
        send(vec![
            ("OrgID", "not-mine".into()),
            ("SampleRate", "16000".into())
        ])
        .await,
        (403, "Forbidden".into())
    );
    let (s, v) = get_json(
        &c,
        format!("{}/asr/async/status?FileName=x", emu.base_url()),
        &tok,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("MissingParameter"))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn too_long_async_upload_fails_its_job() {
    let mut c0 = cfg();
    c0.async_max_seconds = 2.0;
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    assert_eq!(
        s3_post(&c, &url, &fields, wav(8_000, 2.1, &[])).await.0,
        204
    );
    assert_eq!(wait_done(&emu, &c, &tok, &key_of(&fields)).await, "failed");
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    assert_eq!(
        s3_post(&c, &url, &fields, wav(8_000, 2.0, &[])).await.0,
        204
    );
    assert_ne!(wait_done(&emu, &c, &tok, &key_of(&fields)).await, "failed");
    emu.shutdown().await;
}

#[tokio::test]
async fn undecodable_upload_fails_its_job() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    let (s, _) = s3_post(&c, &url, &fields, b"RIFF\x00\x00\x00\x00WAVEjunk".to_vec()).await;
    assert_eq!(s, 204);
    let key = key_of(&fields);
    assert_eq!(wait_done(&emu, &c, &tok, &key).await, "failed");
    emu.shutdown().await;
}

#[tokio::test]
async fn vela_minute_allocation() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let url = format!("{}/asr/async/upload/vela", emu.base_url());
    let meta = r#"{"email": "agent@example.com", "date_of_call": "06/08/2024"}"#;
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .form(&[("org_id", "org-a"), ("metadata", meta)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["fields"]["x-amz-signature"].is_string());
    assert!(v["fields"]["key"].as_str().unwrap().starts_with("vela_"));
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .form(&[("org_id", "org-a"), ("metadata", "not json")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    emu.set_vela_minutes_used("org-a", 60.0);
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .form(&[("org_id", "org-a")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "minute allocation exhausted");
    // Another organisation is unaffected.
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .form(&[("org_id", "org-b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn chats_chatbot_translate_tts() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let base = emu.base_url().to_string();
    let chats = r#"[{"message": "Sawubona", "time": "06/08/2024, 09:15", "sender": "user", "language": "zu-ZA"},
                    {"message": "Hello", "time": "06/08/2024, 09:16", "sender": "bot"}]"#;
    let r = c
        .post(format!("{base}/vela/chats"))
        .bearer_auth(&tok)
        .form(&[("org_id", "org-a"), ("chats", chats)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["count"], 2);
    let r = c
        .post(format!("{base}/vela/chats"))
        .bearer_auth(&tok)
        .form(&[
            ("org_id", "org-a"),
            (
                "chats",
                r#"[{"message": "x", "time": "yesterday", "sender": "user"}]"#,
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = c
        .post(format!("{base}/startConversation"))
        .bearer_auth(&tok)
        .form(&[("BotID", "bot-1"), ("LanguageCode", "en-ZA")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["LanguageCode"], "English");
    let conv = v["ConversationID"].as_str().unwrap().to_string();
    assert_eq!(v["UserID"], conv.as_str());
    let r = c
        .post(format!("{base}/startConversation"))
        .bearer_auth(&tok)
        .form(&[("LanguageCode", "en-ZA")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let form = Form::new()
        .text("BotID", "bot-1")
        .text("LanguageCode", "English")
        .text("ConversationID", conv.clone())
        .text("MessageType", "text")
        .text("ResponseType", "speech")
        .text("TextMsg", "hello");
    let r = c
        .post(format!("{base}/message"))
        .bearer_auth(&tok)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["TextMsg"], "hello");
    assert!(v["TextResponse"].is_array() && v["Buttons"].is_array());
    let audio_url = v["SpeechResponseURL"].as_str().unwrap().to_string();
    let r = c.get(audio_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(hound::WavReader::new(Cursor::new(r.bytes().await.unwrap().to_vec())).is_ok());

    let form = Form::new()
        .text("BotID", "bot-1")
        .text("LanguageCode", "en-ZA")
        .text("ConversationID", conv.clone())
        .text("MessageType", "speech")
        .text("ResponseType", "text")
        .part(
            "SpeechFile",
            Part::bytes(wav(16_000, 1.0, &[])).file_name("m.wav"),
        );
    let r = c
        .post(format!("{base}/message"))
        .bearer_auth(&tok)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["Transcription"]
        .as_str()
        .unwrap()
        .starts_with("[emulator] 1.000 s"));
    let form = Form::new()
        .text("BotID", "bot-1")
        .text("LanguageCode", "en-ZA")
        .text("ConversationID", "never-started")
        .text("MessageType", "text")
        .text("ResponseType", "text")
        .text("TextMsg", "hi");
    let r = c
        .post(format!("{base}/message"))
        .bearer_auth(&tok)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = c
        .post(format!("{base}/translate"))
        .bearer_auth(&tok)
        .form(&[("Text", "Molo"), ("LanguageCode", "xh-ZA")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["Characters"], 4);
    let r = c
        .post(format!("{base}/translate"))
        .bearer_auth(&tok)
        .form(&[("LanguageCode", "xh-ZA")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = c
        .post(format!("{base}/tts"))
        .bearer_auth(&tok)
        .form(&[("TextMsg", "Molo"), ("LanguageCode", "xh-ZA")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["LanguageCode"], "IsiXhosa");
    assert!(v["SpeechResponseURL"].as_str().unwrap().starts_with(&base));
    let r = c
        .post(format!("{base}/tts"))
        .bearer_auth(&tok)
        .form(&[("TextMsg", "Molo"), ("LanguageCode", "xx-XX")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    emu.shutdown().await;
}

/// Sends `n` distinct sync requests once each (no retries) and returns what each attempt met.
async fn fault_trace(seed: u64, n: usize) -> Vec<(u16, Option<FaultKind>)> {
    let mut c0 = cfg();
    c0.seed = seed;
    c0.faults = FaultConfig::with_rate(0.5);
    c0.faults.latency = Duration::from_millis(5);
    c0.faults.retry_after_secs = 7;
    c0.faults.routes = Some(vec!["/asr/async/status".into()]);
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    for i in 0..n {
        let r = c
            .get(format!(
                "{}/asr/async/status?OrgID={}&FileName=f{i}.wav",
                emu.base_url(),
                emu.org_id()
            ))
            .bearer_auth(&tok)
            .send()
            .await;
        match r {
            Ok(r) => {
                if r.status() == 429 {
                    assert_eq!(r.headers()["retry-after"], "7");
                }
            }
            Err(e) => assert!(!e.is_status(), "{e}"),
        }
    }
    let recs = emu.requests();
    emu.shutdown().await;
    recs.into_iter()
        .filter(|r| r.path == "/asr/async/status")
        .map(|r| (r.status, r.fault))
        .collect()
}

#[tokio::test]
async fn faults_are_deterministic_per_seed() {
    let a = fault_trace(11, 40).await;
    let b = fault_trace(11, 40).await;
    let other = fault_trace(12, 40).await;
    assert_eq!(a.len(), 40);
    assert_eq!(a, b);
    assert_ne!(a, other);
    let faults = a.iter().filter(|(_, f)| f.is_some()).count();
    assert!((8..=32).contains(&faults), "{faults} of 40 at rate 0.5");
    for (status, f) in &a {
        match f {
            Some(FaultKind::TooManyRequests) => assert_eq!(*status, 429),
            Some(FaultKind::InternalError) => assert_eq!(*status, 500),
            Some(FaultKind::Unavailable) => assert_eq!(*status, 503),
            Some(FaultKind::DropConnection) => assert_eq!(*status, 0),
            Some(FaultKind::Latency) | None => assert_eq!(*status, 200),
            Some(_) => {}
        }
    }
    let kinds: std::collections::HashSet<_> = a.iter().filter_map(|(_, f)| *f).collect();
    assert!(kinds.len() >= 3, "{kinds:?}");
}

#[tokio::test]
async fn consecutive_faults_are_capped_and_attempts_are_keyed() {
    let mut c0 = cfg();
    c0.faults = FaultConfig::with_rate(1.0);
    c0.faults.kinds = vec![FaultKind::InternalError, FaultKind::DropConnection];
    c0.faults.max_consecutive = Some(2);
    c0.faults.routes = Some(vec!["/asr".into()]);
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let audio = wav(16_000, 1.0, &[(0.2, 0.6, 300.0)]);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        // A fresh multipart body (new boundary) each time, as a retrying client sends.
        let r = c
            .post(format!("{}/asr", emu.base_url()))
            .bearer_auth(&tok)
            .multipart(asr_form(audio.clone(), "16000"))
            .send()
            .await;
        outcomes.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
    }
    assert_ne!(outcomes[0], 200);
    assert_ne!(outcomes[1], 200);
    assert_eq!(outcomes[2], 200, "{outcomes:?}");
    let recs: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path == "/asr")
        .collect();
    assert_eq!(recs.len(), 3);
    let key = recs[0].attempt_key.clone().unwrap();
    assert!(recs
        .iter()
        .all(|r| r.attempt_key.as_deref() == Some(key.as_str())));
    assert_eq!(recs.iter().map(|r| r.status).collect::<Vec<_>>(), outcomes);
    // Another logical request has another key.
    let r = c
        .post(format!("{}/asr", emu.base_url()))
        .bearer_auth(&tok)
        .multipart(asr_form(wav(16_000, 1.0, &[]), "16000"))
        .send()
        .await;
    drop(r);
    let last = emu.requests().pop().unwrap();
    assert_ne!(last.attempt_key.as_deref(), Some(key.as_str()));
    emu.shutdown().await;
}

#[tokio::test]
async fn s3_faults_have_no_side_effects() {
    let mut c0 = cfg();
    c0.faults = FaultConfig::with_rate(1.0);
    c0.faults.kinds = vec![FaultKind::Unavailable];
    c0.faults.max_consecutive = Some(1);
    c0.faults.routes = Some(vec!["/s3/".into()]);
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    let key = key_of(&fields);
    let audio = wav(16_000, 1.0, &[]);
    let (s, _) = s3_post(&c, &url, &fields, audio.clone()).await;
    assert_eq!(s, 503);
    assert!(emu.uploaded_file(&key).is_none());
    let (_, v) = get_json(
        &c,
        format!(
            "{}/asr/async/status?OrgID={}&FileName={key}",
            emu.base_url(),
            emu.org_id()
        ),
        &tok,
    )
    .await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0));
    let (s, _) = s3_post(&c, &url, &fields, audio).await;
    assert_eq!(s, 204);
    let recs: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/s3/"))
        .collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].attempt_key, recs[1].attempt_key);
    assert!(recs[0].attempt_key.is_some());
    emu.shutdown().await;
}

#[test]
fn presigned_post_signature_matches_an_independent_computation() {
    // Recompute the SigV4 chain by hand with hmac/sha2 from the documented algorithm.
    use hmac::{Hmac, Mac};
    type H = Hmac<sha2::Sha256>;
    fn h(k: &[u8], d: &[u8]) -> Vec<u8> {
        let mut m = H::new_from_slice(k).unwrap();
        m.update(d);
        m.finalize().into_bytes().to_vec()
    }
    let creds = sigv4::Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    );
    let now = sigv4::parse_iso8601("2015-12-29T00:00:00.000Z").unwrap();
    let exp = sigv4::parse_iso8601("2015-12-30T12:00:00.000Z").unwrap();
    let p = sigv4::presign_post_at(
        &creds,
        "us-east-1",
        "s3",
        "sigv4examplebucket",
        "user/user1/x",
        now,
        exp,
        None,
        &[],
    );
    let policy = p.field("policy").unwrap();
    let k = h(b"AWS4wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", b"20151229");
    let k = h(&k, b"us-east-1");
    let k = h(&k, b"s3");
    let k = h(&k, b"aws4_request");
    assert_eq!(
        p.field("x-amz-signature").unwrap(),
        hex::encode(h(&k, policy.as_bytes()))
    );
    assert_eq!(
        p.field("x-amz-credential").unwrap(),
        "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request"
    );
    assert_eq!(p.field("x-amz-date").unwrap(), "20151229T000000Z");
    assert!(p
        .policy_json
        .contains("\"expiration\":\"2015-12-30T12:00:00.000Z\""));
}

#[tokio::test]
async fn dropped_connection_gets_no_response() {
    let mut c0 = cfg();
    c0.faults = FaultConfig::with_rate(1.0);
    c0.faults.kinds = vec![FaultKind::DropConnection];
    c0.faults.max_consecutive = Some(1);
    c0.faults.routes = Some(vec!["/translate".into()]);
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let send = || {
        c.post(format!("{}/translate", emu.base_url()))
            .bearer_auth(&tok)
            .form(&[("Text", "Molo")])
            .send()
    };
    let first = send().await;
    let err = first.expect_err("the connection is dropped without a response");
    assert!(!err.is_status() && !err.is_timeout(), "{err}");
    let second = send().await.expect("served");
    assert_eq!(second.status(), 200);
    let st: Vec<u16> = emu
        .requests()
        .iter()
        .filter(|r| r.path == "/translate")
        .map(|r| r.status)
        .collect();
    assert_eq!(st, vec![0, 200]);
    emu.shutdown().await;
}

/// The async data of a finished job.
async fn async_data(emu: &RunningEmulator, c: &reqwest::Client, tok: &str, key: &str) -> Value {
    get_json(
        c,
        format!(
            "{}/asr/async/data?OrgID={}&FileName={key}",
            emu.base_url(),
            emu.org_id()
        ),
        tok,
    )
    .await
    .1
}

fn flac(rate: u32, secs: f64, bursts: &[(f64, f64, f64)]) -> Vec<u8> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let mut r = hound::WavReader::new(Cursor::new(wav(rate, secs, bursts))).unwrap();
    let samples: Vec<i32> = r.samples::<i16>().map(|s| i32::from(s.unwrap())).collect();
    let config = flacenc::config::Encoder::default().into_verified().unwrap();
    let source = flacenc::source::MemSource::from_samples(&samples, 1, 16, rate as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size).unwrap();
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).unwrap();
    sink.as_slice().to_vec()
}

#[tokio::test]
async fn flac_is_decoded_on_both_paths() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let bursts = [(0.25, 0.75, 200.0), (1.5, 2.0, 900.0)];
    let audio = flac(16_000, 2.5, &bursts);
    assert!(audio.starts_with(b"fLaC"));
    // The same samples as WAV and as FLAC get the same checksum.
    let (s, b) = post_asr(&emu, &c, &tok, audio.clone(), "16000").await;
    assert_eq!(s, 200, "{b}");
    let (_, bw) = post_asr(&emu, &c, &tok, wav(16_000, 2.5, &bursts), "16000").await;
    let t = |b: &str| serde_json::from_str::<Value>(b).unwrap()["Transcription"].clone();
    assert_eq!(t(&b), t(&bw));
    assert!(t(&b).as_str().unwrap().starts_with("[emulator] 2.500 s"));
    assert!(serde_json::from_str::<Value>(&b).unwrap()["SpeechFile"]
        .as_str()
        .unwrap()
        .ends_with(".flac"));
    let (url, fields) = upload_form(&emu, &c, &tok, true).await;
    let key = key_of(&fields);
    assert_eq!(s3_post(&c, &url, &fields, audio).await.0, 204);
    wait_done(&emu, &c, &tok, &key).await;
    let v = async_data(&emu, &c, &tok, &key).await;
    let ts = v["timestamps"].as_array().unwrap();
    assert_eq!(ts.len(), 2, "{v}");
    for (t, (a, b, _)) in ts.iter().zip(bursts) {
        assert!(
            (t["start"].as_f64().unwrap() - a * 1000.0).abs() <= 10.0,
            "{t}"
        );
        assert!(
            (t["end"].as_f64().unwrap() - b * 1000.0).abs() <= 10.0,
            "{t}"
        );
    }
    assert_eq!(ts[0]["speaker"], "speaker_0");
    assert_eq!(ts[1]["speaker"], "speaker_1");
    emu.shutdown().await;
}

#[tokio::test]
async fn large_upload_is_streamed_past_the_api_body_limit() {
    // 140 MB, above the 128 MB limit of the JSON/form routes, sent streamed from a file with
    // a Content-Length, as the client sends it.
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let len: u64 = 140 << 20;
    {
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(len).unwrap();
    }
    let file = tokio::fs::File::open(&path).await.unwrap();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let mut form = Form::new();
    for (k, v) in &fields {
        form = form.text(k.clone(), v.clone());
    }
    form = form.part(
        "file",
        Part::stream_with_length(body, len).file_name("big.bin"),
    );
    let r = c.post(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let stored = emu.uploaded_file(&key_of(&fields)).unwrap();
    assert_eq!(std::fs::metadata(stored).unwrap().len(), len);
    emu.shutdown().await;
}

/// The public signer against an independent S3 implementation: `s3s` + `s3s-fs` with their
/// own credentials, on loopback.
#[tokio::test]
async fn signer_is_accepted_by_s3s() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("bucket-a")).unwrap();
    let (ak, sk) = ("AKIAS3SLOCALTEST", "s3s/local+secret/key");
    let service = {
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(ak, sk));
        b.build()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let b = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let _ = b
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), service)
                    .await;
            });
        }
    });
    let url = format!("http://{addr}/bucket-a");
    let creds = sigv4::Credentials::new(ak, sk);
    let sign = |key: &str, max: u64| {
        let p = sigv4::presign_post(
            &creds,
            "us-east-1",
            "bucket-a",
            key,
            std::time::SystemTime::now() + Duration::from_secs(600),
            Some(1..=max),
            &[],
        );
        p.fields
    };
    let c = http();
    let audio = wav(16_000, 0.5, &[(0.1, 0.3, 440.0)]);

    let fields = sign("in/ok.wav", 1_000_000);
    let (s, b) = s3_post(&c, &url, &fields, audio.clone()).await;
    assert!((200..300).contains(&s), "{s} {b}");
    assert_eq!(
        std::fs::read(root.path().join("bucket-a/in/ok.wav")).unwrap(),
        audio,
        "lands byte-identical"
    );

    let mut bad = sign("in/bad.wav", 1_000_000);
    for (k, v) in &mut bad {
        if k == "x-amz-signature" {
            *v = v.chars().rev().collect();
        }
    }
    let (s, b) = s3_post(&c, &url, &bad, audio.clone()).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(s3_code(&b), "SignatureDoesNotMatch", "{b}");
    assert!(!root.path().join("bucket-a/in/bad.wav").exists());

    let small = sign("in/big.wav", 100);
    let (s, b) = s3_post(&c, &url, &small, audio.clone()).await;
    assert!((400..500).contains(&s), "{s} {b}");
    assert!(!root.path().join("bucket-a/in/big.wav").exists());
    server.abort();
}

#[tokio::test]
async fn ogg_vorbis_and_amr_fixtures() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/emulator");
    let ogg = std::fs::read(dir.join("tone.ogg")).unwrap();
    let amr = std::fs::read(dir.join("tone.amr")).unwrap();
    let text = |b: &str| {
        serde_json::from_str::<Value>(b).unwrap()["Transcription"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (s, b) = post_asr(&emu, &c, &tok, ogg.clone(), "16000").await;
    assert_eq!(s, 200, "{b}");
    assert!(text(&b).starts_with("[emulator] 2.500 s"), "{b}");
    let (s, b) = post_asr(&emu, &c, &tok, ogg.clone(), "8000").await;
    assert_eq!((s, error_code(&b).as_str()), (400, "SampleRateMismatch"));
    let (s, b) = post_asr(&emu, &c, &tok, amr, "8000").await;
    assert_eq!(s, 200, "{b}");
    assert!(text(&b).starts_with("[emulator] 2.500 s"), "{b}");

    let (url, fields) = upload_form(&emu, &c, &tok, true).await;
    let key = key_of(&fields);
    assert_eq!(s3_post(&c, &url, &fields, ogg).await.0, 204);
    wait_done(&emu, &c, &tok, &key).await;
    let v = async_data(&emu, &c, &tok, &key).await;
    let ts = v["timestamps"].as_array().unwrap();
    assert_eq!(ts.len(), 1, "{v}");
    assert!(
        (ts[0]["start"].as_f64().unwrap() - 500.0).abs() <= 20.0,
        "{v}"
    );
    assert!(
        (ts[0]["end"].as_f64().unwrap() - 2000.0).abs() <= 20.0,
        "{v}"
    );
    assert_eq!(ts[0]["speaker"], "speaker_0");
    emu.shutdown().await;
}

#[tokio::test]
async fn data_while_running_and_for_unknown_files() {
    let mut c0 = cfg();
    c0.async_base_delay = Duration::from_secs(3600);
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    let key = key_of(&fields);
    assert_eq!(
        s3_post(&c, &url, &fields, wav(16_000, 1.0, &[])).await.0,
        204
    );
    let q = |f: &str| {
        format!(
            "{}/asr/async/data?OrgID={}&FileName={f}",
            emu.base_url(),
            emu.org_id()
        )
    };
    let (s, v) = get_json(&c, q(&key), &tok).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("running")));
    assert!(v.get("timestamps").is_none());
    let (s, v) = get_json(&c, q("asr_never_uploaded.wav"), &tok).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("unknown")));
    assert_eq!(v["timestamps"].as_array().map(Vec::len), Some(0));
    // Another organisation sees nothing of this job.
    let (_, v) = get_json(
        &c,
        format!(
            "{}/asr/async/status?OrgID=other-org&FileName={key}",
            emu.base_url()
        ),
        &tok,
    )
    .await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0));
    emu.shutdown().await;
}

#[tokio::test]
async fn s3_upload_dropped_after_the_body_is_stored_nowhere() {
    let mut c0 = cfg();
    c0.faults = FaultConfig::with_rate(1.0);
    c0.faults.kinds = vec![FaultKind::DropConnection];
    c0.faults.max_consecutive = Some(1);
    c0.faults.routes = Some(vec!["/s3/".into()]);
    let emu = start(c0).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let (url, fields) = upload_form(&emu, &c, &tok, false).await;
    let mut form = Form::new();
    for (k, v) in &fields {
        form = form.text(k.clone(), v.clone());
    }
    form = form.part(
        "file",
        Part::bytes(wav(16_000, 1.0, &[])).file_name("x.wav"),
    );
    let r = c.post(&url).multipart(form).send().await;
    assert!(r.is_err(), "{r:?}");
    assert!(emu.uploaded_file(&key_of(&fields)).is_none());
    let (s, _) = s3_post(&c, &url, &fields, wav(16_000, 1.0, &[])).await;
    assert_eq!(s, 204);
    let st: Vec<u16> = emu
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/s3/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(st, vec![0, 204]);
    emu.shutdown().await;
}

#[tokio::test]
async fn success_action_status_variants() {
    for (style, status) in [(SignatureStyle::V4, 201u16), (SignatureStyle::V2, 200)] {
        let mut c0 = cfg();
        c0.success_action_status = Some(status);
        c0.signature_style = style;
        let emu = start(c0).await;
        let c = http();
        let tok = id_token(&emu, &c).await;
        let (url, fields) = upload_form(&emu, &c, &tok, false).await;
        assert!(fields.iter().any(|(k, _)| k == "success_action_status"));
        // Posting to the bucket URL with a trailing slash works too, as on S3.
        let (s, b) = s3_post(&c, &format!("{url}/"), &fields, wav(16_000, 1.0, &[])).await;
        assert_eq!(s, status, "{b}");
        if status == 201 {
            assert!(
                b.contains("<PostResponse>") && b.contains(&key_of(&fields)),
                "{b}"
            );
        }
        emu.shutdown().await;
    }
}

#[test]
fn config_debug_redacts_the_refresh_token() {
    let mut c = EmulatorConfig::default();
    c.refresh_token = Some("very-secret-refresh".into());
    let d = format!("{c:?}");
    assert!(!d.contains("very-secret-refresh"), "{d}");
    assert!(d.contains("<redacted>"));
    let creds = sigv4::Credentials::new("AKID", "s3cr3t-key").with_session_token("tok-123");
    let d = format!("{creds:?}");
    assert!(!d.contains("s3cr3t-key") && !d.contains("tok-123"), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asr_capacity_refuses_beyond_it_and_counts_what_was_in_flight() {
    let mut c = cfg();
    c.asr_capacity = Some(3);
    c.asr_latency = Duration::from_millis(300);
    let emu = start(c).await;
    let h = http();
    let tok = id_token(&emu, &h).await;
    let audio = wav(16_000, 0.5, &[(0.1, 0.4, 440.0)]);
    // Eight at once against a capacity of three: three served, five refused with 429.
    let all = futures_util::future::join_all(
        (0..8).map(|_| post_asr(&emu, &h, &tok, audio.clone(), "16000")),
    )
    .await;
    let ok = all.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<&(u16, String)> = all.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!((ok, busy.len()), (3, 5), "{all:?}");
    assert!(busy.iter().all(|(_, b)| error_code(b) == "TooManyRequests"));
    let s = emu.asr_stats();
    assert_eq!((s.accepted, s.refused, s.peak_in_flight), (3, 5, 3));
    // Three held 300 ms together, from the first request to the last one's end.
    assert!(s.mean_in_flight > 2.0 && s.mean_in_flight <= 3.0, "{s:?}");
    // One at a time: never more than one in flight, each held the latency.
    emu.reset_asr_stats();
    let t = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(
            post_asr(&emu, &h, &tok, audio.clone(), "16000").await.0,
            200
        );
    }
    assert!(t.elapsed() >= Duration::from_millis(600));
    let s = emu.asr_stats();
    assert_eq!((s.accepted, s.refused, s.peak_in_flight), (2, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_go_no_faster_than_the_bandwidth_limit() {
    let mut c = cfg();
    c.upload_bytes_per_sec = Some(200_000);
    let emu = start(c).await;
    let h = http();
    let tok = id_token(&emu, &h).await;
    let (url, fields) = upload_form(&emu, &h, &tok, false).await;
    // 10 s of 16 kHz audio: 320 kB through 200 kB/s takes 1.6 s at least.
    let file = wav(16_000, 10.0, &[(1.0, 2.0, 440.0)]);
    let t = std::time::Instant::now();
    let (status, body) = s3_post(&h, &url, &fields, file).await;
    let took = t.elapsed();
    assert!((200..300).contains(&status), "{status} {body}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// Voices are numbered per job in the order they are first heard: the high voice first makes
/// it `speaker_0`, as a diarizing service that knows voices apart but not who they are.
#[tokio::test]
async fn speakers_are_numbered_in_the_order_a_job_first_hears_them() {
    let emu = start(cfg()).await;
    let c = http();
    let tok = id_token(&emu, &c).await;
    let bursts = [(0.25, 0.75, 900.0), (1.5, 2.0, 200.0), (3.0, 3.5, 900.0)];
    let (url, fields) = upload_form(&emu, &c, &tok, true).await;
    let key = key_of(&fields);
    assert_eq!(
        s3_post(&c, &url, &fields, wav(16_000, 4.0, &bursts))
            .await
            .0,
        204
    );
    wait_done(&emu, &c, &tok, &key).await;
    let v = async_data(&emu, &c, &tok, &key).await;
    let ts = v["timestamps"].as_array().unwrap();
    let who: Vec<&str> = ts.iter().map(|t| t["speaker"].as_str().unwrap()).collect();
    assert_eq!(who, ["speaker_0", "speaker_1", "speaker_0"], "{v}");
    emu.shutdown().await;
}
