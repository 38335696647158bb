//! `mdops rings` and `mdops apps` end to end: the binary against the simulated tenant on the
//! embedded store, with `mdops worker` (a child process) applying the queued work. Rings: show,
//! a dry run, sync, move (audited) and a bad ring refused naming the flag. Apps: the default
//! catalogue printed, a bad catalogue file refused naming the field, a good one stored, show,
//! sync, every app assigned, a second sync with nothing to do.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::Value;
use tenant_sim::seeds::{AppSeed, GroupSeed, PRODUCT_PERMISSIONS, TenantSeed, windows_devices};

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");
/// Longest the worker may take to apply what a sync queued.
const APPLY_WITHIN: Duration = Duration::from_secs(90);
const WINDOWS: usize = 30;

struct Cli {
    db: std::path::PathBuf,
    sim: String,
    secret: String,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(MDOPS);
        c.arg("--db")
            .arg(&self.db)
            .arg("--sim-url")
            .arg(format!("{}/", self.sim))
            .args(args)
            .env("MDOPS_TEST_APP_SECRET", &self.secret);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run mdops")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mdops {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("mdops {args:?}: {e}\n{text}"))
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "mdops {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn worker(&self) -> Worker {
        Worker(
            self.command(&["worker"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mdops worker"),
        )
    }
}

/// The worker child process, stopped when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` until it holds or [`APPLY_WITHIN`] passes.
fn wait_for(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + APPLY_WITHIN;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rings_and_apps_are_shown_synced_and_moved_through_the_cli() {
    let secret = format!("S3cr3t-{}", uuid::Uuid::new_v4());
    let client_id = uuid::Uuid::new_v4();
    let tenant_id = uuid::Uuid::new_v4();
    let mut seed = TenantSeed::new("northwind");
    seed.id = Some(tenant_id);
    seed.apps.push(AppSeed {
        client_id,
        display_name: None,
        secret: Some(SecretString::from(secret.clone())),
        certificates: Vec::new(),
        permissions: PRODUCT_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
    });
    seed.objects.devices = windows_devices("PC", WINDOWS);
    seed.objects.groups = mdops_core::tenant::Ring::ALL
        .iter()
        .map(|r| GroupSeed::security(r.display_name()))
        .collect();
    let sim = tenant_sim::start("127.0.0.1:0", vec![seed]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        db: dir.path().join("mdops.db"),
        sim: sim.url().to_string(),
        secret,
    };
    let tid = tenant_id.to_string();
    cli.ok(&[
        "tenants",
        "add",
        "--tenant-id",
        &tid,
        "--domain",
        "northwind.onmicrosoft.com",
        "--client-id",
        &client_id.to_string(),
        "--credential",
        "env:MDOPS_TEST_APP_SECRET",
    ]);

    // Rings: every device in no ring; a dry run sends nothing; a sync queues the chunks.
    let shown = cli.json(&["rings", "show", "--tenant", &tid, "--json"]);
    assert_eq!(shown["windows_devices"], WINDOWS);
    assert_eq!(shown["unplaced"].as_array().unwrap().len(), WINDOWS);
    let dry = cli.ok(&["rings", "sync", "--tenant", &tid, "--dry-run"]);
    assert!(
        dry.contains(&format!("{WINDOWS} in no ring")) && dry.contains("dry run: nothing sent"),
        "{dry}"
    );
    let synced = cli.json(&["rings", "sync", "--tenant", &tid, "--json"]);
    assert!(synced["messages"].as_u64().unwrap() >= 1, "{synced}");

    // Apps: the default catalogue; a bad file refused naming the field; a good one stored.
    let default: Value = cli.json(&["apps", "catalogue", "--tenant", &tid]);
    assert!(default["apps"].as_array().unwrap().len() >= 2, "{default}");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"apps": [{"key": "wiki", "display_name": "Wiki", "publisher": "Northwind", "kind": "web",
            "app_url": "http://wiki.example", "intent": "available", "rings": ["broad"]}]}"#,
    )
    .unwrap();
    let refused = cli.fails(&["apps", "catalogue", "--tenant", &tid, "--file", bad.to_str().unwrap()]);
    assert!(
        refused.contains("apps[0].app_url") && refused.contains("https://"),
        "{refused}"
    );
    let good = dir.path().join("catalogue.json");
    std::fs::write(
        &good,
        r#"{"apps": [
            {"key": "wiki", "display_name": "Wiki", "publisher": "Northwind", "kind": "web",
             "app_url": "https://wiki.northwind.example", "intent": "available", "rings": ["first", "broad"]},
            {"key": "company-portal", "display_name": "Company Portal", "publisher": "Microsoft Corporation",
             "kind": "winget", "package_identifier": "9WZDNCRFJ3PZ", "run_as": "user", "intent": "required",
             "rings": ["test", "first", "fast", "broad"]}
        ]}"#,
    )
    .unwrap();
    let stored = cli.ok(&["apps", "catalogue", "--tenant", &tid, "--file", good.to_str().unwrap()]);
    assert!(stored.contains("catalogue of 2 apps stored"), "{stored}");
    let apps = cli.json(&["apps", "show", "--tenant", &tid, "--json"]);
    assert_eq!(apps["catalogue"], "tenant");
    assert!(
        apps["apps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "missing"),
        "{apps}"
    );
    let queued = cli.ok(&["apps", "sync", "--tenant", &tid]);
    assert!(queued.contains("queued 2 app messages"), "{queued}");

    // The worker applies both.
    let _worker = cli.worker();
    let placed = wait_for(|| {
        let shown = cli.json(&["rings", "show", "--tenant", &tid, "--json"]);
        shown["unplaced"].as_array().is_some_and(|u| u.is_empty())
    });
    assert!(placed, "the ring chunks were not applied");
    let assigned = wait_for(|| {
        let apps = cli.json(&["apps", "show", "--tenant", &tid, "--json"]);
        apps["apps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "assigned")
    });
    assert!(assigned, "{}", cli.ok(&["apps", "show", "--tenant", &tid]));
    let table = cli.ok(&["apps", "show", "--tenant", &tid]);
    assert!(
        table.contains("wiki") && table.contains("assigned") && table.contains("broad available"),
        "{table}"
    );
    let again = cli.ok(&["apps", "sync", "--tenant", &tid]);
    assert!(again.contains("nothing to do"), "{again}");
    let again = cli.ok(&["rings", "sync", "--tenant", &tid]);
    assert!(again.contains("nothing to do"), "{again}");

    // Move one device into Test: audited, and show agrees; a bad ring is refused naming the flag.
    let device = shown["unplaced"][0].as_str().unwrap().to_string();
    let moved = cli.ok(&["rings", "move", "--tenant", &tid, "--device", &device, "--ring", "test"]);
    assert!(
        moved.contains("moved") && moved.contains("to test (audited)"),
        "{moved}"
    );
    let after = cli.json(&["rings", "show", "--tenant", &tid, "--json"]);
    let test = after["rings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ring"] == "test")
        .unwrap();
    assert_eq!(test["devices"], 1, "{after}");
    let refused = cli.fails(&["rings", "move", "--tenant", &tid, "--device", &device, "--ring", "slow"]);
    assert!(
        refused.contains("--ring") && refused.contains("unknown ring"),
        "{refused}"
    );
    sim.shutdown().await;
}
