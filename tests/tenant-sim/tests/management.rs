//! What the management phase needs of the simulated tenant, over HTTP: thousands of devices paged
//! with `$select`/`$filter`, device members of groups through `members@odata.bind` (Graph's
//! 20-link limit, all-or-nothing answers, the device permission), the app catalogue (create,
//! assign), conditional access, security defaults and the guest invitation setting.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenant_sim::seeds::{ConditionalAccessPolicySeed, DeviceConfigurationSeed, DeviceSeed, windows_devices};
use tenant_sim::store::IdentityPolicies;

/// A tenant with `windows` Windows devices and three devices of other platforms.
fn with_devices(windows: usize) -> tenant_sim::seeds::TenantSeed {
    let mut t = seed("fabrikam", 1, 1);
    t.objects.devices = windows_devices("FAB", windows);
    for (name, os) in [("FAB-IPHONE", "iOS"), ("FAB-MAC", "macOS"), ("FAB-PIXEL", "Android")] {
        t.objects.devices.push(DeviceSeed {
            display_name: name.into(),
            id: None,
            operating_system: Some(os.into()),
            operating_system_version: None,
        });
    }
    t
}

async fn all_pages(sim: &tenant_sim::RunningSim, tok: &str, first: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut next = Some(first.to_string());
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages <= 100, "paging ends");
        let (status, body) = graph(sim, tok, Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        items.extend(body["value"].as_array().cloned().unwrap_or_default());
        next = body["@odata.nextLink"].as_str().map(str::to_string);
    }
    (items, pages)
}

fn bind(ids: &[&str]) -> Value {
    let urls: Vec<String> = ids
        .iter()
        .map(|id| format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}"))
        .collect();
    json!({ "members@odata.bind": urls })
}

