//! The chunk handler: up to 20 devices join one ring's group in one `PATCH /groups/{id}` with
//! `members@odata.bind`.
//!
//! Graph adds the members all or none: a chunk naming one device that is gone (deleted since the
//! plan), or one that is already a member (a second delivery), is refused whole. The handler then
//! adds the devices one by one, so each such device fails (or is found already there) alone and
//! the rest still join. Throttling and transient errors leave the message to come back after
//! `Retry-After`, on its own; after the queue's receive limit it is dead-lettered with its last
//! reason. A permanent error (no permission, group gone) dead-letters the chunk at once.

use mdops_core::message::decode;
use mdops_core::queue::Failure;
use mdops_core::rings::RingMembersMessage;
use mdops_core::store::AuditEntry;
use mdops_graph::{ErrorClass, GraphError, Query, TenantGraph};
use serde_json::json;
use tracing::Instrument;

use super::KIND;
use crate::deps::Deps;
use crate::disposition::{Disposition, REDELIVER_AFTER};

/// What one chunk did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkReport {
    /// Devices added by this delivery.
    pub added: Vec<String>,
    /// Devices that were already members (an earlier delivery added them).
    pub already: Vec<String>,
    /// Devices that no longer exist.
    pub gone: Vec<String>,
}

/// Handles one ring-chunk message.
pub async fn handle(body: &str, receive_count: u32, deps: &Deps) -> Disposition {
    let message = match decode::<RingMembersMessage>(body) {
        Ok(m) => m,
        Err(e) => return Disposition::malformed(&e, KIND, receive_count, deps),
    };
    let span = tracing::info_span!("ring_chunk", tenant = %message.tenant_id, ring = message.ring.as_str(), devices = message.devices.len(), attempt = receive_count);
    handle_decoded(&message, receive_count, deps).instrument(span).await
}

async fn handle_decoded(message: &RingMembersMessage, receive_count: u32, deps: &Deps) -> Disposition {
    let fail = |reason: String| {
        Disposition::DeadLetter(Failure {
            reason,
            tenant: Some(message.tenant_id.to_string()),
            step: Some(KIND.to_string()),
            attempts: receive_count,
            at: deps.now(),
        })
    };
    let graph = match deps.reach.tenant(&message.tenant_id).await {
        Ok((_, graph)) => graph,
        Err(e) if e.is_permanent() => return fail(e.to_string()),
        Err(e) => {
            return Disposition::Redeliver {
                after: REDELIVER_AFTER,
                error: e.to_string(),
            };
        }
    };
    match add_chunk(&graph, message).await {
        Ok(report) => {
            tracing::info!(
                added = report.added.len(),
                already = report.already.len(),
                gone = report.gone.len(),
                "ring chunk done"
            );
            let entry = AuditEntry {
                subject: format!("rings:{}", message.tenant_id),
                actor: format!("system:rings ({})", message.requested_by),
                action: "ring.members.added".into(),
                detail: json!({
                    "ring": message.ring.as_str(),
                    "group_id": message.group_id,
                    "added": report.added,
                    "already_members": report.already,
                    "gone": report.gone,
                }),
                at: deps.now(),
            };
            if let Err(e) = deps.store.append_audit(entry).await {
                // The members are in; a redelivery finds them there and writes the entry then.
                return Disposition::Redeliver {
                    after: REDELIVER_AFTER,
                    error: format!("audit log: {e}"),
                };
            }
            Disposition::Ack
        }
        Err(e) => match e.classification() {
            ErrorClass::Permanent => fail(format!(
                "adding {} devices to ring {} (group {}): {}",
                message.devices.len(),
                message.ring.as_str(),
                message.group_id,
                e.reason()
            )),
            class => Disposition::Redeliver {
                after: class
                    .retry_after()
                    .unwrap_or(REDELIVER_AFTER)
                    .min(crate::onboarding::MAX_QUEUE_DELAY),
                error: format!("ring {} chunk: {}", message.ring.as_str(), e.reason()),
            },
        },
    }
}

fn bind_body(graph: &TenantGraph, devices: &[String]) -> Result<serde_json::Value, GraphError> {
    let urls = devices
        .iter()
        .map(|d| {
            graph
                .url(&format!("directoryObjects/{d}"), &Query::default())
                .map(|u| u.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "members@odata.bind": urls }))
}

/// A refusal that may be caused by one member of the chunk: it is gone, or already a member.
fn one_member_may_be_the_cause(e: &GraphError) -> bool {
    e.is_reference_already_exists()
        || e.is_not_found()
        || (e.status() == Some(400) && e.message().contains("do not exist"))
}

/// Adds the chunk's devices: all in one request, or, if Graph refuses the request for one of
/// them, one by one.
pub async fn add_chunk(graph: &TenantGraph, message: &RingMembersMessage) -> Result<ChunkReport, GraphError> {
    let path = format!("groups/{}", message.group_id);
    let mut report = ChunkReport::default();
    match graph.patch(&path, &bind_body(graph, &message.devices)?).await {
        Ok(()) => {
            report.added = message.devices.clone();
            return Ok(report);
        }
        Err(e) if one_member_may_be_the_cause(&e) => {
            tracing::info!(reason = %e.reason(), "chunk refused whole; adding its devices one by one");
        }
        Err(e) => return Err(e),
    }
    // The group itself must be there, or every single add fails the same way.
    graph.get::<serde_json::Value>(&path, &Query::select(&["id"])).await?;
    for device in &message.devices {
        match graph
            .patch(&path, &bind_body(graph, std::slice::from_ref(device))?)
            .await
        {
            Ok(()) => report.added.push(device.clone()),
            Err(e) if e.is_reference_already_exists() => report.already.push(device.clone()),
            Err(e) if one_member_may_be_the_cause(&e) => {
                let exists = graph
                    .get_opt::<serde_json::Value>(&format!("devices/{device}"), &Query::select(&["id"]))
                    .await?;
                if exists.is_some() {
                    return Err(e);
                }
                tracing::info!(%device, "device deleted since the plan; skipped");
                report.gone.push(device.clone());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}
