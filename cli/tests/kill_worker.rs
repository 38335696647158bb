//! The worker process killed with SIGKILL at random points, or made to die exactly between a
//! Graph write and recording it (`MDOPS_CRASH_AT`), and restarted: the onboarding run completes
//! with nothing lost and nothing created twice.

use std::process::{Child, Command};
use std::time::Duration;

use mdops_core::onboarding::runs::{RunSettings, RunStatus, Runs};
use mdops_core::queue::{Queue, QueueName};
use mdops_local::SqliteBackend;
use rand::Rng;
use tenant_sim::SimClient;
use tenant_sim::knobs::Knobs;
use tenant_sim::seeds::consented_tenant;

mod processes;

use processes::run_ok;
/// Kill-and-restart rounds before the last worker is left to finish.
const KILLS: usize = 6;
/// Longest the final worker may take.
const FINISH_WITHIN: Duration = Duration::from_secs(120);

fn mdops(db: &std::path::Path, sim: &str) -> Command {
    processes::mdops(db, sim, 3, 2)
}

fn worker(db: &std::path::Path, sim: &str) -> Child {
    worker_crashing_at(db, sim, None)
}

/// A worker that aborts the first time it reaches the named crash point (`MDOPS_CRASH_AT`).
fn worker_crashing_at(db: &std::path::Path, sim: &str, crash_at: Option<&str>) -> Child {
    let mut c = mdops(db, sim);
    if let Some(point) = crash_at {
        c.env(mdops_core::crash_point::CRASH_AT_ENV, point);
    }
    c.args(["worker", "--visibility-secs", "4"]);
    if let Ok(log) = std::env::var("MDOPS_TEST_WORKER_LOG") {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        c.stderr(f).env("MDOPS_LOG", "mdops_handlers=info,mdops_graph=info");
    }
    c.spawn().expect("start worker")
}

/// A simulated tenant registered and enrolled in a fresh embedded backend.
struct Enrolled {
    sim: tenant_sim::RunningSim,
    control: SimClient,
    tenant_id: uuid::Uuid,
    before: std::collections::BTreeMap<String, usize>,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn enrolled() -> Enrolled {
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
    Enrolled {
        sim,
        control,
        tenant_id,
        before,
        db,
        _dir: dir,
    }
}

/// Works the run with a fresh worker until it leaves `running`; then checks nothing was made twice
/// and nothing is dead-lettered.
async fn finish_and_count(e: &Enrolled) {
    let (db, sim, control, tenant_id, before) = (&e.db, &e.sim, &e.control, e.tenant_id, &e.before);
    let backend = SqliteBackend::open(db).unwrap();
    let runs = Runs::new(backend.store(), RunSettings::default());
    let run_id = format!("{tenant_id}.1");
    let mut last = worker(db, sim.url());
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
        // The four ring groups and the two role groups.
        ("groups", 6),
        ("deviceConfigurations", 4),
        ("intents", 1),
        ("assignments", 4),
        // Eight service-account role memberships, three roles carried by the role groups.
        ("memberships", 11),
    ] {
        assert_eq!(grew(kind), n, "{kind}: {before:?} -> {after:?}");
    }
    let dead = backend.queue().dead_letters(QueueName::Onboarding, 100).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_a_graph_write_and_recording_it_makes_nothing_twice() {
    let e = enrolled().await;
    let backend = SqliteBackend::open(&e.db).unwrap();
    let runs = Runs::new(backend.store(), RunSettings::default());
    let run_id = format!("{}.1", e.tenant_id);
    let mut crashes = 0;
    for _ in 0..KILLS {
        let mut child = worker_crashing_at(&e.db, e.sim.url(), Some(mdops_core::crash_point::STEP_WRITTEN));
        // It dies by itself right after its first successful write, before recording it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let died = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match died {
            Some(status) => {
                assert!(!status.success(), "it aborted at the crash point");
                crashes += 1;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
        if runs.get(&run_id).await.unwrap().unwrap().status() != RunStatus::Running {
            break;
        }
    }
    assert!(
        crashes >= 3,
        "the worker died between a write and its record {crashes} times"
    );
    finish_and_count(&e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_random_points_loses_and_doubles_nothing() {
    let e = enrolled().await;
    let (db, sim) = (&e.db, &e.sim);
    let backend = SqliteBackend::open(db).unwrap();
    let runs = Runs::new(backend.store(), RunSettings::default());
    let run_id = format!("{}.1", e.tenant_id);
    let mut rng = rand::thread_rng();
    for _ in 0..KILLS {
        let mut child = worker(db, sim.url());
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

    finish_and_count(&e).await;
}
