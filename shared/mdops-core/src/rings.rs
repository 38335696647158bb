//! Update rings for devices: the configured shares, the deterministic placement of devices that are
//! in no ring, and the queue message that adds one chunk of devices to one ring's group.
//!
//! Placement never moves a device that is already in a ring (a re-run writes nothing). Devices in
//! no ring are taken in the order of a stable hash of their object id; each goes to its *natural*
//! ring (where the hash falls among the cumulative shares) while that ring is short of its target,
//! else to the ring that is shortest. The targets are the shares of all Windows devices rounded by
//! largest remainder, so each ring ends within one device of its share whenever no ring already
//! holds more than its target (devices deleted since, or operator moves).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::tenant::{InvalidInput, Ring, TenantId};

/// Shares are kept in basis points (1/100 of a percent), so 1 % is exactly 100.
pub const SHARE_SCALE: u32 = 10_000;

/// Graph binds at most 20 members in one request
/// (https://learn.microsoft.com/graph/api/group-post-members: "When using the API to add multiple
/// members in one request, you can add up to only 20 members").
pub const MAX_MEMBERS_PER_REQUEST: usize = 20;

/// The share of Windows devices each ring gets, in basis points. Broad takes what the others leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingShares {
    /// Test: none by default; operators mark test devices with `mdops rings move`.
    pub test: u32,
    /// First: 1 % by default.
    pub first: u32,
    /// Fast: 9 % by default.
    pub fast: u32,
}

impl Default for RingShares {
    fn default() -> Self {
        RingShares {
            test: 0,
            first: 100,
            fast: 900,
        }
    }
}

impl RingShares {
    /// The share of one ring in basis points (Broad: the rest).
    pub fn get(&self, ring: Ring) -> u32 {
        match ring {
            Ring::Test => self.test,
            Ring::First => self.first,
            Ring::Fast => self.fast,
            Ring::Broad => SHARE_SCALE.saturating_sub(self.test + self.first + self.fast),
        }
    }

    /// Checks that Test, First and Fast leave a share (possibly zero) for Broad.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let sum = self.test as u64 + self.first as u64 + self.fast as u64;
        if sum > SHARE_SCALE as u64 {
            return Err(InvalidInput::new(
                "ring_share",
                format!(
                    "test + first + fast is {}%, over 100%",
                    sum as f64 / (SHARE_SCALE / 100) as f64
                ),
            ));
        }
        Ok(())
    }

    /// Sets one ring's share from a percentage such as `1`, `9` or `0.5` (at most two decimals).
    pub fn set_percent(&mut self, field: &str, ring: Ring, value: &str) -> Result<(), InvalidInput> {
        let bp = parse_percent(field, value)?;
        match ring {
            Ring::Test => self.test = bp,
            Ring::First => self.first = bp,
            Ring::Fast => self.fast = bp,
            Ring::Broad => {
                return Err(InvalidInput::new(
                    field,
                    "Broad takes the devices the other rings leave; set test, first or fast",
                ));
            }
        }
        self.validate()
    }

    /// How many of `total` devices each ring should hold: the shares rounded by largest
    /// remainder, so the counts add up to `total` and each is within one of its exact share.
    pub fn targets(&self, total: usize) -> BTreeMap<Ring, usize> {
        let scale = SHARE_SCALE as u128;
        let mut out = BTreeMap::new();
        let mut remainders = Vec::new();
        let mut given = 0usize;
        for ring in Ring::ALL {
            let exact = total as u128 * self.get(ring) as u128;
            let whole = (exact / scale) as usize;
            given += whole;
            out.insert(ring, whole);
            remainders.push((exact % scale, ring));
        }
        // Largest remainder first; ties to the broader ring (fewer surprises in the narrow ones).
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        for (_, ring) in remainders.into_iter().take(total.saturating_sub(given)) {
            *out.entry(ring).or_default() += 1;
        }
        out
    }
}

fn parse_percent(field: &str, value: &str) -> Result<u32, InvalidInput> {
    let value = value.trim().trim_end_matches('%');
    let bad = || {
        InvalidInput::new(
            field,
            format!("{value:?} is not a percentage between 0 and 100 (e.g. 1, 9, 0.5)"),
        )
    };
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    if whole.is_empty() || frac.len() > 2 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().map_err(|_| bad())?
    };
    let bp = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if bp > SHARE_SCALE {
        return Err(bad());
    }
    Ok(bp)
}

