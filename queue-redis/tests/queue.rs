//! The queue against a real `redis-server` on 127.0.0.1.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use asr_pipeline::batch::{FileKey, Lease, Record, State, WorkQueue};
use asr_pipeline::ErrorKind;
use asr_pipeline_redis::{QueueOptions, RedisQueue};
use redis_server::RedisServer;

fn quick() -> QueueOptions {
    let mut o = QueueOptions::default();
    o.lease = Duration::from_millis(800);
    o.poll = Duration::from_millis(50);
    o.slot_lifetime = Duration::from_millis(900);
    o
}

/// A worker of `job` with quick leases.
async fn join(redis: &RedisServer, job: &str) -> RedisQueue {
    RedisQueue::connect(&redis.url(), job, quick())
        .await
        .unwrap()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dir/file {i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_queued_once_and_taken_once_until_drained() {
    let redis = RedisServer::start();
    let a = join(&redis, "job-a").await;
    let b = join(&redis, "job-a").await;
    let other = join(&redis, "job-b").await;
    // Both workers offer the same files, one of them twice.
    a.offer(&names(20)).await.unwrap();
    b.offer(&names(20)).await.unwrap();
    b.offer(&names(5)).await.unwrap();
    let c = a.counts().await.unwrap();
    assert_eq!((c.files, c.queued, c.running), (20, 20, 0));
    assert_eq!(other.counts().await.unwrap().files, 0, "jobs never mix");

    let taken = Arc::new(std::sync::Mutex::new(Vec::new()));
    let worker = |q: RedisQueue| {
        let taken = taken.clone();
        async move {
            while let Some(lease) = q.take().await.unwrap() {
                taken.lock().unwrap().push(lease.name().to_string());
                tokio::time::sleep(Duration::from_millis(5)).await;
                q.finish(lease).await.unwrap();
            }
        }
    };
    tokio::join!(worker(a.clone()), worker(b.clone()));
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 20, "{taken:?}");
    assert_eq!(taken.iter().collect::<HashSet<_>>().len(), 20);
    let c = a.counts().await.unwrap();
    assert_eq!((c.queued, c.running), (0, 0));
    // A finished file may be offered again (a rerun decides from the journal).
    a.offer(&names(1)).await.unwrap();
    assert_eq!(a.counts().await.unwrap().queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_holder_stops_renewing_is_taken_over() {
    let redis = RedisServer::start();
    let a = join(&redis, "job").await;
    let b = join(&redis, "job").await;
    a.offer(&names(1)).await.unwrap();
    let held = a.take().await.unwrap().unwrap();
    // While `a` renews, `b` waits.
    let waited = tokio::time::timeout(Duration::from_millis(2000), b.take()).await;
    assert!(waited.is_err(), "b must wait while a's lease is renewed");
    // `a` dies without finishing: its lease is no longer renewed (dropping the lease stops
    // the renewal, as a killed process would).
    drop(held);
    let t0 = std::time::Instant::now();
    let took = b.take().await.unwrap().unwrap();
    assert_eq!(took.name(), "dir/file 0");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(took.deliveries(), 2, "the second worker to get it");
    // Cancelled with the file in hand: handed back, taken again at once.
    drop(took);
    b.abandon().await.unwrap();
    let t0 = std::time::Instant::now();
    let took = b.take().await.unwrap().unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(took.deliveries(), 3);
    // Handed back by a worker that cannot do it: the next worker takes it at once.
    b.release(took).await.unwrap();
    let a2 = join(&redis, "job").await;
    let t0 = std::time::Instant::now();
    let again = a2.take().await.unwrap().unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(again.deliveries(), 4);
    a2.finish(again).await.unwrap();
    assert!(b.take().await.unwrap().is_none(), "drained");

    a.offer(&names(2)).await.unwrap();
    let slow = a.take().await.unwrap().unwrap();
    // A worker that was only slow learns it lost the file. Simulate a stall longer than the
    // lease: another worker claims the entry directly.
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: redis::Value = redis::cmd("XAUTOCLAIM")
        .arg("{job}:q")
        .arg("workers")
        .arg(b.consumer())
        .arg(0)
        .arg("0-0")
        .query_async(&mut con)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), slow.revoked())
        .await
        .expect("revoked within a renewal period")
        .expect("taken over, not an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_limit_holds_across_workers_and_slots_of_the_dead_expire() {
    let redis = RedisServer::start();
    let mut limiters = Vec::new();
    for _ in 0..3 {
        let q = join(&redis, "job").await;
        limiters.push(q.limiter(3));
    }
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for l in &limiters {
        for _ in 0..4 {
            let (l, in_flight, peak) = (l.clone(), in_flight.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let p = l.acquire().await.unwrap();
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(p);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "the limit is reached, never passed"
    );
    // A worker that dies holding slots (its runtime, renewal task included, vanishes with
    // the slots still held): they expire.
    let url = redis.url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dead = RedisQueue::connect(&url, "job", quick()).await.unwrap();
            let l = dead.limiter(2);
            let held = vec![l.acquire().await.unwrap(), l.acquire().await.unwrap()];
            std::mem::forget(held);
        });
    })
    .join()
    .unwrap();
    let fresh = join(&redis, "job").await.limiter(2);
    let got = tokio::time::timeout(Duration::from_secs(5), fresh.acquire()).await;
    assert!(got.is_ok(), "the dead worker's slots expired");
}

