//! The chaos scenario, shared by the embedded run (`chaos.rs`) and the small run on SQS + DynamoDB
//! through the emulator (`chaos_aws.rs`): tenants onboard while the simulated tenant injects 10 %
//! 429, 5 % 5xx, 2 % timeouts, 1 % resets and 2 % committed-then-dropped writes; every message is
//! delivered twice (`mdops worker --duplicate-deliveries`); the worker is SIGKILLed every few
//! seconds and restarted; temporary access is approved, revoked early and expires meanwhile. At the
//! end the figures are taken from the simulator's own object store and request log and asserted.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mdops_core::access::{
    AccessRequests, AccessSettings, AccessState, Caller, EffectStatus, NewAccessRequest, save_settings,
};
use mdops_core::onboarding::RoleGroup;
use mdops_core::onboarding::role_groups::RoleGroupIds;
use mdops_core::onboarding::runs::{RunSettings, RunStatus, Runs, StepStatus};
use mdops_core::queue::Queue;
use mdops_core::store::Store;
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::access::AccessService;
use mdops_local::SqliteBackend;
use rand::Rng;
use tenant_sim::chaos::ChaosSpec;
use tenant_sim::knobs::Knobs;
use tenant_sim::seeds::{UserSeed, consented_tenant};

use crate::processes;
use crate::processes::run_ok;

pub const SOC: &str = "Modern Workplace Roles-SOC";
/// How long after its end a guest may still be in a role group.
pub const REMOVAL_WITHIN: chrono::Duration = chrono::Duration::seconds(60);

/// A number from the environment, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub struct ChaosTenant {
    id: String,
    name: String,
    secret: String,
}

/// Where the chaos runs: the `mdops` flags and environment that select the backend, and the same
/// queue and store for the test's own reads and its access decisions.
pub struct ChaosBackend {
    /// For the figures' heading.
    pub name: &'static str,
    pub flags: Vec<String>,
    pub env: Vec<(String, String)>,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub rows: Rows,
}

/// How big and how long.
pub struct ChaosPlan {
    pub tenants: usize,
    pub seed: u64,
    /// Until the runs and access requests must have settled.
    pub deadline: Duration,
    /// Each worker lives this long (ms, drawn) before its SIGKILL.
    pub kill_after_ms: std::ops::Range<u64>,
}

/// Every stored row, as text (searched for secrets).
pub enum Rows {
    /// The embedded database file.
    Sqlite(std::path::PathBuf),
    /// A DynamoDB table.
    Dynamo(aws_sdk_dynamodb::Client, String),
}

impl Rows {
    /// Every text cell of every row.
    pub async fn text(&self) -> String {
        match self {
            Rows::Sqlite(db) => database_text(db),
            Rows::Dynamo(client, table) => {
                let mut out = String::new();
                let mut start = None;
                // Bounded: a chaos table holds a few thousand items.
                for _ in 0..1_000 {
                    let page = client
                        .scan()
                        .table_name(table)
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .expect("scan the table");
                    for item in page.items() {
                        out.push_str(&format!("{item:?}\n"));
                    }
                    start = page.last_evaluated_key().cloned();
                    if start.is_none() {
                        break;
                    }
                }
                out
            }
        }
    }
}

impl ChaosBackend {
    /// The embedded backend: one SQLite file in `dir`.
    pub fn sqlite(dir: &std::path::Path) -> ChaosBackend {
        let db = dir.join("mdops.db");
        let backend = SqliteBackend::open(&db).unwrap();
        ChaosBackend {
            name: "the embedded worker (SQLite)",
            flags: vec!["--db".into(), db.display().to_string()],
            env: Vec::new(),
            store: Arc::new(backend.store().clone()),
            queue: Arc::new(backend.queue().clone()),
            rows: Rows::Sqlite(db),
        }
    }

