//! Directory roles and their members, organization and the MDM authority, subscribed SKUs,
//! invitations (guest accounts) and devices.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DIRECTORY_OBJECT_SELECT, DirectoryObject};
use crate::client::{DEFAULT_MAX_PAGES, Query, TenantGraph};
use crate::error::{GraphError, Result};

/// An activated directory role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryRole {
    /// Object id (differs per tenant).
    pub id: String,
    /// Display name, e.g. `Global Administrator`.
    pub display_name: String,
    /// Template id (the same in every tenant): the natural key.
    #[serde(default)]
    pub role_template_id: Option<String>,
}

/// `$select` for [`DirectoryRole`].
pub const DIRECTORY_ROLE_SELECT: &[&str] = &["id", "displayName", "roleTemplateId"];

/// The tenant's organization object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Object id (the tenant id).
    pub id: String,
    /// Company name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Verified domains.
    #[serde(default)]
    pub verified_domains: Vec<VerifiedDomain>,
}

/// One verified domain of the organization.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedDomain {
    /// Domain name.
    pub name: String,
    /// The default domain for new users.
    #[serde(default)]
    pub is_default: bool,
}

/// `$select` for [`Organization`].
pub const ORGANIZATION_SELECT: &[&str] = &["id", "displayName", "verifiedDomains"];

/// A licence SKU the tenant has bought.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribedSku {
    /// SKU id, as used in `assignLicense`.
    pub sku_id: Uuid,
    /// Readable name, e.g. `SPE_E5`.
    pub sku_part_number: String,
    /// Licences assigned.
    #[serde(default)]
    pub consumed_units: u32,
    /// Licences bought.
    #[serde(default)]
    pub prepaid_units: PrepaidUnits,
}

/// Bought units of a SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PrepaidUnits {
    /// Active units.
    pub enabled: u32,
}

impl SubscribedSku {
    /// Licences still free to assign.
    pub fn available(&self) -> u32 {
        self.prepaid_units.enabled.saturating_sub(self.consumed_units)
    }
}

/// `$select` for [`SubscribedSku`].
pub const SUBSCRIBED_SKU_SELECT: &[&str] = &["skuId", "skuPartNumber", "consumedUnits", "prepaidUnits"];

/// Body of `POST /invitations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewInvitation {
    /// The guest's e-mail address.
    pub invited_user_email_address: String,
    /// Display name for the guest account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invited_user_display_name: Option<String>,
    /// Where the guest lands after redeeming.
    pub invite_redirect_url: String,
    /// Let Graph send the invitation mail.
    pub send_invitation_message: bool,
}

/// Answer to `POST /invitations`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    /// Invitation id.
    #[serde(default)]
    pub id: Option<String>,
    /// Link the guest redeems.
    #[serde(default)]
    pub invite_redeem_url: Option<String>,
    /// The guest user created (or found) for the invitation.
    pub invited_user: InvitedUser,
}

/// The user an invitation created.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InvitedUser {
    /// Object id of the guest user.
    pub id: String,
}

/// An Entra ID device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Object id.
    pub id: String,
    /// Device id (from the device itself).
    #[serde(default)]
    pub device_id: Option<String>,
    /// Name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Operating system.
    #[serde(default)]
    pub operating_system: Option<String>,
    /// Operating system version.
    #[serde(default)]
    pub operating_system_version: Option<String>,
    /// `AzureAd`, `ServerAd`, `Workplace`.
    #[serde(default)]
    pub trust_type: Option<String>,
}

/// `$select` for [`Device`].
pub const DEVICE_SELECT: &[&str] = &[
    "id",
    "deviceId",
    "displayName",
    "operatingSystem",
    "operatingSystemVersion",
    "trustType",
];

#[derive(Deserialize)]
struct MdmAuthorityAnswer {
    #[serde(default)]
    value: Option<i64>,
}

