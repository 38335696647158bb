//! In-memory state of the simulator: tenants with their apps, directory objects (as Graph JSON),
//! memberships, mail, knobs, faults and throttle windows, plus the request log. One mutex guards it
//! all; handlers are synchronous functions over `&mut Tenant`, so the lock is never held across I/O.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::chaos::Chaos;
use crate::faults::{Fault, InjectedFault};
use crate::keys::SigningKey;
use crate::knobs::Knobs;
use crate::seeds::CertificateSeed;

/// Most request-log entries kept; older ones are dropped so a long rehearsal cannot exhaust memory.
pub const MAX_LOG_ENTRIES: usize = 100_000;

/// One directory or Intune object: its Graph JSON and when it becomes visible (replication lag).
#[derive(Debug, Clone)]
pub struct Obj {
    /// Object id.
    pub id: String,
    /// Reads and references see the object from this instant on.
    pub visible_at: Instant,
    /// The Graph JSON (with `id`; write-only properties such as `passwordProfile` are not stored).
    pub data: Map<String, Value>,
}

/// A collection of objects in creation order, indexed by lower-case id (tenants hold thousands of
/// devices, and every member reference looks one up).
#[derive(Debug, Default, Clone)]
pub struct Collection {
    items: Vec<Obj>,
    index: HashMap<String, usize>,
}

impl Collection {
    /// Objects a reader sees now.
    pub fn visible(&self, now: Instant) -> impl Iterator<Item = &Obj> {
        self.items.iter().filter(move |o| o.visible_at <= now)
    }

    /// Every object, visible or not (uniqueness checks see through replication lag).
    pub fn all(&self) -> impl Iterator<Item = &Obj> {
        self.items.iter()
    }

    /// A visible object by id (case-insensitive, as GUIDs are).
    pub fn get(&self, id: &str, now: Instant) -> Option<&Obj> {
        let i = *self.index.get(&id.to_ascii_lowercase())?;
        self.items.get(i).filter(|o| o.visible_at <= now)
    }

    /// A visible object by id, for change.
    pub fn get_mut(&mut self, id: &str, now: Instant) -> Option<&mut Obj> {
        let i = *self.index.get(&id.to_ascii_lowercase())?;
        self.items.get_mut(i).filter(|o| o.visible_at <= now)
    }

    /// Adds an object.
    pub fn insert(&mut self, obj: Obj) {
        self.index.insert(obj.id.to_ascii_lowercase(), self.items.len());
        self.items.push(obj);
    }

    /// Removes a visible object; true when it existed.
    pub fn remove(&mut self, id: &str, now: Instant) -> bool {
        if self.get(id, now).is_none() {
            return false;
        }
        self.items.retain(|o| !o.id.eq_ignore_ascii_case(id));
        self.index = self
            .items
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id.to_ascii_lowercase(), i))
            .collect();
        true
    }

    /// Number of objects, visible or not.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// An application's service principal in a tenant.
#[derive(Debug, Clone)]
pub struct App {
    /// Application (client) id.
    pub client_id: String,
    /// Service principal object id (the `oid` of its tokens).
    pub object_id: String,
    /// Display name.
    pub display_name: String,
    /// Client secret.
    pub secret: Option<SecretString>,
    /// Certificates for client assertions.
    pub certificates: Vec<CertificateSeed>,
    /// Granted application permissions.
    pub permissions: Vec<String>,
}

/// A mail delivered by `sendMail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentMail {
    /// UPN of the sending user.
    pub from: String,
    /// Recipient addresses.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Body content.
    pub body: String,
    /// Body content type (`Text` or `HTML`).
    pub content_type: String,
    /// When it was sent (RFC 3339).
    pub sent_at: String,
}

/// Which throttle quota a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    /// Entra ID writes.
    IdentityWrite,
    /// Intune writes.
    IntuneWrite,
    /// Reads (GET), metered too.
    Read,
}

/// A user PATCH not yet replicated: applied once its time comes.
#[derive(Debug, Clone)]
pub struct PendingPatch {
    /// Reads see the change from this instant on.
    pub visible_at: Instant,
    /// The user's id.
    pub user_id: String,
    /// The properties it changes.
    pub changes: Map<String, Value>,
}

/// Tenant-wide identity settings read by a readiness check: security defaults
/// (`/policies/identitySecurityDefaultsEnforcementPolicy`) and who may invite guests
/// (`/policies/authorizationPolicy`, `allowInvitesFrom`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityPolicies {
    /// Security defaults on. A new real tenant has them on; seeded tenants start as a provider
    /// prepares one (off), so a test turns them on to see the readiness finding.
    pub security_defaults_enabled: bool,
    /// `none`, `adminsAndGuestInviters`, `adminsGuestInvitersAndAllMembers` or `everyone`
    /// (Entra's default).
    pub allow_invites_from: String,
}

