//! Acceptance tests of distributed jobs: several `examples/transcribe_folder --queue` worker
//! processes share one job through a real `redis-server` on 127.0.0.1 (started here, data in a
//! temporary folder) against one emulator started in this test process.

#[path = "../../queue-redis/tests/support/redis_server.rs"]
mod redis_server;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use asr_pipeline::batch::{Journal, State, WorkQueue};
use asr_pipeline_redis::{QueueOptions, RedisQueue};
use botlhale_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use redis_server::RedisServer;

use crate::segment::UNIT_NAMES;
use crate::transcribe_folder::{command, json, s3_uploads, speech_wav, stderr, upload_forms};

/// `n` distinct recordings (two speech units each, gaps that differ per file) in four
/// folders; returns their output bases.
fn recordings(root: &Path, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let rel = format!("batch {}/call {i:03}", i % 4);
            fs::create_dir_all(root.join(format!("batch {}", i % 4))).expect("dirs");
            let units = [UNIT_NAMES[i % 9], UNIT_NAMES[(i / 9 + 4) % 9]];
            speech_wav(&root.join(format!("{rel}.wav")), &units, 300 + i as u32, 1);
            rel
        })
        .collect()
}

/// A worker's command: the emulator's credentials, the shared queue, a short lease.
fn worker(emu: &RunningEmulator, redis: &RedisServer, out: &Path, input: &Path) -> Command {
    let mut c = command(emu);
    c.arg("--queue")
        .arg(redis.url())
        .args(["--lease", "2"])
        .arg("--out")
        .arg(out)
        .arg(input);
    c
}

/// Waits for worker processes (off the async threads) and prints their exit and stderr.
async fn finish_all(children: Vec<Child>) -> Vec<Output> {
    tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().expect("wait");
                eprintln!(
                    "--- worker exit {:?}\n{}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                );
                out
            })
            .collect()
    })
    .await
    .expect("join")
}

async fn finish(child: Child) -> Output {
    finish_all(vec![child]).await.remove(0)
}

/// `--status`: the job's name and its counts (files, queued, in progress, done, failed).
fn status(mut c: Command) -> (String, [u64; 5]) {
    let o = c.arg("--status").output().expect("status");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    // "job NAME on HOST: N file(s): Q queued, R in progress, D done, F failed", or
    // "job NAME: not started ..."
    let job = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"))
        .trim_end_matches(':')
        .to_string();
    if text.contains("not started") {
        return (job, [0; 5]);
    }
    let nums: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    let n = nums.len();
    assert!(n >= 5, "{text}");
    (
        job,
        [
            nums[n - 5],
            nums[n - 4],
            nums[n - 3],
            nums[n - 2],
            nums[n - 1],
        ],
    )
}

/// Every output file (not the batch's own files) with its bytes.
fn outputs(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
            let top = rel.components().count() == 1;
            let name = rel.to_string_lossy();
            if top
                && (name.ends_with("summary.json")
                    || name.contains("journal")
                    || name.starts_with('.'))
            {
                continue;
            }
            m.insert(rel, fs::read(&p).expect("read"));
        }
    }
    m
}

/// What a transcript says, without what depends on how the run went (request counts,
/// server file names).
fn content(bytes: &[u8]) -> serde_json::Value {
    let t: serde_json::Value = serde_json::from_slice(bytes).expect("json");
    serde_json::json!({
        "segments": t["segments"],
        "duration": t["metadata"]["duration"],
        "route": t["metadata"]["route"],
        "channels": t["metadata"]["channels"],
        "no_speech": t["metadata"]["no_speech"],
    })
}

