//! The sample schedule event (`events/ring-assignment-schedule.json`) decodes with the function's
//! decoder and runs both management jobs: the first run only starts their clocks; an hour later
//! one run plans the ring sync and the app catalogue sync of the registered tenant, and the same
//! hour does not plan them again.

use std::sync::Arc;
use std::time::Duration;

use mdops_core::queue::{Queue, QueueName};
use mdops_core::store::Store;
use mdops_core::tenant::{CredentialRef, Ring, Tenant, TenantRegistry, TenantSettings};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use ring_assignment::{Function, TickReport, decode};
use tenant_sim::seeds::{GroupSeed, consented_tenant, windows_devices};

fn sample() -> serde_json::Value {
    let path = format!(
        "{}/../../events/ring-assignment-schedule.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_event_plans_the_ring_and_app_syncs_once_an_hour() {
    assert_eq!(decode(sample()).unwrap().detail_type, "Scheduled Event");

    let tenant_id = uuid::Uuid::new_v4();
    let client_id = uuid::Uuid::new_v4();
    let secret = format!("events-test-{}", uuid::Uuid::new_v4());
    let mut seed = consented_tenant("litware", tenant_id, client_id, &secret);
    seed.objects.devices = windows_devices("PC", 5);
    seed.objects.groups = Ring::ALL
        .iter()
        .map(|r| GroupSeed::security(r.display_name()))
        .collect();
    let sim = tenant_sim::start("127.0.0.1:0", vec![seed]).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let backend = mdops_local::SqliteBackend::open(dir.path().join("mdops.db")).unwrap();
    let store: Arc<dyn Store> = Arc::new(backend.store().clone());
    let queue: Arc<dyn Queue> = Arc::new(backend.queue().clone());
    let tenant = Tenant {
        tenant_id: tenant_id.to_string().parse().unwrap(),
        domain: "litware.onmicrosoft.com".parse().unwrap(),
        name: "Litware".into(),
        client_id: client_id.to_string(),
        credential: CredentialRef::File {
            path: secret_file.display().to_string(),
        },
        settings: TenantSettings::default(),
        added_at: chrono::Utc::now(),
    };
    TenantRegistry::new(store.as_ref()).add(&tenant).await.unwrap();
    let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
    let deps = Deps::new(
        store,
        queue.clone(),
        GraphClient::new(GraphConfig::for_base(&base).unwrap()).unwrap(),
    );

    let function = Function { deps: deps.clone() };
    let first = function.handle(sample()).await.unwrap();
    assert_eq!(
        first,
        serde_json::json!(TickReport::default()),
        "the first run only starts the clocks"
    );

    let later = chrono::Utc::now() + chrono::Duration::minutes(61);
    let an_hour_on = Function {
        deps: Deps {
            clock: Arc::new(move || later),
            ..deps
        },
    };
    let report = an_hour_on.handle(sample()).await.unwrap();
    // Five devices all land in Broad (one chunk); the default catalogue has two apps.
    assert_eq!(
        report,
        serde_json::json!(TickReport {
            ring_chunks: Some(1),
            app_messages: Some(2),
        })
    );
    let again = an_hour_on.handle(sample()).await.unwrap();
    assert_eq!(
        again,
        serde_json::json!(TickReport::default()),
        "not due again within the hour"
    );

    let sent = queue
        .receive(
            QueueName::Onboarding,
            10,
            Duration::from_secs(1),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let mut kinds: Vec<String> = sent
        .iter()
        .map(|m| {
            serde_json::from_str::<serde_json::Value>(&m.body).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["app.ensure", "app.ensure", "ring.members"]);
    sim.shutdown().await;
}
