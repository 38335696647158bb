//! A typed client of the access API for people at a terminal (`mdops access request|approve|...`):
//! every decision goes through the API with the person's own token, so the CLI gets exactly the
//! checks the web does.

use std::time::Duration;

use mdops_core::access::NewAccessRequest;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// Timeout of one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused (status and its `error` message; 409 carries the current state).
    #[error("HTTP {status}: {message}")]
    Refused { status: u16, message: String, body: Value },
    /// The API could not be reached.
    #[error("calling {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// The API at `base`, called with one bearer token.
pub struct AccessClient {
    base: String,
    token: SecretString,
    http: reqwest::Client,
}

impl AccessClient {
    /// A client of the API at `base` (e.g. `https://access.mdops.example`).
    pub fn new(base: &str, token: SecretString) -> Result<AccessClient, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Http {
                url: base.to_string(),
                source,
            })?;
        Ok(AccessClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        self.call_with(method, path, body, None).await
    }

    async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(self.token.expose_secret());
        if let Some(key) = idempotency_key {
            req = req.header(crate::router::IDEMPOTENCY_KEY, key);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|source| ClientError::Http { url, source })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !(200..300).contains(&status) {
            let message = body
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string());
            return Err(ClientError::Refused { status, message, body });
        }
        Ok(body)
    }

    /// Files a request; with an idempotency key, a repeat answers the request already filed.
    pub async fn request(&self, input: &NewAccessRequest, idempotency_key: Option<&str>) -> Result<Value, ClientError> {
        let body = serde_json::to_value(input).expect("a request always serialises");
        self.call_with(reqwest::Method::POST, "/requests", Some(body), idempotency_key)
            .await
    }

    /// Approves a request.
    pub async fn approve(&self, id: &str) -> Result<Value, ClientError> {
        self.call(reqwest::Method::POST, &format!("/requests/{id}/approve"), None)
            .await
    }

    /// Denies a request.
    pub async fn deny(&self, id: &str, reason: &str) -> Result<Value, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/requests/{id}/deny"),
            Some(json!({"reason": reason})),
        )
        .await
    }

    /// Cancels one's own pending request.
    pub async fn cancel(&self, id: &str) -> Result<Value, ClientError> {
        self.call(reqwest::Method::POST, &format!("/requests/{id}/cancel"), None)
            .await
    }

    /// Ends granted access early.
    pub async fn revoke(&self, id: &str, reason: &str) -> Result<Value, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/requests/{id}/revoke"),
            Some(json!({"reason": reason})),
        )
        .await
    }
}
