//! The [`Store`] port on DynamoDB: one table, `pk`/`sk` string keys, two global secondary indexes
//! (`collection`: `coll_name`/`coll_sort`; `due`: `due_kind`/`due_at`), and the audit log as
//! items under `~audit#<subject>` partitions, sort key `{time}#{random}`.
//!
//! Audit entries are written only by `Put` with `attribute_not_exists(pk)`, inside the transaction
//! of the change they record; no code path updates or deletes one, and on AWS the functions' IAM
//! policy (`infra/policies/audit-append-only.json`) denies `UpdateItem`/`DeleteItem` on those keys.
//!
//! Every put is an `Update` (so the version can be `if_not_exists(version, 0) + 1` whatever the
//! condition), with `attribute_not_exists(pk)` for [`Condition::Absent`] and `#version = :expected`
//! for [`Condition::Version`]. Several writes go in one `TransactWriteItems`; a transaction cancelled
//! by a *conflict* (another transaction on the same items in flight) is retried a few times so
//! the caller sees the real outcome: success, or the condition that failed.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, SecondsFormat, Utc};
use mdops_core::store::{
    AUDIT_PREFIX, AuditEntry, AuditPage, CollectionEntry, Condition, DueEntry, Key, MAX_AUDIT_PAGE, Record, Store,
    StoreError, Write, validate_transaction,
};

/// Name of the collection index.
pub const COLLECTION_INDEX: &str = "collection";
/// Name of the due-time index.
pub const DUE_INDEX: &str = "due";
/// Times a transaction cancelled by a conflict with a concurrent one is tried again. Conflicts
/// clear in milliseconds; after this many the caller gets `Unavailable` and retries later.
const MAX_CONFLICT_RETRIES: u32 = 8;
/// First pause before retrying a conflicted transaction (doubled each time, with jitter).
const CONFLICT_BACKOFF: Duration = Duration::from_millis(20);
/// Pages read by one query. A page is up to 1 MB, so this only stops a runaway partition.
const MAX_PAGES: usize = 100;

/// The DynamoDB store. Cheap to clone; clones share the client.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

pub(crate) fn unavailable<E>(what: &str, err: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Unavailable {
        message: format!("dynamodb {what}: {}", mdops_core::errors::one_line(&err)),
        source: Some(Box::new(err)),
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A time as a fixed-width UTC string (nanoseconds), so string order is time order in the index.
pub(crate) fn sortable_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn key_item(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(&key.partition)), ("sk".to_string(), s(&key.sort))])
}

/// The condition expression and its values for a write's [`Condition`].
fn condition_expression(condition: Condition) -> (Option<String>, Vec<(String, AttributeValue)>) {
    match condition {
        Condition::Absent => (Some("attribute_not_exists(pk)".into()), Vec::new()),
        Condition::Version(n) => (
            Some("#version = :expected".into()),
            vec![(":expected".into(), AttributeValue::N(n.to_string()))],
        ),
        Condition::Any => (None, Vec::new()),
    }
}

