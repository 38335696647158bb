//! Intune: `/deviceManagement/deviceConfigurations` (create by `@odata.type`, get, update, delete,
//! `assign`, `assignments`) and `/deviceManagement/detectedApps` (paged); mobile apps are in
//! [`super::apps`]. Intune errors use the generic OData codes (`BadRequest`).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::intune_schema;
use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::{Obj, Tenant};

/// Device configuration types the simulator accepts.
const CONFIGURATION_TYPES: &[&str] = &[
    "#microsoft.graph.windowsUpdateForBusinessConfiguration",
    "#microsoft.graph.windows10EndpointProtectionConfiguration",
    "#microsoft.graph.windows10GeneralConfiguration",
    "#microsoft.graph.windows10CustomConfiguration",
    "#microsoft.graph.windowsDefenderAdvancedThreatProtectionConfiguration",
    "#microsoft.graph.windowsIdentityProtectionConfiguration",
    "#microsoft.graph.windowsDeliveryOptimizationConfiguration",
    "#microsoft.graph.windowsHealthMonitoringConfiguration",
    "#microsoft.graph.sharedPCConfiguration",
    "#microsoft.graph.editionUpgradeConfiguration",
];

const CONFIG_SPEC: ListSpec<'static> = ListSpec {
    entity_set: "deviceManagement/deviceConfigurations",
    type_name: "DeviceConfiguration",
    filterable: &["id", "displayName"],
    sortable: &["displayName"],
    count_needs_eventual: false,
    default_select: None,
};

/// The `allDevicesAssignmentTarget` and the fixed id Intune gives the "All devices" virtual group.
pub const ALL_DEVICES_TARGET: (&str, &str) = (
    "#microsoft.graph.allDevicesAssignmentTarget",
    "acacacac-9df4-4c7d-9d50-4ef0226f57a9",
);
/// The `allLicensedUsersAssignmentTarget` and the fixed id of the "All users" virtual group.
pub const ALL_USERS_TARGET: (&str, &str) = (
    "#microsoft.graph.allLicensedUsersAssignmentTarget",
    "adadadad-808e-44e2-905a-0b7873a8a531",
);

/// The key of an assignment target (a group id, or the virtual group's id), or a 400 naming what
/// is wrong. Shared by configuration and app assignments.
pub fn target_key(target: &Map<String, Value>) -> Result<String, GraphError> {
    let ty = target.get("@odata.type").and_then(Value::as_str).unwrap_or_default();
    match ty {
        "#microsoft.graph.groupAssignmentTarget" | "#microsoft.graph.exclusionGroupAssignmentTarget" => target
            .get("groupId")
            .and_then(Value::as_str)
            .and_then(|g| uuid::Uuid::parse_str(g).ok())
            .map(|g| g.to_string())
            .ok_or_else(|| GraphError::bad_request_generic("A group assignment target needs a valid 'groupId'.")),
        t if t == ALL_DEVICES_TARGET.0 => Ok(ALL_DEVICES_TARGET.1.into()),
        t if t == ALL_USERS_TARGET.0 => Ok(ALL_USERS_TARGET.1.into()),
        _ => Err(GraphError::bad_request_generic(format!(
            "Unsupported assignment target type '{ty}'."
        ))),
    }
}

/// The current time as Intune writes it.
pub fn now_text() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Checks a configuration body against its type's properties (see [`intune_schema`]).
fn validate_configuration(odata_type: &str, body: &Map<String, Value>) -> Result<(), GraphError> {
    if body.contains_key("displayName") && odata::is_blank(body.get("displayName")) {
        return Err(GraphError::bad_request_generic(
            "Invalid value for property 'displayName'.",
        ));
    }
    intune_schema::validate(odata_type, body)
}

/// `GET /deviceManagement/deviceConfigurations`.
pub fn list_configurations(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(
        ctx,
        &CONFIG_SPEC,
        t.device_configurations
            .visible(ctx.now)
            .map(|o| o.data.clone())
            .collect(),
    )
}

