//! The adapter contract (`mdops_core::contract`) run against the SQLite backend, each case on a
//! fresh database file in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;

use mdops_core::budget::RequestBudget;
use mdops_core::queue::{Queue, QueueSettings};
use mdops_core::store::{Key, Store};
use mdops_local::SqliteBackend;

/// Keeps the temporary directory (and so the database file) alive for the test.
struct Guard {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn fresh(settings: QueueSettings) -> (SqliteBackend, Guard) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mdops.db");
    let backend = SqliteBackend::open_with(&path, settings).expect("open database");
    (backend, Guard { _dir: dir, path })
}

async fn make_queue(settings: QueueSettings) -> (Arc<dyn Queue>, Guard) {
    let (backend, guard) = fresh(settings);
    (Arc::new(backend.queue().clone()), guard)
}

async fn make_store() -> (Arc<dyn Store>, Guard) {
    let (backend, guard) = fresh(QueueSettings::default());
    (Arc::new(backend.store().clone()), guard)
}

/// Damages a record the way a bad migration or a hand edit would: a body that is not JSON.
async fn corrupt(guard: &Guard, key: &Key) {
    let conn = rusqlite::Connection::open(&guard.path).expect("open database file");
    let changed = conn
        .execute(
            "UPDATE records SET body = '{not json' WHERE partition = ?1 AND sort = ?2",
            rusqlite::params![key.partition, key.sort],
        )
        .expect("corrupt record");
    assert_eq!(changed, 1, "the record to corrupt exists");
}

mdops_core::queue_contract!(make_queue);
mdops_core::store_contract!(make_store, corrupt);

async fn make_budget() -> (Arc<dyn RequestBudget>, Guard) {
    let (backend, guard) = fresh(QueueSettings::default());
    (Arc::new(backend.store().clone()), guard)
}

mdops_core::budget_contract!(make_budget);
