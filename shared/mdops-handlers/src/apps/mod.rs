//! The app catalogue of a tenant kept in Intune: every catalogue app exists in
//! `deviceAppManagement/mobileApps` (found by its marker, created only if missing) and is assigned
//! to the catalogue's rings with the catalogue's intent.
//!
//! One file per job:
//! - [`catalogue`]: which catalogue a tenant has (its own, stored; or the built-in default).
//! - [`sync`]: read the tenant's apps and assignments, and send one [`AppMessage`] per app that is
//!   not in place on the onboarding queue; also the scheduled pass ([`sync::sync_if_due`]) the
//!   embedded worker's ticker and the ring-assignment function run.
//! - [`ensure`]: the per-app handler: find, create only if missing (never a blind re-send), assign.
//! - this module: reading the tenant's state and telling each app's status (`mdops apps show`).
//!
//! Graph, from Microsoft's documentation:
//! - `GET /deviceAppManagement/mobileApps` lists every app (paged), each with its `@odata.type`;
//!   `POST` creates one by `@odata.type` (https://learn.microsoft.com/graph/api/intune-apps-mobileapp-list?view=graph-rest-1.0,
//!   https://learn.microsoft.com/graph/api/intune-apps-webapp-create?view=graph-rest-1.0);
//! - `POST /deviceAppManagement/mobileApps/{id}/assign` with `mobileAppAssignments` answers 204 and
//!   replaces every assignment of the app; `GET .../assignments` lists them
//!   (https://learn.microsoft.com/graph/api/intune-apps-mobileapp-assign?view=graph-rest-1.0,
//!   https://learn.microsoft.com/graph/api/resources/intune-apps-mobileappassignment?view=graph-rest-1.0).

pub mod catalogue;
pub mod ensure;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};

use mdops_core::apps::{AppKind, CatalogueApp, Intent};
use mdops_core::tenant::Ring;
use mdops_graph::{GraphError, Query, TenantGraph};
use serde::{Deserialize, Serialize};

pub use ensure::handle;

use crate::rings::{RingError, ring_group};

/// What the dead letters and audit entries call an app message.
pub const KIND: &str = <mdops_core::apps::AppMessage as mdops_core::message::Message>::KIND;

/// Most pages of apps (100 a page) or assignments read: far above any tenant's app count, and a
/// bound so a misbehaving `nextLink` chain cannot loop forever.
const MAX_PAGES: usize = 100;

/// The `@odata.type` of an assignment and of its group target.
const ASSIGNMENT_TYPE: &str = "#microsoft.graph.mobileAppAssignment";
const GROUP_TARGET: &str = "#microsoft.graph.groupAssignmentTarget";

/// An Intune app as the catalogue jobs read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntuneApp {
    pub id: String,
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub package_identifier: Option<String>,
    #[serde(default)]
    pub app_url: Option<String>,
}

/// One assignment of an app, as Graph lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Assignment {
    #[serde(default)]
    pub intent: Option<String>,
    #[serde(default)]
    pub target: serde_json::Value,
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
}

impl Assignment {
    fn group_id(&self) -> Option<String> {
        (self.target.get("@odata.type").and_then(|t| t.as_str()) == Some(GROUP_TARGET))
            .then(|| self.target.get("groupId").and_then(|g| g.as_str()))
            .flatten()
            .map(str::to_ascii_lowercase)
    }

    fn intent(&self) -> Option<Intent> {
        match self.intent.as_deref() {
            Some("required") => Some(Intent::Required),
            Some("available") => Some(Intent::Available),
            _ => None,
        }
    }
}

/// Why the catalogue of a tenant could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// The ring groups could not be read (not onboarded, ambiguous, Graph).
    #[error(transparent)]
    Rings(#[from] RingError),
    /// Graph failed.
    #[error("reading the apps from Graph: {0}")]
    Graph(#[from] GraphError),
    /// The store failed (the tenant's catalogue).
    #[error("reading the tenant's catalogue: {0}")]
    Store(#[from] mdops_core::store::StoreError),
    /// The stored catalogue does not parse (written by another version?).
    #[error(
        "tenant {tenant}'s stored catalogue is not valid ({problem}); set it again with `mdops apps catalogue --tenant {tenant} --file F`"
    )]
    BadCatalogue { tenant: String, problem: String },
}

/// Where an app stands in the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// Not in Intune.
    Missing,
    /// In Intune, assigned to none of the rings.
    Present,
    /// In Intune, assigned exactly to the catalogue's rings with its intent.
    Assigned,
    /// In Intune, its ring assignments differ from the catalogue's (ring or intent).
    Drifted,
    /// Several apps carry its marker: mdops picks none.
    Ambiguous,
    /// Not marked, but an app of the same type and package (or link) is there: never adopted silently.
    Conflict,
}

/// One catalogue app against the tenant.
#[derive(Debug, Clone, Serialize)]
pub struct AppLine {
    pub key: String,
    pub display_name: String,
    pub kind: AppKind,
    pub status: AppStatus,
    /// The Intune app's id, when exactly one is found (the marked one, or the conflicting ones).
    pub app_ids: Vec<String>,
    /// The (ring, intent) assignments the catalogue wants.
    pub wanted: Vec<(Ring, Intent)>,
    /// The (ring, intent) assignments the app has to ring groups.
    pub held: Vec<(Ring, Intent)>,
    /// Assignments to other targets (left alone).
    pub other_assignments: usize,
}

/// The tenant's apps and ring groups, as the catalogue jobs read them.
pub struct TenantApps {
    pub groups: BTreeMap<Ring, String>,
    pub apps: Vec<IntuneApp>,
}

