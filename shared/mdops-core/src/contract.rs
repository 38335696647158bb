//! The adapter contract: one generic test suite every [`Queue`], [`Store`] and request-budget
//! ([`crate::budget::RequestBudget`]) implementation must pass, so the embedded (SQLite) and AWS
//! (SQS + DynamoDB) backends behave the same.
//!
//! Each case is a plain async function over a port. An adapter's `tests/contract.rs` instantiates
//! every case as its own `#[tokio::test]` with the macros:
//!
//! ```text
//! // make_queue(settings) -> (Arc<dyn Queue>, Guard); make_store() -> (Arc<dyn Store>, Guard)
//! mdops_core::queue_contract!(make_queue);
//! // corrupt(&guard, &key) writes a row/item under `key` that does not decode.
//! mdops_core::store_contract!(make_store, corrupt);
//! // make_budget() -> (Arc<dyn RequestBudget>, Guard)
//! mdops_core::budget_contract!(make_budget);
//! ```
//!
//! The guard keeps whatever backs the port alive (a temp directory, an emulator handle) for the
//! length of the test. Every test gets fresh resources, so cases never see each other's messages.
//! Time-dependent cases use real visibility timeouts of about one second (SQS counts in whole
//! seconds) and bounded polling, never long sleeps.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::time::Instant;

use crate::queue::{DeadLetterCause, Failure, OutgoingMessage, Queue, QueueError, QueueName, QueueSettings};
use crate::store::{
    AUDIT_PREFIX, AuditEntry, CollectionEntry, Condition, DueEntry, Key, MAX_TRANSACTION_WRITES, NewRecord, Store,
    StoreError, Write, put_if,
};

/// The queue settings every contract case runs with: a small receive limit so redrive is quick to
/// reach, and a default visibility long enough that nothing reappears by accident.
pub const QUEUE_SETTINGS: QueueSettings = QueueSettings {
    max_receive_count: 3,
    default_visibility: Duration::from_secs(30),
};

/// Upper bound for any wait in a case: visibility expiry is 1 s, so 10 s means "broken", not "slow".
const PATIENCE: Duration = Duration::from_secs(10);

/// Visibility used where a case wants a message to come back soon (SQS counts in whole seconds).
const SHORT: Duration = Duration::from_secs(1);

/// Visibility used where a case wants a message to stay hidden for the whole case.
const LONG: Duration = Duration::from_secs(60);

/// Receives from `queue` until `want` messages arrived or [`PATIENCE`] ran out.
async fn receive_n(
    q: &dyn Queue,
    queue: QueueName,
    want: usize,
    visibility: Duration,
) -> Vec<crate::queue::ReceivedMessage> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let max = (want - got.len()).min(10);
        let batch = q
            .receive(queue, max, Duration::from_secs(1), visibility)
            .await
            .expect("receive");
        got.extend(batch);
    }
    got
}

/// A receive that must find nothing right now.
async fn assert_empty_now(q: &dyn Queue, queue: QueueName, why: &str) {
    let got = q.receive(queue, 10, Duration::ZERO, LONG).await.expect("receive");
    assert!(got.is_empty(), "{why}: expected no message, got {got:?}");
}

/// A failure with a time in whole seconds, so every backend round-trips it exactly.
fn failure(reason: &str, attempts: u32) -> Failure {
    Failure {
        reason: reason.to_string(),
        tenant: Some("contoso.onmicrosoft.com".to_string()),
        step: Some("groups.test".to_string()),
        attempts,
        at: Utc::now().trunc_subsecs(0),
    }
}

/// Queue cases.
pub mod queue {
    use super::*;

