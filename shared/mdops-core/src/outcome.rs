//! What a handler returns for one message: done, retry later, or failed for good.

use std::time::Duration;

/// The outcome of one attempt at one unit of work (an onboarding step, a licence change, ...).
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// The work is done; `output` is recorded (created object ids, counts).
    Done { output: serde_json::Value },
    /// Throttled or transient: try again after `after` (Graph's `Retry-After` when it gave one).
    Retry { after: Duration, reason: String },
    /// Permanent: retrying cannot help until a person changes something. Dead-lettered with `reason`.
    Failed { reason: String },
}

impl StepOutcome {
    /// `Done` with an output.
    pub fn done(output: serde_json::Value) -> Self {
        StepOutcome::Done { output }
    }

    /// `Failed` with a reason.
    pub fn failed(reason: impl Into<String>) -> Self {
        StepOutcome::Failed { reason: reason.into() }
    }

    /// `Retry` after a delay, with the reason recorded as the step's last error.
    pub fn retry(after: Duration, reason: impl Into<String>) -> Self {
        StepOutcome::Retry {
            after,
            reason: reason.into(),
        }
    }
}
