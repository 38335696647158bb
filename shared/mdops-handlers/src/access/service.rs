//! The decisions: request, approve, deny, cancel, revoke, and reading requests with their trail.
//!
//! Each decision reads the request, applies the rule from `mdops_core::access` for the caller at
//! the handlers' clock, and writes it back on the version read, together with its side effects and
//! its audit entry, in one transaction: a decision is never recorded without its entry, nor an
//! entry without its decision. A lost race is retried from a fresh read, so two approvers at once
//! are both counted (or the second sees the decided state and gets a conflict), never lost.
//!
//! Reads are authorized like decisions: team members read every request, a requester their own,
//! anyone else gets 403. A refusal by a team member is audited apart from the trail
//! (`access-refusals:{id}`); a refusal of a non-member is only logged, so nobody outside the team
//! can write into the store at all.

use mdops_core::access::idempotency::{self, IdempotencyRecord};
use mdops_core::access::{
    AccessRequest, AccessRequests, AccessSettings, AccessState, AccessWork, Caller, Change, ListFilter, MailKind,
    NewAccessRequest, Refusal, audit_entry, load_settings,
};
use mdops_core::store::{AuditPage, StoreError};
use mdops_core::tenant::{InvalidInput, RegistryError, TenantId, TenantRegistry};
use serde_json::json;

use super::flush_outbox;
use crate::deps::Deps;

/// Conditional writes lost to a concurrent decision are retried this often (each loss means
/// someone else decided something, so this bound is never reached in practice).
const MAX_CONFLICT_RETRIES: usize = 8;
/// Audit entries shown with a request (the newest; older pages through [`AccessService::trail`]).
pub const TRAIL_PAGE: usize = 50;

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The rules refused it (400, 403 or 409).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No request with this id (404).
    #[error("no access request {0}")]
    NotFound(String),
    /// An idempotency key was sent again with a different body (422).
    #[error("Idempotency-Key {0:?} was already used for a different request; use a new key for a new request")]
    KeyReused(String),
    /// The store failed; retrying may help (503).
    #[error("state store unavailable: {0}")]
    Store(#[from] StoreError),
}

/// A request filed: the request, and whether this call created it (`false`: an idempotent retry).
#[derive(Debug, Clone)]
pub struct Filed {
    pub request: AccessRequest,
    pub created: bool,
}

/// The access service over the handlers' ports.
#[derive(Clone)]
pub struct AccessService {
    deps: Deps,
}

/// The details every person-made audit entry carries: who, by name at the time.
fn by(caller: &Caller) -> serde_json::Value {
    json!({"by": caller.upn, "by_tid": caller.tenant_id, "by_oid": caller.oid})
}

impl AccessService {
    /// A service over `deps` (settings are read from the store on each call).
    pub fn new(deps: Deps) -> Self {
        AccessService { deps }
    }

    /// The ports.
    pub fn deps(&self) -> &Deps {
        &self.deps
    }

    /// The current settings.
    pub async fn settings(&self) -> Result<AccessSettings, AccessError> {
        Ok(load_settings(self.deps.store.as_ref()).await?)
    }

