//! `POST /v1.0/$batch`: JSON batching. At most [`MAX_BATCH_REQUESTS`] items; each item goes through
//! faults, permissions and throttling on its own and is answered on its own; `dependsOn` is honoured
//! (items run in order; an item whose dependency failed answers 424). A reset or hang fault that
//! matches an item answers that item 504 instead, as the batch itself stays up.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{Caller, GraphError, GraphRequest, GraphResponse, Outcome, ResponseBody, execute, finish, redact};
use crate::server::AppState;
use crate::store::RequestLogEntry;

/// Graph's documented limit of requests in one batch.
pub const MAX_BATCH_REQUESTS: usize = 20;

struct Item {
    id: String,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Option<Value>,
    depends_on: Vec<String>,
}

fn parse(req: &GraphRequest) -> Result<Vec<Item>, GraphError> {
    if req.method != Method::POST {
        return Err(GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequest",
            "$batch accepts POST only.",
        ));
    }
    let requests = req
        .body
        .as_ref()
        .and_then(|b| b.get("requests"))
        .and_then(Value::as_array)
        .ok_or_else(|| GraphError::bad_request_generic("Invalid batch payload format: 'requests' must be an array."))?;
    if requests.is_empty() {
        return Err(GraphError::bad_request_generic(
            "Invalid batch payload format: 'requests' is empty.",
        ));
    }
    if requests.len() > MAX_BATCH_REQUESTS {
        return Err(GraphError::bad_request_generic(format!(
            "Invalid batch payload format: the number of requests ({}) exceeds the limit of {MAX_BATCH_REQUESTS}.",
            requests.len()
        )));
    }
    let mut items: Vec<Item> = Vec::new();
    for r in requests {
        let field = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
        let id =
            field("id").ok_or_else(|| GraphError::bad_request_generic("Each batch request needs a string 'id'."))?;
        if items.iter().any(|i| i.id == id) {
            return Err(GraphError::bad_request_generic(format!(
                "Duplicate batch request id '{id}'."
            )));
        }
        let method = field("method")
            .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .ok_or_else(|| GraphError::bad_request_generic(format!("Batch request '{id}' needs a valid 'method'.")))?;
        let url = field("url")
            .ok_or_else(|| GraphError::bad_request_generic(format!("Batch request '{id}' needs a 'url'.")))?;
        if url.starts_with("http://") || url.starts_with("https://") {
            return Err(GraphError::bad_request_generic(format!(
                "Batch request '{id}': the url must be relative."
            )));
        }
        let mut headers = HeaderMap::new();
        if let Some(h) = r.get("headers").and_then(Value::as_object) {
            for (k, v) in h {
                if let (Ok(k), Some(Ok(v))) = (HeaderName::try_from(k.as_str()), v.as_str().map(HeaderValue::try_from))
                {
                    headers.insert(k, v);
                }
            }
        }
        let body = r.get("body").cloned();
        if body.is_some() && !headers.contains_key("content-type") {
            return Err(GraphError::bad_request_generic(format!(
                "Batch request '{id}' has a body but no Content-Type header."
            )));
        }
        let depends_on: Vec<String> = r
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|d| d.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        for d in &depends_on {
            if !items.iter().any(|i| &i.id == d) {
                return Err(GraphError::bad_request_generic(format!(
                    "Batch request '{id}' depends on '{d}', which is not an earlier request of the batch."
                )));
            }
        }
        items.push(Item {
            id,
            method,
            url,
            headers,
            body,
            depends_on,
        });
    }
    Ok(items)
}

/// Runs a batch; answers `{"responses": [...]}` in request order.
pub async fn run(
    app: &AppState,
    caller: &Caller,
    req: &GraphRequest,
    base: &str,
    batch_request_id: &str,
) -> Result<GraphResponse, GraphError> {
    let items = parse(req)?;
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::new();
    for item in items {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (path, query) = match item.url.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (item.url.clone(), String::new()),
        };
        let path = format!("/{}", path.trim_start_matches('/'));
        let sub = GraphRequest {
            method: item.method.clone(),
            path: path.clone(),
            beta: false,
            query: query.clone(),
            headers: item.headers.clone(),
            body: item.body.clone(),
        };
        let failed_dependency = item
            .depends_on
            .iter()
            .any(|d| statuses.get(d).is_none_or(|s| *s >= 400));
        let mut fault = None;
        let answer = if failed_dependency {
            Err(GraphError::new(
                StatusCode::FAILED_DEPENDENCY,
                "FailedDependency",
                "A request this one depends on failed.",
            ))
        } else {
            let (outcome, injected) = {
                let mut st = app.shared.lock();
                execute(&mut st, caller, &sub, base, Instant::now())
            };
            fault = injected;
            match outcome {
                Outcome::Answer(r) => r,
                Outcome::Reset => Err(GraphError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "GatewayTimeout",
                    "Injected reset.",
                )),
                Outcome::Hang(d) => {
                    tokio::time::sleep(d).await;
                    Err(GraphError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "GatewayTimeout",
                        "Injected hang ended.",
                    ))
                }
            }
        };
        let r = finish(answer, &request_id, None);
        statuses.insert(item.id.clone(), r.status.as_u16());
        let mut logged = item.body.clone();
        if let Some(b) = logged.as_mut() {
            redact(b);
        }
        app.record(RequestLogEntry {
            seq: 0,
            time: String::new(),
            method: item.method.to_string(),
            path: format!("/v1.0{path}"),
            query,
            status: r.status.as_u16(),
            tenant: Some(caller.tenant_id.clone()),
            client_id: Some(caller.client_id.clone()),
            client_request_id: None,
            request_id: request_id.clone(),
            body: logged,
            batch_request_id: Some(batch_request_id.to_string()),
            fault,
        });
        let mut headers = Map::new();
        headers.insert("request-id".into(), json!(request_id));
        for (k, v) in &r.headers {
            headers.insert(k.clone(), json!(v));
        }
        let mut resp = json!({"id": item.id, "status": r.status.as_u16()});
        match r.body {
            ResponseBody::Json(v) => {
                headers.insert("Content-Type".into(), json!("application/json"));
                resp["body"] = v;
            }
            ResponseBody::Text(t) => {
                headers.insert("Content-Type".into(), json!("text/plain"));
                resp["body"] = json!(t);
            }
            ResponseBody::Empty => {}
        }
        resp["headers"] = Value::Object(headers);
        responses.push(resp);
    }
    Ok(GraphResponse::json(StatusCode::OK, json!({"responses": responses})))
}