/// A stable 64-bit hash of a device's object id (FNV-1a over the lower-cased id): the same id
/// gives the same number in every process, version and platform.
pub fn device_hash(id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    id.trim()
        .to_ascii_lowercase()
        .bytes()
        .fold(OFFSET, |h, b| (h ^ b as u64).wrapping_mul(PRIME))
}

/// The ring a device would have if every ring had room: where its hash falls among the
/// cumulative shares.
pub fn natural_ring(id: &str, shares: &RingShares) -> Ring {
    let point = (device_hash(id) % SHARE_SCALE as u64) as u32;
    let mut upper = 0;
    for ring in Ring::ALL {
        upper += shares.get(ring);
        if point < upper {
            return ring;
        }
    }
    Ring::Broad
}

/// Where the devices in no ring go. `devices` are all Windows devices (object ids); `current`
/// the ring(s) each placed device is in now. Returns (device id, ring) for each unplaced device,
/// in placement order.
pub fn place(devices: &[String], current: &HashMap<String, Vec<Ring>>, shares: &RingShares) -> Vec<(String, Ring)> {
    let targets = shares.targets(devices.len());
    let mut held: BTreeMap<Ring, usize> = Ring::ALL.into_iter().map(|r| (r, 0)).collect();
    let mut unplaced = Vec::new();
    for id in devices {
        match current.get(&id.to_ascii_lowercase()).map(Vec::as_slice) {
            Some([ring, ..]) => *held.entry(*ring).or_default() += 1,
            _ => unplaced.push(id.clone()),
        }
    }
    let mut room: BTreeMap<Ring, usize> = Ring::ALL
        .into_iter()
        .map(|r| (r, targets[&r].saturating_sub(held[&r])))
        .collect();
    unplaced.sort_by_key(|id| (device_hash(id), id.to_ascii_lowercase()));
    let mut out = Vec::with_capacity(unplaced.len());
    for id in unplaced {
        let natural = natural_ring(&id, shares);
        let ring = if room[&natural] > 0 {
            natural
        } else {
            // The ring with the most room; ties (and no room anywhere) go to the broadest.
            Ring::ALL
                .into_iter()
                .filter(|r| shares.get(*r) > 0 || room[r] > 0)
                .max_by_key(|r| (room[r], *r))
                .unwrap_or(Ring::Broad)
        };
        if let Some(n) = room.get_mut(&ring) {
            *n = n.saturating_sub(1);
        }
        out.push((id, ring));
    }
    out
}

/// Adds up to [`MAX_MEMBERS_PER_REQUEST`] devices to one ring's group: one `PATCH /groups/{id}`
/// with `members@odata.bind`. A chunk is retried on its own; a device deleted since it was
/// planned fails alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMembersMessage {
    /// Schema version.
    pub v: u64,
    /// Always [`RingMembersMessage::KIND`].
    pub kind: String,
    /// The customer tenant.
    pub tenant_id: TenantId,
    /// The ring the devices join.
    pub ring: Ring,
    /// The ring group's object id.
    pub group_id: String,
    /// Device object ids, 1 to [`MAX_MEMBERS_PER_REQUEST`].
    pub devices: Vec<String>,
    /// Who asked (`schedule`, `cli:alice`).
    pub requested_by: String,
}

impl RingMembersMessage {
    /// A message for one chunk.
    pub fn new(tenant_id: &TenantId, ring: Ring, group_id: &str, devices: Vec<String>, requested_by: &str) -> Self {
        RingMembersMessage {
            v: 1,
            kind: Self::KIND.to_string(),
            tenant_id: tenant_id.clone(),
            ring,
            group_id: group_id.to_string(),
            devices,
            requested_by: requested_by.to_string(),
        }
    }

    /// The JSON body sent on the queue.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn is_object_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s.trim()).is_ok()
}

impl Message for RingMembersMessage {
    const KIND: &'static str = "ring.members";
    const VERSIONS: &'static [u64] = &[1];

