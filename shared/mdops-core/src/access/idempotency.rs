//! Idempotency keys of `POST /requests`: a client that retries (its answer was lost) sends the same
//! `Idempotency-Key` header and gets the request it already filed, not a second request and a
//! second mail to the team.
//!
//! A key belongs to the person who sent it (`access-idem#{tid}/{oid}` / `{key}`) and is written in
//! the transaction that files the request, so the request and its key exist together or not at
//! all. Keys are kept with their request (as long as the request is). The same key with a
//! different body is refused: it is a client bug, and answering the old request would hide it.

use serde::{Deserialize, Serialize};

use super::{NewAccessRequest, PersonId};
use crate::store::{Condition, Key, NewRecord, Store, StoreError, Write};
use crate::tenant::InvalidInput;

/// Longest key accepted (a UUID is 36 characters; this leaves room for client prefixes).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// What a key recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyRecord {
    pub request_id: String,
    /// The body it was sent with, to refuse the same key with another body.
    pub input: NewAccessRequest,
}

/// Checks a key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), InvalidInput> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidInput::new(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters (a UUID, say)"),
        ));
    }
    Ok(())
}

fn key(person: &PersonId, idempotency_key: &str) -> Key {
    Key::new(format!("access-idem#{person}"), idempotency_key)
}

/// The request this person already filed with this key, if any.
pub async fn find(
    store: &dyn Store,
    person: &PersonId,
    idempotency_key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let Some(record) = store.get(&key(person, idempotency_key)).await? else {
        return Ok(None);
    };
    crate::json::from_value(record.body.clone())
        .map(Some)
        .map_err(|reason| StoreError::Corrupt {
            key: record.key.clone(),
            reason,
        })
}

/// The write that records the key with the new request (fails the transaction if the key exists).
pub fn record(person: &PersonId, idempotency_key: &str, entry: &IdempotencyRecord) -> Write {
    Write::Put {
        record: NewRecord {
            key: key(person, idempotency_key),
            body: serde_json::to_value(entry).expect("an idempotency record always serialises"),
            collection: None,
            due: None,
        },
        condition: Condition::Absent,
    }
}