/// The values `allowInvitesFrom` takes (authorizationPolicy resource type).
pub const ALLOW_INVITES_FROM: &[&str] = &[
    "none",
    "adminsAndGuestInviters",
    "adminsGuestInvitersAndAllMembers",
    "everyone",
];

impl Default for IdentityPolicies {
    fn default() -> Self {
        IdentityPolicies {
            security_defaults_enabled: false,
            allow_invites_from: "everyone".into(),
        }
    }
}

/// One tenant.
#[derive(Debug)]
pub struct Tenant {
    /// Tenant id (GUID).
    pub id: String,
    /// Short name.
    pub name: String,
    /// Organization display name.
    pub display_name: String,
    /// Verified domains; the first is the initial `onmicrosoft.com` domain.
    pub domains: Vec<String>,
    /// Token signing key.
    pub key: Arc<SigningKey>,
    /// Apps by lower-case client id.
    pub apps: BTreeMap<String, App>,
    /// `mobileDeviceManagementAuthority`.
    pub mdm_authority: String,
    /// Users.
    pub users: Collection,
    /// Groups.
    pub groups: Collection,
    /// Activated directory roles.
    pub directory_roles: Collection,
    /// Intune device configurations.
    pub device_configurations: Collection,
    /// User PATCHes waiting out the replication lag, oldest first.
    pub pending_patches: Vec<PendingPatch>,
    /// Intune template instances (security baselines), Graph beta.
    pub intents: Collection,
    /// Intune templates (`/beta/deviceManagement/templates`).
    pub intent_templates: Collection,
    /// Intune detected apps.
    pub detected_apps: Collection,
    /// Intune mobile apps.
    pub mobile_apps: Collection,
    /// Entra ID devices.
    pub devices: Collection,
    /// Subscribed SKUs.
    pub skus: Collection,
    /// Members (object ids) of groups and directory roles, by lower-case group/role id.
    pub members: HashMap<String, Vec<String>>,
    /// Assignments of device configurations, by configuration id.
    pub assignments: HashMap<String, Vec<Value>>,
    /// Assignments of mobile apps, by lower-case app id.
    pub app_assignments: HashMap<String, Vec<Value>>,
    /// Conditional access policies.
    pub conditional_access_policies: Collection,
    /// Security defaults and guest invitation settings.
    pub identity_policies: IdentityPolicies,
    /// Mail delivered by `sendMail`.
    pub mail: Vec<SentMail>,
    /// Knobs.
    pub knobs: Knobs,
    /// Active faults.
    pub faults: Vec<Fault>,
    /// Times the faults were cleared: a hang on the JWKS route ends early when this moves, so a
    /// test can hold a key fetch exactly as long as it needs.
    pub fault_clears: u64,
    /// Random faults at set rates, when turned on.
    pub chaos: Option<Chaos>,
    /// Throttle windows: instants of counted requests per (client id, quota).
    pub throttle: HashMap<(String, Quota), VecDeque<Instant>>,
}

