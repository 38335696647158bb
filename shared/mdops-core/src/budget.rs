//! The request-budget port: counters shared by every process of a deployment, so the whole fleet
//! (every Lambda instance, every embedded worker on one database) spends one Graph quota per
//! tenant instead of each process spending it in full.
//!
//! A budget is a set of fixed-window counters per tenant: a [`BudgetSlot`] names the tenant and the
//! slot (a window of time, numbered from the Unix epoch), a [`Charge`] adds to one named counter of
//! that slot up to a limit. [`RequestBudget::take`] applies all charges or none, atomically across
//! processes: one conditional `UpdateItem` on DynamoDB, one write transaction on SQLite. The Graph
//! client turns Graph's sliding-window quotas into per-slot limits (see `mdops_graph::fleet`).
//!
//! Slots end: each carries `expires_at`, after which adapters may delete it (DynamoDB's TTL; the
//! SQLite adapter prunes expired slots when it opens a new one).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store::StoreError;

/// Most charges one [`RequestBudget::take`] may carry.
pub const MAX_CHARGES: usize = 4;
/// Longest counter name: they become attribute / column values, so keep them short.
pub const MAX_COUNTER_NAME: usize = 32;

/// One slot of one tenant's budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSlot {
    /// Customer tenant id.
    pub tenant: String,
    /// Slot number: the slot's start, in slot lengths since the Unix epoch.
    pub index: i64,
    /// When the slot's counters may be deleted (its end, plus any margin the caller wants).
    pub expires_at: DateTime<Utc>,
}

/// Adds `count` to counter `counter` of a slot, if the counter stays at or under `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Counter name: lowercase ASCII letters, digits and `_` (e.g. `all`, `intune_writes`).
    pub counter: String,
    /// How much to add (at least 1).
    pub count: u32,
    /// Highest value the counter may reach (at least 1).
    pub limit: u32,
}

/// What a take got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every charge was added.
    Granted,
    /// At least one counter would pass its limit; nothing was added.
    Full,
}

/// The request-budget port.
#[async_trait]
pub trait RequestBudget: Send + Sync {
    /// Adds every charge to its counter in `slot`, all or none: all when each counter stays at or
    /// under its limit, none otherwise ([`Grant::Full`]). Concurrent takes from any number of
    /// processes never push a counter past its limit.
    async fn take(&self, slot: &BudgetSlot, charges: &[Charge]) -> Result<Grant, StoreError>;
}

/// Checks a take's shape, the same for every adapter: 1..=[`MAX_CHARGES`] charges on distinct,
/// well-formed counters, each with a count and a limit of at least 1.
pub fn validate_take(slot: &BudgetSlot, charges: &[Charge]) -> Result<(), StoreError> {
    if slot.tenant.is_empty() {
        return Err(StoreError::Invalid("budget slot: tenant is empty".into()));
    }
    if charges.is_empty() || charges.len() > MAX_CHARGES {
        return Err(StoreError::Invalid(format!(
            "budget take: {} charges, expected 1 to {MAX_CHARGES}",
            charges.len()
        )));
    }
    for (i, c) in charges.iter().enumerate() {
        let well_formed = !c.counter.is_empty()
            && c.counter.len() <= MAX_COUNTER_NAME
            && c.counter
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            return Err(StoreError::Invalid(format!(
                "budget counter {:?}: use 1 to {MAX_COUNTER_NAME} of a-z, 0-9, _",
                c.counter
            )));
        }
        if c.count == 0 || c.limit == 0 {
            return Err(StoreError::Invalid(format!(
                "budget counter {}: count and limit must be at least 1, got {} of {}",
                c.counter, c.count, c.limit
            )));
        }
        if charges[..i].iter().any(|o| o.counter == c.counter) {
            return Err(StoreError::Invalid(format!(
                "budget take charges counter {} twice",
                c.counter
            )));
        }
    }
    Ok(())
}
