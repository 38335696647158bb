//! Building tenants from seeds: the signing key, apps, the activated built-in directory roles, and
//! the seeded objects (users, groups, SKUs, inventory) as Graph JSON, visible at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::SimError;
use crate::control::types::TenantInfo;
use crate::graph::users::user_object;
use crate::keys::SigningKey;
use crate::seeds::{AppSeed, ObjectsSeed, SkuSeed, TenantSeed};
use crate::store::{App, Collection, Obj, Shared, Tenant};

/// Built-in directory role templates a tenant can activate: (display name, roleTemplateId).
pub const BUILT_IN_ROLES: &[(&str, &str)] = &[
    ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10"),
    ("Intune Administrator", "3a2c62db-5318-420d-8d74-23affee5d9d5"),
    ("Security Reader", "5d6b6bb7-de71-4623-b4af-96380a352509"),
    ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d"),
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    ("Groups Administrator", "fdd7a751-b60b-444a-984c-02652fe8fa1c"),
    ("Privileged Role Administrator", "e8611ab8-c189-46e8-94e1-60213ab1f814"),
];

/// The one role active in a new tenant: Global Administrator ("Company Administrator"). Every other
/// role is activated from its template first (`POST /directoryRoles`), as Entra ID requires:
/// <https://learn.microsoft.com/en-us/graph/api/directoryrole-post-directoryroles>.
pub const ACTIVE_AT_CREATION: &str = "62e90394-69f5-4237-9190-012177145e10";

/// The Graph JSON of an activated role.
pub fn role_object(id: &str, display: &str, template: &str) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("id".into(), json!(id));
    data.insert("deletedDateTime".into(), Value::Null);
    data.insert("description".into(), json!(format!("{display} (built-in role)")));
    data.insert("displayName".into(), json!(display));
    data.insert("roleTemplateId".into(), json!(template));
    data
}

/// Activates a role by display name if it is not active yet (seeding: what an admin assigning the
/// role in the portal does implicitly); answers its id, or `None` for an unknown role.
fn activate_by_name(tenant: &mut Tenant, display: &str, now: Instant) -> Option<String> {
    let (name, template) = BUILT_IN_ROLES.iter().find(|(n, _)| n.eq_ignore_ascii_case(display))?;
    let active = tenant.directory_roles.all().find(|r| {
        r.data
            .get("roleTemplateId")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case(template))
    });
    if let Some(role) = active {
        return Some(role.id.to_ascii_lowercase());
    }
    let id = Uuid::new_v4().to_string();
    tenant.directory_roles.insert(Obj {
        id: id.clone(),
        visible_at: now,
        data: role_object(&id, name, template),
    });
    Some(id)
}

/// Intune's service plan (and the standalone SKU of the same part number).
const INTUNE_PLAN: &str = "INTUNE_A";
/// Units of the Intune subscription a tenant gets when its seed names none.
const INTUNE_UNITS: u32 = 25;

/// Well-known SKUs: (part number, skuId, service plans).
const KNOWN_SKUS: &[(&str, &str, &[&str])] = &[
    (
        "SPE_E5",
        "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
        &[
            "EXCHANGE_S_ENTERPRISE",
            "INTUNE_A",
            "AAD_PREMIUM_P2",
            "MDE_LITE",
            "WINDEFATP",
            "TEAMS1",
        ],
    ),
    (
        "SPE_E3",
        "05e9a617-0261-4cee-bb44-138d3ef5d965",
        &["EXCHANGE_S_ENTERPRISE", "INTUNE_A", "AAD_PREMIUM"],
    ),
    (
        "ENTERPRISEPREMIUM",
        "c7df2760-2c81-4ef7-b578-5b5392b571df",
        &["EXCHANGE_S_ENTERPRISE", "TEAMS1"],
    ),
    (
        "EMSPREMIUM",
        "b05e124f-c7cc-45a0-a6aa-8cf78c946968",
        &["INTUNE_A", "AAD_PREMIUM_P2"],
    ),
    ("INTUNE_A", "061f9ace-7d42-4136-88ac-31dc755f143f", &["INTUNE_A"]),
];

