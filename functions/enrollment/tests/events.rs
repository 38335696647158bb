//! The sample event under `events/` (for `cargo lambda invoke --data-file`) stays what the
//! enrollment function reads.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use mdops_core::onboarding::{TENANT_ENROLLED, TenantEnrolled};

fn read(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_sample_enrollment_event_is_a_tenant_enrolled_event() {
    let event: EventBridgeEvent<serde_json::Value> =
        serde_json::from_str(&read("enrollment-tenant-enrolled.json")).unwrap();
    assert_eq!(event.detail_type, TENANT_ENROLLED);
    let detail: TenantEnrolled = serde_json::from_value(event.detail).unwrap();
    assert_eq!(detail.tenant_id.as_str(), "5f4d3a2b-9c1e-4b7a-8d6f-0e2c1a3b4d5e");
}
