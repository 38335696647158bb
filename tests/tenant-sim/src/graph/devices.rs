//! `/devices`: the tenant's Entra ID devices, paged (thousands per tenant), get and delete by object
//! id, and `memberOf` (the groups a device is a direct member of).
//!
//! `operatingSystem` supports `$filter` with `eq` without the advanced query headers
//! (https://learn.microsoft.com/graph/api/resources/device, https://learn.microsoft.com/graph/aad-advanced-queries);
//! `$top` goes up to 999 (https://learn.microsoft.com/graph/api/device-list).

use axum::http::StatusCode;

use super::groups::directory_object;
use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::Tenant;

const SPEC: ListSpec<'static> = ListSpec {
    entity_set: "devices",
    type_name: "Device",
    filterable: &["id", "deviceId", "displayName", "operatingSystem", "accountEnabled"],
    sortable: &["displayName"],
    count_needs_eventual: true,
    default_select: None,
};

/// `GET /devices`.
pub fn list(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(ctx, &SPEC, t.devices.visible(ctx.now).map(|o| o.data.clone()).collect())
}

/// `GET /devices/{id}`.
pub fn get(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let d = t.devices.get(id, ctx.now).ok_or_else(|| GraphError::not_found(id))?;
    odata::single(ctx, &SPEC, &d.data)
}

/// `DELETE /devices/{id}`: the device leaves every group it was in.
pub fn delete(t: &mut Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    if !t.devices.remove(id, ctx.now) {
        return Err(GraphError::not_found(id));
    }
    remove_from_groups(t, id);
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// Drops an object id from every group and role membership.
pub fn remove_from_groups(t: &mut Tenant, id: &str) {
    for members in t.members.values_mut() {
        members.retain(|m| !m.eq_ignore_ascii_case(id));
    }
}

/// `GET /devices/{id}/memberOf`.
pub fn member_of(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let device = t.devices.get(id, ctx.now).ok_or_else(|| GraphError::not_found(id))?;
    let mut groups: Vec<_> = t
        .members
        .iter()
        .filter(|(_, members)| members.iter().any(|m| m.eq_ignore_ascii_case(&device.id)))
        .filter_map(|(group, _)| t.groups.get(group, ctx.now).map(|_| group))
        .filter_map(|group| directory_object(t, group, ctx))
        .collect();
    // Membership is kept in a hash map; answer in a stable order.
    groups.sort_by(|a, b| {
        a.get("id")
            .and_then(|v| v.as_str())
            .cmp(&b.get("id").and_then(|v| v.as_str()))
    });
    let spec = ListSpec {
        entity_set: "directoryObjects",
        type_name: "DirectoryObject",
        filterable: &["id", "displayName"],
        sortable: &["displayName"],
        count_needs_eventual: true,
        default_select: None,
    };
    odata::list(ctx, &spec, groups)
}
