//! The enrollment function's entry point: build the clients once, then serve events.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use enrollment::Function;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mdops_lambda::FunctionError;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mdops_lambda::init_logging();
    let function = mdops_lambda::started(Function::from_env()).await?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let outcome = function.handle(event.payload).await.map_err(FunctionError::from)?;
            Ok::<_, FunctionError>(format!("{outcome:?}"))
        },
    ))
    .await
}