/// Builds the `Update` that replaces a record (all attributes) under a condition.
fn put_update(table: &str, record: &mdops_core::store::NewRecord, condition: Condition) -> Result<Update, StoreError> {
    let body =
        serde_json::to_string(&record.body).map_err(|e| StoreError::Invalid(format!("body of {}: {e}", record.key)))?;
    let mut set = vec![
        "#body = :body",
        "#updated = :updated",
        "#version = if_not_exists(#version, :zero) + :one",
    ];
    let mut remove = Vec::new();
    let mut values = vec![
        (":body".to_string(), s(body)),
        (":updated".to_string(), s(sortable_time(Utc::now()))),
        (":zero".to_string(), AttributeValue::N("0".into())),
        (":one".to_string(), AttributeValue::N("1".into())),
    ];
    let mut names = vec![
        ("#body", "body"),
        ("#updated", "updated_at"),
        ("#version", "version"),
        ("#cn", "coll_name"),
        ("#cs", "coll_sort"),
        ("#dk", "due_kind"),
        ("#da", "due_at"),
    ];
    match &record.collection {
        Some(c) => {
            set.extend(["#cn = :cn", "#cs = :cs"]);
            values.push((":cn".into(), s(&c.name)));
            values.push((":cs".into(), s(&c.sort)));
        }
        None => remove.extend(["#cn", "#cs"]),
    }
    match &record.due {
        Some(d) => {
            set.extend(["#dk = :dk", "#da = :da"]);
            values.push((":dk".into(), s(&d.kind)));
            values.push((":da".into(), s(sortable_time(d.at))));
        }
        None => remove.extend(["#dk", "#da"]),
    }
    let mut expression = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    let (cond, cond_values) = condition_expression(condition);
    values.extend(cond_values);
    names.retain(|(placeholder, _)| {
        expression.contains(placeholder) || cond.as_deref().is_some_and(|c| c.contains(placeholder))
    });
    Update::builder()
        .table_name(table)
        .set_key(Some(key_item(&record.key)))
        .update_expression(expression)
        .set_condition_expression(cond)
        .set_expression_attribute_names(Some(
            names.into_iter().map(|(p, n)| (p.to_string(), n.to_string())).collect(),
        ))
        .set_expression_attribute_values(Some(values.into_iter().collect()))
        .build()
        .map_err(|e| StoreError::Invalid(format!("update for {}: {e}", record.key)))
}

/// The item of an audit entry. Sort key: append time then the write's random part, so entries
/// read back in the order written even when two share a timestamp.
fn audit_item(key: &Key, entry: &AuditEntry) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let detail = serde_json::to_string(&entry.detail)
        .map_err(|e| StoreError::Invalid(format!("audit detail for {}: {e}", entry.subject)))?;
    Ok(HashMap::from([
        ("pk".to_string(), s(&key.partition)),
        (
            "sk".to_string(),
            s(format!("{}#{}", sortable_time(Utc::now()), key.sort)),
        ),
        ("subject".to_string(), s(&entry.subject)),
        ("actor".to_string(), s(&entry.actor)),
        ("action".to_string(), s(&entry.action)),
        ("detail".to_string(), s(detail)),
        ("at".to_string(), s(sortable_time(entry.at))),
    ]))
}

/// Appends never replace: the key is new or the write fails.
const AUDIT_CONDITION: &str = "attribute_not_exists(pk)";

fn transact_item(table: &str, write: &Write) -> Result<TransactWriteItem, StoreError> {
    let versioned = |condition: Condition| {
        let (cond, values) = condition_expression(condition);
        let names: Option<HashMap<String, String>> = cond
            .as_deref()
            .filter(|c| c.contains("#version"))
            .map(|_| HashMap::from([("#version".to_string(), "version".to_string())]));
        let values: Option<HashMap<String, AttributeValue>> = if values.is_empty() {
            None
        } else {
            Some(values.into_iter().collect())
        };
        (cond, names, values)
    };
    Ok(match write {
        Write::Put { record, condition } => TransactWriteItem::builder()
            .update(put_update(table, record, *condition)?)
            .build(),
        Write::Delete { key, condition } => {
            let (cond, names, values) = versioned(*condition);
            let delete = Delete::builder()
                .table_name(table)
                .set_key(Some(key_item(key)))
                .set_condition_expression(cond)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(|e| StoreError::Invalid(format!("delete of {key}: {e}")))?;
            TransactWriteItem::builder().delete(delete).build()
        }
        Write::Check { key, condition } => {
            let (cond, names, values) = versioned(*condition);
            // A check with no condition checks nothing; DynamoDB insists on one, so use a tautology.
            let cond = cond.unwrap_or_else(|| "attribute_exists(pk) OR attribute_not_exists(pk)".into());
            let check = ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key_item(key)))
                .condition_expression(cond)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(|e| StoreError::Invalid(format!("check of {key}: {e}")))?;
            TransactWriteItem::builder().condition_check(check).build()
        }
        Write::Audit { key, entry } => {
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(audit_item(key, entry)?))
                .condition_expression(AUDIT_CONDITION)
                .build()
                .map_err(|e| StoreError::Invalid(format!("audit append for {key}: {e}")))?;
            TransactWriteItem::builder().put(put).build()
        }
    })
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Result<Option<&'a String>, String> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(other) => Err(format!("attribute {name} is not a string: {other:?}")),
    }
}

fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("attribute {name} {v:?} is not a time: {e}"))
}

/// Decodes an item; any problem is `Corrupt` naming the item's key.
pub(crate) fn decode(item: &HashMap<String, AttributeValue>) -> Result<Record, StoreError> {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => format!("<no {name}>"),
    };
    let key = Key::new(part("pk"), part("sk"));
    let fields = || -> Result<Record, String> {
        let version = match item.get("version") {
            Some(AttributeValue::N(n)) => n.parse::<u64>().map_err(|e| format!("version {n:?}: {e}"))?,
            other => return Err(format!("version is missing or not a number: {other:?}")),
        };
        let body = get_s(item, "body")?.ok_or("body is missing")?;
        let body = serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let updated_at = parse_time("updated_at", get_s(item, "updated_at")?.ok_or("updated_at is missing")?)?;
        let collection = match (get_s(item, "coll_name")?, get_s(item, "coll_sort")?) {
            (Some(name), Some(sort)) => Some(CollectionEntry {
                name: name.clone(),
                sort: sort.clone(),
            }),
            (None, None) => None,
            _ => return Err("coll_name and coll_sort must be both set or both absent".into()),
        };
        let due = match (get_s(item, "due_kind")?, get_s(item, "due_at")?) {
            (Some(kind), Some(at)) => Some(DueEntry {
                kind: kind.clone(),
                at: parse_time("due_at", at)?,
            }),
            (None, None) => None,
            _ => return Err("due_kind and due_at must be both set or both absent".into()),
        };
        Ok(Record {
            key: key.clone(),
            version,
            body,
            collection,
            due,
            updated_at,
        })
    };
    fields().map_err(|reason| StoreError::Corrupt {
        key: key.clone(),
        reason,
    })
}

