//! Microsoft Graph v1.0 under `/v1.0/`, and under `/beta/` the same plus the beta-only Intune
//! security baselines ([`intents`]; v1.0 answers them as unknown segments, as Graph does). A request flows: bearer token checked ([`authenticate`]) ->
//! the tenant's latency -> [`execute`]: faults, route, permission table, throttle quota, then the
//! handler of its area (users, groups, ...) over `&mut Tenant` -> answer with `request-id` and the
//! echoed `client-request-id` -> request log. `$batch` items go through [`execute`] one by one.

pub mod apps;
pub mod batch;
pub mod device_management;
pub mod devices;
pub mod directory;
pub mod directory_roles;
pub mod groups;
pub mod intents;
pub mod intune_schema;
pub mod odata;
pub mod organization;
pub mod permissions;
pub mod policies;
pub mod users;

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::faults::{self, FaultAction, InjectedFault, MAX_HANG_MS};
use crate::server::{AppState, Connection};
use crate::store::{Quota, RequestLogEntry, SimState, Tenant};
pub use odata::GraphError;
use odata::QueryOptions;

/// Audience of Graph access tokens.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
/// Graph's well-known application id, also accepted as audience.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// The app a Graph request acts as, from its verified token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Tenant id (`tid`).
    pub tenant_id: String,
    /// Client id (`appid`).
    pub client_id: String,
    /// Granted application permissions (`roles`).
    pub roles: Vec<String>,
}

/// One Graph request (a top-level request or a `$batch` item).
#[derive(Debug, Clone)]
pub struct GraphRequest {
    /// Method.
    pub method: Method,
    /// Path after the version (`/v1.0` or `/beta`), starting with `/`.
    pub path: String,
    /// Sent to `/beta` rather than `/v1.0`.
    pub beta: bool,
    /// Raw query string.
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// JSON body.
    pub body: Option<Value>,
}

/// What a handler sees: the request, the time, the caller and the tenant's knobs.
pub struct Ctx<'a> {
    /// Now (tokio clock, so tests can pause time).
    pub now: Instant,
    /// `http://host:port` as the client addressed us.
    pub base: &'a str,
    /// Path after `/v1.0`.
    pub path: &'a str,
    /// Method.
    pub method: &'a Method,
    /// Raw query string.
    pub query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// JSON body.
    pub body: Option<&'a Value>,
    /// The calling app.
    pub caller: &'a Caller,
    /// Page size knob.
    pub page_size: usize,
    /// Replication lag knob.
    pub lag: Duration,
}

impl Ctx<'_> {
    /// Parsed query options.
    pub fn options(&self) -> Result<QueryOptions, GraphError> {
        QueryOptions::parse(self.query)
    }

    /// Whether the request carries `ConsistencyLevel: eventual`.
    pub fn eventual(&self) -> bool {
        self.headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
    }

    /// When an object created now becomes visible.
    pub fn visible_at(&self) -> Instant {
        self.now + self.lag
    }

    /// The body as a JSON object, or a 400.
    pub fn body_object(&self) -> Result<&Map<String, Value>, GraphError> {
        match self.body {
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(GraphError::bad_request_generic(
                "The request body must be a JSON object.",
            )),
            None => Err(GraphError::bad_request_generic("Empty Payload. JSON content expected.")),
        }
    }
}

/// A Graph answer before headers common to all answers are added.
#[derive(Debug, Clone)]
pub struct GraphResponse {
    /// Status.
    pub status: StatusCode,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: ResponseBody,
}

/// Body of a [`GraphResponse`].
#[derive(Debug, Clone)]
pub enum ResponseBody {
    /// JSON.
    Json(Value),
    /// `text/plain` (e.g. `/users/$count`).
    Text(String),
    /// No content.
    Empty,
}

impl GraphResponse {
    /// A JSON answer.
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ResponseBody::Json(body),
        }
    }

    /// An answer without body (204, 202).
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ResponseBody::Empty,
        }
    }

    /// A `text/plain` answer.
    pub fn text(status: StatusCode, text: String) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ResponseBody::Text(text),
        }
    }

    /// The answer to an error, with its OData body and `Retry-After`.
    pub fn error(err: &GraphError, request_id: &str, client_request_id: Option<&str>) -> Self {
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        let mut r = Self::json(err.status, err.body(&date, request_id, client_request_id));
        if let Some(ra) = &err.retry_after {
            r.headers.push(("Retry-After".into(), ra.clone()));
        }
        if err.status == StatusCode::UNAUTHORIZED {
            r.headers.push((
                "WWW-Authenticate".into(),
                format!(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
                     client_id=\"{GRAPH_APP_ID}\""
                ),
            ));
        }
        r
    }
}

