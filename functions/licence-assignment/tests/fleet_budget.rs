//! One Graph budget per tenant for the whole fleet, on the emulator: several instances of the
//! licence-assignment function at once, each with its own Graph client (as separate Lambda
//! instances have), all on the same DynamoDB table (moto) and all working one tenant's messages
//! against the simulated tenant. The simulator's request log (it timestamps every request) shows
//! the tenant's requests in every window stayed within the configured quota.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use licence_assignment::Function;
use mdops_aws::emulator::{self, EventSource};
use mdops_aws::{AwsBackend, ResourceNames};
use mdops_core::budget::RequestBudget;
use mdops_core::licences::LicenceMessage;
use mdops_core::queue::{Queue, QueueName, QueueSettings};
use mdops_core::store::Store;
use mdops_core::tenant::{CredentialRef, Tenant, TenantId, TenantRegistry, TenantSettings};
use mdops_graph::{BucketSettings, GraphClient, GraphConfig};
use mdops_handlers::deps::Deps;
use mdops_handlers::licences::{LicenceSettings, Target, fan_out};
use secrecy::SecretString;
use tenant_sim::SimClient;
use tenant_sim::seeds::{AppSeed, PRODUCT_PERMISSIONS, SkuSeed, TenantSeed, UserSeed};

/// Function instances working at once.
const INSTANCES: usize = 4;
/// Users to license: one message each.
const USERS: usize = 40;
/// The tenant's quota in this test: every request, per window (small, so four instances with a
/// budget each would pass it many times over).
const QUOTA: u32 = 40;
const WINDOW: Duration = Duration::from_secs(1);
/// The shared budget's slot: 40 per 1 s gives 40 / (2 + 1) = 13 requests per 500 ms slot.
const SLOT: Duration = Duration::from_millis(500);

fn config(base: &url::Url) -> GraphConfig {
    let mut config = GraphConfig::for_base(base).unwrap();
    config.limiter.all = BucketSettings {
        permits: QUOTA,
        per: WINDOW,
    };
    config.limiter.shared_slot = SLOT;
    config.limiter.max_wait = Duration::from_secs(10);
    config
}

