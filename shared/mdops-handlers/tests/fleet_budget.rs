//! One Graph budget per tenant for every embedded worker on one database: several workers, each
//! with its own Graph client and its own connections to the same SQLite file (as separate
//! `mdops worker` processes have), license one tenant's users against the simulated tenant. The
//! simulator's request log (it timestamps every request) shows the tenant's requests in every
//! window stayed within the quota; without the shared budget the same workers pass it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Rig, test_worker_settings};
use mdops_core::budget::RequestBudget;
use mdops_core::licences::LicenceMessage;
use mdops_core::queue::{Queue, QueueName};
use mdops_core::store::Store;
use mdops_core::tenant::TenantId;
use mdops_graph::{BucketSettings, GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::licences::{Target, fan_out};
use mdops_handlers::worker::Worker;
use mdops_local::SqliteBackend;
use tenant_sim::seeds::{SkuSeed, UserSeed};

/// Workers on the one database.
const WORKERS: usize = 4;
/// Users to license: one message each.
const USERS: usize = 30;
/// The tenant's quota here: every request, per window (small, so four workers with a budget each
/// pass it at once).
const QUOTA: u32 = 40;
const WINDOW: Duration = Duration::from_secs(4);
/// 40 per 4 s in 1 s slots: 40 / (4 + 1) = 8 per slot.
const SLOT: Duration = Duration::from_secs(1);

/// The client's settings: the test's small quota when `tight`, else the defaults.
fn config(rig: &Rig, tight: bool) -> GraphConfig {
    let base = url::Url::parse(&format!("{}/", rig.sim.url())).unwrap();
    let mut config = GraphConfig::for_base(&base).unwrap();
    if !tight {
        // The default settings: a quota this work never reaches.
        return config;
    }
    config.limiter.all = BucketSettings {
        permits: QUOTA,
        per: WINDOW,
    };
    config.limiter.shared_slot = SLOT;
    config.limiter.max_wait = Duration::from_secs(10);
    config
}

/// Most requests in any window of `window` (times sorted).
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

struct Outcome {
    requests: usize,
    granted: u64,
    busiest: usize,
    takes: u64,
    throttled: usize,
}

/// Licenses [`USERS`] users with [`WORKERS`] workers, each with its own client and connections;
/// with `shared`, each client takes permits from the database's shared budget.
async fn license_everyone(shared: bool, tight: bool) -> Outcome {
    let rig = Rig::start_with_settings(
        |seed| {
            seed.objects.users = (0..USERS)
                .map(|i| UserSeed::member(&format!("u{i:02}@fabrikam.onmicrosoft.com"), Some("US")))
                .collect();
            seed.objects.skus = vec![SkuSeed::new("SPE_E5", USERS as u32)];
        },
        |settings| {
            if !tight {
                // Graph's whole published write quota (3,000 per 150 s): 39 writes per 2 s slot,
                // more than this burst of 30; the default 1,500 allows 19 per slot.
                settings.graph_budget.identity_writes_per_150s = 3000;
            }
        },
        |q| q,
    )
    .await;
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    for i in 0..USERS {
        let template = LicenceMessage::add(&tid, "placeholder", &["SPE_E5".to_string()], "test");
        fan_out(
            rig.backend.queue(),
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    let mut running = Vec::new();
    for _ in 0..WORKERS {
        let own = SqliteBackend::open(rig.dir.path().join("mdops.db")).unwrap();
        let store: Arc<dyn Store> = Arc::new(own.store().clone());
        let budget: Arc<dyn RequestBudget> = Arc::new(own.store().clone());
        let graph = if shared {
            GraphClient::with_shared_budget(config(&rig, tight), budget).unwrap()
        } else {
            GraphClient::new(config(&rig, tight)).unwrap()
        };
        let queue: Arc<dyn Queue> = Arc::new(own.queue().clone());
        let deps = Deps {
            lag_window: Duration::from_secs(2),
            ..Deps::new(store, queue, graph.clone())
        };
        clients.push(graph);
        let worker = Worker::new(deps, test_worker_settings());
        let stop = stop_rx.clone();
        running.push(tokio::spawn(
            async move { worker.run(&[QueueName::Licences], stop).await },
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let skus = rig.control.objects(&rig.tenant_id, "subscribedSkus").await.unwrap();
        let consumed = skus
            .iter()
            .find(|s| s["skuPartNumber"] == "SPE_E5")
            .and_then(|s| s["consumedUnits"].as_u64())
            .unwrap_or(0);
        if consumed == USERS as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {consumed} of {USERS} users licensed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(true).unwrap();
    for r in running {
        r.await.unwrap();
    }
    let dead = rig.backend.queue().dead_letters(QueueName::Licences, 50).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");

    let log = rig.requests().await;
    let mut times: Vec<DateTime<Utc>> = log
        .iter()
        .filter(|r| (r.path.starts_with("/v1.0/") || r.path.starts_with("/beta/")) && r.path != "/v1.0/$batch")
        .map(|r| DateTime::parse_from_rfc3339(&r.time).unwrap().with_timezone(&Utc))
        .collect();
    times.sort();
    let outcome = Outcome {
        granted: clients
            .iter()
            .filter_map(|g| g.shared_budget_stats())
            .map(|s| s.granted)
            .sum(),
        requests: times.len(),
        busiest: busiest_window(&times, WINDOW),
        takes: clients
            .iter()
            .filter_map(|g| g.shared_budget_stats())
            .map(|s| s.takes)
            .sum(),
        throttled: log.iter().filter(|r| r.status == 429).count(),
    };
    println!(
        "{WORKERS} workers, shared budget {shared}, small quota {tight} ({QUOTA} per {WINDOW:?}): {} Graph requests \
         over {} ms, busiest {WINDOW:?} window {}, {} budget writes ({:.2} per Graph request), {} answered 429",
        outcome.requests,
        (*times.last().unwrap() - times[0]).num_milliseconds(),
        outcome.busiest,
        outcome.takes,
        outcome.takes as f64 / outcome.requests as f64,
        outcome.throttled
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sharing_one_database_never_pass_the_tenants_quota() {
    let o = license_everyone(true, true).await;
    assert!(
        o.busiest <= QUOTA as usize,
        "the tenant got {} requests in one {WINDOW:?} window, over its quota of {QUOTA}",
        o.busiest
    );
    assert!(
        o.requests > QUOTA as usize,
        "enough requests to need more than one window: {}",
        o.requests
    );
    assert_eq!(o.throttled, 0);
}

/// The control: the same workers, each pacing only itself, spend the quota several times over.
/// (It shows the assertion above can fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_each_with_their_own_limiter_pass_the_tenants_quota() {
    let o = license_everyone(false, true).await;
    assert_eq!(o.takes, 0);
    assert!(
        o.busiest > QUOTA as usize,
        "four workers with a quota each stayed within one: busiest window {}",
        o.busiest
    );
}

/// Below the quota the shared budget costs one store write per Graph request, no more (the
/// figure in docs/deploy.md): every take is granted at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_quota_the_budget_costs_one_write_per_request() {
    let o = license_everyone(true, false).await;
    assert_eq!(o.takes, o.granted, "no take refused below the quota");
    assert_eq!(
        o.takes as usize, o.requests,
        "one write per Graph request (licence messages send no $batch)"
    );
}

/// A store that fails fails the request closed: nothing reaches Graph, and the error says what
/// failed and that the request was not sent; it is transient (the queue retries it later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_store_that_fails_sends_nothing_and_says_so() {
    let rig = Rig::start(|_| {}).await;
    let budget: Arc<dyn RequestBudget> = Arc::new(rig.backend.store().clone());
    let graph = GraphClient::with_shared_budget(config(&rig, false), budget).unwrap();
    let reach = mdops_handlers::reach::TenantReach::new(graph, rig.deps.store.clone());
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (_, tenant) = reach.tenant(&tid).await.unwrap();
    // Break the budget's table under the store, as a damaged database would be.
    rusqlite::Connection::open(rig.dir.path().join("mdops.db"))
        .unwrap()
        .execute_batch("DROP TABLE budget_counters")
        .unwrap();
    let graph_requests = |log: Vec<tenant_sim::store::RequestLogEntry>| {
        log.into_iter()
            .filter(|r| r.path.starts_with("/v1.0/") || r.path.starts_with("/beta/"))
            .collect::<Vec<_>>()
    };
    let before = graph_requests(rig.requests().await).len();
    let err = tenant
        .get::<serde_json::Value>("organization", &mdops_graph::Query::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "BudgetUnavailable");
    let text = err.to_string();
    assert!(
        text.contains("shared Graph request budget") && text.contains("not sent") && text.contains("budget_counters"),
        "{text}"
    );
    assert!(
        matches!(err.classification(), mdops_graph::ErrorClass::Transient { .. }),
        "{:?}",
        err.classification()
    );
    let after = graph_requests(rig.requests().await);
    assert_eq!(after.len(), before, "nothing reached Graph: {:?}", &after[before..]);
}

/// A `$batch` takes its items' permits in one write, and is split where one slot's share could
/// never hold it: 20 reads go in one envelope (one take), 20 Intune writes in envelopes of at
/// most 7 (a 2 s slot's share of 80 per 20 s), each one take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_its_items_in_one_write_and_splits_to_fit_a_slot() {
    let rig = Rig::start(|_| {}).await;
    let budget: Arc<dyn RequestBudget> = Arc::new(rig.backend.store().clone());
    let mut config = config(&rig, false);
    // The client's own defaults (80 Intune writes per 20 s), not the tenant's smaller budget.
    config.limiter.intune_writes = BucketSettings {
        permits: 80,
        per: Duration::from_secs(20),
    };
    let graph = GraphClient::with_shared_budget(config, budget).unwrap();
    let reach = mdops_handlers::reach::TenantReach::new(graph.clone(), rig.deps.store.clone());
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (_, tenant) = reach.tenant(&tid).await.unwrap();
    graph.set_tenant_limits(&rig.tenant_id, graph.config().limiter).unwrap();
    let envelopes =
        |log: &[tenant_sim::store::RequestLogEntry]| log.iter().filter(|r| r.path == "/v1.0/$batch").count();

    let reads: Vec<mdops_graph::BatchItem> = (0..20)
        .map(|i| mdops_graph::BatchItem::get(i.to_string(), "/organization"))
        .collect();
    let answers = tenant.batch(reads).await.unwrap();
    assert_eq!(answers.len(), 20);
    assert_eq!(envelopes(&rig.requests().await), 1);
    assert_eq!(graph.shared_budget_stats().unwrap().takes, 1, "20 reads, one write");

    let writes: Vec<mdops_graph::BatchItem> = (0..20)
        .map(|i| {
            mdops_graph::BatchItem::with_body(
                i.to_string(),
                "PATCH",
                format!("/deviceManagement/deviceConfigurations/missing-{i}"),
                serde_json::json!({"description": "x"}),
            )
        })
        .collect();
    let answers = tenant.batch(writes).await.unwrap();
    assert_eq!(answers.len(), 20, "every item answered");
    let log = rig.requests().await;
    assert_eq!(envelopes(&log), 1 + 3, "20 Intune writes in envelopes of 7, 7 and 6");
    let stats = graph.shared_budget_stats().unwrap();
    assert_eq!(stats.granted, 4, "{stats:?}");
}
