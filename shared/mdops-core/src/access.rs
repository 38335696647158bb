//! Temporary engineer access to a customer tenant with two-key approval and automatic expiry.
//!
//! An engineer of the provider asks for access to one role group of one customer tenant for a
//! bounded time; other team members approve (each person counts once, never the requester) or deny;
//! an approved request is *elevated* (the engineer's guest account is put in the role group) and at
//! its end the elevation is removed. Requests not decided within the approval window expire.
//!
//! States: `pending -> approved -> active -> ended | revoked`; `pending -> denied | cancelled |
//! expired`; `approved -> ended | revoked` too (an elevation that never completed is still removed).
//!
//! This module holds the rules ([`AccessRequest::approve`] and friends are pure functions of the
//! request, the caller and the time) and the repository ([`AccessRequests`]) that stores requests
//! under `access#{id}` with a collection entry (`access`, sorted by state) and a due entry for the
//! request's next timer: the approval deadline while pending, the end while approved or active, the
//! next revocation re-check while a removal is outstanding. Every transition is a conditional write
//! on the version that was read.

pub mod guests;
pub mod idempotency;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::store::{
    AuditEntry, AuditPage, CollectionEntry, Condition, DueEntry, Key, NewRecord, Record, Store, StoreError, Write,
};
use crate::tenant::{InvalidInput, TenantId, TenantSettings};

/// Due-index kind of every access timer (approval deadline, end, revocation re-check).
pub const ACCESS_DUE_KIND: &str = "access";
/// Collection listing all requests, sorted by `{state}#{created_at}#{id}`.
pub const ACCESS_COLLECTION: &str = "access";
/// Longest justification kept; a paragraph, not a document.
pub const MAX_JUSTIFICATION_LEN: usize = 2000;
/// Longest ticket reference (`INC0012345`, a URL).
pub const MAX_TICKET_LEN: usize = 200;
/// Longest reason of a denial or revocation.
pub const MAX_REASON_LEN: usize = 1000;
/// Shortest access worth granting: less is a typo.
pub const MIN_DURATION_MINUTES: u32 = 5;
/// Most approvals a request can be configured to need: more people than a team has awake.
pub const MAX_APPROVALS_REQUIRED: u32 = 5;
/// How long after an unfinished removal the expiry pass sends it again, so a removal whose message
/// was dead-lettered (or lost) is never given up.
pub const REVOCATION_RECHECK: Duration = Duration::from_secs(15 * 60);

/// How long after granted access ends an elevation that read the request before it ended may
/// still add the guest: one access-queue handler run (bounded by the queue's visibility timeout,
/// with Graph's in-process retries inside it) plus the replication lag before an add shows in
/// the member list. Until then a removal keeps re-checking the membership.
pub const ADD_IN_FLIGHT_BOUND: Duration = Duration::from_secs(10 * 60);
/// How often a verifying removal re-checks the membership: a late add is undone within this
/// (plus one timer pass: the worker's tick, or the schedule's minute on AWS).
pub const REMOVAL_VERIFY_INTERVAL: Duration = Duration::from_secs(15);
/// Most live grants (approved or active requests) read at once by a removal or the sweep; more
/// means something is wrong, and both refuse to act on a partial list.
pub const MAX_LIVE_GRANTS: usize = 5000;

/// Where a request lives.
pub fn request_key(id: &str) -> Key {
    Key::new(format!("access#{id}"), "request")
}

/// The audit subject of a request: its trail.
pub fn audit_subject(id: &str) -> String {
    format!("access:{id}")
}

/// Where refused decisions by team members are audited: kept, but apart from the trail, so a
/// stream of refusals cannot bury the real entries. (Refusals by non-members are only logged.)
pub fn refusals_subject(id: &str) -> String {
    format!("access-refusals:{id}")
}

/// An audit entry about request `id`.
pub fn audit_entry(id: &str, actor: &str, action: &str, detail: serde_json::Value, at: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        subject: audit_subject(id),
        actor: actor.to_string(),
        action: action.to_string(),
        detail,
        at,
    }
}

/// Configuration of the access service; defaults documented in `docs/access.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSettings {
    /// The provider's tenant: engineers sign in there; the service mailbox lives there.
    pub provider_tenant_id: Option<TenantId>,
    /// App roles (`roles` claim) that make a caller a team member.
    pub team_roles: Vec<String>,
    /// Group object ids (`groups` claim) that make a caller a team member.
    pub team_groups: Vec<String>,
    /// App roles that may approve; empty: any team member may (the two-key rule of the reference).
    pub approver_roles: Vec<String>,
    /// Where new requests are announced (the team alias).
    pub team_alias: String,
    /// The mailbox (UPN or object id in the provider tenant) mail is sent from.
    pub service_mailbox: String,
    /// Approvals by distinct other team members needed before access is granted.
    pub approvals_required: u32,
    /// How long a request may stay pending before it expires, in minutes.
    pub approval_window_minutes: u32,
    /// Where an invited guest lands after redeeming the invitation.
    pub invite_redirect_url: String,
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            provider_tenant_id: None,
            team_roles: vec!["Access.ServiceEngineering".into(), "Access.SOC".into()],
            team_groups: Vec::new(),
            approver_roles: Vec::new(),
            team_alias: "mmd-engineering@provider.example".into(),
            service_mailbox: "mdops-access@provider.example".into(),
            approvals_required: 1,
            // An hour: long enough for a colleague to see the mail, short enough that a stale
            // request is not approved for a situation that has passed.
            approval_window_minutes: 60,
            invite_redirect_url: "https://myapps.microsoft.com".into(),
        }
    }
}

