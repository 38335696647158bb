//! `/groups`: list/filter, create (validation, `members@odata.bind`), get, update, delete, and the
//! member references (`members`, `members/$ref`) with Entra ID's duplicate-reference answer. Members
//! are users, groups and devices; one request adds at most 20 links.
//!
//! Role-assignable groups (`isAssignableToRole: true`) follow the group resource's rules
//! (<https://learn.microsoft.com/en-us/graph/api/resources/group>): the property is set only at
//! creation and never changed, needs `securityEnabled: true` and no dynamic membership, and setting
//! it or changing such a group's members needs `RoleManagement.ReadWrite.Directory`; groups cannot
//! be nested in one (<https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/groups-concept>).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::{Obj, Tenant};

const WRITABLE: &[&str] = &[
    "description",
    "displayName",
    "groupTypes",
    "isAssignableToRole",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
    "visibility",
    "members@odata.bind",
    "owners@odata.bind",
];

const SPEC: ListSpec<'static> = ListSpec {
    entity_set: "groups",
    type_name: "Group",
    filterable: &[
        "id",
        "displayName",
        "mailNickname",
        "mail",
        "securityEnabled",
        "mailEnabled",
        "isAssignableToRole",
    ],
    sortable: &["displayName"],
    count_needs_eventual: true,
    default_select: None,
};

/// The permission that role-assignable groups need for their creation and membership changes.
pub const ROLE_MANAGEMENT: &str = "RoleManagement.ReadWrite.Directory";

/// Whether a group was created role-assignable.
pub fn is_role_assignable(group: &Map<String, Value>) -> bool {
    group.get("isAssignableToRole") == Some(&Value::Bool(true))
}

/// A caller without `RoleManagement.ReadWrite.Directory` may not touch a role-assignable group's
/// membership; nor may anyone nest a group in one.
fn check_role_assignable_membership(
    t: &Tenant,
    ctx: &Ctx,
    group_id: &str,
    members: &[String],
) -> Result<(), GraphError> {
    let Some(group) = t.groups.all().find(|g| g.id.eq_ignore_ascii_case(group_id)) else {
        return Ok(());
    };
    if !is_role_assignable(&group.data) {
        return Ok(());
    }
    if !ctx.caller.roles.iter().any(|r| r == ROLE_MANAGEMENT) {
        return Err(GraphError::forbidden());
    }
    if members
        .iter()
        .any(|m| t.groups.all().any(|g| g.id.eq_ignore_ascii_case(m)))
    {
        return Err(GraphError::bad_request(
            "Groups cannot be added as members of a group that can be assigned to roles.",
        ));
    }
    Ok(())
}

/// The message Entra ID answers when a member reference already exists.
pub const DUPLICATE_REFERENCE: &str =
    "One or more added object references already exist for the following modified properties: 'members'.";

/// The stored Graph JSON of a group from a validated create body.
pub fn group_object(id: &str, body: &Map<String, Value>) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("id".into(), json!(id));
    o.insert("description".into(), Value::Null);
    o.insert("groupTypes".into(), json!([]));
    o.insert("mail".into(), Value::Null);
    o.insert("visibility".into(), Value::Null);
    o.insert("isAssignableToRole".into(), Value::Null);
    if is_role_assignable(body) {
        // "Groups assignable to roles are always Private."
        o.insert("visibility".into(), json!("Private"));
    }
    o.insert(
        "createdDateTime".into(),
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    for (k, v) in body {
        if !k.ends_with("@odata.bind") {
            o.insert(k.clone(), v.clone());
        }
    }
    o
}

/// `@odata.type` of device members.
pub const DEVICE_TYPE: &str = "#microsoft.graph.device";

/// A visible user, group or device as a directory object (with `@odata.type`).
pub fn directory_object(t: &Tenant, id: &str, ctx: &Ctx) -> Option<Map<String, Value>> {
    let typed = |data: &Map<String, Value>, ty: &str| {
        let mut o = data.clone();
        o.insert("@odata.type".into(), json!(ty));
        o
    };
    if let Some(u) = t.users.get(id, ctx.now) {
        return Some(typed(&u.data, "#microsoft.graph.user"));
    }
    if let Some(g) = t.groups.get(id, ctx.now) {
        return Some(typed(&g.data, "#microsoft.graph.group"));
    }
    t.devices.get(id, ctx.now).map(|d| typed(&d.data, DEVICE_TYPE))
}

