//! JSON `$batch`: up to 20 requests in one round trip, each answered (and throttled) on its own.
//!
//! Only the items answered 429 / 5xx are sent again, in a smaller batch, after the longest
//! `Retry-After` among them, within the in-process budget. Items still failing come back with their
//! last answer; [`BatchResult::error`] turns one into a classified [`GraphError`].

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{Query, TenantGraph, is_idempotent};
use crate::error::{ApiError, GraphError, Result, parse_retry_after};
use crate::fleet::RequestCounts;
use crate::limiter::RequestKind;

/// Graph's limit on requests in one `$batch`.
pub const MAX_BATCH_ITEMS: usize = 20;

/// One request inside a `$batch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchItem {
    /// Caller's id for the item, unique within the call.
    pub id: String,
    /// HTTP method (`GET`, `POST`, `PATCH`, `DELETE`).
    pub method: String,
    /// URL relative to the version root, e.g. `/users/{id}`.
    pub url: String,
    /// JSON body, for writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Request headers (`Content-Type: application/json` is added for bodies).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl BatchItem {
    /// A GET item.
    pub fn get(id: impl Into<String>, url: impl Into<String>) -> BatchItem {
        BatchItem {
            id: id.into(),
            method: "GET".into(),
            url: url.into(),
            body: None,
            headers: BTreeMap::new(),
        }
    }

    /// An item with a JSON body (`POST`, `PATCH`).
    pub fn with_body(
        id: impl Into<String>,
        method: &str,
        url: impl Into<String>,
        body: serde_json::Value,
    ) -> BatchItem {
        let mut headers = BTreeMap::new();
        headers.insert("Content-Type".to_string(), "application/json".to_string());
        BatchItem {
            id: id.into(),
            method: method.to_string(),
            url: url.into(),
            body: Some(body),
            headers,
        }
    }

    fn method(&self) -> Method {
        Method::from_bytes(self.method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::POST)
    }

    fn kind(&self) -> RequestKind {
        RequestKind::of(&self.method(), &self.url)
    }
}

/// The answer to one item.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    /// The item's id.
    pub id: String,
    /// HTTP status of the item's answer.
    pub status: u16,
    /// The item's answer headers.
    pub headers: BTreeMap<String, String>,
    /// The item's JSON body (`Null` when it had none).
    pub body: serde_json::Value,
    /// Times the item was sent.
    pub attempts: u32,
    /// A POST item answered 5xx: Graph may have carried it out, so it was not re-sent.
    pub outcome_unknown: bool,
}

impl BatchResult {
    /// True for a 2xx answer.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn retry_after(&self) -> Option<Duration> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| parse_retry_after(v))
    }

    /// The item's failure as a classified error, or `None` for a 2xx answer.
    pub fn error(&self, graph: &TenantGraph) -> Option<GraphError> {
        if self.is_success() {
            return None;
        }
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        let request_id = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("request-id"))
            .map(|(_, v)| v.clone());
        let policy = graph.policy();
        Some(GraphError::Api {
            tenant: graph.tenant_id().to_string(),
            method: "BATCH".into(),
            path: format!("$batch item {}", self.id),
            attempts: self.attempts,
            error: Box::new(ApiError::from_response(
                self.status,
                &body,
                request_id,
                String::new(),
                self.retry_after(),
            )),
            lag_window_passed: false,
            next_backoff: policy.backoff(self.attempts),
            outcome_unknown: self.outcome_unknown,
        })
    }

    /// Decodes the item's body.
    pub fn json<T: DeserializeOwned>(&self) -> std::result::Result<T, serde_json::Error> {
        T::deserialize(&self.body)
    }
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    requests: Vec<&'a BatchItem>,
}

#[derive(Deserialize)]
struct BatchResponse {
    responses: Vec<ItemResponse>,
}

#[derive(Deserialize)]
struct ItemResponse {
    id: String,
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: serde_json::Value,
}

pub(crate) async fn run(graph: &TenantGraph, items: Vec<BatchItem>) -> Result<Vec<BatchResult>> {
    let mut seen = HashSet::new();
    for item in &items {
        if item.id.is_empty() || !seen.insert(item.id.as_str()) {
            return Err(GraphError::InvalidRequest {
                field: "batch item id",
                problem: format!("{:?} is empty or used twice; ids must be unique", item.id),
            });
        }
        if !item.url.starts_with('/') {
            return Err(GraphError::InvalidRequest {
                field: "batch item url",
                problem: format!(
                    "item {}: {:?} must be relative to the version root, starting with '/'",
                    item.id, item.url
                ),
            });
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(MAX_BATCH_ITEMS) {
        for part in fitting_parts(graph, chunk) {
            out.extend(run_chunk(graph, part).await?);
        }
    }
    Ok(out)
}

/// Splits a chunk into consecutive parts that each fit one take of the shared budget (with the
/// default 2 s slot, at most 7 Intune writes go in one `$batch`); the whole chunk without one.
fn fitting_parts<'a>(graph: &TenantGraph, chunk: &'a [BatchItem]) -> Vec<&'a [BatchItem]> {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < chunk.len() {
        let mut end = start + 1;
        while end < chunk.len() && graph.fits_one_send(counts_of(&chunk[start..=end])) {
            end += 1;
        }
        parts.push(&chunk[start..end]);
        start = end;
    }
    parts
}

