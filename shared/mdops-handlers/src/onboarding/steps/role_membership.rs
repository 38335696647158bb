//! A service account's membership of a directory role. Natural key: (role template, user id).
//! Reads the role's members first, so a converged tenant sees no write; Graph's own "already
//! exist" answer to a concurrent add is taken as done.

use mdops_core::onboarding::{Account, DirectoryRole, StepKind};
use mdops_core::outcome::StepOutcome;
use mdops_graph::{GraphError, Query};
use serde::Deserialize;

use super::{MAX_PAGES, StepContext};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Role {
    id: String,
    #[serde(default)]
    role_template_id: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    id: String,
}

pub async fn run(ctx: &StepContext<'_>, account: Account, role: DirectoryRole) -> Result<StepOutcome, GraphError> {
    let user_id = match ctx.dep_id(&StepKind::Account(account).name()) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    // Activated roles are few (tens); filter here rather than rely on $filter support.
    let roles: Vec<Role> = ctx
        .graph
        .list_all("directoryRoles", &Query::select(&["id", "roleTemplateId"]), MAX_PAGES)
        .await?;
    let Some(found) = roles
        .iter()
        .find(|r| r.role_template_id.as_deref() == Some(role.template_id()))
    else {
        return Ok(StepOutcome::failed(format!(
            "directory role {} (template {}) is not activated in tenant {}; activate it in the Entra admin center and replay",
            role.as_str(),
            role.template_id(),
            ctx.tenant.tenant_id
        )));
    };
    let members: Vec<Member> = ctx
        .graph
        .list_all(
            &format!("directoryRoles/{}/members", found.id),
            &Query::select(&["id"]),
            MAX_PAGES,
        )
        .await?;
    let output =
        |created: bool| StepOutcome::done(serde_json::json!({ "id": found.id, "member": user_id, "created": created }));
    if members.iter().any(|m| m.id == user_id) {
        return Ok(output(false));
    }
    let reference = serde_json::json!({
        "@odata.id": format!("{}directoryObjects/{user_id}", ctx.graph.client().config().graph_base)
    });
    ctx.attempting_write();
    match ctx
        .graph
        .post_no_content(&format!("directoryRoles/{}/members/$ref", found.id), &reference)
        .await
    {
        Ok(()) => Ok(output(true)),
        Err(e) if e.is_reference_already_exists() => Ok(output(false)),
        Err(e) => Err(e),
    }
}
