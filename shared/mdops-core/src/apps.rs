//! The app catalogue: the apps a tenant's devices are given, each with the rings it is assigned
//! to and its intent, and the queue message that ensures one app in one tenant.
//!
//! A catalogue is JSON (`mdops apps catalogue --file`; the built-in [`default_catalogue`] when a
//! tenant has none). Each app has a `key` of our own: the marker `mdops-catalogue:<key>` in the
//! app's `notes` is how the app is found again in Intune (its natural key). Two app types, both
//! created by Graph v1.0 from JSON alone (no content upload):
//! - `winget`: a `winGetApp`, from the Microsoft Store's WinGet source by `packageIdentifier`, with
//!   `installExperience.runAsAccount` (https://learn.microsoft.com/graph/api/resources/intune-apps-wingetapp?view=graph-rest-1.0,
//!   https://learn.microsoft.com/graph/api/resources/intune-apps-wingetappinstallexperience?view=graph-rest-1.0);
//! - `web`: a `webApp`, a link by `appUrl` (https://learn.microsoft.com/graph/api/intune-apps-webapp-create?view=graph-rest-1.0).
//!
//! Assignments are `mobileAppAssignment`s with a `groupAssignmentTarget` (the ring's group) and an
//! `intent` (https://learn.microsoft.com/graph/api/resources/intune-apps-mobileappassignment?view=graph-rest-1.0).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::tenant::{InvalidInput, Ring, TenantId};

/// Most apps one catalogue holds: each is one message and a few Graph calls per sync.
pub const MAX_APPS: usize = 200;
/// Longest app key.
const MAX_KEY: usize = 64;
/// Longest display name, publisher or description we send.
const MAX_TEXT: usize = 1_000;
/// What a catalogue app carries in its `notes`, followed by its key.
pub const MARKER_PREFIX: &str = "mdops-catalogue:";

/// The built-in catalogue (`catalogue/default.json` beside this crate), used for a tenant that
/// has none of its own.
const DEFAULT_CATALOGUE: &str = include_str!("../catalogue/default.json");

/// How Intune offers an app to the ring's devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    /// Installed on every device of the ring.
    Required,
    /// Offered in Company Portal.
    Available,
}

impl Intent {
    /// Graph's name (`installIntent`).
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Required => "required",
            Intent::Available => "available",
        }
    }
}

/// The app's type in Intune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// `winGetApp`.
    Winget,
    /// `webApp`.
    Web,
}

impl AppKind {
    /// The `@odata.type` of the Intune app.
    pub fn odata_type(self) -> &'static str {
        match self {
            AppKind::Winget => "#microsoft.graph.winGetApp",
            AppKind::Web => "#microsoft.graph.webApp",
        }
    }
}

/// The account a WinGet app installs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    System,
    User,
}

/// One app of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueApp {
    /// Our key: lower-case letters, digits and `-`; unique in the catalogue.
    pub key: String,
    /// The app's name in Intune and Company Portal.
    pub display_name: String,
    /// Its publisher.
    pub publisher: String,
    /// Optional description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `winget` or `web`.
    pub kind: AppKind,
    /// `winget`: the WinGet package identifier (e.g. `9WZDNCRFJ3PZ`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_identifier: Option<String>,
    /// `winget`: `system` or `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<RunAs>,
    /// `web`: the link (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_url: Option<String>,
    /// `required` or `available`.
    pub intent: Intent,
    /// The rings whose groups the app is assigned to (at least one).
    pub rings: Vec<Ring>,
}

impl CatalogueApp {
    /// The `notes` marker that finds this app again.
    pub fn marker(&self) -> String {
        format!("{MARKER_PREFIX}{}", self.key)
    }