    fn validate(&self) -> Result<(), String> {
        if !is_object_id(&self.group_id) {
            return Err(format!("group_id: {:?} is not an object id", self.group_id));
        }
        if self.devices.is_empty() || self.devices.len() > MAX_MEMBERS_PER_REQUEST {
            return Err(format!(
                "devices: {} given; a chunk holds 1 to {MAX_MEMBERS_PER_REQUEST} (Graph's limit per request)",
                self.devices.len()
            ));
        }
        if let Some(bad) = self.devices.iter().find(|d| !is_object_id(d)) {
            return Err(format!("devices: {bad:?} is not an object id"));
        }
        if self.requested_by.trim().is_empty() {
            return Err("requested_by: empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::decode;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect()
    }

    #[test]
    fn targets_add_up_and_stay_within_one_of_the_share() {
        let shares = RingShares::default();
        for total in [0, 1, 7, 99, 100, 101, 5_000, 12_345] {
            let t = shares.targets(total);
            assert_eq!(t.values().sum::<usize>(), total, "{total}");
            for ring in Ring::ALL {
                let exact = total as f64 * shares.get(ring) as f64 / SHARE_SCALE as f64;
                assert!(
                    (t[&ring] as f64 - exact).abs() < 1.0,
                    "{total} {ring:?}: {} vs {exact}",
                    t[&ring]
                );
            }
        }
        assert_eq!(shares.targets(5_000)[&Ring::First], 50);
        assert_eq!(shares.targets(5_000)[&Ring::Fast], 450);
        assert_eq!(shares.targets(5_000)[&Ring::Test], 0);
    }

    #[test]
    fn placement_is_deterministic_fills_targets_and_moves_nobody_placed() {
        let shares = RingShares::default();
        let devices = ids(5_000);
        let first = place(&devices, &HashMap::new(), &shares);
        assert_eq!(first, place(&devices, &HashMap::new(), &shares));
        let mut counts: BTreeMap<Ring, usize> = BTreeMap::new();
        for (_, r) in &first {
            *counts.entry(*r).or_default() += 1;
        }
        assert_eq!(counts.get(&Ring::First), Some(&50));
        assert_eq!(counts.get(&Ring::Fast), Some(&450));
        assert_eq!(counts.get(&Ring::Broad), Some(&4_500));
        assert_eq!(counts.get(&Ring::Test), None);
        // Everything placed: a re-run places nothing.
        let current: HashMap<String, Vec<Ring>> = first.iter().map(|(d, r)| (d.clone(), vec![*r])).collect();
        assert!(place(&devices, &current, &shares).is_empty());
        // New devices: only they are placed, and the shares still hold.
        let more = ids(5_100);
        let added = place(&more, &current, &shares);
        assert_eq!(added.len(), 100);
        for (_, r) in &added {
            *counts.entry(*r).or_default() += 1;
        }
        let t = shares.targets(5_100);
        for ring in Ring::ALL {
            assert_eq!(counts.get(&ring).copied().unwrap_or(0), t[&ring], "{ring:?}");
        }
    }

    #[test]
    fn most_devices_land_in_their_natural_ring() {
        let shares = RingShares::default();
        let devices = ids(2_000);
        let placed = place(&devices, &HashMap::new(), &shares);
        let natural = placed.iter().filter(|(d, r)| natural_ring(d, &shares) == *r).count();
        assert!(natural * 10 >= placed.len() * 9, "{natural} of {}", placed.len());
    }

    #[test]
    fn percentages_parse_to_basis_points_and_bad_ones_name_the_field() {
        let mut s = RingShares::default();
        s.set_percent("ring_share.first", Ring::First, "2.5").unwrap();
        assert_eq!(s.first, 250);
        s.set_percent("ring_share.test", Ring::Test, "0.05%").unwrap();
        assert_eq!(s.test, 5);
        for bad in ["", "abc", "1.234", "101", "-1"] {
            let e = s.set_percent("ring_share.fast", Ring::Fast, bad).unwrap_err();
            assert!(e.to_string().contains("ring_share.fast"), "{e}");
        }
        let e = s.set_percent("ring_share.fast", Ring::Fast, "99").unwrap_err();
        assert!(e.to_string().contains("over 100%"), "{e}");
        assert!(s.set_percent("ring_share.broad", Ring::Broad, "5").is_err());
    }

    #[test]
    fn chunks_over_twenty_or_with_bad_ids_are_refused() {
        let tid: TenantId = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f".parse().unwrap();
        let group = "11111111-1111-4111-8111-111111111111";
        let ok = RingMembersMessage::new(&tid, Ring::Fast, group, ids(20), "test");
        assert_eq!(decode::<RingMembersMessage>(&ok.to_body()).unwrap(), ok);
        let big = RingMembersMessage::new(&tid, Ring::Fast, group, ids(21), "test");
        let e = decode::<RingMembersMessage>(&big.to_body()).unwrap_err();
        assert!(e.problem.contains("devices: 21"), "{e}");
        let bad = RingMembersMessage::new(&tid, Ring::Fast, group, vec!["pc-1".into()], "test");
        assert!(
            decode::<RingMembersMessage>(&bad.to_body())
                .unwrap_err()
                .problem
                .contains("pc-1")
        );
    }
}