/// The outcome of executing one request.
#[derive(Debug)]
pub enum Outcome {
    /// Answer it (an error answer gets its request ids when it is sent).
    Answer(Result<GraphResponse, GraphError>),
    /// Reset the connection.
    Reset,
    /// Hang this long, then answer 504.
    Hang(Duration),
}

/// A Graph route with the ids it carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `/organization`
    Organization,
    /// `/organization/{id}`
    OrganizationItem(String),
    /// `/organization/{id}/setMobileDeviceManagementAuthority`
    SetMdmAuthority(String),
    /// `/users`
    Users,
    /// `/users/$count`
    UsersCount,
    /// `/users/{id|upn}`
    User(String),
    /// `/users/{id}/assignLicense`
    UserAssignLicense(String),
    /// `/users/{id}/sendMail`
    UserSendMail(String),
    /// `/users/{id}/memberOf`
    UserMemberOf(String),
    /// `/groups`
    Groups,
    /// `/groups/$count`
    GroupsCount,
    /// `/groups/{id}`
    Group(String),
    /// `/groups/{id}/members`
    GroupMembers(String),
    /// `/groups/{id}/members/microsoft.graph.user`: the members that are users (an OData cast,
    /// https://learn.microsoft.com/graph/api/group-list-members: "OData cast is enabled").
    GroupMemberUsers(String),
    /// `/groups/{id}/members/$ref`
    GroupMemberRefs(String),
    /// `/groups/{id}/members/{member}/$ref`
    GroupMemberRef(String, String),
    /// `/directoryRoles`
    DirectoryRoles,
    /// `/directoryRoles/{id}` or `/directoryRoles(roleTemplateId='...')`
    DirectoryRole(String),
    /// `/directoryRoles/{id}/members`
    DirectoryRoleMembers(String),
    /// `/directoryRoles/{id}/members/$ref`
    DirectoryRoleMemberRefs(String),
    /// `/directoryRoles/{id}/members/{member}/$ref`
    DirectoryRoleMemberRef(String, String),
    /// `/deviceManagement/deviceConfigurations`
    DeviceConfigurations,
    /// `/deviceManagement/deviceConfigurations/{id}`
    DeviceConfiguration(String),
    /// `/deviceManagement/deviceConfigurations/{id}/assign`
    DeviceConfigurationAssign(String),
    /// `/deviceManagement/deviceConfigurations/{id}/assignments`
    DeviceConfigurationAssignments(String),
    /// `/deviceManagement/detectedApps`
    DetectedApps,
    /// beta `/deviceManagement/templates`
    Templates,
    /// beta `/deviceManagement/templates/{id}`
    Template(String),
    /// beta `/deviceManagement/templates/{id}/createInstance`
    TemplateCreateInstance(String),
    /// beta `/deviceManagement/intents`
    Intents,
    /// beta `/deviceManagement/intents/{id}`
    Intent(String),
    /// beta `/deviceManagement/intents/{id}/assignments`
    IntentAssignments(String),
    /// `/deviceAppManagement/mobileApps`
    MobileApps,
    /// `/deviceAppManagement/mobileApps/{id}`
    MobileApp(String),
    /// `/deviceAppManagement/mobileApps/{id}/assign`
    MobileAppAssign(String),
    /// `/deviceAppManagement/mobileApps/{id}/assignments`
    MobileAppAssignments(String),
    /// `/devices`
    Devices,
    /// `/devices/{id}`
    Device(String),
    /// `/devices/{id}/memberOf`
    DeviceMemberOf(String),
    /// `/identity/conditionalAccess/policies`
    ConditionalAccessPolicies,
    /// `/identity/conditionalAccess/policies/{id}`
    ConditionalAccessPolicy(String),
    /// `/policies/identitySecurityDefaultsEnforcementPolicy`
    SecurityDefaultsPolicy,
    /// `/policies/authorizationPolicy`
    AuthorizationPolicy,
    /// `/subscribedSkus`
    SubscribedSkus,
    /// `/invitations`
    Invitations,
    /// `/$batch`
    Batch,
}

