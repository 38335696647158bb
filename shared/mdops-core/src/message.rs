//! Decoding queue message bodies: versioned, validated, and explaining themselves when they fail.
//!
//! Every message mdops sends is a JSON object with `"v"` (the schema version) and `"kind"`. A body
//! that fails to decode is dead-lettered at once with a [`DecodeError`] naming the field and the
//! problem, plus whatever tenant and step could still be read, so an operator can find it.

use serde::de::DeserializeOwned;

/// Why a message body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {expected} message: {problem}")]
pub struct DecodeError {
    /// The kind of message the queue carries.
    pub expected: &'static str,
    /// What is wrong, naming the field.
    pub problem: String,
    /// `tenant_id` if the body had a readable one.
    pub tenant: Option<String>,
    /// `step` (or `kind`) if the body had a readable one.
    pub step: Option<String>,
}

/// A message type carried by one queue.
pub trait Message: DeserializeOwned {
    /// The `kind` value of this message type.
    const KIND: &'static str;
    /// The schema versions this code can read.
    const VERSIONS: &'static [u64];
    /// Checks what serde cannot (non-empty strings, ranges), naming the field.
    fn validate(&self) -> Result<(), String>;
}

/// Decodes and validates a body as `M`.
pub fn decode<M: Message>(body: &str) -> Result<M, DecodeError> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| DecodeError {
        expected: M::KIND,
        problem: format!("body is not JSON ({e})"),
        tenant: None,
        step: None,
    })?;
    let text = |field: &str| value.get(field).and_then(|v| v.as_str()).map(str::to_string);
    let fail = |problem: String| DecodeError {
        expected: M::KIND,
        problem,
        tenant: text("tenant_id"),
        step: text("step").or_else(|| text("kind")),
    };
    if !value.is_object() {
        return Err(fail("body is not a JSON object".into()));
    }
    match value.get("v").and_then(|v| v.as_u64()) {
        Some(v) if M::VERSIONS.contains(&v) => {}
        Some(v) => {
            return Err(fail(format!(
                "v: version {v} is not supported (this build reads {:?})",
                M::VERSIONS
            )));
        }
        None => return Err(fail("v: missing or not a number".into())),
    }
    match text("kind") {
        Some(kind) if kind == M::KIND => {}
        Some(kind) => {
            return Err(fail(format!(
                "kind: {kind:?} does not belong on this queue (expected {:?})",
                M::KIND
            )));
        }
        None => return Err(fail("kind: missing".into())),
    }
    let message: M = crate::json::from_value(value.clone()).map_err(fail)?;
    message.validate().map_err(fail)?;
    Ok(message)
}