    /// Sent messages (single and batch) are all delivered, with their bodies, ids and a receive
    /// count of 1; deleted messages never come back.
    pub async fn at_least_once_delivery(q: Arc<dyn Queue>) {
        let q = &*q;
        let one = q
            .send(QueueName::Onboarding, OutgoingMessage::now("{\"n\":1}"))
            .await
            .expect("send");
        let batch = q
            .send_batch(
                QueueName::Onboarding,
                vec![OutgoingMessage::now("{\"n\":2}"), OutgoingMessage::now("{\"n\":3}")],
            )
            .await
            .expect("send_batch");
        assert_eq!(batch.len(), 2, "send_batch returns one id per message");
        let sent: BTreeSet<String> = [one].into_iter().chain(batch).collect();
        assert_eq!(sent.len(), 3, "message ids are unique");

        let got = receive_n(q, QueueName::Onboarding, 3, LONG).await;
        let ids: BTreeSet<String> = got.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids, sent, "every sent message is delivered once while invisible");
        let bodies: BTreeSet<&str> = got.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, BTreeSet::from(["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]));
        assert!(
            got.iter().all(|m| m.receive_count == 1),
            "first delivery counts 1: {got:?}"
        );
        assert_empty_now(q, QueueName::Licences, "other queues are separate").await;

        for m in &got {
            q.delete(QueueName::Onboarding, &m.receipt).await.expect("delete");
        }
        // Make anything that was not really deleted visible at once.
        tokio::time::sleep(SHORT).await;
        assert_empty_now(q, QueueName::Onboarding, "deleted messages are gone").await;
    }

    /// Several consumers at once never get the same message while it is invisible, and together
    /// they get every message.
    pub async fn concurrent_consumers_share_the_work(q: Arc<dyn Queue>) {
        const MESSAGES: usize = 20;
        const CONSUMERS: usize = 4;
        for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(10) {
            let batch = chunk
                .iter()
                .map(|n| OutgoingMessage::now(format!("{{\"n\":{n}}}")))
                .collect();
            q.send_batch(QueueName::Licences, batch).await.expect("send_batch");
        }
        let mut tasks = Vec::new();
        for _ in 0..CONSUMERS {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                let deadline = Instant::now() + PATIENCE;
                let mut empty_rounds = 0;
                while Instant::now() < deadline && empty_rounds < 3 {
                    let got = q
                        .receive(QueueName::Licences, 3, Duration::from_millis(500), LONG)
                        .await;
                    let got = got.expect("receive");
                    if got.is_empty() {
                        empty_rounds += 1;
                    }
                    for m in got {
                        q.delete(QueueName::Licences, &m.receipt).await.expect("delete");
                        seen.push(m.body);
                    }
                }
                seen
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("consumer task"));
        }
        let distinct: BTreeSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), MESSAGES, "every message consumed");
        assert_eq!(all.len(), MESSAGES, "no message delivered twice while invisible");
    }

    /// A long-polling receive returns soon after a message is sent, not at the end of its wait.
    pub async fn long_poll_wakes_on_send(q: Arc<dyn Queue>) {
        let receiver = {
            let q = q.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let got = q.receive(QueueName::Access, 1, Duration::from_secs(8), LONG).await;
                (got.expect("receive"), started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        q.send(QueueName::Access, OutgoingMessage::now("wake"))
            .await
            .expect("send");
        let (got, took) = receiver.await.expect("receiver task");
        assert_eq!(got.len(), 1, "the long poll got the message");
        assert_eq!(got[0].body, "wake");
        assert!(
            took < Duration::from_secs(5),
            "long poll returned after {took:?}, not soon after the send"
        );
    }

    /// A message not deleted within its visibility timeout is delivered again, with a new receipt
    /// and a higher receive count.
    pub async fn visibility_timeout_expiry_redelivers(q: Arc<dyn Queue>) {
        let q = &*q;
        let id = q
            .send(QueueName::Onboarding, OutgoingMessage::now("again"))
            .await
            .expect("send");
        let first = receive_n(q, QueueName::Onboarding, 1, SHORT).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id, id);
        assert_empty_now(q, QueueName::Onboarding, "invisible during its visibility timeout").await;

        let second = receive_n(q, QueueName::Onboarding, 1, LONG).await;
        assert_eq!(second.len(), 1, "redelivered after the visibility timeout");
        assert_eq!(second[0].id, id, "same message id on redelivery");
        assert_eq!(second[0].body, "again");
        assert_eq!(second[0].receive_count, 2);
        assert_ne!(second[0].receipt, first[0].receipt, "each delivery has its own receipt");
        assert_eq!(second[0].sent_at, first[0].sent_at, "sent_at is the first send");
        q.delete(QueueName::Onboarding, &second[0].receipt)
            .await
            .expect("delete");
    }

    /// A delayed message is invisible until its delay passes.
    pub async fn delayed_send(q: Arc<dyn Queue>) {
        let q = &*q;
        let message = OutgoingMessage {
            body: "later".into(),
            delay: Duration::from_secs(2),
        };
        let sent = Instant::now();
        q.send(QueueName::Onboarding, message).await.expect("send");
        assert_empty_now(q, QueueName::Onboarding, "delayed message before its delay").await;
        let got = receive_n(q, QueueName::Onboarding, 1, LONG).await;
        assert_eq!(got.len(), 1, "delayed message arrives");
        assert!(
            sent.elapsed() >= Duration::from_millis(1500),
            "arrived after {:?}",
            sent.elapsed()
        );
    }

    /// Changing visibility postpones a retry (or makes the message visible at once with zero).
    pub async fn change_visibility_delays(q: Arc<dyn Queue>) {
        let q = &*q;
        q.send(QueueName::Access, OutgoingMessage::now("retry me"))
            .await
            .expect("send");
        let got = receive_n(q, QueueName::Access, 1, LONG).await;
        assert_eq!(got.len(), 1);
        q.change_visibility(QueueName::Access, &got[0].receipt, Duration::ZERO)
            .await
            .expect("change_visibility to zero");
        let again = receive_n(q, QueueName::Access, 1, LONG).await;
        assert_eq!(again.len(), 1, "visible at once after change_visibility(0)");
        assert_eq!(again[0].receive_count, 2);

        let changed = Instant::now();
        q.change_visibility(QueueName::Access, &again[0].receipt, SHORT)
            .await
            .expect("change_visibility to 1 s");
        assert_empty_now(q, QueueName::Access, "hidden until the new visibility passes").await;
        let third = receive_n(q, QueueName::Access, 1, LONG).await;
        assert_eq!(third.len(), 1, "visible again after the new visibility");
        assert_eq!(third[0].receive_count, 3);
        assert!(
            changed.elapsed() >= Duration::from_millis(700),
            "came back after {:?}",
            changed.elapsed()
        );
    }

    /// Each receive of the same message counts one more.
    pub async fn receive_count_increments(q: Arc<dyn Queue>) {
        let q = &*q;
        let id = q
            .send(QueueName::Licences, OutgoingMessage::now("count"))
            .await
            .expect("send");
        for expected in 1..=QUEUE_SETTINGS.max_receive_count {
            let got = receive_n(q, QueueName::Licences, 1, LONG).await;
            assert_eq!(got.len(), 1, "delivery {expected}");
            assert_eq!(got[0].id, id);
            assert_eq!(got[0].receive_count, expected);
            q.change_visibility(QueueName::Licences, &got[0].receipt, Duration::ZERO)
                .await
                .expect("change_visibility");
        }
    }

    /// A message refused before it ever entered the queue (a malformed event) goes straight to
    /// the dead-letter queue with its failure, and replays into the source queue like any other.
    pub async fn refused_message_is_kept_with_reason(q: Arc<dyn Queue>) {
        let q = &*q;
        let body = "{\"detail\":{\"tenant_id\":\"not-registered\"}}";
        let why = failure("tenant not-registered is not registered", 0);
        let id = q
            .dead_letter_refused(QueueName::Onboarding, body, &why)
            .await
            .expect("dead_letter_refused");
        assert_empty_now(q, QueueName::Onboarding, "a refused message never enters its queue").await;
        let dead = q.dead_letters(QueueName::Onboarding, 10).await.expect("dead_letters");
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].id, id);
        assert_eq!(dead[0].body, body);
        assert_eq!(dead[0].cause, DeadLetterCause::Failed);
        assert_eq!(dead[0].failure.as_ref(), Some(&why));
        assert_eq!(dead[0].receive_count, 0);
        let replayed = q.replay(QueueName::Onboarding, &[id]).await.expect("replay");
        assert_eq!(replayed.len(), 1);
        let back = receive_n(q, QueueName::Onboarding, 1, LONG).await;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].body, body);
    }

    /// A handler's permanent failure moves the message to the dead-letter queue at once, with the
    /// reason, step, tenant, attempts and time; reading dead letters changes nothing; replay puts
    /// it back with a fresh receive count; purge deletes dead letters for good.
    pub async fn dead_letter_keeps_reason(q: Arc<dyn Queue>) {
        let q = &*q;
        let body = "{\"step\":\"groups.test\"}";
        q.send(QueueName::Onboarding, OutgoingMessage::now(body))
            .await
            .expect("send");
        let got = receive_n(q, QueueName::Onboarding, 1, LONG).await;
        assert_eq!(got.len(), 1);
        let why = failure("Graph 400 Request_BadRequest: displayName is required", 1);
        q.dead_letter(QueueName::Onboarding, &got[0], &why)
            .await
            .expect("dead_letter");
        tokio::time::sleep(SHORT).await;
        assert_empty_now(q, QueueName::Onboarding, "a dead-lettered message leaves its queue").await;

        let dead = q.dead_letters(QueueName::Onboarding, 10).await.expect("dead_letters");
        assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
        let d = &dead[0];
        assert_eq!(d.body, body, "body unchanged");
        assert_eq!(d.source, QueueName::Onboarding);
        assert_eq!(d.cause, DeadLetterCause::Failed);
        assert_eq!(d.failure.as_ref(), Some(&why), "the handler's failure is attached");
        assert_eq!(d.history.last(), Some(&why));
        assert_eq!(d.receive_count, 1);
        let reread = q
            .dead_letters(QueueName::Onboarding, 10)
            .await
            .expect("dead_letters again");
        assert_eq!(reread, dead, "reading dead letters does not change them");
        assert!(
            q.dead_letters(QueueName::Access, 10)
                .await
                .expect("other dlq")
                .is_empty()
        );

        let replayed = q
            .replay(QueueName::Onboarding, &[d.id.clone(), "no-such-id".to_string()])
            .await
            .expect("replay");
        assert_eq!(replayed, vec![d.id.clone()], "only existing dead letters are replayed");
        let back = receive_n(q, QueueName::Onboarding, 1, LONG).await;
        assert_eq!(back.len(), 1, "replayed message is back in its queue");
        assert_eq!(back[0].body, body);
        assert_eq!(back[0].receive_count, 1, "replay starts a fresh receive count");
        assert!(
            q.dead_letters(QueueName::Onboarding, 10)
                .await
                .expect("dead_letters")
                .is_empty()
        );

        q.dead_letter(QueueName::Onboarding, &back[0], &failure("still broken", 2))
            .await
            .expect("dead_letter again");
        let dead = q.dead_letters(QueueName::Onboarding, 10).await.expect("dead_letters");
        assert_eq!(dead.len(), 1);
        let purged = q
            .purge(QueueName::Onboarding, &[dead[0].id.clone()])
            .await
            .expect("purge");
        assert_eq!(purged, vec![dead[0].id.clone()]);
        assert!(
            q.dead_letters(QueueName::Onboarding, 10)
                .await
                .expect("dead_letters")
                .is_empty()
        );
    }

    /// A message that keeps failing (or cannot be decoded) reaches the dead-letter queue after
    /// `max_receive_count` receives, and the last recorded error is still attached.
    pub async fn max_receives_redrive_keeps_last_error(q: Arc<dyn Queue>) {
        let q = &*q;
        q.send(QueueName::Access, OutgoingMessage::now("not json"))
            .await
            .expect("send");
        let mut recorded = Vec::new();
        for attempt in 1..=QUEUE_SETTINGS.max_receive_count {
            let got = receive_n(q, QueueName::Access, 1, LONG).await;
            assert_eq!(got.len(), 1, "delivery {attempt}");
            let f = failure(&format!("message body is not JSON (attempt {attempt})"), attempt);
            q.record_failure(QueueName::Access, &got[0], &f)
                .await
                .expect("record_failure");
            recorded.push(f);
            q.change_visibility(QueueName::Access, &got[0].receipt, Duration::ZERO)
                .await
                .expect("change_visibility");
        }
        // The next receive moves it instead of delivering it.
        let deadline = Instant::now() + PATIENCE;
        let mut dead = Vec::new();
        while dead.is_empty() && Instant::now() < deadline {
            let got = q
                .receive(QueueName::Access, 10, Duration::from_millis(500), LONG)
                .await
                .expect("receive");
            assert!(got.is_empty(), "over the receive limit, not delivered: {got:?}");
            dead = q.dead_letters(QueueName::Access, 10).await.expect("dead_letters");
        }
        assert_eq!(dead.len(), 1, "redriven to the dead-letter queue");
        let d = &dead[0];
        assert_eq!(d.body, "not json");
        assert_eq!(d.cause, DeadLetterCause::MaxReceives);
        assert_eq!(d.failure.as_ref(), recorded.last(), "the last error is findable");
        assert_eq!(d.history, recorded, "every recorded failure, oldest first");
        assert_eq!(d.receive_count, QUEUE_SETTINGS.max_receive_count);
        let replayed = q
            .replay(QueueName::Access, std::slice::from_ref(&d.id))
            .await
            .expect("replay");
        assert_eq!(replayed.len(), 1);
        let back = receive_n(q, QueueName::Access, 1, LONG).await;
        assert_eq!(back.len(), 1, "replayed after redrive");
        assert_eq!(back[0].receive_count, 1);
    }

    /// Dead letters are listed oldest first, `limit` is honoured, and listing loses nothing.
    pub async fn dead_letters_keep_order_and_lose_nothing(q: Arc<dyn Queue>) {
        let q = &*q;
        const N: usize = 5;
        let mut order = Vec::new();
        for n in 0..N {
            q.send(QueueName::Licences, OutgoingMessage::now(format!("dead {n}")))
                .await
                .expect("send");
            let got = receive_n(q, QueueName::Licences, 1, LONG).await;
            assert_eq!(got.len(), 1);
            q.dead_letter(QueueName::Licences, &got[0], &failure(&format!("reason {n}"), 1))
                .await
                .expect("dead_letter");
            order.push(format!("dead {n}"));
            // Distinct dead-lettering times, so "oldest first" is well defined on every backend.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for round in 0..3 {
            let all = q.dead_letters(QueueName::Licences, 10).await.expect("dead_letters");
            let bodies: Vec<String> = all.iter().map(|d| d.body.clone()).collect();
            assert_eq!(bodies, order, "round {round}: all dead letters, oldest first");
            for (n, d) in all.iter().enumerate() {
                assert_eq!(
                    d.failure.as_ref().map(|f| f.reason.as_str()),
                    Some(format!("reason {n}").as_str())
                );
            }
        }
        let two = q
            .dead_letters(QueueName::Licences, 2)
            .await
            .expect("dead_letters limit");
        let bodies: Vec<&str> = two.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, vec!["dead 0", "dead 1"], "limit keeps the oldest");
    }

    /// Requests outside the SQS limits are refused, not truncated.
    pub async fn invalid_requests_are_refused(q: Arc<dyn Queue>) {
        let q = &*q;
        let eleven = (0..11).map(|n| OutgoingMessage::now(n.to_string())).collect();
        let err = q
            .send_batch(QueueName::Onboarding, eleven)
            .await
            .expect_err("11 in a batch");
        assert!(matches!(err, QueueError::Invalid(_)), "{err:?}");
        let err = q
            .send(
                QueueName::Onboarding,
                OutgoingMessage {
                    body: "x".into(),
                    delay: Duration::from_secs(16 * 60),
                },
            )
            .await
            .expect_err("delay over 15 min");
        assert!(matches!(err, QueueError::Invalid(_)), "{err:?}");
        let err = q
            .receive(QueueName::Onboarding, 11, Duration::ZERO, LONG)
            .await
            .expect_err("receive 11");
        assert!(matches!(err, QueueError::Invalid(_)), "{err:?}");
        let err = q
            .receive(QueueName::Onboarding, 0, Duration::ZERO, LONG)
            .await
            .expect_err("receive 0");
        assert!(matches!(err, QueueError::Invalid(_)), "{err:?}");
    }
}

