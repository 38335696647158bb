//! One error type for everything the Graph client can fail with, and its classification.
//!
//! Graph answers errors with an OData body (`{"error": {"code", "message", "details", "innerError"}}`).
//! [`ApiError`] keeps all of it plus the request ids, and [`GraphError::classification`] says once,
//! for every caller, whether to wait and retry or to give up: handlers map [`ErrorClass`] to their
//! `Retry(after)` / `Failed(reason)` outcomes and never re-derive it from status codes.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// What a caller should do with a failed Graph call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Graph (or our own limiter) asked us to slow down: retry after the given delay.
    Throttled {
        /// How long to wait, from `Retry-After` or our backoff when the header was absent.
        retry_after: Duration,
    },
    /// A passing fault (5xx, timeout, reset connection): retry after a backoff.
    Transient {
        /// Suggested wait before the next try.
        retry_after: Duration,
    },
    /// 404 for an object that may exist but has not replicated yet: retry a bounded number of times.
    NotFoundMaybeLag {
        /// Suggested wait before the next try.
        retry_after: Duration,
    },
    /// Retrying will not help (bad request, missing permission, unknown object after the lag window).
    Permanent,
}

impl ErrorClass {
    /// The same class, its wait replaced by `wait` (for classes that have one).
    fn with_fallback_wait(self, wait: Duration) -> ErrorClass {
        match self {
            ErrorClass::Throttled { .. } => ErrorClass::Throttled { retry_after: wait },
            ErrorClass::Transient { .. } => ErrorClass::Transient { retry_after: wait },
            ErrorClass::NotFoundMaybeLag { .. } => ErrorClass::NotFoundMaybeLag { retry_after: wait },
            ErrorClass::Permanent => ErrorClass::Permanent,
        }
    }

    /// The wait to carry on the queue, or `None` for a permanent failure.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            ErrorClass::Throttled { retry_after }
            | ErrorClass::Transient { retry_after }
            | ErrorClass::NotFoundMaybeLag { retry_after } => Some(retry_after),
            ErrorClass::Permanent => None,
        }
    }
}

/// One item of the OData error's `details` array.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `ObjectConflict`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The property the detail is about, e.g. `userPrincipalName`.
    pub target: String,
}

/// An error answer from Graph, decoded from its OData body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: u16,
    /// The OData `error.code` (e.g. `Request_BadRequest`), or `HttpStatus<n>` when the body had none.
    pub code: String,
    /// The OData `error.message`, or the start of the body when it was not OData.
    pub message: String,
    /// The OData `error.details`.
    pub details: Vec<ErrorDetail>,
    /// The `request-id` Graph gave the call (header, or `innerError` when the header was missing).
    pub request_id: Option<String>,
    /// The `client-request-id` we sent.
    pub client_request_id: String,
    /// The `Retry-After` the answer carried, parsed (integer or decimal seconds).
    pub retry_after: Option<Duration>,
}

/// Largest piece of a non-OData error body kept in [`ApiError::message`]: enough to recognise an
/// HTML error page or a proxy's message, small enough for a log line.
pub const MAX_RAW_ERROR_BODY: usize = 300;

#[derive(Deserialize)]
struct ODataEnvelope {
    error: ODataError,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ODataError {
    code: String,
    message: String,
    details: Vec<ErrorDetail>,
    #[serde(rename = "innerError", alias = "innererror")]
    inner_error: Option<InnerError>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct InnerError {
    #[serde(rename = "request-id")]
    request_id: Option<String>,
}

impl ApiError {
    /// Decodes an error answer. A body that is not OData still gives an error (code `HttpStatus<n>`).
    pub fn from_response(
        status: u16,
        body: &[u8],
        request_id: Option<String>,
        client_request_id: String,
        retry_after: Option<Duration>,
    ) -> ApiError {
        match serde_json::from_slice::<ODataEnvelope>(body) {
            Ok(env) => {
                let code = if env.error.code.is_empty() {
                    format!("HttpStatus{status}")
                } else {
                    env.error.code
                };
                let request_id = request_id.or_else(|| env.error.inner_error.and_then(|i| i.request_id));
                ApiError {
                    status,
                    code,
                    message: env.error.message,
                    details: env.error.details,
                    request_id,
                    client_request_id,
                    retry_after,
                }
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let message: String = text.chars().take(MAX_RAW_ERROR_BODY).collect();
                ApiError {
                    status,
                    code: format!("HttpStatus{status}"),
                    message,
                    details: Vec::new(),
                    request_id,
                    client_request_id,
                    retry_after,
                }
            }
        }
    }
}

/// Why a request never got an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connect or whole-request timeout passed.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection broke (reset, closed early, body cut short).
    Reset,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Timeout => "timed out",
            TransportKind::Connect => "could not connect",
            TransportKind::Reset => "connection broken",
        })
    }
}

