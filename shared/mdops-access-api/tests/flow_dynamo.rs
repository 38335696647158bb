//! The access state machine on DynamoDB + SQS (the emulator): the happy path through elevation
//! and removal at expiry, the approval window, and two approvers racing for one request.

mod support;

use mdops_core::access::{AccessState, EffectStatus};
use mdops_handlers::access::expiry_pass;
use support::{ALICE, BOB, Backend, CAROL, Rig};

#[tokio::test]
async fn access_on_dynamodb_and_sqs() {
    let rig = Rig::start(Backend::Aws).await;
    let id = rig.request(60).await;
    let (status, body) = rig
        .call(
            "POST",
            &format!("/requests/{id}/approve"),
            Some(&rig.member(BOB).await),
            None,
        )
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("approved")), "{body}");
    rig.drain_until(|r| r.state == AccessState::Active && r.mails_sent.len() == 2, &id)
        .await;
    let guest = rig.stored(&id).await.guest_id.unwrap();
    assert!(rig.soc_members().await.contains(&guest));

    // A second request that nobody approves in time.
    let late = rig.request(30).await;
    rig.clock.advance(chrono::Duration::minutes(61));
    let (status, body) = rig
        .call(
            "POST",
            &format!("/requests/{late}/approve"),
            Some(&rig.member(CAROL).await),
            None,
        )
        .await;
    assert_eq!((status, body["state"].as_str()), (409, Some("expired")), "{body}");
    let report = expiry_pass(&rig.deps, 100).await.unwrap();
    assert_eq!((report.ended, report.expired), (1, 1), "{report:?}");
    rig.drain_until(|r| support::removed(r) && r.mails_sent.len() == 3, &id)
        .await;
    rig.settle_removal(&id).await;
    let r = rig.stored(&id).await;
    assert_eq!(
        (r.state, r.removal.unwrap().status),
        (AccessState::Ended, EffectStatus::Done)
    );
    assert!(!rig.soc_members().await.contains(&guest));
    assert_eq!(rig.stored(&late).await.state, AccessState::Expired);
    assert!(
        rig.mail()
            .await
            .iter()
            .any(|m| m.to == vec![ALICE.to_string()] && m.subject.contains("ended"))
    );
}

#[tokio::test]
async fn racing_approvers_on_dynamodb_are_both_counted_once() {
    let rig = Rig::start_with(Backend::Aws, |s| s.approvals_required = 2).await;
    let id = rig.request(30).await;
    let path = format!("/requests/{id}/approve");
    let (bob, carol) = (rig.member(BOB).await, rig.member(CAROL).await);
    let (a, b) = tokio::join!(
        rig.call("POST", &path, Some(&bob), None),
        rig.call("POST", &path, Some(&carol), None)
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let r = rig.stored(&id).await;
    assert_eq!(r.state, AccessState::Approved);
    let mut by: Vec<_> = r.approvals.iter().map(|a| a.by.clone()).collect();
    by.sort();
    assert_eq!(by, vec![BOB.to_string(), CAROL.to_string()]);
}
