//! Seeds: what a tenant starts with. The same types are the JSON of `--tenants FILE`, the body of
//! `POST /_sim/tenants`, and the arguments of [`crate::start`]. See `examples/tenants.json`.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::knobs::Knobs;
use crate::store::IdentityPolicies;

/// One tenant: its name (also usable in URLs instead of its id), its apps and its directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSeed {
    /// Short name, e.g. `contoso`; the initial domain is `{name}.onmicrosoft.com`.
    pub name: String,
    /// Tenant id; a random GUID when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Organization display name; defaults to the name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Verified domains besides the initial one.
    #[serde(default)]
    pub domains: Vec<String>,
    /// `mobileDeviceManagementAuthority` of the organization (`unknown` when absent).
    #[serde(default)]
    pub mdm_authority: Option<String>,
    /// Applications with credentials and granted application permissions.
    #[serde(default)]
    pub apps: Vec<AppSeed>,
    /// Directory objects and inventory, visible at once (no replication lag).
    #[serde(default, flatten)]
    pub objects: ObjectsSeed,
    /// Realism knobs.
    #[serde(default)]
    pub knobs: Knobs,
    /// Security defaults and guest invitation settings (security defaults off, everyone may
    /// invite, when absent).
    #[serde(default)]
    pub identity_policies: IdentityPolicies,
    /// A tenant without an Intune licence: no subscribed SKU carries an Intune service plan.
    /// Otherwise a tenant whose seeded SKUs carry none gets an `INTUNE_A` subscription, as every
    /// tenant mdops can onboard has one (Graph's Intune API "requires an active Intune license for
    /// the tenant").
    #[serde(default)]
    pub without_intune: bool,
}

impl TenantSeed {
    /// An empty tenant with this name and default knobs.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            id: None,
            display_name: None,
            domains: Vec::new(),
            mdm_authority: None,
            apps: Vec::new(),
            objects: ObjectsSeed::default(),
            knobs: Knobs::default(),
            identity_policies: IdentityPolicies::default(),
            without_intune: false,
        }
    }
}

/// Objects added to a tenant at once (at creation, or later with `POST /_sim/tenants/{t}/objects`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsSeed {
    /// Users.
    #[serde(default)]
    pub users: Vec<UserSeed>,
    /// Security groups.
    #[serde(default)]
    pub groups: Vec<GroupSeed>,
    /// Subscribed SKUs (licences).
    #[serde(default)]
    pub skus: Vec<SkuSeed>,
    /// Intune detected apps.
    #[serde(default)]
    pub detected_apps: Vec<DetectedAppSeed>,
    /// Entra ID devices.
    #[serde(default)]
    pub devices: Vec<DeviceSeed>,
    /// Intune mobile apps.
    #[serde(default)]
    pub mobile_apps: Vec<MobileAppSeed>,
    /// Intune device configurations (e.g. a customer's own update ring assigned to all devices).
    #[serde(default)]
    pub device_configurations: Vec<DeviceConfigurationSeed>,
    /// Conditional access policies.
    #[serde(default)]
    pub conditional_access_policies: Vec<ConditionalAccessPolicySeed>,
}

/// An application (service principal) in a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSeed {
    /// Application (client) id.
    pub client_id: Uuid,
    /// Display name of the service principal.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Client secret, if the app authenticates with one.
    #[serde(default, serialize_with = "expose_optional_secret")]
    pub secret: Option<SecretString>,
    /// Certificates whose keys may sign client assertions.
    #[serde(default)]
    pub certificates: Vec<CertificateSeed>,
    /// Application permissions granted (admin-consented) in this tenant; empty means not consented.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A registered certificate (or bare public key) for client assertions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSeed {
    /// PEM: an X.509 `CERTIFICATE`, or an RSA `PUBLIC KEY` / SubjectPublicKeyInfo `PUBLIC KEY`.
    pub pem: String,
    /// The `x5t`/`kid` the assertion header carries. For a certificate the SHA-1 thumbprint
    /// (base64url) is always accepted too; for a bare key this is required.
    #[serde(default)]
    pub key_id: Option<String>,
}

/// A user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSeed {
    /// UPN; a bare name gets the tenant's initial domain.
    pub user_principal_name: String,
    /// Display name; defaults to the UPN's local part.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Object id; random when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Two-letter usage location (needed for licences).
    #[serde(default)]
    pub usage_location: Option<String>,
    /// `Member` (default) or `Guest`.
    #[serde(default)]
    pub user_type: Option<String>,
    /// Whether the account is enabled (default true).
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// Display names of directory roles the user is a member of, e.g. `Global Administrator`.
    #[serde(default)]
    pub directory_roles: Vec<String>,
}

/// A security group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSeed {
    /// Display name.
    pub display_name: String,
    /// Object id; random when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// UPNs (or bare names) of member users.
    #[serde(default)]
    pub members: Vec<String>,
    /// Created role-assignable (`isAssignableToRole: true`), so it can hold directory roles.
    #[serde(default)]
    pub is_assignable_to_role: bool,
}

