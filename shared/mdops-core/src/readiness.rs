//! The readiness check: what a provider must know about a customer tenant before onboarding
//! writes anything, each finding a pass, a warning or a fail with what to do. Modelled on the
//! readiness assessments managed update services run before enrolling a tenant (licences, MDM
//! authority, conditional access, existing update rings, security defaults, guest settings).
//!
//! This module is the rules only: it judges [`TenantFacts`] that the handlers read from Graph
//! (`mdops_handlers::readiness`, which cites the Graph pages of every resource it reads). A fail
//! stops onboarding's preflight before any write; a warning is reported and recorded.

use serde::{Deserialize, Serialize};

use crate::onboarding::Account;

/// Service plans that carry Intune device management (Microsoft's product and service plan
/// names: Intune in EMS / Microsoft 365 E3/E5 and standalone, Intune for Education, Intune for
/// small business).
pub const INTUNE_SERVICE_PLANS: &[&str] = &["INTUNE_A", "INTUNE_EDU", "INTUNE_SMBIZ"];

/// The `@odata.type` of an Intune update ring (Windows Update for Business configuration).
pub const UPDATE_RING_TYPE: &str = "#microsoft.graph.windowsUpdateForBusinessConfiguration";
/// Assignment target: every device Intune manages.
pub const ALL_DEVICES_TARGET: &str = "#microsoft.graph.allDevicesAssignmentTarget";
/// Assignment target: every licensed user (and so their devices).
pub const ALL_USERS_TARGET: &str = "#microsoft.graph.allLicensedUsersAssignmentTarget";

/// How a finding judges the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warning,
    Fail,
}

impl Verdict {
    /// `pass`, `warning`, `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warning => "warning",
            Verdict::Fail => "fail",
        }
    }
}

/// What is checked. Stable names: they appear in `--json` output and step outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Our app holds every application permission onboarding needs.
    Permissions,
    /// An enabled subscription carries an Intune service plan.
    IntuneLicence,
    /// The MDM authority is unset (onboarding sets Intune) or already Intune.
    MdmAuthority,
    /// Enough free units of the service accounts' licences.
    LicenceUnits,
    /// No user mdops did not make holds a service account's name (the account step would refuse
    /// to adopt it).
    ServiceAccounts,
    /// No conditional access policy blocks a service account.
    ConditionalAccess,
    /// No existing update ring assigned to all devices (or all users) to conflict with the rings.
    UpdateRings,
    /// Security defaults are off.
    SecurityDefaults,
    /// Guest invitations are allowed, so engineers' guest accounts can be invited.
    GuestInvitations,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 9] = [
        Check::Permissions,
        Check::IntuneLicence,
        Check::MdmAuthority,
        Check::LicenceUnits,
        Check::ServiceAccounts,
        Check::ConditionalAccess,
        Check::UpdateRings,
        Check::SecurityDefaults,
        Check::GuestInvitations,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Permissions => "permissions",
            Check::IntuneLicence => "intune-licence",
            Check::MdmAuthority => "mdm-authority",
            Check::LicenceUnits => "licence-units",
            Check::ServiceAccounts => "service-accounts",
            Check::ConditionalAccess => "conditional-access",
            Check::UpdateRings => "update-rings",
            Check::SecurityDefaults => "security-defaults",
            Check::GuestInvitations => "guest-invitations",
        }
    }
}

/// One thing found, how it is judged, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub check: Check,
    pub verdict: Verdict,
    /// What was found, for people.
    pub summary: String,
    /// What to do (absent on a pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Finding {
    fn pass(check: Check, summary: impl Into<String>) -> Self {
        Finding {
            check,
            verdict: Verdict::Pass,
            summary: summary.into(),
            action: None,
        }
    }

    fn problem(check: Check, verdict: Verdict, summary: impl Into<String>, action: impl Into<String>) -> Self {
        Finding {
            check,
            verdict,
            summary: summary.into(),
            action: Some(action.into()),
        }
    }
}

/// Every finding about one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub tenant_id: String,
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst verdict (pass for a report with nothing wrong).
    pub fn verdict(&self) -> Verdict {
        self.findings.iter().map(|f| f.verdict).max().unwrap_or(Verdict::Pass)
    }

    /// The findings with this verdict.
    pub fn with(&self, verdict: Verdict) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.verdict == verdict).collect()
    }

    /// The findings that are not passes.
    pub fn problems(&self) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.verdict != Verdict::Pass).collect()
    }
}

