//! The app catalogue on the AWS path against the emulator: the ring-assignment function's schedule
//! plans the hourly app sync (claim and catalogue in DynamoDB), one message per app travels on the
//! real SQS queue and the onboarding-step function works them (Lambda's delete-on-success played
//! by the test), Graph calls go to the simulated tenant. The first create is refused: that app
//! alone is dead-lettered, the others are created once and assigned to their rings; replayed, it
//! is created; a second sync writes nothing. The SQLite run is `shared/mdops-handlers/tests/apps.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mdops_aws::emulator::{EventSource, sdk_config, unique_prefix};
use mdops_aws::{AwsBackend, ResourceNames, ensure_resources};
use mdops_core::apps::{AppKind, Catalogue, CatalogueApp, Intent, RunAs};
use mdops_core::onboarding::runs::RunSettings;
use mdops_core::queue::{Queue, QueueName, QueueSettings};
use mdops_core::store::Store;
use mdops_core::tenant::{CredentialRef, Ring, Tenant, TenantRegistry, TenantSettings};
use mdops_graph::{GraphClient, GraphConfig, Query};
use mdops_handlers::Deps;
use mdops_handlers::apps::AppStatus;
use mdops_handlers::apps::catalogue::set;
use mdops_handlers::apps::sync::{show, sync};
use mdops_handlers::reach::TenantReach;
use mdops_handlers::rings::ring_group;
use onboarding_step::Function as Steps;
use ring_assignment::Function as Schedule;
use serde_json::Value;
use tenant_sim::SimClient;
use tenant_sim::faults::{FaultAction, FaultSpec};
use tenant_sim::seeds::{GroupSeed, consented_tenant};
use tenant_sim::store::{RequestLogEntry, RequestLogQuery};

const APPS_PATH: &str = "/v1.0/deviceAppManagement/mobileApps";
/// Longest the app messages may take on the emulator.
const WORK_WITHIN: Duration = Duration::from_secs(120);

fn app(key: &str, kind: AppKind, intent: Intent, rings: &[Ring]) -> CatalogueApp {
    CatalogueApp {
        key: key.into(),
        display_name: format!("App {key}"),
        publisher: "Contoso".into(),
        description: None,
        kind,
        package_identifier: (kind == AppKind::Winget).then(|| format!("9N{}", key.to_uppercase())),
        run_as: (kind == AppKind::Winget).then_some(RunAs::System),
        app_url: (kind == AppKind::Web).then(|| format!("https://{key}.contoso.example")),
        intent,
        rings: rings.to_vec(),
    }
}

