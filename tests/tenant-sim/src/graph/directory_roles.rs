//! `/directoryRoles`: the activated built-in roles (by id or `(roleTemplateId='...')`), their
//! members, and adding a member reference.

use serde_json::Value;

use super::groups;
use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::Tenant;

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
    groups::add_reference(t, ctx, &id, &member)
}

/// `DELETE /directoryRoles/{id}/members/{member}/$ref`.
pub fn remove_member(t: &mut Tenant, ctx: &Ctx, key: &str, member: &str) -> Result<GraphResponse, GraphError> {
    let id = resolve(t, ctx, key)?;
    groups::remove_reference(t, &id, member)
}
