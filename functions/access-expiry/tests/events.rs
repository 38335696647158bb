//! The sample schedule event runs the timer pass: an overdue pending request expires and its mail
//! is queued on the access queue.

use std::sync::Arc;

use access_expiry::Function;
use mdops_core::access::{AccessRequest, AccessRequests, AccessSettings, AccessState, Caller, NewAccessRequest};
use mdops_core::queue::{Queue, QueueName};
use mdops_core::tenant::TenantSettings;
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;

#[tokio::test]
async fn the_schedule_event_runs_the_timer_pass() {
    let dir = tempfile::tempdir().unwrap();
    let backend = mdops_local::SqliteBackend::open(dir.path().join("mdops.db")).unwrap();
    let store: Arc<dyn mdops_core::store::Store> = Arc::new(backend.store().clone());
    let queue: Arc<dyn Queue> = Arc::new(backend.queue().clone());
    let deps = Deps::new(
        store.clone(),
        queue.clone(),
        GraphClient::new(GraphConfig::default()).unwrap(),
    );
    let alice = Caller {
        upn: "alice@provider.example".into(),
        oid: "o".into(),
        tenant_id: "t".into(),
        name: "Alice".into(),
        roles: vec!["Access.SOC".into()],
        groups: Vec::new(),
    };
    let input = NewAccessRequest {
        tenant: "aaaaaaaa-2222-3333-4444-555555555555".into(),
        role_group: "Modern Workplace Roles-SOC".into(),
        justification: "alert".into(),
        ticket: "INC1".into(),
        duration_minutes: 30,
    };
    let two_hours_ago = chrono::Utc::now() - chrono::Duration::hours(2);
    let settings = AccessSettings::default();
    let request = AccessRequest::new(
        "r1".into(),
        &input,
        &alice,
        &TenantSettings::default(),
        &settings,
        two_hours_ago,
    )
    .unwrap();
    AccessRequests::new(store.as_ref())
        .create(&request, Default::default(), two_hours_ago)
        .await
        .unwrap();

    let text = std::fs::read_to_string(format!(
        "{}/../../events/access-expiry-schedule.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let function = Function { deps };
    let report = function.handle(serde_json::from_str(&text).unwrap()).await.unwrap();
    assert_eq!(report["expired"], 1, "{report}");
    let stored = AccessRequests::new(store.as_ref()).get("r1").await.unwrap().unwrap();
    assert_eq!(stored.request.state, AccessState::Expired);
    let queued = queue
        .receive(
            QueueName::Access,
            10,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    assert!(queued[0].body.contains("\"mail\":\"expired\""), "{}", queued[0].body);
    // A second run finds nothing due.
    let again = function.handle(serde_json::from_str(&text).unwrap()).await.unwrap();
    assert_eq!(again["expired"], 0);
}

#[tokio::test]
async fn an_access_queue_batch_goes_through_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let backend = mdops_local::SqliteBackend::open(dir.path().join("mdops.db")).unwrap();
    let store: Arc<dyn mdops_core::store::Store> = Arc::new(backend.store().clone());
    let queue: Arc<dyn Queue> = Arc::new(backend.queue().clone());
    let deps = Deps::new(store, queue.clone(), GraphClient::new(GraphConfig::default()).unwrap());
    // The sample record's body names a request that does not exist: a permanent failure.
    let text = std::fs::read_to_string(format!(
        "{}/../../events/access-expiry-sqs.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
    let body = event["Records"][0]["body"].as_str().unwrap().to_string();
    queue
        .send(QueueName::Access, mdops_core::queue::OutgoingMessage::now(body))
        .await
        .unwrap();
    let got = queue
        .receive(
            QueueName::Access,
            1,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    // The record as Lambda would deliver it for this queue's message.
    event["Records"][0]["messageId"] = got[0].id.clone().into();
    event["Records"][0]["receiptHandle"] = got[0].receipt.clone().into();
    let answer = Function { deps }.handle(event).await.unwrap();
    assert_eq!(answer["batchItemFailures"], serde_json::json!([]), "{answer}");
    let dead = queue.dead_letters(QueueName::Access, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let failure = dead[0].failure.as_ref().unwrap();
    assert!(failure.reason.contains("no access request"), "{failure:?}");
    assert_eq!(failure.step.as_deref(), Some("remove"));
}
