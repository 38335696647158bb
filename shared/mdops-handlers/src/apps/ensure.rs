//! The per-app handler: one catalogue app in one tenant.
//!
//! 1. Find the app by its marker (`notes: mdops-catalogue:<key>`) among the tenant's apps: one is
//!    adopted; several, or an unmarked app of the same package (or link), dead-letter the message
//!    with what to do (never one picked silently, never the customer's own app taken over).
//! 2. None: create it, but only once the replication-lag window since an earlier attempt has
//!    passed; the attempt is recorded in the store before the POST, and the created id after it.
//!    A create whose answer was lost is never sent again blind: the message comes back after the
//!    lag window and finds before it creates.
//! 3. Its assignments: the ring groups with the catalogue's intent, the app's other assignments
//!    kept as they are; `assign` is sent only if they differ (so an app in place costs no write).
//!
//! Throttling and transient errors leave the message to come back on its own; after the queue's
//! receive limit it is dead-lettered with its last reason. A permanent error dead-letters it at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_core::apps::AppMessage;
use mdops_core::message::decode;
use mdops_core::queue::Failure;
use mdops_core::store::{AuditEntry, Condition, Key, NewRecord, put_if};
use mdops_graph::{ErrorClass, GraphError, Query, TenantGraph};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument;

use super::{IntuneApp, KIND, assign_body, assignments, list_apps, lookalikes, marked, split};
use crate::deps::Deps;
use crate::disposition::{Disposition, REDELIVER_AFTER};

/// What the store keeps about a create, so a redelivery neither creates twice nor loses the id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CreateRecord {
    /// When a create was last sent.
    attempt_at: DateTime<Utc>,
    /// The id Graph answered with, once it answered.
    #[serde(default)]
    id: Option<String>,
}

fn create_key(message: &AppMessage) -> Key {
    Key::new(
        format!("apps#{}", message.tenant_id),
        format!("app#{}", message.app.key),
    )
}

/// What one delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureReport {
    pub app_id: String,
    pub created: bool,
    pub assigned: bool,
}

/// How a delivery ends early.
enum Stop {
    /// Leave the message to come back after this long.
    Later(Duration, String),
    /// Dead-letter it with this reason.
    Fail(String),
}

/// Handles one app message.
pub async fn handle(body: &str, receive_count: u32, deps: &Deps) -> Disposition {
    let message = match decode::<AppMessage>(body) {
        Ok(m) => m,
        Err(e) => return Disposition::malformed(&e, KIND, receive_count, deps),
    };
    let span =
        tracing::info_span!("app_ensure", tenant = %message.tenant_id, app = %message.app.key, attempt = receive_count);
    handle_decoded(&message, receive_count, deps).instrument(span).await
}

