//! `mdops dlq` and `mdops status` on the embedded backend (SQLite), against the simulated tenant:
//! the operators' story (see `dlq_common`), and a replay killed half-way and run again.

mod dlq_common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dlq_common::{Backend, MDOPS, Scenario, db_path, operators_story, temp_dir};
use mdops_core::queue::{Failure, OutgoingMessage, Queue, QueueName};
use mdops_core::store::Store;
use mdops_local::SqliteBackend;

fn embedded(dir: &tempfile::TempDir) -> Backend {
    let db = db_path(dir);
    let backend = SqliteBackend::open(&db).expect("open database");
    Backend {
        flags: vec![
            "--backend".into(),
            "embedded".into(),
            "--db".into(),
            db.display().to_string(),
        ],
        env: Vec::new(),
        queue: Arc::new(backend.queue().clone()),
        store: Arc::new(backend.store().clone()),
        settle: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_filter_and_replay_real_failures_on_the_embedded_backend() {
    let dir = temp_dir();
    let backend = embedded(&dir);
    operators_story(Scenario::start(backend, dir).await).await;
}

/// Dead letters replayed at 2 a second; how many to replay.
const KILL_MESSAGES: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_half_way_and_run_again_leaves_exactly_one_copy_of_each() {
    let dir = temp_dir();
    let db = db_path(&dir);
    let backend = SqliteBackend::open(&db).expect("open database");
    let queue = backend.queue();
    for n in 0..KILL_MESSAGES {
        queue
            .send(QueueName::Licences, OutgoingMessage::now(format!("{{\"n\":{n}}}")))
            .await
            .expect("send");
    }
    let got = queue
        .receive(QueueName::Licences, 10, Duration::ZERO, Duration::from_secs(60))
        .await
        .expect("receive");
    assert_eq!(got.len(), KILL_MESSAGES);
    for m in &got {
        let why = Failure {
            reason: "Graph 400: broken".into(),
            tenant: None,
            step: None,
            attempts: 1,
            at: chrono::Utc::now(),
        };
        queue
            .dead_letter(QueueName::Licences, m, &why)
            .await
            .expect("dead_letter");
    }
    let replay = || {
        let mut c = std::process::Command::new(MDOPS);
        c.args([
            "--db",
            &db.display().to_string(),
            "dlq",
            "replay",
            "--queue",
            "licences",
            "--yes",
        ])
        .args(["--rate", "2/s", "--error", "broken"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    };
    let mut child = replay().spawn().expect("start replay");
    // At 2/s the 8 moves take about 3 s; kill after the first chunk or two.
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue
        .dead_letters(QueueName::Licences, 100)
        .await
        .expect("dead_letters")
        .len()
        == KILL_MESSAGES
    {
        assert!(Instant::now() < deadline, "the replay never started moving");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL the replay");
    child.wait().expect("reap");
    let left = queue
        .dead_letters(QueueName::Licences, 100)
        .await
        .expect("dead_letters")
        .len();
    assert!(left > 0 && left < KILL_MESSAGES, "killed half-way: {left} left");

    let out = replay().output().expect("re-run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        queue
            .dead_letters(QueueName::Licences, 100)
            .await
            .expect("dead_letters")
            .is_empty()
    );
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..5 {
        let got = queue
            .receive(QueueName::Licences, 10, Duration::ZERO, Duration::from_secs(60))
            .await
            .expect("receive");
        for m in got {
            assert_eq!(m.receive_count, 1, "a replayed message starts a fresh receive count");
            *copies.entry(m.body).or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<String, usize> = (0..KILL_MESSAGES).map(|n| (format!("{{\"n\":{n}}}"), 1)).collect();
    assert_eq!(copies, expected, "exactly one copy of each message");
    let audit = backend.store().audit("dlq:licences", 100).await.expect("audit");
    let moved: usize = audit
        .iter()
        .filter(|a| a.action == "replayed")
        .map(|a| a.detail["ids"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(
        moved >= KILL_MESSAGES - 2,
        "every committed chunk but the one in flight is audited: {moved}"
    );
}
