//! The Microsoft identity platform, per tenant: the v2.0 token endpoint (client credentials with a
//! secret or a client-assertion JWT), the JWKS and the OpenID configuration; plus issuing app and
//! user tokens for the control API. Errors have the platform's shape and AADSTS codes.

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};
use sha2::Sha256;

use crate::SimError;
use crate::control::types::{IssuedToken, UserTokenRequest};
use crate::faults::{self, FaultAction, MAX_HANG_MS};
use crate::graph::{GRAPH_APP_ID, GRAPH_AUDIENCE, base_url};
use crate::server::{AppState, Connection};
use crate::store::{App, RequestLogEntry, Tenant};

/// Lifetime of access tokens: `expires_in` 3599, as Entra ID answers (azure_identity treats a token
/// as stale 5 minutes before expiry, so this must stay well above 300).
pub const ACCESS_TOKEN_LIFETIME_SECS: i64 = 3599;
/// The public authority clients put in assertion audiences.
const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// `client_assertion_type` of a JWT bearer assertion.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An identity platform error: HTTP status, OAuth error, AADSTS code and description.
#[derive(Debug, Clone)]
pub struct AadError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl AadError {
    fn new(status: StatusCode, error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            code,
            description: description.into(),
        }
    }

    fn tenant_not_found(address: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{address}' not found. Check to make sure you have the correct tenant ID and are signing into \
                 the correct cloud."
            ),
        )
    }

    fn response(&self) -> Response {
        let trace = uuid::Uuid::new_v4().to_string();
        let correlation = uuid::Uuid::new_v4().to_string();
        let ts = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{PUBLIC_AUTHORITY}/error?code={}", self.code),
        });
        (self.status, Json(body)).into_response()
    }
}

#[derive(Serialize)]
struct AppClaims<'a> {
    aud: &'a str,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    appid: &'a str,
    appidacr: &'static str,
    idp: String,
    idtyp: &'static str,
    oid: &'a str,
    sub: &'a str,
    tid: &'a str,
    roles: &'a [String],
    uti: String,
    ver: &'static str,
}

/// Issues an app access token for Graph with the app's current granted permissions.
pub fn issue_app_token(
    tenant: &Tenant,
    app: &App,
    lifetime_secs: i64,
    with_cert: bool,
) -> Result<IssuedToken, SimError> {
    let now = chrono::Utc::now().timestamp();
    let iss = format!("https://sts.windows.net/{}/", tenant.id);
    let exp = now + lifetime_secs;
    let claims = AppClaims {
        aud: GRAPH_AUDIENCE,
        idp: iss.clone(),
        iss,
        iat: now.min(exp) - 5,
        nbf: now.min(exp) - 5,
        exp,
        appid: &app.client_id,
        appidacr: if with_cert { "2" } else { "1" },
        idtyp: "app",
        oid: &app.object_id,
        sub: &app.object_id,
        tid: &tenant.id,
        roles: &app.permissions,
        uti: URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
        ver: "1.0",
    };
    Ok(IssuedToken {
        access_token: tenant.key.sign(&claims)?,
        expires_on: exp,
    })
}

/// Issues a user (engineer) token for our own API, signed by the tenant's key.
pub fn issue_user_token(tenant: &Tenant, req: &UserTokenRequest) -> Result<IssuedToken, SimError> {
    let now = chrono::Utc::now().timestamp();
    let exp = now + req.lifetime_secs.unwrap_or(ACCESS_TOKEN_LIFETIME_SECS);
    let oid = req.oid.clone().unwrap_or_else(|| person_oid(tenant, &req.upn));
    let nbf = match req.not_before_secs {
        Some(later) => now + later,
        None => now.min(exp) - 5,
    };
    let mut claims = Map::new();
    claims.insert("aud".into(), json!(req.audience));
    claims.insert("iss".into(), json!(format!("{PUBLIC_AUTHORITY}/{}/v2.0", tenant.id)));
    claims.insert("iat".into(), json!(now.min(exp) - 5));
    claims.insert("nbf".into(), json!(nbf));
    claims.insert("exp".into(), json!(exp));
    claims.insert("tid".into(), json!(tenant.id));
    claims.insert("oid".into(), json!(oid));
    claims.insert("sub".into(), json!(oid));
    claims.insert("upn".into(), json!(req.upn));
    claims.insert("preferred_username".into(), json!(req.upn));
    claims.insert(
        "name".into(),
        json!(req.name.clone().unwrap_or_else(|| req.upn.clone())),
    );
    claims.insert("ver".into(), json!("2.0"));
    if !req.roles.is_empty() {
        claims.insert("roles".into(), json!(req.roles));
    }
    if !req.groups.is_empty() {
        claims.insert("groups".into(), json!(req.groups));
    }
    for claim in &req.omit {
        claims.remove(claim);
    }
    Ok(IssuedToken {
        access_token: tenant.key.sign_with(&claims, !req.omit.iter().any(|c| c == "kid"))?,
        expires_on: exp,
    })
}

