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
use support::{ALICE, AUDIENCE, BOB, Backend, Rig, TEAM_ROLE};

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
    let token = jsonwebtoken::encode(&hs, &payload, &EncodingKey::from_secret(pem.as_bytes()).unwrap()).unwrap();
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

/// A token like `valid` whose header names another `kid` (its signature no longer matters: the
/// key is looked up first).
fn with_kid(valid: &str, kid: &str) -> String {
    let mut segments: Vec<String> = valid.split('.').map(str::to_string).collect();
    let (mut header, _) = parts(valid);
    header["kid"] = kid.into();
    segments[0] = enc(&header);
    segments.join(".")
}

/// The JWKS GETs of `tenant` the simulator answered.
async fn jwks_gets(rig: &Rig) -> usize {
    rig.control
        .requests(&tenant_sim::store::RequestLogQuery {
            path_prefix: Some(format!("/{}/discovery/", rig.provider)),
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

/// Waits (bounded) until the simulator took the tenant's faults, i.e. the faulted request arrived.
async fn fault_taken(rig: &Rig) {
    for _ in 0..500 {
        if rig.control.faults(&rig.provider).await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the faulted JWKS request never arrived");
}

fn jwks_fault(rig: &Rig, count: u32, action: tenant_sim::faults::FaultAction) -> tenant_sim::faults::FaultSpec {
    tenant_sim::faults::FaultSpec {
        method: Some("GET".into()),
        path_prefix: format!("/{}/discovery/v2.0/keys", rig.provider),
        count,
        action,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_jwks_holds_no_request_whose_key_is_cached() {
    let rig = Rig::start(Backend::Sqlite).await;
    let base = url::Url::parse(&format!("{}/", rig.sim.url())).unwrap();
    let validator = Arc::new(
        JwtValidator::new(AuthSettings {
            jwks_min_refresh: std::time::Duration::from_millis(300),
            ..Rig::auth_settings(&base, &rig.provider)
        })
        .unwrap(),
    );
    let valid = rig.member(ALICE).await;
    validator.validate(&valid).await.unwrap();
    assert_eq!(validator.jwks_fetches(), 1);
    // Past the refresh interval, an unknown kid fetches again: and that fetch hangs until released.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    rig.control
        .add_fault(
            &rig.provider,
            &jwks_fault(
                &rig,
                1,
                tenant_sim::faults::FaultAction::Hang {
                    ms: tenant_sim::faults::MAX_HANG_MS,
                },
            ),
        )
        .await
        .unwrap();
    let forged = with_kid(&valid, "rolled-over-key");
    let held = tokio::spawn({
        let (validator, forged) = (validator.clone(), forged.clone());
        async move { validator.validate(&forged).await }
    });
    fault_taken(&rig).await;
    // While that fetch is held, tokens whose key is cached are answered, and fetch nothing.
    let bob = rig.member(BOB).await;
    for token in [&valid, &bob, &valid, &bob] {
        validator.validate(token).await.unwrap();
    }
    assert!(!held.is_finished(), "the JWKS fetch is still held");
    assert_eq!(validator.jwks_fetches(), 2);
    // Released: the held request fails with the fetch, and the failure is remembered.
    rig.control.clear_faults(&rig.provider).await.unwrap();
    assert!(matches!(held.await.unwrap(), Err(AuthError::Jwks(_))));
    assert!(matches!(validator.validate(&forged).await, Err(AuthError::Jwks(_))));
    assert_eq!(validator.jwks_fetches(), 2, "no new fetch during the backoff");
    validator.validate(&valid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_wait_on_one_fetch_in_flight() {
    let rig = Rig::start(Backend::Sqlite).await;
    let base = url::Url::parse(&format!("{}/", rig.sim.url())).unwrap();
    let validator = Arc::new(JwtValidator::new(Rig::auth_settings(&base, &rig.provider)).unwrap());
    rig.control
        .add_fault(
            &rig.provider,
            &jwks_fault(
                &rig,
                1,
                tenant_sim::faults::FaultAction::Hang {
                    ms: tenant_sim::faults::MAX_HANG_MS,
                },
            ),
        )
        .await
        .unwrap();
    // A cold cache: the first token fetches and is held; ten more wait on that one fetch.
    let valid = rig.member(ALICE).await;
    let mut waiting = Vec::new();
    for _ in 0..10 {
        let (validator, valid) = (validator.clone(), valid.clone());
        waiting.push(tokio::spawn(async move { validator.validate(&valid).await }));
    }
    fault_taken(&rig).await;
    assert_eq!(validator.jwks_fetches(), 1, "single flight");
    rig.control.clear_faults(&rig.provider).await.unwrap();
    for w in waiting {
        assert!(matches!(w.await.unwrap(), Err(AuthError::Jwks(_))));
    }
    assert_eq!(validator.jwks_fetches(), 1, "the failure answered all of them");
    assert_eq!(jwks_gets(&rig).await, 1);
}

#[tokio::test]
async fn a_failed_fetch_is_remembered_and_retried_after_the_backoff() {
    let rig = Rig::start(Backend::Sqlite).await;
    let base = url::Url::parse(&format!("{}/", rig.sim.url())).unwrap();
    let validator = JwtValidator::new(AuthSettings {
        jwks_failure_backoff: std::time::Duration::from_millis(300),
        ..Rig::auth_settings(&base, &rig.provider)
    })
    .unwrap();
    rig.control
        .add_fault(
            &rig.provider,
            &jwks_fault(
                &rig,
                1,
                tenant_sim::faults::FaultAction::Status {
                    status: 503,
                    retry_after: None,
                    code: None,
                },
            ),
        )
        .await
        .unwrap();
    let valid = rig.member(ALICE).await;
    for _ in 0..5 {
        assert!(matches!(validator.validate(&valid).await, Err(AuthError::Jwks(_))));
    }
    assert_eq!(validator.jwks_fetches(), 1, "an outage is not asked again per request");
    // A short real wait: the backoff measures real time.
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    validator.validate(&valid).await.unwrap();
    assert_eq!(validator.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_token_invalid_on_its_face_fetches_no_keys() {
    let rig = Rig::start(Backend::Sqlite).await;
    let token = |omit: &[&str], audience: &str, lifetime: Option<i64>, nbf: Option<i64>| {
        let control = rig.control.clone();
        let provider = rig.provider.clone();
        let omit: Vec<String> = omit.iter().map(|s| s.to_string()).collect();
        let audience = audience.to_string();
        async move {
            control
                .issue_user_token(
                    &provider,
                    &tenant_sim::control::types::UserTokenRequest {
                        audience,
                        upn: ALICE.into(),
                        roles: vec![TEAM_ROLE.into()],
                        lifetime_secs: lifetime,
                        not_before_secs: nbf,
                        omit,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .access_token
        }
    };
    let valid = token(&[], AUDIENCE, None, None).await;
    let (_, payload) = parts(&valid);
    let cases = vec![
        (
            format!("{}.{}.", enc(&serde_json::json!({"alg": "none"})), enc(&payload)),
            AuthError::Algorithm("none".into()),
        ),
        (
            token(&["kid"], AUDIENCE, None, None).await,
            AuthError::MissingClaim("kid"),
        ),
        (
            token(&["tid"], AUDIENCE, None, None).await,
            AuthError::MissingClaim("tid"),
        ),
        (
            token(&["oid"], AUDIENCE, None, None).await,
            AuthError::MissingClaim("oid"),
        ),
        (
            token(&[], "api://someone-else", None, None).await,
            AuthError::WrongAudience,
        ),
        (token(&[], AUDIENCE, Some(-600), None).await, AuthError::Expired),
        (token(&[], AUDIENCE, None, Some(600)).await, AuthError::NotYetValid),
        (
            {
                let mut p = payload.clone();
                p["iss"] = "https://login.microsoftonline.com/someone-else/v2.0".into();
                let s: Vec<&str> = valid.split('.').collect();
                format!("{}.{}.{}", s[0], enc(&p), s[2])
            },
            AuthError::WrongIssuer,
        ),
        (
            format!("{}.{}.{}", "a".repeat(mdops_access_api::auth::MAX_TOKEN_LEN), "b", "c"),
            AuthError::Malformed(format!("longer than {} bytes", mdops_access_api::auth::MAX_TOKEN_LEN)),
        ),
    ];
    for (token, expected) in cases {
        refused(&rig, &token, expected).await;
    }
    assert_eq!(rig.validator.jwks_fetches(), 0, "nothing was fetched for them");
    assert_eq!(jwks_gets(&rig).await, 0);
}
