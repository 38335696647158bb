//! `mdops tenants` end to end: the binary against the simulated tenant, on the embedded store and
//! on DynamoDB through the AWS emulator.

use std::process::{Command, Output};

use secrecy::SecretString;
use tenant_sim::seeds::{AppSeed, PRODUCT_PERMISSIONS, TenantSeed};

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");

struct Cli {
    db: std::path::PathBuf,
    /// Extra global flags and environment (`--backend aws ...` and the emulator's variables).
    backend: Vec<String>,
    env: Vec<(&'static str, String)>,
    sim: String,
    secret_var: (&'static str, String),
    /// Everything every command printed, to search for secrets.
    seen: std::cell::RefCell<String>,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(MDOPS)
            .arg("--db")
            .arg(&self.db)
            .arg("--sim-url")
            .arg(format!("{}/", self.sim))
            .args(&self.backend)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args)
            .env(self.secret_var.0, &self.secret_var.1)
            .env("MDOPS_LOG", "trace")
            .output()
            .expect("run mdops");
        let mut seen = self.seen.borrow_mut();
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
        out
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
}

fn app(client_id: uuid::Uuid, secret: &str, permissions: &[&str]) -> AppSeed {
    AppSeed {
        client_id,
        display_name: None,
        secret: Some(SecretString::from(secret.to_string())),
        certificates: Vec::new(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_added_listed_shown_checked_and_removed_and_no_secret_is_ever_printed() {
    tenants_lifecycle(Vec::new(), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_dynamodb_through_the_emulator() {
    let sdk = mdops_aws::emulator::sdk_config().await;
    let prefix = mdops_aws::emulator::unique_prefix();
    let names = mdops_aws::ResourceNames::new(prefix.clone()).unwrap();
    mdops_aws::ensure_resources(&sdk, &names, Default::default())
        .await
        .expect("create the table and queues");
    let backend = vec!["--backend".into(), "aws".into(), "--aws-prefix".into(), prefix];
    tenants_lifecycle(backend, mdops_aws::emulator::child_env()).await;
}

async fn tenants_lifecycle(backend: Vec<String>, env: Vec<(&'static str, String)>) {
    let secret = format!("S3cr3t-{}", uuid::Uuid::new_v4());
    let client_id = uuid::Uuid::new_v4();
    let (consented, unconsented, partial) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let mut seeds = Vec::new();
    for (id, name, perms) in [
        (consented, "consented", PRODUCT_PERMISSIONS.to_vec()),
        (unconsented, "unconsented", vec![]),
        (partial, "partial", vec!["User.ReadWrite.All", "Group.ReadWrite.All"]),
    ] {
        let mut seed = TenantSeed::new(name);
        seed.id = Some(id);
        seed.apps.push(app(client_id, &secret, &perms));
        seeds.push(seed);
    }
    let sim = tenant_sim::start("127.0.0.1:0", seeds).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        db: dir.path().join("mdops.db"),
        backend,
        env,
        sim: sim.url().to_string(),
        secret_var: ("MDOPS_TEST_APP_SECRET", secret.clone()),
        seen: Default::default(),
    };
    let client = client_id.to_string();
    for (id, name) in [
        (consented, "consented"),
        (unconsented, "unconsented"),
        (partial, "partial"),
    ] {
        let domain = format!("{name}.onmicrosoft.com");
        let out = cli.ok(&[
            "tenants",
            "add",
            "--tenant-id",
            &id.to_string(),
            "--domain",
            &domain,
            "--client-id",
            &client,
            "--credential",
            "env:MDOPS_TEST_APP_SECRET",
            "--usage-location",
            "gb",
            "--set",
            "access_max_hours=4",
        ]);
        assert!(out.contains(&id.to_string()));
    }
    let list = cli.ok(&["tenants", "list"]);
    for id in [consented, unconsented, partial] {
        assert!(list.contains(&id.to_string()), "{list}");
    }
    let json: serde_json::Value = serde_json::from_str(&cli.ok(&["tenants", "list", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);

    let show = cli.ok(&["tenants", "show", "--tenant-id", &consented.to_string()]);
    assert!(
        show.contains("env:MDOPS_TEST_APP_SECRET") && show.contains("GB") && show.contains("access_max_hours       4"),
        "{show}"
    );

    let consent = cli.ok(&["tenants", "consent-url", "--tenant-id", &consented.to_string()]);
    let url = consent.lines().next().unwrap_or_default();
    assert!(
        url.contains(&format!("{consented}/adminconsent")) && url.contains(&format!("client_id={client}")),
        "{consent}"
    );
    // Least privilege: a customer tenant is never asked for Mail.Send (mail leaves from the
    // provider's own tenant).
    assert!(
        consent.contains("DeviceManagementServiceConfig.ReadWrite.All") && !consent.contains("Mail.Send"),
        "{consent}"
    );

    let check = cli.ok(&["tenants", "check", "--tenant-id", &consented.to_string()]);
    assert!(check.contains("is ready"), "{check}");
    assert!(!check.contains("MISSING") && !check.contains("Mail.Send"), "{check}");

    // The provider's own tenant is asked for it, and its check says when it lacks it.
    cli.ok(&["access", "configure", "--provider-tenant", &consented.to_string()]);
    let provider_consent = cli.ok(&["tenants", "consent-url", "--tenant-id", &consented.to_string()]);
    assert!(provider_consent.contains("Mail.Send"), "{provider_consent}");
    let provider_check = cli.fails(&["tenants", "check", "--tenant-id", &consented.to_string()]);
    assert!(provider_check.contains("MISSING Mail.Send"), "{provider_check}");

    let refused = cli.fails(&["tenants", "check", "--tenant-id", &unconsented.to_string()]);
    assert!(
        refused.contains("has not consented") && refused.contains("AADSTS"),
        "{refused}"
    );

    let partial_out = cli.fails(&["tenants", "check", "--tenant-id", &partial.to_string()]);
    assert!(
        partial_out.contains("MISSING DeviceManagementConfiguration.ReadWrite.All"),
        "{partial_out}"
    );
    assert!(partial_out.contains("granted User.ReadWrite.All"), "{partial_out}");

    let again = cli.fails(&[
        "tenants",
        "add",
        "--tenant-id",
        &consented.to_string(),
        "--domain",
        "x.onmicrosoft.com",
        "--client-id",
        &client,
        "--credential",
        "env:MDOPS_TEST_APP_SECRET",
    ]);
    assert!(again.contains("already registered"), "{again}");

    cli.ok(&["tenants", "remove", "--tenant-id", &partial.to_string()]);
    let list = cli.ok(&["tenants", "list"]);
    assert!(!list.contains(&partial.to_string()) && list.contains(&consented.to_string()));
    assert!(
        cli.fails(&["tenants", "remove", "--tenant-id", &partial.to_string()])
            .contains("not registered")
    );

    if !cli.backend.is_empty() {
        assert!(
            !cli.db.exists(),
            "--backend aws keeps the registry in DynamoDB, never in the embedded file"
        );
    }
    let everything = cli.seen.borrow().clone();
    assert!(
        everything.contains("TRACE") || everything.contains("DEBUG") || everything.len() > 1000,
        "logs were captured"
    );
    assert!(!everything.contains(&secret), "a secret reached the output or the logs");
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mdops.db");
    let run = |args: &[&str]| {
        let out = Command::new(MDOPS)
            .arg("--db")
            .arg(&db)
            .args(args)
            .env_remove("MDOPS_TEST_UNSET_SECRET")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let good_tid = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let good_cid = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
    let add = |tid: &str, domain: &str, cid: &str, cred: &str, extra: &[&str]| {
        let mut a = vec![
            "tenants",
            "add",
            "--tenant-id",
            tid,
            "--domain",
            domain,
            "--client-id",
            cid,
            "--credential",
            cred,
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            add("contoso", "contoso.com", good_cid, "env:X", &[]),
            "tenant_id: \"contoso\" is not a GUID",
        ),
        (
            add(good_tid, "contoso", good_cid, "env:X", &[]),
            "domain: \"contoso\" is not a domain",
        ),
        (
            add(good_tid, "contoso.com", "app", "env:X", &[]),
            "client_id: \"app\" is not a GUID",
        ),
        (
            add(good_tid, "contoso.com", good_cid, "password:hunter2", &[]),
            "credential: unknown kind \"password\"",
        ),
        (
            add(good_tid, "contoso.com", good_cid, "env:MDOPS_TEST_UNSET_SECRET", &[]),
            "environment variable MDOPS_TEST_UNSET_SECRET is not set",
        ),
        (
            add(good_tid, "contoso.com", good_cid, "file:/nonexistent/secret", &[]),
            "cannot read /nonexistent/secret",
        ),
        (
            add(good_tid, "contoso.com", good_cid, "env:X", &["--set", "colour=blue"]),
            "colour: unknown setting",
        ),
        (
            add(good_tid, "contoso.com", good_cid, "env:X", &["--usage-location", "USA"]),
            "usage_location: \"USA\" is not a two-letter country code",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = run(&args);
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in\n{err}");
    }
}
