//! Named points where a test can make the process die on the spot, as a `SIGKILL` would: set
//! `MDOPS_CRASH_AT=<name>` in a process's environment and the first time it reaches that point it
//! aborts (no destructors, no flush, nothing recorded). Used by the kill tests to stop a worker
//! *exactly* between a Graph write and recording it, or between a decision and its side effects.
//! Unset (always, outside those tests) a point costs one read of a cached value.

use std::sync::OnceLock;

/// The environment variable naming the point to die at.
pub const CRASH_AT_ENV: &str = "MDOPS_CRASH_AT";

/// After a step's Graph write succeeded, before its outcome is recorded.
pub const STEP_WRITTEN: &str = "step-written-not-recorded";
/// After an access decision (with its outbox) is committed, before its side effects are queued.
pub const ACCESS_DECIDED: &str = "access-decided-not-queued";
/// After the guest was added to the role group, before the elevation is recorded.
pub const ACCESS_ELEVATED: &str = "access-elevated-not-recorded";

/// Dies here if `MDOPS_CRASH_AT` names this point.
pub fn reached(name: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var(CRASH_AT_ENV).ok()).as_deref() == Some(name) {
        eprintln!("{CRASH_AT_ENV}={name}: aborting here, as a kill would");
        std::process::abort();
    }
}
