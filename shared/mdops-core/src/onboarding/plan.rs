//! The onboarding DAG: which steps a run has and what each waits for.
//!
//! Step names are stable strings (`account:admin`, `update-policy:test`, ...) because they are
//! stored, carried in messages and typed by operators. [`StepKind`] is their parsed form; adding a
//! step is a variant here, a line in [`plan`] and a file in the handlers' steps module.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::tenant::{Ring, Tenant};

/// A service account created in the customer tenant, with the directory roles it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Account {
    /// Interactive administration account of the service engineers (Intune admin center).
    Admin,
    /// Non-interactive account for automated changes through partner APIs.
    Automation,
    /// First validation account (read-only checks of the tenant).
    Validation1,
    /// Second validation account.
    Validation2,
    /// Interactive SOC account for the Defender portal, read-only.
    DefenderSoc,
    /// Non-interactive account for Defender automation.
    DefenderAutomation,
}

/// A directory role by its built-in template id (the same in every tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectoryRole {
    IntuneAdministrator,
    GlobalReader,
    GroupsAdministrator,
    SecurityReader,
    SecurityAdministrator,
}

impl DirectoryRole {
    /// Every role the plan uses.
    pub const ALL: [DirectoryRole; 5] = [
        DirectoryRole::IntuneAdministrator,
        DirectoryRole::GlobalReader,
        DirectoryRole::GroupsAdministrator,
        DirectoryRole::SecurityReader,
        DirectoryRole::SecurityAdministrator,
    ];

    /// Name used in step names.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryRole::IntuneAdministrator => "intune-administrator",
            DirectoryRole::GlobalReader => "global-reader",
            DirectoryRole::GroupsAdministrator => "groups-administrator",
            DirectoryRole::SecurityReader => "security-reader",
            DirectoryRole::SecurityAdministrator => "security-administrator",
        }
    }

    /// The built-in role template id.
    pub fn template_id(self) -> &'static str {
        match self {
            DirectoryRole::IntuneAdministrator => "3a2c62db-5318-420d-8d74-23affee5d9d5",
            DirectoryRole::GlobalReader => "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
            DirectoryRole::GroupsAdministrator => "fdd7a751-b60b-444a-984c-02652fe8fa1c",
            DirectoryRole::SecurityReader => "5d6b6bb7-de71-4623-b4af-96380a352509",
            DirectoryRole::SecurityAdministrator => "194ae4cb-b126-40b2-bd5b-6091b380977d",
        }
    }
}

impl Account {
    /// Every account, in creation order.
    pub const ALL: [Account; 6] = [
        Account::Admin,
        Account::Automation,
        Account::Validation1,
        Account::Validation2,
        Account::DefenderSoc,
        Account::DefenderAutomation,
    ];

    /// Name used in step names and as the suffix of the account's mail nickname.
    pub fn as_str(self) -> &'static str {
        match self {
            Account::Admin => "admin",
            Account::Automation => "automation",
            Account::Validation1 => "validation1",
            Account::Validation2 => "validation2",
            Account::DefenderSoc => "defender-soc",
            Account::DefenderAutomation => "defender-automation",
        }
    }

    /// Display name in the tenant.
    pub fn display_name(self) -> &'static str {
        match self {
            Account::Admin => "Modern Workplace Service Administrator",
            Account::Automation => "Modern Workplace Service Automation",
            Account::Validation1 => "Modern Workplace Validation 1",
            Account::Validation2 => "Modern Workplace Validation 2",
            Account::DefenderSoc => "Modern Workplace Defender SOC",
            Account::DefenderAutomation => "Modern Workplace Defender Automation",
        }
    }

    /// The directory roles the account holds (least privilege for what it is used for).
    pub fn roles(self) -> &'static [DirectoryRole] {
        match self {
            Account::Admin => &[DirectoryRole::IntuneAdministrator, DirectoryRole::GlobalReader],
            Account::Automation => &[DirectoryRole::IntuneAdministrator, DirectoryRole::GroupsAdministrator],
            Account::Validation1 | Account::Validation2 => &[DirectoryRole::GlobalReader],
            Account::DefenderSoc => &[DirectoryRole::SecurityReader],
            Account::DefenderAutomation => &[DirectoryRole::SecurityAdministrator],
        }
    }

    /// Whether a person signs in with it (and so it needs a licence).
    pub fn interactive(self) -> bool {
        matches!(
            self,
            Account::Admin | Account::Validation1 | Account::Validation2 | Account::DefenderSoc
        )
    }

    /// `mailNickname` (and UPN local part) for the tenant's account prefix.
    pub fn mail_nickname(self, prefix: &str) -> String {
        format!("{prefix}-{}", self.as_str())
    }

    /// The account's `userPrincipalName` in a tenant.
    pub fn upn(self, tenant: &Tenant) -> String {
        format!(
            "{}@{}",
            self.mail_nickname(&tenant.settings.account_prefix),
            tenant.account_domain()
        )
    }
}

