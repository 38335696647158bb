//! `/organization`: the tenant's organization object with `mobileDeviceManagementAuthority`, and
//! `setMobileDeviceManagementAuthority`.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::Tenant;

const SPEC: ListSpec<'static> = ListSpec {
    entity_set: "organization",
    type_name: "Organization",
    filterable: &["id"],
    sortable: &[],
    count_needs_eventual: false,
    default_select: None,
};

fn object(t: &Tenant) -> Map<String, Value> {
    let domains: Vec<Value> = t
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| json!({"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": i == 0, "isInitial": i == 0, "name": d, "type": "Managed"}))
        .collect();
    let v = json!({
        "id": t.id,
        "displayName": t.display_name,
        "tenantType": "AAD",
        "countryLetterCode": "US",
        "preferredLanguage": "en",
        "verifiedDomains": domains,
        "mobileDeviceManagementAuthority": t.mdm_authority,
    });
    v.as_object().cloned().unwrap_or_default()
}

/// `GET /organization`.
pub fn list(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(ctx, &SPEC, vec![object(t)])
}

/// `GET /organization/{id}`.
pub fn get(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    if !id.eq_ignore_ascii_case(&t.id) {
        return Err(GraphError::not_found(id));
    }
    odata::single(ctx, &SPEC, &object(t))
}

/// `POST /organization/{id}/setMobileDeviceManagementAuthority`: sets Intune as MDM authority.
pub fn set_mdm_authority(t: &mut Tenant, _ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    if !id.eq_ignore_ascii_case(&t.id) {
        return Err(GraphError::not_found(id));
    }
    t.mdm_authority = "intune".into();
    // The action answers an Edm.Int32: 1 means the authority is set.
    Ok(GraphResponse::json(
        StatusCode::OK,
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Int32", "value": 1}),
    ))
}
