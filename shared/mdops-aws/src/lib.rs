//! `mdops-aws`: the AWS adapters behind the ports of `mdops-core`: the [`Queue`] on Amazon SQS
//! (one queue plus a dead-letter queue per logical queue) and the [`Store`] on DynamoDB (one
//! table, two indexes). Both pass `mdops_core::contract`, like the SQLite adapters of
//! `mdops-local`.
//!
//! Layout:
//! - [`sqs`]: [`SqsQueue`], SQS semantics as they are, plus dead-letter reasons.
//! - [`dynamo`]: [`DynamoStore`], versioned records with conditional writes and transactions.
//! - [`budget`]: the shared Graph request budget on the same table: one conditional `UpdateItem`
//!   per take, slots deleted by the table's TTL.
//! - [`provision`]: `mdops aws setup` / `teardown`: the template's resources without SAM.
//! - this file: resource names, [`ensure_resources`] (create queues and table if absent: used by
//!   tests, the emulator and local development; on AWS the SAM template creates them) and
//!   [`AwsBackend`], built once per process (a Lambda's `main`) and shared by every invocation.
//!
//! Endpoints, region and credentials come from the standard AWS environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), so the same code talks to AWS or to the emulator.
//!
//! [`Queue`]: mdops_core::queue::Queue
//! [`Store`]: mdops_core::store::Store

pub mod budget;
pub mod dynamo;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod provision;
pub mod secrets;
pub mod sqs;

use std::collections::HashMap;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use mdops_core::queue::{QueueName, QueueSettings};

pub use dynamo::DynamoStore;
pub use secrets::SecretsManager;
pub use sqs::{QueueUrls, SqsQueue};

/// Errors setting the backend up (resolving or creating resources).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An AWS call failed; the message names the resource.
    #[error("{what}: {message}")]
    Aws {
        what: String,
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A name or setting is not usable.
    #[error("invalid setup: {0}")]
    Invalid(String),
}

/// An SDK error as one line (`DisplayErrorContext` would print the whole debug structure).
fn aws<E>(what: impl Into<String>) -> impl FnOnce(E) -> SetupError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let what = what.into();
    move |e| SetupError::Aws {
        what,
        message: mdops_core::errors::one_line(&e),
        source: Box::new(e),
    }
}

/// Longest resource prefix: SQS names are at most 80 characters, and `-onboarding-dlq` is 15.
pub const MAX_PREFIX_LEN: usize = 60;

/// The names of everything one deployment uses, derived from a prefix (e.g. `mdops-prod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    prefix: String,
}

impl ResourceNames {
    /// Names under `prefix`: letters, digits, `-` and `_`, at most [`MAX_PREFIX_LEN`].
    pub fn new(prefix: impl Into<String>) -> Result<Self, SetupError> {
        let prefix = prefix.into();
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(SetupError::Invalid(format!(
                "resource prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} letters, digits, '-' or '_'"
            )));
        }
        Ok(ResourceNames { prefix })
    }

    /// `{prefix}-{queue}`.
    pub fn queue(&self, queue: QueueName) -> String {
        format!("{}-{}", self.prefix, queue.as_str())
    }

    /// `{prefix}-{queue}-dlq`.
    pub fn dead_letter_queue(&self, queue: QueueName) -> String {
        format!("{}-{}-dlq", self.prefix, queue.as_str())
    }

    /// `{prefix}-state`.
    pub fn table(&self) -> String {
        format!("{}-state", self.prefix)
    }
}

/// Environment variable with the DynamoDB table's name (the template sets it for every function).
pub const TABLE_ENV: &str = "MDOPS_TABLE";

/// Environment variable with the URL of a queue: `MDOPS_ONBOARDING_QUEUE_URL`, ...
pub fn queue_url_env(queue: QueueName) -> String {
    format!("MDOPS_{}_QUEUE_URL", queue.as_str().to_ascii_uppercase())
}

/// Environment variable with the URL of a queue's dead-letter queue: `MDOPS_ONBOARDING_DLQ_URL`, ...
pub fn dead_letter_url_env(queue: QueueName) -> String {
    format!("MDOPS_{}_DLQ_URL", queue.as_str().to_ascii_uppercase())
}

/// The queues' visibility timeout as deployed: six times the functions' 60 s timeout, AWS's
/// advice for queues that feed Lambda (`infra/template.yaml` and `mdops aws setup` agree).
pub const DEPLOYED_VISIBILITY: std::time::Duration = std::time::Duration::from_secs(360);

/// Loads the SDK configuration from the standard environment (`AWS_ENDPOINT_URL` included).
pub async fn load_sdk_config() -> SdkConfig {
    sdk_loader().load().await
}

/// The SDK's configuration loader with our one HTTPS client (rustls + ring; see the workspace
/// manifest for why not the SDK's default): every `SdkConfig` of mdops starts here.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls;
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(https)
}

/// How long messages stay in a dead-letter queue: the SQS maximum, 14 days, so an operator back
/// from a holiday still finds them.
const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 60 * 60;

