//! The client: one per process, a [`TenantGraph`] handle per customer tenant, and the single
//! request loop (limiter -> token -> shared budget -> send -> decode -> classify -> maybe retry)
//! every call goes through.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;
use uuid::Uuid;

use crate::config::GraphConfig;
use crate::credentials::{CredentialSource, IdentityTransport, TenantCredential, roles_from_token};
use crate::error::{
    ApiError, ErrorClass, GraphError, Result, TransportFailure, TransportKind, classify_status, parse_retry_after,
};
use crate::fleet::{FleetBudget, FleetStats, RequestCounts};
use crate::limiter::{Limiter, RequestKind};

/// Most pages a list follows unless the caller says otherwise: at Graph's page sizes (100-999)
/// that is tens of thousands of objects, far more than any list mdops makes; more means a bad filter.
pub const DEFAULT_MAX_PAGES: usize = 100;

/// Largest answer body we read into memory (a 999-item page of users with `$select` is ~1 MB).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// The Graph client. Cheap to clone; build it once per process and share it.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: GraphConfig,
    http: reqwest::Client,
    transport: Arc<IdentityTransport>,
    tenants: RwLock<HashMap<String, Arc<TenantCredential>>>,
    limiter: Limiter,
    /// The fleet's shared budget, when the process shares one (every deployed function does).
    fleet: Option<FleetBudget>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("graph_base", &self.inner.config.graph_base.as_str())
            .field("authority_host", &self.inner.config.authority_host.as_str())
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// Validates the configuration and builds the HTTP pool. No network traffic yet. The client
    /// paces each tenant's requests within this process only; see [`Self::with_shared_budget`].
    pub fn new(config: GraphConfig) -> Result<GraphClient> {
        Self::build(config, None)
    }

    /// A client that also takes a permit from the fleet's shared budget (counters in the state
    /// store, [`crate::fleet`]) before each request, so every process on that store together
    /// stays within each tenant's quota.
    pub fn with_shared_budget(
        config: GraphConfig,
        budget: Arc<dyn mdops_core::budget::RequestBudget>,
    ) -> Result<GraphClient> {
        config.limiter.validate_shared()?;
        Self::build(config, Some(FleetBudget::new(budget)))
    }

    /// What the shared budget did so far (`None` without one).
    pub fn shared_budget_stats(&self) -> Option<FleetStats> {
        self.inner.fleet.as_ref().map(FleetBudget::stats)
    }

    fn build(config: GraphConfig, fleet: Option<FleetBudget>) -> Result<GraphClient> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .timeout(config.timeouts.request)
            // Graph never redirects API calls; a redirect would carry our bearer token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mdops-graph/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::Config {
                field: "http",
                problem: format!("cannot build the HTTP client: {e}"),
            })?;
        let transport = Arc::new(IdentityTransport::new(http.clone(), &config));
        let limiter = Limiter::new(config.limiter);
        Ok(GraphClient {
            inner: Arc::new(Inner {
                config,
                http,
                transport,
                tenants: RwLock::new(HashMap::new()),
                limiter,
                fleet,
            }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &GraphConfig {
        &self.inner.config
    }

    /// Registers (or replaces) the credential for a customer tenant.
    pub fn register_tenant(&self, tenant_id: &str, source: CredentialSource) -> Result<()> {
        let kind = source.kind();
        let cred = TenantCredential::build(tenant_id, source, &self.inner.config, self.inner.transport.clone())?;
        self.inner
            .tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant_id.to_string(), Arc::new(cred));
        tracing::info!(tenant = tenant_id, credential = kind, "tenant credential registered");
        Ok(())
    }

    /// Registers many tenants at once (e.g. from the tenant registry at start-up); stops at the
    /// first credential that cannot be built and names its tenant.
    pub fn register_tenants(&self, tenants: impl IntoIterator<Item = (String, CredentialSource)>) -> Result<()> {
        for (tenant, source) in tenants {
            self.register_tenant(&tenant, source)?;
        }
        Ok(())
    }

    /// Gives one tenant its own request budget (see [`crate::limiter::Limiter::set_tenant`]).
    pub fn set_tenant_limits(&self, tenant_id: &str, settings: crate::LimiterSettings) -> Result<()> {
        if self.inner.fleet.is_some() {
            settings.validate_shared()?;
        }
        self.inner.limiter.set_tenant(tenant_id, settings)
    }

    /// A handle for calls to one tenant. Fails later, per call, if the tenant is not registered.
    pub fn tenant(&self, tenant_id: &str) -> TenantGraph {
        TenantGraph {
            client: self.clone(),
            tenant: tenant_id.to_string(),
            beta: false,
        }
    }

    /// The application permissions (`roles` claim) in the tenant's app token, for preflight checks.
    pub async fn granted_roles(&self, tenant_id: &str) -> Result<Vec<String>> {
        let cred = self.credential(tenant_id)?;
        let token = cred.token(tenant_id, &self.inner.config.token_scope).await?;
        roles_from_token(token.expose_secret()).map_err(|problem| GraphError::Decode {
            tenant: tenant_id.to_string(),
            method: "POST".into(),
            path: "token".into(),
            expected: "JWT access token with a roles claim",
            message: problem,
        })
    }

    fn credential(&self, tenant_id: &str) -> Result<Arc<TenantCredential>> {
        self.inner
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant_id)
            .cloned()
            .ok_or_else(|| GraphError::UnknownTenant {
                tenant: tenant_id.to_string(),
            })
    }
}

