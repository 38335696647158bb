//! Groups: find by displayName / mailNickname, create, patch, members add / remove / list.

use serde::{Deserialize, Serialize};

use super::users::{USER_SELECT, User};
use super::{DIRECTORY_OBJECT_SELECT, DirectoryObject};
use crate::client::{DEFAULT_MAX_PAGES, Query, TenantGraph, odata_string};
use crate::error::Result;

/// A group, with the fields mdops reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Object id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Mail alias (unique in the tenant).
    #[serde(default)]
    pub mail_nickname: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Security group.
    #[serde(default)]
    pub security_enabled: Option<bool>,
    /// Mail-enabled.
    #[serde(default)]
    pub mail_enabled: Option<bool>,
}

/// `$select` for [`Group`].
pub const GROUP_SELECT: &[&str] = &[
    "id",
    "displayName",
    "mailNickname",
    "description",
    "securityEnabled",
    "mailEnabled",
];

/// Body of `POST /groups` for a security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewGroup {
    /// Display name.
    pub display_name: String,
    /// Mail alias (required by Graph even for security groups).
    pub mail_nickname: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Security group.
    pub security_enabled: bool,
    /// Mail-enabled.
    pub mail_enabled: bool,
}

impl NewGroup {
    /// A security group that is not mail-enabled (what device groups are).
    pub fn security(display_name: &str, mail_nickname: &str, description: Option<&str>) -> NewGroup {
        NewGroup {
            display_name: display_name.to_string(),
            mail_nickname: mail_nickname.to_string(),
            description: description.map(str::to_string),
            security_enabled: true,
            mail_enabled: false,
        }
    }
}

impl TenantGraph {
    /// Groups with this display name (display names are not unique in Entra ID).
    pub async fn find_groups_by_display_name(&self, display_name: &str) -> Result<Vec<Group>> {
        let q = Query::select(GROUP_SELECT).filter(format!("displayName eq {}", odata_string(display_name)));
        self.list_all("groups", &q, DEFAULT_MAX_PAGES).await
    }

    /// The group with this mail alias, if any (aliases are unique, so this is the natural key).
    pub async fn find_group_by_mail_nickname(&self, mail_nickname: &str) -> Result<Option<Group>> {
        let q = Query::select(GROUP_SELECT).filter(format!("mailNickname eq {}", odata_string(mail_nickname)));
        let mut groups: Vec<Group> = self.list_all("groups", &q, 1).await?;
        Ok(groups.pop())
    }

    /// Reads a group by id.
    pub async fn get_group(&self, id: &str) -> Result<Group> {
        self.get(&format!("groups/{id}"), &Query::select(GROUP_SELECT)).await
    }

    /// Creates a group.
    pub async fn create_group(&self, group: &NewGroup) -> Result<Group> {
        self.post("groups", group).await
    }

    /// Updates a group's properties.
    pub async fn patch_group<B: Serialize + ?Sized>(&self, id: &str, changes: &B) -> Result<()> {
        self.patch(&format!("groups/{id}"), changes).await
    }

    /// Adds a member. An existing membership fails with `is_reference_already_exists()`.
    pub async fn add_group_member(&self, group_id: &str, member_id: &str) -> Result<()> {
        let body = self.object_ref(member_id)?;
        self.post_no_content(&format!("groups/{group_id}/members/$ref"), &body)
            .await
    }

    /// Removes a member.
    pub async fn remove_group_member(&self, group_id: &str, member_id: &str) -> Result<()> {
        self.delete(&format!("groups/{group_id}/members/{member_id}/$ref"))
            .await
    }

    /// Direct members of a group that are users, with their `userType`: the OData cast
    /// `GET /groups/{id}/members/microsoft.graph.user`
    /// (https://learn.microsoft.com/graph/api/group-list-members, "OData cast is enabled").
    pub async fn list_group_member_users(&self, group_id: &str) -> Result<Vec<User>> {
        self.list_all(
            &format!("groups/{group_id}/members/microsoft.graph.user"),
            &Query::select(USER_SELECT),
            DEFAULT_MAX_PAGES,
        )
        .await
    }

    /// Direct members of a group.
    pub async fn list_group_members(&self, group_id: &str) -> Result<Vec<DirectoryObject>> {
        self.list_all(
            &format!("groups/{group_id}/members"),
            &Query::select(DIRECTORY_OBJECT_SELECT),
            DEFAULT_MAX_PAGES,
        )
        .await
    }
}