    /// `mdops` on this backend and the simulator at `sim` (a short lease and grace, so a killed
    /// holder's step is taken over within seconds).
    pub fn mdops(&self, sim: &str) -> Command {
        let mut c = processes::mdops_on(&self.flags, sim, 12, 3);
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// A worker delivering every message twice, its log appended to `log`.
    pub fn worker(&self, sim: &str, log: &std::path::Path) -> Child {
        let mut c = self.mdops(sim);
        c.args(["worker", "--visibility-secs", "6", "--duplicate-deliveries"]);
        let f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        c.stderr(f).env("MDOPS_LOG", "info");
        c.spawn().expect("start worker")
    }
}

pub fn person(upn: &str) -> Caller {
    Caller {
        upn: upn.into(),
        // A stable object id per person (the rules decide by it).
        oid: format!(
            "00000000-0000-4000-8000-{:012x}",
            upn.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) & 0xffff_ffff_ffff
        ),
        tenant_id: "11111111-2222-3333-4444-555555555555".into(),
        name: upn.into(),
        roles: vec!["Access.SOC".into()],
        groups: Vec::new(),
    }
}

/// Every text cell of every table of the embedded database.
fn database_text(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = String::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..cols {
                if let Ok(rusqlite::types::ValueRef::Text(b)) = row.get_ref(i) {
                    out.push_str(&String::from_utf8_lossy(b));
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// Per tenant one request to revoke early and one already past its end (approved six minutes
/// "ago" for five), approved; returns the ids to revoke and every (tenant, request id).
async fn file_requests(
    deps: &Deps,
    earlier: &Deps,
    approver: &Caller,
    tenants: &[ChaosTenant],
) -> (Vec<String>, Vec<(String, String)>) {
    let (mut to_revoke, mut requests) = (Vec::new(), Vec::new());
    for (i, t) in tenants.iter().enumerate() {
        for (minutes, service) in [(60, deps), (5, earlier)] {
            let engineer = person(&format!("eng{i}-{minutes}@provider.example"));
            let service = AccessService::new(service.clone());
            let input = NewAccessRequest {
                tenant: t.id.clone(),
                role_group: SOC.into(),
                justification: "chaos".into(),
                ticket: "INC-CHAOS".into(),
                duration_minutes: minutes,
            };
            let r = service.request(&engineer, &input, None).await.unwrap().request;
            service.approve(approver, &r.id).await.unwrap();
            if minutes == 60 {
                to_revoke.push(r.id.clone());
            }
            requests.push((t.id.clone(), r.id));
        }
    }
    (to_revoke, requests)
}

/// Runs the chaos scenario on `backend` as `plan` says; prints the figures and asserts the zeros.
pub async fn run(backend: ChaosBackend, plan: ChaosPlan) {
    let (n, seed) = (plan.tenants, plan.seed);
    let deadline = tokio::time::Instant::now() + plan.deadline;
    let started = std::time::Instant::now();

    let mut seeds = Vec::new();
    let mut tenants = Vec::new();
    for i in 0..n {
        let (id, client) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let secret = format!("chaos-secret-{}", uuid::Uuid::new_v4());
        let name = format!("chaos{i}");
        let mut s = consented_tenant(&name, id, client, &secret);
        s.knobs = Knobs {
            replication_lag_ms: 300,
            ..Knobs::default()
        };
        s.objects.users.push(UserSeed::member("mdops-access", Some("US")));
        seeds.push((s, client));
        tenants.push(ChaosTenant {
            id: id.to_string(),
            name,
            secret,
        });
    }
    let sim = tenant_sim::start("127.0.0.1:0", seeds.iter().map(|(s, _)| s.clone()).collect())
        .await
        .unwrap();
    let control = sim.client();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    for (t, (_, client)) in tenants.iter().zip(&seeds) {
        let secret_file = dir.path().join(format!("{}.secret", t.name));
        std::fs::write(&secret_file, &t.secret).unwrap();
        let mut add = backend.mdops(sim.url());
        add.args(["tenants", "add", "--tenant-id", &t.id, "--domain"])
            .arg(format!("{}.onmicrosoft.com", t.name))
            .args(["--client-id", &client.to_string(), "--credential"])
            .arg(format!("file:{}", secret_file.display()));
        run_ok(add);
    }
    let store: Arc<dyn Store> = backend.store.clone();
    save_settings(
        store.as_ref(),
        &AccessSettings {
            provider_tenant_id: Some(tenants[0].id.parse().unwrap()),
            service_mailbox: format!("mdops-access@{}.onmicrosoft.com", tenants[0].name),
            ..AccessSettings::default()
        },
    )
    .await
    .unwrap();
    let spec = ChaosSpec {
        seed,
        throttle: 0.10,
        server_error: 0.05,
        timeout: 0.02,
        reset: 0.01,
        commit_then_drop: 0.02,
        hang_ms: 3_000,
        retry_after: "1".into(),
    };
    for t in &tenants {
        control.set_chaos(&t.id, &spec).await.unwrap();
        let mut enroll = backend.mdops(sim.url());
        enroll.args(["enroll", "--tenant-id", &t.id]);
        run_ok(enroll);
    }

    // Access: per tenant one request to revoke early and one already past its end (approved six
    // minutes "ago" for five), so elevation, expiry and removal race under the same faults.
    let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
    let graph = GraphClient::new(GraphConfig::for_base(&base).unwrap()).unwrap();
    let deps = Deps::new(store.clone(), backend.queue.clone(), graph);
    let past = Utc::now() - chrono::Duration::minutes(6);
    let earlier = Deps {
        clock: Arc::new(move || past),
        ..deps.clone()
    };
    let approver = person("bob@provider.example");
    let mut to_revoke: Vec<String> = Vec::new();
    let mut requests: Vec<(String, String)> = Vec::new();
    // Filed once onboarding has created and recorded every tenant's SOC role group (the only
    // group elevation goes into), while the rest of onboarding still runs.
    let soc_recorded = |tid: String| {
        let store = store.clone();
        async move {
            RoleGroupIds::new(store.as_ref())
                .get(&tid.parse().unwrap(), RoleGroup::Soc)
                .await
                .unwrap()
                .map(|r| r.id)
        }
    };

    // Work under kills until every run is finished and every access settled.
    let runs = Runs::new(store.as_ref(), RunSettings::default());
    let access = AccessRequests::new(store.as_ref());
    let service = AccessService::new(deps.clone());
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    let mut revoked = false;
    let finished = loop {
        let mut child = backend.worker(sim.url(), &log);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(plan.kill_after_ms.clone()))).await;
        child.kill().expect("SIGKILL the worker");
        child.wait().unwrap();
        kills += 1;
        if !requests.is_empty() && !revoked {
            for id in &to_revoke {
                // Revoked while its elevation may still be in flight.
                let _ = service.revoke(&approver, id, "chaos: revoked early").await;
            }
            revoked = true;
        }
        if requests.is_empty() {
            let mut all = true;
            for t in &tenants {
                all &= soc_recorded(t.id.clone()).await.is_some();
            }
            if all {
                (to_revoke, requests) = file_requests(&deps, &earlier, &approver, &tenants).await;
            }
        }
        let mut done = revoked;
        for t in &tenants {
            let view = runs.current(&t.id.parse().unwrap()).await.unwrap().unwrap();
            done &= view.status() != RunStatus::Running;
        }
        for (_, id) in &requests {
            let r = access.get(id).await.unwrap().unwrap().request;
            // Removed (a verifying removal keeps re-checking for late adds; the figures below judge it).
            done &= !r.state.is_granted()
                && r.removal
                    .as_ref()
                    .is_some_and(|e| matches!(e.status, EffectStatus::Verifying | EffectStatus::Done));
        }
        if done || tokio::time::Instant::now() > deadline {
            break done;
        }
    };
    // A last worker, not killed, while the removal window of the latest end passes.
    let mut last = backend.worker(sim.url(), &log);
    let mut ends = Vec::new();
    for (_, id) in &requests {
        let r = access.get(id).await.unwrap().unwrap().request;
        if let Some(end) = r.decided_at.filter(|_| r.state == AccessState::Revoked).or(r.ends_at) {
            ends.push(end);
        }
    }
    let settle = ends.iter().max().copied().unwrap_or_else(Utc::now) + REMOVAL_WITHIN + chrono::Duration::seconds(5);
    while Utc::now() < settle && tokio::time::Instant::now() < deadline + Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last.kill().unwrap();
    last.wait().unwrap();

    // Figures, from the simulator's own state and request log.
    let now = Utc::now();
    let mut duplicates = 0;
    let mut lost_steps = 0;
    let mut not_succeeded = 0;
    let mut still_elevated = 0;
    let mut steps = 0;
    let mut settled = Vec::new();
    for (tid, id) in &requests {
        settled.push((tid.clone(), access.get(id).await.unwrap().unwrap().request));
    }
    let mut socs = BTreeMap::new();
    for t in &tenants {
        let id = soc_recorded(t.id.clone())
            .await
            .expect("onboarding recorded the SOC group");
        socs.insert(t.id.clone(), id);
    }
    {
        let st = sim.shared().lock();
        for t in &tenants {
            let tenant = st.tenant(&t.id).unwrap();
            let mut names: BTreeMap<String, usize> = BTreeMap::new();
            for (kind, c, key) in [
                ("group", &tenant.groups, "displayName"),
                ("config", &tenant.device_configurations, "displayName"),
                ("user", &tenant.users, "userPrincipalName"),
            ] {
                for o in c.all() {
                    let k = o.data.get(key).and_then(|v| v.as_str()).unwrap_or("").to_lowercase();
                    *names.entry(format!("{kind}:{k}")).or_default() += 1;
                }
            }
            duplicates += names.values().map(|n| n - 1).sum::<usize>();
            let soc = socs[&t.id].clone();
            for (tid, r) in &settled {
                if tid != &t.id {
                    continue;
                }
                let ended = match r.state {
                    AccessState::Revoked => r.decided_at,
                    AccessState::Ended => r.ends_at,
                    _ => None,
                };
                let guest = tenant
                    .users
                    .all()
                    .find(|u| u.data.get("mail").and_then(|m| m.as_str()) == Some(r.requester.as_str()))
                    .map(|u| u.id.clone());
                let in_group = guest.as_deref().is_some_and(|g| tenant.is_member(&soc, g));
                let overdue = ended.is_none_or(|e| now - e > REMOVAL_WITHIN);
                if in_group && overdue {
                    still_elevated += 1;
                    eprintln!("still elevated: {r:?}");
                }
            }
        }
    }
    for t in &tenants {
        let view = runs.current(&t.id.parse().unwrap()).await.unwrap().unwrap();
        steps += view.steps.len();
        lost_steps += view
            .steps
            .iter()
            .filter(|s| !matches!(s.status, StepStatus::Done | StepStatus::Failed))
            .count();
        if view.status() != RunStatus::Succeeded {
            not_succeeded += 1;
            eprintln!(
                "run {} {:?}: {:#?}",
                view.run.run_id,
                view.status(),
                view.steps
                    .iter()
                    .filter(|s| s.status != StepStatus::Done)
                    .collect::<Vec<_>>()
            );
        }
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let db_text = backend.rows.text().await;
    let mut dead_text = String::new();
    for q in mdops_core::queue::QueueName::ALL {
        for d in backend.queue.dead_letters(q, 1000).await.unwrap() {
            dead_text.push_str(&format!("{d:?}\n"));
        }
    }
    let haystacks = [("log", &log_text), ("database", &db_text), ("dead letters", &dead_text)];
    let mut secrets_found = 0;
    for (place, text) in haystacks {
        for t in &tenants {
            if text.contains(&t.secret) {
                secrets_found += 1;
                eprintln!("client secret of {} found in the {place}", t.name);
            }
        }
        // Bearer tokens (JWTs start with a base64url `{"`) and passwords sent to Graph.
        for needle in [
            "eyJ0eXAi",
            "eyJhbGci",
            "Bearer ey",
            "\"password\":\"",
            "passwordProfile",
        ] {
            let hits = text.matches(needle).count();
            if hits > 0 {
                secrets_found += hits;
                eprintln!("{needle:?} found {hits} time(s) in the {place}");
            }
        }
    }
    let requests_log = control.requests(&Default::default()).await.unwrap();
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    for e in requests_log.iter().filter(|e| e.path.starts_with("/v1.0")) {
        if let Some(f) = &e.fault {
            let kind = if f.kind == "status" {
                format!("status {}", e.status)
            } else {
                f.kind.clone()
            };
            *faults.entry(kind).or_default() += 1;
        }
    }
    let graph_requests = requests_log.iter().filter(|e| e.path.starts_with("/v1.0")).count();
    let applied = |e: &tenant_sim::store::RequestLogEntry| {
        (200..300).contains(&e.fault.as_ref().and_then(|f| f.applied_status).unwrap_or(e.status))
    };
    let members = |method: &str| {
        requests_log
            .iter()
            .filter(|e| e.method == method && e.path.contains("/members/") && e.path.ends_with("$ref") && applied(e))
            .count()
    };
    let added = requests_log
        .iter()
        .filter(|e| {
            e.method == "POST" && e.path.ends_with("/members/$ref") && e.path.starts_with("/v1.0/groups") && applied(e)
        })
        .count();
    let states: BTreeMap<String, usize> = settled.iter().fold(BTreeMap::new(), |mut m, (_, r)| {
        *m.entry(r.state.to_string()).or_default() += 1;
        m
    });
    println!(
        "\nchaos figures on {} ({n} tenants, seed {seed}, {:.0} s, {kills} worker kills)",
        backend.name,
        started.elapsed().as_secs_f64()
    );
    println!("  graph requests          {graph_requests}");
    for (kind, count) in &faults {
        println!("  injected {kind:<15} {count}");
    }
    println!("  steps                   {steps}");
    println!("  access requests         {} {states:?}", requests.len());
    println!(
        "  guests added to groups  {added}; memberships removed {}",
        members("DELETE")
    );
    println!("  duplicate objects       {duplicates}");
    println!("  steps lost              {lost_steps}");
    println!("  runs not succeeded      {not_succeeded}");
    println!("  guests still elevated   {still_elevated}  (> 60 s after their access ended)");
    println!("  secrets found           {secrets_found}  (worker log, database rows, dead letters)");
    assert!(
        finished,
        "the runs and access requests did not settle before the deadline"
    );
    assert!(
        faults.keys().any(|k| k.starts_with("commit_then")) || n < 2,
        "committed-then-dropped writes were injected: {faults:?}"
    );
    // With one tenant (the emulator run) its early revocation can come before the elevation, and
    // its other request is approved already past its end: no elevation is then a valid outcome
    // (the final CI of 2026-12-04 saw it once); with two or more tenants one always lands.
    assert!(
        added > 0 || n < 2,
        "some elevation happened, so the removal figure means something"
    );
    assert_eq!(duplicates, 0, "duplicate objects");
    assert_eq!(lost_steps, 0, "steps lost");
    assert_eq!(not_succeeded, 0, "runs not succeeded");
    assert_eq!(
        still_elevated, 0,
        "guests still in a role group after their access ended"
    );
    assert_eq!(secrets_found, 0, "secrets in logs, rows or dead letters");
}