/// A role group engineers' guests are elevated into for an approved access request: a
/// role-assignable security group (`isAssignableToRole: true`, which Graph allows only at
/// creation) carrying directory roles. Onboarding creates it and records its object id
/// ([`crate::onboarding::role_groups`]); elevation uses that id, never the display name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleGroup {
    /// Service engineers: Intune administration and read access to the directory.
    ServiceEngineers,
    /// The Secure Operations Centre: read-only security access (Defender portal auditing).
    Soc,
}

impl RoleGroup {
    /// Every role group, in creation order.
    pub const ALL: [RoleGroup; 2] = [RoleGroup::ServiceEngineers, RoleGroup::Soc];

    /// Name used in step names and record keys.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleGroup::ServiceEngineers => "service-engineers",
            RoleGroup::Soc => "soc",
        }
    }

    /// Display name in the tenant (what `access_role_groups` and access requests name).
    pub fn display_name(self) -> &'static str {
        match self {
            RoleGroup::ServiceEngineers => "Modern Workplace Roles-Service Engineers",
            RoleGroup::Soc => "Modern Workplace Roles-SOC",
        }
    }

    /// `mailNickname` (required by Graph even for security groups).
    pub fn mail_nickname(self) -> String {
        format!("ModernWorkplaceRoles-{}", self.as_str())
    }

    /// The directory roles the group carries (least privilege for what the engineers do).
    pub fn roles(self) -> &'static [DirectoryRole] {
        match self {
            RoleGroup::ServiceEngineers => &[DirectoryRole::IntuneAdministrator, DirectoryRole::GlobalReader],
            RoleGroup::Soc => &[DirectoryRole::SecurityReader],
        }
    }

    /// The role group with this display name (case-insensitive, as Entra compares names).
    pub fn by_display_name(name: &str) -> Option<RoleGroup> {
        RoleGroup::ALL
            .into_iter()
            .find(|g| g.display_name().eq_ignore_ascii_case(name.trim()))
    }
}

/// What a detected-inventory step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Inventory {
    DetectedApps,
    Devices,
    MobileApps,
}

impl Inventory {
    /// Every inventory.
    pub const ALL: [Inventory; 3] = [Inventory::DetectedApps, Inventory::Devices, Inventory::MobileApps];

    /// Name used in step names.
    pub fn as_str(self) -> &'static str {
        match self {
            Inventory::DetectedApps => "detected-apps",
            Inventory::Devices => "devices",
            Inventory::MobileApps => "mobile-apps",
        }
    }
}

/// One step of an onboarding run, parsed from its stable name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepKind {
    /// The tenant answers, our app is consented and holds the permissions onboarding needs.
    Preflight,
    /// The tenant's MDM authority is Intune.
    MdmAuthority,
    /// A service account exists.
    Account(Account),
    /// Every directory role onboarding uses is activated, and their object ids recorded: read once
    /// per run, so the membership steps never list the roles again.
    DirectoryRoles,
    /// A service account is a member of a directory role.
    RoleMembership(Account, DirectoryRole),
    /// A role group exists, created role-assignable; its id is recorded for elevation.
    RoleGroup(RoleGroup),
    /// A role group carries one of its directory roles (is a member of the role).
    RoleGroupRole(RoleGroup, DirectoryRole),
    /// A ring's device group exists.
    Group(Ring),
    /// A ring's device group carries its description (`PATCH /groups/{id}`).
    GroupDescription(Ring),
    /// A ring's Windows update policy exists.
    UpdatePolicy(Ring),
    /// A ring's update policy is assigned to the ring's group.
    UpdatePolicyAssignment(Ring),
    /// The security baseline exists, unassigned.
    SecurityBaseline,
    /// An inventory was read and recorded.
    Inventory(Inventory),
    /// The accounts that need a licence were handed to the licence queue.
    Licences,
}

impl StepKind {
    /// The stable name of the step.
    pub fn name(&self) -> String {
        match self {
            StepKind::Preflight => "preflight".into(),
            StepKind::MdmAuthority => "mdm-authority".into(),
            StepKind::Account(a) => format!("account:{}", a.as_str()),
            StepKind::DirectoryRoles => "directory-roles".into(),
            StepKind::RoleMembership(a, r) => format!("role:{}:{}", a.as_str(), r.as_str()),
            StepKind::RoleGroup(g) => format!("role-group:{}", g.as_str()),
            StepKind::RoleGroupRole(g, r) => format!("role-group-role:{}:{}", g.as_str(), r.as_str()),
            StepKind::Group(r) => format!("group:{}", r.as_str()),
            StepKind::GroupDescription(r) => format!("group-description:{}", r.as_str()),
            StepKind::UpdatePolicy(r) => format!("update-policy:{}", r.as_str()),
            StepKind::UpdatePolicyAssignment(r) => format!("update-policy-assignment:{}", r.as_str()),
            StepKind::SecurityBaseline => "security-baseline".into(),
            StepKind::Inventory(i) => format!("inventory:{}", i.as_str()),
            StepKind::Licences => "licences".into(),
        }
    }