/// A stable id for a service plan name (the same name always gets the same id).
fn plan_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// Creates a tenant from a seed (generating its key off the async threads) and adds it.
pub async fn create(shared: &Shared, seed: TenantSeed) -> Result<TenantInfo, SimError> {
    if seed.name.trim().is_empty() || seed.name.contains('/') {
        return Err(SimError::Seed(format!(
            "tenant name '{}' must be non-empty and contain no '/'",
            seed.name
        )));
    }
    {
        let st = shared.lock();
        let id = seed.id.map(|u| u.to_string());
        if st.tenant(&seed.name).is_some() || id.as_deref().is_some_and(|i| st.tenant(i).is_some()) {
            return Err(SimError::Conflict(format!(
                "a tenant named '{}' (or with its id) already exists",
                seed.name
            )));
        }
    }
    if !crate::store::ALLOW_INVITES_FROM.contains(&seed.identity_policies.allow_invites_from.as_str()) {
        return Err(SimError::Seed(format!(
            "identity_policies.allow_invites_from '{}' must be one of {}",
            seed.identity_policies.allow_invites_from,
            crate::store::ALLOW_INVITES_FROM.join(", ")
        )));
    }
    let key = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| SimError::Key(format!("key generation task failed: {e}")))??;
    let tenant = build(seed, Arc::new(key))?;
    let info = info(&tenant);
    let mut st = shared.lock();
    if st.tenant(&tenant.name).is_some() || st.tenant(&tenant.id).is_some() {
        return Err(SimError::Conflict(format!(
            "a tenant named '{}' (or with its id) already exists",
            tenant.name
        )));
    }
    st.tenants.push(tenant);
    Ok(info)
}

/// The control API's description of a tenant.
pub fn info(t: &Tenant) -> TenantInfo {
    TenantInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        domains: t.domains.clone(),
        apps: t.apps.keys().cloned().collect(),
        mdm_authority: t.mdm_authority.clone(),
    }
}

fn build(seed: TenantSeed, key: Arc<SigningKey>) -> Result<Tenant, SimError> {
    let name = seed.name.to_ascii_lowercase();
    let mut domains = vec![format!("{name}.onmicrosoft.com")];
    domains.extend(seed.domains.iter().map(|d| d.to_ascii_lowercase()));
    let now = Instant::now();
    let mut directory_roles = Collection::default();
    for (display, template) in BUILT_IN_ROLES.iter().filter(|(_, t)| *t == ACTIVE_AT_CREATION) {
        let id = Uuid::new_v4().to_string();
        directory_roles.insert(Obj {
            id: id.clone(),
            visible_at: now,
            data: role_object(&id, display, template),
        });
    }
    let mut tenant = Tenant {
        id: seed.id.unwrap_or_else(Uuid::new_v4).to_string(),
        display_name: seed.display_name.clone().unwrap_or_else(|| seed.name.clone()),
        name,
        domains,
        key,
        apps: BTreeMap::new(),
        mdm_authority: seed.mdm_authority.clone().unwrap_or_else(|| "unknown".into()),
        users: Collection::default(),
        groups: Collection::default(),
        directory_roles,
        device_configurations: Collection::default(),
        intents: Collection::default(),
        pending_patches: Vec::new(),
        intent_templates: crate::graph::intents::seeded_templates(now),
        detected_apps: Collection::default(),
        mobile_apps: Collection::default(),
        devices: Collection::default(),
        skus: Collection::default(),
        members: HashMap::new(),
        assignments: HashMap::new(),
        app_assignments: HashMap::new(),
        conditional_access_policies: Collection::default(),
        identity_policies: seed.identity_policies.clone(),
        mail: Vec::new(),
        knobs: seed.knobs.clone(),
        faults: Vec::new(),
        fault_clears: 0,
        chaos: None,
        throttle: HashMap::new(),
    };
    for app in seed.apps {
        add_app(&mut tenant, app)?;
    }
    add_objects(&mut tenant, &seed.objects)?;
    let carries_intune = |s: &crate::store::Obj| {
        s.data["servicePlans"]
            .as_array()
            .is_some_and(|plans| plans.iter().any(|p| p["servicePlanName"] == INTUNE_PLAN))
    };
    if seed.without_intune {
        if tenant.skus.all().any(carries_intune) {
            return Err(SimError::Seed(
                "without_intune: a seeded SKU carries the INTUNE_A service plan".into(),
            ));
        }
    } else if !tenant.skus.all().any(carries_intune) {
        let intune = ObjectsSeed {
            skus: vec![SkuSeed::new(INTUNE_PLAN, INTUNE_UNITS)],
            ..ObjectsSeed::default()
        };
        add_objects(&mut tenant, &intune)?;
    }
    Ok(tenant)
}

