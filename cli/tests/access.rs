//! `mdops access` end to end: `configure`, `serve` against the simulated provider tenant's keys,
//! then `request` and `approve` through the API with people's tokens, `list` and `show` from the store.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use mdops_core::tenant::{CredentialRef, Tenant, TenantRegistry, TenantSettings};
use mdops_local::SqliteBackend;
use secrecy::SecretString;
use tenant_sim::SimClient;
use tenant_sim::control::types::UserTokenRequest;
use tenant_sim::seeds::{AppSeed, GroupSeed, PRODUCT_PERMISSIONS, TenantSeed};

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");
const AUDIENCE: &str = "api://mdops-access";
const SOC: &str = "Modern Workplace Roles-SOC";

fn mdops(db: &std::path::Path, sim: &str, args: &[&str]) -> std::process::Output {
    mdops_env(db, sim, args, &[])
}

fn mdops_env(db: &std::path::Path, sim: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(MDOPS)
        .env_remove("MDOPS_ACCESS_TOKEN")
        .env_remove("MDOPS_ACCESS_TOKEN_FILE")
        .envs(env.iter().copied())
        .arg("--db")
        .arg(db)
        .arg("--sim-url")
        .arg(format!("{sim}/"))
        .args(args)
        .output()
        .expect("run mdops")
}

