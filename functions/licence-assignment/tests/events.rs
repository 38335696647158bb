//! The sample events under `events/` (for `cargo lambda invoke --data-file`) stay what the function
//! reads: they parse as `SqsEvent`s, and their bodies decode (or, for the malformed sample, fail
//! with the reason an operator would see).

use aws_lambda_events::event::sqs::SqsEvent;
use mdops_core::licences::LicenceMessage;
use mdops_core::message::decode;

fn event(name: &str) -> SqsEvent {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not an SQS event: {e}", path.display()))
}

#[test]
fn the_sample_event_carries_valid_licence_messages() {
    let event = event("licence-assignment-sqs.json");
    assert_eq!(event.records.len(), 2);
    for record in &event.records {
        let body = record.body.as_deref().expect("body");
        let message: LicenceMessage = decode(body).expect("a valid licence message");
        assert_eq!(message.add, ["SPE_E5"]);
        assert!(record.attributes.contains_key("ApproximateReceiveCount"));
    }
}

#[test]
fn the_malformed_sample_fails_with_the_field_named() {
    let event = event("licence-assignment-malformed.json");
    let body = event.records[0].body.as_deref().expect("body");
    let error = decode::<LicenceMessage>(body).expect_err("malformed on purpose");
    assert!(error.to_string().contains("add: \"E5 please\""), "{error}");
    assert_eq!(error.tenant.as_deref(), Some("5f4d3a2b-9c1e-4b7a-8d6f-0e2c1a3b4d5e"));
}
