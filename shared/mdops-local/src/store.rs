//! The [`Store`] port on SQLite: one `records` table keyed by (partition, sort) with a version
//! column, two indexes (collection, due) and an append-only `audit` table.
//!
//! A transaction takes the write lock at once (`BEGIN IMMEDIATE`), checks every condition, then
//! applies every write; the first failed condition rolls all of it back. With one writer at a time
//! per file (across processes too), "exactly one of two racing writers wins" follows.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mdops_core::store::{
    AuditEntry, AuditPage, CollectionEntry, Condition, DueEntry, Key, MAX_AUDIT_PAGE, Record, Store, StoreError, Write,
    validate_transaction,
};
use rusqlite::{OptionalExtension, params};

use crate::db::{Context, DbError, Pool, write_tx};

/// The SQLite store. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: Arc<Pool>,
}

/// Columns read for a record, in the order [`decode`] expects.
const RECORD_COLUMNS: &str =
    "partition, sort, version, body, collection_name, collection_sort, due_kind, due_at_ns, updated_at";

pub(crate) fn unavailable(e: DbError) -> StoreError {
    StoreError::Unavailable {
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}

/// A row as read, before decoding: keeps the key so a decode error can name it.
struct RawRecord {
    key: Key,
    version: i64,
    body: String,
    collection_name: Option<String>,
    collection_sort: Option<String>,
    due_kind: Option<String>,
    due_at_ns: Option<i64>,
    updated_at: String,
}

fn raw(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        key: Key::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?),
        version: row.get(2)?,
        body: row.get(3)?,
        collection_name: row.get(4)?,
        collection_sort: row.get(5)?,
        due_kind: row.get(6)?,
        due_at_ns: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

fn decode(raw: RawRecord) -> Result<Record, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: raw.key.clone(),
        reason,
    };
    let version = u64::try_from(raw.version).map_err(|_| corrupt(format!("version {} is negative", raw.version)))?;
    let body = serde_json::from_str(&raw.body).map_err(|e| corrupt(format!("body is not JSON: {e}")))?;
    let collection = match (raw.collection_name.clone(), raw.collection_sort.clone()) {
        (Some(name), Some(sort)) => Some(CollectionEntry { name, sort }),
        (None, None) => None,
        _ => {
            return Err(corrupt(
                "collection name and sort must be both set or both empty".into(),
            ));
        }
    };
    let due = match (raw.due_kind.clone(), raw.due_at_ns) {
        (Some(kind), Some(ns)) => Some(DueEntry {
            kind,
            at: DateTime::from_timestamp_nanos(ns),
        }),
        (None, None) => None,
        _ => return Err(corrupt("due kind and time must be both set or both empty".into())),
    };
    let updated_at = DateTime::parse_from_rfc3339(&raw.updated_at)
        .map_err(|e| corrupt(format!("updated_at {:?} is not a time: {e}", raw.updated_at)))?
        .with_timezone(&Utc);
    Ok(Record {
        key: raw.key,
        version,
        body,
        collection,
        due,
        updated_at,
    })
}

fn decode_all(rows: Vec<RawRecord>) -> Result<Vec<Record>, StoreError> {
    rows.into_iter().map(decode).collect()
}

/// Escapes a prefix for `LIKE ... ESCAPE '\'`.
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Why a transaction did not commit, inside the blocking closure.
enum TxOutcome {
    Done,
    ConditionFailed(Key),
}

