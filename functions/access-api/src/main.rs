//! The access-api Lambda function's entry point: build the router once, then serve API Gateway events.

use lambda_http::Error;

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
    let state = access_api::state_from_env().await?;
    lambda_http::run(mdops_access_api::router(state)).await
}
