//! The reconciliation sweep: removal made authoritative whatever the records say.
//!
//! The removal of an ended grant can be lost in ways no request record shows: the elevation landed
//! after its removal and recording it failed, a record stopped decoding, a message was lost, the
//! worker was down for a week. The sweep does not trust the log: it reads the members of every role
//! group (the ids onboarding recorded) in every registered customer tenant and removes each *guest* that holds no live grant (an
//! approved or active request of that engineer for that group), auditing why
//! (`access-sweep:{tenant}`, action `sweep.removed`). Member accounts and other object types are
//! never touched: only guests are ever elevated.
//!
//! Order matters: members are listed *before* the grants are read. A guest is only added after its
//! request was approved and its guest record written, so a guest seen in the list whose grant is
//! not in the later read has no grant; the other order could remove an elevation that landed
//! between the two reads.
//!
//! It runs on the embedded worker's tick and in the access-expiry function's schedule, at most once
//! per [`SWEEP_INTERVAL`] across all processes (a conditional write on `config#access/sweep` claims
//! each run), and on demand with `mdops access sweep`.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_core::access::guests::Guests;
use mdops_core::access::{AccessRequest, AccessRequests};
use mdops_core::store::{AuditEntry, Condition, Key, NewRecord, StoreError, Write};
use mdops_core::tenant::{Tenant, TenantRegistry};
use mdops_graph::resources::users::User;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::effects::recorded_role_group;
use crate::deps::Deps;

/// Least time between two sweeps: each reads every role group of every tenant, so not every
/// minute; short enough that a leaked elevation lives minutes, not days.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Most tenants one sweep reads (the registry's own listing bound).
pub const MAX_SWEEP_TENANTS: usize = 5000;
/// Actor of the sweep's audit entries.
const ACTOR: &str = "system:access-sweep";

