//! Patch compliance (issue 17) and the patch SLA (RFD 0008): the share of
//! devices with no security update pending for longer than the tenant's
//! target, at any time.
//!
//! Pure: a function of the watched devices, the spans each security update
//! was pending (`security_update_spans`, from the agents' simulated
//! upgrades) and the time asked about. At time `t`:
//!
//! - a device is measured once its pending updates are known (`since` at
//!   or before `t`);
//! - it is overdue when some security update was first seen at least the
//!   target's days before `t` and was still pending at `t`;
//! - compliance is the share of measured devices not overdue.
//!
//! Every security update counts: apt says which suite an update comes
//! from, not how severe its advisory is.

use std::collections::{BTreeMap, BTreeSet};

use bulwark_store::{PatchWatch, SecuritySpan};

/// Milliseconds in a day.
pub const DAY: i64 = 24 * 3_600_000;
/// Most packages named per overdue device.
pub const PACKAGES_LISTED: usize = 10;

/// Measured and compliant devices at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compliance {
    pub measured: u32,
    pub compliant: u32,
}

impl Compliance {
    pub fn percent(self) -> Option<f64> {
        (self.measured > 0).then(|| 100.0 * f64::from(self.compliant) / f64::from(self.measured))
    }
}

/// A device with security updates pending past the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueDevice {
    pub device_id: String,
    pub hostname: String,
    /// When the oldest overdue update was first seen.
    pub oldest: i64,
    /// Overdue packages, oldest first, at most [`PACKAGES_LISTED`].
    pub packages: Vec<String>,
    pub overdue_count: u32,
}

fn overdue_at(span: &SecuritySpan, grace: i64, t: i64) -> bool {
    span.first_seen_at.saturating_add(grace) <= t && span.cleared_at.is_none_or(|c| c > t)
}

/// Compliance at `t` with a target of `grace` milliseconds.
pub fn compliance_at(
    watched: &[PatchWatch],
    spans: &[SecuritySpan],
    grace: i64,
    t: i64,
) -> Compliance {
    let late: BTreeSet<&str> = spans
        .iter()
        .filter(|s| overdue_at(s, grace, t))
        .map(|s| s.device_id.as_str())
        .collect();
    let mut c = Compliance::default();
    for w in watched.iter().filter(|w| w.since <= t) {
        c.measured += 1;
        if !late.contains(w.device_id.as_str()) {
            c.compliant += 1;
        }
    }
    c
}

/// The devices overdue at `now`, the longest overdue first.
pub fn overdue_devices(
    watched: &[PatchWatch],
    spans: &[SecuritySpan],
    grace: i64,
    now: i64,
) -> Vec<OverdueDevice> {
    let mut by_device: BTreeMap<&str, Vec<&SecuritySpan>> = BTreeMap::new();
    for s in spans.iter().filter(|s| overdue_at(s, grace, now)) {
        by_device.entry(s.device_id.as_str()).or_default().push(s);
    }
    let mut devices: Vec<OverdueDevice> = watched
        .iter()
        .filter_map(|w| {
            let mut late = by_device.remove(w.device_id.as_str())?;
            late.sort_by(|a, b| {
                a.first_seen_at
                    .cmp(&b.first_seen_at)
                    .then(a.package.cmp(&b.package))
            });
            Some(OverdueDevice {
                device_id: w.device_id.clone(),
                hostname: w.hostname.clone(),
                oldest: late[0].first_seen_at,
                overdue_count: u32::try_from(late.len()).unwrap_or(u32::MAX),
                packages: late
                    .iter()
                    .take(PACKAGES_LISTED)
                    .map(|s| format!("{} {}", s.package, s.new_version))
                    .collect(),
            })
        })
        .collect();
    devices.sort_by(|a, b| a.oldest.cmp(&b.oldest).then(a.hostname.cmp(&b.hostname)));
    devices
}