/// Most of the tenant's Graph requests (not tokens, not `$batch` envelopes) in any window of
/// `window`, from the simulator's timestamps; and how many there were.
fn busiest_window(times: &[DateTime<Utc>], window: Duration) -> usize {
    let window = chrono::Duration::from_std(window).unwrap();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_function_instances_on_one_table_never_pass_the_tenants_quota() {
    let tenant_id = uuid::Uuid::new_v4();
    let client_id = uuid::Uuid::new_v4();
    let secret = format!("test-secret-{}", uuid::Uuid::new_v4());
    let mut seed = TenantSeed::new("fabrikam");
    seed.id = Some(tenant_id);
    seed.apps.push(AppSeed {
        client_id,
        display_name: Some("mdops".into()),
        secret: Some(SecretString::from(secret.clone())),
        certificates: Vec::new(),
        permissions: PRODUCT_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
    });
    seed.objects.users = (0..USERS)
        .map(|i| UserSeed::member(&format!("u{i:02}@fabrikam.onmicrosoft.com"), Some("US")))
        .collect();
    seed.objects.skus = vec![SkuSeed::new("SPE_E5", USERS as u32)];
    let sim = tenant_sim::start("127.0.0.1:0", vec![seed]).await.unwrap();
    let control = SimClient::new(sim.url());

    let sdk = emulator::sdk_config().await;
    let names = ResourceNames::new(emulator::unique_prefix()).unwrap();
    let backend = AwsBackend::ensure(&sdk, &names, QueueSettings::default())
        .await
        .expect("queues and table");
    let queue_url = aws_sdk_sqs::Client::new(&sdk)
        .get_queue_url()
        .queue_name(names.queue(QueueName::Licences))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let tenant = Tenant {
        tenant_id: tenant_id.to_string().parse().unwrap(),
        domain: "fabrikam.onmicrosoft.com".parse().unwrap(),
        name: "Fabrikam".into(),
        client_id: client_id.to_string(),
        credential: CredentialRef::File {
            path: secret_file.display().to_string(),
        },
        settings: TenantSettings {
            usage_location: Some("US".into()),
            ..TenantSettings::default()
        },
        added_at: Utc::now(),
    };
    TenantRegistry::new(backend.store()).add(&tenant).await.unwrap();
    let tid: TenantId = tenant_id.to_string().parse().unwrap();
    for i in 0..USERS {
        let template = LicenceMessage::add(&tid, "placeholder", &["SPE_E5".to_string()], "test");
        fan_out(
            backend.queue(),
            None,
            &tid,
            &Target::User(format!("u{i:02}@fabrikam.onmicrosoft.com")),
            &template,
            false,
            &|_, _| {},
        )
        .await
        .unwrap();
    }

    // Each instance: its own Graph client and function, as a separate Lambda instance; the same
    // table (its own store client too) for state and for the shared budget.
    let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        let own = AwsBackend::connect(&sdk, &names, QueueSettings::default())
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(own.store().clone());
        let budget: Arc<dyn RequestBudget> = Arc::new(own.store().clone());
        let graph = GraphClient::with_shared_budget(config(&base), budget).unwrap();
        let deps = Deps {
            lag_window: Duration::from_secs(2),
            ..Deps::new(store, Arc::new(own.queue().clone()), graph.clone())
        };
        instances.push((
            Arc::new(Function::new(deps, LicenceSettings::default())),
            Arc::new(EventSource::new(&sdk, queue_url.clone(), 30)),
            graph,
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for (function, source, _) in &instances {
        let (function, source, stop) = (function.clone(), source.clone(), stop.clone());
        pollers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(180);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Some(event) = source.receive().await {
                    let response = function.handle(event.clone()).await;
                    source.settle(&event, &response).await;
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    let consumed = loop {
        let skus = control.objects(&tenant_id.to_string(), "subscribedSkus").await.unwrap();
        let consumed = skus
            .iter()
            .find(|s| s["skuPartNumber"] == "SPE_E5")
            .and_then(|s| s["consumedUnits"].as_u64())
            .unwrap_or(0);
        if consumed == USERS as u64 || Instant::now() > deadline {
            break consumed;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, Ordering::SeqCst);
    for p in pollers {
        p.await.unwrap();
    }
    assert_eq!(consumed, USERS as u64, "every user licensed");
    let dead = backend.queue().dead_letters(QueueName::Licences, 50).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");

    let q = tenant_sim::store::RequestLogQuery {
        tenant: Some(tenant_id.to_string()),
        ..Default::default()
    };
    let log = control.requests(&q).await.unwrap();
    let mut times: Vec<DateTime<Utc>> = log
        .iter()
        .filter(|r| (r.path.starts_with("/v1.0/") || r.path.starts_with("/beta/")) && r.path != "/v1.0/$batch")
        .map(|r| DateTime::parse_from_rfc3339(&r.time).unwrap().with_timezone(&Utc))
        .collect();
    times.sort();
    let busiest = busiest_window(&times, WINDOW);
    let throttled = log.iter().filter(|r| r.status == 429).count();
    let takes: u64 = instances
        .iter()
        .map(|(_, _, g)| g.shared_budget_stats().unwrap().takes)
        .sum();
    let span = *times.last().unwrap() - times[0];
    println!(
        "{INSTANCES} instances, {} Graph requests over {} ms: busiest {WINDOW:?} window {busiest} (quota {QUOTA}); \
         {takes} budget writes = {:.2} per Graph request; {throttled} answered 429",
        times.len(),
        span.num_milliseconds(),
        takes as f64 / times.len() as f64
    );
    assert!(
        busiest <= QUOTA as usize,
        "the tenant got {busiest} requests in one {WINDOW:?} window, over its quota of {QUOTA}"
    );
    assert!(
        times.len() > 2 * QUOTA as usize,
        "enough requests to need several windows"
    );
    assert_eq!(throttled, 0, "the simulator's own quotas never answered 429");
}
