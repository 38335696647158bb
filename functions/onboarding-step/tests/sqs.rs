//! The AWS path of onboarding against the emulator: the enrollment function takes a
//! `TenantEnrolled` event, and the onboarding-step function is driven by real SQS messages received
//! from the emulator's queue (with Lambda's delete-on-success played by the test), state in
//! DynamoDB, Graph calls to the simulated tenant.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use mdops_aws::emulator::{EventSource, sdk_config, unique_prefix};
use mdops_aws::{AwsBackend, ResourceNames, ensure_resources};
use mdops_core::onboarding::runs::{RunSettings, RunStatus, RunView, Runs};
use mdops_core::queue::{Queue, QueueName, QueueSettings};
use mdops_core::store::Store;
use mdops_core::tenant::{CredentialRef, Tenant, TenantRegistry, TenantSettings};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::reach::TenantReach;
use onboarding_step::Function;
use tenant_sim::SimClient;
use tenant_sim::knobs::Knobs;
use tenant_sim::seeds::consented_tenant;

/// Longest a run may take on the emulator (moto answers SQS calls in milliseconds, not micro).
const RUN_WITHIN: Duration = Duration::from_secs(120);

struct Rig {
    sim: tenant_sim::RunningSim,
    control: SimClient,
    tenant_id: String,
    deps: Deps,
    steps: Function,
    enrollment: enrollment::Function,
    source: EventSource,
    _dir: tempfile::TempDir,
}

async fn rig(knobs: Knobs) -> Rig {
    rig_with(knobs, false).await
}

/// With `secrets_manager`, the tenant's client secret lives in (emulated) AWS Secrets Manager and
/// is registered as an `aws-secret:ARN` reference.
async fn rig_with(knobs: Knobs, secrets_manager: bool) -> Rig {
    let tenant_id = uuid::Uuid::new_v4();
    let client_id = uuid::Uuid::new_v4();
    let secret = format!("aws-test-{}", uuid::Uuid::new_v4());
    let mut seed = consented_tenant("adatum", tenant_id, client_id, &secret);
    seed.knobs = knobs;
    let sim = tenant_sim::start("127.0.0.1:0", vec![seed]).await.unwrap();

    let sdk = sdk_config().await;
    let names = ResourceNames::new(unique_prefix()).unwrap();
    let urls = ensure_resources(&sdk, &names, QueueSettings::default())
        .await
        .expect("create queues and table");
    let backend = AwsBackend::connect(&sdk, &names, QueueSettings::default())
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(backend.store().clone());
    let queue: Arc<dyn Queue> = Arc::new(backend.queue().clone());

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let credential = if secrets_manager {
        let created = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(format!("{}-adatum", names.table()))
            .secret_string(serde_json::json!({ "client_secret": secret }).to_string())
            .send()
            .await
            .expect("create secret in the emulator");
        CredentialRef::AwsSecret {
            arn: created.arn().unwrap().to_string(),
        }
    } else {
        CredentialRef::File {
            path: secret_file.display().to_string(),
        }
    };
    let tenant = Tenant {
        tenant_id: tenant_id.to_string().parse().unwrap(),
        domain: "adatum.onmicrosoft.com".parse().unwrap(),
        name: "Adatum".into(),
        client_id: client_id.to_string(),
        credential,
        settings: TenantSettings::default(),
        added_at: chrono::Utc::now(),
    };
    TenantRegistry::new(store.as_ref()).add(&tenant).await.unwrap();

    let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
    let graph = GraphClient::new(GraphConfig::for_base(&base).unwrap()).unwrap();
    let deps = Deps {
        reach: Arc::new(
            TenantReach::new(graph, store.clone()).with_secrets(Arc::new(mdops_aws::SecretsManager::new(&sdk))),
        ),
        store,
        queue,
        runs: RunSettings {
            lease: Duration::from_secs(10),
            grace: Duration::from_secs(5),
            max_attempts: 10,
        },
        clock: mdops_handlers::deps::system_clock(),
        lag_window: Duration::from_secs(2),
    };
    let source = EventSource::new(&sdk, urls[&QueueName::Onboarding].source.clone(), 30);
    Rig {
        control: SimClient::new(sim.url()),
        sim,
        tenant_id: tenant_id.to_string(),
        steps: Function { deps: deps.clone() },
        enrollment: enrollment::Function { deps: deps.clone() },
        deps,
        source,
        _dir: dir,
    }
}

fn enrolled_event(tenant_id: &str) -> EventBridgeEvent<serde_json::Value> {
    let mut event = EventBridgeEvent::default();
    event.detail_type = "TenantEnrolled".into();
    event.source = "mdops.test".into();
    event.detail = serde_json::json!({ "tenant_id": tenant_id });
    event
}

