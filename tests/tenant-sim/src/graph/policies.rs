//! Identity policies a provider reads before enrolling a tenant (all `Policy.Read.All`):
//! - `/identity/conditionalAccess/policies` (list, get): `state`, `conditions.users` (include and
//!   exclude users, groups, roles), `grantControls.builtInControls`
//!   (https://learn.microsoft.com/graph/api/conditionalaccessroot-list-policies,
//!   https://learn.microsoft.com/graph/api/resources/conditionalaccesspolicy);
//! - `/policies/identitySecurityDefaultsEnforcementPolicy` (get): `isEnabled`
//!   (https://learn.microsoft.com/graph/api/identitysecuritydefaultsenforcementpolicy-get);
//! - `/policies/authorizationPolicy` (get, a singleton in v1.0): `allowInvitesFrom`
//!   (https://learn.microsoft.com/graph/api/authorizationpolicy-get,
//!   https://learn.microsoft.com/graph/api/resources/authorizationpolicy).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::seeds::ConditionalAccessPolicySeed;
use crate::store::Tenant;

/// The states of a conditional access policy.
pub const POLICY_STATES: &[&str] = &["enabled", "disabled", "enabledForReportingButNotEnforced"];

const CA_SPEC: ListSpec<'static> = ListSpec {
    entity_set: "identity/conditionalAccess/policies",
    type_name: "ConditionalAccessPolicy",
    filterable: &["id", "displayName", "state"],
    sortable: &["displayName"],
    count_needs_eventual: false,
    default_select: None,
};

/// The Graph JSON of a seeded conditional access policy.
pub fn conditional_access_policy(id: &str, seed: &ConditionalAccessPolicySeed, state: &str) -> Map<String, Value> {
    let include_users = seed.include_users.clone().unwrap_or_else(|| vec!["All".into()]);
    let controls = seed.built_in_controls.clone().unwrap_or_else(|| vec!["mfa".into()]);
    let v = json!({
        "id": id,
        "displayName": seed.display_name,
        "createdDateTime": chrono::Utc::now().to_rfc3339(),
        "modifiedDateTime": Value::Null,
        "state": state,
        "sessionControls": Value::Null,
        "conditions": {
            "clientAppTypes": ["all"],
            "signInRiskLevels": [],
            "platforms": Value::Null,
            "locations": Value::Null,
            "applications": {"includeApplications": ["All"], "excludeApplications": [], "includeUserActions": []},
            "users": {
                "includeUsers": include_users,
                "excludeUsers": seed.exclude_users,
                "includeGroups": seed.include_groups,
                "excludeGroups": seed.exclude_groups,
                "includeRoles": seed.include_roles,
                "excludeRoles": [],
            },
        },
        "grantControls": {"operator": "OR", "builtInControls": controls, "customAuthenticationFactors": [], "termsOfUse": []},
    });
    v.as_object().cloned().unwrap_or_default()
}

/// `GET /identity/conditionalAccess/policies`.
pub fn list_conditional_access(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    odata::list(
        ctx,
        &CA_SPEC,
        t.conditional_access_policies
            .visible(ctx.now)
            .map(|o| o.data.clone())
            .collect(),
    )
}

/// `GET /identity/conditionalAccess/policies/{id}`.
pub fn get_conditional_access(t: &Tenant, ctx: &Ctx, id: &str) -> Result<GraphResponse, GraphError> {
    let p = t.conditional_access_policies.get(id, ctx.now).ok_or_else(|| {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("Policy '{id}' not found."),
        )
    })?;
    odata::single(ctx, &CA_SPEC, &p.data)
}

/// `GET /policies/identitySecurityDefaultsEnforcementPolicy`.
pub fn security_defaults(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let spec = ListSpec {
        entity_set: "policies/identitySecurityDefaultsEnforcementPolicy",
        ..CA_SPEC
    };
    let v = json!({
        "id": "00000000-0000-0000-0000-000000000005",
        "displayName": "Security Defaults",
        "description": "Security defaults is a set of basic identity security mechanisms recommended by Microsoft.",
        "isEnabled": t.identity_policies.security_defaults_enabled,
    });
    odata::single(ctx, &spec, v.as_object().unwrap_or(&Map::new()))
}

/// `GET /policies/authorizationPolicy`.
pub fn authorization_policy(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let spec = ListSpec {
        entity_set: "policies/authorizationPolicy",
        ..CA_SPEC
    };
    let v = json!({
        "id": "authorizationPolicy",
        "displayName": "Authorization Policy",
        "description": "Used to manage authorization related settings across the company.",
        "allowInvitesFrom": t.identity_policies.allow_invites_from,
        "allowedToSignUpEmailBasedSubscriptions": true,
        "allowedToUseSSPR": true,
        "allowEmailVerifiedUsersToJoinOrganization": true,
        "allowUserConsentForRiskyApps": false,
        "blockMsolPowerShell": Value::Null,
        "defaultUserRolePermissions": {
            "allowedToCreateApps": true,
            "allowedToCreateSecurityGroups": true,
            "allowedToReadOtherUsers": true,
            "permissionGrantPoliciesAssigned": ["ManagePermissionGrantsForSelf.microsoft-user-default-legacy"],
        },
    });
    odata::single(ctx, &spec, v.as_object().unwrap_or(&Map::new()))
}
