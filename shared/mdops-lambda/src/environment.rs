//! The handlers' ports on Lambda, built once per instance from the function's environment.
//!
//! The template (`infra/template.yaml`) gives every function the table name and the queue URLs
//! ([`TABLE_ENV`], [`queue_url_env`], [`dead_letter_url_env`]), so start-up makes no network
//! call. Without them (a function run by hand) the resources are found by their prefix
//! ([`PREFIX_ENV`]), which costs one `GetQueueUrl` per queue.

use std::collections::HashMap;
use std::sync::Arc;

use mdops_aws::{QueueUrls, ResourceNames};
use mdops_core::queue::{QueueName, QueueSettings};
use mdops_handlers::Deps;
use mdops_handlers::deps::{DEFAULT_LAG_WINDOW, system_clock};
use mdops_handlers::reach::TenantReach;

use crate::error::ErrorType;

/// Environment variable naming the AWS resource prefix (queues `{prefix}-{queue}`, table `{prefix}-state`).
pub const PREFIX_ENV: &str = "MDOPS_PREFIX";
/// Optional environment variable pointing Graph and the identity platform at a simulated tenant
/// (rehearsals and tests only).
pub const SIM_URL_ENV: &str = "MDOPS_SIM_URL";

pub use mdops_aws::{TABLE_ENV, dead_letter_url_env, queue_url_env};

/// A function could not start: what is missing or wrong in its environment.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0} is not set")]
    Missing(String),
    #[error("{var}: {problem}")]
    Invalid { var: String, problem: String },
    #[error("connecting to the AWS resources: {0}")]
    Aws(#[from] mdops_aws::SetupError),
    #[error("building the Graph client: {0}")]
    Graph(#[from] mdops_graph::GraphError),
    #[error("{0}")]
    Settings(String),
}

impl ErrorType for StartupError {
    fn error_type(&self) -> &'static str {
        match self {
            StartupError::Missing(_) => "StartupError.MissingSetting",
            StartupError::Invalid { .. } | StartupError::Settings(_) => "StartupError.InvalidSetting",
            StartupError::Aws(_) => "StartupError.AwsResources",
            StartupError::Graph(_) => "StartupError.GraphClient",
        }
    }
}

/// Where the function's table and queues are.
#[derive(Debug, Clone, PartialEq)]
pub enum Resources {
    /// Named in the environment: nothing to resolve.
    Known {
        table: String,
        urls: HashMap<QueueName, QueueUrls>,
    },
    /// Only a prefix: the queue URLs are resolved over the network at start-up.
    Prefix(ResourceNames),
}

impl Resources {
    /// Reads the resources from variables looked up by `var` (the process environment in
    /// [`deps_from_env`]). Either the table and every queue URL, or a prefix; a partial set is
    /// refused, naming the first variable missing.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Resources, StartupError> {
        let Some(table) = var(TABLE_ENV) else {
            let prefix = var(PREFIX_ENV)
                .ok_or_else(|| StartupError::Missing(format!("{TABLE_ENV} (with the queue URLs) or {PREFIX_ENV}")))?;
            return Ok(Resources::Prefix(ResourceNames::new(prefix)?));
        };
        let mut urls = HashMap::new();
        for queue in QueueName::ALL {
            let required = |name: String| var(&name).filter(|v| !v.is_empty()).ok_or(StartupError::Missing(name));
            urls.insert(
                queue,
                QueueUrls {
                    source: required(queue_url_env(queue))?,
                    dead_letter: required(dead_letter_url_env(queue))?,
                },
            );
        }
        Ok(Resources::Known { table, urls })
    }

    /// The backend over these resources.
    pub async fn connect(self, sdk: &aws_config::SdkConfig) -> Result<mdops_aws::AwsBackend, StartupError> {
        let settings = QueueSettings::default();
        Ok(match self {
            Resources::Known { table, urls } => mdops_aws::AwsBackend::with_urls(sdk, table, urls, settings),
            Resources::Prefix(names) => {
                tracing::warn!(
                    "{TABLE_ENV} and the queue URLs are not set: resolving the queues of prefix {names:?} over the network"
                );
                mdops_aws::AwsBackend::connect(sdk, &names, settings).await?
            }
        })
    }
}