impl Route {
    /// Matches a path (after `/v1.0`); `Err` names the first segment no route knows.
    pub fn parse(path: &str) -> Result<Route, String> {
        let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let id = |x: &str| x.to_string();
        // `/directoryRoles(roleTemplateId='...')` addresses a role by template id.
        if let Some(first) = s.first()
            && let Some(rest) = first.strip_prefix("directoryRoles(roleTemplateId=")
        {
            let template = rest.trim_end_matches(')').trim_matches('\'');
            let key = format!("roleTemplateId={template}");
            return match &s[1..] {
                [] => Ok(Route::DirectoryRole(key)),
                ["members"] => Ok(Route::DirectoryRoleMembers(key)),
                ["members", "$ref"] => Ok(Route::DirectoryRoleMemberRefs(key)),
                ["members", m, "$ref"] => Ok(Route::DirectoryRoleMemberRef(key, m.to_string())),
                _ => Err(first.to_string()),
            };
        }
        Ok(match s.as_slice() {
            ["organization"] => Route::Organization,
            ["organization", o] => Route::OrganizationItem(id(o)),
            ["organization", o, "setMobileDeviceManagementAuthority"] => Route::SetMdmAuthority(id(o)),
            ["users"] => Route::Users,
            ["users", "$count"] => Route::UsersCount,
            ["users", u] => Route::User(id(u)),
            ["users", u, "assignLicense"] => Route::UserAssignLicense(id(u)),
            ["users", u, "sendMail"] => Route::UserSendMail(id(u)),
            ["users", u, "memberOf"] => Route::UserMemberOf(id(u)),
            ["groups"] => Route::Groups,
            ["groups", "$count"] => Route::GroupsCount,
            ["groups", g] => Route::Group(id(g)),
            ["groups", g, "members"] => Route::GroupMembers(id(g)),
            ["groups", g, "members", "microsoft.graph.user"] => Route::GroupMemberUsers(id(g)),
            ["groups", g, "members", "$ref"] => Route::GroupMemberRefs(id(g)),
            ["groups", g, "members", m, "$ref"] => Route::GroupMemberRef(id(g), id(m)),
            ["directoryRoles"] => Route::DirectoryRoles,
            ["directoryRoles", r] => Route::DirectoryRole(id(r)),
            ["directoryRoles", r, "members"] => Route::DirectoryRoleMembers(id(r)),
            ["directoryRoles", r, "members", "$ref"] => Route::DirectoryRoleMemberRefs(id(r)),
            ["directoryRoles", r, "members", m, "$ref"] => Route::DirectoryRoleMemberRef(id(r), id(m)),
            ["deviceManagement", "deviceConfigurations"] => Route::DeviceConfigurations,
            ["deviceManagement", "deviceConfigurations", c] => Route::DeviceConfiguration(id(c)),
            ["deviceManagement", "deviceConfigurations", c, "assign"] => Route::DeviceConfigurationAssign(id(c)),
            ["deviceManagement", "deviceConfigurations", c, "assignments"] => {
                Route::DeviceConfigurationAssignments(id(c))
            }
            ["deviceManagement", "detectedApps"] => Route::DetectedApps,
            ["deviceManagement", "templates"] => Route::Templates,
            ["deviceManagement", "templates", t] => Route::Template(id(t)),
            ["deviceManagement", "templates", t, "createInstance"] => Route::TemplateCreateInstance(id(t)),
            ["deviceManagement", "intents"] => Route::Intents,
            ["deviceManagement", "intents", i] => Route::Intent(id(i)),
            ["deviceManagement", "intents", i, "assignments"] => Route::IntentAssignments(id(i)),
            ["deviceAppManagement", "mobileApps"] => Route::MobileApps,
            ["deviceAppManagement", "mobileApps", a] => Route::MobileApp(id(a)),
            ["deviceAppManagement", "mobileApps", a, "assign"] => Route::MobileAppAssign(id(a)),
            ["deviceAppManagement", "mobileApps", a, "assignments"] => Route::MobileAppAssignments(id(a)),
            ["devices"] => Route::Devices,
            ["devices", d] => Route::Device(id(d)),
            ["devices", d, "memberOf"] => Route::DeviceMemberOf(id(d)),
            ["identity", "conditionalAccess", "policies"] => Route::ConditionalAccessPolicies,
            ["identity", "conditionalAccess", "policies", p] => Route::ConditionalAccessPolicy(id(p)),
            ["policies", "identitySecurityDefaultsEnforcementPolicy"] => Route::SecurityDefaultsPolicy,
            ["policies", "authorizationPolicy"] => Route::AuthorizationPolicy,
            ["subscribedSkus"] => Route::SubscribedSkus,
            ["invitations"] => Route::Invitations,
            ["$batch"] => Route::Batch,
            other => {
                // Name the deepest segment that did not match, as Graph does.
                return Err(other.last().copied().unwrap_or("").to_string());
            }
        })
    }

