//! One file per onboarding step, each the same shape: the natural key it finds the object by,
//! `find`, `create` only if missing, and what it records (the object id and whether it wrote).
//! Adding a step is a file here, a variant of `StepKind` and a line in `plan()`.

mod account;
mod directory_roles;
mod group;
mod group_description;
mod inventory;
mod licences;
mod mdm_authority;
mod preflight;
mod role_group;
mod role_group_role;
mod role_membership;
mod security_baseline;
mod update_policy;
mod update_policy_assignment;

pub use account::MARKER_ATTRIBUTE;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_core::onboarding::StepKind;
use mdops_core::onboarding::adoption::Adoptions;
use mdops_core::onboarding::runs::RunRecord;
use mdops_core::outcome::StepOutcome;
use mdops_core::queue::Queue;
use mdops_core::store::{Store, StoreError};
use mdops_core::tenant::{Tenant, TenantId};
use mdops_graph::{GraphError, TenantGraph};
use serde::Deserialize;

use crate::disposition::outcome_for;

/// Pages a step reads at most from one collection (100 items a page by default): bounded, and
/// far above what onboarding meets in a tenant.
pub const MAX_PAGES: usize = 50;

/// What a step runs with.
pub struct StepContext<'a> {
    pub graph: &'a TenantGraph,
    pub tenant: &'a Tenant,
    pub run: &'a RunRecord,
    /// Outputs of the steps this one depends on, by step name.
    pub deps: &'a BTreeMap<String, serde_json::Value>,
    pub attempt: u32,
    /// When an earlier attempt may have written without completing, if one did.
    pub last_write_attempt: Option<DateTime<Utc>>,
    /// Set by a step just before it writes, so a retry knows a create may be in flight.
    pub write_attempted: AtomicBool,
    pub queue: &'a dyn Queue,
    /// The state store, for what a step records beyond its output (the role groups' ids).
    pub store: &'a dyn Store,
    pub now: DateTime<Utc>,
    /// How long a create may take to become visible to reads (replication lag).
    pub lag_window: Duration,
    /// What a step that finds by a natural key anyone can take may adopt (the account steps).
    pub adoption: &'a Adoption,
}

/// What a step may adopt: objects carrying the tenant's marker, and the object ids operators
/// allowed (`mdops onboard --adopt`). See [`mdops_core::onboarding::adoption`].
#[derive(Debug, Default, Clone)]
pub struct Adoption {
    /// The tenant's marker; `None` for steps that never adopt by name.
    pub marker: Option<String>,
    pub allowed: BTreeSet<String>,
}

impl Adoption {
    /// The tenant's marker (made on first use) and allowances, from the state store.
    pub async fn load(store: &dyn Store, tenant: &TenantId) -> Result<Adoption, StoreError> {
        let adoptions = Adoptions::new(store);
        Ok(Adoption {
            marker: Some(adoptions.marker(tenant).await?),
            allowed: adoptions.allowed(tenant).await?,
        })
    }
}

impl StepContext<'_> {
    /// The `id` a dependency recorded, or a failed outcome naming it.
    pub fn dep_id(&self, step: &str) -> Result<String, StepOutcome> {
        self.deps
            .get(step)
            .and_then(|o| o.get("id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| StepOutcome::failed(format!("step {step} recorded no object id; re-run it")))
    }

    /// Notes that this attempt is about to write to the tenant.
    pub fn attempting_write(&self) {
        self.write_attempted.store(true, Ordering::Relaxed);
    }

    /// For objects whose natural key Graph does not keep unique (groups, device configurations):
    /// an earlier attempt may have created the object moments ago without it being readable yet.
    /// Wait out the replication-lag window since that attempt before creating again.
    pub fn wait_before_create(&self) -> Option<StepOutcome> {
        let previous = self.last_write_attempt?;
        let since = (self.now - previous).to_std().unwrap_or(Duration::ZERO);
        let remaining = self.lag_window.checked_sub(since)?;
        if remaining.is_zero() {
            return None;
        }
        Some(StepOutcome::retry(
            remaining,
            "an earlier attempt may have created the object; waiting for replication before creating again",
        ))
    }
}

/// A Graph collection page's items (`value`).
#[derive(Debug, Deserialize)]
pub struct Collection<T> {
    pub value: Vec<T>,
}

/// An object of which only the id and display name are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Named {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Output of a step that ensured one object.
pub fn ensured(id: &str, created: bool) -> StepOutcome {
    StepOutcome::done(serde_json::json!({ "id": id, "created": created }))
}

/// The one way a step ensures an object whose natural key Graph does not keep unique (groups,
/// device configurations): find every object with the key; exactly one is adopted, several are
/// reported (never one picked silently); none is created, but only once the replication-lag
/// window since an earlier attempt that may have created it has passed. A create whose answer
/// was lost (`GraphError::outcome_unknown`) is never sent again blind: the step retries after the
/// lag window, finding before it creates.
pub async fn ensure<Create, Fut>(
    ctx: &StepContext<'_>,
    what: &str,
    found: Vec<Named>,
    create: Create,
) -> Result<StepOutcome, GraphError>
where
    Create: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Named, GraphError>>,
{
    match found.as_slice() {
        [one] => return Ok(ensured(&one.id, false)),
        [] => {}
        several => {
            let ids: Vec<&str> = several.iter().map(|o| o.id.as_str()).collect();
            return Ok(StepOutcome::failed(format!(
                "{what}: {} objects in tenant {} have this name ({}); mdops adopts exactly one and picks none                  of several. Keep the one in use, delete the others, then replay this step",
                several.len(),
                ctx.tenant.tenant_id,
                ids.join(", ")
            )));
        }
    }
    if let Some(wait) = ctx.wait_before_create() {
        return Ok(wait);
    }
    ctx.attempting_write();
    match create().await {
        Ok(created) => Ok(ensured(&created.id, true)),
        Err(e) if e.outcome_unknown() => Ok(StepOutcome::retry(
            ctx.lag_window,
            format!(
                "{what}: the create's answer was lost ({}); finding it by name before creating again",
                e.reason()
            ),
        )),
        Err(e) => Err(e),
    }
}

/// Runs one step; a Graph error becomes `Retry` or `Failed` by its classification.
pub async fn execute(kind: StepKind, ctx: &StepContext<'_>) -> StepOutcome {
    let result: Result<StepOutcome, GraphError> = match kind {
        StepKind::Preflight => preflight::run(ctx).await,
        StepKind::MdmAuthority => mdm_authority::run(ctx).await,
        StepKind::Account(account) => account::run(ctx, account).await,
        StepKind::DirectoryRoles => directory_roles::run(ctx).await,
        StepKind::RoleMembership(account, role) => role_membership::run(ctx, account, role).await,
        StepKind::RoleGroup(group) => role_group::run(ctx, group).await,
        StepKind::RoleGroupRole(group, role) => role_group_role::run(ctx, group, role).await,
        StepKind::Group(ring) => group::run(ctx, ring).await,
        StepKind::GroupDescription(ring) => group_description::run(ctx, ring).await,
        StepKind::UpdatePolicy(ring) => update_policy::run(ctx, ring).await,
        StepKind::UpdatePolicyAssignment(ring) => update_policy_assignment::run(ctx, ring).await,
        StepKind::SecurityBaseline => security_baseline::run(ctx).await,
        StepKind::Inventory(inventory) => inventory::run(ctx, inventory).await,
        StepKind::Licences => licences::run(ctx).await,
    };
    result.unwrap_or_else(|e| outcome_for(&e))
}
