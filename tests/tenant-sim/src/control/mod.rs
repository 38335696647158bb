//! The control API under `/_sim/` (no auth; answers loopback peers only): create and seed tenants,
//! set knobs, add faults, change permissions, SKU units and identity policies, remove objects, read
//! the request log, object counts and delivered mail, issue tokens. [`SimClient`] is its typed Rust client.

mod client;
pub mod types;

use std::collections::BTreeMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

pub use client::{ClientError, SimClient};
use types::{
    AppTokenRequest, FaultAdded, IssuedToken, MdmAuthority, Permissions, SkuUnits, TenantInfo, UserTokenRequest,
};

use crate::chaos::{Chaos, ChaosSpec};
use crate::faults::{Fault, FaultSpec};
use crate::identity::{ACCESS_TOKEN_LIFETIME_SECS, issue_app_token, issue_user_token};
use crate::knobs::Knobs;
use crate::seeds::{AppSeed, ObjectsSeed, TenantSeed};
use crate::server::{AppState, Connection};
use crate::store::{ALLOW_INVITES_FROM, IdentityPolicies, RequestLogEntry, RequestLogQuery, SentMail, Tenant};
use crate::{SimError, tenants};

/// A control API error: status and message, answered as `{"error": message}`.
pub struct ControlError(StatusCode, String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<SimError> for ControlError {
    fn from(e: SimError) -> Self {
        let status = match &e {
            SimError::Seed(_) => StatusCode::BAD_REQUEST,
            SimError::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ControlError(status, e.to_string())
    }
}

type Answer<T> = Result<Json<T>, ControlError>;

/// A JSON request body whose rejection (bad JSON, unknown field, wrong type) is a 400 with the
/// control API's `{"error": ...}` shape, naming the problem.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ControlError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(ControlError(StatusCode::BAD_REQUEST, rejection.body_text())),
        }
    }
}

fn no_tenant(t: &str) -> ControlError {
    ControlError(
        StatusCode::NOT_FOUND,
        format!("no tenant with id, name or domain '{t}'"),
    )
}

fn with_tenant<T>(
    app: &AppState,
    t: &str,
    f: impl FnOnce(&mut Tenant) -> Result<T, ControlError>,
) -> Result<T, ControlError> {
    let mut st = app.shared.lock();
    let tenant = st.tenant_mut(t).ok_or_else(|| no_tenant(t))?;
    f(tenant)
}

/// The control routes (nested under `/_sim`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{t}", get(get_tenant))
        .route("/tenants/{t}/knobs", get(get_knobs).put(set_knobs))
        .route(
            "/tenants/{t}/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/tenants/{t}/chaos", get(get_chaos).put(set_chaos).delete(clear_chaos))
        .route("/tenants/{t}/apps", post(add_app))
        .route("/tenants/{t}/apps/{client_id}/permissions", put(set_permissions))
        .route("/tenants/{t}/skus/{sku}/units", put(set_sku_units))
        .route("/tenants/{t}/mdm-authority", put(set_mdm_authority))
        .route("/tenants/{t}/objects", post(add_objects))
        .route("/tenants/{t}/objects/{kind}", get(objects))
        .route("/tenants/{t}/objects/{kind}/{id}", delete(remove_object))
        .route("/tenants/{t}/policies", get(get_policies).put(set_policies))
        .route("/tenants/{t}/counts", get(counts))
        .route("/tenants/{t}/mail", get(mail))
        .route("/tenants/{t}/user-tokens", post(user_token))
        .route("/tenants/{t}/app-tokens", post(app_token))
        .route("/requests", get(requests).delete(clear_requests))
        .layer(middleware::from_fn(loopback_only))
}

async fn loopback_only(Extension(conn): Extension<Connection>, req: Request, next: Next) -> Response {
    if !conn.peer.ip().is_loopback() {
        return ControlError(
            StatusCode::FORBIDDEN,
            "the control API answers loopback clients only".into(),
        )
        .into_response();
    }
    next.run(req).await
}

async fn list_tenants(State(app): State<AppState>) -> Json<Vec<TenantInfo>> {
    Json(app.shared.lock().tenants.iter().map(tenants::info).collect())
}

