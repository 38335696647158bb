//! `/users`: list/filter, create (with Entra ID's validation and its duplicate-UPN answer), get,
//! update, delete by id or UPN, `assignLicense`, `sendMail` and `memberOf`.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::odata::{self, GraphError, ListSpec};
use super::{Ctx, GraphResponse};
use crate::store::{Obj, SentMail, Tenant};

/// Properties a client may write on a user.
const WRITABLE: &[&str] = &[
    "accountEnabled",
    "ageGroup",
    "businessPhones",
    "city",
    "companyName",
    "consentProvidedForMinor",
    "country",
    "department",
    "displayName",
    "employeeId",
    "employeeType",
    "faxNumber",
    "givenName",
    "jobTitle",
    "mail",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "onPremisesExtensionAttributes",
    "onPremisesImmutableId",
    "otherMails",
    "passwordPolicies",
    "passwordProfile",
    "postalCode",
    "preferredLanguage",
    "showInAddressList",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
];
/// Read-only properties the simulator maintains.
const READ_ONLY: &[&str] = &[
    "id",
    "assignedLicenses",
    "createdDateTime",
    "deletedDateTime",
    "externalUserState",
];
/// What Graph v1.0 answers for a user without `$select`.
const DEFAULT_SELECT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];
/// ISO 3166-1 alpha-2 codes accepted as `usageLocation`.
const COUNTRY_CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI \
FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT \
JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ \
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS \
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA \
UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

const SPEC: ListSpec<'static> = ListSpec {
    entity_set: "users",
    type_name: "User",
    filterable: &[
        "id",
        "userPrincipalName",
        "displayName",
        "mail",
        "mailNickname",
        "userType",
        "accountEnabled",
        "givenName",
        "surname",
        "usageLocation",
    ],
    sortable: &["displayName", "userPrincipalName"],
    count_needs_eventual: true,
    default_select: Some(DEFAULT_SELECT),
};

/// How many `extensionAttributeN` an `onPremisesExtensionAttributes` holds, and how long each may be
/// (https://learn.microsoft.com/graph/api/resources/onpremisesextensionattributes).
const EXTENSION_ATTRIBUTES: usize = 15;
const EXTENSION_ATTRIBUTE_MAX_LEN: usize = 1024;

/// `onPremisesExtensionAttributes` with all fifteen attributes null, as Graph returns it for a
/// cloud-only user that never had one set.
fn empty_extension_attributes() -> Value {
    let attributes: Map<String, Value> = (1..=EXTENSION_ATTRIBUTES)
        .map(|n| (format!("extensionAttribute{n}"), Value::Null))
        .collect();
    Value::Object(attributes)
}

/// The stored Graph JSON of a user from a validated create body.
pub fn user_object(id: &str, body: &Map<String, Value>) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("id".into(), json!(id));
    o.insert("businessPhones".into(), json!([]));
    for k in [
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "usageLocation",
    ] {
        o.insert(k.into(), Value::Null);
    }
    o.insert("userType".into(), json!("Member"));
    o.insert("assignedLicenses".into(), json!([]));
    o.insert(
        "createdDateTime".into(),
        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    o.insert("onPremisesExtensionAttributes".into(), empty_extension_attributes());
    for (k, v) in body {
        match k.as_str() {
            "passwordProfile" => {}
            "onPremisesExtensionAttributes" => merge_extension_attributes(&mut o, v),
            _ => {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    o
}

/// Sets the attributes `update` names and keeps the others (a cloud-only user's attributes are
/// set on create or update; only those named change).
fn merge_extension_attributes(user: &mut Map<String, Value>, update: &Value) {
    let current = user
        .entry("onPremisesExtensionAttributes")
        .or_insert_with(empty_extension_attributes);
    if !current.is_object() {
        *current = empty_extension_attributes();
    }
    if let (Some(current), Some(update)) = (current.as_object_mut(), update.as_object()) {
        for (k, v) in update {
            current.insert(k.clone(), v.clone());
        }
    }
}

fn valid_extension_attributes(v: &Value) -> bool {
    let Some(attributes) = v.as_object() else {
        return false;
    };
    attributes.iter().all(|(k, v)| {
        let slot_ok = k
            .strip_prefix("extensionAttribute")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| (1..=EXTENSION_ATTRIBUTES).contains(&n));
        let value_ok = v.is_null()
            || v.as_str()
                .is_some_and(|s| s.chars().count() <= EXTENSION_ATTRIBUTE_MAX_LEN);
        slot_ok && value_ok
    })
}

/// A visible user by id or UPN.
pub fn find<'a>(t: &'a Tenant, key: &str, ctx: &Ctx) -> Option<&'a Obj> {
    t.users.visible(ctx.now).find(|o| {
        o.id.eq_ignore_ascii_case(key)
            || o.data
                .get("userPrincipalName")
                .and_then(Value::as_str)
                .is_some_and(|u| u.eq_ignore_ascii_case(key))
    })
}

