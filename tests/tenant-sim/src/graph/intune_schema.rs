//! The properties Intune accepts on the device configuration types the product sends, with their
//! JSON kinds and enumerations, so a body with an unknown property or an invalid enum value is
//! refused with Graph's 400 (`BadRequest`), as the real service does.
//!
//! Taken from the v1.0 reference: deviceConfiguration
//! (<https://learn.microsoft.com/en-us/graph/api/resources/intune-deviceconfig-deviceconfiguration>),
//! windowsUpdateForBusinessConfiguration
//! (<https://learn.microsoft.com/en-us/graph/api/resources/intune-deviceconfig-windowsupdateforbusinessconfiguration>),
//! windows10EndpointProtectionConfiguration
//! (<https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-windows10endpointprotectionconfiguration-create>).
//! Other accepted types are checked for their base properties' kinds only (see the README).

use serde_json::{Map, Value};

use super::odata::GraphError;

/// What a property's JSON value must be.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    Text,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A JSON array.
    Array,
    /// A JSON object (complex type).
    Object,
}

/// Any Int32.
const INT: Kind = Kind::Int {
    min: i32::MIN as i64,
    max: i32::MAX as i64,
};

/// Writable properties every device configuration has.
const BASE: &[(&str, Kind)] = &[
    ("description", Kind::Text),
    ("displayName", Kind::Text),
    ("roleScopeTagIds", Kind::Array),
    ("deviceManagementApplicabilityRuleOsEdition", Kind::Object),
    ("deviceManagementApplicabilityRuleOsVersion", Kind::Object),
    ("deviceManagementApplicabilityRuleDeviceMode", Kind::Object),
];

/// Properties the service maintains; a body may not set them.
pub const READ_ONLY: &[&str] = &[
    "createdDateTime",
    "lastModifiedDateTime",
    "version",
    "supportsScopeTags",
    "featureUpdatesPauseStartDate",
    "qualityUpdatesPauseStartDate",
];

const ENABLEMENT: &[&str] = &["notConfigured", "enabled", "disabled"];

const WINDOWS_UPDATE_FOR_BUSINESS: &[(&str, Kind)] = &[
    (
        "automaticUpdateMode",
        Kind::Enum(&[
            "userDefined",
            "notifyDownload",
            "autoInstallAtMaintenanceTime",
            "autoInstallAndRebootAtMaintenanceTime",
            "autoInstallAndRebootAtScheduledTime",
            "autoInstallAndRebootWithoutEndUserControl",
            "windowsDefault",
        ]),
    ),
    (
        "autoRestartNotificationDismissal",
        Kind::Enum(&["notConfigured", "automatic", "user"]),
    ),
    (
        "businessReadyUpdatesOnly",
        Kind::Enum(&[
            "userDefined",
            "all",
            "businessReadyOnly",
            "windowsInsiderBuildFast",
            "windowsInsiderBuildSlow",
            "windowsInsiderBuildRelease",
        ]),
    ),
    ("deadlineForFeatureUpdatesInDays", Kind::Int { min: 0, max: 30 }),
    ("deadlineForQualityUpdatesInDays", Kind::Int { min: 0, max: 30 }),
    ("deadlineGracePeriodInDays", Kind::Int { min: 0, max: 7 }),
    (
        "deliveryOptimizationMode",
        Kind::Enum(&[
            "userDefined",
            "httpOnly",
            "httpWithPeeringNat",
            "httpWithPeeringPrivateGroup",
            "httpWithInternetPeering",
            "simpleDownload",
            "bypassMode",
        ]),
    ),
    ("driversExcluded", Kind::Bool),
    ("engagedRestartDeadlineInDays", Kind::Int { min: 2, max: 30 }),
    ("engagedRestartSnoozeScheduleInDays", Kind::Int { min: 1, max: 3 }),
    ("engagedRestartTransitionScheduleInDays", Kind::Int { min: 0, max: 30 }),
    ("featureUpdatesDeferralPeriodInDays", Kind::Int { min: 0, max: 365 }),
    ("featureUpdatesPaused", Kind::Bool),
    ("featureUpdatesPauseExpiryDateTime", Kind::Text),
    ("featureUpdatesRollbackStartDateTime", Kind::Text),
    ("featureUpdatesRollbackWindowInDays", Kind::Int { min: 2, max: 60 }),
    ("featureUpdatesWillBeRolledBack", Kind::Bool),
    ("installationSchedule", Kind::Object),
    ("microsoftUpdateServiceAllowed", Kind::Bool),
    ("postponeRebootUntilAfterDeadline", Kind::Bool),
    (
        "prereleaseFeatures",
        Kind::Enum(&[
            "userDefined",
            "settingsOnly",
            "settingsAndExperimentations",
            "notAllowed",
        ]),
    ),
    ("qualityUpdatesDeferralPeriodInDays", Kind::Int { min: 0, max: 30 }),
    ("qualityUpdatesPaused", Kind::Bool),
    ("qualityUpdatesPauseExpiryDateTime", Kind::Text),
    ("qualityUpdatesRollbackStartDateTime", Kind::Text),
    ("qualityUpdatesWillBeRolledBack", Kind::Bool),
    ("scheduleImminentRestartWarningInMinutes", INT),
    ("scheduleRestartWarningInHours", INT),
    ("skipChecksBeforeRestart", Kind::Bool),
    (
        "updateNotificationLevel",
        Kind::Enum(&[
            "notConfigured",
            "defaultNotifications",
            "restartWarningsOnly",
            "disableAllNotifications",
        ]),
    ),
    (
        "updateWeeks",
        Kind::Enum(&[
            "userDefined",
            "firstWeek",
            "secondWeek",
            "thirdWeek",
            "fourthWeek",
            "everyWeek",
        ]),
    ),
    ("userPauseAccess", Kind::Enum(ENABLEMENT)),
    ("userWindowsUpdateScanAccess", Kind::Enum(ENABLEMENT)),
];

