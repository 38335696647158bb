//! The access flow against the simulated tenants on the SQLite store: happy path with both mails
//! and the guest in the group then removed at expiry (time moved, not slept), the two-key rules,
//! the approval window, deny and cancel, early revoke, and revocation through throttling, 5xx and
//! a dead letter.

mod support;

use mdops_core::access::{AccessState, EffectStatus};
use mdops_core::queue::QueueName;
use mdops_handlers::access::expiry_pass;
use serde_json::json;
use support::{ALICE, BOB, Backend, CAROL, EVE, Rig, SOC, TEAM_ALIAS, removed};
use tenant_sim::faults::{FaultAction, FaultSpec};

fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

/// Approves `id` as Bob and works the queue until the guest is in the group.
async fn approve_and_elevate(rig: &Rig, id: &str) {
    let bob = rig.member(BOB).await;
    let (status, body) = rig
        .call("POST", &format!("/requests/{id}/approve"), Some(&bob), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "approved");
    rig.drain_until(|r| r.state == AccessState::Active, id).await;
}

#[tokio::test]
async fn happy_path_mails_elevates_and_removes_at_expiry() {
    let rig = Rig::start(Backend::Sqlite).await;
    let id = rig.request(60).await;
    rig.drain().await;
    let mail = rig.mail().await;
    let announce = mail
        .iter()
        .find(|m| m.to == vec![TEAM_ALIAS.to_string()])
        .expect("the team alias is mailed");
    assert!(announce.subject.contains(&id));
    for fact in [
        ALICE,
        SOC,
        "investigate alert 42",
        "INC0042",
        "60 minutes",
        rig.customer.as_str(),
    ] {
        assert!(
            announce.body.contains(fact),
            "announcement lacks {fact}: {}",
            announce.body
        );
    }

    approve_and_elevate(&rig, &id).await;
    let r = rig.stored(&id).await;
    assert_eq!(r.state, AccessState::Active);
    let guest = r.guest_id.clone().expect("guest recorded");
    assert!(rig.soc_members().await.contains(&guest), "guest in the role group");
    let guests = rig.control.objects(&rig.customer, "users").await.unwrap();
    let g = guests.iter().find(|u| u["id"] == guest.as_str()).expect("guest user");
    assert_eq!(g["userType"], "Guest");
    assert!(
        rig.mail()
            .await
            .iter()
            .any(|m| m.to == vec![ALICE.to_string()] && m.subject.contains("approved"))
    );

    // Not yet: nothing happens before the end.
    rig.clock.advance(minutes(59));
    assert_eq!(expiry_pass(&rig.deps, 100).await.unwrap().ended, 0);
    rig.clock.advance(minutes(2));
    let report = expiry_pass(&rig.deps, 100).await.unwrap();
    assert_eq!(report.ended, 1, "{report:?}");
    rig.drain_until(removed, &id).await;
    assert!(!rig.soc_members().await.contains(&guest), "guest removed at expiry");
    let r = rig.stored(&id).await;
    assert_eq!(r.removal.as_ref().unwrap().status, EffectStatus::Verifying);
    // Re-checked until no late add can arrive, then done.
    rig.settle_removal(&id).await;
    let r = rig.stored(&id).await;
    assert_eq!(r.state, AccessState::Ended);
    assert_eq!(r.removal.as_ref().unwrap().status, EffectStatus::Done);
    assert!(
        rig.mail()
            .await
            .iter()
            .any(|m| m.to == vec![ALICE.to_string()] && m.subject.contains("ended"))
    );
    assert_eq!(r.mails_sent.len(), 3, "requested, approved, ended: {:?}", r.mails_sent);
    // Nothing left to do: later passes find nothing.
    rig.clock.advance(minutes(60));
    assert_eq!(expiry_pass(&rig.deps, 100).await.unwrap(), Default::default());

    let (status, body) = rig
        .call("GET", &format!("/requests/{id}"), Some(&rig.member(CAROL).await), None)
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = body["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in [
        "requested",
        "approved",
        "mail.sent",
        "elevated",
        "ended",
        "removed",
        "removal.verified",
    ] {
        assert!(actions.contains(&a), "audit lacks {a}: {actions:?}");
    }
    assert_eq!(actions.first(), Some(&"removal.verified"), "newest first: {actions:?}");
    let approved = body["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "approved")
        .unwrap();
    let bob = rig.validator.validate(&rig.member(BOB).await).await.unwrap();
    assert_eq!(approved["actor"], format!("user:{}", bob.id()), "by object id");
    assert_eq!(approved["detail"]["by"], BOB, "the name only for display");
}

#[tokio::test]
async fn self_approval_and_non_members_are_refused_and_each_person_counts_once() {
    let rig = Rig::start_with(Backend::Sqlite, |s| s.approvals_required = 2).await;
    let id = rig.request(30).await;
    let path = format!("/requests/{id}/approve");
    let (status, body) = rig.call("POST", &path, Some(&rig.member(ALICE).await), None).await;
    assert_eq!(status, 403, "self-approval: {body}");
    let eve = rig.token(EVE, &["Reader"]).await;
    let (status, body) = rig.call("POST", &path, Some(&eve), None).await;
    assert_eq!(status, 403, "non-member: {body}");
    let (status, _) = rig
        .call(
            "POST",
            "/requests",
            Some(&eve),
            Some(
                json!({"tenant": rig.customer, "role_group": SOC, "justification": "x", "ticket": "y",
                        "duration_minutes": 30}),
            ),
        )
        .await;
    assert_eq!(status, 403, "non-members cannot request");
    let (status, body) = rig.call("POST", &path, Some(&rig.member(BOB).await), None).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("pending")),
        "one of two keys"
    );
    let (status, body) = rig.call("POST", &path, Some(&rig.member(BOB).await), None).await;
    assert_eq!(status, 409, "Bob counts once: {body}");
    assert_eq!(body["state"], "pending");
    let (status, body) = rig.call("POST", &path, Some(&rig.member(CAROL).await), None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("approved")), "{body}");
    let r = rig.stored(&id).await;
    assert_eq!(r.approvals.len(), 2);
    assert!(
        !rig.trail(&id).await.iter().any(|a| a.action.ends_with(".refused")),
        "refusals never enter the trail"
    );
    let refused = rig
        .deps
        .store
        .audit(&mdops_core::access::refusals_subject(&id), 100)
        .await
        .unwrap();
    let who: Vec<&str> = refused.iter().map(|a| a.detail["by"].as_str().unwrap()).collect();
    assert_eq!(
        who,
        vec![ALICE, BOB],
        "team members' refusals kept apart; Eve's only logged"
    );
}

