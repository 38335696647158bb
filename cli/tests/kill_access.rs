//! The worker made to die exactly at the access crash points (`MDOPS_CRASH_AT`) and restarted:
//! after an elevation landed in Graph but before it was recorded, and after an access decision
//! (the expiry pass ending a grant) but before its side effects were queued. The outcome is right
//! either way: the elevation is recorded once, the removal still happens, nothing is left elevated.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mdops_core::access::{
    AccessRequests, AccessSettings, AccessState, Caller, EffectStatus, NewAccessRequest, save_settings,
};
use mdops_core::crash_point::{ACCESS_DECIDED, ACCESS_ELEVATED, CRASH_AT_ENV};
use mdops_core::onboarding::RoleGroup;
use mdops_core::onboarding::role_groups::RoleGroupIds;
use mdops_core::store::Store;
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::access::AccessService;
use mdops_local::SqliteBackend;
use tenant_sim::seeds::{GroupSeed, UserSeed, consented_tenant};

mod processes;

use processes::run_ok;
const SOC: &str = "Modern Workplace Roles-SOC";
/// Longest a worker may take to reach its crash point, or to settle what the crash left.
const WITHIN: Duration = Duration::from_secs(90);

fn mdops(db: &std::path::Path, sim: &str) -> Command {
    processes::mdops(db, sim, 6, 2)
}

fn worker(db: &std::path::Path, sim: &str, crash_at: Option<&str>) -> Child {
    let mut c = mdops(db, sim);
    if let Some(point) = crash_at {
        c.env(CRASH_AT_ENV, point);
    }
    c.args(["worker", "--visibility-secs", "4"]);
    c.spawn().expect("start worker")
}

fn person(upn: &str, oid: &str) -> Caller {
    Caller {
        upn: upn.into(),
        oid: oid.into(),
        tenant_id: "11111111-2222-3333-4444-555555555555".into(),
        name: upn.into(),
        roles: vec!["Access.SOC".into()],
        groups: Vec::new(),
    }
}

/// One simulated customer tenant registered in a fresh embedded backend, with access configured.
struct Rig {
    sim: tenant_sim::RunningSim,
    tenant_id: String,
    db: std::path::PathBuf,
    store: Arc<dyn Store>,
    deps: Deps,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let (id, client) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let secret = format!("kill-access-{}", uuid::Uuid::new_v4());
    let mut seed = consented_tenant("contoso", id, client, &secret);
    seed.knobs.replication_lag_ms = 300;
    // The SOC role group as onboarding makes it (role-assignable), its id recorded below the way
    // the role-group step records it.
    let soc = uuid::Uuid::new_v4();
    seed.objects.groups.push(GroupSeed {
        id: Some(soc),
        is_assignable_to_role: true,
        ..GroupSeed::security(SOC)
    });
    seed.objects.users.push(UserSeed::member("mdops-access", Some("US")));
    let sim = tenant_sim::start("127.0.0.1:0", vec![seed]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mdops.db");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let mut add = mdops(&db, sim.url());
    add.args(["tenants", "add", "--tenant-id", &id.to_string()])
        .args([
            "--domain",
            "contoso.onmicrosoft.com",
            "--client-id",
            &client.to_string(),
        ])
        .arg("--credential")
        .arg(format!("file:{}", secret_file.display()));
    run_ok(add);
    let backend = SqliteBackend::open(&db).unwrap();
    let store: Arc<dyn Store> = Arc::new(backend.store().clone());
    RoleGroupIds::new(store.as_ref())
        .record(
            &id.to_string().parse().unwrap(),
            RoleGroup::Soc,
            &soc.to_string(),
            "test-onboarding",
            Utc::now(),
        )
        .await
        .unwrap();
    save_settings(
        store.as_ref(),
        &AccessSettings {
            provider_tenant_id: Some(id.to_string().parse().unwrap()),
            service_mailbox: "mdops-access@contoso.onmicrosoft.com".into(),
            ..AccessSettings::default()
        },
    )
    .await
    .unwrap();
    let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
    let graph = GraphClient::new(GraphConfig::for_base(&base).unwrap()).unwrap();
    let deps = Deps::new(store.clone(), Arc::new(backend.queue().clone()), graph);
    Rig {
        sim,
        tenant_id: id.to_string(),
        db,
        store,
        deps,
        _dir: dir,
    }
}

impl Rig {
    /// Requests and approves `minutes` of SOC access for `engineer`, with the service's clock at `at`.
    async fn approved(&self, engineer: &str, minutes: u32, at: chrono::DateTime<Utc>) -> String {
        let deps = Deps {
            clock: Arc::new(move || at),
            ..self.deps.clone()
        };
        let service = AccessService::new(deps);
        let input = NewAccessRequest {
            tenant: self.tenant_id.clone(),
            role_group: SOC.into(),
            justification: "kill test".into(),
            ticket: "INC-KILL".into(),
            duration_minutes: minutes,
        };
        let me = person(engineer, "00000000-0000-4000-8000-00000000e001");
        let r = service.request(&me, &input, None).await.unwrap().request;
        let approver = person("bob@provider.example", "00000000-0000-4000-8000-00000000b0b0");
        service.approve(&approver, &r.id).await.unwrap();
        r.id
    }

    /// Whether the guest invited for `engineer` is a member of the SOC group, and how many guests
    /// carry that address.
    fn elevated(&self, engineer: &str) -> (bool, usize) {
        let st = self.sim.shared().lock();
        let tenant = st.tenant(&self.tenant_id).unwrap();
        let soc = tenant
            .groups
            .all()
            .find(|g| g.data.get("displayName").and_then(|v| v.as_str()) == Some(SOC))
            .unwrap()
            .id
            .clone();
        let guests: Vec<String> = tenant
            .users
            .all()
            .filter(|u| u.data.get("mail").and_then(|m| m.as_str()) == Some(engineer))
            .map(|u| u.id.clone())
            .collect();
        (guests.iter().any(|g| tenant.is_member(&soc, g)), guests.len())
    }

