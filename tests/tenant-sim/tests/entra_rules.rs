//! Rules of Entra ID and Intune that a client meets on a real tenant the first time, over HTTP:
//! role-assignable groups, directory roles only for such groups, `@odata.type` on bodies as the
//! official SDKs send it, and Intune's validation of device configuration bodies.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Active in every tenant from the start.
const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";

fn role_group(name: &str) -> Value {
    let mut g = new_group(name);
    g["isAssignableToRole"] = json!(true);
    g
}

fn message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn only_role_assignable_groups_hold_directory_roles() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (status, role) = graph(
        &sim,
        &tok,
        Method::GET,
        &format!("/directoryRoles(roleTemplateId='{GLOBAL_ADMIN}')"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{role}");
    let role_id = role["id"].as_str().unwrap().to_string();

    let (status, plain) = graph(&sim, &tok, Method::POST, "/groups", Some(new_group("Plain"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, assignable) = graph(&sim, &tok, Method::POST, "/groups", Some(role_group("Engineers"))).await;
    assert_eq!(status, StatusCode::CREATED, "{assignable}");
    assert_eq!(assignable["isAssignableToRole"], true);
    assert_eq!(assignable["visibility"], "Private");

    let member = |id: &Value| json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", id.as_str().unwrap())});
    let path = format!("/directoryRoles/{role_id}/members/$ref");
    let (status, refused) = graph(&sim, &tok, Method::POST, &path, Some(member(&plain["id"]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&refused).contains("IsAssignableToRole"), "{refused}");
    let (status, _) = graph(&sim, &tok, Method::POST, &path, Some(member(&assignable["id"]))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Filterable, set only at creation, and only for security groups with assigned membership.
    let (_, found) = graph(
        &sim,
        &tok,
        Method::GET,
        "/groups?$filter=isAssignableToRole eq true",
        None,
    )
    .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    let (status, _) = graph(
        &sim,
        &tok,
        Method::PATCH,
        &format!("/groups/{}", plain["id"].as_str().unwrap()),
        Some(json!({"isAssignableToRole": true})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "immutable after creation");
    let mut dynamic = role_group("Dynamic");
    dynamic["groupTypes"] = json!(["DynamicMembership"]);
    assert_eq!(
        graph(&sim, &tok, Method::POST, "/groups", Some(dynamic)).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut not_security = role_group("Mail only");
    not_security["securityEnabled"] = json!(false);
    assert_eq!(
        graph(&sim, &tok, Method::POST, "/groups", Some(not_security)).await.0,
        StatusCode::BAD_REQUEST
    );
    // No groups inside a role-assignable group.
    let (status, _) = graph(
        &sim,
        &tok,
        Method::POST,
        &format!("/groups/{}/members/$ref", assignable["id"].as_str().unwrap()),
        Some(member(&plain["id"])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn role_assignable_groups_need_role_management_to_create_or_change_members() {
    let sim = sim_with(seed("fabrikam", 1, 1)).await;
    let full = token(&sim, "fabrikam", FULL_APP).await;
    let (_, group) = graph(&sim, &full, Method::POST, "/groups", Some(role_group("SOC"))).await;
    let (_, users) = graph(&sim, &full, Method::GET, "/users", None).await;
    let user = users["value"][0]["id"].as_str().unwrap().to_string();
    sim.client()
        .set_permissions(
            "fabrikam",
            READER_APP,
            &["Group.ReadWrite.All", "GroupMember.ReadWrite.All"],
        )
        .await
        .expect("grant");
    let groups_only = token(&sim, "fabrikam", READER_APP).await;
    let (status, _) = graph(&sim, &groups_only, Method::POST, "/groups", Some(role_group("Other"))).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "setting isAssignableToRole needs RoleManagement"
    );
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{user}")});
    let path = format!("/groups/{}/members/$ref", group["id"].as_str().unwrap());
    let (status, _) = graph(&sim, &groups_only, Method::POST, &path, Some(reference.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "GroupMember.ReadWrite.All is not enough");
    let (status, _) = graph(&sim, &full, Method::POST, &path, Some(reference)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bodies_may_name_their_own_type_but_not_an_unrelated_one() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let mut user = new_user("sdk.user@fabrikam.onmicrosoft.com");
    user["@odata.type"] = json!("#microsoft.graph.user");
    let (status, created) = graph(&sim, &tok, Method::POST, "/users", Some(user)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        created.get("@odata.type").is_none(),
        "the type is not stored as a property"
    );
    let mut group = new_group("SDK group");
    group["@odata.type"] = json!("#microsoft.graph.group");
    assert_eq!(
        graph(&sim, &tok, Method::POST, "/groups", Some(group)).await.0,
        StatusCode::CREATED
    );

    let mut wrong = new_user("wrong@fabrikam.onmicrosoft.com");
    wrong["@odata.type"] = json!("#microsoft.graph.group");
    let (status, refused) = graph(&sim, &tok, Method::POST, "/users", Some(wrong)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&refused).contains("not assignable to the expected type"),
        "{refused}"
    );
    let mut unknown = new_group("Unknown");
    unknown["@odata.type"] = json!("#microsoft.graph.teapot");
    let (status, refused) = graph(&sim, &tok, Method::POST, "/groups", Some(unknown)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&refused).contains("could not be resolved"), "{refused}");
    // A device configuration must name a concrete type derived from deviceConfiguration.
    let (status, _) = graph(
        &sim,
        &tok,
        Method::POST,
        "/deviceManagement/deviceConfigurations",
        Some(json!({"@odata.type": "#microsoft.graph.user", "displayName": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn intune_refuses_unknown_properties_and_invalid_enum_values() {
    let sim = sim_with(seed("fabrikam", 0, 1)).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let path = "/deviceManagement/deviceConfigurations";
    let ring = json!({
        "@odata.type": "#microsoft.graph.windowsUpdateForBusinessConfiguration",
        "displayName": "Ring",
        "automaticUpdateMode": "autoInstallAtMaintenanceTime",
        "businessReadyUpdatesOnly": "all",
    });
    let (status, created) = graph(&sim, &tok, Method::POST, path, Some(ring.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    let mut unknown = ring.clone();
    unknown["bitLockerEncryptDevice"] = json!(true);
    let (status, refused) = graph(&sim, &tok, Method::POST, path, Some(unknown)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"]["code"], "BadRequest");
    assert!(
        message(&refused).contains("'bitLockerEncryptDevice' does not exist"),
        "{refused}"
    );

    let mut bad_enum = ring.clone();
    bad_enum["automaticUpdateMode"] = json!("wheneverYouLike");
    let (status, refused) = graph(&sim, &tok, Method::POST, path, Some(bad_enum)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&refused).contains("wheneverYouLike"), "{refused}");

    let protection = json!({
        "@odata.type": "#microsoft.graph.windows10EndpointProtectionConfiguration",
        "displayName": "Protection",
        "firewallBlockStatefulFTP": true,
        "appLockerApplicationControl": "sometimes",
    });
    let (status, refused) = graph(&sim, &tok, Method::POST, path, Some(protection)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    // An update is checked against the stored type too.
    let (status, _) = graph(
        &sim,
        &tok,
        Method::PATCH,
        &format!("{path}/{}", created["id"].as_str().unwrap()),
        Some(json!({"smartScreenEnableInShell": true})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