/// Adding a device to a group needs `Device.ReadWrite.All` besides the group permission
/// (https://learn.microsoft.com/graph/api/group-post-members, permissions table: "device:
/// GroupMember.ReadWrite.All and Device.ReadWrite.All").
const DEVICE_MEMBER_WRITE: &[&str] = &["Device.ReadWrite.All", "Directory.ReadWrite.All"];

/// A 403 unless the caller may add `member` (a device needs [`DEVICE_MEMBER_WRITE`]).
fn check_member_permission(t: &Tenant, ctx: &Ctx, member: &str) -> Result<(), GraphError> {
    let is_device = t.devices.get(member, ctx.now).is_some();
    if is_device
        && !ctx
            .caller
            .roles
            .iter()
            .any(|r| DEVICE_MEMBER_WRITE.contains(&r.as_str()))
    {
        return Err(GraphError::forbidden());
    }
    Ok(())
}

/// The object id in an `@odata.id` reference URL (`https://graph.microsoft.com/v1.0/directoryObjects/{id}`).
pub fn reference_id(url: &str) -> Option<String> {
    let last = url.trim_end_matches('/').rsplit('/').next()?;
    // Also accept the `directoryObjects('{id}')` form.
    let id = last
        .strip_prefix("directoryObjects('")
        .and_then(|s| s.strip_suffix("')"))
        .unwrap_or(last);
    uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
}

/// The member id of a `POST .../members/$ref` body.
pub fn ref_body(ctx: &Ctx) -> Result<String, GraphError> {
    let body = ctx.body_object()?;
    for k in body.keys() {
        if k != "@odata.id" {
            return Err(GraphError::bad_request(format!("Invalid property '{k}'.")));
        }
    }
    body.get("@odata.id")
        .and_then(Value::as_str)
        .and_then(reference_id)
        .ok_or_else(|| GraphError::bad_request("Invalid object identifier in '@odata.id'."))
}

/// `GET /groups`.
pub fn list(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(ctx, &SPEC, t.groups.visible(ctx.now).map(|o| o.data.clone()).collect())
}

/// `GET /groups/$count`.
pub fn count(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    if !ctx.eventual() {
        return Err(GraphError::bad_request(
            "$count is not currently supported without ConsistencyLevel: eventual.",
        ));
    }
    Ok(GraphResponse::text(
        StatusCode::OK,
        t.groups.visible(ctx.now).count().to_string(),
    ))
}

/// `GET /groups/{id}`.
pub fn get(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let g = t.groups.get(id, ctx.now).ok_or_else(|| GraphError::not_found(id))?;
    odata::single(ctx, &SPEC, &g.data)
}

fn validate(body: &Map<String, Value>) -> Result<(), GraphError> {
    for (k, v) in body {
        if !WRITABLE.contains(&k.as_str()) {
            return Err(GraphError::bad_request(format!("Invalid property '{k}'.")));
        }
        let bad = || {
            GraphError::bad_request(format!(
                "Invalid value specified for property '{k}' of resource 'Group'."
            ))
        };
        match k.as_str() {
            "mailEnabled" | "securityEnabled" | "isAssignableToRole" if !v.is_boolean() => return Err(bad()),
            "groupTypes" | "members@odata.bind" | "owners@odata.bind" if !v.is_array() => return Err(bad()),
            "displayName" if odata::is_blank(Some(v)) => return Err(bad()),
            "mailNickname"
                if !v.as_str().is_some_and(|s| {
                    !s.is_empty() && s.chars().all(|c| c.is_ascii() && !" @()\\[]\";:<>,".contains(c))
                }) =>
            {
                return Err(bad());
            }
            _ => {}
        }
    }
    Ok(())
}

