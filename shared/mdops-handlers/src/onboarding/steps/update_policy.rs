//! A ring's Windows update policy (`windowsUpdateForBusinessConfiguration`), with the ring's
//! deferrals from the tenant settings. Natural key: its display name. Intune's `$filter` support on
//! device configurations is uneven, so the list is read (paged, bounded) and matched here.

use mdops_core::outcome::StepOutcome;
use mdops_core::tenant::Ring;
use mdops_graph::{GraphError, Query};

use super::{MAX_PAGES, Named, StepContext, ensure};

/// The policy's display name for a ring.
pub fn display_name(ring: Ring) -> String {
    format!(
        "Modern Workplace Update Policy [{}]",
        ring.display_name().rsplit('-').next().unwrap_or(ring.as_str())
    )
}

/// Every device configuration with this display name.
pub async fn find_configurations(ctx: &StepContext<'_>, name: &str) -> Result<Vec<Named>, GraphError> {
    let all: Vec<Named> = ctx
        .graph
        .list_all(
            "deviceManagement/deviceConfigurations",
            &Query::select(&["id", "displayName"]),
            MAX_PAGES,
        )
        .await?;
    Ok(all
        .into_iter()
        .filter(|c| c.display_name.as_deref() == Some(name))
        .collect())
}

pub async fn run(ctx: &StepContext<'_>, ring: Ring) -> Result<StepOutcome, GraphError> {
    let name = display_name(ring);
    let found = find_configurations(ctx, &name).await?;
    let deferral = ctx.tenant.settings.deferrals.get(ring);
    let body = serde_json::json!({
        "@odata.type": "#microsoft.graph.windowsUpdateForBusinessConfiguration",
        "displayName": name,
        "description": format!("Update ring {} of the managed desktop service", ring.as_str()),
        "qualityUpdatesDeferralPeriodInDays": deferral.quality_days,
        "featureUpdatesDeferralPeriodInDays": deferral.feature_days,
        "automaticUpdateMode": "autoInstallAtMaintenanceTime",
        "microsoftUpdateServiceAllowed": true,
        "driversExcluded": false,
        "businessReadyUpdatesOnly": "all",
    });
    ensure(ctx, &format!("update policy {name:?}"), found, || {
        ctx.graph.post("deviceManagement/deviceConfigurations", &body)
    })
    .await
}
