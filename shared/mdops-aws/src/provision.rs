//! `mdops aws setup` / `teardown`: the resources `infra/template.yaml` creates (queues with their
//! dead-letter queues and redrive policies, the table with its indexes, TTL and point-in-time
//! recovery), made or checked without SAM, and removed again. Both are safe to run twice.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::PointInTimeRecoverySpecification;
use mdops_core::queue::{QueueName, QueueSettings};

use crate::{QueueUrls, ResourceNames, SetupError, aws, ensure_resources};

/// What became of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceState {
    /// It was not there and now is.
    Created,
    /// It was there; its settings were brought up to date.
    Existing,
    /// Teardown removed it.
    Deleted,
    /// Teardown found nothing to remove.
    Absent,
}

impl ResourceState {
    /// The word an operator reads.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Created => "created",
            ResourceState::Existing => "exists",
            ResourceState::Deleted => "deleted",
            ResourceState::Absent => "absent",
        }
    }
}

/// One line of a setup or teardown report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceReport {
    /// `queue` or `table`.
    pub kind: &'static str,
    pub name: String,
    pub state: ResourceState,
}

/// What setup made or found, and where it is.
#[derive(Debug, Clone)]
pub struct SetupReport {
    pub resources: Vec<ResourceReport>,
    pub table: String,
    pub urls: HashMap<QueueName, QueueUrls>,
}

/// Creates the resources named by `names` if absent and checks those present (queue attributes
/// brought to `settings`, point-in-time recovery turned on).
pub async fn setup(sdk: &SdkConfig, names: &ResourceNames, settings: QueueSettings) -> Result<SetupReport, SetupError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let mut existed = HashMap::new();
    for queue in QueueName::ALL {
        for name in [names.queue(queue), names.dead_letter_queue(queue)] {
            let found = queue_url(&sqs, &name).await?.is_some();
            existed.insert(name, found);
        }
    }
    let table = names.table();
    let table_existed = table_exists(&dynamo, &table).await?;
    let urls = ensure_resources(sdk, names, settings).await?;
    dynamo
        .update_continuous_backups()
        .table_name(&table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(|e| SetupError::Invalid(format!("point-in-time recovery: {e}")))?,
        )
        .send()
        .await
        .map_err(aws(format!("turn on point-in-time recovery for {table}")))?;
    let state = |found: bool| {
        if found {
            ResourceState::Existing
        } else {
            ResourceState::Created
        }
    };
    let mut resources: Vec<ResourceReport> = existed
        .into_iter()
        .map(|(name, found)| ResourceReport {
            kind: "queue",
            name,
            state: state(found),
        })
        .collect();
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    resources.push(ResourceReport {
        kind: "table",
        name: table.clone(),
        state: state(table_existed),
    });
    Ok(SetupReport { resources, table, urls })
}

/// Deletes the queues and the table named by `names`; what is not there is reported absent.
pub async fn teardown(sdk: &SdkConfig, names: &ResourceNames) -> Result<Vec<ResourceReport>, SetupError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let mut report = Vec::new();
    for queue in QueueName::ALL {
        for name in [names.queue(queue), names.dead_letter_queue(queue)] {
            let state = match queue_url(&sqs, &name).await? {
                Some(url) => {
                    sqs.delete_queue()
                        .queue_url(url)
                        .send()
                        .await
                        .map_err(aws(format!("delete queue {name}")))?;
                    ResourceState::Deleted
                }
                None => ResourceState::Absent,
            };
            report.push(ResourceReport {
                kind: "queue",
                name,
                state,
            });
        }
    }
    let table = names.table();
    let state = if table_exists(&dynamo, &table).await? {
        dynamo
            .delete_table()
            .table_name(&table)
            .send()
            .await
            .map_err(aws(format!("delete table {table}")))?;
        ResourceState::Deleted
    } else {
        ResourceState::Absent
    };
    report.push(ResourceReport {
        kind: "table",
        name: table,
        state,
    });
    Ok(report)
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<Option<String>, SetupError> {
    match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url().map(str::to_string)),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) => Ok(None),
        Err(e) => Err(aws(format!("find queue {name}"))(e)),
    }
}

async fn table_exists(dynamo: &aws_sdk_dynamodb::Client, table: &str) -> Result<bool, SetupError> {
    match dynamo.describe_table().table_name(table).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(aws(format!("describe table {table}"))(e)),
    }
}
