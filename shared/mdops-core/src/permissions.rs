//! The Microsoft Graph *application* permissions mdops needs, phase by phase.
//!
//! The reference lists the delegated permissions of an app acting as the consenting admin
//! (including `Directory.AccessAsUser.All`, which exists only as a delegated permission). mdops runs
//! unattended, so it asks for application permissions; `docs/permissions.md` explains the mapping.
//! Each requirement is met by any one of its permissions (a broader one also satisfies it).

/// One thing mdops does, and the application permissions any one of which allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// The permission we ask for in the consent URL.
    pub permission: &'static str,
    /// Other granted permissions that also satisfy it (broader ones).
    pub also_satisfied_by: &'static [&'static str],
    /// What it is for, for people reading `mdops tenants check`.
    pub purpose: &'static str,
}

impl Requirement {
    /// Whether the granted roles satisfy this requirement.
    pub fn met_by(&self, granted: &[String]) -> bool {
        granted
            .iter()
            .any(|g| g == self.permission || self.also_satisfied_by.contains(&g.as_str()))
    }
}

const fn req(permission: &'static str, also: &'static [&'static str], purpose: &'static str) -> Requirement {
    Requirement {
        permission,
        also_satisfied_by: also,
        purpose,
    }
}

/// What the onboarding phase needs.
pub const ONBOARDING: &[Requirement] = &[
    req(
        "Organization.Read.All",
        &[
            "Organization.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ],
        "read the organization and its MDM authority",
    ),
    req(
        "DeviceManagementServiceConfig.ReadWrite.All",
        &[],
        "set the MDM authority to Intune",
    ),
    req(
        "User.ReadWrite.All",
        &["Directory.ReadWrite.All"],
        "create the service accounts",
    ),
    req(
        "RoleManagement.ReadWrite.Directory",
        &[],
        "activate directory roles and add the service accounts to them; create the role-assignable role groups, \
         give them their roles and add or remove engineers' guests in them (replaces the delegated \
         Directory.AccessAsUser.All; Group/GroupMember permissions are not enough for role-assignable groups)",
    ),
    req(
        "Group.ReadWrite.All",
        &["Directory.ReadWrite.All"],
        "create and describe the Test, First, Fast and Broad groups and the role groups",
    ),
    req(
        "DeviceManagementConfiguration.ReadWrite.All",
        &[],
        "create and assign update policies and the security baseline",
    ),
    req(
        "DeviceManagementManagedDevices.Read.All",
        &["DeviceManagementManagedDevices.ReadWrite.All"],
        "read detected apps",
    ),
    req(
        "Device.Read.All",
        &["Directory.Read.All", "Directory.ReadWrite.All"],
        "read devices",
    ),
    req(
        "DeviceManagementApps.Read.All",
        &["DeviceManagementApps.ReadWrite.All"],
        "read mobile apps",
    ),
    req(
        "Policy.Read.All",
        &[],
        "readiness: read conditional access, security defaults and the guest invitation setting",
    ),
];

/// What the management phase needs in a customer tenant on top of onboarding (licences, temporary
/// access). No mail: access mails leave from the provider's own tenant ([`PROVIDER`]).
pub const MANAGEMENT: &[Requirement] = &[
    req(
        "LicenseAssignment.ReadWrite.All",
        &["User.ReadWrite.All", "Directory.ReadWrite.All"],
        "assign licences",
    ),
    req(
        "User.Invite.All",
        &["User.ReadWrite.All", "Directory.ReadWrite.All"],
        "invite engineers' guest accounts",
    ),
    req(
        "GroupMember.ReadWrite.All",
        &["Group.ReadWrite.All", "Directory.ReadWrite.All"],
        "place devices in the ring groups (`mdops rings sync`)",
    ),
    req("DeviceManagementApps.ReadWrite.All", &[], "manage mobile apps"),
    req("Reports.Read.All", &[], "read usage reports"),
];

/// Permissions asked of the provider's own tenant only (its app, its mailbox), never of a customer
/// tenant: least privilege keeps `Mail.Send` out of every customer tenant.
pub const PROVIDER: &[Requirement] = &[req(
    "Mail.Send",
    &[],
    "send access request mails from the service mailbox in the provider's tenant",
)];

/// Granted permissions a customer tenant should not hold (it is used only in the provider's tenant).
pub fn excess_in_customer(granted: &[String]) -> Vec<&'static str> {
    PROVIDER
        .iter()
        .map(|r| r.permission)
        .filter(|p| granted.iter().any(|g| g == p))
        .collect()
}

/// The requirements not met by `granted`, in declaration order.
pub fn missing<'a>(requirements: &'a [Requirement], granted: &[String]) -> Vec<&'a Requirement> {
    requirements.iter().filter(|r| !r.met_by(granted)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broader_permissions_satisfy_narrower_ones() {
        let granted = vec!["Directory.ReadWrite.All".to_string()];
        let names: Vec<&str> = missing(ONBOARDING, &granted).iter().map(|r| r.permission).collect();
        assert!(!names.contains(&"User.ReadWrite.All"));
        assert!(names.contains(&"DeviceManagementServiceConfig.ReadWrite.All"));
        let all: Vec<String> = ONBOARDING.iter().map(|r| r.permission.to_string()).collect();
        assert!(missing(ONBOARDING, &all).is_empty());
    }

    #[test]
    fn no_customer_tenant_is_asked_for_mail_send() {
        let customer: Vec<&str> = ONBOARDING.iter().chain(MANAGEMENT).map(|r| r.permission).collect();
        assert!(!customer.contains(&"Mail.Send"), "{customer:?}");
        assert_eq!(PROVIDER.iter().map(|r| r.permission).collect::<Vec<_>>(), ["Mail.Send"]);
        let granted = vec!["Mail.Send".to_string(), "User.ReadWrite.All".to_string()];
        assert_eq!(excess_in_customer(&granted), ["Mail.Send"]);
    }
}
