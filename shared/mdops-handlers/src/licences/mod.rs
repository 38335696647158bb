//! Licences: one message = one user's licence change in one tenant, so a throttled or failed user
//! never holds up the others.
//!
//! A change is handled in this order, each step able to end it:
//! 1. decode and validate ([`LicenceMessage`]); malformed -> dead letter with the reason;
//! 2. read the user (`id`, `usageLocation`, `assignedLicenses`);
//! 3. resolve part numbers and plan names through the tenant's SKUs ([`skus::SkuCache`]); unknown
//!    -> `Failed` listing what the tenant has;
//! 4. drop what the user already holds (same SKU, same disabled plans) and removals of what the
//!    user does not hold; nothing left -> `Done` with no write;
//! 5. check free units; none -> `Failed("no free SPE_E5 licences in tenant X: 25 of 25 used")`,
//!    decided on a fresh read, never on a cached one;
//! 6. give a user without `usageLocation` the tenant's default (PATCH), or fail naming the setting;
//! 7. `assignLicense`.
//!
//! Throttling and transient errors re-send the message with a delay (at most the SQS maximum) and
//! ack the one in hand, so the worker slot is free at once and no other user's message waits. The
//! attempts are counted in the store ([`attempts`]); past [`LicenceSettings::max_attempts`] the
//! change is dead-lettered with its last reason. Every finished change (done or failed) is an audit
//! entry under `licence:{tenant}:{user}`.
//!
//! [`fan_out`] turns an operator's request (one user, or every member of a group) into messages.

pub mod attempts;
pub mod fan_out;
pub mod skus;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use mdops_core::licences::LicenceMessage;
use mdops_core::message::decode;
use mdops_core::outcome::StepOutcome;
use mdops_core::queue::{Failure, OutgoingMessage, QueueName};
use mdops_core::store::{AuditEntry, StoreError};
use mdops_core::tenant::Tenant;
use mdops_graph::{ErrorClass, GraphError, Query, TenantGraph};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::deps::Deps;
use crate::disposition::{Disposition, REDELIVER_AFTER};
use crate::onboarding::MAX_QUEUE_DELAY;
use attempts::Attempts;
use skus::{SkuCache, SkuList, TenantSku};

pub use fan_out::{FanOut, FanOutError, Target, fan_out};

/// What the dead letters and audit entries of this queue call the work.
pub const KIND: &str = "licence.change";

/// Attempts at one change before it is dead-lettered with its last reason. Eight hops of Graph's
/// usual `Retry-After` (seconds to a few minutes) ride out a throttling storm; a change still
/// failing after that needs a person.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// Environment variable overriding the SKU cache's time to live, in seconds.
pub const SKU_TTL_ENV: &str = "MDOPS_SKU_CACHE_SECS";
/// Environment variable overriding [`DEFAULT_MAX_ATTEMPTS`].
pub const MAX_ATTEMPTS_ENV: &str = "MDOPS_LICENCE_MAX_ATTEMPTS";

/// `$select` for [`LicensedUser`].
const LICENSED_USER_SELECT: &[&str] = &["id", "userPrincipalName", "usageLocation", "assignedLicenses"];

/// How the licence handler behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenceSettings {
    /// How long a tenant's SKU list is served from memory.
    pub sku_ttl: Duration,
    /// Attempts at one change before it is dead-lettered.
    pub max_attempts: u32,
}

impl Default for LicenceSettings {
    fn default() -> Self {
        LicenceSettings {
            sku_ttl: skus::DEFAULT_SKU_TTL,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

impl LicenceSettings {
    /// The defaults, overridden by [`SKU_TTL_ENV`] and [`MAX_ATTEMPTS_ENV`] when they are set to
    /// whole numbers (anything else is reported and ignored).
    pub fn from_env() -> Self {
        Self::from_vars(|var| std::env::var(var).ok())
    }

    /// Like [`Self::from_env`], reading variables through `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut settings = LicenceSettings::default();
        let number = |var: &str| -> Option<u64> {
            let raw = get(var)?;
            match raw.trim().parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    tracing::warn!(%var, value = %raw, "not a whole number; using the default");
                    None
                }
            }
        };
        if let Some(secs) = number(SKU_TTL_ENV) {
            settings.sku_ttl = Duration::from_secs(secs);
        }
        if let Some(n) = number(MAX_ATTEMPTS_ENV) {
            settings.max_attempts = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        settings
    }
}

/// What the licence handler keeps between messages: its settings and the SKU cache. Built once
/// per process (a Lambda's `main`, or [`Licensing::process`] for the embedded worker).
pub struct Licensing {
    /// The settings.
    pub settings: LicenceSettings,
    /// Each tenant's SKUs.
    pub skus: SkuCache,
}

impl Licensing {
    /// A handler state with these settings and an empty cache.
    pub fn new(settings: LicenceSettings) -> Self {
        Licensing {
            settings,
            skus: SkuCache::new(settings.sku_ttl),
        }
    }

