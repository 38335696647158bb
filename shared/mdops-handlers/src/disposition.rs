//! What the transport does with a message once its handler has run.

use std::time::Duration;

use mdops_core::message::DecodeError;
use mdops_core::outcome::StepOutcome;
use mdops_core::queue::{Failure, QueueError, QueueName, ReceivedMessage};

use crate::deps::Deps;
use mdops_graph::{ErrorClass, GraphError};

/// The handler's verdict on one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Delete it: the work is done, or is safely owned by another message.
    Ack,
    /// Move it to the dead-letter queue with this failure.
    DeadLetter(Failure),
    /// Leave it: it comes back after `after` (our own infrastructure failed, e.g. the store).
    /// The error is recorded against the message so it is findable if it ends in the DLQ.
    Redeliver { after: Duration, error: String },
}

impl Disposition {
    /// Dead-letters a body that does not decode as the queue's `kind` of message, with the reason
    /// naming the field and the tenant when the body had a readable one; logs it as `malformed`.
    pub fn malformed(error: &DecodeError, kind: &str, receive_count: u32, deps: &Deps) -> Disposition {
        tracing::warn!(reason = %error, kind, "malformed message");
        Disposition::DeadLetter(Failure {
            reason: error.to_string(),
            tenant: error.tenant.clone(),
            step: Some(kind.to_string()),
            attempts: receive_count,
            at: deps.now(),
        })
    }
}

/// Wait before a message whose handler hit an infrastructure error is delivered again.
pub const REDELIVER_AFTER: Duration = Duration::from_secs(10);

/// Leaves a received message to come back after `after`, first recording `error` against it (with
/// the tenant and step its body names, when it names them) so the error is findable if the
/// message later reaches the dead-letter queue by the receive limit. The recording is best-effort;
/// the visibility change is what the caller must know failed.
pub async fn redeliver_later(
    queue: QueueName,
    message: &ReceivedMessage,
    after: Duration,
    error: &str,
    deps: &Deps,
) -> Result<(), QueueError> {
    let body: Option<serde_json::Value> = serde_json::from_str(&message.body).ok();
    let field = |name: &str| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let failure = Failure {
        reason: error.to_string(),
        tenant: field("tenant_id"),
        step: field("step").or_else(|| field("kind")),
        attempts: message.receive_count,
        at: deps.now(),
    };
    if let Err(e) = deps.queue.record_failure(queue, message, &failure).await {
        tracing::warn!(error = %e, "could not record a message failure");
    }
    deps.queue.change_visibility(queue, &message.receipt, after).await
}

/// Turns a Graph error into a step outcome, using the client's one classification.
pub fn outcome_for(error: &GraphError) -> StepOutcome {
    match error.classification() {
        ErrorClass::Throttled { retry_after } => {
            StepOutcome::retry(retry_after, format!("throttled: {}", error.reason()))
        }
        ErrorClass::Transient { retry_after } => {
            StepOutcome::retry(retry_after, format!("transient: {}", error.reason()))
        }
        ErrorClass::NotFoundMaybeLag { retry_after } => StepOutcome::retry(
            retry_after,
            format!("not found yet (replication lag?): {}", error.reason()),
        ),
        ErrorClass::Permanent => StepOutcome::failed(error.reason()),
    }
}
