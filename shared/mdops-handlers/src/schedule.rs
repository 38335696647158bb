//! The claim a scheduled job takes in the store so that, however many processes (embedded
//! workers, Lambda instances) tick, one of them runs the job once per interval.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_core::store::{Condition, Key, NewRecord, StoreError, Write};
use serde::{Deserialize, Serialize};
use serde_json::json;

use mdops_core::tenant::{Tenant, TenantRegistry};
use mdops_graph::TenantGraph;

use crate::deps::Deps;

/// Most tenants one scheduled pass reads.
const MAX_TENANTS_PER_PASS: usize = 10_000;

/// Every registered tenant with a Graph handle, for a scheduled pass over the fleet. A tenant that
/// cannot be reached is logged under `job` and left out; the pass goes on with the others.
pub async fn reachable_tenants(deps: &Deps, job: &str) -> Result<Vec<(Tenant, TenantGraph)>, StoreError> {
    let tenants = TenantRegistry::new(deps.store.as_ref())
        .list(MAX_TENANTS_PER_PASS)
        .await
        .map_err(|e| StoreError::Unavailable {
            message: format!("tenant registry: {e}"),
            source: None,
        })?;
    let mut reached = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        match deps.reach.tenant(&tenant.tenant_id).await {
            Ok((_, graph)) => reached.push((tenant, graph)),
            Err(e) => tracing::warn!(tenant = %tenant.tenant_id, error = %e, "{job}: tenant not reachable; skipped"),
        }
    }
    Ok(reached)
}

#[derive(Serialize, Deserialize)]
struct Claim {
    last_run: DateTime<Utc>,
}

/// True if this caller won the job's run for now: no process ran it within `interval`. The first
/// call on a fresh store only starts the clock (returns false), so a new install runs the job an
/// interval later, or at once on demand.
pub async fn claim_if_due(deps: &Deps, key: Key, interval: Duration) -> Result<bool, StoreError> {
    let now = deps.now();
    let current = deps.store.get(&key).await?;
    let (condition, due) = match &current {
        Some(record) => {
            let last = serde_json::from_value::<Claim>(record.body.clone())
                .map(|c| c.last_run)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1));
            if now < last + interval {
                return Ok(false);
            }
            (Condition::Version(record.version), true)
        }
        None => (Condition::Absent, false),
    };
    let claim = NewRecord {
        key,
        body: json!(Claim { last_run: now }),
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
        Ok(()) => Ok(due),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
