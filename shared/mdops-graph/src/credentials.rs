//! Credentials per customer tenant, through `azure_identity`, and the transport they use.
//!
//! Each tenant registers one [`CredentialSource`]; the client builds the matching `azure_identity`
//! credential once and keeps it, so its token cache serves every call for that tenant (tokens are
//! refreshed by the credential when within 5 minutes of expiry). Token requests go through
//! [`IdentityTransport`], which sends them on the client's own `reqwest` pool and, when the
//! authority host is a loopback `http://` URL (the simulated tenant), rewrites the `https` URL the
//! credential insists on to plain `http` — for that loopback host only; every other host is refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{AsyncRawResponse, ClientOptions, HttpClient, Method, Request, RetryOptions, Transport};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use base64::Engine;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;

use crate::assertion::{CertificateCredential, CertificateKey};
use crate::config::{GraphConfig, is_loopback};
use crate::error::{ErrorClass, GraphError, Result};

/// How the app proves its identity to one customer tenant.
pub enum CredentialSource {
    /// App registration with a client secret.
    ClientSecret {
        /// Application (client) id.
        client_id: String,
        /// The secret; never logged or shown.
        secret: SecretString,
    },
    /// App registration with a certificate (RSA key).
    ClientCertificate {
        /// Application (client) id.
        client_id: String,
        /// The certificate and its private key.
        certificate: CertificateSource,
        /// Password of the PKCS12 bundle, if any.
        password: Option<SecretString>,
    },
    /// Federated token file (Kubernetes workload identity, or any OIDC token written to a file).
    WorkloadIdentity {
        /// Application (client) id.
        client_id: String,
        /// Path of the file holding the federated token; re-read as it rotates.
        token_file: PathBuf,
    },
    /// The managed identity of the machine (App Service or VM/IMDS). Tokens come from the
    /// identity's own tenant: use it for the tenant the identity lives in.
    ManagedIdentity {
        /// Client id of a user-assigned identity; `None` for the system-assigned one.
        client_id: Option<String>,
    },
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::ClientSecret { client_id, .. } => f
                .debug_struct("ClientSecret")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            CredentialSource::ClientCertificate { client_id, .. } => f
                .debug_struct("ClientCertificate")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            CredentialSource::WorkloadIdentity { client_id, token_file } => f
                .debug_struct("WorkloadIdentity")
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            CredentialSource::ManagedIdentity { client_id } => {
                f.debug_struct("ManagedIdentity").field("client_id", client_id).finish()
            }
        }
    }
}

impl CredentialSource {
    /// The kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSource::ClientSecret { .. } => "client secret",
            CredentialSource::ClientCertificate { .. } => "client certificate",
            CredentialSource::WorkloadIdentity { .. } => "workload identity",
            CredentialSource::ManagedIdentity { .. } => "managed identity",
        }
    }
}

/// Where a client certificate comes from.
pub enum CertificateSource {
    /// A PKCS12 (`.pfx`) bundle with the certificate and its RSA private key.
    Pkcs12(SecretBox<Vec<u8>>),
    /// A PEM file holding the certificate and its private key (unencrypted).
    PemFile(PathBuf),
}

/// A token request for a tenant failed. Carries the AADSTS code when the identity platform gave one,
/// and never the credential's secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("token request for tenant {tenant} ({credential}) failed: {}: {message}", .aadsts.as_deref().unwrap_or("no AADSTS code"))]
pub struct TokenError {
    /// Customer tenant id.
    pub tenant: String,
    /// Credential kind (`client secret`, ...).
    pub credential: &'static str,
    /// The identity platform's code, e.g. `AADSTS7000215` (invalid secret).
    pub aadsts: Option<String>,
    /// HTTP status of the token endpoint's answer, when it answered.
    pub status: Option<u16>,
    /// What went wrong, first line of the identity platform's description.
    pub message: String,
}