fn counts_of<'a>(items: impl IntoIterator<Item = &'a BatchItem>) -> RequestCounts {
    let mut counts = RequestCounts::default();
    for item in items {
        counts.add(item.kind());
    }
    counts
}

async fn run_chunk(graph: &TenantGraph, chunk: &[BatchItem]) -> Result<Vec<BatchResult>> {
    let policy = graph.policy();
    let mut results: Vec<Option<BatchResult>> = vec![None; chunk.len()];
    let mut pending: Vec<usize> = (0..chunk.len()).collect();
    let mut attempt = 0u32;
    while !pending.is_empty() {
        attempt += 1;
        // Graph counts every item against the tenant's quotas, so each takes its own permit.
        for &i in &pending {
            graph.client_limiter_acquire(chunk[i].kind()).await?;
        }
        let request = BatchRequest {
            requests: pending.iter().map(|&i| &chunk[i]).collect(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| GraphError::InvalidRequest {
            field: "batch",
            problem: format!("cannot serialise: {e}"),
        })?;
        let url = graph.url("$batch", &Query::default())?;
        // The batch may be re-sent after a lost answer only if every item in it may be.
        let idempotent = pending.iter().all(|&i| is_idempotent(&chunk[i].method()));
        // Graph counts the items, not the envelope (https://learn.microsoft.com/graph/json-batching).
        let counts = counts_of(pending.iter().map(|&i| &chunk[i]));
        let resp = graph
            .send_call(Method::POST, url, Some(body), false, "$batch", idempotent, counts)
            .await?;
        let answer: BatchResponse = graph.decode(&Method::POST, "$batch", &resp.body)?;
        let mut retry: Vec<usize> = Vec::new();
        let mut wait = Duration::ZERO;
        for item in answer.responses {
            let Some(&i) = pending.iter().find(|&&i| chunk[i].id == item.id) else {
                tracing::warn!(id = item.id, "$batch answered an id that was not asked; ignored");
                continue;
            };
            if item.status == 429 {
                crate::metric::count("GraphThrottled", None, 1);
            }
            let outcome_unknown = item.status >= 500 && !is_idempotent(&chunk[i].method());
            let result = BatchResult {
                id: item.id,
                status: item.status,
                headers: item.headers,
                body: item.body,
                attempts: attempt,
                outcome_unknown,
            };
            // 429 and 5xx items are re-sent; a 404 item is left to the caller, who knows whether
            // the object may still be replicating; a POST answered 5xx may have been carried out.
            let retryable = !result.is_success()
                && !outcome_unknown
                && result.status != 404
                && graph
                    .classify_item(result.status, result.retry_after())
                    .retry_after()
                    .is_some();
            if retryable {
                wait = wait.max(result.retry_after().unwrap_or_else(|| policy.backoff(attempt)));
                retry.push(i);
            }
            results[i] = Some(result);
        }
        // An item Graph did not answer at all is re-sent too, unless it is a POST.
        for &i in &pending {
            if results[i].is_none() && is_idempotent(&chunk[i].method()) {
                retry.push(i);
                wait = wait.max(policy.backoff(attempt));
            }
        }
        if retry.is_empty() || attempt >= policy.max_attempts || wait > policy.max_in_process_wait {
            break;
        }
        tracing::info!(
            tenant = graph.tenant_id(),
            items = retry.len(),
            wait_ms = wait.as_millis() as u64,
            attempt,
            "re-sending throttled or failed $batch items"
        );
        tokio::time::sleep(wait).await;
        pending = retry;
    }
    Ok(results
        .into_iter()
        .zip(chunk)
        .map(|(r, item)| {
            r.unwrap_or_else(|| BatchResult {
                id: item.id.clone(),
                status: 503,
                headers: BTreeMap::new(),
                body: serde_json::json!({"error": {"code": "NoBatchAnswer", "message": "Graph gave no answer for this $batch item"}}),
                attempts: attempt,
                outcome_unknown: !is_idempotent(&item.method()),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_serialise_as_graph_expects() {
        let items = [
            BatchItem::get("1", "/users/a"),
            BatchItem::with_body("2", "PATCH", "/groups/g", serde_json::json!({"description": "x"})),
        ];
        let v = serde_json::to_value(BatchRequest {
            requests: items.iter().collect(),
        })
        .unwrap();
        assert_eq!(
            v["requests"][0],
            serde_json::json!({"id": "1", "method": "GET", "url": "/users/a"})
        );
        assert_eq!(v["requests"][1]["headers"]["Content-Type"], "application/json");
        assert_eq!(v["requests"][1]["body"]["description"], "x");
    }

    #[test]
    fn item_headers_give_retry_after_case_insensitively() {
        let mut headers = BTreeMap::new();
        headers.insert("Retry-After".to_string(), "2.5".to_string());
        let r = BatchResult {
            id: "1".into(),
            status: 429,
            headers,
            body: serde_json::Value::Null,
            attempts: 1,
            outcome_unknown: false,
        };
        assert_eq!(r.retry_after(), Some(Duration::from_millis(2500)));
        assert!(!r.is_success());
    }
}
