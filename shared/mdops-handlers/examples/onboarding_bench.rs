//! Onboarding benchmark against the simulated tenant (prints figures; not a test).
//!
//! `cargo run --release -p mdops-handlers --example onboarding_bench [-- --tenants 100 --latency-ms 50]`
//!
//! 1. One fresh onboarding with 50 ms per Graph call: Graph calls against the lower bound (one
//!    write per object plus the reads that cannot be avoided), and wall time against the critical
//!    path of the step DAG under the same latency.
//! 2. N tenants enrolled at once on one embedded worker: time to finish, steps per second, peak RSS,
//!    and the highest request rate any one tenant saw against its quotas.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mdops_core::onboarding::runs::{RunStatus, Runs};
use mdops_core::onboarding::{StepKind, plan};
use mdops_core::queue::{Queue, QueueName};
use mdops_core::store::Store;
use mdops_core::tenant::{CredentialRef, Tenant, TenantRegistry, TenantSettings};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::worker::{Worker, WorkerSettings};
use mdops_local::SqliteBackend;
use tenant_sim::SimClient;
use tenant_sim::knobs::Knobs;
use tenant_sim::seeds::consented_tenant;
use tenant_sim::store::{RequestLogEntry, RequestLogQuery};

/// Longest the bench waits for all runs.
const BENCH_TIMEOUT: Duration = Duration::from_secs(900);

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

struct Setup {
    control: SimClient,
    deps: Deps,
    tenants: Vec<String>,
    _sim: tenant_sim::RunningSim,
    _dir: tempfile::TempDir,
}

async fn setup(count: usize, latency_ms: u64) -> Setup {
    let client_id = uuid::Uuid::new_v4();
    let secret = "bench-secret";
    let ids: Vec<uuid::Uuid> = (0..count).map(|_| uuid::Uuid::new_v4()).collect();
    let seeds = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut seed = consented_tenant(&format!("bench{i}"), *id, client_id, secret);
            seed.knobs = Knobs {
                latency_ms,
                ..Knobs::default()
            };
            seed
        })
        .collect();
    let sim = tenant_sim::start("127.0.0.1:0", seeds).await.expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret).expect("secret file");
    let backend = SqliteBackend::open(dir.path().join("bench.db")).expect("backend");
    let store: Arc<dyn Store> = Arc::new(backend.store().clone());
    let queue: Arc<dyn Queue> = Arc::new(backend.queue().clone());
    let registry = TenantRegistry::new(store.as_ref());
    for (i, id) in ids.iter().enumerate() {
        let tenant = Tenant {
            tenant_id: id.to_string().parse().unwrap(),
            domain: format!("bench{i}.onmicrosoft.com").parse().unwrap(),
            name: format!("bench{i}"),
            client_id: client_id.to_string(),
            credential: CredentialRef::File {
                path: secret_file.display().to_string(),
            },
            settings: TenantSettings::default(),
            added_at: chrono::Utc::now(),
        };
        registry.add(&tenant).await.expect("register");
    }
    let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
    let graph = GraphClient::new(GraphConfig::for_base(&base).unwrap()).unwrap();
    let deps = Deps::new(store, queue, graph);
    Setup {
        control: SimClient::new(sim.url()),
        deps,
        tenants: ids.iter().map(|i| i.to_string()).collect(),
        _sim: sim,
        _dir: dir,
    }
}

