//! A role group engineers' guests are elevated into: a role-assignable security group. Natural key:
//! its display name; the object id is recorded in the store (`mdops_core::onboarding::role_groups`)
//! for elevation, which never looks the group up by name.
//!
//! Graph rules (<https://learn.microsoft.com/en-us/graph/api/resources/group>,
//! <https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/groups-create-eligible>,
//! <https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/groups-concept>):
//! only a group created with `isAssignableToRole: true` can hold a directory role; the property is
//! set at creation and can never be changed, needs `securityEnabled: true` and assigned (not
//! dynamic) membership, and setting it (and changing such a group's members) needs
//! `RoleManagement.ReadWrite.Directory`. So a group with our name that is not role-assignable can
//! never become one: the step fails naming it rather than adopting it.

use mdops_core::onboarding::RoleGroup;
use mdops_core::onboarding::role_groups::RoleGroupIds;
use mdops_core::outcome::StepOutcome;
use mdops_graph::{GraphError, Query, odata_string};
use serde::Deserialize;

use super::{Collection, Named, StepContext, ensure};

/// Wait before retrying when the id could not be recorded (our own store was unavailable).
const RECORD_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Found {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    is_assignable_to_role: Option<bool>,
}

/// The description a role group carries.
pub fn description(group: RoleGroup) -> String {
    let roles: Vec<&str> = group.roles().iter().map(|r| r.as_str()).collect();
    format!(
        "Modern Workplace temporary engineer access ({}): a guest is added for an approved request and removed when it ends. Managed by the service; do not add members by hand.",
        roles.join(", ")
    )
}

pub async fn run(ctx: &StepContext<'_>, group: RoleGroup) -> Result<StepOutcome, GraphError> {
    let name = group.display_name();
    let query = Query::select(&["id", "displayName", "isAssignableToRole"])
        .filter(format!("displayName eq {}", odata_string(name)));
    let found: Collection<Found> = ctx.graph.get("groups", &query).await?;
    if let [one] = found.value.as_slice()
        && one.is_assignable_to_role != Some(true)
    {
        return Ok(StepOutcome::failed(format!(
            "role group {name:?}: group {} in tenant {} has this name but is not role-assignable, and Graph allows \
             isAssignableToRole only when a group is created; rename or delete that group, then replay step role-group:{}",
            one.id,
            ctx.tenant.tenant_id,
            group.as_str()
        )));
    }
    let found: Vec<Named> = found
        .value
        .into_iter()
        .map(|f| Named {
            id: f.id,
            display_name: f.display_name,
        })
        .collect();
    let body = serde_json::json!({
        "displayName": name,
        "description": description(group),
        "mailEnabled": false,
        "mailNickname": group.mail_nickname(),
        "securityEnabled": true,
        "isAssignableToRole": true,
    });
    let outcome = ensure(ctx, &format!("role group {name:?}"), found, || {
        ctx.graph.post("groups", &body)
    })
    .await?;
    if let StepOutcome::Done { output } = &outcome
        && let Some(id) = output.get("id").and_then(|v| v.as_str())
        && let Err(e) = RoleGroupIds::new(ctx.store)
            .record(&ctx.tenant.tenant_id, group, id, &ctx.run.run_id, ctx.now)
            .await
    {
        return Ok(StepOutcome::retry(
            RECORD_RETRY,
            format!("role group {name:?} ({id}) exists but its id could not be recorded: {e}"),
        ));
    }
    Ok(outcome)
}
