//! The access queue's handler: one side effect of one request per message.
//!
//! - mail: `sendMail` from the service mailbox in the provider tenant; recorded on the request so a
//!   redelivered message does not mail twice.
//! - elevate: the engineer's guest account in the customer tenant, as mdops recorded it
//!   (`mdops_core::access::guests`: invited by mdops, or adopted by an operator; never a user that
//!   merely has the address in `mail`), is added to the role group (by the object id onboarding
//!   recorded, `mdops_core::onboarding::role_groups`; never found by name) and the request marked
//!   active.
//!   If the request ended meanwhile, the removal is queued again.
//! - remove: unless another live grant of the same guest to the same group holds the membership,
//!   take the guest out (a 404 is checked against the member list); then keep re-checking the
//!   membership every `REMOVAL_VERIFY_INTERVAL` until `ADD_IN_FLIGHT_BOUND` after the access
//!   ended, so an elevation that read the request before it ended and added the guest late (and
//!   perhaps failed to record it) is undone too.
//!
//! Every result is recorded on the request together with its audit entry, in one transaction.
//!
//! Throttling and transient failures are redelivered with backoff; on the last attempt (or for a
//! permanent failure) the message is dead-lettered with the reason, the request shows the failure,
//! an `alarm` error is logged, and a removal is re-sent by the expiry pass: never given up.

use std::time::Duration;

use mdops_core::access::guests::{GuestRecord, Guests};
use mdops_core::access::{
    AccessMessage, AccessRequest, AccessRequests, AccessSettings, AccessState, AccessWork, Change, Effect,
    EffectStatus, MailKind, Versioned, audit_entry, load_settings,
};
use mdops_core::message::decode;
use mdops_core::onboarding::RoleGroup;
use mdops_core::onboarding::role_groups::RoleGroupIds;
use mdops_core::onboarding::runs::{RunStatus, Runs};
use mdops_core::queue::{DEFAULT_MAX_RECEIVE_COUNT, Failure};
use mdops_core::store::StoreError;
use mdops_core::store::{AuditEntry, Condition, Store};
use mdops_core::tenant::TenantId;
use mdops_graph::resources::directory::NewInvitation;
use mdops_graph::resources::users::{USER_SELECT, User};
use mdops_graph::{GraphError, Query, TenantGraph, odata_string};
use serde_json::json;
use tracing::Instrument;

use super::flush_outbox;
use super::mail::compose;
use crate::deps::Deps;
use crate::disposition::{Disposition, REDELIVER_AFTER};
use crate::reach::ReachError;

/// Attempts before a message is dead-lettered by this handler (with the reason and an alarm)
/// rather than left to the queue's receive limit, which would lose the reason.
pub const MAX_ATTEMPTS: u32 = DEFAULT_MAX_RECEIVE_COUNT;
/// Longest backoff between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Read-modify-write retries when recording a result races another writer.
const MAX_CONFLICT_RETRIES: usize = 8;
/// Actor of the audit entries written here.
const ACTOR: &str = "system:access";

/// Why one attempt failed: retry after a wait, or never (`retry_after: None`).
#[derive(Debug)]
struct Fail {
    reason: String,
    retry_after: Option<Duration>,
}

