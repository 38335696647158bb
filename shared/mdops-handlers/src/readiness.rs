//! The readiness check's reads: everything [`mdops_core::readiness`] judges, read from the tenant
//! with GETs only (no write, ever), for `mdops tenants check --readiness` and the onboarding
//! preflight step. Every resource, with the Microsoft Graph v1.0 page it is modelled on:
//!
//! - `GET /subscribedSkus` (`skuId`, `skuPartNumber`, `capabilityStatus`, `prepaidUnits.enabled`,
//!   `consumedUnits`, `servicePlans`): https://learn.microsoft.com/graph/api/subscribedsku-list,
//!   https://learn.microsoft.com/graph/api/resources/subscribedsku. The Intune API "requires an
//!   active Intune license for the tenant" (https://learn.microsoft.com/graph/api/resources/intune-graph-overview).
//! - `GET /organization?$select=id,mobileDeviceManagementAuthority`: v1.0 has the property on the
//!   organization (`unknown`, `intune`, `sccm`, `office365`; it is returned only when selected):
//!   https://learn.microsoft.com/graph/api/resources/intune-onboarding-organization?view=graph-rest-1.0,
//!   https://learn.microsoft.com/graph/api/resources/intune-onboarding-mdmauthority.
//! - `GET /users?$filter=startswith(userPrincipalName,'{prefix}-')` and `/users/{id}/memberOf`:
//!   whether the service accounts exist, their licences and groups.
//! - `GET /identity/conditionalAccess/policies` (`Policy.Read.All`): `state` (`enabled`,
//!   `disabled`, `enabledForReportingButNotEnforced`), `conditions.users` (`includeUsers` holds
//!   ids, `All`, `None` or `GuestsOrExternalUsers`; `excludeUsers`, `include/excludeGroups`,
//!   `include/excludeRoles` hold ids), `grantControls`:
//!   https://learn.microsoft.com/graph/api/conditionalaccessroot-list-policies,
//!   https://learn.microsoft.com/graph/api/resources/conditionalaccesspolicy,
//!   https://learn.microsoft.com/graph/api/resources/conditionalaccessusers.
//! - `GET /deviceManagement/deviceConfigurations` and, for each
//!   `windowsUpdateForBusinessConfiguration` (an update ring), `.../{id}/assignments` (each
//!   `target`'s `@odata.type`, e.g. `allDevicesAssignmentTarget`):
//!   https://learn.microsoft.com/graph/api/resources/intune-deviceconfig-windowsupdateforbusinessconfiguration,
//!   https://learn.microsoft.com/graph/api/resources/intune-deviceconfig-deviceconfigurationassignment.
//! - `GET /policies/identitySecurityDefaultsEnforcementPolicy` (`isEnabled`, `Policy.Read.All`):
//!   https://learn.microsoft.com/graph/api/identitysecuritydefaultsenforcementpolicy-get.
//! - `GET /policies/authorizationPolicy` (`allowInvitesFrom`: `none`, `adminsAndGuestInviters`,
//!   `adminsGuestInvitersAndAllMembers`, `everyone`; a singleton in v1.0, `Policy.Read.All`):
//!   https://learn.microsoft.com/graph/api/resources/authorizationpolicy.
//!
//! A read refused with 403 (a permission not granted) becomes a fail naming it; any other error
//! is returned, so a throttled preflight is retried rather than judged.

use mdops_core::onboarding::Account;
use mdops_core::permissions::{ONBOARDING, missing};
use mdops_core::readiness::{
    AccountFact, CaPolicy, Report, SkuFact, TenantFacts, UPDATE_RING_TYPE, UpdateRingFact, assess,
};
use mdops_core::tenant::Tenant;

use crate::onboarding::steps::{Adoption, MARKER_ATTRIBUTE};
use mdops_graph::{GraphError, Query, TenantGraph, odata_string};
use serde::Deserialize;

