//! A queue decorator that sends every message twice: SQS's at-least-once delivery at its worst, for
//! rehearsals and the chaos suite (`mdops worker --duplicate-deliveries`). Everything else passes
//! through unchanged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mdops_core::queue::{DeadLetter, Failure, OutgoingMessage, Queue, QueueError, QueueName, ReceivedMessage};

/// Sends every message twice through the queue it wraps.
pub struct DuplicatingQueue(pub Arc<dyn Queue>);

#[async_trait]
impl Queue for DuplicatingQueue {
    async fn send(&self, queue: QueueName, message: OutgoingMessage) -> Result<String, QueueError> {
        self.0.send(queue, message.clone()).await?;
        self.0.send(queue, message).await
    }
    async fn send_batch(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, QueueError> {
        self.0.send_batch(queue, messages.clone()).await?;
        self.0.send_batch(queue, messages).await
    }
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.0.receive(queue, max, wait, visibility).await
    }
    async fn delete(&self, queue: QueueName, receipt: &str) -> Result<(), QueueError> {
        self.0.delete(queue, receipt).await
    }
    async fn change_visibility(&self, queue: QueueName, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        self.0.change_visibility(queue, receipt, visibility).await
    }
    async fn record_failure(&self, queue: QueueName, m: &ReceivedMessage, f: &Failure) -> Result<(), QueueError> {
        self.0.record_failure(queue, m, f).await
    }
    async fn dead_letter(&self, queue: QueueName, m: &ReceivedMessage, f: &Failure) -> Result<(), QueueError> {
        self.0.dead_letter(queue, m, f).await
    }
    async fn dead_letter_refused(&self, queue: QueueName, body: &str, f: &Failure) -> Result<String, QueueError> {
        self.0.dead_letter_refused(queue, body, f).await
    }
    async fn dead_letters(&self, queue: QueueName, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.0.dead_letters(queue, limit).await
    }
    async fn replay(&self, queue: QueueName, ids: &[String]) -> Result<Vec<String>, QueueError> {
        self.0.replay(queue, ids).await
    }
    async fn purge(&self, queue: QueueName, ids: &[String]) -> Result<Vec<String>, QueueError> {
        self.0.purge(queue, ids).await
    }
}
