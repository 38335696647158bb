//! The access-expiry Lambda function. Two triggers, one instance's clients:
//! - the EventBridge schedule (every minute): [`Function::tick`] runs the access timer pass
//!   (`mdops_handlers::access::expiry_pass`): expire undecided requests, end elapsed access, re-send
//!   outstanding removals, relay unqueued side effects; then the membership sweep
//!   (`mdops_handlers::access::sweep_if_due`, at most once per `SWEEP_INTERVAL` across every
//!   instance), which removes any guest in a role group that holds no live grant. The sweep rides
//!   this schedule rather than a function of its own: it needs the same clients and permissions;
//!   no extra schedule or IAM role is needed in the template;
//! - the access SQS queue: [`Function::work`] runs each record through the same handler as the
//!   embedded worker (`mdops_handlers::access::handle`) and reports partial batch failures.
//!
//! [`Function::handle`] tells the two apart by shape (`Records` is an SQS event).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use mdops_core::queue::QueueName;
use mdops_handlers::Deps;
use mdops_handlers::access::{ExpiryReport, SweepReport, expiry_pass, sweep_if_due};
use mdops_lambda::{FunctionError, StartupError};
use serde::Serialize;
use serde_json::Value;

/// Due requests (and outbox entries) handled per scheduled run; the rest wait a minute. A pass of
/// this size takes seconds, well inside the function's timeout.
pub const PER_TICK: usize = 200;

/// What one scheduled run did.
#[derive(Debug, Serialize)]
pub struct TickReport {
    #[serde(flatten)]
    pub expiry: ExpiryReport,
    /// The sweep, when one was due.
    pub sweep: Option<SweepReport>,
}

/// What the function keeps between invocations.
pub struct Function {
    /// The handlers' ports.
    pub deps: Deps,
}

impl Function {
    /// Builds the clients from the environment (`MDOPS_TABLE` and the queue URLs, optionally `MDOPS_SIM_URL`).
    pub async fn from_env() -> Result<Self, StartupError> {
        Ok(Function {
            deps: mdops_lambda::deps_from_env().await?,
        })
    }

    /// One scheduled run of the timer pass, and of the sweep when it is due. A failed pass does
    /// not keep the sweep from running (the sweep is what ends access when the records cannot).
    pub async fn tick(&self, event: EventBridgeEvent<Value>) -> Result<TickReport, FunctionError> {
        tracing::info!(source = %event.source, "access timer pass");
        let expiry = expiry_pass(&self.deps, PER_TICK).await;
        let sweep = sweep_if_due(&self.deps).await;
        let report = TickReport {
            expiry: expiry.map_err(|e| FunctionError::new("ExpiryPassFailed", &e))?,
            sweep: sweep.map_err(|e| FunctionError::new("SweepFailed", &e))?,
        };
        tracing::info!(?report, "access timer pass done");
        Ok(report)
    }

    /// One batch of access-queue messages.
    pub async fn work(&self, event: SqsEvent) -> SqsBatchResponse {
        mdops_lambda::sqs_batch(QueueName::Access, event, &self.deps, |message| {
            let deps = self.deps.clone();
            async move { mdops_handlers::access::handle(&message.body, message.receive_count, &deps).await }
        })
        .await
    }

    /// Either trigger's event: an SQS batch answers its partial failures, a schedule its report.
    pub async fn handle(&self, event: Value) -> Result<Value, FunctionError> {
        match Event::decode(event)? {
            Event::Access(sqs) => Ok(serde_json::json!(self.work(sqs).await)),
            Event::Tick(scheduled) => Ok(serde_json::json!(self.tick(scheduled).await?)),
        }
    }
}

/// What invoked the function, told apart by shape (`Records` is an SQS event).
#[derive(Debug)]
pub enum Event {
    /// A batch from the access queue.
    Access(SqsEvent),
    /// The one-minute schedule.
    Tick(EventBridgeEvent<Value>),
}

impl Event {
    /// Decodes an invocation's payload (`mdops.EventNotUnderstood` naming the field at fault).
    pub fn decode(event: Value) -> Result<Event, FunctionError> {
        if event.get("Records").is_some() {
            Ok(Event::Access(mdops_lambda::decode_event(event)?))
        } else {
            Ok(Event::Tick(mdops_lambda::decode_event(event)?))
        }
    }
}