impl GroupSeed {
    /// A security group with no members.
    pub fn security(display_name: &str) -> Self {
        GroupSeed {
            display_name: display_name.into(),
            id: None,
            members: Vec::new(),
            is_assignable_to_role: false,
        }
    }
}

/// A subscribed SKU.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuSeed {
    /// Part number, e.g. `SPE_E5`; well-known part numbers get their real `skuId`.
    pub sku_part_number: String,
    /// SKU id; required for part numbers the simulator does not know.
    #[serde(default)]
    pub sku_id: Option<Uuid>,
    /// `prepaidUnits.enabled`.
    pub enabled: u32,
    /// Service plan names; a plausible default list for well-known SKUs.
    #[serde(default)]
    pub service_plans: Vec<String>,
}

/// An app Intune detected on devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectedAppSeed {
    /// Display name.
    pub display_name: String,
    /// Version string.
    #[serde(default)]
    pub version: Option<String>,
    /// Number of devices it was seen on.
    #[serde(default)]
    pub device_count: u32,
}

/// A device in Entra ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSeed {
    /// Display name.
    pub display_name: String,
    /// Object id; random when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Operating system (default `Windows`).
    #[serde(default)]
    pub operating_system: Option<String>,
    /// Operating system version.
    #[serde(default)]
    pub operating_system_version: Option<String>,
}

/// An Intune mobile app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileAppSeed {
    /// Display name.
    pub display_name: String,
    /// `@odata.type` (default `#microsoft.graph.win32LobApp`).
    #[serde(default)]
    pub odata_type: Option<String>,
    /// Publisher.
    #[serde(default)]
    pub publisher: Option<String>,
}

/// An Intune device configuration a customer already has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfigurationSeed {
    /// Display name.
    pub display_name: String,
    /// `@odata.type` (default `#microsoft.graph.windowsUpdateForBusinessConfiguration`, an update ring).
    #[serde(default)]
    pub odata_type: Option<String>,
    /// Assigned to all devices (`allDevicesAssignmentTarget`).
    #[serde(default)]
    pub assigned_to_all_devices: bool,
    /// Assigned to all licensed users (`allLicensedUsersAssignmentTarget`).
    #[serde(default)]
    pub assigned_to_all_users: bool,
}

/// A conditional access policy (the parts a readiness check reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionalAccessPolicySeed {
    /// Display name.
    pub display_name: String,
    /// `enabled` (default), `disabled` or `enabledForReportingButNotEnforced`.
    #[serde(default)]
    pub state: Option<String>,
    /// `conditions.users.includeUsers` (default `["All"]`).
    #[serde(default)]
    pub include_users: Option<Vec<String>>,
    /// `conditions.users.excludeUsers`: object ids.
    #[serde(default)]
    pub exclude_users: Vec<String>,
    /// `conditions.users.includeGroups`: object ids.
    #[serde(default)]
    pub include_groups: Vec<String>,
    /// `conditions.users.excludeGroups`: object ids.
    #[serde(default)]
    pub exclude_groups: Vec<String>,
    /// `conditions.users.includeRoles`: role template ids.
    #[serde(default)]
    pub include_roles: Vec<String>,
    /// `grantControls.builtInControls` (default `["mfa"]`).
    #[serde(default)]
    pub built_in_controls: Option<Vec<String>>,
}

impl ConditionalAccessPolicySeed {
    /// An enabled policy requiring MFA of all users for all apps (the common "require MFA" policy).
    pub fn mfa_for_all_users(display_name: &str) -> Self {
        ConditionalAccessPolicySeed {
            display_name: display_name.into(),
            state: None,
            include_users: None,
            exclude_users: Vec::new(),
            include_groups: Vec::new(),
            exclude_groups: Vec::new(),
            include_roles: Vec::new(),
            built_in_controls: None,
        }
    }
}

/// `count` Windows devices named `{prefix}-00001` onwards, with random ids.
pub fn windows_devices(prefix: &str, count: usize) -> Vec<DeviceSeed> {
    (1..=count)
        .map(|i| DeviceSeed {
            display_name: format!("{prefix}-{i:05}"),
            id: None,
            operating_system: None,
            operating_system_version: None,
        })
        .collect()
}

