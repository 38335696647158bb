//! Intune: device configurations (update rings, the security baseline), their assignments,
//! detected apps and mobile apps.

use serde::{Deserialize, Serialize};

use crate::client::{DEFAULT_MAX_PAGES, Query, TenantGraph};
use crate::error::Result;

/// A device configuration (any `@odata.type`); only the fields mdops reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceConfiguration {
    /// Object id.
    pub id: String,
    /// Name: the natural key mdops finds its policies by.
    pub display_name: String,
    /// e.g. `#microsoft.graph.windowsUpdateForBusinessConfiguration`.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Version, bumped by Intune on each change.
    #[serde(default)]
    pub version: Option<i64>,
}

/// `$select` for [`DeviceConfiguration`] (`@odata.type` always comes back).
pub const DEVICE_CONFIGURATION_SELECT: &[&str] = &["id", "displayName", "description", "version"];

/// One assignment of a configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeviceConfigurationAssignment {
    /// Assignment id.
    pub id: String,
    /// Target (`groupAssignmentTarget` with a `groupId`, ...).
    pub target: serde_json::Value,
}

impl DeviceConfigurationAssignment {
    /// The group the assignment targets, if it targets one.
    pub fn group_id(&self) -> Option<&str> {
        self.target.get("groupId").and_then(|v| v.as_str())
    }
}

/// An app Intune detected on managed devices.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectedApp {
    /// Id.
    pub id: String,
    /// Name.
    pub display_name: String,
    /// Version.
    #[serde(default)]
    pub version: Option<String>,
    /// Devices it was found on.
    #[serde(default)]
    pub device_count: i64,
}

/// `$select` for [`DetectedApp`].
pub const DETECTED_APP_SELECT: &[&str] = &["id", "displayName", "version", "deviceCount"];

/// An app in Intune's catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MobileApp {
    /// Id.
    pub id: String,
    /// Name.
    pub display_name: String,
    /// Publisher.
    #[serde(default)]
    pub publisher: Option<String>,
    /// App type, e.g. `#microsoft.graph.win32LobApp`.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
}

/// `$select` for [`MobileApp`].
pub const MOBILE_APP_SELECT: &[&str] = &["id", "displayName", "publisher"];

#[derive(Serialize)]
struct Assign {
    assignments: Vec<serde_json::Value>,
}

impl TenantGraph {
    /// Device configurations, optionally filtered (`displayName eq 'MMD Test ring'`).
    pub async fn list_device_configurations(&self, filter: Option<&str>) -> Result<Vec<DeviceConfiguration>> {
        let mut q = Query::select(DEVICE_CONFIGURATION_SELECT);
        q.filter = filter.map(str::to_string);
        self.list_all("deviceManagement/deviceConfigurations", &q, DEFAULT_MAX_PAGES)
            .await
    }

    /// Creates a device configuration. `body` must carry its `@odata.type` and settings.
    pub async fn create_device_configuration(&self, body: &serde_json::Value) -> Result<DeviceConfiguration> {
        self.post("deviceManagement/deviceConfigurations", body).await
    }

    /// Replaces a configuration's assignments with these groups (Graph's `assign` action).
    pub async fn assign_device_configuration(&self, configuration_id: &str, group_ids: &[&str]) -> Result<()> {
        let body = Assign {
            assignments: group_ids
                .iter()
                .map(|g| {
                    serde_json::json!({"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": g}})
                })
                .collect(),
        };
        self.post_no_content(
            &format!("deviceManagement/deviceConfigurations/{configuration_id}/assign"),
            &body,
        )
        .await
    }

    /// A configuration's assignments.
    pub async fn list_device_configuration_assignments(
        &self,
        configuration_id: &str,
    ) -> Result<Vec<DeviceConfigurationAssignment>> {
        self.list_all(
            &format!("deviceManagement/deviceConfigurations/{configuration_id}/assignments"),
            &Query::default(),
            DEFAULT_MAX_PAGES,
        )
        .await
    }

    /// Apps detected on managed devices (the inventory step).
    pub async fn list_detected_apps(&self) -> Result<Vec<DetectedApp>> {
        self.list_all(
            "deviceManagement/detectedApps",
            &Query::select(DETECTED_APP_SELECT),
            DEFAULT_MAX_PAGES,
        )
        .await
    }

    /// Apps in the Intune catalogue, optionally filtered.
    pub async fn list_mobile_apps(&self, filter: Option<&str>) -> Result<Vec<MobileApp>> {
        let mut q = Query::select(MOBILE_APP_SELECT);
        q.filter = filter.map(str::to_string);
        self.list_all("deviceAppManagement/mobileApps", &q, DEFAULT_MAX_PAGES)
            .await
    }
}