async fn schedule_tick(schedule: &Schedule) -> ring_assignment::TickReport {
    let text = std::fs::read_to_string(format!(
        "{}/../../events/ring-assignment-schedule.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let event = ring_assignment::decode(serde_json::from_str(&text).unwrap()).unwrap();
    schedule.tick(event).await.unwrap()
}

fn creates(log: &[RequestLogEntry]) -> Vec<&RequestLogEntry> {
    log.iter()
        .filter(|r| r.method == "POST" && r.path == APPS_PATH)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_is_created_once_through_sqs_and_dynamodb_one_app_failing_alone() {
    let tenant_id = uuid::Uuid::new_v4();
    let client_id = uuid::Uuid::new_v4();
    let secret = format!("aws-test-{}", uuid::Uuid::new_v4());
    let mut seed = consented_tenant("adatum", tenant_id, client_id, &secret);
    seed.objects.groups = Ring::ALL
        .iter()
        .map(|r| GroupSeed::security(r.display_name()))
        .collect();
    let sim = tenant_sim::start("127.0.0.1:0", vec![seed]).await.unwrap();
    let control = SimClient::new(sim.url());
    let tid = tenant_id.to_string();

    let sdk = sdk_config().await;
    let names = ResourceNames::new(unique_prefix()).unwrap();
    let urls = ensure_resources(&sdk, &names, QueueSettings::default()).await.unwrap();
    let backend = AwsBackend::connect(&sdk, &names, QueueSettings::default())
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(backend.store().clone());
    let queue: Arc<dyn Queue> = Arc::new(backend.queue().clone());
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let tenant = Tenant {
        tenant_id: tid.parse().unwrap(),
        domain: "adatum.onmicrosoft.com".parse().unwrap(),
        name: "Adatum".into(),
        client_id: client_id.to_string(),
        credential: CredentialRef::File {
            path: secret_file.display().to_string(),
        },
        settings: TenantSettings::default(),
        added_at: chrono::Utc::now(),
    };
    TenantRegistry::new(store.as_ref()).add(&tenant).await.unwrap();
    let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
    let mut config = GraphConfig::for_base(&base).unwrap();
    config.retry.max_attempts = 1;
    let deps = Deps {
        reach: Arc::new(TenantReach::new(GraphClient::new(config).unwrap(), store.clone())),
        store,
        queue,
        runs: RunSettings::default(),
        clock: mdops_handlers::deps::system_clock(),
        lag_window: Duration::from_secs(2),
    };
    let (_, graph) = deps.reach.tenant(&tenant.tenant_id).await.unwrap();
    let source = EventSource::new(&sdk, urls[&QueueName::Onboarding].source.clone(), 30);
    let catalogue = Catalogue {
        apps: vec![
            app("portal", AppKind::Winget, Intent::Required, &Ring::ALL),
            app("editor", AppKind::Winget, Intent::Available, &[Ring::Fast, Ring::Broad]),
            app("intranet", AppKind::Web, Intent::Available, &[Ring::Test, Ring::First]),
        ],
    };
    set(&deps, &tenant.tenant_id, &catalogue, "test").await.unwrap();
    control
        .add_fault(
            &tid,
            &FaultSpec {
                method: Some("POST".into()),
                path_prefix: APPS_PATH.into(),
                count: 1,
                action: FaultAction::Status {
                    status: 400,
                    retry_after: None,
                    code: None,
                },
            },
        )
        .await
        .unwrap();

    // The schedule: the first run starts the clocks; an hour later it plans one message per app.
    let steps = Steps { deps: deps.clone() };
    assert_eq!(schedule_tick(&Schedule { deps: deps.clone() }).await.app_messages, None);
    let later = chrono::Utc::now() + chrono::Duration::minutes(61);
    let an_hour_on = Schedule {
        deps: Deps {
            clock: Arc::new(move || later),
            ..deps.clone()
        },
    };
    let started = Instant::now();
    let report = schedule_tick(&an_hour_on).await;
    assert_eq!(report.app_messages, Some(3));
    assert_eq!(report.ring_chunks, Some(0), "no devices: nothing to place");
    assert_eq!(
        schedule_tick(&an_hour_on).await.app_messages,
        None,
        "not due again within the hour"
    );

    let statuses = || async {
        let shown = show(&deps, &tenant, &graph).await.unwrap();
        shown
            .apps
            .iter()
            .map(|a| (a.key.clone(), a.status))
            .collect::<BTreeMap<_, _>>()
    };
    let work_until = |done: usize, dead: usize| {
        let source = &source;
        let steps = &steps;
        let deps = &deps;
        let statuses = &statuses;
        async move {
            let deadline = Instant::now() + WORK_WITHIN;
            loop {
                if let Some(event) = source.receive().await {
                    let response = steps.work(event.clone()).await;
                    source.settle(&event, &response).await;
                }
                let s = statuses().await;
                let assigned = s.values().filter(|st| **st == AppStatus::Assigned).count();
                let dead_now = deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap().len();
                if (assigned == done && dead_now == dead) || Instant::now() >= deadline {
                    return (s, dead_now);
                }
            }
        }
    };
    let (s, dead) = work_until(2, 1).await;
    assert_eq!(dead, 1, "{s:?}");
    let missing: Vec<&String> = s
        .iter()
        .filter(|(_, st)| **st == AppStatus::Missing)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(missing.len(), 1, "{s:?}");
    let letters = deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap();
    let reason = &letters[0].failure.as_ref().unwrap().reason;
    assert!(
        reason.contains(missing[0].as_str()) && reason.contains("creating it"),
        "{reason}"
    );
    println!(
        "app catalogue (SQS + DynamoDB emulator): 2 of 3 apps in place, the refused one dead-lettered, after {:.2}s",
        started.elapsed().as_secs_f64()
    );

    // Replayed, the refused app is created; every app exists once, assigned to its rings.
    let ids: Vec<String> = letters.iter().map(|d| d.id.clone()).collect();
    deps.queue.replay(QueueName::Onboarding, &ids).await.unwrap();
    let (s, dead) = work_until(3, 0).await;
    assert_eq!(dead, 0, "{s:?}");
    let query = RequestLogQuery {
        tenant: Some(tid.clone()),
        ..Default::default()
    };
    let log = control.requests(&query).await.unwrap();
    let posts: Vec<u16> = creates(&log).iter().map(|p| p.status).collect();
    assert_eq!(posts.iter().filter(|s| **s == 201).count(), 3, "{posts:?}");
    assert_eq!(posts.len(), 4, "one refused, three created: {posts:?}");
    let apps = control.objects(&tid, "mobileApps").await.unwrap();
    let mut groups = BTreeMap::new();
    for ring in Ring::ALL {
        groups.insert(ring, ring_group(&graph, ring).await.unwrap());
    }
    for want in &catalogue.apps {
        let found: Vec<&Value> = apps.iter().filter(|a| a["notes"] == want.marker()).collect();
        assert_eq!(found.len(), 1, "{} exists once", want.key);
        let listed: Value = graph
            .get(
                &format!(
                    "deviceAppManagement/mobileApps/{}/assignments",
                    found[0]["id"].as_str().unwrap()
                ),
                &Query::default(),
            )
            .await
            .unwrap();
        let held: BTreeSet<(String, String)> = listed["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["target"]["groupId"].as_str().unwrap().to_string(),
                    a["intent"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: BTreeSet<(String, String)> = want
            .rings
            .iter()
            .map(|r| (groups[r].clone(), want.intent.as_str().to_string()))
            .collect();
        assert_eq!(held, expected, "{}", want.key);
    }

    // A second sync (the CLI's): nothing sent, nothing written.
    let seq = log.last().map(|r| r.seq).unwrap_or(0);
    let second = sync(&deps, &tenant, &graph, "test", false).await.unwrap();
    assert_eq!(second.messages, 0);
    assert!(source.receive().await.is_none(), "the queue is empty");
    let writes: Vec<_> = control
        .requests(&query)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.seq > seq && r.method != "GET" && r.path.starts_with("/v1.0"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}
