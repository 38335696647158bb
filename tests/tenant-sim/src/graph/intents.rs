//! Intune security baselines, Graph **beta** only (v1.0 has none): the templates
//! (`/beta/deviceManagement/templates`), `createInstance`, and the intents it makes
//! (`/beta/deviceManagement/intents`, get, delete, `assignments`).
//!
//! From Microsoft's beta reference:
//! - createInstance: `POST /deviceManagement/templates/{id}/createInstance`, parameters
//!   `displayName`, `description`, `settingsDelta` (deviceManagementSettingInstance collection) and
//!   `roleScopeTagIds` (string collection); answers 200 with the deviceManagementIntent.
//!   https://learn.microsoft.com/graph/api/intune-deviceintent-devicemanagementtemplate-createinstance?view=graph-rest-beta
//! - The template: `isDeprecated` ("You cannot create a new intent from a deprecated template"),
//!   `templateType` (`securityBaseline`, ...).
//!   https://learn.microsoft.com/graph/api/resources/intune-deviceintent-devicemanagementtemplate?view=graph-rest-beta
//! - The intent: `id`, `displayName`, `description`, `isAssigned`, `isMigratingToConfigurationPolicy`,
//!   `lastModifiedDateTime`, `templateId`, `roleScopeTagIds`.
//!   https://learn.microsoft.com/graph/api/resources/intune-deviceintent-devicemanagementintent?view=graph-rest-beta
//!
//! Intune errors use the generic OData codes (`BadRequest`), as for device configurations.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::device_management::now_text;
use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::{Obj, Tenant};

/// The Windows security baseline template every simulated tenant offers ("Security Baseline for
/// Windows 10 and later"), as `GET /beta/deviceManagement/templates` lists it.
pub const WINDOWS_BASELINE_TEMPLATE_ID: &str = "034ccd46-190c-4afc-adf1-ad7cc11262eb";
/// An older, deprecated Windows baseline version (Intune keeps old versions listed, deprecated).
pub const DEPRECATED_WINDOWS_BASELINE_TEMPLATE_ID: &str = "c04a010a-e7c5-44b1-a814-88df6f053f16";

/// The parameters `createInstance` takes.
const CREATE_INSTANCE_PARAMETERS: &[&str] = &["displayName", "description", "settingsDelta", "roleScopeTagIds"];

const TEMPLATE_SPEC: ListSpec<'static> = ListSpec {
    entity_set: "deviceManagement/templates",
    type_name: "DeviceManagementTemplate",
    filterable: &["id", "displayName", "templateType", "isDeprecated"],
    sortable: &["displayName"],
    count_needs_eventual: false,
    default_select: None,
};

const INTENT_SPEC: ListSpec<'static> = ListSpec {
    entity_set: "deviceManagement/intents",
    type_name: "DeviceManagementIntent",
    filterable: &["id", "displayName", "templateId"],
    sortable: &["displayName"],
    count_needs_eventual: false,
    default_select: None,
};

/// The templates a new tenant lists (current and deprecated Windows baselines).
pub fn seeded_templates(now: tokio::time::Instant) -> crate::store::Collection {
    let mut c = crate::store::Collection::default();
    for (id, name, version, deprecated) in [
        (
            WINDOWS_BASELINE_TEMPLATE_ID,
            "Security Baseline for Windows 10 and later",
            "November 2021",
            false,
        ),
        (
            DEPRECATED_WINDOWS_BASELINE_TEMPLATE_ID,
            "Security Baseline for Windows 10 and later",
            "August 2020",
            true,
        ),
    ] {
        let data = json!({
            "@odata.type": "#microsoft.graph.securityBaselineTemplate",
            "id": id,
            "displayName": name,
            "description": "Microsoft's recommended security settings for Windows devices.",
            "versionInfo": version,
            "isDeprecated": deprecated,
            "intentCount": 0,
            "templateType": "securityBaseline",
            "platformType": "windows10AndLater",
            "templateSubtype": "none",
            "publishedDateTime": "2021-11-01T00:00:00Z",
        });
        c.insert(Obj {
            id: id.to_string(),
            visible_at: now,
            data: data.as_object().cloned().unwrap_or_default(),
        });
    }
    c
}

/// `GET /beta/deviceManagement/templates`.
pub fn list_templates(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(
        ctx,
        &TEMPLATE_SPEC,
        t.intent_templates.visible(ctx.now).map(|o| o.data.clone()).collect(),
    )
}

/// `GET /beta/deviceManagement/templates/{id}`.
pub fn get_template(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let tpl = t
        .intent_templates
        .get(id, ctx.now)
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    odata::single(ctx, &TEMPLATE_SPEC, &tpl.data)
}