/// A call that got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    /// Customer tenant id.
    pub tenant: String,
    /// HTTP method.
    pub method: String,
    /// Path below the Graph base, without the query.
    pub path: String,
    /// What went wrong.
    pub kind: TransportKind,
    /// The HTTP client's description (no URL).
    pub message: String,
    /// The `client-request-id` we sent.
    pub client_request_id: String,
    /// Attempts made in-process.
    pub attempts: u32,
    /// Backoff suggested for the next try.
    pub retry_after: Duration,
    /// A non-idempotent request (a POST) that may have been carried out before the answer was lost.
    pub outcome_unknown: bool,
}

/// Every way a Graph call can fail.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with an error status.
    #[error(
        "Graph {method} {path} for tenant {tenant} failed after {attempts} attempt(s): {} {}: {} (request-id {}, client-request-id {})",
        .error.status, .error.code, .error.message,
        .error.request_id.as_deref().unwrap_or("-"), .error.client_request_id
    )]
    Api {
        /// Customer tenant id.
        tenant: String,
        /// HTTP method.
        method: String,
        /// Path below the Graph base, without the query.
        path: String,
        /// Attempts made in-process.
        attempts: u32,
        /// The decoded answer (boxed: it is large and errors travel through every `Result`).
        error: Box<ApiError>,
        /// True when a 404 persisted past the configured replication-lag window.
        lag_window_passed: bool,
        /// Our backoff for the next try, used when the answer carried no `Retry-After`.
        next_backoff: Duration,
        /// A non-idempotent request (a POST) answered 5xx: Graph may have carried it out.
        outcome_unknown: bool,
    },
    /// No answer: timeout, connection refused or reset.
    #[error(
        "Graph {} {} for tenant {} {} after {} attempt(s) (client-request-id {}): {}",
        .0.method, .0.path, .0.tenant, .0.kind, .0.attempts, .0.client_request_id, .0.message
    )]
    Transport(Box<TransportFailure>),
    /// A token for the tenant could not be had.
    #[error(transparent)]
    Token(#[from] crate::credentials::TokenError),
    /// The tenant has no registered credential.
    #[error("tenant {tenant} has no registered credential: call GraphClient::register_tenant first")]
    UnknownTenant {
        /// Customer tenant id.
        tenant: String,
    },
    /// Our own per-tenant limiter would make the call wait longer than allowed.
    #[error("tenant {tenant}: limiter bucket {bucket} has no permit for {wait:?}; retry later")]
    Limited {
        /// Customer tenant id.
        tenant: String,
        /// Which bucket was empty.
        bucket: &'static str,
        /// How long until a permit frees up.
        wait: Duration,
    },
    /// The fleet's shared request budget (in the state store) could not be read or written. Fails
    /// closed: the request was not sent.
    #[error(
        "tenant {tenant}: the shared Graph request budget in the state store failed ({message}); \
         the request was not sent: it is retried later; if this persists, check the state store"
    )]
    Budget {
        /// Customer tenant id.
        tenant: String,
        /// The store's error, one line.
        message: String,
    },
    /// Graph answered 2xx but the body did not have the expected shape.
    #[error("Graph {method} {path} for tenant {tenant}: answer did not decode as {expected}: {message}")]
    Decode {
        /// Customer tenant id.
        tenant: String,
        /// HTTP method.
        method: String,
        /// Path below the Graph base.
        path: String,
        /// The Rust type we expected.
        expected: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// A list went on for more pages than the caller allowed.
    #[error("listing {path} for tenant {tenant} passed the bound of {max_pages} pages; narrow the $filter")]
    TooManyPages {
        /// Customer tenant id.
        tenant: String,
        /// Path listed.
        path: String,
        /// The bound that was hit.
        max_pages: usize,
    },
    /// A request the caller built is invalid (bad path, too many batch items, unserialisable body).
    #[error("invalid Graph request: {field}: {problem}")]
    InvalidRequest {
        /// The field or argument at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The client's configuration is invalid.
    #[error("invalid Graph client configuration: {field}: {problem}")]
    Config {
        /// The configuration field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Result of a Graph call.
pub type Result<T, E = GraphError> = std::result::Result<T, E>;

/// Fallback wait when a throttled or transient error carries no better hint.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

impl GraphError {
    /// What the caller should do about this error; decided here once for every handler.
    pub fn classification(&self) -> ErrorClass {
        match self {
            GraphError::Api {
                error,
                lag_window_passed,
                next_backoff,
                ..
            } => classify_status(error.status, error.retry_after, *lag_window_passed)
                .with_fallback_wait(error.retry_after.unwrap_or(*next_backoff)),
            GraphError::Transport(t) => ErrorClass::Transient {
                retry_after: t.retry_after,
            },
            GraphError::Token(t) => t.classification(),
            GraphError::Limited { wait, .. } => ErrorClass::Throttled { retry_after: *wait },
            GraphError::Budget { .. } => ErrorClass::Transient {
                retry_after: DEFAULT_RETRY_AFTER,
            },
            GraphError::UnknownTenant { .. }
            | GraphError::Decode { .. }
            | GraphError::TooManyPages { .. }
            | GraphError::InvalidRequest { .. }
            | GraphError::Config { .. } => ErrorClass::Permanent,
        }
    }

    /// Like [`Self::classification`], for a caller that knows how long ago the work was first
    /// tried (e.g. a queue message's age): a 404 older than `lag_window` is no longer lag.
    pub fn classification_with_lag(&self, since_first_try: Duration, lag_window: Duration) -> ErrorClass {
        match self.classification() {
            ErrorClass::NotFoundMaybeLag { .. } if since_first_try >= lag_window => ErrorClass::Permanent,
            class => class,
        }
    }

    /// The decoded Graph answer, when Graph answered.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            GraphError::Api { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }

    /// HTTP status of Graph's answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }

    /// The Graph error code (`Request_BadRequest`, `Authorization_RequestDenied`, ...), or our own
    /// code for failures Graph never saw (`Timeout`, `TokenRequestFailed`, `Limited`, ...).
    pub fn code(&self) -> &str {
        match self {
            GraphError::Api { error, .. } => &error.code,
            GraphError::Transport(t) => match t.kind {
                TransportKind::Timeout => "Timeout",
                TransportKind::Connect => "ConnectFailed",
                TransportKind::Reset => "ConnectionReset",
            },
            GraphError::Token(t) => t.aadsts.as_deref().unwrap_or("TokenRequestFailed"),
            GraphError::UnknownTenant { .. } => "UnknownTenant",
            GraphError::Limited { .. } => "Limited",
            GraphError::Budget { .. } => "BudgetUnavailable",
            GraphError::Decode { .. } => "UnexpectedAnswer",
            GraphError::TooManyPages { .. } => "TooManyPages",
            GraphError::InvalidRequest { .. } => "InvalidRequest",
            GraphError::Config { .. } => "InvalidConfiguration",
        }
    }

    /// The Graph error message, or the description of our own failure.
    pub fn message(&self) -> String {
        match self {
            GraphError::Api { error, .. } => error.message.clone(),
            other => other.to_string(),
        }
    }

    /// Graph's `request-id` for the failed answer, to quote to Microsoft support.
    pub fn request_id(&self) -> Option<&str> {
        self.api().and_then(|e| e.request_id.as_deref())
    }

    /// The `client-request-id` we sent on the last attempt.
    pub fn client_request_id(&self) -> Option<&str> {
        match self {
            GraphError::Api { error, .. } => Some(&error.client_request_id),
            GraphError::Transport(t) => Some(&t.client_request_id),
            _ => None,
        }
    }

    /// True when a write (a POST) failed in a way that leaves its outcome unknown: a timeout, a
    /// reset connection or a 5xx after it was sent. Graph may have carried it out, so it must not
    /// be sent again blind: find the object by its natural key first (through replication lag).
    /// The client never re-sends such a request itself.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            GraphError::Api { outcome_unknown, .. } => *outcome_unknown,
            GraphError::Transport(t) => t.outcome_unknown,
            _ => false,
        }
    }

    /// A short reason for a dead letter: the Graph code and message, no secrets, no ids.
    pub fn reason(&self) -> String {
        let reason = match self {
            GraphError::Api { error, .. } => format!("{} {}: {}", error.status, error.code, error.message),
            other => other.to_string(),
        };
        if self.outcome_unknown() {
            format!("{reason} (outcome unknown: the write may have been applied)")
        } else {
            reason
        }
    }

    /// True when Graph refused to create an object because one with the same `target` property
    /// exists (Graph answers 400 `Request_BadRequest` with an `ObjectConflict` detail, not 409).
    pub fn is_object_conflict(&self, target: &str) -> bool {
        let Some(error) = self.api() else {
            return false;
        };
        let detail = error
            .details
            .iter()
            .any(|d| d.code.eq_ignore_ascii_case("ObjectConflict") && d.target.eq_ignore_ascii_case(target));
        let message = error
            .message
            .contains("Another object with the same value for property")
            && error.message.contains(target);
        detail || message
    }

    /// True for Entra ID's 400 "A conflicting object with one or more of the specified property
    /// values is present in the directory": e.g. activating a directory role that is active already.
    pub fn is_conflicting_object(&self) -> bool {
        self.status() == Some(400)
            && self.api().is_some_and(|e| {
                e.message
                    .contains("A conflicting object with one or more of the specified property values")
            })
    }

    /// True when Graph refused to add a reference (member, owner) because it exists already.
    pub fn is_reference_already_exists(&self) -> bool {
        self.api().is_some_and(|e| {
            e.message.contains("One or more added object references already exist")
                || e.details
                    .iter()
                    .any(|d| d.code.eq_ignore_ascii_case("ObjectConflict") && d.target == "members")
        })
    }

    /// True for 404: the object is not there (or not yet replicated; see [`Self::classification`]).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// Classifies an HTTP error status (shared by whole calls and `$batch` items).
pub fn classify_status(status: u16, retry_after: Option<Duration>, lag_window_passed: bool) -> ErrorClass {
    match status {
        429 => ErrorClass::Throttled {
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        503 | 504 if retry_after.is_some() => ErrorClass::Throttled {
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        408 | 500..=599 => ErrorClass::Transient {
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        404 if !lag_window_passed => ErrorClass::NotFoundMaybeLag {
            retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        },
        _ => ErrorClass::Permanent,
    }
}

/// Longest `Retry-After` we accept as given; a larger one is clamped (a day is never meant).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parses a `Retry-After` value: seconds, integer (`"3"`) or decimal (`"0.5"`, as Graph sends
/// it), or an HTTP date (RFC 9110 section 10.2.3 allows both; a date in the past means now).
/// Returns `None` for anything else.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, std::time::SystemTime::now())
}

fn parse_retry_after_at(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())),
        Ok(_) => return None,
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str, retry_after: Option<Duration>) -> GraphError {
        GraphError::Api {
            tenant: "t1".into(),
            method: "POST".into(),
            path: "/users".into(),
            attempts: 1,
            error: Box::new(ApiError::from_response(
                status,
                body.as_bytes(),
                None,
                "crid".into(),
                retry_after,
            )),
            lag_window_passed: false,
            next_backoff: Duration::from_secs(2),
            outcome_unknown: false,
        }
    }

    #[test]
    fn retry_after_accepts_integer_and_decimal_seconds() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("1.25"), Some(Duration::from_millis(1250)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28"), None);
        assert_eq!(parse_retry_after("99999999"), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_accepts_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after_at("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_retry_after_at("Thu, 22 Oct 2015 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER),
            "a day away is clamped"
        );
    }

    #[test]
    fn odata_body_is_decoded_with_details_and_inner_request_id() {
        let body = r#"{"error":{"code":"Request_BadRequest","message":"Another object with the same value for property userPrincipalName already exists.","details":[{"code":"ObjectConflict","message":"dup","target":"userPrincipalName"}],"innerError":{"request-id":"rid-1","date":"2024-01-01T00:00:00"}}}"#;
        let e = api(400, body, None);
        assert_eq!(e.code(), "Request_BadRequest");
        assert_eq!(e.request_id(), Some("rid-1"));
        assert_eq!(e.client_request_id(), Some("crid"));
        assert!(e.is_object_conflict("userPrincipalName"));
        assert!(!e.is_object_conflict("mailNickname"));
        assert!(!e.is_reference_already_exists());
        assert_eq!(e.classification(), ErrorClass::Permanent);
        assert!(e.to_string().contains("Request_BadRequest"), "{e}");
    }

    #[test]
    fn reference_exists_is_recognised_by_message_not_status() {
        let body = r#"{"error":{"code":"Request_BadRequest","message":"One or more added object references already exist for the following modified properties: 'members'."}}"#;
        assert!(api(400, body, None).is_reference_already_exists());
        let other = r#"{"error":{"code":"Request_BadRequest","message":"Invalid value"}}"#;
        assert!(!api(400, other, None).is_reference_already_exists());
    }

    #[test]
    fn non_odata_body_still_gives_a_code_and_a_short_message() {
        let long = "x".repeat(5000);
        let e = api(502, &long, None);
        assert_eq!(e.code(), "HttpStatus502");
        assert_eq!(e.message().len(), MAX_RAW_ERROR_BODY);
    }

    #[test]
    fn statuses_are_classified_once() {
        let d = Duration::from_millis(1500);
        let s = Some(d);
        assert_eq!(classify_status(429, s, false), ErrorClass::Throttled { retry_after: d });
        assert_eq!(classify_status(503, s, false), ErrorClass::Throttled { retry_after: d });
        assert_eq!(classify_status(504, s, false), ErrorClass::Throttled { retry_after: d });
        assert!(matches!(
            classify_status(503, None, false),
            ErrorClass::Transient { .. }
        ));
        assert!(matches!(
            classify_status(500, None, false),
            ErrorClass::Transient { .. }
        ));
        assert!(matches!(
            classify_status(404, None, false),
            ErrorClass::NotFoundMaybeLag { .. }
        ));
        assert_eq!(classify_status(404, None, true), ErrorClass::Permanent);
        assert_eq!(classify_status(400, None, false), ErrorClass::Permanent);
        assert_eq!(classify_status(403, None, false), ErrorClass::Permanent);
        assert_eq!(ErrorClass::Permanent.retry_after(), None);
    }

    #[test]
    fn a_404_older_than_the_lag_window_is_permanent() {
        let e = api(
            404,
            r#"{"error":{"code":"Request_ResourceNotFound","message":"gone"}}"#,
            None,
        );
        let window = Duration::from_secs(120);
        assert!(matches!(
            e.classification_with_lag(Duration::from_secs(30), window),
            ErrorClass::NotFoundMaybeLag { .. }
        ));
        assert_eq!(
            e.classification_with_lag(Duration::from_secs(121), window),
            ErrorClass::Permanent
        );
        let throttled = api(429, "{}", Some(Duration::from_secs(1)));
        assert!(matches!(
            throttled.classification_with_lag(Duration::from_secs(999), window),
            ErrorClass::Throttled { .. }
        ));
    }
}
