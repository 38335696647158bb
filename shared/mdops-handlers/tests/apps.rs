//! The app catalogue against the simulated tenant on the embedded (SQLite) queue and store: the
//! catalogue created once and assigned to the right rings with the right intent, a second sync
//! that writes nothing, drift restored for the one app that drifted, one app failing alone, a
//! create whose answer was lost never sent again. The same on SQS and DynamoDB is
//! `functions/ring-assignment/tests/apps_aws.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Rig, test_worker_settings};
use mdops_core::apps::{AppKind, Catalogue, CatalogueApp, Intent, RunAs};
use mdops_core::queue::QueueName;
use mdops_core::tenant::{Ring, TenantId};
use mdops_handlers::apps::catalogue::{Source, set};
use mdops_handlers::apps::sync::{AppsReport, show, sync};
use mdops_handlers::apps::{AppStatus, KIND};
use mdops_handlers::worker::Worker;
use serde_json::{Value, json};
use tenant_sim::faults::{FaultAction, FaultSpec};
use tenant_sim::seeds::{GroupSeed, TenantSeed};
use tenant_sim::store::RequestLogEntry;

const APPS_PATH: &str = "/v1.0/deviceAppManagement/mobileApps";

fn with_rings(seed: &mut TenantSeed) {
    seed.objects.groups = Ring::ALL
        .iter()
        .map(|r| GroupSeed::security(r.display_name()))
        .collect();
}

fn winget(key: &str, package: &str, intent: Intent, rings: &[Ring]) -> CatalogueApp {
    CatalogueApp {
        key: key.into(),
        display_name: format!("App {key}"),
        publisher: "Contoso".into(),
        description: Some(format!("{key} for the managed desktop")),
        kind: AppKind::Winget,
        package_identifier: Some(package.into()),
        run_as: Some(RunAs::User),
        app_url: None,
        intent,
        rings: rings.to_vec(),
    }
}

fn web(key: &str, intent: Intent, rings: &[Ring]) -> CatalogueApp {
    CatalogueApp {
        key: key.into(),
        display_name: format!("Link {key}"),
        publisher: "Contoso".into(),
        description: None,
        kind: AppKind::Web,
        package_identifier: None,
        run_as: None,
        app_url: Some(format!("https://{key}.contoso.example")),
        intent,
        rings: rings.to_vec(),
    }
}

fn catalogue() -> Catalogue {
    Catalogue {
        apps: vec![
            winget("portal", "9WZDNCRFJ3PZ", Intent::Required, &Ring::ALL),
            winget("editor", "9NBLGGH4NNS1", Intent::Available, &[Ring::Fast, Ring::Broad]),
            web("intranet", Intent::Available, &[Ring::Test, Ring::First]),
        ],
    }
}

/// Works the onboarding queue until `done` holds or `timeout` passes.
async fn work_until<F, Fut>(rig: &Rig, timeout: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let worker = Worker::new(rig.deps.clone(), test_worker_settings());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(async move { worker.run(&[QueueName::Onboarding], stop_rx).await });
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ok = done().await;
    while !ok && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ok = done().await;
    }
    stop_tx.send(true).unwrap();
    working.await.unwrap();
    ok
}

async fn statuses(rig: &Rig) -> BTreeMap<String, AppStatus> {
    let report = shown(rig).await;
    report.apps.iter().map(|a| (a.key.clone(), a.status)).collect()
}

async fn shown(rig: &Rig) -> AppsReport {
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (tenant, graph) = rig.deps.reach.tenant(&tid).await.unwrap();
    show(&rig.deps, &tenant, &graph).await.expect("show")
}

async fn all_assigned(rig: &Rig, n: usize) -> bool {
    let s = statuses(rig).await;
    s.len() == n && s.values().all(|st| *st == AppStatus::Assigned)
}

fn creates(log: &[RequestLogEntry]) -> Vec<&RequestLogEntry> {
    log.iter()
        .filter(|r| r.method == "POST" && r.path == APPS_PATH)
        .collect()
}

/// The apps in the simulated tenant, by marker.
async fn apps_by_marker(rig: &Rig) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for app in rig.control.objects(&rig.tenant_id, "mobileApps").await.unwrap() {
        let notes = app["notes"].as_str().unwrap_or_default().to_string();
        out.entry(notes).or_default().push(app);
    }
    out
}

