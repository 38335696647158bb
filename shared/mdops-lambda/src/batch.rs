//! The SQS-batch glue of the Lambda functions: an `SqsEvent` in, each record through a handler, an
//! `SqsBatchResponse` out with only the records that must come back.
//!
//! What each [`Disposition`] becomes on Lambda (the event source mapping must have
//! `ReportBatchItemFailures`):
//! - `Ack`: success; Lambda deletes the message.
//! - `DeadLetter`: sent to the dead-letter queue through the queue port (with its reason), which
//!   also deletes it; then success. If that fails the record is reported failed and comes back.
//! - `Redeliver`: the error is recorded against the message, its visibility set to the wait, and
//!   the record reported failed, so SQS delivers it again after the wait (and moves it to the DLQ
//!   by the redrive policy after the receive limit).
//!
//! Records of one batch are handled concurrently (a batch is at most 10 records): one slow user
//! does not hold up the others.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use mdops_core::queue::{QueueName, ReceivedMessage};
use mdops_handlers::Deps;
use mdops_handlers::disposition::{Disposition, redeliver_later};

/// SQS's `ApproximateReceiveCount` attribute of a record.
const RECEIVE_COUNT_ATTR: &str = "ApproximateReceiveCount";
/// SQS's `SentTimestamp` attribute of a record (milliseconds since the epoch).
const SENT_TIMESTAMP_ATTR: &str = "SentTimestamp";

/// A record as the queue port's received message; `Err` names what is missing.
pub fn received(record: &SqsMessage, now: DateTime<Utc>) -> Result<ReceivedMessage, String> {
    let id = record
        .message_id
        .clone()
        .ok_or_else(|| "SQS record has no messageId".to_string())?;
    let receipt = record
        .receipt_handle
        .clone()
        .ok_or_else(|| format!("SQS record {id} has no receiptHandle"))?;
    let receive_count = record
        .attributes
        .get(RECEIVE_COUNT_ATTR)
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let sent_at = record
        .attributes
        .get(SENT_TIMESTAMP_ATTR)
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(now);
    Ok(ReceivedMessage {
        id,
        receipt,
        body: record.body.clone().unwrap_or_default(),
        receive_count,
        sent_at,
    })
}

/// Runs `handler` over every record of `event` from `queue` and settles each as described in the
/// module documentation. Returns the records SQS must deliver again.
pub async fn sqs_batch<H, F>(queue: QueueName, event: SqsEvent, deps: &Deps, handler: H) -> SqsBatchResponse
where
    H: Fn(ReceivedMessage) -> F,
    F: Future<Output = Disposition>,
{
    let handler = &handler;
    let settle = event.records.iter().map(|record| async move {
        let message = match received(record, deps.now()) {
            Ok(m) => m,
            Err(problem) => {
                // Without a receipt the message cannot be settled here: let SQS bring it back.
                tracing::warn!(%problem, "unusable SQS record");
                return record.message_id.clone();
            }
        };
        let id = message.id.clone();
        let disposition = handler(message.clone()).await;
        settle(queue, &message, disposition, deps).await.then_some(id)
    });
    let failed = futures::future::join_all(settle).await;
    let mut response = SqsBatchResponse::default();
    for id in failed.into_iter().flatten() {
        response.add_failure(id);
    }
    response
}

/// Settles one message; `true` when it must be reported as a batch item failure.
async fn settle(queue: QueueName, message: &ReceivedMessage, disposition: Disposition, deps: &Deps) -> bool {
    match disposition {
        Disposition::Ack => false,
        Disposition::DeadLetter(failure) => match deps.queue.dead_letter(queue, message, &failure).await {
            Ok(()) => {
                mdops_graph::metric::count("DeadLetters", Some(("Queue", queue.as_str())), 1);
                false
            }
            Err(e) => {
                tracing::warn!(message = %message.id, error = %e, "could not dead-letter; the message comes back");
                true
            }
        },
        Disposition::Redeliver { after, error } => {
            if let Err(e) = redeliver_later(queue, message, after, &error, deps).await {
                tracing::warn!(error = %e, "could not set the redelivery wait; the visibility timeout applies");
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_received_messages_or_name_what_is_missing() {
        let mut record = SqsMessage::default();
        record.message_id = Some("m-1".into());
        record.receipt_handle = Some("r-1".into());
        record.body = Some("{}".into());
        record.attributes.insert(RECEIVE_COUNT_ATTR.into(), "3".into());
        record
            .attributes
            .insert(SENT_TIMESTAMP_ATTR.into(), "1700000000000".into());
        let m = received(&record, Utc::now()).expect("complete record");
        assert_eq!((m.id.as_str(), m.receipt.as_str(), m.receive_count), ("m-1", "r-1", 3));
        assert_eq!(m.sent_at.timestamp_millis(), 1_700_000_000_000);
        record.receipt_handle = None;
        assert!(received(&record, Utc::now()).unwrap_err().contains("receiptHandle"));
    }
}
