//! The security baseline, created and left unassigned (the reference: assigned later, ring by
//! ring). Natural key: its display name and the template it comes from.
//!
//! Graph v1.0 has no security baselines: Intune's live in beta. By default this step makes the
//! product's one beta call, `POST /beta/deviceManagement/templates/{templateId}/createInstance`
//! (parameters `displayName`, `description`, `settingsDelta`, `roleScopeTagIds`; answers the
//! `deviceManagementIntent`), with the template id from the tenant setting
//! `security_baseline_template_id`, and finds it again in `GET /beta/deviceManagement/intents`.
//! https://learn.microsoft.com/graph/api/intune-deviceintent-devicemanagementtemplate-createinstance?view=graph-rest-beta
//! https://learn.microsoft.com/graph/api/resources/intune-deviceintent-devicemanagementintent?view=graph-rest-beta
//! Creating an intent does not assign it (assignment is the separate `assign` action), so the
//! baseline stays unassigned. The setting `security_baseline = endpoint-protection-profile` selects
//! the fallback: a v1.0 `windows10EndpointProtectionConfiguration` profile (a profile, not a
//! baseline).

use mdops_core::outcome::StepOutcome;
use mdops_core::tenant::SecurityBaselineKind;
use mdops_graph::{GraphError, Query};
use serde::Deserialize;

use super::update_policy::find_configurations;
use super::{MAX_PAGES, Named, StepContext, ensure};

/// The baseline's display name.
pub const DISPLAY_NAME: &str = "Modern Workplace Security Baseline";
/// Its description.
const DESCRIPTION: &str = "Security baseline of the managed desktop service. Left unassigned at onboarding.";

/// An intent as the find reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Intent {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    template_id: Option<String>,
}

pub async fn run(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    match ctx.tenant.settings.security_baseline {
        SecurityBaselineKind::Template => from_template(ctx).await,
        SecurityBaselineKind::EndpointProtectionProfile => endpoint_protection_profile(ctx).await,
    }
}

async fn from_template(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    let template = ctx.tenant.settings.security_baseline_template_id.as_str();
    let beta = ctx.graph.beta();
    // Matched in the client, as for device configurations: one page read, no reliance on which
    // properties the beta collection filters on.
    let intents: Vec<Intent> = beta
        .list_all(
            "deviceManagement/intents",
            &Query::select(&["id", "displayName", "templateId"]),
            MAX_PAGES,
        )
        .await?;
    let found: Vec<Named> = intents
        .into_iter()
        .filter(|i| {
            i.display_name.as_deref() == Some(DISPLAY_NAME)
                && i.template_id
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(template))
        })
        .map(|i| Named {
            id: i.id,
            display_name: i.display_name,
        })
        .collect();
    let body = serde_json::json!({
        "displayName": DISPLAY_NAME,
        "description": DESCRIPTION,
        "settingsDelta": [],
    });
    let path = format!("deviceManagement/templates/{template}/createInstance");
    ensure(
        ctx,
        &format!("security baseline {DISPLAY_NAME:?} (template {template})"),
        found,
        || beta.post(&path, &body),
    )
    .await
}

async fn endpoint_protection_profile(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    let found = find_configurations(ctx, DISPLAY_NAME).await?;
    let body = serde_json::json!({
        "@odata.type": "#microsoft.graph.windows10EndpointProtectionConfiguration",
        "displayName": DISPLAY_NAME,
        "description": DESCRIPTION,
        "firewallBlockStatefulFTP": true,
        "smartScreenEnableInShell": true,
        "smartScreenBlockOverrideForFiles": true,
        "bitLockerEncryptDevice": true,
        "defenderSecurityCenterBlockExploitProtectionOverride": true,
    });
    ensure(
        ctx,
        &format!("endpoint protection profile {DISPLAY_NAME:?}"),
        found,
        || ctx.graph.post("deviceManagement/deviceConfigurations", &body),
    )
    .await
}