impl Fail {
    fn permanent(reason: impl Into<String>) -> Fail {
        Fail {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

impl From<GraphError> for Fail {
    fn from(e: GraphError) -> Fail {
        Fail {
            reason: e.reason(),
            retry_after: e.classification().retry_after(),
        }
    }
}

impl From<ReachError> for Fail {
    fn from(e: ReachError) -> Fail {
        let permanent = e.is_permanent();
        Fail {
            reason: e.to_string(),
            retry_after: (!permanent).then_some(REDELIVER_AFTER),
        }
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail {
            reason: e.to_string(),
            retry_after: Some(REDELIVER_AFTER),
        }
    }
}

/// Exponential backoff by attempt: 2, 4, 8, ... seconds, at most [`MAX_BACKOFF`].
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.clamp(1, 8)).min(MAX_BACKOFF)
}

/// Handles one access-queue message.
pub async fn handle(body: &str, receive_count: u32, deps: &Deps) -> Disposition {
    let message = match decode::<AccessMessage>(body) {
        Ok(m) => m,
        Err(e) => {
            return Disposition::DeadLetter(Failure {
                reason: e.to_string(),
                tenant: e.tenant,
                step: e.step,
                attempts: receive_count,
                at: deps.now(),
            });
        }
    };
    let span = tracing::info_span!("access", request = %message.request_id, tenant = %message.tenant_id,
        work = %message.work_name(), attempt = receive_count);
    handle_decoded(message, receive_count, deps).instrument(span).await
}

async fn handle_decoded(message: AccessMessage, receive_count: u32, deps: &Deps) -> Disposition {
    let work = message.work_name();
    let settings = match load_settings(deps.store.as_ref()).await {
        Ok(s) => s,
        Err(e) => return redeliver(REDELIVER_AFTER, e.to_string()),
    };
    let repo = AccessRequests::new(deps.store.as_ref());
    let current = match repo.get(&message.request_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let reason = format!("no access request {}", message.request_id);
            return dead_letter(&message, receive_count, deps, reason).await;
        }
        Err(e) => return redeliver(REDELIVER_AFTER, e.to_string()),
    };
    let removal = matches!(message.work, AccessWork::Remove);
    let result = match message.work {
        AccessWork::Mail { mail } => send_mail(deps, &settings, &current.request, mail).await,
        AccessWork::Elevate => elevate(deps, &settings, &current.request).await,
        AccessWork::Remove => remove(deps, &settings, &current.request).await,
    };
    if removal {
        let name = if result.is_ok() {
            "RemovalsDone"
        } else {
            "RemovalsFailed"
        };
        mdops_graph::metric::count(name, None, 1);
    }
    match result {
        Ok(()) => Disposition::Ack,
        Err(fail) => match fail.retry_after {
            Some(after) if receive_count < MAX_ATTEMPTS => {
                let after = after.max(backoff(receive_count));
                tracing::warn!(reason = %fail.reason, retry_in = ?after, "access work failed; retrying");
                let entry = audit_entry(
                    &message.request_id,
                    ACTOR,
                    &format!("{work}.retry"),
                    json!({"attempt": receive_count, "error": fail.reason}),
                    deps.now(),
                );
                record_effect(
                    deps,
                    &message,
                    receive_count,
                    &fail.reason,
                    EffectStatus::Pending,
                    entry,
                )
                .await;
                redeliver(after, fail.reason)
            }
            _ => dead_letter(&message, receive_count, deps, fail.reason).await,
        },
    }
}

fn redeliver(after: Duration, error: String) -> Disposition {
    Disposition::Redeliver { after, error }
}

async fn dead_letter(message: &AccessMessage, attempts: u32, deps: &Deps, reason: String) -> Disposition {
    let work = message.work_name();
    // The alarm: operators watch for `alarm=true` locally; on AWS the dead-letter queue's depth alarms.
    tracing::error!(alarm = true, request = %message.request_id, %work, %reason, "access work dead-lettered");
    let failure = Failure {
        reason: reason.clone(),
        tenant: Some(message.tenant_id.to_string()),
        step: Some(work.clone()),
        attempts,
        at: deps.now(),
    };
    let entry = audit_entry(
        &message.request_id,
        ACTOR,
        &format!("{work}.dead_lettered"),
        json!({"attempts": attempts, "error": reason}),
        deps.now(),
    );
    record_effect(deps, message, attempts, &reason, EffectStatus::Failed, entry).await;
    Disposition::DeadLetter(failure)
}

