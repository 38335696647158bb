//! Onboarding as a resumable state machine.
//!
//! - [`plan`]: the DAG of steps a run has.
//! - [`role_groups`]: the object ids of the role groups onboarding created, which elevation uses.
//! - [`runs`]: runs and steps in the state store, and the conditional transitions that make any
//!   message safe to deliver twice, late or after a crash.
//! - [`StepMessage`]: the queue message that carries one step of one run.
//!
//! Flow: an enrollment creates the run and all its steps in one transaction and sends the root
//! steps. A worker receives a step message, [`runs::Runs::begin`]s it (a conditional write that
//! only one delivery wins), runs its one Graph action, and reports the outcome:
//! [`runs::Runs::complete`] records the output and releases the dependents in the same
//! transaction; `retry` schedules it again; `fail` marks it failed for the dead-letter queue. Every
//! released or running step carries a deadline in the store's due index, so a step whose message
//! was lost (a crash between commit and send, a worker killed mid-step) is found and sent again by
//! [`runs::Runs::overdue`]; ensure-style actions make the extra delivery harmless.

pub mod adoption;
pub mod plan;
pub mod role_groups;
pub mod runs;

use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::tenant::TenantId;

pub use plan::{Account, DirectoryRole, Inventory, PlannedStep, RoleGroup, StepKind, plan};

/// Current version of [`StepMessage`].
pub const STEP_MESSAGE_VERSION: u64 = 1;

/// The queue message for one step of one onboarding run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepMessage {
    /// Schema version.
    pub v: u64,
    /// Always `onboarding.step`.
    pub kind: String,
    pub run_id: String,
    pub tenant_id: TenantId,
    /// Stable step name, e.g. `group:test`.
    pub step: String,
    /// The attempt the sender expects to be made (1 for the first); informational, the store decides.
    pub attempt: u32,
}

impl StepMessage {
    /// A message for `step` of `run_id`.
    pub fn new(run_id: &str, tenant_id: &TenantId, step: &str, attempt: u32) -> Self {
        StepMessage {
            v: STEP_MESSAGE_VERSION,
            kind: Self::KIND.to_string(),
            run_id: run_id.to_string(),
            tenant_id: tenant_id.clone(),
            step: step.to_string(),
            attempt,
        }
    }

    /// The JSON body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a step message always serialises")
    }
}

impl Message for StepMessage {
    const KIND: &'static str = "onboarding.step";
    const VERSIONS: &'static [u64] = &[STEP_MESSAGE_VERSION];

    fn validate(&self) -> Result<(), String> {
        if self.run_id.trim().is_empty() {
            return Err("run_id: empty".into());
        }
        self.step.parse::<StepKind>().map_err(|e| format!("step: {e}"))?;
        if self.attempt == 0 {
            return Err("attempt: must be at least 1".into());
        }
        Ok(())
    }
}

/// The `detail` of an EventBridge `TenantEnrolled` event (and the body `mdops enroll` would send).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEnrolled {
    /// The customer tenant to onboard; it must be registered (`mdops tenants add`).
    pub tenant_id: TenantId,
    /// Who enrolled it (a person's UPN or a system), for the audit.
    #[serde(default)]
    pub requested_by: Option<String>,
}

impl TenantEnrolled {
    /// Decodes an enrollment event's `detail`; the error names the field (`detail: tenant_id: ...`).
    pub fn from_detail(detail: serde_json::Value) -> Result<TenantEnrolled, String> {
        crate::json::from_value(detail).map_err(|e| format!("detail: {e}"))
    }
}

/// The `detail-type` of enrollment events.
pub const TENANT_ENROLLED: &str = "TenantEnrolled";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::decode;

    const TID: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn a_step_message_round_trips() {
        let m = StepMessage::new("r1", &TID.parse().unwrap(), "group:test", 1);
        assert_eq!(decode::<StepMessage>(&m.to_body()).unwrap(), m);
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let cases = [
            ("not json", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"kind":"onboarding.step"}"#, "v: missing"),
            (r#"{"v":9,"kind":"onboarding.step"}"#, "version 9"),
            (r#"{"v":1,"kind":"licence.assign"}"#, "does not belong"),
            (
                r#"{"v":1,"kind":"onboarding.step","run_id":"r","tenant_id":"nope","step":"preflight","attempt":1}"#,
                "tenant_id",
            ),
            (
                r#"{"v":1,"kind":"onboarding.step","run_id":"r","tenant_id":"11111111-2222-3333-4444-555555555555","step":"teleport","attempt":1}"#,
                "step: unknown",
            ),
            (
                r#"{"v":1,"kind":"onboarding.step","run_id":"r","tenant_id":"11111111-2222-3333-4444-555555555555","step":"preflight","attempt":1,"x":1}"#,
                "unknown field",
            ),
        ];
        for (body, needle) in cases {
            let err = decode::<StepMessage>(body).unwrap_err();
            assert!(err.to_string().contains(needle), "{body}: {err}");
        }
        let err = decode::<StepMessage>(
            r#"{"v":1,"kind":"onboarding.step","run_id":"r","tenant_id":"11111111-2222-3333-4444-555555555555","step":"teleport","attempt":1}"#,
        )
        .unwrap_err();
        assert_eq!(err.tenant.as_deref(), Some(TID));
        assert_eq!(err.step.as_deref(), Some("teleport"));
    }
}
