//! Errors as the Lambda runtime reports them: each with a named `errorType` (what CloudWatch,
//! the function's failure destination and an alarm filter see), not the Rust type name of a boxed
//! error.

use std::fmt;
use std::future::Future;

use lambda_runtime::Diagnostic;
use mdops_core::errors::one_line;

/// Prefix of every `errorType` mdops reports, so one metric filter matches them all.
pub const ERROR_TYPE_PREFIX: &str = "mdops.";

/// An error that knows its `errorType` (without [`ERROR_TYPE_PREFIX`]), e.g. `StartupError.MissingSetting`.
pub trait ErrorType: std::error::Error {
    /// The error's kind, stable across releases (dashboards and alarms filter on it).
    fn error_type(&self) -> &'static str;
}

/// What a function returns to the runtime when an invocation (or its start) fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    /// `mdops.<kind>`.
    pub error_type: String,
    /// The error and its causes, on one line.
    pub message: String,
}

impl FunctionError {
    /// An error of the given kind (without the prefix).
    pub fn new(kind: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        FunctionError {
            error_type: format!("{ERROR_TYPE_PREFIX}{kind}"),
            message: one_line(error),
        }
    }
}

impl<E: ErrorType + 'static> From<E> for FunctionError {
    fn from(error: E) -> Self {
        FunctionError::new(error.error_type(), &error)
    }
}

/// Decodes an invocation's payload as `T` (what the runtime does for a typed handler, with the same
/// path-naming decoder): `mdops.EventNotUnderstood` naming the field at fault.
pub fn decode_event<T: serde::de::DeserializeOwned>(event: serde_json::Value) -> Result<T, FunctionError> {
    mdops_core::json::from_value(event).map_err(|problem| FunctionError {
        error_type: format!("{ERROR_TYPE_PREFIX}EventNotUnderstood"),
        message: format!("event: {problem}"),
    })
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for FunctionError {}

impl From<FunctionError> for Diagnostic {
    fn from(error: FunctionError) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type,
            error_message: error.message,
        }
    }
}

/// The Runtime API path for a failed start.
const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";
/// The header carrying the error type on the Runtime API.
const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";

/// Awaits a function's start-up (building its clients); if it fails, reports the error to the
/// Runtime API's `/init/error` with its `errorType` (so the console and CloudWatch show
/// `mdops.StartupError.MissingSetting: MDOPS_TABLE is not set`, not an exit status) and returns it.
pub async fn started<T, E>(start: impl Future<Output = Result<T, E>>) -> Result<T, FunctionError>
where
    E: ErrorType + 'static,
{
    match start.await {
        Ok(value) => Ok(value),
        Err(error) => {
            let error = FunctionError::from(error);
            tracing::error!(error_type = %error.error_type, "{}", error.message);
            if let Err(e) = report_init_error(&error).await {
                tracing::warn!("could not report the start-up error to the Runtime API: {e}");
            }
            Err(error)
        }
    }
}

async fn report_init_error(error: &FunctionError) -> Result<(), lambda_runtime::Error> {
    let client = lambda_runtime_api_client::Client::builder().build()?;
    let body = serde_json::to_vec(&Diagnostic::from(error.clone()))?;
    let request = lambda_runtime_api_client::build_request()
        .method("POST")
        .uri(INIT_ERROR_PATH)
        .header(ERROR_TYPE_HEADER, &error.error_type)
        .body(lambda_runtime_api_client::body::Body::from(body))?;
    client.call(request).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    impl ErrorType for Outer {
        fn error_type(&self) -> &'static str {
            "Outer"
        }
    }

    #[test]
    fn the_runtime_sees_a_named_type_and_the_whole_cause_on_one_line() {
        let error = FunctionError::from(Outer(std::io::Error::other("disk full")));
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "mdops.Outer");
        assert_eq!(diagnostic.error_message, "outer: disk full");
    }
}