/// OData query options. Values are URL-encoded by the client; string literals inside `$filter`
/// must be quoted with [`odata_string`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `$select`: only the fields the caller reads.
    pub select: Vec<&'static str>,
    /// `$filter`.
    pub filter: Option<String>,
    /// `$top` (page size).
    pub top: Option<u32>,
    /// `$expand`.
    pub expand: Option<String>,
    /// Advanced query: sends `ConsistencyLevel: eventual` and `$count=true`.
    pub eventual: bool,
}

impl Query {
    /// A query selecting these fields.
    pub fn select(fields: &[&'static str]) -> Query {
        Query {
            select: fields.to_vec(),
            ..Query::default()
        }
    }

    /// Adds a `$filter`.
    pub fn filter(mut self, filter: impl Into<String>) -> Query {
        self.filter = Some(filter.into());
        self
    }

    /// Sets `$top`.
    pub fn top(mut self, top: u32) -> Query {
        self.top = Some(top);
        self
    }

    fn apply(&self, url: &mut Url) {
        let mut pairs = url.query_pairs_mut();
        if !self.select.is_empty() {
            pairs.append_pair("$select", &self.select.join(","));
        }
        if let Some(f) = &self.filter {
            pairs.append_pair("$filter", f);
        }
        if let Some(t) = self.top {
            pairs.append_pair("$top", &t.to_string());
        }
        if let Some(e) = &self.expand {
            pairs.append_pair("$expand", e);
        }
        if self.eventual {
            pairs.append_pair("$count", "true");
        }
        drop(pairs);
        if url.query() == Some("") {
            url.set_query(None);
        }
    }
}

/// Quotes a string as an OData literal for `$filter` (`O'Brien` -> `'O''Brien'`).
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A Graph answer after the retry loop: a 2xx status and its body.
#[derive(Debug, Clone)]
pub struct GraphResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// Graph's `request-id`.
    pub request_id: Option<String>,
    /// Raw body (empty for 204).
    pub body: Vec<u8>,
}

/// One page of a collection.
#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// What a request loop needs to know about one logical call.
struct Call<'a> {
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    eventual: bool,
    path: &'a str,
    /// Whether sending it twice leaves the tenant as sending it once (see [`is_idempotent`]).
    idempotent: bool,
    /// What it counts against the tenant's quotas (a `$batch` counts its items).
    counts: RequestCounts,
}

/// Whether a request may be sent again after an answer that leaves its outcome unknown (a timeout,
/// a reset connection, a 5xx): GET, PUT, PATCH and DELETE leave the same state when repeated; a
/// POST may create a second object (groups and device configurations are not unique by name), so
/// it is never re-sent blind: the caller finds by its natural key first.
pub fn is_idempotent(method: &Method) -> bool {
    method != Method::POST
}

