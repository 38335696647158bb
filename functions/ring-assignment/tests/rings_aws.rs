//! Device ring assignment on the AWS path against the emulator: the ring-assignment function's
//! schedule plans the hourly sync (claim in DynamoDB), the chunks travel on the real SQS queue and
//! the onboarding-step function works them (Lambda's delete-on-success played by the test), Graph calls go to the
//! simulated tenant with 5,000 Windows devices. One Broad chunk is throttled once: only it comes
//! back. The SQLite run of the same is `shared/mdops-handlers/tests/rings.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mdops_aws::emulator::{EventSource, sdk_config, unique_prefix};
use mdops_aws::{AwsBackend, ResourceNames, ensure_resources};
use mdops_core::onboarding::runs::RunSettings;
use mdops_core::queue::{Queue, QueueName, QueueSettings};
use mdops_core::rings::{MAX_MEMBERS_PER_REQUEST, SHARE_SCALE};
use mdops_core::store::Store;
use mdops_core::tenant::{CredentialRef, Ring, Tenant, TenantRegistry, TenantSettings};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::reach::TenantReach;
use mdops_handlers::rings::{ring_group, show::show, sync::sync};
use onboarding_step::Function as Steps;
use ring_assignment::Function as Schedule;
use serde_json::Value;
use tenant_sim::SimClient;
use tenant_sim::faults::{FaultAction, FaultSpec};
use tenant_sim::seeds::{GroupSeed, consented_tenant, windows_devices};
use tenant_sim::store::{RequestLogEntry, RequestLogQuery};

const WINDOWS: usize = 5_000;
/// Longest the chunks may take on the emulator (moto answers SQS calls in milliseconds).
const WORK_WITHIN: Duration = Duration::from_secs(600);

fn binds(r: &RequestLogEntry) -> Vec<String> {
    r.body
        .as_ref()
        .and_then(|b| b.get("members@odata.bind"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// One run of the ring-assignment schedule: the ring chunks it sent (`None`: not due).
async fn ring_sync(schedule: &Schedule) -> Option<usize> {
    let event = ring_assignment::decode(serde_json::json!({
        "version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-12-04T19:00:00Z", "region": "eu-west-1",
        "resources": [], "detail": {}
    }))
    .unwrap();
    schedule.tick(event).await.unwrap().ring_chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_devices_are_placed_through_sqs_and_dynamodb_and_a_second_sync_writes_nothing() {
    let tenant_id = uuid::Uuid::new_v4();
    let client_id = uuid::Uuid::new_v4();
    let secret = format!("aws-test-{}", uuid::Uuid::new_v4());
    let mut seed = consented_tenant("adatum", tenant_id, client_id, &secret);
    seed.objects.devices = windows_devices("PC", WINDOWS);
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
    // Every retry is a queue hop, so the throttled chunk is seen coming back through SQS.
    config.retry.max_attempts = 1;
    let graph_client = GraphClient::new(config).unwrap();
    let deps = Deps {
        reach: Arc::new(TenantReach::new(graph_client, store.clone())),
        store,
        queue,
        runs: RunSettings::default(),
        clock: mdops_handlers::deps::system_clock(),
        lag_window: Duration::from_secs(2),
    };
    let (_, graph) = deps.reach.tenant(&tenant.tenant_id).await.unwrap();
    let source = EventSource::new(&sdk, urls[&QueueName::Onboarding].source.clone(), 30);

    // The schedule: the first pass only starts the clock; an hour later it plans the sync.
    let function = Steps { deps: deps.clone() };
    let schedule = Schedule { deps: deps.clone() };
    assert_eq!(ring_sync(&schedule).await, None);
    let later = chrono::Utc::now() + chrono::Duration::minutes(61);
    let an_hour_on = Schedule {
        deps: Deps {
            clock: Arc::new(move || later),
            ..deps.clone()
        },
    };
    let broad_group = ring_group(&graph, Ring::Broad).await.unwrap();
    control
        .add_fault(
            &tid,
            &FaultSpec {
                method: Some("PATCH".into()),
                path_prefix: format!("/v1.0/groups/{broad_group}"),
                count: 1,
                action: FaultAction::Status {
                    status: 429,
                    retry_after: Some("1".into()),
                    code: None,
                },
            },
        )
        .await
        .unwrap();
    let before = control.counts(&tid).await.unwrap()["memberships"];
    let started = Instant::now();
    let chunks = ring_sync(&an_hour_on).await;
    assert_eq!(chunks, Some(WINDOWS.div_ceil(MAX_MEMBERS_PER_REQUEST) + 1));
    let planned = started.elapsed();
    // Not due again within the hour.
    assert_eq!(ring_sync(&an_hour_on).await, None);

    let deadline = Instant::now() + WORK_WITHIN;
    let mut members = before;
    while members < before + WINDOWS && Instant::now() < deadline {
        if let Some(event) = source.receive().await {
            let response = function.work(event.clone()).await;
            source.settle(&event, &response).await;
        }
        members = control.counts(&tid).await.unwrap()["memberships"];
    }
    let total = started.elapsed();
    assert_eq!(members, before + WINDOWS);
    println!(
        "ring sync of {WINDOWS} devices (SQS + DynamoDB emulator): planned and queued {} chunks in {:.2}s, all members added after {:.2}s",
        chunks.unwrap_or(0),
        planned.as_secs_f64(),
        total.as_secs_f64()
    );

    let shares = tenant.settings.ring_shares;
    let report = show(&graph, &shares).await.unwrap();
    assert_eq!(report.windows_devices, WINDOWS);
    assert!(report.unplaced.is_empty() && report.in_several.is_empty());
    for line in &report.rings {
        let exact = WINDOWS as f64 * shares.get(line.ring) as f64 / SHARE_SCALE as f64;
        assert!(
            (line.devices as f64 - exact).abs() <= 1.0,
            "{:?}: {} vs {exact}",
            line.ring,
            line.devices
        );
    }

    let query = RequestLogQuery {
        tenant: Some(tid.clone()),
        ..Default::default()
    };
    let log = control.requests(&query).await.unwrap();
    let patches: Vec<&RequestLogEntry> = log
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.starts_with("/v1.0/groups/"))
        .collect();
    let mut per_body: HashMap<Vec<String>, Vec<u16>> = HashMap::new();
    for p in &patches {
        let n = binds(p).len();
        assert!(
            (1..=MAX_MEMBERS_PER_REQUEST).contains(&n),
            "a request bound {n} members"
        );
        per_body.entry(binds(p)).or_default().push(p.status);
    }
    let again: Vec<_> = per_body.iter().filter(|(_, s)| s.len() > 1).collect();
    assert_eq!(again.len(), 1, "only the throttled chunk was sent twice");
    assert_eq!(again[0].1, &vec![429, 204]);
    assert_eq!(per_body.len(), WINDOWS.div_ceil(MAX_MEMBERS_PER_REQUEST) + 1);

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
    assert!(
        deps.queue
            .dead_letters(QueueName::Onboarding, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
