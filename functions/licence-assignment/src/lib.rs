//! The licence-assignment Lambda function: an SQS event of licence-change messages (one user each)
//! goes through the same handler the embedded worker runs (`mdops_handlers::licences`), and the
//! records that must come back are reported as partial batch failures.
//!
//! `main.rs` builds the clients once ([`Function::from_env`]: the AWS backend named by
//! `MDOPS_PREFIX`, the Graph client, the SKU cache) and hands every event to [`Function::handle`];
//! tests call `handle` directly with events built from real SQS receives.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use mdops_core::queue::QueueName;
use mdops_handlers::Deps;
use mdops_handlers::licences::{LicenceSettings, Licensing, handle_with};
use mdops_lambda::{StartupError, deps_from_env, sqs_batch};

/// What the function keeps between invocations: the ports and the licence handler's state.
pub struct Function {
    /// The handlers' ports.
    pub deps: Deps,
    /// SKU cache and settings, shared by every invocation of this instance.
    pub licensing: Arc<Licensing>,
}

impl Function {
    /// A function over ready ports.
    pub fn new(deps: Deps, settings: LicenceSettings) -> Self {
        Function {
            deps,
            licensing: Arc::new(Licensing::new(settings)),
        }
    }

    /// Builds the ports from the environment (`MDOPS_PREFIX`, optional `MDOPS_SIM_URL`) and the
    /// licence settings (`MDOPS_SKU_CACHE_SECS`, `MDOPS_LICENCE_MAX_ATTEMPTS`), once.
    pub async fn from_env() -> Result<Self, StartupError> {
        Ok(Function::new(deps_from_env().await?, LicenceSettings::from_env()))
    }

    /// Handles one SQS event; the response lists the records SQS must deliver again.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        sqs_batch(QueueName::Licences, event, &self.deps, |message| {
            let deps = self.deps.clone();
            let licensing = self.licensing.clone();
            async move { handle_with(&message.body, message.receive_count, &deps, &licensing).await }
        })
        .await
    }
}
