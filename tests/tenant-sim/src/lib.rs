//! `tenant-sim`: a simulated Microsoft identity platform and Microsoft Graph v1.0 for several
//! tenants at once, faithful enough that a client working against it works against the real
//! service. Tests start it in-process with [`start`]; operators run it with `mdops sim` or the
//! `tenant-sim` binary to rehearse.
//!
//! Layout, following one request:
//! - [`server`]: the axum router and its own accept loop ([`RunningSim`]).
//! - [`identity`]: `/{tenant}/oauth2/v2.0/token` (secret or client assertion), JWKS, OpenID
//!   configuration; app and user tokens signed with the tenant's key ([`keys`]).
//! - [`graph`]: `/v1.0/...`: bearer check, faults ([`faults`], random ones by [`chaos`]), the permission table
//!   ([`graph::permissions`]), throttling and latency ([`knobs`]), then one module per area
//!   (users, groups, directory roles, organization, device management, directory, `$batch`),
//!   with OData plumbing (errors, `$filter`, `$select`, paging) in [`graph::odata`].
//! - [`store`]: the in-memory state (tenants, objects with replication lag, request log);
//!   [`tenants`] builds tenants from [`seeds`].
//! - [`control`]: `/_sim/...` for tests and rehearsal, and its typed client [`SimClient`].
//!
//! Addresses: identity at `{url}/{tenant}/oauth2/v2.0/token` (tenant = id, name or domain), Graph
//! at `{url}/v1.0/...`; a Graph request's tenant is the `tid` of its token.

#![warn(missing_docs)]

pub mod chaos;
pub mod control;
pub mod faults;
pub mod graph;
pub mod identity;
pub mod keys;
pub mod knobs;
pub mod seeds;
pub mod server;
pub mod store;
pub mod tenants;

pub use control::SimClient;
pub use server::{RunningSim, start};

/// Errors of starting and seeding the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot bind the simulator's listen address: {0}")]
    Bind(#[source] std::io::Error),
    /// A signing key could not be made or used.
    #[error("signing key: {0}")]
    Key(String),
    /// A seed is invalid.
    #[error("invalid seed: {0}")]
    Seed(String),
    /// A tenant (or object) exists already.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A seed file could not be read or parsed.
    #[error("seed file {path}: {message}")]
    SeedFile {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Reads tenant seeds from a JSON file: an array of [`seeds::TenantSeed`] (or one object).
pub fn read_seed_file(path: &std::path::Path) -> Result<Vec<seeds::TenantSeed>, SimError> {
    let err = |message: String| SimError::SeedFile {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    if value.is_array() {
        serde_json::from_value(value).map_err(|e| err(e.to_string()))
    } else {
        serde_json::from_value(value)
            .map(|t| vec![t])
            .map_err(|e| err(e.to_string()))
    }
}

/// Runs a simulator until Ctrl-C or SIGTERM, printing its URL as the first line of stdout.
pub async fn run_until_signal(listen: std::net::SocketAddr, seeds: Vec<seeds::TenantSeed>) -> Result<(), SimError> {
    use std::io::Write;
    let sim = start(listen, seeds).await?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", sim.url());
        let _ = out.flush();
    }
    wait_for_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
