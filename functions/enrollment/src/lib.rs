//! The enrollment Lambda function: an EventBridge `TenantEnrolled` event creates the tenant's
//! onboarding run (or joins the one in progress) and queues its first steps, through the same
//! handler `mdops enroll` uses. An event that is malformed, of another type, or for a tenant that
//! is not registered is kept in the onboarding dead-letter queue with the reason; trouble with our
//! own store or queue fails the invocation so Lambda retries it.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use mdops_core::onboarding::TENANT_ENROLLED;
use mdops_core::queue::{Failure, QueueError, QueueName};
use mdops_handlers::{Deps, Disposition};
use mdops_lambda::StartupError;

/// Why an invocation failed (Lambda retries it, then sends it to the function's failure destination).
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    #[error("enrollment could not be recorded yet: {0}")]
    Retry(String),
    #[error("could not keep a refused event in the dead-letter queue: {0}")]
    DeadLetter(#[from] QueueError),
}

impl mdops_lambda::ErrorType for EnrollmentError {
    fn error_type(&self) -> &'static str {
        match self {
            EnrollmentError::Retry(_) => "EnrollmentNotRecorded",
            EnrollmentError::DeadLetter(_) => "DeadLetterFailed",
        }
    }
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run was created or joined.
    Enrolled,
    /// The event was refused and kept in the onboarding dead-letter queue under this id.
    Refused { dead_letter: String, reason: String },
}

/// What the function keeps between invocations.
pub struct Function {
    pub deps: Deps,
}

impl Function {
    /// Builds the clients from the environment (`MDOPS_PREFIX`, the standard AWS variables).
    pub async fn from_env() -> Result<Self, StartupError> {
        Ok(Function {
            deps: mdops_lambda::deps_from_env().await?,
        })
    }

    /// One event.
    pub async fn handle(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<Outcome, EnrollmentError> {
        let disposition = match event.detail_type.as_str() {
            TENANT_ENROLLED => mdops_handlers::onboarding::handle_enrollment_event(&event.detail, &self.deps).await,
            other => Disposition::DeadLetter(Failure {
                reason: format!("detail-type {other:?} is not {TENANT_ENROLLED:?}; check the EventBridge rule"),
                tenant: None,
                step: Some("enroll".into()),
                attempts: 0,
                at: self.deps.now(),
            }),
        };
        match disposition {
            Disposition::Ack => Ok(Outcome::Enrolled),
            Disposition::DeadLetter(failure) => {
                let body = serde_json::to_string(&event).unwrap_or_else(|_| event.detail.to_string());
                let id = self
                    .deps
                    .queue
                    .dead_letter_refused(QueueName::Onboarding, &body, &failure)
                    .await?;
                mdops_graph::metric::count("DeadLetters", Some(("Queue", QueueName::Onboarding.as_str())), 1);
                tracing::warn!(dead_letter = %id, reason = %failure.reason, "enrollment event refused");
                Ok(Outcome::Refused {
                    dead_letter: id,
                    reason: failure.reason,
                })
            }
            Disposition::Redeliver { error, .. } => Err(EnrollmentError::Retry(error)),
        }
    }
}
