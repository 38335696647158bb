//! Users: find by UPN, create, patch, assignLicense, memberOf, sendMail.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use super::{DIRECTORY_OBJECT_SELECT, DirectoryObject};
use crate::client::{DEFAULT_MAX_PAGES, Query, TenantGraph, odata_string};
use crate::error::Result;

/// A user, with the fields mdops reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Object id.
    pub id: String,
    /// Sign-in name.
    pub user_principal_name: String,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Mail alias.
    #[serde(default)]
    pub mail_nickname: Option<String>,
    /// Whether sign-in is allowed.
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// Two-letter country code; required before a licence can be assigned.
    #[serde(default)]
    pub usage_location: Option<String>,
    /// `Member` or `Guest`.
    #[serde(default)]
    pub user_type: Option<String>,
}

/// `$select` for [`User`].
pub const USER_SELECT: &[&str] = &[
    "id",
    "userPrincipalName",
    "displayName",
    "mailNickname",
    "accountEnabled",
    "usageLocation",
    "userType",
];

/// Initial password of a new user; serialised for Graph, never shown in `Debug`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordProfile {
    /// Require a change at first sign-in.
    pub force_change_password_next_sign_in: bool,
    /// The password.
    #[serde(serialize_with = "expose")]
    pub password: SecretString,
}

fn expose<S: Serializer>(secret: &SecretString, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

/// Body of `POST /users`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    /// Whether sign-in is allowed.
    pub account_enabled: bool,
    /// Display name.
    pub display_name: String,
    /// Mail alias.
    pub mail_nickname: String,
    /// Sign-in name.
    pub user_principal_name: String,
    /// Initial password.
    pub password_profile: PasswordProfile,
    /// Two-letter country code (needed for licences).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<String>,
}

/// One licence to add in `assignLicense`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedLicense {
    /// The SKU (from `subscribedSkus`).
    pub sku_id: Uuid,
    /// Service plans of the SKU to leave off.
    pub disabled_plans: Vec<Uuid>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssignLicense<'a> {
    add_licenses: &'a [AssignedLicense],
    remove_licenses: &'a [Uuid],
}

/// A plain-text or HTML mail for `sendMail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// True when `body` is HTML.
    pub html: bool,
    /// Recipient addresses.
    pub to: Vec<String>,
}

impl TenantGraph {
    /// Finds a user by UPN (`None` if there is none). Filtering, not `GET /users/{upn}`, so that a
    /// missing user is an empty answer rather than a 404 that looks like replication lag.
    pub async fn find_user_by_upn(&self, upn: &str) -> Result<Option<User>> {
        let q = Query::select(USER_SELECT).filter(format!("userPrincipalName eq {}", odata_string(upn)));
        let mut users: Vec<User> = self.list_all("users", &q, 1).await?;
        Ok(users.pop())
    }

    /// Reads a user by id or UPN (404s are retried as replication lag first).
    pub async fn get_user(&self, id_or_upn: &str) -> Result<User> {
        self.get(&format!("users/{id_or_upn}"), &Query::select(USER_SELECT))
            .await
    }

    /// Creates a user. A duplicate UPN fails with `is_object_conflict("userPrincipalName")`.
    pub async fn create_user(&self, user: &NewUser) -> Result<User> {
        self.post("users", user).await
    }

    /// Updates a user's properties (`usageLocation`, `accountEnabled`, ...).
    pub async fn patch_user<B: Serialize + ?Sized>(&self, id: &str, changes: &B) -> Result<()> {
        self.patch(&format!("users/{id}"), changes).await
    }

    /// Adds and removes licences. Fails (400) for a user without `usageLocation`.
    pub async fn assign_license(&self, user_id: &str, add: &[AssignedLicense], remove: &[Uuid]) -> Result<()> {
        let body = AssignLicense {
            add_licenses: add,
            remove_licenses: remove,
        };
        self.post_no_content(&format!("users/{user_id}/assignLicense"), &body)
            .await
    }

    /// Groups and directory roles the user is a direct member of.
    pub async fn user_member_of(&self, user_id: &str) -> Result<Vec<DirectoryObject>> {
        self.list_all(
            &format!("users/{user_id}/memberOf"),
            &Query::select(DIRECTORY_OBJECT_SELECT),
            DEFAULT_MAX_PAGES,
        )
        .await
    }

    /// Sends a mail as `from_user` (needs `Mail.Send`). Graph answers 202 and delivers later.
    pub async fn send_mail(&self, from_user: &str, mail: &Mail) -> Result<()> {
        let to: Vec<_> = mail
            .to
            .iter()
            .map(|a| serde_json::json!({"emailAddress": {"address": a}}))
            .collect();
        let body = serde_json::json!({
            "message": {
                "subject": mail.subject,
                "body": {"contentType": if mail.html { "HTML" } else { "Text" }, "content": mail.body},
                "toRecipients": to,
            },
            "saveToSentItems": true,
        });
        self.post_no_content(&format!("users/{from_user}/sendMail"), &body)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_user_serialises_the_password_but_never_debugs_it() {
        let u = NewUser {
            account_enabled: true,
            display_name: "MMD Admin 1".into(),
            mail_nickname: "mmdadmin1".into(),
            user_principal_name: "mmdadmin1@contoso.com".into(),
            password_profile: PasswordProfile {
                force_change_password_next_sign_in: false,
                password: SecretString::from("P@ss-very-secret"),
            },
            usage_location: None,
        };
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["passwordProfile"]["password"], "P@ss-very-secret");
        assert_eq!(json["userPrincipalName"], "mmdadmin1@contoso.com");
        assert!(json.get("usageLocation").is_none());
        assert!(!format!("{u:?}").contains("very-secret"));
    }
}