/// A subscribed SKU as `GET /subscribedSkus` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkuFact {
    #[serde(default)]
    pub sku_id: Option<String>,
    #[serde(default)]
    pub sku_part_number: Option<String>,
    #[serde(default)]
    pub capability_status: Option<String>,
    #[serde(default)]
    pub consumed_units: i64,
    #[serde(default)]
    pub prepaid_units: PrepaidUnits,
    #[serde(default)]
    pub service_plans: Vec<ServicePlan>,
}

/// `prepaidUnits` of a SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PrepaidUnits {
    #[serde(default)]
    pub enabled: i64,
}

/// One service plan of a SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan {
    #[serde(default)]
    pub service_plan_name: Option<String>,
}

impl SkuFact {
    fn enabled(&self) -> bool {
        self.capability_status.as_deref().is_none_or(|s| s == "Enabled")
    }

    /// Whether this is an enabled SKU with an Intune service plan.
    pub fn carries_intune(&self) -> bool {
        self.enabled()
            && self.service_plans.iter().any(|p| {
                p.service_plan_name
                    .as_deref()
                    .is_some_and(|n| INTUNE_SERVICE_PLANS.contains(&n))
            })
    }

    fn free_units(&self) -> i64 {
        (self.prepaid_units.enabled - self.consumed_units).max(0)
    }
}

/// A service account: what onboarding will create (or has), and what the tenant knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFact {
    pub account: Account,
    pub upn: String,
    /// Object id, if the account exists already (a tenant onboarded before, or a re-run).
    pub id: Option<String>,
    /// Groups it is a direct member of (read only when a policy names groups).
    pub groups: Vec<String>,
    /// `skuId`s of the licences it holds.
    pub licences: Vec<String>,
    /// Whether onboarding may adopt it: it carries this tenant's mdops marker or an operator
    /// allowed its id (always true for an account that does not exist yet).
    pub adoptable: bool,
}

/// `conditions.users` of a conditional access policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CaUsers {
    pub include_users: Vec<String>,
    pub exclude_users: Vec<String>,
    pub include_groups: Vec<String>,
    pub exclude_groups: Vec<String>,
    pub include_roles: Vec<String>,
    pub exclude_roles: Vec<String>,
}

/// `conditions` of a conditional access policy (the part read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CaConditions {
    pub users: Option<CaUsers>,
}

/// `grantControls` of a conditional access policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CaGrantControls {
    pub operator: Option<String>,
    pub built_in_controls: Vec<String>,
}

/// A conditional access policy as `GET /identity/conditionalAccess/policies` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaPolicy {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// `enabled`, `disabled` or `enabledForReportingButNotEnforced`.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub conditions: CaConditions,
    #[serde(default)]
    pub grant_controls: Option<CaGrantControls>,
}

impl CaPolicy {
    /// Whether the policy's users condition takes in this account.
    fn applies_to(&self, a: &AccountFact) -> bool {
        let Some(users) = &self.conditions.users else {
            return false;
        };
        let roles: Vec<&str> = a.account.roles().iter().map(|r| r.template_id()).collect();
        let id_in = |list: &[String]| {
            a.id.as_ref()
                .is_some_and(|id| list.iter().any(|x| x.eq_ignore_ascii_case(id)))
        };
        let group_in = |list: &[String]| list.iter().any(|g| a.groups.iter().any(|m| m.eq_ignore_ascii_case(g)));
        let role_in = |list: &[String]| list.iter().any(|r| roles.iter().any(|m| m.eq_ignore_ascii_case(r)));
        let included = users.include_users.iter().any(|u| u == "All")
            || id_in(&users.include_users)
            || group_in(&users.include_groups)
            || role_in(&users.include_roles);
        let excluded = id_in(&users.exclude_users) || group_in(&users.exclude_groups) || role_in(&users.exclude_roles);
        included && !excluded
    }