#[tokio::test]
async fn approval_after_the_window_is_refused_and_the_request_expires() {
    let rig = Rig::start(Backend::Sqlite).await;
    let id = rig.request(30).await;
    rig.clock.advance(minutes(61));
    let (status, body) = rig
        .call(
            "POST",
            &format!("/requests/{id}/approve"),
            Some(&rig.member(BOB).await),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["state"], "expired");
    assert_eq!(expiry_pass(&rig.deps, 100).await.unwrap().expired, 1);
    rig.drain().await;
    assert_eq!(rig.stored(&id).await.state, AccessState::Expired);
    assert!(
        rig.mail()
            .await
            .iter()
            .any(|m| m.to == vec![ALICE.to_string()] && m.subject.contains("expired"))
    );
    let (status, body) = rig
        .call(
            "POST",
            &format!("/requests/{id}/approve"),
            Some(&rig.member(BOB).await),
            None,
        )
        .await;
    assert_eq!((status, body["state"].as_str()), (409, Some("expired")));
}

#[tokio::test]
async fn deny_and_cancel() {
    let rig = Rig::start(Backend::Sqlite).await;
    let bob = rig.member(BOB).await;
    let first = rig.request(30).await;
    let (status, body) = rig
        .call("POST", &format!("/requests/{first}/deny"), Some(&bob), Some(json!({})))
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("reason")), "{body}");
    let (status, body) = rig
        .call(
            "POST",
            &format!("/requests/{first}/deny"),
            Some(&bob),
            Some(json!({"reason": "no incident open"})),
        )
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("denied")), "{body}");
    rig.drain().await;
    let denial = rig
        .mail()
        .await
        .into_iter()
        .find(|m| m.subject.contains("denied"))
        .expect("denial mailed");
    assert_eq!(denial.to, vec![ALICE.to_string()]);
    assert!(denial.body.contains("no incident open"));

    let second = rig.request(30).await;
    let (status, _) = rig
        .call("POST", &format!("/requests/{second}/cancel"), Some(&bob), None)
        .await;
    assert_eq!(status, 403, "only the requester cancels");
    let alice = rig.member(ALICE).await;
    let (status, body) = rig
        .call("POST", &format!("/requests/{second}/cancel"), Some(&alice), None)
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("cancelled")));
    let (status, body) = rig
        .call("POST", &format!("/requests/{second}/approve"), Some(&bob), None)
        .await;
    assert_eq!((status, body["state"].as_str()), (409, Some("cancelled")));

    let (status, body) = rig.call("GET", "/requests?state=cancelled", Some(&bob), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![second.as_str()]);
    let (_, body) = rig
        .call(
            "GET",
            &format!("/requests?requester={ALICE}&tenant={}", rig.customer),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(body["requests"].as_array().unwrap().len(), 2);
    let (status, _) = rig.call("GET", "/requests?state=bogus", Some(&bob), None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let rig = Rig::start(Backend::Sqlite).await;
    let alice = rig.member(ALICE).await;
    let base = json!({"tenant": rig.customer, "role_group": SOC, "justification": "why", "ticket": "INC1",
                      "duration_minutes": 30});
    for (field, value) in [
        ("duration_minutes", json!(9 * 60)),
        ("role_group", json!("Global Administrators")),
        ("justification", json!("")),
        ("ticket", json!("  ")),
        ("tenant", json!("not-a-guid")),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let (status, answer) = rig.call("POST", "/requests", Some(&alice), Some(body)).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(field), "{field}: {answer}");
    }
    let (status, _) = rig
        .call("POST", "/requests", Some(&alice), Some(json!({"tenant": 1})))
        .await;
    assert_eq!(status, 400);
    let (status, _) = rig.call("GET", "/requests/nope", Some(&alice), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn early_revoke_removes_the_guest() {
    let rig = Rig::start(Backend::Sqlite).await;
    let id = rig.request(120).await;
    approve_and_elevate(&rig, &id).await;
    let guest = rig.stored(&id).await.guest_id.unwrap();
    let eve = rig.token(EVE, &["Reader"]).await;
    let (status, _) = rig
        .call("POST", &format!("/requests/{id}/revoke"), Some(&eve), None)
        .await;
    assert_eq!(status, 403);
    let (status, body) = rig
        .call(
            "POST",
            &format!("/requests/{id}/revoke"),
            Some(&rig.member(CAROL).await),
            Some(json!({"reason": "work done"})),
        )
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("revoked")), "{body}");
    rig.drain_until(removed, &id).await;
    assert!(!rig.soc_members().await.contains(&guest));
    let r = rig.stored(&id).await;
    assert_eq!(
        (r.state, r.reason.as_deref()),
        (AccessState::Revoked, Some("work done"))
    );
    rig.settle_removal(&id).await;
    // The end timer no longer applies.
    rig.clock.advance(minutes(180));
    assert_eq!(expiry_pass(&rig.deps, 100).await.unwrap(), Default::default());
}

