//! The licence-assignment Lambda function: an SQS event of licence-change messages (one user each)
//! goes through the same handler the embedded worker runs (`mdops_handlers::licences`), and the
//! records that must come back are reported as partial batch failures.
//!
//! `main.rs` builds the clients once ([`Function::from_env`]) and hands every event to
//! [`Function::handle`]; tests call `handle` directly with events built from real SQS receives.

use std::sync::Arc;

use anyhow::Context as _;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use mdops_core::queue::{QueueName, QueueSettings};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::deps::{DEFAULT_LAG_WINDOW, system_clock};
use mdops_handlers::licences::{LicenceSettings, Licensing, handle_with};
use mdops_handlers::reach::TenantReach;

/// Environment variable naming the resource prefix (queues `{prefix}-licences`, table `{prefix}-state`).
pub const PREFIX_ENV: &str = "MDOPS_PREFIX";
/// Optional environment variable pointing Graph and the identity platform at a simulated tenant.
pub const SIM_URL_ENV: &str = "MDOPS_SIM_URL";

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

    /// Builds the AWS backend, the Graph client and the ports from the environment, once.
    pub async fn from_env() -> anyhow::Result<Self> {
        let prefix = std::env::var(PREFIX_ENV).with_context(|| format!("{PREFIX_ENV} is not set"))?;
        let names = mdops_aws::ResourceNames::new(prefix).with_context(|| PREFIX_ENV.to_string())?;
        let sdk = mdops_aws::load_sdk_config().await;
        let backend = mdops_aws::AwsBackend::connect(&sdk, &names, QueueSettings::default())
            .await
            .context("connecting to the queues and table")?;
        let config = match std::env::var(SIM_URL_ENV) {
            Ok(url) => GraphConfig::for_base(&url::Url::parse(&url).with_context(|| SIM_URL_ENV.to_string())?)?,
            Err(_) => GraphConfig::default(),
        };
        let graph = GraphClient::new(config).context("building the Graph client")?;
        let store: Arc<dyn mdops_core::store::Store> = Arc::new(backend.store().clone());
        let deps = Deps {
            reach: Arc::new(TenantReach::new(graph, store.clone())),
            store,
            queue: Arc::new(backend.queue().clone()),
            runs: Default::default(),
            clock: system_clock(),
            lag_window: DEFAULT_LAG_WINDOW,
        };
        Ok(Function::new(deps, LicenceSettings::from_env()))
    }

    /// Handles one SQS event; the response lists the records SQS must deliver again.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let licensing = self.licensing.clone();
        mdops_handlers::lambda::sqs_batch(QueueName::Licences, event, &self.deps, move |message| {
            let deps = self.deps.clone();
            let licensing = licensing.clone();
            async move { handle_with(&message.body, message.receive_count, &deps, &licensing).await }
        })
        .await
    }
}