    /// The process's shared instance, configured from the environment on first use. The embedded
    /// worker's `dispatch` uses it (its `Deps` carry no licence state).
    pub fn process() -> &'static Licensing {
        static PROCESS: OnceLock<Licensing> = OnceLock::new();
        PROCESS.get_or_init(|| Licensing::new(LicenceSettings::from_env()))
    }
}

/// A user as the licence handler reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LicensedUser {
    id: String,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    usage_location: Option<String>,
    #[serde(default)]
    assigned_licenses: Vec<HeldLicence>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeldLicence {
    sku_id: String,
    #[serde(default)]
    disabled_plans: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AddLicence {
    sku_id: String,
    disabled_plans: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssignLicence<'a> {
    add_licenses: &'a [AddLicence],
    remove_licenses: &'a [String],
}

/// Handles one licence-change message with the process's shared [`Licensing`].
pub async fn handle(body: &str, receive_count: u32, deps: &Deps) -> Disposition {
    handle_with(body, receive_count, deps, Licensing::process()).await
}

/// Handles one licence-change message.
pub async fn handle_with(body: &str, receive_count: u32, deps: &Deps, licensing: &Licensing) -> Disposition {
    let message = match decode::<LicenceMessage>(body) {
        Ok(m) => m,
        Err(e) => return Disposition::malformed(&e, KIND, receive_count, deps),
    };
    let span = tracing::info_span!("licence", tenant = %message.tenant_id, user = %message.user, attempt = tracing::field::Empty);
    handle_decoded(message, body, deps, licensing).instrument(span).await
}

async fn handle_decoded(message: LicenceMessage, body: &str, deps: &Deps, licensing: &Licensing) -> Disposition {
    let attempts = match Attempts::load(deps.store.as_ref(), &message).await {
        Ok(a) => a,
        Err(e) => return redeliver(format!("state store: {e}")),
    };
    let attempt = attempts.current();
    tracing::Span::current().record("attempt", attempt);
    let now = deps.now();
    let age = (now - attempts.first_at(now)).to_std().unwrap_or(Duration::ZERO);

    let outcome = match deps.reach.tenant(&message.tenant_id).await {
        Ok((tenant, graph)) => match change(&tenant, &graph, &message, deps, licensing).await {
            Ok(outcome) => outcome,
            Err(e) => outcome_for(&e, age, deps.lag_window),
        },
        Err(e) if e.is_permanent() => StepOutcome::failed(e.to_string()),
        Err(e) => StepOutcome::retry(REDELIVER_AFTER, e.to_string()),
    };

    match outcome {
        StepOutcome::Done { output } => {
            tracing::info!(
                changed = output.get("changed").and_then(|c| c.as_bool()).unwrap_or(false),
                "licence change done"
            );
            if let Err(e) = audit(deps, &message, "licence.done", output).await {
                return redeliver(format!("audit log: {e}"));
            }
            if let Err(e) = attempts.clear(deps.store.as_ref()).await {
                tracing::warn!(error = %e, "could not clear the attempt record; it is overwritten by the next attempt");
            }
            Disposition::Ack
        }
        StepOutcome::Failed { reason } => give_up(&message, &attempts, attempt, reason, deps).await,
        StepOutcome::Retry { after, reason } => {
            if attempt >= licensing.settings.max_attempts {
                let reason = format!("gave up after {attempt} attempts; last: {reason}");
                return give_up(&message, &attempts, attempt, reason, deps).await;
            }
            match attempts.record(deps.store.as_ref(), &reason, now).await {
                Ok(()) => {}
                // Another delivery of the same change counted first: it carries the change on.
                Err(StoreError::ConditionFailed { .. }) => return Disposition::Ack,
                Err(e) => return redeliver(format!("state store: {e}")),
            }
            let delay = after.min(MAX_QUEUE_DELAY);
            tracing::info!(retry_after_ms = delay.as_millis() as u64, %reason, "licence change will retry");
            let again = OutgoingMessage {
                body: body.to_string(),
                delay,
            };
            match deps.queue.send(QueueName::Licences, again).await {
                Ok(_) => Disposition::Ack,
                // The message in hand stays; it comes back after the same wait.
                Err(e) => Disposition::Redeliver {
                    after: delay,
                    error: format!("{reason} (and re-queueing failed: {e})"),
                },
            }
        }
    }
}

fn redeliver(error: String) -> Disposition {
    Disposition::Redeliver {
        after: REDELIVER_AFTER,
        error,
    }
}

/// A Graph error as an outcome; a 404 is replication lag only while the change is young.
fn outcome_for(error: &GraphError, age: Duration, lag_window: Duration) -> StepOutcome {
    match error.classification_with_lag(age, lag_window) {
        ErrorClass::Throttled { retry_after } => {
            StepOutcome::retry(retry_after, format!("throttled: {}", error.reason()))
        }
        ErrorClass::Transient { retry_after } => {
            StepOutcome::retry(retry_after, format!("transient: {}", error.reason()))
        }
        ErrorClass::NotFoundMaybeLag { retry_after } => StepOutcome::retry(
            retry_after,
            format!("not found yet (replication lag?): {}", error.reason()),
        ),
        ErrorClass::Permanent => StepOutcome::failed(error.reason()),
    }
}

async fn give_up(
    message: &LicenceMessage,
    attempts: &Attempts,
    attempt: u32,
    reason: String,
    deps: &Deps,
) -> Disposition {
    tracing::warn!(%reason, "licence change failed");
    let detail = serde_json::json!({ "reason": reason, "attempts": attempt });
    if let Err(e) = audit(deps, message, "licence.failed", detail).await {
        return redeliver(format!("audit log: {e}"));
    }
    if let Err(e) = attempts.clear(deps.store.as_ref()).await {
        tracing::warn!(error = %e, "could not clear the attempt record");
    }
    Disposition::DeadLetter(Failure {
        reason,
        tenant: Some(message.tenant_id.to_string()),
        step: Some(KIND.to_string()),
        attempts: attempt,
        at: deps.now(),
    })
}

/// The audit subject of one user's licences in one tenant.
pub fn audit_subject(tenant: &str, user: &str) -> String {
    format!("licence:{tenant}:{}", user.to_ascii_lowercase())
}

async fn audit(
    deps: &Deps,
    message: &LicenceMessage,
    action: &str,
    mut detail: serde_json::Value,
) -> Result<(), StoreError> {
    if let Some(map) = detail.as_object_mut() {
        map.insert("add".into(), serde_json::json!(message.add));
        map.insert("remove".into(), serde_json::json!(message.remove));
        map.insert("disabled_plans".into(), serde_json::json!(message.disabled_plans));
        map.insert("requested_by".into(), serde_json::json!(message.requested_by));
    }
    deps.store
        .append_audit(AuditEntry {
            subject: audit_subject(message.tenant_id.as_str(), &message.user),
            actor: "system:licences".into(),
            action: action.into(),
            detail,
            at: deps.now(),
        })
        .await
}

/// Graph's message when a SKU has no free units (`Subscription ... does not have any available licenses.`).
/// Graph refusing a licence for a user without a valid `usageLocation`.
fn is_usage_location_refused(error: &GraphError) -> bool {
    error.status() == Some(400) && error.message().contains("invalid usage location")
}

fn is_out_of_units(error: &GraphError) -> bool {
    error.status() == Some(400) && error.message().contains("does not have any available licenses")
}

fn capacity_failure(tenant: &Tenant, sku: &TenantSku) -> StepOutcome {
    StepOutcome::failed(format!(
        "no free {} licences in tenant {}: {} of {} used",
        sku.sku_part_number, tenant.tenant_id, sku.consumed_units, sku.prepaid_units.enabled
    ))
}

/// Resolves part numbers, refetching once if the cached list lacks one. `Err(outcome)` on failure.
async fn resolve(
    list: &mut SkuList,
    tenant: &Tenant,
    graph: &TenantGraph,
    part_numbers: &[String],
    licensing: &Licensing,
    deps: &Deps,
) -> Result<Result<Vec<TenantSku>, StepOutcome>, GraphError> {
    if !list.fresh && part_numbers.iter().any(|p| list.by_part_number(p).is_none()) {
        // Maybe bought since the cached read.
        *list = licensing.skus.refresh(graph, deps.now()).await?;
    }
    let mut found = Vec::new();
    for part in part_numbers {
        match list.by_part_number(part) {
            Some(sku) => found.push(sku.clone()),
            None => {
                let has = list.part_numbers();
                return Ok(Err(StepOutcome::failed(format!(
                    "unknown SKU part number {part} in tenant {}: the tenant has {}",
                    tenant.tenant_id,
                    if has.is_empty() {
                        "no licence SKUs".to_string()
                    } else {
                        has.join(", ")
                    }
                ))));
            }
        }
    }
    Ok(Ok(found))
}

/// The plan ids to disable in `sku`, from the message's plan names (case-insensitive).
fn disabled_plan_ids(sku: &TenantSku, names: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = sku
        .service_plans
        .iter()
        .filter(|p| names.iter().any(|n| n.eq_ignore_ascii_case(&p.service_plan_name)))
        .map(|p| p.service_plan_id.to_ascii_lowercase())
        .collect();
    ids.sort();
    ids
}

fn same_plans(held: &[String], wanted: &[String]) -> bool {
    let a: BTreeSet<String> = held.iter().map(|s| s.to_ascii_lowercase()).collect();
    let b: BTreeSet<String> = wanted.iter().map(|s| s.to_ascii_lowercase()).collect();
    a == b
}

/// One attempt at the change. Graph errors are classified by the caller.
async fn change(
    tenant: &Tenant,
    graph: &TenantGraph,
    message: &LicenceMessage,
    deps: &Deps,
    licensing: &Licensing,
) -> Result<StepOutcome, GraphError> {
    let who = message.user.trim();
    if who.contains('/') || who.contains('?') {
        return Ok(StepOutcome::failed(format!(
            "user: {who:?} is neither an object id nor a userPrincipalName"
        )));
    }
    let user: LicensedUser = graph
        .get(&format!("users/{who}"), &Query::select(LICENSED_USER_SELECT))
        .await?;
    let upn = user.user_principal_name.clone().unwrap_or_else(|| who.to_string());

    let mut list = licensing.skus.get(graph, deps.now()).await?;
    let to_add_skus = match resolve(&mut list, tenant, graph, &message.add, licensing, deps).await? {
        Ok(s) => s,
        Err(outcome) => return Ok(outcome),
    };
    let to_remove_skus = match resolve(&mut list, tenant, graph, &message.remove, licensing, deps).await? {
        Ok(s) => s,
        Err(outcome) => return Ok(outcome),
    };
    if let Some(unknown) = message.disabled_plans.iter().find(|name| {
        !to_add_skus.iter().any(|s| {
            s.service_plans
                .iter()
                .any(|p| p.service_plan_name.eq_ignore_ascii_case(name))
        })
    }) {
        let mut plans: Vec<&str> = to_add_skus
            .iter()
            .flat_map(|s| s.service_plans.iter().map(|p| p.service_plan_name.as_str()))
            .collect();
        plans.sort();
        plans.dedup();
        return Ok(StepOutcome::failed(format!(
            "disabled_plans: {unknown} is not a service plan of {} (plans: {})",
            message.add.join(", "),
            plans.join(", ")
        )));
    }

    let held = |sku: &TenantSku| user.assigned_licenses.iter().find(|h| sku.is(&h.sku_id));
    let mut add = Vec::new();
    let mut add_names = Vec::new();
    let mut new_units = Vec::new();
    for sku in &to_add_skus {
        let plans = disabled_plan_ids(sku, &message.disabled_plans);
        match held(sku) {
            Some(h) if same_plans(&h.disabled_plans, &plans) => continue,
            Some(_) => {}
            None => new_units.push(sku.clone()),
        }
        add_names.push(sku.sku_part_number.clone());
        add.push(AddLicence {
            sku_id: sku.sku_id.clone(),
            disabled_plans: plans,
        });
    }
    let remove_skus: Vec<&TenantSku> = to_remove_skus.iter().filter(|s| held(s).is_some()).collect();
    let remove: Vec<String> = remove_skus.iter().map(|s| s.sku_id.clone()).collect();
    let remove_names: Vec<String> = remove_skus.iter().map(|s| s.sku_part_number.clone()).collect();
    if add.is_empty() && remove.is_empty() {
        return Ok(StepOutcome::done(serde_json::json!({
            "user_id": user.id, "upn": upn, "changed": false,
            "note": "the user already has exactly this licence change",
        })));
    }

    // Capacity: a cached "no free units" is never believed; read again before failing.
    if new_units.iter().any(|s| s.free() < 1) {
        if !list.fresh {
            list = licensing.skus.refresh(graph, deps.now()).await?;
        }
        if let Some(short) = new_units
            .iter()
            .filter_map(|s| list.by_part_number(&s.sku_part_number))
            .find(|s| s.free() < 1)
        {
            return Ok(capacity_failure(tenant, short));
        }
    }

    let mut usage_location_set = None;
    let has_location = user.usage_location.as_deref().is_some_and(|l| !l.trim().is_empty());
    if !add.is_empty() && !has_location {
        let Some(default) = tenant.settings.usage_location.clone() else {
            return Ok(StepOutcome::failed(format!(
                "user {upn} has no usageLocation and tenant {} has no default usage_location setting: \
                 set one (`mdops tenants add --usage-location XX`, or the setting usage_location) or give the user a usageLocation",
                tenant.tenant_id
            )));
        };
        graph
            .patch(
                &format!("users/{}", user.id),
                &serde_json::json!({ "usageLocation": default }),
            )
            .await?;
        tracing::info!(usage_location = %default, "gave the user the tenant's default usage location");
        usage_location_set = Some(default);
    }

    let body = AssignLicence {
        add_licenses: &add,
        remove_licenses: &remove,
    };
    if let Err(e) = graph
        .post_no_content(&format!("users/{}/assignLicense", user.id), &body)
        .await
    {
        if is_out_of_units(&e) {
            // Someone took the last unit since our read: report Graph's view with fresh numbers.
            let list = licensing.skus.refresh(graph, deps.now()).await?;
            if let Some(short) = new_units
                .iter()
                .filter_map(|s| list.by_part_number(&s.sku_part_number))
                .find(|s| s.free() < 1)
            {
                return Ok(capacity_failure(tenant, short));
            }
            return Ok(StepOutcome::failed(e.reason()));
        }
        if usage_location_set.is_some() && is_usage_location_refused(&e) {
            // We set usageLocation moments ago: a PATCH replicates like a create, and
            // assignLicense may still see the old (empty) value. Wait out the lag window and try
            // again, rather than dead-lettering a user whose location is already on its way.
            return Ok(StepOutcome::retry(
                deps.lag_window,
                format!(
                    "{upn}: assignLicense still sees no usageLocation right after it was set (replication lag); retrying"
                ),
            ));
        }
        return Err(e);
    }
    for sku in &new_units {
        licensing.skus.note_consumed(graph.tenant_id(), &sku.sku_id, 1).await;
    }
    for sku in &remove_skus {
        licensing.skus.note_consumed(graph.tenant_id(), &sku.sku_id, -1).await;
    }
    Ok(StepOutcome::done(serde_json::json!({
        "user_id": user.id,
        "upn": upn,
        "changed": true,
        "added": add_names,
        "removed": remove_names,
        "usage_location_set": usage_location_set,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_environment_and_ignore_what_is_not_a_number() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |var: &str| pairs.iter().find(|(k, _)| *k == var).map(|(_, v)| v.to_string())
        };
        assert_eq!(LicenceSettings::from_vars(|_| None), LicenceSettings::default());
        let set = LicenceSettings::from_vars(vars(&[(SKU_TTL_ENV, "5"), (MAX_ATTEMPTS_ENV, " 3 ")]));
        assert_eq!((set.sku_ttl, set.max_attempts), (Duration::from_secs(5), 3));
        let bad = LicenceSettings::from_vars(vars(&[(SKU_TTL_ENV, "a minute"), (MAX_ATTEMPTS_ENV, "0")]));
        assert_eq!((bad.sku_ttl, bad.max_attempts), (skus::DEFAULT_SKU_TTL, 1));
    }

    #[test]
    fn plans_compare_as_sets_and_names_resolve_to_ids() {
        assert!(same_plans(&["A".into(), "b".into()], &["B".into(), "a".into()]));
        assert!(!same_plans(&["a".into()], &[]));
        let sku = TenantSku {
            sku_id: "x".into(),
            sku_part_number: "SPE_E5".into(),
            consumed_units: 0,
            prepaid_units: skus::Units { enabled: 1 },
            service_plans: vec![
                skus::ServicePlan {
                    service_plan_id: "57FF2DA0-773E-42DF-B2AF-FFB7A2317929".into(),
                    service_plan_name: "TEAMS1".into(),
                },
                skus::ServicePlan {
                    service_plan_id: "efb87545-963c-4e0d-99df-69c6916d9eb0".into(),
                    service_plan_name: "EXCHANGE_S_ENTERPRISE".into(),
                },
            ],
        };
        assert_eq!(
            disabled_plan_ids(&sku, &["teams1".into()]),
            ["57ff2da0-773e-42df-b2af-ffb7a2317929"]
        );
        assert!(disabled_plan_ids(&sku, &[]).is_empty());
    }
}