/// Wait suggested after a token endpoint outage.
const TOKEN_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl TokenError {
    /// Outages (no answer, 5xx, 429) are transient; refusals (bad secret, no consent) are permanent.
    pub fn classification(&self) -> ErrorClass {
        match self.status {
            Some(429) | Some(500..=599) | None => ErrorClass::Transient {
                retry_after: TOKEN_RETRY_AFTER,
            },
            Some(_) => ErrorClass::Permanent,
        }
    }

    /// Builds the error from `azure_identity`'s, dropping everything but the description and
    /// removing `secret` from it should the platform ever echo it.
    fn from_azure(tenant: &str, credential: &'static str, err: &azure_core::Error, secret: Option<&str>) -> TokenError {
        let mut status = None;
        let mut current: Option<&azure_core::Error> = Some(err);
        while let Some(e) = current {
            if let Some(s) = e.http_status() {
                status = Some(u16::from(s));
                break;
            }
            current = std::error::Error::source(e).and_then(|s| s.downcast_ref::<azure_core::Error>());
        }
        // The first line of each error in the chain: the SDK's wrapper says which credential
        // failed, the inner ones say why (the platform's description, or our transport's refusal).
        let mut parts: Vec<String> = Vec::new();
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            let text = e.to_string();
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_string();
            if !line.is_empty() && !parts.iter().any(|p| p.contains(&line)) {
                parts.push(line);
            }
            current = e.source();
        }
        let mut text = parts.join(": ");
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            text = text.replace(secret, "***");
        }
        let message = text.clone();
        TokenError {
            tenant: tenant.to_string(),
            credential,
            aadsts: find_aadsts(&text),
            status,
            message,
        }
    }
}

/// Finds the first `AADSTS<digits>` code in a description.
pub(crate) fn find_aadsts(text: &str) -> Option<String> {
    let start = text.find("AADSTS")?;
    let digits: String = text[start + 6..].chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

/// A built credential: `azure_identity`'s, or our own certificate credential (see
/// [`crate::assertion`] for why).
#[derive(Clone)]
enum Minter {
    Azure(Arc<dyn TokenCredential>),
    Certificate(Arc<CertificateCredential>),
}

/// One tenant's credential, built once and rebuilt (with an empty token cache) when Graph
/// refuses its token with 401.
pub(crate) struct TenantCredential {
    pub(crate) kind: &'static str,
    tenant: String,
    source: CredentialSource,
    config: GraphConfig,
    transport: Arc<IdentityTransport>,
    credential: std::sync::RwLock<Minter>,
}

impl TenantCredential {
    /// Builds the `azure_identity` credential for `tenant`.
    pub(crate) fn build(
        tenant: &str,
        source: CredentialSource,
        config: &GraphConfig,
        transport: Arc<IdentityTransport>,
    ) -> Result<TenantCredential> {
        let credential = make_credential(tenant, &source, config, transport.clone())?;
        Ok(TenantCredential {
            kind: source.kind(),
            tenant: tenant.to_string(),
            source,
            config: config.clone(),
            transport,
            credential: std::sync::RwLock::new(credential),
        })
    }

    /// Drops the cached token: the next [`Self::token`] asks the identity platform again. For a
    /// token Graph refused with 401 (revoked, or signed with a key rolled over), which the
    /// credential's cache would otherwise keep serving until it nears expiry.
    pub(crate) fn refresh(&self) -> Result<()> {
        let fresh = make_credential(&self.tenant, &self.source, &self.config, self.transport.clone())?;
        *self.credential.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn secret(&self) -> Option<&str> {
        match &self.source {
            CredentialSource::ClientSecret { secret, .. } => Some(secret.expose_secret()),
            CredentialSource::ClientCertificate { password, .. } => password.as_ref().map(|p| p.expose_secret()),
            _ => None,
        }
    }

    /// A bearer token for `scope`, from the credential's cache or freshly requested.
    pub(crate) async fn token(&self, tenant: &str, scope: &str) -> std::result::Result<SecretString, TokenError> {
        let credential = self.credential.read().unwrap_or_else(|p| p.into_inner()).clone();
        let answer = match credential {
            Minter::Azure(c) => c
                .get_token(&[scope], None)
                .await
                .map(|token| SecretString::from(token.token.secret().to_string()))
                .map_err(|e| TokenError::from_azure(tenant, self.kind, &e, self.secret())),
            Minter::Certificate(c) => c.token(tenant, scope).await,
        };
        match answer {
            Ok(token) => Ok(token),
            Err(err) => {
                tracing::warn!(
                    tenant,
                    credential = self.kind,
                    code = err.aadsts.as_deref(),
                    status = err.status,
                    "token request failed: {}",
                    err.message
                );
                Err(err)
            }
        }
    }
}

/// The credential for a source.
fn make_credential(
    tenant: &str,
    source: &CredentialSource,
    config: &GraphConfig,
    transport: Arc<IdentityTransport>,
) -> Result<Minter> {
    let kind = source.kind();
    if let CredentialSource::ClientCertificate {
        client_id,
        certificate,
        password,
    } = source
    {
        let key = match certificate {
            // Read again on every rebuild: a rotated certificate file is picked up.
            CertificateSource::PemFile(path) => {
                let pem = std::fs::read(path).map_err(|e| GraphError::Config {
                    field: "certificate",
                    problem: format!("{}: cannot read: {}", path.display(), e.kind()),
                })?;
                CertificateKey::from_pem(&pem, &path.display().to_string())?
            }
            CertificateSource::Pkcs12(bytes) => {
                let pem = pkcs12_to_pem(bytes.expose_secret(), password.as_ref())?;
                CertificateKey::from_pem(pem.expose_secret().as_bytes(), "PKCS12 bundle")?
            }
        };
        let (endpoint, audience) = token_endpoint(tenant, config, &transport);
        return Ok(Minter::Certificate(Arc::new(CertificateCredential::new(
            client_id.clone(),
            key,
            endpoint,
            audience,
            transport.http.clone(),
        ))));
    }
    let client_options = client_options(config, transport)?;
    let config_err = |e: azure_core::Error| GraphError::Config {
        field: "credential",
        problem: format!("tenant {tenant} ({kind}): {}", first_line(&e.to_string())),
    };
    Ok(Minter::Azure(match source {
        CredentialSource::ClientSecret { client_id, secret } => ClientSecretCredential::new(
            tenant,
            client_id.clone(),
            Secret::new(secret.expose_secret().to_string()),
            Some(ClientSecretCredentialOptions { client_options }),
        )
        .map_err(config_err)?,
        CredentialSource::WorkloadIdentity { client_id, token_file } => {
            let mut options = WorkloadIdentityCredentialOptions {
                client_id: Some(client_id.clone()),
                tenant_id: Some(tenant.to_string()),
                token_file_path: Some(token_file.clone()),
                ..Default::default()
            };
            options.credential_options.client_options = client_options;
            WorkloadIdentityCredential::new(Some(options)).map_err(config_err)?
        }
        CredentialSource::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options,
            };
            ManagedIdentityCredential::new(Some(options)).map_err(config_err)?
        }
        CredentialSource::ClientCertificate { .. } => unreachable!("built above"),
    }))
}

