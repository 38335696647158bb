//! The [`RequestBudget`] port on SQLite: a `budget_counters` row per (tenant, slot, counter).
//!
//! A take is one write transaction (`BEGIN IMMEDIATE`, so across processes on the same file one
//! take at a time): read each counter, refuse if any would pass its limit, else add to all. A take
//! that opens a tenant's new slot also deletes that tenant's expired slots, so the table holds
//! about one live slot per tenant.

use async_trait::async_trait;
use chrono::Utc;
use mdops_core::budget::{BudgetSlot, Charge, Grant, RequestBudget, validate_take};
use mdops_core::store::StoreError;
use rusqlite::{OptionalExtension, params};

use crate::db::{Context, write_tx};
use crate::store::{SqliteStore, unavailable};

#[async_trait]
impl RequestBudget for SqliteStore {
    async fn take(&self, slot: &BudgetSlot, charges: &[Charge]) -> Result<Grant, StoreError> {
        validate_take(slot, charges)?;
        let slot = slot.clone();
        let charges = charges.to_vec();
        self.pool
            .run(move |conn| {
                let tx = write_tx(conn)?;
                let mut opens_slot = false;
                for c in &charges {
                    let current: Option<i64> = tx
                        .prepare_cached(
                            "SELECT count FROM budget_counters WHERE tenant = ?1 AND slot = ?2 AND counter = ?3",
                        )
                        .what("prepare budget read")?
                        .query_row(params![slot.tenant, slot.index, c.counter], |r| r.get(0))
                        .optional()
                        .what("read budget counter")?;
                    opens_slot |= current.is_none();
                    if current.unwrap_or(0) + i64::from(c.count) > i64::from(c.limit) {
                        // Dropping `tx` rolls back; nothing was written.
                        return Ok(Grant::Full);
                    }
                }
                let expires = slot.expires_at.timestamp_millis();
                for c in &charges {
                    tx.prepare_cached(
                        "INSERT INTO budget_counters (tenant, slot, counter, count, expires_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (tenant, slot, counter) DO UPDATE SET count = count + excluded.count",
                    )
                    .what("prepare budget add")?
                    .execute(params![slot.tenant, slot.index, c.counter, c.count, expires])
                    .what("add to budget counter")?;
                }
                if opens_slot {
                    tx.prepare_cached("DELETE FROM budget_counters WHERE tenant = ?1 AND expires_at_ms < ?2")
                        .what("prepare budget prune")?
                        .execute(params![slot.tenant, Utc::now().timestamp_millis()])
                        .what("prune expired budget slots")?;
                }
                tx.commit().what("commit budget take")?;
                Ok(Grant::Granted)
            })
            .await
            .map_err(unavailable)
    }
}
