//! `mdops dlq` and `mdops status` with `--backend aws` against SQS and DynamoDB on the emulator
//! (`mdops_aws::emulator`: the one `scripts/test` started, or moto from `.venv`; never skipped),
//! with the simulated tenant: the same operators' story as on SQLite (see `dlq_common`).

mod dlq_common;

use std::sync::Arc;
use std::time::Duration;

use dlq_common::{Backend, Scenario, killed_replay_story, operators_story, temp_dir};
use mdops_aws::{AwsBackend, ResourceNames};
use mdops_core::queue::QueueSettings;

async fn backend() -> Backend {
    let sdk = mdops_aws::emulator::sdk_config().await;
    let prefix = mdops_aws::emulator::unique_prefix();
    let names = ResourceNames::new(prefix.clone()).expect("prefix");
    let aws = AwsBackend::ensure(&sdk, &names, QueueSettings::default())
        .await
        .expect("create queues and table");
    Backend {
        flags: vec!["--backend".into(), "aws".into(), "--aws-prefix".into(), prefix],
        env: mdops_aws::emulator::child_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        queue: Arc::new(aws.queue().clone()),
        store: Arc::new(aws.store().clone()),
        // Past the worker's 5 s long poll.
        settle: Duration::from_secs(6),
        // The peek visibility of `mdops_aws` (30 s), and a second.
        peek_hides: Duration::from_secs(31),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_filter_and_replay_real_failures_on_sqs_and_dynamodb() {
    operators_story(Scenario::start(backend().await, temp_dir()).await).await;
}

/// A process-level kill of `mdops dlq replay --backend aws` at whatever point it has reached; the
/// two exact kill points are in `shared/mdops-aws/tests/replay_kill.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_half_way_on_sqs_and_run_again_leaves_exactly_one_copy_of_each() {
    killed_replay_story(backend().await).await;
}
