//! Intune's app catalogue, `/deviceAppManagement/mobileApps`: list, create by `@odata.type`, get,
//! delete, and the assignments (`assign` replaces them all, `assignments` lists them).
//!
//! From Microsoft's documentation:
//! - create: `@odata.type` names the app type (`mobileApp` is abstract); a `winGetApp` needs its
//!   `packageIdentifier` and `installExperience.runAsAccount` (`system` or `user`) at creation
//!   (https://learn.microsoft.com/graph/api/resources/intune-apps-wingetapp,
//!   https://learn.microsoft.com/graph/api/resources/intune-apps-wingetappinstallexperience);
//! - `notes` is a free-text property of every mobile app
//!   (https://learn.microsoft.com/graph/api/resources/intune-apps-mobileapp);
//! - `POST .../assign` with `mobileAppAssignments` answers 204 and replaces every assignment; each
//!   has an `intent` (`available`, `required`, `uninstall`, `availableWithoutEnrollment`) and a
//!   target (https://learn.microsoft.com/graph/api/intune-apps-mobileapp-assign,
//!   https://learn.microsoft.com/graph/api/resources/intune-apps-mobileappassignment);
//! - the properties of a `mobileApp`, a `winGetApp` and a `webApp` (v1.0): a create naming a
//!   property the type does not have is refused with 400, as for device configurations
//!   (https://learn.microsoft.com/graph/api/resources/intune-apps-mobileapp?view=graph-rest-1.0,
//!   https://learn.microsoft.com/graph/api/resources/intune-apps-wingetapp?view=graph-rest-1.0,
//!   https://learn.microsoft.com/graph/api/intune-apps-webapp-create?view=graph-rest-1.0);
//!   `publishingState` and `manifestHash` are read-only.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::device_management::{now_text, target_key};
use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::{Obj, Tenant};

/// Mobile app types the simulator accepts.
pub const MOBILE_APP_TYPES: &[&str] = &[
    "#microsoft.graph.win32LobApp",
    "#microsoft.graph.winGetApp",
    "#microsoft.graph.windowsMicrosoftEdgeApp",
    "#microsoft.graph.officeSuiteApp",
    "#microsoft.graph.windowsWebApp",
    "#microsoft.graph.webApp",
    "#microsoft.graph.windowsMobileMSI",
    "#microsoft.graph.windowsUniversalAppX",
];

/// The intents of a mobile app assignment.
pub const INTENTS: &[&str] = &["available", "required", "uninstall", "availableWithoutEnrollment"];

/// Properties Intune maintains; a create that sets them is refused.
const READ_ONLY: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "publishingState",
    "manifestHash",
];

/// What a property's JSON value must be.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Bool,
    Object,
}

/// The writable properties every mobile app has (v1.0 `mobileApp`).
const BASE: &[(&str, Kind)] = &[
    ("displayName", Kind::Text),
    ("description", Kind::Text),
    ("publisher", Kind::Text),
    ("largeIcon", Kind::Object),
    ("isFeatured", Kind::Bool),
    ("privacyInformationUrl", Kind::Text),
    ("informationUrl", Kind::Text),
    ("owner", Kind::Text),
    ("developer", Kind::Text),
    ("notes", Kind::Text),
];

/// The type-specific writable properties of the app types whose full list the simulator knows.
fn properties_of(odata_type: &str) -> Option<&'static [(&'static str, Kind)]> {
    match odata_type {
        "#microsoft.graph.winGetApp" => Some(&[("packageIdentifier", Kind::Text), ("installExperience", Kind::Object)]),
        "#microsoft.graph.webApp" => Some(&[("appUrl", Kind::Text), ("useManagedBrowser", Kind::Bool)]),
        _ => None,
    }
}

/// Refuses a property the type does not have and a value of the wrong kind (types the simulator
/// knows fully; others are checked for their base properties' kinds only).
fn validate_properties(odata_type: &str, body: &Map<String, Value>) -> Result<(), GraphError> {
    let specific = properties_of(odata_type);
    for (name, value) in body {
        if name == "@odata.type" {
            continue;
        }
        let kind = BASE
            .iter()
            .chain(specific.unwrap_or(&[]))
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k);
        let ok = match kind {
            None if specific.is_some() => {
                return Err(GraphError::bad_request_generic(format!(
                    "The property '{name}' does not exist on type '{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
                    odata_type.trim_start_matches('#')
                )));
            }
            None => true,
            Some(_) if value.is_null() => true,
            Some(Kind::Text) => value.is_string(),
            Some(Kind::Bool) => value.is_boolean(),
            Some(Kind::Object) => value.is_object(),
        };
        if !ok {
            return Err(GraphError::bad_request_generic(format!(
                "Invalid value for property '{name}'."
            )));
        }
    }
    Ok(())
}

const SPEC: ListSpec<'static> = ListSpec {
    entity_set: "deviceAppManagement/mobileApps",
    type_name: "MobileApp",
    filterable: &["id", "displayName", "isAssigned", "publisher"],
    sortable: &["displayName"],
    count_needs_eventual: false,
    default_select: None,
};

/// `GET /deviceAppManagement/mobileApps`.
pub fn list(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(
        ctx,
        &SPEC,
        t.mobile_apps.visible(ctx.now).map(|o| o.data.clone()).collect(),
    )
}

/// `GET /deviceAppManagement/mobileApps/{id}`.
pub fn get(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let app = t
        .mobile_apps
        .get(id, ctx.now)
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    odata::single(ctx, &SPEC, &app.data)
}