fn record(name: &str, state: State) -> Record {
    serde_json::from_value(serde_json::json!({
        "key": FileKey { path: name.into(), size: 3, mtime_ns: 0, content: Some("ab".into()) },
        "settings": "s",
        "out": name,
        "at": 1,
        "state": serde_json::to_value(&state).unwrap()["state"],
        "audio_secs": 1.0,
        "outputs": ["a.json"],
        "error": "x",
        "retry": true,
        "parts": [],
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_done_twice_is_logged_once_and_stays_done() {
    let redis = RedisServer::start();
    let q = join(&redis, "job").await;
    let j = q.journal();
    let done = State::Done {
        audio_secs: 1.0,
        outputs: vec!["a.json".into()],
    };
    j.append(&record("a", State::Planned)).unwrap();
    j.append(&record("a", done.clone())).unwrap();
    // A second worker whose lease outlived the first: starts and finishes it again.
    j.append(&record("a", State::Planned)).unwrap();
    assert!(matches!(j.latest("a").unwrap().state, State::Done { .. }));
    j.append(&record("a", done.clone())).unwrap();
    // ... or fails at it: the first result stands.
    j.append(&record(
        "a",
        State::Failed {
            error: "late".into(),
            retry: true,
            parts: vec![],
        },
    ))
    .unwrap();
    assert!(matches!(j.latest("a").unwrap().state, State::Done { .. }));
    let failed = State::Failed {
        error: "x".into(),
        retry: true,
        parts: vec![],
    };
    j.append(&record("b", failed.clone())).unwrap();
    j.append(&record("b", State::Planned)).unwrap();
    assert!(matches!(j.latest("b").unwrap().state, State::Planned));
    j.append(&record("b", done)).unwrap();
    let log = q.log().await.unwrap();
    let states: Vec<(&str, bool)> = log
        .iter()
        .map(|r| (r.key.path.as_str(), matches!(r.state, State::Done { .. })))
        .collect();
    assert_eq!(states, vec![("a", true), ("b", false), ("b", true)]);
    let c = q.counts().await.unwrap();
    assert_eq!((c.done, c.failed), (2, 0));
    assert!(j.latest("nothing").is_none());
    let many = j.latest_many(&["b", "nothing", "a"]).unwrap();
    assert!(matches!(
        many[0].as_ref().map(|r| &r.state),
        Some(State::Done { .. })
    ));
    assert!(many[1].is_none());
    assert_eq!(many[2].as_ref().map(|r| r.key.path.as_str()), Some("a"));
}

#[tokio::test]
async fn an_unreachable_server_is_a_queue_error_that_names_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = RedisQueue::connect(
        &format!("redis://:hunter2@127.0.0.1:{port}/"),
        "job",
        quick(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Queue { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(e.stops_batch());
}
