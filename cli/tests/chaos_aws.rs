//! The chaos scenario (`chaos_common`) at small scale on SQS + DynamoDB through the emulator
//! (`mdops_aws::emulator`: the one `scripts/test` started, or moto from `.venv`; never skipped):
//! one tenant onboards with `mdops worker --backend aws` while the simulated tenant injects the
//! same faults, every message is delivered twice, the worker is SIGKILLed and restarted, and one
//! access request is revoked early while another expires. The same zeros are asserted from the
//! simulator's objects and request log, and every DynamoDB item, the worker's log and the dead
//! letters are searched for secrets.
//!
//! `CHAOS_AWS_TENANTS` (1), `CHAOS_SEED` (1), `CHAOS_DEADLINE_SECS` (480).

mod chaos_common;
mod processes;

use std::sync::Arc;
use std::time::Duration;

use chaos_common::{ChaosBackend, ChaosPlan, Rows, env_num};
use mdops_aws::{AwsBackend, ResourceNames};
use mdops_core::queue::QueueSettings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_sqs_and_dynamodb_nothing_duplicated_lost_or_left_elevated() {
    let sdk = mdops_aws::emulator::sdk_config().await;
    let prefix = mdops_aws::emulator::unique_prefix();
    let names = ResourceNames::new(prefix.clone()).expect("prefix");
    let aws = AwsBackend::ensure(&sdk, &names, QueueSettings::default())
        .await
        .expect("create queues and table");
    let backend = ChaosBackend {
        name: "SQS + DynamoDB (emulator)",
        flags: vec!["--backend".into(), "aws".into(), "--aws-prefix".into(), prefix],
        env: mdops_aws::emulator::child_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        store: Arc::new(aws.store().clone()),
        queue: Arc::new(aws.queue().clone()),
        rows: Rows::Dynamo(aws_sdk_dynamodb::Client::new(&sdk), names.table()),
    };
    let plan = ChaosPlan {
        tenants: env_num("CHAOS_AWS_TENANTS", 1) as usize,
        seed: env_num("CHAOS_SEED", 1),
        deadline: Duration::from_secs(env_num("CHAOS_DEADLINE_SECS", 480)),
        // Longer lives than on SQLite: each start connects to the emulator, and a receive long-polls.
        kill_after_ms: 6_000..10_000,
    };
    chaos_common::run(backend, plan).await;
}