/// (ring group id, intent) of every assignment of the app.
async fn assignment_pairs(rig: &Rig, app_id: &str) -> BTreeSet<(String, String)> {
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (_, graph) = rig.deps.reach.tenant(&tid).await.unwrap();
    let listed: Value = graph
        .get(
            &format!("deviceAppManagement/mobileApps/{app_id}/assignments"),
            &mdops_graph::Query::default(),
        )
        .await
        .unwrap();
    listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["target"]["groupId"].as_str().unwrap().to_string(),
                a["intent"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn ring_groups(rig: &Rig) -> BTreeMap<Ring, String> {
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (_, graph) = rig.deps.reach.tenant(&tid).await.unwrap();
    let mut out = BTreeMap::new();
    for ring in Ring::ALL {
        out.insert(ring, mdops_handlers::rings::ring_group(&graph, ring).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_is_created_once_assigned_to_its_rings_and_a_second_sync_writes_nothing() {
    let rig = Rig::start(with_rings).await;
    // Intune shows a new app to reads a second after its create: the handler waits, never creates twice.
    let mut knobs = rig.control.knobs(&rig.tenant_id).await.unwrap();
    knobs.replication_lag_ms = 1_000;
    rig.control.set_knobs(&rig.tenant_id, &knobs).await.unwrap();
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (tenant, graph) = rig.deps.reach.tenant(&tid).await.unwrap();

    // Without a catalogue of its own the tenant has the default one.
    assert_eq!(shown(&rig).await.catalogue, Source::Default);
    let catalogue = catalogue();
    set(&rig.deps, &tid, &catalogue, "test").await.expect("set catalogue");
    let before = shown(&rig).await;
    assert_eq!(before.catalogue, Source::Tenant);
    assert_eq!(before.count(AppStatus::Missing), 3, "{before:?}");

    let report = sync(&rig.deps, &tenant, &graph, "test", false).await.expect("sync");
    assert_eq!(report.messages, 3, "one message per app");
    assert!(
        work_until(&rig, Duration::from_secs(60), || all_assigned(&rig, 3)).await,
        "{:?}",
        statuses(&rig).await
    );

    // Each app created once, with its marker, by one POST answered 201.
    let log = rig.requests().await;
    let posts = creates(&log);
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert!(posts.iter().all(|p| p.status == 201));
    let by_marker = apps_by_marker(&rig).await;
    let groups = ring_groups(&rig).await;
    for app in &catalogue.apps {
        let found = &by_marker[&app.marker()];
        assert_eq!(found.len(), 1, "{} created once", app.key);
        assert_eq!(found[0]["@odata.type"], app.kind.odata_type());
        let want: BTreeSet<(String, String)> = app
            .rings
            .iter()
            .map(|r| (groups[r].clone(), app.intent.as_str().to_string()))
            .collect();
        assert_eq!(
            assignment_pairs(&rig, found[0]["id"].as_str().unwrap()).await,
            want,
            "{} assigned to its rings with its intent",
            app.key
        );
    }

    // A second sync: every app in place, nothing sent, nothing written.
    let seq = log.last().map(|r| r.seq).unwrap_or(0);
    let again = sync(&rig.deps, &tenant, &graph, "test", false)
        .await
        .expect("second sync");
    assert_eq!(again.messages, 0);
    assert!(
        rig.writes_after(seq).await.is_empty(),
        "a second sync wrote to the tenant"
    );

    // Someone changes one app's assignment in Intune: only that app drifts, and only it is fixed.
    let editor = by_marker["mdops-catalogue:editor"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    graph
        .post_no_content(
            &format!("deviceAppManagement/mobileApps/{editor}/assign"),
            &json!({"mobileAppAssignments": [
                {"@odata.type": "#microsoft.graph.mobileAppAssignment", "intent": "uninstall",
                 "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": groups[&Ring::Fast]}},
            ]}),
        )
        .await
        .unwrap();
    let s = statuses(&rig).await;
    assert_eq!(s["editor"], AppStatus::Drifted);
    assert_eq!((s["portal"], s["intranet"]), (AppStatus::Assigned, AppStatus::Assigned));
    let seq = rig.requests().await.last().map(|r| r.seq).unwrap_or(0);
    let fix = sync(&rig.deps, &tenant, &graph, "test", false)
        .await
        .expect("sync after drift");
    assert_eq!(fix.queued, vec!["editor".to_string()]);
    assert!(work_until(&rig, Duration::from_secs(30), || all_assigned(&rig, 3)).await);
    let writes = rig.writes_after(seq).await;
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].path, format!("{APPS_PATH}/{editor}/assign"));
    assert_eq!(creates(&rig.requests().await).len(), 3, "nothing created again");
    let audit = rig.deps.store.audit(&format!("apps:{tid}"), 20).await.unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.action == "app.ensured").count(),
        4,
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_app_failing_fails_alone_and_a_lost_create_answer_is_never_sent_again() {
    let rig = Rig::start(with_rings).await;
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (tenant, graph) = rig.deps.reach.tenant(&tid).await.unwrap();
    let mut catalogue = catalogue();
    catalogue.apps.push(web("wiki", Intent::Required, &[Ring::Broad]));
    set(&rig.deps, &tid, &catalogue, "test").await.unwrap();

    // The first create is refused (400), the second is carried out but its answer is lost.
    for action in [
        FaultAction::Status {
            status: 400,
            retry_after: None,
            code: None,
        },
        FaultAction::CommitThenReset,
    ] {
        rig.control
            .add_fault(
                &rig.tenant_id,
                &FaultSpec {
                    method: Some("POST".into()),
                    path_prefix: APPS_PATH.into(),
                    count: 1,
                    action,
                },
            )
            .await
            .unwrap();
    }
    let report = sync(&rig.deps, &tenant, &graph, "test", false).await.unwrap();
    assert_eq!(report.messages, 4);
    let queue = rig.deps.queue.clone();
    let settled = work_until(&rig, Duration::from_secs(60), || {
        let queue = queue.clone();
        let rig = &rig;
        async move {
            let dead = queue.dead_letters(QueueName::Onboarding, 10).await.unwrap().len();
            let s = statuses(rig).await;
            dead == 1 && s.values().filter(|st| **st == AppStatus::Assigned).count() == 3
        }
    })
    .await;
    let s = statuses(&rig).await;
    assert!(settled, "{s:?}");

    // The refused app alone is dead-lettered, with its reason and key; the others are in place.
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap();
    let failed_key = s
        .iter()
        .find(|(_, st)| **st == AppStatus::Missing)
        .map(|(k, _)| k.clone())
        .expect("one app missing");
    let failure = dead[0].failure.as_ref().expect("a reason");
    let reason = &failure.reason;
    assert!(
        reason.contains("creating it") && reason.contains(&failed_key),
        "{reason}"
    );
    assert_eq!(failure.step.as_deref(), Some(format!("{KIND}:{failed_key}").as_str()));
    // The app whose answer was lost exists once: it was found by its marker, not created again.
    let by_marker = apps_by_marker(&rig).await;
    assert_eq!(by_marker.values().map(Vec::len).sum::<usize>(), 3, "{by_marker:?}");
    assert!(by_marker.values().all(|v| v.len() == 1));
    let log = rig.requests().await;
    let posts = creates(&log);
    assert_eq!(posts.len(), 4, "one refused, one lost answer, two plain: {posts:?}");

    // The cause gone, a replay creates the last one; nothing else is written.
    let ids: Vec<String> = dead.iter().map(|d| d.id.clone()).collect();
    rig.deps.queue.replay(QueueName::Onboarding, &ids).await.unwrap();
    assert!(work_until(&rig, Duration::from_secs(30), || all_assigned(&rig, 4)).await);
    let by_marker = apps_by_marker(&rig).await;
    assert_eq!(by_marker.len(), 4);
    assert!(by_marker.values().all(|v| v.len() == 1));
    assert_eq!(creates(&rig.requests().await).len(), 5);
}

/// "After onboarding": the run's last step plans the catalogue sync itself, so a freshly onboarded
/// tenant gets its apps without `apps sync` and without waiting for the hourly schedule; a second
/// onboarding of the same tenant plans nothing new and creates no app again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_gets_its_catalogue_right_after_onboarding_succeeds_and_once() {
    let rig = Rig::start(|_| {}).await;
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    set(&rig.deps, &tid, &catalogue(), "test").await.expect("set catalogue");
    assert!(creates(&rig.requests().await).is_empty());

    let view = rig.onboard(Duration::from_secs(120)).await;
    assert_eq!(
        view.status(),
        mdops_core::onboarding::runs::RunStatus::Succeeded,
        "{view:?}"
    );
    // Nothing but the onboarding's own messages and the ones its last step planned.
    assert!(
        work_until(&rig, Duration::from_secs(60), || all_assigned(&rig, 3)).await,
        "{:?}",
        statuses(&rig).await
    );
    let by_marker = apps_by_marker(&rig).await;
    for app in &catalogue().apps {
        assert_eq!(by_marker[&app.marker()].len(), 1, "{} created once", app.key);
    }
    let posts = creates(&rig.requests().await).len();
    assert_eq!(posts, 3);

    // Enrolling again converges with no new app.
    let again = rig.onboard(Duration::from_secs(120)).await;
    assert_eq!(again.status(), mdops_core::onboarding::runs::RunStatus::Succeeded);
    work_until(&rig, Duration::from_secs(5), || async { false }).await;
    assert_eq!(creates(&rig.requests().await).len(), posts, "no app created twice");
}
