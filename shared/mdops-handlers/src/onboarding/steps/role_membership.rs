//! A service account's membership of a directory role. Natural key: (role template, user id).
//! The role's object id is the one the directory-roles step recorded (activated if need be).
//! Reads the role's members first, so a converged tenant sees no write; Graph's own "already
//! exist" answer to a concurrent add is taken as done.

use mdops_core::onboarding::{Account, DirectoryRole, StepKind};
use mdops_core::outcome::StepOutcome;
use mdops_graph::{GraphError, Query};
use serde::Deserialize;

use super::{MAX_PAGES, StepContext, directory_roles};

#[derive(Deserialize)]
struct Member {
    id: String,
}

pub async fn run(ctx: &StepContext<'_>, account: Account, role: DirectoryRole) -> Result<StepOutcome, GraphError> {
    let user_id = match ctx.dep_id(&StepKind::Account(account).name()) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let role_id = match directory_roles::recorded_role_id(ctx, role) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let members: Vec<Member> = ctx
        .graph
        .list_all(
            &format!("directoryRoles/{}/members", role_id),
            &Query::select(&["id"]),
            MAX_PAGES,
        )
        .await?;
    let output =
        |created: bool| StepOutcome::done(serde_json::json!({ "id": role_id, "member": user_id, "created": created }));
    if members.iter().any(|m| m.id == user_id) {
        return Ok(output(false));
    }
    let reference = serde_json::json!({
        "@odata.id": format!("{}directoryObjects/{user_id}", ctx.graph.client().config().graph_base)
    });
    ctx.attempting_write();
    match ctx
        .graph
        .post_no_content(&format!("directoryRoles/{}/members/$ref", role_id), &reference)
        .await
    {
        Ok(()) => Ok(output(true)),
        Err(e) if e.is_reference_already_exists() => Ok(output(false)),
        Err(e) => Err(e),
    }
}