#[tokio::test]
async fn revocation_under_throttling_and_5xx_completes() {
    let rig = Rig::start(Backend::Sqlite).await;
    let id = rig.request(60).await;
    approve_and_elevate(&rig, &id).await;
    let r = rig.stored(&id).await;
    let (group, guest) = (r.group_id.unwrap(), r.guest_id.unwrap());
    let path = format!("/v1.0/groups/{group}/members");
    for action in [
        FaultAction::Status {
            status: 429,
            retry_after: Some("1".into()),
            code: None,
        },
        FaultAction::Status {
            status: 503,
            retry_after: None,
            code: None,
        },
    ] {
        rig.control
            .add_fault(
                &rig.customer,
                &FaultSpec {
                    method: Some("DELETE".into()),
                    path_prefix: path.clone(),
                    count: 2,
                    action,
                },
            )
            .await
            .unwrap();
    }
    rig.clock.advance(minutes(61));
    assert_eq!(expiry_pass(&rig.deps, 100).await.unwrap().ended, 1);
    rig.drain_until(removed, &id).await;
    let r = rig.stored(&id).await;
    let removal = r.removal.unwrap();
    assert_eq!(removal.status, EffectStatus::Verifying);
    assert!(removal.attempts >= 2, "took a redelivery: {removal:?}");
    assert!(!rig.soc_members().await.contains(&guest));
    let retries = rig
        .trail(&id)
        .await
        .into_iter()
        .filter(|a| a.action == "remove.retry")
        .count();
    assert!(retries >= 1, "the failed attempt is visible in the audit");
    assert!(
        rig.control.faults(&rig.customer).await.unwrap().is_empty(),
        "all faults were hit"
    );
}

