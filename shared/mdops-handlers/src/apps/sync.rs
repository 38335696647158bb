//! `apps sync`: compare the tenant's catalogue with its Intune apps and send one [`AppMessage`]
//! per app that is not in place (missing, unassigned or drifted) on the onboarding queue; an app in
//! place sends nothing, so a second sync writes nothing. Also the scheduled pass over every
//! registered tenant ([`sync_if_due`]) that the embedded worker's ticker and the ring-assignment
//! function run.

use std::time::Duration;

use mdops_core::apps::AppMessage;
use mdops_core::queue::{OutgoingMessage, QueueError, QueueName};
use mdops_core::store::{Key, StoreError};
use mdops_core::tenant::Tenant;
use mdops_graph::TenantGraph;
use serde::Serialize;

use super::catalogue::{Source, effective};
use super::{AppLine, AppStatus, AppsError, app_line, read_tenant};
use crate::deps::Deps;
use crate::rings::RingError;

/// Most messages one `send_batch` carries (SQS's limit).
const SEND_BATCH: usize = 10;
/// How often the scheduled pass runs: an app deleted or re-assigned in Intune is restored within the hour.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The catalogue against the tenant (`mdops apps show`).
#[derive(Debug, Clone, Serialize)]
pub struct AppsReport {
    pub tenant_id: String,
    /// `tenant` (its own catalogue) or `default`.
    pub catalogue: Source,
    pub apps: Vec<AppLine>,
}

impl AppsReport {
    /// Apps with this status.
    pub fn count(&self, status: AppStatus) -> usize {
        self.apps.iter().filter(|a| a.status == status).count()
    }
}

/// What a sync did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    #[serde(flatten)]
    pub report: AppsReport,
    /// Keys of the apps a message was sent for (would be, for a dry run).
    pub queued: Vec<String>,
    /// Messages sent (0 for a dry run).
    pub messages: usize,
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Apps(#[from] AppsError),
    /// The queue refused a batch; re-running is safe (an app in place sends nothing, and a message
    /// delivered twice finds its app).
    #[error("onboarding queue: {source} (after {sent} of {total} app messages were sent; re-running is safe)")]
    Queue {
        sent: usize,
        total: usize,
        #[source]
        source: QueueError,
    },
}

/// The tenant's catalogue against its Intune apps.
pub async fn show(deps: &Deps, tenant: &Tenant, graph: &TenantGraph) -> Result<AppsReport, AppsError> {
    Ok(read(deps, tenant, graph).await?.0)
}

async fn read(deps: &Deps, tenant: &Tenant, graph: &TenantGraph) -> Result<(AppsReport, Vec<AppMessage>), AppsError> {
    let (catalogue, source) = effective(deps, &tenant.tenant_id).await?;
    let state = read_tenant(graph).await?;
    let mut lines = Vec::new();
    let mut messages = Vec::new();
    for app in catalogue.apps {
        let line = app_line(graph, &app, &state).await?;
        match line.status {
            AppStatus::Missing | AppStatus::Present | AppStatus::Drifted => {
                let groups = app.rings.iter().map(|r| (*r, state.groups[r].clone())).collect();
                messages.push(AppMessage::new(&tenant.tenant_id, app, groups, "sync"));
            }
            AppStatus::Assigned => {}
            // Reported, never acted on blind: an operator decides (see `mdops apps show`).
            AppStatus::Ambiguous | AppStatus::Conflict => {
                tracing::warn!(tenant = %tenant.tenant_id, app = %line.key, status = ?line.status, ids = ?line.app_ids, "catalogue app needs an operator");
            }
        }
        lines.push(line);
    }
    let report = AppsReport {
        tenant_id: tenant.tenant_id.to_string(),
        catalogue: source,
        apps: lines,
    };
    Ok((report, messages))
}

/// Sends one message per catalogue app not in place (unless `dry_run`).
pub async fn sync(
    deps: &Deps,
    tenant: &Tenant,
    graph: &TenantGraph,
    requested_by: &str,
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let (report, mut messages) = read(deps, tenant, graph).await?;
    for m in &mut messages {
        m.requested_by = requested_by.to_string();
    }
    let mut out = SyncReport {
        report,
        queued: messages.iter().map(|m| m.app.key.clone()).collect(),
        messages: 0,
    };
    if dry_run {
        return Ok(out);
    }
    let total = messages.len();
    for batch in messages.chunks(SEND_BATCH) {
        let bodies = batch.iter().map(|m| OutgoingMessage::now(m.to_body())).collect();
        deps.queue
            .send_batch(QueueName::Onboarding, bodies)
            .await
            .map_err(|source| SyncError::Queue {
                sent: out.messages,
                total,
                source,
            })?;
        out.messages += batch.len();
    }
    tracing::info!(tenant = %tenant.tenant_id, apps = out.report.apps.len(), messages = out.messages, "app catalogue sync planned");
    Ok(out)
}

fn claim_key() -> Key {
    Key::new("config#apps", "sync")
}

/// Runs [`sync_all`] if no process ran it within [`SYNC_INTERVAL`]; `None` if it was not due.
/// The first call on a fresh store only starts the clock.
pub async fn sync_if_due(deps: &Deps) -> Result<Option<Vec<SyncReport>>, StoreError> {
    if crate::schedule::claim_if_due(deps, claim_key(), SYNC_INTERVAL).await? {
        Ok(Some(sync_all(deps, "schedule").await?))
    } else {
        Ok(None)
    }
}

/// One sync of every registered tenant that has its ring groups. A tenant that cannot be reached
/// or read is logged and skipped; a tenant not onboarded yet is skipped quietly.
pub async fn sync_all(deps: &Deps, requested_by: &str) -> Result<Vec<SyncReport>, StoreError> {
    let mut reports = Vec::new();
    for (tenant, graph) in crate::schedule::reachable_tenants(deps, "app sync").await? {
        match sync(deps, &tenant, &graph, requested_by, false).await {
            Ok(report) => reports.push(report),
            Err(SyncError::Apps(AppsError::Rings(RingError::GroupMissing { .. }))) => {
                tracing::debug!(tenant = %tenant.tenant_id, "app sync: no ring groups (not onboarded); skipped");
            }
            Err(e) => tracing::warn!(tenant = %tenant.tenant_id, error = %e, "app sync failed; skipped"),
        }
    }
    Ok(reports)
}
