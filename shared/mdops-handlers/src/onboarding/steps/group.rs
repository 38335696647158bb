//! A ring's device group (Test, First, Fast, Broad): a security group with no members. Natural key:
//! its display name. Graph does not keep display names unique: [`super::ensure`] finds, reports
//! duplicates and waits out the replication lag before creating again.

use mdops_core::outcome::StepOutcome;
use mdops_core::tenant::Ring;
use mdops_graph::{GraphError, Query, odata_string};

use super::{Collection, Named, StepContext, ensure};

/// `mailNickname` of a ring's group (required by Graph even for security groups).
pub fn mail_nickname(ring: Ring) -> String {
    format!("ModernWorkplaceDevices-{}", ring.as_str())
}

pub async fn run(ctx: &StepContext<'_>, ring: Ring) -> Result<StepOutcome, GraphError> {
    let name = ring.display_name();
    let query = Query::select(&["id", "displayName"]).filter(format!("displayName eq {}", odata_string(name)));
    let found: Collection<Named> = ctx.graph.get("groups", &query).await?;
    let body = serde_json::json!({
        "displayName": name,
        "mailEnabled": false,
        "mailNickname": mail_nickname(ring),
        "securityEnabled": true,
    });
    ensure(ctx, &format!("group {name:?}"), found.value, || {
        ctx.graph.post("groups", &body)
    })
    .await
}
