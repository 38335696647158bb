//! The chaos suite on the embedded worker (the scenario is `chaos_common`'s): tenants onboard
//! while the simulated tenant injects 10 % 429, 5 % 5xx, 2 % timeouts, 1 % resets and 2 % committed-then-dropped writes; every message
//! is delivered twice (`mdops worker --duplicate-deliveries`); the worker is SIGKILLed every few
//! seconds and restarted; temporary access is approved, revoked early and expires meanwhile. At the
//! end the figures are taken from the simulator's own object store and request log and asserted.
//!
//! CI runs it small (2 tenants). `scripts/chaos` runs it larger and prints the figures:
//! `CHAOS_TENANTS` (2), `CHAOS_SEED` (1), `CHAOS_DEADLINE_SECS` (420).

mod chaos_common;
mod processes;

use std::time::Duration;

use chaos_common::{ChaosBackend, ChaosPlan, env_num};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nothing_duplicated_lost_or_left_elevated() {
    let dir = tempfile::tempdir().unwrap();
    let plan = ChaosPlan {
        tenants: env_num("CHAOS_TENANTS", 2) as usize,
        seed: env_num("CHAOS_SEED", 1),
        deadline: Duration::from_secs(env_num("CHAOS_DEADLINE_SECS", 420)),
        kill_after_ms: 3_000..6_000,
    };
    chaos_common::run(ChaosBackend::sqlite(dir.path()), plan).await;
}
