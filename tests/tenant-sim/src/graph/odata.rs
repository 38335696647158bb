//! OData plumbing shared by every Graph collection: the error type and body, query options
//! (`$filter`, `$select`, `$top`, `$count`, `$skiptoken`), and paged list answers with
//! `@odata.nextLink`.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::{Ctx, GraphResponse};

/// Largest `$top` Graph accepts.
pub const MAX_TOP: usize = 999;
/// Longest `$filter` accepted, so a hostile filter cannot make the parser work hard.
const MAX_FILTER_LEN: usize = 2_048;

/// A Graph error: status, OData code, message and optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    /// HTTP status.
    pub status: StatusCode,
    /// OData `error.code`.
    pub code: String,
    /// OData `error.message`.
    pub message: String,
    /// OData `error.details`.
    pub details: Vec<Value>,
    /// `Retry-After` header value.
    pub retry_after: Option<String>,
}

impl GraphError {
    /// An error with status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    /// 400 `Request_BadRequest` (directory objects).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// 400 `BadRequest` (Intune and generic OData).
    pub fn bad_request_generic(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 404 `Request_ResourceNotFound` for a directory object id.
    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    }

    /// 404 `ResourceNotFound` (Intune).
    pub fn intune_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("Resource not found for the id '{id}'."),
        )
    }

    /// 401 `InvalidAuthenticationToken`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message)
    }

    /// 403 `Authorization_RequestDenied`.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// Adds a detail `{target, code}`.
    pub fn with_detail(mut self, target: &str, code: &str) -> Self {
        self.details.push(json!({"target": target, "code": code}));
        self
    }

    /// The OData error body.
    pub fn body(&self, date: &str, request_id: &str, client_request_id: Option<&str>) -> Value {
        let mut error = json!({
            "code": self.code,
            "message": self.message,
            "innerError": {"date": date, "request-id": request_id, "client-request-id": client_request_id.unwrap_or(request_id)},
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        json!({ "error": error })
    }
}

/// Entity types the simulator knows, with the type each derives from. Graph accepts a body's
/// `@odata.type` when it names the target type or a type derived from it (the official SDKs send
/// it on every body), and refuses an unknown or unrelated one as OData does.
const ENTITY_TYPES: &[(&str, Option<&str>)] = &[
    ("microsoft.graph.entity", None),
    ("microsoft.graph.directoryObject", Some("microsoft.graph.entity")),
    ("microsoft.graph.user", Some("microsoft.graph.directoryObject")),
    ("microsoft.graph.group", Some("microsoft.graph.directoryObject")),
    ("microsoft.graph.directoryRole", Some("microsoft.graph.directoryObject")),
    ("microsoft.graph.device", Some("microsoft.graph.directoryObject")),
    (
        "microsoft.graph.servicePrincipal",
        Some("microsoft.graph.directoryObject"),
    ),
    ("microsoft.graph.organization", Some("microsoft.graph.directoryObject")),
    ("microsoft.graph.invitation", Some("microsoft.graph.entity")),
    ("microsoft.graph.deviceConfiguration", Some("microsoft.graph.entity")),
    (
        "microsoft.graph.windowsUpdateForBusinessConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.windows10EndpointProtectionConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.windows10GeneralConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.windows10CustomConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.windowsDefenderAdvancedThreatProtectionConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.windowsIdentityProtectionConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.windowsDeliveryOptimizationConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.windowsHealthMonitoringConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.sharedPCConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.editionUpgradeConfiguration",
        Some("microsoft.graph.deviceConfiguration"),
    ),
    (
        "microsoft.graph.deviceManagementConfigurationPolicy",
        Some("microsoft.graph.entity"),
    ),
    ("microsoft.graph.mobileApp", Some("microsoft.graph.entity")),
    ("microsoft.graph.mobileLobApp", Some("microsoft.graph.mobileApp")),
    ("microsoft.graph.win32LobApp", Some("microsoft.graph.mobileLobApp")),
    ("microsoft.graph.windowsMobileMSI", Some("microsoft.graph.mobileLobApp")),
    (
        "microsoft.graph.windowsUniversalAppX",
        Some("microsoft.graph.mobileLobApp"),
    ),
    ("microsoft.graph.winGetApp", Some("microsoft.graph.mobileApp")),
    (
        "microsoft.graph.windowsMicrosoftEdgeApp",
        Some("microsoft.graph.mobileApp"),
    ),
    ("microsoft.graph.officeSuiteApp", Some("microsoft.graph.mobileApp")),
    ("microsoft.graph.windowsWebApp", Some("microsoft.graph.mobileApp")),
    ("microsoft.graph.webApp", Some("microsoft.graph.mobileApp")),
];

/// A type name without the leading `#`.
fn bare_type(name: &str) -> &str {
    name.strip_prefix('#').unwrap_or(name)
}

/// Whether `name` is `expected` or derives from it.
pub fn derives_from(name: &str, expected: &str) -> bool {
    let mut current = Some(bare_type(name));
    // The hierarchy is a few levels deep; the bound keeps a bad table from looping.
    for _ in 0..ENTITY_TYPES.len() {
        let Some(n) = current else { return false };
        if n.eq_ignore_ascii_case(bare_type(expected)) {
            return true;
        }
        current = ENTITY_TYPES
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(n))
            .and_then(|(_, base)| *base);
    }
    false
}

