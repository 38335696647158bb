//! The identity platform over HTTP: secrets, client assertions, AADSTS errors, JWKS, user tokens,
//! and Graph's bearer checks (401 for missing/expired/forged tokens, 403 for missing permissions).

mod common;

use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::{Method, StatusCode};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use tenant_sim::control::types::{AppTokenRequest, UserTokenRequest};
use tenant_sim::seeds::{AppSeed, CertificateSeed};
use uuid::Uuid;

fn aadsts(body: &Value) -> (String, u64) {
    let desc = body["error_description"].as_str().unwrap_or_default().to_string();
    (desc, body["error_codes"][0].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn secrets_unknown_apps_and_tenants_answer_the_platform_errors() {
    let sim = sim_with(seed("fabrikam", 2, 5)).await;

    let (status, body) = token_request(&sim, "fabrikam", FULL_APP, SECRET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!(
        expires_in > 3500,
        "expires_in must stay well above 300, got {expires_in}"
    );

    let (status, body) = token_request(&sim, "fabrikam", FULL_APP, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let (desc, code) = aadsts(&body);
    assert_eq!(code, 7000215);
    assert!(desc.starts_with("AADSTS7000215:"), "{desc}");
    assert!(!desc.contains("wrong"), "the presented secret must not be echoed");

    let unknown = Uuid::new_v4().to_string();
    let (status, body) = token_request(&sim, "fabrikam", &unknown, SECRET).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body).1, 700016);
    assert_eq!(body["error"], "unauthorized_client");

    let (status, body) = token_request(&sim, "no-such-tenant", FULL_APP, SECRET).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body).1, 90002);

    let (status, body) = token_request(&sim, "fabrikam", UNCONSENTED_APP, SECRET).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body).1, 65001);

    // The tenant answers to its id and its initial domain too.
    let info = sim.client().tenant("fabrikam").await.expect("tenant info");
    assert_eq!(token_request(&sim, &info.id, FULL_APP, SECRET).await.0, StatusCode::OK);
    assert_eq!(
        token_request(&sim, "fabrikam.onmicrosoft.com", FULL_APP, SECRET)
            .await
            .0,
        StatusCode::OK
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn access_tokens_verify_against_the_tenant_jwks_and_carry_the_claims() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let info = sim.client().tenant("fabrikam").await.expect("tenant info");
    let token = token(&sim, "fabrikam", READER_APP).await;

    let config: Value = http()
        .get(format!("{}/fabrikam/v2.0/.well-known/openid-configuration", sim.url()))
        .send()
        .await
        .expect("openid configuration")
        .json()
        .await
        .expect("json");
    assert_eq!(
        config["issuer"],
        format!("https://login.microsoftonline.com/{}/v2.0", info.id)
    );
    let jwks: Value = http()
        .get(config["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let header = jsonwebtoken::decode_header(&token).expect("header");
    let kid = header.kid.expect("kid in header");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid published");
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().expect("n"), jwk["e"].as_str().expect("e")).expect("key");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["https://graph.microsoft.com"]);
    v.set_issuer(&[format!("https://sts.windows.net/{}/", info.id)]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &v)
        .expect("token verifies")
        .claims;
    assert_eq!(claims["tid"], info.id.as_str());
    assert_eq!(claims["appid"], READER_APP);
    let roles: Vec<&str> = claims["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        roles.contains(&"User.Read.All") && !roles.contains(&"User.ReadWrite.All"),
        "{roles:?}"
    );
    for c in ["exp", "iat", "nbf"] {
        assert!(claims[c].is_i64(), "claim {c} missing");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn client_assertions_signed_by_a_registered_key_are_accepted_and_others_refused() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let mut rng = rand::rngs::OsRng;
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("client key");
    let other = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("other key");
    let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).expect("pem");
    let client_id = Uuid::new_v4();
    sim.client()
        .add_app(
            "fabrikam",
            &AppSeed {
                client_id,
                display_name: Some("cert app".into()),
                secret: None,
                certificates: vec![CertificateSeed {
                    pem: public_pem,
                    key_id: Some("thumb-1".into()),
                }],
                permissions: vec!["User.Read.All".into()],
            },
        )
        .await
        .expect("app added");
    let endpoint = format!("{}/fabrikam/oauth2/v2.0/token", sim.url());
    let assertion = |key: &rsa::RsaPrivateKey, kid: &str, aud: &str, exp_offset: i64| {
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(kid.to_string());
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "aud": aud, "iss": client_id.to_string(), "sub": client_id.to_string(),
            "jti": Uuid::new_v4().to_string(), "nbf": now - 10, "exp": now + exp_offset,
        });
        let der = key.to_pkcs1_der().expect("der");
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(der.as_bytes())).expect("signs")
    };
    let post = |a: String| {
        let endpoint = endpoint.clone();
        async move {
            let resp = http()
                .post(&endpoint)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.to_string().as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.as_str()),
                    ("scope", "https://graph.microsoft.com/.default"),
                ])
                .send()
                .await
                .expect("token endpoint");
            let status = resp.status();
            (status, resp.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = post(assertion(&private, "thumb-1", &endpoint, 600)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The public authority's endpoint is an accepted audience too (clients that rewrite the host).
    let public_aud = "https://login.microsoftonline.com/fabrikam/oauth2/v2.0/token";
    assert_eq!(
        post(assertion(&private, "thumb-1", public_aud, 600)).await.0,
        StatusCode::OK
    );

    let (status, body) = post(assertion(&other, "thumb-1", &endpoint, 600)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(aadsts(&body).1, 700027, "bad signature: {body}");
    let (_, body) = post(assertion(&private, "unregistered", &endpoint, 600)).await;
    assert_eq!(aadsts(&body).1, 700027, "unknown key: {body}");
    let (_, body) = post(assertion(&private, "thumb-1", &endpoint, -120)).await;
    assert_eq!(aadsts(&body).1, 700024, "expired assertion: {body}");
    let (_, body) = post(assertion(&private, "thumb-1", "https://example.com/token", 600)).await;
    assert_eq!(aadsts(&body).1, 700021, "wrong audience: {body}");
    sim.shutdown().await;
}

#[tokio::test]
async fn graph_refuses_missing_expired_and_forged_tokens_and_missing_permissions() {
    let sim = sim_with(seed("fabrikam", 2, 1)).await;
    let good = token(&sim, "fabrikam", READER_APP).await;

    let resp = http()
        .get(format!("{}/v1.0/users", sim.url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "401 carries a Bearer challenge: {challenge:?}"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");

    let expired = sim
        .client()
        .issue_app_token(
            "fabrikam",
            &AppTokenRequest {
                client_id: READER_APP.into(),
                lifetime_secs: Some(-60),
            },
        )
        .await
        .expect("expired token");
    let (status, body) = graph(&sim, &expired.access_token, Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{body}"
    );

    // Forged: the same claims, signed by a key the tenant never published.
    let payload = good.split('.').nth(1).expect("payload segment");
    let payload = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).expect("b64");
    let claims: Value = serde_json::from_slice(&payload).expect("claims");
    let header = jsonwebtoken::decode_header(&good).expect("header");
    let forger = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("key");
    let der = forger.to_pkcs1_der().expect("der");
    let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(der.as_bytes())).expect("signs");
    let (status, body) = graph(&sim, &forged, Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A user token (audience: our API) is not a Graph token.
    let user = sim
        .client()
        .issue_user_token(
            "fabrikam",
            &UserTokenRequest {
                audience: "api://mdops".into(),
                upn: "eng@provider.example".into(),
                name: Some("Engineer".into()),
                oid: None,
                roles: vec!["Access.Approve".into()],
                groups: vec![],
                lifetime_secs: None,
                ..Default::default()
            },
        )
        .await
        .expect("user token");
    assert_eq!(
        graph(&sim, &user.access_token, Method::GET, "/users", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (status, _) = graph(&sim, &good, Method::GET, "/users", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = graph(
        &sim,
        &good,
        Method::POST,
        "/users",
        Some(new_user("x@fabrikam.onmicrosoft.com")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");

    // Granting the permission at run time takes effect with the next token.
    sim.client()
        .set_permissions("fabrikam", READER_APP, &["User.ReadWrite.All"])
        .await
        .expect("grant");
    let fresh = token(&sim, "fabrikam", READER_APP).await;
    let (status, body) = graph(
        &sim,
        &fresh,
        Method::POST,
        "/users",
        Some(new_user("x@fabrikam.onmicrosoft.com")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    sim.shutdown().await;
}

#[tokio::test]
async fn user_tokens_carry_the_engineer_claims_and_verify_with_the_jwks() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let info = sim.client().tenant("fabrikam").await.expect("tenant");
    let issued = sim
        .client()
        .issue_user_token(
            "fabrikam",
            &UserTokenRequest {
                audience: "api://mdops".into(),
                upn: "eng@provider.example".into(),
                name: Some("An Engineer".into()),
                oid: Some("0d9e8f7a-0000-4000-8000-000000000001".into()),
                roles: vec![],
                groups: vec!["5b7c0000-0000-4000-8000-000000000002".into()],
                lifetime_secs: Some(600),
                ..Default::default()
            },
        )
        .await
        .expect("user token");
    assert_eq!(
        sim.client().jwks_uri(&info.id),
        format!("{}/{}/discovery/v2.0/keys", sim.url(), info.id)
    );
    let jwks: Value = http()
        .get(sim.client().jwks_uri(&info.id))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let jwk = &jwks["keys"][0];
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().expect("n"), jwk["e"].as_str().expect("e")).expect("key");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["api://mdops"]);
    v.set_issuer(&[tenant_sim::SimClient::user_token_issuer(&info.id)]);
    let claims = jsonwebtoken::decode::<Value>(&issued.access_token, &key, &v)
        .expect("verifies")
        .claims;
    assert_eq!(claims["upn"], "eng@provider.example");
    assert_eq!(claims["name"], "An Engineer");
    assert_eq!(claims["oid"], "0d9e8f7a-0000-4000-8000-000000000001");
    assert_eq!(claims["groups"][0], "5b7c0000-0000-4000-8000-000000000002");
    assert!(claims.get("roles").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_person_keeps_one_oid_across_tokens() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let oid_of = async |upn: &str, omit: &[&str]| {
        let token = sim
            .client()
            .issue_user_token(
                "fabrikam",
                &UserTokenRequest {
                    audience: "api://mdops".into(),
                    upn: upn.into(),
                    omit: omit.iter().map(|c| c.to_string()).collect(),
                    ..Default::default()
                },
            )
            .await
            .expect("user token")
            .access_token;
        let mut parts = token.split('.');
        let dec = |s: &str| -> Value {
            serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).unwrap(),
            )
            .unwrap()
        };
        let header = dec(parts.next().unwrap());
        let claims = dec(parts.next().unwrap());
        (header, claims)
    };
    let (_, a1) = oid_of("eng@provider.example", &[]).await;
    let (_, a2) = oid_of("ENG@provider.example", &[]).await;
    let (_, b) = oid_of("other@provider.example", &[]).await;
    assert_eq!(a1["oid"], a2["oid"], "the same person, the same oid");
    assert_ne!(a1["oid"], b["oid"]);
    assert!(Uuid::parse_str(a1["oid"].as_str().unwrap()).is_ok());
    // A directory user's token carries the user's object id.
    let seeded = sim_with({
        let mut t = seed("contoso", 0, 1);
        t.objects.users.push(tenant_sim::seeds::UserSeed::member(
            "alice@contoso.onmicrosoft.com",
            None,
        ));
        t
    })
    .await;
    let token = seeded
        .client()
        .issue_user_token(
            "contoso",
            &UserTokenRequest {
                audience: "api://mdops".into(),
                upn: "alice@contoso.onmicrosoft.com".into(),
                ..Default::default()
            },
        )
        .await
        .expect("token");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.access_token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let users = seeded.client().objects("contoso", "users").await.expect("users");
    let alice = users
        .iter()
        .find(|u| u["userPrincipalName"] == "alice@contoso.onmicrosoft.com")
        .expect("alice");
    assert_eq!(claims["oid"], alice["id"]);
    // Tokens a validator must refuse can be made: claims left out, no key id.
    let (header, claims) = oid_of("eng@provider.example", &["oid", "tid", "kid"]).await;
    assert!(claims.get("oid").is_none() && claims.get("tid").is_none(), "{claims}");
    assert!(header.get("kid").is_none(), "{header}");
    sim.shutdown().await;
    seeded.shutdown().await;
}

#[tokio::test]
async fn a_registered_x509_certificate_is_matched_by_its_sha1_thumbprint() {
    // A self-signed test certificate and its key (made with openssl for this test only).
    let cert = include_str!("fixtures/client-cert.pem");
    let key = include_str!("fixtures/client-key.pem");
    let thumbprint = tenant_sim::identity::certificate_thumbprint(cert).expect("a certificate");
    assert_eq!(
        thumbprint, "I9qWb9LNA57_cRfWv1yVBjdqPX8",
        "x5t = base64url(SHA-1(DER)), as openssl computes it"
    );

    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let client_id = Uuid::new_v4();
    sim.client()
        .add_app(
            "fabrikam",
            &AppSeed {
                client_id,
                display_name: None,
                secret: None,
                certificates: vec![CertificateSeed {
                    pem: cert.to_string(),
                    key_id: None,
                }],
                permissions: vec!["User.Read.All".into()],
            },
        )
        .await
        .expect("app added");
    let endpoint = format!("{}/fabrikam/oauth2/v2.0/token", sim.url());
    let digest = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &thumbprint).expect("b64");
    let standard = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &digest);
    let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
    // base64url (JOSE), standard base64 with padding (what azure_identity sends), hex (the portal's form).
    for x5t in [thumbprint.clone(), standard, hex] {
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(x5t.clone());
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"aud": endpoint, "iss": client_id.to_string(), "sub": client_id.to_string(),
                            "jti": Uuid::new_v4().to_string(), "nbf": now, "exp": now + 300});
        let assertion = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(key.as_bytes()).expect("key"),
        )
        .expect("signs");
        let resp = http()
            .post(&endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.to_string().as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .expect("token endpoint");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, StatusCode::OK, "x5t {x5t}: {body}");
        let tok = body["access_token"].as_str().expect("token");
        assert_eq!(graph(&sim, tok, Method::GET, "/users", None).await.0, StatusCode::OK);
    }
    sim.shutdown().await;
}