    /// Whether the step may write to the tenant (inventory and preflight only read).
    pub fn writes(&self) -> bool {
        !matches!(self, StepKind::Preflight | StepKind::Inventory(_))
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A step name that is not part of the onboarding plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown onboarding step {0:?}")]
pub struct UnknownStep(pub String);

impl FromStr for StepKind {
    type Err = UnknownStep;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownStep(s.to_string());
        let ring = |r: &str| Ring::ALL.into_iter().find(|x| x.as_str() == r).ok_or_else(unknown);
        let account = |a: &str| Account::ALL.into_iter().find(|x| x.as_str() == a).ok_or_else(unknown);
        let role_group = |g: &str| RoleGroup::ALL.into_iter().find(|x| x.as_str() == g).ok_or_else(unknown);
        let role = |r: &str| {
            DirectoryRole::ALL
                .into_iter()
                .find(|x| x.as_str() == r)
                .ok_or_else(unknown)
        };
        let parts: Vec<&str> = s.split(':').collect();
        Ok(match parts.as_slice() {
            ["preflight"] => StepKind::Preflight,
            ["mdm-authority"] => StepKind::MdmAuthority,
            ["security-baseline"] => StepKind::SecurityBaseline,
            ["directory-roles"] => StepKind::DirectoryRoles,
            ["licences"] => StepKind::Licences,
            ["account", a] => StepKind::Account(account(a)?),
            ["role", a, r] => {
                let account = account(a)?;
                let role = role(r)?;
                if !account.roles().contains(&role) {
                    return Err(unknown());
                }
                StepKind::RoleMembership(account, role)
            }
            ["role-group", g] => StepKind::RoleGroup(role_group(g)?),
            ["role-group-role", g, r] => {
                let group = role_group(g)?;
                let role = role(r)?;
                if !group.roles().contains(&role) {
                    return Err(unknown());
                }
                StepKind::RoleGroupRole(group, role)
            }
            ["group", r] => StepKind::Group(ring(r)?),
            ["group-description", r] => StepKind::GroupDescription(ring(r)?),
            ["update-policy", r] => StepKind::UpdatePolicy(ring(r)?),
            ["update-policy-assignment", r] => StepKind::UpdatePolicyAssignment(ring(r)?),
            ["inventory", i] => StepKind::Inventory(
                Inventory::ALL
                    .into_iter()
                    .find(|x| x.as_str() == *i)
                    .ok_or_else(unknown)?,
            ),
            _ => return Err(unknown()),
        })
    }
}

/// A step of a plan with the steps it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub kind: StepKind,
    pub deps: Vec<StepKind>,
}

/// The onboarding DAG. Everything waits for preflight; Intune objects wait for the MDM
/// authority; memberships wait for their account (or role group) and the role ids; assignments
/// wait for both policy and group.
pub fn plan() -> Vec<PlannedStep> {
    let step = |kind: StepKind, deps: Vec<StepKind>| PlannedStep { kind, deps };
    let mut steps = vec![
        step(StepKind::Preflight, vec![]),
        step(StepKind::MdmAuthority, vec![StepKind::Preflight]),
    ];
    steps.push(step(StepKind::DirectoryRoles, vec![StepKind::Preflight]));
    for account in Account::ALL {
        steps.push(step(StepKind::Account(account), vec![StepKind::Preflight]));
        for role in account.roles() {
            steps.push(step(
                StepKind::RoleMembership(account, *role),
                vec![StepKind::Account(account), StepKind::DirectoryRoles],
            ));
        }
    }
    for group in RoleGroup::ALL {
        steps.push(step(StepKind::RoleGroup(group), vec![StepKind::Preflight]));
        for role in group.roles() {
            steps.push(step(
                StepKind::RoleGroupRole(group, *role),
                vec![StepKind::RoleGroup(group), StepKind::DirectoryRoles],
            ));
        }
    }
    for ring in Ring::ALL {
        steps.push(step(StepKind::Group(ring), vec![StepKind::Preflight]));
        steps.push(step(StepKind::GroupDescription(ring), vec![StepKind::Group(ring)]));
        steps.push(step(StepKind::UpdatePolicy(ring), vec![StepKind::MdmAuthority]));
        steps.push(step(
            StepKind::UpdatePolicyAssignment(ring),
            vec![StepKind::UpdatePolicy(ring), StepKind::Group(ring)],
        ));
    }
    steps.push(step(StepKind::SecurityBaseline, vec![StepKind::MdmAuthority]));
    for inventory in Inventory::ALL {
        steps.push(step(StepKind::Inventory(inventory), vec![StepKind::Preflight]));
    }
    let licensed: Vec<StepKind> = Account::ALL
        .into_iter()
        .filter(|a| a.interactive())
        .map(StepKind::Account)
        .collect();
    steps.push(step(StepKind::Licences, licensed));
    steps
}

