//! MDM authority: Intune. Natural key: the organization. Set only if unset; a tenant managed by
//! another authority is never flipped (that would unenroll its devices).

use mdops_core::outcome::StepOutcome;
use mdops_graph::{GraphError, Query};
use serde::Deserialize;

use super::{Collection, StepContext};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Organization {
    id: String,
    #[serde(default)]
    mobile_device_management_authority: Option<String>,
}

pub async fn run(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    let orgs: Collection<Organization> = ctx
        .graph
        .get(
            "organization",
            &Query::select(&["id", "mobileDeviceManagementAuthority"]),
        )
        .await?;
    let Some(org) = orgs.value.into_iter().next() else {
        return Ok(StepOutcome::failed("the tenant answered with no organization"));
    };
    let current = org
        .mobile_device_management_authority
        .unwrap_or_else(|| "unknown".into());
    match current.as_str() {
        "intune" => Ok(StepOutcome::done(
            serde_json::json!({ "id": org.id, "authority": "intune", "created": false }),
        )),
        "unknown" | "" => {
            ctx.graph
                .post_no_content(
                    &format!("organization/{}/setMobileDeviceManagementAuthority", org.id),
                    &serde_json::json!({}),
                )
                .await?;
            Ok(StepOutcome::done(
                serde_json::json!({ "id": org.id, "authority": "intune", "created": true }),
            ))
        }
        other => Ok(StepOutcome::failed(format!(
            "tenant {} already has MDM authority {other:?}; mdops sets it to Intune only when it is unset and never changes a live tenant's authority. Move the tenant to Intune by hand, then replay this step",
            ctx.tenant.tenant_id
        ))),
    }
}