fn stdout_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "mdops failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_approve_from_a_terminal() {
    let secret = format!("access-cli-{}", uuid::Uuid::new_v4());
    let mut seeds = Vec::new();
    let mut ids = Vec::new();
    for name in ["provider", "fabrikam"] {
        let mut seed = TenantSeed::new(name);
        let id = uuid::Uuid::new_v4();
        let client = uuid::Uuid::new_v4();
        seed.id = Some(id);
        seed.apps.push(AppSeed {
            client_id: client,
            display_name: None,
            secret: Some(SecretString::from(secret.clone())),
            certificates: Vec::new(),
            permissions: if name == "provider" {
                tenant_sim::seeds::provider_permissions()
            } else {
                PRODUCT_PERMISSIONS.iter().map(|p| p.to_string()).collect()
            },
        });
        seed.objects.groups.push(GroupSeed {
            display_name: SOC.into(),
            id: None,
            members: Vec::new(),
            is_assignable_to_role: true,
        });
        seeds.push(seed);
        ids.push((id.to_string(), client.to_string(), name));
    }
    let sim = tenant_sim::start("127.0.0.1:0", seeds).await.unwrap();
    let control = SimClient::new(sim.url());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mdops.db");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    {
        let backend = SqliteBackend::open(&db).unwrap();
        for (id, client, name) in &ids {
            TenantRegistry::new(backend.store())
                .add(&Tenant {
                    tenant_id: id.parse().unwrap(),
                    domain: format!("{name}.onmicrosoft.com").parse().unwrap(),
                    name: name.to_string(),
                    client_id: client.clone(),
                    credential: CredentialRef::File {
                        path: secret_file.display().to_string(),
                    },
                    settings: TenantSettings::default(),
                    added_at: chrono::Utc::now(),
                })
                .await
                .unwrap();
        }
    }
    let (provider, customer) = (ids[0].0.clone(), ids[1].0.clone());
    let configured = stdout_ok(&mdops(
        &db,
        sim.url(),
        &[
            "access",
            "configure",
            "--provider-tenant",
            &provider,
            "--team-roles",
            "Access.SOC",
            "--team-alias",
            "team@provider.onmicrosoft.com",
            "--service-mailbox",
            "mdops@provider.onmicrosoft.com",
        ],
    ));
    assert!(configured.contains(&provider), "{configured}");
    let bad = mdops(&db, sim.url(), &["access", "configure", "--approvals-required", "0"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("approvals_required"));

    let mut serve = Command::new(MDOPS)
        .arg("--db")
        .arg(&db)
        .arg("--sim-url")
        .arg(format!("{}/", sim.url()))
        .args(["access", "serve", "--listen", "127.0.0.1:0", "--audience", AUDIENCE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    let stdout = serve.stdout.take().unwrap();
    let api = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line.trim().to_string()
    })
    .await
    .unwrap();
    assert!(api.starts_with("http://127.0.0.1:"), "{api}");

    let token = |upn: &'static str| {
        let control = control.clone();
        let provider = provider.clone();
        async move {
            control
                .issue_user_token(
                    &provider,
                    &UserTokenRequest {
                        audience: AUDIENCE.into(),
                        upn: upn.into(),
                        name: None,
                        oid: None,
                        roles: vec!["Access.SOC".into()],
                        groups: Vec::new(),
                        lifetime_secs: None,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .access_token
        }
    };
    let alice = token("alice@provider.onmicrosoft.com").await;
    let bob = token("bob@provider.onmicrosoft.com").await;
    // The token from the environment: a command line is visible to every local user.
    let requested = stdout_ok(&mdops_env(
        &db,
        sim.url(),
        &[
            "access",
            "request",
            "--api",
            &api,
            "--tenant",
            &customer,
            "--role-group",
            SOC,
            "--justification",
            "alert 7",
            "--ticket",
            "INC7",
            "--minutes",
            "30",
        ],
        &[("MDOPS_ACCESS_TOKEN", &alice)],
    ));
    let id = requested.split_whitespace().next().unwrap().to_string();
    assert!(requested.contains("pending"), "{requested}");

    let own = mdops(
        &db,
        sim.url(),
        &["access", "approve", "--api", &api, "--token", &alice, &id],
    );
    assert!(!own.status.success(), "self-approval must fail");
    assert!(String::from_utf8_lossy(&own.stderr).contains("403"));
    // Or from a file.
    let token_file = dir.path().join("bob.token");
    std::fs::write(&token_file, format!("{bob}\n")).unwrap();
    let approved = stdout_ok(&mdops(
        &db,
        sim.url(),
        &[
            "access",
            "approve",
            "--api",
            &api,
            "--token-file",
            token_file.to_str().unwrap(),
            &id,
        ],
    ));
    assert!(approved.contains("approved"), "{approved}");
    let none = mdops(&db, sim.url(), &["access", "approve", "--api", &api, &id]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("--token-file"),
        "says where a token comes from: {}",
        String::from_utf8_lossy(&none.stderr)
    );

    let listed = stdout_ok(&mdops(&db, sim.url(), &["access", "list", "--state", "approved"]));
    assert!(listed.contains(&id), "{listed}");
    let shown = stdout_ok(&mdops(&db, sim.url(), &["access", "show", &id]));
    assert!(
        shown.contains("bob@provider.onmicrosoft.com") && !shown.contains("approved.refused"),
        "{shown}"
    );
    let refusals = stdout_ok(&mdops(&db, sim.url(), &["access", "audit", &id, "--refusals"]));
    assert!(refusals.contains("approved.refused"), "{refusals}");
    let audit = stdout_ok(&mdops(&db, sim.url(), &["access", "audit", &id, "--json"]));
    let actions: Vec<String> = serde_json::from_str::<serde_json::Value>(&audit).unwrap()["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, vec!["approved", "requested"], "newest first");

    serve.kill().unwrap();
    let _ = serve.wait();

    // Plain HTTP on a network address needs a TLS proxy in front, said out loud.
    let open = mdops(
        &db,
        sim.url(),
        &["access", "serve", "--listen", "0.0.0.0:0", "--audience", AUDIENCE],
    );
    assert!(!open.status.success());
    assert!(
        String::from_utf8_lossy(&open.stderr).contains("--behind-tls-proxy"),
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );
    let help = stdout_ok(&mdops(&db, sim.url(), &["access", "serve", "--help"]));
    assert!(help.contains("TLS"), "{help}");
}