/// Store cases.
pub mod store {
    use super::*;

    fn record(key: &Key, body: serde_json::Value) -> NewRecord {
        NewRecord {
            key: key.clone(),
            body,
            collection: None,
            due: None,
        }
    }

    fn assert_condition_failed(result: Result<(), StoreError>, key: &Key, what: &str) {
        match result {
            Err(StoreError::ConditionFailed { key: k }) => assert_eq!(&k, key, "{what}: error names the key"),
            other => panic!("{what}: expected ConditionFailed for {key}, got {other:?}"),
        }
    }

    /// Put if absent, then update at the version read; stale versions and repeated creates fail
    /// naming the key; `Any` always applies; delete honours its condition.
    pub async fn conditional_writes_and_versions(s: Arc<dyn Store>) {
        let s = &*s;
        let key = Key::new("run#r1", "step#groups");
        assert_eq!(s.get(&key).await.expect("get"), None);
        put_if(
            s,
            record(&key, serde_json::json!({"status": "pending"})),
            Condition::Absent,
        )
        .await
        .expect("create");
        let r = s.get(&key).await.expect("get").expect("created");
        assert_eq!(r.version, 1);
        assert_eq!(r.body["status"], "pending");
        assert_condition_failed(
            put_if(s, record(&key, serde_json::json!({})), Condition::Absent).await,
            &key,
            "create twice",
        );
        put_if(
            s,
            record(&key, serde_json::json!({"status": "running"})),
            Condition::Version(1),
        )
        .await
        .expect("update at v1");
        assert_condition_failed(
            put_if(
                s,
                record(&key, serde_json::json!({"status": "stale"})),
                Condition::Version(1),
            )
            .await,
            &key,
            "update at a stale version",
        );
        put_if(
            s,
            record(&key, serde_json::json!({"status": "done", "ids": ["a", "b"]})),
            Condition::Any,
        )
        .await
        .expect("unconditional put");
        let r = s.get(&key).await.expect("get").expect("exists");
        assert_eq!(r.version, 3);
        assert_eq!(r.body, serde_json::json!({"status": "done", "ids": ["a", "b"]}));
        assert_condition_failed(
            s.transact(vec![Write::Delete {
                key: key.clone(),
                condition: Condition::Version(2),
            }])
            .await,
            &key,
            "delete at a stale version",
        );
        s.transact(vec![Write::Delete {
            key: key.clone(),
            condition: Condition::Version(3),
        }])
        .await
        .expect("delete");
        assert_eq!(s.get(&key).await.expect("get"), None);
        let missing = Key::new("run#r1", "step#missing");
        assert_condition_failed(
            put_if(s, record(&missing, serde_json::json!({})), Condition::Version(1)).await,
            &missing,
            "update of a missing record",
        );
    }

