//! The fleet budget: one Graph quota per tenant for every process of a deployment.
//!
//! The in-process [`crate::limiter`] paces one process; N Lambda instances (or N workers on one
//! database) would each spend the whole quota. With a fleet budget the client also takes a permit
//! from counters in the state store ([`mdops_core::budget::RequestBudget`]) right before each
//! request is sent, so all processes together stay within the tenant's quota.
//!
//! Graph's quotas are sliding windows ("N requests per W per app and tenant",
//! https://learn.microsoft.com/graph/throttling-limits); the store keeps fixed-window counters,
//! which are one atomic write each. Time is cut into slots of [`LimiterSettings::shared_slot`]
//! (numbered from the Unix epoch, so every process agrees), and a bucket of `permits` per `per`
//! allows `permits / (k + 1)` per slot, `k = ceil(per / slot)`: any window of length `per`
//! overlaps at most `k + 1` slots, so it never holds more than `permits`. No permit is taken in
//! the last [`slot_margin`] of a slot (the request would risk arriving in the next one), which
//! absorbs clock skew between hosts and the time from the take to Graph reading the request.
//!
//! Cost: one store write per Graph request (a `$batch` takes its items' permits in one write),
//! plus one per refused take; a refused take waits for the next slot, and the process's other
//! waiters for the same tenant skip a slot it was refused, so refused writes are at most one per
//! process, tenant and slot while the tenant is at its quota. A store failure fails closed: the request is not sent and
//! the caller gets [`GraphError::Budget`], a transient error retried later from the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdops_core::budget::{BudgetSlot, Charge, Grant, RequestBudget};
use tokio::time::Instant;

use crate::error::{GraphError, Result};
use crate::limiter::{BucketSettings, LimiterSettings, RequestKind};

/// Slots a slot's counters outlive its end before the store may delete them (TTL, pruning).
const KEEP_SLOTS: u32 = 2;

/// How many requests of each quota one send carries (1 for a request, the items for a `$batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestCounts {
    /// Every request.
    pub all: u32,
    /// Directory writes among them.
    pub directory_writes: u32,
    /// Intune writes among them.
    pub intune_writes: u32,
}

impl RequestCounts {
    /// The counts of one request of `kind`.
    pub fn one(kind: RequestKind) -> RequestCounts {
        let mut c = RequestCounts::default();
        c.add(kind);
        c
    }

    /// Adds one request of `kind`.
    pub fn add(&mut self, kind: RequestKind) {
        self.all += 1;
        match kind {
            RequestKind::Read => {}
            RequestKind::DirectoryWrite => self.directory_writes += 1,
            RequestKind::IntuneWrite => self.intune_writes += 1,
        }
    }
}

/// Permits a bucket allows per slot: `permits / (ceil(per / slot) + 1)`.
pub fn per_slot(bucket: BucketSettings, slot: Duration) -> u32 {
    let slot_ms = slot.as_millis().max(1);
    let windows = bucket.per.as_millis().div_ceil(slot_ms);
    let per_slot = u128::from(bucket.permits) / (windows + 1);
    u32::try_from(per_slot).unwrap_or(u32::MAX)
}

/// The end part of a slot in which no permit is taken: 5% of it, at most 1 s (as the in-process
/// limiter's window margin).
pub fn slot_margin(slot: Duration) -> Duration {
    (slot / 20).min(Duration::from_secs(1))
}

/// What the budget did, for the figures in docs/deploy.md (store calls per Graph request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetStats {
    /// Store writes made (granted + refused).
    pub takes: u64,
    /// Takes granted.
    pub granted: u64,
}

/// A tenant and the counters one take charges (`all,intune_writes`).
type TakeKey = (String, String);

/// The shared budget as the client holds it.
pub struct FleetBudget {
    budget: Arc<dyn RequestBudget>,
    takes: AtomicU64,
    granted: AtomicU64,
    /// The last slot this process was refused, per tenant and set of counters: the process's
    /// other waiters skip that slot instead of each paying a refused write.
    full: Mutex<HashMap<TakeKey, i64>>,
    /// One take in flight per tenant and set of counters in this process: waiters queue here,
    /// so after one refusal the rest of the queue skips the slot without a write.
    in_flight: Mutex<HashMap<TakeKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for FleetBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetBudget").field("stats", &self.stats()).finish()
    }
}

