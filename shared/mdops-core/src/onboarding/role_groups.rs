//! The role groups' object ids, as onboarding recorded them.
//!
//! The `role-group:{group}` step finds or creates the group and records its id here, one record
//! per (tenant, group): `role-groups#{tenant}` / `{group}`. Elevation, removal and the access sweep
//! read it, so a guest is only ever put into (or taken out of) the group onboarding made, never
//! a group that merely carries the display name (anyone allowed to create groups in the customer
//! tenant can create one with that name).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RoleGroup;
use crate::store::{Condition, Key, NewRecord, Store, StoreError, put_if};
use crate::tenant::TenantId;

/// A role group's id as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRoleGroup {
    /// The group's object id in the customer tenant.
    pub id: String,
    /// Its display name when recorded.
    pub display_name: String,
    /// The onboarding run that recorded it.
    pub run_id: String,
    pub recorded_at: DateTime<Utc>,
}

/// Where a role group's record lives.
pub fn role_group_key(tenant: &TenantId, group: RoleGroup) -> Key {
    Key::new(format!("role-groups#{tenant}"), group.as_str())
}

/// Role group records in the store.
pub struct RoleGroupIds<'a> {
    store: &'a dyn Store,
}

impl<'a> RoleGroupIds<'a> {
    /// The repository over `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        RoleGroupIds { store }
    }

    /// The recorded id of `group` in `tenant`, if onboarding recorded one.
    pub async fn get(&self, tenant: &TenantId, group: RoleGroup) -> Result<Option<RecordedRoleGroup>, StoreError> {
        let Some(record) = self.store.get(&role_group_key(tenant, group)).await? else {
            return Ok(None);
        };
        crate::json::from_value(record.body.clone())
            .map(Some)
            .map_err(|reason| StoreError::Corrupt {
                key: record.key.clone(),
                reason,
            })
    }

    /// Records `id` as `group`'s object id in `tenant`. Writes nothing when that id is recorded
    /// already (a converged re-run leaves the record as it was).
    pub async fn record(
        &self,
        tenant: &TenantId,
        group: RoleGroup,
        id: &str,
        run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.get(tenant, group).await?.is_some_and(|r| r.id == id) {
            return Ok(());
        }
        let body = RecordedRoleGroup {
            id: id.to_string(),
            display_name: group.display_name().to_string(),
            run_id: run_id.to_string(),
            recorded_at: now,
        };
        let record = NewRecord {
            key: role_group_key(tenant, group),
            body: serde_json::to_value(&body).expect("a role group record always serialises"),
            collection: None,
            due: None,
        };
        // The latest find wins: the group a run found (or made) is the one that exists now.
        put_if(self.store, record, Condition::Any).await
    }
}
