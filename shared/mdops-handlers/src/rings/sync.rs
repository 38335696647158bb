//! `rings sync`: read the tenant's Windows devices and rings, place each device in no ring, and send
//! one chunk message (at most 20 devices of one ring) per Graph request on the onboarding queue.
//! Nothing placed is moved, so a second sync sends nothing. Also the scheduled pass over every
//! registered tenant ([`sync_if_due`]) the embedded worker's ticker and the ring-assignment
//! function run.

use std::collections::BTreeMap;
use std::time::Duration;

use mdops_core::queue::{OutgoingMessage, QueueError, QueueName};
use mdops_core::rings::{MAX_MEMBERS_PER_REQUEST, RingMembersMessage, place};
use mdops_core::store::{Key, StoreError};
use mdops_core::tenant::{Ring, Tenant};
use mdops_graph::TenantGraph;
use serde::Serialize;

use super::{RingError, RingState, read_state};
use crate::deps::Deps;

/// Most messages one `send_batch` carries (SQS's limit).
const SEND_BATCH: usize = 10;
/// How often the scheduled pass runs: new devices join a ring within the hour.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// What a sync did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The tenant.
    pub tenant_id: String,
    /// Windows devices read.
    pub windows_devices: usize,
    /// Devices that were in no ring, now placed, per ring.
    pub placed: BTreeMap<Ring, usize>,
    /// Chunk messages sent (0 for a dry run).
    pub messages: usize,
    /// Devices in more than one ring (left alone; `mdops rings move` fixes them).
    pub in_several: usize,
    /// The placements, device id and ring.
    #[serde(skip)]
    pub placements: Vec<(String, Ring)>,
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The rings could not be read.
    #[error(transparent)]
    Rings(#[from] RingError),
    /// The queue refused a batch; `sent` went out before (re-running is safe: nothing placed moves,
    /// and a chunk delivered twice finds its devices already there).
    #[error("onboarding queue: {source} (after {sent} of {total} ring chunks were sent; re-running is safe)")]
    Queue {
        sent: usize,
        total: usize,
        #[source]
        source: QueueError,
    },
}

/// The chunk messages for a placement: per ring, at most [`MAX_MEMBERS_PER_REQUEST`] devices each.
pub fn chunks(
    tenant: &Tenant,
    state: &RingState,
    placements: &[(String, Ring)],
    requested_by: &str,
) -> Vec<RingMembersMessage> {
    let mut per_ring: BTreeMap<Ring, Vec<String>> = BTreeMap::new();
    for (device, ring) in placements {
        per_ring.entry(*ring).or_default().push(device.clone());
    }
    let mut out = Vec::new();
    for (ring, devices) in per_ring {
        let group = &state.groups[&ring];
        for chunk in devices.chunks(MAX_MEMBERS_PER_REQUEST) {
            out.push(RingMembersMessage::new(
                &tenant.tenant_id,
                ring,
                group,
                chunk.to_vec(),
                requested_by,
            ));
        }
    }
    out
}

/// Plans the placement of the tenant's unplaced devices and sends the chunks (unless `dry_run`).
pub async fn sync(
    deps: &Deps,
    tenant: &Tenant,
    graph: &TenantGraph,
    requested_by: &str,
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let state = read_state(graph).await?;
    let placements = place(&state.device_ids(), &state.membership, &tenant.settings.ring_shares);
    let mut placed: BTreeMap<Ring, usize> = BTreeMap::new();
    for (_, ring) in &placements {
        *placed.entry(*ring).or_default() += 1;
    }
    let messages = chunks(tenant, &state, &placements, requested_by);
    let mut report = SyncReport {
        tenant_id: tenant.tenant_id.to_string(),
        windows_devices: state.devices.len(),
        placed,
        messages: 0,
        in_several: state.in_several().len(),
        placements,
    };
    if dry_run {
        return Ok(report);
    }
    let total = messages.len();
    for batch in messages.chunks(SEND_BATCH) {
        let out = batch.iter().map(|m| OutgoingMessage::now(m.to_body())).collect();
        deps.queue
            .send_batch(QueueName::Onboarding, out)
            .await
            .map_err(|source| SyncError::Queue {
                sent: report.messages,
                total,
                source,
            })?;
        report.messages += batch.len();
    }
    tracing::info!(tenant = %tenant.tenant_id, devices = report.windows_devices, chunks = report.messages, "ring sync planned");
    Ok(report)
}

fn claim_key() -> Key {
    Key::new("config#rings", "sync")
}

/// Runs [`sync_all`] if no process ran it within [`SYNC_INTERVAL`] (a claim in the store,
/// [`crate::schedule::claim_if_due`]). The first call on a fresh store only starts the clock (a new
/// install is synced an interval later, or at once by `mdops rings sync`). `None` if it was not due.
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
    for (tenant, graph) in crate::schedule::reachable_tenants(deps, "ring sync").await? {
        match sync(deps, &tenant, &graph, requested_by, false).await {
            Ok(report) => reports.push(report),
            Err(SyncError::Rings(RingError::GroupMissing { .. })) => {
                tracing::debug!(tenant = %tenant.tenant_id, "ring sync: no ring groups (not onboarded); skipped");
            }
            Err(e) => tracing::warn!(tenant = %tenant.tenant_id, error = %e, "ring sync failed; skipped"),
        }
    }
    Ok(reports)
}