fn expose_optional_secret<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    // The control API and seed files carry simulator secrets in the clear by design.
    match secret {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

/// Tenant id of the demo tenant.
pub const DEMO_TENANT_ID: &str = "5f4d3a2b-9c1e-4b7a-8d6f-0e2c1a3b4d5e";
/// Client id of the demo onboarding app.
pub const DEMO_CLIENT_ID: &str = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
/// Client secret of the demo onboarding app (a rehearsal value, not a credential).
pub const DEMO_CLIENT_SECRET: &str = "demo-secret-for-the-simulated-tenant";

/// Every application permission mdops needs in a customer tenant (onboarding + management +
/// elevation). No `Mail.Send`: access mails leave from the provider's own tenant
/// ([`PROVIDER_PERMISSIONS`]).
pub const PRODUCT_PERMISSIONS: &[&str] = &[
    "DeviceManagementServiceConfig.ReadWrite.All",
    "DeviceManagementConfiguration.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
    "DeviceManagementApps.ReadWrite.All",
    "User.ReadWrite.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "RoleManagement.ReadWrite.Directory",
    "Organization.Read.All",
    "Reports.Read.All",
    "Device.Read.All",
    "Device.ReadWrite.All",
    "Policy.Read.All",
    "User.Invite.All",
];

/// What the provider's own tenant grants on top of [`PRODUCT_PERMISSIONS`]: sending the access
/// mails from its service mailbox.
pub const PROVIDER_EXTRA_PERMISSIONS: &[&str] = &["Mail.Send"];

/// The permissions of the provider's app in its own tenant.
pub fn provider_permissions() -> Vec<String> {
    PRODUCT_PERMISSIONS
        .iter()
        .chain(PROVIDER_EXTRA_PERMISSIONS)
        .map(|p| p.to_string())
        .collect()
}

impl UserSeed {
    /// A member user with this UPN (a bare name gets the tenant's initial domain) and usage location.
    pub fn member(upn: &str, usage_location: Option<&str>) -> Self {
        UserSeed {
            user_principal_name: upn.into(),
            display_name: None,
            id: None,
            usage_location: usage_location.map(str::to_string),
            user_type: None,
            account_enabled: None,
            directory_roles: Vec::new(),
        }
    }
}

impl SkuSeed {
    /// A subscribed SKU by part number with `enabled` prepaid units and no service plans.
    pub fn new(part_number: &str, enabled: u32) -> Self {
        SkuSeed {
            sku_part_number: part_number.into(),
            sku_id: None,
            enabled,
            service_plans: Vec::new(),
        }
    }
}

/// A tenant named `name` with id `tenant_id` and one app (`client_id`, client secret `secret`)
/// consented to every permission mdops needs: the usual start of a test or a rehearsal.
pub fn consented_tenant(name: &str, tenant_id: Uuid, client_id: Uuid, secret: &str) -> TenantSeed {
    let mut seed = TenantSeed::new(name);
    seed.id = Some(tenant_id);
    seed.apps.push(AppSeed {
        client_id,
        display_name: None,
        secret: Some(SecretString::from(secret.to_string())),
        certificates: Vec::new(),
        permissions: PRODUCT_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
    });
    seed
}

/// The demo seed for the quickstart: one consented tenant "contoso" with a known client id and
/// secret, every permission the product needs, a few users, E5 licences, detected apps and devices.
pub fn demo() -> Vec<TenantSeed> {
    let mut t = TenantSeed::new("contoso");
    t.id = Uuid::parse_str(DEMO_TENANT_ID).ok();
    t.display_name = Some("Contoso Ltd".into());
    t.apps.push(AppSeed {
        client_id: Uuid::parse_str(DEMO_CLIENT_ID).unwrap_or_else(|_| Uuid::new_v4()),
        display_name: Some("mdops onboarding".into()),
        secret: Some(SecretString::from(DEMO_CLIENT_SECRET)),
        certificates: Vec::new(),
        permissions: PRODUCT_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
    });
    let user = |upn: &str, name: &str, roles: &[&str]| UserSeed {
        user_principal_name: upn.into(),
        display_name: Some(name.into()),
        id: None,
        usage_location: Some("US".into()),
        user_type: None,
        account_enabled: None,
        directory_roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    t.objects.users = vec![
        user("admin", "Contoso Admin", &["Global Administrator"]),
        user("adele.vance", "Adele Vance", &[]),
        user("alex.wilber", "Alex Wilber", &[]),
        user("megan.bowen", "Megan Bowen", &["Intune Administrator"]),
    ];
    t.objects.skus = vec![
        SkuSeed {
            sku_part_number: "SPE_E5".into(),
            sku_id: None,
            enabled: 25,
            service_plans: Vec::new(),
        },
        SkuSeed {
            sku_part_number: "EMSPREMIUM".into(),
            sku_id: None,
            enabled: 10,
            service_plans: Vec::new(),
        },
    ];
    t.objects.detected_apps = [
        ("Microsoft Edge", "131.0.2903.70", 42),
        ("Microsoft Teams", "24295.605.3225.8804", 40),
        ("7-Zip 23.01 (x64)", "23.01", 12),
        ("Notepad++ (64-bit x64)", "8.6.9", 7),
        ("Zoom Workplace", "6.2.11", 5),
    ]
    .into_iter()
    .map(|(n, v, c)| DetectedAppSeed {
        display_name: n.into(),
        version: Some(v.into()),
        device_count: c,
    })
    .collect();
    t.objects.devices = (1..=5)
        .map(|i| DeviceSeed {
            display_name: format!("CONTOSO-PC-{i:03}"),
            id: None,
            operating_system: None,
            operating_system_version: Some("10.0.22631.4460".into()),
        })
        .collect();
    t.objects.mobile_apps = vec![
        MobileAppSeed {
            display_name: "Company Portal".into(),
            odata_type: Some("#microsoft.graph.winGetApp".into()),
            publisher: Some("Microsoft Corporation".into()),
        },
        MobileAppSeed {
            display_name: "Line of business tool".into(),
            odata_type: None,
            publisher: Some("Contoso".into()),
        },
    ];
    vec![t]
}