fn find_id(t: &Tenant, key: &str, ctx: &Ctx) -> Result<String, GraphError> {
    find(t, key, ctx)
        .map(|o| o.id.clone())
        .ok_or_else(|| GraphError::not_found(key))
}

fn check_select(ctx: &Ctx) -> Result<(), GraphError> {
    if let Some(sel) = ctx.options()?.select {
        for s in sel {
            if !WRITABLE.contains(&s.as_str()) && !READ_ONLY.contains(&s.as_str()) {
                return Err(GraphError::bad_request(format!(
                    "Could not find a property named '{s}' on type 'microsoft.graph.user'."
                )));
            }
        }
    }
    Ok(())
}

/// `GET /users`.
pub fn list(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    check_select(ctx)?;
    odata::list(ctx, &SPEC, t.users.visible(ctx.now).map(|o| o.data.clone()).collect())
}

/// `GET /users/$count` (needs `ConsistencyLevel: eventual`).
pub fn count(t: &Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    if !ctx.eventual() {
        return Err(GraphError::bad_request(
            "$count is not currently supported without ConsistencyLevel: eventual.",
        ));
    }
    Ok(GraphResponse::text(
        StatusCode::OK,
        t.users.visible(ctx.now).count().to_string(),
    ))
}

/// `GET /users/{id|upn}`.
pub fn get(t: &Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    check_select(ctx)?;
    let user = find(t, key, ctx).ok_or_else(|| GraphError::not_found(key))?;
    odata::single(ctx, &SPEC, &user.data)
}

fn validate_properties(t: &Tenant, body: &Map<String, Value>) -> Result<(), GraphError> {
    for (k, v) in body {
        if !WRITABLE.contains(&k.as_str()) {
            return Err(GraphError::bad_request(format!("Invalid property '{k}'.")));
        }
        let bad_value = || {
            GraphError::bad_request(format!(
                "Invalid value specified for property '{k}' of resource 'User'."
            ))
        };
        match k.as_str() {
            "accountEnabled" | "showInAddressList" if !v.is_boolean() => return Err(bad_value()),
            "businessPhones" | "otherMails" if !v.is_array() => return Err(bad_value()),
            "usageLocation" => {
                let ok = v.is_null()
                    || v.as_str()
                        .is_some_and(|s| s.len() == 2 && COUNTRY_CODES.split(' ').any(|c| c == s));
                if !ok {
                    return Err(bad_value());
                }
            }
            "userType" if !matches!(v.as_str(), Some("Member" | "Guest")) => return Err(bad_value()),
            "onPremisesExtensionAttributes" if !valid_extension_attributes(v) => return Err(bad_value()),
            "passwordProfile" => {
                let pw = v.get("password").and_then(Value::as_str).unwrap_or("");
                if pw.is_empty() {
                    return Err(GraphError::bad_request(
                        "Invalid value specified for property 'passwordProfile' of resource 'User'.",
                    ));
                }
            }
            "userPrincipalName" => {
                let upn = v.as_str().ok_or_else(bad_value)?;
                let (local, domain) = upn.rsplit_once('@').ok_or_else(|| {
                    GraphError::bad_request("Property userPrincipalName is invalid.")
                        .with_detail("userPrincipalName", "InvalidValue")
                })?;
                if local.is_empty() || local.contains(' ') {
                    return Err(GraphError::bad_request("Property userPrincipalName is invalid.")
                        .with_detail("userPrincipalName", "InvalidValue"));
                }
                if !t.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                    return Err(GraphError::bad_request(
                        "The domain portion of the userPrincipalName property is invalid. You must use one of the \
                         verified domain names in your organization.",
                    )
                    .with_detail("userPrincipalName", "InvalidValue"));
                }
            }
            "displayName" | "mailNickname" if odata::is_blank(Some(v)) => {
                return Err(bad_value());
            }
            _ => {}
        }
    }
    Ok(())
}

