//! The onboarding-step function's entry point: build the clients once, then serve events.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use onboarding_step::Function;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mdops_lambda::init_logging();
    let function = mdops_lambda::started(Function::from_env()).await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        function.handle(event.payload).await
    }))
    .await
}
