//! Creating resources is idempotent and connecting finds them: what `mdops` local development
//! and the emulator rely on.

use mdops_aws::emulator;

use std::time::Duration;

use mdops_aws::{AwsBackend, ResourceNames};
use mdops_core::queue::{OutgoingMessage, Queue, QueueName, QueueSettings};

#[tokio::test]
async fn ensure_twice_keeps_resources_and_messages() {
    let sdk = emulator::sdk_config().await;
    let names = ResourceNames::new(emulator::unique_prefix()).expect("prefix");
    let settings = QueueSettings::default();
    let first = AwsBackend::ensure(&sdk, &names, settings).await.expect("first ensure");
    first
        .queue()
        .send(QueueName::Licences, OutgoingMessage::now("kept"))
        .await
        .expect("send");
    // Again, with a different receive limit: the queue is kept and its redrive policy updated.
    let changed = QueueSettings {
        max_receive_count: 7,
        ..settings
    };
    AwsBackend::ensure(&sdk, &names, changed).await.expect("second ensure");
    let connected = AwsBackend::connect(&sdk, &names, changed).await.expect("connect");
    let got = connected
        .queue()
        .receive(QueueName::Licences, 10, Duration::from_secs(1), Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1, "the message sent before survives");
    assert_eq!(got[0].body, "kept");

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(names.queue(QueueName::Licences))
        .send()
        .await
        .expect("queue url");
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url.queue_url().unwrap_or_default())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .expect("attributes");
    let policy = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
        .expect("redrive policy");
    let policy: serde_json::Value = serde_json::from_str(policy).expect("policy is JSON");
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "7");
    assert!(
        policy["deadLetterTargetArn"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(&names.dead_letter_queue(QueueName::Licences)))
    );
}

#[tokio::test]
async fn connect_names_the_missing_queue() {
    let sdk = emulator::sdk_config().await;
    let names = ResourceNames::new(emulator::unique_prefix()).expect("prefix");
    let err = AwsBackend::connect(&sdk, &names, QueueSettings::default())
        .await
        .expect_err("nothing created");
    assert!(err.to_string().contains(&names.queue(QueueName::Onboarding)), "{err}");
}