/// Adds (or replaces) an app.
pub fn add_app(tenant: &mut Tenant, seed: AppSeed) -> Result<(), SimError> {
    for cert in &seed.certificates {
        if cert.key_id.is_none() && crate::identity::certificate_thumbprint(&cert.pem).is_none() {
            return Err(SimError::Seed(format!(
                "app {}: a certificate given as a bare public key needs a key_id (the x5t/kid of its assertions)",
                seed.client_id
            )));
        }
        jsonwebtoken::DecodingKey::from_rsa_pem(cert.pem.as_bytes()).map_err(|e| {
            SimError::Seed(format!(
                "app {}: certificate pem is not an RSA key or certificate: {e}",
                seed.client_id
            ))
        })?;
    }
    let client_id = seed.client_id.to_string();
    let app = App {
        display_name: seed.display_name.unwrap_or_else(|| format!("app {client_id}")),
        object_id: Uuid::new_v4().to_string(),
        client_id: client_id.clone(),
        secret: seed.secret,
        certificates: seed.certificates,
        permissions: seed.permissions,
    };
    tenant.apps.insert(client_id, app);
    Ok(())
}

fn qualify(tenant: &Tenant, upn: &str) -> String {
    if upn.contains('@') {
        upn.to_string()
    } else {
        format!("{upn}@{}", tenant.initial_domain())
    }
}

/// Adds seeded objects, visible at once; all or nothing (an invalid seed leaves the tenant as it was).
pub fn add_objects(tenant: &mut Tenant, seed: &ObjectsSeed) -> Result<(), SimError> {
    let before = (
        tenant.users.clone(),
        tenant.groups.clone(),
        tenant.skus.clone(),
        tenant.detected_apps.clone(),
        tenant.devices.clone(),
        tenant.mobile_apps.clone(),
        tenant.members.clone(),
        tenant.device_configurations.clone(),
        tenant.assignments.clone(),
        tenant.conditional_access_policies.clone(),
        tenant.directory_roles.clone(),
    );
    let result = add_objects_in_place(tenant, seed);
    if result.is_err() {
        (
            tenant.users,
            tenant.groups,
            tenant.skus,
            tenant.detected_apps,
            tenant.devices,
            tenant.mobile_apps,
            tenant.members,
            tenant.device_configurations,
            tenant.assignments,
            tenant.conditional_access_policies,
            tenant.directory_roles,
        ) = before;
    }
    result
}

