//! The access-api Lambda function: API Gateway (HTTP API) events through `lambda_http` into the
//! same axum router `mdops access serve` runs (`mdops_access_api::router`), with the same in-process
//! token validation. [`state_from_env`] builds the clients once per instance.
//!
//! Environment: `MDOPS_PREFIX` (queues and table), `MDOPS_ACCESS_AUDIENCE` (our API's `aud`),
//! optionally `MDOPS_ACCESS_TENANTS` (comma-separated allow-list; default: the configured provider
//! tenant), `MDOPS_AUTHORITY` (JWKS host; default Entra ID) and `MDOPS_SIM_URL` (a simulated tenant).

use std::sync::Arc;

use mdops_access_api::{ApiState, AuthSettings, JwtValidator};
use mdops_core::access::load_settings;
use mdops_handlers::access::AccessService;
use mdops_lambda::StartupError;

/// Environment variable with the API's audience.
pub const AUDIENCE_ENV: &str = "MDOPS_ACCESS_AUDIENCE";
/// Environment variable with the tenant allow-list.
pub const TENANTS_ENV: &str = "MDOPS_ACCESS_TENANTS";
/// Environment variable with the identity platform host serving the JWKS.
pub const AUTHORITY_ENV: &str = "MDOPS_AUTHORITY";

/// The router's state: the access service and the token validator, built once. With
/// `MDOPS_ACCESS_TENANTS` set (the template sets it) start-up makes no network call.
pub async fn state_from_env() -> Result<ApiState, StartupError> {
    let deps = mdops_lambda::deps_from_env().await?;
    let audience = std::env::var(AUDIENCE_ENV).map_err(|_| StartupError::Missing(AUDIENCE_ENV.into()))?;
    let tenants: Vec<String> = match std::env::var(TENANTS_ENV) {
        Ok(list) => list
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        Err(_) => load_settings(deps.store.as_ref())
            .await
            .map_err(|e| StartupError::Settings(format!("reading the access settings: {e}")))?
            .provider_tenant_id
            .iter()
            .map(|t| t.to_string())
            .collect(),
    };
    if tenants.is_empty() {
        return Err(StartupError::Settings(format!(
            "no tenant may call: set {TENANTS_ENV} or configure the provider tenant (mdops access configure)"
        )));
    }
    let mut auth = AuthSettings::entra(&tenants[0], &audience);
    auth.allowed_tenants = tenants;
    let authority = std::env::var(AUTHORITY_ENV)
        .ok()
        .or_else(|| std::env::var(mdops_lambda::SIM_URL_ENV).ok());
    if let Some(host) = authority {
        auth.jwks_base =
            url::Url::parse(&format!("{}/", host.trim_end_matches('/'))).map_err(|e| StartupError::Invalid {
                var: AUTHORITY_ENV.into(),
                problem: e.to_string(),
            })?;
    }
    let validator = JwtValidator::new(auth).map_err(|e| StartupError::Settings(format!("token validation: {e}")))?;
    Ok(ApiState {
        service: AccessService::new(deps),
        auth: Arc::new(validator),
    })
}