/// Reads the four ring groups and every Intune app.
pub async fn read_tenant(graph: &TenantGraph) -> Result<TenantApps, AppsError> {
    let mut groups = BTreeMap::new();
    for ring in Ring::ALL {
        groups.insert(ring, ring_group(graph, ring).await?);
    }
    let apps = list_apps(graph).await?;
    Ok(TenantApps { groups, apps })
}

/// Every Intune app (paged). Intune's `$filter` on apps covers few properties, so the match is made here.
pub async fn list_apps(graph: &TenantGraph) -> Result<Vec<IntuneApp>, GraphError> {
    graph
        .list_all("deviceAppManagement/mobileApps", &Query::default(), MAX_PAGES)
        .await
}

/// An app's assignments.
pub async fn assignments(graph: &TenantGraph, app_id: &str) -> Result<Vec<Assignment>, GraphError> {
    graph
        .list_all(
            &format!("deviceAppManagement/mobileApps/{app_id}/assignments"),
            &Query::default(),
            MAX_PAGES,
        )
        .await
}

/// The apps carrying the catalogue app's marker.
pub fn marked<'a>(app: &CatalogueApp, apps: &'a [IntuneApp]) -> Vec<&'a IntuneApp> {
    let marker = app.marker();
    apps.iter()
        .filter(|a| a.notes.as_deref().map(str::trim) == Some(marker.as_str()))
        .collect()
}

/// Unmarked apps of the same type and package identifier (or link): the customer's own.
pub fn lookalikes<'a>(app: &CatalogueApp, apps: &'a [IntuneApp]) -> Vec<&'a IntuneApp> {
    let marker = app.marker();
    apps.iter()
        .filter(|a| a.notes.as_deref().map(str::trim) != Some(marker.as_str()))
        .filter(|a| a.odata_type.as_deref() == Some(app.kind.odata_type()))
        .filter(|a| match app.kind {
            AppKind::Winget => match (&a.package_identifier, &app.package_identifier) {
                (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                _ => false,
            },
            AppKind::Web => match (&a.app_url, &app.app_url) {
                (Some(x), Some(y)) => x.trim_end_matches('/').eq_ignore_ascii_case(y.trim_end_matches('/')),
                _ => false,
            },
        })
        .collect()
}

/// An app's assignments, split.
pub struct Split {
    /// (ring, intent) of its assignments to ring groups with an intent we set.
    pub held: BTreeSet<(Ring, Intent)>,
    /// Assignments to ring groups with another intent (uninstall, ...): ours to correct.
    pub stray: usize,
    /// Assignments to other targets: left as they are.
    pub others: Vec<Assignment>,
}

/// Splits an app's assignments into its ring assignments and the others.
pub fn split(assignments: &[Assignment], groups: &BTreeMap<Ring, String>) -> Split {
    let by_group: BTreeMap<String, Ring> = groups.iter().map(|(r, g)| (g.to_ascii_lowercase(), *r)).collect();
    let mut out = Split {
        held: BTreeSet::new(),
        stray: 0,
        others: Vec::new(),
    };
    for a in assignments {
        match (a.group_id().and_then(|g| by_group.get(&g).copied()), a.intent()) {
            (Some(ring), Some(intent)) => {
                out.held.insert((ring, intent));
            }
            (Some(_), None) => out.stray += 1,
            (None, _) => out.others.push(a.clone()),
        }
    }
    out
}

/// The `assign` body: the other assignments as they are, and the catalogue's ring assignments.
pub fn assign_body(app: &CatalogueApp, groups: &BTreeMap<Ring, String>, others: &[Assignment]) -> serde_json::Value {
    let mut list: Vec<serde_json::Value> = others
        .iter()
        .map(|a| {
            let mut v = serde_json::json!({
                "@odata.type": ASSIGNMENT_TYPE,
                "intent": a.intent,
                "target": a.target,
            });
            if let Some(s) = &a.settings {
                v["settings"] = s.clone();
            }
            v
        })
        .collect();
    for (ring, intent) in app.wanted() {
        if let Some(group) = groups.get(&ring) {
            list.push(serde_json::json!({
                "@odata.type": ASSIGNMENT_TYPE,
                "intent": intent.as_str(),
                "target": { "@odata.type": GROUP_TARGET, "groupId": group },
            }));
        }
    }
    serde_json::json!({ "mobileAppAssignments": list })
}

/// One catalogue app's status against the tenant (reads the found app's assignments).
pub async fn app_line(graph: &TenantGraph, app: &CatalogueApp, tenant: &TenantApps) -> Result<AppLine, GraphError> {
    let mut line = AppLine {
        key: app.key.clone(),
        display_name: app.display_name.clone(),
        kind: app.kind,
        status: AppStatus::Missing,
        app_ids: Vec::new(),
        wanted: app.wanted().into_iter().collect(),
        held: Vec::new(),
        other_assignments: 0,
    };
    let found = marked(app, &tenant.apps);
    match found.as_slice() {
        [] => {
            let similar = lookalikes(app, &tenant.apps);
            if !similar.is_empty() {
                line.status = AppStatus::Conflict;
                line.app_ids = similar.iter().map(|a| a.id.clone()).collect();
            }
        }
        [one] => {
            line.app_ids = vec![one.id.clone()];
            let split = split(&assignments(graph, &one.id).await?, &tenant.groups);
            line.other_assignments = split.others.len();
            line.status = if split.stray == 0 && split.held == app.wanted() {
                AppStatus::Assigned
            } else if split.stray == 0 && split.held.is_empty() {
                AppStatus::Present
            } else {
                AppStatus::Drifted
            };
            line.held = split.held.into_iter().collect();
        }
        several => {
            line.status = AppStatus::Ambiguous;
            line.app_ids = several.iter().map(|a| a.id.clone()).collect();
        }
    }
    Ok(line)
}