    fn repo(&self) -> AccessRequests<'_> {
        AccessRequests::new(self.deps.store.as_ref())
    }

    /// Files a new request; the team alias is mailed. With an idempotency key, a retry of the
    /// same call answers the request already filed and files (and mails) nothing.
    pub async fn request(
        &self,
        caller: &Caller,
        input: &NewAccessRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Filed, AccessError> {
        if let Some(key) = idempotency_key {
            idempotency::validate_key(key).map_err(Refusal::from)?;
            if let Some(filed) = self.already_filed(caller, input, key).await? {
                return Ok(filed);
            }
        }
        let settings = self.settings().await?;
        let tenant_id: TenantId = input.tenant.parse().map_err(Refusal::from)?;
        let tenant = TenantRegistry::new(self.deps.store.as_ref())
            .get(&tenant_id)
            .await
            .map_err(|e| match e {
                RegistryError::Store(s) => AccessError::Store(s),
                other => AccessError::Refused(InvalidInput::new("tenant", other.to_string()).into()),
            })?
            .ok_or_else(|| {
                AccessError::Refused(
                    InvalidInput::new("tenant", format!("{tenant_id} is not a registered customer tenant")).into(),
                )
            })?;
        let now = self.deps.now();
        let request = match AccessRequest::new(
            format!("{:032x}", rand::random::<u128>()),
            input,
            caller,
            &tenant.settings,
            &settings,
            now,
        ) {
            Ok(r) => r,
            Err(refusal) => {
                if !matches!(refusal, Refusal::Invalid(_)) {
                    tracing::warn!(tid = %caller.tenant_id, oid = %caller.oid, upn = %caller.upn, %refusal, "access request refused");
                }
                return Err(refusal.into());
            }
        };
        let mut detail = json!({
            "tenant": request.tenant_id, "role_group": request.role_group, "ticket": request.ticket,
            "duration_minutes": request.duration_minutes, "justification": request.justification,
        });
        for (k, v) in by(caller).as_object().into_iter().flatten() {
            detail[k] = v.clone();
        }
        let mut change = Change::new(
            vec![AccessWork::Mail {
                mail: MailKind::Requested,
            }],
            audit_entry(&request.id, &caller.id().actor(), "requested", detail, now),
        );
        if let Some(key) = idempotency_key {
            change.writes.push(idempotency::record(
                &caller.id(),
                key,
                &IdempotencyRecord {
                    request_id: request.id.clone(),
                    input: input.clone(),
                },
            ));
        }
        let outbox = match self.repo().create(&request, change, now).await {
            Ok(outbox) => outbox,
            // The same key raced in from a concurrent retry: answer the request that won.
            Err(StoreError::ConditionFailed { .. }) if idempotency_key.is_some() => {
                let key = idempotency_key.unwrap_or_default();
                return self.already_filed(caller, input, key).await?.ok_or_else(|| {
                    AccessError::Store(StoreError::Unavailable {
                        message: format!("Idempotency-Key {key:?} was taken but its request cannot be read yet; retry"),
                        source: None,
                    })
                });
            }
            Err(e) => return Err(e.into()),
        };
        flush_outbox(&self.deps, &outbox).await;
        tracing::info!(request = %request.id, tenant = %request.tenant_id, requester = %caller.id(), "access requested");
        Ok(Filed { request, created: true })
    }

    async fn already_filed(
        &self,
        caller: &Caller,
        input: &NewAccessRequest,
        key: &str,
    ) -> Result<Option<Filed>, AccessError> {
        let Some(record) = idempotency::find(self.deps.store.as_ref(), &caller.id(), key).await? else {
            return Ok(None);
        };
        if record.input != *input {
            return Err(AccessError::KeyReused(key.to_string()));
        }
        let found = self.repo().get(&record.request_id).await?;
        Ok(found.map(|v| Filed {
            request: v.request,
            created: false,
        }))
    }

    /// Approves; once enough people approved, the guest is elevated and the requester mailed.
    pub async fn approve(&self, caller: &Caller, id: &str) -> Result<AccessRequest, AccessError> {
        let settings = self.settings().await?;
        self.decide(id, caller, &settings, "approved", None, |r, now| {
            let before = r.state;
            r.approve(caller, &settings, now)?;
            Ok(if before == AccessState::Pending && r.state == AccessState::Approved {
                vec![
                    AccessWork::Elevate,
                    AccessWork::Mail {
                        mail: MailKind::Approved,
                    },
                ]
            } else {
                Vec::new()
            })
        })
        .await
    }

    /// Denies, with a reason; the requester is mailed.
    pub async fn deny(&self, caller: &Caller, id: &str, reason: &str) -> Result<AccessRequest, AccessError> {
        let settings = self.settings().await?;
        self.decide(id, caller, &settings, "denied", Some(reason), |r, now| {
            r.deny(caller, reason, &settings, now)?;
            Ok(vec![AccessWork::Mail { mail: MailKind::Denied }])
        })
        .await
    }

    /// Cancels a pending request (the requester only).
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<AccessRequest, AccessError> {
        let settings = self.settings().await?;
        self.decide(id, caller, &settings, "cancelled", None, |r, now| {
            r.cancel(caller, now)?;
            Ok(Vec::new())
        })
        .await
    }

    /// Ends granted access early; the guest is removed and the requester mailed.
    pub async fn revoke(&self, caller: &Caller, id: &str, reason: &str) -> Result<AccessRequest, AccessError> {
        let settings = self.settings().await?;
        self.decide(id, caller, &settings, "revoked", Some(reason), |r, now| {
            r.revoke(caller, reason, &settings, now)?;
            Ok(vec![AccessWork::Remove, AccessWork::Mail { mail: MailKind::Ended }])
        })
        .await
    }

    /// A request and the newest page of its audit trail, if the caller may read it.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<(AccessRequest, AuditPage), AccessError> {
        let request = self.readable(caller, id).await?;
        let trail = self.repo().trail(id, None, TRAIL_PAGE).await?;
        Ok((request, trail))
    }

    /// A page of a request's trail, newest first, after the cursor `before`.
    pub async fn trail(
        &self,
        caller: &Caller,
        id: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<AuditPage, AccessError> {
        self.readable(caller, id).await?;
        self.repo().trail(id, before, limit).await.map_err(|e| match e {
            StoreError::Invalid(reason) => AccessError::Refused(InvalidInput::new("before", reason).into()),
            other => other.into(),
        })
    }

    /// The request, if the caller may read it. Whether a request the caller may not read exists
    /// is not told: both are 403 for a non-member.
    async fn readable(&self, caller: &Caller, id: &str) -> Result<AccessRequest, AccessError> {
        let settings = self.settings().await?;
        let found = self.repo().get(id).await?;
        let forbidden = || {
            tracing::warn!(request = %id, tid = %caller.tenant_id, oid = %caller.oid, upn = %caller.upn, "read refused");
            AccessError::Refused(Refusal::Forbidden(
                "only team members and the requester may read a request".into(),
            ))
        };
        match found {
            Some(v) if v.request.may_read(caller, &settings) => Ok(v.request),
            Some(_) => Err(forbidden()),
            None if caller.is_team_member(&settings) => Err(AccessError::NotFound(id.to_string())),
            None => Err(forbidden()),
        }
    }

    /// Requests matching the filter: all for team members, only their own for anyone else.
    pub async fn list(
        &self,
        caller: &Caller,
        filter: &ListFilter,
        limit: usize,
    ) -> Result<Vec<AccessRequest>, AccessError> {
        let settings = self.settings().await?;
        let mut filter = filter.clone();
        if !caller.is_team_member(&settings) {
            filter.requester_id = Some(caller.id());
        }
        Ok(self.repo().list(&filter, limit).await?)
    }

    async fn decide(
        &self,
        id: &str,
        caller: &Caller,
        settings: &AccessSettings,
        action: &str,
        reason: Option<&str>,
        rule: impl Fn(&mut AccessRequest, chrono::DateTime<chrono::Utc>) -> Result<Vec<AccessWork>, Refusal>,
    ) -> Result<AccessRequest, AccessError> {
        let repo = self.repo();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Some(current) = repo.get(id).await? else {
                if !caller.is_team_member(settings) {
                    tracing::warn!(request = %id, tid = %caller.tenant_id, oid = %caller.oid, action, "decision refused: not a team member");
                    return Err(Refusal::Forbidden("only team members may decide on requests".into()).into());
                }
                return Err(AccessError::NotFound(id.to_string()));
            };
            if !caller.is_team_member(settings) && !current.request.is_requester(caller) {
                // Before any rule runs, so a non-member learns nothing of the request's state.
                tracing::warn!(request = %id, tid = %caller.tenant_id, oid = %caller.oid, action, "decision refused: not a team member");
                return Err(Refusal::Forbidden("only team members may decide on requests".into()).into());
            }
            let now = self.deps.now();
            let mut request = current.request.clone();
            let effects = match rule(&mut request, now) {
                Ok(effects) => effects,
                Err(refusal) => {
                    self.refused(id, caller, settings, &current.request, action, &refusal)
                        .await;
                    return Err(refusal.into());
                }
            };
            let mut detail = by(caller);
            detail["state"] = json!(request.state);
            if let Some(reason) = reason.filter(|r| !r.trim().is_empty()) {
                detail["reason"] = json!(reason.trim());
            }
            if action == "approved" {
                detail["approvals"] = json!(request.approvals.len());
                detail["required"] = json!(request.approvals_required);
            }
            let change = Change::new(effects, audit_entry(id, &caller.id().actor(), action, detail, now));
            match repo.decide(&request, current.version, change, now).await {
                Ok(outbox) => {
                    mdops_graph::metric::count("AccessDecisions", Some(("Decision", action)), 1);
                    mdops_core::crash_point::reached(mdops_core::crash_point::ACCESS_DECIDED);
                    flush_outbox(&self.deps, &outbox).await;
                    tracing::info!(request = %id, actor = %caller.id(), action, state = %request.state, "access decision");
                    return Ok(request);
                }
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AccessError::Store(StoreError::Unavailable {
            message: format!("request {id} kept changing under {MAX_CONFLICT_RETRIES} attempts to {action} it"),
            source: None,
        }))
    }

    /// Records a refused decision: a team member's (or the requester's) apart from the trail, anyone
    /// else's only in the log.
    async fn refused(
        &self,
        id: &str,
        caller: &Caller,
        settings: &AccessSettings,
        request: &AccessRequest,
        action: &str,
        refusal: &Refusal,
    ) {
        tracing::warn!(request = %id, tid = %caller.tenant_id, oid = %caller.oid, upn = %caller.upn, action, %refusal, "access decision refused");
        if !caller.is_team_member(settings) && !request.is_requester(caller) {
            return;
        }
        let mut detail = by(caller);
        detail["problem"] = json!(refusal.to_string());
        let entry = audit_entry(
            id,
            &caller.id().actor(),
            &format!("{action}.refused"),
            detail,
            self.deps.now(),
        );
        if let Err(e) = self.repo().audit_refusal(id, entry).await {
            tracing::error!(request = %id, action, error = %e, "could not audit a refused decision");
        }
    }
}