impl AccessSettings {
    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.team_roles.is_empty() && self.team_groups.is_empty() {
            return Err(InvalidInput::new(
                "team_roles/team_groups",
                "give at least one role or group that makes a caller a team member",
            ));
        }
        if self.approvals_required == 0 || self.approvals_required > MAX_APPROVALS_REQUIRED {
            return Err(InvalidInput::new(
                "approvals_required",
                format!(
                    "{} must be between 1 and {MAX_APPROVALS_REQUIRED}",
                    self.approvals_required
                ),
            ));
        }
        if self.approval_window_minutes == 0 {
            return Err(InvalidInput::new("approval_window_minutes", "must be at least 1"));
        }
        for (field, value) in [
            ("team_alias", &self.team_alias),
            ("service_mailbox", &self.service_mailbox),
        ] {
            if !looks_like_address(value) {
                return Err(InvalidInput::new(field, format!("{value:?} is not a mail address")));
            }
        }
        Ok(())
    }

    /// The approval window.
    pub fn approval_window(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.approval_window_minutes))
    }
}

fn looks_like_address(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !s.contains(char::is_whitespace))
}

/// A person by the ids Entra ID never changes: their tenant (`tid`) and object id (`oid`).
/// Every rule (who requested, who approved, who may cancel or read) compares these, never a name:
/// a UPN can be renamed, and `preferred_username` is not even unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonId {
    pub tid: String,
    pub oid: String,
}

impl PersonId {
    /// The person's ids, lower case (Entra ids are GUIDs; case carries no meaning).
    pub fn new(tid: &str, oid: &str) -> PersonId {
        PersonId {
            tid: tid.to_ascii_lowercase(),
            oid: oid.to_ascii_lowercase(),
        }
    }

    /// The audit actor: `user:{tid}/{oid}`.
    pub fn actor(&self) -> String {
        format!("user:{self}")
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tid, self.oid)
    }
}

/// Who is calling: the claims of a validated token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// Sign-in name (`upn`, else `preferred_username`), lower case: for display and mail only.
    pub upn: String,
    /// Object id in the caller's tenant.
    pub oid: String,
    /// The caller's tenant.
    pub tenant_id: String,
    /// Display name.
    pub name: String,
    /// App roles.
    pub roles: Vec<String>,
    /// Group object ids.
    pub groups: Vec<String>,
}

impl Caller {
    /// The caller's immutable identity.
    pub fn id(&self) -> PersonId {
        PersonId::new(&self.tenant_id, &self.oid)
    }

    /// A team member holds a team role or is in a team group.
    pub fn is_team_member(&self, settings: &AccessSettings) -> bool {
        self.roles.iter().any(|r| settings.team_roles.contains(r))
            || self.groups.iter().any(|g| settings.team_groups.contains(g))
    }

    /// May approve: a team member, holding an approver role when approver roles are configured.
    pub fn may_approve(&self, settings: &AccessSettings) -> bool {
        self.is_team_member(settings)
            && (settings.approver_roles.is_empty() || self.roles.iter().any(|r| settings.approver_roles.contains(r)))
    }
}

/// State of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessState {
    Pending,
    Approved,
    Active,
    Ended,
    Revoked,
    Denied,
    Cancelled,
    Expired,
}

impl AccessState {
    /// Every state.
    pub const ALL: [AccessState; 8] = [
        AccessState::Pending,
        AccessState::Approved,
        AccessState::Active,
        AccessState::Ended,
        AccessState::Revoked,
        AccessState::Denied,
        AccessState::Cancelled,
        AccessState::Expired,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessState::Pending => "pending",
            AccessState::Approved => "approved",
            AccessState::Active => "active",
            AccessState::Ended => "ended",
            AccessState::Revoked => "revoked",
            AccessState::Denied => "denied",
            AccessState::Cancelled => "cancelled",
            AccessState::Expired => "expired",
        }
    }

    /// Approved or active: the engineer has (or is being given) access.
    pub fn is_granted(self) -> bool {
        matches!(self, AccessState::Approved | AccessState::Active)
    }
}

impl fmt::Display for AccessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AccessState {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccessState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            InvalidInput::new(
                "state",
                format!("{s:?} is not a state: pending, approved, active, ended, revoked, denied, cancelled, expired"),
            )
        })
    }
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved (counted by this).
    pub by_id: PersonId,
    /// Their UPN at the time, for display.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Progress of a Graph side effect (elevation or removal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectStatus {
    /// Queued or being retried.
    Pending,
    /// A removal that took the guest out (or found them out) and keeps re-checking the membership
    /// until no elevation that started before the access ended can still add them back
    /// ([`ADD_IN_FLIGHT_BOUND`]).
    Verifying,
    Done,
    /// Dead-lettered after its retries; an operator is alarmed, and removals are re-sent.
    Failed,
}

/// A Graph side effect's status, visible in `GET /requests/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub status: EffectStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Effect {
    fn pending(now: DateTime<Utc>) -> Effect {
        Effect {
            status: EffectStatus::Pending,
            attempts: 0,
            last_error: None,
            updated_at: now,
        }
    }
}

