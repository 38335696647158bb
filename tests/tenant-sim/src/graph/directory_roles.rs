//! `/directoryRoles`: the activated built-in roles (by id or `(roleTemplateId='...')`), activating
//! one from its template, their members, and adding a member reference (a user, or a group created
//! role-assignable).
//!
//! A new tenant has only Global Administrator active; `GET /directoryRoles` lists activated roles
//! only, and every other role is activated with `POST /directoryRoles {"roleTemplateId"}` (201 with
//! the role; a second activation answers 400 "A conflicting object ... is present in the
//! directory"): <https://learn.microsoft.com/en-us/graph/api/directoryrole-post-directoryroles>,
//! <https://learn.microsoft.com/en-us/graph/api/resources/directoryroletemplate>.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::groups;
use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::{Obj, Tenant};
use crate::tenants::{BUILT_IN_ROLES, role_object};

/// Entra ID's answer to activating a role that is active already.
pub const CONFLICTING_OBJECT: &str =
    "A conflicting object with one or more of the specified property values is present in the directory.";
/// Entra ID's answer to putting a group that was not created role-assignable into a role.
pub const GROUP_NOT_ROLE_ASSIGNABLE: &str =
    "Groups without IsAssignableToRole property set cannot be assigned to roles.";

/// Properties a client may send when activating a role.
const ACTIVATE_PROPERTIES: &[&str] = &["roleTemplateId", "displayName", "description"];

const SPEC: ListSpec<'static> = ListSpec {
    entity_set: "directoryRoles",
    type_name: "DirectoryRole",
    filterable: &["id", "displayName", "roleTemplateId"],
    sortable: &["displayName"],
    count_needs_eventual: true,
    default_select: None,
};

/// The role id for an id or a `roleTemplateId=...` key.
fn resolve(t: &Tenant, ctx: &Ctx, key: &str) -> Result<String, GraphError> {
    let found = match key.strip_prefix("roleTemplateId=") {
        Some(template) => t.directory_roles.visible(ctx.now).find(|r| {
            r.data
                .get("roleTemplateId")
                .and_then(Value::as_str)
                .is_some_and(|x| x.eq_ignore_ascii_case(template))
        }),
        None => t.directory_roles.get(key, ctx.now),
    };
    found
        .map(|r| r.id.clone())
        .ok_or_else(|| GraphError::not_found(key.trim_start_matches("roleTemplateId=")))
}

/// `GET /directoryRoles`.
pub fn list(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(
        ctx,
        &SPEC,
        t.directory_roles.visible(ctx.now).map(|o| o.data.clone()).collect(),
    )
}

/// `POST /directoryRoles`: activates a role from its template.
pub fn activate(t: &mut Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let body = &odata::entity_body(ctx, "microsoft.graph.directoryRole")?;
    for k in body.keys() {
        if !ACTIVATE_PROPERTIES.contains(&k.as_str()) {
            return Err(GraphError::bad_request(format!("Invalid property '{k}'.")));
        }
    }
    let template = body
        .get("roleTemplateId")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            GraphError::bad_request(
                "Invalid value specified for property 'roleTemplateId' of resource 'DirectoryRole'.",
            )
        })?;
    let (display, template) = BUILT_IN_ROLES
        .iter()
        .find(|(_, id)| id.eq_ignore_ascii_case(template))
        .ok_or_else(|| GraphError::not_found(template))?;
    // Activation is unique per template, through replication lag.
    let active = t.directory_roles.all().any(|r| {
        r.data
            .get("roleTemplateId")
            .and_then(Value::as_str)
            .is_some_and(|x| x.eq_ignore_ascii_case(template))
    });
    if active {
        return Err(GraphError::bad_request(CONFLICTING_OBJECT));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let data = role_object(&id, display, template);
    t.directory_roles.insert(Obj {
        id,
        visible_at: ctx.visible_at(),
        data: data.clone(),
    });
    let mut out = data;
    out.insert(
        "@odata.context".into(),
        json!(format!("{}/v1.0/$metadata#directoryRoles/$entity", ctx.base)),
    );
    Ok(GraphResponse::json(StatusCode::CREATED, Value::Object(out)))
}

/// `GET /directoryRoles/{id}`.
pub fn get(t: &Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    let id = resolve(t, ctx, key)?;
    let role = t
        .directory_roles
        .get(&id, ctx.now)
        .ok_or_else(|| GraphError::not_found(key))?;
    odata::single(ctx, &SPEC, &role.data)
}

/// `GET /directoryRoles/{id}/members`.
pub fn members(t: &Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    let id = resolve(t, ctx, key)?;
    let spec = ListSpec {
        entity_set: "directoryObjects",
        type_name: "DirectoryObject",
        filterable: &["id", "displayName", "userPrincipalName"],
        sortable: &["displayName"],
        count_needs_eventual: true,
        default_select: None,
    };
    odata::list(ctx, &spec, groups::member_objects(t, ctx, &id))
}

/// `POST /directoryRoles/{id}/members/$ref`.
pub fn add_member(t: &mut Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    let member = groups::ref_body(ctx)?;
    let id = resolve(t, ctx, key)?;
    if let Some(group) = t.groups.get(&member, ctx.now)
        && group.data.get("isAssignableToRole") != Some(&Value::Bool(true))
    {
        return Err(GraphError::bad_request(GROUP_NOT_ROLE_ASSIGNABLE));
    }
    groups::add_reference(t, ctx, &id, &member)
}

/// `DELETE /directoryRoles/{id}/members/{member}/$ref`.
pub fn remove_member(t: &mut Tenant, ctx: &Ctx, key: &str, member: &str) -> Result<GraphResponse, GraphError> {
    let id = resolve(t, ctx, key)?;
    groups::remove_reference(t, &id, member)
}
