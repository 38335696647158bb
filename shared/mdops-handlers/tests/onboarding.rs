//! Onboarding end to end on the embedded backend against the simulated tenant over HTTP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Rig, expected_growth};
use mdops_core::onboarding::runs::{RunStatus, Runs, StepStatus};
use mdops_core::onboarding::{StepMessage, plan};
use mdops_core::queue::{DeadLetter, Failure, OutgoingMessage, Queue, QueueError, QueueName, ReceivedMessage};
use tenant_sim::knobs::Knobs;

const TIMEOUT: Duration = Duration::from_secs(90);

fn growth(
    before: &std::collections::BTreeMap<String, usize>,
    after: &std::collections::BTreeMap<String, usize>,
    kind: &str,
) -> usize {
    after.get(kind).copied().unwrap_or(0) - before.get(kind).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_onboarding_creates_exactly_the_expected_objects() {
    let rig = Rig::start(|_| {}).await;
    let before = rig.counts().await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    assert_eq!(view.steps.len(), plan().len());
    let after = rig.counts().await;
    for (kind, n) in expected_growth() {
        assert_eq!(growth(&before, &after, kind), n, "{kind}: {before:?} -> {after:?}");
    }
    // The MDM authority is now Intune, and four licence messages wait for the licence queue.
    assert_eq!(
        rig.control.tenant(&rig.tenant_id).await.unwrap().mdm_authority,
        "intune"
    );
    let licences = rig
        .deps
        .queue
        .receive(QueueName::Licences, 10, Duration::ZERO, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(licences.len(), 4, "one licence message per interactive account");
}

/// A tenant just created has only Global Administrator active (as Entra ID does): onboarding
/// activates each role it needs exactly once and reads the role list once per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_tenant_with_only_global_administrator_active_onboards_activating_each_role_once() {
    use mdops_core::onboarding::DirectoryRole;
    let rig = Rig::start(|_| {}).await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let requests = rig.requests().await;
    let activations: Vec<String> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1.0/directoryRoles" && (200..300).contains(&r.status))
        .filter_map(|r| r.body.as_ref()?.get("roleTemplateId")?.as_str().map(str::to_string))
        .collect();
    let mut wanted: Vec<String> = DirectoryRole::ALL.iter().map(|r| r.template_id().to_string()).collect();
    let mut got = activations.clone();
    wanted.sort();
    got.sort();
    assert_eq!(got, wanted, "each needed role activated exactly once");
    let role_list_reads = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v1.0/directoryRoles")
        .count();
    assert_eq!(role_list_reads, 1, "the role list is read once per run");
    // Every membership went to the role the directory-roles step recorded.
    let recorded = view
        .steps
        .iter()
        .find(|s| s.name == "directory-roles")
        .and_then(|s| s.output.clone())
        .expect("directory-roles recorded its output");
    for step in view.steps.iter().filter(|s| s.name.starts_with("role:")) {
        let role = step.name.rsplit(':').next().unwrap();
        let id = step.output.as_ref().and_then(|o| o.get("id")).cloned();
        assert_eq!(id.as_ref(), recorded["roles"].get(role), "{}", step.name);
    }
    // The run's last step planned the app catalogue; once it is in place, a second run reads the
    // list once more, activates nothing and writes nothing.
    assert!(rig.settle_default_apps(TIMEOUT).await, "the default catalogue landed");
    let requests = rig.requests().await;
    let mark = requests.last().map(|r| r.seq).unwrap_or(0);
    assert_eq!(rig.onboard(TIMEOUT).await.status(), RunStatus::Succeeded);
    let again = rig.requests().await;
    let later: Vec<_> = again.iter().filter(|r| r.seq > mark).collect();
    assert_eq!(
        later
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/v1.0/directoryRoles")
            .count(),
        1
    );
    assert!(rig.writes_after(mark).await.is_empty());
}

/// The role groups guests are elevated into are made by onboarding: role-assignable security
/// groups, each a member of exactly its directory roles, with the ids recorded where elevation
/// reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_groups_are_created_role_assignable_carrying_their_roles_and_recorded() {
    use mdops_core::onboarding::role_groups::RoleGroupIds;
    use mdops_core::onboarding::{DirectoryRole, RoleGroup, StepKind};
    use mdops_graph::Query;
    use serde_json::Value;
    let rig = Rig::start(|_| {}).await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let tid: mdops_core::tenant::TenantId = rig.tenant_id.parse().unwrap();
    let (tenant, graph) = rig.deps.reach.tenant(&tid).await.expect("reach tenant");
    let roles = view.step("directory-roles").and_then(|s| s.output.clone()).unwrap()["roles"].clone();
    for group in RoleGroup::ALL {
        let step = view.step(&StepKind::RoleGroup(group).name()).unwrap();
        let id = step.output.as_ref().unwrap()["id"].as_str().unwrap().to_string();
        let recorded = RoleGroupIds::new(rig.deps.store.as_ref())
            .get(&tenant.tenant_id, group)
            .await
            .unwrap()
            .expect("the id is recorded");
        assert_eq!(recorded.id, id);
        assert_eq!(recorded.run_id, view.run.run_id);
        let g: Value = graph
            .get(
                &format!("groups/{id}"),
                &Query::select(&[
                    "id",
                    "displayName",
                    "isAssignableToRole",
                    "securityEnabled",
                    "mailEnabled",
                ]),
            )
            .await
            .unwrap();
        assert_eq!(g["displayName"], group.display_name());
        assert_eq!(g["isAssignableToRole"], true, "{g}");
        assert_eq!(g["securityEnabled"], true);
        assert_eq!(g["mailEnabled"], false);
        for role in DirectoryRole::ALL {
            let role_id = roles[role.as_str()].as_str().unwrap();
            let members: Vec<Value> = graph
                .list_all(&format!("directoryRoles/{role_id}/members"), &Query::select(&["id"]), 5)
                .await
                .unwrap();
            let holds = members.iter().any(|m| m["id"] == id.as_str());
            assert_eq!(
                holds,
                group.roles().contains(&role),
                "{} in {}",
                group.as_str(),
                role.as_str()
            );
        }
    }
}