/// The mails a request causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailKind {
    /// To the team alias: a new request waits for approval.
    Requested,
    /// To the requester.
    Approved,
    Denied,
    Expired,
    /// To the requester: the access ended (at its end, or revoked early).
    Ended,
}

impl MailKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Requested => "requested",
            MailKind::Approved => "approved",
            MailKind::Denied => "denied",
            MailKind::Expired => "expired",
            MailKind::Ended => "ended",
        }
    }
}

/// A stored access request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    pub tenant_id: TenantId,
    /// Who asked: every rule about the requester compares this.
    pub requester_id: PersonId,
    /// The requester's UPN in the provider tenant when they asked (also the guest's e-mail
    /// address); for display and mail.
    pub requester: String,
    pub requester_name: String,
    pub role_group: String,
    pub justification: String,
    pub ticket: String,
    pub duration_minutes: u32,
    pub state: AccessState,
    pub created_at: DateTime<Utc>,
    /// When a pending request expires.
    pub approval_deadline: DateTime<Utc>,
    pub approvals_required: u32,
    pub approvals: Vec<Approval>,
    /// Who denied, cancelled or revoked (`None` for the system), and why.
    pub decided_by_id: Option<PersonId>,
    /// Their UPN then, or `system:<component>`, for display.
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// When the access ends (set at approval: approval time plus the duration).
    pub ends_at: Option<DateTime<Utc>>,
    /// When granted access actually ended (at its end, or revoked): the removal re-checks the
    /// membership until [`ADD_IN_FLIGHT_BOUND`] after this.
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// The guest's object id in the customer tenant, once known.
    pub guest_id: Option<String>,
    /// The role group's object id, once known.
    pub group_id: Option<String>,
    pub elevation: Option<Effect>,
    pub removal: Option<Effect>,
    /// Mails delivered (a redelivered mail message sees them and does not mail twice).
    pub mails_sent: Vec<MailKind>,
}

/// A request refused by the rules; the API maps each to its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Input is not acceptable (400).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The caller may not do this (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request is not in a state that allows it (409); carries the current state.
    #[error("conflict: the request is {state}: {problem}")]
    Conflict { state: AccessState, problem: String },
}

fn conflict(state: AccessState, problem: impl Into<String>) -> Refusal {
    Refusal::Conflict {
        state,
        problem: problem.into(),
    }
}

/// What an engineer asks for (the body of `POST /requests`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccessRequest {
    pub tenant: String,
    pub role_group: String,
    pub justification: String,
    pub ticket: String,
    /// Minutes of access wanted (capped by the tenant's `access_max_hours`).
    pub duration_minutes: u32,
}

