//! The ports every handler gets, built once per process and shared.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_core::onboarding::runs::RunSettings;
use mdops_core::queue::Queue;
use mdops_core::store::Store;

use mdops_graph::GraphClient;

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
    /// The ports over `store` and `queue`, reaching tenants through `graph` (registry in `store`),
    /// with the default run timing, the system clock and the default lag window. Adjust a field
    /// with struct update syntax: `Deps { lag_window, ..Deps::new(store, queue, graph) }`.
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn Queue>, graph: GraphClient) -> Deps {
        Deps {
            reach: Arc::new(TenantReach::new(graph, store.clone())),
            store,
            queue,
            runs: RunSettings::default(),
            clock: system_clock(),
            lag_window: DEFAULT_LAG_WINDOW,
        }
    }

    /// Now, by the handlers' clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}