/// A group with a role group's name that was not created role-assignable can never become one
/// (Graph sets `isAssignableToRole` only at creation): it is reported, never adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_named_group_that_is_not_role_assignable_is_reported_not_adopted() {
    use mdops_core::onboarding::RoleGroup;
    use mdops_core::onboarding::role_groups::RoleGroupIds;
    let rig = Rig::start(|seed| {
        seed.objects
            .groups
            .push(tenant_sim::seeds::GroupSeed::security(RoleGroup::Soc.display_name()));
    })
    .await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Failed);
    let step = view.step("role-group:soc").unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    let reason = step.last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("is not role-assignable") && reason.contains("replay step role-group:soc"),
        "{reason}"
    );
    assert_eq!(
        view.step("role-group-role:soc:security-reader").unwrap().status,
        StepStatus::Blocked
    );
    let tenant = rig.tenant_id.parse().unwrap();
    let ids = RoleGroupIds::new(rig.deps.store.as_ref());
    assert!(ids.get(&tenant, RoleGroup::Soc).await.unwrap().is_none());
    assert!(ids.get(&tenant, RoleGroup::ServiceEngineers).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_an_onboarded_tenant_again_converges_with_zero_writes() {
    let rig = Rig::start(|_| {}).await;
    assert_eq!(rig.onboard(TIMEOUT).await.status(), RunStatus::Succeeded);
    // The run's last step planned the app catalogue: the tenant is onboarded once it is in place.
    assert!(rig.settle_default_apps(TIMEOUT).await, "the default catalogue landed");
    let mark = rig.requests().await.last().map(|r| r.seq).unwrap_or(0);
    let second = rig.onboard(TIMEOUT).await;
    assert_eq!(second.status(), RunStatus::Succeeded);
    assert_eq!(
        second.run.generation, 2,
        "a finished run is not joined; a new generation converges"
    );
    let writes = rig.writes_after(mark).await;
    assert!(
        writes.is_empty(),
        "re-run wrote: {:?}",
        writes.iter().map(|w| (&w.method, &w.path)).collect::<Vec<_>>()
    );
    assert!(
        second
            .steps
            .iter()
            .all(|s| s.output.as_ref().and_then(|o| o.get("created")) == Some(&serde_json::json!(false)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_twice_creates_nothing_twice() {
    let rig = Rig::start_with_queue(|_| {}, |q| Arc::new(mdops_handlers::duplicating::DuplicatingQueue(q))).await;
    let before = rig.counts().await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let after = rig.counts().await;
    for (kind, n) in expected_growth() {
        assert_eq!(
            growth(&before, &after, kind),
            n,
            "{kind} doubled? {before:?} -> {after:?}"
        );
    }
    assert!(
        view.steps.iter().all(|s| s.attempts == 1),
        "a duplicate delivery never starts a step again"
    );
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 100).await.unwrap();
    assert!(
        dead.is_empty(),
        "duplicates are acknowledged, not dead-lettered: {dead:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_replication_lag_slow_it_down_but_it_completes() {
    let rig = Rig::start(|seed| {
        seed.knobs = Knobs {
            replication_lag_ms: 1_500,
            identity_write_limit: 6,
            identity_write_window_ms: 2_000,
            intune_write_limit: 3,
            intune_write_window_ms: 2_000,
            retry_after_decimal: true,
            ..Knobs::default()
        };
    })
    .await;
    let before = rig.counts().await;
    let view = rig.onboard(Duration::from_secs(150)).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let after = rig.counts().await;
    for (kind, n) in expected_growth() {
        assert_eq!(growth(&before, &after, kind), n, "{kind}: {before:?} -> {after:?}");
    }
    let throttled = rig.requests().await.iter().filter(|r| r.status == 429).count();
    assert!(throttled > 0, "the quotas were low enough to throttle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_fails_preflight_naming_it_and_nothing_is_written() {
    let rig = Rig::start(|seed| {
        seed.apps[0].permissions.retain(|p| {
            p != "DeviceManagementConfiguration.ReadWrite.All" && p != "RoleManagement.ReadWrite.Directory"
        });
    })
    .await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Failed);
    let preflight = view.step("preflight").unwrap();
    assert_eq!(preflight.status, StepStatus::Failed);
    let reason = preflight.last_error.clone().unwrap();
    assert!(
        reason.contains("DeviceManagementConfiguration.ReadWrite.All"),
        "{reason}"
    );
    assert!(reason.contains("RoleManagement.ReadWrite.Directory"), "{reason}");
    assert!(
        view.steps
            .iter()
            .filter(|s| s.name != "preflight")
            .all(|s| s.status == StepStatus::Blocked)
    );
    assert!(
        rig.writes_after(0).await.is_empty(),
        "nothing may be written when preflight fails"
    );
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let failure = dead[0].failure.clone().unwrap();
    assert_eq!(failure.step.as_deref(), Some("preflight"));
    assert_eq!(failure.tenant.as_deref(), Some(rig.tenant_id.as_str()));
    assert!(failure.reason.contains("RoleManagement.ReadWrite.Directory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_managed_by_another_mdm_authority_is_never_flipped() {
    let rig = Rig::start(|seed| seed.mdm_authority = Some("sccm".into())).await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Failed);
    // The readiness check in preflight stops it before any write; the mdm-authority step would
    // refuse too, but never runs.
    let step = view.step("preflight").unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    let reason = step.last_error.as_deref().unwrap();
    assert!(
        reason.contains("[mdm-authority]") && reason.contains("\"sccm\""),
        "{reason}"
    );
    assert_eq!(view.step("mdm-authority").unwrap().status, StepStatus::Blocked);
    assert!(rig.writes_after(0).await.is_empty(), "nothing written");
    assert_eq!(rig.control.tenant(&rig.tenant_id).await.unwrap().mdm_authority, "sccm");
    for ring in ["test", "first", "fast", "broad"] {
        assert_eq!(
            view.step(&format!("update-policy:{ring}")).unwrap().status,
            StepStatus::Blocked
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_with_its_reason() {
    let rig = Rig::start(|_| {}).await;
    let bad = r#"{"v":1,"kind":"onboarding.step","run_id":"r","tenant_id":"11111111-2222-3333-4444-555555555555","step":"teleport","attempt":1}"#;
    rig.deps
        .queue
        .send(QueueName::Onboarding, OutgoingMessage::now(bad))
        .await
        .unwrap();
    rig.deps
        .queue
        .send(QueueName::Onboarding, OutgoingMessage::now("not json at all"))
        .await
        .unwrap();
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "bad messages hold nothing up");
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| d.failure.as_ref().unwrap().reason.clone())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("step: unknown onboarding step \"teleport\"")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("not JSON")), "{reasons:?}");
    assert!(dead.iter().any(|d| d.body == bad), "the body is kept unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_enrollment_joins_the_run_in_progress() {
    let rig = Rig::start(|_| {}).await;
    let first = mdops_handlers::onboarding::enroll(&rig.deps, &rig.tenant_id, "test")
        .await
        .unwrap();
    let second = mdops_handlers::onboarding::enroll(&rig.deps, &rig.tenant_id, "test")
        .await
        .unwrap();
    assert_eq!(first.run_id(), second.run_id());
    assert!(matches!(
        second,
        mdops_core::onboarding::runs::Enrollment::Joined { .. }
    ));
    let view = rig.work_until_finished(first.run_id(), TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_message_is_sent_again_when_its_deadline_passes() {
    let rig = Rig::start(|_| {}).await;
    let run_id = mdops_handlers::onboarding::enroll(&rig.deps, &rig.tenant_id, "test")
        .await
        .unwrap()
        .run_id()
        .to_string();
    // Lose the root step's message, as a crash between commit and send would.
    let taken = rig
        .deps
        .queue
        .receive(QueueName::Onboarding, 10, Duration::ZERO, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let lost: StepMessage = serde_json::from_str(&taken[0].body).unwrap();
    assert_eq!(lost.step, "preflight");
    rig.deps
        .queue
        .delete(QueueName::Onboarding, &taken[0].receipt)
        .await
        .unwrap();
    let view = rig.work_until_finished(&run_id, TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let runs = Runs::new(rig.deps.store.as_ref(), rig.deps.runs);
    assert!(
        runs.overdue(chrono::Utc::now() + chrono::Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "no deadline is left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_holder_died_is_taken_over_and_the_late_holder_is_ignored() {
    use mdops_core::onboarding::runs::Begin;
    let rig = Rig::start(|_| {}).await;
    let enrollment = mdops_handlers::onboarding::enroll(&rig.deps, &rig.tenant_id, "test")
        .await
        .unwrap();
    let runs = Runs::new(rig.deps.store.as_ref(), rig.deps.runs);
    let message = StepMessage::new(enrollment.run_id(), &rig.tenant_id.parse().unwrap(), "preflight", 1);
    let lease = chrono::Duration::from_std(rig.deps.runs.lease).unwrap();
    let t0 = chrono::Utc::now();
    assert!(matches!(
        runs.begin(&message, t0).await.unwrap(),
        Begin::Run { attempt: 1, .. }
    ));
    assert!(
        matches!(
            runs.begin(&message, t0 + chrono::Duration::seconds(1)).await.unwrap(),
            Begin::Busy { .. }
        ),
        "a duplicate while the holder lives is acknowledged"
    );
    assert!(
        runs.overdue(t0 + chrono::Duration::seconds(1), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The holder dies. Past its lease the reconciler re-sends, and the step starts again.
    let later = t0 + lease + chrono::Duration::seconds(1);
    let resent = runs.overdue(later, 10).await.unwrap();
    assert_eq!(
        resent.iter().map(|m| m.step.as_str()).collect::<Vec<_>>(),
        ["preflight"]
    );
    match runs.begin(&message, later).await.unwrap() {
        Begin::Run {
            attempt,
            last_write_attempt,
            ..
        } => {
            assert_eq!(attempt, 2);
            assert_eq!(last_write_attempt, Some(t0), "the dead holder may have been mid-create");
        }
        other => panic!("expected a takeover, got {other:?}"),
    }
    // The dead holder's late answer changes nothing.
    assert!(
        runs.complete(enrollment.run_id(), "preflight", 1, serde_json::json!({}), later)
            .await
            .unwrap()
            .is_empty()
    );
    let step = runs
        .get(enrollment.run_id())
        .await
        .unwrap()
        .unwrap()
        .step("preflight")
        .cloned()
        .unwrap();
    assert_eq!((step.status, step.attempts), (StepStatus::Running, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_events_start_a_run_and_refused_ones_say_why() {
    use mdops_handlers::Disposition;
    use mdops_handlers::onboarding::handle_enrollment_event;
    let rig = Rig::start(|_| {}).await;
    let ok = serde_json::json!({ "tenant_id": rig.tenant_id, "requested_by": "alice@provider.example" });
    assert_eq!(handle_enrollment_event(&ok, &rig.deps).await, Disposition::Ack);
    let runs = Runs::new(rig.deps.store.as_ref(), rig.deps.runs);
    let current = runs
        .current(&rig.tenant_id.parse().unwrap())
        .await
        .unwrap()
        .expect("a run was created");
    assert_eq!(current.run.requested_by, "alice@provider.example");

    let stranger = "0badc0de-0000-4000-8000-000000000000";
    match handle_enrollment_event(&serde_json::json!({ "tenant_id": stranger }), &rig.deps).await {
        Disposition::DeadLetter(f) => {
            assert!(f.reason.contains("not registered"), "{}", f.reason);
            assert_eq!(f.tenant.as_deref(), Some(stranger));
        }
        other => panic!("an unregistered tenant must be refused, got {other:?}"),
    }
    match handle_enrollment_event(&serde_json::json!({ "tenant_id": "contoso" }), &rig.deps).await {
        Disposition::DeadLetter(f) => assert!(f.reason.contains("not a GUID"), "{}", f.reason),
        other => panic!("a malformed event must be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_found_again_not_made_twice() {
    use tenant_sim::faults::{FaultAction, FaultSpec};
    let rig = Rig::start(|seed| {
        seed.knobs = Knobs {
            replication_lag_ms: 300,
            ..Knobs::default()
        };
    })
    .await;
    let lose = |path: &str, action: FaultAction| FaultSpec {
        method: Some("POST".into()),
        path_prefix: path.into(),
        count: 2,
        action,
    };
    for fault in [
        lose("/v1.0/groups", FaultAction::CommitThenReset),
        lose(
            "/v1.0/deviceManagement/deviceConfigurations",
            FaultAction::CommitThenStatus { status: 504 },
        ),
        lose("/v1.0/users", FaultAction::CommitThenReset),
    ] {
        rig.control.add_fault(&rig.tenant_id, &fault).await.unwrap();
    }
    let before = rig.counts().await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let after = rig.counts().await;
    for (kind, n) in expected_growth() {
        assert_eq!(
            growth(&before, &after, kind),
            n,
            "{kind} made twice? {before:?} -> {after:?}"
        );
    }
    let lost = rig
        .requests()
        .await
        .into_iter()
        .filter(|r| r.fault.as_ref().is_some_and(|f| f.applied_status.is_some()))
        .count();
    assert_eq!(lost, 6, "every lost answer was met");
    assert!(
        rig.deps
            .queue
            .dead_letters(QueueName::Onboarding, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_objects_with_a_natural_key_are_reported_not_one_adopted() {
    use tenant_sim::seeds::GroupSeed;
    let ids = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    let rig = Rig::start(|seed| {
        for id in ids {
            seed.objects.groups.push(GroupSeed {
                id: Some(id),
                ..GroupSeed::security("Modern Workplace Devices-Test")
            });
        }
    })
    .await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Failed);
    let step = view.step("group:test").unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    let reason = step.last_error.clone().unwrap();
    for id in ids {
        assert!(reason.contains(&id.to_string()), "{reason}");
    }
    assert!(reason.contains("replay"), "says what to do: {reason}");
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].failure.as_ref().unwrap().reason, reason);
    let groups = rig.control.objects(&rig.tenant_id, "groups").await.unwrap();
    let test_groups = groups
        .iter()
        .filter(|g| g["displayName"] == "Modern Workplace Devices-Test")
        .count();
    assert_eq!(test_groups, 2, "no third one was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_never_works_past_its_lease() {
    use tenant_sim::faults::{FaultAction, FaultSpec};
    let rig = Rig::start(|_| {}).await;
    // Preflight's read of the organization hangs for longer than the step's lease (5 s): without
    // a bound the holder would go on (and retry) while a second delivery has taken the step over.
    let hang = Duration::from_secs(8);
    rig.control
        .add_fault(
            &rig.tenant_id,
            &FaultSpec {
                method: Some("GET".into()),
                path_prefix: "/v1.0/organization".into(),
                count: 1,
                action: FaultAction::Hang {
                    ms: hang.as_millis() as u64,
                },
            },
        )
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let preflight = view.step("preflight").unwrap().clone();
    // Let the hung call end, and a holder that outlived its lease make its late retry.
    tokio::time::sleep_until(started + hang + Duration::from_secs(2)).await;
    let done_at = preflight.finished_at.unwrap();
    let late: Vec<_> = rig
        .requests()
        .await
        .into_iter()
        .filter(|r| r.path == "/v1.0/organization" && r.query.contains("displayName"))
        .filter(|r| r.time.parse::<chrono::DateTime<chrono::Utc>>().unwrap() > done_at)
        .collect();
    assert!(late.is_empty(), "a holder past its lease still called Graph: {late:?}");
}

/// Remembers the highest receive count each message reached.
struct Watched(
    Arc<dyn Queue>,
    Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
);

#[async_trait]
impl Queue for Watched {
    async fn send(&self, queue: QueueName, message: OutgoingMessage) -> Result<String, QueueError> {
        self.0.send(queue, message).await
    }
    async fn send_batch(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, QueueError> {
        self.0.send_batch(queue, messages).await
    }
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let got = self.0.receive(queue, max, wait, visibility).await?;
        let mut seen = self.1.lock().unwrap();
        for m in &got {
            let n = seen.entry(m.id.clone()).or_insert(0);
            *n = (*n).max(m.receive_count);
        }
        Ok(got)
    }
    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.0.delete(queue, receipt).await
    }
    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        self.0.change_visibility(queue, receipt, visibility).await
    }
    async fn record_failure(&self, queue: QueueName, m: &ReceivedMessage, f: &Failure) -> Result<(), QueueError> {
        self.0.record_failure(queue, m, f).await
    }
    async fn dead_letter(&self, queue: QueueName, m: &ReceivedMessage, f: &Failure) -> Result<(), QueueError> {
        self.0.dead_letter(queue, m, f).await
    }
    async fn dead_letter_refused(&self, queue: QueueName, body: &str, failure: &Failure) -> Result<String, QueueError> {
        self.0.dead_letter_refused(queue, body, failure).await
    }
    async fn dead_letters(&self, queue: QueueName, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.0.dead_letters(queue, limit).await
    }
    async fn replay(&self, queue: QueueName, ids: &[String]) -> Result<Vec<String>, QueueError> {
        self.0.replay(queue, ids).await
    }
    async fn purge(&self, queue: QueueName, ids: &[String]) -> Result<Vec<String>, QueueError> {
        self.0.purge(queue, ids).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_longer_than_its_visibility_is_not_delivered_again() {
    use mdops_handlers::worker::Worker;
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let watched = seen.clone();
    let rig = Rig::start_with_queue(|_| {}, move |q| Arc::new(Watched(q, watched))).await;
    // Preflight takes 3 s (two calls of 1.5 s, within its lease), three times the visibility of 1 s.
    let mut knobs = rig.control.knobs(&rig.tenant_id).await.unwrap();
    knobs.latency_ms = 1_500;
    rig.control.set_knobs(&rig.tenant_id, &knobs).await.unwrap();
    let settings = mdops_handlers::worker::WorkerSettings {
        visibility: Duration::from_secs(1),
        ..common::test_worker_settings()
    };
    let run_id = mdops_handlers::onboarding::enroll(&rig.deps, &rig.tenant_id, "test")
        .await
        .unwrap()
        .run_id()
        .to_string();
    let worker = Worker::new(rig.deps.clone(), settings);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(async move { worker.run(&[QueueName::Onboarding], stop_rx).await });
    let runs = Runs::new(rig.deps.store.as_ref(), rig.deps.runs);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let view = runs.get(&run_id).await.unwrap().unwrap();
        if view.step("preflight").unwrap().status == StepStatus::Done || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    working.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    let again: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(again.is_empty(), "held messages were delivered again: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_interactive_accounts_must_change_their_password_at_first_sign_in() {
    use mdops_core::onboarding::Account;
    let rig = Rig::start(|_| {}).await;
    assert_eq!(rig.onboard(TIMEOUT).await.status(), RunStatus::Succeeded);
    let creates: Vec<_> = rig
        .requests()
        .await
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1.0/users" && r.status == 201)
        .collect();
    assert_eq!(creates.len(), Account::ALL.len());
    for account in Account::ALL {
        let nickname = account.mail_nickname(&mdops_core::tenant::TenantSettings::default().account_prefix);
        let body = creates
            .iter()
            .filter_map(|r| r.body.as_ref())
            .find(|b| b["mailNickname"] == serde_json::json!(nickname))
            .unwrap_or_else(|| panic!("{account:?} was created"));
        assert_eq!(
            body["passwordProfile"]["forceChangePasswordNextSignIn"],
            serde_json::json!(account.interactive()),
            "{account:?}: only a person changes the password at first sign-in"
        );
        assert_eq!(
            body["passwordProfile"]["password"], "***",
            "the log never holds the password"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_baseline_is_a_real_baseline_made_through_graph_beta_and_left_unassigned() {
    use mdops_core::tenant::DEFAULT_SECURITY_BASELINE_TEMPLATE_ID as TEMPLATE;
    let rig = Rig::start(|_| {}).await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let intents = rig.control.objects(&rig.tenant_id, "intents").await.unwrap();
    assert_eq!(intents.len(), 1, "{intents:?}");
    let baseline = &intents[0];
    assert_eq!(baseline["templateId"], TEMPLATE);
    assert_eq!(baseline["displayName"], "Modern Workplace Security Baseline");
    assert_eq!(baseline["isAssigned"], false, "left unassigned");
    assert_eq!(
        view.step("security-baseline").unwrap().output.as_ref().unwrap()["id"],
        baseline["id"],
        "the step recorded the baseline's id"
    );
    let requests = rig.requests().await;
    let beta: Vec<_> = requests.iter().filter(|r| r.path.starts_with("/beta")).collect();
    let beta_writes: Vec<_> = beta.iter().filter(|r| r.method != "GET").collect();
    assert_eq!(beta_writes.len(), 1, "the one beta write: {beta_writes:?}");
    assert_eq!(
        beta_writes[0].path,
        format!("/beta/deviceManagement/templates/{TEMPLATE}/createInstance")
    );
    assert!(
        beta.iter().all(|r| r.path.starts_with("/beta/deviceManagement/")),
        "only the baseline goes through beta: {beta:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.path.contains("/assign") && r.path.contains(baseline["id"].as_str().unwrap())),
        "never assigned"
    );
    // No endpoint-protection profile stands in for it.
    let configs = rig
        .control
        .objects(&rig.tenant_id, "deviceConfigurations")
        .await
        .unwrap();
    assert!(
        configs
            .iter()
            .all(|c| c["@odata.type"] != "#microsoft.graph.windows10EndpointProtectionConfiguration")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_endpoint_protection_profile_is_only_the_fallback_a_setting_selects() {
    let rig = Rig::start_with_settings(
        |_| {},
        |s| s.security_baseline = mdops_core::tenant::SecurityBaselineKind::EndpointProtectionProfile,
        |q| q,
    )
    .await;
    let before = rig.counts().await;
    assert_eq!(rig.onboard(TIMEOUT).await.status(), RunStatus::Succeeded);
    let after = rig.counts().await;
    assert_eq!(growth(&before, &after, "intents"), 0);
    assert_eq!(growth(&before, &after, "deviceConfigurations"), 5);
    assert!(
        rig.requests().await.iter().all(|r| !r.path.starts_with("/beta")),
        "no beta call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_create_whose_answer_was_lost_is_found_again_not_made_twice() {
    use tenant_sim::faults::{FaultAction, FaultSpec};
    let rig = Rig::start(|_| {}).await;
    rig.control
        .add_fault(
            &rig.tenant_id,
            &FaultSpec {
                method: Some("POST".into()),
                path_prefix: "/beta/deviceManagement/templates".into(),
                count: 1,
                action: FaultAction::CommitThenReset,
            },
        )
        .await
        .unwrap();
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    assert_eq!(
        rig.control.objects(&rig.tenant_id, "intents").await.unwrap().len(),
        1,
        "not doubled"
    );
    assert!(view.step("security-baseline").unwrap().attempts >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_intune_fails_preflight_naming_what_is_missing_and_nothing_is_written() {
    use tenant_sim::seeds::SkuSeed;
    let rig = Rig::start(|seed| {
        seed.without_intune = true;
        // Office without Intune: a licence, but not the one onboarding needs.
        seed.objects.skus.push(SkuSeed::new("ENTERPRISEPREMIUM", 10));
    })
    .await;
    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Failed);
    let preflight = view.step("preflight").unwrap();
    assert_eq!(preflight.status, StepStatus::Failed);
    let reason = preflight.last_error.clone().unwrap();
    assert!(
        reason.contains("no Intune licence") && reason.contains("INTUNE_A"),
        "{reason}"
    );
    assert!(
        reason.contains("ENTERPRISEPREMIUM"),
        "names what the tenant holds: {reason}"
    );
    assert!(
        view.steps
            .iter()
            .filter(|s| s.name != "preflight")
            .all(|s| s.status == StepStatus::Blocked)
    );
    assert!(
        rig.writes_after(0).await.is_empty(),
        "nothing may be written without Intune"
    );
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].failure.as_ref().unwrap().reason.contains("no Intune licence"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_reads_are_retried_and_onboarding_completes() {
    let rig = Rig::start(|seed| {
        seed.knobs = Knobs {
            read_limit: 6,
            read_window_ms: 1_000,
            ..Knobs::default()
        };
    })
    .await;
    let before = rig.counts().await;
    let view = rig.onboard(Duration::from_secs(150)).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let after = rig.counts().await;
    for (kind, n) in expected_growth() {
        assert_eq!(growth(&before, &after, kind), n, "{kind}: {before:?} -> {after:?}");
    }
    let requests = rig.requests().await;
    let throttled_reads = requests.iter().filter(|r| r.method == "GET" && r.status == 429).count();
    assert!(throttled_reads > 0, "the read quota was low enough to throttle reads");
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap();
    assert!(
        dead.is_empty(),
        "a throttled read is retried, never dead-lettered: {dead:?}"
    );
}

/// Someone who can create users in the customer tenant takes the admin account's UPN before
/// mdops runs: the account step refuses it (it lacks the tenant's mdops marker), says what to
/// check and how to take it over, and no role is granted to it. `--adopt` (here its library
/// call) records who allowed it and replays the step, which then adopts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_service_account_upn_fails_its_step_and_gets_no_role_until_adopted() {
    use mdops_core::onboarding::Account;
    use mdops_core::onboarding::adoption::ADOPTION_ALLOWED;
    use mdops_core::tenant::TenantSettings;
    use tenant_sim::seeds::UserSeed;
    let squatter = uuid::Uuid::new_v4();
    let nickname = Account::Admin.mail_nickname(&TenantSettings::default().account_prefix);
    let rig = Rig::start(|seed| {
        seed.objects.users.push(UserSeed {
            id: Some(squatter),
            ..UserSeed::member(&nickname, Some("US"))
        });
    })
    .await;
    let squatter = squatter.to_string();
    let role_grants_to_squatter = |requests: &[tenant_sim::store::RequestLogEntry]| {
        requests
            .iter()
            .filter(|r| r.method == "POST" && r.path.contains("/members/$ref") && (200..300).contains(&r.status))
            .filter(|r| r.body.as_ref().is_some_and(|b| b.to_string().contains(&squatter)))
            .count()
    };

    let view = rig.onboard(TIMEOUT).await;
    assert_eq!(view.status(), RunStatus::Failed, "{:#?}", view.steps);
    let step = view.step("account:admin").unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    let reason = step.last_error.clone().unwrap();
    assert!(!reason.contains('\n'), "one line: {reason}");
    for needed in [squatter.as_str(), "did not create", "--adopt", "who created it"] {
        assert!(reason.contains(needed), "{needed:?} missing from: {reason}");
    }
    for role in Account::Admin.roles() {
        let name = format!("role:admin:{}", role.as_str());
        assert_ne!(view.step(&name).unwrap().status, StepStatus::Done, "{name}");
    }
    assert_eq!(
        role_grants_to_squatter(&rig.requests().await),
        0,
        "no role for the squatter"
    );
    // The accounts mdops did create carry the tenant's marker, and they got their roles.
    let users = rig.control.objects(&rig.tenant_id, "users").await.unwrap();
    let automation = users
        .iter()
        .find(|u| u["mailNickname"] == Account::Automation.mail_nickname("mmd"))
        .expect("automation account made");
    let marker = automation["onPremisesExtensionAttributes"]["extensionAttribute15"]
        .as_str()
        .expect("marker set");
    assert!(marker.starts_with("mdops:") && marker.len() > 30, "{marker}");
    let squatted = users.iter().find(|u| u["id"] == squatter.as_str()).unwrap();
    assert!(squatted["onPremisesExtensionAttributes"]["extensionAttribute15"].is_null());

    let runs = Runs::new(rig.deps.store.as_ref(), rig.deps.runs);
    let tenant = rig.tenant_id.parse().unwrap();
    let report = mdops_handlers::operators::adopt(
        rig.deps.queue.as_ref(),
        rig.deps.store.as_ref(),
        &runs,
        &tenant,
        std::slice::from_ref(&squatter),
        "operator:alice",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(report.replayed.len(), 1, "{report:?}");
    assert_eq!(report.replayed[0].0, "account:admin");
    // The replayed step reads failed until a worker takes it again.
    let attempts_before = report.replayed[0].1;
    let view = rig
        .work_until(&view.run.run_id, TIMEOUT, |v| {
            let retaken = v.step("account:admin").is_some_and(|s| s.attempts > attempts_before);
            retaken && v.status() != RunStatus::Running
        })
        .await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let output = view.step("account:admin").unwrap().output.clone().unwrap();
    assert_eq!(output["id"], squatter.as_str());
    assert_eq!(output["adopted"], true);
    assert_eq!(
        role_grants_to_squatter(&rig.requests().await),
        Account::Admin.roles().len(),
        "the adopted account got its roles"
    );
    let trail = rig
        .deps
        .store
        .audit(&format!("tenant:{}", rig.tenant_id), 10)
        .await
        .unwrap();
    let allowed: Vec<_> = trail.iter().filter(|e| e.action == ADOPTION_ALLOWED).collect();
    assert_eq!(allowed.len(), 1, "{trail:?}");
    assert_eq!(allowed[0].actor, "operator:alice");
    assert_eq!(allowed[0].detail["object_id"], squatter.as_str());
}