    /// Whether the route exists only in Graph beta.
    pub fn beta_only(&self) -> bool {
        use Route::*;
        matches!(
            self,
            Templates | Template(_) | TemplateCreateInstance(_) | Intents | Intent(_) | IntentAssignments(_)
        )
    }

    /// [`Route::parse`] for a version: v1.0 does not know the beta-only segments and names the
    /// first of them (`Resource not found for the segment 'templates'`).
    pub fn parse_version(path: &str, beta: bool) -> Result<Route, String> {
        let route = Route::parse(path)?;
        if route.beta_only() && !beta {
            let seg = path.split('/').filter(|s| !s.is_empty()).nth(1).unwrap_or_default();
            return Err(seg.to_string());
        }
        Ok(route)
    }
}

/// Decodes `%XX` escapes of a path segment (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
struct AccessClaims {
    tid: String,
    appid: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Checks the bearer token: signature by a tenant's key, audience Graph, issuer, lifetime.
pub fn authenticate(state: &SimState, headers: &HeaderMap) -> Result<Caller, GraphError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| GraphError::unauthenticated("Access token is empty."))?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| GraphError::unauthenticated("IDX14100: JWT is not well formed."))?;
    let kid = header.kid.or(header.x5t).unwrap_or_default();
    let tenant = state
        .tenants
        .iter()
        .find(|t| t.key.kid() == kid)
        .ok_or_else(|| GraphError::unauthenticated("Access token validation failure: signing key not found."))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[GRAPH_AUDIENCE, &format!("{GRAPH_AUDIENCE}/"), GRAPH_APP_ID]);
    validation.set_issuer(&[format!("https://sts.windows.net/{}/", tenant.id)]);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss"]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, tenant.key.decoding(), &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        GraphError::unauthenticated(match e.kind() {
            ErrorKind::ExpiredSignature => "Lifetime validation failed, the token is expired.".to_string(),
            ErrorKind::InvalidSignature => "Access token validation failure: invalid signature.".to_string(),
            ErrorKind::InvalidAudience => "Access token validation failure. Invalid audience.".to_string(),
            ErrorKind::InvalidIssuer => "Access token validation failure. Invalid issuer.".to_string(),
            other => format!("Access token validation failure: {other:?}."),
        })
    })?;
    if !data.claims.tid.eq_ignore_ascii_case(&tenant.id) {
        return Err(GraphError::unauthenticated(
            "Access token validation failure. Invalid tenant.",
        ));
    }
    Ok(Caller {
        tenant_id: tenant.id.clone(),
        client_id: data.claims.appid,
        roles: data.claims.roles,
    })
}

/// Executes one request against the caller's tenant: faults (listed, then chaos), route,
/// permissions, throttling, handler. Answers the outcome and the fault injected, if any.
pub fn execute(
    state: &mut SimState,
    caller: &Caller,
    req: &GraphRequest,
    base: &str,
    now: Instant,
) -> (Outcome, Option<InjectedFault>) {
    let tenant = match state.tenant_mut(&caller.tenant_id) {
        Some(t) => t,
        None => {
            let e = GraphError::unauthenticated("The tenant of the access token no longer exists.");
            return (answer_err(e), None);
        }
    };
    let full_path = format!("/{}{}", if req.beta { "beta" } else { "v1.0" }, req.path);
    let listed = faults::take_matching(&mut tenant.faults, req.method.as_str(), &full_path).map(|a| (a, "fault"));
    let fault = listed.or_else(|| {
        tenant
            .chaos
            .as_mut()
            .and_then(|c| c.roll(req.method.as_str()))
            .map(|a| (a, "chaos"))
    });
    let Some((action, source)) = fault else {
        return (Outcome::Answer(route_and_run(tenant, caller, req, base, now)), None);
    };
    let mut injected = InjectedFault {
        kind: action.name().to_string(),
        source: source.to_string(),
        applied_status: None,
    };
    if action.commits_first() {
        let applied = route_and_run(tenant, caller, req, base, now);
        injected.applied_status = Some(match &applied {
            Ok(r) => r.status.as_u16(),
            Err(e) => e.status.as_u16(),
        });
    }
    (fault_outcome(action), Some(injected))
}