fn upn_taken(t: &Tenant, upn: &str, except: Option<&str>) -> bool {
    t.users.all().any(|o| {
        except != Some(o.id.as_str())
            && o.data
                .get("userPrincipalName")
                .and_then(Value::as_str)
                .is_some_and(|u| u.eq_ignore_ascii_case(upn))
    })
}

fn duplicate_upn() -> GraphError {
    GraphError::bad_request("Another object with the same value for property userPrincipalName already exists.")
        .with_detail("userPrincipalName", "ObjectConflict")
}

/// `POST /users`.
pub fn create(t: &mut Tenant, ctx: &Ctx) -> Result<GraphResponse, GraphError> {
    let body = &odata::entity_body(ctx, "microsoft.graph.user")?;
    for required in [
        "accountEnabled",
        "displayName",
        "mailNickname",
        "passwordProfile",
        "userPrincipalName",
    ] {
        if !body.contains_key(required) {
            return Err(GraphError::bad_request(format!(
                "Invalid value specified for property '{required}' of resource 'User'."
            )));
        }
    }
    validate_properties(t, body)?;
    let upn = body
        .get("userPrincipalName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if upn_taken(t, upn, None) {
        return Err(duplicate_upn());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let data = user_object(&id, body);
    t.users.insert(Obj {
        id,
        visible_at: ctx.visible_at(),
        data: data.clone(),
    });
    let mut out = odata::project(&data, None, Some(DEFAULT_SELECT));
    out.insert(
        "@odata.context".into(),
        json!(format!("{}/v1.0/$metadata#users/$entity", ctx.base)),
    );
    Ok(GraphResponse::json(StatusCode::CREATED, Value::Object(out)))
}

/// `PATCH /users/{id|upn}`.
pub fn update(t: &mut Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    let body = &odata::entity_body(ctx, "microsoft.graph.user")?;
    validate_properties(t, body)?;
    let id = find_id(t, key, ctx)?;
    if let Some(upn) = body.get("userPrincipalName").and_then(Value::as_str)
        && upn_taken(t, upn, Some(&id))
    {
        return Err(duplicate_upn());
    }
    let user = t
        .users
        .get_mut(&id, ctx.now)
        .ok_or_else(|| GraphError::not_found(key))?;
    let mut changes: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| k.as_str() != "passwordProfile")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(update) = changes.get_mut("onPremisesExtensionAttributes") {
        let mut merged = Map::new();
        merged.insert(
            "onPremisesExtensionAttributes".into(),
            user.data
                .get("onPremisesExtensionAttributes")
                .cloned()
                .unwrap_or_else(empty_extension_attributes),
        );
        merge_extension_attributes(&mut merged, update);
        *update = merged.remove("onPremisesExtensionAttributes").unwrap_or_default();
    }
    if ctx.lag.is_zero() {
        user.data.extend(changes);
    } else {
        // Replicated like a create: reads (and assignLicense) see the old values until the lag
        // has passed (https://learn.microsoft.com/graph/best-practices-concept, eventual
        // consistency of directory writes).
        let user_id = user.id.clone();
        t.pending_patches.push(crate::store::PendingPatch {
            visible_at: ctx.visible_at(),
            user_id,
            changes,
        });
    }
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

/// `DELETE /users/{id|upn}` (frees its licences and memberships).
pub fn delete(t: &mut Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    let id = find_id(t, key, ctx)?;
    let licences: Vec<String> = find(t, &id, ctx)
        .and_then(|u| u.data.get("assignedLicenses").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.get("skuId").and_then(Value::as_str).map(str::to_string))
        .collect();
    for sku in licences {
        adjust_consumed(t, &sku, -1);
    }
    t.users.remove(&id, ctx.now);
    for members in t.members.values_mut() {
        members.retain(|m| !m.eq_ignore_ascii_case(&id));
    }
    Ok(GraphResponse::empty(StatusCode::NO_CONTENT))
}

fn adjust_consumed(t: &mut Tenant, sku_id: &str, delta: i64) {
    let now = tokio::time::Instant::now();
    let target = t
        .skus
        .visible(now)
        .find(|s| s.data.get("skuId").and_then(Value::as_str) == Some(sku_id))
        .map(|s| s.id.clone());
    if let Some(id) = target
        && let Some(sku) = t.skus.get_mut(&id, now)
    {
        let consumed = sku.data.get("consumedUnits").and_then(Value::as_i64).unwrap_or(0);
        sku.data
            .insert("consumedUnits".into(), json!((consumed + delta).max(0)));
    }
}

/// `POST /users/{id}/assignLicense`.
pub fn assign_license(t: &mut Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    let body = ctx.body_object()?;
    for k in body.keys() {
        if k != "addLicenses" && k != "removeLicenses" {
            return Err(GraphError::bad_request(format!("Invalid property '{k}'.")));
        }
    }
    let add = body.get("addLicenses").and_then(Value::as_array).ok_or_else(|| {
        GraphError::bad_request("Invalid value specified for property 'addLicenses' of resource 'User'.")
    })?;
    let remove = body.get("removeLicenses").and_then(Value::as_array).ok_or_else(|| {
        GraphError::bad_request("Invalid value specified for property 'removeLicenses' of resource 'User'.")
    })?;
    let id = find_id(t, key, ctx)?;
    let user = find(t, &id, ctx).ok_or_else(|| GraphError::not_found(key))?;
    let has_location = user
        .data
        .get("usageLocation")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let current: Vec<Value> = user
        .data
        .get("assignedLicenses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let holds = |sku: &str| {
        current.iter().any(|l| {
            l.get("skuId")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(sku))
        })
    };
    let mut to_add = Vec::new();
    for l in add {
        let sku = l.get("skuId").and_then(Value::as_str).ok_or_else(|| {
            GraphError::bad_request("Invalid value specified for property 'addLicenses' of resource 'User'.")
        })?;
        let sub = t.skus.visible(ctx.now).find(|s| {
            s.data
                .get("skuId")
                .and_then(Value::as_str)
                .is_some_and(|x| x.eq_ignore_ascii_case(sku))
        });
        let Some(sub) = sub else {
            return Err(GraphError::bad_request(format!(
                "License {sku} does not correspond to a valid company License."
            )));
        };
        if !has_location {
            return Err(GraphError::bad_request(
                "License assignment cannot be done for user with invalid usage location.",
            ));
        }
        if holds(sku) {
            continue;
        }
        let enabled = sub
            .data
            .get("prepaidUnits")
            .and_then(|p| p.get("enabled"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let consumed = sub.data.get("consumedUnits").and_then(Value::as_i64).unwrap_or(0);
        if consumed >= enabled {
            return Err(GraphError::bad_request(format!(
                "Subscription {sku} does not have any available licenses."
            )));
        }
        to_add.push(json!({"skuId": sku.to_ascii_lowercase(), "disabledPlans": l.get("disabledPlans").cloned().unwrap_or(json!([]))}));
    }
    let to_remove: Vec<String> = remove
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect();
    for sku in &to_remove {
        if !holds(sku) {
            return Err(GraphError::bad_request(format!(
                "User does not have a corresponding license {sku}."
            )));
        }
    }
    for l in &to_add {
        if let Some(sku) = l.get("skuId").and_then(Value::as_str) {
            adjust_consumed(t, sku, 1);
        }
    }
    for sku in &to_remove {
        adjust_consumed(t, sku, -1);
    }
    let user = t
        .users
        .get_mut(&id, ctx.now)
        .ok_or_else(|| GraphError::not_found(key))?;
    let mut licences: Vec<Value> = current
        .into_iter()
        .filter(|l| {
            !l.get("skuId")
                .and_then(Value::as_str)
                .is_some_and(|s| to_remove.iter().any(|r| r.eq_ignore_ascii_case(s)))
        })
        .collect();
    licences.extend(to_add);
    user.data.insert("assignedLicenses".into(), Value::Array(licences));
    let data = user.data.clone();
    let mut out = odata::project(&data, None, Some(DEFAULT_SELECT));
    out.insert(
        "@odata.context".into(),
        json!(format!("{}/v1.0/$metadata#users/$entity", ctx.base)),
    );
    Ok(GraphResponse::json(StatusCode::OK, Value::Object(out)))
}

/// `POST /users/{id}/sendMail`: delivered to the simulator's outbox, readable via the control API.
pub fn send_mail(t: &mut Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    let body = ctx.body_object()?;
    let message = body.get("message").and_then(Value::as_object).ok_or_else(|| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "The 'message' parameter is required.",
        )
    })?;
    let to: Vec<String> = message
        .get("toRecipients")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|x| {
                    x.pointer("/emailAddress/address")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    if to.is_empty() {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid., Recipient is missing.",
        ));
    }
    let from = find(t, key, ctx)
        .and_then(|u| {
            u.data
                .get("userPrincipalName")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .ok_or_else(|| {
            GraphError::new(
                StatusCode::NOT_FOUND,
                "ErrorInvalidUser",
                format!("The requested user '{key}' is invalid."),
            )
        })?;
    t.mail.push(SentMail {
        from,
        to,
        subject: message
            .get("subject")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        body: message
            .get("body")
            .and_then(|b| b.get("content"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        content_type: message
            .get("body")
            .and_then(|b| b.get("contentType"))
            .and_then(Value::as_str)
            .unwrap_or("Text")
            .to_string(),
        sent_at: chrono::Utc::now().to_rfc3339(),
    });
    Ok(GraphResponse::empty(StatusCode::ACCEPTED))
}

/// `GET /users/{id}/memberOf`: groups and directory roles.
pub fn member_of(t: &Tenant, ctx: &Ctx, key: &str) -> Result<GraphResponse, GraphError> {
    let id = find_id(t, key, ctx)?;
    let mut out = Vec::new();
    for g in t.groups.visible(ctx.now) {
        if t.is_member(&g.id, &id) {
            let mut o = g.data.clone();
            o.insert("@odata.type".into(), json!("#microsoft.graph.group"));
            out.push(o);
        }
    }
    for r in t.directory_roles.visible(ctx.now) {
        if t.is_member(&r.id, &id) {
            let mut o = r.data.clone();
            o.insert("@odata.type".into(), json!("#microsoft.graph.directoryRole"));
            out.push(o);
        }
    }
    let spec = ListSpec {
        entity_set: "directoryObjects",
        type_name: "DirectoryObject",
        filterable: &["id", "displayName"],
        sortable: &["displayName", "userPrincipalName"],
        count_needs_eventual: true,
        default_select: None,
    };
    odata::list(ctx, &spec, out)
}
