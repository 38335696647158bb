//! Wire types of the control API, shared by its server side and [`super::SimClient`].

use serde::{Deserialize, Serialize};

/// A tenant as the control API describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Tenant id (GUID).
    pub id: String,
    /// Short name.
    pub name: String,
    /// Verified domains, initial domain first.
    pub domains: Vec<String>,
    /// Client ids of its apps.
    pub apps: Vec<String>,
    /// Current MDM authority.
    pub mdm_authority: String,
}

/// A request for a user (engineer) token, signed by the tenant's key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserTokenRequest {
    /// `aud`: the client id or app id URI of our own API.
    pub audience: String,
    /// `upn` and `preferred_username`.
    pub upn: String,
    /// `name`.
    #[serde(default)]
    pub name: Option<String>,
    /// `oid`; when absent, the object id of the tenant's user with this UPN, else an id fixed for
    /// this tenant and UPN: the same person gets the same `oid` in every token, and a user renamed
    /// through Graph keeps theirs.
    #[serde(default)]
    pub oid: Option<String>,
    /// App roles (`roles` claim).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Group object ids (`groups` claim).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Lifetime in seconds (negative for an already expired token); default 3599.
    #[serde(default)]
    pub lifetime_secs: Option<i64>,
    /// Seconds from now before the token is valid (`nbf`); default: already valid.
    #[serde(default)]
    pub not_before_secs: Option<i64>,
    /// Claims to leave out (`oid`, `tid`, ...), or `kid` for a header without a key id: tokens a
    /// validator must refuse.
    #[serde(default)]
    pub omit: Vec<String>,
}

/// A request for an app access token without the token endpoint (e.g. an expired one for tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppTokenRequest {
    /// Client id of an app of the tenant.
    pub client_id: String,
    /// Lifetime in seconds (negative for an already expired token); default 3599.
    #[serde(default)]
    pub lifetime_secs: Option<i64>,
}

/// A token issued by the control API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The JWT.
    pub access_token: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_on: i64,
}

/// Answer to adding a fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultAdded {
    /// Fault id.
    pub id: u64,
}

/// New `prepaidUnits.enabled` of a SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkuUnits {
    /// Enabled units.
    pub enabled: u32,
}

/// New MDM authority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MdmAuthority {
    /// `unknown`, `intune`, `sccm` or `office365`.
    pub mdm_authority: String,
}

/// New granted permissions of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Permissions {
    /// Application permissions; empty means not consented.
    pub permissions: Vec<String>,
}
