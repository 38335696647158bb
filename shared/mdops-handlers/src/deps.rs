//! The ports every handler gets, built once per process and shared.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_core::onboarding::runs::RunSettings;
use mdops_core::queue::Queue;
use mdops_core::store::Store;

use crate::reach::TenantReach;

/// The time source; tests replace it to move time without sleeping.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// What a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub reach: Arc<TenantReach>,
    pub runs: RunSettings,
    pub clock: Clock,
    /// How long a created object may stay unreadable (replication lag) before a step that may
    /// have created it creates again. See `onboarding::steps::StepContext::wait_before_create`.
    pub lag_window: Duration,
}

/// Default replication-lag window: Graph objects are usually readable within seconds; half a
/// minute covers the slow cases Microsoft documents without stalling retries for long.
pub const DEFAULT_LAG_WINDOW: Duration = Duration::from_secs(30);

impl Deps {
    /// Now, by the handlers' clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}