    /// Many tasks creating the same run at once: exactly one succeeds.
    pub async fn run_creation_race(s: Arc<dyn Store>) {
        const TASKS: usize = 8;
        let key = Key::new("run#race", "meta");
        let mut tasks = Vec::new();
        for n in 0..TASKS {
            let s = s.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                put_if(
                    &*s,
                    record(&key, serde_json::json!({ "creator": n })),
                    Condition::Absent,
                )
                .await
            }));
        }
        let mut winners = Vec::new();
        for (n, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Ok(()) => winners.push(n),
                Err(e) => assert_condition_failed(Err(e), &key, "losing creator"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one creator wins: {winners:?}");
        let r = s.get(&key).await.expect("get").expect("created");
        assert_eq!(r.version, 1);
        assert_eq!(r.body["creator"], winners[0]);
    }

    /// Many tasks completing the same step at the same attempt: exactly one wins, and a
    /// transaction that completes a step and releases its dependent applies all or nothing.
    pub async fn conditional_transition_race(s: Arc<dyn Store>) {
        const TASKS: usize = 8;
        let step = Key::new("run#r2", "step#a");
        let dependent = Key::new("run#r2", "step#b");
        put_if(
            &*s,
            record(&step, serde_json::json!({"status": "running", "attempt": 1})),
            Condition::Absent,
        )
        .await
        .expect("create step");
        put_if(
            &*s,
            record(&dependent, serde_json::json!({"status": "blocked"})),
            Condition::Absent,
        )
        .await
        .expect("create dependent");
        let mut tasks = Vec::new();
        for n in 0..TASKS {
            let s = s.clone();
            let (step, dependent) = (step.clone(), dependent.clone());
            tasks.push(tokio::spawn(async move {
                s.transact(vec![
                    Write::Put {
                        record: record(&step, serde_json::json!({"status": "done", "by": n})),
                        condition: Condition::Version(1),
                    },
                    Write::Put {
                        record: record(&dependent, serde_json::json!({"status": "ready", "by": n})),
                        condition: Condition::Version(1),
                    },
                ])
                .await
            }));
        }
        let mut winners = Vec::new();
        for (n, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Ok(()) => winners.push(n),
                Err(StoreError::ConditionFailed { key }) => {
                    assert!(
                        key == step || key == dependent,
                        "error names a key of the transaction: {key}"
                    )
                }
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one completion wins: {winners:?}");
        let a = s.get(&step).await.expect("get").expect("step");
        let b = s.get(&dependent).await.expect("get").expect("dependent");
        assert_eq!((a.version, b.version), (2, 2));
        assert_eq!(a.body["by"], winners[0]);
        assert_eq!(b.body["by"], winners[0], "both records come from the same transaction");
    }

    /// A transaction whose last condition fails writes nothing; a failing `Check` blocks the
    /// writes beside it; requests over the limits are refused.
    pub async fn transactions_are_all_or_none(s: Arc<dyn Store>) {
        let s = &*s;
        let a = Key::new("tenant#t1", "a");
        let b = Key::new("tenant#t1", "b");
        let guard = Key::new("tenant#t1", "lock");
        let result = s
            .transact(vec![
                Write::Put {
                    record: record(&a, serde_json::json!(1)),
                    condition: Condition::Absent,
                },
                Write::Put {
                    record: record(&b, serde_json::json!(2)),
                    condition: Condition::Version(7),
                },
            ])
            .await;
        assert_condition_failed(result, &b, "second write's condition");
        assert_eq!(s.get(&a).await.expect("get"), None, "first write rolled back");

        let result = s
            .transact(vec![
                Write::Check {
                    key: guard.clone(),
                    condition: Condition::Version(1),
                },
                Write::Put {
                    record: record(&a, serde_json::json!(1)),
                    condition: Condition::Any,
                },
            ])
            .await;
        assert_condition_failed(result, &guard, "check on a missing record");
        assert_eq!(s.get(&a).await.expect("get"), None, "check blocked the put");

        put_if(s, record(&guard, serde_json::json!("held")), Condition::Absent)
            .await
            .expect("guard");
        s.transact(vec![
            Write::Check {
                key: guard.clone(),
                condition: Condition::Version(1),
            },
            Write::Put {
                record: record(&a, serde_json::json!(1)),
                condition: Condition::Absent,
            },
            Write::Put {
                record: record(&b, serde_json::json!(2)),
                condition: Condition::Absent,
            },
        ])
        .await
        .expect("check + two puts");
        assert_eq!(
            s.get(&guard).await.expect("get").expect("guard").version,
            1,
            "check writes nothing"
        );
        assert_eq!(s.get(&b).await.expect("get").expect("b").body, serde_json::json!(2));

        let twice = s
            .transact(vec![
                Write::Put {
                    record: record(&a, serde_json::json!(3)),
                    condition: Condition::Any,
                },
                Write::Delete {
                    key: a.clone(),
                    condition: Condition::Any,
                },
            ])
            .await;
        assert!(
            matches!(twice, Err(StoreError::Invalid(_))),
            "same key twice: {twice:?}"
        );
        let too_many = (0..=MAX_TRANSACTION_WRITES)
            .map(|n| Write::Put {
                record: record(&Key::new("tenant#t1", format!("many#{n}")), serde_json::json!(n)),
                condition: Condition::Any,
            })
            .collect();
        let too_many = s.transact(too_many).await;
        assert!(
            matches!(too_many, Err(StoreError::Invalid(_))),
            "too many writes: {too_many:?}"
        );
        assert!(s.transact(Vec::new()).await.is_ok(), "an empty transaction is a no-op");
    }

    /// Query returns a partition's records with the sort prefix, in sort order, and nothing else.
    pub async fn query_by_partition_and_prefix(s: Arc<dyn Store>) {
        let s = &*s;
        for sort in ["step#c", "step#a", "meta", "step#b"] {
            put_if(
                s,
                record(&Key::new("run#q", sort), serde_json::json!(sort)),
                Condition::Absent,
            )
            .await
            .expect("put");
        }
        put_if(
            s,
            record(&Key::new("run#q2", "step#a"), serde_json::json!("other")),
            Condition::Absent,
        )
        .await
        .expect("put");
        let steps = s.query("run#q", "step#").await.expect("query");
        let sorts: Vec<&str> = steps.iter().map(|r| r.key.sort.as_str()).collect();
        assert_eq!(sorts, vec!["step#a", "step#b", "step#c"]);
        assert_eq!(s.query("run#q", "").await.expect("query all").len(), 4);
        assert!(s.query("run#none", "").await.expect("query empty").is_empty());
    }

    /// Collections list members by their collection sort key, with prefix and limit; a record put
    /// again without a collection leaves it.
    pub async fn collection_index(s: Arc<dyn Store>) {
        let s = &*s;
        let member = |tenant: &str, run: &str| NewRecord {
            key: Key::new(format!("run#{run}"), "meta"),
            body: serde_json::json!({ "tenant": tenant }),
            collection: Some(CollectionEntry {
                name: "runs".into(),
                sort: format!("{tenant}#{run}"),
            }),
            due: None,
        };
        for (tenant, run) in [
            ("fabrikam", "r3"),
            ("contoso", "r2"),
            ("contoso", "r1"),
            ("adatum", "r4"),
        ] {
            put_if(s, member(tenant, run), Condition::Absent)
                .await
                .expect("put member");
        }
        put_if(
            s,
            record(&Key::new("run#r9", "meta"), serde_json::json!({})),
            Condition::Absent,
        )
        .await
        .expect("put non-member");
        let all = s.collection("runs", "", 10).await.expect("collection");
        let runs: Vec<&str> = all.iter().map(|r| r.key.partition.as_str()).collect();
        assert_eq!(
            runs,
            vec!["run#r4", "run#r1", "run#r2", "run#r3"],
            "ordered by collection sort key"
        );
        let contoso = s.collection("runs", "contoso#", 10).await.expect("collection prefix");
        assert_eq!(contoso.len(), 2);
        assert_eq!(
            contoso[0].collection.as_ref().map(|c| c.sort.as_str()),
            Some("contoso#r1")
        );
        assert_eq!(s.collection("runs", "", 2).await.expect("limit").len(), 2);
        assert!(
            s.collection("tenants", "", 10)
                .await
                .expect("other collection")
                .is_empty()
        );

        put_if(
            s,
            record(&Key::new("run#r1", "meta"), serde_json::json!({})),
            Condition::Version(1),
        )
        .await
        .expect("leave collection");
        assert_eq!(s.collection("runs", "contoso#", 10).await.expect("collection").len(), 1);
    }

    /// Due items of a kind at or before `now` are found earliest first; later or other kinds are
    /// not; a record put again without a due time is no longer due.
    pub async fn due_index(s: Arc<dyn Store>) {
        let s = &*s;
        let now: DateTime<Utc> = Utc::now().trunc_subsecs(3);
        let timer = |name: &str, kind: &str, offset_s: i64| NewRecord {
            key: Key::new(format!("timer#{name}"), "t"),
            body: serde_json::json!({ "name": name }),
            collection: None,
            due: Some(DueEntry {
                kind: kind.into(),
                at: now + chrono::Duration::seconds(offset_s),
            }),
        };
        let timers = [
            ("revoke-2", "access.revoke", -10),
            ("revoke-1", "access.revoke", -60),
            ("revoke-now", "access.revoke", 0),
            ("revoke-later", "access.revoke", 3600),
            ("expire-1", "access.expire", -30),
        ];
        for (name, kind, offset) in timers {
            put_if(s, timer(name, kind, offset), Condition::Absent)
                .await
                .expect("put timer");
        }
        let due = s.due("access.revoke", now, 10).await.expect("due");
        let names: Vec<&str> = due.iter().map(|r| r.body["name"].as_str().unwrap_or("?")).collect();
        assert_eq!(
            names,
            vec!["revoke-1", "revoke-2", "revoke-now"],
            "due at or before now, earliest first"
        );
        assert_eq!(
            due[0].due.as_ref().map(|d| d.at),
            Some(now - chrono::Duration::seconds(60)),
            "due time kept"
        );
        assert_eq!(s.due("access.revoke", now, 1).await.expect("due limit").len(), 1);
        assert_eq!(s.due("access.expire", now, 10).await.expect("due other kind").len(), 1);

        put_if(
            s,
            record(
                &Key::new("timer#revoke-1", "t"),
                serde_json::json!({"name": "revoke-1", "fired": true}),
            ),
            Condition::Version(1),
        )
        .await
        .expect("clear due");
        let names: Vec<String> = s
            .due("access.revoke", now, 10)
            .await
            .expect("due")
            .iter()
            .map(|r| r.body["name"].as_str().unwrap_or("?").to_string())
            .collect();
        assert_eq!(names, vec!["revoke-2", "revoke-now"]);
    }

    /// Audit entries are appended and read back per subject, oldest first, with their details.
    pub async fn audit_append_and_read_back(s: Arc<dyn Store>) {
        let s = &*s;
        let base = Utc::now().trunc_subsecs(3);
        let mut written = Vec::new();
        for (n, action) in ["requested", "approved", "elevated", "revoked"].into_iter().enumerate() {
            let entry = AuditEntry {
                subject: "access:a1".into(),
                actor: if n == 1 {
                    "bob@msp.example".into()
                } else {
                    "system:worker".into()
                },
                action: action.into(),
                detail: serde_json::json!({ "n": n, "ticket": "INC-42" }),
                at: base + chrono::Duration::milliseconds(n as i64),
            };
            s.append_audit(entry.clone()).await.expect("append");
            written.push(entry);
        }
        s.append_audit(AuditEntry {
            subject: "access:a2".into(),
            actor: "system:worker".into(),
            action: "requested".into(),
            detail: serde_json::Value::Null,
            at: base,
        })
        .await
        .expect("append other");
        let read = s.audit("access:a1", 100).await.expect("audit");
        assert_eq!(read, written, "read back as written, oldest first");
        let first_two = s.audit("access:a1", 2).await.expect("audit limit");
        assert_eq!(first_two, written[..2].to_vec());
        assert_eq!(s.audit("access:a2", 100).await.expect("audit other").len(), 1);
        assert!(s.audit("access:none", 100).await.expect("audit none").is_empty());
    }

    /// An audit entry written in a transaction commits with it, or not at all.
    pub async fn audit_commits_with_its_transaction(s: Arc<dyn Store>) {
        let s = &*s;
        let entry = |action: &str| AuditEntry {
            subject: "access:t1".into(),
            actor: "user:tid/oid".into(),
            action: action.into(),
            detail: serde_json::json!({"upn": "bob@msp.example"}),
            at: Utc::now().trunc_subsecs(3),
        };
        let key = Key::new("access#t1", "request");
        s.transact(vec![
            Write::Put {
                record: record(&key, serde_json::json!({"state": "approved"})),
                condition: Condition::Absent,
            },
            Write::audit(entry("approved")),
        ])
        .await
        .expect("decision and its entry");
        // The same decision again loses its condition: its entry is not written either.
        let lost = s
            .transact(vec![
                Write::Put {
                    record: record(&key, serde_json::json!({"state": "approved"})),
                    condition: Condition::Absent,
                },
                Write::audit(entry("approved.again")),
            ])
            .await;
        assert!(matches!(lost, Err(StoreError::ConditionFailed { .. })), "{lost:?}");
        let trail = s.audit("access:t1", 10).await.expect("audit");
        assert_eq!(
            trail,
            vec![entry("approved")]
                .into_iter()
                .map(|mut e| {
                    e.at = trail[0].at;
                    e
                })
                .collect::<Vec<_>>()
        );
        // Two entries in one transaction, and an entry alone.
        s.transact(vec![Write::audit(entry("a")), Write::audit(entry("b"))])
            .await
            .expect("two entries");
        s.append_audit(entry("c")).await.expect("alone");
        let actions: Vec<String> = s
            .audit("access:t1", 10)
            .await
            .expect("audit")
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, vec!["approved", "a", "b", "c"]);
    }

    /// No write but an append touches the audit log: puts, deletes and checks on its keys are
    /// refused, and nothing of their transaction is written.
    pub async fn audit_log_is_append_only(s: Arc<dyn Store>) {
        let s = &*s;
        s.append_audit(AuditEntry {
            subject: "access:t2".into(),
            actor: "user:tid/oid".into(),
            action: "requested".into(),
            detail: serde_json::Value::Null,
            at: Utc::now(),
        })
        .await
        .expect("append");
        let audit_key = Key::new(format!("{AUDIT_PREFIX}access:t2"), "anything");
        let bystander = Key::new("access#t2", "request");
        for write in [
            Write::Put {
                record: record(&audit_key, serde_json::json!({})),
                condition: Condition::Any,
            },
            Write::Delete {
                key: audit_key.clone(),
                condition: Condition::Any,
            },
            Write::Check {
                key: audit_key.clone(),
                condition: Condition::Any,
            },
        ] {
            let what = format!("{write:?}");
            let result = s
                .transact(vec![
                    Write::Put {
                        record: record(&bystander, serde_json::json!({})),
                        condition: Condition::Any,
                    },
                    write,
                ])
                .await;
            match result {
                Err(StoreError::Invalid(reason)) => assert!(reason.contains("append-only"), "{what}: {reason}"),
                other => panic!("{what}: expected Invalid, got {other:?}"),
            }
        }
        assert!(
            s.get(&bystander).await.expect("get").is_none(),
            "nothing of a refused transaction"
        );
        assert_eq!(s.audit("access:t2", 10).await.expect("audit").len(), 1);
    }

    /// The trail reads newest first in pages that together hold every entry once.
    pub async fn audit_pages_newest_first(s: Arc<dyn Store>) {
        let s = &*s;
        for n in 0..7 {
            s.append_audit(AuditEntry {
                subject: "access:t3".into(),
                actor: "system:test".into(),
                action: format!("e{n}"),
                detail: serde_json::Value::Null,
                at: Utc::now(),
            })
            .await
            .expect("append");
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let page = s.audit_page("access:t3", cursor.as_deref(), 3).await.expect("page");
            assert!(page.entries.len() <= 3);
            seen.extend(page.entries.into_iter().map(|e| e.action));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, vec!["e6", "e5", "e4", "e3", "e2", "e1", "e0"]);
        let first = s.audit_page("access:t3", None, 1).await.expect("first page");
        assert_eq!(first.entries[0].action, "e6");
        assert!(first.next.is_some());
        assert!(
            s.audit_page("access:none", None, 5)
                .await
                .expect("empty")
                .entries
                .is_empty()
        );
    }

    /// A due record that no longer decodes (valid JSON of the wrong shape, as another version
    /// would write) is quarantined with its reason by the timer passes of onboarding and access,
    /// which go on with the records after it; the record itself is kept.
    pub async fn undecodable_due_records_are_quarantined(s: Arc<dyn Store>) {
        use crate::access::{ACCESS_DUE_KIND, AccessRequest, AccessRequests, AccessSettings, Caller, NewAccessRequest};
        use crate::onboarding::runs::{RunSettings, Runs, STEP_DEADLINE_KIND};
        use crate::tenant::{TenantId, TenantSettings};
        let now = Utc::now();
        let long_ago = now - chrono::Duration::hours(1);
        let bad = |key: Key, kind: &str| NewRecord {
            key,
            body: serde_json::json!({"status": "teleporting", "name": 7}),
            collection: None,
            due: Some(DueEntry {
                kind: kind.into(),
                at: long_ago,
            }),
        };
        let bad_step = Key::new("run#old.1", "step#from-the-future");
        let bad_request = Key::new("access#from-the-future", "request");
        put_if(&*s, bad(bad_step.clone(), STEP_DEADLINE_KIND), Condition::Absent)
            .await
            .expect("seed bad step");
        put_if(&*s, bad(bad_request.clone(), ACCESS_DUE_KIND), Condition::Absent)
            .await
            .expect("seed bad request");

        let tenant: TenantId = "aaaaaaaa-2222-3333-4444-555555555555".parse().unwrap();
        let runs = Runs::new(&*s, RunSettings::default());
        runs.enroll(&tenant, &crate::onboarding::plan(), "contract", now)
            .await
            .expect("enroll");
        let later = now + chrono::Duration::hours(2);
        let resent = runs
            .overdue(later, 10)
            .await
            .expect("the pass goes on past the bad record");
        assert_eq!(
            resent.iter().map(|m| m.step.as_str()).collect::<Vec<_>>(),
            ["preflight"],
            "the good step behind the bad one is re-sent"
        );

        let caller = Caller {
            upn: "alice@provider.example".into(),
            oid: "11111111-0000-0000-0000-000000000001".into(),
            tenant_id: "11111111-2222-3333-4444-555555555555".into(),
            name: "Alice".into(),
            roles: vec!["Access.SOC".into()],
            groups: Vec::new(),
        };
        let input = NewAccessRequest {
            tenant: tenant.to_string(),
            role_group: TenantSettings::default().access_role_groups[0].clone(),
            justification: "contract".into(),
            ticket: "INC1".into(),
            duration_minutes: 60,
        };
        let request = AccessRequest::new(
            "good".into(),
            &input,
            &caller,
            &TenantSettings::default(),
            &AccessSettings::default(),
            now,
        )
        .expect("valid request");
        let access = AccessRequests::new(&*s);
        access
            .create(&request, Default::default(), now)
            .await
            .expect("store request");
        let due = access
            .due(later, 10)
            .await
            .expect("the pass goes on past the bad record");
        assert_eq!(due.iter().map(|v| v.request.id.as_str()).collect::<Vec<_>>(), ["good"]);

        let quarantined = crate::quarantine::list(&*s, 10).await.expect("list quarantine");
        let keys: BTreeSet<Key> = quarantined.iter().map(|q| q.key.clone()).collect();
        assert_eq!(keys, BTreeSet::from([bad_step.clone(), bad_request.clone()]));
        for q in &quarantined {
            assert!(!q.reason.is_empty(), "says why: {q:?}");
            assert_eq!(q.body["status"], "teleporting", "keeps the body");
        }
        let kept = s.get(&bad_step).await.expect("get").expect("the record itself is kept");
        assert_eq!(kept.body["status"], "teleporting");
        assert!(kept.due.is_none(), "it left the due index");
        assert!(
            s.due(STEP_DEADLINE_KIND, later, 10)
                .await
                .expect("due")
                .iter()
                .all(|r| r.key != bad_step),
            "later passes do not meet it again"
        );
    }

    /// The key [`corrupt_record_is_reported`] expects the adapter's corruption hook to damage.
    pub fn corrupt_key() -> Key {
        Key::new("run#bad", "step#broken")
    }

    /// Writes a valid record under [`corrupt_key`] (and a neighbour) before the hook damages it.
    pub async fn seed_for_corruption(s: &dyn Store) {
        let key = corrupt_key();
        let member = NewRecord {
            key: key.clone(),
            body: serde_json::json!({"status": "running"}),
            collection: Some(CollectionEntry {
                name: "broken".into(),
                sort: "x".into(),
            }),
            due: Some(DueEntry {
                kind: "broken".into(),
                at: Utc::now() - chrono::Duration::seconds(1),
            }),
        };
        put_if(s, member, Condition::Absent).await.expect("seed record");
        put_if(
            s,
            record(&Key::new("run#bad", "step#fine"), serde_json::json!({})),
            Condition::Absent,
        )
        .await
        .expect("seed neighbour");
    }

    /// A record that does not decode is reported as `Corrupt` naming its key by every read that
    /// meets it, and the good records around it still read.
    pub async fn corrupt_record_is_reported(s: Arc<dyn Store>) {
        let key = corrupt_key();
        let check = |result: Result<Vec<crate::store::Record>, StoreError>, what: &str| match result {
            Err(StoreError::Corrupt { key: k, reason }) => {
                assert_eq!(k, key, "{what}: names the key");
                assert!(!reason.is_empty(), "{what}: says why");
            }
            other => panic!("{what}: expected Corrupt for {key}, got {other:?}"),
        };
        check(s.get(&key).await.map(|r| r.into_iter().collect()), "get");
        check(s.query("run#bad", "").await, "query");
        check(s.collection("broken", "", 10).await, "collection");
        check(s.due("broken", Utc::now(), 10).await, "due");
        let fine = s.get(&Key::new("run#bad", "step#fine")).await.expect("neighbour reads");
        assert!(fine.is_some());
        // The broken record can still be overwritten unconditionally, which is how it is repaired.
        put_if(
            &*s,
            record(&key, serde_json::json!({"status": "repaired"})),
            Condition::Any,
        )
        .await
        .expect("repair");
        let repaired = s.get(&key).await.expect("get repaired").expect("exists");
        assert_eq!(repaired.body["status"], "repaired");
    }
}

