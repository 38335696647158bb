//! A role group carries one of its directory roles: the group is a member of the role. Natural
//! key: (role template, group id). The group id is the one the role-group step recorded; the role
//! id the one the directory-roles step recorded (activated if need be).
//!
//! `POST /directoryRoles/{id}/members/$ref` with the group's reference
//! (<https://learn.microsoft.com/en-us/graph/api/directoryrole-post-members>), the same call the
//! service accounts' memberships use; see docs/onboarding.md for why not `roleManagement`. Graph
//! refuses a group that was not created role-assignable with 400 "Groups without
//! IsAssignableToRole property set cannot be assigned to roles." — the role-group step never
//! adopts such a group, so that answer here means the group was replaced by hand.

use mdops_core::onboarding::{DirectoryRole, RoleGroup, StepKind};
use mdops_core::outcome::StepOutcome;
use mdops_graph::GraphError;

use super::{StepContext, directory_roles, role_membership};

pub async fn run(ctx: &StepContext<'_>, group: RoleGroup, role: DirectoryRole) -> Result<StepOutcome, GraphError> {
    let group_id = match ctx.dep_id(&StepKind::RoleGroup(group).name()) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let role_id = match directory_roles::recorded_role_id(ctx, role) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    role_membership::ensure_member(ctx, &role_id, &group_id).await
}