fn since_epoch() -> Duration {
    // A clock before 1970 is a broken host; slot 0 then, which still counts consistently.
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl FleetBudget {
    /// A fleet budget over the store's counters.
    pub fn new(budget: Arc<dyn RequestBudget>) -> FleetBudget {
        FleetBudget {
            budget,
            takes: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            full: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Takes so far.
    pub fn stats(&self) -> FleetStats {
        FleetStats {
            takes: self.takes.load(Ordering::Relaxed),
            granted: self.granted.load(Ordering::Relaxed),
        }
    }

    fn charges(settings: &LimiterSettings, counts: RequestCounts) -> Vec<Charge> {
        let slot = settings.shared_slot;
        let mut charges = vec![Charge {
            counter: "all".into(),
            count: counts.all,
            limit: per_slot(settings.all, slot),
        }];
        for (counter, count, bucket) in [
            ("directory_writes", counts.directory_writes, settings.directory_writes),
            ("intune_writes", counts.intune_writes, settings.intune_writes),
        ] {
            if count > 0 {
                charges.push(Charge {
                    counter: counter.into(),
                    count,
                    limit: per_slot(bucket, slot),
                });
            }
        }
        charges
    }

    /// Whether `counts` can ever be granted in one take (each count within its per-slot limit).
    pub fn fits(settings: &LimiterSettings, counts: RequestCounts) -> bool {
        Self::charges(settings, counts).iter().all(|c| c.count <= c.limit)
    }

    /// Takes permits for `counts` requests to `tenant`, waiting for later slots up to
    /// `settings.max_wait`. Returns when the request may be sent, now.
    pub async fn acquire(&self, tenant: &str, settings: &LimiterSettings, counts: RequestCounts) -> Result<()> {
        let charges = Self::charges(settings, counts);
        if let Some(c) = charges.iter().find(|c| c.count > c.limit) {
            // Checked when the budget is set (`validate_shared`) and `$batch` splits to fit, so
            // this is a programming error; it is permanent and says what to change.
            return Err(GraphError::Config {
                field: "limiter.shared_slot_ms",
                problem: format!(
                    "tenant {tenant}: one send needs {} {} permits but a shared-budget slot of {:?} allows {}: \
                     lengthen limiter.shared_slot_ms or raise the tenant's budget",
                    c.count, c.counter, settings.shared_slot, c.limit
                ),
            });
        }
        let full_key = (
            tenant.to_string(),
            charges.iter().map(|c| c.counter.as_str()).collect::<Vec<_>>().join(","),
        );
        let known_full = |index: i64| {
            self.full
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&full_key)
                .is_some_and(|&f| f >= index)
        };
        let turn = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(full_key.clone())
            .or_default()
            .clone();
        let slot_len = settings.shared_slot;
        let margin = slot_margin(slot_len);
        let started = Instant::now();
        // Each round either takes once or sleeps into the next slot; a slot per round at most.
        let max_rounds = 2 * (settings.max_wait.as_millis() / slot_len.as_millis().max(1)) as usize + 4;
        for _ in 0..max_rounds {
            // The time is read after the turn comes, so the margin check is not stale.
            let turn_guard = turn.lock().await;
            let now = since_epoch();
            let slot_ms = slot_len.as_millis().max(1);
            let index = (now.as_millis() / slot_ms) as i64;
            let into = Duration::from_millis((now.as_millis() % slot_ms) as u64);
            let to_next = slot_len.saturating_sub(into);
            if to_next > margin && !known_full(index) {
                let slot = BudgetSlot {
                    tenant: tenant.to_string(),
                    index,
                    expires_at: chrono::DateTime::from_timestamp_millis(
                        ((index + 1 + i64::from(KEEP_SLOTS)) * slot_ms as i64).min(i64::MAX / 2),
                    )
                    .unwrap_or_else(chrono::Utc::now),
                };
                self.takes.fetch_add(1, Ordering::Relaxed);
                match self.budget.take(&slot, &charges).await {
                    Ok(Grant::Granted) => {
                        self.granted.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Ok(Grant::Full) => {
                        let mut full = self.full.lock().unwrap_or_else(|p| p.into_inner());
                        let f = full.entry(full_key.clone()).or_insert(index);
                        *f = (*f).max(index);
                    }
                    Err(e) => {
                        return Err(GraphError::Budget {
                            tenant: tenant.to_string(),
                            message: mdops_core::errors::one_line(&e),
                        });
                    }
                }
            }
            drop(turn_guard);
            // Full, or too near the slot's end: wait for the next slot, with a little jitter so
            // instances waiting together do not all write at its first millisecond.
            let now = since_epoch();
            let into = Duration::from_millis((now.as_millis() % slot_len.as_millis().max(1)) as u64);
            let jitter = Duration::from_millis(u64::from(rand::random::<u8>()) % (margin.as_millis() as u64 + 1));
            let wait = slot_len.saturating_sub(into) + jitter;
            if started.elapsed() + wait > settings.max_wait {
                return Err(GraphError::Limited {
                    tenant: tenant.to_string(),
                    bucket: "shared",
                    wait,
                });
            }
            tracing::debug!(
                tenant,
                wait_ms = wait.as_millis() as u64,
                "waiting for the next slot of the shared Graph budget"
            );
            tokio::time::sleep(wait).await;
        }
        Err(GraphError::Limited {
            tenant: tenant.to_string(),
            bucket: "shared",
            wait: slot_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_slot_limits_keep_every_window_within_the_quota() {
        let slot = Duration::from_secs(2);
        let bucket = |permits, secs| BucketSettings {
            permits,
            per: Duration::from_secs(secs),
        };
        // 1,000 per 10 s: 5 slots per window, so a window overlaps at most 6: 166 each.
        assert_eq!(per_slot(bucket(1000, 10), slot), 166);
        // 80 per 20 s: 10 slots per window: 80 / 11.
        assert_eq!(per_slot(bucket(80, 20), slot), 7);
        // 2,400 per 150 s: 75 slots per window.
        assert_eq!(per_slot(bucket(2400, 150), slot), 31);
        // A window shorter than the slot still overlaps two slots.
        assert_eq!(per_slot(bucket(10, 1), slot), 5);
        // Brute force: whatever the phase, a window holds at most the quota when every slot is full.
        for (permits, per_ms, slot_ms) in [(100u32, 10_000u64, 2_000u64), (7, 3_000, 2_000), (30, 2_000, 700)] {
            let b = BucketSettings {
                permits,
                per: Duration::from_millis(per_ms),
            };
            let limit = u64::from(per_slot(b, Duration::from_millis(slot_ms)));
            for start in (0..4 * slot_ms).step_by(50) {
                let first = start / slot_ms;
                let last = (start + per_ms - 1) / slot_ms;
                assert!(
                    (last - first + 1) * limit <= u64::from(permits),
                    "{permits}/{per_ms} ms, slot {slot_ms}: window at {start}"
                );
            }
        }
    }

    #[test]
    fn a_send_is_charged_to_every_quota_it_counts_against() {
        let s = LimiterSettings::default();
        let mut counts = RequestCounts::one(RequestKind::IntuneWrite);
        counts.add(RequestKind::Read);
        let charges = FleetBudget::charges(&s, counts);
        let named: Vec<(&str, u32)> = charges.iter().map(|c| (c.counter.as_str(), c.count)).collect();
        assert_eq!(named, vec![("all", 2), ("intune_writes", 1)]);
        assert!(FleetBudget::fits(&s, counts));
        let mut many = RequestCounts::default();
        for _ in 0..20 {
            many.add(RequestKind::IntuneWrite);
        }
        assert!(!FleetBudget::fits(&s, many), "20 Intune writes exceed a 2 s slot's 7");
    }
}
