//! The access-expiry Lambda function's entry point: build the clients once, then serve the
//! schedule's and the access queue's events.

use access_expiry::Function;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON when the runtime says so (AWS_LAMBDA_LOG_FORMAT=json), plain otherwise.
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .without_time()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).without_time().init();
    }
    let function = Function::from_env().await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        function.handle(event.payload).await.map_err(Error::from)
    }))
    .await
}
