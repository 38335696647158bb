//! The [`RequestBudget`] port on DynamoDB: one item per tenant and slot in the state table
//! (`pk = ~budget#<tenant>`, `sk = slot#<index>`), one number attribute per counter (`c_<name>`).
//!
//! A take is one `UpdateItem`: `ADD` every charge to its counter under the condition that each
//! counter is absent or at most `limit - count`, and `SET expires_at` (the table's TTL attribute,
//! epoch seconds) so DynamoDB deletes the slot after it ends. A failed condition is
//! [`Grant::Full`]; DynamoDB applies the condition and the update atomically, so concurrent takes
//! from any number of function instances never pass a limit. One write request unit per take
//! (the item is far under 1 KB).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use mdops_core::budget::{BudgetSlot, Charge, Grant, RequestBudget, validate_take};
use mdops_core::store::StoreError;

use crate::dynamo::{DynamoStore, unavailable};

/// Partition prefix of budget slots. `~` keeps them apart from every domain prefix.
pub const BUDGET_PREFIX: &str = "~budget#";

/// The `UpdateItem` expressions of one take: update, condition, names, values.
fn take_expressions(
    slot: &BudgetSlot,
    charges: &[Charge],
) -> (String, String, HashMap<String, String>, HashMap<String, AttributeValue>) {
    let mut adds = Vec::with_capacity(charges.len());
    let mut conditions = Vec::with_capacity(charges.len());
    let mut names = HashMap::from([("#exp".to_string(), "expires_at".to_string())]);
    let mut values = HashMap::from([(
        ":exp".to_string(),
        AttributeValue::N(slot.expires_at.timestamp().to_string()),
    )]);
    for (i, c) in charges.iter().enumerate() {
        names.insert(format!("#c{i}"), format!("c_{}", c.counter));
        values.insert(format!(":n{i}"), AttributeValue::N(c.count.to_string()));
        // `count <= limit` (validated), so the difference is never negative.
        values.insert(format!(":m{i}"), AttributeValue::N((c.limit - c.count).to_string()));
        adds.push(format!("#c{i} :n{i}"));
        conditions.push(format!("(attribute_not_exists(#c{i}) OR #c{i} <= :m{i})"));
    }
    (
        format!("SET #exp = :exp ADD {}", adds.join(", ")),
        conditions.join(" AND "),
        names,
        values,
    )
}

#[async_trait]
impl RequestBudget for DynamoStore {
    async fn take(&self, slot: &BudgetSlot, charges: &[Charge]) -> Result<Grant, StoreError> {
        validate_take(slot, charges)?;
        if charges.iter().any(|c| c.count > c.limit) {
            // Could never fit; say so without a request.
            return Ok(Grant::Full);
        }
        let (update, condition, names, values) = take_expressions(slot, charges);
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", AttributeValue::S(format!("{BUDGET_PREFIX}{}", slot.tenant)))
            .key("sk", AttributeValue::S(format!("slot#{}", slot.index)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| e.into_service_error());
        match result {
            Ok(_) => Ok(Grant::Granted),
            Err(e) if e.is_conditional_check_failed_exception() => Ok(Grant::Full),
            Err(e) => Err(unavailable("update budget slot", e)),
        }
    }
}
