//! Token attacks against the API: each is refused with 401, and the validator says why.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::Arc;

use mdops_access_api::{AuthError, AuthSettings, JwtValidator};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::Value;
use support::{ALICE, AUDIENCE, Backend, Rig, TEAM_ROLE};

/// The decoded header and payload of a token.
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let dec = |s: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (dec(it.next().unwrap()), dec(it.next().unwrap()))
}

fn enc(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Asserts the API answers 401 (with `WWW-Authenticate`) and the validator gives `expected`.
async fn refused(rig: &Rig, token: &str, expected: AuthError) {
    let (status, body) = rig.call("GET", "/requests", Some(token), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error"], "invalid or missing access token",
        "no detail leaks: {body}"
    );
    assert_eq!(rig.validator.validate(token).await.unwrap_err(), expected);
}

#[tokio::test]
async fn a_valid_token_is_accepted_and_a_missing_one_refused() {
    let rig = Rig::start(Backend::Sqlite).await;
    let token = rig.member(ALICE).await;
    let (status, body) = rig.call("GET", "/requests", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    let caller = rig.validator.validate(&token).await.unwrap();
    assert_eq!(caller.upn, ALICE);
    assert_eq!(caller.roles, vec![TEAM_ROLE.to_string()]);
    let (status, _) = rig.call("GET", "/requests", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = rig.call("GET", "/health", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let rig = Rig::start(Backend::Sqlite).await;
    let (_, payload) = parts(&rig.member(ALICE).await);
    let token = format!(
        "{}.{}.",
        enc(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        enc(&payload)
    );
    refused(&rig, &token, AuthError::Algorithm("none".into())).await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let rig = Rig::start(Backend::Sqlite).await;
    let valid = rig.member(ALICE).await;
    let (header, payload) = parts(&valid);
    let jwks: Value = reqwest::get(rig.control.jwks_uri(&rig.provider))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let public = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e)).unwrap();
    let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = header["kid"].as_str().map(str::to_string);
    let token = jsonwebtoken::encode(&hs, &payload, &EncodingKey::from_secret(pem.as_bytes())).unwrap();
    refused(&rig, &token, AuthError::Algorithm("HS256".into())).await;
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let rig = Rig::start(Backend::Sqlite).await;
    // An app token of the same tenant, signed by the same key: its issuer is the v1 one.
    let info = rig.control.tenant(&rig.provider).await.unwrap();
    let token = rig
        .control
        .issue_app_token(
            &rig.provider,
            &tenant_sim::control::types::AppTokenRequest {
                client_id: info.apps[0].clone(),
                lifetime_secs: None,
            },
        )
        .await
        .unwrap()
        .access_token;
    assert!(
        parts(&token).1["iss"]
            .as_str()
            .unwrap()
            .starts_with("https://sts.windows.net/")
    );
    refused(&rig, &token, AuthError::WrongIssuer).await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let rig = Rig::start(Backend::Sqlite).await;
    let token = rig
        .token_with(&rig.provider, ALICE, &[TEAM_ROLE], "api://someone-else", None)
        .await;
    refused(&rig, &token, AuthError::WrongAudience).await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let rig = Rig::start(Backend::Sqlite).await;
    // Ten minutes past expiry: well beyond the leeway.
    let token = rig
        .token_with(&rig.provider, ALICE, &[TEAM_ROLE], AUDIENCE, Some(-600))
        .await;
    refused(&rig, &token, AuthError::Expired).await;
    // Expiry is judged by the validator's clock: a fresh token is expired two hours from now.
    let base = url::Url::parse(&format!("{}/", rig.sim.url())).unwrap();
    let later = JwtValidator::with_clock(
        Rig::auth_settings(&base, &rig.provider),
        Arc::new(|| chrono::Utc::now() + chrono::Duration::hours(2)),
    )
    .unwrap();
    let fresh = rig.member(ALICE).await;
    assert_eq!(later.validate(&fresh).await.unwrap_err(), AuthError::Expired);
    assert!(rig.validator.validate(&fresh).await.is_ok());
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_jwks_again_once_the_interval_passed() {
    let rig = Rig::start(Backend::Sqlite).await;
    let base = url::Url::parse(&format!("{}/", rig.sim.url())).unwrap();
    let validator = JwtValidator::new(AuthSettings {
        jwks_min_refresh: std::time::Duration::from_millis(300),
        ..Rig::auth_settings(&base, &rig.provider)
    })
    .unwrap();
    let valid = rig.member(ALICE).await;
    validator.validate(&valid).await.unwrap();
    let mut forged: Vec<String> = valid.split('.').map(str::to_string).collect();
    let (mut header, _) = parts(&valid);
    header["kid"] = "rolled-over-key".into();
    forged[0] = enc(&header);
    let forged = forged.join(".");
    assert_eq!(
        validator.validate(&forged).await.unwrap_err(),
        AuthError::UnknownKey("rolled-over-key".into())
    );
    assert_eq!(validator.jwks_fetches(), 1, "within the interval: no refetch");
    // A short real wait: the limiter measures real time between fetches.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert!(validator.validate(&forged).await.is_err());
    assert_eq!(
        validator.jwks_fetches(),
        2,
        "after the interval an unknown kid refetches once"
    );
    // The known key keeps working throughout.
    validator.validate(&valid).await.unwrap();
    assert_eq!(validator.jwks_fetches(), 2);
}

#[tokio::test]
async fn an_unknown_kid_is_refused_and_refreshes_the_jwks_at_a_bounded_rate() {
    let rig = Rig::start(Backend::Sqlite).await;
    let (_, payload) = parts(&rig.member(ALICE).await);
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let der = key.to_pkcs1_der().unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("attacker-key".into());
    let token = jsonwebtoken::encode(&header, &payload, &EncodingKey::from_rsa_der(der.as_bytes())).unwrap();
    // Warm the cache with a valid token first: one fetch.
    rig.validator.validate(&rig.member(ALICE).await).await.unwrap();
    assert_eq!(rig.validator.jwks_fetches(), 1);
    refused(&rig, &token, AuthError::UnknownKey("attacker-key".into())).await;
    // Within the refresh interval, more unknown kids do not fetch again.
    for _ in 0..5 {
        assert!(rig.validator.validate(&token).await.is_err());
    }
    assert_eq!(rig.validator.jwks_fetches(), 1, "unknown kids must not hammer the JWKS");
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let rig = Rig::start(Backend::Sqlite).await;
    let token = rig.member(ALICE).await;
    let (_, mut payload) = parts(&token);
    payload["roles"] = serde_json::json!([TEAM_ROLE, "Access.Approver"]);
    payload["upn"] = serde_json::json!("mallory@provider.onmicrosoft.com");
    let segments: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", segments[0], enc(&payload), segments[2]);
    refused(&rig, &tampered, AuthError::BadSignature).await;
}

#[tokio::test]
async fn a_tenant_not_on_the_allow_list_is_refused() {
    let rig = Rig::start(Backend::Sqlite).await;
    let token = rig
        .token_with(
            &rig.customer,
            "admin@fabrikam.onmicrosoft.com",
            &[TEAM_ROLE],
            AUDIENCE,
            None,
        )
        .await;
    refused(&rig, &token, AuthError::TenantNotAllowed(rig.customer.clone())).await;
    assert_eq!(rig.validator.jwks_fetches(), 0, "a foreign token fetches nothing");
}