const WINDOWS10_ENDPOINT_PROTECTION: &[(&str, Kind)] = &[
    ("firewallBlockStatefulFTP", Kind::Bool),
    (
        "firewallIdleTimeoutForSecurityAssociationInSeconds",
        Kind::Int { min: 300, max: 3600 },
    ),
    (
        "firewallPreSharedKeyEncodingMethod",
        Kind::Enum(&["deviceDefault", "none", "utF8"]),
    ),
    ("firewallIPSecExemptionsAllowNeighborDiscovery", Kind::Bool),
    ("firewallIPSecExemptionsAllowICMP", Kind::Bool),
    ("firewallIPSecExemptionsAllowRouterDiscovery", Kind::Bool),
    ("firewallIPSecExemptionsAllowDHCP", Kind::Bool),
    (
        "firewallCertificateRevocationListCheckMethod",
        Kind::Enum(&["deviceDefault", "none", "attempt", "require"]),
    ),
    ("firewallMergeKeyingModuleSettings", Kind::Bool),
    (
        "firewallPacketQueueingMethod",
        Kind::Enum(&[
            "deviceDefault",
            "disabled",
            "queueInbound",
            "queueOutbound",
            "queueBoth",
        ]),
    ),
    ("firewallProfileDomain", Kind::Object),
    ("firewallProfilePublic", Kind::Object),
    ("firewallProfilePrivate", Kind::Object),
    ("defenderAttackSurfaceReductionExcludedPaths", Kind::Array),
    ("defenderGuardedFoldersAllowedAppPaths", Kind::Array),
    ("defenderAdditionalGuardedFolders", Kind::Array),
    ("defenderExploitProtectionXml", Kind::Text),
    ("defenderExploitProtectionXmlFileName", Kind::Text),
    ("defenderSecurityCenterBlockExploitProtectionOverride", Kind::Bool),
    (
        "appLockerApplicationControl",
        Kind::Enum(&[
            "notConfigured",
            "enforceComponentsAndStoreApps",
            "auditComponentsAndStoreApps",
            "enforceComponentsStoreAppsAndSmartlocker",
            "auditComponentsStoreAppsAndSmartlocker",
        ]),
    ),
    ("smartScreenEnableInShell", Kind::Bool),
    ("smartScreenBlockOverrideForFiles", Kind::Bool),
    ("applicationGuardEnabled", Kind::Bool),
    (
        "applicationGuardBlockFileTransfer",
        Kind::Enum(&[
            "notConfigured",
            "blockImageAndTextFile",
            "blockImageFile",
            "blockNone",
            "blockTextFile",
        ]),
    ),
    ("applicationGuardBlockNonEnterpriseContent", Kind::Bool),
    ("applicationGuardAllowPersistence", Kind::Bool),
    ("applicationGuardForceAuditing", Kind::Bool),
    (
        "applicationGuardBlockClipboardSharing",
        Kind::Enum(&[
            "notConfigured",
            "blockBoth",
            "blockHostToContainer",
            "blockContainerToHost",
            "blockNone",
        ]),
    ),
    ("applicationGuardAllowPrintToPDF", Kind::Bool),
    ("applicationGuardAllowPrintToXPS", Kind::Bool),
    ("applicationGuardAllowPrintToLocalPrinters", Kind::Bool),
    ("applicationGuardAllowPrintToNetworkPrinters", Kind::Bool),
    ("bitLockerDisableWarningForOtherDiskEncryption", Kind::Bool),
    ("bitLockerEnableStorageCardEncryptionOnMobile", Kind::Bool),
    ("bitLockerEncryptDevice", Kind::Bool),
    ("bitLockerRemovableDrivePolicy", Kind::Object),
];

