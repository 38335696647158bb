//! The [`Queue`] port on Amazon SQS: one standard queue per logical queue, each with a
//! dead-letter queue through a redrive policy (`maxReceiveCount`).
//!
//! Dead-letter reasons are kept in two places, so both causes show theirs:
//! - every failure ([`Queue::record_failure`], [`Queue::dead_letter`]) is an item in the state
//!   table under `~msgfail#<message id>`, so the last error of a message that SQS redrives by the
//!   receive limit is still findable (SQS moves it untouched, keeping its id);
//! - a message a handler dead-letters is *sent* to the DLQ by us with `mdops-*` message
//!   attributes (cause, failure, source id, receive count, times), then deleted from its queue.
//!
//! Reading dead letters peeks: receive with a short visibility until the DLQ is exhausted (bounded),
//! dedupe by message id, make them visible again at once, and sort by dead-lettering time.
//! `replay` is receive -> send to the source -> delete, because `StartMessageMoveTask` cannot pick
//! messages and is missing from the emulator. Every move is journalled in the state table under
//! `~replay#<dead letter id>` *before* the send (`pending`, with a fresh token that the sent
//! message carries as the `mdops-replay-token` attribute), marked `sent` with the new message id
//! after it, and `done` after the delete. A replay killed anywhere and run again therefore never
//! sends twice: `sent`/`done` means only delete; `pending` means look for the token in the source
//! queue first and send only if it is not there. See `docs/operators.md`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use chrono::{DateTime, Utc};
use mdops_core::queue::{
    DeadLetter, DeadLetterCause, Failure, MAX_BATCH, MAX_VISIBILITY, MAX_WAIT, OutgoingMessage, Queue, QueueError,
    QueueName, QueueSettings, ReceivedMessage, validate_outgoing,
};

use crate::dynamo::sortable_time;

/// Most dead letters one listing, replay or purge looks at. An operator with more than this in one
/// DLQ has a systemic failure to fix first; the rest are reached after replaying or purging these.
pub const MAX_PEEK: usize = 1000;
/// How long peeked dead letters stay hidden if the peeker dies before making them visible again.
const PEEK_VISIBILITY: i32 = 30;
/// How long failure records are kept (the SQS maximum retention, 14 days), via the table's TTL.
const FAILURE_RETENTION: chrono::Duration = chrono::Duration::days(14);
/// Partition prefix of failure records in the state table.
pub const FAILURE_PREFIX: &str = "~msgfail#";
/// Partition prefix of replay journal records in the state table (one per dead letter moved).
pub const REPLAY_PREFIX: &str = "~replay#";
/// How long replay journal records are kept: as long as a dead letter can live, so a re-run of an
/// interrupted replay within the DLQ's retention always finds the journal.
const REPLAY_RETENTION: chrono::Duration = chrono::Duration::days(14);

/// Message attributes set on the dead letters mdops sends itself.
mod attr {
    pub const CAUSE: &str = "mdops-cause";
    pub const FAILURE: &str = "mdops-failure";
    pub const SOURCE_ID: &str = "mdops-source-id";
    pub const RECEIVE_COUNT: &str = "mdops-receive-count";
    pub const DEAD_LETTERED_AT: &str = "mdops-dead-lettered-at";
    /// On a replayed message: the token of its journal record, so a re-run can find it.
    pub const REPLAY_TOKEN: &str = "mdops-replay-token";
    /// On a replayed message: the id it had in the dead-letter queue.
    pub const REPLAY_OF: &str = "mdops-replay-of";
}

/// Where one dead letter's move stands, as journalled in the state table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MoveState {
    /// About to be sent (or sent, and the kill came before the journal heard of it).
    Pending { token: String },
    /// Sent to the source queue; only the delete from the DLQ may be missing.
    Sent,
}

/// URLs of one logical queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    pub source: String,
    pub dead_letter: String,
}

/// The SQS queue. Cheap to clone; clones share the clients.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
    urls: HashMap<QueueName, QueueUrls>,
    settings: QueueSettings,
}

fn unavailable<E>(what: &str, err: E) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
{
    QueueError::Unavailable {
        message: format!("sqs {what}: {}", mdops_core::errors::one_line(&err)),
        source: Some(Box::new(err)),
    }
}

