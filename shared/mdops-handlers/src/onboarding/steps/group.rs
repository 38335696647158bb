//! A ring's device group (Test, First, Fast, Broad): a security group with no members. Natural key:
//! its display name. Graph does not keep display names unique, so a retry soon after an attempt
//! that may have created it waits out the replication lag before creating again.

use mdops_core::outcome::StepOutcome;
use mdops_core::tenant::Ring;
use mdops_graph::{GraphError, Query, odata_string};

use super::{Collection, Named, StepContext, ensured};

/// `mailNickname` of a ring's group (required by Graph even for security groups).
pub fn mail_nickname(ring: Ring) -> String {
    format!("ModernWorkplaceDevices-{}", ring.as_str())
}

pub async fn run(ctx: &StepContext<'_>, ring: Ring) -> Result<StepOutcome, GraphError> {
    let name = ring.display_name();
    let query = Query::select(&["id", "displayName"]).filter(format!("displayName eq {}", odata_string(name)));
    let found: Collection<Named> = ctx.graph.get("groups", &query).await?;
    if let Some(group) = found.value.first() {
        return Ok(ensured(&group.id, false));
    }
    if let Some(wait) = ctx.wait_before_create() {
        return Ok(wait);
    }
    let body = serde_json::json!({
        "displayName": name,
        "mailEnabled": false,
        "mailNickname": mail_nickname(ring),
        "securityEnabled": true,
    });
    ctx.attempting_write();
    let group: Named = ctx.graph.post("groups", &body).await?;
    Ok(ensured(&group.id, true))
}