/// The type-specific properties of a configuration type, when the simulator knows them all.
fn properties_of(odata_type: &str) -> Option<&'static [(&'static str, Kind)]> {
    match odata_type.trim_start_matches('#') {
        "microsoft.graph.windowsUpdateForBusinessConfiguration" => Some(WINDOWS_UPDATE_FOR_BUSINESS),
        "microsoft.graph.windows10EndpointProtectionConfiguration" => Some(WINDOWS10_ENDPOINT_PROTECTION),
        _ => None,
    }
}

fn check_kind(name: &str, kind: Kind, value: &Value, odata_type: &str) -> Result<(), GraphError> {
    let bad = |what: String| GraphError::bad_request_generic(format!("Invalid value for property '{name}': {what}."));
    if value.is_null() {
        return Ok(());
    }
    match kind {
        Kind::Bool if !value.is_boolean() => Err(bad("expected a Boolean".into())),
        Kind::Int { min, max } => match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            _ if min == i32::MIN as i64 => Err(bad("expected an Int32".into())),
            _ => Err(bad(format!("must be an integer from {min} to {max}"))),
        },
        Kind::Text if !value.is_string() => Err(bad("expected a String".into())),
        Kind::Enum(values) => match value.as_str() {
            Some(v) if values.contains(&v) => Ok(()),
            _ => Err(GraphError::bad_request_generic(format!(
                "Requested value '{}' was not found for property '{name}' of type '{}'; possible values: {}.",
                value.as_str().unwrap_or(&value.to_string()),
                odata_type.trim_start_matches('#'),
                values.join(", ")
            ))),
        },
        Kind::Array if !value.is_array() => Err(bad("expected a collection".into())),
        Kind::Object if !value.is_object() => Err(bad("expected an object".into())),
        _ => Ok(()),
    }
}

/// Checks a create or update body of a configuration of `odata_type`: no read-only property, no
/// property the type does not have, every value of its property's kind.
pub fn validate(odata_type: &str, body: &Map<String, Value>) -> Result<(), GraphError> {
    let specific = properties_of(odata_type);
    for (name, value) in body {
        if name == "@odata.type" {
            continue;
        }
        if READ_ONLY.contains(&name.as_str()) {
            return Err(GraphError::bad_request_generic(format!(
                "Property '{name}' is read-only."
            )));
        }
        let kind = BASE
            .iter()
            .chain(specific.unwrap_or(&[]))
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k);
        match (kind, specific) {
            (Some(kind), _) => check_kind(name, kind, value, odata_type)?,
            (None, Some(_)) => {
                return Err(GraphError::bad_request_generic(format!(
                    "The property '{name}' does not exist on type '{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
                    odata_type.trim_start_matches('#')
                )));
            }
            // A type whose full property list the simulator does not carry.
            (None, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn unknown_properties_bad_enums_and_ranges_are_refused() {
        let wufb = "#microsoft.graph.windowsUpdateForBusinessConfiguration";
        assert!(
            validate(
                wufb,
                &body(json!({"displayName": "x", "automaticUpdateMode": "windowsDefault"}))
            )
            .is_ok()
        );
        let e = validate(wufb, &body(json!({"automaticUpdateMode": "whenever"}))).unwrap_err();
        assert!(
            e.message.contains("whenever") && e.message.contains("automaticUpdateMode"),
            "{e:?}"
        );
        let e = validate(wufb, &body(json!({"bitLockerEncryptDevice": true}))).unwrap_err();
        assert!(e.message.contains("does not exist on type"), "{e:?}");
        assert!(validate(wufb, &body(json!({"qualityUpdatesDeferralPeriodInDays": 31}))).is_err());
        assert!(validate(wufb, &body(json!({"driversExcluded": "no"}))).is_err());
        let ep = "#microsoft.graph.windows10EndpointProtectionConfiguration";
        assert!(validate(ep, &body(json!({"bitLockerEncryptDevice": true}))).is_ok());
        assert!(validate(ep, &body(json!({"firewallPacketQueueingMethod": "sometimes"}))).is_err());
        assert!(validate(ep, &body(json!({"version": 3}))).is_err());
    }
}