/// What a matched fault does to a request (for `commit_then_*`, after it was carried out).
fn fault_outcome(action: FaultAction) -> Outcome {
    match action {
        FaultAction::Status {
            status,
            retry_after,
            code,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = code.unwrap_or_else(|| default_code(status).to_string());
            let mut err = GraphError::new(status, &code, "Injected fault.");
            err.retry_after = retry_after;
            answer_err(err)
        }
        FaultAction::CommitThenStatus { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
            answer_err(GraphError::new(status, default_code(status), "Injected fault."))
        }
        FaultAction::Reset | FaultAction::CommitThenReset => Outcome::Reset,
        FaultAction::Hang { ms } | FaultAction::CommitThenHang { ms } => {
            Outcome::Hang(Duration::from_millis(ms.min(MAX_HANG_MS)))
        }
    }
}

fn answer_err(e: GraphError) -> Outcome {
    Outcome::Answer(Err(e))
}

/// The answer to an executed request: the handler's answer, or the OData error with the request ids.
pub fn finish(
    r: Result<GraphResponse, GraphError>,
    request_id: &str,
    client_request_id: Option<&str>,
) -> GraphResponse {
    r.unwrap_or_else(|e| GraphResponse::error(&e, request_id, client_request_id))
}

fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        401 => "InvalidAuthenticationToken",
        403 => "Authorization_RequestDenied",
        404 => "Request_ResourceNotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "UnknownError",
    }
}

fn route_and_run(
    tenant: &mut Tenant,
    caller: &Caller,
    req: &GraphRequest,
    base: &str,
    now: Instant,
) -> Result<GraphResponse, GraphError> {
    tenant.apply_due_patches(now);
    let route = Route::parse_version(&req.path, req.beta)
        .map_err(|seg| GraphError::bad_request_generic(format!("Resource not found for the segment '{seg}'.")))?;
    if route == Route::Batch {
        return Err(GraphError::bad_request_generic(
            "A $batch request cannot contain another $batch.",
        ));
    }
    let allowed = permissions::required(&route, &req.method).ok_or_else(|| {
        GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            format!("The method '{}' is not allowed on this resource.", req.method),
        )
    })?;
    if !caller.roles.iter().any(|r| allowed.contains(&r.as_str())) {
        return Err(GraphError::forbidden());
    }
    if let Some(quota) = permissions::quota(&route, &req.method) {
        throttle(tenant, &caller.client_id, quota, now)?;
    }
    let ctx = Ctx {
        now,
        base,
        path: &req.path,
        method: &req.method,
        query: &req.query,
        headers: &req.headers,
        body: req.body.as_ref(),
        caller,
        page_size: tenant.knobs.page_size,
        lag: Duration::from_millis(tenant.knobs.replication_lag_ms),
    };
    dispatch(route, tenant, &ctx)
}