/// Request-budget cases.
pub mod budget {
    use super::*;
    use crate::budget::{BudgetSlot, Charge, Grant, RequestBudget};

    fn slot(tenant: &str, index: i64) -> BudgetSlot {
        BudgetSlot {
            tenant: tenant.to_string(),
            index,
            expires_at: Utc::now() + chrono::Duration::minutes(5),
        }
    }

    fn charge(counter: &str, count: u32, limit: u32) -> Charge {
        Charge {
            counter: counter.to_string(),
            count,
            limit,
        }
    }

    /// A counter grants up to its limit and then refuses; a take that would pass the limit adds
    /// nothing (the remainder can still be taken); other tenants and other slots count apart.
    pub async fn budget_grants_up_to_the_limit(b: Arc<dyn RequestBudget>) {
        let here = slot("t-limit", 1_000);
        for i in 0..5 {
            assert_eq!(
                b.take(&here, &[charge("all", 1, 7)]).await.expect("take"),
                Grant::Granted,
                "take {i}"
            );
        }
        assert_eq!(
            b.take(&here, &[charge("all", 3, 7)]).await.expect("take"),
            Grant::Full,
            "5 + 3 passes 7"
        );
        assert_eq!(
            b.take(&here, &[charge("all", 2, 7)]).await.expect("take"),
            Grant::Granted,
            "the refused take added nothing: 5 + 2 fits"
        );
        assert_eq!(b.take(&here, &[charge("all", 1, 7)]).await.expect("take"), Grant::Full);
        assert_eq!(
            b.take(&slot("t-limit", 1_001), &[charge("all", 7, 7)])
                .await
                .expect("take"),
            Grant::Granted,
            "the next slot starts empty"
        );
        assert_eq!(
            b.take(&slot("t-other", 1_000), &[charge("all", 7, 7)])
                .await
                .expect("take"),
            Grant::Granted,
            "another tenant has its own counters"
        );
        assert_eq!(
            b.take(&here, &[charge("reads", 1, 1)]).await.expect("take"),
            Grant::Granted,
            "another counter of the same slot counts apart"
        );
    }

