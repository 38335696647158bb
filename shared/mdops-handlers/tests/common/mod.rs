//! A rig for handler tests: a simulated tenant with its own app, an embedded backend in a temp
//! directory, the tenant registered with a credential by reference, and a worker to run.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mdops_core::onboarding::runs::{RunSettings, RunStatus, RunView, Runs};
use mdops_core::queue::{Queue, QueueName};
use mdops_core::store::Store;
use mdops_core::tenant::{CredentialRef, Tenant, TenantRegistry, TenantSettings};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::worker::{Worker, WorkerSettings};
use mdops_local::SqliteBackend;
use tenant_sim::seeds::{TenantSeed, consented_tenant};
use tenant_sim::store::{RequestLogEntry, RequestLogQuery};
use tenant_sim::{RunningSim, SimClient};

/// Step timing short enough for tests: a dead holder is taken over within seconds.
pub fn test_run_settings() -> RunSettings {
    RunSettings {
        lease: Duration::from_secs(5),
        grace: Duration::from_secs(2),
        max_attempts: 10,
    }
}

/// Worker timing for tests.
pub fn test_worker_settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 16,
        per_tenant: 8,
        wait: Duration::from_secs(1),
        visibility: Duration::from_secs(10),
        tick: Duration::from_millis(300),
    }
}

pub struct Rig {
    pub sim: RunningSim,
    pub control: SimClient,
    pub tenant_id: String,
    pub client_id: String,
    pub backend: SqliteBackend,
    pub deps: Deps,
    pub dir: tempfile::TempDir,
}

impl Rig {
    /// A fresh tenant (adjusted by `customise`), registered in a fresh embedded backend.
    pub async fn start(customise: impl FnOnce(&mut TenantSeed)) -> Rig {
        Self::start_with_queue(customise, |q| q).await
    }

    /// Like [`Rig::start`], with the queue the handlers see wrapped by `wrap`.
    pub async fn start_with_queue(
        customise: impl FnOnce(&mut TenantSeed),
        wrap: impl FnOnce(Arc<dyn Queue>) -> Arc<dyn Queue>,
    ) -> Rig {
        Self::start_with_settings(customise, |_| {}, wrap).await
    }

