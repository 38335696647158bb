//! Inventory: detected apps, devices and mobile apps, read (paged, bounded) and recorded for the
//! run: how many, and the first names as a sample. Reads only.

use mdops_core::onboarding::Inventory;
use mdops_core::outcome::StepOutcome;
use mdops_graph::{GraphError, Query};

use super::{MAX_PAGES, Named, StepContext};

/// Names kept in the run's record; the count is always complete.
const SAMPLE: usize = 20;

pub async fn run(ctx: &StepContext<'_>, inventory: Inventory) -> Result<StepOutcome, GraphError> {
    let path = match inventory {
        Inventory::DetectedApps => "deviceManagement/detectedApps",
        Inventory::Devices => "devices",
        Inventory::MobileApps => "deviceAppManagement/mobileApps",
    };
    let items: Vec<Named> = ctx
        .graph
        .list_all(path, &Query::select(&["id", "displayName"]), MAX_PAGES)
        .await?;
    let sample: Vec<&str> = items
        .iter()
        .filter_map(|i| i.display_name.as_deref())
        .take(SAMPLE)
        .collect();
    Ok(StepOutcome::done(
        serde_json::json!({ "count": items.len(), "sample": sample, "created": false }),
    ))
}
