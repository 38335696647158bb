//! Device update rings: every Windows device of a tenant in exactly one of the Test / First / Fast /
//! Broad groups onboarding made, by the tenant's configured shares ([`RingShares`]).
//!
//! One file per job:
//! - [`sync`]: read the devices and the four groups, place each device that is in no ring
//!   ([`mdops_core::rings::place`], deterministic by device id), and send one
//!   [`RingMembersMessage`] per chunk of at most 20 devices on the onboarding queue; also the
//!   scheduled pass the embedded worker's ticker runs ([`sync::sync_if_due`]).
//! - [`add`]: the chunk handler: one `PATCH /groups/{id}` with `members@odata.bind`; a throttled
//!   chunk comes back alone, a device deleted since the plan fails alone.
//! - [`show`]: counts and shares per ring, devices in no ring, devices in two.
//! - [`move_device`]: an operator moves one device to another ring (audited).
//!
//! Graph, from Microsoft's documentation:
//! - `GET /devices` pages with `@odata.nextLink`, `$top` up to 999, and filters `operatingSystem`
//!   with `eq` (https://learn.microsoft.com/graph/api/device-list,
//!   https://learn.microsoft.com/graph/paging);
//! - `PATCH /groups/{id}` with `members@odata.bind` adds up to 20 members in one request; a
//!   group just created may answer 400 "... objects being referenced do not exist" for a while
//!   (https://learn.microsoft.com/graph/api/group-post-members);
//! - removing a member is `DELETE /groups/{id}/members/{member}/$ref`
//!   (https://learn.microsoft.com/graph/api/group-delete-members).

pub mod add;
pub mod move_device;
pub mod show;
pub mod sync;

use std::collections::{BTreeMap, HashMap};

use mdops_core::rings::{RingMembersMessage, RingShares};
use mdops_core::tenant::Ring;
use mdops_graph::resources::DirectoryObject;
use mdops_graph::{GraphError, Query, TenantGraph, odata_string};
use serde::Deserialize;

pub use add::handle;

/// What the dead letters and audit entries call a chunk.
pub const KIND: &str = <RingMembersMessage as mdops_core::message::Message>::KIND;

/// Devices per page asked of Graph (its maximum `$top` for devices).
const PAGE_SIZE: u32 = 999;
/// Most pages read from one collection: 1,000 pages of 999 is a million devices, far beyond any
/// tenant; a bound so a misbehaving `nextLink` chain cannot loop forever.
const MAX_PAGES: usize = 1000;
/// The operating system of the devices the rings are for.
pub const WINDOWS: &str = "Windows";

/// A device as the ring jobs read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Why the rings of a tenant could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// A ring group is missing: the tenant has not been onboarded (or the group was deleted).
    #[error(
        "ring group {name:?} is not in tenant {tenant}: onboard the tenant first (`mdops onboard`), or replay its group step"
    )]
    GroupMissing { tenant: String, name: &'static str },
    /// Several groups share a ring group's name: mdops picks none.
    #[error("ring group {name:?}: {} groups in tenant {tenant} have this name ({}); keep the one onboarding made and delete the others", ids.len(), ids.join(", "))]
    GroupAmbiguous {
        tenant: String,
        name: &'static str,
        ids: Vec<String>,
    },
    /// Graph failed.
    #[error("reading the rings from Graph: {0}")]
    Graph(#[from] GraphError),
}

/// The rings of a tenant as Graph has them now.
#[derive(Debug, Clone)]
pub struct RingState {
    /// Each ring's group object id.
    pub groups: BTreeMap<Ring, String>,
    /// The tenant's Windows devices, in Graph's order.
    pub devices: Vec<Device>,
    /// The rings each Windows device is a member of (lower-cased id), narrowest first.
    pub membership: HashMap<String, Vec<Ring>>,
    /// Members of the ring groups that are not Windows devices of the tenant (users, other
    /// devices), per ring: reported, never touched.
    pub other_members: BTreeMap<Ring, usize>,
}

impl RingState {
    /// Windows devices in no ring.
    pub fn unplaced(&self) -> Vec<&Device> {
        self.devices
            .iter()
            .filter(|d| !self.membership.contains_key(&d.id.to_ascii_lowercase()))
            .collect()
    }

    /// Windows devices in more than one ring, with their rings.
    pub fn in_several(&self) -> Vec<(&Device, &[Ring])> {
        self.devices
            .iter()
            .filter_map(|d| {
                let rings = self.membership.get(&d.id.to_ascii_lowercase())?;
                (rings.len() > 1).then_some((d, rings.as_slice()))
            })
            .collect()
    }

    /// Devices per ring (a device in two rings counts in both).
    pub fn counts(&self) -> BTreeMap<Ring, usize> {
        let mut counts: BTreeMap<Ring, usize> = Ring::ALL.into_iter().map(|r| (r, 0)).collect();
        for rings in self.membership.values() {
            for r in rings {
                *counts.entry(*r).or_default() += 1;
            }
        }
        counts
    }

    /// The Windows device ids, for placement.
    pub fn device_ids(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.id.clone()).collect()
    }
}

