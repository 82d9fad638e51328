//! Uptime per device group (RFD 0008, "Uptime per group"): the share of
//! time a tenant's devices in a group were connected, against the group's
//! target.
//!
//! Pure: a function of the targets, the group's devices, their outages
//! and the period, which the caller passes in. A device is measured from
//! its enrolment or the period's start, whichever is later, to the
//! period's end. An outage is a `device.offline` alert from its opening to
//! its resolution (or the period's end while open); outages silenced by a
//! maintenance window are planned and left out by the store. Overlapping
//! outages of one device count once. A group's uptime is weighted by
//! device time: (measured - down) / measured over all its devices.
//!
//! Uptime is counted from the offline alert's opening, so the grace time
//! before a silent device is called offline (`offline_after`) is not
//! downtime, as in most RMM uptime monitors.

use std::collections::BTreeMap;

use bulwark_store::{Outage, UptimeDevice, UptimeTarget};

/// Most devices listed per group as those down longest.
pub const MOST_DOWN_LISTED: usize = 5;

/// One device's downtime in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDowntime {
    pub device_id: String,
    pub hostname: String,
    pub down_ms: i64,
    pub outages: u32,
}

/// One group's uptime over the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUptime {
    pub group_name: String,
    pub basis_points: i64,
    pub devices: u32,
    pub measured_ms: i64,
    pub down_ms: i64,
    /// The devices down longest, longest first; none with no downtime.
    pub most_down: Vec<DeviceDowntime>,
}

impl GroupUptime {
    /// Uptime in percent; `None` when nothing was measured (no device,
    /// or none enrolled before the period's end).
    pub fn percent(&self) -> Option<f64> {
        (self.measured_ms > 0)
            .then(|| 100.0 * (self.measured_ms - self.down_ms) as f64 / self.measured_ms as f64)
    }

    /// Whether the target was met, in exact integer arithmetic (99.9 %
    /// of a period is never rounded up to meet 99.9 %).
    pub fn met(&self) -> Option<bool> {
        (self.measured_ms > 0).then(|| {
            i128::from(self.measured_ms - self.down_ms) * 10_000
                >= i128::from(self.basis_points) * i128::from(self.measured_ms)
        })
    }
}

/// Each target's group uptime over `[from, to)`.
pub fn uptime(
    targets: &[UptimeTarget],
    devices: &[UptimeDevice],
    outages: &[Outage],
    from: i64,
    to: i64,
) -> Vec<GroupUptime> {
    let mut by_device: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for o in outages {
        by_device
            .entry(o.device_id.as_str())
            .or_default()
            .push((o.from, o.until.unwrap_or(to)));
    }
    targets
        .iter()
        .map(|target| {
            let mut group = GroupUptime {
                group_name: target.group_name.clone(),
                basis_points: target.basis_points,
                devices: 0,
                measured_ms: 0,
                down_ms: 0,
                most_down: Vec::new(),
            };
            let mut downs = Vec::new();
            for d in devices.iter().filter(|d| d.group_key == target.group_key) {
                group.devices += 1;
                let start = from.max(d.enrolled_at);
                if start >= to {
                    continue;
                }
                let spans = by_device.get(d.device_id.as_str()).map_or(&[][..], |v| v);
                let (down, count) = down_within(spans, start, to);
                group.measured_ms += to - start;
                group.down_ms += down;
                if down > 0 {
                    downs.push(DeviceDowntime {
                        device_id: d.device_id.clone(),
                        hostname: d.hostname.clone(),
                        down_ms: down,
                        outages: count,
                    });
                }
            }
            downs.sort_by(|a, b| b.down_ms.cmp(&a.down_ms).then(a.hostname.cmp(&b.hostname)));
            downs.truncate(MOST_DOWN_LISTED);
            group.most_down = downs;
            group
        })
        .collect()
}

