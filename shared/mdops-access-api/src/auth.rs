//! Validating the callers' Entra ID access tokens in-process.
//!
//! RS256 only (the header's `alg` is checked before anything else, so `none` and HMAC tokens
//! signed with the public key are refused outright). Before any key is looked up, the token is
//! judged on what it says about itself: size, `alg`, `kid`, and the unverified `tid` (on the
//! allow-list), `iss` (`{issuer_base}/{tid}/v2.0`), `aud`, `exp`, `nbf` (with a small leeway, by
//! the validator's clock) and `oid`. A token that fails any of these is refused without a JWKS
//! fetch, so junk and foreign tokens cost the identity platform nothing. Only then is the signing
//! key found by `kid` in the JWKS of the token's tenant, and every claim checked again on the
//! verified payload.
//!
//! Keys are cached per tenant. A fetch happens on an unknown `kid` (at most once per
//! [`AuthSettings::jwks_min_refresh`] per tenant, so a stream of made-up `kid`s cannot make us
//! hammer the identity platform) or when the keys are older than [`AuthSettings::jwks_max_age`].
//! The cache lock is never held across a fetch: one fetch per tenant is in flight at a time
//! (single flight), requests whose `kid` is cached never wait for it (a stale key is served while
//! its refresh runs), and only requests that need the new keys wait on the one fetch. A failed
//! fetch is remembered: no new fetch for that tenant until a backoff has passed (doubling from
//! [`AuthSettings::jwks_failure_backoff`] up to [`MAX_JWKS_FAILURE_BACKOFF`]), and meanwhile
//! tokens with unknown `kid`s are refused at once with the remembered failure.
//!
//! Errors say exactly why for logs and tests; the API answers every one of them with a bare 401.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mdops_core::access::Caller;
use serde::Deserialize;
use url::Url;

/// Largest token accepted: Entra tokens are a few KiB even with many groups.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew tolerated on `exp` and `nbf` (Entra itself allows about five minutes; we are stricter).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Least time between two JWKS fetches for one tenant (the refresh on an unknown `kid`).
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);
/// Keys older than this are fetched again even when the `kid` is known (Entra rolls keys over weeks).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// First wait after a failed JWKS fetch before the next one; doubles per failure in a row.
pub const DEFAULT_JWKS_FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait between JWKS fetches while they keep failing.
pub const MAX_JWKS_FAILURE_BACKOFF: Duration = Duration::from_secs(300);
/// Timeout of one JWKS fetch.
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);
/// Most keys kept from one JWKS answer (Entra publishes a handful).
const MAX_KEYS: usize = 32;

/// The time source of `exp`/`nbf` checks.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How tokens are validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Where JWKS are fetched: `{jwks_base}/{tenant}/discovery/v2.0/keys`.
    pub jwks_base: Url,
    /// Expected issuer prefix: `iss` must be `{issuer_base}/{tid}/v2.0`.
    pub issuer_base: String,
    /// Accepted `aud` values (our API's client id and/or app id URI).
    pub audiences: Vec<String>,
    /// Tenants whose users may call (normally the provider's tenant only).
    pub allowed_tenants: Vec<String>,
    pub leeway: Duration,
    pub jwks_min_refresh: Duration,
    pub jwks_max_age: Duration,
    /// First wait after a failed fetch (see [`DEFAULT_JWKS_FAILURE_BACKOFF`]).
    pub jwks_failure_backoff: Duration,
}

/// Microsoft's public authority (JWKS and issuer).
pub const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";

