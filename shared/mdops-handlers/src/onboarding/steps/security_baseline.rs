//! The security baseline: a Windows 10 endpoint-protection device configuration, created and left
//! unassigned (the reference: assigned later, ring by ring). Natural key: its display name.

use mdops_core::outcome::StepOutcome;
use mdops_graph::GraphError;

use super::update_policy::find_configuration;
use super::{Named, StepContext, ensured};

/// The baseline's display name.
pub const DISPLAY_NAME: &str = "Modern Workplace Security Baseline";

pub async fn run(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    if let Some(found) = find_configuration(ctx, DISPLAY_NAME).await? {
        return Ok(ensured(&found.id, false));
    }
    if let Some(wait) = ctx.wait_before_create() {
        return Ok(wait);
    }
    let body = serde_json::json!({
        "@odata.type": "#microsoft.graph.windows10EndpointProtectionConfiguration",
        "displayName": DISPLAY_NAME,
        "description": "Security baseline of the managed desktop service. Left unassigned at onboarding.",
        "firewallBlockStatefulFTP": true,
        "smartScreenEnableInShell": true,
        "smartScreenBlockOverrideForFiles": true,
        "bitLockerEncryptDevice": true,
        "defenderSecurityCenterBlockExploitProtectionOverride": true,
    });
    ctx.attempting_write();
    let created: Named = ctx.graph.post("deviceManagement/deviceConfigurations", &body).await?;
    Ok(ensured(&created.id, true))
}
