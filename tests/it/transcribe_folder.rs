//! Acceptance tests of `examples/transcribe_folder`: the built example binary runs against the
//! emulator (started in this test process, reached through `--endpoint` with
//! `BOTLHALE_REFRESH_TOKEN` + `BOTLHALE_ORG_ID`) on folders generated here, and the outputs,
//! `summary.json`, the journal, the emulator's request log and the exit code are checked.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use botlhale_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use serde_json::Value;

/// The example binary: `cargo test` builds the examples beside the test binaries, in the same
/// profile, before it runs any test (no cargo invocation from inside a test).
pub(crate) fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<this test> → target/<profile>/examples/transcribe_folder
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let bin = profile_dir
            .join("examples")
            .join(format!("transcribe_folder{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} not found: run these tests with `cargo test`, which builds the examples",
            bin.display()
        );
        bin
    })
}

/// The command with the emulator's credentials and nothing from the host environment.
pub(crate) fn command(emu: &RunningEmulator) -> Command {
    let mut c = Command::new(binary());
    c.env_remove("BOTLHALE_TOKEN")
        .env_remove("BOTLHALE_BASE_URL")
        .env("BOTLHALE_REFRESH_TOKEN", emu.refresh_token())
        .env("BOTLHALE_ORG_ID", emu.org_id())
        .env_remove("RUST_LOG")
        .arg("--endpoint")
        .arg(emu.base_url())
        .arg("--quiet");
    c
}

pub(crate) fn run(mut c: Command) -> Output {
    let out = c.output().expect("running transcribe_folder");
    eprintln!(
        "--- exit {:?}\n--- stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn unit(name: &str) -> Vec<i16> {
    let path = format!("{}/testdata/speech/{name}.wav", env!("CARGO_MANIFEST_DIR"));
    hound::WavReader::open(path)
        .expect("speech fixture")
        .into_samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect()
}

/// Speech units (committed fixtures) separated by `gap_ms` of silence, as a 16 kHz WAV with
/// `channels` identical channels.
pub(crate) fn speech_wav(path: &Path, units: &[&str], gap_ms: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    let gap = vec![0i16; (gap_ms * 16) as usize];
    let put = |w: &mut hound::WavWriter<_>, s: &[i16]| {
        for x in s {
            for _ in 0..channels {
                w.write_sample(*x).expect("write");
            }
        }
    };
    put(&mut w, &gap);
    for u in units {
        put(&mut w, &unit(u));
        put(&mut w, &gap);
    }
    w.finalize().expect("finalize");
}

/// Every file under `root` with its size and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut m = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let meta = fs::symlink_metadata(&p).expect("metadata");
            if meta.is_dir() {
                stack.push(p.clone());
            }
            m.insert(
                p.strip_prefix(root).expect("prefix").to_path_buf(),
                (meta.len(), meta.modified().expect("mtime")),
            );
        }
    }
    m
}

pub(crate) fn json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn count_requests(
    emu: &RunningEmulator,
    method: &str,
    pred: impl Fn(&str) -> bool,
) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method == method && pred(&r.path) && r.status / 100 == 2)
        .count()
}

pub(crate) fn upload_forms(emu: &RunningEmulator) -> usize {
    count_requests(emu, "POST", |p| p == "/asr/async/upload")
}

pub(crate) fn s3_uploads(emu: &RunningEmulator) -> usize {
    count_requests(emu, "POST", |p| p.starts_with("/s3/"))
}

pub(crate) fn sync_requests(emu: &RunningEmulator) -> usize {
    count_requests(emu, "POST", |p| p == "/asr")
}

