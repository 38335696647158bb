//! A ring's group carries its description (`PATCH /groups/{id}`, as the reference lists). Natural
//! key: the group id recorded by the group step. Writes only when the description differs.

use mdops_core::onboarding::StepKind;
use mdops_core::outcome::StepOutcome;
use mdops_core::tenant::Ring;
use mdops_graph::{GraphError, Query};
use serde::Deserialize;

use super::StepContext;

#[derive(Deserialize)]
struct Described {
    #[serde(default)]
    description: Option<String>,
}

/// The description a ring's group carries.
pub fn description(ring: Ring) -> String {
    let when = match ring {
        Ring::Test => "first, for validation devices",
        Ring::First => "after Test, for early adopters",
        Ring::Fast => "after First, for a wider sample",
        Ring::Broad => "last, for everyone else",
    };
    format!(
        "Managed desktop update ring {}: devices here get updates {when}. Managed by the service; do not add members by hand.",
        ring.as_str()
    )
}

pub async fn run(ctx: &StepContext<'_>, ring: Ring) -> Result<StepOutcome, GraphError> {
    let group_id = match ctx.dep_id(&StepKind::Group(ring).name()) {
        Ok(id) => id,
        Err(outcome) => return Ok(outcome),
    };
    let wanted = description(ring);
    let current: Described = ctx
        .graph
        .get(&format!("groups/{group_id}"), &Query::select(&["id", "description"]))
        .await?;
    let changed = current.description.as_deref() != Some(wanted.as_str());
    if changed {
        ctx.graph
            .patch(
                &format!("groups/{group_id}"),
                &serde_json::json!({ "description": wanted }),
            )
            .await?;
    }
    Ok(StepOutcome::done(
        serde_json::json!({ "id": group_id, "created": changed }),
    ))
}