impl Rig {
    /// Invokes the step function on real receives until the run finishes (or the time is up).
    /// With `duplicate`, every message received for the first time is sent again first: each is
    /// then delivered at least twice.
    async fn drive(&self, run_id: &str, duplicate: bool) -> RunView {
        let runs = Runs::new(self.deps.store.as_ref(), self.deps.runs);
        let mut copies = std::collections::HashSet::new();
        let deadline = Instant::now() + RUN_WITHIN;
        let mut last_reconcile = Instant::now();
        loop {
            let view = runs.get(run_id).await.unwrap().unwrap();
            if view.status() != RunStatus::Running || Instant::now() > deadline {
                return view;
            }
            if let Some(event) = self.source.receive().await {
                if duplicate {
                    for record in &event.records {
                        let id = record.message_id.clone().unwrap_or_default();
                        if copies.remove(&id) {
                            continue;
                        }
                        let body = record.body.clone().unwrap_or_default();
                        let copy = self
                            .deps
                            .queue
                            .send(QueueName::Onboarding, mdops_core::queue::OutgoingMessage::now(body))
                            .await
                            .unwrap();
                        copies.insert(copy);
                    }
                }
                let response = self.steps.work(event.clone()).await;
                self.source.settle(&event, &response).await;
            }
            if last_reconcile.elapsed() > Duration::from_secs(2) {
                self.steps.reconcile().await.unwrap();
                last_reconcile = Instant::now();
            }
        }
    }

    /// Works the queue until the default app catalogue, which the run's last step plans, is
    /// created and assigned to its rings.
    async fn settle_default_apps(&self) {
        let catalogue = mdops_core::apps::default_catalogue();
        let apps = catalogue.apps.len();
        let assignments: usize = catalogue.apps.iter().map(|a| a.rings.len()).sum();
        let deadline = Instant::now() + RUN_WITHIN;
        loop {
            let c = self.counts().await;
            if c.get("mobileApps") == Some(&apps) && c.get("appAssignments") == Some(&assignments) {
                return;
            }
            assert!(Instant::now() < deadline, "the default catalogue did not land: {c:?}");
            if let Some(event) = self.source.receive().await {
                let response = self.steps.work(event.clone()).await;
                self.source.settle(&event, &response).await;
            }
        }
    }

    async fn counts(&self) -> BTreeMap<String, usize> {
        self.control.counts(&self.tenant_id).await.unwrap()
    }
}

