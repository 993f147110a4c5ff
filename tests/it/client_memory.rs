//! A 700 MB streamed upload keeps the client's memory small.
//!
//! The test re-runs its own binary as a child process (env `UPLOAD_MEMORY_CHILD=1`), so the
//! measured peak resident set (`VmHWM` in `/proc/self/status`) belongs to a fresh process that
//! does nothing but the upload. The child uploads a sparse 700 MB file with
//! [`Client::upload_to_form`] to a loopback HTTP server (in the child, reading into one 64 KiB
//! buffer and discarding) that checks the body arrives with an exact `Content-Length` and not
//! chunked. The parent asserts the peak stays under 32 MiB and prints the figure.
//! Size can be changed with `UPLOAD_MEMORY_MB` (default 700).

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asr_pipeline::botlhale::{Client, Credentials, PresignedPost, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEST_NAME: &str = "client_memory::streamed_700mb_upload_stays_under_32mb";

#[test]
fn streamed_700mb_upload_stays_under_32mb() {
    if std::env::var_os("UPLOAD_MEMORY_CHILD").is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env("UPLOAD_MEMORY_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.find(name).map(|i| &l[i + name.len()..]))
            .and_then(|v| {
                let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .unwrap_or_else(|| panic!("no {name} in child output: {stdout}"))
    };
    let hwm_kb = field("VMHWM_KB=");
    let received = field("RECEIVED_BODY_BYTES=");
    let file = field("FILE_BYTES=");
    let mb = field("MB=");
    println!(
        "uploaded {mb} MB ({file} file bytes, {received} body bytes received); child peak RSS (VmHWM) = {hwm_kb} kB = {:.1} MiB",
        hwm_kb as f64 / 1024.0
    );
    assert!(
        received > file,
        "the server must have received the whole body"
    );
    assert!(
        hwm_kb < 32 * 1024,
        "peak RSS {hwm_kb} kB is not under 32 MiB"
    );
}

fn child() {
    let mb: u64 = std::env::var("UPLOAD_MEMORY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(700);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.wav");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(mb * 1024 * 1024).unwrap(); // sparse: no disk, no memory
        drop(f);

        let received = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = received.clone();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            // Read the head.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                sock.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
                assert!(head.len() < 16 * 1024, "head too long");
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            assert!(
                !head.contains("transfer-encoding"),
                "body must not be chunked: {head}"
            );
            let len: u64 = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length header");
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = len;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = sock.read(&mut buf[..want]).await.unwrap();
                assert!(n > 0, "body ended early");
                left -= n as u64;
            }
            rec.store(len, Ordering::SeqCst);
            sock.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            sock.shutdown().await.ok();
        });

        let client = Client::builder()
            .credentials(Credentials::IdToken("unused".into()))
            .base_url("http://127.0.0.1:9")
            .retry(RetryPolicy::none())
            .request_timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        let form = PresignedPost::new(
            format!("http://{addr}/bucket"),
            vec![
                ("key".into(), "asr_big.wav".into()),
                ("policy".into(), "e30=".into()),
                ("x-amz-signature".into(), "00".into()),
            ],
        );
        client
            .upload_to_form(&form, &path, "audio/wav")
            .await
            .expect("upload to the discard server");
        println!("MB={mb}");
        println!("FILE_BYTES={}", mb * 1024 * 1024);
        println!("RECEIVED_BODY_BYTES={}", received.load(Ordering::SeqCst));
    });
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap();
    println!("VMHWM_KB={hwm}");
}
