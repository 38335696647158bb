//! The access queue's handler: one side effect of one request per message.
//!
//! - mail: `sendMail` from the service mailbox in the provider tenant; recorded on the request so a
//!   redelivered message does not mail twice.
//! - elevate: find the engineer's guest account in the customer tenant by e-mail (or invite it),
//!   add it to the role group, mark the request active. If the request ended meanwhile, the removal
//!   is queued again so an elevation that raced a revocation never outlives it.
//! - remove: take the guest out of the role group (a 404 is checked against the member list) and
//!   mark the removal done.
//!
//! Throttling and transient failures are redelivered with backoff; on the last attempt (or for a
//! permanent failure) the message is dead-lettered with the reason, the request shows the failure,
//! an `alarm` error is logged, and a removal is re-sent by the expiry pass: never given up.

use std::time::Duration;

use mdops_core::access::{
    AccessMessage, AccessRequest, AccessRequests, AccessSettings, AccessState, AccessWork, Effect, EffectStatus,
    MailKind, Versioned, load_settings,
};
use mdops_core::message::decode;
use mdops_core::queue::{DEFAULT_MAX_RECEIVE_COUNT, Failure};
use mdops_core::store::StoreError;
use mdops_graph::resources::directory::NewInvitation;
use mdops_graph::resources::users::{USER_SELECT, User};
use mdops_graph::{GraphError, Query, TenantGraph, odata_string};
use serde_json::json;
use tracing::Instrument;