/// Enrolls every tenant and works until all runs finish; returns the wall time.
async fn run_all(setup: &Setup, settings: WorkerSettings) -> Duration {
    let started = Instant::now();
    let mut runs_ids = Vec::new();
    for t in &setup.tenants {
        let e = mdops_handlers::onboarding::enroll(&setup.deps, t, "bench")
            .await
            .expect("enroll");
        runs_ids.push(e.run_id().to_string());
    }
    let worker = Worker::new(setup.deps.clone(), settings);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(async move { worker.run(&[QueueName::Onboarding], stop_rx).await });
    let runs = Runs::new(setup.deps.store.as_ref(), setup.deps.runs);
    let deadline = Instant::now() + BENCH_TIMEOUT;
    loop {
        let mut running = 0;
        for id in &runs_ids {
            let view = runs.get(id).await.expect("read").expect("run");
            match view.status() {
                RunStatus::Running => running += 1,
                RunStatus::Failed => panic!(
                    "run {id} failed: {:?}",
                    view.steps.iter().filter(|s| s.last_error.is_some()).collect::<Vec<_>>()
                ),
                RunStatus::Succeeded => {}
            }
        }
        if running == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    stop_tx.send(true).unwrap();
    working.await.unwrap();
    took
}

/// Calls each step makes at least: what must be read to know whether to write, and the write.
fn lower_bound() -> (usize, usize) {
    let mut reads = 0;
    let mut writes = 0;
    for step in plan() {
        match step.kind {
            // Token, then the readiness check's reads on a fresh tenant: subscribedSkus,
            // organization, the service accounts, conditional access policies, device
            // configurations (no update ring, so no assignments), security defaults, authorization
            // policy.
            StepKind::Preflight => reads += 8,
            StepKind::MdmAuthority => {
                reads += 1;
                writes += 1
            }
            StepKind::Account(_)
            | StepKind::Group(_)
            | StepKind::UpdatePolicy(_)
            | StepKind::SecurityBaseline
            | StepKind::RoleMembership(..)
            | StepKind::RoleGroup(_)
            | StepKind::RoleGroupRole(..)
            | StepKind::GroupDescription(_)
            | StepKind::UpdatePolicyAssignment(_) => {
                reads += 1;
                writes += 1;
            }
            // One read of the role list; a fresh tenant activates every role but Global Administrator.
            StepKind::DirectoryRoles => {
                reads += 1;
                writes += mdops_core::onboarding::DirectoryRole::ALL.len();
            }
            StepKind::Inventory(_) => reads += 1,
            StepKind::Licences => {}
        }
    }
    (reads, writes)
}

/// Graph calls (with the token requests) of the slowest path through the DAG, as this
/// implementation makes them: the wall time a perfect scheduler needs is that times the latency.
fn critical_path_calls() -> usize {
    let calls = |k: &StepKind| match k {
        // Token, then the readiness reads sent together (device configurations then, with an
        // update ring, its assignments).
        StepKind::Preflight => 2,
        StepKind::MdmAuthority => 2,
        StepKind::Account(_) | StepKind::Group(_) | StepKind::GroupDescription(_) => 2,
        StepKind::DirectoryRoles => 1 + mdops_core::onboarding::DirectoryRole::ALL.len(),
        StepKind::RoleMembership(..) | StepKind::RoleGroup(_) | StepKind::RoleGroupRole(..) => 2,
        StepKind::UpdatePolicy(_) | StepKind::SecurityBaseline => 2,
        StepKind::UpdatePolicyAssignment(_) => 2,
        StepKind::Inventory(_) => 1,
        StepKind::Licences => 0,
    };
    let steps = plan();
    fn longest(
        kind: &StepKind,
        steps: &[mdops_core::onboarding::PlannedStep],
        calls: &dyn Fn(&StepKind) -> usize,
    ) -> usize {
        let deps = steps
            .iter()
            .find(|s| &s.kind == kind)
            .map(|s| s.deps.clone())
            .unwrap_or_default();
        calls(kind) + deps.iter().map(|d| longest(d, steps, calls)).max().unwrap_or(0)
    }
    steps
        .iter()
        .map(|s| longest(&s.kind, &steps, &calls))
        .max()
        .unwrap_or(0)
}

/// Request times (seconds) seen by one tenant: every request, identity writes, Intune writes.
type Times = (Vec<f64>, Vec<f64>, Vec<f64>);

fn max_in_window(times: &[f64], window: f64) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] > window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