impl DynamoStore {
    /// A store on `table` (created by [`crate::ensure_resources`] or the SAM template).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a query (base table or an index) to the end or to `limit` items, page by page.
    async fn query_items(
        &self,
        index: Option<&str>,
        key_condition: &str,
        names: HashMap<String, String>,
        values: HashMap<String, AttributeValue>,
        limit: Option<usize>,
        forward: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_PAGES {
            let remaining = limit.map(|l| l.saturating_sub(items.len()));
            if remaining == Some(0) {
                break;
            }
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression(key_condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_limit(remaining.map(|r| i32::try_from(r).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start.take())
                .scan_index_forward(forward)
                .send()
                .await
                .map_err(|e| unavailable("query", e))?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
        Ok(items)
    }

    async fn single_write(&self, write: &Write) -> Result<(), StoreError> {
        let result = match write {
            Write::Put { record, condition } => {
                let u = put_update(&self.table, record, *condition)?;
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(u.key().clone()))
                    .update_expression(u.update_expression())
                    .set_condition_expression(u.condition_expression().map(str::to_string))
                    .set_expression_attribute_names(u.expression_attribute_names().cloned())
                    .set_expression_attribute_values(u.expression_attribute_values().cloned())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.into_service_error())
                    .map_err(|e| (e.is_conditional_check_failed_exception(), unavailable("update item", e)))
            }
            Write::Delete { key, condition } => {
                let (cond, values) = condition_expression(*condition);
                let names = cond
                    .as_deref()
                    .filter(|c| c.contains("#version"))
                    .map(|_| HashMap::from([("#version".to_string(), "version".to_string())]));
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key_item(key)))
                    .set_condition_expression(cond)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(if values.is_empty() {
                        None
                    } else {
                        Some(values.into_iter().collect())
                    })
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.into_service_error())
                    .map_err(|e| (e.is_conditional_check_failed_exception(), unavailable("delete item", e)))
            }
            Write::Check { .. } => return self.transaction(std::slice::from_ref(write)).await,
            Write::Audit { key, entry } => self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(audit_item(key, entry)?))
                .condition_expression(AUDIT_CONDITION)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| e.into_service_error())
                .map_err(|e| {
                    (
                        e.is_conditional_check_failed_exception(),
                        unavailable("put audit entry", e),
                    )
                }),
        };
        match result {
            Ok(()) => Ok(()),
            Err((true, _)) => Err(StoreError::ConditionFailed {
                key: write.key().clone(),
            }),
            Err((false, e)) => Err(e),
        }
    }

    async fn transaction(&self, writes: &[Write]) -> Result<(), StoreError> {
        let items = writes
            .iter()
            .map(|w| transact_item(&self.table, w))
            .collect::<Result<Vec<_>, _>>()?;
        let mut backoff = CONFLICT_BACKOFF;
        for attempt in 0..=MAX_CONFLICT_RETRIES {
            let err = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => e.into_service_error(),
            };
            let reasons: Vec<Option<String>> = match &err {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
                    c,
                ) => c.cancellation_reasons().iter().map(|r| r.code().map(str::to_string)).collect(),
                _ => return Err(unavailable("transact write items", err)),
            };
            if let Some(i) = reasons
                .iter()
                .position(|c| c.as_deref() == Some("ConditionalCheckFailed"))
            {
                let key = writes.get(i).unwrap_or(&writes[0]).key().clone();
                return Err(StoreError::ConditionFailed { key });
            }
            let conflict = reasons.iter().any(|c| c.as_deref() == Some("TransactionConflict"))
                || err.message().is_some_and(|m| m.contains("TransactionConflict"));
            if reasons.is_empty() && !conflict {
                // No reasons given (some emulators): a cancelled transaction means a condition failed.
                if err.message().is_some_and(|m| m.contains("ConditionalCheckFailed")) {
                    return Err(StoreError::ConditionFailed {
                        key: writes[0].key().clone(),
                    });
                }
            }
            if !conflict || attempt == MAX_CONFLICT_RETRIES {
                return Err(unavailable("transact write items", err));
            }
            let jitter = Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 20);
            tokio::time::sleep(backoff + jitter).await;
            backoff *= 2;
        }
        Err(StoreError::Unavailable {
            message: "dynamodb transaction kept conflicting".into(),
            source: None,
        })
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_item(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("get item", e))?;
        out.item().map(decode).transpose()
    }

    async fn query(&self, partition: &str, sort_prefix: &str) -> Result<Vec<Record>, StoreError> {
        let mut values = HashMap::from([(":p".to_string(), s(partition))]);
        let condition = if sort_prefix.is_empty() {
            "pk = :p"
        } else {
            values.insert(":prefix".into(), s(sort_prefix));
            "pk = :p AND begins_with(sk, :prefix)"
        };
        let items = self
            .query_items(None, condition, HashMap::new(), values, None, true)
            .await?;
        items.iter().map(decode).collect()
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        validate_transaction(&writes)?;
        match writes.len() {
            0 => Ok(()),
            1 => self.single_write(&writes[0]).await,
            _ => self.transaction(&writes).await,
        }
    }

    async fn collection(&self, name: &str, sort_prefix: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        let names = HashMap::from([
            ("#cn".to_string(), "coll_name".to_string()),
            ("#cs".to_string(), "coll_sort".to_string()),
        ]);
        let mut values = HashMap::from([(":n".to_string(), s(name))]);
        let condition = if sort_prefix.is_empty() {
            "#cn = :n"
        } else {
            values.insert(":prefix".into(), s(sort_prefix));
            "#cn = :n AND begins_with(#cs, :prefix)"
        };
        let names = if sort_prefix.is_empty() {
            HashMap::from([("#cn".to_string(), "coll_name".to_string())])
        } else {
            names
        };
        let items = self
            .query_items(Some(COLLECTION_INDEX), condition, names, values, Some(limit), true)
            .await?;
        items.iter().map(decode).collect()
    }

    async fn due(&self, kind: &str, now: DateTime<Utc>, limit: usize) -> Result<Vec<Record>, StoreError> {
        let names = HashMap::from([
            ("#dk".to_string(), "due_kind".to_string()),
            ("#da".to_string(), "due_at".to_string()),
        ]);
        let values = HashMap::from([(":k".to_string(), s(kind)), (":now".to_string(), s(sortable_time(now)))]);
        let items = self
            .query_items(
                Some(DUE_INDEX),
                "#dk = :k AND #da <= :now",
                names,
                values,
                Some(limit),
                true,
            )
            .await?;
        items.iter().map(decode).collect()
    }

    async fn audit(&self, subject: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let values = HashMap::from([(":p".to_string(), s(format!("{AUDIT_PREFIX}{subject}")))]);
        let items = self
            .query_items(None, "pk = :p", HashMap::new(), values, Some(limit), true)
            .await?;
        items.iter().map(|item| audit_entry(subject, item)).collect()
    }

    async fn audit_page(&self, subject: &str, before: Option<&str>, limit: usize) -> Result<AuditPage, StoreError> {
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        let mut values = HashMap::from([(":p".to_string(), s(format!("{AUDIT_PREFIX}{subject}")))]);
        let condition = match before {
            Some(cursor) => {
                values.insert(":before".into(), s(cursor));
                "pk = :p AND sk < :before"
            }
            None => "pk = :p",
        };
        let items = self
            .query_items(None, condition, HashMap::new(), values, Some(limit), false)
            .await?;
        let next = (items.len() == limit)
            .then(|| items.last().and_then(|i| get_s(i, "sk").ok().flatten().cloned()))
            .flatten();
        Ok(AuditPage {
            entries: items
                .iter()
                .map(|item| audit_entry(subject, item))
                .collect::<Result<_, _>>()?,
            next,
        })
    }
}