fn assert_grew_by_one_onboarding(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) {
    for (kind, n) in [
        ("users", 6),
        // The four ring groups and the two role groups.
        ("groups", 6),
        ("deviceConfigurations", 4),
        ("intents", 1),
        ("assignments", 4),
        // Eight service-account role memberships, three roles carried by the role groups.
        ("memberships", 11),
    ] {
        let grew = after.get(kind).copied().unwrap_or(0) - before.get(kind).copied().unwrap_or(0);
        assert_eq!(grew, n, "{kind}: {before:?} -> {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_event_onboards_the_tenant_through_sqs_and_dynamodb() {
    let rig = rig(Knobs::default()).await;
    let before = rig.counts().await;
    let outcome = rig.enrollment.handle(enrolled_event(&rig.tenant_id)).await.unwrap();
    assert_eq!(outcome, enrollment::Outcome::Enrolled);
    let run_id = format!("{}.1", rig.tenant_id);
    let view = rig.drive(&run_id, false).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    assert_grew_by_one_onboarding(&before, &rig.counts().await);
    assert_eq!(
        rig.control.tenant(&rig.tenant_id).await.unwrap().mdm_authority,
        "intune"
    );

    // The run's last step planned the app catalogue; once it is in place, enrolling again
    // converges with zero writes.
    rig.settle_default_apps().await;
    let mark = rig
        .control
        .requests(&Default::default())
        .await
        .unwrap()
        .last()
        .map(|r| r.seq)
        .unwrap_or(0);
    rig.enrollment.handle(enrolled_event(&rig.tenant_id)).await.unwrap();
    let again = rig.drive(&format!("{}.2", rig.tenant_id), false).await;
    assert_eq!(again.status(), RunStatus::Succeeded);
    let writes: Vec<_> = rig
        .control
        .requests(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.seq > mark && r.path.starts_with("/v1.0") && r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    drop(rig.sim);
}

/// What a deployment does, end to end: the resources made by `mdops aws setup` (the same
/// `provision::setup`), the functions' ports built from the environment it prints (as their
/// `main` builds them, no network call), an enrollment event, and the queue driving the steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_aws_setup_the_functions_started_from_their_environment_onboard_a_tenant() {
    let tenant_id = uuid::Uuid::new_v4();
    let client_id = uuid::Uuid::new_v4();
    let secret = format!("aws-test-{}", uuid::Uuid::new_v4());
    let sim = tenant_sim::start(
        "127.0.0.1:0",
        vec![consented_tenant("setup", tenant_id, client_id, &secret)],
    )
    .await
    .unwrap();
    let sdk = sdk_config().await;
    let names = ResourceNames::new(unique_prefix()).unwrap();
    let report = mdops_aws::provision::setup(&sdk, &names, QueueSettings::default())
        .await
        .expect("mdops aws setup");
    assert!(
        report
            .resources
            .iter()
            .all(|r| r.state == mdops_aws::provision::ResourceState::Created),
        "{:?}",
        report.resources
    );
    let again = mdops_aws::provision::setup(&sdk, &names, QueueSettings::default())
        .await
        .unwrap();
    assert!(
        again
            .resources
            .iter()
            .all(|r| r.state == mdops_aws::provision::ResourceState::Existing),
        "a second setup finds everything: {:?}",
        again.resources
    );
    let mut env = BTreeMap::from([
        (mdops_aws::TABLE_ENV.to_string(), report.table.clone()),
        (mdops_lambda::SIM_URL_ENV.to_string(), format!("{}/", sim.url())),
    ]);
    for queue in QueueName::ALL {
        env.insert(mdops_aws::queue_url_env(queue), report.urls[&queue].source.clone());
        env.insert(
            mdops_aws::dead_letter_url_env(queue),
            report.urls[&queue].dead_letter.clone(),
        );
    }
    let deps = mdops_lambda::deps_from(&sdk, |name| env.get(name).cloned())
        .await
        .expect("the functions' ports from their environment");
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let tenant = Tenant {
        tenant_id: tenant_id.to_string().parse().unwrap(),
        domain: "setup.onmicrosoft.com".parse().unwrap(),
        name: "Setup".into(),
        client_id: client_id.to_string(),
        credential: CredentialRef::File {
            path: secret_file.display().to_string(),
        },
        settings: TenantSettings::default(),
        added_at: chrono::Utc::now(),
    };
    TenantRegistry::new(deps.store.as_ref()).add(&tenant).await.unwrap();
    let rig = Rig {
        control: SimClient::new(sim.url()),
        sim,
        tenant_id: tenant_id.to_string(),
        steps: Function { deps: deps.clone() },
        enrollment: enrollment::Function { deps: deps.clone() },
        source: EventSource::new(&sdk, report.urls[&QueueName::Onboarding].source.clone(), 30),
        deps,
        _dir: dir,
    };
    let outcome = rig.enrollment.handle(enrolled_event(&rig.tenant_id)).await.unwrap();
    assert_eq!(outcome, enrollment::Outcome::Enrolled);
    let view = rig.drive(&format!("{}.1", rig.tenant_id), false).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    assert_eq!(
        rig.control.tenant(&rig.tenant_id).await.unwrap().mdm_authority,
        "intune"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sqs_message_delivered_twice_under_throttling_and_lag_creates_nothing_twice() {
    let rig = rig(Knobs {
        replication_lag_ms: 1_000,
        identity_write_limit: 10,
        identity_write_window_ms: 2_000,
        retry_after_decimal: true,
        ..Knobs::default()
    })
    .await;
    let before = rig.counts().await;
    rig.enrollment.handle(enrolled_event(&rig.tenant_id)).await.unwrap();
    let view = rig.drive(&format!("{}.1", rig.tenant_id), true).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    assert_grew_by_one_onboarding(&before, &rig.counts().await);
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 50).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_an_unregistered_tenant_is_dead_lettered_with_the_reason() {
    let rig = rig(Knobs::default()).await;
    let stranger = "0badc0de-0000-4000-8000-000000000001";
    match rig.enrollment.handle(enrolled_event(stranger)).await.unwrap() {
        enrollment::Outcome::Refused { reason, .. } => assert!(reason.contains("not registered"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut wrong_type = enrolled_event(&rig.tenant_id);
    wrong_type.detail_type = "TenantDeleted".into();
    assert!(matches!(
        rig.enrollment.handle(wrong_type).await.unwrap(),
        enrollment::Outcome::Refused { .. }
    ));
    let dead = rig.deps.queue.dead_letters(QueueName::Onboarding, 10).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reasons: Vec<&str> = dead
        .iter()
        .filter_map(|d| d.failure.as_ref())
        .map(|f| f.reason.as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(stranger) && r.contains("not registered")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("TenantDeleted")), "{reasons:?}");
    assert!(
        dead.iter().any(|d| d.body.contains(stranger)),
        "the whole event is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_kept_in_secrets_manager_is_read_at_run_time() {
    let rig = rig_with(Knobs::default(), true).await;
    rig.enrollment.handle(enrolled_event(&rig.tenant_id)).await.unwrap();
    let view = rig.drive(&format!("{}.1", rig.tenant_id), false).await;
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);
    let registered = TenantRegistry::new(rig.deps.store.as_ref())
        .require(&rig.tenant_id)
        .await
        .unwrap();
    assert!(
        matches!(registered.credential, CredentialRef::AwsSecret { .. }),
        "only the reference is stored"
    );
}
