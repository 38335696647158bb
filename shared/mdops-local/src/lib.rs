//! `mdops-local`: the embedded adapters behind the ports of `mdops-core`: the [`Queue`] and the
//! [`Store`] in one SQLite database file. This is the default backend of `mdops worker` and
//! `mdops onboard`; `mdops-aws` is the other one, and both pass `mdops_core::contract`.
//!
//! Layout:
//! - [`db`]: opening the file (WAL, busy timeout), the migrations, a small connection pool whose
//!   blocking calls run on tokio's blocking threads.
//! - [`queue`]: SQS semantics on tables (visibility, receive count, redrive, dead letters).
//! - [`store`]: versioned records with conditional transactions, collection and due indexes,
//!   the audit log.
//! - [`budget`]: the shared Graph request budget ([`mdops_core::budget::RequestBudget`]) on the
//!   same store: one write transaction per take.
//!
//! Several worker tasks share one [`SqliteBackend`] (clone it); several processes may open the
//! same file at once: every write takes SQLite's write lock (`BEGIN IMMEDIATE`), and receivers in
//! other processes notice new messages by polling with a bounded backoff.
//!
//! [`Queue`]: mdops_core::queue::Queue
//! [`Store`]: mdops_core::store::Store

pub mod budget;
pub mod db;
pub mod queue;
pub mod store;

use std::path::Path;

use mdops_core::queue::{QueueName, QueueSettings};

pub use db::DbError;
pub use queue::SqliteQueue;
pub use store::SqliteStore;

/// One SQLite database serving as both queue and store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteBackend {
    queue: SqliteQueue,
    store: SqliteStore,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file at `path`, switches it to WAL and applies any
    /// pending migrations. Every queue gets [`QueueSettings::default`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        Self::open_with(path, QueueSettings::default())
    }

    /// Like [`SqliteBackend::open`], with the same settings for every queue.
    pub fn open_with(path: impl AsRef<Path>, settings: QueueSettings) -> Result<Self, DbError> {
        let pool = db::Pool::open_file(path.as_ref())?;
        Ok(Self::from_pool(pool, settings))
    }

    /// A private in-memory database (one connection), for tests and dry runs.
    pub fn open_in_memory(settings: QueueSettings) -> Result<Self, DbError> {
        Ok(Self::from_pool(db::Pool::open_memory()?, settings))
    }

    fn from_pool(pool: std::sync::Arc<db::Pool>, settings: QueueSettings) -> Self {
        SqliteBackend {
            queue: SqliteQueue::new(pool.clone(), [settings; QueueName::ALL.len()]),
            store: SqliteStore::new(pool),
        }
    }

    /// The queue side.
    pub fn queue(&self) -> &SqliteQueue {
        &self.queue
    }

    /// The state side.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }
}
