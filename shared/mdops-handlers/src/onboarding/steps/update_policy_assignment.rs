//! A ring's update policy assigned to the ring's group. Natural key: (policy id, group id). The
//! `assign` action replaces every assignment, so the existing ones are sent along with ours.

use mdops_core::onboarding::StepKind;
use mdops_core::outcome::StepOutcome;
use mdops_core::tenant::Ring;
use mdops_graph::{GraphError, Query};
use serde::Deserialize;

use super::{Collection, StepContext};

#[derive(Deserialize)]
struct Assignment {
    target: serde_json::Value,
}

const GROUP_TARGET: &str = "#microsoft.graph.groupAssignmentTarget";

pub async fn run(ctx: &StepContext<'_>, ring: Ring) -> Result<StepOutcome, GraphError> {
    let ids = ctx
        .dep_id(&StepKind::UpdatePolicy(ring).name())
        .and_then(|p| ctx.dep_id(&StepKind::Group(ring).name()).map(|g| (p, g)));
    let (policy_id, group_id) = match ids {
        Ok(ids) => ids,
        Err(outcome) => return Ok(outcome),
    };
    let path = format!("deviceManagement/deviceConfigurations/{policy_id}/assignments");
    let existing: Collection<Assignment> = ctx.graph.get(&path, &Query::default()).await?;
    let output = |created: bool| {
        StepOutcome::done(serde_json::json!({ "id": policy_id, "group": group_id, "created": created }))
    };
    if existing
        .value
        .iter()
        .any(|a| a.target.get("groupId").and_then(|g| g.as_str()) == Some(group_id.as_str()))
    {
        return Ok(output(false));
    }
    let mut assignments: Vec<serde_json::Value> = existing
        .value
        .into_iter()
        .map(|a| serde_json::json!({ "target": a.target }))
        .collect();
    assignments.push(serde_json::json!({ "target": { "@odata.type": GROUP_TARGET, "groupId": group_id } }));
    ctx.graph
        .post_no_content(
            &format!("deviceManagement/deviceConfigurations/{policy_id}/assign"),
            &serde_json::json!({ "assignments": assignments }),
        )
        .await?;
    Ok(output(true))
}