/// The generated input tree of the main acceptance test.
fn mixed_tree(root: &Path) {
    fs::create_dir_all(root.join("calls/2024 mars/équipe ü")).expect("dirs");
    fs::create_dir_all(root.join("empty dir")).expect("dirs");
    speech_wav(&root.join("a.wav"), &["u2_hello", "u3_hold"], 700, 1);
    // a.mp3 next to a.wav: a real MP3 (committed fixture, a tone: no speech).
    fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/formats/tone_44k1_stereo.mp3"
        ),
        root.join("a.mp3"),
    )
    .expect("copy mp3");
    speech_wav(
        &root.join("calls/2024 mars/équipe ü/appel n°1 (client).wav"),
        &["u4_tn", "u5_af", "u6_number"],
        900,
        2,
    );
    speech_wav(
        &root.join("calls/short one.wav"),
        &["u1_yes_please"],
        400,
        1,
    );
    fs::write(root.join("calls/empty.wav"), b"").expect("empty");
    // A WAV container with garbage where its chunks should be.
    let mut corrupt = b"RIFF\x00\x10\x00\x00WAVE".to_vec();
    let mut x = 0x1234_5678u32;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        corrupt.push(x as u8);
    }
    fs::write(root.join("calls/corrupt.wav"), &corrupt).expect("corrupt");
    fs::write(root.join("calls/notes.txt"), "call notes, not audio\n").expect("txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcribes_a_mixed_folder_lists_failures_and_a_rerun_does_nothing() {
    let emu = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in put");
    let out = dir.path().join("out");
    mixed_tree(&input);
    let before = snapshot(&input);

    let mut c = command(&emu);
    c.arg("--out")
        .arg(&out)
        .args(["--formats", "srt,vtt,rttm,txt", "--jobs", "2"])
        .arg(&input);
    let o = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    assert_eq!(o.status.code(), Some(1), "a file failed: exit code 1");

    // Good files: every format, mirroring the tree; a.wav and a.mp3 kept apart.
    let good = [
        "a.wav",
        "a.mp3",
        "calls/2024 mars/équipe ü/appel n°1 (client)",
        "calls/short one",
    ];
    for base in good {
        for ext in ["json", "srt", "vtt", "rttm", "txt"] {
            let p = out.join(format!("{base}.{ext}"));
            assert!(p.is_file(), "{} missing", p.display());
        }
        assert!(!out.join(format!("{base}.error.json")).exists());
    }
    assert!(
        !out.join("a.json").exists(),
        "colliding stems never share a name"
    );
    let t = json(&out.join("calls/2024 mars/équipe ü/appel n°1 (client).json"));
    let segs = t["segments"].as_array().expect("segments");
    assert!(!segs.is_empty(), "speech was transcribed: {t}");
    assert!(segs
        .iter()
        .all(|s| s["text"].as_str().is_some_and(|x| x.contains("emulator"))));
    let wav = json(&out.join("a.wav.json"));
    assert!(!wav["segments"].as_array().expect("segments").is_empty());
    let mp3 = json(&out.join("a.mp3.json"));
    assert_eq!(mp3["metadata"]["source"], "a.mp3");
    assert!((mp3["metadata"]["duration"].as_f64().expect("duration") - 1.5).abs() < 0.01);

    // Bad files: an error report, never a transcript.
    for base in ["calls/empty", "calls/corrupt"] {
        let e = json(&out.join(format!("{base}.error.json")));
        assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
        for ext in ["json", "srt", "vtt", "rttm", "txt"] {
            assert!(!out.join(format!("{base}.{ext}")).exists(), "{base}.{ext}");
        }
    }
    assert!(!out.join("calls/notes.json").exists());

    // The summary.
    let s = json(&out.join("summary.json"));
    assert_eq!(s["counts"]["files"], 6, "{s:#}");
    assert_eq!(s["counts"]["done"], 4);
    assert_eq!(s["counts"]["failed"], 2);
    assert_eq!(s["counts"]["not_audio"], 1);
    assert_eq!(
        s["emulator"], false,
        "the emulator here was given explicitly"
    );
    let files = s["files"].as_array().expect("files");
    let failed: Vec<&str> = files
        .iter()
        .filter(|f| f["status"] == "failed")
        .filter_map(|f| f["output"].as_str())
        .collect();
    assert_eq!(failed, vec!["calls/corrupt", "calls/empty"]);
    assert!(files
        .iter()
        .filter(|f| f["status"] == "done")
        .all(|f| f["audio_seconds"].as_f64().is_some_and(|a| a > 0.5)));
    let skipped = s["skipped"].as_array().expect("skipped");
    assert!(skipped.iter().any(
        |k| k["path"].as_str().is_some_and(|p| p.ends_with("notes.txt"))
            && k["reason"] == "not_audio"
    ));
    // The table at the end names both failures.
    let err = stderr(&o);
    assert!(err.contains("2 file(s) failed"), "{err}");
    assert!(
        err.contains("corrupt.wav") && err.contains("empty.wav"),
        "{err}"
    );
    // Nothing was written inside the input tree.
    assert_eq!(snapshot(&input), before, "the input tree is untouched");

    // A second run: no work, says so, same failures, same exit code.
    let requests = emu.requests().len();
    let mut c = command(&emu);
    c.arg("--out")
        .arg(&out)
        .args(["--formats", "srt,vtt,rttm,txt", "--jobs", "2"])
        .arg(&input);
    let o2 = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    assert_eq!(o2.status.code(), Some(1));
    assert!(stderr(&o2).contains("Nothing to do"), "{}", stderr(&o2));
    assert_eq!(emu.requests().len(), requests, "no request at all");
    let s2 = json(&out.join("summary.json"));
    assert_eq!(s2["counts"]["done"], 4);
    assert_eq!(s2["counts"]["done_this_run"], 0);
    assert_eq!(s2["counts"]["failed"], 2);

    // A changed input is redone, and only it.
    speech_wav(
        &input.join("calls/short one.wav"),
        &["u1_yes_please", "u2_hello"],
        400,
        1,
    );
    let sync_before = sync_requests(&emu);
    let mut c = command(&emu);
    c.arg("--out")
        .arg(&out)
        .args(["--formats", "srt,vtt,rttm,txt"])
        .arg(&input);
    let o3 = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    assert_eq!(o3.status.code(), Some(1));
    let s3 = json(&out.join("summary.json"));
    assert_eq!(s3["counts"]["done_this_run"], 1, "{s3:#}");
    assert!(sync_requests(&emu) > sync_before);

    // --force redoes every file (and the bad ones fail again).
    let mut c = command(&emu);
    c.arg("--out")
        .arg(&out)
        .args(["--formats", "srt,vtt,rttm,txt", "--force"])
        .arg(&input);
    let o4 = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    assert_eq!(o4.status.code(), Some(1));
    let s4 = json(&out.join("summary.json"));
    assert_eq!(s4["counts"]["done_this_run"], 4, "{s4:#}");
    assert_eq!(s4["counts"]["failed"], 2);
    assert!(s4["files"]
        .as_array()
        .expect("files")
        .iter()
        .all(|f| f["this_run"] == true));
    emu.shutdown().await;
}