/// `POST /deviceManagement/deviceConfigurations`.
pub fn create_configuration(t: &mut Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let body = ctx.body_object()?;
    odata::check_odata_type(body, "microsoft.graph.deviceConfiguration")?;
    let odata_type = body
        .get("@odata.type")
        .and_then(Value::as_str)
        .filter(|t| t.trim_start_matches('#') != "microsoft.graph.deviceConfiguration")
        .ok_or_else(|| {
            GraphError::bad_request_generic(
                "Cannot create an abstract class: '@odata.type' of the device configuration is required.",
            )
        })?;
    if !CONFIGURATION_TYPES.contains(&odata_type) {
        return Err(GraphError::bad_request_generic(format!(
            "Unknown or unsupported '@odata.type' value '{odata_type}'."
        )));
    }
    if odata::is_blank(body.get("displayName")) {
        return Err(GraphError::bad_request_generic(
            "The property 'displayName' is required.",
        ));
    }
    validate_configuration(odata_type, body)?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut data = body.clone();
    data.insert("id".into(), json!(id));
    data.entry("description").or_insert(Value::Null);
    data.insert("createdDateTime".into(), json!(now_text()));
    data.insert("lastModifiedDateTime".into(), json!(now_text()));
    data.insert("version".into(), json!(1));
    t.device_configurations.insert(Obj {
        id,
        visible_at: ctx.visible_at(),
        data: data.clone(),
    });
    data.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#deviceManagement/deviceConfigurations/$entity",
            ctx.base
        )),
    );
    Ok(GraphResponse::json(StatusCode::CREATED, Value::Object(data)))
}

/// `GET /deviceManagement/deviceConfigurations/{id}`.
pub fn get_configuration(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let c = t
        .device_configurations
        .get(id, ctx.now)
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    odata::single(ctx, &CONFIG_SPEC, &c.data)
}

/// `PATCH /deviceManagement/deviceConfigurations/{id}`.
pub fn update_configuration(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let body = ctx.body_object()?;
    odata::check_odata_type(body, "microsoft.graph.deviceConfiguration")?;
    let c = t
        .device_configurations
        .get_mut(id, ctx.now)
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    let stored_type = c
        .data
        .get("@odata.type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(ty) = body.get("@odata.type").and_then(Value::as_str)
        && !odata::derives_from(ty, &stored_type)
    {
        return Err(GraphError::bad_request_generic(
            "The '@odata.type' of a device configuration cannot change.",
        ));
    }
    validate_configuration(&stored_type, body)?;
    for (k, v) in body {
        if k != "id" {
            c.data.insert(k.clone(), v.clone());
        }
    }
    let version = c.data.get("version").and_then(Value::as_i64).unwrap_or(1) + 1;
    c.data.insert("version".into(), json!(version));
    c.data.insert("lastModifiedDateTime".into(), json!(now_text()));
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// `DELETE /deviceManagement/deviceConfigurations/{id}`.
pub fn delete_configuration(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    if !t.device_configurations.remove(id, ctx.now) {
        return Err(GraphError::intune_not_found(id));
    }
    t.assignments.remove(&id.to_ascii_lowercase());
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// `POST /deviceManagement/deviceConfigurations/{id}/assign`: replaces the assignments.
pub fn assign(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let body = ctx.body_object()?;
    let list = body.get("assignments").and_then(Value::as_array).ok_or_else(|| {
        GraphError::bad_request_generic("The parameter 'assignments' is required and must be a collection.")
    })?;
    let cid = t
        .device_configurations
        .get(id, ctx.now)
        .map(|c| c.id.clone())
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    let mut out = Vec::new();
    for a in list {
        let target = a
            .get("target")
            .and_then(Value::as_object)
            .ok_or_else(|| GraphError::bad_request_generic("Each assignment needs a 'target' object."))?;
        let key = target_key(target)?;
        out.push(json!({"id": format!("{cid}_{key}"), "target": Value::Object(target.clone())}));
    }
    t.assignments.insert(cid.to_ascii_lowercase(), out.clone());
    Ok(GraphResponse::json(StatusCode::OK, json!({"value": out})))
}

/// `GET /deviceManagement/deviceConfigurations/{id}/assignments`.
pub fn assignments(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let cid = t
        .device_configurations
        .get(id, ctx.now)
        .map(|c| c.id.to_ascii_lowercase())
        .ok_or_else(|| GraphError::intune_not_found(id))?;
    let spec = ListSpec {
        entity_set: "deviceManagement/deviceConfigurations('id')/assignments",
        type_name: "DeviceConfigurationAssignment",
        filterable: &["id"],
        sortable: &["displayName"],
        count_needs_eventual: false,
        default_select: None,
    };
    let items = t.assignments.get(&cid).cloned().unwrap_or_default();
    odata::list(
        ctx,
        &spec,
        items.into_iter().filter_map(|v| v.as_object().cloned()).collect(),
    )
}

/// `GET /deviceManagement/detectedApps`.
pub fn detected_apps(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let spec = ListSpec {
        entity_set: "deviceManagement/detectedApps",
        type_name: "DetectedApp",
        filterable: &["id", "displayName"],
        sortable: &["displayName"],
        count_needs_eventual: false,
        default_select: None,
    };
    odata::list(
        ctx,
        &spec,
        t.detected_apps.visible(ctx.now).map(|o| o.data.clone()).collect(),
    )
}
