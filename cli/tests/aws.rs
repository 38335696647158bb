//! `mdops aws setup` / `teardown` against the AWS emulator: created, then found; the environment
//! a function needs; deleted, then absent. And an empty account gives one clear line, not an SDK
//! dump.

use std::process::{Command, Output};

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");

fn mdops(args: &[&str]) -> Output {
    Command::new(MDOPS)
        .envs(mdops_aws::emulator::child_env())
        .env_remove("RUST_BACKTRACE")
        .args(args)
        .output()
        .expect("run mdops")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "mdops failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn states(report: &str) -> Vec<(String, String)> {
    report
        .lines()
        .filter(|l| l.starts_with("queue") || l.starts_with("table"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[1].to_string(), cols[2].to_string())
        })
        .collect()
}

#[test]
fn setup_creates_then_finds_and_teardown_deletes_then_finds_nothing() {
    let prefix = mdops_aws::emulator::unique_prefix();
    let first = stdout(&mdops(&["aws", "setup", "--prefix", &prefix, "--env"]));
    let created = states(&first);
    assert_eq!(created.len(), 7, "six queues and the table: {first}");
    assert!(created.iter().all(|(s, _)| s == "created"), "{first}");
    assert!(first.contains(&format!("MDOPS_TABLE={prefix}-state")), "{first}");
    for var in [
        "MDOPS_ONBOARDING_QUEUE_URL=",
        "MDOPS_LICENCES_DLQ_URL=",
        "MDOPS_ACCESS_QUEUE_URL=",
    ] {
        assert!(first.contains(var), "{var} in {first}");
    }
    let second = stdout(&mdops(&["aws", "setup", "--prefix", &prefix]));
    assert!(states(&second).iter().all(|(s, _)| s == "exists"), "{second}");

    // The CLI works against what setup made.
    let listed = stdout(&mdops(&[
        "--backend",
        "aws",
        "--aws-prefix",
        &prefix,
        "tenants",
        "list",
    ]));
    assert!(!listed.contains("error"), "{listed}");

    let refused = mdops(&["aws", "teardown", "--prefix", &prefix]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let gone = stdout(&mdops(&["aws", "teardown", "--prefix", &prefix, "--yes"]));
    assert!(states(&gone).iter().all(|(s, _)| s == "deleted"), "{gone}");
    let again = stdout(&mdops(&["aws", "teardown", "--prefix", &prefix, "--yes"]));
    assert!(states(&again).iter().all(|(s, _)| s == "absent"), "{again}");
}

#[test]
fn an_account_without_the_resources_gets_one_line_saying_what_to_do() {
    let prefix = mdops_aws::emulator::unique_prefix();
    let out = mdops(&["--backend", "aws", "--aws-prefix", &prefix, "tenants", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(
        line.contains(&format!("{prefix}-onboarding")),
        "names the resource: {line}"
    );
    assert!(line.contains("mdops aws setup"), "says what to do: {line}");
    for dump in ["DispatchFailure", "ServiceError {", "Backtrace", "Caused by"] {
        assert!(!line.contains(dump), "no SDK dump ({dump}): {line}");
    }
    // With -v the whole chain is there for whoever asked.
    let verbose = mdops(&["-v", "--backend", "aws", "--aws-prefix", &prefix, "tenants", "list"]);
    assert!(String::from_utf8_lossy(&verbose.stderr).lines().count() > 1);
}