/// Length of the longest chain of steps (the critical path), in steps.
pub fn critical_path_len(steps: &[PlannedStep]) -> usize {
    fn depth(kind: &StepKind, steps: &[PlannedStep], guard: usize) -> usize {
        if guard == 0 {
            return 0;
        }
        let deps = steps
            .iter()
            .find(|s| &s.kind == kind)
            .map(|s| s.deps.as_slice())
            .unwrap_or(&[]);
        1 + deps.iter().map(|d| depth(d, steps, guard - 1)).max().unwrap_or(0)
    }
    steps
        .iter()
        .map(|s| depth(&s.kind, steps, steps.len()))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_name_round_trips() {
        for s in plan() {
            assert_eq!(s.kind.name().parse::<StepKind>().unwrap(), s.kind);
        }
        assert!("role:admin:security-reader".parse::<StepKind>().is_err());
        assert!("group:huge".parse::<StepKind>().is_err());
        assert!("role-group-role:soc:intune-administrator".parse::<StepKind>().is_err());
        assert!("role-group:admins".parse::<StepKind>().is_err());
    }

    #[test]
    fn each_role_group_is_created_then_given_each_of_its_roles_once_the_roles_are_active() {
        let steps = plan();
        for group in RoleGroup::ALL {
            let create = steps.iter().find(|s| s.kind == StepKind::RoleGroup(group)).unwrap();
            assert_eq!(create.deps, vec![StepKind::Preflight]);
            assert!(!group.roles().is_empty());
            for role in group.roles() {
                let carry = steps
                    .iter()
                    .find(|s| s.kind == StepKind::RoleGroupRole(group, *role))
                    .unwrap_or_else(|| panic!("{} carries {}", group.as_str(), role.as_str()));
                assert_eq!(carry.deps, vec![StepKind::RoleGroup(group), StepKind::DirectoryRoles]);
                assert!(
                    DirectoryRole::ALL.contains(role),
                    "the directory-roles step activates it"
                );
            }
            assert_eq!(
                RoleGroup::by_display_name(&group.display_name().to_uppercase()),
                Some(group)
            );
        }
        assert_eq!(RoleGroup::by_display_name("Global Admins"), None);
    }

    /// `account_prefix` and `account_domain` (docs/tenant-settings.md) reach the accounts' UPNs.
    #[test]
    fn the_account_settings_shape_every_service_account_upn() {
        use crate::tenant::{CredentialRef, TenantSettings};
        let mut tenant = Tenant {
            tenant_id: "5f4d3a2b-9c1e-4b7a-8d6f-0e2c1a3b4d5e".parse().unwrap(),
            domain: "contoso.onmicrosoft.com".parse().unwrap(),
            name: "Contoso".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            credential: CredentialRef::ManagedIdentity,
            settings: TenantSettings::default(),
            added_at: chrono::Utc::now(),
        };
        let default_prefix = TenantSettings::default().account_prefix;
        assert_eq!(
            Account::Admin.upn(&tenant),
            format!("{default_prefix}-admin@contoso.onmicrosoft.com")
        );
        tenant.settings.set("account_prefix", "ops").unwrap();
        tenant.settings.set("account_domain", "ops.contoso.com").unwrap();
        for account in Account::ALL {
            assert_eq!(
                account.upn(&tenant),
                format!("ops-{}@ops.contoso.com", account.as_str())
            );
        }
    }

    #[test]
    fn plan_is_a_dag_whose_deps_exist() {
        let steps = plan();
        let names: std::collections::BTreeSet<String> = steps.iter().map(|s| s.kind.name()).collect();
        assert_eq!(names.len(), steps.len(), "step names are unique");
        for s in &steps {
            for d in &s.deps {
                assert!(names.contains(&d.name()), "{} waits for missing {}", s.kind, d);
            }
        }
        assert_eq!(critical_path_len(&steps), 4);
        assert!(
            steps.len() <= crate::store::MAX_TRANSACTION_WRITES - 2,
            "a run is created in one transaction"
        );
    }
}
