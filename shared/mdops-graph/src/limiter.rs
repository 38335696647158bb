//! Per-tenant request limiter sized from Graph's published quotas, so a worker onboarding many
//! tenants spreads its calls instead of walking into 429 storms.
//!
//! Graph's quotas are "N requests per window", so each bucket is an exact sliding window: a request
//! is granted a slot only when fewer than `permits` slots fall in the `per` before it. (A token
//! bucket of the same size would allow a full burst *plus* a window's refill, up to twice the
//! quota in one window.) A bucket keeps at most `permits` timestamps, pruned as they age out.
//!
//! Each tenant has three buckets; a request takes one permit from every bucket that applies:
//! `all` (every request), `directory_writes` (writes outside Intune) and `intune_writes` (writes
//! under `/deviceManagement` and `/deviceAppManagement`). Waiting for a permit is async and bounded
//! by [`LimiterSettings::max_wait`]: past it the caller gets [`GraphError::Limited`], a throttled
//! error the handler turns into `Retry(after)`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{GraphError, Result};

/// One bucket: at most `permits` requests in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSettings {
    /// Requests allowed per window.
    pub permits: u32,
    /// The window.
    #[serde(rename = "per_ms", with = "crate::config::millis")]
    pub per: Duration,
}

/// Default slot of the shared budget ([`LimiterSettings::shared_slot`]).
pub const DEFAULT_SHARED_SLOT: Duration = Duration::from_secs(2);

/// Limiter configuration. The defaults keep ~20% headroom under the published quotas
/// (https://learn.microsoft.com/graph/throttling-limits: identity and access, per app and tenant,
/// 3,500-8,000 resource units per 10 s and 3,000 writes per 150 s; Intune device configuration
/// 100 writes and 1,000 requests per 20 s) because other apps of the same customer share the
/// tenant-wide ones. The same buckets size the fleet's shared budget ([`crate::fleet`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimiterSettings {
    /// Every request to the tenant.
    pub all: BucketSettings,
    /// Directory (identity) writes: Graph allows ~3,000 per 150 s per app and tenant.
    pub directory_writes: BucketSettings,
    /// Intune device-configuration writes: Graph allows 100 per 20 s per app and tenant.
    pub intune_writes: BucketSettings,
    /// Longest wait for a permit before the call gives up with [`GraphError::Limited`].
    #[serde(rename = "max_wait_ms", with = "crate::config::millis")]
    pub max_wait: Duration,
    /// Slot length of the fleet's shared budget ([`crate::fleet`]), when the client has one: each
    /// bucket allows `permits / (ceil(per / slot) + 1)` per slot across all processes.
    #[serde(rename = "shared_slot_ms", with = "crate::config::millis")]
    pub shared_slot: Duration,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        LimiterSettings {
            // Identity reads are limited by resource units per 10 s (thousands for a mid-size
            // tenant); 1,000 requests per 10 s stays below that for the mix mdops sends.
            all: BucketSettings {
                permits: 1000,
                per: Duration::from_secs(10),
            },
            directory_writes: BucketSettings {
                permits: 2400,
                per: Duration::from_secs(150),
            },
            intune_writes: BucketSettings {
                permits: 80,
                per: Duration::from_secs(20),
            },
            // Same cap as an in-process retry wait: longer waits belong on the queue.
            max_wait: Duration::from_secs(10),
            // 2 s: the per-slot shares of the default buckets are 166 requests, 31 directory
            // writes and 7 Intune writes (83%, 97% and 88% of the buckets over their windows).
            shared_slot: DEFAULT_SHARED_SLOT,
        }
    }
}

impl LimiterSettings {
    /// Checks every bucket has permits and a window.
    pub fn validate(&self) -> Result<()> {
        for (field, b) in [
            ("limiter.all", self.all),
            ("limiter.directory_writes", self.directory_writes),
            ("limiter.intune_writes", self.intune_writes),
        ] {
            if b.permits == 0 || b.per.is_zero() {
                return Err(GraphError::Config {
                    field,
                    problem: format!("needs permits > 0 and a window > 0, got {} per {:?}", b.permits, b.per),
                });
            }
        }
        if self.shared_slot < Duration::from_millis(100) {
            return Err(GraphError::Config {
                field: "limiter.shared_slot_ms",
                problem: format!(
                    "{:?} is under 100 ms: a store write per slot would dominate",
                    self.shared_slot
                ),
            });
        }
        Ok(())
    }

