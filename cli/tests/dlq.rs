//! `mdops dlq` and `mdops status` on the embedded backend (SQLite), against the simulated tenant:
//! the operators' story (see `dlq_common`), and a replay killed half-way and run again.

mod dlq_common;

use std::sync::Arc;
use std::time::Duration;

use dlq_common::{Backend, Scenario, db_path, killed_replay_story, operators_story, temp_dir};
use mdops_local::SqliteBackend;

fn embedded(dir: &tempfile::TempDir) -> Backend {
    let db = db_path(dir);
    let backend = SqliteBackend::open(&db).expect("open database");
    Backend {
        flags: vec![
            "--backend".into(),
            "embedded".into(),
            "--db".into(),
            db.display().to_string(),
        ],
        env: Vec::new(),
        queue: Arc::new(backend.queue().clone()),
        store: Arc::new(backend.store().clone()),
        settle: Duration::ZERO,
        // SQLite hides nothing from a listing.
        peek_hides: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_filter_and_replay_real_failures_on_the_embedded_backend() {
    let dir = temp_dir();
    let backend = embedded(&dir);
    operators_story(Scenario::start(backend, dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_half_way_and_run_again_leaves_exactly_one_copy_of_each() {
    let dir = temp_dir();
    killed_replay_story(embedded(&dir)).await;
}