/// Where a certificate credential's token request goes, and the audience its assertion names:
/// `{authority}/{tenant}/oauth2/v2.0/token`; for a loopback authority (the simulated tenant) the
/// request goes there while the audience stays the public authority's, as Entra ID expects.
fn token_endpoint(tenant: &str, config: &GraphConfig, transport: &IdentityTransport) -> (Url, String) {
    let path = format!("/{tenant}/oauth2/v2.0/token");
    let audience = match &transport.loopback {
        Some(_) => format!("{PUBLIC_AUTHORITY_HOST}{path}"),
        None => format!("{}{path}", config.authority_host.as_str().trim_end_matches('/')),
    };
    let mut endpoint = config.authority_host.clone();
    endpoint.set_path(&path);
    endpoint.set_query(None);
    (endpoint, audience)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Client options for every credential: our transport, no SDK retries (our own policy decides),
/// and the authority host. A loopback `http://` authority (the simulated tenant) is given to the
/// credential as the public authority, which the transport then sends to the loopback host: the
/// credential insists on https, and its certificate assertions name the public authority as audience.
fn client_options(config: &GraphConfig, transport: Arc<IdentityTransport>) -> Result<ClientOptions> {
    let authority = if transport.loopback.is_some() {
        PUBLIC_AUTHORITY_HOST.to_string()
    } else {
        config.authority_host.as_str().trim_end_matches('/').to_string()
    };
    let mut custom = CustomConfiguration::default();
    custom.authority_host = authority;
    Ok(ClientOptions {
        transport: Some(Transport::new(transport)),
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        ..Default::default()
    })
}

/// The public identity platform, as the credential sees it in loopback mode.
const PUBLIC_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// The certificate and private key of a PKCS12 (`.pfx`) bundle, as PEM. OpenSSL reads the bundle
/// (the `pkcs12` feature, which the operator CLI turns on); the Lambda functions are built
/// without it, so OpenSSL stays out of them, and take PEM (their credentials come from Secrets
/// Manager).
#[cfg(feature = "pkcs12")]
fn pkcs12_to_pem(bundle: &[u8], password: Option<&SecretString>) -> Result<SecretString> {
    let problem = |what: &str| GraphError::Config {
        field: "certificate",
        problem: format!("PKCS12 bundle: {what}"),
    };
    let parsed = openssl::pkcs12::Pkcs12::from_der(bundle)
        .map_err(|_| problem("is not a PKCS12 bundle"))?
        .parse2(password.map(|p| p.expose_secret()).unwrap_or(""))
        .map_err(|_| problem("cannot be opened (wrong password?)"))?;
    let key = parsed.pkey.ok_or_else(|| problem("holds no private key"))?;
    let cert = parsed.cert.ok_or_else(|| problem("holds no certificate"))?;
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|_| problem("its private key cannot be exported"))?;
    let cert_pem = cert
        .to_pem()
        .map_err(|_| problem("its certificate cannot be encoded"))?;
    let mut text = String::from_utf8(cert_pem).map_err(|_| problem("its certificate cannot be encoded"))?;
    text.push_str(&String::from_utf8(key_pem).map_err(|_| problem("its private key cannot be exported"))?);
    Ok(SecretString::from(text))
}

