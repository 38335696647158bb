//! Intune security baselines over HTTP: Graph beta only (templates, `createInstance`, intents),
//! with Graph's 400s for bad bodies and deprecated templates, and v1.0 not knowing the route.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tenant_sim::graph::intents::{DEPRECATED_WINDOWS_BASELINE_TEMPLATE_ID, WINDOWS_BASELINE_TEMPLATE_ID};

fn beta(sim: &tenant_sim::RunningSim, path: &str) -> String {
    format!("{}/beta{path}", sim.url())
}

fn create_instance(template: &str) -> String {
    format!("/deviceManagement/templates/{template}/createInstance")
}

#[tokio::test]
async fn a_baseline_is_created_from_a_template_through_beta_only_and_left_unassigned() {
    let sim = sim_with(seed("fabrikam", 1, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let body = json!({"displayName": "Baseline", "description": "d", "settingsDelta": [], "roleScopeTagIds": ["0"]});

    // v1.0 has no security baselines.
    let (status, err) = graph(
        &sim,
        &tok,
        Method::POST,
        &create_instance(WINDOWS_BASELINE_TEMPLATE_ID),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("'templates'"),
        "{err}"
    );

    let (status, templates) = graph(
        &sim,
        &tok,
        Method::GET,
        &beta(&sim, "/deviceManagement/templates"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<&str> = templates["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&WINDOWS_BASELINE_TEMPLATE_ID), "{templates}");

    let url = beta(&sim, &create_instance(WINDOWS_BASELINE_TEMPLATE_ID));
    let (status, intent) = graph(&sim, &tok, Method::POST, &url, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{intent}");
    assert_eq!(intent["templateId"], WINDOWS_BASELINE_TEMPLATE_ID);
    assert_eq!(intent["isAssigned"], false);
    let id = intent["id"].as_str().unwrap();

    let (status, list) = graph(
        &sim,
        &tok,
        Method::GET,
        &beta(&sim, "/deviceManagement/intents?$select=id,displayName,templateId"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["value"][0]["displayName"], "Baseline");
    let (status, assignments) = graph(
        &sim,
        &tok,
        Method::GET,
        &beta(&sim, &format!("/deviceManagement/intents/{id}/assignments")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(assignments["value"], json!([]));
    assert_eq!(sim.client().counts("fabrikam").await.unwrap()["intents"], 1);
}

#[tokio::test]
async fn bad_bodies_deprecated_and_unknown_templates_and_read_only_apps_are_refused_as_graph_does() {
    let sim = sim_with(seed("fabrikam", 1, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let url = beta(&sim, &create_instance(WINDOWS_BASELINE_TEMPLATE_ID));
    for (body, expect) in [
        (json!({"displayName": "B", "assignments": []}), "'assignments'"),
        (json!({"displayName": "  "}), "'displayName'"),
        (json!({"description": "no name"}), "'displayName'"),
        (json!({"displayName": "B", "settingsDelta": {}}), "'settingsDelta'"),
        (
            json!({"displayName": "B", "settingsDelta": [{"value": true}]}),
            "'settingsDelta'",
        ),
        (json!({"displayName": "B", "roleScopeTagIds": [0]}), "'roleScopeTagIds'"),
    ] {
        let (status, err) = graph(&sim, &tok, Method::POST, &url, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert_eq!(err["error"]["code"], "BadRequest", "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(expect),
            "{body}: {err}"
        );
    }
    let ok = json!({"displayName": "B"});
    let (status, err) = graph(
        &sim,
        &tok,
        Method::POST,
        &beta(&sim, &create_instance(DEPRECATED_WINDOWS_BASELINE_TEMPLATE_ID)),
        Some(ok.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("deprecated"),
        "{err}"
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, _) = graph(
        &sim,
        &tok,
        Method::POST,
        &beta(&sim, &create_instance(&unknown)),
        Some(ok.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let reader = token(&sim, "fabrikam", READER_APP).await;
    let (status, _) = graph(&sim, &reader, Method::POST, &url, Some(ok)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "creating needs DeviceManagementConfiguration.ReadWrite.All"
    );
    let (status, _) = graph(
        &sim,
        &reader,
        Method::GET,
        &beta(&sim, "/deviceManagement/intents"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "reading needs only .Read.All");
    assert_eq!(
        sim.client().counts("fabrikam").await.unwrap()["intents"],
        0,
        "nothing refused was created"
    );
}