/// Records an attempt of an elevation or removal on the request, so it is visible, with its audit
/// entry in the same transaction (alone when the request has nothing to record, e.g. a mail).
async fn record_effect(
    deps: &Deps,
    message: &AccessMessage,
    attempts: u32,
    error: &str,
    status: EffectStatus,
    entry: AuditEntry,
) {
    let now = deps.now();
    let mut pending = Some(entry.clone());
    let result = update(deps, &message.request_id, |r| {
        let effect = match message.work {
            AccessWork::Elevate => &mut r.elevation,
            AccessWork::Remove => &mut r.removal,
            AccessWork::Mail { .. } => return Ok(None),
        };
        let Some(effect) = effect.as_mut() else { return Ok(None) };
        if effect.status == EffectStatus::Done {
            return Ok(None);
        }
        *effect = Effect {
            status,
            attempts,
            last_error: Some(error.to_string()),
            updated_at: now,
        };
        Ok(Some(Change::new(Vec::new(), entry.clone())))
    })
    .await;
    match result {
        Ok(Some(_)) => pending = None,
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e.reason, "could not record an access side effect's failure"),
    }
    if let Some(entry) = pending
        && let Err(e) = deps.store.append_audit(entry).await
    {
        tracing::error!(request = %message.request_id, error = %e, "could not audit an access side effect's failure");
    }
}