fn bounded_text(field: &str, value: &str, max: usize) -> Result<String, InvalidInput> {
    let v = value.trim();
    if v.is_empty() {
        return Err(InvalidInput::new(field, "is required"));
    }
    if v.chars().count() > max {
        return Err(InvalidInput::new(field, format!("is longer than {max} characters")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(InvalidInput::new(field, "contains control characters"));
    }
    Ok(v.to_string())
}

impl AccessRequest {
    /// A new pending request, checked against the tenant's limits and the caller's membership.
    pub fn new(
        id: String,
        input: &NewAccessRequest,
        caller: &Caller,
        tenant_settings: &TenantSettings,
        settings: &AccessSettings,
        now: DateTime<Utc>,
    ) -> Result<AccessRequest, Refusal> {
        if !caller.is_team_member(settings) {
            return Err(Refusal::Forbidden(format!(
                "{} is not a member of the team (needs one of the roles {:?} or a team group)",
                caller.upn, settings.team_roles
            )));
        }
        let tenant_id: TenantId = input.tenant.parse()?;
        let justification = bounded_text("justification", &input.justification, MAX_JUSTIFICATION_LEN)?;
        let ticket = bounded_text("ticket", &input.ticket, MAX_TICKET_LEN)?;
        let role_group = input.role_group.trim().to_string();
        if !tenant_settings
            .access_role_groups
            .iter()
            .any(|g| g.eq_ignore_ascii_case(&role_group))
        {
            return Err(InvalidInput::new(
                "role_group",
                format!(
                    "{role_group:?} is not allowed for tenant {tenant_id}; allowed: {}",
                    tenant_settings.access_role_groups.join(", ")
                ),
            )
            .into());
        }
        let max_minutes = tenant_settings.access_max_hours.saturating_mul(60);
        if input.duration_minutes < MIN_DURATION_MINUTES || input.duration_minutes > max_minutes {
            return Err(InvalidInput::new(
                "duration_minutes",
                format!(
                    "{} must be between {MIN_DURATION_MINUTES} and {max_minutes} (the tenant allows {} hours)",
                    input.duration_minutes, tenant_settings.access_max_hours
                ),
            )
            .into());
        }
        Ok(AccessRequest {
            id,
            tenant_id,
            requester_id: caller.id(),
            requester: caller.upn.clone(),
            requester_name: caller.name.clone(),
            role_group,
            justification,
            ticket,
            duration_minutes: input.duration_minutes,
            state: AccessState::Pending,
            created_at: now,
            approval_deadline: now + settings.approval_window(),
            approvals_required: settings.approvals_required,
            approvals: Vec::new(),
            decided_by_id: None,
            decided_by: None,
            reason: None,
            decided_at: None,
            ends_at: None,
            ended_at: None,
            guest_id: None,
            group_id: None,
            elevation: None,
            removal: None,
            mails_sent: Vec::new(),
        })
    }

    fn require_pending(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.state != AccessState::Pending {
            return Err(conflict(self.state, "it has already been decided"));
        }
        if now > self.approval_deadline {
            return Err(conflict(
                AccessState::Expired,
                format!("the approval window closed at {}", self.approval_deadline.to_rfc3339()),
            ));
        }
        Ok(())
    }

    /// Records an approval; grants access once enough distinct team members approved.
    pub fn approve(&mut self, caller: &Caller, settings: &AccessSettings, now: DateTime<Utc>) -> Result<(), Refusal> {
        self.require_pending(now)?;
        if self.is_requester(caller) {
            return Err(Refusal::Forbidden(
                "the requester cannot approve their own request".into(),
            ));
        }
        if !caller.may_approve(settings) {
            return Err(Refusal::Forbidden(format!(
                "{} is not a team member allowed to approve",
                caller.upn
            )));
        }
        if self.approvals.iter().any(|a| a.by_id == caller.id()) {
            return Err(conflict(self.state, format!("{} has already approved", caller.upn)));
        }
        self.approvals.push(Approval {
            by_id: caller.id(),
            by: caller.upn.clone(),
            at: now,
        });
        if self.approvals.len() as u32 >= self.approvals_required {
            self.state = AccessState::Approved;
            self.decided_at = Some(now);
            self.ends_at = Some(now + chrono::Duration::minutes(i64::from(self.duration_minutes)));
            self.elevation = Some(Effect::pending(now));
        }
        Ok(())
    }

    /// Denies a pending request.
    pub fn deny(
        &mut self,
        caller: &Caller,
        reason: &str,
        settings: &AccessSettings,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        self.require_pending(now)?;
        if self.is_requester(caller) {
            return Err(Refusal::Forbidden(
                "the requester cannot deny their own request (cancel it instead)".into(),
            ));
        }
        if !caller.may_approve(settings) {
            return Err(Refusal::Forbidden(format!(
                "{} is not a team member allowed to decide",
                caller.upn
            )));
        }
        let reason = bounded_text("reason", reason, MAX_REASON_LEN)?;
        self.finish(AccessState::Denied, Some(caller), Some(reason), now);
        Ok(())
    }

    /// Cancels a pending request (the requester only).
    pub fn cancel(&mut self, caller: &Caller, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.state != AccessState::Pending {
            return Err(conflict(self.state, "only a pending request can be cancelled"));
        }
        if !self.is_requester(caller) {
            return Err(Refusal::Forbidden("only the requester can cancel a request".into()));
        }
        self.finish(AccessState::Cancelled, Some(caller), None, now);
        Ok(())
    }

    /// Ends granted access early (the requester, or a team member allowed to approve).
    pub fn revoke(
        &mut self,
        caller: &Caller,
        reason: &str,
        settings: &AccessSettings,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        if !self.state.is_granted() {
            return Err(conflict(self.state, "only approved or active access can be revoked"));
        }
        if !self.is_requester(caller) && !caller.may_approve(settings) {
            return Err(Refusal::Forbidden(format!("{} may not revoke this access", caller.upn)));
        }
        let reason = if reason.trim().is_empty() {
            "revoked early".to_string()
        } else {
            bounded_text("reason", reason, MAX_REASON_LEN)?
        };
        self.finish(AccessState::Revoked, Some(caller), Some(reason), now);
        self.ended_at = Some(now);
        self.removal = Some(Effect::pending(now));
        Ok(())
    }

    /// The caller is the person who asked (by tenant and object id, whatever their UPN is now).
    pub fn is_requester(&self, caller: &Caller) -> bool {
        self.requester_id == caller.id()
    }

    /// May read this request and its trail: team members read all, a requester their own.
    pub fn may_read(&self, caller: &Caller, settings: &AccessSettings) -> bool {
        caller.is_team_member(settings) || self.is_requester(caller)
    }

    /// The expiry pass's transition for a request whose timer is due: `Some(new state)` if it
    /// changed (pending past its window -> expired; granted past its end -> ended).
    pub fn expire(&mut self, now: DateTime<Utc>) -> Option<AccessState> {
        match self.state {
            AccessState::Pending if now > self.approval_deadline => {
                self.finish(AccessState::Expired, None, Some("not approved in time".into()), now);
                Some(AccessState::Expired)
            }
            s if s.is_granted() && self.ends_at.is_some_and(|end| now >= end) => {
                self.state = AccessState::Ended;
                self.ended_at = Some(now);
                self.removal = Some(Effect::pending(now));
                Some(AccessState::Ended)
            }
            _ => None,
        }
    }

    fn finish(&mut self, state: AccessState, by: Option<&Caller>, reason: Option<String>, now: DateTime<Utc>) {
        self.state = state;
        self.decided_by_id = by.map(Caller::id);
        self.decided_by = Some(by.map_or_else(|| "system:access-expiry".to_string(), |c| c.upn.clone()));
        self.reason = reason;
        self.decided_at = Some(now);
    }

    /// True while a removal from the role group is outstanding (including its verification).
    pub fn removal_outstanding(&self) -> bool {
        self.removal.as_ref().is_some_and(|r| r.status != EffectStatus::Done)
    }

    /// Until when a removal keeps re-checking the membership: [`ADD_IN_FLIGHT_BOUND`] after the
    /// access ended.
    pub fn removal_verify_until(&self) -> Option<DateTime<Utc>> {
        let end = self.ended_at.or(self.decided_at)?;
        Some(end + chrono::Duration::from_std(ADD_IN_FLIGHT_BOUND).unwrap_or(chrono::Duration::minutes(10)))
    }

    /// The request's next timer: approval deadline, end, or removal re-check.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let after = |since: DateTime<Utc>, wait: Duration| {
            since + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(15))
        };
        match self.state {
            AccessState::Pending => Some(self.approval_deadline),
            AccessState::Approved | AccessState::Active => self.ends_at,
            AccessState::Ended | AccessState::Revoked if self.removal_outstanding() => {
                let removal = self.removal.as_ref()?;
                Some(match removal.status {
                    EffectStatus::Verifying => after(removal.updated_at, REMOVAL_VERIFY_INTERVAL),
                    _ => after(removal.updated_at, REVOCATION_RECHECK),
                })
            }
            _ => None,
        }
    }

    /// The same person's access to the same role group of the same tenant.
    pub fn same_grant(&self, other: &AccessRequest) -> bool {
        self.tenant_id == other.tenant_id
            && self.requester_id == other.requester_id
            && self.role_group.eq_ignore_ascii_case(&other.role_group)
    }

    fn to_record(&self) -> NewRecord {
        NewRecord {
            key: request_key(&self.id),
            body: serde_json::to_value(self).expect("an access request always serialises"),
            collection: Some(CollectionEntry {
                name: ACCESS_COLLECTION.into(),
                sort: format!("{}#{}#{}", self.state, self.created_at.to_rfc3339(), self.id),
            }),
            due: self.next_due().map(|at| DueEntry {
                kind: ACCESS_DUE_KIND.into(),
                at,
            }),
        }
    }

    fn from_record(record: &Record) -> Result<AccessRequest, StoreError> {
        crate::json::from_value(record.body.clone()).map_err(|reason| StoreError::Corrupt {
            key: record.key.clone(),
            reason,
        })
    }
}