/// The handlers' ports over the AWS backend the environment names, and one Graph client: built
/// once in a function's `main` and shared by every invocation.
pub async fn deps_from_env() -> Result<Deps, StartupError> {
    let sdk = mdops_aws::load_sdk_config().await;
    deps_from(&sdk, |name| std::env::var(name).ok()).await
}

/// [`deps_from_env`] with the variables looked up by `var` and the given SDK configuration (tests
/// start a function's ports from the variables `mdops aws setup --env` prints).
pub async fn deps_from(
    sdk: &aws_config::SdkConfig,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Deps, StartupError> {
    let resources = Resources::from_vars(&var)?;
    let backend = resources.connect(sdk).await?;
    let config = match var(SIM_URL_ENV) {
        Some(url) => {
            let url = url::Url::parse(&url).map_err(|e| StartupError::Invalid {
                var: SIM_URL_ENV.into(),
                problem: e.to_string(),
            })?;
            mdops_graph::GraphConfig::for_base(&url)?
        }
        None => mdops_graph::GraphConfig::default(),
    };
    // Every instance of every function takes its permits from the table: one quota per tenant
    // for the whole fleet, however many instances Lambda runs.
    let graph = mdops_graph::GraphClient::with_shared_budget(config, Arc::new(backend.store().clone()))?;
    let store: Arc<dyn mdops_core::store::Store> = Arc::new(backend.store().clone());
    let reach = TenantReach::new(graph, store.clone()).with_secrets(Arc::new(mdops_aws::SecretsManager::new(sdk)));
    Ok(Deps {
        reach: Arc::new(reach),
        store,
        queue: Arc::new(backend.queue().clone()),
        runs: Default::default(),
        clock: system_clock(),
        lag_window: DEFAULT_LAG_WINDOW,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_template_variables_name_every_resource_without_a_lookup() {
        let mut pairs = vec![(TABLE_ENV.to_string(), "p-state".to_string())];
        for q in QueueName::ALL {
            pairs.push((queue_url_env(q), format!("https://sqs/1/p-{}", q.as_str())));
            pairs.push((dead_letter_url_env(q), format!("https://sqs/1/p-{}-dlq", q.as_str())));
        }
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match Resources::from_vars(vars(&borrowed)).unwrap() {
            Resources::Known { table, urls } => {
                assert_eq!(table, "p-state");
                assert_eq!(urls[&QueueName::Licences].dead_letter, "https://sqs/1/p-licences-dlq");
                assert_eq!(urls.len(), QueueName::ALL.len());
            }
            other => panic!("expected known resources, got {other:?}"),
        }
        assert_eq!(queue_url_env(QueueName::Onboarding), "MDOPS_ONBOARDING_QUEUE_URL");
        assert_eq!(dead_letter_url_env(QueueName::Access), "MDOPS_ACCESS_DLQ_URL");
    }

    #[test]
    fn a_partial_set_names_the_missing_variable_and_a_prefix_alone_still_works() {
        let e = Resources::from_vars(vars(&[(TABLE_ENV, "p-state")])).unwrap_err();
        assert_eq!(e.to_string(), "MDOPS_ONBOARDING_QUEUE_URL is not set");
        assert_eq!(e.error_type(), "StartupError.MissingSetting");
        assert!(matches!(
            Resources::from_vars(vars(&[(PREFIX_ENV, "p")])).unwrap(),
            Resources::Prefix(_)
        ));
        let none = Resources::from_vars(vars(&[])).unwrap_err().to_string();
        assert!(none.contains(TABLE_ENV) && none.contains(PREFIX_ENV), "{none}");
        let bad = Resources::from_vars(vars(&[(PREFIX_ENV, "has space")])).unwrap_err();
        assert!(bad.to_string().contains("resource prefix"), "{bad}");
    }
}