    /// The create body for `POST /deviceAppManagement/mobileApps`.
    pub fn create_body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "@odata.type": self.kind.odata_type(),
            "displayName": self.display_name,
            "publisher": self.publisher,
            "description": self.description.clone().unwrap_or_default(),
            "notes": self.marker(),
        });
        match self.kind {
            AppKind::Winget => {
                body["packageIdentifier"] = serde_json::json!(self.package_identifier);
                body["installExperience"] = serde_json::json!({
                    "@odata.type": "#microsoft.graph.winGetAppInstallExperience",
                    "runAsAccount": self.run_as,
                });
            }
            AppKind::Web => {
                body["appUrl"] = serde_json::json!(self.app_url);
                body["useManagedBrowser"] = serde_json::json!(false);
            }
        }
        body
    }

    /// The (ring, intent) pairs the app's assignments must be.
    pub fn wanted(&self) -> BTreeSet<(Ring, Intent)> {
        self.rings.iter().map(|r| (*r, self.intent)).collect()
    }

    /// Checks one app; `at` names it in the error (`apps[2]`).
    pub fn validate(&self, at: &str) -> Result<(), InvalidInput> {
        let field = |f: &str| format!("{at}.{f}");
        let key_ok = !self.key.is_empty()
            && self.key.len() <= MAX_KEY
            && self
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !key_ok {
            return Err(InvalidInput::new(
                field("key"),
                format!(
                    "{:?}: use 1 to {MAX_KEY} lower-case letters, digits and '-' (it marks the app in Intune)",
                    self.key
                ),
            ));
        }
        for (name, value) in [
            ("display_name", Some(&self.display_name)),
            ("publisher", Some(&self.publisher)),
            ("description", self.description.as_ref()),
        ] {
            let Some(value) = value else { continue };
            if name != "description" && value.trim().is_empty() {
                return Err(InvalidInput::new(field(name), "empty; Intune needs it"));
            }
            if value.len() > MAX_TEXT {
                return Err(InvalidInput::new(
                    field(name),
                    format!("longer than {MAX_TEXT} characters"),
                ));
            }
        }
        match self.kind {
            AppKind::Winget => {
                let id = self.package_identifier.as_deref().unwrap_or_default();
                if id.trim().is_empty() || id.chars().any(char::is_whitespace) || id.len() > MAX_TEXT {
                    return Err(InvalidInput::new(
                        field("package_identifier"),
                        format!("{id:?}: a winget app needs its WinGet package identifier (e.g. 9WZDNCRFJ3PZ)"),
                    ));
                }
                if self.run_as.is_none() {
                    return Err(InvalidInput::new(
                        field("run_as"),
                        "missing: a winget app installs as \"system\" or \"user\"",
                    ));
                }
                if self.app_url.is_some() {
                    return Err(InvalidInput::new(field("app_url"), "only a web app has a URL"));
                }
            }
            AppKind::Web => {
                let url = self.app_url.as_deref().unwrap_or_default();
                let host = url.strip_prefix("https://").unwrap_or_default();
                if host.is_empty()
                    || host.starts_with('/')
                    || url.chars().any(char::is_whitespace)
                    || url.len() > MAX_TEXT
                {
                    return Err(InvalidInput::new(
                        field("app_url"),
                        format!("{url:?}: a web app needs an https:// link"),
                    ));
                }
                if self.package_identifier.is_some() || self.run_as.is_some() {
                    return Err(InvalidInput::new(
                        field("package_identifier"),
                        "only a winget app has a package identifier and run_as",
                    ));
                }
            }
        }
        if self.rings.is_empty() {
            return Err(InvalidInput::new(
                field("rings"),
                "empty: name the rings the app is assigned to (test, first, fast, broad)",
            ));
        }
        let distinct: BTreeSet<Ring> = self.rings.iter().copied().collect();
        if distinct.len() != self.rings.len() {
            return Err(InvalidInput::new(field("rings"), "a ring is named twice"));
        }
        Ok(())
    }
}

/// A tenant's catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// The apps, in the order they are reported.
    pub apps: Vec<CatalogueApp>,
}