#[tokio::test]
async fn a_removal_that_keeps_failing_is_dead_lettered_alarmed_and_sent_again() {
    let rig = Rig::start(Backend::Sqlite).await;
    let id = rig.request(60).await;
    approve_and_elevate(&rig, &id).await;
    let r = rig.stored(&id).await;
    let (group, guest) = (r.group_id.unwrap(), r.guest_id.unwrap());
    // A permanent refusal (e.g. consent withdrawn) until an operator fixes it.
    rig.control
        .add_fault(
            &rig.customer,
            &FaultSpec {
                method: Some("DELETE".into()),
                path_prefix: format!("/v1.0/groups/{group}/members"),
                count: 100,
                action: FaultAction::Status {
                    status: 403,
                    retry_after: None,
                    code: Some("Authorization_RequestDenied".into()),
                },
            },
        )
        .await
        .unwrap();
    let (status, _) = rig
        .call(
            "POST",
            &format!("/requests/{id}/revoke"),
            Some(&rig.member(BOB).await),
            None,
        )
        .await;
    assert_eq!(status, 200);
    rig.drain_until(|r| r.removal.as_ref().unwrap().status == EffectStatus::Failed, &id)
        .await;
    let dead = rig.deps.queue.dead_letters(QueueName::Access, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let failure = dead[0].failure.as_ref().unwrap();
    assert_eq!(failure.step.as_deref(), Some("remove"));
    assert!(failure.reason.contains("Authorization_RequestDenied"), "{failure:?}");
    assert!(rig.trail(&id).await.iter().any(|a| a.action == "remove.dead_lettered"));
    assert!(
        rig.soc_members().await.contains(&guest),
        "still a member: the failure is visible, not hidden"
    );

    // The operator fixes it; the re-check sends the removal again without anyone replaying.
    rig.control.clear_faults(&rig.customer).await.unwrap();
    rig.clock.advance(minutes(14));
    assert_eq!(expiry_pass(&rig.deps, 100).await.unwrap().removals_resent, 0);
    rig.clock.advance(minutes(2));
    assert_eq!(expiry_pass(&rig.deps, 100).await.unwrap().removals_resent, 1);
    rig.drain_until(|r| !r.removal_outstanding(), &id).await;
    assert!(!rig.soc_members().await.contains(&guest));
    // Past the late-add window already: the first success settles it.
    assert_eq!(rig.stored(&id).await.removal.unwrap().status, EffectStatus::Done);
}

#[tokio::test]
async fn a_mail_failure_never_blocks_the_decision() {
    let rig = Rig::start(Backend::Sqlite).await;
    rig.control
        .add_fault(
            &rig.provider,
            &FaultSpec {
                method: Some("POST".into()),
                path_prefix: "/v1.0/users".into(),
                count: 3,
                action: FaultAction::Status {
                    status: 503,
                    retry_after: None,
                    code: None,
                },
            },
        )
        .await
        .unwrap();
    let id = rig.request(30).await;
    // The request is recorded and can be approved while its announcement is still failing.
    approve_and_elevate(&rig, &id).await;
    rig.drain_until(|r| r.mails_sent.len() == 2, &id).await;
    let mail = rig.mail().await;
    assert_eq!(
        mail.iter().filter(|m| m.to == vec![TEAM_ALIAS.to_string()]).count(),
        1,
        "mailed once"
    );
    assert!(rig.trail(&id).await.iter().any(|a| a.action == "mail.requested.retry"));
}

#[tokio::test]
async fn the_embedded_worker_runs_the_side_effects_and_its_tick_ends_access() {
    let rig = Rig::start(Backend::Sqlite).await;
    let settings = mdops_handlers::worker::WorkerSettings {
        wait: std::time::Duration::from_millis(200),
        tick: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    let worker = mdops_handlers::worker::Worker::new(rig.deps.clone(), settings);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(async move { worker.run(&[QueueName::Access], stop_rx).await });

    let id = rig.request(30).await;
    let (status, _) = rig
        .call(
            "POST",
            &format!("/requests/{id}/approve"),
            Some(&rig.member(BOB).await),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let until = |pred: fn(&mdops_core::access::AccessRequest) -> bool| {
        let rig = &rig;
        let id = id.clone();
        async move {
            let deadline = tokio::time::Instant::now() + support::WAIT;
            loop {
                let r = rig.stored(&id).await;
                if pred(&r) {
                    return r;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "worker did not get there: {r:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let active = until(|r| r.state == AccessState::Active && r.mails_sent.len() == 2).await;
    let guest = active.guest_id.unwrap();
    assert!(rig.soc_members().await.contains(&guest));
    // Only the clock moves; the worker's own tick notices the end.
    rig.clock.advance(minutes(31));
    let ended = until(|r| r.state == AccessState::Ended && removed(r) && r.mails_sent.len() == 3).await;
    assert!(ended.removal.is_some());
    assert!(!rig.soc_members().await.contains(&guest));
    // The tick keeps re-checking, and settles the removal once no late add can arrive.
    rig.clock.advance(minutes(11));
    until(|r| !r.removal_outstanding()).await;
    stop_tx.send(true).unwrap();
    working.await.unwrap();
}

#[tokio::test]
async fn the_guest_is_invited_once_and_found_by_mail_afterwards() {
    let rig = Rig::start(Backend::Sqlite).await;
    let first = rig.request(30).await;
    approve_and_elevate(&rig, &first).await;
    let second = rig.request(30).await;
    approve_and_elevate(&rig, &second).await;
    let (a, b) = (rig.stored(&first).await, rig.stored(&second).await);
    assert_eq!(a.guest_id, b.guest_id, "the same guest account");
    let found = |trail: Vec<mdops_core::store::AuditEntry>| {
        trail
            .into_iter()
            .find(|e| e.action == "elevated")
            .map(|e| e.detail["guest"].clone())
    };
    assert_eq!(found(rig.trail(&first).await), Some(json!("invited")));
    assert_eq!(found(rig.trail(&second).await), Some(json!("recorded")));
    let guests = rig.control.objects(&rig.customer, "users").await.unwrap();
    assert_eq!(guests.iter().filter(|u| u["userType"] == "Guest").count(), 1);
}

#[tokio::test]
async fn access_revoked_before_its_elevation_ran_never_elevates() {
    let rig = Rig::start(Backend::Sqlite).await;
    let id = rig.request(30).await;
    let bob = rig.member(BOB).await;
    let (status, _) = rig
        .call("POST", &format!("/requests/{id}/approve"), Some(&bob), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = rig
        .call("POST", &format!("/requests/{id}/revoke"), Some(&bob), None)
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("revoked")), "{body}");
    rig.settle_removal(&id).await;
    let r = rig.stored(&id).await;
    assert_eq!(r.state, AccessState::Revoked);
    assert!(rig.soc_members().await.is_empty(), "nobody was put in the group");
}

#[tokio::test]
async fn a_revocation_during_the_elevation_still_removes_the_guest() {
    let rig = Rig::start(Backend::Sqlite).await;
    // Slow Graph in the customer tenant, so the revocation lands while the guest is being added.
    let mut knobs = rig.control.knobs(&rig.customer).await.unwrap();
    knobs.latency_ms = 300;
    rig.control.set_knobs(&rig.customer, &knobs).await.unwrap();
    let id = rig.request(30).await;
    let bob = rig.member(BOB).await;
    let (status, _) = rig
        .call("POST", &format!("/requests/{id}/approve"), Some(&bob), None)
        .await;
    assert_eq!(status, 200);
    // Revoke once the elevation is under way (its invitation has reached the tenant).
    let revoke = async {
        let query = tenant_sim::store::RequestLogQuery {
            tenant: Some(rig.customer.clone()),
            method: Some("POST".into()),
            path_prefix: Some("/v1.0/invitations".into()),
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + support::WAIT;
        while rig.control.requests(&query).await.unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the elevation never started");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        rig.call("POST", &format!("/requests/{id}/revoke"), Some(&bob), None)
            .await
    };
    let (_, (status, _)) = tokio::join!(rig.drain_until(|r| r.state == AccessState::Revoked, &id), revoke);
    assert_eq!(status, 200);
    rig.drain_until(removed, &id).await;
    let trail = rig.trail(&id).await;
    let elevated = trail
        .iter()
        .find(|e| e.action == "elevated.after_end")
        .expect("the elevation completed");
    assert_eq!(
        elevated.detail["state"], "revoked",
        "the elevation saw the revocation: {trail:?}"
    );
    assert!(
        rig.soc_members().await.is_empty(),
        "the guest added after the revocation was removed"
    );
    assert_eq!(rig.stored(&id).await.state, AccessState::Revoked);
}

/// A client that retries `POST /requests` with its `Idempotency-Key` (its answer was lost) files
/// one request and the team is mailed once; the key reused for another request is refused.
#[tokio::test]
async fn a_retry_with_its_idempotency_key_files_one_request_and_mails_once() {
    let rig = Rig::start(Backend::Sqlite).await;
    let alice = rig.member(ALICE).await;
    let body = json!({
        "tenant": rig.customer, "role_group": SOC, "justification": "investigate alert 42",
        "ticket": "INC0042", "duration_minutes": 30,
    });
    let post = |body: serde_json::Value| {
        rig.http
            .post(format!("{}/requests", rig.api))
            .bearer_auth(&alice)
            .header("Idempotency-Key", "retry-7f3a")
            .json(&body)
            .send()
    };
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = post(body.clone()).await.unwrap();
    assert_eq!(again.status().as_u16(), 200, "a retry answers the request it filed");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let mut other = body.clone();
    other["ticket"] = "INC0043".into();
    let reused = post(other).await.unwrap();
    assert_eq!(reused.status().as_u16(), 422, "the key names another request");

    rig.drain().await;
    let (status, list) = rig.call("GET", "/requests", Some(&rig.member(CAROL).await), None).await;
    assert_eq!(status, 200, "{list}");
    let listed = list["requests"].as_array().expect("a list").len();
    assert_eq!(listed, 1, "one request filed: {list}");
    let announcements = rig
        .mail()
        .await
        .iter()
        .filter(|m| m.to == vec![TEAM_ALIAS.to_string()])
        .count();
    assert_eq!(announcements, 1, "the team is mailed once");
}

/// Two live grants of one engineer to one role group: ending the first keeps the guest in the
/// group (the second still holds the membership); ending the second removes it.
#[tokio::test]
async fn ending_one_grant_keeps_the_membership_another_live_grant_holds() {
    let rig = Rig::start(Backend::Sqlite).await;
    let short = rig.request(30).await;
    approve_and_elevate(&rig, &short).await;
    let long = rig.request(120).await;
    approve_and_elevate(&rig, &long).await;
    let guest = rig.stored(&short).await.guest_id.expect("guest recorded");
    assert_eq!(
        rig.stored(&long).await.guest_id.as_deref(),
        Some(guest.as_str()),
        "one guest"
    );

    rig.clock.advance(minutes(31));
    let report = expiry_pass(&rig.deps, 100).await.unwrap();
    assert_eq!(report.ended, 1, "{report:?}");
    rig.settle_removal(&short).await;
    assert_eq!(rig.stored(&short).await.state, AccessState::Ended);
    assert!(
        rig.soc_members().await.contains(&guest),
        "the other live grant still holds the membership"
    );

    rig.clock.advance(minutes(90));
    let report = expiry_pass(&rig.deps, 100).await.unwrap();
    assert_eq!(report.ended, 1, "{report:?}");
    rig.settle_removal(&long).await;
    assert!(!rig.soc_members().await.contains(&guest), "no grant holds it any more");
}

/// A *member* account of the customer tenant that carries the engineer's address in `mail` (any
/// user administrator there can set it) is never taken for the engineer's guest: guests are looked
/// up among `userType eq 'Guest'` only, so mdops invites a guest of its own and the member stays
/// out of the role group.
#[tokio::test]
async fn a_member_account_carrying_the_engineers_address_is_never_elevated() {
    use tenant_sim::seeds::UserSeed;
    let rig = Rig::start(Backend::Sqlite).await;
    let impostor = uuid::Uuid::new_v4();
    let mut seed = UserSeed::member("impostor", None);
    seed.id = Some(impostor);
    rig.control
        .add_objects(
            &rig.customer,
            &tenant_sim::seeds::ObjectsSeed {
                users: vec![seed],
                ..Default::default()
            },
        )
        .await
        .expect("seed the impostor");
    let impostor = impostor.to_string();
    let patch = json!({"mail": ALICE});
    let (_, graph) = rig.deps.reach.tenant(&rig.customer.parse().unwrap()).await.unwrap();
    graph
        .patch(&format!("users/{impostor}"), &patch)
        .await
        .expect("set the impostor's mail");
    let users = rig.control.objects(&rig.customer, "users").await.unwrap();
    let carried = users.iter().find(|u| u["id"] == impostor.as_str()).unwrap();
    assert_eq!(carried["mail"], ALICE, "the impostor carries the engineer's address");

    let id = rig.request(30).await;
    approve_and_elevate(&rig, &id).await;
    let guest = rig.stored(&id).await.guest_id.expect("guest recorded");
    assert_ne!(guest, impostor, "the member account is not the engineer's guest");
    let members = rig.soc_members().await;
    assert!(members.contains(&guest));
    assert!(!members.contains(&impostor), "the impostor is not in the role group");
}

/// The sweep does not trust the records: a guest put back into a role group by hand after its
/// grant ended is removed (and the removal audited), a guest with a live grant is kept, and a
/// member account in the group is never touched.
#[tokio::test]
async fn the_sweep_removes_a_guest_without_a_live_grant_and_keeps_the_rest() {
    use tenant_sim::seeds::{ObjectsSeed, UserSeed};
    let rig = Rig::start(Backend::Sqlite).await;
    let ended = rig.request(30).await;
    approve_and_elevate(&rig, &ended).await;
    let stale_guest = rig.stored(&ended).await.guest_id.expect("guest recorded");
    rig.clock.advance(minutes(31));
    expiry_pass(&rig.deps, 100).await.unwrap();
    rig.settle_removal(&ended).await;
    assert!(!rig.soc_members().await.contains(&stale_guest));

    let carol = rig.member(CAROL).await;
    let (status, filed) = rig
        .call(
            "POST",
            "/requests",
            Some(&carol),
            Some(json!({
                "tenant": rig.customer, "role_group": SOC, "justification": "incident 7",
                "ticket": "INC0007", "duration_minutes": 120,
            })),
        )
        .await;
    assert_eq!(status, 201, "{filed}");
    let live = filed["id"].as_str().unwrap().to_string();
    approve_and_elevate(&rig, &live).await;
    let live_guest = rig.stored(&live).await.guest_id.expect("guest recorded");

    let member = uuid::Uuid::new_v4();
    let mut seed = UserSeed::member("helpdesk", None);
    seed.id = Some(member);
    rig.control
        .add_objects(
            &rig.customer,
            &ObjectsSeed {
                users: vec![seed],
                ..Default::default()
            },
        )
        .await
        .expect("seed a member");
    let member = member.to_string();
    let (_, graph) = rig.deps.reach.tenant(&rig.customer.parse().unwrap()).await.unwrap();
    let group = rig.soc_id().await;
    for by_hand in [&stale_guest, &member] {
        graph.add_group_member(&group, by_hand).await.expect("added by hand");
    }

    let report = mdops_handlers::access::sweep(&rig.deps).await.unwrap();
    assert_eq!((report.removed, report.kept), (1, 1), "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    let members = rig.soc_members().await;
    assert!(!members.contains(&stale_guest), "the guest without a grant is out");
    assert!(members.contains(&live_guest), "the guest with a live grant stays");
    assert!(members.contains(&member), "a member account is never touched");
    let trail = rig
        .deps
        .store
        .audit(&mdops_handlers::access::sweep::sweep_subject(&rig.customer), 10)
        .await
        .unwrap();
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].action, "sweep.removed");
    assert_eq!(trail[0].detail["guest_id"], stale_guest.as_str());
}

/// Elevation goes into the group onboarding recorded, never one found by its display name: a
/// namesake listed first (anyone allowed to create groups can make one) stays empty.
#[tokio::test]
async fn elevation_uses_the_group_onboarding_recorded_not_a_namesake() {
    let rig = Rig::start(Backend::Sqlite).await;
    // The group seeded first becomes the namesake; onboarding's is a second one, recorded.
    let namesake = rig.soc_id().await;
    let made = uuid::Uuid::new_v4();
    rig.control
        .add_objects(
            &rig.customer,
            &tenant_sim::seeds::ObjectsSeed {
                groups: vec![tenant_sim::seeds::GroupSeed {
                    display_name: SOC.into(),
                    id: Some(made),
                    members: Vec::new(),
                    is_assignable_to_role: true,
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    mdops_core::onboarding::role_groups::RoleGroupIds::new(rig.deps.store.as_ref())
        .record(
            &rig.customer.parse().unwrap(),
            mdops_core::onboarding::RoleGroup::Soc,
            &made.to_string(),
            "test-onboarding.2",
            rig.clock.now(),
        )
        .await
        .unwrap();
    let id = rig.request(60).await;
    approve_and_elevate(&rig, &id).await;
    let r = rig.stored(&id).await;
    assert_eq!(r.group_id.as_deref(), Some(made.to_string().as_str()));
    assert!(rig.soc_members().await.contains(r.guest_id.as_ref().unwrap()));
    let (_, graph) = rig.deps.reach.tenant(&rig.customer.parse().unwrap()).await.unwrap();
    assert!(graph.list_group_members(&namesake).await.unwrap().is_empty());
}

/// A tenant whose role group onboarding never recorded (not onboarded, no run in progress): the
/// elevation dead-letters at once with one line saying what to do; nothing is written to Graph.
#[tokio::test]
async fn elevation_into_a_group_onboarding_never_recorded_fails_saying_what_to_do() {
    let rig = Rig::start(Backend::Sqlite).await;
    let soc = rig.soc_id().await;
    rig.deps
        .store
        .transact(vec![mdops_core::store::Write::Delete {
            key: mdops_core::onboarding::role_groups::role_group_key(
                &rig.customer.parse().unwrap(),
                mdops_core::onboarding::RoleGroup::Soc,
            ),
            condition: mdops_core::store::Condition::Any,
        }])
        .await
        .unwrap();
    let id = rig.request(60).await;
    let (status, _) = rig
        .call(
            "POST",
            &format!("/requests/{id}/approve"),
            Some(&rig.member(BOB).await),
            None,
        )
        .await;
    assert_eq!(status, 200);
    rig.drain_until(
        |r| r.elevation.as_ref().is_some_and(|e| e.status == EffectStatus::Failed),
        &id,
    )
    .await;
    let dead = rig.deps.queue.dead_letters(QueueName::Access, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = &dead[0].failure.as_ref().unwrap().reason;
    assert!(
        reason.contains("has no object id recorded") && reason.contains("step role-group:soc"),
        "{reason}"
    );
    assert_eq!(dead[0].failure.as_ref().unwrap().attempts, 1, "permanent: not retried");
    assert!(!reason.contains('\n'));
    let (_, graph) = rig.deps.reach.tenant(&rig.customer.parse().unwrap()).await.unwrap();
    assert!(graph.list_group_members(&soc).await.unwrap().is_empty());
}