    /// Whether its grant controls are ones this account cannot meet. A person at an interactive
    /// account can answer MFA; nobody at an unattended one can; neither signs in from a device the
    /// customer's tenant manages, so `compliantDevice`, `domainJoinedDevice`, ... are never met.
    fn blocks(&self, a: &AccountFact) -> bool {
        let Some(grant) = &self.grant_controls else {
            return false; // session controls only: nothing to meet
        };
        if grant.built_in_controls.is_empty() {
            return false;
        }
        let met = |c: &String| a.account.interactive() && c.eq_ignore_ascii_case("mfa");
        if grant.operator.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("AND")) {
            !grant.built_in_controls.iter().all(met)
        } else {
            !grant.built_in_controls.iter().any(met)
        }
    }

    fn name(&self) -> String {
        format!("{:?} ({})", self.display_name.as_deref().unwrap_or(""), self.id)
    }
}

/// An Intune device configuration with its assignment targets (`@odata.type` of each target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRingFact {
    pub id: String,
    pub display_name: String,
    pub targets: Vec<String>,
}

/// What the handlers read from the tenant. A read the tenant refused (a permission not granted)
/// is `Err(reason)`, and becomes a fail naming it.
#[derive(Debug, Clone)]
pub struct TenantFacts {
    pub tenant_id: String,
    /// The organization's object id (absent if the tenant answered with none).
    pub organization_id: Option<String>,
    /// Onboarding permissions not granted (by permission name).
    pub missing_permissions: Vec<String>,
    pub skus: Vec<SkuFact>,
    /// `mobileDeviceManagementAuthority` of the organization.
    pub mdm_authority: Option<String>,
    /// The tenant setting `service_account_skus`: part numbers given to interactive accounts.
    pub licence_skus: Vec<String>,
    pub accounts: Vec<AccountFact>,
    pub ca_policies: Result<Vec<CaPolicy>, String>,
    pub update_rings: Result<Vec<UpdateRingFact>, String>,
    pub security_defaults_enabled: Result<bool, String>,
    pub allow_invites_from: Result<String, String>,
}

/// Judges every check.
pub fn assess(facts: &TenantFacts) -> Report {
    let mut findings = Vec::new();
    findings.push(permissions(facts));
    findings.push(intune_licence(&facts.skus));
    findings.push(mdm_authority(facts.mdm_authority.as_deref()));
    findings.extend(licence_units(facts));
    findings.push(service_accounts(&facts.accounts));
    findings.extend(conditional_access(facts));
    findings.extend(update_rings(facts));
    findings.push(security_defaults(&facts.security_defaults_enabled));
    findings.push(guest_invitations(&facts.allow_invites_from));
    Report {
        tenant_id: facts.tenant_id.clone(),
        findings,
    }
}

fn unreadable(check: Check, what: &str, reason: &str) -> Finding {
    Finding::problem(
        check,
        Verdict::Fail,
        format!("could not read {what}: {reason}"),
        "grant the application permission Policy.Read.All (`mdops tenants consent-url`), then check again",
    )
}

fn permissions(facts: &TenantFacts) -> Finding {
    if facts.missing_permissions.is_empty() {
        return Finding::pass(
            Check::Permissions,
            "every application permission onboarding needs is granted",
        );
    }
    Finding::problem(
        Check::Permissions,
        Verdict::Fail,
        format!(
            "{} application permission(s) onboarding needs are not granted: {}",
            facts.missing_permissions.len(),
            facts.missing_permissions.join(", ")
        ),
        "have the customer's Global Administrator consent again (`mdops tenants consent-url`)",
    )
}

fn intune_licence(skus: &[SkuFact]) -> Finding {
    if let Some(sku) = skus.iter().find(|s| s.carries_intune()) {
        return Finding::pass(
            Check::IntuneLicence,
            format!(
                "Intune is licensed ({})",
                sku.sku_part_number.as_deref().unwrap_or("a subscription")
            ),
        );
    }
    let held: Vec<&str> = skus.iter().filter_map(|s| s.sku_part_number.as_deref()).collect();
    Finding::problem(
        Check::IntuneLicence,
        Verdict::Fail,
        format!(
            "no Intune licence: no enabled subscribed SKU carries an Intune service plan ({}); it holds {}",
            INTUNE_SERVICE_PLANS.join(", "),
            if held.is_empty() {
                "no subscriptions".to_string()
            } else {
                held.join(", ")
            }
        ),
        "add a subscription that includes Intune (e.g. Microsoft 365 E3/E5, EMS E3/E5 or Intune Plan 1)",
    )
}

