//! What the transport does with a message once its handler has run.

use std::time::Duration;

use mdops_core::outcome::StepOutcome;
use mdops_core::queue::Failure;
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

/// Wait before a message whose handler hit an infrastructure error is delivered again.
pub const REDELIVER_AFTER: Duration = Duration::from_secs(10);

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
