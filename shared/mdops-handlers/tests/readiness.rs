//! The readiness check against the simulated tenant over HTTP: each finding is produced by a
//! seeded tenant that has the problem, and none by a clean one; the onboarding preflight fails on
//! a fail finding, naming it, before any write (from the simulator's request log); a warning does
//! not stop onboarding, and the conditional-access warning becomes a fail once the accounts exist.

mod common;

use std::time::Duration;

use common::Rig;
use mdops_core::onboarding::Account;
use mdops_core::onboarding::adoption::Adoptions;
use mdops_core::onboarding::runs::{RunStatus, StepStatus};
use mdops_core::readiness::{Check, Report, Verdict};
use mdops_core::tenant::{TenantId, TenantSettings};
use mdops_handlers::onboarding::steps::Adoption;
use tenant_sim::seeds::{ConditionalAccessPolicySeed, DeviceConfigurationSeed, SkuSeed, TenantSeed, UserSeed};
use tenant_sim::store::IdentityPolicies;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A tenant with nothing wrong: consented, an E5 subscription (Intune, and units for the four
/// interactive accounts), no policies in the way.
fn clean(seed: &mut TenantSeed) {
    seed.objects.skus.push(SkuSeed::new("SPE_E5", 25));
}

fn upn(account: Account) -> String {
    format!(
        "{}@fabrikam.onmicrosoft.com",
        account.mail_nickname(&TenantSettings::default().account_prefix)
    )
}

/// The six service accounts as users that exist already, with fixed ids.
fn existing_accounts(seed: &mut TenantSeed) -> Vec<(Account, uuid::Uuid)> {
    Account::ALL
        .into_iter()
        .map(|a| {
            let id = uuid::Uuid::new_v4();
            let mut user = UserSeed::member(&upn(a), Some("US"));
            user.id = Some(id);
            seed.objects.users.push(user);
            (a, id)
        })
        .collect()
}

async fn start(customise: impl FnOnce(&mut TenantSeed)) -> Rig {
    Rig::start(|seed| {
        clean(seed);
        customise(seed);
    })
    .await
}

async fn readiness(rig: &Rig) -> Report {
    let id: TenantId = rig.tenant_id.parse().unwrap();
    let (tenant, graph) = rig.deps.reach.tenant(&id).await.expect("reach tenant");
    let adoption = Adoption::load(rig.deps.store.as_ref(), &id).await.expect("adoption");
    mdops_handlers::readiness::check(&graph, &tenant, &adoption)
        .await
        .expect("readiness reads")
}

/// An operator allows onboarding to adopt the seeded service accounts (`mdops onboard --adopt`),
/// as for a tenant whose accounts were made before mdops kept a marker.
async fn allow_existing_accounts(rig: &Rig) {
    let id: TenantId = rig.tenant_id.parse().unwrap();
    let prefix = format!("{}-", TenantSettings::default().account_prefix);
    for user in rig.control.objects(&rig.tenant_id, "users").await.unwrap() {
        let upn = user["userPrincipalName"].as_str().unwrap_or_default();
        if upn.starts_with(&prefix) {
            Adoptions::new(rig.deps.store.as_ref())
                .allow(&id, user["id"].as_str().unwrap(), "test", chrono::Utc::now())
                .await
                .unwrap();
        }
    }
}

/// Every write attempted (any method but GET) on Graph, answered or refused.
async fn write_attempts(rig: &Rig) -> Vec<String> {
    rig.requests()
        .await
        .into_iter()
        .filter(|r| (r.path.starts_with("/v1.0") || r.path.starts_with("/beta")) && r.method != "GET")
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect()
}

/// The one problem the report holds: its check and verdict; every other finding passes.
fn only_problem(report: &Report) -> (Check, Verdict, String) {
    let problems = report.problems();
    assert_eq!(problems.len(), 1, "exactly one problem expected: {report:#?}");
    let f = problems[0];
    assert!(f.action.is_some(), "a problem says what to do: {f:?}");
    (f.check, f.verdict, f.summary.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_tenant_has_no_readiness_finding() {
    let rig = start(|_| {}).await;
    let report = readiness(&rig).await;
    assert!(report.problems().is_empty(), "{report:#?}");
    let checks: Vec<Check> = report.findings.iter().map(|f| f.check).collect();
    assert_eq!(checks, Check::ALL, "one pass per check");
    assert!(write_attempts(&rig).await.is_empty(), "the check only reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_seeded_problem_produces_its_finding() {
    type Seed = Box<dyn FnOnce(&mut TenantSeed)>;
    let cases: Vec<(&str, Seed, Check, Verdict, &str)> = vec![
        (
            "no Intune",
            Box::new(|s: &mut TenantSeed| {
                s.objects.skus.clear();
                s.without_intune = true;
            }),
            // Without any SKU the licence units are short too: two problems, checked below.
            Check::IntuneLicence,
            Verdict::Fail,
            "no Intune licence",
        ),
        (
            "MDM authority Configuration Manager",
            Box::new(|s: &mut TenantSeed| s.mdm_authority = Some("sccm".into())),
            Check::MdmAuthority,
            Verdict::Fail,
            "\"sccm\"",
        ),
        (
            "two E5 units for four accounts",
            Box::new(|s: &mut TenantSeed| s.objects.skus[0].enabled = 2),
            Check::LicenceUnits,
            Verdict::Warning,
            "4 service account(s) need a licence but only 2",
        ),
        (
            "MFA for all users, accounts not created yet",
            Box::new(|s: &mut TenantSeed| {
                s.objects.conditional_access_policies =
                    vec![ConditionalAccessPolicySeed::mfa_for_all_users("Require MFA")]
            }),
            Check::ConditionalAccess,
            Verdict::Warning,
            "will create",
        ),
        (
            "MFA for all users, accounts existing",
            Box::new(|s: &mut TenantSeed| {
                existing_accounts(s);
                s.objects.conditional_access_policies =
                    vec![ConditionalAccessPolicySeed::mfa_for_all_users("Require MFA")]
            }),
            Check::ConditionalAccess,
            Verdict::Fail,
            "automation@",
        ),
        (
            "accounts existing that mdops did not make",
            Box::new(|s: &mut TenantSeed| {
                existing_accounts(s);
            }),
            Check::ServiceAccounts,
            Verdict::Warning,
            "not made by mdops",
        ),
        (
            "report-only block on Intune Administrators",
            Box::new(|s: &mut TenantSeed| {
                existing_accounts(s);
                let mut p = ConditionalAccessPolicySeed::mfa_for_all_users("Block Intune admins");
                p.state = Some("enabledForReportingButNotEnforced".into());
                p.include_users = Some(Vec::new());
                p.include_roles = vec![
                    mdops_core::onboarding::DirectoryRole::IntuneAdministrator
                        .template_id()
                        .into(),
                ];
                p.built_in_controls = Some(vec!["block".into()]);
                s.objects.conditional_access_policies = vec![p];
            }),
            Check::ConditionalAccess,
            Verdict::Warning,
            "report-only",
        ),
        (
            "an update ring on all devices",
            Box::new(|s: &mut TenantSeed| {
                s.objects.device_configurations = vec![DeviceConfigurationSeed {
                    display_name: "Contoso Windows updates".into(),
                    odata_type: None,
                    assigned_to_all_devices: true,
                    assigned_to_all_users: false,
                }]
            }),
            Check::UpdateRings,
            Verdict::Fail,
            "Contoso Windows updates",
        ),
        (
            "an update ring on all users",
            Box::new(|s: &mut TenantSeed| {
                s.objects.device_configurations = vec![DeviceConfigurationSeed {
                    display_name: "User ring".into(),
                    odata_type: None,
                    assigned_to_all_devices: false,
                    assigned_to_all_users: true,
                }]
            }),
            Check::UpdateRings,
            Verdict::Warning,
            "all licensed users",
        ),
        (
            "security defaults on",
            Box::new(|s: &mut TenantSeed| {
                s.identity_policies = IdentityPolicies {
                    security_defaults_enabled: true,
                    ..IdentityPolicies::default()
                }
            }),
            Check::SecurityDefaults,
            Verdict::Fail,
            "security defaults are on",
        ),
        (
            "guest invitations off",
            Box::new(|s: &mut TenantSeed| {
                s.identity_policies = IdentityPolicies {
                    allow_invites_from: "none".into(),
                    ..IdentityPolicies::default()
                }
            }),
            Check::GuestInvitations,
            Verdict::Fail,
            "allowInvitesFrom = none",
        ),
    ];
    for (name, seed, check, verdict, says) in cases {
        let rig = start(seed).await;
        if check != Check::ServiceAccounts {
            allow_existing_accounts(&rig).await;
        }
        let report = readiness(&rig).await;
        if check == Check::IntuneLicence {
            let problems: Vec<(Check, Verdict)> = report.problems().iter().map(|f| (f.check, f.verdict)).collect();
            assert_eq!(
                problems,
                [
                    (Check::IntuneLicence, Verdict::Fail),
                    (Check::LicenceUnits, Verdict::Warning)
                ],
                "{name}: {report:#?}"
            );
            assert!(report.problems()[0].summary.contains(says), "{name}: {report:#?}");
        } else {
            let (c, v, summary) = only_problem(&report);
            assert_eq!((c, v), (check, verdict), "{name}: {report:#?}");
            assert!(summary.contains(says), "{name}: {summary}");
        }
        assert!(write_attempts(&rig).await.is_empty(), "{name}: the check only reads");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_service_accounts_clear_the_conditional_access_finding() {
    let mut ids = Vec::new();
    let rig = start(|s| {
        ids = existing_accounts(s);
        let mut p = ConditionalAccessPolicySeed::mfa_for_all_users("Require MFA");
        // Only the unattended accounts cannot answer MFA: excluding them is enough.
        p.exclude_users = ids
            .iter()
            .filter(|(a, _)| !a.interactive())
            .map(|(_, id)| id.to_string())
            .collect();
        s.objects.conditional_access_policies = vec![p];
    })
    .await;
    allow_existing_accounts(&rig).await;
    let report = readiness(&rig).await;
    assert!(report.problems().is_empty(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_policy_read_all_the_policy_checks_fail_naming_the_permission() {
    let rig = start(|_| {}).await;
    let permissions: Vec<&str> = tenant_sim::seeds::PRODUCT_PERMISSIONS
        .iter()
        .copied()
        .filter(|p| *p != "Policy.Read.All")
        .collect();
    rig.control
        .set_permissions(&rig.tenant_id, &rig.client_id, &permissions)
        .await
        .unwrap();
    let report = readiness(&rig).await;
    let failed: Vec<Check> = report.with(Verdict::Fail).iter().map(|f| f.check).collect();
    assert_eq!(
        failed,
        [
            Check::Permissions,
            Check::ConditionalAccess,
            Check::SecurityDefaults,
            Check::GuestInvitations
        ],
        "{report:#?}"
    );
    assert!(report.with(Verdict::Fail).iter().all(|f| {
        f.summary.contains("Policy.Read.All") || f.action.as_deref().unwrap_or("").contains("Policy.Read.All")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_fails_before_any_write_on_each_fail_finding_naming_it() {
    type Seed = Box<dyn FnOnce(&mut TenantSeed)>;
    let cases: Vec<(Check, Seed)> = vec![
        (
            Check::MdmAuthority,
            Box::new(|s: &mut TenantSeed| s.mdm_authority = Some("office365".into())),
        ),
        (
            Check::ConditionalAccess,
            Box::new(|s: &mut TenantSeed| {
                existing_accounts(s);
                s.objects.conditional_access_policies =
                    vec![ConditionalAccessPolicySeed::mfa_for_all_users("Require MFA")]
            }),
        ),
        (
            Check::UpdateRings,
            Box::new(|s: &mut TenantSeed| {
                s.objects.device_configurations = vec![DeviceConfigurationSeed {
                    display_name: "Contoso Windows updates".into(),
                    odata_type: None,
                    assigned_to_all_devices: true,
                    assigned_to_all_users: false,
                }]
            }),
        ),
        (
            Check::SecurityDefaults,
            Box::new(|s: &mut TenantSeed| s.identity_policies.security_defaults_enabled = true),
        ),
        (
            Check::GuestInvitations,
            Box::new(|s: &mut TenantSeed| s.identity_policies.allow_invites_from = "none".into()),
        ),
    ];
    for (check, seed) in cases {
        let rig = start(seed).await;
        allow_existing_accounts(&rig).await;
        let view = rig.onboard(TIMEOUT).await;
        assert_eq!(view.status(), RunStatus::Failed, "{check:?}: {:#?}", view.steps);
        let preflight = view.step("preflight").unwrap();
        assert_eq!(preflight.status, StepStatus::Failed);
        let reason = preflight.last_error.clone().unwrap();
        assert!(
            reason.contains(&format!("[{}]", check.as_str())) && reason.contains("to do:"),
            "{check:?}: names the check and what to do: {reason}"
        );
        assert!(
            view.steps
                .iter()
                .filter(|s| s.name != "preflight")
                .all(|s| s.status == StepStatus::Blocked),
            "{check:?}"
        );
        assert_eq!(write_attempts(&rig).await, Vec::<String>::new(), "{check:?}: no write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_does_not_stop_onboarding_and_the_accounts_it_creates_must_then_be_excluded() {
    let rig = start(|s| {
        s.objects.conditional_access_policies = vec![ConditionalAccessPolicySeed::mfa_for_all_users("Require MFA")]
    })
    .await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let recorded = serde_json::to_string(&view.step("preflight").unwrap().output).unwrap();
    assert!(
        recorded.contains("conditional-access") && recorded.contains("warning"),
        "the warning is recorded: {recorded}"
    );
    // Now the accounts exist and the policy still takes them in: a fail, naming them by id.
    let report = readiness(&rig).await;
    let (check, verdict, summary) = only_problem(&report);
    assert_eq!((check, verdict), (Check::ConditionalAccess, Verdict::Fail));
    assert!(summary.contains(&upn(Account::Automation)), "{summary}");
}