fn validate_win_get_app(body: &Map<String, Value>) -> Result<(), GraphError> {
    if odata::is_blank(body.get("packageIdentifier")) {
        return Err(GraphError::bad_request_generic(
            "The property 'packageIdentifier' is required when creating a winGetApp.",
        ));
    }
    let run_as = body
        .get("installExperience")
        .and_then(|e| e.get("runAsAccount"))
        .and_then(Value::as_str);
    if !matches!(run_as, Some("system" | "user")) {
        return Err(GraphError::bad_request_generic(
            "The property 'installExperience.runAsAccount' is required when creating a winGetApp: system or user.",
        ));
    }
    Ok(())
}

/// `POST /deviceAppManagement/mobileApps`.
pub fn create(t: &mut Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let body = ctx.body_object()?;
    let ty = body.get("@odata.type").and_then(Value::as_str).ok_or_else(|| {
        GraphError::bad_request_generic("Cannot create an abstract class: '@odata.type' of the mobile app is required.")
    })?;
    if !MOBILE_APP_TYPES.contains(&ty) {
        return Err(GraphError::bad_request_generic(format!(
            "Unknown or unsupported '@odata.type' value '{ty}'."
        )));
    }
    if odata::is_blank(body.get("displayName")) {
        return Err(GraphError::bad_request_generic(
            "The property 'displayName' is required.",
        ));
    }
    if let Some(k) = READ_ONLY.iter().find(|k| body.contains_key(**k)) {
        return Err(GraphError::bad_request_generic(format!("Property '{k}' is read-only.")));
    }
    validate_properties(ty, body)?;
    if ty == "#microsoft.graph.winGetApp" {
        validate_win_get_app(body)?;
    }
    if ty == "#microsoft.graph.webApp" && odata::is_blank(body.get("appUrl")) {
        return Err(GraphError::bad_request_generic(
            "The property 'appUrl' is required when creating a webApp.",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut data = body.clone();
    data.insert("id".into(), json!(id));
    data.insert("createdDateTime".into(), json!(now_text()));
    data.insert("lastModifiedDateTime".into(), json!(now_text()));
    data.entry("notes").or_insert(Value::Null);
    data.insert("isAssigned".into(), json!(false));
    data.insert("publishingState".into(), json!("published"));
    t.mobile_apps.insert(Obj {
        id,
        visible_at: ctx.visible_at(),
        data: data.clone(),
    });
    data.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#deviceAppManagement/mobileApps/$entity",
            ctx.base
        )),
    );
    Ok(GraphResponse::json(StatusCode::CREATED, Value::Object(data)))
}

/// `DELETE /deviceAppManagement/mobileApps/{id}`.
pub fn delete(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    if !t.mobile_apps.remove(id, ctx.now) {
        return Err(GraphError::intune_not_found(id));
    }
    t.app_assignments.remove(&id.to_ascii_lowercase());
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// `POST /deviceAppManagement/mobileApps/{id}/assign`: replaces the app's assignments.
pub fn assign(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let body = ctx.body_object()?;
    let list = body
        .get("mobileAppAssignments")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            GraphError::bad_request_generic(
                "The parameter 'mobileAppAssignments' is required and must be a collection.",
            )
        })?;
    let app_id = t
        .mobile_apps
        .get(id, ctx.now)
        .map(|a| a.id.clone())
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    let mut out = Vec::new();
    for a in list {
        if let Some(ty) = a.get("@odata.type").and_then(Value::as_str)
            && ty.trim_start_matches('#') != "microsoft.graph.mobileAppAssignment"
        {
            return Err(GraphError::bad_request_generic(format!(
                "A resource with type '{}' was found, but it is not assignable to the expected type 'microsoft.graph.mobileAppAssignment'.",
                ty.trim_start_matches('#')
            )));
        }
        let intent = a.get("intent").and_then(Value::as_str).unwrap_or_default();
        let Some(intent_index) = INTENTS.iter().position(|i| *i == intent) else {
            return Err(GraphError::bad_request_generic(format!(
                "Invalid value '{intent}' for property 'intent': expected one of {}.",
                INTENTS.join(", ")
            )));
        };
        let target = a
            .get("target")
            .and_then(Value::as_object)
            .ok_or_else(|| GraphError::bad_request_generic("Each assignment needs a 'target' object."))?;
        let key = target_key(target)?;
        let mut assignment = json!({
            "@odata.type": "#microsoft.graph.mobileAppAssignment",
            "id": format!("{key}_{intent_index}_0"),
            "intent": intent,
            "target": Value::Object(target.clone()),
        });
        if let Some(settings) = a.get("settings") {
            assignment["settings"] = settings.clone();
        }
        out.push(assignment);
    }
    let assigned = !out.is_empty();
    t.app_assignments.insert(app_id.to_ascii_lowercase(), out);
    if let Some(app) = t.mobile_apps.get_mut(&app_id, ctx.now) {
        app.data.insert("isAssigned".into(), json!(assigned));
        app.data.insert("lastModifiedDateTime".into(), json!(now_text()));
    }
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// `GET /deviceAppManagement/mobileApps/{id}/assignments`.
pub fn assignments(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let app_id = t
        .mobile_apps
        .get(id, ctx.now)
        .map(|a| a.id.to_ascii_lowercase())
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    let spec = ListSpec {
        entity_set: "deviceAppManagement/mobileApps('id')/assignments",
        type_name: "MobileAppAssignment",
        filterable: &["id", "intent"],
        sortable: &[],
        count_needs_eventual: false,
        default_select: None,
    };
    let items = t.app_assignments.get(&app_id).cloned().unwrap_or_default();
    odata::list(
        ctx,
        &spec,
        items.into_iter().filter_map(|v| v.as_object().cloned()).collect(),
    )
}