async fn create_tenant(
    State(app): State<AppState>,
    Body(seed): Body<TenantSeed>,
) -> Result<(StatusCode, Json<TenantInfo>), ControlError> {
    let info = tenants::create(&app.shared, seed).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn get_tenant(State(app): State<AppState>, Path(t): Path<String>) -> Answer<TenantInfo> {
    with_tenant(&app, &t, |t| Ok(Json(tenants::info(t))))
}

async fn get_knobs(State(app): State<AppState>, Path(t): Path<String>) -> Answer<Knobs> {
    with_tenant(&app, &t, |t| Ok(Json(t.knobs.clone())))
}

async fn set_knobs(State(app): State<AppState>, Path(t): Path<String>, Body(knobs): Body<Knobs>) -> Answer<Knobs> {
    with_tenant(&app, &t, |t| {
        t.knobs = knobs;
        Ok(Json(t.knobs.clone()))
    })
}

async fn list_faults(State(app): State<AppState>, Path(t): Path<String>) -> Answer<Vec<Fault>> {
    with_tenant(&app, &t, |t| Ok(Json(t.faults.clone())))
}

async fn add_fault(
    State(app): State<AppState>,
    Path(t): Path<String>,
    Body(spec): Body<FaultSpec>,
) -> Answer<FaultAdded> {
    if spec.count == 0 {
        return Err(ControlError(
            StatusCode::BAD_REQUEST,
            "fault count must be at least 1".into(),
        ));
    }
    let mut st = app.shared.lock();
    st.fault_seq += 1;
    let id = st.fault_seq;
    let tenant = st.tenant_mut(&t).ok_or_else(|| no_tenant(&t))?;
    tenant.faults.push(Fault {
        id,
        remaining: spec.count,
        spec,
    });
    Ok(Json(FaultAdded { id }))
}

async fn clear_faults(State(app): State<AppState>, Path(t): Path<String>) -> Result<StatusCode, ControlError> {
    with_tenant(&app, &t, |t| {
        t.faults.clear();
        t.fault_clears += 1;
        Ok(StatusCode::NO_CONTENT)
    })
}

async fn get_chaos(State(app): State<AppState>, Path(t): Path<String>) -> Answer<Option<ChaosSpec>> {
    with_tenant(&app, &t, |t| Ok(Json(t.chaos.as_ref().map(|c| c.spec().clone()))))
}

async fn set_chaos(
    State(app): State<AppState>,
    Path(t): Path<String>,
    Body(spec): Body<ChaosSpec>,
) -> Answer<ChaosSpec> {
    spec.validate().map_err(|e| ControlError(StatusCode::BAD_REQUEST, e))?;
    with_tenant(&app, &t, |t| {
        t.chaos = Some(Chaos::new(spec.clone()));
        Ok(Json(spec))
    })
}

async fn clear_chaos(State(app): State<AppState>, Path(t): Path<String>) -> Result<StatusCode, ControlError> {
    with_tenant(&app, &t, |t| {
        t.chaos = None;
        Ok(StatusCode::NO_CONTENT)
    })
}

async fn add_app(State(app): State<AppState>, Path(t): Path<String>, Body(seed): Body<AppSeed>) -> Answer<TenantInfo> {
    with_tenant(&app, &t, |t| {
        tenants::add_app(t, seed)?;
        Ok(Json(tenants::info(t)))
    })
}

async fn set_permissions(
    State(app): State<AppState>,
    Path((t, client_id)): Path<(String, String)>,
    Body(p): Body<Permissions>,
) -> Answer<Permissions> {
    with_tenant(&app, &t, |t| {
        let a = t.apps.get_mut(&client_id.to_ascii_lowercase()).ok_or_else(|| {
            ControlError(
                StatusCode::NOT_FOUND,
                format!("no app '{client_id}' in tenant '{}'", t.name),
            )
        })?;
        a.permissions = p.permissions;
        Ok(Json(Permissions {
            permissions: a.permissions.clone(),
        }))
    })
}

async fn set_sku_units(
    State(app): State<AppState>,
    Path((t, sku)): Path<(String, String)>,
    Body(units): Body<SkuUnits>,
) -> Answer<Value> {
    with_tenant(&app, &t, |t| {
        let id = t
            .skus
            .all()
            .find(|s| {
                ["skuId", "skuPartNumber"].iter().any(|k| {
                    s.data
                        .get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.eq_ignore_ascii_case(&sku))
                })
            })
            .map(|s| s.id.clone())
            .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, format!("no sku '{sku}' in tenant '{}'", t.name)))?;
        let obj = t
            .skus
            .get_mut(&id, tokio::time::Instant::now())
            .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, format!("sku '{sku}' is not visible yet")))?;
        obj.data.insert(
            "prepaidUnits".into(),
            json!({"enabled": units.enabled, "suspended": 0, "warning": 0, "lockedOut": 0}),
        );
        Ok(Json(Value::Object(obj.data.clone())))
    })
}

async fn set_mdm_authority(
    State(app): State<AppState>,
    Path(t): Path<String>,
    Body(m): Body<MdmAuthority>,
) -> Answer<TenantInfo> {
    with_tenant(&app, &t, |t| {
        if !matches!(m.mdm_authority.as_str(), "unknown" | "intune" | "sccm" | "office365") {
            return Err(ControlError(
                StatusCode::BAD_REQUEST,
                format!(
                    "mdm_authority '{}' must be unknown, intune, sccm or office365",
                    m.mdm_authority
                ),
            ));
        }
        t.mdm_authority = m.mdm_authority;
        Ok(Json(tenants::info(t)))
    })
}