/// The audit subject of the sweep's removals in a tenant.
pub fn sweep_subject(tenant: &str) -> String {
    format!("access-sweep:{tenant}")
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Customer tenants whose role groups were read.
    pub tenants: usize,
    /// Role groups read.
    pub groups: usize,
    /// Guests found in role groups.
    pub guests: usize,
    /// Guests that hold a live grant, left in place.
    pub kept: usize,
    /// Guests removed because they hold no live grant.
    pub removed: usize,
    /// Tenants or groups that could not be read or changed, each with the reason (the sweep goes
    /// on with the others and tries these again next time).
    pub failures: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SweepClaim {
    last_run: DateTime<Utc>,
}

fn claim_key() -> Key {
    Key::new("config#access", "sweep")
}

/// Runs a sweep if none ran (in any process) within [`SWEEP_INTERVAL`]; `None` if it was not due.
pub async fn sweep_if_due(deps: &Deps) -> Result<Option<SweepReport>, StoreError> {
    let now = deps.now();
    let current = deps.store.get(&claim_key()).await?;
    let condition = match &current {
        Some(record) => {
            let last = serde_json::from_value::<SweepClaim>(record.body.clone())
                .map(|c| c.last_run)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let interval = chrono::Duration::from_std(SWEEP_INTERVAL).unwrap_or(chrono::Duration::minutes(5));
            if now < last + interval {
                return Ok(None);
            }
            Condition::Version(record.version)
        }
        None => Condition::Absent,
    };
    let claim = NewRecord {
        key: claim_key(),
        body: json!(SweepClaim { last_run: now }),
        collection: None,
        due: None,
    };
    match deps
        .store
        .transact(vec![Write::Put {
            record: claim,
            condition,
        }])
        .await
    {
        Ok(()) => Ok(Some(sweep(deps).await?)),
        // Another process claimed this run.
        Err(StoreError::ConditionFailed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One sweep over every registered customer tenant. Fails only when the grants cannot be read
/// (acting without them would remove guests that hold access); a tenant or group that cannot be
/// read is reported and skipped.
pub async fn sweep(deps: &Deps) -> Result<SweepReport, StoreError> {
    let settings = mdops_core::access::load_settings(deps.store.as_ref()).await?;
    let tenants = TenantRegistry::new(deps.store.as_ref())
        .list(MAX_SWEEP_TENANTS)
        .await
        .map_err(|e| StoreError::Unavailable {
            message: format!("tenant registry: {e}"),
            source: None,
        })?;
    let mut report = SweepReport::default();
    for tenant in tenants {
        if settings.provider_tenant_id.as_ref() == Some(&tenant.tenant_id) {
            continue;
        }
        sweep_tenant(deps, &tenant, &mut report).await?;
    }
    if report.removed > 0 || !report.failures.is_empty() {
        tracing::warn!(?report, "access sweep");
    } else {
        tracing::info!(?report, "access sweep");
    }
    Ok(report)
}

async fn sweep_tenant(deps: &Deps, tenant: &Tenant, report: &mut SweepReport) -> Result<(), StoreError> {
    let tid = &tenant.tenant_id;
    let graph = match deps.reach.tenant(tid).await {
        Ok((_, graph)) => graph,
        Err(e) => {
            report.failures.push(format!("tenant {tid}: {e}"));
            return Ok(());
        }
    };
    report.tenants += 1;
    // Members first, grants after (see the module comment).
    let mut listed: Vec<(String, String, Vec<User>)> = Vec::new();
    for name in &tenant.settings.access_role_groups {
        // The group onboarding recorded; a tenant not onboarded yet has none to sweep.
        let group = match recorded_role_group(deps.store.as_ref(), tid, name).await {
            Ok(Some(id)) => id,
            Ok(None) => continue,
            Err(e) => {
                report
                    .failures
                    .push(format!("tenant {tid}, role group {name:?}: state store: {e}"));
                continue;
            }
        };
        match graph.list_group_member_users(&group).await {
            Ok(users) => listed.push((name.clone(), group, users)),
            Err(e) => report
                .failures
                .push(format!("tenant {tid}, role group {name:?} ({group}): {}", e.reason())),
        }
    }
    let (grants, undecodable) = AccessRequests::new(deps.store.as_ref()).live_grants().await?;
    for e in undecodable {
        report
            .failures
            .push(format!("a live grant does not decode and holds nothing: {e}"));
    }
    let grants: Vec<AccessRequest> = grants.into_iter().filter(|g| g.tenant_id == *tid).collect();
    let guests = Guests::new(deps.store.as_ref()).all(tid).await?;
    for (name, group, users) in listed {
        report.groups += 1;
        // The guests that live grants of this group may put there: recorded on the request at
        // elevation, or the engineer's recorded guest while the elevation is still in flight.
        let held: HashSet<&str> = grants
            .iter()
            .filter(|g| g.role_group.eq_ignore_ascii_case(&name))
            .flat_map(|g| {
                let recorded = guests
                    .iter()
                    .filter(|r| r.person == g.requester_id)
                    .filter_map(|r| r.guest_id.as_deref());
                g.guest_id.as_deref().into_iter().chain(recorded)
            })
            .collect();
        for user in users.iter().filter(|u| u.user_type.as_deref() == Some("Guest")) {
            report.guests += 1;
            if held.contains(user.id.as_str()) {
                report.kept += 1;
                continue;
            }
            match graph.remove_group_member(&group, &user.id).await {
                Ok(()) => {}
                // Gone meanwhile: nothing to undo.
                Err(e) if e.is_not_found() => continue,
                Err(e) => {
                    report.failures.push(format!(
                        "tenant {tid}, role group {name:?}: could not remove guest {} ({}): {}",
                        user.id,
                        user.user_principal_name,
                        e.reason()
                    ));
                    continue;
                }
            }
            report.removed += 1;
            tracing::warn!(tenant = %tid, group = %group, guest = %user.id, "access sweep removed a guest holding no live grant");
            let entry = AuditEntry {
                subject: sweep_subject(tid.as_str()),
                actor: ACTOR.into(),
                action: "sweep.removed".into(),
                detail: json!({
                    "role_group": name, "group_id": group, "guest_id": user.id,
                    "guest": user.user_principal_name,
                    "reason": "the guest was in the role group but holds no live grant (no approved or active request of its engineer for this group)",
                }),
                at: deps.now(),
            };
            if let Err(e) = deps.store.append_audit(entry).await {
                tracing::error!(tenant = %tid, guest = %user.id, error = %e, "could not audit a sweep removal");
            }
        }
    }
    Ok(())
}
