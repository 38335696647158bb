//! The decisions: request, approve, deny, cancel, revoke, and reading requests with their trail.
//!
//! Each decision reads the request, applies the rule from `mdops_core::access` for the caller at
//! the handlers' clock, and writes it back on the version read, together with its side effects.
//! A lost race is retried from a fresh read, so two approvers at once are both counted (or the
//! second sees the decided state and gets a conflict), never lost.

use mdops_core::access::{
    AccessRequest, AccessRequests, AccessSettings, AccessState, AccessWork, Caller, ListFilter, MailKind,
    NewAccessRequest, Refusal, load_settings,
};
use mdops_core::store::{AuditEntry, StoreError};
use mdops_core::tenant::{InvalidInput, RegistryError, TenantId, TenantRegistry};
use serde_json::json;

use super::flush_outbox;
use crate::deps::Deps;

/// Conditional writes lost to a concurrent decision are retried this often (each loss means
/// someone else decided something, so this bound is never reached in practice).
const MAX_CONFLICT_RETRIES: usize = 8;
/// Most audit entries shown with a request.
pub const MAX_TRAIL: usize = 200;

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The rules refused it (400, 403 or 409).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No request with this id (404).
    #[error("no access request {0}")]
    NotFound(String),
    /// The store failed; retrying may help (503).
    #[error("state store unavailable: {0}")]
    Store(#[from] StoreError),
}

/// The access service over the handlers' ports.
#[derive(Clone)]
pub struct AccessService {
    deps: Deps,
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

    /// Files a new request; the team alias is mailed.
    pub async fn request(&self, caller: &Caller, input: &NewAccessRequest) -> Result<AccessRequest, AccessError> {
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
        let request = AccessRequest::new(
            format!("{:032x}", rand::random::<u128>()),
            input,
            caller,
            &tenant.settings,
            &settings,
            now,
        )?;
        let outbox = self
            .repo()
            .create(
                &request,
                &[AccessWork::Mail {
                    mail: MailKind::Requested,
                }],
                now,
            )
            .await?;
        self.audit(
            &request.id,
            &caller.upn,
            "requested",
            json!({
                "tenant": request.tenant_id, "role_group": request.role_group, "ticket": request.ticket,
                "duration_minutes": request.duration_minutes, "justification": request.justification,
            }),
        )
        .await;
        flush_outbox(&self.deps, &outbox).await;
        tracing::info!(request = %request.id, tenant = %request.tenant_id, requester = %caller.upn, "access requested");
        Ok(request)
    }

    /// Approves; once enough people approved, the guest is elevated and the requester mailed.
    pub async fn approve(&self, caller: &Caller, id: &str) -> Result<AccessRequest, AccessError> {
        let settings = self.settings().await?;
        self.decide(id, caller, "approved", None, |r, now| {
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
        self.decide(id, caller, "denied", Some(reason), |r, now| {
            r.deny(caller, reason, &settings, now)?;
            Ok(vec![AccessWork::Mail { mail: MailKind::Denied }])
        })
        .await
    }

    /// Cancels a pending request (the requester only).
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<AccessRequest, AccessError> {
        self.decide(id, caller, "cancelled", None, |r, now| {
            r.cancel(caller, now)?;
            Ok(Vec::new())
        })
        .await
    }

    /// Ends granted access early; the guest is removed and the requester mailed.
    pub async fn revoke(&self, caller: &Caller, id: &str, reason: &str) -> Result<AccessRequest, AccessError> {
        let settings = self.settings().await?;
        self.decide(id, caller, "revoked", Some(reason), |r, now| {
            r.revoke(caller, reason, &settings, now)?;
            Ok(vec![AccessWork::Remove, AccessWork::Mail { mail: MailKind::Ended }])
        })
        .await
    }

    /// A request and its audit trail.
    pub async fn get(&self, id: &str) -> Result<(AccessRequest, Vec<AuditEntry>), AccessError> {
        let found = self
            .repo()
            .get(id)
            .await?
            .ok_or_else(|| AccessError::NotFound(id.to_string()))?;
        let trail = self.repo().trail(id, MAX_TRAIL).await?;
        Ok((found.request, trail))
    }

    /// Requests matching the filter.
    pub async fn list(&self, filter: &ListFilter, limit: usize) -> Result<Vec<AccessRequest>, AccessError> {
        Ok(self.repo().list(filter, limit).await?)
    }

    async fn decide(
        &self,
        id: &str,
        caller: &Caller,
        action: &str,
        reason: Option<&str>,
        rule: impl Fn(&mut AccessRequest, chrono::DateTime<chrono::Utc>) -> Result<Vec<AccessWork>, Refusal>,
    ) -> Result<AccessRequest, AccessError> {
        let repo = self.repo();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = repo
                .get(id)
                .await?
                .ok_or_else(|| AccessError::NotFound(id.to_string()))?;
            let now = self.deps.now();
            let mut request = current.request.clone();
            let effects = match rule(&mut request, now) {
                Ok(effects) => effects,
                Err(refusal) => {
                    self.audit(
                        id,
                        &caller.upn,
                        &format!("{action}.refused"),
                        json!({"problem": refusal.to_string()}),
                    )
                    .await;
                    return Err(refusal.into());
                }
            };
            match repo.decide(&request, current.version, &effects, now).await {
                Ok(outbox) => {
                    mdops_core::crash_point::reached(mdops_core::crash_point::ACCESS_DECIDED);
                    let mut detail = json!({"state": request.state});
                    if let Some(reason) = reason.filter(|r| !r.trim().is_empty()) {
                        detail["reason"] = json!(reason.trim());
                    }
                    if action == "approved" {
                        detail["approvals"] = json!(request.approvals.len());
                        detail["required"] = json!(request.approvals_required);
                    }
                    self.audit(id, &caller.upn, action, detail).await;
                    flush_outbox(&self.deps, &outbox).await;
                    tracing::info!(request = %id, actor = %caller.upn, action, state = %request.state, "access decision");
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

    async fn audit(&self, id: &str, actor: &str, action: &str, detail: serde_json::Value) {
        audit(&self.deps, id, actor, action, detail).await;
    }
}

/// Appends an audit entry; a failure is logged, never allowed to undo a recorded decision.
pub(crate) async fn audit(deps: &Deps, id: &str, actor: &str, action: &str, detail: serde_json::Value) {
    if let Err(e) = AccessRequests::new(deps.store.as_ref())
        .audit(id, actor, action, detail, deps.now())
        .await
    {
        tracing::error!(request = %id, action, error = %e, "could not write an access audit entry");
    }
}
