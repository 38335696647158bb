//! Throughput figures for the queue and the store, embedded (SQLite file) and on the moto
//! emulator, with the same code through the ports. Prints figures; it is not a timed test.
//!
//!     cargo run --release -p mdops-aws --example bench            # embedded + moto
//!     cargo run --release -p mdops-aws --example bench -- local   # embedded only
//!
//! moto is found like the tests find it (scripts/test's environment, or .venv/bin/moto_server).
//! Its runs are kept short: the emulator slows down a lot on deep queues.

use mdops_aws::emulator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mdops_aws::{AwsBackend, ResourceNames};
use mdops_core::queue::{OutgoingMessage, Queue, QueueName, QueueSettings};
use mdops_core::store::{Condition, Key, NewRecord, Store, put_if};
use mdops_local::SqliteBackend;

/// Concurrent consumers / updaters: a few per core on this 2-core machine, as a worker would run.
const WORKERS: usize = 4;
/// Bound on empty receives per worker before it decides the queue is drained.
const MAX_EMPTY_RECEIVES: usize = 3;

struct Figures {
    send_per_s: f64,
    consume_per_s: f64,
    end_to_end_per_s: f64,
    updates_per_s: f64,
}

/// Sends `messages` in batches of 10, then `WORKERS` tasks receive (10 at a time) and delete.
async fn queue_run(q: Arc<dyn Queue>, messages: usize) -> (f64, f64, f64) {
    let start = Instant::now();
    let mut sent = 0;
    while sent < messages {
        let n = (messages - sent).min(10);
        let batch = (0..n)
            .map(|i| OutgoingMessage::now(format!("{{\"step\":\"bench\",\"n\":{}}}", sent + i)))
            .collect();
        q.send_batch(QueueName::Onboarding, batch).await.expect("send_batch");
        sent += n;
    }
    let sent_in = start.elapsed();
    let consume_start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            let mut empty = 0;
            while empty < MAX_EMPTY_RECEIVES {
                let got = q
                    .receive(QueueName::Onboarding, 10, Duration::ZERO, Duration::from_secs(60))
                    .await
                    .expect("receive");
                if got.is_empty() {
                    empty += 1;
                    continue;
                }
                empty = 0;
                for m in got {
                    q.delete(QueueName::Onboarding, &m.receipt).await.expect("delete");
                    done += 1;
                }
            }
            done
        }));
    }
    let mut consumed = 0;
    for t in tasks {
        consumed += t.await.expect("worker");
    }
    let consumed_in = consume_start.elapsed();
    assert_eq!(consumed, messages, "every message consumed exactly once");
    let total = start.elapsed();
    (
        messages as f64 / sent_in.as_secs_f64(),
        messages as f64 / consumed_in.as_secs_f64(),
        messages as f64 / total.as_secs_f64(),
    )
}

/// `WORKERS` tasks each advance their own record `updates / WORKERS` times by a conditional put
/// at the version they read (the "complete step at attempt N" write).
async fn store_run(s: Arc<dyn Store>, updates: usize) -> f64 {
    let per_task = updates / WORKERS;
    for w in 0..WORKERS {
        let r = NewRecord {
            key: Key::new(format!("run#bench{w}"), "step#a"),
            body: serde_json::json!({ "attempt": 0 }),
            collection: None,
            due: None,
        };
        put_if(&*s, r, Condition::Absent).await.expect("seed");
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let key = Key::new(format!("run#bench{w}"), "step#a");
            for n in 0..per_task {
                let version = s.get(&key).await.expect("get").expect("exists").version;
                let r = NewRecord {
                    key: key.clone(),
                    body: serde_json::json!({ "attempt": n + 1, "status": "running" }),
                    collection: None,
                    due: None,
                };
                put_if(&*s, r, Condition::Version(version))
                    .await
                    .expect("conditional update");
            }
        }));
    }
    for t in tasks {
        t.await.expect("updater");
    }
    (per_task * WORKERS) as f64 / start.elapsed().as_secs_f64()
}

fn print(name: &str, messages: usize, updates: usize, f: &Figures) {
    println!(
        "{name:<10} {messages:>6} msgs: send {:>8.0}/s  receive+delete {:>8.0}/s  send+receive+delete {:>8.0}/s | \
         {updates:>5} conditional updates (get + put at version): {:>7.0}/s",
        f.send_per_s, f.consume_per_s, f.end_to_end_per_s, f.updates_per_s
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let local_only = std::env::args().nth(1).as_deref() == Some("local");
    let settings = QueueSettings::default();

    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = SqliteBackend::open_with(dir.path().join("bench.db"), settings).expect("open database");
    let (messages, updates) = (5000, 4000);
    let (send, consume, e2e) = queue_run(Arc::new(embedded.queue().clone()), messages).await;
    let upd = store_run(Arc::new(embedded.store().clone()), updates).await;
    print(
        "embedded",
        messages,
        updates,
        &Figures {
            send_per_s: send,
            consume_per_s: consume,
            end_to_end_per_s: e2e,
            updates_per_s: upd,
        },
    );

    if local_only {
        return;
    }
    let sdk = emulator::sdk_config().await;
    let names = ResourceNames::new(emulator::unique_prefix()).expect("prefix");
    let aws = AwsBackend::ensure(&sdk, &names, settings)
        .await
        .expect("create resources");
    let (messages, updates) = (200, 200);
    let (send, consume, e2e) = queue_run(Arc::new(aws.queue().clone()), messages).await;
    let upd = store_run(Arc::new(aws.store().clone()), updates).await;
    print(
        "moto",
        messages,
        updates,
        &Figures {
            send_per_s: send,
            consume_per_s: consume,
            end_to_end_per_s: e2e,
            updates_per_s: upd,
        },
    );
}
