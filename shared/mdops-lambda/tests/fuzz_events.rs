//! Fuzzing the decoding of Lambda invocation payloads: the SQS batches (every queue function) and
//! the EventBridge events (enrollment, the schedules), starting from the sample events under
//! `events/`. `mdops_lambda::decode_event` is what onboarding-step and access-expiry decode their
//! payload with; enrollment and licence-assignment take typed events, which `lambda_runtime` 1.5
//! decodes the same way (serde_path_to_error over serde_json, `deserializer.rs`). Mutated
//! payloads never panic and are refused naming the field; an SQS record the decoder accepted but
//! that lacks what the queue port needs is refused by `received` naming it.
//! Cases per property: `MDOPS_FUZZ_CASES` (default 256).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use mdops_core::onboarding::TenantEnrolled;
use mdops_fuzz::{Mutated, check, config, mutated};
use proptest::prelude::*;
use serde_json::Value;

fn sample(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes a mutated payload as a Lambda runtime would hand it over (parsed JSON first).
fn decode<T: serde::de::DeserializeOwned>(input: &Mutated) -> Result<T, String> {
    let value = input.value().ok_or_else(|| "not JSON".to_string())?;
    mdops_lambda::decode_event::<T>(value).map_err(|e| e.to_string())
}

fn sqs_samples() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        sample("licence-assignment-sqs.json"),
        sample("onboarding-step-sqs.json"),
        sample("access-expiry-sqs.json"),
    ])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_sqs_batches_are_refused_naming_the_field(input in sqs_samples().prop_flat_map(mutated)) {
        let result = decode::<SqsEvent>(&input);
        check(&input, &result.as_ref().map(drop).map_err(Clone::clone))?;
        if let Ok(event) = result {
            for record in &event.records {
                let received = mdops_lambda::received(record, chrono::Utc::now()).map(drop);
                if let Err(e) = &received {
                    prop_assert!(e.contains("messageId") || e.contains("receiptHandle"), "{e}");
                }
            }
        }
    }

    #[test]
    fn mutated_eventbridge_events_are_refused_naming_the_field(
        input in prop::sample::select(vec![sample("enrollment-tenant-enrolled.json"), sample("access-expiry-schedule.json"), sample("onboarding-step-schedule.json")]).prop_flat_map(mutated)
    ) {
        let result = decode::<EventBridgeEvent<Value>>(&input);
        check(&input, &result.as_ref().map(drop).map_err(Clone::clone))?;
        // The enrollment function reads `detail` as a TenantEnrolled (mdops_handlers::onboarding).
        if let Ok(event) = result && input.keys.iter().any(|k| k == "tenant_id") {
            let detail = TenantEnrolled::from_detail(event.detail);
            check(&input, &detail.map(drop))?;
        }
    }
}
