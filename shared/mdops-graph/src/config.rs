//! Configuration of the Graph client: endpoints, timeouts, the in-process retry budget, the limiter.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{GraphError, Result};
use crate::limiter::LimiterSettings;

/// Public Microsoft Graph.
pub const DEFAULT_GRAPH_BASE: &str = "https://graph.microsoft.com/v1.0/";
/// Public Microsoft identity platform.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// App-only scope for Graph: every permission consented to the app.
pub const DEFAULT_TOKEN_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Everything the client needs besides credentials. Build once per process.
///
/// Deserialises from configuration (JSON, TOML, ...); every field is optional and durations are
/// in milliseconds with an `_ms` suffix, e.g. `{"retry": {"max_attempts": 5, "lag_window_ms": 60000}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphConfig {
    /// Graph root including the version segment, e.g. `https://graph.microsoft.com/v1.0/`.
    #[serde(with = "url_text")]
    pub graph_base: Url,
    /// Identity platform host. `http://` is accepted only for a loopback address (the simulated
    /// tenant), and only then do token requests leave over plain HTTP.
    #[serde(with = "url_text")]
    pub authority_host: Url,
    /// Scope asked for in token requests.
    pub token_scope: String,
    /// Connect and whole-request timeouts.
    pub timeouts: Timeouts,
    /// In-process retries before an error is handed back to the caller.
    pub retry: RetryPolicy,
    /// Per-tenant request limiter.
    pub limiter: LimiterSettings,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            graph_base: Url::parse(DEFAULT_GRAPH_BASE).expect("constant URL parses"),
            authority_host: Url::parse(DEFAULT_AUTHORITY_HOST).expect("constant URL parses"),
            token_scope: DEFAULT_TOKEN_SCOPE.to_string(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            limiter: LimiterSettings::default(),
        }
    }
}

impl GraphConfig {
    /// A configuration pointing both Graph and the identity platform at one base (the simulated
    /// tenant): Graph under `{base}/v1.0/`, tokens under `{base}/{tenant}/oauth2/v2.0/token`.
    pub fn for_base(base: &Url) -> Result<GraphConfig> {
        let graph_base = base.join("v1.0/").map_err(|e| GraphError::Config {
            field: "graph_base",
            problem: format!("{base} cannot take a v1.0/ segment: {e}"),
        })?;
        Ok(GraphConfig {
            graph_base,
            authority_host: base.clone(),
            ..GraphConfig::default()
        })
    }

    /// Checks the configuration, naming the first field at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, problem: String| Err(GraphError::Config { field, problem });
        for (field, url) in [
            ("graph_base", &self.graph_base),
            ("authority_host", &self.authority_host),
        ] {
            match url.scheme() {
                "https" => {}
                "http" if is_loopback(url) => {}
                "http" => return bad(field, format!("{url}: plain http is allowed only for a loopback host")),
                other => return bad(field, format!("{url}: scheme {other} is not http(s)")),
            }
        }
        if !self.graph_base.path().ends_with('/') {
            return bad("graph_base", format!("{}: must end with '/'", self.graph_base));
        }
        if self.token_scope.trim().is_empty() {
            return bad("token_scope", "is empty".into());
        }
        if self.timeouts.request.is_zero() || self.timeouts.connect.is_zero() {
            return bad("timeouts", "connect and request timeouts must be above zero".into());
        }
        if self.retry.max_attempts == 0 {
            return bad("retry.max_attempts", "must be at least 1".into());
        }
        self.limiter.validate()
    }
}

/// True when the URL's host is a loopback address (127.0.0.0/8, ::1 or `localhost`).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Timeouts on every HTTP request (token requests included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting (TCP + TLS).
    #[serde(rename = "connect_ms", with = "millis")]
    pub connect: Duration,
    /// The whole request, from send to the last byte of the answer.
    #[serde(rename = "request_ms", with = "millis")]
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            // Graph's front doors answer a connect in well under a second; 10 s means the network is down.
            connect: Duration::from_secs(10),
            // Graph's own gateway gives up on a request after about 100 s; wait no longer than that.
            request: Duration::from_secs(100),
        }
    }
}