fn seconds(entry: &RequestLogEntry) -> f64 {
    chrono::DateTime::parse_from_rfc3339(&entry.time)
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let latency = arg("--latency-ms", 50);
    let tenants = arg("--tenants", 100) as usize;
    let per_tenant = arg("--per-tenant", 16) as usize;
    let settings = WorkerSettings {
        concurrency: arg("--concurrency", 64) as usize,
        per_tenant,
        ..WorkerSettings::default()
    };
    println!(
        "onboarding benchmark: {latency} ms per Graph call, worker concurrency {}, per tenant {per_tenant}",
        settings.concurrency
    );

    // 1. One tenant.
    let one = setup(1, latency).await;
    let took = run_all(&one, settings).await;
    let log = one.control.requests(&RequestLogQuery::default()).await.expect("log");
    // The security baseline's two calls go to Graph beta.
    let graph_calls = log
        .iter()
        .filter(|r| r.path.starts_with("/v1.0") || r.path.starts_with("/beta"))
        .count();
    let beta_calls = log.iter().filter(|r| r.path.starts_with("/beta")).count();
    let token_calls = log.iter().filter(|r| r.path.contains("/oauth2/")).count();
    let (reads, writes) = lower_bound();
    let bound = reads + writes;
    let calls = graph_calls + token_calls;
    println!("\n[1] one fresh onboarding ({} steps)", plan().len());
    println!("    Graph calls      {calls} ({graph_calls} Graph, of which {beta_calls} beta, + {token_calls} token)");
    println!(
        "    lower bound      {bound} ({writes} writes + {reads} reads)  -> ratio {:.2}x (target <= 1.15x)",
        calls as f64 / bound as f64
    );
    let critical = critical_path_calls();
    let ideal = Duration::from_millis(critical as u64 * latency);
    println!("    wall time        {:.0} ms", took.as_secs_f64() * 1000.0);
    println!(
        "    critical path    {critical} calls x {latency} ms = {} ms  -> ratio {:.2}x (target <= 1.3x)",
        ideal.as_millis(),
        took.as_secs_f64() / ideal.as_secs_f64()
    );
    drop(one);

    // 2. Many tenants at once.
    let rss_before = peak_rss_mib();
    let many = setup(tenants, latency).await;
    let took = run_all(&many, settings).await;
    let steps = tenants * plan().len();
    let log = many.control.requests(&RequestLogQuery::default()).await.expect("log");
    let mut per_tenant_times: BTreeMap<String, Times> = BTreeMap::new();
    for r in log
        .iter()
        .filter(|r| r.path.starts_with("/v1.0") || r.path.starts_with("/beta"))
    {
        let Some(t) = r.tenant.clone() else { continue };
        let e = per_tenant_times.entry(t).or_default();
        let at = seconds(r);
        e.0.push(at);
        if r.method != "GET" {
            if r.path.contains("deviceManagement") {
                e.2.push(at);
            } else {
                e.1.push(at);
            }
        }
    }
    let (mut max_1s, mut max_id_150, mut max_intune_20) = (0, 0, 0);
    for (all, identity, intune) in per_tenant_times.values_mut() {
        for v in [&mut *all, &mut *identity, &mut *intune] {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        }
        max_1s = max_1s.max(max_in_window(all, 1.0));
        max_id_150 = max_id_150.max(max_in_window(identity, 150.0));
        max_intune_20 = max_intune_20.max(max_in_window(intune, 20.0));
    }
    println!("\n[2] {tenants} tenants enrolled at once on one embedded worker");
    println!("    time to finish   {:.1} s", took.as_secs_f64());
    println!(
        "    steps            {steps} -> {:.0} steps/s",
        steps as f64 / took.as_secs_f64()
    );
    println!("    Graph requests   {}", log.len());
    println!(
        "    peak RSS         {:.0} MiB (process incl. the in-process simulator; {:.0} MiB before)",
        peak_rss_mib(),
        rss_before
    );
    println!(
        "    busiest tenant   {max_1s} requests in one second; {max_id_150} identity writes in 150 s (quota 3000); {max_intune_20} Intune writes in 20 s (quota 100)"
    );
}
