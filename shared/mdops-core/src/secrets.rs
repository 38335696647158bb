//! The secret-store port: where a credential reference such as `aws-secret:ARN` is read at run
//! time. The registry keeps only the reference; the value is fetched when Graph is first called
//! for the tenant and handed, wrapped, to the Graph client.

use async_trait::async_trait;
use secrecy::SecretString;

/// Why a secret could not be read; never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret {reference}: {problem}")]
pub struct SecretError {
    /// The reference that was asked for (an ARN), which is not secret.
    pub reference: String,
    /// What went wrong (not found, access denied, not a string, ...).
    pub problem: String,
}

/// A store of secrets, read by reference.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret under `reference`.
    async fn secret(&self, reference: &str) -> Result<SecretString, SecretError>;
}
