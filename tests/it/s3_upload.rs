//! The presigned POST upload against a real, independent S3 implementation: `s3s` + `s3s-fs`
//! serving a directory on 127.0.0.1, with a SigV4 POST policy signed in this file for its
//! credentials (the signer follows AWS's "Browser-Based Uploads Using POST (SigV4)" pages and
//! is independent of the client and of the emulator).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asr_pipeline::botlhale::{Client, Credentials, PresignedPost, RetryPolicy};
use asr_pipeline::ErrorKind;
use base64::Engine;
use hmac::{Hmac, Mac};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use sha2::Sha256;

const AK: &str = "AKIDEXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
const BUCKET: &str = "uploads";

/// Serves `root` as S3 on a loopback port; returns the base URL.
async fn start_s3(root: &Path) -> String {
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut b = S3ServiceBuilder::new(fs);
    b.set_auth(SimpleAuth::from_single(AK, SK));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut http = ConnBuilder::new(TokioExecutor::new());
        // s3s 0.14's POST-object parser refuses any read over 64 KiB
        // (BoundaryBufferTooLarge), and hyper's read buffer otherwise grows adaptively past
        // that (to ~400 KiB), which made this test fail at random: keep reads small.
        http.http1().max_buf_size(16 * 1024);
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    format!("http://{addr}")
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// UTC civil date and time of `t` (Howard Hinnant's civil_from_days).
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// A SigV4 presigned POST form for `key` in the bucket, valid `valid` from now.
fn sigv4_form(base: &str, key: &str, valid: Duration) -> PresignedPost {
    let now = SystemTime::now();
    let (y, mo, d, h, mi, s) = civil(now);
    let date = format!("{y:04}{mo:02}{d:02}");
    let amz_date = format!("{date}T{h:02}{mi:02}{s:02}Z");
    let (ey, emo, ed, eh, emi, es) = civil(now + valid);
    let expiration = format!("{ey:04}-{emo:02}-{ed:02}T{eh:02}:{emi:02}:{es:02}.000Z");
    let credential = format!("{AK}/{date}/{REGION}/s3/aws4_request");
    let policy = serde_json::json!({
        "expiration": expiration,
        "conditions": [
            {"bucket": BUCKET},
            ["starts-with", "$key", "asr_"],
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
            ["content-length-range", 1, 50_000_000]
        ]
    });
    let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let k_date = hmac(format!("AWS4{SK}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, REGION.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, policy_b64.as_bytes()));
    PresignedPost::new(
        format!("{base}/{BUCKET}"),
        vec![
            ("key".into(), key.into()),
            ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
            ("x-amz-credential".into(), credential),
            ("x-amz-date".into(), amz_date),
            ("policy".into(), policy_b64),
            ("x-amz-signature".into(), signature),
        ],
    )
}

fn client() -> Client {
    Client::builder()
        .credentials(Credentials::IdToken("unused-for-s3".into()))
        .base_url("http://127.0.0.1:9")
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .build()
        .unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so a byte shift or a lost chunk shows.
fn payload(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn correct_upload_lands_byte_identical() {
    let store = tempfile::tempdir().unwrap();
    let base = start_s3(store.path()).await;
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("call.wav");
    // Bigger than the client's 64 KiB chunk and not a multiple of it.
    let data = payload(3 * 1024 * 1024 + 12_345);
    std::fs::write(&src, &data).unwrap();

    let key = "asr_h1754Le80Gun__16000_1_7Pf1jL54um46.wav";
    let form = sigv4_form(&base, key, Duration::from_secs(3600));
    client()
        .upload_to_form(&form, &src, "audio/wav")
        .await
        .expect("s3s accepts the upload");

    let stored = std::fs::read(store.path().join(BUCKET).join(key)).unwrap();
    assert_eq!(stored.len(), data.len());
    assert!(stored == data, "stored object differs from the source");
}

#[tokio::test]
async fn tampered_signature_is_rejected_by_s3() {
    let store = tempfile::tempdir().unwrap();
    let base = start_s3(store.path()).await;
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("call.wav");
    // Small enough to sit in the socket buffers: s3s answers as soon as the signature fails
    // and closes, and a body still being written then ends in a broken pipe instead of the
    // S3 error (a known limit of the client with servers that refuse early).
    std::fs::write(&src, payload(16_000)).unwrap();

    let key = "asr_tampered.wav";
    let mut form = sigv4_form(&base, key, Duration::from_secs(3600));
    for (k, v) in &mut form.fields {
        if k == "x-amz-signature" {
            // Flip one hex digit.
            let first = if v.starts_with('0') { "1" } else { "0" };
            v.replace_range(0..1, first);
        }
    }
    let err = client()
        .upload_to_form(&form, &src, "audio/wav")
        .await
        .expect_err("a tampered signature must be refused");
    match err.kind() {
        ErrorKind::UploadRejected { status, code, .. } => {
            assert_eq!(*status, 403, "{err}");
            assert_eq!(code, "SignatureDoesNotMatch", "{err}");
        }
        other => panic!("expected UploadRejected, got {other:?}"),
    }
    assert!(!store.path().join(BUCKET).join(key).exists());
}

#[tokio::test]
async fn key_outside_the_policy_is_rejected_by_s3() {
    let store = tempfile::tempdir().unwrap();
    let base = start_s3(store.path()).await;
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("call.wav");
    std::fs::write(&src, payload(1000)).unwrap();
    // The policy says the key starts with `asr_`.
    let mut form = sigv4_form(&base, "asr_x.wav", Duration::from_secs(3600));
    form.fields[0].1 = "other/x.wav".into();
    let err = client()
        .upload_to_form(&form, &src, "audio/wav")
        .await
        .expect_err("policy violation");
    // s3s answers 400 InvalidPolicyDocument (AWS says 403 AccessDenied): either is a refusal.
    assert!(
        matches!(err.kind(), ErrorKind::UploadRejected { status: 400 | 403, code, .. } if !code.is_empty()),
        "{err}"
    );
    assert!(!store.path().join(BUCKET).join("other/x.wav").exists());
}
