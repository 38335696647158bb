//! The tenant's licence SKUs (`GET /subscribedSkus`), cached per tenant for a short time.
//!
//! The cache serves two things: resolving part numbers (`SPE_E5`) to SKU ids and plan names to
//! plan ids, and an *optimistic* free-units check. It is never trusted to say "no": a handler that
//! sees no free units, or an unknown part number, in a cached answer reads again before failing,
//! so a tenant that just bought licences is seen at once, not after the TTL. Fetches for one tenant
//! are single-flight: a burst of messages for a fresh tenant costs one Graph call, not one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_graph::{GraphError, Query, TenantGraph};
use serde::Deserialize;

/// Default time a tenant's SKU list is served from memory. Short: consumed counts move with every
/// assignment (ours and the customer's), and one `subscribedSkus` call a minute per tenant is cheap.
pub const DEFAULT_SKU_TTL: Duration = Duration::from_secs(60);

/// Most pages of `subscribedSkus` read; tenants have tens of SKUs, never thousands.
const MAX_SKU_PAGES: usize = 10;

/// `$select` for [`TenantSku`].
const SKU_SELECT: &[&str] = &[
    "skuId",
    "skuPartNumber",
    "consumedUnits",
    "prepaidUnits",
    "servicePlans",
];

/// One service plan of a SKU (what `disabledPlans` refers to).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan {
    /// Plan id, as used in `disabledPlans`.
    pub service_plan_id: String,
    /// Readable name, e.g. `EXCHANGE_S_ENTERPRISE`.
    #[serde(default)]
    pub service_plan_name: String,
}

/// Bought units of a SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Units {
    /// Active units.
    pub enabled: i64,
}

/// A licence SKU the tenant has, with what the licence handler needs of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSku {
    /// SKU id, as used in `assignLicense` (kept as Graph spells it; compare with [`Self::is`]).
    pub sku_id: String,
    /// Part number, e.g. `SPE_E5`.
    pub sku_part_number: String,
    /// Units assigned.
    #[serde(default)]
    pub consumed_units: i64,
    /// Units bought.
    #[serde(default)]
    pub prepaid_units: Units,
    /// Service plans of the SKU.
    #[serde(default)]
    pub service_plans: Vec<ServicePlan>,
}

impl TenantSku {
    /// Units still free to assign (`prepaidUnits.enabled - consumedUnits`, never below zero).
    pub fn free(&self) -> i64 {
        (self.prepaid_units.enabled - self.consumed_units).max(0)
    }

    /// True for the same SKU id, whatever the case.
    pub fn is(&self, sku_id: &str) -> bool {
        self.sku_id.eq_ignore_ascii_case(sku_id)
    }
}

/// A tenant's SKU list and whether it was read from Graph during this call.
#[derive(Debug, Clone)]
pub struct SkuList {
    /// The SKUs.
    pub skus: Vec<TenantSku>,
    /// True when the list was fetched just now (not served from the cache).
    pub fresh: bool,
}

impl SkuList {
    /// The SKU with this part number (case-insensitive, as Graph's part numbers are upper-case).
    pub fn by_part_number(&self, part_number: &str) -> Option<&TenantSku> {
        self.skus
            .iter()
            .find(|s| s.sku_part_number.eq_ignore_ascii_case(part_number))
    }

    /// The part numbers, sorted, for messages that list what the tenant has.
    pub fn part_numbers(&self) -> Vec<String> {
        let mut names: Vec<String> = self.skus.iter().map(|s| s.sku_part_number.clone()).collect();
        names.sort();
        names
    }
}

struct Cached {
    fetched_at: DateTime<Utc>,
    skus: Vec<TenantSku>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Per-tenant cache of `subscribedSkus`. Built once per process and shared by every message.
pub struct SkuCache {
    ttl: Duration,
    tenants: Mutex<HashMap<String, Slot>>,
}

impl SkuCache {
    /// A cache serving each tenant's list for `ttl` (zero: always fetch).
    pub fn new(ttl: Duration) -> Self {
        SkuCache {
            ttl,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// How long a list is served.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn slot(&self, tenant: &str) -> Slot {
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.to_ascii_lowercase()).or_default().clone()
    }