/// Files for the interruption test: each a few seconds of speech.
fn async_tree(root: &Path) -> Vec<String> {
    let sets: [&[&str]; 4] = [
        &["u1_yes_please", "u2_hello"],
        &["u3_hold", "u4_tn"],
        &["u5_af", "u6_number"],
        &["u2_hello", "u6_number", "u1_yes_please"],
    ];
    fs::create_dir_all(root.join("sub dir")).expect("dirs");
    let mut bases = Vec::new();
    for (i, units) in sets.iter().enumerate() {
        let rel = if i % 2 == 0 {
            format!("rec {i}")
        } else {
            format!("sub dir/rec {i}")
        };
        speech_wav(&root.join(format!("{rel}.wav")), units, 600, 1);
        bases.push(rel);
    }
    bases
}

fn journal_states(out: &Path) -> Vec<Value> {
    fs::read_to_string(out.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The latest journal state of each input.
fn latest_states(out: &Path) -> BTreeMap<String, Value> {
    let mut latest = BTreeMap::new();
    for r in journal_states(out) {
        if let Some(k) = r["key"]["path"].as_str() {
            latest.insert(k.to_string(), r);
        }
    }
    latest
}

/// Server file names journaled as uploaded and not yet done.
fn journaled_uploads(out: &Path) -> Vec<String> {
    latest_states(out)
        .values()
        .filter(|r| r["state"] == "uploaded")
        .flat_map(|r| r["parts"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["file_name"].as_str().map(str::to_string))
        .collect()
}

pub(crate) fn wait_for(child: &mut Child, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Transcript contents that do not depend on how the run went (server file names and request
/// counts differ between an interrupted and an uninterrupted run).
pub(crate) fn stable(t: &Value) -> Value {
    serde_json::json!({
        "segments": t["segments"],
        "duration": t["metadata"]["duration"],
        "route": t["metadata"]["route"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_uploading_again_and_matches_an_uninterrupted_one() {
    let mut cfg = EmulatorConfig::default();
    // Each async job takes a few seconds: time to kill the run between upload and result.
    cfg.async_base_delay = Duration::from_secs(4);
    let emu = Emulator::start(cfg).await.expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let bases = async_tree(&input);
    let args = |out: &Path| {
        let mut c = command(&emu);
        c.arg("--out")
            .arg(out)
            .args(["--route", "async", "--diarization", "--jobs", "4"])
            .args(["--formats", "json,srt,vtt,rttm,txt"])
            .arg(&input);
        c
    };

    // The reference: an uninterrupted run.
    let reference = dir.path().join("reference");
    let c = args(&reference);
    let o = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(upload_forms(&emu), bases.len(), "one upload per file");

    // The interrupted run: killed (SIGKILL: no chance to clean up) once uploads are journaled.
    let out = dir.path().join("out");
    let mut c = args(&out);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    tokio::task::block_in_place(|| {
        wait_for(&mut child, "two uploads in the journal", || {
            journaled_uploads(&out).len() >= 2
        });
        child.kill().expect("kill");
        child.wait().expect("wait");
    });
    let (forms_at_kill, s3_at_kill) = (upload_forms(&emu), s3_uploads(&emu));
    let journaled = journaled_uploads(&out);
    let at_kill = latest_states(&out);
    let done_at_kill = at_kill.values().filter(|r| r["state"] == "done").count();
    assert!(done_at_kill < bases.len(), "killed midway");
    assert!(!out.join("summary.json").exists(), "the run never finished");

    // The rerun completes and uploads only what the journal did not hold.
    let c = args(&out);
    let o = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    assert_eq!(o.status.code(), Some(0), "the rerun completes");
    let new_forms = upload_forms(&emu) - forms_at_kill;
    let new_s3 = s3_uploads(&emu) - s3_at_kill;
    eprintln!(
        "at the kill: {} upload(s) journaled, {done_at_kill} file(s) done; the rerun uploaded {new_forms}",
        journaled.len()
    );
    assert_eq!(
        new_forms,
        bases.len() - journaled.len() - done_at_kill,
        "the {} journaled uploads were polled, not uploaded again",
        journaled.len()
    );
    assert_eq!(new_s3, new_forms);
    let s = json(&out.join("summary.json"));
    assert_eq!(s["counts"]["done"], bases.len(), "{s:#}");
    let t: Vec<Value> = bases
        .iter()
        .map(|b| json(&out.join(format!("{b}.json"))))
        .collect();
    let resumed_parts: Vec<String> = t
        .iter()
        .flat_map(|t| {
            t["metadata"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["file_name"].as_str().map(str::to_string))
        .collect();
    for j in &journaled {
        assert!(resumed_parts.contains(j), "{j} was used by the rerun");
    }

    // Same outputs as the uninterrupted run.
    for (b, t) in bases.iter().zip(&t) {
        assert_eq!(
            stable(t),
            stable(&json(&reference.join(format!("{b}.json")))),
            "{b}"
        );
        assert!(
            !t["segments"].as_array().expect("segments").is_empty(),
            "{b}"
        );
        for ext in ["srt", "vtt", "rttm", "txt"] {
            let got = fs::read(out.join(format!("{b}.{ext}"))).expect("output");
            let want = fs::read(reference.join(format!("{b}.{ext}"))).expect("reference");
            assert_eq!(got, want, "{b}.{ext}");
        }
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_only_needs_no_api_and_writes_segments_with_a_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    fs::create_dir_all(&input).expect("dir");
    speech_wav(
        &input.join("two units.wav"),
        &["u2_hello", "u3_hold"],
        2500,
        1,
    );
    let out = dir.path().join("out");
    let mut c = Command::new(binary());
    c.env_remove("BOTLHALE_TOKEN")
        .env_remove("BOTLHALE_REFRESH_TOKEN")
        .env_remove("BOTLHALE_BASE_URL")
        .arg("--split-only")
        .arg("--quiet")
        .arg("--out")
        .arg(&out)
        .arg(&input);
    let o = tokio::task::spawn_blocking(move || run(c))
        .await
        .expect("join");
    assert_eq!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("EMULATOR"), "no API, no emulator");
    let seg_dir = out.join("two units.segments");
    let m = json(&seg_dir.join("manifest.json"));
    let segs = m["segments"].as_array().expect("segments");
    assert_eq!(segs.len(), 2, "{m:#}");
    // The units sit at 2.5 s and 2.5 s + len(u2) + 2.5 s.
    let u2 = unit("u2_hello").len() as u64;
    let u3 = unit("u3_hold").len() as u64;
    let truth = [
        (2500, 2500 + u2 / 16),
        (5000 + u2 / 16, 5000 + (u2 + u3) / 16),
    ];
    for (s, (a, b)) in segs.iter().zip(truth) {
        let (start, end) = (
            s["start_ms"].as_u64().expect("start"),
            s["end_ms"].as_u64().expect("end"),
        );
        assert!(start <= a && a - start <= 500, "{s} vs {a}");
        assert!(end >= b && end - b <= 500, "{s} vs {b}");
        let f = seg_dir.join(s["file"].as_str().expect("file"));
        let r = hound::WavReader::open(&f).expect("segment wav");
        assert_eq!(r.spec().sample_rate, 16_000);
        let len =
            s["end_sample"].as_u64().expect("end") - s["start_sample"].as_u64().expect("start");
        assert_eq!(u64::from(r.duration()), len);
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_with_a_consistent_journal() {
    let mut cfg = EmulatorConfig::default();
    cfg.async_base_delay = Duration::from_secs(30);
    let emu = Emulator::start(cfg).await.expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let bases = async_tree(&input);
    let out = dir.path().join("out");
    let mut c = command(&emu);
    c.arg("--out")
        .arg(&out)
        .args(["--route", "async", "--jobs", "4"])
        .arg(&input)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let status = tokio::task::block_in_place(|| {
        wait_for(&mut child, "an upload in the journal", || {
            !journaled_uploads(&out).is_empty()
        });
        let pid = child.id().to_string();
        // The shell's built-in `kill`: there on every Unix, unlike a `kill` binary.
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -INT {pid}")])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -INT");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "Ctrl-C did not stop the run");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!(status.code(), Some(130), "{status}");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut err).expect("stderr");
    }
    assert!(err.contains("Interrupted"), "{err}");
    // Every journal line is whole and the summary says what is pending.
    let text = fs::read_to_string(out.join("journal.jsonl")).expect("journal");
    for line in text.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    assert!(text.ends_with('\n'));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["interrupted"], true);
    assert_eq!(s["counts"]["pending"], bases.len(), "{s:#}");
    for b in &bases {
        assert!(!out.join(format!("{b}.json")).exists());
        assert!(!out.join(format!("{b}.error.json")).exists());
    }
    emu.shutdown().await;
}

/// Usage errors: exit status 2 and a message naming the problem, before anything is written.
#[test]
fn usage_errors_exit_2_with_a_message_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let out = dir.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let cases: [(&[&str], &str); 13] = [
        (&["--out", o, "--channels", "left", i], "channel mode"),
        (
            &["--out", o, "--channel-names", "agent,agent", i],
            "distinct",
        ),
        (&[i], "--out"),
        (&["--out", o], "INPUT"),
        (&["--out", o, "--formats", "srt,docx", i], "docx"),
        (&["--out", o, "--jobs", "0", i], "--jobs"),
        (&["--out", o, "--concurrency", "0", i], "--concurrency"),
        (&["--out", o, "--route", "fast", i], "fast"),
        (&["--out", o, "--language", "zu ZA", i], "BCP-47"),
        (&["--out", o, "--endpoint", "ftp://x", i], "http"),
        (
            &["--out", o, "--diarization", "--route", "sync", i],
            "async route",
        ),
        (
            &["--out", o, "--split-only", "--diarization", i],
            "--diarization",
        ),
        // An endpoint without credentials (the environment's are removed).
        (
            &["--out", o, "--endpoint", "http://127.0.0.1:9", i],
            "credentials",
        ),
    ];
    for (args, says) in cases {
        let mut c = Command::new(binary());
        c.args(args)
            .env_remove("BOTLHALE_TOKEN")
            .env_remove("BOTLHALE_REFRESH_TOKEN")
            .env_remove("BOTLHALE_ORG_ID")
            .env_remove("BOTLHALE_BASE_URL");
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(says),
            "{args:?} should say {says:?}: {}",
            stderr(&o)
        );
        assert!(!out.exists(), "{args:?} wrote the output folder");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stereo_call_is_transcribed_per_channel_with_the_given_names() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    fs::create_dir(&input).unwrap();
    let (_, wav) = crate::channels::stereo_call();
    fs::write(input.join("call.wav"), wav).unwrap();
    let out = dir.path().join("out");
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let mut c = command(&emu);
    c.arg("--out")
        .arg(&out)
        .args([
            "--formats",
            "vtt,txt,rttm",
            "--channel-names",
            "agent,customer",
        ])
        .arg(&input);
    let o = run(c);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = json(&out.join("call.json"));
    let segs = t["segments"].as_array().unwrap();
    assert!(!segs.is_empty());
    for s in segs {
        let (ch, spk) = (s["channel"].as_u64(), s["speaker"].as_str());
        assert!(
            matches!(
                (ch, spk),
                (Some(0), Some("agent")) | (Some(1), Some("customer"))
            ),
            "{s}"
        );
    }
    let names: Vec<&str> = t["metadata"]["channels"]["separate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent", "customer"]);
    let vtt = fs::read_to_string(out.join("call.vtt")).unwrap();
    assert!(vtt.contains("<v agent>") && vtt.contains("<v customer>"));
    let txt = fs::read_to_string(out.join("call.txt")).unwrap();
    assert!(txt.lines().any(|l| l.starts_with("agent: ")));
    assert!(txt.lines().any(|l| l.starts_with("customer: ")));
    let rttm = fs::read_to_string(out.join("call.rttm")).unwrap();
    let speakers: std::collections::BTreeSet<&str> = rttm
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .collect();
    assert_eq!(
        speakers.into_iter().collect::<Vec<_>>(),
        ["agent", "customer"]
    );
}
