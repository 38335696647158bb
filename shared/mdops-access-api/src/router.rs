//! The HTTP API: one axum router for `mdops access serve` and the `access-api` Lambda function.
//!
//! | Route | Does |
//! |---|---|
//! | `POST /requests` | file a request `{tenant, role_group, justification, ticket, duration_minutes}` -> 201; with `Idempotency-Key`, a retry answers the same request (200) |
//! | `GET /requests?state=&tenant=&requester=&limit=` | list (a non-member sees only their own) |
//! | `GET /requests/{id}` | the request and the newest page of its audit trail (`audit`, `audit_next`) |
//! | `GET /requests/{id}/audit?before=&limit=` | an older page of the trail, newest first |
//! | `POST /requests/{id}/approve` | approve (another team member) |
//! | `POST /requests/{id}/deny` | deny `{reason}` |
//! | `POST /requests/{id}/cancel` | cancel (the requester) |
//! | `POST /requests/{id}/revoke` | end early `{reason}` |
//! | `GET /health` | liveness, no token |
//!
//! Every other route needs `Authorization: Bearer <Entra ID access token>`; any token problem is a
//! bare 401 (the reason is logged, not told). Refusals: 400 names the field, 403 says who may, 409
//! carries the request's current `state`, 422 is an idempotency key reused with another body.
//! Reads are authorized like decisions: team members read every request, a requester their own,
//! anyone else gets 403.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mdops_core::access::{AccessState, Caller, ListFilter, NewAccessRequest, Refusal};
use mdops_handlers::access::{AccessError, AccessService};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{AuthError, JwtValidator};

/// Largest request body: a justification and a ticket, not a file.
const MAX_BODY: usize = 64 * 1024;
/// The header a client retrying `POST /requests` repeats (IETF draft "The Idempotency-Key HTTP
/// Header Field").
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Default and largest page of `GET /requests`.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub service: AccessService,
    pub auth: Arc<JwtValidator>,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/requests", post(create).get(list))
        .route("/requests/{id}", get(show))
        .route("/requests/{id}/audit", get(trail))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/deny", post(deny))
        .route("/requests/{id}/cancel", post(cancel))
        .route("/requests/{id}/revoke", post(revoke))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An error answer: status and JSON body.
pub struct ApiError(StatusCode, serde_json::Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.0, Json(self.1)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        tracing::warn!(reason = %e, "token refused");
        ApiError(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid or missing access token"}),
        )
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> ApiError {
        match e {
            AccessError::Refused(Refusal::Invalid(i)) => ApiError(
                StatusCode::BAD_REQUEST,
                json!({"error": i.to_string(), "field": i.field}),
            ),
            AccessError::Refused(r @ Refusal::Forbidden(_)) => {
                ApiError(StatusCode::FORBIDDEN, json!({"error": r.to_string()}))
            }
            AccessError::Refused(ref r @ Refusal::Conflict { state, .. }) => {
                ApiError(StatusCode::CONFLICT, json!({"error": r.to_string(), "state": state}))
            }
            AccessError::NotFound(id) => ApiError(StatusCode::NOT_FOUND, json!({"error": format!("no request {id}")})),
            e @ AccessError::KeyReused(_) => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": e.to_string(), "field": IDEMPOTENCY_KEY}),
            ),
            AccessError::Store(s) => {
                tracing::error!(error = %s, "access API: store unavailable");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "state store unavailable, retry"}),
                )
            }
        }
    }
}

/// The authenticated caller.
pub struct Authed(pub Caller);

impl FromRequestParts<ApiState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?;
        Ok(Authed(state.auth.validate(token.trim()).await?))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    mdops_core::json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, json!({"error": format!("body: {e}")})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    #[serde(default)]
    reason: String,
}

async fn create(
    State(s): State<ApiState>,
    Authed(caller): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: NewAccessRequest = parse(&body)?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                json!({"error": "Idempotency-Key: must be visible ASCII", "field": IDEMPOTENCY_KEY}),
            )
        })?),
        None => None,
    };
    let filed = s.service.request(&caller, &input, key).await?;
    let status = if filed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(filed.request)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    tenant: Option<String>,
    requester: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(s): State<ApiState>,
    Authed(caller): Authed,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let state = match q.state.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => Some(v.parse::<AccessState>().map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                json!({"error": e.to_string(), "field": "state"}),
            )
        })?),
        None => None,
    };
    let filter = ListFilter {
        state,
        tenant: q.tenant,
        requester: q.requester,
        requester_id: None,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let requests = s.service.list(&caller, &filter, limit).await?;
    Ok(Json(json!({"requests": requests})).into_response())
}

async fn show(State(s): State<ApiState>, Authed(caller): Authed, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (request, audit) = s.service.get(&caller, &id).await?;
    Ok(Json(json!({"request": request, "audit": audit.entries, "audit_next": audit.next})).into_response())
}

#[derive(Deserialize)]
struct TrailQuery {
    before: Option<String>,
    limit: Option<usize>,
}

async fn trail(
    State(s): State<ApiState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Query(q): Query<TrailQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let page = s
        .service
        .trail(&caller, &id, q.before.as_deref().filter(|b| !b.is_empty()), limit)
        .await?;
    Ok(Json(json!({"audit": page.entries, "audit_next": page.next})).into_response())
}

async fn approve(
    State(s): State<ApiState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.service.approve(&caller, &id).await?).into_response())
}

async fn deny(
    State(s): State<ApiState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: Reason = parse(&body)?;
    Ok(Json(s.service.deny(&caller, &id, &r.reason).await?).into_response())
}

async fn cancel(
    State(s): State<ApiState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(s.service.cancel(&caller, &id).await?).into_response())
}

async fn revoke(
    State(s): State<ApiState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: Reason = parse(&body)?;
    Ok(Json(s.service.revoke(&caller, &id, &r.reason).await?).into_response())
}
