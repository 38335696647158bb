//! A service account. Natural key: its userPrincipalName (unique in the tenant: Graph refuses a
//! duplicate with `ObjectConflict`, so this create can never double). The password is generated
//! here, sent once, and neither logged nor stored; the provider resets it on first use.
//!
//! A UPN is a name anyone who can create users in the tenant can take first, and this account
//! is then given Intune or Security Administrator: an account found by its UPN is adopted only
//! when it carries the tenant's mdops marker (written here on create) or an operator allowed its
//! object id (`mdops onboard --adopt`); anything else fails the step naming the object. See
//! `mdops_core::onboarding::adoption` and docs/access.md (threat model).

use std::time::Duration;

use mdops_core::onboarding::Account;
use mdops_core::outcome::StepOutcome;
use mdops_graph::{GraphError, Query, odata_string};
use rand::Rng;
use rand::seq::SliceRandom;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Collection, Named, StepContext, ensured};

/// Length of generated passwords (Entra allows up to 256; 24 random characters from four classes
/// is well past any brute-force horizon).
const PASSWORD_LEN: usize = 24;
/// Wait before looking again when Graph says the account exists but reads cannot see it yet.
const CONFLICT_RETRY: Duration = Duration::from_secs(5);

/// A password with upper, lower, digit and symbol characters, from the OS random source.
pub fn generate_password() -> SecretString {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"!@#$%^*-_=+?";
    let mut rng = rand::rngs::OsRng;
    let classes = [UPPER, LOWER, DIGIT, SYMBOL];
    let mut chars: Vec<u8> = classes.iter().map(|c| c[rng.gen_range(0..c.len())]).collect();
    let all: Vec<u8> = classes.concat();
    while chars.len() < PASSWORD_LEN {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    SecretString::from(String::from_utf8(chars).expect("ASCII"))
}

/// The attribute mdops writes its marker to on the accounts it creates. A cloud-only user's
/// `onPremisesExtensionAttributes` can be set on create and read back with `$select`
/// (https://learn.microsoft.com/graph/api/resources/onpremisesextensionattributes), with the
/// User.ReadWrite.All the account step already has; 15 is the slot tenants use least (they fill
/// Exchange custom attributes from 1).
pub const MARKER_ATTRIBUTE: &str = "extensionAttribute15";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FoundUser {
    id: String,
    #[serde(default)]
    on_premises_extension_attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

impl FoundUser {
    fn marker(&self) -> Option<&str> {
        self.on_premises_extension_attributes
            .as_ref()?
            .get(MARKER_ATTRIBUTE)?
            .as_str()
    }
}

/// Why an account found by its UPN is not adopted, and what the operator can do.
fn squatted(ctx: &StepContext<'_>, upn: &str, user: &FoundUser) -> StepOutcome {
    let tenant = &ctx.tenant.tenant_id;
    StepOutcome::failed(format!(
        "service account {upn} already exists in tenant {tenant} as object {id}, which mdops did not create (its \
         onPremisesExtensionAttributes.{MARKER_ATTRIBUTE} lacks this tenant's mdops marker), so it gets no role; \
         check in Entra ID who created it and why, then delete it and replay this step, or take it over with \
         `mdops onboard --tenant-id {tenant} --adopt {id}`",
        id = user.id
    ))
}

pub async fn run(ctx: &StepContext<'_>, account: Account) -> Result<StepOutcome, GraphError> {
    let upn = account.upn(ctx.tenant);
    let Some(marker) = ctx.adoption.marker.as_deref() else {
        return Ok(StepOutcome::failed(format!(
            "{upn}: the tenant's adoption marker was not loaded for this step; replay it"
        )));
    };
    // A filtered list answers 200 with nothing when absent (a GET by key would 404, which the
    // client treats as possible replication lag and retries).
    let query = Query::select(&["id", "displayName", "onPremisesExtensionAttributes"])
        .filter(format!("userPrincipalName eq {}", odata_string(&upn)));
    let found: Collection<FoundUser> = ctx.graph.get("users", &query).await?;
    if let Some(user) = found.value.first() {
        if user.marker() == Some(marker) {
            return Ok(ensured(&user.id, false));
        }
        if ctx.adoption.allowed.contains(&user.id) {
            return Ok(StepOutcome::done(
                serde_json::json!({ "id": user.id, "created": false, "adopted": true }),
            ));
        }
        return Ok(squatted(ctx, &upn, user));
    }
    let password = generate_password();
    let mut body = serde_json::json!({
        "accountEnabled": true,
        "displayName": account.display_name(),
        "mailNickname": account.mail_nickname(&ctx.tenant.settings.account_prefix),
        "userPrincipalName": upn,
        "onPremisesExtensionAttributes": { MARKER_ATTRIBUTE: marker },
        "passwordProfile": {
            // A person changes it at first sign-in; an unattended account could never sign in if
            // it had to (Graph: passwordProfile.forceChangePasswordNextSignIn).
            "forceChangePasswordNextSignIn": account.interactive(),
            "password": password.expose_secret(),
        },
    });
    if let Some(location) = &ctx.tenant.settings.usage_location {
        body["usageLocation"] = serde_json::Value::String(location.clone());
    }
    ctx.attempting_write();
    match ctx.graph.post::<_, Named>("users", &body).await {
        Ok(user) => Ok(ensured(&user.id, true)),
        // Created by an earlier attempt whose answer we lost, and not readable yet.
        Err(e) if e.is_object_conflict("userPrincipalName") => Ok(StepOutcome::retry(
            CONFLICT_RETRY,
            format!("{upn} exists but is not readable yet (replication lag)"),
        )),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_mixed_and_different() {
        let a = generate_password();
        let b = generate_password();
        let s = a.expose_secret();
        assert_eq!(s.len(), PASSWORD_LEN);
        assert!(s.chars().any(|c| c.is_ascii_uppercase()));
        assert!(s.chars().any(|c| c.is_ascii_lowercase()));
        assert!(s.chars().any(|c| c.is_ascii_digit()));
        assert!(s.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert_ne!(s, b.expose_secret());
        assert!(!format!("{a:?}").contains(s), "Debug must not print the password");
    }
}