/// Without the `pkcs12` feature (the Lambda functions) a bundle is refused with what to do.
#[cfg(not(feature = "pkcs12"))]
fn pkcs12_to_pem(_bundle: &[u8], _password: Option<&SecretString>) -> Result<SecretString> {
    Err(GraphError::Config {
        field: "certificate",
        problem:
            "PKCS12 bundles are not read by this build (no OpenSSL); give the certificate and its key as one PEM file"
                .into(),
    })
}

/// The HTTP transport of every credential: the client's `reqwest` pool, plus the loopback rewrite.
#[derive(Debug)]
pub(crate) struct IdentityTransport {
    pub(crate) http: reqwest::Client,
    /// A loopback authority served over plain http (the simulated tenant), if configured.
    pub(crate) loopback: Option<Url>,
}

impl IdentityTransport {
    pub(crate) fn new(http: reqwest::Client, config: &GraphConfig) -> IdentityTransport {
        let a = &config.authority_host;
        let loopback = (a.scheme() == "http" && is_loopback(a)).then(|| a.clone());
        IdentityTransport { http, loopback }
    }

    /// Where a token request really goes.
    fn target(&self, url: &Url) -> azure_core::Result<Url> {
        let Some(loopback) = &self.loopback else {
            return Ok(url.clone());
        };
        let public = Url::parse(PUBLIC_AUTHORITY_HOST).ok();
        if url.host_str() != public.as_ref().and_then(|p| p.host_str()) {
            // In loopback mode nothing may leave the machine (e.g. a managed identity's IMDS probe).
            // `Other`, not `Connection`: a refusal must not be retried by the SDK (the managed
            // identity credential retries connection errors for up to 72 s).
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                format!(
                    "refused: the authority is the loopback host {loopback}, so no token request goes to {}",
                    url.host_str().unwrap_or("?")
                ),
            ));
        }
        let mut target = loopback.clone();
        target.set_path(url.path());
        target.set_query(url.query());
        Ok(target)
    }
}

#[async_trait]
impl HttpClient for IdentityTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        use azure_core::error::ErrorKind;
        let url = self.target(request.url())?;
        let method = match request.method() {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
            other => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    format!("HTTP method {other:?} is not used by token requests"),
                ));
            }
        };
        let mut req = self.http.request(method, url);
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        match request.body() {
            azure_core::http::Body::Bytes(bytes) => req = req.body(bytes.to_vec()),
            azure_core::http::Body::SeekableStream(_) => {
                return Err(azure_core::Error::with_message(
                    ErrorKind::Other,
                    "streamed bodies are not used by token requests",
                ));
            }
        }
        let response = req.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            // without_url: token URLs hold no secret, but keep error text to the cause.
            azure_core::Error::with_message(kind, format!("token endpoint unreachable: {}", e.without_url()))
        })?;
        let status = response.status().as_u16();
        let headers: HashMap<HeaderName, HeaderValue> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str().ok().map(|v| {
                    (
                        HeaderName::from(k.as_str().to_string()),
                        HeaderValue::from(v.to_string()),
                    )
                })
            })
            .collect();
        let body = response.bytes().await.map_err(|e| {
            azure_core::Error::with_message(ErrorKind::Io, format!("token answer cut short: {}", e.without_url()))
        })?;
        let body = if (200..300).contains(&status) {
            body.to_vec()
        } else {
            plain_error_description(&body)
        };
        Ok(AsyncRawResponse::from_bytes(
            status.into(),
            Headers::from(headers),
            body,
        ))
    }
}

