//! `mdops-lambda`: what the Lambda functions under `functions/` share, so that the handlers crate
//! (`mdops-handlers`) depends on the ports only and each function links only what it uses.
//!
//! Layout:
//! - [`batch`]: the SQS-batch glue: an `SqsEvent` in, each record through a handler, an
//!   `SqsBatchResponse` out with only the records that must come back (partial batch failures).
//! - [`environment`]: the handlers' ports over the AWS backend the function's environment names,
//!   built once per instance.
//! - [`error`]: errors as the runtime reports them, each with a named `errorType`; start-up
//!   errors reported to the Runtime API's `/init/error`.
//! - [`logging`]: the function's logs (JSON with the step's fields) and metrics (CloudWatch
//!   embedded metric format).

pub mod batch;
pub mod environment;
pub mod error;
pub mod logging;

pub use batch::{received, sqs_batch};
pub use environment::{PREFIX_ENV, SIM_URL_ENV, StartupError, deps_from, deps_from_env};
pub use error::{ErrorType, FunctionError, decode_event, started};
pub use logging::init_logging;
