//! Device ring assignment against the simulated tenant on the embedded (SQLite) queue and store:
//! 5,000 Windows devices placed by the configured shares, a second sync that writes nothing, no
//! request binding more than 20 members, a throttled chunk retried alone, a device deleted after
//! the plan failing alone, an operator's move audited. The same 5,000-device run on SQS and
//! DynamoDB is `functions/onboarding-step/tests/rings_aws.rs`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Rig, test_worker_settings};
use mdops_core::queue::QueueName;
use mdops_core::rings::{MAX_MEMBERS_PER_REQUEST, RingShares};
use mdops_core::tenant::{Ring, TenantId};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::reach::TenantReach;
use mdops_handlers::rings::{move_device::move_device, show::show, sync::sync};
use mdops_handlers::worker::Worker;
use serde_json::Value;
use tenant_sim::faults::{FaultAction, FaultSpec};
use tenant_sim::seeds::{DeviceSeed, GroupSeed, TenantSeed, windows_devices};
use tenant_sim::store::RequestLogEntry;

/// Devices of another platform that no ring may take.
const OTHER_PLATFORM: usize = 40;

fn seeded(windows: usize) -> impl FnOnce(&mut TenantSeed) {
    move |seed: &mut TenantSeed| {
        let mut devices = windows_devices("PC", windows);
        devices.extend((1..=OTHER_PLATFORM).map(|i| DeviceSeed {
            display_name: format!("PHONE-{i:03}"),
            id: None,
            operating_system: Some("iOS".into()),
            operating_system_version: None,
        }));
        seed.objects.devices = devices;
        seed.objects.groups = Ring::ALL
            .iter()
            .map(|r| GroupSeed::security(r.display_name()))
            .collect();
    }
}

/// Hands Graph errors straight back (no in-process retries), so every retry is a queue hop.
fn no_in_process_retries(rig: &mut Rig) {
    let base = url::Url::parse(&format!("{}/", rig.sim.url())).unwrap();
    let mut config = GraphConfig::for_base(&base).unwrap();
    config.retry.max_attempts = 1;
    let graph = GraphClient::new(config).unwrap();
    rig.deps.reach = Arc::new(TenantReach::new(graph, rig.deps.store.clone()));
}

async fn memberships(rig: &Rig) -> usize {
    rig.counts().await.get("memberships").copied().unwrap_or(0)
}

/// Works the onboarding queue until the simulator holds `target` memberships or `timeout` passes.
async fn work_until_members(rig: &Rig, target: usize, timeout: Duration) -> usize {
    let worker = Worker::new(rig.deps.clone(), test_worker_settings());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(async move { worker.run(&[QueueName::Onboarding], stop_rx).await });
    let deadline = tokio::time::Instant::now() + timeout;
    let mut now = memberships(rig).await;
    while now < target && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = memberships(rig).await;
    }
    stop_tx.send(true).unwrap();
    working.await.unwrap();
    now
}

/// The PATCHes of group membership in the request log.
fn member_patches(log: &[RequestLogEntry]) -> Vec<&RequestLogEntry> {
    log.iter()
        .filter(|r| r.method == "PATCH" && r.path.starts_with("/v1.0/groups/"))
        .filter(|r| r.body.as_ref().is_some_and(|b| b.get("members@odata.bind").is_some()))
        .collect()
}