/// `POST /groups`.
pub fn create(t: &mut Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let body = &odata::entity_body(ctx, "microsoft.graph.group")?;
    for required in ["displayName", "mailEnabled", "mailNickname", "securityEnabled"] {
        if !body.contains_key(required) {
            return Err(GraphError::bad_request(format!(
                "Invalid value specified for property '{required}' of resource 'Group'."
            )));
        }
    }
    validate(body)?;
    check_link_changes(body)?;
    if is_role_assignable(body) {
        if !ctx.caller.roles.iter().any(|r| r == ROLE_MANAGEMENT) {
            return Err(GraphError::forbidden());
        }
        let dynamic = body
            .get("groupTypes")
            .and_then(Value::as_array)
            .is_some_and(|types| types.iter().any(|g| g.as_str() == Some("DynamicMembership")));
        if body.get("securityEnabled") != Some(&Value::Bool(true)) || dynamic {
            return Err(GraphError::bad_request(
                "Invalid value specified for property 'isAssignableToRole' of resource 'Group': a role-assignable group must be a security group with assigned membership.",
            ));
        }
    }
    let members = bound_members(t, ctx, body)?;
    if is_role_assignable(body)
        && members
            .iter()
            .any(|m| t.groups.all().any(|g| g.id.eq_ignore_ascii_case(m)))
    {
        return Err(GraphError::bad_request(
            "Groups cannot be added as members of a group that can be assigned to roles.",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let data = group_object(&id, body);
    t.groups.insert(Obj {
        id: id.clone(),
        visible_at: ctx.visible_at(),
        data: data.clone(),
    });
    if !members.is_empty() {
        t.members.insert(id.to_ascii_lowercase(), members);
    }
    let mut out = data;
    out.insert(
        "@odata.context".into(),
        json!(format!("{}/v1.0/$metadata#groups/$entity", ctx.base)),
    );
    Ok(GraphResponse::json(StatusCode::CREATED, Value::Object(out)))
}

/// `PATCH /groups/{id}`.
pub fn update(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let body = &odata::entity_body(ctx, "microsoft.graph.group")?;
    validate(body)?;
    if body.contains_key("owners@odata.bind") {
        return Err(GraphError::bad_request(
            "Use the owners/$ref endpoint to change owners of an existing group.",
        ));
    }
    if body.contains_key("isAssignableToRole") {
        return Err(GraphError::bad_request(
            "Property 'isAssignableToRole' can only be set when the group is created.",
        ));
    }
    let gid = t
        .groups
        .get(id, ctx.now)
        .map(|g| g.id.clone())
        .ok_or_else(|| GraphError::not_found(id))?;
    // `members@odata.bind` in a PATCH adds members (Graph allows up to 20 per request), all or
    // none: "If an error condition exists in the request body, no members are added"
    // (https://learn.microsoft.com/graph/api/group-post-members, example 2).
    check_link_changes(body)?;
    let binds = bound_members(t, ctx, body)?;
    if !binds.is_empty() {
        check_role_assignable_membership(t, ctx, &gid, &binds)?;
    }
    if binds.iter().any(|m| t.is_member(&gid, m)) {
        return Err(GraphError::bad_request(DUPLICATE_REFERENCE));
    }
    t.members.entry(gid.to_ascii_lowercase()).or_default().extend(binds);
    let g = t
        .groups
        .get_mut(&gid, ctx.now)
        .ok_or_else(|| GraphError::not_found(id))?;
    for (k, v) in body {
        if !k.ends_with("@odata.bind") {
            g.data.insert(k.clone(), v.clone());
        }
    }
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// Graph's limit of links (`members@odata.bind` plus `owners@odata.bind`) one request may add.
pub const MAX_LINK_CHANGES: usize = 20;

/// Graph's answer to a request binding more than [`MAX_LINK_CHANGES`] links, as reported in
/// https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/6453.
pub const TOO_MANY_LINK_CHANGES: &str = "A resource cannot contain more than 20 link changes.";

/// A 400 when the body binds more than [`MAX_LINK_CHANGES`] members and owners together.
fn check_link_changes(body: &Map<String, Value>) -> Result<(), GraphError> {
    let links: usize = ["members@odata.bind", "owners@odata.bind"]
        .iter()
        .filter_map(|k| body.get(*k).and_then(Value::as_array))
        .map(Vec::len)
        .sum();
    if links > MAX_LINK_CHANGES {
        return Err(GraphError::bad_request(TOO_MANY_LINK_CHANGES));
    }
    Ok(())
}

/// The member ids of `members@odata.bind`, each a visible user, group or device, without repeats.
fn bound_members(t: &Tenant, ctx: &Ctx, body: &Map<String, Value>) -> Result<Vec<String>, GraphError> {
    let mut members = Vec::new();
    for url in body
        .get("members@odata.bind")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = url
            .as_str()
            .and_then(reference_id)
            .ok_or_else(|| GraphError::bad_request("Invalid object identifier in 'members@odata.bind'."))?;
        if directory_object(t, &id, ctx).is_none() {
            return Err(GraphError::not_found(&id));
        }
        check_member_permission(t, ctx, &id)?;
        if !members.contains(&id) {
            members.push(id);
        }
    }
    Ok(members)
}

/// `DELETE /groups/{id}`.
pub fn delete(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    if !t.groups.remove(id, ctx.now) {
        return Err(GraphError::not_found(id));
    }
    t.members.remove(&id.to_ascii_lowercase());
    for members in t.members.values_mut() {
        members.retain(|m| !m.eq_ignore_ascii_case(id));
    }
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// Members of a group or role as directory objects.
pub fn member_objects(t: &Tenant, ctx: &Ctx, container: &str) -> Vec<Map<String, Value>> {
    t.members
        .get(&container.to_ascii_lowercase())
        .into_iter()
        .flatten()
        .filter_map(|m| directory_object(t, m, ctx))
        .collect()
}

/// `GET /groups/{id}/members`, or with an OData cast (`.../members/microsoft.graph.user`) only
/// the members of that type.
pub fn members(t: &Tenant, ctx: &Ctx, id: &str, cast: Option<&str>) -> Result<GraphResponse, GraphError> {
    let g = t.groups.get(id, ctx.now).ok_or_else(|| GraphError::not_found(id))?;
    let spec = ListSpec {
        entity_set: if cast.is_some() { "users" } else { "directoryObjects" },
        type_name: if cast.is_some() { "User" } else { "DirectoryObject" },
        filterable: &["id", "displayName", "userPrincipalName", "userType"],
        sortable: &["displayName"],
        count_needs_eventual: true,
        default_select: None,
    };
    let members = member_objects(t, ctx, &g.id)
        .into_iter()
        .filter(|m| cast.is_none_or(|ty| m.get("@odata.type").and_then(Value::as_str) == Some(ty)))
        .collect();
    odata::list(ctx, &spec, members)
}

/// Adds a member reference to a group or role: 404 for an unknown (or not yet replicated) member,
/// 400 for a reference that exists.
pub fn add_reference(t: &mut Tenant, ctx: &Ctx, container: &str, member: &str) -> Result<GraphResponse, GraphError> {
    if directory_object(t, member, ctx).is_none() {
        return Err(GraphError::not_found(member));
    }
    check_member_permission(t, ctx, member)?;
    if t.is_member(container, member) {
        return Err(GraphError::bad_request(DUPLICATE_REFERENCE));
    }
    t.members
        .entry(container.to_ascii_lowercase())
        .or_default()
        .push(member.to_string());
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// `POST /groups/{id}/members/$ref`.
pub fn add_member(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let member = ref_body(ctx)?;
    let gid = t
        .groups
        .get(id, ctx.now)
        .map(|g| g.id.clone())
        .ok_or_else(|| GraphError::not_found(id))?;
    check_role_assignable_membership(t, ctx, &gid, std::slice::from_ref(&member))?;
    add_reference(t, ctx, &gid, &member)
}

/// `DELETE /groups/{id}/members/{member}/$ref`.
pub fn remove_member(t: &mut Tenant, ctx: &Ctx, id: &str, member: &str) -> Result<GraphResponse, GraphError> {
    let gid = t
        .groups
        .get(id, ctx.now)
        .map(|g| g.id.clone())
        .ok_or_else(|| GraphError::not_found(id))?;
    check_role_assignable_membership(t, ctx, &gid, &[])?;
    remove_reference(t, &gid, member)
}

/// Removes a member reference from a group or role; 404 when it is not a member.
pub fn remove_reference(t: &mut Tenant, container: &str, member: &str) -> Result<GraphResponse, GraphError> {
    let list = t.members.entry(container.to_ascii_lowercase()).or_default();
    let before = list.len();
    list.retain(|m| !m.eq_ignore_ascii_case(member));
    if list.len() == before {
        return Err(GraphError::not_found(member));
    }
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}