/// Checks a body's `@odata.type` against the type the target expects: absent, the type itself, or
/// a derived type is fine; an unknown name or an unrelated type answers OData's 400.
pub fn check_odata_type(body: &Map<String, Value>, expected: &str) -> Result<(), GraphError> {
    let Some(given) = body.get("@odata.type") else {
        return Ok(());
    };
    let name = given
        .as_str()
        .ok_or_else(|| GraphError::bad_request_generic("The value of '@odata.type' must be a string."))?;
    let bare = bare_type(name);
    if !ENTITY_TYPES.iter().any(|(t, _)| t.eq_ignore_ascii_case(bare)) {
        return Err(GraphError::bad_request_generic(format!(
            "A type named '{bare}' could not be resolved by the model. When a model is available, each type name must resolve to a valid type."
        )));
    }
    if !derives_from(bare, expected) {
        return Err(GraphError::bad_request_generic(format!(
            "A resource with type '{bare}' was found, but it is not assignable to the expected type '{}'. The type specified in the resource must be equal to either the expected type or a derived type.",
            bare_type(expected)
        )));
    }
    Ok(())
}

/// The body of a create or update of `expected`, its `@odata.type` checked and left out.
pub fn entity_body(ctx: &Ctx, expected: &str) -> Result<Map<String, Value>, GraphError> {
    let body = ctx.body_object()?;
    check_odata_type(body, expected)?;
    let mut out = body.clone();
    out.remove("@odata.type");
    Ok(out)
}

/// Whether a JSON value is a string with something besides whitespace.
pub fn is_blank(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_none_or(|s| s.trim().is_empty())
}

/// Parsed query options of a request.
#[derive(Debug, Default, Clone)]
pub struct QueryOptions {
    /// `$filter`.
    pub filter: Option<Filter>,
    /// `$select` property names.
    pub select: Option<Vec<String>>,
    /// `$top`.
    pub top: Option<usize>,
    /// `$count=true`.
    pub count: bool,
    /// Offset from `$skiptoken`.
    pub skip: usize,
    /// `$orderby`: property and whether descending.
    pub order_by: Option<(String, bool)>,
    /// Other (non-`$`) pairs, kept for next links.
    pub rest: Vec<(String, String)>,
    /// Raw `$filter`/`$select`/`$top`/`$count` pairs, kept for next links.
    pub carried: Vec<(String, String)>,
}

