//! The state port: versioned records with conditional writes, in one table.
//!
//! Every piece of state (onboarding runs and their steps, registered tenants, access requests,
//! timers) is a [`Record`] under a [`Key`] (partition + sort, as in a DynamoDB single-table
//! design). A write names the condition it needs ([`Condition`]): absent, or still at the version
//! the writer read. A [`Store::transact`] applies several writes all or none, which is how "complete
//! this step and release its dependents" stays atomic. Two optional indexes make lists cheap
//! without scans: a record may belong to a *collection* (e.g. all runs, sorted by tenant) and may be
//! *due* at a time (timers), found by [`Store::due`].
//!
//! The audit log is append-only: an entry is written by [`Write::Audit`] inside the transaction
//! whose change it records (so a decision and its entry commit together or not at all), and no
//! write may touch an audit key otherwise ([`validate_transaction`] refuses it in every adapter).
//! It is read per subject, oldest first ([`Store::audit`]) or newest first in pages
//! ([`Store::audit_page`]).
//!
//! Typed repositories in the domain modules turn records into domain types; a record whose body
//! does not decode is reported as [`StoreError::Corrupt`] naming its key.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most writes one [`Store::transact`] may carry (DynamoDB's own limit is 100).
pub const MAX_TRANSACTION_WRITES: usize = 100;
/// Partition prefix of audit entries, reserved: no other write may use it. `~` sorts after every
/// domain prefix and no domain key uses it.
pub const AUDIT_PREFIX: &str = "~audit#";
/// Largest page [`Store::audit_page`] returns.
pub const MAX_AUDIT_PAGE: usize = 500;

/// Where a record lives: a partition (everything read together) and a sort key within it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub partition: String,
    pub sort: String,
}

impl Key {
    /// A key from its two parts.
    pub fn new(partition: impl Into<String>, sort: impl Into<String>) -> Self {
        Key {
            partition: partition.into(),
            sort: sort.into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.partition, self.sort)
    }
}

/// Membership of a record in a collection, listed in `sort` order by [`Store::collection`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionEntry {
    pub name: String,
    pub sort: String,
}

/// A time at which a record is due, found by [`Store::due`] for the given kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueEntry {
    pub kind: String,
    pub at: DateTime<Utc>,
}

/// A stored record. `version` starts at 1 and grows by one with every write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: Key,
    pub version: u64,
    /// The record's content; its shape belongs to the domain module that owns the key.
    pub body: serde_json::Value,
    pub collection: Option<CollectionEntry>,
    pub due: Option<DueEntry>,
    pub updated_at: DateTime<Utc>,
}

/// A record to write. The store sets `version` and `updated_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRecord {
    pub key: Key,
    pub body: serde_json::Value,
    pub collection: Option<CollectionEntry>,
    pub due: Option<DueEntry>,
}

/// What must hold for a write to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// No record under the key.
    Absent,
    /// The record exists at exactly this version.
    Version(u64),
    /// No condition.
    Any,
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Write {
    /// Create or replace the record, if the condition holds.
    Put { record: NewRecord, condition: Condition },
    /// Delete the record, if the condition holds.
    Delete { key: Key, condition: Condition },
    /// Write nothing, but fail the transaction unless the condition holds.
    Check { key: Key, condition: Condition },
    /// Append an audit entry with the transaction (build it with [`Write::audit`]). `key` is
    /// unique to this entry (a random sort key under [`AUDIT_PREFIX`]); entries are never replaced.
    Audit { key: Key, entry: AuditEntry },
}

