//! What only the SQLite backend promises, beyond the shared contract: one file shared by several
//! independent openers (as separate processes would), migrations applied once, indexes used.

use std::sync::Arc;
use std::time::Duration;

use mdops_core::queue::{OutgoingMessage, Queue, QueueError, QueueName, QueueSettings};
use mdops_core::store::{Condition, Key, NewRecord, Store, StoreError, put_if};
use mdops_local::{DbError, SqliteBackend};
use tokio::time::Instant;

fn settings() -> QueueSettings {
    QueueSettings {
        max_receive_count: 3,
        default_visibility: Duration::from_secs(30),
    }
}

/// Two backends opened on the same file share no pool and no in-process wake-up, like two
/// processes: a receive in one finds a send from the other by polling, promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_openers_share_one_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.db");
    let producer = SqliteBackend::open_with(&path, settings()).expect("open producer");
    let consumer = SqliteBackend::open_with(&path, settings()).expect("open consumer");

    let waiting = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = consumer
                .queue()
                .receive(
                    QueueName::Onboarding,
                    1,
                    Duration::from_secs(5),
                    Duration::from_secs(30),
                )
                .await
                .expect("receive");
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    producer
        .queue()
        .send(QueueName::Onboarding, OutgoingMessage::now("across"))
        .await
        .expect("send");
    let (got, took) = waiting.await.expect("consumer task");
    assert_eq!(got.len(), 1, "the other opener's message arrived");
    assert_eq!(got[0].body, "across");
    // Sent at ~300 ms; polling backs off to at most 200 ms between looks.
    assert!(took < Duration::from_secs(2), "found after {took:?}");
    producer
        .queue()
        .delete(QueueName::Onboarding, &got[0].receipt)
        .await
        .expect("delete via the other opener");
}

/// Creating the same run through two openers at once: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_openers_race_on_one_record() {
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("race.db");
    let a: Arc<dyn Store> = Arc::new(SqliteBackend::open(&path).expect("open a").store().clone());
    let b: Arc<dyn Store> = Arc::new(SqliteBackend::open(&path).expect("open b").store().clone());
    for round in 0..ROUNDS {
        let key = Key::new(format!("run#{round}"), "meta");
        let record = |who: &str| NewRecord {
            key: key.clone(),
            body: serde_json::json!({ "who": who }),
            collection: None,
            due: None,
        };
        let (ra, rb) = tokio::join!(
            put_if(&*a, record("a"), Condition::Absent),
            put_if(&*b, record("b"), Condition::Absent)
        );
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {ra:?} {rb:?}");
        for r in [ra, rb] {
            if let Err(e) = r {
                assert!(matches!(e, StoreError::ConditionFailed { .. }), "{e:?}");
            }
        }
    }
}

/// A receipt from an earlier delivery no longer deletes the message.
#[tokio::test]
async fn stale_receipt_is_refused() {
    let backend = SqliteBackend::open_in_memory(settings()).expect("open");
    let q = backend.queue();
    q.send(QueueName::Access, OutgoingMessage::now("x"))
        .await
        .expect("send");
    let first = q
        .receive(QueueName::Access, 1, Duration::ZERO, Duration::from_secs(30))
        .await
        .expect("receive");
    q.change_visibility(QueueName::Access, &first[0].receipt, Duration::ZERO)
        .await
        .expect("release");
    let second = q
        .receive(QueueName::Access, 1, Duration::ZERO, Duration::from_secs(30))
        .await
        .expect("receive again");
    let err = q
        .delete(QueueName::Access, &first[0].receipt)
        .await
        .expect_err("stale receipt");
    assert!(
        matches!(
            err,
            QueueError::StaleReceipt {
                queue: QueueName::Access
            }
        ),
        "{err:?}"
    );
    q.delete(QueueName::Access, &second[0].receipt)
        .await
        .expect("current receipt");
}

/// Reopening applies no migration twice; a file from a newer schema is refused by name.
#[tokio::test]
async fn migrations_apply_once_and_refuse_newer_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.db");
    drop(SqliteBackend::open(&path).expect("first open"));
    drop(SqliteBackend::open(&path).expect("second open"));
    let conn = rusqlite::Connection::open(&path).expect("open raw");
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
        .expect("count");
    assert_eq!(versions, 3);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("mode");
    assert_eq!(mode, "wal");
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'future')",
        [],
    )
    .expect("fake a newer schema");
    drop(conn);
    match SqliteBackend::open(&path) {
        Err(DbError::TooNew { found: 99, .. }) => {}
        Err(other) => panic!("expected TooNew, got {other}"),
        Ok(_) => panic!("expected TooNew, the file opened"),
    }
}

/// Even a connection that bypasses the store cannot change or delete an audit entry.
#[tokio::test]
async fn the_audit_table_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a.db");
    let backend = SqliteBackend::open(&path).expect("open");
    backend
        .store()
        .append_audit(mdops_core::store::AuditEntry {
            subject: "access:x".into(),
            actor: "user:t/o".into(),
            action: "approved".into(),
            detail: serde_json::Value::Null,
            at: chrono::Utc::now(),
        })
        .await
        .expect("append");
    let conn = rusqlite::Connection::open(&path).expect("open raw");
    for sql in ["UPDATE audit SET action = 'denied'", "DELETE FROM audit"] {
        let e = conn.execute(sql, []).expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let actions: Vec<String> = backend
        .store()
        .audit("access:x", 10)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, vec!["approved"]);
}

/// The due and collection lookups are index searches, never table scans.
#[test]
fn due_and_collection_queries_use_indexes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plan.db");
    drop(SqliteBackend::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("open raw");
    for (sql, index) in [
        (
            "SELECT * FROM records WHERE due_kind = 'k' AND due_at_ns <= 5 ORDER BY due_at_ns LIMIT 10",
            "records_due",
        ),
        (
            "SELECT * FROM records WHERE collection_name = 'c' AND collection_sort LIKE 'x%' ESCAPE '\\' \
             ORDER BY collection_sort LIMIT 10",
            "records_collection",
        ),
        (
            "SELECT id FROM messages WHERE queue = 'q' AND visible_at_ms <= 5 ORDER BY visible_at_ms, rowid LIMIT 10",
            "messages_ready",
        ),
    ] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        let plan = plan.join("; ");
        assert!(plan.contains(index), "{sql}: plan {plan:?} does not use {index}");
        assert!(
            !plan.contains("SCAN records") && !plan.contains("SCAN messages"),
            "{sql}: {plan}"
        );
    }
}
