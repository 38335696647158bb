//! The ring-assignment Lambda function: the management jobs' timer. One trigger, an EventBridge
//! schedule (every five minutes): [`Function::tick`] runs the device ring sync
//! (`mdops_handlers::rings::sync::sync_if_due`) and the app catalogue sync
//! (`mdops_handlers::apps::sync::sync_if_due`), each at most once per its hour across every
//! instance and the embedded worker (a claim in the table). They read each tenant and send their
//! work (ring chunks, one message per app) to the onboarding queue, whose consumer, the
//! onboarding-step function, runs them through the same handlers, retries and dead letters as
//! onboarding. So this function only reads the table and Graph and sends to one queue: its role
//! holds nothing else.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use mdops_handlers::Deps;
use mdops_lambda::{FunctionError, StartupError};
use serde::Serialize;
use serde_json::Value;

/// What one scheduled run did: `None` where a job was not due.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct TickReport {
    /// Ring chunk messages sent by the ring sync.
    pub ring_chunks: Option<usize>,
    /// App messages sent by the app catalogue sync.
    pub app_messages: Option<usize>,
}

/// What the function keeps between invocations.
pub struct Function {
    /// The handlers' ports.
    pub deps: Deps,
}

impl Function {
    /// Builds the clients from the environment (`MDOPS_TABLE` and the queue URLs, or `MDOPS_PREFIX`).
    pub async fn from_env() -> Result<Self, StartupError> {
        Ok(Function {
            deps: mdops_lambda::deps_from_env().await?,
        })
    }

    /// One scheduled run: each job when it is due. A failed ring sync does not keep the app sync
    /// from running.
    pub async fn tick(&self, event: EventBridgeEvent<Value>) -> Result<TickReport, FunctionError> {
        tracing::info!(source = %event.source, "management schedule");
        let rings = mdops_handlers::rings::sync::sync_if_due(&self.deps).await;
        let apps = mdops_handlers::apps::sync::sync_if_due(&self.deps).await;
        let report = TickReport {
            ring_chunks: rings
                .map_err(|e| FunctionError::new("RingSyncFailed", &e))?
                .map(|r| r.iter().map(|s| s.messages).sum()),
            app_messages: apps
                .map_err(|e| FunctionError::new("AppSyncFailed", &e))?
                .map(|r| r.iter().map(|s| s.messages).sum()),
        };
        tracing::info!(?report, "management schedule done");
        Ok(report)
    }

    /// The schedule's event.
    pub async fn handle(&self, event: Value) -> Result<Value, FunctionError> {
        let event = decode(event)?;
        Ok(serde_json::json!(self.tick(event).await?))
    }
}

/// Decodes the schedule's event (an EventBridge scheduled event); a bad one is refused naming the field.
pub fn decode(event: Value) -> Result<EventBridgeEvent<Value>, FunctionError> {
    mdops_lambda::decode_event(event)
}
