//! Fan-out: an operator's licence request (one user, or every member of a group) becomes one
//! licence message per user. Sending twice is harmless: the handler finds a licensed user and does
//! nothing.

use mdops_core::licences::LicenceMessage;
use mdops_core::message::{DecodeError, decode};
use mdops_core::queue::{OutgoingMessage, Queue, QueueError, QueueName};
use mdops_core::tenant::TenantId;
use mdops_graph::resources::DirectoryObject;
use mdops_graph::{GraphError, Query, TenantGraph};

/// Most messages one `send_batch` carries (SQS's limit).
const SEND_BATCH: usize = 10;
/// Members per page asked of Graph (its maximum `$top` for directory collections).
const MEMBER_PAGE_SIZE: u32 = 999;
/// Most member pages read: 1,000 pages of 999 is a million members, far beyond any real group;
/// a bound so a misbehaving `nextLink` chain cannot loop forever.
const MAX_MEMBER_PAGES: usize = 1000;
/// The `@odata.type` of users in member lists (nested groups, devices and contacts are skipped).
const USER_TYPE: &str = "#microsoft.graph.user";

/// Whom a licence request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One user, by object id or userPrincipalName.
    User(String),
    /// Every direct user member of a group, by object id or (unique) display name.
    Group(String),
}

/// What a fan-out did (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FanOut {
    /// The group's object id, for a group target.
    pub group_id: Option<String>,
    /// The users messages are (or would be) sent for, in member order.
    pub users: Vec<String>,
    /// Messages sent (0 for a dry run).
    pub sent: usize,
    /// Group members that are not users (nested groups, devices), skipped.
    pub skipped_non_users: usize,
}

/// Why a fan-out stopped.
#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    /// The request would make a message the handler refuses.
    #[error("invalid licence request: {0}")]
    Invalid(#[from] DecodeError),
    /// A group target was given without a Graph handle to read its members with.
    #[error("group {0:?}: reading its members needs the tenant's Graph handle")]
    NoGraph(String),
    /// No group has that id or display name.
    #[error("group {0:?}: no group with this object id or display name")]
    GroupNotFound(String),
    /// Several groups share the display name.
    #[error("group {name:?}: {} groups have this display name ({}); give the object id", ids.len(), ids.join(", "))]
    GroupAmbiguous { name: String, ids: Vec<String> },
    /// Graph failed while resolving the group or reading its members.
    #[error("reading the group from Graph: {0}")]
    Graph(#[from] GraphError),
    /// The queue refused a batch; `sent` messages went out before (re-running is safe).
    #[error("licence queue: {source} (after {sent} of {total} messages were sent; re-running is safe)")]
    Queue {
        sent: usize,
        total: usize,
        #[source]
        source: QueueError,
    },
}

fn looks_like_object_id(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The group's object id from an id or a unique display name.
async fn group_id(graph: &TenantGraph, group: &str) -> Result<String, FanOutError> {
    if looks_like_object_id(group) {
        return match graph
            .get_opt::<DirectoryObject>(&format!("groups/{group}"), &Query::select(&["id"]))
            .await?
        {
            Some(g) => Ok(g.id),
            None => Err(FanOutError::GroupNotFound(group.to_string())),
        };
    }
    let mut found = graph.find_groups_by_display_name(group).await?;
    match found.len() {
        0 => Err(FanOutError::GroupNotFound(group.to_string())),
        1 => Ok(found.remove(0).id),
        _ => Err(FanOutError::GroupAmbiguous {
            name: group.to_string(),
            ids: found.into_iter().map(|g| g.id).collect(),
        }),
    }
}

/// Sends one message per user of `target`, each a copy of `template` for that user. `progress`
/// is called with (sent, total) after every batch. With `dry_run` nothing is sent.
pub async fn fan_out(
    queue: &dyn Queue,
    graph: Option<&TenantGraph>,
    tenant_id: &TenantId,
    target: &Target,
    template: &LicenceMessage,
    dry_run: bool,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<FanOut, FanOutError> {
    let mut result = FanOut::default();
    match target {
        Target::User(user) => result.users.push(user.trim().to_string()),
        Target::Group(group) => {
            let graph = graph.ok_or_else(|| FanOutError::NoGraph(group.clone()))?;
            let id = group_id(graph, group.trim()).await?;
            let members: Vec<DirectoryObject> = graph
                .list_all(
                    &format!("groups/{id}/members"),
                    &Query::select(&["id", "displayName"]).top(MEMBER_PAGE_SIZE),
                    MAX_MEMBER_PAGES,
                )
                .await?;
            for m in members {
                if m.odata_type.as_deref() == Some(USER_TYPE) {
                    result.users.push(m.id);
                } else {
                    result.skipped_non_users += 1;
                }
            }
            result.group_id = Some(id);
        }
    }
    let mut bodies = Vec::with_capacity(result.users.len());
    for user in &result.users {
        let mut message = template.clone();
        message.tenant_id = tenant_id.clone();
        message.user = user.clone();
        let body = message.to_body();
        // The handler's own check, before anything is sent: a bad request fails here, whole.
        decode::<LicenceMessage>(&body)?;
        bodies.push(body);
    }
    let total = bodies.len();
    if dry_run {
        return Ok(result);
    }
    for chunk in bodies.chunks(SEND_BATCH) {
        let batch = chunk.iter().map(|b| OutgoingMessage::now(b.clone())).collect();
        queue
            .send_batch(QueueName::Licences, batch)
            .await
            .map_err(|source| FanOutError::Queue {
                sent: result.sent,
                total,
                source,
            })?;
        result.sent += chunk.len();
        progress(result.sent, total);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_told_from_display_names() {
        assert!(looks_like_object_id("0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"));
        assert!(!looks_like_object_id("All staff"));
        assert!(!looks_like_object_id("0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4"));
        assert!(!looks_like_object_id("0c1d2e3f_4a5b-4c6d-8e7f-9a0b1c2d3e4f"));
    }
}