fn mdm_authority(authority: Option<&str>) -> Finding {
    match authority.unwrap_or("unknown") {
        "intune" => Finding::pass(Check::MdmAuthority, "the MDM authority is Intune"),
        "unknown" | "" => Finding::pass(
            Check::MdmAuthority,
            "the MDM authority is unset; onboarding sets it to Intune",
        ),
        other => Finding::problem(
            Check::MdmAuthority,
            Verdict::Fail,
            format!(
                "the MDM authority is {other:?}; mdops never changes a live tenant's authority (that would unenroll its devices)"
            ),
            "move the tenant to Intune as MDM authority by hand (Intune admin center › Tenant administration), then check again",
        ),
    }
}

fn licence_units(facts: &TenantFacts) -> Vec<Finding> {
    if facts.licence_skus.is_empty() {
        return vec![Finding::pass(
            Check::LicenceUnits,
            "service accounts get no licence (the setting service_account_skus is empty)",
        )];
    }
    let interactive: Vec<&AccountFact> = facts.accounts.iter().filter(|a| a.account.interactive()).collect();
    let mut out = Vec::new();
    for part in &facts.licence_skus {
        let sku = facts.skus.iter().find(|s| {
            s.sku_part_number
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(part))
        });
        let Some(sku) = sku else {
            out.push(Finding::problem(
                Check::LicenceUnits,
                Verdict::Warning,
                format!(
                    "the tenant has no {part} subscription, which the {} interactive service accounts are given (service_account_skus); their licence messages would be dead-lettered",
                    interactive.len()
                ),
                format!("add {} {part} licence(s), or set service_account_skus to a SKU the tenant holds", interactive.len()),
            ));
            continue;
        };
        let needed = interactive
            .iter()
            .filter(|a| {
                !a.licences
                    .iter()
                    .any(|l| sku.sku_id.as_deref().is_some_and(|id| id.eq_ignore_ascii_case(l)))
            })
            .count() as i64;
        let free = sku.free_units();
        if free < needed {
            out.push(Finding::problem(
                Check::LicenceUnits,
                Verdict::Warning,
                format!(
                    "{part}: {needed} service account(s) need a licence but only {free} of {} unit(s) are free; the rest of their licence messages would be dead-lettered",
                    sku.prepaid_units.enabled
                ),
                format!("buy or free {} more {part} licence(s)", needed - free),
            ));
        } else {
            out.push(Finding::pass(
                Check::LicenceUnits,
                format!("{part}: {free} unit(s) free for the {needed} service account(s) that need one"),
            ));
        }
    }
    out
}

fn service_accounts(accounts: &[AccountFact]) -> Finding {
    let taken: Vec<String> = accounts
        .iter()
        .filter(|a| !a.adoptable)
        .filter_map(|a| a.id.as_ref().map(|id| format!("{} ({id})", a.upn)))
        .collect();
    if !taken.is_empty() {
        // A warning, not a fail: the account step refuses such a user safely (it fails alone and
        // the user gets no role), and `mdops onboard --adopt` replays exactly the refused steps.
        return Finding::problem(
            Check::ServiceAccounts,
            Verdict::Warning,
            format!(
                "user(s) {} hold a service account's name but were not made by mdops for this tenant (no marker) and no operator allowed them: their account steps would fail, and they would get no role",
                taken.join(", ")
            ),
            "if a user is the service account (made before), allow it: `mdops onboard --tenant-id T --adopt ID`; otherwise rename or remove it, or choose another account_prefix",
        );
    }
    let existing = accounts.iter().filter(|a| a.id.is_some()).count();
    if existing == 0 {
        Finding::pass(
            Check::ServiceAccounts,
            "no service account exists yet; onboarding creates them",
        )
    } else {
        Finding::pass(
            Check::ServiceAccounts,
            format!(
                "{existing} of {} service accounts exist, each made by mdops or allowed",
                accounts.len()
            ),
        )
    }
}

