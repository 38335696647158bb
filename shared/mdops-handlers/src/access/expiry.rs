//! The access timer pass: run every minute on AWS (`functions/access-expiry`) and on every tick of
//! the embedded worker. Found by the due index, never by a scan:
//! - pending requests past their approval window expire (the requester is mailed);
//! - approved or active access past its end ends (the guest is removed, the requester mailed);
//! - an outstanding removal is re-sent every `REVOCATION_RECHECK` until it is done, and a
//!   verifying one every `REMOVAL_VERIFY_INTERVAL` until no late add can still arrive;
//! - side effects whose decision was recorded but whose message was never queued are relayed.

use chrono::{DateTime, Utc};
use mdops_core::access::{
    AccessRequests, AccessState, AccessWork, Change, EffectStatus, MailKind, Versioned, audit_entry,
};
use mdops_core::store::StoreError;
use serde::Serialize;
use serde_json::json;

use super::flush_outbox;
use crate::deps::Deps;

/// Actor of the pass's audit entries.
const ACTOR: &str = "system:access-expiry";

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    /// Pending requests expired.
    pub expired: usize,
    /// Granted access ended.
    pub ended: usize,
    /// Outstanding removals sent again.
    pub removals_resent: usize,
    /// Removals re-checking the membership (verifying) sent again.
    pub removals_rechecked: usize,
    /// Outbox entries relayed to the queue.
    pub relayed: usize,
    /// Timers another writer changed first (picked up by the next pass if still due).
    pub conflicts: usize,
}

/// Runs one pass over at most `limit` due requests and `limit` outbox entries.
pub async fn expiry_pass(deps: &Deps, limit: usize) -> Result<ExpiryReport, StoreError> {
    let now = deps.now();
    let repo = AccessRequests::new(deps.store.as_ref());
    let mut report = ExpiryReport::default();
    for Versioned { request, version } in repo.due(now, limit).await? {
        let mut next = request.clone();
        let (action, effects) = match next.expire(now) {
            Some(AccessState::Expired) => (
                "expired",
                vec![AccessWork::Mail {
                    mail: MailKind::Expired,
                }],
            ),
            Some(_) => (
                "ended",
                vec![AccessWork::Remove, AccessWork::Mail { mail: MailKind::Ended }],
            ),
            None if next.removal_outstanding() => {
                let verifying = next
                    .removal
                    .as_ref()
                    .is_some_and(|r| r.status == EffectStatus::Verifying);
                if let Some(removal) = next.removal.as_mut() {
                    removal.updated_at = now;
                }
                if verifying {
                    ("removal.recheck", vec![AccessWork::Remove])
                } else {
                    ("removal.resent", vec![AccessWork::Remove])
                }
            }
            None => {
                // A timer with nothing to do (e.g. written by an older version): clear it by rewriting.
                ("timer.cleared", Vec::new())
            }
        };
        // Re-checks and cleared timers change nothing a person needs in the trail.
        let audited = !matches!(action, "timer.cleared" | "removal.recheck");
        let change = Change {
            effects,
            audit: audited
                .then(|| audit_entry(&request.id, ACTOR, action, json!({"state": next.state, "at": now}), now))
                .into_iter()
                .collect(),
            writes: Vec::new(),
        };
        match repo.decide(&next, version, change, now).await {
            Ok(outbox) => {
                mdops_core::crash_point::reached(mdops_core::crash_point::ACCESS_DECIDED);
                match action {
                    "expired" => report.expired += 1,
                    "ended" => report.ended += 1,
                    "removal.resent" => report.removals_resent += 1,
                    "removal.recheck" => report.removals_rechecked += 1,
                    _ => {}
                }
                if action != "timer.cleared" {
                    tracing::info!(request = %request.id, action, "access timer");
                }
                flush_outbox(deps, &outbox).await;
            }
            Err(StoreError::ConditionFailed { .. }) => report.conflicts += 1,
            Err(e) => return Err(e),
        }
    }
    report.relayed = relay_outbox(deps, now, limit).await?;
    Ok(report)
}

async fn relay_outbox(deps: &Deps, now: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
    let entries = AccessRequests::new(deps.store.as_ref()).outbox_due(now, limit).await?;
    if !entries.is_empty() {
        tracing::warn!(
            count = entries.len(),
            "relaying access work whose message was not queued"
        );
    }
    Ok(flush_outbox(deps, &entries).await)
}
