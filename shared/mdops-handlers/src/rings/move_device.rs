//! `rings move`: an operator puts one Windows device into a ring (the only way into Test by
//! default) and takes it out of every other ring, with an audit entry naming who and from where.
//! Adding comes first, so the device is never in no ring; moving to the ring it is in alone
//! writes nothing.

use mdops_core::store::{AuditEntry, StoreError};
use mdops_core::tenant::Ring;
use mdops_graph::{GraphError, Query, TenantGraph};
use serde::Serialize;
use serde_json::json;

use super::{RingError, read_state};
use crate::deps::Deps;

/// What a move did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    pub tenant_id: String,
    pub device_id: String,
    pub from: Vec<Ring>,
    pub to: Ring,
    /// False when the device was already in that ring alone.
    pub changed: bool,
}

/// Why a move failed.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Rings(#[from] RingError),
    #[error("device {0:?} is not a Windows device of this tenant: give its object id (`mdops rings show` lists them)")]
    UnknownDevice(String),
    #[error("moving the device: {0}")]
    Graph(#[from] GraphError),
    #[error("the device moved, but its audit entry could not be written: {0}")]
    Audit(#[from] StoreError),
}

/// Moves `device` (object id) to `to`.
pub async fn move_device(
    deps: &Deps,
    graph: &TenantGraph,
    device: &str,
    to: Ring,
    actor: &str,
) -> Result<MoveReport, MoveError> {
    let state = read_state(graph).await?;
    let id = state
        .devices
        .iter()
        .find(|d| d.id.eq_ignore_ascii_case(device.trim()))
        .map(|d| d.id.clone())
        .ok_or_else(|| MoveError::UnknownDevice(device.to_string()))?;
    let from = state
        .membership
        .get(&id.to_ascii_lowercase())
        .cloned()
        .unwrap_or_default();
    let mut report = MoveReport {
        tenant_id: graph.tenant_id().to_string(),
        device_id: id.clone(),
        from: from.clone(),
        to,
        changed: false,
    };
    if from == [to] {
        return Ok(report);
    }
    if !from.contains(&to) {
        let url = graph
            .url(&format!("directoryObjects/{id}"), &Query::default())?
            .to_string();
        let path = format!("groups/{}", state.groups[&to]);
        match graph.patch(&path, &json!({ "members@odata.bind": [url] })).await {
            Ok(()) => {}
            Err(e) if e.is_reference_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
    }
    for ring in from.iter().filter(|r| **r != to) {
        let path = format!("groups/{}/members/{id}/$ref", state.groups[ring]);
        match graph.delete(&path).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    report.changed = true;
    deps.store
        .append_audit(AuditEntry {
            subject: format!("rings:{}", graph.tenant_id()),
            actor: actor.to_string(),
            action: "ring.move".into(),
            detail: json!({ "device_id": id, "from": from, "to": to }),
            at: deps.now(),
        })
        .await?;
    Ok(report)
}
