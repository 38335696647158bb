//! `rings show`: per ring its group, device count, held and configured share; the Windows devices
//! in no ring and those in two or more.

use std::collections::BTreeMap;

use mdops_core::rings::RingShares;
use mdops_core::tenant::Ring;
use mdops_graph::TenantGraph;
use serde::Serialize;

use super::{RingError, configured_percent, held_shares, read_state};

/// One ring in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RingLine {
    pub ring: Ring,
    pub group_id: String,
    pub devices: usize,
    /// Percent of the Windows devices.
    pub share: f64,
    /// Configured percent.
    pub configured: f64,
    /// Members that are not Windows devices of the tenant (users, other platforms).
    pub other_members: usize,
}

/// A device in two or more rings.
#[derive(Debug, Clone, Serialize)]
pub struct SeveralRings {
    pub device_id: String,
    pub display_name: Option<String>,
    pub rings: Vec<Ring>,
}

/// The rings of a tenant.
#[derive(Debug, Clone, Serialize)]
pub struct RingsReport {
    pub tenant_id: String,
    pub windows_devices: usize,
    pub rings: Vec<RingLine>,
    /// Windows devices in no ring (object ids).
    pub unplaced: Vec<String>,
    pub in_several: Vec<SeveralRings>,
}

/// Reads the rings of a tenant.
pub async fn show(graph: &TenantGraph, shares: &RingShares) -> Result<RingsReport, RingError> {
    let state = read_state(graph).await?;
    let counts = state.counts();
    let held = held_shares(&state);
    let configured = configured_percent(shares);
    let rings = Ring::ALL
        .into_iter()
        .map(|ring| RingLine {
            ring,
            group_id: state.groups[&ring].clone(),
            devices: counts[&ring],
            share: held[&ring],
            configured: configured[&ring],
            other_members: state.other_members.get(&ring).copied().unwrap_or(0),
        })
        .collect();
    let in_several = state
        .in_several()
        .into_iter()
        .map(|(d, rings)| SeveralRings {
            device_id: d.id.clone(),
            display_name: d.display_name.clone(),
            rings: rings.to_vec(),
        })
        .collect();
    Ok(RingsReport {
        tenant_id: graph.tenant_id().to_string(),
        windows_devices: state.devices.len(),
        rings,
        unplaced: state.unplaced().into_iter().map(|d| d.id.clone()).collect(),
        in_several,
    })
}

impl RingsReport {
    /// Devices per ring.
    pub fn counts(&self) -> BTreeMap<Ring, usize> {
        self.rings.iter().map(|l| (l.ring, l.devices)).collect()
    }
}
