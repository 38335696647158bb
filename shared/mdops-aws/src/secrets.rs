//! [`SecretsManager`]: the secret-store port on AWS Secrets Manager, for `aws-secret:ARN`
//! credential references read by the functions at run time.

use async_trait::async_trait;
use aws_config::SdkConfig;
use mdops_core::secrets::{SecretError, SecretSource};
use secrecy::SecretString;

/// Field read when the secret is a JSON object (the console's key/value form).
pub const JSON_FIELD: &str = "client_secret";

/// AWS Secrets Manager, client built once.
#[derive(Clone, Debug)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// A source over the standard AWS configuration.
    pub fn new(sdk: &SdkConfig) -> Self {
        SecretsManager {
            client: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

/// The client secret held by a secret string: the string itself, or the `client_secret` field of
/// a JSON object.
fn client_secret(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        return value.get(JSON_FIELD)?.as_str().map(str::to_string);
    }
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn secret(&self, reference: &str) -> Result<SecretString, SecretError> {
        let fail = |problem: String| SecretError {
            reference: reference.to_string(),
            problem,
        };
        let out = self
            .client
            .get_secret_value()
            .secret_id(reference)
            .send()
            .await
            .map_err(|e| fail(mdops_core::errors::one_line(&e)))?;
        let raw = out
            .secret_string()
            .ok_or_else(|| fail("holds binary data, not a string".into()))?;
        client_secret(raw).map(SecretString::from).ok_or_else(|| {
            fail(format!(
                "is empty, or a JSON object without a string field {JSON_FIELD:?}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_json_secrets_are_read() {
        assert_eq!(client_secret(" abc \n").as_deref(), Some("abc"));
        assert_eq!(client_secret(r#"{"client_secret":"xyz"}"#).as_deref(), Some("xyz"));
        assert_eq!(client_secret(r#"{"other":"xyz"}"#), None);
        assert_eq!(client_secret("  "), None);
    }
}