/// The length of the union of `spans` clipped to `[start, end)`, and how
/// many spans touch it.
fn down_within(spans: &[(i64, i64)], start: i64, end: i64) -> (i64, u32) {
    let mut clipped: Vec<(i64, i64)> = spans
        .iter()
        .map(|&(a, b)| (a.max(start), b.min(end)))
        .filter(|(a, b)| a < b)
        .collect();
    clipped.sort_unstable();
    let count = u32::try_from(clipped.len()).unwrap_or(u32::MAX);
    let mut total = 0;
    let mut current: Option<(i64, i64)> = None;
    for (a, b) in clipped {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((ca, cb)) = current {
        total += cb - ca;
    }
    (total, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;

    fn target(group: &str, bp: i64) -> UptimeTarget {
        UptimeTarget {
            group_name: group.to_owned(),
            group_key: group.to_ascii_lowercase(),
            basis_points: bp,
        }
    }

    fn device(id: &str, group: &str, enrolled_at: i64) -> UptimeDevice {
        UptimeDevice {
            device_id: id.to_owned(),
            hostname: format!("host-{id}"),
            group_key: group.to_ascii_lowercase(),
            enrolled_at,
        }
    }

    fn outage(id: &str, from: i64, until: Option<i64>) -> Outage {
        Outage {
            device_id: id.to_owned(),
            from,
            until,
        }
    }

    #[test]
    fn one_hour_down_in_a_day_of_two_devices() {
        let groups = uptime(
            &[target("Servers", 9_900)],
            &[device("a", "servers", 0), device("b", "servers", 0)],
            &[outage("a", 10 * H, Some(11 * H))],
            0,
            DAY,
        );
        let g = &groups[0];
        assert_eq!((g.devices, g.measured_ms, g.down_ms), (2, 2 * DAY, H));
        let percent = g.percent().expect("measured");
        assert!((percent - 100.0 * 47.0 / 48.0).abs() < 1e-9, "{percent}");
        assert_eq!(g.met(), Some(false), "97.9 % misses 99 %");
        assert_eq!(g.most_down.len(), 1);
        assert_eq!(g.most_down[0].hostname, "host-a");
    }

    #[test]
    fn outages_are_clipped_merged_and_open_ones_run_to_the_end() {
        let spans = [
            outage("a", -5 * H, Some(H)),      // began before the period
            outage("a", 2 * H, Some(4 * H)),   // overlaps the next
            outage("a", 3 * H, Some(5 * H)),   // merged: 2h..5h
            outage("a", 20 * H, None),         // still open: to the end
            outage("b", 0, Some(DAY)),         // another group's device
            outage("a", 30 * H, Some(31 * H)), // after the period
        ];
        let g = &uptime(
            &[target("hq", 5_000)],
            &[device("a", "hq", 0), device("b", "branch", 0)],
            &spans,
            0,
            DAY,
        )[0];
        assert_eq!(g.devices, 1);
        assert_eq!(g.down_ms, H + 3 * H + 4 * H);
        assert_eq!(g.most_down[0].outages, 4);
    }

    #[test]
    fn a_device_enrolled_late_is_measured_from_its_enrolment() {
        let g = &uptime(
            &[target("hq", 9_999)],
            &[device("a", "hq", 12 * H), device("late", "hq", DAY + 1)],
            &[],
            0,
            DAY,
        )[0];
        assert_eq!((g.devices, g.measured_ms), (2, 12 * H));
        assert_eq!(g.met(), Some(true));
        let empty = &uptime(&[target("none", 9_000)], &[], &[], 0, DAY)[0];
        assert_eq!((empty.percent(), empty.met()), (None, None));
    }

    #[test]
    fn the_target_is_compared_exactly() {
        // 99.90 % of the time up, exactly: met; one millisecond more down: not.
        let period = 1_000_000;
        let at = |down| {
            uptime(
                &[target("g", 9_990)],
                &[device("a", "g", 0)],
                &[outage("a", 0, Some(down))],
                0,
                period,
            )[0]
            .met()
        };
        assert_eq!(at(1_000), Some(true));
        assert_eq!(at(1_001), Some(false));
    }

    proptest! {
        #[test]
        fn downtime_is_the_union_of_the_spans(
            spans in proptest::collection::vec((0i64..1_000, 0i64..200, proptest::option::of(0i64..1)), 0..12),
        ) {
            let outages: Vec<Outage> = spans
                .iter()
                .map(|&(a, len, open)| outage("a", a, if open.is_some() { None } else { Some(a + len) }))
                .collect();
            let g = &uptime(&[target("g", 10_000)], &[device("a", "g", 0)], &outages, 100, 900)[0];
            // The reference: count each millisecond covered by some span.
            let covered = (100..900)
                .filter(|t| outages.iter().any(|o| o.from <= *t && *t < o.until.unwrap_or(900)))
                .count() as i64;
            prop_assert_eq!(g.down_ms, covered);
            prop_assert!(g.down_ms <= g.measured_ms);
            let percent = g.percent().expect("measured");
            prop_assert!((0.0..=100.0).contains(&percent));
            prop_assert_eq!(g.met(), Some(covered == 0));
        }
    }
}
