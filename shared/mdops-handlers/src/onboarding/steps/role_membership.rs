//! A service account's membership of a directory role. Natural key: (role template, user id).
//! The role's object id is the one the directory-roles step recorded (activated if need be).
//! [`ensure_member`] reads the role's members first, so a converged tenant sees no write; Graph's
//! own "already exist" answer to a concurrent add is taken as done. The role-group steps use it too.

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
    ensure_member(ctx, &role_id, &user_id).await
}

/// Makes `member_id` (a user, or a role-assignable group) a member of the directory role
/// `role_id`: reads the members first, so a converged tenant sees no write; Graph's own "already
/// exist" answer to a concurrent add is taken as done. Records `{id: role, member, created}`.
pub async fn ensure_member(ctx: &StepContext<'_>, role_id: &str, member_id: &str) -> Result<StepOutcome, GraphError> {
    let members: Vec<Member> = ctx
        .graph
        .list_all(
            &format!("directoryRoles/{role_id}/members"),
            &Query::select(&["id"]),
            MAX_PAGES,
        )
        .await?;
    let output = |created: bool| {
        StepOutcome::done(serde_json::json!({ "id": role_id, "member": member_id, "created": created }))
    };
    if members.iter().any(|m| m.id == member_id) {
        return Ok(output(false));
    }
    let reference = serde_json::json!({
        "@odata.id": format!("{}directoryObjects/{member_id}", ctx.graph.client().config().graph_base)
    });
    ctx.attempting_write();
    match ctx
        .graph
        .post_no_content(&format!("directoryRoles/{role_id}/members/$ref"), &reference)
        .await
    {
        Ok(()) => Ok(output(true)),
        Err(e) if e.is_reference_already_exists() => Ok(output(false)),
        Err(e) => Err(e),
    }
}
