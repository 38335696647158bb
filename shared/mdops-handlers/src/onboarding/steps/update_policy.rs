//! A ring's Windows update policy (`windowsUpdateForBusinessConfiguration`), with the ring's
//! deferrals from the tenant settings. Natural key: its display name. Intune's `$filter` support on
//! device configurations is uneven, so the list is read (paged, bounded) and matched here.

use mdops_core::outcome::StepOutcome;
use mdops_core::tenant::Ring;
use mdops_graph::{GraphError, Query};

use super::{MAX_PAGES, Named, StepContext, ensured};

/// The policy's display name for a ring.
pub fn display_name(ring: Ring) -> String {
    format!(
        "Modern Workplace Update Policy [{}]",
        ring.display_name().rsplit('-').next().unwrap_or(ring.as_str())
    )
}

/// Finds a device configuration by display name.
pub async fn find_configuration(ctx: &StepContext<'_>, name: &str) -> Result<Option<Named>, GraphError> {
    let all: Vec<Named> = ctx
        .graph
        .list_all(
            "deviceManagement/deviceConfigurations",
            &Query::select(&["id", "displayName"]),
            MAX_PAGES,
        )
        .await?;
    Ok(all.into_iter().find(|c| c.display_name.as_deref() == Some(name)))
}

pub async fn run(ctx: &StepContext<'_>, ring: Ring) -> Result<StepOutcome, GraphError> {
    let name = display_name(ring);
    if let Some(found) = find_configuration(ctx, &name).await? {
        return Ok(ensured(&found.id, false));
    }
    if let Some(wait) = ctx.wait_before_create() {
        return Ok(wait);
    }
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
    ctx.attempting_write();
    let created: Named = ctx.graph.post("deviceManagement/deviceConfigurations", &body).await?;
    Ok(ensured(&created.id, true))
}