/// Graph calls for one customer tenant. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TenantGraph {
    client: GraphClient,
    tenant: String,
    /// Calls go to Graph beta instead of v1.0 (see [`TenantGraph::beta`]).
    beta: bool,
}

/// The Graph beta base beside the configured v1.0 base (`.../v1.0/` -> `.../beta/`).
const BETA_SEGMENT: &str = "../beta/";

impl TenantGraph {
    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.tenant
    }

    /// The client this handle belongs to.
    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    /// The same tenant through Graph **beta**. mdops makes one beta call: the security baseline
    /// (Intune security baselines exist only in beta; `docs/graph-client.md`). Everything else is
    /// v1.0. Retries, limits and error classification are the same.
    pub fn beta(&self) -> TenantGraph {
        TenantGraph {
            beta: true,
            ..self.clone()
        }
    }

    /// Builds the URL for a path below the Graph base (`/users/{id}`); each segment is
    /// percent-encoded, so ids and UPNs (`#EXT#`) go in raw.
    pub fn url(&self, path: &str, query: &Query) -> Result<Url> {
        if path.contains('?') || (path.contains('#') && !path.contains("#EXT#")) {
            return Err(GraphError::InvalidRequest {
                field: "path",
                problem: format!("{path:?} carries a query or fragment; pass query options as a Query"),
            });
        }
        let base = &self.client.inner.config.graph_base;
        let mut url = if self.beta {
            base.join(BETA_SEGMENT).map_err(|e| GraphError::Config {
                field: "graph_base",
                problem: format!("{base} has no beta base beside it: {e}"),
            })?
        } else {
            base.clone()
        };
        {
            let mut segs = url.path_segments_mut().map_err(|()| GraphError::Config {
                field: "graph_base",
                problem: "cannot be a base URL".into(),
            })?;
            segs.pop_if_empty();
            for seg in path.split('/').filter(|s| !s.is_empty()) {
                segs.push(seg);
            }
        }
        query.apply(&mut url);
        Ok(url)
    }

    /// GET a typed object.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &Query) -> Result<T> {
        let url = self.url(path, query)?;
        let resp = self.send(Method::GET, url, None, query.eventual, path).await?;
        self.decode(&Method::GET, path, &resp.body)
    }

    /// GET that answers `None` for 404 after the lag retries (a "find" that may find nothing).
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str, query: &Query) -> Result<Option<T>> {
        match self.get(path, query).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST a JSON body and decode the answer.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let resp = self.send_json(Method::POST, path, body).await?;
        self.decode(&Method::POST, path, &resp.body)
    }

    /// POST a JSON body to an action that answers 202/204 or a body the caller does not need.
    pub async fn post_no_content<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<()> {
        self.send_json(Method::POST, path, body).await.map(|_| ())
    }

    /// PATCH an object (Graph answers 204).
    pub async fn patch<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<()> {
        self.send_json(Method::PATCH, path, body).await.map(|_| ())
    }

    /// DELETE an object or reference.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let url = self.url(path, &Query::default())?;
        self.send(Method::DELETE, url, None, false, path).await.map(|_| ())
    }

    /// Follows `@odata.nextLink` through at most `max_pages` pages, yielding each item. Past the
    /// bound the stream ends with [`GraphError::TooManyPages`].
    pub fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &Query,
        max_pages: usize,
    ) -> BoxStream<'static, Result<T>> {
        enum State {
            Next(Url, usize),
            Done,
        }
        let this = self.clone();
        let path = path.to_string();
        let eventual = query.eventual;
        let first = match self.url(&path, query) {
            Ok(u) => State::Next(u, 0),
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        stream::try_unfold(first, move |state| {
            let this = this.clone();
            let path = path.clone();
            async move {
                let State::Next(url, done) = state else {
                    return Ok(None);
                };
                if done >= max_pages {
                    return Err(GraphError::TooManyPages {
                        tenant: this.tenant.clone(),
                        path,
                        max_pages,
                    });
                }
                let resp = this.send(Method::GET, url, None, eventual, &path).await?;
                let page: Page<T> = this.decode(&Method::GET, &path, &resp.body)?;
                let next = match page.next_link {
                    Some(link) => State::Next(this.next_link(&path, &link)?, done + 1),
                    None => State::Done,
                };
                Ok(Some((stream::iter(page.value.into_iter().map(Ok)), next)))
            }
        })
        .try_flatten()
        .boxed()
    }

    /// Collects a [`Self::list`] into a vector.
    pub async fn list_all<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: &Query,
        max_pages: usize,
    ) -> Result<Vec<T>> {
        self.list(path, query, max_pages).try_collect().await
    }

    /// A nextLink must stay on the Graph host: it is followed with our bearer token.
    fn next_link(&self, path: &str, link: &str) -> Result<Url> {
        let base = &self.client.inner.config.graph_base;
        let url = Url::parse(link).map_err(|e| GraphError::Decode {
            tenant: self.tenant.clone(),
            method: "GET".into(),
            path: path.to_string(),
            expected: "absolute @odata.nextLink",
            message: e.to_string(),
        })?;
        if url.origin() != base.origin() {
            return Err(GraphError::Decode {
                tenant: self.tenant.clone(),
                method: "GET".into(),
                path: path.to_string(),
                expected: "@odata.nextLink on the Graph host",
                message: format!("link points to {}", url.origin().ascii_serialization()),
            });
        }
        Ok(url)
    }

    async fn send_json<B: Serialize + ?Sized>(&self, method: Method, path: &str, body: &B) -> Result<GraphResponse> {
        let bytes = serde_json::to_vec(body).map_err(|e| GraphError::InvalidRequest {
            field: "body",
            problem: format!("cannot serialise for {method} {path}: {e}"),
        })?;
        let url = self.url(path, &Query::default())?;
        self.send(method, url, Some(bytes), false, path).await
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, method: &Method, path: &str, body: &[u8]) -> Result<T> {
        // An empty 2xx body decodes as JSON null, so `()` and `Option<_>` callers work with 204s.
        let body: &[u8] = if body.is_empty() { b"null" } else { body };
        serde_json::from_slice(body).map_err(|e| GraphError::Decode {
            tenant: self.tenant.clone(),
            method: method.to_string(),
            path: path.to_string(),
            expected: std::any::type_name::<T>(),
            message: e.to_string(),
        })
    }

    /// Sends one logical request through the retry loop, answering its 2xx response. A POST is
    /// not re-sent after an answer that leaves its outcome unknown ([`GraphError::outcome_unknown`]).
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        eventual: bool,
        path: &str,
    ) -> Result<GraphResponse> {
        let idempotent = is_idempotent(&method);
        let counts = RequestCounts::one(RequestKind::of(&method, path));
        self.send_call(method, url, body, eventual, path, idempotent, counts)
            .await
    }

    /// [`Self::send`] with the caller's word on idempotency (a `$batch` POST of reads only is)
    /// and on what the send counts against the quotas.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_call(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        eventual: bool,
        path: &str,
        idempotent: bool,
        counts: RequestCounts,
    ) -> Result<GraphResponse> {
        self.run(Call {
            method,
            url,
            body,
            eventual,
            path,
            idempotent,
            counts,
        })
        .await
    }

    async fn run(&self, call: Call<'_>) -> Result<GraphResponse> {
        let inner = &self.client.inner;
        let policy = inner.config.retry;
        let cred = self.client.credential(&self.tenant)?;
        let kind = RequestKind::of(&call.method, call.path);
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            inner.limiter.acquire(&self.tenant, kind).await?;
            let token = match cred.token(&self.tenant, &inner.config.token_scope).await {
                Ok(t) => t,
                Err(e) => {
                    let class = e.classification();
                    let wait = policy.backoff(attempt);
                    if matches!(class, ErrorClass::Transient { .. })
                        && attempt < policy.max_attempts
                        && wait <= policy.max_in_process_wait
                    {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(e.into());
                }
            };
            // Last before sending (after the token, which may take a network call), so the
            // request goes out inside the slot whose permit it took.
            if let Some(fleet) = &inner.fleet {
                let settings = inner.limiter.settings_for(&self.tenant);
                fleet.acquire(&self.tenant, &settings, call.counts).await?;
            }
            let client_request_id = Uuid::new_v4().to_string();
            let span = tracing::info_span!(
                "graph",
                tenant = %self.tenant,
                method = %call.method,
                path = call.path,
                client_request_id = %client_request_id,
                attempt,
                status = tracing::field::Empty,
                request_id = tracing::field::Empty,
            );
            let outcome = self
                .attempt(&call, token.expose_secret(), &client_request_id)
                .instrument(span.clone())
                .await;
            let failure = match outcome {
                Ok(Attempt::Done(resp)) => return Ok(resp),
                // A token Graph refuses (revoked, or signed before a key rollover) stays in the
                // credential's cache until it nears expiry: fetch a new one, once per call.
                Ok(Attempt::Failed(error)) if error.status == 401 && !refreshed => {
                    refreshed = true;
                    span.in_scope(|| {
                        tracing::info!("Graph refused the token (401); fetching a new one and trying again")
                    });
                    cred.refresh()?;
                    continue;
                }
                Ok(Attempt::Failed(error)) => {
                    let backoff = policy.backoff(attempt);
                    let lag_window_passed = error.status == 404 && started.elapsed() >= policy.lag_window;
                    // A 5xx comes after Graph read the request: it may have been carried out.
                    let outcome_unknown = !call.idempotent && error.status >= 500;
                    GraphError::Api {
                        tenant: self.tenant.clone(),
                        method: call.method.to_string(),
                        path: call.path.to_string(),
                        attempts: attempt,
                        error: Box::new(error),
                        lag_window_passed,
                        next_backoff: backoff,
                        outcome_unknown,
                    }
                }
                Err((kind, message)) => GraphError::Transport(Box::new(TransportFailure {
                    tenant: self.tenant.clone(),
                    method: call.method.to_string(),
                    path: call.path.to_string(),
                    kind,
                    message,
                    client_request_id: client_request_id.clone(),
                    attempts: attempt,
                    retry_after: policy.backoff(attempt),
                    // A connection never made carried nothing; a timeout or a reset may have.
                    outcome_unknown: !call.idempotent && kind != TransportKind::Connect,
                })),
            };
            let class = failure.classification();
            let _enter = span.enter();
            if failure.outcome_unknown() {
                tracing::warn!(
                    code = failure.code(),
                    "Graph write's outcome is unknown (it may have been applied); not re-sent: {}",
                    failure.reason()
                );
                return Err(failure);
            }
            match class.retry_after() {
                Some(wait) if attempt < policy.max_attempts && wait <= policy.max_in_process_wait => {
                    tracing::info!(
                        code = failure.code(),
                        wait_ms = wait.as_millis() as u64,
                        ?class,
                        "retrying Graph call"
                    );
                    drop(_enter);
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    tracing::warn!(code = failure.code(), ?class, "Graph call failed: {}", failure.reason());
                    return Err(failure);
                }
            }
        }
    }

    /// One HTTP exchange. `Err` is a transport failure (no answer).
    async fn attempt(
        &self,
        call: &Call<'_>,
        token: &str,
        client_request_id: &str,
    ) -> std::result::Result<Attempt, (TransportKind, String)> {
        let inner = &self.client.inner;
        let mut req = inner
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(token)
            .header("client-request-id", client_request_id)
            .header("return-client-request-id", "true");
        if call.eventual {
            req = req.header("ConsistencyLevel", "eventual");
        }
        if let Some(body) = &call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let resp = req.send().await.map_err(transport_failure)?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let request_id = header("request-id");
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
        let span = tracing::Span::current();
        span.record("status", status);
        if let Some(r) = &request_id {
            span.record("request_id", r.as_str());
        }
        let body = read_body(resp).await?;
        if status == 429 {
            crate::metric::count("GraphThrottled", None, 1);
        }
        tracing::debug!(
            status,
            request_id = request_id.as_deref(),
            bytes = body.len(),
            "Graph answered"
        );
        if (200..300).contains(&status) {
            return Ok(Attempt::Done(GraphResponse {
                status,
                request_id,
                body,
            }));
        }
        Ok(Attempt::Failed(ApiError::from_response(
            status,
            &body,
            request_id,
            client_request_id.to_string(),
            retry_after,
        )))
    }

    /// Sends `$batch` requests (any number; sent 20 at a time, Graph's limit). Items answered 429
    /// or 5xx are re-sent alone, within the in-process budget; every item gets an answer, in the
    /// order given. The call fails as a whole only if the `$batch` request itself fails.
    pub async fn batch(&self, items: Vec<crate::batch::BatchItem>) -> Result<Vec<crate::batch::BatchResult>> {
        crate::batch::run(self, items).await
    }

    pub(crate) async fn client_limiter_acquire(&self, kind: RequestKind) -> Result<()> {
        self.client.inner.limiter.acquire(&self.tenant, kind).await
    }

    /// Whether `counts` fit one take of the shared budget (always, without one).
    pub(crate) fn fits_one_send(&self, counts: RequestCounts) -> bool {
        let inner = &self.client.inner;
        inner.fleet.is_none() || FleetBudget::fits(&inner.limiter.settings_for(&self.tenant), counts)
    }

    pub(crate) fn policy(&self) -> crate::config::RetryPolicy {
        self.client.inner.config.retry
    }

    pub(crate) fn classify_item(&self, status: u16, retry_after: Option<Duration>) -> ErrorClass {
        classify_status(status, retry_after, false)
    }
}