impl Write {
    /// Appends `entry` to the audit log as part of the transaction.
    pub fn audit(entry: AuditEntry) -> Write {
        Write::Audit {
            key: Key::new(
                format!("{AUDIT_PREFIX}{}", entry.subject),
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            entry,
        }
    }

    /// The key this write touches.
    pub fn key(&self) -> &Key {
        match self {
            Write::Put { record, .. } => &record.key,
            Write::Delete { key, .. } | Write::Check { key, .. } | Write::Audit { key, .. } => key,
        }
    }
}

/// Checks the shape of a transaction, the same for every adapter: its size, distinct keys, and no
/// write but an append touching the audit log (there is no path that changes or deletes an entry).
pub fn validate_transaction(writes: &[Write]) -> Result<(), StoreError> {
    if writes.len() > MAX_TRANSACTION_WRITES {
        return Err(StoreError::Invalid(format!(
            "transaction has {} writes, over the maximum of {MAX_TRANSACTION_WRITES}",
            writes.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for w in writes {
        if !seen.insert(w.key()) {
            return Err(StoreError::Invalid(format!(
                "transaction writes {} more than once",
                w.key()
            )));
        }
        if !matches!(w, Write::Audit { .. }) && w.key().partition.starts_with(AUDIT_PREFIX) {
            return Err(StoreError::Invalid(format!(
                "{} is in the audit log, which is append-only",
                w.key()
            )));
        }
    }
    Ok(())
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// What the entry is about, e.g. `run:<id>`, `access:<id>`, `tenant:<tid>`, `dlq:onboarding`.
    pub subject: String,
    /// Who did it, by an id that never changes: `user:{tid}/{oid}` for a person signed in with
    /// Entra ID (the UPN, which can change, goes in `detail` for display), `system:<component>`,
    /// or an operator's local account (`operator:<name>`).
    pub actor: String,
    /// What happened, a short verb phrase (`approved`, `step.done`, `replayed`).
    pub action: String,
    /// Details: reason, ids, counts. Never a secret.
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// Errors of a store adapter.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition did not hold; nothing of the transaction was written.
    #[error("condition failed for {key}: another writer changed it first")]
    ConditionFailed { key: Key },
    /// A stored record could not be decoded.
    #[error("record {key} is corrupt: {reason}")]
    Corrupt { key: Key, reason: String },
    /// The request itself was invalid (too many writes, the same key twice, ...).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The backing service failed; retrying may help.
    #[error("store backend unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The state port.
#[async_trait]
pub trait Store: Send + Sync {
    /// The record under `key`, if any.
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError>;

    /// Every record of a partition whose sort key starts with `sort_prefix`, in sort order.
    async fn query(&self, partition: &str, sort_prefix: &str) -> Result<Vec<Record>, StoreError>;

    /// Applies all writes or none (at most [`MAX_TRANSACTION_WRITES`], each key at most once).
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// Members of a collection whose collection sort key starts with `sort_prefix`, in that order,
    /// at most `limit`.
    async fn collection(&self, name: &str, sort_prefix: &str, limit: usize) -> Result<Vec<Record>, StoreError>;

    /// Records of the given due kind whose due time is at or before `now`, earliest first, at most
    /// `limit`. Served by an index, never a scan.
    async fn due(&self, kind: &str, now: DateTime<Utc>, limit: usize) -> Result<Vec<Record>, StoreError>;

    /// Appends to the audit log on its own. Prefer [`Write::audit`] in the transaction of the
    /// change the entry records, so the two cannot part.
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.transact(vec![Write::audit(entry)]).await
    }

    /// The audit entries of a subject, oldest first, at most `limit`.
    async fn audit(&self, subject: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// The audit entries of a subject newest first, at most `limit` (capped at
    /// [`MAX_AUDIT_PAGE`]), starting after the cursor `before` of a previous page.
    async fn audit_page(&self, subject: &str, before: Option<&str>, limit: usize) -> Result<AuditPage, StoreError>;
}

/// A page of a subject's audit trail, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Cursor of the next (older) page; `None` when this page reached the first entry.
    pub next: Option<String>,
}

/// Puts one record if the condition holds: a one-write transaction.
pub async fn put_if(store: &dyn Store, record: NewRecord, condition: Condition) -> Result<(), StoreError> {
    store.transact(vec![Write::Put { record, condition }]).await
}
