//! The sample events under `events/` (for `cargo lambda invoke --data-file`) decode with the
//! function's own decoder, one per trigger: the queue's batch (its bodies are step messages) and
//! the schedule.

use mdops_core::message::decode;
use mdops_core::onboarding::StepMessage;
use onboarding_step::Event;

fn read(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_sample_step_batch_and_schedule_decode() {
    match Event::decode(read("onboarding-step-sqs.json")).unwrap() {
        Event::Steps(sqs) => {
            let body = sqs.records[0].body.as_deref().unwrap();
            assert_eq!(decode::<StepMessage>(body).unwrap().step, "preflight");
        }
        other => panic!("expected a step batch, got {other:?}"),
    }
    assert!(matches!(
        Event::decode(read("onboarding-step-schedule.json")).unwrap(),
        Event::Schedule
    ));
}