impl TenantGraph {
    /// Activated directory roles.
    pub async fn list_directory_roles(&self) -> Result<Vec<DirectoryRole>> {
        self.list_all(
            "directoryRoles",
            &Query::select(DIRECTORY_ROLE_SELECT),
            DEFAULT_MAX_PAGES,
        )
        .await
    }

    /// Activates a built-in role from its template (`POST /directoryRoles {"roleTemplateId"}`);
    /// only Global Administrator is active in a new tenant. A role that is active already answers
    /// 400 "A conflicting object ..." ([`GraphError::is_conflicting_object`]).
    /// <https://learn.microsoft.com/en-us/graph/api/directoryrole-post-directoryroles>
    pub async fn activate_directory_role(&self, role_template_id: &str) -> Result<DirectoryRole> {
        self.post(
            "directoryRoles",
            &serde_json::json!({ "roleTemplateId": role_template_id }),
        )
        .await
    }

    /// The activated role of a template, or `None` when it is not active
    /// (`GET /directoryRoles(roleTemplateId='...')`).
    /// <https://learn.microsoft.com/en-us/graph/api/directoryrole-get>
    pub async fn get_directory_role_by_template(&self, role_template_id: &str) -> Result<Option<DirectoryRole>> {
        self.get_opt(
            &format!("directoryRoles(roleTemplateId='{role_template_id}')"),
            &Query::select(DIRECTORY_ROLE_SELECT),
        )
        .await
    }

    /// Adds a member to a directory role (by the role's object id).
    pub async fn add_directory_role_member(&self, role_id: &str, member_id: &str) -> Result<()> {
        let body = self.object_ref(member_id)?;
        self.post_no_content(&format!("directoryRoles/{role_id}/members/$ref"), &body)
            .await
    }

    /// Members of a directory role.
    pub async fn list_directory_role_members(&self, role_id: &str) -> Result<Vec<DirectoryObject>> {
        self.list_all(
            &format!("directoryRoles/{role_id}/members"),
            &Query::select(DIRECTORY_OBJECT_SELECT),
            DEFAULT_MAX_PAGES,
        )
        .await
    }

    /// The tenant's organization object (Graph lists exactly one).
    pub async fn get_organization(&self) -> Result<Organization> {
        let mut orgs: Vec<Organization> = self
            .list_all("organization", &Query::select(ORGANIZATION_SELECT), 1)
            .await?;
        orgs.pop().ok_or_else(|| GraphError::Decode {
            tenant: self.tenant_id().to_string(),
            method: "GET".into(),
            path: "organization".into(),
            expected: "one organization",
            message: "the list was empty".into(),
        })
    }

    /// Sets Intune as the MDM authority; answers Graph's `value` (an authority code, 1 = Intune).
    pub async fn set_mdm_authority(&self, organization_id: &str) -> Result<Option<i64>> {
        let answer: Option<MdmAuthorityAnswer> = self
            .post(
                &format!("organization/{organization_id}/setMobileDeviceManagementAuthority"),
                &serde_json::json!({}),
            )
            .await?;
        Ok(answer.and_then(|a| a.value))
    }

    /// Licence SKUs the tenant has.
    pub async fn list_subscribed_skus(&self) -> Result<Vec<SubscribedSku>> {
        self.list_all(
            "subscribedSkus",
            &Query::select(SUBSCRIBED_SKU_SELECT),
            DEFAULT_MAX_PAGES,
        )
        .await
    }

    /// Invites a guest (creates the guest user).
    pub async fn create_invitation(&self, invitation: &NewInvitation) -> Result<Invitation> {
        self.post("invitations", invitation).await
    }

    /// Devices, optionally filtered (`operatingSystem eq 'Windows'`).
    pub async fn list_devices(&self, filter: Option<&str>) -> Result<Vec<Device>> {
        let mut q = Query::select(DEVICE_SELECT);
        q.filter = filter.map(str::to_string);
        self.list_all("devices", &q, DEFAULT_MAX_PAGES).await
    }
}