/// Decodes an audit item; any problem is `Corrupt` naming its key.
fn audit_entry(subject: &str, item: &HashMap<String, AttributeValue>) -> Result<AuditEntry, StoreError> {
    let key = Key::new(
        format!("{AUDIT_PREFIX}{subject}"),
        get_s(item, "sk").ok().flatten().cloned().unwrap_or_default(),
    );
    let fields = || -> Result<AuditEntry, String> {
        let text = |name: &str| -> Result<String, String> {
            get_s(item, name)?.cloned().ok_or_else(|| format!("{name} is missing"))
        };
        Ok(AuditEntry {
            subject: text("subject")?,
            actor: text("actor")?,
            action: text("action")?,
            detail: serde_json::from_str(&text("detail")?).map_err(|e| format!("detail is not JSON: {e}"))?,
            at: parse_time("at", &text("at")?)?,
        })
    };
    fields().map_err(|reason| StoreError::Corrupt { key, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn sortable_time_orders_like_time() {
        let a = DateTime::parse_from_rfc3339("2026-01-01T00:00:00.9Z").map(|t| t.with_timezone(&Utc));
        let b = DateTime::parse_from_rfc3339("2026-01-01T00:00:01Z").map(|t| t.with_timezone(&Utc));
        let (a, b) = (a.expect("time a"), b.expect("time b"));
        assert!(
            sortable_time(a) < sortable_time(b),
            "{} < {}",
            sortable_time(a),
            sortable_time(b)
        );
        assert_eq!(sortable_time(a).len(), sortable_time(b).len(), "fixed width");
    }

    #[test]
    fn undecodable_items_name_their_key() {
        let good = item(&[
            ("pk", s("run#1")),
            ("sk", s("meta")),
            ("version", AttributeValue::N("2".into())),
            ("body", s("{\"a\":1}")),
            ("updated_at", s("2026-01-01T00:00:00Z")),
        ]);
        assert_eq!(decode(&good).expect("decodes").version, 2);
        let cases = [
            ("body", AttributeValue::N("1".into()), "body"),
            ("body", s("{not json"), "JSON"),
            ("version", s("two"), "version"),
            ("updated_at", s("yesterday"), "updated_at"),
            ("coll_name", s("runs"), "coll_sort"),
        ];
        for (attr, value, says) in cases {
            let mut bad = good.clone();
            bad.insert(attr.to_string(), value);
            match decode(&bad) {
                Err(StoreError::Corrupt { key, reason }) => {
                    assert_eq!(key, Key::new("run#1", "meta"));
                    assert!(reason.contains(says), "{attr}: {reason}");
                }
                other => panic!("{attr}: expected Corrupt, got {other:?}"),
            }
        }
    }
}