    /// A take with several charges adds all of them or none: one full counter refuses the take
    /// and leaves the others as they were.
    pub async fn budget_charges_are_all_or_none(b: Arc<dyn RequestBudget>) {
        let here = slot("t-atomic", 2_000);
        let write = [charge("all", 1, 10), charge("intune_writes", 1, 2)];
        assert_eq!(b.take(&here, &write).await.expect("take"), Grant::Granted);
        assert_eq!(b.take(&here, &write).await.expect("take"), Grant::Granted);
        for _ in 0..3 {
            assert_eq!(
                b.take(&here, &write).await.expect("take"),
                Grant::Full,
                "intune_writes is at 2"
            );
        }
        // `all` is still at 2 (the refused takes added nothing): 8 more fit, a ninth does not.
        assert_eq!(
            b.take(&here, &[charge("all", 8, 10)]).await.expect("take"),
            Grant::Granted
        );
        assert_eq!(b.take(&here, &[charge("all", 1, 10)]).await.expect("take"), Grant::Full);
    }

    /// Many takers at once (as many function instances would) never push a counter past its
    /// limit, and the limit is reached: exactly `limit` single takes are granted.
    pub async fn budget_concurrent_takers_never_exceed_the_limit(b: Arc<dyn RequestBudget>) {
        const TAKERS: usize = 40;
        const LIMIT: u32 = 15;
        let here = slot("t-race", 3_000);
        let mut tasks = Vec::new();
        for _ in 0..TAKERS {
            let (b, here) = (b.clone(), here.clone());
            tasks.push(tokio::spawn(async move {
                b.take(&here, &[charge("all", 1, LIMIT), charge("directory_writes", 1, 100)])
                    .await
            }));
        }
        let mut granted = 0;
        for t in futures::future::join_all(tasks).await {
            match t.expect("task").expect("take") {
                Grant::Granted => granted += 1,
                Grant::Full => {}
            }
        }
        assert_eq!(granted, LIMIT, "exactly the limit is granted to {TAKERS} racing takers");
        assert_eq!(
            b.take(&here, &[charge("directory_writes", 85, 100)])
                .await
                .expect("take"),
            Grant::Granted,
            "the second counter saw exactly the granted takes"
        );
        assert_eq!(
            b.take(&here, &[charge("directory_writes", 1, 100)])
                .await
                .expect("take"),
            Grant::Full
        );
    }

