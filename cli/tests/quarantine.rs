//! A due record that no longer decodes does not stop the worker's timers: it is quarantined with
//! its reason, `mdops status` shows it, and the good timers behind it still fire.

use std::process::{Command, Stdio};
use std::time::Duration;

use mdops_core::onboarding::runs::{RunSettings, Runs, STEP_DEADLINE_KIND};
use mdops_core::store::{Condition, DueEntry, Key, NewRecord, put_if};
use mdops_local::SqliteBackend;

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_no_longer_decodes_is_quarantined_and_shown_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mdops.db");
    let backend = SqliteBackend::open(&db).unwrap();
    let store = backend.store();
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let bad = Key::new("run#old.1", "step#from-the-future");
    put_if(
        store,
        NewRecord {
            key: bad.clone(),
            body: serde_json::json!({"status": "teleporting"}),
            collection: None,
            due: Some(DueEntry {
                kind: STEP_DEADLINE_KIND.into(),
                at: long_ago,
            }),
        },
        Condition::Absent,
    )
    .await
    .unwrap();
    // A good run whose root step's message was lost: its deadline is behind the bad record's.
    let tenant = "aaaaaaaa-2222-3333-4444-555555555555".parse().unwrap();
    let runs = Runs::new(store, RunSettings::default());
    runs.enroll(&tenant, &mdops_core::onboarding::plan(), "test", long_ago)
        .await
        .unwrap();

    let mut worker = Command::new(MDOPS)
        .arg("--db")
        .arg(&db)
        .args(["--sim-url", "http://127.0.0.1:9/", "worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let quarantined = loop {
        let q = mdops_core::quarantine::list(store, 10).await.unwrap();
        if !q.is_empty() || tokio::time::Instant::now() > deadline {
            break q;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].key, bad);
    let step = runs.get(&format!("{tenant}.1")).await.unwrap().unwrap();
    let preflight = step.step("preflight").unwrap();
    assert!(
        preflight.attempts >= 1,
        "the good deadline behind the bad record fired: its step was re-sent and started: {preflight:?}"
    );

    let out = Command::new(MDOPS).arg("--db").arg(&db).arg("status").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("quarantined records (1)"), "{text}");
    assert!(text.contains("run#old.1/step#from-the-future"), "{text}");
    assert!(text.contains("unknown variant"), "the reason is shown: {text}");
}
