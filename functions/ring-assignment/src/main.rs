//! The ring-assignment function's entry point: build the clients once, then serve the schedule.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use ring_assignment::Function;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mdops_lambda::init_logging();
    let function = mdops_lambda::started(Function::from_env()).await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        function.handle(event.payload).await
    }))
    .await
}
