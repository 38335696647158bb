//! The onboarding-step Lambda function. Two triggers, one instance's clients:
//! - the onboarding SQS queue: [`Function::work`] runs each record through the same step handler as
//!   the embedded worker (`mdops_handlers::worker::handle_onboarding_queue`: onboarding steps and
//!   device ring chunks) and reports partial batch failures, so one throttled step or chunk never
//!   re-delivers the others; ring chunks and catalogue apps, planned by the ring-assignment
//!   function's schedule, are worked here too (`kind` tells them apart);
//! - an EventBridge schedule (every minute): [`Function::reconcile`] re-sends steps whose deadline
//!   passed (a message lost, a holder that died).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use mdops_core::queue::QueueName;
use mdops_handlers::Deps;
use mdops_lambda::{FunctionError, StartupError};
use serde_json::json;

/// Overdue steps re-sent per scheduled run; the rest wait for the next minute.
pub const OVERDUE_PER_RUN: usize = 500;

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

    /// One batch of onboarding-step messages.
    pub async fn work(&self, event: SqsEvent) -> SqsBatchResponse {
        mdops_lambda::sqs_batch(QueueName::Onboarding, event, &self.deps, |message| {
            let deps = self.deps.clone();
            async move { mdops_handlers::worker::handle_onboarding_queue(&message.body, message.receive_count, &deps).await }
        })
        .await
    }

    /// One scheduled pass: re-sends overdue steps; returns how many.
    pub async fn reconcile(&self) -> Result<usize, mdops_handlers::onboarding::EnrollError> {
        mdops_handlers::onboarding::resend_overdue(&self.deps, OVERDUE_PER_RUN).await
    }

    /// Either trigger's event: an SQS batch answers its partial failures, a schedule its count.
    pub async fn handle(&self, event: serde_json::Value) -> Result<serde_json::Value, FunctionError> {
        match Event::decode(event)? {
            Event::Steps(sqs) => Ok(json!(self.work(sqs).await)),
            Event::Schedule => {
                let resent = self
                    .reconcile()
                    .await
                    .map_err(|e| FunctionError::new("ReconcileFailed", &e))?;
                Ok(json!({ "resent": resent }))
            }
        }
    }
}

/// What invoked the function, told apart by shape (`Records` is an SQS event).
#[derive(Debug)]
pub enum Event {
    /// A batch from the onboarding queue.
    Steps(SqsEvent),
    /// The one-minute schedule (its content is not needed).
    Schedule,
}

impl Event {
    /// Decodes an invocation's payload (`mdops.EventNotUnderstood` naming the field at fault).
    pub fn decode(event: serde_json::Value) -> Result<Event, FunctionError> {
        if event.get("Records").is_some() {
            Ok(Event::Steps(mdops_lambda::decode_event(event)?))
        } else {
            Ok(Event::Schedule)
        }
    }
}
