//! The tenant registry's domain: a customer tenant we manage, how to reach it, and its settings.
//!
//! Credentials are kept *by reference* ([`CredentialRef`]): the name of an environment variable, a
//! file, a certificate, a workload-identity token file, managed identity, or a Secrets Manager ARN.
//! The secret itself is read at run time by whoever builds the Graph credential and is never stored.
//! Every setting has a documented default (`docs/tenant-settings.md`), and bad input is refused with
//! an error that names the field and says what is wrong.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{CollectionEntry, Condition, Key, NewRecord, Record, Store, StoreError, Write};

/// Input that is not acceptable, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidInput {
    /// The field, flag or setting that was wrong.
    pub field: String,
    /// What is wrong with it and, where it helps, what would be right.
    pub problem: String,
}

impl InvalidInput {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        InvalidInput {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A Microsoft Entra tenant id (a GUID), kept in its lower-case hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// The id as Graph and the identity platform spell it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = Uuid::parse_str(s.trim()).map_err(|_| {
            InvalidInput::new(
                "tenant_id",
                format!("{s:?} is not a GUID (expected e.g. 72f988bf-86f1-41af-91ab-2d7cd011db47; find it in the Entra admin center under Overview)"),
            )
        })?;
        if parsed.is_nil() {
            return Err(InvalidInput::new("tenant_id", "the nil GUID is not a tenant"));
        }
        Ok(TenantId(parsed.hyphenated().to_string()))
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest DNS name (RFC 1035).
const MAX_DOMAIN_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A verified domain of a tenant, e.g. `contoso.onmicrosoft.com` (lower case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks a domain given for `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Domain, InvalidInput> {
        let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let bad = |why: &str| InvalidInput::new(field, format!("{s:?} is not a domain: {why}"));
        if d.is_empty() {
            return Err(bad("it is empty"));
        }
        if d.len() > MAX_DOMAIN_LEN {
            return Err(bad("longer than 253 characters"));
        }
        let labels: Vec<&str> = d.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("it needs at least two labels, e.g. contoso.onmicrosoft.com"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(bad("each label must be 1 to 63 characters"));
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad("only letters, digits, '-' and '.' are allowed"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label may not start or end with '-'"));
            }
        }
        if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
            return Err(bad("the last label may not be numeric"));
        }
        Ok(Domain(d))
    }
}

impl FromStr for Domain {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse_field("domain", s)
    }
}

impl TryFrom<String> for Domain {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the secret of our app registration for a tenant is found at run time. Never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CredentialRef {
    /// A client secret in an environment variable of the process that calls Graph.
    Env { var: String },
    /// A client secret in a file (first line, trailing whitespace ignored).
    File { path: String },
    /// A certificate (PEM with key, or PKCS#12), with an optional environment variable holding
    /// its password.
    Certificate { path: String, password_env: Option<String> },
    /// A federated token file (workload identity), e.g. `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity { token_file: String },
    /// The managed identity of the host (only on Azure hosts).
    ManagedIdentity,
    /// An AWS Secrets Manager secret holding the client secret, read by the functions at run time.
    AwsSecret { arn: String },
}

