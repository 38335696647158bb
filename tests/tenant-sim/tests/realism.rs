//! Realism knobs and faults over HTTP: throttling with integer, decimal and missing `Retry-After`,
//! every fault kind, latency, and `$batch` (limit of 20, items throttled on their own).

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenant_sim::faults::{FaultAction, FaultSpec};
use tenant_sim::knobs::Knobs;

const DOMAIN: &str = "fabrikam.onmicrosoft.com";

fn config(name: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.windows10EndpointProtectionConfiguration", "displayName": name})
}

#[tokio::test]
async fn identity_writes_are_throttled_with_an_integer_or_decimal_retry_after() {
    let mut s = seed("fabrikam", 0, 1);
    s.knobs = Knobs {
        identity_write_limit: 3,
        identity_write_window_ms: 10_000,
        ..Knobs::default()
    };
    let sim = sim_with(s).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    for i in 0..3 {
        let (status, body) = graph(&sim, &tok, Method::POST, "/groups", Some(new_group(&format!("g{i}")))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Reads are not counted.
    assert_eq!(graph(&sim, &tok, Method::GET, "/groups", None).await.0, StatusCode::OK);
    let resp = call(&sim, &tok, Method::POST, "/groups", Some(new_group("g3"))).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("integer Retry-After");
    assert!((9..=10).contains(&retry), "Retry-After {retry} for a 10 s window");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "TooManyRequests");

    // Quotas are per app: another app still writes.
    sim.client()
        .set_permissions("fabrikam", READER_APP, &["Group.ReadWrite.All"])
        .await
        .expect("grant");
    let other = token(&sim, "fabrikam", READER_APP).await;
    assert_eq!(
        graph(&sim, &other, Method::POST, "/groups", Some(new_group("other")))
            .await
            .0,
        StatusCode::CREATED
    );

    sim.client()
        .set_knobs(
            "fabrikam",
            &Knobs {
                identity_write_limit: 3,
                identity_write_window_ms: 10_000,
                retry_after_decimal: true,
                ..Knobs::default()
            },
        )
        .await
        .expect("knobs");
    let resp = call(&sim, &tok, Method::POST, "/groups", Some(new_group("g4"))).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let text = resp.headers()["retry-after"].to_str().expect("ascii").to_string();
    let secs: f64 = text.parse().expect("decimal Retry-After");
    assert!(secs > 5.0 && secs <= 10.0 && text.contains('.'), "Retry-After {text}");

    // The window sliding open again is unit-tested with paused time (graph::tests); here a raised
    // quota admits the next write at once.
    sim.client()
        .set_knobs(
            "fabrikam",
            &Knobs {
                identity_write_limit: 100,
                ..Knobs::default()
            },
        )
        .await
        .expect("knobs");
    assert_eq!(
        graph(&sim, &tok, Method::POST, "/groups", Some(new_group("g5")))
            .await
            .0,
        StatusCode::CREATED
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn intune_writes_are_throttled_without_retry_after() {
    let mut s = seed("fabrikam", 0, 1);
    s.knobs = Knobs {
        intune_write_limit: 2,
        intune_write_window_ms: 60_000,
        ..Knobs::default()
    };
    let sim = sim_with(s).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    for i in 0..2 {
        assert_eq!(
            graph(
                &sim,
                &tok,
                Method::POST,
                "/deviceManagement/deviceConfigurations",
                Some(config(&format!("c{i}")))
            )
            .await
            .0,
            StatusCode::CREATED
        );
    }
    let resp = call(
        &sim,
        &tok,
        Method::POST,
        "/deviceManagement/deviceConfigurations",
        Some(config("c2")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_none(), "Intune omits Retry-After");
    // Identity writes have their own quota.
    assert_eq!(
        graph(&sim, &tok, Method::POST, "/groups", Some(new_group("g"))).await.0,
        StatusCode::CREATED
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn status_faults_fail_the_next_n_matching_requests_then_stop() {
    let sim = sim_with(seed("fabrikam", 1, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let fault = FaultSpec {
        method: Some("GET".into()),
        path_prefix: "/v1.0/users".into(),
        count: 2,
        action: FaultAction::Status {
            status: 503,
            retry_after: Some("3".into()),
            code: None,
        },
    };
    sim.client().add_fault("fabrikam", &fault).await.expect("fault");
    // Not matching: other method, other path.
    assert_eq!(graph(&sim, &tok, Method::GET, "/groups", None).await.0, StatusCode::OK);
    assert_eq!(
        graph(
            &sim,
            &tok,
            Method::POST,
            "/users",
            Some(new_user(&format!("f@{DOMAIN}")))
        )
        .await
        .0,
        StatusCode::CREATED
    );
    for _ in 0..2 {
        let resp = call(&sim, &tok, Method::GET, "/users", None).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["retry-after"], "3");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "ServiceUnavailable");
    }
    assert_eq!(graph(&sim, &tok, Method::GET, "/users", None).await.0, StatusCode::OK);
    assert!(sim.client().faults("fabrikam").await.expect("faults").is_empty());

    // Faults on the token endpoint too.
    let fault = FaultSpec {
        method: None,
        path_prefix: "/fabrikam/oauth2".into(),
        count: 1,
        action: FaultAction::Status {
            status: 500,
            retry_after: None,
            code: None,
        },
    };
    sim.client().add_fault("fabrikam", &fault).await.expect("fault");
    assert_eq!(
        token_request(&sim, "fabrikam", FULL_APP, SECRET).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        token_request(&sim, "fabrikam", FULL_APP, SECRET).await.0,
        StatusCode::OK
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn reset_faults_drop_the_connection_and_hang_faults_outlast_the_client_timeout() {
    let sim = sim_with(seed("fabrikam", 1, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let client = sim.client();
    client
        .add_fault(
            "fabrikam",
            &FaultSpec {
                method: None,
                path_prefix: "/v1.0/groups".into(),
                count: 1,
                action: FaultAction::Reset,
            },
        )
        .await
        .expect("fault");
    let err = http()
        .get(format!("{}/v1.0/groups", sim.url()))
        .bearer_auth(&tok)
        .send()
        .await
        .expect_err("the connection is reset");
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    let mut reset = false;
    while let Some(e) = source {
        reset |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset);
        source = e.source();
    }
    assert!(reset, "expected a TCP reset: {err:?}");
    let log = client.requests(&Default::default()).await.expect("log");
    assert!(
        log.iter().any(|e| e.path == "/v1.0/groups" && e.status == 0),
        "the reset is logged with status 0"
    );
    assert_eq!(
        graph(&sim, &tok, Method::GET, "/groups", None).await.0,
        StatusCode::OK,
        "one reset only"
    );

    client
        .add_fault(
            "fabrikam",
            &FaultSpec {
                method: None,
                path_prefix: "/v1.0/users".into(),
                count: 1,
                action: FaultAction::Hang { ms: 5_000 },
            },
        )
        .await
        .expect("fault");
    let started = Instant::now();
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client")
        .get(format!("{}/v1.0/users", sim.url()))
        .bearer_auth(&tok)
        .send()
        .await
        .expect_err("the request hangs");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_knob_delays_every_call() {
    let mut s = seed("fabrikam", 1, 1);
    s.knobs.latency_ms = 250;
    let sim = sim_with(s).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let started = Instant::now();
    assert_eq!(graph(&sim, &tok, Method::GET, "/users", None).await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(250));
    sim.shutdown().await;
}

#[tokio::test]
async fn batches_hold_at_most_20_items_each_answered_and_throttled_on_its_own() {
    let mut s = seed("fabrikam", 2, 1);
    s.knobs = Knobs {
        identity_write_limit: 2,
        identity_write_window_ms: 60_000,
        ..Knobs::default()
    };
    let sim = sim_with(s).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let items: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let (status, body) = graph(&sim, &tok, Method::POST, "/$batch", Some(json!({"requests": items}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "BadRequest");

    let mut requests: Vec<Value> = (0..3)
        .map(|i| {
            json!({"id": format!("g{i}"), "method": "POST", "url": "/groups",
                   "headers": {"Content-Type": "application/json"}, "body": new_group(&format!("batch{i}"))})
        })
        .collect();
    requests.push(json!({"id": "read", "method": "GET", "url": format!("/users?$filter=userPrincipalName eq 'user000@{DOMAIN}'")}));
    requests.push(json!({"id": "missing", "method": "GET", "url": format!("/users/{}", uuid::Uuid::new_v4())}));
    requests.push(json!({"id": "after", "method": "GET", "url": "/groups", "dependsOn": ["missing"]}));
    let (status, body) = graph(&sim, &tok, Method::POST, "/$batch", Some(json!({"requests": requests}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let by_id = |id: &str| {
        body["responses"]
            .as_array()
            .expect("responses")
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .expect("item answered")
    };
    assert_eq!(by_id("g0")["status"], 201);
    assert_eq!(by_id("g1")["status"], 201);
    let throttled = by_id("g2");
    assert_eq!(throttled["status"], 429);
    assert!(throttled["headers"]["Retry-After"].is_string(), "{throttled}");
    assert_eq!(throttled["body"]["error"]["code"], "TooManyRequests");
    let read = by_id("read");
    assert_eq!(read["status"], 200);
    assert_eq!(
        read["body"]["value"][0]["userPrincipalName"],
        format!("user000@{DOMAIN}")
    );
    assert_eq!(by_id("missing")["status"], 404);
    assert_eq!(by_id("after")["status"], 424);

    // Each item is in the request log with the batch's request id.
    let log = sim
        .client()
        .requests(&tenant_sim::store::RequestLogQuery {
            path_prefix: Some("/v1.0/groups".into()),
            ..Default::default()
        })
        .await
        .expect("log");
    let items: Vec<_> = log
        .iter()
        .filter(|e| e.batch_request_id.is_some() && e.method == "POST")
        .collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items.iter().filter(|e| e.status == 429).count(), 1);

    // A fault can hit the batch request itself: no item runs.
    let fault = FaultSpec {
        method: Some("POST".into()),
        path_prefix: "/v1.0/$batch".into(),
        count: 1,
        action: FaultAction::Status {
            status: 503,
            retry_after: Some("1".into()),
            code: None,
        },
    };
    sim.client().add_fault("fabrikam", &fault).await.expect("fault");
    let before = sim.client().requests(&Default::default()).await.expect("log").len();
    let one = json!({"requests": [{"id": "1", "method": "GET", "url": "/groups"}]});
    let (status, _) = graph(&sim, &tok, Method::POST, "/$batch", Some(one.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let after = sim.client().requests(&Default::default()).await.expect("log");
    assert_eq!(after.len(), before + 1, "only the batch itself is logged");
    assert_eq!(
        graph(&sim, &tok, Method::POST, "/$batch", Some(one)).await.0,
        StatusCode::OK
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn commit_first_faults_apply_the_write_and_then_lose_the_answer() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let fault = |action| FaultSpec {
        method: Some("POST".into()),
        path_prefix: "/v1.0/groups".into(),
        count: 1,
        action,
    };
    let control = sim.client();
    control
        .add_fault("fabrikam", &fault(FaultAction::CommitThenReset))
        .await
        .expect("fault");
    let url = format!("{}/v1.0/groups", sim.url());
    let sent = http()
        .post(&url)
        .bearer_auth(&tok)
        .json(&new_group("lost-answer"))
        .send()
        .await;
    assert!(sent.is_err(), "the connection is reset: no answer at all");
    control
        .add_fault("fabrikam", &fault(FaultAction::CommitThenStatus { status: 504 }))
        .await
        .expect("fault");
    let (status, _) = graph(&sim, &tok, Method::POST, "/groups", Some(new_group("gateway-gave-up"))).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);

    // Both writes were applied: the groups exist, and the log tells what really happened.
    let (_, groups) = graph(&sim, &tok, Method::GET, "/groups", None).await;
    let names: Vec<&str> = groups["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["displayName"].as_str())
        .collect();
    assert!(
        names.contains(&"lost-answer") && names.contains(&"gateway-gave-up"),
        "{names:?}"
    );
    let log = control
        .requests(&tenant_sim::store::RequestLogQuery {
            method: Some("POST".into()),
            path_prefix: Some("/v1.0/groups".into()),
            ..Default::default()
        })
        .await
        .expect("log");
    let faults: Vec<(String, Option<u16>, u16)> = log
        .iter()
        .map(|e| {
            let f = e.fault.clone().expect("both were faulted");
            (f.kind, f.applied_status, e.status)
        })
        .collect();
    assert_eq!(
        faults,
        [
            ("commit_then_reset".to_string(), Some(201), 0),
            ("commit_then_status".to_string(), Some(201), 504)
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn chaos_injects_faults_at_its_rates_and_says_so_in_the_log() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let spec = tenant_sim::chaos::ChaosSpec {
        seed: 1,
        throttle: 0.3,
        server_error: 0.2,
        ..Default::default()
    };
    sim.client().set_chaos("fabrikam", &spec).await.expect("chaos on");
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..100 {
        let (status, _) = graph(&sim, &tok, Method::GET, "/groups", None).await;
        *statuses.entry(status.as_u16()).or_insert(0) += 1;
    }
    let throttled = statuses.get(&429).copied().unwrap_or(0);
    let ok = statuses.get(&200).copied().unwrap_or(0);
    assert!((15..=45).contains(&throttled), "{statuses:?}");
    assert!((35..=70).contains(&ok), "{statuses:?}");
    let log = sim.client().requests(&Default::default()).await.expect("log");
    let chaos = log
        .iter()
        .filter(|e| e.fault.as_ref().is_some_and(|f| f.source == "chaos"))
        .count();
    assert_eq!(chaos, 100 - ok, "every faulted answer is marked");
    sim.client().clear_chaos("fabrikam").await.expect("chaos off");
    assert_eq!(graph(&sim, &tok, Method::GET, "/groups", None).await.0, StatusCode::OK);
    let bad = tenant_sim::chaos::ChaosSpec {
        reset: 2.0,
        ..Default::default()
    };
    assert!(sim.client().set_chaos("fabrikam", &bad).await.is_err());
    sim.shutdown().await;
}
