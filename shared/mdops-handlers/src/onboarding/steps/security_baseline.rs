//! The security baseline: a Windows 10 endpoint-protection device configuration, created and left
//! unassigned (the reference: assigned later, ring by ring). Natural key: its display name.

use mdops_core::outcome::StepOutcome;
use mdops_graph::GraphError;

use super::update_policy::find_configurations;
use super::{StepContext, ensure};

/// The baseline's display name.
pub const DISPLAY_NAME: &str = "Modern Workplace Security Baseline";

pub async fn run(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    let found = find_configurations(ctx, DISPLAY_NAME).await?;
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
    ensure(ctx, &format!("security baseline {DISPLAY_NAME:?}"), found, || {
        ctx.graph.post("deviceManagement/deviceConfigurations", &body)
    })
    .await
}
