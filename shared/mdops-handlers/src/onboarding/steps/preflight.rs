//! Preflight: the tenant answers, our app is consented, it holds every application permission
//! onboarding needs, and the tenant has an Intune licence. Reads only. Natural key: the tenant
//! itself.
//!
//! Intune: "The Microsoft Graph API for Intune requires an active Intune license for the tenant"
//! (every Intune page of the Graph reference, e.g.
//! https://learn.microsoft.com/graph/api/resources/intune-graph-overview). The licence shows in
//! `GET /subscribedSkus` as an enabled SKU with an Intune service plan
//! (https://learn.microsoft.com/graph/api/subscribedsku-list). Checked before any write, so a
//! tenant without it fails here, naming what is missing, instead of half-way through.

use mdops_core::outcome::StepOutcome;
use mdops_core::permissions::{ONBOARDING, excess_in_customer, missing};
use mdops_graph::{GraphError, Query};

use serde::Deserialize;

use super::{Collection, StepContext};

/// Service plans that carry Intune device management (Microsoft's product and service plan
/// names: Intune in EMS / Microsoft 365 E3/E5 and standalone, Intune for Education, Intune for
/// small business).
const INTUNE_SERVICE_PLANS: &[&str] = &["INTUNE_A", "INTUNE_EDU", "INTUNE_SMBIZ"];
/// Pages of subscribed SKUs read at most (a tenant has a handful).
const MAX_SKU_PAGES: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sku {
    #[serde(default)]
    sku_part_number: Option<String>,
    #[serde(default)]
    capability_status: Option<String>,
    #[serde(default)]
    service_plans: Vec<ServicePlan>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePlan {
    #[serde(default)]
    service_plan_name: Option<String>,
}

impl Sku {
    fn carries_intune(&self) -> bool {
        self.capability_status.as_deref().is_none_or(|s| s == "Enabled")
            && self.service_plans.iter().any(|p| {
                p.service_plan_name
                    .as_deref()
                    .is_some_and(|n| INTUNE_SERVICE_PLANS.contains(&n))
            })
    }
}

pub async fn run(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    // A token proves consent (AADSTS65001/700016 otherwise) and carries the granted roles.
    let granted = ctx.graph.client().granted_roles(ctx.graph.tenant_id()).await?;
    let lacking = missing(ONBOARDING, &granted);
    if !lacking.is_empty() {
        let names: Vec<String> = lacking
            .iter()
            .map(|r| format!("{} ({})", r.permission, r.purpose))
            .collect();
        return Ok(StepOutcome::failed(format!(
            "tenant {} has not granted {} application permission(s) onboarding needs: {}; grant them with `mdops tenants consent-url` and replay",
            ctx.tenant.tenant_id,
            lacking.len(),
            names.join(", ")
        )));
    }
    // Least privilege: a customer tenant needs no mail permission (access mails leave from the
    // provider's tenant). Not a failure, but said, and recorded in the step's output.
    let excess = excess_in_customer(&granted);
    if !excess.is_empty() {
        tracing::warn!(
            tenant = %ctx.tenant.tenant_id,
            ?excess,
            "tenant grants permissions mdops does not need in a customer tenant; revoke them"
        );
    }
    let skus: Vec<Sku> = ctx
        .graph
        .list_all(
            "subscribedSkus",
            &Query::select(&["skuPartNumber", "capabilityStatus", "servicePlans"]),
            MAX_SKU_PAGES,
        )
        .await?;
    if !skus.iter().any(Sku::carries_intune) {
        let held: Vec<&str> = skus.iter().filter_map(|s| s.sku_part_number.as_deref()).collect();
        return Ok(StepOutcome::failed(format!(
            "tenant {} has no Intune licence: no enabled subscribed SKU carries an Intune service plan ({}); it holds {}. \
             Add a subscription that includes Intune (e.g. Microsoft 365 E3/E5, EMS E3/E5 or Intune Plan 1), then replay",
            ctx.tenant.tenant_id,
            INTUNE_SERVICE_PLANS.join(", "),
            if held.is_empty() {
                "no subscriptions".to_string()
            } else {
                held.join(", ")
            }
        )));
    }
    let orgs: Collection<super::Named> = ctx
        .graph
        .get("organization", &Query::select(&["id", "displayName"]))
        .await?;
    let Some(org) = orgs.value.first() else {
        return Ok(StepOutcome::failed(format!(
            "tenant {} answered with no organization",
            ctx.tenant.tenant_id
        )));
    };
    Ok(StepOutcome::done(
        serde_json::json!({ "id": org.id, "granted": granted, "excess": excess, "created": false }),
    ))
}