    /// Like [`Rig::start_with_queue`], with the registered tenant's settings adjusted by `settings`.
    pub async fn start_with_settings(
        customise: impl FnOnce(&mut TenantSeed),
        settings: impl FnOnce(&mut TenantSettings),
        wrap: impl FnOnce(Arc<dyn Queue>) -> Arc<dyn Queue>,
    ) -> Rig {
        let tenant_id = uuid::Uuid::new_v4();
        let client_id = uuid::Uuid::new_v4();
        let secret = format!("test-secret-{}", uuid::Uuid::new_v4());
        let mut seed = consented_tenant("fabrikam", tenant_id, client_id, &secret);
        customise(&mut seed);
        let sim = tenant_sim::start("127.0.0.1:0", vec![seed])
            .await
            .expect("simulator starts");
        let control = SimClient::new(sim.url());

        let dir = tempfile::tempdir().expect("temp dir");
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, &secret).expect("write secret file");
        let backend = SqliteBackend::open(dir.path().join("mdops.db")).expect("open backend");
        let store: Arc<dyn Store> = Arc::new(backend.store().clone());
        let queue: Arc<dyn Queue> = wrap(Arc::new(backend.queue().clone()));
        let mut tenant = Tenant {
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
            added_at: chrono::Utc::now(),
        };
        settings(&mut tenant.settings);
        TenantRegistry::new(store.as_ref())
            .add(&tenant)
            .await
            .expect("register tenant");
        let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
        let graph = GraphClient::new(GraphConfig::for_base(&base).unwrap()).unwrap();
        let deps = Deps {
            runs: test_run_settings(),
            lag_window: Duration::from_secs(2),
            ..Deps::new(store, queue, graph)
        };
        Rig {
            sim,
            control,
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            backend,
            deps,
            dir,
        }
    }

    /// Enrolls the tenant and works the onboarding queue until the run leaves `running` or
    /// `timeout` passes; returns the run.
    pub async fn onboard(&self, timeout: Duration) -> RunView {
        let enrollment = mdops_handlers::onboarding::enroll(&self.deps, &self.tenant_id, "test")
            .await
            .expect("enroll");
        self.work_until_finished(enrollment.run_id(), timeout).await
    }

    /// Works the queue until the run finishes or `timeout` passes.
    pub async fn work_until_finished(&self, run_id: &str, timeout: Duration) -> RunView {
        self.work_until(run_id, timeout, |view| view.status() != RunStatus::Running)
            .await
    }

    /// Works the queue until `done` holds for the run or `timeout` passes.
    pub async fn work_until(&self, run_id: &str, timeout: Duration, done: impl Fn(&RunView) -> bool) -> RunView {
        let worker = Worker::new(self.deps.clone(), test_worker_settings());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let working = tokio::spawn(async move { worker.run(&[QueueName::Onboarding], stop_rx).await });
        let runs = Runs::new(self.deps.store.as_ref(), self.deps.runs);
        let deadline = tokio::time::Instant::now() + timeout;
        let view = loop {
            let view = runs.get(run_id).await.expect("read run").expect("run exists");
            if done(&view) || tokio::time::Instant::now() >= deadline {
                break view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        stop_tx.send(true).unwrap();
        working.await.unwrap();
        view
    }

    /// Works the queue until every app of the default catalogue is created and assigned (their
    /// messages are planned by the run's last step) or `timeout` passes; true if they all are.
    #[allow(dead_code)]
    pub async fn settle_default_apps(&self, timeout: Duration) -> bool {
        let want = mdops_core::apps::default_catalogue().apps.len();
        let worker = Worker::new(self.deps.clone(), test_worker_settings());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let working = tokio::spawn(async move { worker.run(&[QueueName::Onboarding], stop_rx).await });
        let deadline = tokio::time::Instant::now() + timeout;
        let tid: mdops_core::tenant::TenantId = self.tenant_id.parse().expect("tenant id");
        let (tenant, graph) = self.deps.reach.tenant(&tid).await.expect("reach tenant");
        let landed = loop {
            let in_place = match mdops_handlers::apps::sync::show(&self.deps, &tenant, &graph).await {
                Ok(report) => {
                    report.apps.len() == want
                        && report
                            .apps
                            .iter()
                            .all(|a| a.status == mdops_handlers::apps::AppStatus::Assigned)
                }
                Err(_) => false,
            };
            if in_place || tokio::time::Instant::now() >= deadline {
                break in_place;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        stop_tx.send(true).unwrap();
        working.await.unwrap();
        landed
    }

    /// Object counts in the simulated tenant.
    pub async fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        self.control.counts(&self.tenant_id).await.expect("counts")
    }

    /// Graph requests answered so far for this tenant.
    pub async fn requests(&self) -> Vec<RequestLogEntry> {
        let query = RequestLogQuery {
            tenant: Some(self.tenant_id.clone()),
            ..Default::default()
        };
        self.control.requests(&query).await.expect("request log")
    }

    /// Successful Graph writes (POST/PATCH/DELETE under /v1.0 or /beta answered 2xx) after log
    /// position `after`.
    pub async fn writes_after(&self, after: u64) -> Vec<RequestLogEntry> {
        self.requests()
            .await
            .into_iter()
            .filter(|r| {
                r.seq > after
                    && (r.path.starts_with("/v1.0") || r.path.starts_with("/beta"))
                    && r.method != "GET"
                    && (200..300).contains(&r.status)
            })
            .collect()
    }
}

/// The counts a fresh onboarding adds: six accounts, four groups, four update policies, the
/// security baseline (an Intune intent, Graph beta), four assignments, eight role memberships.
pub fn expected_growth() -> [(&'static str, usize); 6] {
    [
        ("users", 6),
        // The four ring groups and the two role groups.
        ("groups", 6),
        ("deviceConfigurations", 4),
        ("intents", 1),
        ("assignments", 4),
        // Eight service-account role memberships, three roles carried by the role groups.
        ("memberships", 11),
    ]
}