/// A person's object id, as Entra ID keeps it: the directory user's id when the UPN is one of the
/// tenant's users (so a rename through Graph keeps it), else an id derived from tenant and UPN.
fn person_oid(tenant: &Tenant, upn: &str) -> String {
    let user = tenant.users.all().find(|o| {
        o.data
            .get("userPrincipalName")
            .and_then(Value::as_str)
            .is_some_and(|u| u.eq_ignore_ascii_case(upn))
    });
    if let Some(user) = user {
        return user.id.clone();
    }
    let digest = Sha256::digest(format!("{}/{}", tenant.id, upn.to_ascii_lowercase()).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// How often a hang on the JWKS route looks whether the test released it.
const HANG_RELEASE_POLL: Duration = Duration::from_millis(10);

/// `GET /{tenant}/discovery/v2.0/keys`. Logged like any request, and subject to the tenant's
/// faults: a status answers that status; a hang holds the answer until its time is up or the
/// tenant's faults are cleared (`DELETE /_sim/tenants/{t}/faults`), then answers 504; a reset
/// drops the connection.
pub async fn jwks(
    State(app): State<AppState>,
    Extension(conn): Extension<Connection>,
    Path(address): Path<String>,
) -> Response {
    let path = format!("/{address}/discovery/v2.0/keys");
    let mut entry = RequestLogEntry {
        seq: 0,
        time: String::new(),
        method: "GET".into(),
        path: path.clone(),
        query: String::new(),
        status: 0,
        tenant: None,
        client_id: None,
        client_request_id: None,
        request_id: uuid::Uuid::new_v4().to_string(),
        body: None,
        batch_request_id: None,
        fault: None,
    };
    let (fault, clears) = {
        let mut st = app.shared.lock();
        match st.tenant_mut(&address) {
            Some(t) => {
                entry.tenant = Some(t.id.clone());
                (faults::take_matching(&mut t.faults, "GET", &path), t.fault_clears)
            }
            None => (None, 0),
        }
    };
    if let Some(action) = &fault {
        entry.fault = Some(faults::InjectedFault {
            kind: action.name().into(),
            source: "fault".into(),
            applied_status: None,
        });
    }
    match fault {
        Some(FaultAction::Reset | FaultAction::CommitThenReset) => {
            app.record(entry);
            return conn.reset().await;
        }
        Some(FaultAction::Hang { ms } | FaultAction::CommitThenHang { ms }) => {
            let until = tokio::time::Instant::now() + Duration::from_millis(ms.min(MAX_HANG_MS));
            while tokio::time::Instant::now() < until {
                let released = app
                    .shared
                    .lock()
                    .tenant(&address)
                    .is_none_or(|t| t.fault_clears != clears);
                if released {
                    break;
                }
                tokio::time::sleep(HANG_RELEASE_POLL).await;
            }
            entry.status = 504;
            app.record(entry);
            return AadError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "temporarily_unavailable",
                50196,
                "Injected hang ended.",
            )
            .response();
        }
        Some(FaultAction::Status { status, .. } | FaultAction::CommitThenStatus { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            entry.status = status.as_u16();
            app.record(entry);
            return AadError::new(status, "temporarily_unavailable", 50196, "Injected fault.").response();
        }
        None => {}
    }
    let answer = {
        let st = app.shared.lock();
        st.tenant(&address)
            .map(|t| json!({"keys": [t.key.jwk(&format!("{PUBLIC_AUTHORITY}/{}/v2.0", t.id))]}))
    };
    match answer {
        Some(keys) => {
            entry.status = 200;
            app.record(entry);
            Json(keys).into_response()
        }
        None => {
            entry.status = 400;
            app.record(entry);
            AadError::tenant_not_found(&address).response()
        }
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn openid_configuration(
    State(app): State<AppState>,
    Path(address): Path<String>,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&headers);
    let st = app.shared.lock();
    let Some(t) = st.tenant(&address) else {
        return AadError::tenant_not_found(&address).response();
    };
    let tid = &t.id;
    Json(json!({
        "issuer": format!("{PUBLIC_AUTHORITY}/{tid}/v2.0"),
        "token_endpoint": format!("{base}/{tid}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/authorize"),
        "jwks_uri": format!("{base}/{tid}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "name", "oid", "tid", "upn", "roles", "groups"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }))
    .into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`: client credentials grant.
pub async fn token(
    State(app): State<AppState>,
    Extension(conn): Extension<Connection>,
    Path(address): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Map<String, Value> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let mut logged = Value::Object(form.clone());
    crate::graph::redact(&mut logged);
    let path = format!("/{address}/oauth2/v2.0/token");
    let mut entry = RequestLogEntry {
        seq: 0,
        time: String::new(),
        method: "POST".into(),
        path: path.clone(),
        query: String::new(),
        status: 0,
        tenant: None,
        client_id: form.get("client_id").and_then(Value::as_str).map(str::to_string),
        client_request_id: headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        request_id: uuid::Uuid::new_v4().to_string(),
        body: Some(logged),
        batch_request_id: None,
        fault: None,
    };
    let (latency, fault) = {
        let mut st = app.shared.lock();
        match st.tenant_mut(&address) {
            Some(t) => {
                entry.tenant = Some(t.id.clone());
                (t.knobs.latency_ms, faults::take_matching(&mut t.faults, "POST", &path))
            }
            None => (0, None),
        }
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match fault {
        // A token issued and then lost harms nothing: the commit-first faults act like the plain ones.
        Some(FaultAction::Reset | FaultAction::CommitThenReset) => {
            app.record(entry);
            return conn.reset().await;
        }
        Some(FaultAction::Hang { ms } | FaultAction::CommitThenHang { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms.min(MAX_HANG_MS))).await;
            let e = AadError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "temporarily_unavailable",
                50196,
                "Injected hang ended.",
            );
            entry.status = 504;
            app.record(entry);
            return e.response();
        }
        Some(FaultAction::CommitThenStatus { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
            entry.status = status.as_u16();
            app.record(entry);
            return AadError::new(status, "temporarily_unavailable", 50196, "Injected fault.").response();
        }
        Some(FaultAction::Status {
            status, retry_after, ..
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = AadError::new(status, "temporarily_unavailable", 50196, "Injected fault.").response();
            if let Some(Ok(v)) = retry_after.map(axum::http::HeaderValue::try_from) {
                resp.headers_mut().insert("retry-after", v);
            }
            entry.status = status.as_u16();
            app.record(entry);
            return resp;
        }
        None => {}
    }
    let base = base_url(&headers);
    let result = {
        let st = app.shared.lock();
        grant(st.tenant(&address), &address, &form, &headers, &base)
    };
    let resp = match result {
        Ok(t) => (
            StatusCode::OK,
            [("cache-control", "no-store, no-cache")],
            Json(json!({
                "token_type": "Bearer",
                "expires_in": t.expires_on - chrono::Utc::now().timestamp(),
                "ext_expires_in": t.expires_on - chrono::Utc::now().timestamp(),
                "access_token": t.access_token,
            })),
        )
            .into_response(),
        Err(e) => e.response(),
    };
    entry.status = resp.status().as_u16();
    app.record(entry);
    resp
}

fn field<'a>(form: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    form.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn missing(name: &str) -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// Client id and secret from `Authorization: Basic` (client_secret_basic).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(v.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

fn grant(
    tenant: Option<&Tenant>,
    address: &str,
    form: &Map<String, Value>,
    headers: &HeaderMap,
    base: &str,
) -> Result<IssuedToken, AadError> {
    let tenant = tenant.ok_or_else(|| AadError::tenant_not_found(address))?;
    let grant_type = field(form, "grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        ));
    }
    let basic = basic_credentials(headers);
    let client_id = field(form, "client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
        .ok_or_else(|| missing("client_id"))?;
    let scope = field(form, "scope").ok_or_else(|| missing("scope"))?;
    let resource = scope.strip_suffix("/.default").ok_or_else(|| {
        AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value \
                 with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )
    })?;
    if !matches!(resource.trim_end_matches('/'), GRAPH_AUDIENCE | GRAPH_APP_ID) {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {}.",
                tenant.name
            ),
        ));
    }
    let app = tenant.apps.get(&client_id.to_ascii_lowercase()).ok_or_else(|| {
        AadError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if \
                 the application has not been installed by the administrator of the tenant or consented to by any \
                 user in the tenant.",
                tenant.name
            ),
        )
    })?;
    let secret = field(form, "client_secret")
        .map(str::to_string)
        .or_else(|| basic.map(|b| b.1));
    let with_cert = if let Some(assertion) = field(form, "client_assertion") {
        if field(form, "client_assertion_type") != Some(JWT_BEARER) {
            return Err(AadError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                format!("Invalid client_assertion_type; expected '{JWT_BEARER}'."),
            ));
        }
        verify_assertion(tenant, app, address, assertion, base)?;
        true
    } else if let Some(secret) = secret {
        let ok = app
            .secret
            .as_ref()
            .is_some_and(|s| constant_time_eq(s.expose_secret().as_bytes(), secret.as_bytes()));
        if !ok {
            return Err(AadError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret \
                     value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            ));
        }
        false
    } else {
        return Err(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        ));
    };
    if app.permissions.is_empty() {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            65001,
            format!(
                "The user or administrator has not consented to use the application with ID '{client_id}' named '{}'. \
                 Send an interactive authorization request for this user and resource.",
                app.display_name
            ),
        ));
    }
    issue_app_token(tenant, app, ACCESS_TOKEN_LIFETIME_SECS, with_cert)
        .map_err(|e| AadError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", 50000, e.to_string()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SHA-1 thumbprint (base64url, the `x5t` form) of a PEM certificate, if it is one.
pub fn certificate_thumbprint(pem: &str) -> Option<String> {
    certificate_digest(pem).map(|d| URL_SAFE_NO_PAD.encode(d))
}

fn certificate_digest(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(b64).ok()?;
    Some(Sha1::digest(&der).to_vec())
}

/// The bytes of a presented thumbprint. Entra ID accepts more than the base64url the JOSE spec
/// names: azure_identity sends standard base64 with padding, and operators paste hex thumbprints.
fn thumbprint_bytes(presented: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE};
    if presented.len() == 40 && presented.chars().all(|c| c.is_ascii_hexdigit()) {
        return (0..40)
            .step_by(2)
            .map(|i| u8::from_str_radix(&presented[i..i + 2], 16).ok())
            .collect();
    }
    [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD, &STANDARD_NO_PAD]
        .iter()
        .find_map(|e| e.decode(presented).ok())
}

/// Whether a registered certificate matches a presented `x5t`/`kid`.
fn certificate_matches(cert: &crate::seeds::CertificateSeed, presented: &str) -> bool {
    if cert.key_id.as_deref() == Some(presented) {
        return true;
    }
    match (certificate_digest(&cert.pem), thumbprint_bytes(presented)) {
        (Some(digest), Some(bytes)) => digest == bytes,
        _ => false,
    }
}

fn verify_assertion(tenant: &Tenant, app: &App, address: &str, assertion: &str, base: &str) -> Result<(), AadError> {
    let bad = |code: u32, msg: String| AadError::new(StatusCode::UNAUTHORIZED, "invalid_client", code, msg);
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| bad(50027, format!("JWT token is invalid or malformed: {e}.")))?;
    if header.alg != Algorithm::RS256 {
        return Err(bad(
            5002738,
            format!(
                "Invalid JWT token. '{:?}' is not a supported signature algorithm.",
                header.alg
            ),
        ));
    }
    let presented: Vec<String> = [header.x5t.clone(), header.kid.clone()].into_iter().flatten().collect();
    let cert = app
        .certificates
        .iter()
        .find(|c| presented.iter().any(|p| certificate_matches(c, p)))
        .ok_or_else(|| {
            bad(
                700027,
                format!(
                    "Client assertion failed signature validation. The key with identifier '{}' used to sign the client \
                     assertion is not registered on application '{}'.",
                    presented.first().cloned().unwrap_or_default(),
                    app.client_id
                ),
            )
        })?;
    let key = DecodingKey::from_rsa_pem(cert.pem.as_bytes())
        .map_err(|e| bad(700027, format!("The registered certificate cannot be used: {e}.")))?;
    let mut audiences = Vec::new();
    for host in [base, PUBLIC_AUTHORITY] {
        for t in [address, tenant.id.as_str(), tenant.name.as_str()]
            .into_iter()
            .chain(tenant.domains.iter().map(String::as_str))
        {
            audiences.push(format!("{host}/{t}/oauth2/v2.0/token"));
            audiences.push(format!("{host}/{t}/v2.0"));
        }
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&audiences);
    validation.set_issuer(&[app.client_id.as_str()]);
    validation.sub = Some(app.client_id.clone());
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(assertion, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => bad(700027, "Client assertion contains an invalid signature.".into()),
            ErrorKind::ExpiredSignature => bad(700024, "Client assertion is not within its valid time range.".into()),
            ErrorKind::InvalidAudience => bad(
                700021,
                format!(
                    "Client assertion audience claim does not match Realm issuer. Expected {}.",
                    audiences[0]
                ),
            ),
            ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => bad(
                700023,
                "Client assertion iss and sub claims must both be the client id.".into(),
            ),
            other => bad(50027, format!("Invalid client assertion: {other:?}.")),
        }
    })?;
    Ok(())
}