impl QueryOptions {
    /// Parses a raw query string.
    pub fn parse(query: &str) -> Result<Self, GraphError> {
        let mut opts = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            match k.as_str() {
                "$filter" => {
                    opts.filter = Some(Filter::parse(&v)?);
                    opts.carried.push((k, v));
                }
                "$select" => {
                    opts.select = Some(
                        v.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    );
                    opts.carried.push((k, v));
                }
                "$top" => {
                    let top: usize = v
                        .parse()
                        .map_err(|_| GraphError::bad_request(format!("Invalid value '{v}' for query option $top.")))?;
                    if top == 0 || top > MAX_TOP {
                        return Err(GraphError::bad_request(format!(
                            "Invalid page size specified: '{top}'. Must be between 1 and {MAX_TOP} inclusive."
                        )));
                    }
                    opts.top = Some(top);
                    opts.carried.push((k, v));
                }
                "$count" => {
                    opts.count = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(GraphError::bad_request(format!("Invalid value '{v}' for $count."))),
                    };
                    opts.carried.push((k, v));
                }
                "$skiptoken" => opts.skip = decode_skiptoken(&v)?,
                "$orderby" => {
                    let mut parts = v.split_whitespace();
                    let prop = parts.next().unwrap_or_default().to_string();
                    let descending = match parts.next() {
                        None | Some("asc") => false,
                        Some("desc") => true,
                        Some(other) => {
                            return Err(GraphError::bad_request(format!(
                                "Invalid $orderby direction '{other}'."
                            )));
                        }
                    };
                    if prop.is_empty() || parts.next().is_some() || v.contains(',') {
                        return Err(GraphError::bad_request(format!(
                            "Invalid $orderby '{v}': one property, optionally followed by asc or desc."
                        )));
                    }
                    opts.order_by = Some((prop, descending));
                    opts.carried.push((k, v));
                }
                "$search" | "$expand" | "$skip" => {
                    return Err(GraphError::bad_request(format!(
                        "The query option '{k}' is not supported by this simulator for this resource."
                    )));
                }
                other if other.starts_with('$') => {
                    return Err(GraphError::bad_request_generic(format!(
                        "Query option '{other}' is not allowed."
                    )));
                }
                _ => opts.rest.push((k, v)),
            }
        }
        Ok(opts)
    }
}

fn decode_skiptoken(token: &str) -> Result<usize, GraphError> {
    let invalid = || GraphError::bad_request(format!("The specified page token value '{token}' is invalid."));
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix("offset:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(invalid)
}

fn encode_skiptoken(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

/// A parsed `$filter`: `eq` and `startswith` clauses joined by `and`/`or`, with parentheses.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `prop eq literal`.
    Eq(String, Value),
    /// `startswith(prop, 'text')`.
    StartsWith(String, String),
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Open,
    Close,
    Comma,
}

impl Filter {
    /// Parses a filter expression; anything outside the supported subset is a 400.
    pub fn parse(text: &str) -> Result<Self, GraphError> {
        if text.len() > MAX_FILTER_LEN {
            return Err(GraphError::bad_request("The $filter expression is too long."));
        }
        let tokens = tokenize(text)?;
        let mut pos = 0;
        let filter = parse_or(&tokens, &mut pos)?;
        if pos != tokens.len() {
            return Err(invalid_filter(text));
        }
        Ok(filter)
    }

    /// Property names the filter reads.
    pub fn properties(&self) -> Vec<&str> {
        match self {
            Filter::Eq(p, _) | Filter::StartsWith(p, _) => vec![p.as_str()],
            Filter::And(a, b) | Filter::Or(a, b) => {
                let mut v = a.properties();
                v.extend(b.properties());
                v
            }
        }
    }

    /// Whether an object matches (string comparisons are case-insensitive, as in Entra ID).
    pub fn matches(&self, obj: &Map<String, Value>) -> bool {
        match self {
            Filter::Eq(p, lit) => match (obj.get(p), lit) {
                (Some(Value::String(a)), Value::String(b)) => a.eq_ignore_ascii_case(b),
                (Some(a), b) => a == b,
                (None, Value::Null) => true,
                (None, _) => false,
            },
            Filter::StartsWith(p, prefix) => obj
                .get(p)
                .and_then(Value::as_str)
                .is_some_and(|s| s.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase())),
            Filter::And(a, b) => a.matches(obj) && b.matches(obj),
            Filter::Or(a, b) => a.matches(obj) || b.matches(obj),
        }
    }
}

fn invalid_filter(text: &str) -> GraphError {
    GraphError::bad_request(format!("Invalid filter clause: '{text}' is not supported."))
}

fn tokenize(text: &str) -> Result<Vec<Token>, GraphError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => s.push(c),
                        None => return Err(GraphError::bad_request("Unterminated string literal in $filter.")),
                    }
                }
                tokens.push(Token::Str(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '@' | ':') {
                        s.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if s.is_empty() {
                    return Err(invalid_filter(text));
                }
                tokens.push(Token::Ident(s));
            }
        }
    }
    Ok(tokens)
}

