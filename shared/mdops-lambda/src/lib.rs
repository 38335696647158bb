//! `mdops-lambda`: what the Lambda functions under `functions/` share, so that the handlers crate
//! (`mdops-handlers`) depends on the ports only and each function links only what it uses.
//!
//! Layout:
//! - [`batch`]: the SQS-batch glue: an `SqsEvent` in, each record through a handler, an
//!   `SqsBatchResponse` out with only the records that must come back (partial batch failures).
//! - [`environment`]: the handlers' ports over the AWS backend the function's environment names,
//!   built once per instance.
//! - [`logging`]: the function's log subscriber.

pub mod batch;
pub mod environment;
pub mod logging;

pub use batch::{received, sqs_batch};
pub use environment::{PREFIX_ENV, SIM_URL_ENV, StartupError, deps_from_env};
pub use logging::init_logging;