/// A request with the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub request: AccessRequest,
    pub version: u64,
}

/// Filter of [`AccessRequests::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFilter {
    pub state: Option<AccessState>,
    pub tenant: Option<String>,
    /// By the requester's UPN at the time they asked (display; team members' filter).
    pub requester: Option<String>,
    /// By the requester's identity (what a non-member's list is narrowed to).
    pub requester_id: Option<PersonId>,
}

/// Most requests one list returns (and reads from the collection when filtering by tenant or
/// requester only): a page for a person, not an export.
pub const MAX_LIST: usize = 500;

/// What a decision writes with the request, in the same transaction: its side effects (outbox),
/// its audit entries, and any other record it implies (e.g. an idempotency key).
#[derive(Debug, Default)]
pub struct Change {
    pub effects: Vec<AccessWork>,
    pub audit: Vec<AuditEntry>,
    pub writes: Vec<Write>,
}

impl Change {
    /// A change with these side effects and one audit entry.
    pub fn new(effects: Vec<AccessWork>, audit: AuditEntry) -> Change {
        Change {
            effects,
            audit: vec![audit],
            writes: Vec::new(),
        }
    }
}

/// Access requests in the store.
pub struct AccessRequests<'a> {
    store: &'a dyn Store,
}

impl<'a> AccessRequests<'a> {
    /// The repository over `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        AccessRequests { store }
    }

    /// Stores a new request with its change (fails with `ConditionFailed` if the id exists).
    pub async fn create(
        &self,
        request: &AccessRequest,
        change: Change,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.write(request, Condition::Absent, change, now).await
    }

    /// Replaces the request if it is still at `version`, with its change in the same transaction.
    pub async fn decide(
        &self,
        request: &AccessRequest,
        version: u64,
        change: Change,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.write(request, Condition::Version(version), change, now).await
    }

    async fn write(
        &self,
        request: &AccessRequest,
        condition: Condition,
        change: Change,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let relay_at = now + chrono::Duration::from_std(OUTBOX_GRACE).unwrap_or(chrono::Duration::seconds(30));
        let entries: Vec<OutboxEntry> = change
            .effects
            .iter()
            .map(|work| OutboxEntry {
                key: Key::new(
                    format!("access#{}", request.id),
                    format!("outbox#{}", uuid::Uuid::new_v4()),
                ),
                message: AccessMessage::new(request, *work),
            })
            .collect();
        let mut writes = vec![Write::Put {
            record: request.to_record(),
            condition,
        }];
        for entry in &entries {
            writes.push(Write::Put {
                record: NewRecord {
                    key: entry.key.clone(),
                    body: serde_json::to_value(&entry.message).expect("an access message always serialises"),
                    collection: None,
                    due: Some(DueEntry {
                        kind: OUTBOX_DUE_KIND.into(),
                        at: relay_at,
                    }),
                },
                condition: Condition::Absent,
            });
        }
        writes.extend(change.audit.into_iter().map(Write::audit));
        writes.extend(change.writes);
        self.store.transact(writes).await?;
        Ok(entries)
    }

    /// Outbox entries whose sender did not queue them in time.
    pub async fn outbox_due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let records = self.store.due(OUTBOX_DUE_KIND, now, limit).await?;
        let mut due = Vec::with_capacity(records.len());
        for r in records {
            match crate::json::from_value(r.body.clone()) {
                Ok(message) => due.push(OutboxEntry { key: r.key, message }),
                Err(e) => crate::quarantine::quarantine(self.store, &r, &e, now).await?,
            }
        }
        Ok(due)
    }

    /// Removes an outbox entry once its message is queued.
    pub async fn outbox_done(&self, key: &Key) -> Result<(), StoreError> {
        self.store
            .transact(vec![Write::Delete {
                key: key.clone(),
                condition: Condition::Any,
            }])
            .await
    }

    /// The request with this id.
    pub async fn get(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        match self.store.get(&request_key(id)).await? {
            Some(record) => Ok(Some(Versioned {
                request: AccessRequest::from_record(&record)?,
                version: record.version,
            })),
            None => Ok(None),
        }
    }

    /// Requests matching the filter, newest first within a state.
    pub async fn list(&self, filter: &ListFilter, limit: usize) -> Result<Vec<AccessRequest>, StoreError> {
        let prefix = filter.state.map(|s| format!("{s}#")).unwrap_or_default();
        let records = self.store.collection(ACCESS_COLLECTION, &prefix, MAX_LIST).await?;
        let mut out = Vec::new();
        for record in records.iter().rev() {
            let r = AccessRequest::from_record(record)?;
            if filter
                .tenant
                .as_deref()
                .is_some_and(|t| !t.eq_ignore_ascii_case(r.tenant_id.as_str()))
            {
                continue;
            }
            if filter
                .requester
                .as_deref()
                .is_some_and(|q| !q.eq_ignore_ascii_case(&r.requester))
            {
                continue;
            }
            if filter.requester_id.as_ref().is_some_and(|id| *id != r.requester_id) {
                continue;
            }
            out.push(r);
            if out.len() >= limit.min(MAX_LIST) {
                break;
            }
        }
        Ok(out)
    }

    /// Every live grant (approved or active request), for a removal or the sweep to decide which
    /// memberships still hold. A record that does not decode is left out (and reported in the
    /// second list): it grants nothing, so its guest is removed, which fails safe; the timer
    /// pass quarantines it at its due time. More than [`MAX_LIVE_GRANTS`] fails the read: acting
    /// on a partial list would remove guests that hold access.
    pub async fn live_grants(&self) -> Result<(Vec<AccessRequest>, Vec<StoreError>), StoreError> {
        let mut out = Vec::new();
        let mut undecodable = Vec::new();
        for state in [AccessState::Approved, AccessState::Active] {
            let records = self
                .store
                .collection(ACCESS_COLLECTION, &format!("{state}#"), MAX_LIVE_GRANTS + 1)
                .await?;
            if out.len() + records.len() > MAX_LIVE_GRANTS {
                return Err(StoreError::Invalid(format!(
                    "more than {MAX_LIVE_GRANTS} live access grants; refusing to reconcile memberships on a partial list"
                )));
            }
            for record in &records {
                match AccessRequest::from_record(record) {
                    Ok(r) => out.push(r),
                    Err(e) => undecodable.push(e),
                }
            }
        }
        Ok((out, undecodable))
    }

    /// Requests whose timer is due at `now`, earliest first. A record that does not decode is
    /// quarantined with its reason (see [`crate::quarantine`]) and left out, so the others go on.
    pub async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Versioned>, StoreError> {
        let records = self.store.due(ACCESS_DUE_KIND, now, limit).await?;
        let mut due = Vec::with_capacity(records.len());
        for r in &records {
            match AccessRequest::from_record(r) {
                Ok(request) => due.push(Versioned {
                    request,
                    version: r.version,
                }),
                Err(e) => crate::quarantine::quarantine(self.store, r, &e.to_string(), now).await?,
            }
        }
        Ok(due)
    }

    /// Audits a refused decision by a team member, apart from the request's trail.
    pub async fn audit_refusal(&self, id: &str, mut entry: AuditEntry) -> Result<(), StoreError> {
        entry.subject = refusals_subject(id);
        self.store.append_audit(entry).await
    }

    /// A page of the request's trail, newest first.
    pub async fn trail(&self, id: &str, before: Option<&str>, limit: usize) -> Result<AuditPage, StoreError> {
        self.store.audit_page(&audit_subject(id), before, limit).await
    }
}