impl Tenant {
    /// Applies the PATCHes whose replication lag has passed, in the order they were made.
    pub fn apply_due_patches(&mut self, now: Instant) {
        if self.pending_patches.is_empty() {
            return;
        }
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_patches)
            .into_iter()
            .partition(|p| p.visible_at <= now);
        self.pending_patches = waiting;
        for patch in due {
            if let Some(user) = self.users.get_mut(&patch.user_id, now) {
                user.data.extend(patch.changes);
            }
        }
    }

    /// Whether a tenant address (id, name, or verified domain) names this tenant.
    pub fn answers_to(&self, address: &str) -> bool {
        self.id.eq_ignore_ascii_case(address)
            || self.name.eq_ignore_ascii_case(address)
            || self.domains.iter().any(|d| d.eq_ignore_ascii_case(address))
    }

    /// The initial domain (`{name}.onmicrosoft.com`).
    pub fn initial_domain(&self) -> &str {
        self.domains.first().map(String::as_str).unwrap_or("")
    }

    /// Whether an object id is a member of a group or role.
    pub fn is_member(&self, container: &str, member: &str) -> bool {
        self.members
            .get(&container.to_ascii_lowercase())
            .is_some_and(|m| m.iter().any(|x| x.eq_ignore_ascii_case(member)))
    }

    /// Object counts per kind (every object, visible or not).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        c.insert("users".into(), self.users.len());
        c.insert("groups".into(), self.groups.len());
        c.insert("directoryRoles".into(), self.directory_roles.len());
        c.insert("deviceConfigurations".into(), self.device_configurations.len());
        c.insert("intents".into(), self.intents.len());
        c.insert("detectedApps".into(), self.detected_apps.len());
        c.insert("mobileApps".into(), self.mobile_apps.len());
        c.insert("devices".into(), self.devices.len());
        c.insert("subscribedSkus".into(), self.skus.len());
        c.insert("memberships".into(), self.members.values().map(Vec::len).sum());
        c.insert("assignments".into(), self.assignments.values().map(Vec::len).sum());
        c.insert(
            "appAssignments".into(),
            self.app_assignments.values().map(Vec::len).sum(),
        );
        c.insert(
            "conditionalAccessPolicies".into(),
            self.conditional_access_policies.len(),
        );
        c.insert("mail".into(), self.mail.len());
        c
    }

    /// A collection by its Graph name, for the control API's object removal.
    pub fn collection_mut(&mut self, kind: &str) -> Option<&mut Collection> {
        Some(match kind {
            "users" => &mut self.users,
            "groups" => &mut self.groups,
            "deviceConfigurations" => &mut self.device_configurations,
            "intents" => &mut self.intents,
            "detectedApps" => &mut self.detected_apps,
            "mobileApps" => &mut self.mobile_apps,
            "devices" => &mut self.devices,
            "conditionalAccessPolicies" => &mut self.conditional_access_policies,
            _ => return None,
        })
    }

    /// A collection by its Graph name, for the control API's object dump.
    pub fn collection(&self, kind: &str) -> Option<&Collection> {
        Some(match kind {
            "users" => &self.users,
            "groups" => &self.groups,
            "directoryRoles" => &self.directory_roles,
            "deviceConfigurations" => &self.device_configurations,
            "intents" => &self.intents,
            "templates" => &self.intent_templates,
            "detectedApps" => &self.detected_apps,
            "mobileApps" => &self.mobile_apps,
            "devices" => &self.devices,
            "subscribedSkus" => &self.skus,
            "conditionalAccessPolicies" => &self.conditional_access_policies,
            _ => return None,
        })
    }
}

/// One request as the log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLogEntry {
    /// Position in the log (starts at 1, never reused).
    pub seq: u64,
    /// When it was answered (RFC 3339).
    pub time: String,
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/v1.0/users` (for `$batch` items, `/v1.0` + the item URL's path).
    pub path: String,
    /// Raw query string (empty when none).
    pub query: String,
    /// Status answered (0 for a reset connection).
    pub status: u16,
    /// Tenant id, when known.
    pub tenant: Option<String>,
    /// Client id of the calling app, when known.
    pub client_id: Option<String>,
    /// `client-request-id` header, when sent.
    pub client_request_id: Option<String>,
    /// `request-id` answered.
    pub request_id: String,
    /// Request body (JSON, or the form fields of a token request with secrets redacted).
    pub body: Option<Value>,
    /// For an item of a `$batch`, the batch's `request-id`.
    pub batch_request_id: Option<String>,
    /// The fault injected into this request, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<InjectedFault>,
}

/// Filter for reading the request log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestLogQuery {
    /// Only this tenant (id or name).
    pub tenant: Option<String>,
    /// Only entries with `seq` greater than this.
    pub after: Option<u64>,
    /// Only this method.
    pub method: Option<String>,
    /// Only paths starting with this.
    pub path_prefix: Option<String>,
}

/// The whole simulator state.
#[derive(Debug, Default)]
pub struct SimState {
    /// Tenants.
    pub tenants: Vec<Tenant>,
    /// Request log, oldest first.
    pub log: VecDeque<RequestLogEntry>,
    /// Last log sequence number handed out.
    pub log_seq: u64,
    /// Last fault id handed out.
    pub fault_seq: u64,
}

impl SimState {
    /// A tenant by id, name or domain.
    pub fn tenant(&self, address: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.answers_to(address))
    }

    /// A tenant by id, name or domain, for change.
    pub fn tenant_mut(&mut self, address: &str) -> Option<&mut Tenant> {
        self.tenants.iter_mut().find(|t| t.answers_to(address))
    }

    /// Appends to the request log (assigning `seq`), dropping the oldest past [`MAX_LOG_ENTRIES`].
    pub fn record(&mut self, mut entry: RequestLogEntry) {
        self.log_seq += 1;
        entry.seq = self.log_seq;
        self.log.push_back(entry);
        while self.log.len() > MAX_LOG_ENTRIES {
            self.log.pop_front();
        }
    }
}

/// Shared handle on the state.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<SimState>>);

impl Shared {
    /// Locks the state; a panic elsewhere while holding the lock does not make it unusable.
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