impl CredentialRef {
    /// Parses the `--credential` flag: `env:VAR`, `file:PATH`, `certificate:PATH[:PASSWORD_ENV]`,
    /// `workload-identity:TOKEN_FILE`, `managed-identity`, `aws-secret:ARN`.
    pub fn parse(s: &str) -> Result<CredentialRef, InvalidInput> {
        let field = "credential";
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        let need = |what: &str| {
            rest.filter(|r| !r.trim().is_empty())
                .map(|r| r.trim().to_string())
                .ok_or_else(|| {
                    InvalidInput::new(
                        field,
                        format!("{kind}: needs {what} after the colon, e.g. {kind}:{what}"),
                    )
                })
        };
        let cred = match kind {
            "env" => {
                let var = need("VARIABLE")?;
                if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    || var.starts_with(|c: char| c.is_ascii_digit())
                {
                    return Err(InvalidInput::new(
                        field,
                        format!("{var:?} is not an environment variable name"),
                    ));
                }
                CredentialRef::Env { var }
            }
            "file" => CredentialRef::File { path: need("PATH")? },
            "certificate" => {
                let value = need("PATH")?;
                match value.rsplit_once(':') {
                    Some((path, env)) if !env.contains('/') && !env.is_empty() => CredentialRef::Certificate {
                        path: path.to_string(),
                        password_env: Some(env.to_string()),
                    },
                    _ => CredentialRef::Certificate {
                        path: value,
                        password_env: None,
                    },
                }
            }
            "workload-identity" => CredentialRef::WorkloadIdentity {
                token_file: need("TOKEN_FILE")?,
            },
            "managed-identity" => CredentialRef::ManagedIdentity,
            "aws-secret" => {
                let arn = need("ARN")?;
                if !arn.starts_with("arn:") || !arn.contains(":secretsmanager:") {
                    return Err(InvalidInput::new(
                        field,
                        format!(
                            "{arn:?} is not a Secrets Manager ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
                        ),
                    ));
                }
                CredentialRef::AwsSecret { arn }
            }
            other => {
                return Err(InvalidInput::new(
                    field,
                    format!(
                        "unknown kind {other:?}: expected env:VAR, file:PATH, certificate:PATH[:PASSWORD_ENV], workload-identity:TOKEN_FILE, managed-identity or aws-secret:ARN"
                    ),
                ));
            }
        };
        Ok(cred)
    }
}

impl fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialRef::Env { var } => write!(f, "env:{var}"),
            CredentialRef::File { path } => write!(f, "file:{path}"),
            CredentialRef::Certificate {
                path,
                password_env: Some(env),
            } => write!(f, "certificate:{path}:{env}"),
            CredentialRef::Certificate {
                path,
                password_env: None,
            } => write!(f, "certificate:{path}"),
            CredentialRef::WorkloadIdentity { token_file } => write!(f, "workload-identity:{token_file}"),
            CredentialRef::ManagedIdentity => f.write_str("managed-identity"),
            CredentialRef::AwsSecret { arn } => write!(f, "aws-secret:{arn}"),
        }
    }
}

/// Deferral of Windows quality and feature updates for one update ring, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    pub quality_days: u32,
    pub feature_days: u32,
}

/// Most days Windows Update for Business lets quality updates be deferred.
pub const MAX_QUALITY_DEFERRAL_DAYS: u32 = 30;
/// Most days Windows Update for Business lets feature updates be deferred.
pub const MAX_FEATURE_DEFERRAL_DAYS: u32 = 365;

/// The four update rings of the managed-desktop service, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ring {
    Test,
    First,
    Fast,
    Broad,
}

impl Ring {
    /// Every ring, narrowest first: each defers at least as long as the one before.
    pub const ALL: [Ring; 4] = [Ring::Test, Ring::First, Ring::Fast, Ring::Broad];

    /// Lower-case name, used in step names and settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Ring::Test => "test",
            Ring::First => "first",
            Ring::Fast => "fast",
            Ring::Broad => "broad",
        }
    }

    /// The group's display name in the tenant, as the service names them.
    pub fn display_name(self) -> &'static str {
        match self {
            Ring::Test => "Modern Workplace Devices-Test",
            Ring::First => "Modern Workplace Devices-First",
            Ring::Fast => "Modern Workplace Devices-Fast",
            Ring::Broad => "Modern Workplace Devices-Broad",
        }
    }
}

/// Deferrals per ring. Defaults widen from Test to Broad (see `docs/tenant-settings.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingDeferrals {
    pub test: Deferral,
    pub first: Deferral,
    pub fast: Deferral,
    pub broad: Deferral,
}

impl RingDeferrals {
    /// The deferral of one ring.
    pub fn get(&self, ring: Ring) -> Deferral {
        match ring {
            Ring::Test => self.test,
            Ring::First => self.first,
            Ring::Fast => self.fast,
            Ring::Broad => self.broad,
        }
    }

    fn get_mut(&mut self, ring: Ring) -> &mut Deferral {
        match ring {
            Ring::Test => &mut self.test,
            Ring::First => &mut self.first,
            Ring::Fast => &mut self.fast,
            Ring::Broad => &mut self.broad,
        }
    }

