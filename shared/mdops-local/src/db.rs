//! The database file: opening it (WAL, busy timeout), the migrations, and a small pool of
//! connections whose blocking calls run on tokio's blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::Semaphore;

/// Connections open at once. SQLite has one writer at a time anyway; a few readers beside it
/// keep receives and reads from queueing behind a write on a 2-core machine.
pub const MAX_CONNECTIONS: usize = 4;

/// How long a statement waits for another connection's (or process's) write lock before failing.
/// Writes here are short (a few rows), so 5 s only runs out if something is badly wrong.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one entry per version. Applied in order at open, each once, recorded in
/// `schema_migrations`. Never edit an entry that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: queue, dead letters, failure records, state records, audit log.
    r#"
    CREATE TABLE messages (
        id            TEXT PRIMARY KEY,
        queue         TEXT NOT NULL,
        body          TEXT NOT NULL,
        sent_at       TEXT NOT NULL,
        visible_at_ms INTEGER NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt       TEXT
    );
    CREATE INDEX messages_ready ON messages (queue, visible_at_ms);
    CREATE UNIQUE INDEX messages_receipt ON messages (receipt);

    CREATE TABLE dead_letters (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT NOT NULL UNIQUE,
        queue            TEXT NOT NULL,
        body             TEXT NOT NULL,
        sent_at          TEXT NOT NULL,
        cause            TEXT NOT NULL,
        history          TEXT NOT NULL,
        receive_count    INTEGER NOT NULL,
        dead_lettered_at TEXT NOT NULL
    );
    CREATE INDEX dead_letters_queue ON dead_letters (queue, seq);

    CREATE TABLE message_failures (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        failure    TEXT NOT NULL
    );
    CREATE INDEX message_failures_message ON message_failures (message_id, seq);

    CREATE TABLE records (
        partition       TEXT NOT NULL,
        sort            TEXT NOT NULL,
        version         INTEGER NOT NULL,
        body            TEXT NOT NULL,
        collection_name TEXT,
        collection_sort TEXT,
        due_kind        TEXT,
        due_at_ns       INTEGER,
        updated_at      TEXT NOT NULL,
        PRIMARY KEY (partition, sort)
    ) WITHOUT ROWID;
    CREATE INDEX records_collection ON records (collection_name, collection_sort);
    CREATE INDEX records_due ON records (due_kind, due_at_ns);

    CREATE TABLE audit (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        subject TEXT NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        detail  TEXT NOT NULL,
        at      TEXT NOT NULL
    );
    CREATE INDEX audit_subject ON audit (subject, seq);
    "#,
    // 2: the audit log is append-only, even for a connection that bypasses the store's code.
    r#"
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    "#,
    // 3: the shared Graph request budget (mdops_core::budget): one row per tenant, slot, counter.
    r#"
    CREATE TABLE budget_counters (
        tenant        TEXT NOT NULL,
        slot          INTEGER NOT NULL,
        counter       TEXT NOT NULL,
        count         INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        PRIMARY KEY (tenant, slot, counter)
    ) WITHOUT ROWID;
    CREATE INDEX budget_counters_expiry ON budget_counters (expires_at_ms);
    "#,
];

/// Errors opening the database or running a statement.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused: the message names the statement's purpose.
    #[error("sqlite {what}: {source}")]
    Sqlite {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The request cannot be stored as given (e.g. a time out of range).
    #[error("{0}")]
    Invalid(String),
    /// The blocking task running the statement panicked or was cancelled.
    #[error("sqlite worker task failed: {0}")]
    Task(String),
    /// The database was written by a newer mdops.
    #[error("database {path} has schema version {found}, newer than this build's {known}: upgrade mdops")]
    TooNew { path: String, found: i64, known: i64 },
}

/// Adds "what we were doing" to a rusqlite error.
pub trait Context<T> {
    /// Names the operation that failed.
    fn what(self, what: &'static str) -> Result<T, DbError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn what(self, what: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError::Sqlite { what, source })
    }
}

/// Where connections come from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    /// A private in-memory database: only one connection can see it, so the pool holds one.
    Memory,
}

/// A bounded pool of connections to one database.
pub struct Pool {
    source: Source,
    idle: Mutex<Vec<Connection>>,
    /// Held by each blocking call (moved into it), so a cancelled caller cannot push the
    /// number of open connections past the limit while its statement still runs.
    permits: Arc<Semaphore>,
}

impl Pool {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open_file(path: &Path) -> Result<Arc<Pool>, DbError> {
        let pool = Pool {
            source: Source::File(path.to_path_buf()),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        };
        let conn = pool.connect()?;
        migrate(&conn, &path.display().to_string())?;
        pool.put_back(conn);
        Ok(Arc::new(pool))
    }

    /// A private in-memory database (one connection), for tests and dry runs.
    pub fn open_memory() -> Result<Arc<Pool>, DbError> {
        let pool = Pool {
            source: Source::Memory,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(1)),
        };
        let conn = pool.connect()?;
        migrate(&conn, ":memory:")?;
        pool.put_back(conn);
        Ok(Arc::new(pool))
    }

    fn connect(&self) -> Result<Connection, DbError> {
        let conn = match &self.source {
            Source::File(path) => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .what("open database file")?,
            Source::Memory => Connection::open_in_memory().what("open in-memory database")?,
        };
        conn.busy_timeout(BUSY_TIMEOUT).what("set busy_timeout")?;
        if matches!(self.source, Source::File(_)) {
            // WAL: readers never block the writer, and several processes can share the file.
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .what("set journal_mode=WAL")?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(
                    mode,
                    "sqlite did not switch to WAL; concurrent processes will block more"
                );
            }
            // NORMAL is durable across application crashes in WAL mode; only an OS crash may lose
            // the last transactions, which at-least-once delivery and idempotent steps absorb.
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
                .what("set pragmas")?;
        }
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Runs `f` with a connection on a blocking thread.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| DbError::Task("connection pool closed".into()))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
            let mut conn = match (idle, &pool.source) {
                (Some(conn), _) => conn,
                (None, Source::File(_)) => pool.connect()?,
                // A new connection would be a new, empty database: refuse rather than lose state.
                (None, Source::Memory) => {
                    return Err(DbError::Task("the in-memory database's connection was lost".into()));
                }
            };
            let result = f(&mut conn);
            pool.put_back(conn);
            result
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}

/// Applies the migrations this database lacks, in one write transaction, so two processes
/// opening a fresh file at once cannot both apply the same one.
fn migrate(conn: &Connection, path: &str) -> Result<(), DbError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .what("create schema_migrations")?;
    // `Connection::transaction_with_behavior` needs `&mut`; the unchecked form is the same here
    // because nothing else uses this connection until `open` returns.
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate).what("begin migration")?;
    let current: i64 = tx
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .what("read schema version")?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(DbError::TooNew {
            path: path.to_string(),
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        tx.execute_batch(sql).what("apply migration")?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, chrono::Utc::now().to_rfc3339()],
        )
        .what("record migration")?;
        tracing::info!(version, path, "applied database migration");
    }
    tx.commit().what("commit migrations")
}

/// Begins a write transaction that takes the write lock at once (`BEGIN IMMEDIATE`), so a
/// read-then-write never fails half way on a lock upgrade.
pub fn write_tx(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, DbError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .what("begin write transaction")
}