/// Read-modify-write of a request: `change` returns `None` for "nothing to write", or what to
/// write with it (side effects to queue, audit entries).
async fn update(
    deps: &Deps,
    id: &str,
    mut change: impl FnMut(&mut AccessRequest) -> Result<Option<Change>, Fail>,
) -> Result<Option<AccessRequest>, Fail> {
    let repo = AccessRequests::new(deps.store.as_ref());
    for _ in 0..MAX_CONFLICT_RETRIES {
        let Some(Versioned { mut request, version }) = repo.get(id).await? else {
            return Err(Fail::permanent(format!("access request {id} disappeared")));
        };
        let Some(c) = change(&mut request)? else {
            return Ok(None);
        };
        match repo.decide(&request, version, c, deps.now()).await {
            Ok(outbox) => {
                flush_outbox(deps, &outbox).await;
                return Ok(Some(request));
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Fail {
        reason: format!("request {id} kept changing while recording a result"),
        retry_after: Some(REDELIVER_AFTER),
    })
}

async fn send_mail(
    deps: &Deps,
    settings: &AccessSettings,
    request: &AccessRequest,
    kind: MailKind,
) -> Result<(), Fail> {
    if request.mails_sent.contains(&kind) {
        return Ok(());
    }
    let provider = settings.provider_tenant_id.clone().ok_or_else(|| {
        Fail::permanent("provider_tenant_id is not configured: set it with `mdops access configure --provider-tenant`")
    })?;
    let (_, graph) = deps.reach.tenant(&provider).await?;
    let mail = compose(kind, request, settings);
    graph.send_mail(&settings.service_mailbox, &mail).await?;
    // Delivered: from here on, failing to record it may at worst mail twice, never lose the mail.
    let now = deps.now();
    update(deps, &request.id, |r| {
        if r.mails_sent.contains(&kind) {
            return Ok(None);
        }
        r.mails_sent.push(kind);
        Ok(Some(Change::new(
            Vec::new(),
            audit_entry(
                &r.id,
                ACTOR,
                "mail.sent",
                json!({"mail": kind.as_str(), "to": mail.to, "subject": mail.subject}),
                now,
            ),
        )))
    })
    .await?;
    Ok(())
}

/// The role group's object id in the customer tenant, as onboarding recorded it
/// (`mdops_core::onboarding::role_groups`), never a group found by display name: anyone allowed
/// to create groups in the customer tenant can make one with the name. `None` when the name is not
/// a role group onboarding creates, or onboarding has not recorded it yet ([`no_recorded_role_group`]
/// says which).
pub(crate) async fn recorded_role_group(
    store: &dyn Store,
    tenant: &TenantId,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let Some(group) = RoleGroup::by_display_name(name) else {
        return Ok(None);
    };
    Ok(RoleGroupIds::new(store).get(tenant, group).await?.map(|r| r.id))
}

/// Why [`recorded_role_group`] found no id, in one line with what to do.
pub(crate) fn no_recorded_role_group(tenant: &TenantId, name: &str) -> String {
    match RoleGroup::by_display_name(name) {
        None => format!(
            "role group {name:?} is not one onboarding creates ({}); mdops elevates only into those",
            RoleGroup::ALL
                .iter()
                .map(|g| g.display_name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(group) => format!(
            "role group {name:?} has no object id recorded for tenant {tenant}: onboarding has not created it yet; \
             onboard the tenant (`mdops onboard {tenant}`, step {}) and replay this message",
            mdops_core::onboarding::StepKind::RoleGroup(group)
        ),
    }
}

/// Guest users (`userType eq 'Guest'`) whose `mail` is `email`; a member account with the
/// address is never a candidate.
async fn guests_by_mail(graph: &TenantGraph, email: &str) -> Result<Vec<User>, Fail> {
    let q = Query::select(USER_SELECT).filter(format!("userType eq 'Guest' and mail eq {}", odata_string(email)));
    Ok(graph.list_all("users", &q, 1).await?)
}

/// The engineer's guest in the customer tenant: the one mdops recorded, or one it invites now.
/// Returns its object id and how it was found (`recorded`, `invited`, `invitation answer lost`).
async fn ensure_guest(
    deps: &Deps,
    graph: &TenantGraph,
    settings: &AccessSettings,
    request: &AccessRequest,
) -> Result<(String, &'static str), Fail> {
    let guests = Guests::new(deps.store.as_ref());
    let tenant = &request.tenant_id;
    let recorded = guests.get(tenant, &request.requester_id).await?;
    if let Some((record, _)) = &recorded
        && let Some(id) = &record.guest_id
    {
        let user: Option<User> = graph
            .get_opt(&format!("users/{id}"), &Query::select(USER_SELECT))
            .await?;
        match user {
            Some(u) if u.user_type.as_deref() == Some("Guest") => return Ok((id.clone(), "recorded")),
            Some(u) => {
                return Err(Fail::permanent(format!(
                    "the guest mdops recorded for {} in tenant {tenant} ({id}) is now a {} account, not a guest; \
                     check who changed it before granting access",
                    request.requester,
                    u.user_type.as_deref().unwrap_or("unknown")
                )));
            }
            // Deleted since: invite again below.
            None => {}
        }
    }
    let found = guests_by_mail(graph, &request.requester).await?;
    let invited_before = recorded.as_ref().is_some_and(|(r, _)| r.invited_at.is_some());
    let condition = recorded
        .as_ref()
        .map_or(Condition::Absent, |(_, v)| Condition::Version(*v));
    match found.as_slice() {
        [] => {}
        // Our own invitation made it (its answer was lost, or the record's id was never written).
        [one] if invited_before => {
            let record = GuestRecord {
                guest_id: Some(one.id.clone()),
                ..recorded.map(|(r, _)| r).expect("invited_before implies a record")
            };
            guests.put(tenant, &record, condition, None).await?;
            return Ok((one.id.clone(), "invitation answer lost"));
        }
        [one] => {
            return Err(Fail::permanent(format!(
                "a guest with mail {} already exists in tenant {tenant} (object id {}, {}) but mdops did not invite it; \
                 check that it is the engineer's own account, then take it over with \
                 `mdops access adopt-guest {} --guest {}` (audited), or delete it and replay",
                request.requester, one.id, one.user_principal_name, request.id, one.id
            )));
        }
        many => {
            return Err(Fail::permanent(format!(
                "{} guests with mail {} exist in tenant {tenant} ({}); mdops adopts none of them: delete the strays, \
                 or adopt the engineer's with `mdops access adopt-guest {} --guest <id>`",
                many.len(),
                request.requester,
                many.iter().map(|u| u.id.as_str()).collect::<Vec<_>>().join(", "),
                request.id
            )));
        }
    }
    // Recorded before sending, so a lost answer is recognised on the retry.
    let intent = GuestRecord {
        person: request.requester_id.clone(),
        email: request.requester.clone(),
        guest_id: None,
        invited_at: Some(deps.now()),
        adopted_by: None,
    };
    guests.put(tenant, &intent, condition, None).await?;
    let invitation = NewInvitation {
        invited_user_email_address: request.requester.clone(),
        invited_user_display_name: Some(request.requester_name.clone()),
        invite_redirect_url: settings.invite_redirect_url.clone(),
        send_invitation_message: false,
    };
    let id = graph.create_invitation(&invitation).await?.invited_user.id;
    let version = match guests.get(tenant, &request.requester_id).await? {
        Some((_, v)) => v,
        None => {
            return Err(Fail::permanent(
                "the guest record written before the invitation disappeared",
            ));
        }
    };
    let record = GuestRecord {
        guest_id: Some(id.clone()),
        ..intent
    };
    guests.put(tenant, &record, Condition::Version(version), None).await?;
    Ok((id, "invited"))
}

/// Why an elevation has no group to go into: while the tenant's onboarding run is in progress
/// (it may be about to record the group), a retry; otherwise permanent, saying what to do.
async fn role_group_not_recorded(deps: &Deps, request: &AccessRequest) -> Result<Fail, Fail> {
    let reason = no_recorded_role_group(&request.tenant_id, &request.role_group);
    let known = RoleGroup::by_display_name(&request.role_group).is_some();
    let run = Runs::new(deps.store.as_ref(), deps.runs)
        .current(&request.tenant_id)
        .await?;
    Ok(match run {
        Some(view) if known && view.status() == RunStatus::Running => Fail {
            reason: format!("{reason} (onboarding run {} is in progress)", view.run.run_id),
            retry_after: Some(REDELIVER_AFTER),
        },
        _ => Fail::permanent(reason),
    })
}

async fn elevate(deps: &Deps, settings: &AccessSettings, request: &AccessRequest) -> Result<(), Fail> {
    if request.state != AccessState::Approved {
        return Ok(());
    }
    let (_, graph) = deps.reach.tenant(&request.tenant_id).await?;
    let group_id = match recorded_role_group(deps.store.as_ref(), &request.tenant_id, &request.role_group).await? {
        Some(id) => id,
        None => return Err(role_group_not_recorded(deps, request).await?),
    };
    let (guest_id, found) = ensure_guest(deps, &graph, settings, request).await?;
    match graph.add_group_member(&group_id, &guest_id).await {
        Ok(()) => {}
        Err(e) if e.is_reference_already_exists() => {}
        Err(e) => return Err(e.into()),
    }
    mdops_core::crash_point::reached(mdops_core::crash_point::ACCESS_ELEVATED);
    let now = deps.now();
    let (gid, uid) = (group_id.clone(), guest_id.clone());
    update(deps, &request.id, |r| {
        r.group_id.get_or_insert_with(|| gid.clone());
        r.guest_id.get_or_insert_with(|| uid.clone());
        let mut detail = json!({"guest_id": uid, "group_id": gid, "guest": found});
        match r.state {
            AccessState::Approved => {
                r.state = AccessState::Active;
                r.elevation = Some(Effect {
                    status: EffectStatus::Done,
                    attempts: r.elevation.as_ref().map(|e| e.attempts).unwrap_or(0) + 1,
                    last_error: None,
                    updated_at: now,
                });
                detail["state"] = json!(r.state);
                Ok(Some(Change::new(
                    Vec::new(),
                    audit_entry(&r.id, ACTOR, "elevated", detail, now),
                )))
            }
            // The access ended while we added the guest: make sure the removal runs after us.
            AccessState::Ended | AccessState::Revoked => {
                r.removal = Some(Effect {
                    status: EffectStatus::Pending,
                    attempts: 0,
                    last_error: None,
                    updated_at: now,
                });
                detail["state"] = json!(r.state);
                Ok(Some(Change::new(
                    vec![AccessWork::Remove],
                    audit_entry(&r.id, ACTOR, "elevated.after_end", detail, now),
                )))
            }
            _ => Ok(None),
        }
    })
    .await?;
    Ok(())
}

/// Another live grant (approved or active request) of the same person to the same group.
async fn other_grants(deps: &Deps, request: &AccessRequest) -> Result<Vec<String>, Fail> {
    let (grants, undecodable) = AccessRequests::new(deps.store.as_ref()).live_grants().await?;
    for e in undecodable {
        tracing::warn!(error = %e, "a live grant does not decode; it holds no membership");
    }
    Ok(grants
        .into_iter()
        .filter(|g| g.id != request.id && g.same_grant(request))
        .map(|g| g.id)
        .collect())
}

async fn remove(deps: &Deps, _settings: &AccessSettings, request: &AccessRequest) -> Result<(), Fail> {
    if !request.removal_outstanding() {
        return Ok(());
    }
    let (_, graph) = deps.reach.tenant(&request.tenant_id).await?;
    let group_id = match &request.group_id {
        Some(id) => Some(id.clone()),
        None => recorded_role_group(deps.store.as_ref(), &request.tenant_id, &request.role_group).await?,
    };
    // Only the guest mdops recorded: never one found by address.
    let guest_id = match &request.guest_id {
        Some(id) => Some(id.clone()),
        None => Guests::new(deps.store.as_ref())
            .get(&request.tenant_id, &request.requester_id)
            .await?
            .and_then(|(g, _)| g.guest_id),
    };
    let others = other_grants(deps, request).await?;
    let outcome = match (&group_id, &guest_id) {
        // Another grant of the same guest to the same group still runs: it owns the membership now.
        _ if !others.is_empty() => "kept: another live grant holds the membership",
        (Some(group), Some(guest)) => match graph.remove_group_member(group, guest).await {
            Ok(()) => "removed",
            Err(e) if e.is_not_found() => {
                // Gone already, or not replicated yet: the member list decides.
                let members = graph.list_group_members(group).await?;
                if members.iter().any(|m| &m.id == guest) {
                    return Err(e.into());
                }
                "not a member"
            }
            Err(e) => return Err(e.into()),
        },
        _ => "nothing to remove (no group, or no guest account recorded)",
    };
    let now = deps.now();
    let settled = !others.is_empty() || request.removal_verify_until().is_none_or(|until| now >= until);
    update(deps, &request.id, |r| {
        let Some(removal) = r.removal.as_mut() else {
            return Ok(None);
        };
        if removal.status == EffectStatus::Done {
            return Ok(None);
        }
        let first = removal.status != EffectStatus::Verifying;
        removal.status = if settled {
            EffectStatus::Done
        } else {
            EffectStatus::Verifying
        };
        removal.attempts += 1;
        removal.last_error = None;
        removal.updated_at = now;
        let detail = json!({"guest_id": guest_id, "group_id": group_id, "outcome": outcome,
            "other_grants": others, "verified": settled});
        // A re-check that finds nothing to do is recorded on the request, not in the trail.
        let action = match (first, outcome, settled) {
            (true, _, _) => Some("removed"),
            (false, "removed", _) => Some("removed.late_add"),
            (false, _, true) => Some("removal.verified"),
            (false, _, false) => None,
        };
        Ok(Some(Change {
            audit: action
                .map(|a| audit_entry(&r.id, ACTOR, a, detail, now))
                .into_iter()
                .collect(),
            ..Change::default()
        }))
    })
    .await?;
    Ok(())
}