#[tokio::test]
async fn thousands_of_devices_are_paged_selected_and_filtered_by_operating_system() {
    let sim = sim_with(with_devices(2_500)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (windows, pages) = all_pages(
        &sim,
        &tok,
        "/devices?$select=id,displayName,operatingSystem&$filter=operatingSystem eq 'Windows'&$top=999",
    )
    .await;
    assert_eq!(windows.len(), 2_500);
    assert_eq!(pages, 3, "999 a page");
    assert!(windows.iter().all(|d| d["operatingSystem"] == "Windows"));
    assert!(
        windows.iter().all(|d| d.as_object().unwrap().len() == 3),
        "only the selected properties"
    );
    let (all, _) = all_pages(&sim, &tok, "/devices?$select=id").await;
    assert_eq!(all.len(), 2_503);
    let id = windows[0]["id"].as_str().unwrap();
    let (status, one) = graph(&sim, &tok, Method::GET, &format!("/devices/{id}"), None).await;
    assert_eq!((status, one["id"].as_str()), (StatusCode::OK, Some(id)));
    sim.shutdown().await;
}

#[tokio::test]
async fn device_members_are_bound_twenty_at_most_all_or_nothing() {
    let sim = sim_with(with_devices(40)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (_, group) = graph(&sim, &tok, Method::POST, "/groups", Some(new_group("Ring"))).await;
    let gid = group["id"].as_str().unwrap().to_string();
    let (devices, _) = all_pages(&sim, &tok, "/devices?$select=id&$filter=operatingSystem eq 'Windows'").await;
    let ids: Vec<&str> = devices.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let path = format!("/groups/{gid}");

    let (status, err) = graph(&sim, &tok, Method::PATCH, &path, Some(bind(&ids[..21]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        err["error"]["message"],
        "A resource cannot contain more than 20 link changes."
    );

    let (status, _) = graph(&sim, &tok, Method::PATCH, &path, Some(bind(&ids[..20]))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // One of the next chunk was deleted meanwhile: 404 naming it, and none of the others added.
    sim.client()
        .remove_object("fabrikam", "devices", ids[25])
        .await
        .unwrap();
    let (status, err) = graph(&sim, &tok, Method::PATCH, &path, Some(bind(&ids[20..30]))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(err["error"]["message"].as_str().unwrap().contains(ids[25]), "{err}");
    // One already a member: Entra's duplicate-reference answer, and nothing added.
    let mut again: Vec<&str> = ids[30..35].to_vec();
    again.push(ids[0]);
    let (status, err) = graph(&sim, &tok, Method::PATCH, &path, Some(bind(&again))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("added object references already exist"),
        "{err}"
    );
    let (members, _) = all_pages(&sim, &tok, &format!("/groups/{gid}/members?$select=id")).await;
    assert_eq!(members.len(), 20, "failed requests added nobody");
    assert!(members.iter().all(|m| m["@odata.type"] == "#microsoft.graph.device"));

    let (status, of) = graph(&sim, &tok, Method::GET, &format!("/devices/{}/memberOf", ids[3]), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(of["value"][0]["id"], gid.as_str());

    // Adding a device needs Device.ReadWrite.All besides the group permission.
    let mut perms: Vec<&str> = tenant_sim::seeds::PRODUCT_PERMISSIONS.to_vec();
    perms.retain(|p| *p != "Device.ReadWrite.All");
    sim.client()
        .set_permissions("fabrikam", FULL_APP, &perms)
        .await
        .unwrap();
    let narrow = token(&sim, "fabrikam", FULL_APP).await;
    let (status, _) = graph(&sim, &narrow, Method::PATCH, &path, Some(bind(&ids[35..36]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A device deleted through Graph leaves its groups.
    let (status, _) = graph(&sim, &tok, Method::DELETE, &format!("/devices/{}", ids[1]), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (members, _) = all_pages(&sim, &tok, &format!("/groups/{gid}/members?$select=id")).await;
    assert_eq!(members.len(), 19);
    sim.shutdown().await;
}

#[tokio::test]
async fn mobile_apps_are_created_validated_and_assigned() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (status, err) = graph(
        &sim,
        &tok,
        Method::POST,
        "/deviceAppManagement/mobileApps",
        Some(json!({"@odata.type": "#microsoft.graph.winGetApp", "displayName": "Company Portal"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"].as_str().unwrap().contains("packageIdentifier"));
    // A property the type does not have, a read-only one, a wrong kind: each refused with 400.
    for (body, names) in [
        (
            json!({"@odata.type": "#microsoft.graph.winGetApp", "displayName": "Company Portal",
                   "packageIdentifier": "9WZDNCRFJ3PZ", "installExperience": {"runAsAccount": "user"},
                   "appUrl": "https://example.com"}),
            "appUrl",
        ),
        (
            json!({"@odata.type": "#microsoft.graph.webApp", "displayName": "Portal",
                   "appUrl": "https://portal.office.com", "publishingState": "published"}),
            "publishingState",
        ),
        (
            json!({"@odata.type": "#microsoft.graph.webApp", "displayName": "Portal",
                   "appUrl": "https://portal.office.com", "useManagedBrowser": "yes"}),
            "useManagedBrowser",
        ),
        (
            json!({"@odata.type": "#microsoft.graph.webApp", "displayName": "Portal"}),
            "appUrl",
        ),
        (
            json!({"@odata.type": "#microsoft.graph.mobileApp", "displayName": "Portal"}),
            "mobileApp",
        ),
    ] {
        let (status, err) = graph(&sim, &tok, Method::POST, "/deviceAppManagement/mobileApps", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(names), "{err}");
    }
    let (status, web) = graph(
        &sim,
        &tok,
        Method::POST,
        "/deviceAppManagement/mobileApps",
        Some(
            json!({"@odata.type": "#microsoft.graph.webApp", "displayName": "Portal",
                    "appUrl": "https://portal.office.com", "useManagedBrowser": false}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{web}");
    assert_eq!(web["publishingState"], "published");
    let (status, app) = graph(
        &sim,
        &tok,
        Method::POST,
        "/deviceAppManagement/mobileApps",
        Some(json!({
            "@odata.type": "#microsoft.graph.winGetApp", "displayName": "Company Portal",
            "publisher": "Microsoft Corporation", "packageIdentifier": "9WZDNCRFJ3PZ",
            "installExperience": {"runAsAccount": "user"}, "notes": "mdops-catalogue:company-portal",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let id = app["id"].as_str().unwrap();
    assert_eq!(app["isAssigned"], false);

    let group = uuid::Uuid::new_v4().to_string();
    let assign = json!({"mobileAppAssignments": [
        {"@odata.type": "#microsoft.graph.mobileAppAssignment", "intent": "required",
         "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}},
        {"@odata.type": "#microsoft.graph.mobileAppAssignment", "intent": "sometimes",
         "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}},
    ]});
    let path = format!("/deviceAppManagement/mobileApps/{id}/assign");
    let (status, err) = graph(&sim, &tok, Method::POST, &path, Some(assign)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"].as_str().unwrap().contains("intent"));
    let wrong_type = json!({"mobileAppAssignments": [
        {"@odata.type": "#microsoft.graph.deviceConfigurationAssignment", "intent": "required",
         "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}},
    ]});
    let (status, err) = graph(&sim, &tok, Method::POST, &path, Some(wrong_type)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mobileAppAssignment"),
        "{err}"
    );
    let assign = json!({"mobileAppAssignments": [
        {"@odata.type": "#microsoft.graph.mobileAppAssignment", "intent": "required",
         "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}},
    ]});
    let (status, _) = graph(&sim, &tok, Method::POST, &path, Some(assign)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/deviceAppManagement/mobileApps/{id}/assignments"),
        None,
    )
    .await;
    assert_eq!(listed["value"][0]["intent"], "required");
    assert_eq!(listed["value"][0]["target"]["groupId"], group.as_str());
    let (_, got) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/deviceAppManagement/mobileApps/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (got["isAssigned"].clone(), got["notes"].clone()),
        (json!(true), json!("mdops-catalogue:company-portal"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn identity_policies_are_read_with_policy_read_all_and_guest_invites_can_be_turned_off() {
    let mut t = seed("fabrikam", 0, 1);
    t.objects.conditional_access_policies = vec![ConditionalAccessPolicySeed::mfa_for_all_users("Require MFA")];
    t.objects.device_configurations = vec![DeviceConfigurationSeed {
        display_name: "Contoso ring".into(),
        odata_type: None,
        assigned_to_all_devices: true,
        assigned_to_all_users: false,
    }];
    t.identity_policies = IdentityPolicies {
        security_defaults_enabled: true,
        allow_invites_from: "everyone".into(),
    };
    let sim = sim_with(t).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (status, ca) = graph(&sim, &tok, Method::GET, "/identity/conditionalAccess/policies", None).await;
    assert_eq!(status, StatusCode::OK);
    let policy = &ca["value"][0];
    assert_eq!(policy["state"], "enabled");
    assert_eq!(policy["conditions"]["users"]["includeUsers"], json!(["All"]));
    assert_eq!(policy["grantControls"]["builtInControls"], json!(["mfa"]));
    let (_, defaults) = graph(
        &sim,
        &tok,
        Method::GET,
        "/policies/identitySecurityDefaultsEnforcementPolicy",
        None,
    )
    .await;
    assert_eq!(defaults["isEnabled"], true);
    let (_, authz) = graph(&sim, &tok, Method::GET, "/policies/authorizationPolicy", None).await;
    assert_eq!(authz["allowInvitesFrom"], "everyone");
    let (_, configs) = graph(&sim, &tok, Method::GET, "/deviceManagement/deviceConfigurations", None).await;
    let config = configs["value"][0]["id"].as_str().unwrap();
    let (_, assignments) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/deviceManagement/deviceConfigurations/{config}/assignments"),
        None,
    )
    .await;
    assert_eq!(
        assignments["value"][0]["target"]["@odata.type"],
        "#microsoft.graph.allDevicesAssignmentTarget"
    );

    let reader = token(&sim, "fabrikam", READER_APP).await;
    let (status, _) = graph(&sim, &reader, Method::GET, "/policies/authorizationPolicy", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Policy.Read.All is needed");

    sim.client()
        .set_identity_policies(
            "fabrikam",
            &IdentityPolicies {
                security_defaults_enabled: false,
                allow_invites_from: "none".into(),
            },
        )
        .await
        .unwrap();
    let (status, err) = graph(
        &sim,
        &tok,
        Method::POST,
        "/invitations",
        Some(json!({"invitedUserEmailAddress": "eng@provider.example", "inviteRedirectUrl": "https://myapps.microsoft.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Guest invitations not allowed")
    );
    let bad = sim
        .client()
        .set_identity_policies(
            "fabrikam",
            &IdentityPolicies {
                security_defaults_enabled: false,
                allow_invites_from: "anyone".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("allow_invites_from"), "{bad}");
    sim.shutdown().await;
}
