//! The sample API Gateway events in `events/` go through `lambda_http`'s decoding into the router.

use std::sync::Arc;

use mdops_access_api::{ApiState, AuthSettings, JwtValidator};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::access::AccessService;
use tower::ServiceExt;

fn state(dir: &std::path::Path) -> ApiState {
    let backend = mdops_local::SqliteBackend::open(dir.join("mdops.db")).unwrap();
    let store: Arc<dyn mdops_core::store::Store> = Arc::new(backend.store().clone());
    let graph = GraphClient::new(GraphConfig::default()).unwrap();
    let deps = Deps::new(store, Arc::new(backend.queue().clone()), graph);
    // An allow-listed tenant whose JWKS is never fetched: the sample token is refused before that.
    let auth = AuthSettings::entra("72f988bf-86f1-41af-91ab-2d7cd011db47", "api://mdops-access");
    ApiState {
        service: AccessService::new(deps),
        auth: Arc::new(JwtValidator::new(auth).unwrap()),
    }
}

async fn answer(file: &str, state: ApiState) -> (u16, serde_json::Value) {
    let path = format!("{}/../../events/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let request = lambda_http::request::from_str(&text).expect("an API Gateway event");
    let response = mdops_access_api::router(state).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum_body(response.into_body()).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn axum_body(body: axum::body::Body) -> Vec<u8> {
    axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec()
}

#[tokio::test]
async fn sample_events_reach_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let (status, body) = answer("access-api-health.json", state(dir.path())).await;
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)));
    // The placeholder token is not a JWT: 401 without any key fetch.
    let s = state(dir.path());
    let auth = s.auth.clone();
    let (status, _) = answer("access-api-list.json", s).await;
    assert_eq!(status, 401);
    assert_eq!(auth.jwks_fetches(), 0);
}