/// Due-index kind of outbox entries: side effects recorded with a decision, not yet queued.
pub const OUTBOX_DUE_KIND: &str = "access-outbox";
/// How long an outbox entry waits before the expiry pass relays it: the deciding request queues
/// its own messages at once, so only entries whose sender died (or whose queue failed) are relayed.
pub const OUTBOX_GRACE: Duration = Duration::from_secs(30);
/// Where the access settings are kept (one record per deployment).
pub fn settings_key() -> Key {
    Key::new("config#access", "settings")
}

/// A side effect stored in the same transaction as the decision that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub key: Key,
    pub message: AccessMessage,
}

/// Reads the access settings (defaults when none were saved).
pub async fn load_settings(store: &dyn Store) -> Result<AccessSettings, StoreError> {
    match store.get(&settings_key()).await? {
        Some(record) => crate::json::from_value(record.body.clone()).map_err(|reason| StoreError::Corrupt {
            key: record.key.clone(),
            reason,
        }),
        None => Ok(AccessSettings::default()),
    }
}

/// Validates and saves the access settings.
pub async fn save_settings(store: &dyn Store, settings: &AccessSettings) -> Result<(), SettingsError> {
    settings.validate()?;
    let record = NewRecord {
        key: settings_key(),
        body: serde_json::to_value(settings).expect("settings always serialise"),
        collection: None,
        due: None,
    };
    store
        .transact(vec![Write::Put {
            record,
            condition: Condition::Any,
        }])
        .await?;
    Ok(())
}