impl Catalogue {
    /// Reads and checks a catalogue from its JSON text.
    pub fn parse(text: &str) -> Result<Catalogue, InvalidInput> {
        let catalogue: Catalogue = serde_json::from_str(text).map_err(|e| {
            InvalidInput::new(
                "catalogue",
                format!("not a valid catalogue ({e}); see docs/management.md for the format"),
            )
        })?;
        catalogue.validate()?;
        Ok(catalogue)
    }

    /// Checks every app, unique keys and display names, and the size.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.apps.len() > MAX_APPS {
            return Err(InvalidInput::new(
                "apps",
                format!("{} apps; a catalogue holds at most {MAX_APPS}", self.apps.len()),
            ));
        }
        let mut keys = BTreeMap::new();
        let mut names = BTreeMap::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = format!("apps[{i}]");
            app.validate(&at)?;
            if let Some(j) = keys.insert(app.key.clone(), i) {
                return Err(InvalidInput::new(
                    format!("{at}.key"),
                    format!("{:?} is also the key of apps[{j}]; keys are unique", app.key),
                ));
            }
            if let Some(j) = names.insert(app.display_name.trim().to_lowercase(), i) {
                return Err(InvalidInput::new(
                    format!("{at}.display_name"),
                    format!("{:?} is also the name of apps[{j}]", app.display_name),
                ));
            }
        }
        Ok(())
    }
}

/// The built-in catalogue.
pub fn default_catalogue() -> Catalogue {
    Catalogue::parse(DEFAULT_CATALOGUE).expect("the built-in catalogue is valid (tested)")
}

/// Ensures one catalogue app in one tenant: found by its marker (created only if missing), then
/// its assignments to the ring groups set to the catalogue's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMessage {
    /// Schema version.
    pub v: u64,
    /// Always [`AppMessage::KIND`].
    pub kind: String,
    /// The customer tenant.
    pub tenant_id: TenantId,
    /// The app as the catalogue has it.
    pub app: CatalogueApp,
    /// The group object id of each of the app's rings, by ring name (`test`, `first`, `fast`,
    /// `broad`; read by the sync that sent this). String keys, so a bad one is named when decoding.
    pub groups: BTreeMap<String, String>,
    /// Who asked (`schedule`, `cli:alice`).
    pub requested_by: String,
}

impl AppMessage {
    /// A message for one app.
    pub fn new(tenant_id: &TenantId, app: CatalogueApp, groups: BTreeMap<Ring, String>, requested_by: &str) -> Self {
        AppMessage {
            v: 1,
            kind: Self::KIND.to_string(),
            tenant_id: tenant_id.clone(),
            app,
            groups: groups.into_iter().map(|(r, g)| (r.as_str().to_string(), g)).collect(),
            requested_by: requested_by.to_string(),
        }
    }

    /// The ring groups by ring (keys that name no ring are refused by `validate`).
    pub fn ring_groups(&self) -> BTreeMap<Ring, String> {
        Ring::ALL
            .into_iter()
            .filter_map(|r| self.groups.get(r.as_str()).map(|g| (r, g.clone())))
            .collect()
    }

    /// The JSON body sent on the queue.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Message for AppMessage {
    const KIND: &'static str = "app.ensure";
    const VERSIONS: &'static [u64] = &[1];