    fn is_current(&self, cached: &Cached, now: DateTime<Utc>) -> bool {
        // A clock that went backwards counts as expired: better one extra call than a stale answer.
        match (now - cached.fetched_at).to_std() {
            Ok(age) => age < self.ttl,
            Err(_) => false,
        }
    }

    /// The tenant's SKUs: from the cache while younger than the TTL, else fetched.
    pub async fn get(&self, graph: &TenantGraph, now: DateTime<Utc>) -> Result<SkuList, GraphError> {
        let slot = self.slot(graph.tenant_id());
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| self.is_current(c, now)) {
            return Ok(SkuList {
                skus: c.skus.clone(),
                fresh: false,
            });
        }
        let skus = fetch(graph).await?;
        *cached = Some(Cached {
            fetched_at: now,
            skus: skus.clone(),
        });
        Ok(SkuList { skus, fresh: true })
    }

    /// The tenant's SKUs read from Graph now, replacing the cached list.
    pub async fn refresh(&self, graph: &TenantGraph, now: DateTime<Utc>) -> Result<SkuList, GraphError> {
        let slot = self.slot(graph.tenant_id());
        let mut cached = slot.lock().await;
        let skus = fetch(graph).await?;
        *cached = Some(Cached {
            fetched_at: now,
            skus: skus.clone(),
        });
        Ok(SkuList { skus, fresh: true })
    }

    /// Counts units we just assigned (`delta` > 0) or released (< 0) in the cached list, so the
    /// optimistic check tracks our own assignments between fetches.
    pub async fn note_consumed(&self, tenant: &str, sku_id: &str, delta: i64) {
        let slot = self.slot(tenant);
        let mut cached = slot.lock().await;
        if let Some(sku) = cached.as_mut().and_then(|c| c.skus.iter_mut().find(|s| s.is(sku_id))) {
            sku.consumed_units = (sku.consumed_units + delta).max(0);
        }
    }

    /// Forgets a tenant's list (the next `get` fetches).
    pub async fn invalidate(&self, tenant: &str) {
        let slot = self.slot(tenant);
        *slot.lock().await = None;
    }
}

async fn fetch(graph: &TenantGraph) -> Result<Vec<TenantSku>, GraphError> {
    graph
        .list_all("subscribedSkus", &Query::select(SKU_SELECT), MAX_SKU_PAGES)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(enabled: i64, consumed: i64) -> TenantSku {
        TenantSku {
            sku_id: "06EBC4EE-1BB5-47DD-8120-11324BC54E06".into(),
            sku_part_number: "SPE_E5".into(),
            consumed_units: consumed,
            prepaid_units: Units { enabled },
            service_plans: Vec::new(),
        }
    }

    #[test]
    fn free_units_never_go_below_zero_and_ids_compare_without_case() {
        assert_eq!(sku(25, 20).free(), 5);
        assert_eq!(sku(25, 25).free(), 0);
        assert_eq!(sku(25, 27).free(), 0);
        assert!(sku(1, 0).is("06ebc4ee-1bb5-47dd-8120-11324bc54e06"));
        let list = SkuList {
            skus: vec![sku(1, 0)],
            fresh: false,
        };
        assert!(list.by_part_number("spe_e5").is_some());
        assert!(list.by_part_number("SPE_E3").is_none());
    }

    #[test]
    fn expiry_follows_the_ttl_and_a_clock_that_went_back() {
        let cache = SkuCache::new(Duration::from_secs(60));
        let t0 = Utc::now();
        let c = Cached {
            fetched_at: t0,
            skus: Vec::new(),
        };
        assert!(cache.is_current(&c, t0 + chrono::Duration::seconds(59)));
        assert!(!cache.is_current(&c, t0 + chrono::Duration::seconds(60)));
        assert!(!cache.is_current(&c, t0 - chrono::Duration::seconds(1)));
        assert!(!SkuCache::new(Duration::ZERO).is_current(&c, t0));
    }
}