fn dispatch(route: Route, t: &mut Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    use Route::*;
    let m = ctx.method.as_str();
    match route {
        Organization => organization::list(t, ctx),
        OrganizationItem(id) => organization::get(t, ctx, &id),
        SetMdmAuthority(id) => organization::set_mdm_authority(t, ctx, &id),
        Users if m == "GET" => users::list(t, ctx),
        Users => users::create(t, ctx),
        UsersCount => users::count(t, ctx),
        User(id) if m == "GET" => users::get(t, ctx, &id),
        User(id) if m == "PATCH" => users::update(t, ctx, &id),
        User(id) => users::delete(t, ctx, &id),
        UserAssignLicense(id) => users::assign_license(t, ctx, &id),
        UserSendMail(id) => users::send_mail(t, ctx, &id),
        UserMemberOf(id) => users::member_of(t, ctx, &id),
        Groups if m == "GET" => groups::list(t, ctx),
        Groups => groups::create(t, ctx),
        GroupsCount => groups::count(t, ctx),
        Group(id) if m == "GET" => groups::get(t, ctx, &id),
        Group(id) if m == "PATCH" => groups::update(t, ctx, &id),
        Group(id) => groups::delete(t, ctx, &id),
        GroupMembers(id) => groups::members(t, ctx, &id, None),
        GroupMemberUsers(id) => groups::members(t, ctx, &id, Some("#microsoft.graph.user")),
        GroupMemberRefs(id) => groups::add_member(t, ctx, &id),
        GroupMemberRef(id, member) => groups::remove_member(t, ctx, &id, &member),
        DirectoryRoles if m == "GET" => directory_roles::list(t, ctx),
        DirectoryRoles => directory_roles::activate(t, ctx),
        DirectoryRole(id) => directory_roles::get(t, ctx, &id),
        DirectoryRoleMembers(id) => directory_roles::members(t, ctx, &id),
        DirectoryRoleMemberRefs(id) => directory_roles::add_member(t, ctx, &id),
        DirectoryRoleMemberRef(id, member) => directory_roles::remove_member(t, ctx, &id, &member),
        DeviceConfigurations if m == "GET" => device_management::list_configurations(t, ctx),
        DeviceConfigurations => device_management::create_configuration(t, ctx),
        DeviceConfiguration(id) if m == "GET" => device_management::get_configuration(t, ctx, &id),
        DeviceConfiguration(id) if m == "PATCH" => device_management::update_configuration(t, ctx, &id),
        DeviceConfiguration(id) => device_management::delete_configuration(t, ctx, &id),
        DeviceConfigurationAssign(id) => device_management::assign(t, ctx, &id),
        DeviceConfigurationAssignments(id) => device_management::assignments(t, ctx, &id),
        DetectedApps => device_management::detected_apps(t, ctx),
        Templates => intents::list_templates(t, ctx),
        Template(id) => intents::get_template(t, ctx, &id),
        TemplateCreateInstance(id) => intents::create_instance(t, ctx, &id),
        Intents => intents::list_intents(t, ctx),
        Intent(id) if m == "GET" => intents::get_intent(t, ctx, &id),
        Intent(id) => intents::delete_intent(t, ctx, &id),
        IntentAssignments(id) => intents::intent_assignments(t, ctx, &id),
        MobileApps if m == "GET" => apps::list(t, ctx),
        MobileApps => apps::create(t, ctx),
        MobileApp(id) if m == "GET" => apps::get(t, ctx, &id),
        MobileApp(id) => apps::delete(t, ctx, &id),
        MobileAppAssign(id) => apps::assign(t, ctx, &id),
        MobileAppAssignments(id) => apps::assignments(t, ctx, &id),
        Devices => devices::list(t, ctx),
        Device(id) if m == "GET" => devices::get(t, ctx, &id),
        Device(id) => devices::delete(t, ctx, &id),
        DeviceMemberOf(id) => devices::member_of(t, ctx, &id),
        ConditionalAccessPolicies => policies::list_conditional_access(t, ctx),
        ConditionalAccessPolicy(id) => policies::get_conditional_access(t, ctx, &id),
        SecurityDefaultsPolicy => policies::security_defaults(t, ctx),
        AuthorizationPolicy => policies::authorization_policy(t, ctx),
        SubscribedSkus => directory::subscribed_skus(t, ctx),
        Invitations => directory::invite(t, ctx),
        Batch => Err(GraphError::bad_request_generic("Nested $batch.")),
    }
}

/// Counts a request against its quota, or answers 429 when the window is full.
fn throttle(tenant: &mut Tenant, client_id: &str, quota: Quota, now: Instant) -> Result<(), GraphError> {
    let k = &tenant.knobs;
    let (limit, window) = match quota {
        Quota::IdentityWrite => (
            k.identity_write_limit,
            Duration::from_millis(k.identity_write_window_ms),
        ),
        Quota::IntuneWrite => (k.intune_write_limit, Duration::from_millis(k.intune_write_window_ms)),
        Quota::Read => (k.read_limit, Duration::from_millis(k.read_window_ms)),
    };
    let send_retry_after = quota != Quota::IntuneWrite || k.intune_retry_after;
    let decimal = k.retry_after_decimal;
    let log = tenant
        .throttle
        .entry((client_id.to_ascii_lowercase(), quota))
        .or_default();
    admit(log, limit, window, now).map_err(|wait| {
        let mut err = GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. The application has exceeded its request quota for this tenant; retry later.",
        );
        if send_retry_after {
            err.retry_after = Some(format_retry_after(wait, decimal));
        }
        err
    })
}