fn parse_or(t: &[Token], pos: &mut usize) -> Result<Filter, GraphError> {
    let mut left = parse_and(t, pos)?;
    while matches!(t.get(*pos), Some(Token::Ident(k)) if k == "or") {
        *pos += 1;
        left = Filter::Or(Box::new(left), Box::new(parse_and(t, pos)?));
    }
    Ok(left)
}

fn parse_and(t: &[Token], pos: &mut usize) -> Result<Filter, GraphError> {
    let mut left = parse_atom(t, pos)?;
    while matches!(t.get(*pos), Some(Token::Ident(k)) if k == "and") {
        *pos += 1;
        left = Filter::And(Box::new(left), Box::new(parse_atom(t, pos)?));
    }
    Ok(left)
}

fn parse_atom(t: &[Token], pos: &mut usize) -> Result<Filter, GraphError> {
    let unsupported = || GraphError::bad_request("Unsupported or invalid query filter clause specified.");
    match t.get(*pos) {
        Some(Token::Open) => {
            *pos += 1;
            let inner = parse_or(t, pos)?;
            if t.get(*pos) != Some(&Token::Close) {
                return Err(unsupported());
            }
            *pos += 1;
            Ok(inner)
        }
        Some(Token::Ident(f)) if f.eq_ignore_ascii_case("startswith") => {
            match (
                t.get(*pos + 1),
                t.get(*pos + 2),
                t.get(*pos + 3),
                t.get(*pos + 4),
                t.get(*pos + 5),
            ) {
                (
                    Some(Token::Open),
                    Some(Token::Ident(p)),
                    Some(Token::Comma),
                    Some(Token::Str(s)),
                    Some(Token::Close),
                ) => {
                    *pos += 6;
                    Ok(Filter::StartsWith(p.clone(), s.clone()))
                }
                _ => Err(unsupported()),
            }
        }
        Some(Token::Ident(p)) => match (t.get(*pos + 1), t.get(*pos + 2)) {
            (Some(Token::Ident(op)), Some(lit)) if op == "eq" => {
                let value = match lit {
                    Token::Str(s) => Value::String(s.clone()),
                    Token::Ident(b) if b == "true" => Value::Bool(true),
                    Token::Ident(b) if b == "false" => Value::Bool(false),
                    Token::Ident(n) if n == "null" => Value::Null,
                    Token::Ident(n) => match n.parse::<i64>() {
                        Ok(i) => Value::from(i),
                        Err(_) => Value::String(n.clone()),
                    },
                    _ => return Err(unsupported()),
                };
                *pos += 3;
                Ok(Filter::Eq(p.clone(), value))
            }
            _ => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

/// How a collection answers list requests.
pub struct ListSpec<'a> {
    /// Entity set name for `@odata.context` (`users`).
    pub entity_set: &'a str,
    /// Type name for error messages (`User`).
    pub type_name: &'a str,
    /// Properties `$filter` may use.
    pub filterable: &'a [&'a str],
    /// Properties `$orderby` may use.
    pub sortable: &'a [&'a str],
    /// Whether `$count` needs `ConsistencyLevel: eventual` (directory objects).
    pub count_needs_eventual: bool,
    /// Properties answered when there is no `$select`; `None` for all.
    pub default_select: Option<&'a [&'a str]>,
}