enum Attempt {
    Done(GraphResponse),
    Failed(ApiError),
}

fn transport_failure(e: reqwest::Error) -> (TransportKind, String) {
    // Connect first: a connect timeout also counts as a timeout, but nothing was sent.
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Reset
    };
    let mut causes = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        causes.push_str(": ");
        causes.push_str(&s.to_string());
        source = s.source();
    }
    // The URL is left out: the span already has the path, and queries may hold user names.
    (kind, format!("{}{causes}", e.without_url()))
}

async fn read_body(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, (TransportKind, String)> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_failure)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err((
                TransportKind::Reset,
                format!("answer larger than {MAX_RESPONSE_BYTES} bytes; refused"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg() -> TenantGraph {
        let c = GraphClient::new(GraphConfig::default()).unwrap();
        c.tenant("contoso")
    }

    #[test]
    fn urls_encode_segments_and_query() {
        let t = tg();
        let u = t
            .url(
                "/users/o'brien_contoso.com#EXT#@x.onmicrosoft.com/memberOf",
                &Query::select(&["id", "displayName"]).filter(format!("displayName eq {}", odata_string("O'Brien"))),
            )
            .unwrap();
        assert_eq!(
            u.path(),
            "/v1.0/users/o'brien_contoso.com%23EXT%23@x.onmicrosoft.com/memberOf"
        );
        let q: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("$select".into(), "id,displayName".into()));
        assert_eq!(q[1], ("$filter".into(), "displayName eq 'O''Brien'".into()));
        assert_eq!(
            t.url("groups", &Query::default()).unwrap().as_str(),
            "https://graph.microsoft.com/v1.0/groups"
        );
        assert_eq!(
            t.beta()
                .url("deviceManagement/templates/abc/createInstance", &Query::default())
                .unwrap()
                .as_str(),
            "https://graph.microsoft.com/beta/deviceManagement/templates/abc/createInstance"
        );
        let e = t.url("users?$top=5", &Query::default()).unwrap_err();
        assert!(e.to_string().contains("Query"), "{e}");
    }

    #[test]
    fn next_link_must_stay_on_the_graph_host() {
        let t = tg();
        assert!(
            t.next_link("/users", "https://graph.microsoft.com/v1.0/users?$skiptoken=abc")
                .is_ok()
        );
        let e = t
            .next_link("/users", "https://evil.example.com/v1.0/users")
            .unwrap_err();
        assert!(e.to_string().contains("evil.example.com"), "{e}");
    }

    #[tokio::test]
    async fn unknown_tenant_is_a_permanent_error() {
        let e = tg()
            .get::<serde_json::Value>("/organization", &Query::default())
            .await
            .unwrap_err();
        assert!(matches!(e, GraphError::UnknownTenant { .. }));
        assert_eq!(e.classification(), ErrorClass::Permanent);
    }
}
