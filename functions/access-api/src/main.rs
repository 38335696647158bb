//! The access-api Lambda function's entry point: build the router once, then serve API Gateway events.

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mdops_lambda::init_logging();
    let state = mdops_lambda::started(access_api::state_from_env()).await?;
    lambda_http::run(mdops_access_api::router(state)).await
}