/// Pages read at most from each collection: tenants have a handful of SKUs and service accounts,
/// tens of policies and configurations; bounded far above that.
const MAX_PAGES: usize = 20;

#[derive(Debug, Deserialize)]
struct Collection<T> {
    value: Vec<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Organization {
    id: String,
    #[serde(default)]
    mobile_device_management_authority: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    assigned_licenses: Vec<AssignedLicence>,
    #[serde(default)]
    on_premises_extension_attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

impl User {
    fn marker(&self) -> Option<&str> {
        self.on_premises_extension_attributes
            .as_ref()?
            .get(MARKER_ATTRIBUTE)?
            .as_str()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignedLicence {
    #[serde(default)]
    sku_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Id {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Configuration {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(rename = "@odata.type", default)]
    odata_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Assignment {
    #[serde(default)]
    target: Option<Target>,
}

#[derive(Debug, Deserialize)]
struct Target {
    #[serde(rename = "@odata.type", default)]
    odata_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecurityDefaults {
    #[serde(default)]
    is_enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationPolicy {
    #[serde(default)]
    allow_invites_from: Option<String>,
}

/// A read the tenant refused for want of a permission is a finding; anything else an error.
fn refused<T>(result: Result<T, GraphError>) -> Result<Result<T, String>, GraphError> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) if e.status() == Some(403) => Ok(Err(e.reason())),
        Err(e) => Err(e),
    }
}

/// Reads the tenant and judges it. GETs only. `adoption` says which existing accounts onboarding
/// may adopt (the tenant's marker, operators' allowances: [`Adoption::load`]).
pub async fn check(graph: &TenantGraph, tenant: &Tenant, adoption: &Adoption) -> Result<Report, GraphError> {
    Ok(assess(&read_facts(graph, tenant, adoption).await?))
}

/// Everything the readiness rules judge, read from the tenant.
pub async fn read_facts(graph: &TenantGraph, tenant: &Tenant, adoption: &Adoption) -> Result<TenantFacts, GraphError> {
    let granted = graph.client().granted_roles(graph.tenant_id()).await?;
    let missing_permissions = missing(ONBOARDING, &granted)
        .iter()
        .map(|r| r.permission.to_string())
        .collect();
    // The reads do not depend on each other: sent together, so preflight's critical path is the
    // token plus the longest chain (policies then memberships, or configurations then assignments).
    let sku_query = Query::select(&[
        "skuId",
        "skuPartNumber",
        "capabilityStatus",
        "prepaidUnits",
        "consumedUnits",
        "servicePlans",
    ]);
    let org_query = Query::select(&["id", "mobileDeviceManagementAuthority"]);
    let ca_query = Query::select(&["id", "displayName", "state", "conditions", "grantControls"]);
    let defaults_query = Query::select(&["id", "isEnabled"]);
    let authz_query = Query::select(&["id", "allowInvitesFrom"]);
    let (skus, orgs, accounts, ca_policies, update_rings, security_defaults, authorization) = futures::try_join!(
        graph.list_all::<SkuFact>("subscribedSkus", &sku_query, MAX_PAGES),
        graph.get::<Collection<Organization>>("organization", &org_query),
        accounts(graph, tenant, adoption),
        async {
            refused(
                graph
                    .list_all::<CaPolicy>("identity/conditionalAccess/policies", &ca_query, MAX_PAGES)
                    .await,
            )
        },
        async { refused(update_rings(graph).await) },
        async {
            refused(
                graph
                    .get::<SecurityDefaults>("policies/identitySecurityDefaultsEnforcementPolicy", &defaults_query)
                    .await,
            )
        },
        async {
            refused(
                graph
                    .get::<AuthorizationPolicy>("policies/authorizationPolicy", &authz_query)
                    .await,
            )
        },
    )?;
    let mut accounts = accounts;
    let org = orgs.value.into_iter().next();
    let organization_id = org.as_ref().map(|o| o.id.clone());
    let mdm_authority = org.and_then(|o| o.mobile_device_management_authority);
    // Group memberships matter only to policies that name groups.
    let names_groups = ca_policies.as_ref().is_ok_and(|ps| {
        ps.iter().any(|p| {
            p.conditions
                .users
                .as_ref()
                .is_some_and(|u| !u.include_groups.is_empty() || !u.exclude_groups.is_empty())
        })
    });
    if names_groups {
        for a in accounts.iter_mut() {
            if let Some(id) = &a.id {
                let groups: Vec<Id> = graph
                    .list_all(&format!("users/{id}/memberOf"), &Query::select(&["id"]), MAX_PAGES)
                    .await?;
                a.groups = groups.into_iter().map(|g| g.id).collect();
            }
        }
    }
    Ok(TenantFacts {
        tenant_id: tenant.tenant_id.to_string(),
        organization_id,
        missing_permissions,
        skus,
        mdm_authority,
        licence_skus: tenant.settings.service_account_skus.clone(),
        accounts,
        ca_policies,
        update_rings,
        security_defaults_enabled: security_defaults.map(|p| p.is_enabled),
        allow_invites_from: authorization.map(|p| p.allow_invites_from.unwrap_or_else(|| "everyone".into())),
    })
}

/// The six service accounts, with the id, licences of those that exist already (one read: their
/// UPNs share the account prefix).
async fn accounts(graph: &TenantGraph, tenant: &Tenant, adoption: &Adoption) -> Result<Vec<AccountFact>, GraphError> {
    let prefix = format!("{}-", tenant.settings.account_prefix);
    let users: Vec<User> = graph
        .list_all(
            "users",
            &Query::select(&[
                "id",
                "userPrincipalName",
                "assignedLicenses",
                "onPremisesExtensionAttributes",
            ])
            .filter(format!("startswith(userPrincipalName,{})", odata_string(&prefix))),
            MAX_PAGES,
        )
        .await?;
    Ok(Account::ALL
        .into_iter()
        .map(|account| {
            let upn = account.upn(tenant);
            let user = users.iter().find(|u| {
                u.user_principal_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&upn))
            });
            AccountFact {
                account,
                upn,
                id: user.map(|u| u.id.clone()),
                groups: Vec::new(),
                licences: user
                    .map(|u| u.assigned_licenses.iter().filter_map(|l| l.sku_id.clone()).collect())
                    .unwrap_or_default(),
                // As the account step decides: this tenant's marker, or an operator's allowance.
                adoptable: user.is_none_or(|u| {
                    adoption.marker.as_deref().is_some_and(|m| u.marker() == Some(m))
                        || adoption.allowed.contains(&u.id)
                }),
            }
        })
        .collect())
}

/// Every update ring with its assignment targets. Device configurations cannot be filtered by
/// type reliably, so the list is read and the rings picked here.
async fn update_rings(graph: &TenantGraph) -> Result<Vec<UpdateRingFact>, GraphError> {
    let all: Vec<Configuration> = graph
        .list_all(
            "deviceManagement/deviceConfigurations",
            &Query::select(&["id", "displayName"]),
            MAX_PAGES,
        )
        .await?;
    let mut rings = Vec::new();
    for c in all
        .into_iter()
        .filter(|c| c.odata_type.as_deref() == Some(UPDATE_RING_TYPE))
    {
        let assignments: Vec<Assignment> = graph
            .list_all(
                &format!("deviceManagement/deviceConfigurations/{}/assignments", c.id),
                &Query::default(),
                MAX_PAGES,
            )
            .await?;
        rings.push(UpdateRingFact {
            id: c.id,
            display_name: c.display_name.unwrap_or_default(),
            targets: assignments
                .into_iter()
                .filter_map(|a| a.target.and_then(|t| t.odata_type))
                .collect(),
        });
    }
    Ok(rings)
}
