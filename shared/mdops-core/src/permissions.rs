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
        "add the service accounts to directory roles (replaces the delegated Directory.AccessAsUser.All)",
    ),
    req(
        "Group.ReadWrite.All",
        &["Directory.ReadWrite.All"],
        "create and describe the Test, First, Fast and Broad groups",
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
];

/// What the management phase needs on top of onboarding (licences, temporary access, mail).
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
        "add and remove engineers in role groups",
    ),
    req("DeviceManagementApps.ReadWrite.All", &[], "manage mobile apps"),
    req("Reports.Read.All", &[], "read usage reports"),
    req("Mail.Send", &[], "send approval mails from the service mailbox"),
];

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
}
