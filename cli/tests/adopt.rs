//! `mdops onboard --adopt` through the binary on the embedded backend, against the simulated
//! tenant: a service-account UPN squatted before onboarding fails its step with the reason and
//! gets no role; `--adopt` with the object id the reason names records who adopted it and the
//! run completes.

use std::process::{Command, Output, Stdio};

use mdops_core::onboarding::Account;
use mdops_core::onboarding::adoption::ADOPTION_ALLOWED;
use mdops_core::store::Store;
use mdops_core::tenant::TenantSettings;
use mdops_local::SqliteBackend;
use tenant_sim::SimClient;
use tenant_sim::seeds::{UserSeed, consented_tenant};
use tenant_sim::store::RequestLogQuery;

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");

fn run(db: &std::path::Path, sim_url: &str, args: &[&str]) -> Output {
    Command::new(MDOPS)
        .args(["--backend", "embedded", "--db"])
        .arg(db)
        .arg("--sim-url")
        .arg(format!("{sim_url}/"))
        .args([
            "--step-lease-secs",
            "5",
            "--step-grace-secs",
            "2",
            "--lag-window-secs",
            "2",
        ])
        .args(args)
        .env_remove("MDOPS_ACTOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run mdops")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_service_account_is_refused_until_an_operator_adopts_it() {
    let (tenant_id, client_id) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let secret = format!("adopt-test-{}", uuid::Uuid::new_v4());
    let squatter = uuid::Uuid::new_v4();
    let mut seed = consented_tenant("fabrikam", tenant_id, client_id, &secret);
    let nickname = Account::DefenderAutomation.mail_nickname(&TenantSettings::default().account_prefix);
    seed.objects.users.push(UserSeed {
        id: Some(squatter),
        ..UserSeed::member(&nickname, Some("US"))
    });
    let sim = tenant_sim::start("127.0.0.1:0", vec![seed]).await.expect("simulator");
    let control = SimClient::new(sim.url());
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("mdops.db");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).expect("secret file");
    let (tenant, squatter) = (tenant_id.to_string(), squatter.to_string());
    let added = run(
        &db,
        sim.url(),
        &[
            "tenants",
            "add",
            "--tenant-id",
            &tenant,
            "--domain",
            "fabrikam.onmicrosoft.com",
            "--client-id",
            &client_id.to_string(),
            "--credential",
            &format!("file:{}", secret_file.display()),
            "--usage-location",
            "US",
        ],
    );
    assert!(added.status.success(), "{}", text(&added));

    let refused = run(
        &db,
        sim.url(),
        &["onboard", "--tenant-id", &tenant, "--timeout-secs", "90"],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains(&squatter) && said.contains("--adopt"),
        "names the object and the way on: {said}"
    );
    let grants_to_squatter = || async {
        let log = control
            .requests(&RequestLogQuery {
                tenant: Some(tenant.clone()),
                ..Default::default()
            })
            .await
            .expect("request log");
        log.iter()
            .filter(|r| r.method == "POST" && r.path.contains("/members/$ref") && (200..300).contains(&r.status))
            .filter(|r| r.body.as_ref().is_some_and(|b| b.to_string().contains(&squatter)))
            .count()
    };
    assert_eq!(grants_to_squatter().await, 0, "the squatter got no role");

    let bad = run(
        &db,
        sim.url(),
        &["onboard", "--tenant-id", &tenant, "--adopt", "not-an-id"],
    );
    assert!(!bad.status.success());
    assert!(text(&bad).contains("--adopt"), "{}", text(&bad));

    let adopted = run(
        &db,
        sim.url(),
        &[
            "onboard",
            "--tenant-id",
            &tenant,
            "--adopt",
            &squatter,
            "--actor",
            "alice",
            "--timeout-secs",
            "90",
        ],
    );
    assert!(adopted.status.success(), "{}", text(&adopted));
    assert_eq!(
        grants_to_squatter().await,
        Account::DefenderAutomation.roles().len(),
        "the adopted account got its role"
    );
    let backend = SqliteBackend::open(&db).expect("open backend");
    let trail = backend
        .store()
        .audit(&format!("tenant:{tenant}"), 10)
        .await
        .expect("audit");
    let allowed: Vec<_> = trail.iter().filter(|e| e.action == ADOPTION_ALLOWED).collect();
    assert_eq!(allowed.len(), 1, "{trail:?}");
    assert_eq!(allowed[0].actor, "operator:alice");
    assert_eq!(allowed[0].detail["object_id"], squatter.as_str());
}