use super::flush_outbox;
use super::mail::compose;
use super::service::audit;
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
    let result = match message.work {
        AccessWork::Mail { mail } => send_mail(deps, &settings, &current.request, mail).await,
        AccessWork::Elevate => elevate(deps, &settings, &current.request).await,
        AccessWork::Remove => remove(deps, &settings, &current.request).await,
    };
    match result {
        Ok(()) => Disposition::Ack,
        Err(fail) => match fail.retry_after {
            Some(after) if receive_count < MAX_ATTEMPTS => {
                let after = after.max(backoff(receive_count));
                tracing::warn!(reason = %fail.reason, retry_in = ?after, "access work failed; retrying");
                record_effect(deps, &message, receive_count, &fail.reason, EffectStatus::Pending).await;
                audit(
                    deps,
                    &message.request_id,
                    ACTOR,
                    &format!("{work}.retry"),
                    json!({"attempt": receive_count, "error": fail.reason}),
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
    record_effect(deps, message, attempts, &reason, EffectStatus::Failed).await;
    audit(
        deps,
        &message.request_id,
        ACTOR,
        &format!("{work}.dead_lettered"),
        json!({"attempts": attempts, "error": reason}),
    )
    .await;
    Disposition::DeadLetter(failure)
}

/// Records an attempt of an elevation or removal on the request, so it is visible.
async fn record_effect(deps: &Deps, message: &AccessMessage, attempts: u32, error: &str, status: EffectStatus) {
    let now = deps.now();
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
        Ok(Some(Vec::new()))
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e.reason, "could not record an access side effect's failure");
    }
}

/// Read-modify-write of a request: `change` returns `None` for "nothing to write", or the side
/// effects to queue with the write.
async fn update(
    deps: &Deps,
    id: &str,
    mut change: impl FnMut(&mut AccessRequest) -> Result<Option<Vec<AccessWork>>, Fail>,
) -> Result<Option<AccessRequest>, Fail> {
    let repo = AccessRequests::new(deps.store.as_ref());
    for _ in 0..MAX_CONFLICT_RETRIES {
        let Some(Versioned { mut request, version }) = repo.get(id).await? else {
            return Err(Fail::permanent(format!("access request {id} disappeared")));
        };
        let Some(effects) = change(&mut request)? else {
            return Ok(None);
        };
        match repo.decide(&request, version, &effects, deps.now()).await {
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
    update(deps, &request.id, |r| {
        if r.mails_sent.contains(&kind) {
            return Ok(None);
        }
        r.mails_sent.push(kind);
        Ok(Some(Vec::new()))
    })
    .await?;
    audit(
        deps,
        &request.id,
        ACTOR,
        "mail.sent",
        json!({"mail": kind.as_str(), "to": mail.to, "subject": mail.subject}),
    )
    .await;
    Ok(())
}

async fn find_group(graph: &TenantGraph, name: &str) -> Result<Option<String>, Fail> {
    let groups = graph.find_groups_by_display_name(name).await?;
    Ok(groups.into_iter().next().map(|g| g.id))
}

async fn find_guest(graph: &TenantGraph, email: &str) -> Result<Option<String>, Fail> {
    let q = Query::select(USER_SELECT).filter(format!("mail eq {}", odata_string(email)));
    let users: Vec<User> = graph.list_all("users", &q, 1).await?;
    Ok(users.into_iter().next().map(|u| u.id))
}

async fn elevate(deps: &Deps, settings: &AccessSettings, request: &AccessRequest) -> Result<(), Fail> {
    if request.state != AccessState::Approved {
        return Ok(());
    }
    let (_, graph) = deps.reach.tenant(&request.tenant_id).await?;
    let group_id = find_group(&graph, &request.role_group).await?.ok_or_else(|| {
        Fail::permanent(format!(
            "role group {:?} does not exist in tenant {}",
            request.role_group, request.tenant_id
        ))
    })?;
    let (guest_id, invited) = match find_guest(&graph, &request.requester).await? {
        Some(id) => (id, false),
        None => {
            let invitation = NewInvitation {
                invited_user_email_address: request.requester.clone(),
                invited_user_display_name: Some(request.requester_name.clone()),
                invite_redirect_url: settings.invite_redirect_url.clone(),
                send_invitation_message: false,
            };
            (graph.create_invitation(&invitation).await?.invited_user.id, true)
        }
    };
    match graph.add_group_member(&group_id, &guest_id).await {
        Ok(()) => {}
        Err(e) if e.is_reference_already_exists() => {}
        Err(e) => return Err(e.into()),
    }
    mdops_core::crash_point::reached(mdops_core::crash_point::ACCESS_ELEVATED);
    let now = deps.now();
    let (gid, uid) = (group_id.clone(), guest_id.clone());
    let written = update(deps, &request.id, |r| {
        r.group_id.get_or_insert_with(|| gid.clone());
        r.guest_id.get_or_insert_with(|| uid.clone());
        match r.state {
            AccessState::Approved => {
                r.state = AccessState::Active;
                r.elevation = Some(Effect {
                    status: EffectStatus::Done,
                    attempts: r.elevation.as_ref().map(|e| e.attempts).unwrap_or(0) + 1,
                    last_error: None,
                    updated_at: now,
                });
                Ok(Some(Vec::new()))
            }
            // The access ended while we added the guest: make sure the removal runs after us.
            AccessState::Ended | AccessState::Revoked => {
                r.removal = Some(Effect {
                    status: EffectStatus::Pending,
                    attempts: 0,
                    last_error: None,
                    updated_at: now,
                });
                Ok(Some(vec![AccessWork::Remove]))
            }
            _ => Ok(None),
        }
    })
    .await?;
    audit(
        deps,
        &request.id,
        ACTOR,
        "elevated",
        json!({"guest_id": guest_id, "group_id": group_id, "invited": invited,
               "state": written.map(|r| r.state)}),
    )
    .await;
    Ok(())
}

async fn remove(deps: &Deps, _settings: &AccessSettings, request: &AccessRequest) -> Result<(), Fail> {
    if !request.removal_outstanding() {
        return Ok(());
    }
    let (_, graph) = deps.reach.tenant(&request.tenant_id).await?;
    let group_id = match &request.group_id {
        Some(id) => Some(id.clone()),
        None => find_group(&graph, &request.role_group).await?,
    };
    let guest_id = match &request.guest_id {
        Some(id) => Some(id.clone()),
        None => find_guest(&graph, &request.requester).await?,
    };
    let outcome = match (&group_id, &guest_id) {
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
        _ => "nothing to remove (no group or no guest account)",
    };
    let now = deps.now();
    update(deps, &request.id, |r| {
        let Some(removal) = r.removal.as_mut() else {
            return Ok(None);
        };
        if removal.status == EffectStatus::Done {
            return Ok(None);
        }
        removal.status = EffectStatus::Done;
        removal.attempts += 1;
        removal.last_error = None;
        removal.updated_at = now;
        Ok(Some(Vec::new()))
    })
    .await?;
    audit(
        deps,
        &request.id,
        ACTOR,
        "removed",
        json!({"guest_id": guest_id, "group_id": group_id, "outcome": outcome}),
    )
    .await;
    Ok(())
}
