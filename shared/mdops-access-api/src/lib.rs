//! `mdops-access-api`: temporary engineer access over HTTP.
//!
//! An engineer of the provider files a request for a customer tenant's role group, another team
//! member approves it ("two keys"), the guest account is elevated and later removed by the timer.
//! The decisions and side effects live in `mdops_handlers::access`; this crate is the edge:
//! - [`auth`]: validation of the callers' Entra ID access tokens (RS256, JWKS cached and refreshed
//!   on an unknown `kid` at a bounded rate, issuer, audience, lifetime, tenant allow-list).
//! - [`client`]: a typed client for people at a terminal (`mdops access approve ...`).
//! - [`router`]: the axum router, the same for `mdops access serve` and the `access-api` Lambda
//!   function (through `lambda_http`).
//!
//! A request flows: token -> [`auth::JwtValidator::validate`] -> `Caller` -> `AccessService` (rule,
//! conditional write with its outbox) -> answer; mail and Graph work follow on the access queue.

pub mod auth;
pub mod client;
pub mod router;

pub use auth::{AuthError, AuthSettings, JwtValidator};
pub use router::{ApiState, router};

/// Serves the router on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(stop).await
}
