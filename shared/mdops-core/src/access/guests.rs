//! The engineers' guest accounts in customer tenants, as mdops recorded them.
//!
//! A guest is elevated only if mdops invited it (its object id recorded here), or an operator
//! adopted it on purpose (`mdops access adopt-guest`, audited). A user that merely carries the
//! engineer's address in `mail` is never trusted: in a customer tenant anyone allowed to edit users
//! can set `mail` on an account of their choosing, and elevating by `mail` would hand a role group
//! to that account.
//!
//! One record per (customer tenant, engineer): `access-guest#{tenant}` / `{tid}/{oid}`. It is written
//! *before* the invitation is sent (`guest_id: None`, `invited_at` set), so when the invitation's
//! answer is lost the retry knows the guest it finds by address is the one its own invitation made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::PersonId;
use crate::store::{AuditEntry, Condition, Key, NewRecord, Store, StoreError, Write};
use crate::tenant::TenantId;

/// A recorded guest account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestRecord {
    /// The engineer (provider tenant and object id).
    pub person: PersonId,
    /// The address the guest was invited with.
    pub email: String,
    /// The guest's object id in the customer tenant, once known.
    pub guest_id: Option<String>,
    /// When mdops sent (or was about to send) the invitation.
    pub invited_at: Option<DateTime<Utc>>,
    /// Who adopted an existing guest (audit actor), if it was adopted rather than invited.
    pub adopted_by: Option<String>,
}

/// Where a guest record lives.
pub fn guest_key(tenant: &TenantId, person: &PersonId) -> Key {
    Key::new(format!("access-guest#{tenant}"), person.to_string())
}

/// The audit subject of a tenant's guest records (adoptions).
pub fn guests_subject(tenant: &TenantId) -> String {
    format!("access-guests:{tenant}")
}

/// Guest records in the store.
pub struct Guests<'a> {
    store: &'a dyn Store,
}

impl<'a> Guests<'a> {
    /// The repository over `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Guests { store }
    }

    /// The record of `person`'s guest in `tenant`, with its version.
    pub async fn get(&self, tenant: &TenantId, person: &PersonId) -> Result<Option<(GuestRecord, u64)>, StoreError> {
        let Some(record) = self.store.get(&guest_key(tenant, person)).await? else {
            return Ok(None);
        };
        let guest = crate::json::from_value(record.body.clone()).map_err(|reason| StoreError::Corrupt {
            key: record.key.clone(),
            reason,
        })?;
        Ok(Some((guest, record.version)))
    }

    /// Every recorded guest of `tenant`.
    pub async fn all(&self, tenant: &TenantId) -> Result<Vec<GuestRecord>, StoreError> {
        self.store
            .query(&format!("access-guest#{tenant}"), "")
            .await?
            .into_iter()
            .map(|r| {
                crate::json::from_value(r.body.clone()).map_err(|reason| StoreError::Corrupt {
                    key: r.key.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// Writes the record if the condition holds (`Absent` for a first write, else the version read).
    pub async fn put(
        &self,
        tenant: &TenantId,
        guest: &GuestRecord,
        condition: Condition,
        audit: Option<AuditEntry>,
    ) -> Result<(), StoreError> {
        let mut writes = vec![Write::Put {
            record: NewRecord {
                key: guest_key(tenant, &guest.person),
                body: serde_json::to_value(guest).expect("a guest record always serialises"),
                collection: None,
                due: None,
            },
            condition,
        }];
        writes.extend(audit.map(Write::audit));
        self.store.transact(writes).await
    }
}