/// Compliance at each day's end from `from` to `now` (the last point is
/// `now`), oldest first.
pub fn daily(
    watched: &[PatchWatch],
    spans: &[SecuritySpan],
    grace: i64,
    from: i64,
    now: i64,
) -> Vec<(i64, Compliance)> {
    let mut points = Vec::new();
    let mut t = now;
    while t > from && points.len() < 400 {
        points.push((t, compliance_at(watched, spans, grace, t)));
        t -= DAY;
    }
    points.reverse();
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn watch(id: &str, since: i64) -> PatchWatch {
        PatchWatch {
            device_id: id.to_owned(),
            hostname: format!("host-{id}"),
            since,
        }
    }

    fn span(id: &str, package: &str, first: i64, cleared: Option<i64>) -> SecuritySpan {
        SecuritySpan {
            device_id: id.to_owned(),
            package: package.to_owned(),
            new_version: "2.0".to_owned(),
            first_seen_at: first,
            cleared_at: cleared,
        }
    }

    #[test]
    fn a_device_is_overdue_from_the_target_until_it_is_patched() {
        let watched = [watch("a", 0), watch("b", 0)];
        let spans = [span("a", "openssl", DAY, Some(20 * DAY))];
        let grace = 14 * DAY;
        let at = |t| compliance_at(&watched, &spans, grace, t);
        assert_eq!(
            at(14 * DAY),
            Compliance {
                measured: 2,
                compliant: 2
            },
            "13 days pending"
        );
        assert_eq!(
            at(15 * DAY),
            Compliance {
                measured: 2,
                compliant: 1
            },
            "14 days: overdue"
        );
        assert_eq!(at(15 * DAY).percent(), Some(50.0));
        assert_eq!(at(20 * DAY).compliant, 2, "installed");
        let late = overdue_devices(&watched, &spans, grace, 16 * DAY);
        assert_eq!(late.len(), 1);
        assert_eq!((late[0].hostname.as_str(), late[0].oldest), ("host-a", DAY));
        assert_eq!(late[0].packages, ["openssl 2.0"]);
    }

    #[test]
    fn devices_count_once_their_updates_are_known() {
        let watched = [watch("a", 0), watch("late", 10 * DAY)];
        assert_eq!(compliance_at(&watched, &[], DAY, 5 * DAY).measured, 1);
        assert_eq!(compliance_at(&watched, &[], DAY, 10 * DAY).measured, 2);
        assert_eq!(compliance_at(&[], &[], DAY, 10 * DAY).percent(), None);
    }

    #[test]
    fn the_series_ends_now_one_point_a_day() {
        let watched = [watch("a", 0)];
        let spans = [span("a", "curl", 0, None)];
        let points = daily(&watched, &spans, 2 * DAY, 0, 5 * DAY);
        let percents: Vec<Option<f64>> = points.iter().map(|(_, c)| c.percent()).collect();
        assert_eq!(points.last().map(|p| p.0), Some(5 * DAY));
        assert_eq!(
            percents,
            [Some(100.0), Some(0.0), Some(0.0), Some(0.0), Some(0.0)]
        );
    }

    proptest! {
        #[test]
        fn compliance_never_exceeds_what_is_measured(
            spans in proptest::collection::vec((0usize..4, 0i64..30, proptest::option::of(0i64..30)), 0..20),
            t in 0i64..40,
            grace in 0i64..15,
        ) {
            let watched: Vec<PatchWatch> = (0..4).map(|i| watch(&i.to_string(), i as i64)).collect();
            let spans: Vec<SecuritySpan> = spans
                .iter()
                .map(|&(d, first, len)| span(&d.to_string(), "p", first, len.map(|l| first + l)))
                .collect();
            let c = compliance_at(&watched, &spans, grace, t);
            prop_assert!(c.compliant <= c.measured);
            let late = overdue_devices(&watched, &spans, grace, t);
            let measured_late = late.iter().filter(|d| watched.iter().any(|w| w.device_id == d.device_id && w.since <= t)).count() as u32;
            prop_assert_eq!(c.measured - c.compliant, measured_late);
        }
    }
}