impl SqliteStore {
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        SqliteStore { pool }
    }

    async fn select(&self, sql: &'static str, args: Vec<rusqlite::types::Value>) -> Result<Vec<Record>, StoreError> {
        let rows = self
            .pool
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(sql).what("prepare record query")?;
                stmt.query_map(rusqlite::params_from_iter(args), raw)
                    .what("query records")?
                    .collect::<Result<Vec<_>, _>>()
                    .what("read records")
            })
            .await
            .map_err(unavailable)?;
        decode_all(rows)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let key = key.clone();
        let row = self
            .pool
            .run(move |conn| {
                conn.query_row(
                    &format!("SELECT {RECORD_COLUMNS} FROM records WHERE partition = ?1 AND sort = ?2"),
                    params![key.partition, key.sort],
                    raw,
                )
                .optional()
                .what("get record")
            })
            .await
            .map_err(unavailable)?;
        row.map(decode).transpose()
    }

    async fn query(&self, partition: &str, sort_prefix: &str) -> Result<Vec<Record>, StoreError> {
        const SQL: &str = "SELECT partition, sort, version, body, collection_name, collection_sort, due_kind, \
             due_at_ns, updated_at FROM records WHERE partition = ?1 AND sort LIKE ?2 ESCAPE '\\' ORDER BY sort";
        self.select(SQL, vec![partition.to_string().into(), like_prefix(sort_prefix).into()])
            .await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        validate_transaction(&writes)?;
        if writes.is_empty() {
            return Ok(());
        }
        let outcome =
            self.pool
                .run(move |conn| {
                    let tx = write_tx(conn)?;
                    let now = Utc::now().to_rfc3339();
                    let mut versions = Vec::with_capacity(writes.len());
                    for w in &writes {
                        let key = w.key();
                        let condition = match w {
                            Write::Put { condition, .. }
                            | Write::Delete { condition, .. }
                            | Write::Check { condition, .. } => *condition,
                            // Appends have no condition: their table has no row to compare.
                            Write::Audit { .. } => {
                                versions.push(None);
                                continue;
                            }
                        };
                        let current: Option<i64> = tx
                            .prepare_cached("SELECT version FROM records WHERE partition = ?1 AND sort = ?2")
                            .what("prepare version check")?
                            .query_row(params![key.partition, key.sort], |r| r.get(0))
                            .optional()
                            .what("read version")?;
                        let holds = match condition {
                            Condition::Absent => current.is_none(),
                            Condition::Version(n) => current.is_some_and(|v| u64::try_from(v).ok() == Some(n)),
                            Condition::Any => true,
                        };
                        if !holds {
                            // Dropping `tx` rolls back; nothing has been written yet anyway.
                            return Ok(TxOutcome::ConditionFailed(key.clone()));
                        }
                        versions.push(current);
                    }
                    for (w, current) in writes.iter().zip(versions) {
                        match w {
                            Write::Put { record, .. } => {
                                let body = serde_json::to_string(&record.body)
                                    .map_err(|e| DbError::Invalid(format!("body of {}: {e}", record.key)))?;
                                let due_ns = match &record.due {
                                    Some(d) => Some(d.at.timestamp_nanos_opt().ok_or_else(|| {
                                        DbError::Invalid(format!("due time of {} is out of range", record.key))
                                    })?),
                                    None => None,
                                };
                                tx.prepare_cached(
                                    "INSERT OR REPLACE INTO records (partition, sort, version, body, collection_name, \
                                 collection_sort, due_kind, due_at_ns, updated_at) \
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                                )
                                .what("prepare put")?
                                .execute(params![
                                    record.key.partition,
                                    record.key.sort,
                                    current.unwrap_or(0) + 1,
                                    body,
                                    record.collection.as_ref().map(|c| c.name.as_str()),
                                    record.collection.as_ref().map(|c| c.sort.as_str()),
                                    record.due.as_ref().map(|d| d.kind.as_str()),
                                    due_ns,
                                    now,
                                ])
                                .what("put record")?;
                            }
                            Write::Delete { key, .. } => {
                                tx.execute(
                                    "DELETE FROM records WHERE partition = ?1 AND sort = ?2",
                                    params![key.partition, key.sort],
                                )
                                .what("delete record")?;
                            }
                            Write::Check { .. } => {}
                            Write::Audit { entry, .. } => {
                                let detail = serde_json::to_string(&entry.detail).map_err(|e| {
                                    DbError::Invalid(format!("audit detail for {}: {e}", entry.subject))
                                })?;
                                tx.prepare_cached(
                                "INSERT INTO audit (subject, actor, action, detail, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                            )
                            .what("prepare audit append")?
                            .execute(params![entry.subject, entry.actor, entry.action, detail, entry.at.to_rfc3339()])
                            .what("append audit entry")?;
                            }
                        }
                    }
                    tx.commit().what("commit transaction")?;
                    Ok(TxOutcome::Done)
                })
                .await
                .map_err(|e| match e {
                    DbError::Invalid(reason) => StoreError::Invalid(reason),
                    other => unavailable(other),
                })?;
        match outcome {
            TxOutcome::Done => Ok(()),
            TxOutcome::ConditionFailed(key) => Err(StoreError::ConditionFailed { key }),
        }
    }

    async fn collection(&self, name: &str, sort_prefix: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        const SQL: &str = "SELECT partition, sort, version, body, collection_name, collection_sort, due_kind, \
             due_at_ns, updated_at FROM records WHERE collection_name = ?1 AND collection_sort LIKE ?2 ESCAPE '\\' \
             ORDER BY collection_sort LIMIT ?3";
        self.select(
            SQL,
            vec![
                name.to_string().into(),
                like_prefix(sort_prefix).into(),
                to_i64(limit).into(),
            ],
        )
        .await
    }

    async fn due(&self, kind: &str, now: DateTime<Utc>, limit: usize) -> Result<Vec<Record>, StoreError> {
        const SQL: &str = "SELECT partition, sort, version, body, collection_name, collection_sort, due_kind, \
             due_at_ns, updated_at FROM records WHERE due_kind = ?1 AND due_at_ns <= ?2 \
             ORDER BY due_at_ns LIMIT ?3";
        let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        self.select(SQL, vec![kind.to_string().into(), now_ns.into(), to_i64(limit).into()])
            .await
    }

    async fn audit(&self, subject: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        const SQL: &str = "SELECT seq, subject, actor, action, detail, at FROM audit WHERE subject = ?1 \
             ORDER BY seq LIMIT ?2";
        let rows = self
            .audit_rows(SQL, vec![subject.to_string().into(), to_i64(limit).into()])
            .await?;
        rows.into_iter().map(|(_, entry)| entry).collect()
    }

    async fn audit_page(&self, subject: &str, before: Option<&str>, limit: usize) -> Result<AuditPage, StoreError> {
        const SQL: &str = "SELECT seq, subject, actor, action, detail, at FROM audit WHERE subject = ?1 \
             AND seq < ?2 ORDER BY seq DESC LIMIT ?3";
        let before = match before {
            Some(cursor) => cursor
                .parse::<i64>()
                .map_err(|_| StoreError::Invalid(format!("audit cursor {cursor:?} is not one this store gave")))?,
            None => i64::MAX,
        };
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        let rows = self
            .audit_rows(
                SQL,
                vec![subject.to_string().into(), before.into(), to_i64(limit).into()],
            )
            .await?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|(seq, _)| seq.to_string()))
            .flatten();
        Ok(AuditPage {
            entries: rows.into_iter().map(|(_, entry)| entry).collect::<Result<_, _>>()?,
            next,
        })
    }
}

impl SqliteStore {
    /// Audit rows of a query, each with its sequence number (the page cursor).
    async fn audit_rows(
        &self,
        sql: &'static str,
        args: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<(i64, Result<AuditEntry, StoreError>)>, StoreError> {
        let rows = self
            .pool
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(sql).what("prepare audit query")?;
                stmt.query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .what("query audit")?
                .collect::<Result<Vec<_>, _>>()
                .what("read audit")
            })
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(seq, subject, actor, action, detail, at)| {
                let corrupt = |reason: String| StoreError::Corrupt {
                    key: Key::new(format!("audit#{subject}"), seq.to_string()),
                    reason,
                };
                let entry = (|| {
                    let detail =
                        serde_json::from_str(&detail).map_err(|e| corrupt(format!("detail is not JSON: {e}")))?;
                    let at = DateTime::parse_from_rfc3339(&at)
                        .map_err(|e| corrupt(format!("time {at:?}: {e}")))?
                        .with_timezone(&Utc);
                    Ok(AuditEntry {
                        subject: subject.clone(),
                        actor,
                        action,
                        detail,
                        at,
                    })
                })();
                (seq, entry)
            })
            .collect())
    }
}
