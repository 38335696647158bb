//! `mdops access adopt-guest`: an operator takes over an existing guest account for an engineer,
//! on purpose and on the record, when elevation refused it (a guest with the engineer's address
//! that mdops did not invite: perhaps the engineer's own from before, perhaps not).
//!
//! The guest must be a `Guest` user of the request's tenant. The guest record and the audit
//! entries (the tenant's `access-guests:` trail and the request's) are written in one
//! transaction; an approved request waiting on its elevation is sent to elevate again.

use mdops_core::access::guests::{GuestRecord, Guests, guest_key, guests_subject};
use mdops_core::access::{AccessRequests, AccessState, AccessWork, Change, EffectStatus, audit_entry};
use mdops_core::store::{AuditEntry, Condition, NewRecord, StoreError, Write};
use mdops_graph::Query;
use mdops_graph::resources::users::{USER_SELECT, User};
use serde_json::json;

use super::flush_outbox;
use crate::deps::Deps;
use crate::reach::ReachError;

/// Why an adoption was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("no access request {0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Reach(#[from] ReachError),
    #[error("Graph: {0}")]
    Graph(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records `guest_id` as the guest of request `id`'s engineer in its tenant, by `actor`.
/// Returns whether an elevation was queued again.
pub async fn adopt_guest(deps: &Deps, id: &str, guest_id: &str, actor: &str) -> Result<bool, AdoptError> {
    let repo = AccessRequests::new(deps.store.as_ref());
    let current = repo
        .get(id)
        .await?
        .ok_or_else(|| AdoptError::NotFound(id.to_string()))?;
    let request = current.request.clone();
    let (_, graph) = deps.reach.tenant(&request.tenant_id).await?;
    let user: Option<User> = graph
        .get_opt(&format!("users/{guest_id}"), &Query::select(USER_SELECT))
        .await
        .map_err(|e| AdoptError::Graph(e.reason()))?;
    let user = user.ok_or_else(|| {
        AdoptError::Refused(format!(
            "--guest {guest_id}: no such user in tenant {}",
            request.tenant_id
        ))
    })?;
    if user.user_type.as_deref() != Some("Guest") {
        return Err(AdoptError::Refused(format!(
            "--guest {guest_id}: {} is a {} account, not a guest; only guests are elevated",
            user.user_principal_name,
            user.user_type.as_deref().unwrap_or("unknown")
        )));
    }
    let now = deps.now();
    let existing = Guests::new(deps.store.as_ref())
        .get(&request.tenant_id, &request.requester_id)
        .await?;
    let record = GuestRecord {
        person: request.requester_id.clone(),
        email: request.requester.clone(),
        guest_id: Some(guest_id.to_string()),
        invited_at: None,
        adopted_by: Some(actor.to_string()),
    };
    let detail = json!({
        "guest_id": guest_id, "guest": user.user_principal_name, "engineer": request.requester,
        "engineer_tid": request.requester_id.tid, "engineer_oid": request.requester_id.oid,
        "replaces": existing.as_ref().and_then(|(r, _)| r.guest_id.clone()),
    });
    let guest_write = Write::Put {
        record: NewRecord {
            key: guest_key(&request.tenant_id, &request.requester_id),
            body: serde_json::to_value(&record).expect("a guest record always serialises"),
            collection: None,
            due: None,
        },
        condition: existing.map_or(Condition::Absent, |(_, v)| Condition::Version(v)),
    };
    let tenant_entry = AuditEntry {
        subject: guests_subject(&request.tenant_id),
        actor: actor.to_string(),
        action: "guest.adopted".into(),
        detail: detail.clone(),
        at: now,
    };
    // Elevate again if the request still waits for its elevation.
    let mut next = request.clone();
    let retry = next.state == AccessState::Approved;
    if retry && let Some(e) = next.elevation.as_mut() {
        e.status = EffectStatus::Pending;
        e.last_error = None;
        e.updated_at = now;
    }
    let change = Change {
        effects: if retry { vec![AccessWork::Elevate] } else { Vec::new() },
        audit: vec![tenant_entry, audit_entry(id, actor, "guest.adopted", detail, now)],
        writes: vec![guest_write],
    };
    let outbox = repo.decide(&next, current.version, change, now).await?;
    flush_outbox(deps, &outbox).await;
    Ok(retry)
}
