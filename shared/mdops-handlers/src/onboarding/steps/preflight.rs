//! Preflight: the tenant answers, our app is consented, it holds every application permission
//! onboarding needs, and the readiness check ([`crate::readiness`]) finds nothing that fails:
//! an Intune licence, the MDM authority free or Intune, no conditional access policy blocking the
//! service accounts, no update ring on all devices, security defaults off, guest invitations
//! allowed. Reads only. Natural key: the tenant itself.
//!
//! Intune: "The Microsoft Graph API for Intune requires an active Intune license for the tenant"
//! (every Intune page of the Graph reference, e.g.
//! https://learn.microsoft.com/graph/api/resources/intune-graph-overview). The licence shows in
//! `GET /subscribedSkus` as an enabled SKU with an Intune service plan
//! (https://learn.microsoft.com/graph/api/subscribedsku-list). Checked before any write, so a
//! tenant without it fails here, naming what is missing, instead of half-way through.

use mdops_core::outcome::StepOutcome;
use mdops_core::permissions::{ONBOARDING, excess_in_customer, missing};
use mdops_core::readiness::{Verdict, assess};
use mdops_graph::GraphError;

use super::StepContext;
use crate::readiness;

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
    // The readiness check (GETs only): a fail stops onboarding here, before any write, naming
    // each thing that is not ready and what to do; warnings are logged and recorded.
    let facts = readiness::read_facts(ctx.graph, ctx.tenant, ctx.adoption).await?;
    let report = assess(&facts);
    let fails = report.with(Verdict::Fail);
    if !fails.is_empty() {
        let named: Vec<String> = fails
            .iter()
            .map(|f| {
                format!(
                    "[{}] {}; to do: {}",
                    f.check.as_str(),
                    f.summary,
                    f.action.as_deref().unwrap_or("see `mdops tenants check --readiness`")
                )
            })
            .collect();
        return Ok(StepOutcome::failed(format!(
            "tenant {} is not ready for onboarding ({} readiness check(s) failed; `mdops tenants check --readiness` shows all): {}; then replay",
            ctx.tenant.tenant_id,
            fails.len(),
            named.join(" | ")
        )));
    }
    for w in report.with(Verdict::Warning) {
        tracing::warn!(tenant = %ctx.tenant.tenant_id, check = w.check.as_str(), summary = %w.summary, "readiness warning");
    }
    let Some(org_id) = facts.organization_id else {
        return Ok(StepOutcome::failed(format!(
            "tenant {} answered with no organization",
            ctx.tenant.tenant_id
        )));
    };
    Ok(StepOutcome::done(serde_json::json!({
        "id": org_id,
        "granted": granted,
        "excess": excess,
        "readiness": report.problems(),
        "created": false
    })))
}
