//! Graph behaviour over HTTP: OData errors and request ids, validation, the real duplicate answers,
//! paging, `$filter`/`$select`/`$count`, replication lag, licences, mail, invitations, roles, Intune.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenant_sim::knobs::Knobs;

const DOMAIN: &str = "fabrikam.onmicrosoft.com";

#[tokio::test]
async fn answers_carry_request_ids_and_errors_have_the_odata_shape() {
    let sim = sim_with(seed("fabrikam", 1, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let resp = http()
        .get(format!("{}/v1.0/users/{}", sim.url(), uuid::Uuid::new_v4()))
        .bearer_auth(&tok)
        .header("client-request-id", "my-correlation-1")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let request_id = resp
        .headers()
        .get("request-id")
        .expect("request-id header")
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(
        resp.headers().get("client-request-id").expect("echo"),
        "my-correlation-1"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    assert!(body["error"]["message"].is_string());
    assert_eq!(body["error"]["innerError"]["request-id"], request_id.as_str());
    assert_eq!(body["error"]["innerError"]["client-request-id"], "my-correlation-1");
    assert!(body["error"]["innerError"]["date"].is_string());

    let ok = call(&sim, &tok, Method::GET, "/organization", None).await;
    assert!(ok.headers().contains_key("request-id"));

    let log = sim.client().requests(&Default::default()).await.expect("log");
    let entry = log
        .iter()
        .find(|e| e.client_request_id.as_deref() == Some("my-correlation-1"))
        .expect("logged");
    assert_eq!(entry.status, 404);
    assert_eq!(entry.request_id, request_id);
    sim.shutdown().await;
}

#[tokio::test]
async fn user_creation_is_validated_and_duplicates_answer_400_object_conflict() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let upn = format!("ada@{DOMAIN}");
    let (status, created) = graph(&sim, &tok, Method::POST, "/users", Some(new_user(&upn))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created.get("passwordProfile").is_none());

    let (status, body) = graph(&sim, &tok, Method::POST, "/users", Some(new_user(&upn.to_uppercase()))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    assert_eq!(
        body["error"]["message"],
        "Another object with the same value for property userPrincipalName already exists."
    );
    assert_eq!(
        body["error"]["details"][0],
        json!({"target": "userPrincipalName", "code": "ObjectConflict"})
    );

    for (change, why) in [
        (json!({"passwordProfile": null}), "passwordProfile missing"),
        (json!({"accountEnabled": null}), "accountEnabled missing"),
        (json!({"mailNickname": null}), "mailNickname missing"),
        (json!({"usageLocation": "XX"}), "invalid usageLocation"),
        (json!({"favouriteColour": "blue"}), "unknown property"),
        (
            json!({"userPrincipalName": "b@not-our-domain.com"}),
            "unverified domain",
        ),
    ] {
        let mut body = new_user(&format!("b@{DOMAIN}"));
        for (k, v) in change.as_object().expect("object") {
            if v.is_null() {
                body.as_object_mut().expect("object").remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let (status, answer) = graph(&sim, &tok, Method::POST, "/users", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
        assert_eq!(answer["error"]["code"], "Request_BadRequest", "{why}");
    }

    // GET by UPN, PATCH, and the non-default property needing $select.
    let (status, _) = graph(
        &sim,
        &tok,
        Method::PATCH,
        &format!("/users/{upn}"),
        Some(json!({"usageLocation": "NL"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, user) = graph(&sim, &tok, Method::GET, &format!("/users/{upn}"), None).await;
    assert!(
        user.get("usageLocation").is_none(),
        "usageLocation is not a default property: {user}"
    );
    let (_, user) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/users/{upn}?$select=id,usageLocation"),
        None,
    )
    .await;
    assert_eq!(user["usageLocation"], "NL");
    assert!(user.get("displayName").is_none());
    let (status, _) = graph(&sim, &tok, Method::GET, "/users?$select=nonsense", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = graph(
        &sim,
        &tok,
        Method::DELETE,
        &format!("/users/{}", created["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        graph(&sim, &tok, Method::GET, &format!("/users/{upn}"), None).await.0,
        StatusCode::NOT_FOUND
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn groups_members_and_the_duplicate_reference_answer() {
    let sim = sim_with(seed("fabrikam", 2, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (status, body) = graph(
        &sim,
        &tok,
        Method::POST,
        "/groups",
        Some(json!({"displayName": "x", "mailNickname": "x"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "group without mailEnabled/securityEnabled: {body}"
    );

    let (status, group) = graph(
        &sim,
        &tok,
        Method::POST,
        "/groups",
        Some(new_group("Modern Workplace Devices - Test")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let gid = group["id"].as_str().expect("id").to_string();
    let (_, user) = graph(&sim, &tok, Method::GET, &format!("/users/user000@{DOMAIN}"), None).await;
    let uid = user["id"].as_str().expect("id").to_string();
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{uid}")});
    let path = format!("/groups/{gid}/members/$ref");
    assert_eq!(
        graph(&sim, &tok, Method::POST, &path, Some(reference.clone())).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = graph(&sim, &tok, Method::POST, &path, Some(reference)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    assert_eq!(
        body["error"]["message"],
        "One or more added object references already exist for the following modified properties: 'members'."
    );
    let ghost =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", uuid::Uuid::new_v4())});
    assert_eq!(
        graph(&sim, &tok, Method::POST, &path, Some(ghost)).await.0,
        StatusCode::NOT_FOUND
    );

    let (_, members) = graph(&sim, &tok, Method::GET, &format!("/groups/{gid}/members"), None).await;
    assert_eq!(members["value"][0]["id"], uid.as_str());
    assert_eq!(members["value"][0]["@odata.type"], "#microsoft.graph.user");
    let (_, member_of) = graph(&sim, &tok, Method::GET, &format!("/users/{uid}/memberOf"), None).await;
    assert_eq!(member_of["value"][0]["id"], gid.as_str());

    let (status, _) = graph(
        &sim,
        &tok,
        Method::PATCH,
        &format!("/groups/{gid}"),
        Some(json!({"description": "ring 0"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, g) = graph(&sim, &tok, Method::GET, &format!("/groups/{gid}"), None).await;
    assert_eq!(g["description"], "ring 0");
    assert_eq!(
        graph(
            &sim,
            &tok,
            Method::DELETE,
            &format!("/groups/{gid}/members/{uid}/$ref"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let (_, members) = graph(&sim, &tok, Method::GET, &format!("/groups/{gid}/members"), None).await;
    assert_eq!(members["value"].as_array().map(Vec::len), Some(0));

    // PATCH with members@odata.bind adds members; a repeat answers the duplicate-reference 400.
    let (_, other) = graph(&sim, &tok, Method::GET, &format!("/users/user001@{DOMAIN}"), None).await;
    let bind = json!({"members@odata.bind": [
        format!("https://graph.microsoft.com/v1.0/directoryObjects/{uid}"),
        format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", other["id"].as_str().expect("id")),
    ]});
    let path = format!("/groups/{gid}");
    assert_eq!(
        graph(&sim, &tok, Method::PATCH, &path, Some(bind.clone())).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, members) = graph(&sim, &tok, Method::GET, &format!("/groups/{gid}/members"), None).await;
    assert_eq!(members["value"].as_array().map(Vec::len), Some(2));
    let (status, body) = graph(&sim, &tok, Method::PATCH, &path, Some(bind)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], groups_duplicate_message());
    sim.shutdown().await;
}

fn groups_duplicate_message() -> &'static str {
    tenant_sim::graph::groups::DUPLICATE_REFERENCE
}

#[tokio::test]
async fn lists_page_with_next_links_and_honour_filter_select_top_and_count() {
    let sim = sim_with(seed("fabrikam", 250, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;

    // Default page size 100: three pages for 250 users.
    let mut next = Some(format!("{}/v1.0/users?$select=id,displayName", sim.url()));
    let (mut pages, mut seen) = (0, Vec::new());
    while let Some(url) = next.take() {
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        let (status, body) = graph(&sim, &tok, Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for u in body["value"].as_array().expect("value") {
            assert!(
                u.get("userPrincipalName").is_none(),
                "$select must carry over to next pages"
            );
            seen.push(u["id"].as_str().expect("id").to_string());
        }
        next = body["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(pages, 3);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 250);

    let (_, body) = graph(&sim, &tok, Method::GET, "/users?$top=7", None).await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(7));
    assert!(body["@odata.nextLink"].as_str().is_some_and(|l| l.contains("$top=7")));
    assert_eq!(
        graph(&sim, &tok, Method::GET, "/users?$top=1000", None).await.0,
        StatusCode::BAD_REQUEST
    );

    let (_, body) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/users?$filter=userPrincipalName eq 'USER007@{DOMAIN}'"),
        None,
    )
    .await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["value"][0]["displayName"], "User 007");
    let (_, body) = graph(
        &sim,
        &tok,
        Method::GET,
        "/users?$filter=startswith(displayName,'User 01')",
        None,
    )
    .await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(10));
    let (status, body) = graph(&sim, &tok, Method::GET, "/users?$filter=jobTitle eq 'x'", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unsupported filter property: {body}");
    let (status, _) = graph(&sim, &tok, Method::GET, "/users?$filter=endswith(mail,'x')", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, body) = graph(&sim, &tok, Method::GET, "/users?$orderby=displayName desc&$top=2", None).await;
    assert_eq!(body["value"][0]["displayName"], "User 249");
    assert!(
        body["@odata.nextLink"]
            .as_str()
            .is_some_and(|l| l.contains("$orderby=displayName"))
    );
    let (status, _) = graph(&sim, &tok, Method::GET, "/users?$orderby=jobTitle", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unsupported sort property");
    let (status, _) = graph(&sim, &tok, Method::GET, "/users?$count=true", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "$count without ConsistencyLevel");
    let resp = http()
        .get(format!(
            "{}/v1.0/users?$count=true&$top=5&$filter=startswith(displayName,'User 1')",
            sim.url()
        ))
        .bearer_auth(&tok)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .expect("answer");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["@odata.count"], 100);
    assert_eq!(body["value"].as_array().map(Vec::len), Some(5));

    // Smaller page size by knob; detected apps page too.
    sim.client()
        .set_knobs(
            "fabrikam",
            &Knobs {
                page_size: 2,
                ..Knobs::default()
            },
        )
        .await
        .expect("knobs");
    sim.client()
        .add_objects(
            "fabrikam",
            &tenant_sim::seeds::ObjectsSeed {
                detected_apps: (0..5)
                    .map(|i| tenant_sim::seeds::DetectedAppSeed {
                        display_name: format!("App {i}"),
                        version: None,
                        device_count: i,
                    })
                    .collect(),
                ..Default::default()
            },
        )
        .await
        .expect("seeded");
    let (_, body) = graph(&sim, &tok, Method::GET, "/deviceManagement/detectedApps", None).await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(2));
    assert!(body["@odata.nextLink"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn new_objects_are_invisible_during_replication_lag() {
    let mut s = seed("fabrikam", 0, 1);
    s.knobs.replication_lag_ms = 1_000;
    let sim = sim_with(s).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (status, user) = graph(
        &sim,
        &tok,
        Method::POST,
        "/users",
        Some(new_user(&format!("lag@{DOMAIN}"))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "the create call itself returns the object");
    let uid = user["id"].as_str().expect("id").to_string();
    let (_, group) = graph(&sim, &tok, Method::POST, "/groups", Some(new_group("Lagging"))).await;
    let gid = group["id"].as_str().expect("id").to_string();

    let (status, body) = graph(&sim, &tok, Method::GET, &format!("/users/{uid}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    let (_, list) = graph(&sim, &tok, Method::GET, "/users", None).await;
    assert_eq!(list["value"].as_array().map(Vec::len), Some(0));
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{uid}")});
    assert_eq!(
        graph(
            &sim,
            &tok,
            Method::POST,
            &format!("/groups/{gid}/members/$ref"),
            Some(reference.clone())
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    // A duplicate is still refused while lagging: uniqueness is enforced on write.
    assert_eq!(
        graph(
            &sim,
            &tok,
            Method::POST,
            "/users",
            Some(new_user(&format!("lag@{DOMAIN}")))
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        graph(&sim, &tok, Method::GET, &format!("/users/{uid}"), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        graph(
            &sim,
            &tok,
            Method::POST,
            &format!("/groups/{gid}/members/$ref"),
            Some(reference)
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn licences_need_a_usage_location_and_free_units() {
    let sim = sim_with(seed("fabrikam", 4, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (_, skus) = graph(&sim, &tok, Method::GET, "/subscribedSkus", None).await;
    let sku = &skus["value"][0];
    assert_eq!(sku["skuPartNumber"], "SPE_E5");
    assert_eq!(sku["prepaidUnits"]["enabled"], 1);
    assert!(sku["servicePlans"].as_array().is_some_and(|p| !p.is_empty()));
    let sku_id = sku["skuId"].as_str().expect("skuId").to_string();
    let body = json!({"addLicenses": [{"skuId": sku_id, "disabledPlans": []}], "removeLicenses": []});

    // user001 has no usage location.
    let (status, answer) = graph(
        &sim,
        &tok,
        Method::POST,
        &format!("/users/user001@{DOMAIN}/assignLicense"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "Request_BadRequest");
    assert_eq!(
        answer["error"]["message"],
        "License assignment cannot be done for user with invalid usage location."
    );

    let (status, answer) = graph(
        &sim,
        &tok,
        Method::POST,
        &format!("/users/user000@{DOMAIN}/assignLicense"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = graph(
        &sim,
        &tok,
        Method::POST,
        &format!("/users/user002@{DOMAIN}/assignLicense"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer["error"]["message"],
        format!("Subscription {sku_id} does not have any available licenses.")
    );

    sim.client()
        .set_sku_units("fabrikam", "SPE_E5", 2)
        .await
        .expect("units");
    let (status, _) = graph(
        &sim,
        &tok,
        Method::POST,
        &format!("/users/user002@{DOMAIN}/assignLicense"),
        Some(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, skus) = graph(&sim, &tok, Method::GET, "/subscribedSkus", None).await;
    assert_eq!(skus["value"][0]["consumedUnits"], 2);
    let (_, user) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/users/user002@{DOMAIN}?$select=assignedLicenses"),
        None,
    )
    .await;
    assert_eq!(user["assignedLicenses"][0]["skuId"], sku_id.as_str());
    sim.shutdown().await;
}

#[tokio::test]
async fn mail_invitations_roles_and_the_mdm_authority() {
    let sim = sim_with(seed("fabrikam", 1, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let mail = json!({"message": {
        "subject": "Access request 42",
        "body": {"contentType": "Text", "content": "Please approve."},
        "toRecipients": [{"emailAddress": {"address": "team@provider.example"}}],
    }, "saveToSentItems": false});
    let (status, _) = graph(
        &sim,
        &tok,
        Method::POST,
        &format!("/users/user000@{DOMAIN}/sendMail"),
        Some(mail),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let outbox = sim.client().mail("fabrikam").await.expect("mail");
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].to, vec!["team@provider.example".to_string()]);
    assert_eq!(outbox[0].subject, "Access request 42");

    let (status, invite) = graph(
        &sim,
        &tok,
        Method::POST,
        "/invitations",
        Some(json!({"invitedUserEmailAddress": "eng@provider.example", "inviteRedirectUrl": "https://myapps.microsoft.com", "sendInvitationMessage": true})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{invite}");
    let guest_id = invite["invitedUser"]["id"].as_str().expect("guest id").to_string();
    let outbox = sim.client().mail("fabrikam").await.expect("mail");
    let invitation = outbox
        .iter()
        .find(|m| m.from == "invites@microsoft.com")
        .expect("invitation mailed");
    assert_eq!(invitation.to, vec!["eng@provider.example".to_string()]);
    assert!(
        invitation
            .body
            .contains(invite["inviteRedeemUrl"].as_str().expect("redeem url"))
    );
    let (_, guest) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/users/{guest_id}?$select=userPrincipalName,userType"),
        None,
    )
    .await;
    assert_eq!(guest["userType"], "Guest");
    assert_eq!(
        guest["userPrincipalName"],
        format!("eng_provider.example#EXT#@{DOMAIN}")
    );

    // A new tenant has only Global Administrator active; Intune Administrator is activated from
    // its template once, and a second activation is refused as a conflicting object.
    let (_, fresh) = graph(&sim, &tok, Method::GET, "/directoryRoles", None).await;
    let fresh = fresh["value"].as_array().expect("roles").clone();
    assert_eq!(fresh.len(), 1, "only Global Administrator is active: {fresh:?}");
    assert_eq!(fresh[0]["roleTemplateId"], "62e90394-69f5-4237-9190-012177145e10");
    let activate = json!({"roleTemplateId": "3a2c62db-5318-420d-8d74-23affee5d9d5"});
    assert_eq!(
        graph(&sim, &tok, Method::POST, "/directoryRoles", Some(activate.clone()))
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, refused) = graph(&sim, &tok, Method::POST, "/directoryRoles", Some(activate)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("A conflicting object")),
        "{refused}"
    );
    let (_, roles) = graph(&sim, &tok, Method::GET, "/directoryRoles", None).await;
    let intune = roles["value"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["roleTemplateId"] == "3a2c62db-5318-420d-8d74-23affee5d9d5")
        .expect("Intune Administrator is activated");
    assert_eq!(intune["displayName"], "Intune Administrator");
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{guest_id}")});
    let path = "/directoryRoles(roleTemplateId='3a2c62db-5318-420d-8d74-23affee5d9d5')/members/$ref";
    assert_eq!(
        graph(&sim, &tok, Method::POST, path, Some(reference.clone())).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        graph(&sim, &tok, Method::POST, path, Some(reference)).await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, members) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/directoryRoles/{}/members", intune["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!(members["value"][0]["id"], guest_id.as_str());
    let role_ref = format!(
        "/directoryRoles/{}/members/{guest_id}/$ref",
        intune["id"].as_str().expect("id")
    );
    assert_eq!(
        graph(&sim, &tok, Method::DELETE, &role_ref, None).await.0,
        StatusCode::NO_CONTENT,
        "revocation"
    );
    assert_eq!(
        graph(&sim, &tok, Method::DELETE, &role_ref, None).await.0,
        StatusCode::NOT_FOUND
    );

    let (_, org) = graph(&sim, &tok, Method::GET, "/organization", None).await;
    assert_eq!(org["value"][0]["mobileDeviceManagementAuthority"], "unknown");
    let org_id = org["value"][0]["id"].as_str().expect("id").to_string();
    let (status, _) = graph(
        &sim,
        &tok,
        Method::POST,
        &format!("/organization/{org_id}/setMobileDeviceManagementAuthority"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, org) = graph(&sim, &tok, Method::GET, "/organization", None).await;
    assert_eq!(org["value"][0]["mobileDeviceManagementAuthority"], "intune");
    sim.shutdown().await;
}

#[tokio::test]
async fn device_configurations_are_created_by_type_assigned_and_validated() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let ring = json!({
        "@odata.type": "#microsoft.graph.windowsUpdateForBusinessConfiguration",
        "displayName": "Modern Workplace Update Policy [Test]",
        "qualityUpdatesDeferralPeriodInDays": 0,
        "featureUpdatesDeferralPeriodInDays": 0,
    });
    let (status, created) = graph(
        &sim,
        &tok,
        Method::POST,
        "/deviceManagement/deviceConfigurations",
        Some(ring.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let cid = created["id"].as_str().expect("id").to_string();
    let mut bad = ring.clone();
    bad["qualityUpdatesDeferralPeriodInDays"] = json!(45);
    assert_eq!(
        graph(
            &sim,
            &tok,
            Method::POST,
            "/deviceManagement/deviceConfigurations",
            Some(bad)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let mut untyped = ring.clone();
    untyped.as_object_mut().expect("object").remove("@odata.type");
    assert_eq!(
        graph(
            &sim,
            &tok,
            Method::POST,
            "/deviceManagement/deviceConfigurations",
            Some(untyped)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );

    let (_, group) = graph(&sim, &tok, Method::POST, "/groups", Some(new_group("Test"))).await;
    let assign = json!({"assignments": [{"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group["id"]}}]});
    let (status, assigned) = graph(
        &sim,
        &tok,
        Method::POST,
        &format!("/deviceManagement/deviceConfigurations/{cid}/assign"),
        Some(assign),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{assigned}");
    let (_, list) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/deviceManagement/deviceConfigurations/{cid}/assignments"),
        None,
    )
    .await;
    assert_eq!(list["value"][0]["target"]["groupId"], group["id"]);

    let (_, found) = graph(
        &sim,
        &tok,
        Method::GET,
        "/deviceManagement/deviceConfigurations?$filter=displayName eq 'Modern Workplace Update Policy [Test]'",
        None,
    )
    .await;
    assert_eq!(found["value"][0]["id"], cid.as_str());
    let (status, _) = graph(
        &sim,
        &tok,
        Method::PATCH,
        &format!("/deviceManagement/deviceConfigurations/{cid}"),
        Some(json!({"description": "ring 0"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, got) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/deviceManagement/deviceConfigurations/{cid}"),
        None,
    )
    .await;
    assert_eq!(got["version"], 2);
    let (status, _) = graph(
        &sim,
        &tok,
        Method::DELETE,
        &format!("/deviceManagement/deviceConfigurations/{cid}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let counts = sim.client().counts("fabrikam").await.expect("counts");
    assert_eq!(counts["deviceConfigurations"], 0);
    assert_eq!(counts["groups"], 1);

    let (status, app) = graph(&sim, &tok, Method::POST, "/deviceAppManagement/mobileApps", Some(json!({"@odata.type": "#microsoft.graph.winGetApp", "displayName": "Company Portal", "packageIdentifier": "9WZDNCRFJ3PZ", "installExperience": {"runAsAccount": "user"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let (_, apps) = graph(&sim, &tok, Method::GET, "/deviceAppManagement/mobileApps", None).await;
    assert_eq!(apps["value"].as_array().map(Vec::len), Some(1));
    sim.shutdown().await;
}

#[tokio::test]
async fn seeding_more_objects_is_all_or_nothing() {
    let sim = sim_with(seed("fabrikam", 1, 1)).await;
    let client = sim.client();
    let before = client.counts("fabrikam").await.expect("counts");
    let bad = tenant_sim::seeds::ObjectsSeed {
        users: vec![tenant_sim::seeds::UserSeed {
            user_principal_name: "new.user".into(),
            display_name: None,
            id: None,
            usage_location: None,
            user_type: None,
            account_enabled: None,
            directory_roles: vec!["No Such Role".into()],
        }],
        ..Default::default()
    };
    let err = client
        .add_objects("fabrikam", &bad)
        .await
        .expect_err("unknown role refused");
    assert!(err.to_string().contains("No Such Role"), "{err}");
    assert_eq!(
        client.counts("fabrikam").await.expect("counts"),
        before,
        "nothing was added"
    );
    // A typo in a seed is a 400 naming the field, in the control API's error shape.
    let resp = http()
        .post(format!("{}/_sim/tenants", sim.url()))
        .json(&json!({"name": "typo", "usres": []}))
        .send()
        .await
        .expect("control answers");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("usres")), "{body}");
    let users = client.objects("fabrikam", "users").await.expect("users");
    assert!(
        users
            .iter()
            .all(|u| u["userPrincipalName"] != "new.user@fabrikam.onmicrosoft.com")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrent_creates_of_one_upn_yield_exactly_one_user() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let upn = format!("race@{DOMAIN}");
    let attempts = (0..24).map(|_| graph(&sim, &tok, Method::POST, "/users", Some(new_user(&upn))));
    let answers = futures::future::join_all(attempts).await;
    let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let conflicts = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::BAD_REQUEST && b["error"]["details"][0]["code"] == "ObjectConflict")
        .count();
    assert_eq!((created, conflicts), (1, 23));
    assert_eq!(sim.client().counts("fabrikam").await.expect("counts")["users"], 1);
    sim.shutdown().await;
}

/// A cloud-only user's `onPremisesExtensionAttributes` are set on create, read back with
/// `$select` (all fifteen, unset ones null), updated one at a time, and validated
/// (https://learn.microsoft.com/graph/api/resources/onpremisesextensionattributes).
#[tokio::test]
async fn extension_attributes_are_set_on_create_selected_and_patched_one_at_a_time() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let mut body = new_user(&format!("ada@{DOMAIN}"));
    body["onPremisesExtensionAttributes"] = json!({"extensionAttribute15": "mdops:abc"});
    let (status, created) = graph(&sim, &tok, Method::POST, "/users", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        created.get("onPremisesExtensionAttributes").is_none(),
        "not in the default select"
    );
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/users/{id}?$select=id,onPremisesExtensionAttributes");
    let (_, read) = graph(&sim, &tok, Method::GET, &path, None).await;
    let attributes = read["onPremisesExtensionAttributes"].as_object().expect("object");
    assert_eq!(attributes.len(), 15);
    assert_eq!(attributes["extensionAttribute15"], "mdops:abc");
    assert!(attributes["extensionAttribute1"].is_null());

    let patch = json!({"onPremisesExtensionAttributes": {"extensionAttribute1": "Sales"}});
    let (status, _) = graph(&sim, &tok, Method::PATCH, &format!("/users/{id}"), Some(patch)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, read) = graph(&sim, &tok, Method::GET, &path, None).await;
    assert_eq!(read["onPremisesExtensionAttributes"]["extensionAttribute1"], "Sales");
    assert_eq!(
        read["onPremisesExtensionAttributes"]["extensionAttribute15"], "mdops:abc",
        "others kept"
    );

    for bad in [
        json!({"extensionAttribute16": "x"}),
        json!({"extensionAttribute1": 7}),
        json!({"extensionAttribute1": "x".repeat(1025)}),
    ] {
        let patch = json!({ "onPremisesExtensionAttributes": bad });
        let (status, answer) = graph(&sim, &tok, Method::PATCH, &format!("/users/{id}"), Some(patch)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
    sim.shutdown().await;
}