/// Why settings could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Current version of [`AccessMessage`].
pub const ACCESS_MESSAGE_VERSION: u64 = 1;

/// What an access-queue message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum AccessWork {
    /// Send one mail about the request.
    Mail { mail: MailKind },
    /// Put the guest in the role group.
    Elevate,
    /// Take the guest out of the role group.
    Remove,
}

/// A message on the access queue: one side effect of one request.
// Decoded through `AccessMessageWire`: serde's `flatten` of the tagged `work` said "expected
// variant identifier" for a bad `action`, naming no field (found by tests/fuzz_messages.rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AccessMessageWire")]
pub struct AccessMessage {
    pub v: u64,
    /// Always `access.work`.
    pub kind: String,
    pub request_id: String,
    /// The customer tenant (also lets the worker pace work per tenant).
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub work: AccessWork,
}

/// [`AccessMessage`] as it is on the queue (`work` flattened to `action` and `mail`).
#[derive(Deserialize)]
struct AccessMessageWire {
    v: u64,
    kind: String,
    request_id: String,
    tenant_id: TenantId,
    action: String,
    #[serde(default)]
    mail: Option<MailKind>,
}

impl TryFrom<AccessMessageWire> for AccessMessage {
    type Error = String;
    fn try_from(w: AccessMessageWire) -> Result<Self, String> {
        let work = match w.action.as_str() {
            "mail" => AccessWork::Mail {
                mail: w
                    .mail
                    .ok_or("mail: missing (the action \"mail\" needs the mail to send)")?,
            },
            "elevate" => AccessWork::Elevate,
            "remove" => AccessWork::Remove,
            other => return Err(format!("action: {other:?} is not one of mail, elevate, remove")),
        };
        Ok(AccessMessage {
            v: w.v,
            kind: w.kind,
            request_id: w.request_id,
            tenant_id: w.tenant_id,
            work,
        })
    }
}

impl AccessMessage {
    /// A message for `work` on `request`.
    pub fn new(request: &AccessRequest, work: AccessWork) -> Self {
        AccessMessage {
            v: ACCESS_MESSAGE_VERSION,
            kind: Self::KIND.into(),
            request_id: request.id.clone(),
            tenant_id: request.tenant_id.clone(),
            work,
        }
    }

    /// The JSON body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("an access message always serialises")
    }

    /// Short name of the work, for logs and dead letters.
    pub fn work_name(&self) -> String {
        match self.work {
            AccessWork::Mail { mail } => format!("mail.{}", mail.as_str()),
            AccessWork::Elevate => "elevate".into(),
            AccessWork::Remove => "remove".into(),
        }
    }
}

impl Message for AccessMessage {
    const KIND: &'static str = "access.work";
    const VERSIONS: &'static [u64] = &[ACCESS_MESSAGE_VERSION];