    /// How many entries of the request's trail have the action.
    async fn audited(&self, id: &str, action: &str) -> usize {
        let mut n = 0;
        let mut before = None;
        for _ in 0..20 {
            let page = AccessRequests::new(self.store.as_ref())
                .trail(id, before.as_deref(), 100)
                .await
                .unwrap();
            n += page.entries.iter().filter(|e| e.action == action).count();
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        n
    }
}

/// Waits until the process exits by itself; kills it and fails if it does not within `WITHIN`.
async fn dies_at_its_crash_point(mut child: Child, point: &str) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "the worker aborted at {point}");
            return;
        }
        if tokio::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the worker never reached {point}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `done` every 200 ms until it holds or `WITHIN` passes; returns whether it held.
async fn eventually<F: AsyncFnMut() -> bool>(mut done: F) -> bool {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_an_elevation_before_recording_it_records_it_once_and_still_removes() {
    let rig = rig().await;
    let engineer = "eve@provider.example";
    let id = rig.approved(engineer, 60, Utc::now()).await;
    let requests = AccessRequests::new(rig.store.as_ref());

    dies_at_its_crash_point(worker(&rig.db, rig.sim.url(), Some(ACCESS_ELEVATED)), ACCESS_ELEVATED).await;
    // The add landed in Graph; the record does not know it.
    assert_eq!(rig.elevated(engineer), (true, 1));
    let r = requests.get(&id).await.unwrap().unwrap().request;
    assert_eq!(r.state, AccessState::Approved, "{r:?}");
    assert_eq!(rig.audited(&id, "elevated").await, 0);

    let mut w = worker(&rig.db, rig.sim.url(), None);
    let active =
        eventually(async || requests.get(&id).await.unwrap().unwrap().request.state == AccessState::Active).await;
    assert!(active, "{:?}", requests.get(&id).await.unwrap().unwrap().request);
    assert_eq!(rig.audited(&id, "elevated").await, 1, "the elevation is recorded once");
    assert_eq!(rig.elevated(engineer), (true, 1), "one guest, invited once");

    let approver = person("bob@provider.example", "00000000-0000-4000-8000-00000000b0b0");
    AccessService::new(rig.deps.clone())
        .revoke(&approver, &id, "kill test: revoked")
        .await
        .unwrap();
    let removed = eventually(async || {
        let r = requests.get(&id).await.unwrap().unwrap().request;
        let recorded = r
            .removal
            .as_ref()
            .is_some_and(|e| matches!(e.status, EffectStatus::Verifying | EffectStatus::Done));
        recorded && !rig.elevated(engineer).0
    })
    .await;
    w.kill().unwrap();
    w.wait().unwrap();
    assert!(removed, "{:?}", requests.get(&id).await.unwrap().unwrap().request);
    assert_eq!(rig.elevated(engineer), (false, 1), "nothing left elevated");
    assert_eq!(rig.audited(&id, "elevated").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_ending_a_grant_before_queuing_its_removal_still_removes() {
    let rig = rig().await;
    let engineer = "mallory@provider.example";
    let id = rig.approved(engineer, 60, Utc::now()).await;
    let requests = AccessRequests::new(rig.store.as_ref());

    // Elevated and recorded by a worker that does not crash.
    let mut w = worker(&rig.db, rig.sim.url(), None);
    let active =
        eventually(async || requests.get(&id).await.unwrap().unwrap().request.state == AccessState::Active).await;
    w.kill().unwrap();
    w.wait().unwrap();
    assert!(active, "{:?}", requests.get(&id).await.unwrap().unwrap().request);
    assert_eq!(rig.elevated(engineer), (true, 1));

    // Its end moves into the past (as if the hour went by with the worker down): the next
    // worker's expiry pass ends it and dies before queuing the removal.
    {
        let found = requests.get(&id).await.unwrap().unwrap();
        let mut r = found.request.clone();
        r.ends_at = Some(Utc::now() - chrono::Duration::seconds(1));
        let change = mdops_core::access::Change {
            effects: Vec::new(),
            audit: Vec::new(),
            writes: Vec::new(),
        };
        requests.decide(&r, found.version, change, Utc::now()).await.unwrap();
    }
    dies_at_its_crash_point(worker(&rig.db, rig.sim.url(), Some(ACCESS_DECIDED)), ACCESS_DECIDED).await;
    let r = requests.get(&id).await.unwrap().unwrap().request;
    assert_eq!(r.state, AccessState::Ended, "the decision was recorded: {r:?}");
    assert_eq!(
        rig.elevated(engineer),
        (true, 1),
        "the removal had not run when it died"
    );

    let mut w = worker(&rig.db, rig.sim.url(), None);
    let removed = eventually(async || {
        let r = requests.get(&id).await.unwrap().unwrap().request;
        let recorded = r
            .removal
            .as_ref()
            .is_some_and(|e| matches!(e.status, EffectStatus::Verifying | EffectStatus::Done));
        recorded && !rig.elevated(engineer).0
    })
    .await;
    w.kill().unwrap();
    w.wait().unwrap();
    assert!(removed, "{:?}", requests.get(&id).await.unwrap().unwrap().request);
    assert_eq!(rig.elevated(engineer), (false, 1), "nothing left elevated");
    assert_eq!(rig.audited(&id, "ended").await, 1, "ended once");
}