impl AuthSettings {
    /// Settings for tokens of `tenant` for `audience`, against Entra ID itself.
    pub fn entra(tenant: &str, audience: &str) -> AuthSettings {
        AuthSettings {
            jwks_base: Url::parse(&format!("{ENTRA_AUTHORITY}/")).expect("constant URL parses"),
            issuer_base: ENTRA_AUTHORITY.to_string(),
            audiences: vec![audience.to_string()],
            allowed_tenants: vec![tenant.to_ascii_lowercase()],
            leeway: DEFAULT_LEEWAY,
            jwks_min_refresh: DEFAULT_JWKS_MIN_REFRESH,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            jwks_failure_backoff: DEFAULT_JWKS_FAILURE_BACKOFF,
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token in the Authorization header")]
    Missing,
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted (RS256 only)")]
    Algorithm(String),
    #[error("tenant {0:?} is not allowed to call this API")]
    TenantNotAllowed(String),
    #[error("no signing key {0:?} in the issuer's JWKS")]
    UnknownKey(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("issuer is not the expected one")]
    WrongIssuer,
    #[error("audience is not this API")]
    WrongAudience,
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    #[error("signing keys could not be fetched: {0}")]
    Jwks(String),
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

/// The claims judged before any key is looked up.
#[derive(Deserialize)]
struct Unverified {
    tid: Option<String>,
    iss: Option<String>,
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    oid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    tid: Option<String>,
    oid: Option<String>,
    upn: Option<String>,
    preferred_username: Option<String>,
    name: Option<String>,
    exp: i64,
    nbf: Option<i64>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
}

/// What is known of one tenant's keys.
#[derive(Default)]
struct TenantKeys {
    keys: HashMap<String, DecodingKey>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
    /// The last failed fetch: when, why, and how many failed in a row.
    failure: Option<(Instant, AuthError, u32)>,
    /// Bumped by every finished fetch, so a request that waited on one knows it happened.
    generation: u64,
}

impl TenantKeys {
    /// While a failure's backoff runs, the remembered error.
    fn backing_off(&self, base: Duration) -> Option<AuthError> {
        let (at, error, in_a_row) = self.failure.as_ref()?;
        let wait = base
            .saturating_mul(1 << (in_a_row.saturating_sub(1)).min(16))
            .min(MAX_JWKS_FAILURE_BACKOFF);
        (at.elapsed() < wait).then(|| error.clone())
    }
}

/// Validates tokens; build once per process and share.
pub struct JwtValidator {
    settings: AuthSettings,
    http: reqwest::Client,
    clock: Clock,
    /// Never held across an await.
    cache: std::sync::Mutex<HashMap<String, TenantKeys>>,
    /// One per tenant: held by the one fetch in flight.
    flights: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    fetches: std::sync::atomic::AtomicU64,
}

/// `aud` (a string or an array of strings) names one of `accepted`.
fn audience_matches(aud: Option<&serde_json::Value>, accepted: &[String]) -> bool {
    match aud {
        Some(serde_json::Value::String(a)) => accepted.contains(a),
        Some(serde_json::Value::Array(all)) => all
            .iter()
            .any(|a| a.as_str().is_some_and(|a| accepted.iter().any(|x| x == a))),
        _ => false,
    }
}

fn segment<T: serde::de::DeserializeOwned>(token: &str, index: usize, what: &str) -> Result<T, AuthError> {
    let part = token
        .split('.')
        .nth(index)
        .ok_or_else(|| AuthError::Malformed(format!("no {what} segment")))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed(format!("{what} is not base64url")))?;
    mdops_core::json::from_slice(&bytes).map_err(|e| AuthError::Malformed(format!("{what}: {e}")))
}

impl JwtValidator {
    /// A validator with the system clock.
    pub fn new(settings: AuthSettings) -> Result<JwtValidator, AuthError> {
        Self::with_clock(settings, Arc::new(Utc::now))
    }

    /// A validator whose `exp`/`nbf` checks use `clock`.
    pub fn with_clock(settings: AuthSettings, clock: Clock) -> Result<JwtValidator, AuthError> {
        if settings.audiences.is_empty() {
            return Err(AuthError::Jwks("settings: at least one audience is needed".into()));
        }
        if settings.allowed_tenants.is_empty() {
            return Err(AuthError::Jwks(
                "settings: at least one allowed tenant is needed".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .build()
            .map_err(|e| AuthError::Jwks(format!("HTTP client: {e}")))?;
        let mut settings = settings;
        settings.allowed_tenants = settings
            .allowed_tenants
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect();
        Ok(JwtValidator {
            settings,
            http,
            clock,
            cache: std::sync::Mutex::new(HashMap::new()),
            flights: std::sync::Mutex::new(HashMap::new()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// JWKS fetches made so far (for tests and metrics).
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Validates a bearer token and returns the caller it identifies.
    pub async fn validate(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
        }
        if token.split('.').count() != 3 {
            return Err(AuthError::Malformed("a JWT has three segments".into()));
        }
        let header: Header = segment(token, 0, "header")?;
        let alg = header.alg.unwrap_or_default();
        if alg != "RS256" {
            return Err(AuthError::Algorithm(alg));
        }
        let kid = header.kid.ok_or(AuthError::MissingClaim("kid"))?;
        let unverified: Unverified = segment(token, 1, "payload")?;
        let tid = unverified
            .tid
            .as_deref()
            .ok_or(AuthError::MissingClaim("tid"))?
            .to_ascii_lowercase();
        if !self.settings.allowed_tenants.contains(&tid) {
            return Err(AuthError::TenantNotAllowed(tid));
        }
        let issuer = format!("{}/{tid}/v2.0", self.settings.issuer_base.trim_end_matches('/'));
        // Everything the token says about itself is judged before it may cost a key fetch.
        if unverified.iss.as_deref() != Some(issuer.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
        if !audience_matches(unverified.aud.as_ref(), &self.settings.audiences) {
            return Err(AuthError::WrongAudience);
        }
        let now = (self.clock)().timestamp();
        let leeway = self.settings.leeway.as_secs() as i64;
        let exp = unverified.exp.ok_or(AuthError::MissingClaim("exp"))?;
        if exp + leeway < now {
            return Err(AuthError::Expired);
        }
        if unverified.nbf.is_some_and(|nbf| nbf - leeway > now) {
            return Err(AuthError::NotYetValid);
        }
        if unverified.oid.as_deref().is_none_or(|o| o.trim().is_empty()) {
            return Err(AuthError::MissingClaim("oid"));
        }
        // The verifier decodes the whole header and payload again, with errors that name no
        // field; decoding them here first names it (found by tests/fuzz.rs).
        segment::<jsonwebtoken::Header>(token, 0, "header")?;
        segment::<Claims>(token, 1, "payload")?;
        let key = self.key(&tid, &kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        // exp/nbf are checked below against our clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = HashSet::from(["exp".to_string(), "iss".to_string(), "aud".to_string()]);
        validation.set_audience(&self.settings.audiences);
        validation.set_issuer(&[issuer]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidAlgorithm => AuthError::Algorithm(alg.clone()),
            ErrorKind::MissingRequiredClaim(c) => AuthError::Malformed(format!("claim {c} is missing")),
            // (serde_json skips an unread field without checking its UTF-8; the verifier reads it.)
            ErrorKind::Json(j) => AuthError::Malformed(format!("header or payload is not JSON ({j})")),
            _ => AuthError::Malformed(e.to_string()),
        })?;
        let claims = data.claims;
        // Again on the verified payload (the same bytes, so this only guards against a change above).
        if claims.exp + leeway < now {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf - leeway > now) {
            return Err(AuthError::NotYetValid);
        }
        if claims.tid.as_deref().map(str::to_ascii_lowercase) != Some(tid.clone()) {
            return Err(AuthError::TenantNotAllowed(claims.tid.unwrap_or_default()));
        }
        let upn = claims
            .upn
            .or(claims.preferred_username)
            .filter(|u| !u.trim().is_empty())
            .ok_or(AuthError::MissingClaim("upn"))?
            .to_ascii_lowercase();
        Ok(Caller {
            name: claims.name.unwrap_or_else(|| upn.clone()),
            upn,
            oid: claims.oid.ok_or(AuthError::MissingClaim("oid"))?,
            tenant_id: tid,
            roles: claims.roles,
            groups: claims.groups,
        })
    }

    /// The key `kid` of tenant `tid`, fetching the tenant's keys when needed (see the crate docs).
    async fn key(&self, tid: &str, kid: &str) -> Result<DecodingKey, AuthError> {
        let (known, generation) = {
            let cache = self.cache.lock().expect("key cache lock");
            let entry = cache.get(tid);
            let known = entry.and_then(|t| t.keys.get(kid).cloned());
            let fresh = entry
                .and_then(|t| t.fetched_at)
                .is_some_and(|at| at.elapsed() <= self.settings.jwks_max_age);
            if let Some(key) = &known
                && fresh
            {
                return Ok(key.clone());
            }
            if let Some(error) = entry.and_then(|t| t.backing_off(self.settings.jwks_failure_backoff)) {
                return known.ok_or(error);
            }
            let recently = entry
                .and_then(|t| t.fetched_at)
                .is_some_and(|at| at.elapsed() < self.settings.jwks_min_refresh);
            if known.is_none() && recently {
                return Err(AuthError::UnknownKey(kid.to_string()));
            }
            (known, entry.map_or(0, |t| t.generation))
        };
        let flight = self
            .flights
            .lock()
            .expect("flight lock")
            .entry(tid.to_string())
            .or_default()
            .clone();
        let _guard = match (&known, flight.try_lock()) {
            (_, Ok(guard)) => guard,
            // A stale key we trust is served while another request refreshes it.
            (Some(key), Err(_)) => return Ok(key.clone()),
            // An unknown kid waits for the fetch in flight, then judges by its result.
            (None, Err(_)) => flight.lock().await,
        };
        {
            let cache = self.cache.lock().expect("key cache lock");
            if let Some(t) = cache.get(tid)
                && t.generation != generation
            {
                // A fetch finished since we looked: use what it found, fetch nothing more.
                return match (t.keys.get(kid), &t.failure) {
                    (Some(key), _) => Ok(key.clone()),
                    (None, Some((_, error, _))) if t.backing_off(self.settings.jwks_failure_backoff).is_some() => {
                        known.ok_or_else(|| error.clone())
                    }
                    (None, _) => known.ok_or_else(|| AuthError::UnknownKey(kid.to_string())),
                };
            }
        }
        let fetched = self.fetch(tid).await;
        let mut cache = self.cache.lock().expect("key cache lock");
        let entry = cache.entry(tid.to_string()).or_default();
        entry.generation += 1;
        match fetched {
            Ok(keys) => {
                entry.keys = keys;
                entry.fetched_at = Some(Instant::now());
                entry.failure = None;
                entry
                    .keys
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| AuthError::UnknownKey(kid.to_string()))
            }
            Err(e) => {
                let in_a_row = entry.failure.as_ref().map_or(0, |f| f.2) + 1;
                tracing::warn!(tenant = tid, error = %e, in_a_row, "signing keys could not be fetched");
                entry.failure = Some((Instant::now(), e.clone(), in_a_row));
                // A failed refresh keeps serving a key we already trust.
                known.ok_or(e)
            }
        }
    }

    async fn fetch(&self, tid: &str) -> Result<HashMap<String, DecodingKey>, AuthError> {
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = self
            .settings
            .jwks_base
            .join(&format!("{tid}/discovery/v2.0/keys"))
            .map_err(|e| AuthError::Jwks(format!("JWKS address: {e}")))?;
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| AuthError::Jwks(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(AuthError::Jwks(format!("GET {url}: HTTP {}", resp.status())));
        }
        let jwks: Jwks = resp
            .json()
            .await
            .map_err(|e| AuthError::Jwks(format!("GET {url}: not a JWKS: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys.into_iter().take(MAX_KEYS) {
            if jwk.kty != "RSA" || jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_rsa_components(&n, &e) {
                keys.insert(kid, key);
            }
        }
        tracing::info!(tenant = tid, keys = keys.len(), "fetched signing keys");
        Ok(keys)
    }
}
