//! Typed requests and answers for the Graph resources mdops touches, as methods on
//! [`TenantGraph`](crate::TenantGraph). Each `*_SELECT` lists only the fields mdops reads, and each
//! "find" answers `Ok(None)` when nothing matches, so handlers can "ensure" (find, else create).
//!
//! - [`users`]: find by UPN, create, patch, assignLicense, memberOf, sendMail.
//! - [`groups`]: find by displayName / mailNickname, create, patch, members add / remove / list.
//! - [`directory`]: directoryRoles and their members, organization and the MDM authority,
//!   subscribedSkus, invitations, devices.
//! - [`intune`]: deviceConfigurations (list, create, assign, assignments), detectedApps, mobileApps.

pub mod directory;
pub mod groups;
pub mod intune;
pub mod users;

use serde::{Deserialize, Serialize};

/// Any directory object as Graph lists it in `members` / `memberOf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryObject {
    /// Object id.
    pub id: String,
    /// `#microsoft.graph.user`, `#microsoft.graph.group`, ...
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    /// Display name, when the object has one.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `$select` for [`DirectoryObject`] lists.
pub const DIRECTORY_OBJECT_SELECT: &[&str] = &["id", "displayName"];

/// Body of a `.../$ref` POST: a reference to a directory object by its Graph URL.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ObjectRef {
    #[serde(rename = "@odata.id")]
    pub(crate) odata_id: String,
}

impl crate::TenantGraph {
    /// The `@odata.id` reference body for a directory object.
    pub(crate) fn object_ref(&self, object_id: &str) -> crate::Result<ObjectRef> {
        let url = self.url(&format!("directoryObjects/{object_id}"), &crate::Query::default())?;
        Ok(ObjectRef {
            odata_id: url.to_string(),
        })
    }
}