    fn validate(&self) -> Result<(), String> {
        if self.request_id.trim().is_empty() || self.request_id.len() > 64 {
            return Err("request_id: empty or longer than 64 characters".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::decode;

    /// A caller whose object id is fixed per name, as a person's is.
    fn caller(upn: &str, roles: &[&str]) -> Caller {
        Caller {
            upn: upn.into(),
            oid: format!("oid-{}", upn.split('@').next().unwrap_or(upn)),
            tenant_id: "11111111-2222-3333-4444-555555555555".into(),
            name: upn.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            groups: Vec::new(),
        }
    }

    fn input() -> NewAccessRequest {
        NewAccessRequest {
            tenant: "aaaaaaaa-2222-3333-4444-555555555555".into(),
            role_group: "Modern Workplace Roles-SOC".into(),
            justification: "investigate an alert".into(),
            ticket: "INC1".into(),
            duration_minutes: 60,
        }
    }

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn pending(settings: &AccessSettings) -> AccessRequest {
        let alice = caller("alice@p.example", &["Access.SOC"]);
        AccessRequest::new(
            "r1".into(),
            &input(),
            &alice,
            &TenantSettings::default(),
            settings,
            t0(),
        )
        .unwrap()
    }

    #[test]
    fn new_requests_are_checked() {
        let s = AccessSettings::default();
        let ts = TenantSettings::default();
        let alice = caller("alice@p.example", &["Access.SOC"]);
        let mut i = input();
        i.duration_minutes = 8 * 60 + 1;
        let e = AccessRequest::new("r".into(), &i, &alice, &ts, &s, t0()).unwrap_err();
        assert!(e.to_string().contains("duration_minutes"), "{e}");
        let mut i = input();
        i.role_group = "Global Admins".into();
        assert!(
            AccessRequest::new("r".into(), &i, &alice, &ts, &s, t0())
                .unwrap_err()
                .to_string()
                .contains("role_group")
        );
        let mut i = input();
        i.justification = "  ".into();
        assert!(
            AccessRequest::new("r".into(), &i, &alice, &ts, &s, t0())
                .unwrap_err()
                .to_string()
                .contains("justification")
        );
        let mut i = input();
        i.ticket = String::new();
        assert!(
            AccessRequest::new("r".into(), &i, &alice, &ts, &s, t0())
                .unwrap_err()
                .to_string()
                .contains("ticket")
        );
        let outsider = caller("eve@p.example", &["Reader"]);
        assert!(matches!(
            AccessRequest::new("r".into(), &input(), &outsider, &ts, &s, t0()),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn two_keys_and_one_vote_per_person() {
        let s = AccessSettings {
            approvals_required: 2,
            ..AccessSettings::default()
        };
        let mut r = pending(&s);
        let alice = caller("alice@p.example", &["Access.SOC"]);
        let bob = caller("bob@p.example", &["Access.SOC"]);
        let carol = caller("carol@p.example", &["Access.ServiceEngineering"]);
        let eve = caller("eve@p.example", &["Reader"]);
        assert!(matches!(r.approve(&alice, &s, t0()), Err(Refusal::Forbidden(_))));
        assert!(matches!(r.approve(&eve, &s, t0()), Err(Refusal::Forbidden(_))));
        r.approve(&bob, &s, t0()).unwrap();
        assert_eq!(r.state, AccessState::Pending);
        assert!(matches!(r.approve(&bob, &s, t0()), Err(Refusal::Conflict { .. })));
        r.approve(&carol, &s, t0()).unwrap();
        assert_eq!(r.state, AccessState::Approved);
        assert_eq!(r.ends_at, Some(t0() + chrono::Duration::minutes(60)));
        let e = r.approve(&eve, &s, t0()).unwrap_err();
        assert!(matches!(
            e,
            Refusal::Conflict {
                state: AccessState::Approved,
                ..
            }
        ));
    }

    #[test]
    fn rules_follow_the_object_id_not_the_name() {
        let s = AccessSettings::default();
        let mut r = pending(&s);
        // Alice renamed: same oid, new UPN. Still the requester.
        let mut renamed = caller("alice@p.example", &["Access.SOC"]);
        renamed.upn = "alice.smith@p.example".into();
        assert!(r.is_requester(&renamed));
        assert!(matches!(r.approve(&renamed, &s, t0()), Err(Refusal::Forbidden(_))));
        // Someone else renamed to Alice's old UPN is not the requester.
        let mut impostor = caller("mallory@p.example", &["Access.SOC"]);
        impostor.upn = "alice@p.example".into();
        assert!(!r.is_requester(&impostor));
        assert!(matches!(r.cancel(&impostor, t0()), Err(Refusal::Forbidden(_))));
        // One vote per person, whatever name they approve under.
        let s2 = AccessSettings {
            approvals_required: 2,
            ..AccessSettings::default()
        };
        let mut r = pending(&s2);
        let bob = caller("bob@p.example", &["Access.SOC"]);
        r.approve(&bob, &s2, t0()).unwrap();
        let mut bob_renamed = bob.clone();
        bob_renamed.upn = "robert@p.example".into();
        assert!(matches!(
            r.approve(&bob_renamed, &s2, t0()),
            Err(Refusal::Conflict { .. })
        ));
        assert_eq!(r.state, AccessState::Pending);
        // Reads: team members, and the requester even without a team role.
        let mut ex_member = caller("alice@p.example", &[]);
        ex_member.upn = "alice@p.example".into();
        assert!(r.may_read(&ex_member, &s2));
        assert!(r.may_read(&bob, &s2));
        assert!(!r.may_read(&caller("eve@p.example", &["Reader"]), &s2));
    }

    #[test]
    fn the_window_closes() {
        let s = AccessSettings::default();
        let mut r = pending(&s);
        let bob = caller("bob@p.example", &["Access.SOC"]);
        let late = t0() + chrono::Duration::minutes(61);
        assert!(matches!(
            r.approve(&bob, &s, late),
            Err(Refusal::Conflict {
                state: AccessState::Expired,
                ..
            })
        ));
        assert_eq!(r.expire(late), Some(AccessState::Expired));
        assert_eq!(r.next_due(), None);
    }

    #[test]
    fn granted_access_ends_and_keeps_a_removal_timer() {
        let s = AccessSettings::default();
        let mut r = pending(&s);
        r.approve(&caller("bob@p.example", &["Access.SOC"]), &s, t0()).unwrap();
        assert_eq!(r.expire(t0() + chrono::Duration::minutes(59)), None);
        assert_eq!(r.expire(t0() + chrono::Duration::minutes(60)), Some(AccessState::Ended));
        assert!(r.removal_outstanding());
        assert!(r.next_due().is_some());
        assert!(
            r.revoke(&caller("bob@p.example", &["Access.SOC"]), "x", &s, t0())
                .is_err()
        );
    }

    #[test]
    fn approver_roles_narrow_who_decides() {
        let s = AccessSettings {
            approver_roles: vec!["Access.Approver".into()],
            ..AccessSettings::default()
        };
        let mut r = pending(&s);
        assert!(matches!(
            r.approve(&caller("bob@p.example", &["Access.SOC"]), &s, t0()),
            Err(Refusal::Forbidden(_))
        ));
        r.approve(&caller("bob@p.example", &["Access.SOC", "Access.Approver"]), &s, t0())
            .unwrap();
        assert_eq!(r.state, AccessState::Approved);
    }

    #[test]
    fn messages_round_trip() {
        let r = pending(&AccessSettings::default());
        for work in [
            AccessWork::Mail {
                mail: MailKind::Requested,
            },
            AccessWork::Elevate,
            AccessWork::Remove,
        ] {
            let m = AccessMessage::new(&r, work);
            assert_eq!(decode::<AccessMessage>(&m.to_body()).unwrap(), m);
        }
        assert!(AccessSettings::default().validate().is_ok());
    }
}