/// Applies `$filter`, `$count`, `$select`, `$top` and paging to objects and builds the list answer.
pub fn list(ctx: &Ctx, spec: &ListSpec, objects: Vec<Map<String, Value>>) -> Result<GraphResponse, GraphError> {
    let opts = ctx.options()?;
    if let Some(filter) = &opts.filter {
        for p in filter.properties() {
            if !spec.filterable.contains(&p) {
                return Err(GraphError::bad_request(format!(
                    "Unsupported or invalid query filter clause specified for property '{p}' of resource '{}'.",
                    spec.type_name
                )));
            }
        }
    }
    if opts.count && spec.count_needs_eventual && !ctx.eventual() {
        return Err(GraphError::bad_request(
            "$count is not currently supported without the ConsistencyLevel header set to eventual.",
        ));
    }
    let mut matching: Vec<_> = objects
        .into_iter()
        .filter(|o| opts.filter.as_ref().is_none_or(|f| f.matches(o)))
        .collect();
    if let Some((prop, descending)) = &opts.order_by {
        if !spec.sortable.contains(&prop.as_str()) {
            return Err(GraphError::bad_request(format!(
                "Sorting by property '{prop}' of resource '{}' is not supported.",
                spec.type_name
            )));
        }
        let key = |o: &Map<String, Value>| o.get(prop).and_then(Value::as_str).map(str::to_ascii_lowercase);
        matching.sort_by_key(key);
        if *descending {
            matching.reverse();
        }
    }
    let total = matching.len();
    let page_size = opts.top.unwrap_or(ctx.page_size).max(1);
    let page: Vec<Value> = matching
        .iter()
        .skip(opts.skip)
        .take(page_size)
        .map(|o| Value::Object(project(o, opts.select.as_deref(), spec.default_select)))
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{}/v1.0/$metadata#{}", ctx.base, spec.entity_set)),
    );
    if opts.count {
        body.insert("@odata.count".into(), Value::from(total));
    }
    if opts.skip + page_size < total {
        let mut pairs = opts.rest.clone();
        pairs.extend(opts.carried.iter().cloned());
        pairs.push(("$skiptoken".into(), encode_skiptoken(opts.skip + page_size)));
        // Graph's next links keep `$` and `,` readable; the rest is form-encoded.
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
            .replace("%24", "$")
            .replace("%2C", ",");
        body.insert(
            "@odata.nextLink".into(),
            Value::String(format!("{}/v1.0{}?{query}", ctx.base, ctx.path)),
        );
    }
    body.insert("value".into(), Value::Array(page));
    Ok(GraphResponse::json(StatusCode::OK, Value::Object(body)))
}

/// Answers one object, honouring `$select`.
pub fn single(ctx: &Ctx, spec: &ListSpec, obj: &Map<String, Value>) -> Result<GraphResponse, GraphError> {
    let opts = ctx.options()?;
    let mut out = project(obj, opts.select.as_deref(), spec.default_select);
    out.insert(
        "@odata.context".into(),
        Value::String(format!("{}/v1.0/$metadata#{}/$entity", ctx.base, spec.entity_set)),
    );
    Ok(GraphResponse::json(StatusCode::OK, Value::Object(out)))
}

/// Keeps the selected properties (or the default set), always keeping `@odata.type`.
pub fn project(obj: &Map<String, Value>, select: Option<&[String]>, default: Option<&[&str]>) -> Map<String, Value> {
    match (select, default) {
        (Some(sel), _) => obj
            .iter()
            .filter(|(k, _)| k.as_str() == "@odata.type" || sel.iter().any(|s| s.eq_ignore_ascii_case(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        (None, Some(def)) => obj
            .iter()
            .filter(|(k, _)| k.as_str() == "@odata.type" || def.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        (None, None) => obj.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parses_eq_startswith_and_or() {
        let f =
            Filter::parse("userPrincipalName eq 'a''b@x' or (startswith(displayName,'Ad') and accountEnabled eq true)")
                .expect("valid filter");
        let mut o = Map::new();
        o.insert("userPrincipalName".into(), json!("A'B@X"));
        assert!(f.matches(&o));
        o.insert("userPrincipalName".into(), json!("other"));
        o.insert("displayName".into(), json!("adele"));
        assert!(!f.matches(&o));
        o.insert("accountEnabled".into(), json!(true));
        assert!(f.matches(&o));
    }

    #[test]
    fn filter_rejects_unsupported_operators() {
        assert!(Filter::parse("displayName ne 'x'").is_err());
        assert!(Filter::parse("endswith(mail,'@x.com')").is_err());
        assert!(Filter::parse("displayName eq 'x").is_err());
    }

    #[test]
    fn skiptoken_round_trips_and_rejects_garbage() {
        assert_eq!(decode_skiptoken(&encode_skiptoken(300)).ok(), Some(300));
        assert!(decode_skiptoken("nonsense!").is_err());
    }
}