fn conditional_access(facts: &TenantFacts) -> Vec<Finding> {
    let policies = match &facts.ca_policies {
        Ok(p) => p,
        Err(reason) => {
            return vec![unreadable(
                Check::ConditionalAccess,
                "the conditional access policies",
                reason,
            )];
        }
    };
    let mut out = Vec::new();
    for policy in policies {
        let state = policy.state.as_deref().unwrap_or("enabled");
        if state == "disabled" {
            continue;
        }
        let blocked: Vec<&AccountFact> = facts
            .accounts
            .iter()
            .filter(|a| policy.applies_to(a) && policy.blocks(a))
            .collect();
        if blocked.is_empty() {
            continue;
        }
        let existing: Vec<String> = blocked
            .iter()
            .filter_map(|a| a.id.as_ref().map(|id| format!("{} ({id})", a.upn)))
            .collect();
        let future: Vec<&str> = blocked
            .iter()
            .filter(|a| a.id.is_none())
            .map(|a| a.upn.as_str())
            .collect();
        let controls = policy
            .grant_controls
            .as_ref()
            .map(|g| g.built_in_controls.join(", "))
            .unwrap_or_default();
        let report_only = state == "enabledForReportingButNotEnforced";
        let verdict = if !existing.is_empty() && !report_only {
            Verdict::Fail
        } else {
            Verdict::Warning
        };
        let mut summary = format!(
            "conditional access policy {}{} requires {controls} of",
            policy.name(),
            if report_only { " (report-only)" } else { "" }
        );
        if !existing.is_empty() {
            summary.push_str(&format!(" service accounts {}", existing.join(", ")));
        }
        if !future.is_empty() {
            summary.push_str(&format!(
                "{} the service accounts onboarding will create ({})",
                if existing.is_empty() { "" } else { " and" },
                future.join(", ")
            ));
        }
        summary.push_str(", which cannot meet it, so their sign-ins would be blocked");
        let action = if existing.is_empty() {
            "exclude the service accounts from the policy's users as soon as onboarding creates them (their ids are in the run's account steps); `mdops tenants check --readiness` fails until they are".to_string()
        } else if report_only {
            format!(
                "exclude {} from the policy's users before it is enforced",
                existing.join(", ")
            )
        } else {
            format!(
                "exclude {} from the policy (Entra admin center › Conditional Access › the policy › Users › Exclude), then check again",
                existing.join(", ")
            )
        };
        out.push(Finding::problem(Check::ConditionalAccess, verdict, summary, action));
    }
    if out.is_empty() {
        out.push(Finding::pass(
            Check::ConditionalAccess,
            format!(
                "none of {} conditional access policy(ies) blocks a service account",
                policies.len()
            ),
        ));
    }
    out
}

fn update_rings(facts: &TenantFacts) -> Vec<Finding> {
    let rings = match &facts.update_rings {
        Ok(r) => r,
        Err(reason) => {
            return vec![Finding::problem(
                Check::UpdateRings,
                Verdict::Fail,
                format!("could not read the device configurations: {reason}"),
                "grant DeviceManagementConfiguration.ReadWrite.All (`mdops tenants consent-url`), then check again",
            )];
        }
    };
    let mut out = Vec::new();
    for ring in rings {
        let all_devices = ring.targets.iter().any(|t| t == ALL_DEVICES_TARGET);
        let all_users = ring.targets.iter().any(|t| t == ALL_USERS_TARGET);
        if all_devices {
            out.push(Finding::problem(
                Check::UpdateRings,
                Verdict::Fail,
                format!(
                    "update ring {:?} ({}) is assigned to all devices: every device in the Test/First/Fast/Broad rings would get two update rings, and Intune applies neither setting that conflicts",
                    ring.display_name, ring.id
                ),
                "assign it to groups instead of All devices, or delete it (Intune admin center › Devices › Windows updates › Update rings), then check again",
            ));
        } else if all_users {
            out.push(Finding::problem(
                Check::UpdateRings,
                Verdict::Warning,
                format!(
                    "update ring {:?} ({}) is assigned to all licensed users: their devices would get it beside their ring's policy and conflict",
                    ring.display_name, ring.id
                ),
                "assign it to groups that leave out the ring devices, or exclude the four ring groups (Modern Workplace Devices-Test/-First/-Fast/-Broad) from it once onboarding creates them",
            ));
        }
    }
    if out.is_empty() {
        out.push(Finding::pass(
            Check::UpdateRings,
            format!(
                "none of {} update ring(s) is assigned to all devices or all users",
                rings.len()
            ),
        ));
    }
    out
}