/// Whole seconds for SQS, rounded up so a wait or visibility is never shorter than asked.
fn seconds(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

fn string_attr(v: impl Into<String>) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| QueueError::Invalid(format!("message attribute: {e}")))
}

/// Is this SQS error about a receipt that no longer holds the message?
fn is_stale_receipt(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ReceiptHandleIsInvalid"
                | "InvalidReceiptHandle"
                | "MessageNotInflight"
                | "AWS.SimpleQueueService.MessageNotInflight"
        )
    )
}

fn system_attr(m: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    m.attributes().and_then(|a| a.get(&name)).map(String::as_str)
}

fn user_attr<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
}

fn sent_at(m: &Message) -> Option<DateTime<Utc>> {
    system_attr(m, MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
}

impl SqsQueue {
    /// A queue over already created resources: `urls` for every logical queue, failure records in
    /// `table`. `settings.max_receive_count` must match the redrive policy of the queues.
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        dynamo: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        urls: HashMap<QueueName, QueueUrls>,
        settings: QueueSettings,
    ) -> Self {
        SqsQueue {
            sqs,
            dynamo,
            table: table.into(),
            urls,
            settings,
        }
    }

    fn urls(&self, queue: QueueName) -> Result<&QueueUrls, QueueError> {
        self.urls
            .get(&queue)
            .ok_or_else(|| QueueError::Invalid(format!("queue {queue} is not configured for this backend")))
    }

    async fn put_failure(&self, message_id: &str, failure: &Failure) -> Result<(), QueueError> {
        let raw = serde_json::to_string(failure).map_err(|e| QueueError::Invalid(format!("failure: {e}")))?;
        let now = Utc::now();
        self.dynamo
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("{FAILURE_PREFIX}{message_id}")))
            .item(
                "sk",
                AttributeValue::S(format!("{}#{}", sortable_time(now), uuid::Uuid::new_v4().simple())),
            )
            .item("failure", AttributeValue::S(raw))
            .item(
                "expires_at",
                AttributeValue::N((now + FAILURE_RETENTION).timestamp().to_string()),
            )
            .send()
            .await
            .map_err(|e| unavailable("record failure in table", e))?;
        Ok(())
    }

    async fn failures(&self, message_id: &str) -> Result<Vec<Failure>, QueueError> {
        let mut out = Vec::new();
        let mut start = None;
        // Pages of up to 1 MB: two pages is already far more failures than a message can have.
        for _ in 0..10 {
            let page = self
                .dynamo
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", AttributeValue::S(format!("{FAILURE_PREFIX}{message_id}")))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable("read failures from table", e))?;
            for item in page.items() {
                let failure = match item.get("failure") {
                    Some(AttributeValue::S(raw)) => serde_json::from_str(raw).unwrap_or_else(|e| Failure {
                        reason: format!("undecodable failure record ({e}): {raw}"),
                        tenant: None,
                        step: None,
                        attempts: 0,
                        at: Utc::now(),
                    }),
                    other => Failure {
                        reason: format!("failure record without a failure attribute: {other:?}"),
                        tenant: None,
                        step: None,
                        attempts: 0,
                        at: Utc::now(),
                    },
                };
                out.push(failure);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Receives every message of a dead-letter queue (up to [`MAX_PEEK`]), deduplicated by id, in
    /// the order first seen. The caller must [`SqsQueue::release`] or delete each.
    async fn peek(&self, dlq: &str) -> Result<Vec<Message>, QueueError> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut out: Vec<Message> = Vec::new();
        let mut empty = 0;
        // Each round returns up to 10; an empty answer twice in a row means the queue is exhausted
        // (one empty short poll can miss messages on real SQS, which samples servers).
        for _ in 0..(MAX_PEEK / MAX_BATCH + 10) {
            if out.len() >= MAX_PEEK || empty >= 2 {
                break;
            }
            let got = self
                .sqs
                .receive_message()
                .queue_url(dlq)
                .max_number_of_messages(MAX_BATCH as i32)
                .visibility_timeout(PEEK_VISIBILITY)
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| unavailable("peek dead letters", e))?;
            let messages = got.messages();
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            for m in messages {
                let id = m.message_id().unwrap_or_default().to_string();
                match seen.get(&id) {
                    // Seen again (its peek visibility ran out): keep the newest receipt.
                    Some(&i) => out[i] = m.clone(),
                    None => {
                        seen.insert(id, out.len());
                        out.push(m.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Makes peeked messages visible again at once.
    async fn release(&self, dlq: &str, messages: &[&Message]) -> Result<(), QueueError> {
        for chunk in messages.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| QueueError::Invalid(format!("change visibility entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.sqs
                .change_message_visibility_batch()
                .queue_url(dlq)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| unavailable("release peeked dead letters", e))?;
        }
        Ok(())
    }

    fn journal_key(dead_letter_id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S(format!("{REPLAY_PREFIX}{dead_letter_id}")),
            ),
            ("sk".to_string(), AttributeValue::S("move".into())),
        ])
    }

    /// The journalled state of a dead letter's move, if a replay ever started it.
    async fn journal_state(&self, dead_letter_id: &str) -> Result<Option<MoveState>, QueueError> {
        let out = self
            .dynamo
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::journal_key(dead_letter_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("read replay journal", e))?;
        let Some(item) = out.item() else { return Ok(None) };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        };
        match (text("state").as_deref(), text("token")) {
            (Some("pending"), Some(token)) => Ok(Some(MoveState::Pending { token })),
            (Some("sent" | "done"), _) => Ok(Some(MoveState::Sent)),
            (state, _) => Err(QueueError::Unavailable {
                message: format!("replay journal for dead letter {dead_letter_id} has an unknown state {state:?}"),
                source: None,
            }),
        }
    }

    /// Journals a move as `pending` with `token`, if no replay journalled it before. Returns
    /// whether this call created the record.
    async fn journal_begin(&self, queue: QueueName, dead_letter_id: &str, token: &str) -> Result<bool, QueueError> {
        let now = Utc::now();
        let mut item = Self::journal_key(dead_letter_id);
        item.insert("state".into(), AttributeValue::S("pending".into()));
        item.insert("token".into(), AttributeValue::S(token.into()));
        item.insert("queue".into(), AttributeValue::S(queue.as_str().into()));
        item.insert("started_at".into(), AttributeValue::S(sortable_time(now)));
        item.insert(
            "expires_at".into(),
            AttributeValue::N((now + REPLAY_RETENTION).timestamp().to_string()),
        );
        let put = self
            .dynamo
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable("write replay journal", e)),
        }
    }

    /// Moves the journal record to `state` (`sent` with the new message id, or `done`).
    async fn journal_mark(&self, dead_letter_id: &str, state: &str, new_id: Option<&str>) -> Result<(), QueueError> {
        let mut update = self
            .dynamo
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::journal_key(dead_letter_id)))
            .update_expression(if new_id.is_some() {
                "SET #s = :s, new_id = :n"
            } else {
                "SET #s = :s"
            })
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":s", AttributeValue::S(state.into()));
        if let Some(id) = new_id {
            update = update.expression_attribute_values(":n", AttributeValue::S(id.into()));
        }
        update
            .send()
            .await
            .map_err(|e| unavailable("update replay journal", e))?;
        Ok(())
    }

    /// Looks through the source queue for the message a replay sent with `token` (bounded by
    /// [`MAX_PEEK`]); every message looked at is made visible again at once. Returns its id.
    async fn find_replayed(&self, source: &str, token: &str) -> Result<Option<String>, QueueError> {
        let mut looked: Vec<Message> = Vec::new();
        let mut found = None;
        let mut empty = 0;
        for _ in 0..(MAX_PEEK / MAX_BATCH + 10) {
            if found.is_some() || looked.len() >= MAX_PEEK || empty >= 2 {
                break;
            }
            let got = self
                .sqs
                .receive_message()
                .queue_url(source)
                .max_number_of_messages(MAX_BATCH as i32)
                .visibility_timeout(PEEK_VISIBILITY)
                .wait_time_seconds(0)
                .message_attribute_names(attr::REPLAY_TOKEN)
                .send()
                .await
                .map_err(|e| unavailable("replay: look for an earlier send in the source queue", e))?;
            if got.messages().is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            for m in got.messages() {
                if user_attr(m, attr::REPLAY_TOKEN) == Some(token) {
                    found = m.message_id().map(str::to_string);
                }
                looked.push(m.clone());
            }
        }
        let all: Vec<&Message> = looked.iter().collect();
        self.release(source, &all).await?;
        Ok(found)
    }

    /// Moves one peeked dead letter back to the source queue, journalled so that a re-run after
    /// a kill at any point neither loses nor duplicates it. Returns whether it was moved.
    async fn move_back(&self, queue: QueueName, urls: &QueueUrls, m: &Message) -> Result<bool, QueueError> {
        let id = m.message_id().unwrap_or_default();
        let token = match self.journal_state(id).await? {
            Some(MoveState::Sent) => None,
            Some(MoveState::Pending { token }) => match self.find_replayed(&urls.source, &token).await? {
                Some(new_id) => {
                    self.journal_mark(id, "sent", Some(&new_id)).await?;
                    None
                }
                None => Some(token),
            },
            None => {
                let token = uuid::Uuid::new_v4().to_string();
                if !self.journal_begin(queue, id, &token).await? {
                    // Another replay journalled it between our read and write: it owns the move.
                    return Ok(false);
                }
                Some(token)
            }
        };
        if let Some(token) = token {
            let sent = self
                .sqs
                .send_message()
                .queue_url(&urls.source)
                .message_body(m.body().unwrap_or_default())
                .message_attributes(attr::REPLAY_TOKEN, string_attr(token)?)
                .message_attributes(attr::REPLAY_OF, string_attr(id)?)
                .send()
                .await
                .map_err(|e| unavailable("replay: send to source queue", e))?;
            self.journal_mark(id, "sent", sent.message_id()).await?;
        }
        self.sqs
            .delete_message()
            .queue_url(&urls.dead_letter)
            .receipt_handle(m.receipt_handle().unwrap_or_default())
            .send()
            .await
            .map_err(|e| unavailable("replay: delete from dead-letter queue", e))?;
        // The move is complete; a journal left at `sent` only makes a re-run delete nothing.
        if let Err(e) = self.journal_mark(id, "done", None).await {
            tracing::warn!(dead_letter = id, error = %e, "replayed, but the journal was not marked done");
        }
        Ok(true)
    }

    async fn decode_dead_letter(&self, source: QueueName, m: &Message) -> Result<DeadLetter, QueueError> {
        let id = m.message_id().unwrap_or_default().to_string();
        let failed_by_handler = user_attr(m, attr::CAUSE) == Some("failed");
        let source_id = user_attr(m, attr::SOURCE_ID).unwrap_or(&id).to_string();
        let history = self.failures(&source_id).await?;
        let (cause, failure, receive_count, at) = if failed_by_handler {
            let failure = user_attr(m, attr::FAILURE)
                .and_then(|raw| serde_json::from_str::<Failure>(raw).ok())
                .or_else(|| history.last().cloned());
            let count = user_attr(m, attr::RECEIVE_COUNT)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let at = user_attr(m, attr::DEAD_LETTERED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            (DeadLetterCause::Failed, failure, count, at)
        } else {
            // Moved by SQS itself: the exact moment is not recorded anywhere; the last failure
            // recorded for it (else its first send) is the closest known time.
            let at = history.last().map(|f| f.at).or_else(|| sent_at(m));
            (
                DeadLetterCause::MaxReceives,
                history.last().cloned(),
                self.settings.max_receive_count,
                at,
            )
        };
        Ok(DeadLetter {
            id,
            source,
            body: m.body().unwrap_or_default().to_string(),
            cause,
            failure,
            history,
            receive_count,
            dead_lettered_at: at.unwrap_or_else(Utc::now),
        })
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: QueueName, message: OutgoingMessage) -> Result<String, QueueError> {
        validate_outgoing(&message)?;
        let out = self
            .sqs
            .send_message()
            .queue_url(&self.urls(queue)?.source)
            .message_body(message.body)
            .delay_seconds(seconds(message.delay))
            .send()
            .await
            .map_err(|e| unavailable("send message", e))?;
        out.message_id()
            .map(str::to_string)
            .ok_or_else(|| QueueError::Unavailable {
                message: "sqs send message: answer has no message id".into(),
                source: None,
            })
    }

    async fn send_batch(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, QueueError> {
        if messages.len() > MAX_BATCH {
            return Err(QueueError::Invalid(format!(
                "batch of {} messages is over the maximum of {MAX_BATCH}",
                messages.len()
            )));
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let count = messages.len();
        let mut entries = Vec::with_capacity(count);
        for (i, m) in messages.into_iter().enumerate() {
            validate_outgoing(&m)?;
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body)
                    .delay_seconds(seconds(m.delay))
                    .build()
                    .map_err(|e| QueueError::Invalid(format!("batch entry {i}: {e}")))?,
            );
        }
        let out = self
            .sqs
            .send_message_batch()
            .queue_url(&self.urls(queue)?.source)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| unavailable("send message batch", e))?;
        if let Some(failed) = out.failed().first() {
            return Err(QueueError::Unavailable {
                message: format!(
                    "sqs send message batch: {} of {count} failed, first: entry {} {} {}",
                    out.failed().len(),
                    failed.id(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                ),
                source: None,
            });
        }
        let by_entry: HashMap<&str, &str> = out.successful().iter().map(|s| (s.id(), s.message_id())).collect();
        (0..count)
            .map(|i| {
                by_entry
                    .get(i.to_string().as_str())
                    .map(|id| id.to_string())
                    .ok_or_else(|| QueueError::Unavailable {
                        message: format!("sqs send message batch: no result for entry {i}"),
                        source: None,
                    })
            })
            .collect()
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if !(1..=MAX_BATCH).contains(&max) {
            return Err(QueueError::Invalid(format!(
                "max {max} must be between 1 and {MAX_BATCH}"
            )));
        }
        if wait > MAX_WAIT {
            return Err(QueueError::Invalid(format!(
                "wait {wait:?} is over the maximum of {MAX_WAIT:?}"
            )));
        }
        if visibility > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!(
                "visibility {visibility:?} is over the maximum of {MAX_VISIBILITY:?}"
            )));
        }
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.urls(queue)?.source)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(seconds(wait))
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| unavailable("receive message", e))?;
        out.messages()
            .iter()
            .map(|m| {
                let id = m.message_id().unwrap_or_default().to_string();
                let missing = |what: &str| QueueError::Unavailable {
                    message: format!("sqs receive message: message {id} has no {what}"),
                    source: None,
                };
                Ok(ReceivedMessage {
                    receipt: m.receipt_handle().ok_or_else(|| missing("receipt handle"))?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: system_attr(m, MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .ok_or_else(|| missing("ApproximateReceiveCount"))?,
                    sent_at: sent_at(m).ok_or_else(|| missing("SentTimestamp"))?,
                    id,
                })
            })
            .collect()
    }

    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.sqs
            .delete_message()
            .queue_url(&self.urls(queue)?.source)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| {
                let e = e.into_service_error();
                if is_stale_receipt(e.code()) {
                    QueueError::StaleReceipt { queue }
                } else {
                    unavailable("delete message", e)
                }
            })?;
        Ok(())
    }

    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        if visibility > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!(
                "visibility {visibility:?} is over the maximum of {MAX_VISIBILITY:?}"
            )));
        }
        self.sqs
            .change_message_visibility()
            .queue_url(&self.urls(queue)?.source)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(visibility))
            .send()
            .await
            .map_err(|e| {
                let e = e.into_service_error();
                if is_stale_receipt(e.code()) {
                    QueueError::StaleReceipt { queue }
                } else {
                    unavailable("change message visibility", e)
                }
            })?;
        Ok(())
    }

    async fn record_failure(
        &self,
        _queue: QueueName,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), QueueError> {
        self.put_failure(&message.id, failure).await
    }

    async fn dead_letter(
        &self,
        queue: QueueName,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), QueueError> {
        let urls = self.urls(queue)?.clone();
        self.put_failure(&message.id, failure).await?;
        let raw = serde_json::to_string(failure).map_err(|e| QueueError::Invalid(format!("failure: {e}")))?;
        // Send to the DLQ first, then delete: a crash in between leaves a duplicate (harmless,
        // visible to the operator), never a lost message.
        self.sqs
            .send_message()
            .queue_url(&urls.dead_letter)
            .message_body(&message.body)
            .message_attributes(attr::CAUSE, string_attr("failed")?)
            .message_attributes(attr::FAILURE, string_attr(raw)?)
            .message_attributes(attr::SOURCE_ID, string_attr(&message.id)?)
            .message_attributes(attr::RECEIVE_COUNT, string_attr(message.receive_count.to_string())?)
            .message_attributes(attr::DEAD_LETTERED_AT, string_attr(sortable_time(Utc::now()))?)
            .send()
            .await
            .map_err(|e| unavailable("send to dead-letter queue", e))?;
        tracing::warn!(
            queue = queue.as_str(),
            message_id = message.id,
            reason = failure.reason,
            "message dead-lettered"
        );
        self.delete(queue, &message.receipt).await
    }

    async fn dead_letter_refused(&self, queue: QueueName, body: &str, failure: &Failure) -> Result<String, QueueError> {
        let urls = self.urls(queue)?.clone();
        // The refused message never had an id of its own: give it one, so its failure is found.
        let source_id = uuid::Uuid::new_v4().to_string();
        self.put_failure(&source_id, failure).await?;
        let raw = serde_json::to_string(failure).map_err(|e| QueueError::Invalid(format!("failure: {e}")))?;
        let out = self
            .sqs
            .send_message()
            .queue_url(&urls.dead_letter)
            .message_body(body)
            .message_attributes(attr::CAUSE, string_attr("failed")?)
            .message_attributes(attr::FAILURE, string_attr(raw)?)
            .message_attributes(attr::SOURCE_ID, string_attr(&source_id)?)
            .message_attributes(attr::RECEIVE_COUNT, string_attr("0")?)
            .message_attributes(attr::DEAD_LETTERED_AT, string_attr(sortable_time(Utc::now()))?)
            .send()
            .await
            .map_err(|e| unavailable("send to dead-letter queue", e))?;
        tracing::warn!(
            queue = queue.as_str(),
            reason = failure.reason,
            "refused message dead-lettered"
        );
        Ok(out.message_id().unwrap_or(&source_id).to_string())
    }

    async fn dead_letters(&self, queue: QueueName, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let dlq = self.urls(queue)?.dead_letter.clone();
        let peeked = self.peek(&dlq).await?;
        let decoded = {
            let mut out = Vec::with_capacity(peeked.len());
            for m in &peeked {
                match self.decode_dead_letter(queue, m).await {
                    Ok(d) => out.push(d),
                    Err(e) => {
                        let all: Vec<&Message> = peeked.iter().collect();
                        self.release(&dlq, &all).await?;
                        return Err(e);
                    }
                }
            }
            out
        };
        let all: Vec<&Message> = peeked.iter().collect();
        self.release(&dlq, &all).await?;
        let mut decoded = decoded;
        decoded.sort_by(|a, b| {
            a.dead_lettered_at
                .cmp(&b.dead_lettered_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        decoded.truncate(limit);
        Ok(decoded)
    }

    async fn replay(&self, queue: QueueName, dead_letter_ids: &[String]) -> Result<Vec<String>, QueueError> {
        let urls = self.urls(queue)?.clone();
        let peeked = self.peek(&urls.dead_letter).await?;
        let mut moved = Vec::new();
        let mut keep = Vec::new();
        let mut result = Ok(());
        for m in &peeked {
            let id = m.message_id().unwrap_or_default();
            if result.is_err() || !dead_letter_ids.iter().any(|want| want == id) {
                keep.push(m);
                continue;
            }
            match self.move_back(queue, &urls, m).await {
                Ok(true) => moved.push(id.to_string()),
                Ok(false) => {}
                // Stop at the first failure; the journal lets a re-run finish this one exactly.
                Err(e) => result = Err(e),
            }
        }
        self.release(&urls.dead_letter, &keep).await?;
        result?;
        tracing::info!(queue = queue.as_str(), count = moved.len(), "dead letters replayed");
        Ok(dead_letter_ids
            .iter()
            .filter(|id| moved.contains(id))
            .cloned()
            .collect())
    }

    async fn purge(&self, queue: QueueName, dead_letter_ids: &[String]) -> Result<Vec<String>, QueueError> {
        let dlq = self.urls(queue)?.dead_letter.clone();
        let peeked = self.peek(&dlq).await?;
        let mut purged = Vec::new();
        let mut keep = Vec::new();
        for m in &peeked {
            let id = m.message_id().unwrap_or_default();
            if !dead_letter_ids.iter().any(|want| want == id) {
                keep.push(m);
                continue;
            }
            self.sqs
                .delete_message()
                .queue_url(&dlq)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| unavailable("purge dead letter", e))?;
            purged.push(id.to_string());
        }
        self.release(&dlq, &keep).await?;
        Ok(dead_letter_ids
            .iter()
            .filter(|id| purged.contains(id))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_millis(1000)), 1);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
    }
}
