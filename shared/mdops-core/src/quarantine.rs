//! Quarantine: a record a timer pass found due but could not decode (written by another version, or
//! edited by hand) is set aside with its reason, so it is not in every later batch and the pass goes
//! on with the others. Nothing is lost: the record stays where it was, unchanged except that it
//! leaves the due index, and a quarantine entry (`quarantine/{partition}#{sort}`, in the
//! `quarantine` collection) keeps its key, its body and why it did not decode, for `mdops status`.
//! Repairing the record (rewriting it with a good body) puts it back under its timer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{CollectionEntry, Condition, Key, NewRecord, Record, Store, StoreError, Write};

/// Collection of the quarantine entries, sorted by `{quarantined_at}#{key}`.
pub const QUARANTINE_COLLECTION: &str = "quarantine";
/// Most quarantine entries listed at once.
pub const MAX_QUARANTINE_LIST: usize = 500;

/// A record set aside, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// Where the record is.
    pub key: Key,
    /// The timer it was due for (the due index kind).
    pub due_kind: String,
    /// Why it did not decode.
    pub reason: String,
    /// Its body as stored.
    pub body: serde_json::Value,
    pub quarantined_at: DateTime<Utc>,
}

fn entry_key(key: &Key) -> Key {
    Key::new("quarantine", format!("{}#{}", key.partition, key.sort))
}

/// Sets `record` aside: in one transaction, the record leaves the due index (if it is still at the
/// version read) and its quarantine entry is written. A record changed meanwhile is left alone (its
/// writer may have repaired it); the next pass sees it again if not.
pub async fn quarantine(
    store: &dyn Store,
    record: &Record,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let due_kind = record.due.as_ref().map(|d| d.kind.clone()).unwrap_or_default();
    tracing::error!(key = %record.key, %due_kind, %reason, "quarantining a record that does not decode");
    let entry = Quarantined {
        key: record.key.clone(),
        due_kind,
        reason: reason.to_string(),
        body: record.body.clone(),
        quarantined_at: now,
    };
    let writes = vec![
        Write::Put {
            record: NewRecord {
                key: record.key.clone(),
                body: record.body.clone(),
                collection: record.collection.clone(),
                due: None,
            },
            condition: Condition::Version(record.version),
        },
        Write::Put {
            record: NewRecord {
                key: entry_key(&record.key),
                body: serde_json::to_value(&entry).expect("a quarantine entry always serialises"),
                collection: Some(CollectionEntry {
                    name: QUARANTINE_COLLECTION.into(),
                    sort: format!("{}#{}", now.to_rfc3339(), record.key),
                }),
                due: None,
            },
            condition: Condition::Any,
        },
    ];
    match store.transact(writes).await {
        Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The quarantined records, oldest first, at most `limit`.
pub async fn list(store: &dyn Store, limit: usize) -> Result<Vec<Quarantined>, StoreError> {
    let records = store
        .collection(QUARANTINE_COLLECTION, "", limit.min(MAX_QUARANTINE_LIST))
        .await?;
    records
        .iter()
        .map(|r| {
            crate::json::from_value(r.body.clone()).map_err(|reason| StoreError::Corrupt {
                key: r.key.clone(),
                reason,
            })
        })
        .collect()
}
