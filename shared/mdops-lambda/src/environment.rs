//! The handlers' ports on Lambda, built once per instance from the function's environment.

use std::sync::Arc;

use mdops_handlers::Deps;
use mdops_handlers::deps::{DEFAULT_LAG_WINDOW, system_clock};
use mdops_handlers::reach::TenantReach;

/// Environment variable naming the AWS resource prefix (queues `{prefix}-{queue}`, table `{prefix}-state`).
pub const PREFIX_ENV: &str = "MDOPS_PREFIX";
/// Optional environment variable pointing Graph and the identity platform at a simulated tenant
/// (rehearsals and tests only).
pub const SIM_URL_ENV: &str = "MDOPS_SIM_URL";

/// A function could not start: what is missing or wrong in its environment.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
    #[error("connecting to the AWS resources: {0}")]
    Aws(#[from] mdops_aws::SetupError),
    #[error("building the Graph client: {0}")]
    Graph(#[from] mdops_graph::GraphError),
}

/// The handlers' ports over the AWS backend named by `MDOPS_PREFIX`, and one Graph client: built
/// once in a function's `main` and shared by every invocation.
pub async fn deps_from_env() -> Result<Deps, StartupError> {
    let prefix = std::env::var(PREFIX_ENV).map_err(|_| StartupError::Missing(PREFIX_ENV))?;
    let names = mdops_aws::ResourceNames::new(prefix)?;
    let sdk = mdops_aws::load_sdk_config().await;
    let backend = mdops_aws::AwsBackend::connect(&sdk, &names, mdops_core::queue::QueueSettings::default()).await?;
    let config = match std::env::var(SIM_URL_ENV) {
        Ok(url) => {
            let url = url::Url::parse(&url).map_err(|e| StartupError::Invalid {
                var: SIM_URL_ENV,
                problem: e.to_string(),
            })?;
            mdops_graph::GraphConfig::for_base(&url)?
        }
        Err(_) => mdops_graph::GraphConfig::default(),
    };
    let graph = mdops_graph::GraphClient::new(config)?;
    let store: Arc<dyn mdops_core::store::Store> = Arc::new(backend.store().clone());
    let reach = TenantReach::new(graph, store.clone()).with_secrets(Arc::new(mdops_aws::SecretsManager::new(&sdk)));
    Ok(Deps {
        reach: Arc::new(reach),
        store,
        queue: Arc::new(backend.queue().clone()),
        runs: Default::default(),
        clock: system_clock(),
        lag_window: DEFAULT_LAG_WINDOW,
    })
}