fn add_objects_in_place(tenant: &mut Tenant, seed: &ObjectsSeed) -> Result<(), SimError> {
    let now = Instant::now();
    for u in &seed.users {
        let upn = qualify(tenant, &u.user_principal_name);
        if tenant
            .users
            .all()
            .any(|o| o.data.get("userPrincipalName").and_then(Value::as_str) == Some(upn.as_str()))
        {
            return Err(SimError::Seed(format!("user '{upn}' already exists")));
        }
        let id = u.id.unwrap_or_else(Uuid::new_v4).to_string();
        let local = upn.split('@').next().unwrap_or(&upn).to_string();
        let mut body = Map::new();
        body.insert("userPrincipalName".into(), json!(upn));
        body.insert(
            "displayName".into(),
            json!(u.display_name.clone().unwrap_or_else(|| local.clone())),
        );
        body.insert("mailNickname".into(), json!(local));
        body.insert("accountEnabled".into(), json!(u.account_enabled.unwrap_or(true)));
        body.insert("mail".into(), json!(upn));
        if let Some(loc) = &u.usage_location {
            body.insert("usageLocation".into(), json!(loc));
        }
        body.insert(
            "userType".into(),
            json!(u.user_type.clone().unwrap_or_else(|| "Member".into())),
        );
        tenant.users.insert(Obj {
            id: id.clone(),
            visible_at: now,
            data: user_object(&id, &body),
        });
        for role in &u.directory_roles {
            let role_id = activate_by_name(tenant, role, now)
                .ok_or_else(|| SimError::Seed(format!("user '{upn}': unknown directory role '{role}'")))?;
            tenant.members.entry(role_id).or_default().push(id.clone());
        }
    }
    for g in &seed.groups {
        let id = g.id.unwrap_or_else(Uuid::new_v4).to_string();
        let nick: String = g.display_name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let mut body =
            json!({"displayName": g.display_name, "mailEnabled": false, "mailNickname": nick, "securityEnabled": true});
        if g.is_assignable_to_role {
            body["isAssignableToRole"] = json!(true);
        }
        let data = crate::graph::groups::group_object(&id, body.as_object().unwrap_or(&Map::new()));
        tenant.groups.insert(Obj {
            id: id.clone(),
            visible_at: now,
            data,
        });
        for m in &g.members {
            let upn = qualify(tenant, m);
            let member = tenant
                .users
                .all()
                .find(|o| {
                    o.data
                        .get("userPrincipalName")
                        .and_then(Value::as_str)
                        .is_some_and(|x| x.eq_ignore_ascii_case(&upn))
                })
                .map(|o| o.id.clone())
                .ok_or_else(|| SimError::Seed(format!("group '{}': unknown member '{upn}'", g.display_name)))?;
            tenant.members.entry(id.to_ascii_lowercase()).or_default().push(member);
        }
    }
    for s in &seed.skus {
        let known = KNOWN_SKUS.iter().find(|k| k.0.eq_ignore_ascii_case(&s.sku_part_number));
        let sku_id = match (s.sku_id, known) {
            (Some(id), _) => id.to_string(),
            (None, Some(k)) => k.1.to_string(),
            (None, None) => {
                return Err(SimError::Seed(format!(
                    "sku '{}' is not a part number the simulator knows; give its sku_id",
                    s.sku_part_number
                )));
            }
        };
        if tenant
            .skus
            .all()
            .any(|o| o.data.get("skuId").and_then(Value::as_str) == Some(sku_id.as_str()))
        {
            return Err(SimError::Seed(format!("sku '{}' already exists", s.sku_part_number)));
        }
        let plans: Vec<String> = if s.service_plans.is_empty() {
            known
                .map(|k| k.2.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default()
        } else {
            s.service_plans.clone()
        };
        let id = format!("{}_{sku_id}", tenant.id);
        let data = json!({
            "id": id,
            "accountId": tenant.id,
            "accountName": tenant.name,
            "appliesTo": "User",
            "capabilityStatus": "Enabled",
            "consumedUnits": 0,
            "skuId": sku_id,
            "skuPartNumber": s.sku_part_number,
            "subscriptionIds": [Uuid::new_v4().to_string()],
            "prepaidUnits": {"enabled": s.enabled, "suspended": 0, "warning": 0, "lockedOut": 0},
            "servicePlans": plans.iter().map(|p| json!({
                "servicePlanId": plan_id(p),
                "servicePlanName": p,
                "provisioningStatus": "Success",
                "appliesTo": "User",
            })).collect::<Vec<_>>(),
        });
        tenant.skus.insert(Obj {
            id,
            visible_at: now,
            data: data.as_object().cloned().unwrap_or_default(),
        });
    }
    for a in &seed.detected_apps {
        let id = Uuid::new_v4().simple().to_string();
        let data = json!({
            "id": id, "displayName": a.display_name, "version": a.version.clone().unwrap_or_default(),
            "sizeInByte": 0, "deviceCount": a.device_count, "publisher": Value::Null, "platform": "windows",
        });
        tenant.detected_apps.insert(Obj {
            id,
            visible_at: now,
            data: data.as_object().cloned().unwrap_or_default(),
        });
    }
    for d in &seed.devices {
        let id = d.id.unwrap_or_else(Uuid::new_v4).to_string();
        if tenant.devices.all().any(|o| o.id == id) {
            return Err(SimError::Seed(format!("device '{id}' already exists")));
        }
        let data = json!({
            "id": id, "deviceId": Uuid::new_v4().to_string(), "displayName": d.display_name,
            "operatingSystem": d.operating_system.clone().unwrap_or_else(|| "Windows".into()),
            "operatingSystemVersion": d.operating_system_version.clone().unwrap_or_else(|| "10.0.22631.0".into()),
            "accountEnabled": true, "isCompliant": true, "isManaged": true, "trustType": "AzureAd",
        });
        tenant.devices.insert(Obj {
            id,
            visible_at: now,
            data: data.as_object().cloned().unwrap_or_default(),
        });
    }
    for m in &seed.mobile_apps {
        let id = Uuid::new_v4().to_string();
        let data = json!({
            "@odata.type": m.odata_type.clone().unwrap_or_else(|| "#microsoft.graph.win32LobApp".into()),
            "id": id, "displayName": m.display_name, "publisher": m.publisher.clone().unwrap_or_default(),
            "description": "", "isAssigned": false, "publishingState": "published",
            "createdDateTime": chrono::Utc::now().to_rfc3339(), "lastModifiedDateTime": chrono::Utc::now().to_rfc3339(),
        });
        tenant.mobile_apps.insert(Obj {
            id,
            visible_at: now,
            data: data.as_object().cloned().unwrap_or_default(),
        });
    }
    for c in &seed.device_configurations {
        let id = Uuid::new_v4().to_string();
        let odata_type = c
            .odata_type
            .clone()
            .unwrap_or_else(|| "#microsoft.graph.windowsUpdateForBusinessConfiguration".into());
        let data = json!({
            "@odata.type": odata_type, "id": id, "displayName": c.display_name, "description": Value::Null,
            "createdDateTime": chrono::Utc::now().to_rfc3339(), "lastModifiedDateTime": chrono::Utc::now().to_rfc3339(),
            "version": 1,
        });
        let mut targets = Vec::new();
        if c.assigned_to_all_devices {
            targets.push(crate::graph::device_management::ALL_DEVICES_TARGET);
        }
        if c.assigned_to_all_users {
            targets.push(crate::graph::device_management::ALL_USERS_TARGET);
        }
        let assignments: Vec<Value> = targets
            .into_iter()
            .map(|(ty, key)| json!({"id": format!("{id}_{key}"), "target": {"@odata.type": ty}}))
            .collect();
        if !assignments.is_empty() {
            tenant.assignments.insert(id.clone(), assignments);
        }
        tenant.device_configurations.insert(Obj {
            id,
            visible_at: now,
            data: data.as_object().cloned().unwrap_or_default(),
        });
    }
    for p in &seed.conditional_access_policies {
        let state = p.state.clone().unwrap_or_else(|| "enabled".into());
        if !crate::graph::policies::POLICY_STATES.contains(&state.as_str()) {
            return Err(SimError::Seed(format!(
                "conditional access policy '{}': state '{state}' is not one of {:?}",
                p.display_name,
                crate::graph::policies::POLICY_STATES
            )));
        }
        let id = Uuid::new_v4().to_string();
        let data = crate::graph::policies::conditional_access_policy(&id, p, &state);
        tenant.conditional_access_policies.insert(Obj {
            id,
            visible_at: now,
            data,
        });
    }
    Ok(())
}