    /// [`Self::validate`], and that every bucket keeps at least one permit per slot of the shared
    /// budget (a client with one checks this for its defaults and for each tenant's budget).
    pub fn validate_shared(&self) -> Result<()> {
        self.validate()?;
        for (field, b) in [
            ("limiter.all", self.all),
            ("limiter.directory_writes", self.directory_writes),
            ("limiter.intune_writes", self.intune_writes),
        ] {
            if crate::fleet::per_slot(b, self.shared_slot) == 0 {
                return Err(GraphError::Config {
                    field: "limiter.shared_slot_ms",
                    problem: format!(
                        "a shared-budget slot of {:?} leaves {field} ({} per {:?}) no permit per slot: \
                         lengthen limiter.shared_slot_ms or raise the budget",
                        self.shared_slot, b.permits, b.per
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Which quota a request counts against, besides `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A read (GET).
    Read,
    /// A write to the directory (users, groups, roles, organization, ...).
    DirectoryWrite,
    /// A write to Intune (`/deviceManagement`, `/deviceAppManagement`).
    IntuneWrite,
}

impl RequestKind {
    /// Classifies a request by method and path below the Graph base.
    pub fn of(method: &reqwest::Method, path: &str) -> RequestKind {
        if method == reqwest::Method::GET || method == reqwest::Method::HEAD {
            return RequestKind::Read;
        }
        let p = path.trim_start_matches('/');
        if p == "$batch" {
            // The envelope is free; each item takes its own permit (Graph counts items, not envelopes).
            return RequestKind::Read;
        }
        if p.starts_with("deviceManagement") || p.starts_with("deviceAppManagement") {
            RequestKind::IntuneWrite
        } else {
            RequestKind::DirectoryWrite
        }
    }
}

/// Extra spacing between a slot and the one `permits` later: 5% of the window, at most 1 s. Graph
/// counts a request when it arrives, not when we send it, and network and server jitter would
/// otherwise let one window's last request land inside the next window's first.
fn window_margin(per: Duration) -> Duration {
    (per / 20).min(Duration::from_secs(1))
}

#[derive(Debug)]
struct Bucket {
    settings: BucketSettings,
    /// Slots granted (some possibly in the future, reserved by waiters), oldest first; at most
    /// `permits` of them, since only the `permits`-th most recent decides the next slot.
    slots: VecDeque<Instant>,
}

impl Bucket {
    fn new(settings: BucketSettings) -> Bucket {
        Bucket {
            settings,
            slots: VecDeque::new(),
        }
    }

    /// The earliest slot at or after `now` that keeps every window within the quota.
    fn next_slot(&mut self, now: Instant) -> Instant {
        let per = self.settings.per;
        while self.slots.front().is_some_and(|&t| t + per <= now) {
            self.slots.pop_front();
        }
        if self.slots.len() < self.settings.permits as usize {
            // No reserved future slot can exist here (a waiter's slot keeps `permits` slots within
            // its window), so granting `now` keeps the slots in order.
            now
        } else {
            self.slots
                .front()
                .map_or(now, |&oldest| now.max(oldest + per + window_margin(per)))
        }
    }

    fn take(&mut self, slot: Instant) {
        self.slots.push_back(slot);
        while self.slots.len() > self.settings.permits as usize {
            self.slots.pop_front();
        }
    }
}

#[derive(Debug)]
struct TenantBuckets {
    all: Bucket,
    directory_writes: Bucket,
    intune_writes: Bucket,
}

/// The limiter shared by every call of one [`crate::GraphClient`].
#[derive(Debug)]
pub struct Limiter {
    settings: LimiterSettings,
    tenants: Mutex<HashMap<String, TenantBuckets>>,
    /// Per-tenant budgets that replace `settings` for that tenant (from the tenant registry).
    overrides: Mutex<HashMap<String, LimiterSettings>>,
}

impl Limiter {
    /// A limiter with no tenants yet; tenants get full buckets on first use.
    pub fn new(settings: LimiterSettings) -> Limiter {
        Limiter {
            settings,
            tenants: Mutex::new(HashMap::new()),
            overrides: Mutex::new(HashMap::new()),
        }
    }

    /// Gives one tenant its own budget (e.g. a smaller share of the quota for a tenant whose own
    /// admins use Graph heavily). Applies from the next request; permits already granted stand.
    pub fn set_tenant(&self, tenant: &str, settings: LimiterSettings) -> Result<()> {
        settings.validate()?;
        self.overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), settings);
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(buckets) = tenants.get_mut(tenant) {
            buckets.all.settings = settings.all;
            buckets.directory_writes.settings = settings.directory_writes;
            buckets.intune_writes.settings = settings.intune_writes;
        }
        Ok(())
    }

    /// The settings in force for `tenant`: its own budget, or the defaults.
    pub fn settings_for(&self, tenant: &str) -> LimiterSettings {
        self.overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .copied()
            .unwrap_or(self.settings)
    }

    /// Takes a permit for one request, waiting (asynchronously) up to `max_wait` for it.
    pub async fn acquire(&self, tenant: &str, kind: RequestKind) -> Result<()> {
        let wait = self.reserve(tenant, kind)?;
        if !wait.is_zero() {
            tracing::debug!(
                tenant,
                ?kind,
                wait_ms = wait.as_millis() as u64,
                "waiting for a limiter permit"
            );
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Reserves the permits now (letting buckets go negative so waiters keep their order) and
    /// returns how long the caller must wait before using them.
    fn reserve(&self, tenant: &str, kind: RequestKind) -> Result<Duration> {
        let now = Instant::now();
        // A poisoned lock only means another call panicked mid-update; the counts are still usable.
        let s = self.settings_for(tenant);
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = tenants.entry(tenant.to_string()).or_insert_with(|| TenantBuckets {
            all: Bucket::new(s.all),
            directory_writes: Bucket::new(s.directory_writes),
            intune_writes: Bucket::new(s.intune_writes),
        });
        let mut chosen: Vec<(&'static str, &mut Bucket)> = vec![("all", &mut buckets.all)];
        match kind {
            RequestKind::Read => {}
            RequestKind::DirectoryWrite => chosen.push(("directory_writes", &mut buckets.directory_writes)),
            RequestKind::IntuneWrite => chosen.push(("intune_writes", &mut buckets.intune_writes)),
        }
        let mut slot = now;
        for (name, bucket) in chosen.iter_mut() {
            let own = bucket.next_slot(now);
            let wait = own.saturating_duration_since(now);
            if wait > s.max_wait {
                return Err(GraphError::Limited {
                    tenant: tenant.to_string(),
                    bucket: name,
                    wait,
                });
            }
            slot = slot.max(own);
        }
        // The latest slot of all buckets is at or after each bucket's own, so order is kept.
        for (_, bucket) in chosen {
            bucket.take(slot);
        }
        Ok(slot.saturating_duration_since(now))
    }
}

/// Shared handle, as the client holds it.
pub type SharedLimiter = Arc<Limiter>;

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> LimiterSettings {
        LimiterSettings {
            all: BucketSettings {
                permits: 100,
                per: Duration::from_secs(1),
            },
            directory_writes: BucketSettings {
                permits: 50,
                per: Duration::from_secs(1),
            },
            intune_writes: BucketSettings {
                permits: 2,
                per: Duration::from_secs(2),
            },
            max_wait: Duration::from_secs(3),
            shared_slot: DEFAULT_SHARED_SLOT,
        }
    }

    #[test]
    fn requests_are_sorted_into_quotas() {
        use reqwest::Method;
        assert_eq!(
            RequestKind::of(&Method::GET, "/deviceManagement/detectedApps"),
            RequestKind::Read
        );
        assert_eq!(RequestKind::of(&Method::POST, "/users"), RequestKind::DirectoryWrite);
        assert_eq!(
            RequestKind::of(&Method::POST, "deviceManagement/deviceConfigurations"),
            RequestKind::IntuneWrite
        );
        assert_eq!(
            RequestKind::of(&Method::PATCH, "/deviceAppManagement/mobileApps/1"),
            RequestKind::IntuneWrite
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_with_its_own_budget_is_limited_by_it_and_others_are_not() {
        let l = Limiter::new(small());
        let mut tight = small();
        tight.directory_writes = BucketSettings {
            permits: 1,
            per: Duration::from_secs(1),
        };
        l.set_tenant("tight", tight).unwrap();
        assert_eq!(l.reserve("tight", RequestKind::DirectoryWrite).unwrap(), Duration::ZERO);
        assert_eq!(
            l.reserve("tight", RequestKind::DirectoryWrite).unwrap(),
            Duration::from_millis(1050)
        );
        for _ in 0..10 {
            assert_eq!(l.reserve("roomy", RequestKind::DirectoryWrite).unwrap(), Duration::ZERO);
        }
        // A budget set after the tenant's buckets exist applies from the next request.
        l.set_tenant("roomy", tight).unwrap();
        assert!(l.reserve("roomy", RequestKind::DirectoryWrite).unwrap() > Duration::ZERO);
        let mut invalid = small();
        invalid.all.permits = 0;
        assert!(
            l.set_tenant("x", invalid).is_err(),
            "a zero budget is refused, naming the field"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn intune_writes_wait_for_the_window_then_give_up_past_max_wait() {
        let l = Limiter::new(small());
        let start = Instant::now();
        l.acquire("t1", RequestKind::IntuneWrite).await.unwrap();
        l.acquire("t1", RequestKind::IntuneWrite).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "the quota's worth is free at once");
        // Third: only when the first two leave the 2 s window (plus its 5% margin).
        l.acquire("t1", RequestKind::IntuneWrite).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(2100));
        // Fourth fits the same window as the third; fifth and sixth wait 2.1 s (max_wait is 3 s).
        assert_eq!(l.reserve("t1", RequestKind::IntuneWrite).unwrap(), Duration::ZERO);
        assert_eq!(
            l.reserve("t1", RequestKind::IntuneWrite).unwrap(),
            Duration::from_millis(2100)
        );
        assert_eq!(
            l.reserve("t1", RequestKind::IntuneWrite).unwrap(),
            Duration::from_millis(2100)
        );
        match l.reserve("t1", RequestKind::IntuneWrite) {
            Err(GraphError::Limited { bucket, wait, .. }) => {
                assert_eq!(bucket, "intune_writes");
                assert_eq!(wait, Duration::from_millis(4200));
            }
            other => panic!("expected Limited, got {other:?}"),
        }
        // Reads and other tenants are not held up by one tenant's Intune bucket.
        assert_eq!(l.reserve("t1", RequestKind::Read).unwrap(), Duration::ZERO);
        assert_eq!(l.reserve("t2", RequestKind::IntuneWrite).unwrap(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_ever_holds_more_than_the_quota() {
        let l = Arc::new(Limiter::new(small()));
        let start = Instant::now();
        let grants = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for i in 0..40u64 {
            let (l, grants) = (l.clone(), grants.clone());
            handles.push(tokio::spawn(async move {
                // Arrivals spread over ~4 s, in bursts.
                tokio::time::sleep(Duration::from_millis((i % 8) * 500)).await;
                l.acquire("t1", RequestKind::IntuneWrite).await.ok()?;
                grants.lock().unwrap().push(start.elapsed());
                Some(())
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let mut g = grants.lock().unwrap().clone();
        g.sort();
        assert!(g.len() >= 4, "{g:?}");
        for (i, t) in g.iter().enumerate() {
            let in_window = g[i..].iter().take_while(|u| **u < *t + Duration::from_secs(2)).count();
            assert!(in_window <= 2, "{in_window} grants in the 2 s window from {t:?}: {g:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_spread_at_the_configured_rate() {
        let l = Arc::new(Limiter::new(small()));
        let start = Instant::now();
        // 150 directory writes against 50 per second: 50 now, 50 at 1.05 s, the last 50 at 2.1 s.
        let mut handles = Vec::new();
        for _ in 0..150 {
            let l = l.clone();
            handles.push(tokio::spawn(async move {
                l.acquire("t1", RequestKind::DirectoryWrite).await
            }));
        }
        for h in handles {
            h.await.unwrap().unwrap();
        }
        let took = start.elapsed();
        assert!(took == Duration::from_millis(2100), "{took:?}");
    }

    #[test]
    fn zero_sized_bucket_is_a_config_error_naming_the_field() {
        let mut s = LimiterSettings::default();
        s.intune_writes.permits = 0;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("limiter.intune_writes"), "{e}");
    }
}
