//! The queue port: what handlers and workers need of a message queue, with SQS semantics.
//!
//! Delivery is at least once. A received message stays invisible for its visibility timeout; if it
//! is not deleted in that time it is delivered again with a higher receive count. After
//! [`QueueSettings::max_receive_count`] receives it is moved to the queue's dead-letter queue with
//! the last failure recorded for it. A handler that knows a message can never succeed dead-letters
//! it at once with [`Queue::dead_letter`] and a [`Failure`] that says why. Nothing is dropped.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The logical queues of mdops. Each has its own dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    /// Onboarding steps, one message per step of a run.
    Onboarding,
    /// Licence changes, one message per user.
    Licences,
    /// Temporary-access work: elevation, revocation, mail.
    Access,
}

impl QueueName {
    /// Every queue, in a stable order.
    pub const ALL: [QueueName; 3] = [QueueName::Onboarding, QueueName::Licences, QueueName::Access];

    /// The name used in storage, configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Onboarding => "onboarding",
            QueueName::Licences => "licences",
            QueueName::Access => "access",
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QueueName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueName::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| format!("unknown queue {s:?}: expected one of onboarding, licences, access"))
    }
}

/// Per-queue behaviour, the same knobs an SQS queue and its redrive policy have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Receives after which a message that is still not deleted moves to the dead-letter queue.
    pub max_receive_count: u32,
    /// Visibility timeout used when a receive does not give one.
    pub default_visibility: Duration,
}

/// Five receives: enough to ride out a throttling burst, few enough that a poison message is
/// found by an operator within minutes, not hours.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 5;

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
            default_visibility: Duration::from_secs(60),
        }
    }
}

/// Most messages in one send or receive (SQS's limit; the embedded queue keeps it so both behave
/// the same).
pub const MAX_BATCH: usize = 10;
/// Longest send delay (SQS: 15 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Longest receive wait (SQS long polling: 20 seconds).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest visibility timeout (SQS: 12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// Largest message body (the classic SQS limit of 256 KiB; every mdops message is far smaller).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Checks a message against the limits every queue keeps, naming the one it breaks.
pub fn validate_outgoing(m: &OutgoingMessage) -> Result<(), QueueError> {
    if m.delay > MAX_DELAY {
        return Err(QueueError::Invalid(format!(
            "delay {:?} is over the maximum of {MAX_DELAY:?}",
            m.delay
        )));
    }
    if m.body.len() > MAX_BODY_BYTES {
        return Err(QueueError::Invalid(format!(
            "body is {} bytes, over the maximum of {MAX_BODY_BYTES}",
            m.body.len()
        )));
    }
    Ok(())
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The message body (JSON for every message mdops sends).
    pub body: String,
    /// How long the message stays invisible before its first delivery (SQS allows up to 15 min).
    pub delay: Duration,
}

impl OutgoingMessage {
    /// A message delivered as soon as possible.
    pub fn now(body: impl Into<String>) -> Self {
        OutgoingMessage {
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

/// A message handed out by [`Queue::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Stable id of the message, the same on every delivery.
    pub id: String,
    /// Handle for this delivery only; needed to delete or change visibility.
    pub receipt: String,
    /// The message body as sent.
    pub body: String,
    /// How many times the message has been received, this delivery included (starts at 1).
    pub receive_count: u32,
    /// When the message was first sent.
    pub sent_at: DateTime<Utc>,
}

/// Why a message was dead-lettered, attached to it in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What went wrong, for a person: names the field, the object or the Graph error code.
    pub reason: String,
    /// Tenant the message was about, when it could be decoded that far.
    pub tenant: Option<String>,
    /// Step (or kind of work) the message carried, when known.
    pub step: Option<String>,
    /// Attempts made before giving up.
    pub attempts: u32,
    /// When it failed.
    pub at: DateTime<Utc>,
}

/// How a message reached the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterCause {
    /// A handler declared it permanently failed.
    Failed,
    /// It was received `max_receive_count` times without being deleted.
    MaxReceives,
}

/// A message in a dead-letter queue, with what is known of its failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Id of the message in the dead-letter queue.
    pub id: String,
    /// The queue it came from (and goes back to on replay).
    pub source: QueueName,
    /// The original body, unchanged.
    pub body: String,
    /// How it got here.
    pub cause: DeadLetterCause,
    /// The failure that sent it here: the handler's reason, or the last error recorded before the
    /// receive limit was reached (`None` only if no failure was ever recorded for it).
    pub failure: Option<Failure>,
    /// Every failure recorded for the message, oldest first.
    pub history: Vec<Failure>,
    /// Times it was received before it was dead-lettered.
    pub receive_count: u32,
    /// When it entered the dead-letter queue.
    pub dead_lettered_at: DateTime<Utc>,
}

/// Errors of a queue adapter. Every variant says whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The receipt handle is unknown or stale (the message was redelivered or deleted).
    #[error("receipt handle is no longer valid for queue {queue}: the message was redelivered or deleted")]
    StaleReceipt { queue: QueueName },
    /// The request was refused as invalid (e.g. a delay over the maximum).
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The backing service failed; retrying may help.
    #[error("queue backend unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The queue port.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message; returns its id.
    async fn send(&self, queue: QueueName, message: OutgoingMessage) -> Result<String, QueueError>;

    /// Sends up to 10 messages in one call (the SQS batch limit); returns their ids in order.
    async fn send_batch(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, QueueError>;

    /// Receives up to `max` (1..=10) messages, waiting up to `wait` for the first one, and hides
    /// them for `visibility`. Messages over the receive limit are moved to the dead-letter queue
    /// instead of being delivered.
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Deletes a received message: the work it carried is done.
    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError>;

    /// Makes a received message visible again after `visibility` (zero: at once). Used for retries.
    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError>;

    /// Records a failed attempt for a received message without giving up on it, so the error is
    /// still findable if the message later reaches the dead-letter queue by the receive limit.
    async fn record_failure(
        &self,
        queue: QueueName,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), QueueError>;

    /// Moves a received message to the dead-letter queue at once, with the failure attached.
    async fn dead_letter(
        &self,
        queue: QueueName,
        message: &ReceivedMessage,
        failure: &Failure,
    ) -> Result<(), QueueError>;

    /// Puts a message that never entered the queue straight into its dead-letter queue with the
    /// failure attached: an event refused at the door (malformed, or for an unknown tenant) is
    /// kept for an operator instead of being dropped. Returns the dead letter's id.
    async fn dead_letter_refused(&self, queue: QueueName, body: &str, failure: &Failure) -> Result<String, QueueError>;

    /// The dead letters of a queue, oldest first, at most `limit`. Reading does not change them.
    async fn dead_letters(&self, queue: QueueName, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Moves the given dead letters back to their source queue with a fresh receive count, keeping
    /// body and id history. Returns the ids that were moved; ids not (or no longer) there are skipped.
    /// An interrupted call run again loses and duplicates nothing (SQLite: one transaction; SQS:
    /// every move journalled in the state table, see `docs/operators.md`).
    async fn replay(&self, queue: QueueName, dead_letter_ids: &[String]) -> Result<Vec<String>, QueueError>;

    /// Deletes the given dead letters for good. Returns the ids deleted.
    async fn purge(&self, queue: QueueName, dead_letter_ids: &[String]) -> Result<Vec<String>, QueueError>;
}