/// The object id of one ring's group, found by its display name (exactly one).
pub async fn ring_group(graph: &TenantGraph, ring: Ring) -> Result<String, RingError> {
    let name = ring.display_name();
    let query = Query::select(&["id", "displayName"]).filter(format!("displayName eq {}", odata_string(name)));
    let mut found: Vec<DirectoryObject> = graph.list_all("groups", &query, MAX_PAGES).await?;
    match found.len() {
        0 => Err(RingError::GroupMissing {
            tenant: graph.tenant_id().to_string(),
            name,
        }),
        1 => Ok(found.remove(0).id),
        _ => Err(RingError::GroupAmbiguous {
            tenant: graph.tenant_id().to_string(),
            name,
            ids: found.into_iter().map(|g| g.id).collect(),
        }),
    }
}

/// Reads the four ring groups, the tenant's Windows devices (paged, `$select`) and the groups'
/// members.
pub async fn read_state(graph: &TenantGraph) -> Result<RingState, RingError> {
    let mut groups = BTreeMap::new();
    for ring in Ring::ALL {
        groups.insert(ring, ring_group(graph, ring).await?);
    }
    let query = Query::select(&["id", "displayName", "operatingSystem"])
        .filter(format!("operatingSystem eq {}", odata_string(WINDOWS)))
        .top(PAGE_SIZE);
    let devices: Vec<Device> = graph.list_all("devices", &query, MAX_PAGES).await?;
    let windows: std::collections::HashSet<String> = devices.iter().map(|d| d.id.to_ascii_lowercase()).collect();
    let mut membership: HashMap<String, Vec<Ring>> = HashMap::new();
    let mut other_members = BTreeMap::new();
    for (ring, group) in &groups {
        let members: Vec<DirectoryObject> = graph
            .list_all(
                &format!("groups/{group}/members"),
                &Query::select(&["id"]).top(PAGE_SIZE),
                MAX_PAGES,
            )
            .await?;
        for m in members {
            let id = m.id.to_ascii_lowercase();
            if windows.contains(&id) {
                membership.entry(id).or_default().push(*ring);
            } else {
                *other_members.entry(*ring).or_default() += 1;
            }
        }
    }
    for rings in membership.values_mut() {
        rings.sort();
        rings.dedup();
    }
    Ok(RingState {
        groups,
        devices,
        membership,
        other_members,
    })
}

/// The shares actually held, in basis points of the Windows devices.
pub fn held_shares(state: &RingState) -> BTreeMap<Ring, f64> {
    let total = state.devices.len().max(1) as f64;
    state
        .counts()
        .into_iter()
        .map(|(r, n)| (r, n as f64 * 100.0 / total))
        .collect()
}

/// The configured share of each ring, in percent.
pub fn configured_percent(shares: &RingShares) -> BTreeMap<Ring, f64> {
    Ring::ALL
        .into_iter()
        .map(|r| (r, shares.get(r) as f64 * 100.0 / mdops_core::rings::SHARE_SCALE as f64))
        .collect()
}