/// Creates the queues (with their redrive policies) and the table if they are absent. Safe to
/// run again: existing resources are kept, and queue attributes are brought to `settings`.
pub async fn ensure_resources(
    sdk: &SdkConfig,
    names: &ResourceNames,
    settings: QueueSettings,
) -> Result<HashMap<QueueName, QueueUrls>, SetupError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut urls = HashMap::new();
    for queue in QueueName::ALL {
        let dlq_name = names.dead_letter_queue(queue);
        let dlq = sqs
            .create_queue()
            .queue_name(&dlq_name)
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                DLQ_RETENTION_SECONDS.to_string(),
            )
            .send()
            .await
            .map_err(aws(format!("create queue {dlq_name}")))?;
        let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(aws(format!("read ARN of {dlq_name}")))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| SetupError::Invalid(format!("queue {dlq_name} has no ARN")))?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": settings.max_receive_count,
        })
        .to_string();
        let name = names.queue(queue);
        let attributes = HashMap::from([
            (QueueAttributeName::RedrivePolicy, redrive),
            (
                QueueAttributeName::VisibilityTimeout,
                settings.default_visibility.as_secs().to_string(),
            ),
        ]);
        let created = sqs
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attributes.clone()))
            .send()
            .await;
        let url = match created {
            Ok(out) => out.queue_url().unwrap_or_default().to_string(),
            // Exists with other attributes: keep it and bring its attributes up to date.
            Err(e) if aws_sdk_sqs::error::ProvideErrorMetadata::code(&e) == Some("QueueAlreadyExists") => {
                let url = sqs
                    .get_queue_url()
                    .queue_name(&name)
                    .send()
                    .await
                    .map_err(aws(format!("find queue {name}")))?
                    .queue_url()
                    .unwrap_or_default()
                    .to_string();
                sqs.set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(attributes))
                    .send()
                    .await
                    .map_err(aws(format!("update attributes of {name}")))?;
                url
            }
            Err(e) => return Err(aws(format!("create queue {name}"))(e)),
        };
        urls.insert(
            queue,
            QueueUrls {
                source: url,
                dead_letter: dlq_url,
            },
        );
    }
    ensure_table(&aws_sdk_dynamodb::Client::new(sdk), &names.table()).await?;
    Ok(urls)
}

async fn ensure_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), SetupError> {
    let exists = match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(aws(format!("describe table {table}"))(e)),
    };
    if exists {
        return Ok(());
    }
    let invalid = |e: aws_sdk_dynamodb::error::BuildError| SetupError::Invalid(format!("table definition: {e}"));
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(invalid)
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(invalid)
    };
    let index = |name: &str, hash: &str, range: &str| -> Result<GlobalSecondaryIndex, SetupError> {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash)?)
            .key_schema(key(range, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .map_err(invalid)
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .attribute_definitions(attribute("coll_name")?)
        .attribute_definitions(attribute("coll_sort")?)
        .attribute_definitions(attribute("due_kind")?)
        .attribute_definitions(attribute("due_at")?)
        .global_secondary_indexes(index(dynamo::COLLECTION_INDEX, "coll_name", "coll_sort")?)
        .global_secondary_indexes(index(dynamo::DUE_INDEX, "due_kind", "due_at")?)
        .send()
        .await
        .map_err(aws(format!("create table {table}")))?;
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(std::time::Duration::from_secs(60))
        .await
        .map_err(aws(format!("wait for table {table}")))?;
    // Failure records carry `expires_at`; on AWS the table's TTL removes them after 14 days (the
    // emulator accepts this and never deletes, which no test relies on).
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .map_err(aws(format!("enable TTL on {table}")))?;
    Ok(())
}

/// The AWS backend: SQS queue and DynamoDB store, clients built once. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AwsBackend {
    queue: SqsQueue,
    store: DynamoStore,
}

impl AwsBackend {
    /// Connects to existing resources named by `names` (resolving the queue URLs once).
    pub async fn connect(sdk: &SdkConfig, names: &ResourceNames, settings: QueueSettings) -> Result<Self, SetupError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut urls = HashMap::new();
        for queue in QueueName::ALL {
            let url = |name: String| {
                let sqs = sqs.clone();
                async move {
                    sqs.get_queue_url()
                        .queue_name(&name)
                        .send()
                        .await
                        .map_err(aws(format!("find queue {name}")))
                        .map(|o| o.queue_url().unwrap_or_default().to_string())
                }
            };
            urls.insert(
                queue,
                QueueUrls {
                    source: url(names.queue(queue)).await?,
                    dead_letter: url(names.dead_letter_queue(queue)).await?,
                },
            );
        }
        Ok(Self::with_urls(sdk, names.table(), urls, settings))
    }

    /// Creates the resources if absent ([`ensure_resources`]), then connects to them.
    pub async fn ensure(sdk: &SdkConfig, names: &ResourceNames, settings: QueueSettings) -> Result<Self, SetupError> {
        let urls = ensure_resources(sdk, names, settings).await?;
        Ok(Self::with_urls(sdk, names.table(), urls, settings))
    }

    /// The backend over resources whose table name and queue URLs are known (a Lambda function
    /// gets them from its template as environment variables): no network call.
    pub fn with_urls(
        sdk: &SdkConfig,
        table: String,
        urls: HashMap<QueueName, QueueUrls>,
        settings: QueueSettings,
    ) -> Self {
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        AwsBackend {
            queue: SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                dynamo.clone(),
                table.clone(),
                urls,
                settings,
            ),
            store: DynamoStore::new(dynamo, table),
        }
    }

    /// The queue side.
    pub fn queue(&self) -> &SqsQueue {
        &self.queue
    }

    /// The state side.
    pub fn store(&self) -> &DynamoStore {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_follow_the_prefix() {
        let names = ResourceNames::new("mdops-prod").expect("valid prefix");
        assert_eq!(names.queue(QueueName::Onboarding), "mdops-prod-onboarding");
        assert_eq!(names.dead_letter_queue(QueueName::Licences), "mdops-prod-licences-dlq");
        assert_eq!(names.table(), "mdops-prod-state");
    }

    #[test]
    fn bad_prefixes_are_refused_by_name() {
        for bad in ["", "has space", "dot.ted", &"x".repeat(MAX_PREFIX_LEN + 1)] {
            let err = ResourceNames::new(bad).expect_err(bad);
            assert!(err.to_string().contains("resource prefix"), "{err}");
        }
    }
}