async fn queue(redis: &RedisServer, job: &str) -> RedisQueue {
    RedisQueue::connect(&redis.url(), job, QueueOptions::default())
        .await
        .expect("queue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_do_200_files_once_each_within_one_request_limit() {
    let redis = RedisServer::start();
    let mut cfg = EmulatorConfig::default();
    // Requests last long enough to overlap across workers.
    cfg.asr_latency = Duration::from_millis(40);
    let emu = Emulator::start(cfg).await.expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let bases = recordings(&input, 200);
    let limit = [
        "--concurrency",
        "3",
        "--jobs",
        "2",
        "--formats",
        "json,srt,txt",
    ];

    // The reference: one process alone.
    let single = dir.path().join("single");
    let mut c = command(&emu);
    c.args(limit).arg("--out").arg(&single).arg(&input);
    let o = tokio::task::spawn_blocking(move || c.output().expect("run"))
        .await
        .expect("join");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Three workers of one job.
    emu.reset_asr_stats();
    let shared = dir.path().join("shared");
    let children: Vec<Child> = (0..3)
        .map(|_| {
            let mut c = worker(&emu, &redis, &shared, &input);
            c.args(limit).stdout(Stdio::null()).stderr(Stdio::piped());
            c.spawn().expect("spawn")
        })
        .collect();
    let outs = finish_all(children).await;
    let mut done_here = 0;
    for o in &outs {
        assert_eq!(
            o.status.code(),
            Some(0),
            "every worker drains the job and exits 0"
        );
        let text = stderr(o);
        let n: usize = text
            .lines()
            .find_map(|l| {
                l.split(" done this run")
                    .next()
                    .filter(|_| l.contains(" done this run"))
            })
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        done_here += n;
    }
    assert_eq!(done_here, 200, "each file done by exactly one worker");

    let stats = emu.asr_stats();
    eprintln!("requests in flight over all workers: {stats:?}");
    assert!(
        stats.peak_in_flight <= 3,
        "the limit holds across workers: {stats:?}"
    );
    assert!(
        stats.peak_in_flight >= 2,
        "the workers did overlap: {stats:?}"
    );

    let (job, counts) = status(worker(&emu, &redis, &shared, &input));
    assert_eq!(
        counts,
        [200, 0, 0, 200, 0],
        "files, queued, running, done, failed"
    );
    let q = queue(&redis, &job).await;
    let log = q.log().await.expect("log");
    let names: BTreeSet<&str> = log.iter().map(|r| r.key.path.as_str()).collect();
    assert_eq!(log.len(), 200, "each file in the journal once");
    assert_eq!(names.len(), 200);
    assert!(log.iter().all(|r| matches!(r.state, State::Done { .. })));
    assert!(log
        .iter()
        .all(|r| r.key.content.as_ref().is_some_and(|h| h.len() == 64)));

    // The same outputs as the single process: text formats byte for byte, transcripts in
    // everything but request counts and server names.
    let (a, b) = (outputs(&single), outputs(&shared));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(a.len(), 3 * bases.len());
    for (k, v) in &a {
        if k.extension().is_some_and(|e| e == "json") {
            assert_eq!(content(v), content(&b[k]), "{}", k.display());
        } else {
            assert_eq!(v, &b[k], "{}", k.display());
        }
    }
    let s = json(&shared.join("summary.json"));
    assert_eq!(s["counts"]["done"], 200, "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing_and_no_upload_is_made_twice() {
    let redis = RedisServer::start();
    let mut cfg = EmulatorConfig::default();
    // Each async job takes a few seconds: time to kill a worker between upload and result.
    cfg.async_base_delay = Duration::from_secs(3);
    let emu = Emulator::start(cfg).await.expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let bases = recordings(&input, 6);
    let out = dir.path().join("out");
    let args = ["--route", "async", "--diarization", "--jobs", "3"];
    let (job, _) = status({
        let mut c = worker(&emu, &redis, &out, &input);
        c.args(args);
        c
    });
    let q = queue(&redis, &job).await;
    let journal = q.journal();

    let mut c = worker(&emu, &redis, &out, &input);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let mut victim = c.spawn().expect("spawn");
    let journaled = |j: &dyn Journal| -> (usize, usize) {
        let mut uploaded = 0;
        let mut done = 0;
        for b in &bases {
            match j.latest(b).map(|r| r.state) {
                Some(State::Uploaded { parts }) => uploaded += parts.len(),
                Some(State::Done { .. }) => done += 1,
                _ => {}
            }
        }
        (uploaded, done)
    };
    let t0 = Instant::now();
    tokio::task::block_in_place(|| loop {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no upload journaled"
        );
        assert!(
            victim.try_wait().expect("try_wait").is_none(),
            "ended too early"
        );
        if journaled(&*journal).0 >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    });
    // SIGKILL: no chance to clean up, its leases are simply no longer renewed.
    victim.kill().expect("kill");
    victim.wait().expect("wait");
    let (forms_at_kill, s3_at_kill) = (upload_forms(&emu), s3_uploads(&emu));
    let (uploaded, done) = journaled(&*journal);
    assert!(done < bases.len(), "killed midway");
    eprintln!("at the kill: {uploaded} part(s) journaled, {done} file(s) done");

    // Another worker takes the job over once the leases expire.
    let mut c = worker(&emu, &redis, &out, &input);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn");
    let o = finish(child).await;
    assert_eq!(o.status.code(), Some(0));
    let new_forms = upload_forms(&emu) - forms_at_kill;
    assert_eq!(
        new_forms,
        bases.len() - uploaded - done,
        "the {uploaded} journaled part(s) were polled, not uploaded again"
    );
    assert_eq!(s3_uploads(&emu) - s3_at_kill, new_forms);
    let counts = q.counts().await.expect("counts");
    assert_eq!((counts.done, counts.failed), (bases.len() as u64, 0));
    for b in &bases {
        let t = json(&out.join(format!("{b}.json")));
        assert!(
            !t["segments"].as_array().expect("segments").is_empty(),
            "{b}"
        );
    }
    let log = q.log().await.expect("log");
    assert_eq!(log.len(), bases.len(), "done once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_stops_workers_and_a_rerun_finishes_without_redoing() {
    let mut redis = RedisServer::start();
    let mut cfg = EmulatorConfig::default();
    cfg.asr_latency = Duration::from_millis(150);
    let emu = Emulator::start(cfg).await.expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let bases = recordings(&input, 30);
    let out = dir.path().join("out");
    let args = ["--concurrency", "2", "--jobs", "1"];
    let (job, _) = status({
        let mut c = worker(&emu, &redis, &out, &input);
        c.args(args);
        c
    });
    let q = queue(&redis, &job).await;

    let mut c = worker(&emu, &redis, &out, &input);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "ended too early"
        );
        if q.counts().await.expect("counts").done >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.stop();
    let stopped = Instant::now();
    let o = finish(child).await;
    let text = stderr(&o);
    assert!(
        matches!(o.status.code(), Some(c) if c != 0),
        "a worker that lost Redis exits non-zero"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "it stops promptly"
    );
    assert!(
        text.contains(&format!("Redis at 127.0.0.1:{}", redis.port)),
        "the message says what was lost: {text}"
    );

    redis.restart();
    let q = queue(&redis, &job).await;
    let journal = q.journal();
    let done_before: Vec<(String, std::time::SystemTime)> = bases
        .iter()
        .filter(|b| matches!(journal.latest(b).map(|r| r.state), Some(State::Done { .. })))
        .map(|b| {
            let p = out.join(format!("{b}.json"));
            (
                b.clone(),
                fs::metadata(&p).and_then(|m| m.modified()).expect("output"),
            )
        })
        .collect();
    assert!(done_before.len() >= 5, "the journal survived the restart");
    let mut c = worker(&emu, &redis, &out, &input);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn");
    let o = finish(child).await;
    assert_eq!(o.status.code(), Some(0));
    let counts = q.counts().await.expect("counts");
    assert_eq!((counts.done, counts.failed, counts.queued), (30, 0, 0));
    for (b, t) in &done_before {
        let now = fs::metadata(out.join(format!("{b}.json")))
            .and_then(|m| m.modified())
            .expect("output");
        assert_eq!(&now, t, "{b} was finished before and not redone");
    }
    let log = q.log().await.expect("log");
    let names: BTreeSet<&str> = log.iter().map(|r| r.key.path.as_str()).collect();
    assert_eq!((log.len(), names.len()), (30, 30), "done once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_fails_once_for_the_whole_job_and_is_not_retried() {
    let redis = RedisServer::start();
    let emu = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let bases = recordings(&input, 6);
    fs::write(
        input.join("broken.wav"),
        b"RIFF\x10\x00\x00\x00WAVEjunk that is not audio",
    )
    .expect("write");
    let out = dir.path().join("out");
    let spawn_two = || -> Vec<Child> {
        (0..2)
            .map(|_| {
                let mut c = worker(&emu, &redis, &out, &input);
                c.stdout(Stdio::null()).stderr(Stdio::piped());
                c.spawn().expect("spawn")
            })
            .collect()
    };
    let children = spawn_two();
    let outs = finish_all(children).await;
    for o in &outs {
        assert_eq!(o.status.code(), Some(1), "a file of the job failed");
    }
    let (job, counts) = status(worker(&emu, &redis, &out, &input));
    assert_eq!(
        counts,
        [7, 0, 0, 6, 1],
        "files, queued, running, done, failed"
    );
    let q = queue(&redis, &job).await;
    let log = q.log().await.expect("log");
    let failed: Vec<&str> = log
        .iter()
        .filter(|r| matches!(r.state, State::Failed { retry: false, .. }))
        .map(|r| r.key.path.as_str())
        .collect();
    assert_eq!(failed, vec!["broken"], "recorded once, as final");
    assert!(out.join("broken.error.json").exists());
    assert_eq!(bases.len() + 1, log.len());

    // The same command again: nothing is offered, nothing is sent.
    let requests = emu.requests().len();
    let children = spawn_two();
    let outs = finish_all(children).await;
    for o in &outs {
        assert_eq!(o.status.code(), Some(1), "the failure still stands");
    }
    assert_eq!(
        emu.requests().len(),
        requests,
        "no request: nothing retried"
    );
    assert_eq!(q.log().await.expect("log").len(), log.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_only_jobs_are_shared_too() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let bases = recordings(&input, 12);
    let out = dir.path().join("out");
    let children: Vec<Child> = (0..2)
        .map(|_| {
            let mut c = Command::new(crate::transcribe_folder::binary());
            c.args(["--split-only", "--quiet", "--lease", "2", "--queue"])
                .arg(redis.url())
                .arg("--out")
                .arg(&out)
                .arg(&input)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            c.spawn().expect("spawn")
        })
        .collect();
    let outs = finish_all(children).await;
    for o in &outs {
        assert_eq!(o.status.code(), Some(0));
    }
    for b in &bases {
        let m = json(&out.join(format!("{b}.segments/manifest.json")));
        assert!(m.is_object(), "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_hands_the_files_in_progress_back_at_once() {
    let redis = RedisServer::start();
    let mut cfg = EmulatorConfig::default();
    cfg.async_base_delay = Duration::from_secs(3);
    let emu = Emulator::start(cfg).await.expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    let bases = recordings(&input, 4);
    let out = dir.path().join("out");
    // A long lease: a file handed back must not wait for it.
    let cmd = || {
        let mut c = command(&emu);
        c.arg("--queue")
            .arg(redis.url())
            .args(["--route", "async", "--jobs", "4", "--lease", "60"])
            .arg("--out")
            .arg(&out)
            .arg(&input);
        c
    };
    let (job, _) = status(cmd());
    let q = queue(&redis, &job).await;
    let journal = q.journal();
    let mut c = cmd();
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn");
    let t0 = Instant::now();
    while bases
        .iter()
        .filter(|b| {
            matches!(
                journal.latest(b).map(|r| r.state),
                Some(State::Uploaded { .. })
            )
        })
        .count()
        < 2
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no upload journaled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status();
    assert!(sent.is_ok_and(|s| s.success()));
    let o = finish(child).await;
    assert_eq!(o.status.code(), Some(130), "interrupted");
    let forms = upload_forms(&emu);

    let t0 = Instant::now();
    let mut c = cmd();
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = c.spawn().expect("spawn");
    let o = finish(child).await;
    assert_eq!(o.status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(40),
        "taken at once, not after the 60 s lease: {:?}",
        t0.elapsed()
    );
    assert!(
        upload_forms(&emu) - forms <= bases.len() - 2,
        "journaled uploads polled"
    );
    let c = q.counts().await.expect("counts");
    assert_eq!(c.done, bases.len() as u64);
}