    /// Checks the limits and that rings widen (never narrow) from Test to Broad.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        for ring in Ring::ALL {
            let d = self.get(ring);
            if d.quality_days > MAX_QUALITY_DEFERRAL_DAYS {
                return Err(InvalidInput::new(
                    format!("deferral.{}.quality_days", ring.as_str()),
                    format!(
                        "{} is over the Windows Update maximum of {MAX_QUALITY_DEFERRAL_DAYS}",
                        d.quality_days
                    ),
                ));
            }
            if d.feature_days > MAX_FEATURE_DEFERRAL_DAYS {
                return Err(InvalidInput::new(
                    format!("deferral.{}.feature_days", ring.as_str()),
                    format!(
                        "{} is over the Windows Update maximum of {MAX_FEATURE_DEFERRAL_DAYS}",
                        d.feature_days
                    ),
                ));
            }
        }
        for pair in Ring::ALL.windows(2) {
            let (a, b) = (self.get(pair[0]), self.get(pair[1]));
            if b.quality_days < a.quality_days || b.feature_days < a.feature_days {
                return Err(InvalidInput::new(
                    format!("deferral.{}", pair[1].as_str()),
                    format!(
                        "rings must widen from Test to Broad: {} defers less than {}",
                        pair[1].as_str(),
                        pair[0].as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Default for RingDeferrals {
    fn default() -> Self {
        // Test gets updates at once; each wider ring waits a few days more so a bad update is seen
        // on a few devices before it reaches everyone.
        RingDeferrals {
            test: Deferral {
                quality_days: 0,
                feature_days: 0,
            },
            first: Deferral {
                quality_days: 1,
                feature_days: 0,
            },
            fast: Deferral {
                quality_days: 6,
                feature_days: 0,
            },
            broad: Deferral {
                quality_days: 9,
                feature_days: 0,
            },
        }
    }
}

/// How hard mdops may drive Graph in one tenant. Half the published quotas by default, so that
/// our own traffic leaves room for the customer's admins and other apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphBudget {
    /// Identity writes per 150 s (published quota: 3,000 per app and tenant).
    pub identity_writes_per_150s: u32,
    /// Intune device-configuration writes per 20 s (published quota: 100 per app and tenant).
    pub intune_writes_per_20s: u32,
}

impl Default for GraphBudget {
    fn default() -> Self {
        GraphBudget {
            identity_writes_per_150s: 1500,
            intune_writes_per_20s: 50,
        }
    }
}

/// Longest temporary access anyone may be granted by default, in hours (a working day).
pub const DEFAULT_ACCESS_MAX_HOURS: u32 = 8;
/// Longest temporary access a tenant may be configured to allow, in hours.
pub const ACCESS_MAX_HOURS_LIMIT: u32 = 72;

/// The Intune template the security baseline is created from: "Security Baseline for Windows 10
/// and later" (`GET /beta/deviceManagement/templates`, `templateType` `securityBaseline`). A tenant
/// setting, because Microsoft publishes new baseline versions and deprecates old ones.
pub const DEFAULT_SECURITY_BASELINE_TEMPLATE_ID: &str = "034ccd46-190c-4afc-adf1-ad7cc11262eb";

/// Where the security baseline step creates the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityBaselineKind {
    /// A real Intune security baseline from `security_baseline_template_id` (Graph beta
    /// `createInstance`, the product's one beta call).
    #[default]
    Template,
    /// Fallback: a v1.0 `windows10EndpointProtectionConfiguration` profile (not a baseline; for a
    /// tenant where the beta call must not be used).
    EndpointProtectionProfile,
}

impl SecurityBaselineKind {
    /// The setting's value as typed.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityBaselineKind::Template => "template",
            SecurityBaselineKind::EndpointProtectionProfile => "endpoint-protection-profile",
        }
    }
}

/// Per-tenant settings; every field has a default, documented in `docs/tenant-settings.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// Prefix of the service accounts' names (`{prefix}-admin1@domain`, `{prefix}-defender1@domain`).
    pub account_prefix: String,
    /// Domain of the service accounts; the tenant's registered domain when unset.
    pub account_domain: Option<Domain>,
    /// Usage location (ISO 3166-1 alpha-2) given to users that have none before licensing.
    pub usage_location: Option<String>,
    /// Licence SKUs (part numbers) the interactive service accounts get.
    pub service_account_skus: Vec<String>,
    /// Update-ring deferrals.
    pub deferrals: RingDeferrals,
    /// Role groups an engineer may be elevated into (display names of
    /// [`crate::onboarding::RoleGroup`]s, which onboarding creates).
    pub access_role_groups: Vec<String>,
    /// Longest temporary access, in hours.
    pub access_max_hours: u32,
    /// Graph request budget for this tenant.
    pub graph_budget: GraphBudget,
    /// Share of Windows devices per update ring (`mdops rings sync`).
    pub ring_shares: crate::rings::RingShares,
    /// What the security baseline step creates.
    pub security_baseline: SecurityBaselineKind,
    /// The Intune security baseline template it is created from (Graph beta template id).
    pub security_baseline_template_id: String,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            account_prefix: "mmd".to_string(),
            account_domain: None,
            usage_location: None,
            service_account_skus: vec!["SPE_E5".to_string()],
            deferrals: RingDeferrals::default(),
            access_role_groups: crate::onboarding::RoleGroup::ALL
                .iter()
                .map(|g| g.display_name().to_string())
                .collect(),
            access_max_hours: DEFAULT_ACCESS_MAX_HOURS,
            graph_budget: GraphBudget::default(),
            ring_shares: crate::rings::RingShares::default(),
            security_baseline: SecurityBaselineKind::default(),
            security_baseline_template_id: DEFAULT_SECURITY_BASELINE_TEMPLATE_ID.to_string(),
        }
    }
}

