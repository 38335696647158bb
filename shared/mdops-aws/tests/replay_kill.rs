//! A replay killed half-way and run again leaves exactly one copy of each message, on SQS and
//! DynamoDB (the emulator). The kill is a switch in the SDK clients of the real adapter: from the
//! chosen request on, every request fails, as if the process had died there. Two kill points:
//! right after a send to the source queue (before the journal hears of it), and at the delete from
//! the dead-letter queue (after the journal recorded the send).

use mdops_aws::emulator;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageInput;
use aws_sdk_sqs::operation::send_message::SendMessageInput;
use mdops_aws::{QueueUrls, ResourceNames, SqsQueue};
use mdops_core::queue::{Failure, OutgoingMessage, Queue, QueueName, QueueSettings};

/// Dead letters replayed per test.
const MESSAGES: usize = 4;
/// Longest wait for the peeked dead letters to become visible again after the kill (the
/// adapter's peek visibility is 30 s).
const VISIBLE_AGAIN_WITHIN: Duration = Duration::from_secs(60);

/// Where the kill lands.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Just after the n-th send to the source queue completes.
    AfterSend(usize),
    /// At the n-th delete from the dead-letter queue (it fails, and so does everything after).
    AtDelete(usize),
}

#[derive(Debug)]
struct KillSwitch {
    at: KillAt,
    source: String,
    dead_letter: String,
    sends: AtomicUsize,
    deletes: AtomicUsize,
    dead: AtomicBool,
}

#[derive(Debug, Clone)]
struct Killer(Arc<KillSwitch>);

impl Intercept for Killer {
    fn name(&self) -> &'static str {
        "KillSwitch"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let k = &self.0;
        if k.dead.load(Ordering::SeqCst) {
            return Err("killed: the replaying process is gone".into());
        }
        let input = context.input();
        if let Some(send) = input.downcast_ref::<SendMessageInput>()
            && send.queue_url() == Some(k.source.as_str())
        {
            let n = k.sends.fetch_add(1, Ordering::SeqCst) + 1;
            if matches!(k.at, KillAt::AfterSend(at) if at == n) {
                // This send goes through; nothing after it does.
                k.dead.store(true, Ordering::SeqCst);
            }
        }
        if let Some(delete) = input.downcast_ref::<DeleteMessageInput>()
            && delete.queue_url() == Some(k.dead_letter.as_str())
        {
            let n = k.deletes.fetch_add(1, Ordering::SeqCst) + 1;
            if matches!(k.at, KillAt::AtDelete(at) if at == n) {
                k.dead.store(true, Ordering::SeqCst);
                return Err("killed before the delete from the dead-letter queue".into());
            }
        }
        Ok(())
    }
}

struct Setup {
    healthy: SqsQueue,
    killable: SqsQueue,
}

async fn setup(at: KillAt) -> Setup {
    let sdk = emulator::sdk_config().await;
    let names = ResourceNames::new(emulator::unique_prefix()).expect("prefix");
    let urls = mdops_aws::ensure_resources(&sdk, &names, QueueSettings::default())
        .await
        .expect("create queues and table");
    let onboarding: &QueueUrls = &urls[&QueueName::Onboarding];
    let killer = Killer(Arc::new(KillSwitch {
        at,
        source: onboarding.source.clone(),
        dead_letter: onboarding.dead_letter.clone(),
        sends: AtomicUsize::new(0),
        deletes: AtomicUsize::new(0),
        dead: AtomicBool::new(false),
    }));
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(killer.clone())
            .build(),
    );
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(killer)
            .build(),
    );
    let killable = SqsQueue::new(sqs, dynamo, names.table(), urls.clone(), QueueSettings::default());
    let healthy = SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_dynamodb::Client::new(&sdk),
        names.table(),
        urls,
        QueueSettings::default(),
    );
    Setup { healthy, killable }
}

/// Dead-letters `MESSAGES` distinct messages through the handler path; returns their ids.
async fn dead_letters(q: &SqsQueue) -> Vec<String> {
    for n in 0..MESSAGES {
        q.send(QueueName::Onboarding, OutgoingMessage::now(format!("{{\"n\":{n}}}")))
            .await
            .expect("send");
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < MESSAGES && Instant::now() < deadline {
        got.extend(
            q.receive(
                QueueName::Onboarding,
                10,
                Duration::from_secs(1),
                Duration::from_secs(120),
            )
            .await
            .expect("receive"),
        );
    }
    assert_eq!(got.len(), MESSAGES);
    for m in &got {
        let why = Failure {
            reason: "Missing permission X".into(),
            tenant: None,
            step: None,
            attempts: 1,
            at: chrono::Utc::now(),
        };
        q.dead_letter(QueueName::Onboarding, m, &why)
            .await
            .expect("dead_letter");
    }
    let ids: Vec<String> = q
        .dead_letters(QueueName::Onboarding, 100)
        .await
        .expect("dead_letters")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids.len(), MESSAGES);
    ids
}

/// Every body in the source queue with how many copies of it are there.
async fn source_copies(q: &SqsQueue) -> BTreeMap<String, usize> {
    let mut copies = BTreeMap::new();
    let mut empty = 0;
    for _ in 0..50 {
        if empty >= 2 {
            break;
        }
        let got = q
            .receive(QueueName::Onboarding, 10, Duration::ZERO, Duration::from_secs(120))
            .await
            .expect("receive");
        if got.is_empty() {
            empty += 1;
        }
        for m in got {
            *copies.entry(m.body).or_insert(0) += 1;
        }
    }
    copies
}

async fn killed_then_rerun(at: KillAt) {
    let Setup { healthy, killable } = setup(at).await;
    let ids = dead_letters(&healthy).await;
    let first = killable.replay(QueueName::Onboarding, &ids).await;
    assert!(first.is_err(), "the kill stops the first replay: {first:?}");

    // The dead letters the killed replay had peeked come back after the peek visibility.
    let deadline = Instant::now() + VISIBLE_AGAIN_WITHIN;
    let mut moved = Vec::new();
    while moved.len() + 1 < MESSAGES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        moved.extend(
            healthy
                .replay(QueueName::Onboarding, &ids)
                .await
                .expect("re-run of the replay"),
        );
    }
    assert!(
        healthy
            .dead_letters(QueueName::Onboarding, 100)
            .await
            .expect("dead_letters")
            .is_empty(),
        "every dead letter left the dead-letter queue"
    );
    let copies = source_copies(&healthy).await;
    let expected: BTreeMap<String, usize> = (0..MESSAGES).map(|n| (format!("{{\"n\":{n}}}"), 1)).collect();
    assert_eq!(copies, expected, "exactly one copy of each message in the source queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_right_after_a_send_the_rerun_finds_it_and_does_not_send_again() {
    killed_then_rerun(KillAt::AfterSend(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_a_delete_the_rerun_only_deletes() {
    killed_then_rerun(KillAt::AtDelete(2)).await;
}