/// `POST /beta/deviceManagement/templates/{id}/createInstance`.
pub fn create_instance(t: &mut Tenant, ctx: &Ctx, template_id: &str) -> Result<GraphResponse, GraphError> {
    let body = ctx.body_object()?;
    validate_create_instance(body)?;
    let template = t
        .intent_templates
        .get_mut(template_id, ctx.now)
        .ok_or_else(|| GraphError::intune_not_found(template_id))?;
    if template.data.get("isDeprecated").and_then(Value::as_bool) == Some(true) {
        return Err(GraphError::bad_request_generic(format!(
            "Template '{template_id}' is deprecated; a new intent cannot be created from a deprecated template."
        )));
    }
    let count = template.data.get("intentCount").and_then(Value::as_i64).unwrap_or(0) + 1;
    template.data.insert("intentCount".into(), json!(count));
    let template_key = template.id.clone();
    let id = uuid::Uuid::new_v4().to_string();
    let data = json!({
        "id": id,
        "displayName": body.get("displayName").cloned().unwrap_or(Value::Null),
        "description": body.get("description").cloned().unwrap_or(Value::Null),
        "isAssigned": false,
        "isMigratingToConfigurationPolicy": false,
        "lastModifiedDateTime": now_text(),
        "templateId": template_key,
        "roleScopeTagIds": body.get("roleScopeTagIds").cloned().unwrap_or_else(|| json!(["0"])),
    });
    let mut data = data.as_object().cloned().unwrap_or_default();
    t.intents.insert(Obj {
        id,
        visible_at: ctx.visible_at(),
        data: data.clone(),
    });
    data.insert(
        "@odata.context".into(),
        json!(format!("{}/beta/$metadata#deviceManagementIntent", ctx.base)),
    );
    Ok(GraphResponse::json(StatusCode::OK, Value::Object(data)))
}

/// Graph's 400s for a `createInstance` body: an unknown parameter, a blank `displayName`, or a
/// parameter of the wrong type.
fn validate_create_instance(body: &Map<String, Value>) -> Result<(), GraphError> {
    if let Some(unknown) = body
        .keys()
        .find(|k| !CREATE_INSTANCE_PARAMETERS.contains(&k.as_str()) && k.as_str() != "@odata.type")
    {
        return Err(GraphError::bad_request_generic(format!(
            "The parameter '{unknown}' in the request payload is not a valid parameter for the operation 'createInstance'."
        )));
    }
    if odata::is_blank(body.get("displayName")) {
        return Err(GraphError::bad_request_generic(
            "The parameter 'displayName' is required and cannot be empty.",
        ));
    }
    if body.get("description").is_some_and(|v| !v.is_string() && !v.is_null()) {
        return Err(GraphError::bad_request_generic(
            "Invalid value for parameter 'description': a string is expected.",
        ));
    }
    if let Some(delta) = body.get("settingsDelta") {
        let items = delta.as_array().ok_or_else(|| {
            GraphError::bad_request_generic("Invalid value for parameter 'settingsDelta': a collection is expected.")
        })?;
        for item in items {
            let ok =
                item.get("@odata.type").and_then(Value::as_str).is_some_and(|t| {
                    t.starts_with("#microsoft.graph.deviceManagement") && t.ends_with("SettingInstance")
                }) && item
                    .get("definitionId")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.is_empty());
            if !ok {
                return Err(GraphError::bad_request_generic(
                    "Each item of 'settingsDelta' must be a deviceManagementSettingInstance with '@odata.type' and 'definitionId'.",
                ));
            }
        }
    }
    if let Some(tags) = body.get("roleScopeTagIds")
        && !tags.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(GraphError::bad_request_generic(
            "Invalid value for parameter 'roleScopeTagIds': a collection of strings is expected.",
        ));
    }
    Ok(())
}

/// `GET /beta/deviceManagement/intents`.
pub fn list_intents(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(
        ctx,
        &INTENT_SPEC,
        t.intents.visible(ctx.now).map(|o| o.data.clone()).collect(),
    )
}

/// `GET /beta/deviceManagement/intents/{id}`.
pub fn get_intent(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let intent = t
        .intents
        .get(id, ctx.now)
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    odata::single(ctx, &INTENT_SPEC, &intent.data)
}

/// `DELETE /beta/deviceManagement/intents/{id}`.
pub fn delete_intent(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    if !t.intents.remove(id, ctx.now) {
        return Err(GraphError::intune_not_found(id));
    }
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// `GET /beta/deviceManagement/intents/{id}/assignments`: the simulator never assigns an intent,
/// so the list is empty (and `isAssigned` stays false).
pub fn intent_assignments(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    t.intents
        .get(id, ctx.now)
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    let spec = ListSpec {
        entity_set: "deviceManagement/intents('id')/assignments",
        type_name: "DeviceManagementIntentAssignment",
        filterable: &["id"],
        sortable: &[],
        count_needs_eventual: false,
        default_select: None,
    };
    odata::list(ctx, &spec, Vec::new())
}