/// The settings `TenantSettings::set` accepts, for error messages and `--help`.
pub const SETTING_NAMES: &[&str] = &[
    "account_prefix",
    "account_domain",
    "usage_location",
    "service_account_skus",
    "deferral.<ring>.quality_days",
    "deferral.<ring>.feature_days",
    "access_role_groups",
    "access_max_hours",
    "graph_budget.identity_writes_per_150s",
    "graph_budget.intune_writes_per_20s",
    "ring_share.<test, first or fast>",
    "security_baseline",
    "security_baseline_template_id",
];

impl TenantSettings {
    /// Applies one `name=value` setting from the command line, validating it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), InvalidInput> {
        let value = value.trim();
        let number = |field: &str| -> Result<u32, InvalidInput> {
            value
                .parse::<u32>()
                .map_err(|_| InvalidInput::new(field, format!("{value:?} is not a whole number")))
        };
        let list = || -> Vec<String> {
            value
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        match name {
            "account_prefix" => {
                let ok = !value.is_empty()
                    && value.len() <= 20
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !ok {
                    return Err(InvalidInput::new(
                        name,
                        format!("{value:?} must be 1-20 letters, digits or '-'"),
                    ));
                }
                self.account_prefix = value.to_string();
            }
            "account_domain" => self.account_domain = Some(Domain::parse_field(name, value)?),
            "usage_location" => self.usage_location = Some(parse_usage_location(value)?),
            "service_account_skus" => self.service_account_skus = list(),
            "access_role_groups" => {
                let groups = list();
                if groups.is_empty() {
                    return Err(InvalidInput::new(name, "at least one role group is needed"));
                }
                // Only groups onboarding creates (role-assignable, carrying their roles) can be
                // elevated into: elevation uses the id onboarding recorded.
                let known = || {
                    crate::onboarding::RoleGroup::ALL
                        .iter()
                        .map(|g| g.display_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut names = Vec::new();
                for g in &groups {
                    let group = crate::onboarding::RoleGroup::by_display_name(g).ok_or_else(|| {
                        InvalidInput::new(
                            name,
                            format!("{g:?} is not a role group onboarding creates; choose from: {}", known()),
                        )
                    })?;
                    names.push(group.display_name().to_string());
                }
                self.access_role_groups = names;
            }
            "access_max_hours" => {
                let hours = number(name)?;
                if hours == 0 || hours > ACCESS_MAX_HOURS_LIMIT {
                    return Err(InvalidInput::new(
                        name,
                        format!("{hours} must be between 1 and {ACCESS_MAX_HOURS_LIMIT}"),
                    ));
                }
                self.access_max_hours = hours;
            }
            "graph_budget.identity_writes_per_150s" => {
                self.graph_budget.identity_writes_per_150s = positive(name, number(name)?)?
            }
            "security_baseline" => {
                self.security_baseline = match value {
                    "template" => SecurityBaselineKind::Template,
                    "endpoint-protection-profile" => SecurityBaselineKind::EndpointProtectionProfile,
                    other => {
                        return Err(InvalidInput::new(
                            name,
                            format!("{other:?}: expected template or endpoint-protection-profile"),
                        ));
                    }
                }
            }
            "security_baseline_template_id" => {
                let id = uuid::Uuid::parse_str(value).map_err(|_| {
                    InvalidInput::new(
                        name,
                        format!("{value:?} is not a template id (a GUID from GET /beta/deviceManagement/templates)"),
                    )
                })?;
                self.security_baseline_template_id = id.to_string();
            }
            "graph_budget.intune_writes_per_20s" => {
                self.graph_budget.intune_writes_per_20s = positive(name, number(name)?)?
            }
            _ => {
                if let Some(rest) = name.strip_prefix("deferral.") {
                    let (ring, which) = rest.split_once('.').unwrap_or((rest, ""));
                    let ring = Ring::ALL.into_iter().find(|r| r.as_str() == ring).ok_or_else(|| {
                        InvalidInput::new(
                            name,
                            format!("unknown ring {ring:?}: expected test, first, fast or broad"),
                        )
                    })?;
                    let days = number(name)?;
                    let deferral = self.deferrals.get_mut(ring);
                    match which {
                        "quality_days" => deferral.quality_days = days,
                        "feature_days" => deferral.feature_days = days,
                        _ => {
                            return Err(InvalidInput::new(
                                name,
                                "expected deferral.<ring>.quality_days or deferral.<ring>.feature_days",
                            ));
                        }
                    }
                    self.deferrals.validate()?;
                } else if let Some(ring) = name.strip_prefix("ring_share.") {
                    let ring = Ring::ALL.into_iter().find(|r| r.as_str() == ring).ok_or_else(|| {
                        InvalidInput::new(name, format!("unknown ring {ring:?}: expected test, first or fast"))
                    })?;
                    self.ring_shares.set_percent(name, ring, value)?;
                } else {
                    return Err(InvalidInput::new(
                        name,
                        format!("unknown setting; known settings: {}", SETTING_NAMES.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn positive(field: &str, n: u32) -> Result<u32, InvalidInput> {
    if n == 0 {
        return Err(InvalidInput::new(field, "must be at least 1"));
    }
    Ok(n)
}

/// Checks a usage location: two letters (ISO 3166-1 alpha-2), upper-cased.
pub fn parse_usage_location(value: &str) -> Result<String, InvalidInput> {
    let v = value.trim().to_ascii_uppercase();
    if v.len() != 2 || !v.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(InvalidInput::new(
            "usage_location",
            format!("{value:?} is not a two-letter country code (ISO 3166-1 alpha-2, e.g. US, GB, DE)"),
        ));
    }
    Ok(v)
}

/// A customer tenant in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub tenant_id: TenantId,
    pub domain: Domain,
    pub name: String,
    /// Client id of our app registration in that tenant (multi-tenant apps share one id).
    pub client_id: String,
    pub credential: CredentialRef,
    pub settings: TenantSettings,
    pub added_at: DateTime<Utc>,
}

impl Tenant {
    /// The domain of the service accounts.
    pub fn account_domain(&self) -> &Domain {
        self.settings.account_domain.as_ref().unwrap_or(&self.domain)
    }
}

/// Checks an application (client) id: a GUID.
pub fn parse_client_id(value: &str) -> Result<String, InvalidInput> {
    let id = Uuid::parse_str(value.trim()).map_err(|_| {
        InvalidInput::new(
            "client_id",
            format!("{value:?} is not a GUID (the Application (client) ID of our app registration)"),
        )
    })?;
    Ok(id.hyphenated().to_string())
}

const TENANTS_COLLECTION: &str = "tenants";

fn tenant_key(id: &TenantId) -> Key {
    Key::new(format!("tenant#{id}"), "registration")
}

/// Errors of the tenant registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("tenant {0} is already registered; remove it first or change its settings")]
    AlreadyRegistered(TenantId),
    #[error("tenant {0} is not registered (add it with `mdops tenants add`)")]
    NotRegistered(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tenant registry over the state store.
pub struct TenantRegistry<'a> {
    store: &'a dyn Store,
}

impl<'a> TenantRegistry<'a> {
    /// A registry over `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        TenantRegistry { store }
    }

    /// Registers a tenant; refuses one that is already there.
    pub async fn add(&self, tenant: &Tenant) -> Result<(), RegistryError> {
        let record = NewRecord {
            key: tenant_key(&tenant.tenant_id),
            body: serde_json::to_value(tenant).map_err(|e| StoreError::Invalid(e.to_string()))?,
            collection: Some(CollectionEntry {
                name: TENANTS_COLLECTION.into(),
                sort: tenant.tenant_id.to_string(),
            }),
            due: None,
        };
        match self
            .store
            .transact(vec![Write::Put {
                record,
                condition: Condition::Absent,
            }])
            .await
        {
            Err(StoreError::ConditionFailed { .. }) => Err(RegistryError::AlreadyRegistered(tenant.tenant_id.clone())),
            other => Ok(other?),
        }
    }

    /// The tenant with this id, if registered.
    pub async fn get(&self, id: &TenantId) -> Result<Option<Tenant>, RegistryError> {
        match self.store.get(&tenant_key(id)).await? {
            Some(record) => Ok(Some(decode(&record)?)),
            None => Ok(None),
        }
    }

    /// The tenant with this id, or [`RegistryError::NotRegistered`].
    pub async fn require(&self, id: &str) -> Result<Tenant, RegistryError> {
        let parsed: TenantId = id.parse().map_err(|_| RegistryError::NotRegistered(id.to_string()))?;
        self.get(&parsed)
            .await?
            .ok_or_else(|| RegistryError::NotRegistered(id.to_string()))
    }

    /// Every registered tenant, by tenant id, at most `limit`.
    pub async fn list(&self, limit: usize) -> Result<Vec<Tenant>, RegistryError> {
        let records = self.store.collection(TENANTS_COLLECTION, "", limit).await?;
        records.iter().map(|r| decode(r).map_err(RegistryError::from)).collect()
    }

    /// Removes a tenant; returns whether it was there.
    pub async fn remove(&self, id: &TenantId) -> Result<bool, RegistryError> {
        let Some(record) = self.store.get(&tenant_key(id)).await? else {
            return Ok(false);
        };
        self.store
            .transact(vec![Write::Delete {
                key: record.key,
                condition: Condition::Version(record.version),
            }])
            .await?;
        Ok(true)
    }
}

fn decode(record: &Record) -> Result<Tenant, StoreError> {
    crate::json::from_value(record.body.clone()).map_err(|reason| StoreError::Corrupt {
        key: record.key.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_must_be_a_guid() {
        let err = "contoso".parse::<TenantId>().unwrap_err();
        assert_eq!(err.field, "tenant_id");
        assert!(err.problem.contains("not a GUID"), "{err}");
        let ok: TenantId = "72F988BF-86F1-41AF-91AB-2D7CD011DB47".parse().unwrap();
        assert_eq!(ok.as_str(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
    }

    #[test]
    fn access_role_groups_are_the_role_groups_onboarding_creates() {
        let mut settings = TenantSettings::default();
        assert_eq!(
            settings.access_role_groups,
            ["Modern Workplace Roles-Service Engineers", "Modern Workplace Roles-SOC"]
        );
        settings
            .set("access_role_groups", "modern workplace roles-soc")
            .unwrap();
        assert_eq!(settings.access_role_groups, ["Modern Workplace Roles-SOC"]);
        let err = settings
            .set("access_role_groups", "Modern Workplace Roles-SOC, Global Admins")
            .unwrap_err();
        assert_eq!(err.field, "access_role_groups");
        assert!(
            err.problem
                .contains("\"Global Admins\" is not a role group onboarding creates"),
            "{err}"
        );
        assert_eq!(settings.access_role_groups, ["Modern Workplace Roles-SOC"], "unchanged");
    }

    #[test]
    fn domains_are_checked() {
        assert!("contoso.onmicrosoft.com".parse::<Domain>().is_ok());
        for bad in ["", "contoso", "-a.com", "a..com", "con toso.com", "a.123"] {
            let err = bad.parse::<Domain>().unwrap_err();
            assert_eq!(err.field, "domain", "{bad}");
        }
    }

    #[test]
    fn credential_refs_parse_and_print_back() {
        for s in [
            "env:CONTOSO_SECRET",
            "file:/etc/mdops/contoso",
            "certificate:/c.pem",
            "certificate:/c.pfx:PFX_PASS",
            "workload-identity:/var/run/token",
            "managed-identity",
            "aws-secret:arn:aws:secretsmanager:eu-west-1:123456789012:secret:contoso",
        ] {
            let parsed = CredentialRef::parse(s).unwrap();
            assert_eq!(parsed.to_string(), s);
        }
        assert_eq!(CredentialRef::parse("secret:hunter2").unwrap_err().field, "credential");
        assert!(
            CredentialRef::parse("env:")
                .unwrap_err()
                .problem
                .contains("needs VARIABLE")
        );
        assert!(CredentialRef::parse("env:NOT-A-VAR").is_err());
    }

    #[test]
    fn settings_name_the_field_on_error() {
        let mut s = TenantSettings::default();
        assert_eq!(s.set("colour", "blue").unwrap_err().field, "colour");
        assert_eq!(s.set("access_max_hours", "1000").unwrap_err().field, "access_max_hours");
        assert_eq!(s.set("usage_location", "USA").unwrap_err().field, "usage_location");
        s.set("usage_location", "gb").unwrap();
        assert_eq!(s.usage_location.as_deref(), Some("GB"));
        let narrowing = s.set("deferral.broad.quality_days", "0").unwrap_err();
        assert_eq!(narrowing.field, "deferral.broad");
        s.set("deferral.broad.quality_days", "14").unwrap();
        assert_eq!(s.deferrals.broad.quality_days, 14);
    }

    #[test]
    fn the_baseline_is_a_template_by_default_and_the_profile_only_when_chosen() {
        let mut s = TenantSettings::default();
        assert_eq!(s.security_baseline, SecurityBaselineKind::Template);
        assert_eq!(s.security_baseline_template_id, DEFAULT_SECURITY_BASELINE_TEMPLATE_ID);
        assert_eq!(
            s.set("security_baseline", "gpo").unwrap_err().field,
            "security_baseline"
        );
        s.set("security_baseline", "endpoint-protection-profile").unwrap();
        assert_eq!(s.security_baseline, SecurityBaselineKind::EndpointProtectionProfile);
        let bad = s.set("security_baseline_template_id", "windows").unwrap_err();
        assert_eq!(bad.field, "security_baseline_template_id");
        s.set("security_baseline_template_id", "A0F9C6D3-6A3E-4F4B-9B1E-0C2D3E4F5A6B")
            .unwrap();
        assert_eq!(s.security_baseline_template_id, "a0f9c6d3-6a3e-4f4b-9b1e-0c2d3e4f5a6b");
        let old: TenantSettings = serde_json::from_str(r#"{"account_prefix": "mmd"}"#).unwrap();
        assert_eq!(
            old.security_baseline,
            SecurityBaselineKind::Template,
            "stored settings without it read the default"
        );
    }

    #[test]
    fn default_deferrals_widen() {
        RingDeferrals::default().validate().unwrap();
    }
}