/// Sliding-window admission: records `now` and admits when fewer than `limit` requests fall in the
/// last `window`; otherwise answers how long until the oldest of them leaves the window.
fn admit(
    log: &mut std::collections::VecDeque<Instant>,
    limit: u32,
    window: Duration,
    now: Instant,
) -> Result<(), Duration> {
    while log.front().is_some_and(|t| now.duration_since(*t) >= window) {
        log.pop_front();
    }
    if log.len() >= limit as usize {
        return Err(log
            .front()
            .map(|t| window.saturating_sub(now.duration_since(*t)))
            .unwrap_or(window));
    }
    log.push_back(now);
    Ok(())
}

/// `Retry-After` as whole seconds (rounded up, at least 1) or as decimal seconds.
pub fn format_retry_after(wait: Duration, decimal: bool) -> String {
    if decimal {
        let secs = wait.as_secs_f64().max(0.001);
        let s = format!("{secs:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        wait.as_millis().div_ceil(1000).max(1).to_string()
    }
}

/// `http://host:port` as the client addressed us (for next links and metadata).
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// Replaces secrets (`password`, `client_secret`, `client_assertion`) in a logged body with `***`.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if matches!(k.as_str(), "password" | "client_secret" | "client_assertion") {
                    *val = Value::String("***".into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Turns a finished answer into an HTTP response with the common headers.
pub fn into_http(r: GraphResponse, request_id: &str, client_request_id: Option<&str>) -> Response {
    let mut resp = match r.body {
        ResponseBody::Json(v) => (r.status, axum::Json(v)).into_response(),
        ResponseBody::Text(t) => (r.status, [("content-type", "text/plain")], t).into_response(),
        ResponseBody::Empty => r.status.into_response(),
    };
    let h = resp.headers_mut();
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(k, v);
        }
    }
    if let Ok(v) = HeaderValue::try_from(request_id) {
        h.insert("request-id", v);
    }
    if let Some(Ok(v)) = client_request_id.map(HeaderValue::try_from) {
        h.insert("client-request-id", v);
    }
    resp
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The axum handler for everything under `/v1.0/`.
pub async fn handle(
    State(app): State<AppState>,
    Extension(conn): Extension<Connection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = header_str(&headers, "client-request-id");
    let base = base_url(&headers);
    let (beta, path) = match uri.path().strip_prefix("/beta") {
        Some(rest) => (true, rest.to_string()),
        None => (false, uri.path().strip_prefix("/v1.0").unwrap_or("").to_string()),
    };
    let query = uri.query().unwrap_or("").to_string();
    let mut entry = RequestLogEntry {
        seq: 0,
        time: String::new(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query: query.clone(),
        status: 0,
        tenant: None,
        client_id: None,
        client_request_id: client_request_id.clone(),
        request_id: request_id.clone(),
        body: None,
        batch_request_id: None,
        fault: None,
    };
    let parsed_body = if body.is_empty() {
        Ok(None)
    } else {
        serde_json::from_slice::<Value>(&body).map(Some).map_err(|_| {
            GraphError::bad_request_generic(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            )
        })
    };
    if let Ok(Some(b)) = &parsed_body {
        let mut logged = b.clone();
        redact(&mut logged);
        entry.body = Some(logged);
    }
    let auth = authenticate(&app.shared.lock(), &headers);
    let (caller, body) = match (auth, parsed_body) {
        (Ok(c), Ok(b)) => (c, b),
        (Err(e), _) | (_, Err(e)) => {
            let r = GraphResponse::error(&e, &request_id, client_request_id.as_deref());
            return app.answer(entry, r, &request_id, client_request_id.as_deref());
        }
    };
    entry.tenant = Some(caller.tenant_id.clone());
    entry.client_id = Some(caller.client_id.clone());
    let latency = app
        .shared
        .lock()
        .tenant(&caller.tenant_id)
        .map(|t| t.knobs.latency_ms)
        .unwrap_or(0);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let req = GraphRequest {
        method,
        path,
        beta,
        query,
        headers,
        body,
    };
    let outcome = if req.path.trim_end_matches('/') == "/$batch" && !req.beta {
        // Faults may match the batch request itself; otherwise each item meets its own.
        let fault = {
            let mut st = app.shared.lock();
            st.tenant_mut(&caller.tenant_id)
                .and_then(|t| faults::take_matching(&mut t.faults, req.method.as_str(), "/v1.0/$batch"))
        };
        match fault {
            Some(action) => {
                entry.fault = Some(InjectedFault {
                    kind: action.name().to_string(),
                    source: "fault".into(),
                    applied_status: None,
                });
                fault_outcome(action)
            }
            None => Outcome::Answer(batch::run(&app, &caller, &req, &base, &request_id).await),
        }
    } else {
        let mut st = app.shared.lock();
        let (outcome, fault) = execute(&mut st, &caller, &req, &base, Instant::now());
        entry.fault = fault;
        outcome
    };
    match outcome {
        Outcome::Answer(r) => {
            let r = finish(r, &request_id, client_request_id.as_deref());
            app.answer(entry, r, &request_id, client_request_id.as_deref())
        }
        Outcome::Reset => {
            app.record(entry);
            conn.reset().await
        }
        Outcome::Hang(d) => {
            // Logged before the hang: a client that gives up first drops this future with it.
            entry.status = StatusCode::GATEWAY_TIMEOUT.as_u16();
            app.record(entry);
            tokio::time::sleep(d).await;
            let err = GraphError::new(StatusCode::GATEWAY_TIMEOUT, "GatewayTimeout", "Injected hang ended.");
            let r = GraphResponse::error(&err, &request_id, client_request_id.as_deref());
            into_http(r, &request_id, client_request_id.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_window_slides_and_the_wait_is_until_the_oldest_request_leaves_it() {
        let mut log = std::collections::VecDeque::new();
        let window = Duration::from_secs(20);
        for _ in 0..3 {
            assert!(admit(&mut log, 3, window, Instant::now()).is_ok());
            tokio::time::advance(Duration::from_secs(5)).await;
        }
        // t = 15 s: three requests in the window (0, 5, 10); the oldest leaves at 20 s.
        assert_eq!(admit(&mut log, 3, window, Instant::now()), Err(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(
            admit(&mut log, 3, window, Instant::now()),
            Err(Duration::from_millis(1))
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            admit(&mut log, 3, window, Instant::now()).is_ok(),
            "the 0 s request left the window"
        );
        assert_eq!(log.len(), 3);
        assert!(
            admit(&mut log, 0, window, Instant::now()).is_err(),
            "a zero quota refuses everything"
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_or_trimmed_decimals() {
        assert_eq!(format_retry_after(Duration::from_millis(1), false), "1");
        assert_eq!(format_retry_after(Duration::from_millis(1_001), false), "2");
        assert_eq!(format_retry_after(Duration::from_millis(1_500), true), "1.5");
        assert_eq!(format_retry_after(Duration::ZERO, true), "0.001");
    }

    #[test]
    fn routes_parse_ids_upns_and_role_templates() {
        assert_eq!(
            Route::parse("/users/a%23EXT%23%40x"),
            Ok(Route::User("a#EXT#@x".into()))
        );
        assert_eq!(
            Route::parse("/directoryRoles(roleTemplateId='62e90394-69f5-4237-9190-012177145e10')/members/$ref"),
            Ok(Route::DirectoryRoleMemberRefs(
                "roleTemplateId=62e90394-69f5-4237-9190-012177145e10".into()
            ))
        );
        assert_eq!(Route::parse("/me/drive"), Err("drive".into()));
        assert_eq!(
            Route::parse_version("/deviceManagement/templates/x/createInstance", true),
            Ok(Route::TemplateCreateInstance("x".into()))
        );
        assert_eq!(
            Route::parse_version("/deviceManagement/templates/x/createInstance", false),
            Err("templates".into()),
            "v1.0 has no security baselines"
        );
    }

    #[test]
    fn every_route_has_a_permission_for_its_methods_and_writes_have_a_quota() {
        let users = Route::Users;
        assert!(permissions::required(&users, &Method::GET).is_some());
        assert!(
            permissions::required(&users, &Method::PUT).is_none(),
            "PUT is not allowed on /users"
        );
        assert_eq!(permissions::quota(&users, &Method::POST), Some(Quota::IdentityWrite));
        assert_eq!(
            permissions::quota(&Route::DeviceConfigurations, &Method::POST),
            Some(Quota::IntuneWrite)
        );
        assert_eq!(permissions::quota(&users, &Method::GET), Some(Quota::Read));
        assert_eq!(
            permissions::required(&Route::SetMdmAuthority("x".into()), &Method::POST),
            Some(&["DeviceManagementServiceConfig.ReadWrite.All"][..])
        );
    }
}
