//! The certificate credential: a client assertion (a JWT signed with the certificate's RSA key)
//! exchanged at the tenant's token endpoint for an app-only token.
//!
//! Built here rather than through `azure_identity`'s certificate credential, which links OpenSSL
//! (built from source for the Lambda functions, ~5 MB of each Graph function): the assertion is
//! signed with `ring` (RSASSA-PKCS1-v1_5 SHA-256, i.e. RS256; the crypto the TLS stack already
//! links, so the functions carry no second RSA implementation) and the PEM is split with `pem`. Format per Microsoft's "Microsoft identity platform application authentication
//! certificate credentials" (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>):
//! header `alg` RS256, `typ` JWT, `x5t` = base64url SHA-1 thumbprint of the certificate's DER
//! (and `x5t#S256`, its SHA-256 thumbprint, which the current page names); claims `aud` = the
//! token endpoint `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`, `iss` = `sub` =
//! the client id, a fresh `jti`, `nbf`/`iat` now and `exp` shortly after. The request is the
//! client credentials grant with `client_assertion_type`
//! `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
//!
//! Neither the key, the assertion nor the token ever reaches a log line or an error.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use secrecy::SecretString;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use url::Url;

use crate::credentials::TokenError;
use crate::error::{GraphError, Result};

/// `client_assertion_type` of a JWT bearer assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid: Microsoft's examples use minutes; it is used at once.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);
/// A cached token is renewed this long before it expires (as `azure_identity` does).
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// Kind, for logs and errors.
const KIND: &str = "client certificate";

/// The signing material of a certificate credential.
pub(crate) struct CertificateKey {
    key: RsaKeyPair,
    /// base64url SHA-1 of the certificate's DER.
    x5t: String,
    /// base64url SHA-256 of the certificate's DER.
    x5t_s256: String,
}

impl CertificateKey {
    /// From a PEM text holding the certificate (first `CERTIFICATE` block) and its unencrypted RSA
    /// private key (`PRIVATE KEY` or `RSA PRIVATE KEY`). `origin` names where it came from, for errors.
    pub(crate) fn from_pem(pem_text: &[u8], origin: &str) -> Result<CertificateKey> {
        let problem = |what: &str| GraphError::Config {
            field: "certificate",
            problem: format!("{origin}: {what}"),
        };
        let blocks = pem::parse_many(pem_text).map_err(|_| problem("is not PEM text"))?;
        let cert = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| problem("holds no certificate"))?;
        let key = blocks
            .iter()
            .find(|b| matches!(b.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY"))
            .ok_or_else(|| problem("holds no readable (unencrypted) private key"))?;
        let parsed = match key.tag() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(key.contents()),
            _ => RsaKeyPair::from_der(key.contents()),
        };
        let key = parsed.map_err(|_| problem("its private key is not an RSA key of 2048 bits or more"))?;
        let der = cert.contents();
        Ok(CertificateKey {
            key,
            x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
        })
    }

    /// A signed assertion for `client_id`, addressed to `audience` (the token endpoint).
    fn assertion(&self, client_id: &str, audience: &str) -> std::result::Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970".to_string())?
            .as_secs();
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.x5t,
            "x5t#S256": self.x5t_s256,
        });
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "cannot sign the client assertion with the certificate's key".to_string())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// One tenant's certificate credential with its token cache.
pub(crate) struct CertificateCredential {
    client_id: String,
    key: CertificateKey,
    /// Where the request goes (the loopback simulator in tests).
    endpoint: Url,
    /// The assertion's audience: the public token endpoint for the tenant.
    audience: String,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<(SecretString, Instant)>>,
}

/// The token endpoint's answer.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// The token endpoint's refusal (`error_codes` carries the AADSTS number).
#[derive(serde::Deserialize, Default)]
struct TokenRefusal {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

impl CertificateCredential {
    /// `endpoint` is where the request is sent, `audience` the token endpoint the assertion names.
    pub(crate) fn new(
        client_id: String,
        key: CertificateKey,
        endpoint: Url,
        audience: String,
        http: reqwest::Client,
    ) -> CertificateCredential {
        CertificateCredential {
            client_id,
            key,
            endpoint,
            audience,
            http,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A token for `scope`, cached until five minutes before it expires.
    pub(crate) async fn token(&self, tenant: &str, scope: &str) -> std::result::Result<SecretString, TokenError> {
        let mut cache = self.cache.lock().await;
        if let Some((token, renew_at)) = cache.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let fail = |status: Option<u16>, aadsts: Option<String>, message: String| TokenError {
            tenant: tenant.to_string(),
            credential: KIND,
            aadsts,
            status,
            message,
        };
        let assertion = self
            .key
            .assertion(&self.client_id, &self.audience)
            .map_err(|m| fail(Some(0), None, m))?;
        let form = [
            ("client_id", self.client_id.as_str()),
            ("scope", scope),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ];
        let asked = Instant::now();
        let response = self
            .http
            .post(self.endpoint.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| fail(None, None, format!("token endpoint unreachable: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| fail(None, None, format!("token answer cut short: {}", e.without_url())))?;
        if !(200..300).contains(&status) {
            let refusal: TokenRefusal = serde_json::from_slice(&body).unwrap_or_default();
            let aadsts = refusal
                .error_codes
                .first()
                .map(|c| format!("AADSTS{c}"))
                .or_else(|| crate::credentials::find_aadsts(&refusal.error_description));
            let first = refusal
                .error_description
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or(refusal.error.as_str())
                .to_string();
            let message = if first.is_empty() {
                format!("the token endpoint answered HTTP {status}")
            } else {
                first
            };
            return Err(fail(Some(status), aadsts, message));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| fail(Some(status), None, "the token answer is not a token response".into()))?;
        let lifetime = Duration::from_secs(answer.expires_in);
        let renew_at = asked + lifetime.saturating_sub(RENEW_BEFORE_EXPIRY);
        let token = SecretString::from(answer.access_token);
        *cache = Some((token.clone(), renew_at));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_a_key_or_a_certificate_is_refused_naming_the_file() {
        let e = CertificateKey::from_pem(b"not pem", "/x/cert.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/x/cert.pem") && e.contains("certificate"), "{e}");
        let only_cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = CertificateKey::from_pem(only_cert, "/x/c.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("private key"), "{e}");
    }
}