async fn handle_decoded(message: &AppMessage, receive_count: u32, deps: &Deps) -> Disposition {
    let fail = |reason: String| {
        Disposition::DeadLetter(Failure {
            reason,
            tenant: Some(message.tenant_id.to_string()),
            step: Some(format!("{KIND}:{}", message.app.key)),
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
    match ensure(&graph, message, deps).await {
        Ok(report) => {
            tracing::info!(app_id = %report.app_id, created = report.created, assigned = report.assigned, "catalogue app in place");
            if report.created || report.assigned {
                let entry = AuditEntry {
                    subject: format!("apps:{}", message.tenant_id),
                    actor: format!("system:apps ({})", message.requested_by),
                    action: "app.ensured".into(),
                    detail: json!({
                        "key": message.app.key,
                        "app_id": report.app_id,
                        "created": report.created,
                        "assigned": report.assigned,
                        "rings": message.app.rings,
                        "intent": message.app.intent,
                    }),
                    at: deps.now(),
                };
                if let Err(e) = deps.store.append_audit(entry).await {
                    // The app is in place; a redelivery finds it so and writes nothing more.
                    tracing::warn!(error = %e, "could not audit a catalogue app");
                }
            }
            Disposition::Ack
        }
        Err(Stop::Later(after, error)) => Disposition::Redeliver {
            after: after.min(crate::onboarding::MAX_QUEUE_DELAY),
            error,
        },
        Err(Stop::Fail(reason)) => fail(reason),
    }
}

/// A Graph error as the end of this delivery.
fn stop(what: &str, e: GraphError) -> Stop {
    match e.classification() {
        ErrorClass::Permanent => Stop::Fail(format!("{what}: {}", e.reason())),
        class => Stop::Later(
            class.retry_after().unwrap_or(REDELIVER_AFTER),
            format!("{what}: {}", e.reason()),
        ),
    }
}

/// Finds or creates the app, then sets its ring assignments if they differ.
async fn ensure(graph: &TenantGraph, message: &AppMessage, deps: &Deps) -> Result<EnsureReport, Stop> {
    let app = &message.app;
    let what = format!("app {:?} ({})", app.display_name, app.key);
    let apps = list_apps(graph)
        .await
        .map_err(|e| stop(&format!("{what}: listing the tenant's apps"), e))?;
    let (app_id, created) = match marked(app, &apps).as_slice() {
        [one] => (one.id.clone(), false),
        [] => find_recorded_or_create(graph, message, deps, &apps, &what).await?,
        several => {
            let ids: Vec<&str> = several.iter().map(|a| a.id.as_str()).collect();
            return Err(Stop::Fail(format!(
                "{what}: {} apps in tenant {} carry the marker {:?} ({}); keep the one in use, delete the others, then replay this message",
                several.len(),
                message.tenant_id,
                app.marker(),
                ids.join(", ")
            )));
        }
    };
    let current = match assignments(graph, &app_id).await {
        Ok(a) => a,
        // Just created: Intune may not show it to every read yet.
        Err(e) if created && e.is_not_found() => {
            return Err(Stop::Later(
                deps.lag_window,
                format!("{what}: created as {app_id}, not readable yet (replication lag)"),
            ));
        }
        Err(e) => return Err(stop(&format!("{what}: reading its assignments"), e)),
    };
    let groups = message.ring_groups();
    let split = split(&current, &groups);
    if split.stray == 0 && split.held == app.wanted() {
        return Ok(EnsureReport {
            app_id,
            created,
            assigned: false,
        });
    }
    let body = assign_body(app, &groups, &split.others);
    match graph
        .post_no_content(&format!("deviceAppManagement/mobileApps/{app_id}/assign"), &body)
        .await
    {
        Ok(()) => Ok(EnsureReport {
            app_id,
            created,
            assigned: true,
        }),
        Err(e) if created && e.is_not_found() => Err(Stop::Later(
            deps.lag_window,
            format!("{what}: created as {app_id}, not assignable yet (replication lag)"),
        )),
        // `assign` replaces the whole set: sending it again is harmless, so a lost answer is retried.
        Err(e) => Err(stop(&format!("{what}: assigning it to its rings"), e)),
    }
}

async fn find_recorded_or_create(
    graph: &TenantGraph,
    message: &AppMessage,
    deps: &Deps,
    apps: &[IntuneApp],
    what: &str,
) -> Result<(String, bool), Stop> {
    let app = &message.app;
    let store_err = |e: mdops_core::store::StoreError| Stop::Later(REDELIVER_AFTER, format!("{what}: store: {e}"));
    let record = deps.store.get(&create_key(message)).await.map_err(store_err)?;
    let previous: Option<CreateRecord> = record.and_then(|r| serde_json::from_value(r.body).ok());
    // An earlier delivery created it and Graph answered: read it by id (lists may lag behind).
    if let Some(id) = previous.as_ref().and_then(|p| p.id.clone()) {
        let found = graph
            .get_opt::<IntuneApp>(&format!("deviceAppManagement/mobileApps/{id}"), &Query::default())
            .await
            .map_err(|e| stop(&format!("{what}: reading the app created as {id}"), e))?;
        match found {
            Some(a) if a.notes.as_deref() == Some(app.marker().as_str()) => return Ok((id, false)),
            // Deleted since (or its marker removed): created again below, after the lag window.
            _ => tracing::info!(%id, "the app created earlier is gone; creating it again"),
        }
    }
    if let Some(p) = &previous {
        let since = (deps.now() - p.attempt_at).to_std().unwrap_or(Duration::ZERO);
        if let Some(remaining) = deps.lag_window.checked_sub(since).filter(|r| !r.is_zero()) {
            return Err(Stop::Later(
                remaining,
                format!(
                    "{what}: an earlier attempt may have created it; waiting for replication before creating again"
                ),
            ));
        }
    }
    let similar = lookalikes(app, apps);
    if !similar.is_empty() {
        let ids: Vec<&str> = similar.iter().map(|a| a.id.as_str()).collect();
        return Err(Stop::Fail(format!(
            "{what}: tenant {} already has an app of this package or link that mdops did not make ({}); to adopt it, set its notes to {:?}; or delete it; then replay this message",
            message.tenant_id,
            ids.join(", "),
            app.marker()
        )));
    }
    let attempt = CreateRecord {
        attempt_at: deps.now(),
        id: None,
    };
    let record = |r: &CreateRecord| NewRecord {
        key: create_key(message),
        body: json!(r),
        collection: None,
        due: None,
    };
    put_if(deps.store.as_ref(), record(&attempt), Condition::Any)
        .await
        .map_err(store_err)?;
    match graph
        .post::<_, IntuneApp>("deviceAppManagement/mobileApps", &app.create_body())
        .await
    {
        Ok(created) => {
            let done = CreateRecord {
                id: Some(created.id.clone()),
                ..attempt
            };
            if let Err(e) = put_if(deps.store.as_ref(), record(&done), Condition::Any).await {
                // The marker still finds it once the list shows it.
                tracing::warn!(error = %e, "could not record a created app's id");
            }
            Ok((created.id, true))
        }
        Err(e) if e.outcome_unknown() => Err(Stop::Later(
            deps.lag_window,
            format!(
                "{what}: the create's answer was lost ({}); finding it by its marker before creating again",
                e.reason()
            ),
        )),
        Err(e) => Err(stop(&format!("{what}: creating it"), e)),
    }
}