/// The small in-process retry budget. Past it the classified error goes back to the handler,
/// whose queue carries the wait (a message delay), so a worker never sleeps for minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Longest single in-process wait; a longer `Retry-After` is handed back instead of slept.
    #[serde(rename = "max_in_process_wait_ms", with = "millis")]
    pub max_in_process_wait: Duration,
    /// First backoff when the answer gave no `Retry-After`; doubles per attempt.
    #[serde(rename = "base_backoff_ms", with = "millis")]
    pub base_backoff: Duration,
    /// Cap on the exponential backoff.
    #[serde(rename = "max_backoff_ms", with = "millis")]
    pub max_backoff: Duration,
    /// How long a 404 may be replication lag; after it a 404 is permanent.
    #[serde(rename = "lag_window_ms", with = "millis")]
    pub lag_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            // Three tries ride out a blip; more belongs on the queue, where a wait costs nothing.
            max_attempts: 3,
            // Past 10 s a Lambda invocation or a worker slot is better spent elsewhere.
            max_in_process_wait: Duration::from_secs(10),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            // Directory replication usually settles within seconds, rarely minutes (Graph docs).
            lag_window: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter for the given attempt (1 = after the first failure): a
    /// random wait between half and all of `base * 2^(attempt-1)`, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        let full = self.base_backoff.saturating_mul(1u32 << exp).min(self.max_backoff);
        let half = full / 2;
        let jitter_ms = rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64);
        (half + Duration::from_millis(jitter_ms)).min(self.max_backoff)
    }
}

/// Durations as whole milliseconds in configuration.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// URLs as text in configuration.
mod url_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub(super) fn serialize<S: Serializer>(u: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(u.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let text = String::deserialize(d)?;
        Url::parse(&text).map_err(|e| serde::de::Error::custom(format!("{text:?} is not a URL: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_configuration_is_the_default() {
        // The example in docs/graph-client.md lists every default; keep the two in step.
        let doc = include_str!("../../../docs/graph-client.md");
        let start = doc.find("```json\n").expect("json block") + "```json\n".len();
        let end = start + doc[start..].find("```").expect("end of block");
        let documented: GraphConfig = serde_json::from_str(&doc[start..end]).expect("documented JSON parses");
        assert_eq!(documented, GraphConfig::default());
    }

    #[test]
    fn configuration_deserialises_with_defaults_and_names_unknown_fields() {
        let c: GraphConfig = serde_json::from_str(
            r#"{"retry": {"max_attempts": 5, "lag_window_ms": 60000},
                "limiter": {"intune_writes": {"permits": 50, "per_ms": 20000}},
                "authority_host": "https://login.microsoftonline.us"}"#,
        )
        .unwrap();
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.retry.lag_window, Duration::from_secs(60));
        assert_eq!(c.retry.max_in_process_wait, RetryPolicy::default().max_in_process_wait);
        assert_eq!(c.limiter.intune_writes.permits, 50);
        assert_eq!(c.limiter.directory_writes, LimiterSettings::default().directory_writes);
        assert_eq!(c.authority_host.as_str(), "https://login.microsoftonline.us/");
        assert_eq!(c.graph_base.as_str(), DEFAULT_GRAPH_BASE);
        let back: GraphConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let e = serde_json::from_str::<GraphConfig>(r#"{"retry": {"lag_window": 5}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lag_window"), "{e}");
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let p = RetryPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(
                b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(101),
                "{b1:?}"
            );
            let b3 = p.backoff(3);
            assert!(
                b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(401),
                "{b3:?}"
            );
            assert!(p.backoff(30) <= Duration::from_millis(1000));
        }
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(4)).collect();
        assert!(distinct.len() > 1, "backoff has no jitter");
    }

    #[test]
    fn plain_http_only_for_loopback() {
        let mut c = GraphConfig::default();
        assert!(c.validate().is_ok());
        c.authority_host = Url::parse("http://login.example.com").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("authority_host") && e.contains("loopback"), "{e}");
        let c = GraphConfig::for_base(&Url::parse("http://127.0.0.1:8080/").unwrap()).unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.graph_base.as_str(), "http://127.0.0.1:8080/v1.0/");
    }
}
