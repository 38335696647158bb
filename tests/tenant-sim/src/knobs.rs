//! Realism knobs of one tenant: latency, replication lag, page size and throttling quotas. Set in the
//! seed, or at run time through the control API (`PUT /_sim/tenants/{t}/knobs`).

use serde::{Deserialize, Serialize};

/// Identity writes (users, groups, memberships, invitations): ~3,000 requests per 150 s per app and
/// tenant, the quota Microsoft publishes for Entra ID writes.
pub const IDENTITY_WRITE_LIMIT: u32 = 3_000;
/// The window of [`IDENTITY_WRITE_LIMIT`], in milliseconds.
pub const IDENTITY_WRITE_WINDOW_MS: u64 = 150_000;
/// Intune device-configuration writes: 100 requests per 20 s per app and tenant (published quota).
pub const INTUNE_WRITE_LIMIT: u32 = 100;
/// The window of [`INTUNE_WRITE_LIMIT`], in milliseconds.
pub const INTUNE_WRITE_WINDOW_MS: u64 = 20_000;
/// Reads: Graph meters them too. Entra ID's quota per app and tenant is 3,500 / 5,000 / 8,000
/// resource units per 10 s for a small / medium / large tenant, and a request not listed costs 1
/// (https://learn.microsoft.com/graph/throttling-limits, "Identity and access service limits").
/// The simulator counts one unit per GET at the small-tenant quota, for every read path.
pub const READ_LIMIT: u32 = 3_500;
/// The window of [`READ_LIMIT`], in milliseconds.
pub const READ_WINDOW_MS: u64 = 10_000;
/// Graph's default page size for directory collections (users, groups).
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Per-tenant behaviour knobs; every field has the real service's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Added latency per Graph or token call, in milliseconds.
    pub latency_ms: u64,
    /// How long a created object stays invisible to reads and references, in milliseconds.
    pub replication_lag_ms: u64,
    /// Page size of list answers when the client gives no `$top`.
    pub page_size: usize,
    /// Identity writes allowed per window, per app.
    pub identity_write_limit: u32,
    /// Window of the identity write quota, in milliseconds.
    pub identity_write_window_ms: u64,
    /// Intune writes allowed per window, per app.
    pub intune_write_limit: u32,
    /// Window of the Intune write quota, in milliseconds.
    pub intune_write_window_ms: u64,
    /// Reads allowed per window, per app.
    pub read_limit: u32,
    /// Window of the read quota, in milliseconds.
    pub read_window_ms: u64,
    /// Answer `Retry-After` as decimal seconds (`1.5`) instead of whole seconds.
    pub retry_after_decimal: bool,
    /// Send `Retry-After` on Intune 429s too (the real service usually omits it).
    pub intune_retry_after: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            replication_lag_ms: 0,
            page_size: DEFAULT_PAGE_SIZE,
            identity_write_limit: IDENTITY_WRITE_LIMIT,
            identity_write_window_ms: IDENTITY_WRITE_WINDOW_MS,
            intune_write_limit: INTUNE_WRITE_LIMIT,
            intune_write_window_ms: INTUNE_WRITE_WINDOW_MS,
            read_limit: READ_LIMIT,
            read_window_ms: READ_WINDOW_MS,
            retry_after_decimal: false,
            intune_retry_after: false,
        }
    }
}
