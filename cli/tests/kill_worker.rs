//! The worker process killed with SIGKILL at random points and restarted: the onboarding run
//! completes with nothing lost and nothing created twice.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mdops_core::onboarding::runs::{RunSettings, RunStatus, Runs};
use mdops_core::queue::{Queue, QueueName};
use mdops_local::SqliteBackend;
use rand::Rng;
use tenant_sim::SimClient;
use tenant_sim::knobs::Knobs;
use tenant_sim::seeds::consented_tenant;

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");
/// Kill-and-restart rounds before the last worker is left to finish.
const KILLS: usize = 6;
/// Longest the final worker may take.
const FINISH_WITHIN: Duration = Duration::from_secs(120);

fn mdops(db: &std::path::Path, sim: &str) -> Command {
    let mut c = Command::new(MDOPS);
    c.arg("--db").arg(db).arg("--sim-url").arg(format!("{sim}/"));
    // Short leases so a killed holder's step is taken over within seconds.
    c.args([
        "--step-lease-secs",
        "3",
        "--step-grace-secs",
        "2",
        "--lag-window-secs",
        "2",
    ]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

fn run_ok(mut c: Command) {
    let out = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run mdops");
    assert!(
        out.status.success(),
        "mdops failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn worker(db: &std::path::Path, sim: &str) -> Child {
    let mut c = mdops(db, sim);
    c.args(["worker", "--visibility-secs", "4"]);
    if let Ok(log) = std::env::var("MDOPS_TEST_WORKER_LOG") {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        c.stderr(f).env("MDOPS_LOG", "mdops_handlers=info,mdops_graph=info");
    }
    c.spawn().expect("start worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_random_points_loses_and_doubles_nothing() {
    let tenant_id = uuid::Uuid::new_v4();
    let client_id = uuid::Uuid::new_v4();
    let secret = format!("kill-test-{}", uuid::Uuid::new_v4());
    let mut seed = consented_tenant("northwind", tenant_id, client_id, &secret);
    seed.knobs = Knobs {
        latency_ms: 40,
        replication_lag_ms: 300,
        ..Knobs::default()
    };
    let sim = tenant_sim::start("127.0.0.1:0", vec![seed]).await.unwrap();
    let control = SimClient::new(sim.url());
    let before = control.counts(&tenant_id.to_string()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mdops.db");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let mut add = mdops(&db, sim.url());
    add.args([
        "tenants",
        "add",
        "--tenant-id",
        &tenant_id.to_string(),
        "--domain",
        "northwind.onmicrosoft.com",
    ]);
    add.args([
        "--client-id",
        &client_id.to_string(),
        "--credential",
        &format!("file:{}", secret_file.display()),
    ]);
    run_ok(add);
    let mut enroll = mdops(&db, sim.url());
    enroll.args(["enroll", "--tenant-id", &tenant_id.to_string()]);
    run_ok(enroll);

    let backend = SqliteBackend::open(&db).unwrap();
    let runs = Runs::new(backend.store(), RunSettings::default());
    let run_id = format!("{tenant_id}.1");
    let mut rng = rand::thread_rng();
    for _ in 0..KILLS {
        let mut child = worker(&db, sim.url());
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..900))).await;
        child.kill().expect("SIGKILL the worker");
        child.wait().unwrap();
    }
    let mid = runs.get(&run_id).await.unwrap().unwrap();
    assert_eq!(
        mid.status(),
        RunStatus::Running,
        "the kills landed before the end (else the test proves nothing)"
    );

    let mut last = worker(&db, sim.url());
    let deadline = tokio::time::Instant::now() + FINISH_WITHIN;
    let view = loop {
        let view = runs.get(&run_id).await.unwrap().unwrap();
        if view.status() != RunStatus::Running || tokio::time::Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    last.kill().unwrap();
    last.wait().unwrap();
    assert_eq!(view.status(), RunStatus::Succeeded, "{:#?}", view.steps);

    let after = control.counts(&tenant_id.to_string()).await.unwrap();
    let grew = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    for (kind, n) in [
        ("users", 6),
        ("groups", 4),
        ("deviceConfigurations", 5),
        ("assignments", 4),
        ("memberships", 8),
    ] {
        assert_eq!(grew(kind), n, "{kind}: {before:?} -> {after:?}");
    }
    let dead = backend.queue().dead_letters(QueueName::Onboarding, 100).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
}
