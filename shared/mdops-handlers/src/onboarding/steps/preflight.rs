//! Preflight: the tenant answers, our app is consented, and it holds every application
//! permission onboarding needs. Reads only. Natural key: the tenant itself.

use mdops_core::outcome::StepOutcome;
use mdops_core::permissions::{ONBOARDING, excess_in_customer, missing};
use mdops_graph::{GraphError, Query};

use super::{Collection, StepContext};

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