fn binds(r: &RequestLogEntry) -> Vec<String> {
    r.body
        .as_ref()
        .and_then(|b| b.get("members@odata.bind"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Checks every Windows device is in exactly one ring and each ring within one device of its share.
fn assert_placed(report: &mdops_handlers::rings::show::RingsReport, windows: usize, shares: &RingShares) {
    assert_eq!(
        report.windows_devices, windows,
        "every Windows device read, no other platform"
    );
    assert!(
        report.unplaced.is_empty(),
        "{} devices in no ring",
        report.unplaced.len()
    );
    assert!(
        report.in_several.is_empty(),
        "{} devices in two rings",
        report.in_several.len()
    );
    let counts = report.counts();
    assert_eq!(counts.values().sum::<usize>(), windows);
    for ring in Ring::ALL {
        let exact = windows as f64 * shares.get(ring) as f64 / mdops_core::rings::SHARE_SCALE as f64;
        let held = counts[&ring] as f64;
        assert!(
            (held - exact).abs() <= 1.0,
            "{ring:?}: {held} devices, share is {exact}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_devices_land_in_exactly_one_ring_and_a_second_sync_writes_nothing() {
    const WINDOWS: usize = 5_000;
    let rig = Rig::start(seeded(WINDOWS)).await;
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (tenant, graph) = rig.deps.reach.tenant(&tid).await.unwrap();
    let before = memberships(&rig).await;

    let started = Instant::now();
    let report = sync(&rig.deps, &tenant, &graph, "test", false).await.expect("sync");
    let planned = started.elapsed();
    assert_eq!(report.windows_devices, WINDOWS);
    assert_eq!(report.placed.values().sum::<usize>(), WINDOWS);
    assert_eq!(
        report.messages,
        WINDOWS.div_ceil(MAX_MEMBERS_PER_REQUEST) + 1,
        "per ring: 50 -> 3, 450 -> 23, 4500 -> 225 chunks"
    );
    let reached = work_until_members(&rig, before + WINDOWS, Duration::from_secs(600)).await;
    let total = started.elapsed();
    assert_eq!(reached, before + WINDOWS);
    println!(
        "ring sync of {WINDOWS} devices (SQLite): planned and queued {} chunks in {:.2}s, all members added after {:.2}s",
        report.messages,
        planned.as_secs_f64(),
        total.as_secs_f64()
    );

    let shares = tenant.settings.ring_shares;
    let shown = show(&graph, &shares).await.expect("show");
    assert_placed(&shown, WINDOWS, &shares);

    let log = rig.requests().await;
    let patches = member_patches(&log);
    assert!(!patches.is_empty());
    let mut bound = 0;
    for p in &patches {
        let n = binds(p).len();
        assert!(
            (1..=MAX_MEMBERS_PER_REQUEST).contains(&n),
            "a request bound {n} members"
        );
        assert_eq!(p.status, 204, "{p:?}");
        bound += n;
    }
    assert_eq!(bound, WINDOWS, "each device bound once");
    let device_reads = log
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v1.0/devices")
        .collect::<Vec<_>>();
    assert!(device_reads.len() >= WINDOWS.div_ceil(999), "devices read in pages");
    assert!(
        device_reads.iter().all(|r| r.query.contains("select")),
        "devices read with $select"
    );

    // A second sync: nothing to place, nothing sent, nothing written.
    let seq = log.last().map(|r| r.seq).unwrap_or(0);
    let again = sync(&rig.deps, &tenant, &graph, "test", false)
        .await
        .expect("second sync");
    assert_eq!((again.messages, again.placed.values().sum::<usize>()), (0, 0));
    work_until_members(&rig, before + WINDOWS, Duration::from_secs(2)).await;
    assert!(
        rig.writes_after(seq).await.is_empty(),
        "a second sync wrote to the tenant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_chunk_is_retried_alone_and_a_deleted_device_fails_alone() {
    const WINDOWS: usize = 100;
    let mut rig = Rig::start(seeded(WINDOWS)).await;
    no_in_process_retries(&mut rig);
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (tenant, graph) = rig.deps.reach.tenant(&tid).await.unwrap();
    let before = memberships(&rig).await;

    let report = sync(&rig.deps, &tenant, &graph, "test", false).await.expect("sync");
    // Broad holds 90 devices: five chunks. Throttle the first PATCH to its group once.
    let broad_group = mdops_handlers::rings::ring_group(&graph, Ring::Broad).await.unwrap();
    rig.control
        .add_fault(
            &rig.tenant_id,
            &FaultSpec {
                method: Some("PATCH".into()),
                path_prefix: format!("/v1.0/groups/{broad_group}"),
                count: 1,
                action: FaultAction::Status {
                    status: 429,
                    retry_after: Some("1".into()),
                    code: None,
                },
            },
        )
        .await
        .unwrap();
    // A Fast device is deleted after the plan, before its chunk runs.
    let fast: Vec<&String> = report
        .placements
        .iter()
        .filter(|(_, r)| *r == Ring::Fast)
        .map(|(d, _)| d)
        .collect();
    assert_eq!(fast.len(), 9);
    let deleted = fast[0].clone();
    rig.control
        .remove_object(&rig.tenant_id, "devices", &deleted)
        .await
        .unwrap();

    let reached = work_until_members(&rig, before + WINDOWS - 1, Duration::from_secs(60)).await;
    assert_eq!(reached, before + WINDOWS - 1);

    let log = rig.requests().await;
    let patches = member_patches(&log);
    // The throttled chunk: answered 429 once, then 204; every other Broad chunk sent exactly once.
    let broad: Vec<&&RequestLogEntry> = patches.iter().filter(|p| p.path.ends_with(&broad_group)).collect();
    let mut per_body: HashMap<Vec<String>, Vec<u16>> = HashMap::new();
    for p in &broad {
        per_body.entry(binds(p)).or_default().push(p.status);
    }
    assert_eq!(per_body.len(), 5, "five Broad chunks");
    let retried: Vec<_> = per_body.iter().filter(|(_, s)| s.len() > 1).collect();
    assert_eq!(
        retried.len(),
        1,
        "only the throttled chunk was sent again: {per_body:?}"
    );
    assert_eq!(retried[0].1, &vec![429, 204]);
    assert!(per_body.values().filter(|s| s.len() == 1).all(|s| s == &vec![204]));

    // The Fast chunk was refused whole (404 for the deleted device), then added one by one.
    let fast_group = mdops_handlers::rings::ring_group(&graph, Ring::Fast).await.unwrap();
    let fast_patches: Vec<_> = patches.iter().filter(|p| p.path.ends_with(&fast_group)).collect();
    assert_eq!(fast_patches[0].status, 404);
    assert_eq!(binds(fast_patches[0]).len(), 9);
    let singles: Vec<_> = fast_patches[1..].iter().map(|p| (binds(p).len(), p.status)).collect();
    assert_eq!(singles.len(), 9, "{singles:?}");
    assert_eq!(singles.iter().filter(|(n, s)| *n == 1 && *s == 204).count(), 8);
    assert_eq!(singles.iter().filter(|(n, s)| *n == 1 && *s == 404).count(), 1);

    let shown = show(&graph, &tenant.settings.ring_shares).await.unwrap();
    assert!(shown.unplaced.is_empty() && shown.in_several.is_empty());
    assert_eq!(shown.windows_devices, WINDOWS - 1);
    let audit = rig
        .deps
        .store
        .audit_page(&format!("rings:{}", rig.tenant_id), None, 100)
        .await
        .unwrap();
    let gone: Vec<String> = audit
        .entries
        .iter()
        .flat_map(|e| e.detail["gone"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(gone, vec![deleted]);
    // Nothing dead-lettered: the deleted device failed alone and the chunk finished.
    assert!(
        rig.deps
            .queue
            .dead_letters(QueueName::Onboarding, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_moves_a_device_into_test_audited_and_new_devices_land_without_moving_others() {
    const WINDOWS: usize = 200;
    let rig = Rig::start(seeded(WINDOWS)).await;
    let tid: TenantId = rig.tenant_id.parse().unwrap();
    let (tenant, graph) = rig.deps.reach.tenant(&tid).await.unwrap();
    let before = memberships(&rig).await;
    sync(&rig.deps, &tenant, &graph, "test", false).await.unwrap();
    assert_eq!(
        work_until_members(&rig, before + WINDOWS, Duration::from_secs(60)).await,
        before + WINDOWS
    );
    let first = show(&graph, &tenant.settings.ring_shares).await.unwrap();
    assert_eq!(
        first.counts()[&Ring::Test],
        0,
        "Test stays empty unless an operator marks devices"
    );

    // A device in two rings is reported.
    let state = mdops_handlers::rings::read_state(&graph).await.unwrap();
    let device = state.devices[0].id.clone();
    let was: Vec<Ring> = state.membership[&device.to_ascii_lowercase()].clone();
    let other = if was[0] == Ring::Broad { Ring::Fast } else { Ring::Broad };
    graph
        .patch(
            &format!("groups/{}", state.groups[&other]),
            &serde_json::json!({ "members@odata.bind": [graph.url(&format!("directoryObjects/{device}"), &Default::default()).unwrap().to_string()] }),
        )
        .await
        .unwrap();
    let twice = show(&graph, &tenant.settings.ring_shares).await.unwrap();
    assert_eq!(twice.in_several.len(), 1);
    assert_eq!(twice.in_several[0].device_id, device);

    let moved = move_device(&rig.deps, &graph, &device, Ring::Test, "cli:alice")
        .await
        .unwrap();
    assert!(moved.changed);
    let after = show(&graph, &tenant.settings.ring_shares).await.unwrap();
    assert!(after.in_several.is_empty() && after.unplaced.is_empty());
    assert_eq!(after.counts()[&Ring::Test], 1);
    let audit = rig
        .deps
        .store
        .audit_page(&format!("rings:{}", rig.tenant_id), None, 500)
        .await
        .unwrap();
    let entry = audit
        .entries
        .iter()
        .find(|e| e.action == "ring.move")
        .expect("move audited");
    assert_eq!(entry.actor, "cli:alice");
    assert_eq!(entry.detail["device_id"], device);
    assert_eq!(entry.detail["to"], "test");
    // Moving again changes nothing.
    assert!(
        !move_device(&rig.deps, &graph, &device, Ring::Test, "cli:alice")
            .await
            .unwrap()
            .changed
    );

    // New devices: only they are placed; nobody placed moves.
    let placed_before: BTreeMap<String, Vec<Ring>> = mdops_handlers::rings::read_state(&graph)
        .await
        .unwrap()
        .membership
        .into_iter()
        .collect();
    let extra = tenant_sim::seeds::ObjectsSeed {
        devices: windows_devices("NEWPC", 20),
        ..Default::default()
    };
    rig.control.add_objects(&rig.tenant_id, &extra).await.unwrap();
    let report = sync(&rig.deps, &tenant, &graph, "test", false).await.unwrap();
    assert_eq!(report.placed.values().sum::<usize>(), 20);
    let now = memberships(&rig).await;
    assert_eq!(
        work_until_members(&rig, now + 20, Duration::from_secs(60)).await,
        now + 20
    );
    let placed_after = mdops_handlers::rings::read_state(&graph).await.unwrap().membership;
    for (id, rings) in &placed_before {
        assert_eq!(&placed_after[id], rings, "device {id} moved");
    }
    let last = show(&graph, &tenant.settings.ring_shares).await.unwrap();
    assert!(last.unplaced.is_empty() && last.in_several.is_empty());
}
