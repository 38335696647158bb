//! The licence-assignment function's entry point: build the clients once, then serve events.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use licence_assignment::Function;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mdops_lambda::init_logging();
    let function = mdops_lambda::started(Function::from_env()).await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(function.handle(event.payload).await)
    }))
    .await
}
