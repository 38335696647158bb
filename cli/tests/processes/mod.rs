//! Running the `mdops` binary from process-level tests (kill tests, the chaos suite).
#![allow(dead_code)]

use std::process::{Command, Stdio};

pub const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");

/// `mdops` over the embedded database `db` and the simulator at `sim`, with a step lease and grace
/// short enough that a killed holder's step is taken over within seconds.
pub fn mdops(db: &std::path::Path, sim: &str, lease_secs: u64, grace_secs: u64) -> Command {
    mdops_on(&["--db".into(), db.display().to_string()], sim, lease_secs, grace_secs)
}

/// Like [`mdops`], on the backend `backend_flags` select (`--db PATH`, `--backend aws ...`).
pub fn mdops_on(backend_flags: &[String], sim: &str, lease_secs: u64, grace_secs: u64) -> Command {
    let mut c = Command::new(MDOPS);
    c.args(backend_flags).arg("--sim-url").arg(format!("{sim}/"));
    c.arg("--step-lease-secs").arg(lease_secs.to_string());
    c.arg("--step-grace-secs").arg(grace_secs.to_string());
    c.args(["--lag-window-secs", "2"]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Runs a command to its end; fails the test with its output unless it succeeded.
pub fn run_ok(mut c: Command) {
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
