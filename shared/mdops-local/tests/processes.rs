//! Several processes on one database file: this test starts copies of its own binary as
//! consumers (selected by an environment variable), while the parent consumes too. Together they
//! must consume every message exactly once while it is invisible, and race-create records with
//! exactly one winner per key.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use mdops_core::queue::{OutgoingMessage, Queue, QueueName, QueueSettings};
use mdops_core::store::{Condition, Key, NewRecord, put_if};
use mdops_local::SqliteBackend;
use tokio::time::Instant;

const CHILD_ENV: &str = "MDOPS_LOCAL_TEST_CHILD_DB";
const MESSAGES: usize = 1000;
const RUNS: usize = 50;
const CHILDREN: usize = 2;
/// Bound on the whole exercise: a broken lock shows up as a timeout, not a hang.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long the parent lets the child processes start before it competes with them.
const STARTUP_HEAD_START: Duration = Duration::from_millis(50);

/// Consumes until the queue stays empty, and races to create every run; prints what it got.
async fn consume(path: &str, who: &str) -> (Vec<String>, usize) {
    let backend = SqliteBackend::open_with(path, QueueSettings::default()).expect("open database");
    let mut created = 0;
    for n in 0..RUNS {
        let record = NewRecord {
            key: Key::new(format!("run#{n}"), "meta"),
            body: serde_json::json!({ "creator": who }),
            collection: None,
            due: None,
        };
        if put_if(backend.store(), record, Condition::Absent).await.is_ok() {
            created += 1;
        }
    }
    let mut bodies = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut empty = 0;
    while empty < 3 && Instant::now() < deadline {
        let got = backend
            .queue()
            .receive(
                QueueName::Onboarding,
                10,
                Duration::from_millis(300),
                Duration::from_secs(120),
            )
            .await
            .expect("receive");
        if got.is_empty() {
            empty += 1;
        }
        for m in got {
            backend
                .queue()
                .delete(QueueName::Onboarding, &m.receipt)
                .await
                .expect("delete");
            bodies.push(m.body);
        }
    }
    (bodies, created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_share_one_file() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let (bodies, created) = consume(&path, "child").await;
        for b in bodies {
            println!("CONSUMED {b}");
        }
        println!("CREATED {created}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("procs.db");
    let path_str = path.to_str().expect("utf-8 temp path").to_string();
    let backend = SqliteBackend::open(&path).expect("open database");
    for chunk in 0..MESSAGES / 10 {
        let batch = (0..10)
            .map(|i| OutgoingMessage::now(format!("m{}", chunk * 10 + i)))
            .collect();
        backend
            .queue()
            .send_batch(QueueName::Onboarding, batch)
            .await
            .expect("send");
    }
    let exe = std::env::current_exe().expect("test binary path");
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            let (exe, path) = (exe.clone(), path_str.clone());
            tokio::task::spawn_blocking(move || {
                Command::new(exe)
                    .args([
                        "--exact",
                        "several_processes_share_one_file",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, path)
                    .output()
            })
        })
        .collect();
    // Give the children time to start, so all three processes compete for the messages.
    tokio::time::sleep(STARTUP_HEAD_START).await;
    let (mut bodies, mut created) = consume(&path_str, "parent").await;
    let mut per_process = vec![bodies.len()];
    for child in children {
        let out = child.await.expect("join").expect("run child process");
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The harness prints "test NAME ... " without a newline before our first line.
        let tagged = |tag: &'static str| {
            stdout
                .lines()
                .filter_map(move |l| l.find(tag).map(|i| &l[i + tag.len()..]))
        };
        let theirs: Vec<String> = tagged("CONSUMED ").map(str::to_string).collect();
        per_process.push(theirs.len());
        bodies.extend(theirs);
        created += tagged("CREATED ")
            .map(|n| n.trim().parse::<usize>().expect("created count"))
            .sum::<usize>();
    }
    eprintln!("messages consumed per process (parent first): {per_process:?}");
    let distinct: BTreeSet<&String> = bodies.iter().collect();
    assert_eq!(distinct.len(), MESSAGES, "every message consumed");
    assert_eq!(bodies.len(), MESSAGES, "no message consumed twice");
    assert_eq!(created, RUNS, "each run created by exactly one process");
}