async fn add_objects(
    State(app): State<AppState>,
    Path(t): Path<String>,
    Body(seed): Body<ObjectsSeed>,
) -> Answer<BTreeMap<String, usize>> {
    with_tenant(&app, &t, |t| {
        tenants::add_objects(t, &seed)?;
        Ok(Json(t.counts()))
    })
}

async fn objects(State(app): State<AppState>, Path((t, kind)): Path<(String, String)>) -> Answer<Vec<Value>> {
    with_tenant(&app, &t, |t| {
        t.apply_due_patches(tokio::time::Instant::now());
        let c = t
            .collection(&kind)
            .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, format!("unknown object kind '{kind}'")))?;
        Ok(Json(c.all().map(|o| Value::Object(o.data.clone())).collect()))
    })
}

async fn remove_object(
    State(app): State<AppState>,
    Path((t, kind, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ControlError> {
    with_tenant(&app, &t, |t| {
        let c = t
            .collection_mut(&kind)
            .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, format!("unknown or fixed object kind '{kind}'")))?;
        if !c.remove(&id, tokio::time::Instant::now()) {
            return Err(ControlError(
                StatusCode::NOT_FOUND,
                format!("no visible {kind} object '{id}'"),
            ));
        }
        // A removed directory object leaves every group it was in, as in Entra ID.
        crate::graph::devices::remove_from_groups(t, &id);
        t.members.remove(&id.to_ascii_lowercase());
        Ok(StatusCode::NO_CONTENT)
    })
}

async fn get_policies(State(app): State<AppState>, Path(t): Path<String>) -> Answer<IdentityPolicies> {
    with_tenant(&app, &t, |t| Ok(Json(t.identity_policies.clone())))
}

async fn set_policies(
    State(app): State<AppState>,
    Path(t): Path<String>,
    Body(policies): Body<IdentityPolicies>,
) -> Answer<IdentityPolicies> {
    if !ALLOW_INVITES_FROM.contains(&policies.allow_invites_from.as_str()) {
        return Err(ControlError(
            StatusCode::BAD_REQUEST,
            format!(
                "allow_invites_from '{}' must be one of {}",
                policies.allow_invites_from,
                ALLOW_INVITES_FROM.join(", ")
            ),
        ));
    }
    with_tenant(&app, &t, |t| {
        t.identity_policies = policies;
        Ok(Json(t.identity_policies.clone()))
    })
}

async fn counts(State(app): State<AppState>, Path(t): Path<String>) -> Answer<BTreeMap<String, usize>> {
    with_tenant(&app, &t, |t| Ok(Json(t.counts())))
}

async fn mail(State(app): State<AppState>, Path(t): Path<String>) -> Answer<Vec<SentMail>> {
    with_tenant(&app, &t, |t| Ok(Json(t.mail.clone())))
}

async fn user_token(
    State(app): State<AppState>,
    Path(t): Path<String>,
    Body(req): Body<UserTokenRequest>,
) -> Answer<IssuedToken> {
    with_tenant(&app, &t, |t| Ok(Json(issue_user_token(t, &req)?)))
}

async fn app_token(
    State(app): State<AppState>,
    Path(t): Path<String>,
    Body(req): Body<AppTokenRequest>,
) -> Answer<IssuedToken> {
    with_tenant(&app, &t, |t| {
        let a = t.apps.get(&req.client_id.to_ascii_lowercase()).ok_or_else(|| {
            ControlError(
                StatusCode::NOT_FOUND,
                format!("no app '{}' in tenant '{}'", req.client_id, t.name),
            )
        })?;
        Ok(Json(issue_app_token(
            t,
            a,
            req.lifetime_secs.unwrap_or(ACCESS_TOKEN_LIFETIME_SECS),
            false,
        )?))
    })
}

async fn requests(State(app): State<AppState>, Query(q): Query<RequestLogQuery>) -> Json<Vec<RequestLogEntry>> {
    let st = app.shared.lock();
    let tenant_id = q
        .tenant
        .as_deref()
        .map(|t| st.tenant(t).map(|x| x.id.clone()).unwrap_or_else(|| t.to_string()));
    Json(
        st.log
            .iter()
            .filter(|e| q.after.is_none_or(|a| e.seq > a))
            .filter(|e| {
                tenant_id
                    .as_deref()
                    .is_none_or(|t| e.tenant.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(t)))
            })
            .filter(|e| q.method.as_deref().is_none_or(|m| e.method.eq_ignore_ascii_case(m)))
            .filter(|e| q.path_prefix.as_deref().is_none_or(|p| e.path.starts_with(p)))
            .cloned()
            .collect(),
    )
}

async fn clear_requests(State(app): State<AppState>) -> StatusCode {
    app.shared.lock().log.clear();
    StatusCode::NO_CONTENT
}