/// Rewrites a token error body so `error_description` needs no JSON escapes. azure_identity 1.0
/// decodes it as a borrowed `&str`, which fails on any escape, and Entra ID's descriptions always
/// hold `\r\n` ("...\r\nTrace ID: ..."): the AADSTS code and HTTP status would be lost.
fn plain_error_description(body: &[u8]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    if let Some(desc) = value.get_mut("error_description")
        && let Some(text) = desc.as_str()
    {
        let plain: String = text
            .split(['\r', '\n'])
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
            .chars()
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect();
        *desc = serde_json::Value::String(plain);
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec())
}

/// Decodes the `roles` claim (application permissions granted) from an access token.
/// The token is not verified: it came straight from the identity platform over TLS.
pub fn roles_from_token(token: &str) -> std::result::Result<Vec<String>, String> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or("access token is not a JWT (no payload part)")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("access token payload is not base64url: {e}"))?;
    #[derive(serde::Deserialize)]
    struct Claims {
        #[serde(default)]
        roles: Vec<String>,
    }
    let claims: Claims =
        serde_json::from_slice(&bytes).map_err(|e| format!("access token payload is not JSON claims: {e}"))?;
    Ok(claims.roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_code_is_found_in_a_description() {
        assert_eq!(
            find_aadsts("ClientSecretCredential authentication failed. AADSTS7000215: Invalid client secret provided."),
            Some("AADSTS7000215".into())
        );
        assert_eq!(find_aadsts("no code here"), None);
        assert_eq!(find_aadsts("AADSTS: nothing"), None);
    }

    #[test]
    fn roles_claim_is_decoded() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(r#"{"roles":["User.ReadWrite.All","Group.ReadWrite.All"],"tid":"t"}"#)
        );
        assert_eq!(
            roles_from_token(&token).unwrap(),
            vec!["User.ReadWrite.All", "Group.ReadWrite.All"]
        );
        let no_roles = format!("{}.{}.sig", enc("{}"), enc(r#"{"tid":"t"}"#));
        assert!(roles_from_token(&no_roles).unwrap().is_empty());
        assert!(roles_from_token("opaque").is_err());
    }

    #[test]
    fn debug_of_a_source_never_shows_the_secret() {
        let s = CredentialSource::ClientSecret {
            client_id: "app".into(),
            secret: SecretString::from("hunter2-very-secret"),
        };
        let d = format!("{s:?}");
        assert!(d.contains("app") && !d.contains("hunter2"), "{d}");
    }

    #[test]
    fn loopback_transport_rewrites_the_authority_and_refuses_other_hosts() {
        let config = GraphConfig::for_base(&Url::parse("http://127.0.0.1:4567").unwrap()).unwrap();
        let t = IdentityTransport::new(reqwest::Client::new(), &config);
        let token_url = Url::parse("https://login.microsoftonline.com/contoso/oauth2/v2.0/token?x=1").unwrap();
        assert_eq!(
            t.target(&token_url).unwrap().as_str(),
            "http://127.0.0.1:4567/contoso/oauth2/v2.0/token?x=1"
        );
        let imds = Url::parse("http://169.254.169.254/metadata/identity/oauth2/token").unwrap();
        let e = t.target(&imds).unwrap_err().to_string();
        assert!(e.contains("169.254.169.254") && e.contains("refused"), "{e}");
        // Against the real authority nothing is rewritten.
        let real = IdentityTransport::new(reqwest::Client::new(), &GraphConfig::default());
        assert_eq!(real.target(&token_url).unwrap(), token_url);
    }

    #[test]
    fn token_error_descriptions_are_made_escape_free() {
        let body = br#"{"error":"invalid_client","error_codes":[7000215],"error_description":"AADSTS7000215: Invalid \"secret\".\r\nTrace ID: 1\r\nCorrelation ID: 2"}"#;
        let plain = plain_error_description(body);
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(
            v["error_description"],
            "AADSTS7000215: Invalid 'secret'. | Trace ID: 1 | Correlation ID: 2"
        );
        assert_eq!(v["error_codes"][0], 7000215);
        assert!(!String::from_utf8(plain).unwrap().contains('\\'));
        assert_eq!(plain_error_description(b"not json"), b"not json");
    }

    #[test]
    fn token_errors_classify_outages_as_transient() {
        let mut e = TokenError {
            tenant: "t".into(),
            credential: "client secret",
            aadsts: Some("AADSTS7000215".into()),
            status: Some(401),
            message: "Invalid client secret provided.".into(),
        };
        assert_eq!(e.classification(), ErrorClass::Permanent);
        e.status = Some(503);
        assert!(matches!(e.classification(), ErrorClass::Transient { .. }));
        e.status = None;
        assert!(matches!(e.classification(), ErrorClass::Transient { .. }));
    }
}
