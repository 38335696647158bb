//! The one table of which application permissions allow which Graph call, and which throttle quota
//! a call counts against. A token is allowed when its `roles` hold any of the listed permissions
//! (Microsoft's "least to most privileged" lists, application column).

use axum::http::Method;

use super::Route;
use crate::store::Quota;

const USER_READ: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const USER_WRITE: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
const LICENSE_WRITE: &[&str] = &[
    "LicenseAssignment.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.ReadWrite.All",
];
const MAIL_SEND: &[&str] = &["Mail.Send"];
const MEMBER_OF_READ: &[&str] = &[
    "GroupMember.Read.All",
    "Group.Read.All",
    "User.Read.All",
    "Group.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const GROUP_READ: &[&str] = &[
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const GROUP_CREATE: &[&str] = &["Group.Create", "Group.ReadWrite.All", "Directory.ReadWrite.All"];
const GROUP_WRITE: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
const GROUP_MEMBER_READ: &[&str] = &[
    "GroupMember.Read.All",
    "Group.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
];
const GROUP_MEMBER_WRITE: &[&str] = &[
    "GroupMember.ReadWrite.All",
    "Group.ReadWrite.All",
    "Directory.ReadWrite.All",
];
const ROLE_READ: &[&str] = &[
    "RoleManagement.Read.Directory",
    "Directory.Read.All",
    "RoleManagement.ReadWrite.Directory",
    "Directory.ReadWrite.All",
];
/// Activating a role and changing its members.
const ROLE_MEMBER_WRITE: &[&str] = &["RoleManagement.ReadWrite.Directory"];
const ORG_READ: &[&str] = &[
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "User.Read.All",
];
const MDM_AUTHORITY_WRITE: &[&str] = &["DeviceManagementServiceConfig.ReadWrite.All"];
const DEVICE_CONFIG_READ: &[&str] = &[
    "DeviceManagementConfiguration.Read.All",
    "DeviceManagementConfiguration.ReadWrite.All",
];
const DEVICE_CONFIG_WRITE: &[&str] = &["DeviceManagementConfiguration.ReadWrite.All"];
const DETECTED_APPS_READ: &[&str] = &[
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
];
const MOBILE_APPS_READ: &[&str] = &["DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All"];
const MOBILE_APPS_WRITE: &[&str] = &["DeviceManagementApps.ReadWrite.All"];
const DEVICES_READ: &[&str] = &[
    "Device.Read.All",
    "Device.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const DEVICES_WRITE: &[&str] = &["Device.ReadWrite.All", "Directory.ReadWrite.All"];
const POLICY_READ: &[&str] = &["Policy.Read.All"];
const SKUS_READ: &[&str] = &[
    "LicenseAssignment.Read.All",
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const INVITE: &[&str] = &["User.Invite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"];

/// Permissions that allow a call, or `None` when the method is not allowed on the route.
pub fn required(route: &Route, method: &Method) -> Option<&'static [&'static str]> {
    use Route::*;
    let m = method.as_str();
    Some(match (route, m) {
        (Organization | OrganizationItem(_), "GET") => ORG_READ,
        (SetMdmAuthority(_), "POST") => MDM_AUTHORITY_WRITE,
        (Users | UsersCount | User(_), "GET") => USER_READ,
        (Users, "POST") | (User(_), "PATCH" | "DELETE") => USER_WRITE,
        (UserAssignLicense(_), "POST") => LICENSE_WRITE,
        (UserSendMail(_), "POST") => MAIL_SEND,
        (UserMemberOf(_), "GET") => MEMBER_OF_READ,
        (Groups | GroupsCount | Group(_), "GET") => GROUP_READ,
        (Groups, "POST") => GROUP_CREATE,
        (Group(_), "PATCH" | "DELETE") => GROUP_WRITE,
        (GroupMembers(_) | GroupMemberUsers(_), "GET") => GROUP_MEMBER_READ,
        (GroupMemberRefs(_), "POST") | (GroupMemberRef(_, _), "DELETE") => GROUP_MEMBER_WRITE,
        (DirectoryRoles | DirectoryRole(_) | DirectoryRoleMembers(_), "GET") => ROLE_READ,
        (DirectoryRoles | DirectoryRoleMemberRefs(_), "POST") | (DirectoryRoleMemberRef(_, _), "DELETE") => {
            ROLE_MEMBER_WRITE
        }
        (DeviceConfigurations | DeviceConfiguration(_) | DeviceConfigurationAssignments(_), "GET") => {
            DEVICE_CONFIG_READ
        }
        (DeviceConfigurations, "POST")
        | (DeviceConfiguration(_), "PATCH" | "DELETE")
        | (DeviceConfigurationAssign(_), "POST") => DEVICE_CONFIG_WRITE,
        (DetectedApps, "GET") => DETECTED_APPS_READ,
        // https://learn.microsoft.com/graph/api/intune-deviceintent-devicemanagementtemplate-createinstance?view=graph-rest-beta
        (Templates | Template(_) | Intents | Intent(_) | IntentAssignments(_), "GET") => DEVICE_CONFIG_READ,
        (TemplateCreateInstance(_), "POST") | (Intent(_), "DELETE") => DEVICE_CONFIG_WRITE,
        (MobileApps | MobileApp(_) | MobileAppAssignments(_), "GET") => MOBILE_APPS_READ,
        (MobileApps | MobileAppAssign(_), "POST") | (MobileApp(_), "DELETE") => MOBILE_APPS_WRITE,
        (Devices | Device(_) | DeviceMemberOf(_), "GET") => DEVICES_READ,
        (Device(_), "DELETE") => DEVICES_WRITE,
        (
            ConditionalAccessPolicies | ConditionalAccessPolicy(_) | SecurityDefaultsPolicy | AuthorizationPolicy,
            "GET",
        ) => POLICY_READ,
        (SubscribedSkus, "GET") => SKUS_READ,
        (Invitations, "POST") => INVITE,
        _ => return None,
    })
}

/// The throttle quota a call counts against, if any. Every read counts against the read quota
/// (Graph meters reads per app and tenant too).
pub fn quota(route: &Route, method: &Method) -> Option<Quota> {
    use Route::*;
    if *method == Method::GET {
        return Some(Quota::Read);
    }
    match route {
        DeviceConfigurations
        | DeviceConfiguration(_)
        | DeviceConfigurationAssign(_)
        | TemplateCreateInstance(_)
        | Intent(_)
        | MobileApps
        | MobileApp(_)
        | MobileAppAssign(_)
        | SetMdmAuthority(_) => Some(Quota::IntuneWrite),
        Users
        | User(_)
        | UserAssignLicense(_)
        | Groups
        | Group(_)
        | GroupMemberRefs(_)
        | GroupMemberRef(_, _)
        | DirectoryRoles
        | DirectoryRoleMemberRefs(_)
        | Device(_)
        | DirectoryRoleMemberRef(_, _)
        | Invitations => Some(Quota::IdentityWrite),
        _ => None,
    }
}
