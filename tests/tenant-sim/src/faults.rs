//! Fault injection: "fail the next N requests matching method + path prefix" with a status, a reset
//! connection, or a hang past the client's timeout, either *before* the request runs (nothing
//! applied) or *after* it (`commit_then_*`: the write is applied, then the answer is lost, the fault
//! that makes a blind re-send create a second object). Faults are per tenant and consumed in order.

use serde::{Deserialize, Serialize};

/// The longest a hang fault may last, so a forgotten fault cannot hold a connection forever.
pub const MAX_HANG_MS: u64 = 600_000;

/// A fault to add: which requests it matches, how many, and what happens to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// HTTP method to match (`GET`, `POST`, ...); `None` matches any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path prefix to match, e.g. `/v1.0/users` or `/contoso/oauth2/v2.0/token`.
    pub path_prefix: String,
    /// How many matching requests fail before the fault is used up.
    pub count: u32,
    /// What the matching requests get.
    pub action: FaultAction,
}

/// What a faulted request gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// An answer with this status and an OData error body (code defaults by status).
    Status {
        /// HTTP status, e.g. 503.
        status: u16,
        /// `Retry-After` header value, sent verbatim (`"2"`, `"0.5"`).
        #[serde(default)]
        retry_after: Option<String>,
        /// OData error code; by default derived from the status.
        #[serde(default)]
        code: Option<String>,
    },
    /// The TCP connection is reset (RST) without an answer.
    Reset,
    /// No answer for this long (capped at [`MAX_HANG_MS`]), then a 504.
    Hang {
        /// Milliseconds to hang.
        ms: u64,
    },
    /// The request is carried out (a write is applied), then the connection is reset.
    CommitThenReset,
    /// The request is carried out, then answered with this status instead (e.g. 504: a gateway
    /// that gave up waiting for a backend that went on to finish).
    CommitThenStatus {
        /// HTTP status, e.g. 504.
        status: u16,
    },
    /// The request is carried out, then no answer for this long (past the client's timeout), then 504.
    CommitThenHang {
        /// Milliseconds to hang.
        ms: u64,
    },
}

impl FaultAction {
    /// True for the faults that carry the request out before losing its answer.
    pub fn commits_first(&self) -> bool {
        matches!(
            self,
            FaultAction::CommitThenReset | FaultAction::CommitThenStatus { .. } | FaultAction::CommitThenHang { .. }
        )
    }

    /// Short name for the request log (`status`, `reset`, `hang`, `commit_then_reset`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            FaultAction::Status { .. } => "status",
            FaultAction::Reset => "reset",
            FaultAction::Hang { .. } => "hang",
            FaultAction::CommitThenReset => "commit_then_reset",
            FaultAction::CommitThenStatus { .. } => "commit_then_status",
            FaultAction::CommitThenHang { .. } => "commit_then_hang",
        }
    }
}

/// A fault that hit a request, as the request log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectedFault {
    /// [`FaultAction::name`] of the fault.
    pub kind: String,
    /// Where it came from: `fault` (the control API's list) or `chaos` (the random rates).
    pub source: String,
    /// For `commit_then_*`: the status the request was really answered with before the answer was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_status: Option<u16>,
}

/// A fault as stored: the spec and what is left of its count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// Identifier for the control API.
    pub id: u64,
    /// The spec it was added with.
    pub spec: FaultSpec,
    /// Matching requests it will still fail.
    pub remaining: u32,
}

impl Fault {
    /// Whether this fault applies to a request.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.remaining > 0
            && self
                .spec
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.starts_with(&self.spec.path_prefix)
    }
}

/// Takes one use of the first fault matching the request, if any.
pub fn take_matching(faults: &mut Vec<Fault>, method: &str, path: &str) -> Option<FaultAction> {
    let fault = faults.iter_mut().find(|f| f.matches(method, path))?;
    fault.remaining -= 1;
    let action = fault.spec.action.clone();
    faults.retain(|f| f.remaining > 0);
    Some(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(id: u64, method: Option<&str>, prefix: &str, count: u32) -> Fault {
        let spec = FaultSpec {
            method: method.map(str::to_string),
            path_prefix: prefix.into(),
            count,
            action: FaultAction::Status {
                status: 503,
                retry_after: None,
                code: None,
            },
        };
        Fault {
            id,
            remaining: count,
            spec,
        }
    }

    #[test]
    fn faults_match_method_and_prefix_and_are_used_up_in_order() {
        let mut faults = vec![fault(1, Some("post"), "/v1.0/users", 1), fault(2, None, "/v1.0", 2)];
        assert!(
            take_matching(&mut faults, "GET", "/v1.0/groups").is_some(),
            "second fault, any method"
        );
        assert_eq!(faults.iter().map(|f| f.remaining).collect::<Vec<_>>(), [1, 1]);
        assert!(
            take_matching(&mut faults, "POST", "/v1.0/users").is_some(),
            "first fault, method case-insensitive"
        );
        assert_eq!(
            faults.iter().map(|f| f.id).collect::<Vec<_>>(),
            [2],
            "a used-up fault is dropped"
        );
        assert!(take_matching(&mut faults, "GET", "/other").is_none());
        assert!(take_matching(&mut faults, "DELETE", "/v1.0/x").is_some());
        assert!(faults.is_empty());
        assert!(take_matching(&mut faults, "GET", "/v1.0/users").is_none());
    }
}