    /// Malformed takes are refused as invalid, naming what is wrong, and count nothing.
    pub async fn budget_invalid_takes_are_refused(b: Arc<dyn RequestBudget>) {
        let here = slot("t-invalid", 4_000);
        let cases: Vec<(Vec<Charge>, &str)> = vec![
            (vec![], "charges"),
            (vec![charge("All; DROP", 1, 5)], "counter"),
            (vec![charge("all", 0, 5)], "at least 1"),
            (vec![charge("all", 1, 0)], "at least 1"),
            (vec![charge("all", 1, 5), charge("all", 1, 5)], "twice"),
        ];
        for (charges, says) in cases {
            match b.take(&here, &charges).await {
                Err(StoreError::Invalid(reason)) => assert!(reason.contains(says), "{reason} should say {says}"),
                other => panic!("{charges:?}: expected Invalid, got {other:?}"),
            }
        }
        assert_eq!(
            b.take(&here, &[charge("all", 5, 5)]).await.expect("take"),
            Grant::Granted,
            "nothing was counted by the refused takes"
        );
    }
}

/// Instantiates every queue case as a `#[tokio::test]`. `$make(settings)` returns
/// `(Arc<dyn Queue>, guard)` with fresh, empty queues configured with `settings`.
#[macro_export]
macro_rules! queue_contract {
    ($make:path) => {
        $crate::queue_contract!(@cases $make;
            at_least_once_delivery,
            concurrent_consumers_share_the_work,
            long_poll_wakes_on_send,
            visibility_timeout_expiry_redelivers,
            delayed_send,
            change_visibility_delays,
            receive_count_increments,
            dead_letter_keeps_reason,
            refused_message_is_kept_with_reason,
            max_receives_redrive_keeps_last_error,
            dead_letters_keep_order_and_lose_nothing,
            invalid_requests_are_refused
        );
    };
    (@cases $make:path; $($case:ident),+) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (queue, _guard) = $make($crate::contract::QUEUE_SETTINGS).await;
                $crate::contract::queue::$case(queue).await;
            }
        )+
    };
}

