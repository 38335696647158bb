//! Helpers shared by the simulator's HTTP tests: a seeded tenant, token fetching, Graph calls.

#![allow(dead_code)]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use tenant_sim::seeds::{AppSeed, ObjectsSeed, SkuSeed, TenantSeed, UserSeed};
use tenant_sim::{RunningSim, start};
use uuid::Uuid;

/// Client id of the app with every permission.
pub const FULL_APP: &str = "11111111-1111-4111-8111-111111111111";
/// Client id of an app with read permissions only.
pub const READER_APP: &str = "22222222-2222-4222-8222-222222222222";
/// Client id of an app without consent.
pub const UNCONSENTED_APP: &str = "33333333-3333-4333-8333-333333333333";
/// The secret of every test app.
pub const SECRET: &str = "test-secret";
/// Bound on every HTTP call of the tests.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

fn app(id: &str, permissions: &[&str]) -> AppSeed {
    AppSeed {
        client_id: Uuid::parse_str(id).expect("test client id is a GUID"),
        display_name: None,
        secret: Some(SecretString::from(SECRET)),
        certificates: Vec::new(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
    }
}

/// A tenant "fabrikam" with three apps, a few users and one SKU of `units` licences.
pub fn seed(name: &str, users: usize, units: u32) -> TenantSeed {
    let mut t = TenantSeed::new(name);
    // The full app also sends mail, as the provider's app does in its own tenant.
    let full: Vec<&str> = tenant_sim::seeds::PRODUCT_PERMISSIONS
        .iter()
        .chain(tenant_sim::seeds::PROVIDER_EXTRA_PERMISSIONS)
        .copied()
        .collect();
    t.apps.push(app(FULL_APP, &full));
    t.apps.push(app(
        READER_APP,
        &[
            "User.Read.All",
            "Group.Read.All",
            "DeviceManagementConfiguration.Read.All",
        ],
    ));
    t.apps.push(app(UNCONSENTED_APP, &[]));
    t.objects = ObjectsSeed {
        users: (0..users)
            .map(|i| UserSeed {
                user_principal_name: format!("user{i:03}"),
                display_name: Some(format!("User {i:03}")),
                id: None,
                usage_location: if i % 2 == 0 { Some("GB".into()) } else { None },
                user_type: None,
                account_enabled: None,
                directory_roles: Vec::new(),
            })
            .collect(),
        skus: vec![SkuSeed {
            sku_part_number: "SPE_E5".into(),
            sku_id: None,
            enabled: units,
            service_plans: Vec::new(),
        }],
        ..ObjectsSeed::default()
    };
    t
}

/// A simulator with one seeded tenant.
pub async fn sim_with(seed: TenantSeed) -> RunningSim {
    start("127.0.0.1:0", vec![seed]).await.expect("simulator starts")
}

/// An HTTP client with a bounded timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .build()
        .expect("client builds")
}

/// Posts a client-credentials request with a secret; returns status and JSON.
pub async fn token_request(sim: &RunningSim, tenant: &str, client_id: &str, secret: &str) -> (StatusCode, Value) {
    let resp = http()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", sim.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token endpoint answers");
    let status = resp.status();
    (status, resp.json().await.expect("token answer is JSON"))
}

/// An access token for an app of a tenant (panics unless issued).
pub async fn token(sim: &RunningSim, tenant: &str, client_id: &str) -> String {
    let (status, body) = token_request(sim, tenant, client_id, SECRET).await;
    assert_eq!(status, StatusCode::OK, "token request failed: {body}");
    body["access_token"].as_str().expect("access_token").to_string()
}

/// A Graph call; returns the raw response.
pub async fn call(sim: &RunningSim, token: &str, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}/v1.0{path}", sim.url())
    };
    let mut req = http().request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("graph answers")
}

/// A Graph call; returns status and JSON body (`Null` when empty).
pub async fn graph(
    sim: &RunningSim,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let resp = call(sim, token, method, path, body).await;
    let status = resp.status();
    let text = resp.text().await.expect("body reads");
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        },
    )
}

/// A valid new-user body.
pub fn new_user(upn: &str) -> Value {
    serde_json::json!({
        "accountEnabled": true,
        "displayName": upn,
        "mailNickname": upn.split('@').next().unwrap_or(upn),
        "userPrincipalName": upn,
        "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "xWwvJ]6NMw+bWH-d"},
    })
}

/// A valid new-group body.
pub fn new_group(name: &str) -> Value {
    let nickname: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
    serde_json::json!({"displayName": name, "mailEnabled": false, "mailNickname": nickname, "securityEnabled": true})
}
