//! The adapter contract (`mdops_core::contract`) run against SQS and DynamoDB on the moto
//! emulator, each case with its own queues and table (a unique resource prefix).

use mdops_aws::emulator;

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use mdops_aws::{AwsBackend, ResourceNames};
use mdops_core::budget::RequestBudget;
use mdops_core::queue::{Queue, QueueSettings};
use mdops_core::store::{Key, Store};

/// What the corruption hook needs to reach the table behind the store.
struct Guard {
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
}

async fn fresh(settings: QueueSettings) -> (AwsBackend, Guard) {
    let sdk = emulator::sdk_config().await;
    let names = ResourceNames::new(emulator::unique_prefix()).expect("prefix");
    let backend = AwsBackend::ensure(&sdk, &names, settings)
        .await
        .expect("create queues and table");
    let guard = Guard {
        dynamo: aws_sdk_dynamodb::Client::new(&sdk),
        table: names.table(),
    };
    (backend, guard)
}

async fn make_queue(settings: QueueSettings) -> (Arc<dyn Queue>, Guard) {
    let (backend, guard) = fresh(settings).await;
    (Arc::new(backend.queue().clone()), guard)
}

async fn make_store() -> (Arc<dyn Store>, Guard) {
    let (backend, guard) = fresh(QueueSettings::default()).await;
    (Arc::new(backend.store().clone()), guard)
}

/// Damages an item the way a hand edit in the console would: a body that is not JSON.
async fn corrupt(guard: &Guard, key: &Key) {
    guard
        .dynamo
        .update_item()
        .table_name(&guard.table)
        .key("pk", AttributeValue::S(key.partition.clone()))
        .key("sk", AttributeValue::S(key.sort.clone()))
        .update_expression("SET #b = :bad")
        .expression_attribute_names("#b", "body")
        .expression_attribute_values(":bad", AttributeValue::S("{not json".into()))
        .condition_expression("attribute_exists(pk)")
        .send()
        .await
        .expect("corrupt item");
}

mdops_core::queue_contract!(make_queue);
mdops_core::store_contract!(make_store, corrupt);

async fn make_budget() -> (Arc<dyn RequestBudget>, Guard) {
    let (backend, guard) = fresh(QueueSettings::default()).await;
    (Arc::new(backend.store().clone()), guard)
}

mdops_core::budget_contract!(make_budget);
