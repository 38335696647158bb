//! Per-tenant request limiter: token buckets sized from Graph's published quotas, so a worker
//! onboarding many tenants spreads its calls instead of walking into 429 storms.
//!
//! Each tenant has three buckets; a request takes one permit from every bucket that applies:
//! `all` (every request), `directory_writes` (writes outside Intune) and `intune_writes` (writes
//! under `/deviceManagement` and `/deviceAppManagement`). Waiting for a permit is async and bounded
//! by [`LimiterSettings::max_wait`]: past it the caller gets [`GraphError::Limited`], a throttled
//! error the handler turns into `Retry(after)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{GraphError, Result};

/// One bucket: `permits` requests per `per`, with a burst of up to `permits`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSettings {
    /// Requests allowed per window (also the burst size).
    pub permits: u32,
    /// The window.
    pub per: Duration,
}

impl BucketSettings {
    fn rate_per_sec(&self) -> f64 {
        f64::from(self.permits) / self.per.as_secs_f64()
    }
}

/// Limiter configuration. The defaults keep ~20% headroom under the published quotas because
/// other apps of the same customer share some of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterSettings {
    /// Every request to the tenant.
    pub all: BucketSettings,
    /// Directory (identity) writes: Graph allows ~3,000 per 150 s per app and tenant.
    pub directory_writes: BucketSettings,
    /// Intune device-configuration writes: Graph allows 100 per 20 s per app and tenant.
    pub intune_writes: BucketSettings,
    /// Longest wait for a permit before the call gives up with [`GraphError::Limited`].
    pub max_wait: Duration,
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

#[derive(Debug)]
struct Bucket {
    settings: BucketSettings,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(settings: BucketSettings, now: Instant) -> Bucket {
        Bucket {
            settings,
            tokens: f64::from(settings.permits),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.settings.rate_per_sec()).min(f64::from(self.settings.permits));
        self.last = now;
    }

    /// How long until one permit is free (zero when one is free now).
    fn wait_for_one(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.settings.rate_per_sec())
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
}

impl Limiter {
    /// A limiter with no tenants yet; tenants get full buckets on first use.
    pub fn new(settings: LimiterSettings) -> Limiter {
        Limiter {
            settings,
            tenants: Mutex::new(HashMap::new()),
        }
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
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.settings;
        let buckets = tenants.entry(tenant.to_string()).or_insert_with(|| TenantBuckets {
            all: Bucket::new(s.all, now),
            directory_writes: Bucket::new(s.directory_writes, now),
            intune_writes: Bucket::new(s.intune_writes, now),
        });
        let mut chosen: Vec<(&'static str, &mut Bucket)> = vec![("all", &mut buckets.all)];
        match kind {
            RequestKind::Read => {}
            RequestKind::DirectoryWrite => chosen.push(("directory_writes", &mut buckets.directory_writes)),
            RequestKind::IntuneWrite => chosen.push(("intune_writes", &mut buckets.intune_writes)),
        }
        let mut wait = Duration::ZERO;
        for (name, bucket) in chosen.iter_mut() {
            bucket.refill(now);
            let w = bucket.wait_for_one();
            if w > s.max_wait {
                return Err(GraphError::Limited {
                    tenant: tenant.to_string(),
                    bucket: name,
                    wait: w,
                });
            }
            wait = wait.max(w);
        }
        for (_, bucket) in chosen {
            bucket.tokens -= 1.0;
        }
        Ok(wait)
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
    async fn intune_writes_wait_for_refill_then_give_up_past_max_wait() {
        let l = Limiter::new(small());
        let start = Instant::now();
        l.acquire("t1", RequestKind::IntuneWrite).await.unwrap();
        l.acquire("t1", RequestKind::IntuneWrite).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        // Third permit: one refills every second.
        l.acquire("t1", RequestKind::IntuneWrite).await.unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(999) && waited <= Duration::from_millis(1001),
            "{waited:?}"
        );
        // Reserve three more without waiting: the queue ahead grows past max_wait (3 s).
        assert!(l.reserve("t1", RequestKind::IntuneWrite).is_ok());
        assert!(l.reserve("t1", RequestKind::IntuneWrite).is_ok());
        assert!(l.reserve("t1", RequestKind::IntuneWrite).is_ok());
        match l.reserve("t1", RequestKind::IntuneWrite) {
            Err(GraphError::Limited { bucket, wait, .. }) => {
                assert_eq!(bucket, "intune_writes");
                assert!(wait > Duration::from_secs(3), "{wait:?}");
            }
            other => panic!("expected Limited, got {other:?}"),
        }
        // Reads and other tenants are not held up by one tenant's Intune bucket.
        assert_eq!(l.reserve("t1", RequestKind::Read).unwrap(), Duration::ZERO);
        assert_eq!(l.reserve("t2", RequestKind::IntuneWrite).unwrap(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_spread_at_the_configured_rate() {
        let l = Arc::new(Limiter::new(small()));
        let start = Instant::now();
        // 150 directory writes against 50/s with a burst of 50: the last one waits ~2 s.
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
        assert!(
            took >= Duration::from_millis(1990) && took <= Duration::from_millis(2100),
            "{took:?}"
        );
    }

    #[test]
    fn zero_sized_bucket_is_a_config_error_naming_the_field() {
        let mut s = LimiterSettings::default();
        s.intune_writes.permits = 0;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("limiter.intune_writes"), "{e}");
    }
}
