//! `mdops tenants check --readiness` as a process against `mdops sim` (also a process, seeded from a
//! file): a clean tenant passes every check and exits 0; a tenant with security defaults on, guest
//! invitations off, an update ring on all devices, users mdops did not make holding service
//! accounts' names (a warning) and an MFA-for-everyone policy over them gets one fail per problem, each saying what to do, in the table and in
//! `--json`, and exits 1; the simulator's request log shows the check only read.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use secrecy::SecretString;
use tenant_sim::SimClient;
use tenant_sim::seeds::{
    AppSeed, ConditionalAccessPolicySeed, DeviceConfigurationSeed, PRODUCT_PERMISSIONS, SkuSeed, TenantSeed, UserSeed,
};
use tenant_sim::store::RequestLogQuery;

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");

/// `mdops sim`, killed (by its own handle) when the test ends.
struct Sim {
    child: Child,
    url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(seed_file: &std::path::Path) -> Sim {
    let mut child = Command::new(MDOPS)
        .args(["sim", "--listen", "127.0.0.1:0", "--tenants"])
        .arg(seed_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mdops sim");
    // The bound URL is the first line it prints.
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the URL");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    Sim { child, url }
}

fn tenant(name: &str, id: uuid::Uuid, client_id: uuid::Uuid, secret: &str) -> TenantSeed {
    let mut seed = TenantSeed::new(name);
    seed.id = Some(id);
    seed.apps.push(AppSeed {
        client_id,
        display_name: None,
        secret: Some(SecretString::from(secret.to_string())),
        certificates: Vec::new(),
        permissions: PRODUCT_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
    });
    seed.objects.skus.push(SkuSeed::new("SPE_E5", 25));
    seed
}

fn mdops(db: &std::path::Path, sim: &str, secret: &str, args: &[&str]) -> Output {
    Command::new(MDOPS)
        .arg("--db")
        .arg(db)
        .arg("--sim-url")
        .arg(format!("{sim}/"))
        .args(args)
        .env("MDOPS_TEST_APP_SECRET", secret)
        .output()
        .expect("run mdops")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_passes_a_clean_tenant_and_fails_a_blocked_one_with_what_to_do_reading_only() {
    let secret = format!("S3cr3t-{}", uuid::Uuid::new_v4());
    let client_id = uuid::Uuid::new_v4();
    let (clean_id, blocked_id) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let clean = tenant("clean", clean_id, client_id, &secret);
    let mut blocked = tenant("blocked", blocked_id, client_id, &secret);
    blocked.identity_policies.security_defaults_enabled = true;
    blocked.identity_policies.allow_invites_from = "none".into();
    blocked.objects.device_configurations = vec![DeviceConfigurationSeed {
        display_name: "Blocked Windows updates".into(),
        odata_type: None,
        assigned_to_all_devices: true,
        assigned_to_all_users: false,
    }];
    blocked.objects.conditional_access_policies = vec![ConditionalAccessPolicySeed::mfa_for_all_users("Require MFA")];
    // Users with service accounts' names exist (not made by mdops: no marker), so the policy
    // blocks real accounts and the service-accounts check warns.
    for nickname in ["mw-automation", "mw-defender-automation", "mw-admin"] {
        blocked.objects.users.push(UserSeed::member(nickname, Some("US")));
    }

    let dir = tempfile::tempdir().unwrap();
    let seed_file = dir.path().join("tenants.json");
    std::fs::write(&seed_file, serde_json::to_vec(&vec![clean, blocked]).unwrap()).unwrap();
    let sim = start_sim(&seed_file);
    let db = dir.path().join("mdops.db");
    let run = |args: &[&str]| mdops(&db, &sim.url, &secret, args);
    for (id, name) in [(clean_id, "clean"), (blocked_id, "blocked")] {
        let out = run(&[
            "tenants",
            "add",
            "--tenant-id",
            &id.to_string(),
            "--domain",
            &format!("{name}.onmicrosoft.com"),
            "--client-id",
            &client_id.to_string(),
            "--credential",
            "env:MDOPS_TEST_APP_SECRET",
            "--set",
            "account_prefix=mw",
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let control = SimClient::new(&sim.url);
    control.clear_requests().await.unwrap();

    // Clean: every check passes, exit 0.
    let out = run(&["tenants", "check", "--tenant-id", &clean_id.to_string(), "--readiness"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 fail(s), 0 warning(s), 9 pass(es)"), "{stdout}");
    for check in [
        "permissions",
        "intune-licence",
        "conditional-access",
        "guest-invitations",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(check) && l.contains(" pass ")),
            "{check}: {stdout}"
        );
    }

    // Blocked: a fail per problem, what to do, exit 1, and the same in JSON.
    let out = run(&[
        "tenants",
        "check",
        "--tenant-id",
        &blocked_id.to_string(),
        "--readiness",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("is not ready for onboarding: 4 check(s) failed"),
        "{stderr}"
    );
    for check in [
        "conditional-access",
        "update-rings",
        "security-defaults",
        "guest-invitations",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(check) && l.contains("FAIL")),
            "{check}: {stdout}"
        );
    }
    assert!(
        stdout.contains("to do:") && stdout.contains("Blocked Windows updates"),
        "{stdout}"
    );

    let out = run(&[
        "tenants",
        "check",
        "--tenant-id",
        &blocked_id.to_string(),
        "--readiness",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    let fails: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verdict"] == "fail")
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        fails,
        [
            "conditional-access",
            "update-rings",
            "security-defaults",
            "guest-invitations"
        ],
        "{report:#}"
    );
    let ca = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "conditional-access")
        .unwrap();
    let summary = ca["summary"].as_str().unwrap();
    assert!(
        summary.contains("mw-automation@blocked.onmicrosoft.com") && !summary.contains("mw-admin@"),
        "names the blocked accounts, not the one that can answer MFA: {summary}"
    );
    assert!(ca["action"].as_str().unwrap().contains("exclude"), "{ca}");

    // The check only read.
    let log = control.requests(&RequestLogQuery::default()).await.unwrap();
    let graph: Vec<_> = log.iter().filter(|r| r.path.starts_with("/v1.0")).collect();
    assert!(
        graph.iter().any(|r| r.path.contains("conditionalAccess")),
        "read the policies"
    );
    let writes: Vec<String> = graph
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "readiness wrote: {writes:?}");
}
