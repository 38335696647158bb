//! Which existing directory objects onboarding may take as its own.
//!
//! Onboarding finds a service account by its UPN, a name anyone able to create users in the
//! customer tenant can take first. So an account found by name is adopted only when it carries
//! this tenant's *marker* (a random value mdops keeps in its own store and writes on the accounts
//! it creates: nobody outside mdops's store can know it before mdops writes it), or when an
//! operator allowed its object id with `mdops onboard --adopt` (recorded here with who and when,
//! in the same transaction as its audit entry). Anything else fails the step for an operator.
//!
//! Layout: partition `tenant#{tid}`, sort `adoption-marker` (the marker) and `adopt#{object id}`
//! (one allowance each); audit subject `tenant:{tid}`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{AuditEntry, Condition, Key, NewRecord, Record, Store, StoreError, Write};
use crate::tenant::{InvalidInput, TenantId};

const MARKER_SORT: &str = "adoption-marker";
const ALLOWANCE_PREFIX: &str = "adopt#";
/// Audit action of an allowance.
pub const ADOPTION_ALLOWED: &str = "adoption.allowed";
/// Prefix of every marker value, so a person reading the attribute in the portal sees what set it.
pub const MARKER_PREFIX: &str = "mdops:";

/// Checks an object id given to adopt (`--adopt`): a GUID, as the failed step names it.
pub fn parse_object_id(value: &str) -> Result<String, InvalidInput> {
    uuid::Uuid::parse_str(value.trim())
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            InvalidInput::new(
                "--adopt",
                format!("{value:?} is not an object id (a GUID); give the id the failed account step names"),
            )
        })
}

fn partition(tenant: &TenantId) -> String {
    format!("tenant#{tenant}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Marker {
    value: String,
}

/// An operator's permission to adopt one existing object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allowance {
    pub object_id: String,
    /// Who allowed it (an actor id, as in the audit log).
    pub actor: String,
    pub at: DateTime<Utc>,
}

fn decode<T: for<'de> Deserialize<'de>>(record: &Record) -> Result<T, StoreError> {
    serde_json::from_value(record.body.clone()).map_err(|e| StoreError::Corrupt {
        key: record.key.clone(),
        reason: e.to_string(),
    })
}

/// The adoption records of the store.
pub struct Adoptions<'a> {
    store: &'a dyn Store,
}

impl<'a> Adoptions<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        Adoptions { store }
    }

    /// The tenant's marker, made (random, once) on first use. Two callers racing to make it both
    /// end up with the one that was written first.
    pub async fn marker(&self, tenant: &TenantId) -> Result<String, StoreError> {
        let key = Key::new(partition(tenant), MARKER_SORT);
        if let Some(record) = self.store.get(&key).await? {
            return Ok(decode::<Marker>(&record)?.value);
        }
        let fresh = Marker {
            value: format!("{MARKER_PREFIX}{}", uuid::Uuid::new_v4().simple()),
        };
        let record = NewRecord {
            key: key.clone(),
            body: serde_json::to_value(&fresh).expect("a marker serialises"),
            collection: None,
            due: None,
        };
        match crate::store::put_if(self.store, record, Condition::Absent).await {
            Ok(()) => Ok(fresh.value),
            Err(StoreError::ConditionFailed { .. }) => {
                let record = self.store.get(&key).await?.ok_or_else(|| StoreError::Corrupt {
                    key: key.clone(),
                    reason: "the marker was written by another caller but cannot be read".into(),
                })?;
                Ok(decode::<Marker>(&record)?.value)
            }
            Err(e) => Err(e),
        }
    }

    /// Allows onboarding to adopt the existing object `object_id` of `tenant`, recording who and
    /// when in the audit log in the same transaction. Allowing one again records it again.
    pub async fn allow(
        &self,
        tenant: &TenantId,
        object_id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let allowance = Allowance {
            object_id: object_id.to_string(),
            actor: actor.to_string(),
            at: now,
        };
        self.store
            .transact(vec![
                Write::Put {
                    record: NewRecord {
                        key: Key::new(partition(tenant), format!("{ALLOWANCE_PREFIX}{object_id}")),
                        body: serde_json::to_value(&allowance).expect("an allowance serialises"),
                        collection: None,
                        due: None,
                    },
                    condition: Condition::Any,
                },
                Write::audit(AuditEntry {
                    subject: format!("tenant:{tenant}"),
                    actor: actor.to_string(),
                    action: ADOPTION_ALLOWED.into(),
                    detail: serde_json::json!({ "object_id": object_id }),
                    at: now,
                }),
            ])
            .await
    }

    /// The object ids operators allowed onboarding to adopt in `tenant`.
    pub async fn allowed(&self, tenant: &TenantId) -> Result<BTreeSet<String>, StoreError> {
        let records = self.store.query(&partition(tenant), ALLOWANCE_PREFIX).await?;
        records
            .iter()
            .map(|r| decode::<Allowance>(r).map(|a| a.object_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_to_adopt_are_guids() {
        let id = "0F8FAD5B-D9CB-469F-A165-70867728950E";
        assert_eq!(parse_object_id(id).unwrap(), id.to_ascii_lowercase());
        let err = parse_object_id("mmd-admin@fabrikam.onmicrosoft.com").unwrap_err();
        assert_eq!(err.field, "--adopt");
        assert!(err.problem.contains("GUID"), "{err}");
    }
}