    fn validate(&self) -> Result<(), String> {
        self.app.validate("app").map_err(|e| e.to_string())?;
        if let Some(bad) = self
            .groups
            .keys()
            .find(|k| !Ring::ALL.iter().any(|r| r.as_str() == k.as_str()))
        {
            return Err(format!("groups.{bad}: not a ring (test, first, fast, broad)"));
        }
        for ring in &self.app.rings {
            match self.groups.get(ring.as_str()) {
                Some(id) if uuid::Uuid::parse_str(id).is_ok() => {}
                Some(id) => return Err(format!("groups.{}: {id:?} is not an object id", ring.as_str())),
                None => return Err(format!("groups.{}: missing (the app is assigned to it)", ring.as_str())),
            }
        }
        if self.requested_by.trim().is_empty() {
            return Err("requested_by: empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::decode;

    fn web(key: &str) -> CatalogueApp {
        CatalogueApp {
            key: key.into(),
            display_name: format!("App {key}"),
            publisher: "Contoso".into(),
            description: None,
            kind: AppKind::Web,
            package_identifier: None,
            run_as: None,
            app_url: Some("https://contoso.example/app".into()),
            intent: Intent::Available,
            rings: vec![Ring::First, Ring::Broad],
        }
    }

    #[test]
    fn the_default_catalogue_is_valid_and_has_both_kinds() {
        let c = default_catalogue();
        assert!(c.apps.iter().any(|a| a.kind == AppKind::Winget));
        assert!(c.apps.iter().any(|a| a.kind == AppKind::Web));
        for app in &c.apps {
            let body = app.create_body();
            assert_eq!(body["notes"], app.marker());
            assert_eq!(body["@odata.type"], app.kind.odata_type());
        }
    }

    #[test]
    fn bad_catalogues_name_the_field_and_reason() {
        type Break = Box<dyn Fn(&mut Catalogue)>;
        let cases: Vec<(Break, &str)> = vec![
            (Box::new(|c| c.apps[0].key = "Has Space".into()), "apps[0].key"),
            (Box::new(|c| c.apps[1].key = c.apps[0].key.clone()), "apps[1].key"),
            (
                Box::new(|c| c.apps[1].display_name = c.apps[0].display_name.to_uppercase()),
                "apps[1].display_name",
            ),
            (
                Box::new(|c| c.apps[0].app_url = Some("http://insecure.example".into())),
                "apps[0].app_url",
            ),
            (Box::new(|c| c.apps[0].rings.clear()), "apps[0].rings"),
            (
                Box::new(|c| c.apps[0].rings = vec![Ring::Fast, Ring::Fast]),
                "apps[0].rings",
            ),
            (Box::new(|c| c.apps[0].publisher = " ".into()), "apps[0].publisher"),
            (
                Box::new(|c| {
                    c.apps[0].kind = AppKind::Winget;
                    c.apps[0].app_url = None;
                }),
                "apps[0].package_identifier",
            ),
            (
                Box::new(|c| {
                    c.apps[0].kind = AppKind::Winget;
                    c.apps[0].app_url = None;
                    c.apps[0].package_identifier = Some("9WZDNCRFJ3PZ".into());
                }),
                "apps[0].run_as",
            ),
        ];
        for (break_it, field) in cases {
            let mut c = Catalogue {
                apps: vec![web("a"), web("b")],
            };
            assert!(c.validate().is_ok());
            break_it(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let e = Catalogue::parse(r#"{"apps": [], "extra": 1}"#).unwrap_err();
        assert!(e.problem.contains("extra"), "{e}");
        let e = Catalogue::parse(r#"{"apps": [{"key": "x", "intent": "sometimes"}]}"#).unwrap_err();
        assert_eq!(e.field, "catalogue");
    }

    #[test]
    fn an_app_message_needs_a_group_for_each_of_its_rings() {
        let tid: TenantId = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f".parse().unwrap();
        let group = "11111111-1111-4111-8111-111111111111".to_string();
        let groups: BTreeMap<Ring, String> = Ring::ALL.into_iter().map(|r| (r, group.clone())).collect();
        let ok = AppMessage::new(&tid, web("a"), groups.clone(), "test");
        assert_eq!(decode::<AppMessage>(&ok.to_body()).unwrap(), ok);
        let mut missing = groups.clone();
        missing.remove(&Ring::Broad);
        let e = decode::<AppMessage>(&AppMessage::new(&tid, web("a"), missing, "test").to_body()).unwrap_err();
        assert!(e.problem.contains("groups.broad"), "{e}");
        let mut bad = web("a");
        bad.key = String::new();
        let e = decode::<AppMessage>(&AppMessage::new(&tid, bad, groups, "test").to_body()).unwrap_err();
        assert!(e.problem.contains("app.key"), "{e}");
    }
}
