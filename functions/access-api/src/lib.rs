//! The access-api Lambda function: API Gateway (HTTP API) events through `lambda_http` into the
//! same axum router `mdops access serve` runs (`mdops_access_api::router`), with the same in-process
//! token validation. [`state_from_env`] builds the clients once per instance.
//!
//! Environment: `MDOPS_PREFIX` (queues and table), `MDOPS_ACCESS_AUDIENCE` (our API's `aud`),
//! optionally `MDOPS_ACCESS_TENANTS` (comma-separated allow-list; default: the configured provider
//! tenant), `MDOPS_AUTHORITY` (JWKS host; default Entra ID) and `MDOPS_SIM_URL` (a simulated tenant).

use std::sync::Arc;

use anyhow::{Context as _, bail};
use mdops_access_api::{ApiState, AuthSettings, JwtValidator};
use mdops_core::access::load_settings;
use mdops_core::queue::QueueSettings;
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::access::AccessService;
use mdops_handlers::deps::{DEFAULT_LAG_WINDOW, system_clock};
use mdops_handlers::reach::TenantReach;

/// Environment variable naming the resource prefix.
pub const PREFIX_ENV: &str = "MDOPS_PREFIX";
/// Environment variable with the API's audience.
pub const AUDIENCE_ENV: &str = "MDOPS_ACCESS_AUDIENCE";
/// Environment variable with the tenant allow-list.
pub const TENANTS_ENV: &str = "MDOPS_ACCESS_TENANTS";
/// Environment variable with the identity platform host serving the JWKS.
pub const AUTHORITY_ENV: &str = "MDOPS_AUTHORITY";
/// Environment variable pointing Graph and the identity platform at a simulated tenant.
pub const SIM_URL_ENV: &str = "MDOPS_SIM_URL";

/// The handlers' ports over the AWS backend named by `MDOPS_PREFIX`.
pub async fn deps_from_env() -> anyhow::Result<Deps> {
    let prefix = std::env::var(PREFIX_ENV).with_context(|| format!("{PREFIX_ENV} is not set"))?;
    let names = mdops_aws::ResourceNames::new(prefix).context(PREFIX_ENV)?;
    let sdk = mdops_aws::load_sdk_config().await;
    let backend = mdops_aws::AwsBackend::connect(&sdk, &names, QueueSettings::default())
        .await
        .context("connecting to the queues and table")?;
    let config = match std::env::var(SIM_URL_ENV) {
        Ok(url) => GraphConfig::for_base(&url::Url::parse(&url).context(SIM_URL_ENV)?)?,
        Err(_) => GraphConfig::default(),
    };
    let graph = GraphClient::new(config).context("building the Graph client")?;
    let store: Arc<dyn mdops_core::store::Store> = Arc::new(backend.store().clone());
    Ok(Deps {
        reach: Arc::new(TenantReach::new(graph, store.clone())),
        store,
        queue: Arc::new(backend.queue().clone()),
        runs: Default::default(),
        clock: system_clock(),
        lag_window: DEFAULT_LAG_WINDOW,
    })
}

/// The router's state: the access service and the token validator, built once.
pub async fn state_from_env() -> anyhow::Result<ApiState> {
    let deps = deps_from_env().await?;
    let audience = std::env::var(AUDIENCE_ENV).with_context(|| format!("{AUDIENCE_ENV} is not set"))?;
    let settings = load_settings(deps.store.as_ref())
        .await
        .context("reading the access settings")?;
    let tenants: Vec<String> = match std::env::var(TENANTS_ENV) {
        Ok(list) => list
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        Err(_) => settings.provider_tenant_id.iter().map(|t| t.to_string()).collect(),
    };
    if tenants.is_empty() {
        bail!("no tenant may call: set {TENANTS_ENV} or configure the provider tenant (mdops access configure)");
    }
    let mut auth = AuthSettings::entra(&tenants[0], &audience);
    auth.allowed_tenants = tenants;
    let authority = std::env::var(AUTHORITY_ENV)
        .ok()
        .or_else(|| std::env::var(SIM_URL_ENV).ok());
    if let Some(host) = authority {
        auth.jwks_base = url::Url::parse(&format!("{}/", host.trim_end_matches('/'))).context(AUTHORITY_ENV)?;
    }
    Ok(ApiState {
        service: AccessService::new(deps),
        auth: Arc::new(JwtValidator::new(auth)?),
    })
}