fn security_defaults(enabled: &Result<bool, String>) -> Finding {
    match enabled {
        Err(reason) => unreadable(Check::SecurityDefaults, "the security defaults policy", reason),
        Ok(false) => Finding::pass(Check::SecurityDefaults, "security defaults are off"),
        Ok(true) => Finding::problem(
            Check::SecurityDefaults,
            Verdict::Fail,
            "security defaults are on: they require MFA of every administrator at every sign-in with no exclusions, so the unattended service accounts (Intune and Security Administrator) could not sign in, and conditional access cannot be used while they are on",
            "turn security defaults off (Entra admin center › Overview › Properties › Manage security defaults) and protect the tenant with conditional access policies that exclude the service accounts, then check again",
        ),
    }
}

fn guest_invitations(value: &Result<String, String>) -> Finding {
    match value {
        Err(reason) => unreadable(Check::GuestInvitations, "the authorization policy", reason),
        Ok(v) if v == "none" => Finding::problem(
            Check::GuestInvitations,
            Verdict::Fail,
            "guest invitations are off (allowInvitesFrom = none: nobody, admins included, may invite): engineers' temporary guest accounts could not be invited",
            "allow admins and guest inviters at least (Entra admin center › External Identities › External collaboration settings › Guest invite settings), then check again",
        ),
        Ok(v) if ["adminsAndGuestInviters", "adminsGuestInvitersAndAllMembers", "everyone"].contains(&v.as_str()) => {
            Finding::pass(
                Check::GuestInvitations,
                format!(
                    "guest invitations are allowed (allowInvitesFrom = {v}); mdops invites as an application with User.Invite.All"
                ),
            )
        }
        Ok(other) => Finding::problem(
            Check::GuestInvitations,
            Verdict::Warning,
            format!("guest invitation setting allowInvitesFrom = {other:?} is not one mdops knows"),
            "check in the Entra admin center that admins may invite guests",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(a: Account, id: Option<&str>) -> AccountFact {
        AccountFact {
            account: a,
            upn: format!("mw-{}@t.example", a.as_str()),
            id: id.map(str::to_string),
            groups: Vec::new(),
            licences: Vec::new(),
            adoptable: true,
        }
    }

    fn clean() -> TenantFacts {
        TenantFacts {
            tenant_id: "t".into(),
            organization_id: Some("org".into()),
            missing_permissions: Vec::new(),
            skus: vec![SkuFact {
                sku_id: Some("e5".into()),
                sku_part_number: Some("SPE_E5".into()),
                capability_status: Some("Enabled".into()),
                consumed_units: 0,
                prepaid_units: PrepaidUnits { enabled: 10 },
                service_plans: vec![ServicePlan {
                    service_plan_name: Some("INTUNE_A".into()),
                }],
            }],
            mdm_authority: Some("unknown".into()),
            licence_skus: vec!["SPE_E5".into()],
            accounts: Account::ALL.into_iter().map(|a| account(a, None)).collect(),
            ca_policies: Ok(Vec::new()),
            update_rings: Ok(Vec::new()),
            security_defaults_enabled: Ok(false),
            allow_invites_from: Ok("everyone".into()),
        }
    }

    fn mfa_all(state: &str) -> CaPolicy {
        CaPolicy {
            id: "p1".into(),
            display_name: Some("Require MFA".into()),
            state: Some(state.into()),
            conditions: CaConditions {
                users: Some(CaUsers {
                    include_users: vec!["All".into()],
                    ..CaUsers::default()
                }),
            },
            grant_controls: Some(CaGrantControls {
                operator: Some("OR".into()),
                built_in_controls: vec!["mfa".into()],
            }),
        }
    }

    #[test]
    fn a_clean_tenant_passes_every_check() {
        let report = assess(&clean());
        assert!(report.problems().is_empty(), "{report:#?}");
        let checks: Vec<Check> = report.findings.iter().map(|f| f.check).collect();
        assert_eq!(checks, Check::ALL);
    }

    #[test]
    fn mfa_for_all_users_blocks_only_the_unattended_accounts_and_fails_once_they_exist() {
        let mut facts = clean();
        facts.ca_policies = Ok(vec![mfa_all("enabled")]);
        let report = assess(&facts);
        let ca = report.with(Verdict::Warning);
        assert_eq!(ca.len(), 1, "{report:#?}");
        assert!(ca[0].summary.contains("automation") && !ca[0].summary.contains("mw-admin@"));
        facts.accounts = Account::ALL.into_iter().map(|a| account(a, Some(a.as_str()))).collect();
        let report = assess(&facts);
        assert_eq!(report.verdict(), Verdict::Fail);
        // Excluding the unattended accounts by id clears it.
        let mut policy = mfa_all("enabled");
        let users = policy.conditions.users.as_mut().unwrap();
        users.exclude_users = vec!["automation".into(), "defender-automation".into()];
        facts.ca_policies = Ok(vec![policy]);
        assert!(assess(&facts).problems().is_empty());
    }

    #[test]
    fn an_existing_account_mdops_did_not_make_is_said_before_onboarding_meets_it() {
        let mut facts = clean();
        facts.accounts[1].id = Some("someone".into());
        assert!(assess(&facts).problems().is_empty(), "made by mdops: adopted");
        facts.accounts[1].adoptable = false;
        let report = assess(&facts);
        let f = report.with(Verdict::Warning);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, Check::ServiceAccounts);
        assert!(f[0].summary.contains("mw-automation@t.example (someone)"), "{f:?}");
    }

    #[test]
    fn report_only_and_disabled_policies_do_not_fail() {
        let mut facts = clean();
        facts.accounts = Account::ALL.into_iter().map(|a| account(a, Some(a.as_str()))).collect();
        facts.ca_policies = Ok(vec![mfa_all("enabledForReportingButNotEnforced")]);
        assert_eq!(assess(&facts).verdict(), Verdict::Warning);
        facts.ca_policies = Ok(vec![mfa_all("disabled")]);
        assert_eq!(assess(&facts).verdict(), Verdict::Pass);
    }

    #[test]
    fn a_block_policy_on_a_role_the_accounts_get_blocks_interactive_accounts_too() {
        let mut facts = clean();
        let mut policy = mfa_all("enabled");
        policy.conditions.users = Some(CaUsers {
            include_roles: vec![crate::onboarding::DirectoryRole::GlobalReader.template_id().into()],
            ..CaUsers::default()
        });
        policy.grant_controls.as_mut().unwrap().built_in_controls = vec!["block".into()];
        facts.ca_policies = Ok(vec![policy]);
        let report = assess(&facts);
        let f = &report.with(Verdict::Warning)[0];
        assert!(
            f.summary.contains("mw-admin@") && f.summary.contains("validation1"),
            "{f:?}"
        );
        assert!(!f.summary.contains("defender-soc"), "holds no Global Reader: {f:?}");
    }

    #[test]
    fn short_licence_units_count_accounts_that_already_hold_one() {
        let mut facts = clean();
        facts.skus[0].prepaid_units.enabled = 3;
        facts.skus[0].consumed_units = 1;
        let report = assess(&facts);
        let f = report.with(Verdict::Warning);
        assert!(
            f[0].summary.contains("4 service account(s) need a licence but only 2"),
            "{f:?}"
        );
        for a in facts.accounts.iter_mut().filter(|a| a.account.interactive()).take(2) {
            a.licences.push("E5".into());
        }
        assert!(assess(&facts).problems().is_empty());
    }

    #[test]
    fn each_tenant_problem_is_its_own_finding() {
        let mut facts = clean();
        facts.mdm_authority = Some("sccm".into());
        facts.security_defaults_enabled = Ok(true);
        facts.allow_invites_from = Ok("none".into());
        facts.update_rings = Ok(vec![UpdateRingFact {
            id: "r".into(),
            display_name: "Contoso ring".into(),
            targets: vec![ALL_DEVICES_TARGET.into()],
        }]);
        facts.ca_policies = Err("403 Authorization_RequestDenied".into());
        let report = assess(&facts);
        let failed: Vec<Check> = report.with(Verdict::Fail).iter().map(|f| f.check).collect();
        assert_eq!(
            failed,
            [
                Check::MdmAuthority,
                Check::ConditionalAccess,
                Check::UpdateRings,
                Check::SecurityDefaults,
                Check::GuestInvitations
            ]
        );
        assert!(
            report
                .findings
                .iter()
                .all(|f| (f.verdict == Verdict::Pass) == f.action.is_none())
        );
    }
}