/// Instantiates every store case as a `#[tokio::test]`. `$make()` returns `(Arc<dyn Store>,
/// guard)` with a fresh, empty store; `$corrupt(&guard, &key)` overwrites the stored record under
/// `key` with one whose body does not decode.
#[macro_export]
macro_rules! store_contract {
    ($make:path, $corrupt:path) => {
        $crate::store_contract!(@cases $make;
            conditional_writes_and_versions,
            run_creation_race,
            conditional_transition_race,
            transactions_are_all_or_none,
            query_by_partition_and_prefix,
            collection_index,
            due_index,
            audit_append_and_read_back,
            audit_commits_with_its_transaction,
            audit_log_is_append_only,
            audit_pages_newest_first,
            undecodable_due_records_are_quarantined
        );

        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn corrupt_record_is_reported() {
            let (store, guard) = $make().await;
            $crate::contract::store::seed_for_corruption(&*store).await;
            $corrupt(&guard, &$crate::contract::store::corrupt_key()).await;
            $crate::contract::store::corrupt_record_is_reported(store).await;
        }
    };
    (@cases $make:path; $($case:ident),+) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make().await;
                $crate::contract::store::$case(store).await;
            }
        )+
    };
}

/// Instantiates every request-budget case as a `#[tokio::test]`. `$make()` returns
/// `(Arc<dyn RequestBudget>, guard)` over a fresh, empty store.
#[macro_export]
macro_rules! budget_contract {
    ($make:path) => {
        $crate::budget_contract!(@cases $make;
            budget_grants_up_to_the_limit,
            budget_charges_are_all_or_none,
            budget_concurrent_takers_never_exceed_the_limit,
            budget_invalid_takes_are_refused
        );
    };
    (@cases $make:path; $($case:ident),+) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (budget, _guard) = $make().await;
                $crate::contract::budget::$case(budget).await;
            }
        )+
    };
}
