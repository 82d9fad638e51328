//! SLA attainment (RFD 0008): how a tenant's alerts did against its
//! targets, in business time of its calendar.
//!
//! Pure: a function of the alert rows, the targets, the calendar and
//! `now`, which the caller passes in. For each alert and measure
//! (acknowledge, resolve) with a target:
//!
//! - done (acknowledged, or resolved: resolving answers the page too)
//!   within the target's business time: met;
//! - done later, or still not done once the target's business time has
//!   passed: breached (the latter an *open* breach, counted before the
//!   alert is handled, so a forgotten alert cannot keep attainment up);
//! - not done and still within its target: pending, left out of the
//!   percentage until it is decided.
//!
//! Attainment is met / (met + breached). Weeks are the tenant's local
//! weeks (Monday first); an alert belongs to the week it was opened in.

use bulwark_store::{Severity, SeverityTargets, SlaAlert};
use jiff::civil::Date;

use super::business_time::BusinessCalendar;

/// Milliseconds in a minute (targets are business minutes).
pub const MINUTE: i64 = 60_000;

/// What is measured against a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Acknowledge,
    Resolve,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Acknowledge => "acknowledge",
            Measure::Resolve => "resolve",
        }
    }
}

/// How one alert did against one target; times in business milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    NoTarget,
    Met { taken: i64 },
    Breached { taken: i64, open: bool },
    Pending { taken: i64 },
}

/// One measure of an alert opened at `opened` and done at `done` (if it
/// is), against `target_minutes`, seen at `now`.
pub fn measure(
    calendar: &BusinessCalendar,
    opened: i64,
    done: Option<i64>,
    target_minutes: Option<i64>,
    now: i64,
) -> Outcome {
    if target_minutes.is_none() {
        return Outcome::NoTarget;
    }
    let taken = calendar.between(opened, done.unwrap_or(now));
    judge(taken, done.is_some(), target_minutes)
}

/// The outcome of `taken` business milliseconds, done or still open.
fn judge(taken: i64, done: bool, target_minutes: Option<i64>) -> Outcome {
    let Some(target) = target_minutes.map(|m| m.saturating_mul(MINUTE)) else {
        return Outcome::NoTarget;
    };
    match (done, taken <= target) {
        (true, true) => Outcome::Met { taken },
        (true, false) => Outcome::Breached { taken, open: false },
        (false, false) => Outcome::Breached { taken, open: true },
        (false, true) => Outcome::Pending { taken },
    }
}

/// Counts of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub met: u32,
    pub breached: u32,
    pub pending: u32,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::NoTarget => {}
            Outcome::Met { .. } => self.met += 1,
            Outcome::Breached { .. } => self.breached += 1,
            Outcome::Pending { .. } => self.pending += 1,
        }
    }

    /// Met of those decided, in percent; `None` when none is decided.
    pub fn percent(&self) -> Option<f64> {
        let decided = self.met + self.breached;
        (decided > 0).then(|| f64::from(self.met) * 100.0 / f64::from(decided))
    }
}

/// One severity's attainment over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct SeverityAttainment {
    pub severity: Severity,
    pub targets: SeverityTargets,
    pub alerts: u32,
    pub acknowledge: Tally,
    pub resolve: Tally,
}

/// One local week: per severity (critical, warning, info), alerts within
/// every target they have, breaching one, or not decided yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Week {
    pub start: Date,
    pub severities: [Tally; 3],
}

/// A target missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub alert_id: String,
    pub kind: String,
    pub summary: String,
    pub severity: Severity,
    pub opened_at: i64,
    pub measure: Measure,
    /// Business milliseconds taken (so far, for an open breach).
    pub taken: i64,
    pub target_minutes: i64,
    /// Still not acknowledged or resolved.
    pub open: bool,
}

/// A period's attainment.
#[derive(Debug, Clone, PartialEq)]
pub struct Attainment {
    /// Critical, warning, info.
    pub severities: Vec<SeverityAttainment>,
    pub weeks: Vec<Week>,
    /// Newest alert first.
    pub breaches: Vec<Breach>,
}

/// The severities in the order reports show them.
pub const SEVERITIES: [Severity; 3] = [Severity::Critical, Severity::Warning, Severity::Info];

fn severity_index(severity: Severity) -> usize {
    match severity {
        Severity::Critical => 0,
        Severity::Warning => 1,
        Severity::Info => 2,
    }
}

/// The Monday of `day`'s week.
fn monday_of(day: Date) -> Date {
    let back = i64::from(day.weekday().to_monday_zero_offset());
    day.checked_sub(jiff::Span::new().days(back)).unwrap_or(day)
}

/// Attainment of `alerts` (opened in `[from, now)`) against `targets`.
pub fn attainment(
    calendar: &BusinessCalendar,
    targets: impl Fn(Severity) -> SeverityTargets,
    alerts: &[SlaAlert],
    from: i64,
    now: i64,
) -> Attainment {
    let mut severities: Vec<SeverityAttainment> = SEVERITIES
        .iter()
        .map(|&severity| SeverityAttainment {
            severity,
            targets: targets(severity),
            alerts: 0,
            acknowledge: Tally::default(),
            resolve: Tally::default(),
        })
        .collect();
    let mut weeks = Vec::new();
    let (mut week, last) = (
        monday_of(calendar.local_date(from)),
        calendar.local_date(now),
    );
    while week <= last {
        weeks.push(Week {
            start: week,
            severities: [Tally::default(); 3],
        });
        match week.checked_add(jiff::Span::new().days(7)) {
            Ok(next) => week = next,
            Err(_) => break,
        }
    }
    let mut breaches = Vec::new();
    for alert in alerts {
        let index = severity_index(alert.severity);
        let target = targets(alert.severity);
        let acknowledged = match (alert.acknowledged_at, alert.resolved_at) {
            (Some(a), Some(r)) => Some(a.min(r)),
            (a, r) => a.or(r),
        };
        // Both measures of an alert still open end at `now`: one count.
        let (ack_end, resolve_end) = (
            acknowledged.unwrap_or(now),
            alert.resolved_at.unwrap_or(now),
        );
        let (ack_wanted, resolve_wanted) = (
            target.acknowledge_minutes.is_some(),
            target.resolve_minutes.is_some(),
        );
        let ack_taken = if ack_wanted {
            calendar.between(alert.opened_at, ack_end)
        } else {
            0
        };
        let resolve_taken = if !resolve_wanted {
            0
        } else if ack_wanted && resolve_end == ack_end {
            ack_taken
        } else {
            calendar.between(alert.opened_at, resolve_end)
        };
        let outcomes = [
            (
                Measure::Acknowledge,
                target.acknowledge_minutes,
                judge(
                    ack_taken,
                    acknowledged.is_some(),
                    target.acknowledge_minutes,
                ),
            ),
            (
                Measure::Resolve,
                target.resolve_minutes,
                judge(
                    resolve_taken,
                    alert.resolved_at.is_some(),
                    target.resolve_minutes,
                ),
            ),
        ];
        let tally = &mut severities[index];
        tally.alerts += 1;
        tally.acknowledge.add(outcomes[0].2);
        tally.resolve.add(outcomes[1].2);
        // The alert as a whole: breached if any target is, pending while
        // any is undecided, met when all are.
        let whole = if outcomes
            .iter()
            .any(|o| matches!(o.2, Outcome::Breached { .. }))
        {
            Outcome::Breached {
                taken: 0,
                open: false,
            }
        } else if outcomes
            .iter()
            .any(|o| matches!(o.2, Outcome::Pending { .. }))
        {
            Outcome::Pending { taken: 0 }
        } else if outcomes.iter().any(|o| matches!(o.2, Outcome::Met { .. })) {
            Outcome::Met { taken: 0 }
        } else {
            Outcome::NoTarget
        };
        let opened_week = monday_of(calendar.local_date(alert.opened_at));
        if let Some(week) = weeks.iter_mut().find(|w| w.start == opened_week) {
            week.severities[index].add(whole);
        }
        for (which, target_minutes, outcome) in outcomes {
            if let (Outcome::Breached { taken, open }, Some(target_minutes)) =
                (outcome, target_minutes)
            {
                breaches.push(Breach {
                    alert_id: alert.id.clone(),
                    kind: alert.kind.clone(),
                    summary: alert.summary.clone(),
                    severity: alert.severity,
                    opened_at: alert.opened_at,
                    measure: which,
                    taken,
                    target_minutes,
                    open,
                });
            }
        }
    }
    breaches.sort_by(|a, b| {
        b.opened_at
            .cmp(&a.opened_at)
            .then(a.alert_id.cmp(&b.alert_id))
    });
    Attainment {
        severities,
        weeks,
        breaches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::business_time::DayHours;
    use jiff::tz::TimeZone;
    use proptest::prelude::*;

    const BERLIN: &str = "Europe/Berlin";

    fn at(text: &str) -> i64 {
        let dt: jiff::civil::DateTime = text.parse().expect("datetime");
        TimeZone::get(BERLIN)
            .expect("zone")
            .to_timestamp(dt)
            .expect("in range")
            .as_millisecond()
    }

    fn office() -> BusinessCalendar {
        let day = Some(DayHours {
            start: 9 * 60,
            end: 17 * 60,
        });
        BusinessCalendar::new(
            TimeZone::get(BERLIN).expect("zone"),
            [day, day, day, day, day, None, None],
            [],
        )
        .expect("calendar")
    }

    fn alert(
        id: &str,
        severity: Severity,
        opened: &str,
        ack: Option<&str>,
        resolved: Option<&str>,
    ) -> SlaAlert {
        SlaAlert {
            id: id.to_owned(),
            kind: "device.offline".to_owned(),
            severity,
            summary: format!("alert {id}"),
            opened_at: at(opened),
            acknowledged_at: ack.map(at),
            resolved_at: resolved.map(at),
        }
    }

    fn targets(severity: Severity) -> SeverityTargets {
        match severity {
            Severity::Critical => SeverityTargets {
                acknowledge_minutes: Some(30),
                resolve_minutes: Some(240),
            },
            Severity::Warning => SeverityTargets {
                acknowledge_minutes: Some(120),
                resolve_minutes: None,
            },
            Severity::Info => SeverityTargets::default(),
        }
    }

    #[test]
    fn weekends_and_nights_do_not_count_against_the_sla() {
        let cal = office();
        // Friday 16:50 to Monday 09:15: 10 + 15 = 25 business minutes.
        let opened = at("2026-01-09T16:50");
        assert_eq!(
            measure(&cal, opened, Some(at("2026-01-12T09:15")), Some(30), 0),
            Outcome::Met { taken: 25 * MINUTE }
        );
        assert_eq!(
            measure(&cal, opened, Some(at("2026-01-12T09:25")), Some(30), 0),
            Outcome::Breached {
                taken: 35 * MINUTE,
                open: false
            }
        );
        // Still open: pending on Monday 09:10, an open breach at 09:30.
        assert_eq!(
            measure(&cal, opened, None, Some(30), at("2026-01-12T09:10")),
            Outcome::Pending { taken: 20 * MINUTE }
        );
        assert_eq!(
            measure(&cal, opened, None, Some(30), at("2026-01-12T09:30")),
            Outcome::Breached {
                taken: 40 * MINUTE,
                open: true
            }
        );
        assert_eq!(measure(&cal, opened, None, None, 0), Outcome::NoTarget);
        // Across the spring change (Sunday 2026-03-29): Saturday to
        // Monday 10:00 is one business hour.
        assert_eq!(
            measure(
                &cal,
                at("2026-03-28T12:00"),
                Some(at("2026-03-30T10:00")),
                Some(60),
                0
            ),
            Outcome::Met { taken: 60 * MINUTE }
        );
    }

    #[test]
    fn attainment_counts_weeks_and_lists_breaches() {
        let cal = office();
        let alerts = [
            // Week of Jan 5: critical acked in 10 min, resolved in 3h: met.
            alert(
                "a",
                Severity::Critical,
                "2026-01-05T10:00",
                Some("2026-01-05T10:10"),
                Some("2026-01-05T13:00"),
            ),
            // Critical resolved without an acknowledgement after 20 min: met both.
            alert(
                "b",
                Severity::Critical,
                "2026-01-06T10:00",
                None,
                Some("2026-01-06T10:20"),
            ),
            // Week of Jan 12: critical acked late (45 min).
            alert(
                "c",
                Severity::Critical,
                "2026-01-12T09:00",
                Some("2026-01-12T09:45"),
                Some("2026-01-12T10:00"),
            ),
            // Warning never acked, opened Friday 16:00; now is Monday 12:00: 4h > 2h, open breach.
            alert("d", Severity::Warning, "2026-01-16T16:00", None, None),
            // Warning opened Monday 11:30, not acked yet: pending.
            alert("e", Severity::Warning, "2026-01-19T11:30", None, None),
            // Info: no target.
            alert("f", Severity::Info, "2026-01-19T11:00", None, None),
        ];
        let report = attainment(
            &cal,
            targets,
            &alerts,
            at("2026-01-05T00:00"),
            at("2026-01-19T12:00"),
        );
        let critical = &report.severities[0];
        assert_eq!(critical.alerts, 3);
        assert_eq!(
            critical.acknowledge,
            Tally {
                met: 2,
                breached: 1,
                pending: 0
            }
        );
        assert_eq!(
            critical.resolve,
            Tally {
                met: 3,
                breached: 0,
                pending: 0
            }
        );
        let warning = &report.severities[1];
        assert_eq!(
            warning.acknowledge,
            Tally {
                met: 0,
                breached: 1,
                pending: 1
            }
        );
        assert_eq!(warning.resolve, Tally::default());
        assert_eq!(report.severities[2].alerts, 1);
        assert_eq!(report.severities[2].acknowledge.percent(), None);
        let starts: Vec<String> = report.weeks.iter().map(|w| w.start.to_string()).collect();
        assert_eq!(starts, ["2026-01-05", "2026-01-12", "2026-01-19"]);
        assert_eq!(report.weeks[0].severities[0].percent(), Some(100.0));
        assert_eq!(report.weeks[1].severities[0].percent(), Some(0.0));
        assert_eq!(report.weeks[1].severities[1].breached, 1);
        assert_eq!(report.weeks[2].severities[1].pending, 1);
        let listed: Vec<(&str, Measure, i64, bool)> = report
            .breaches
            .iter()
            .map(|b| (b.alert_id.as_str(), b.measure, b.taken / MINUTE, b.open))
            .collect();
        assert_eq!(
            listed,
            [
                ("d", Measure::Acknowledge, 4 * 60, true),
                ("c", Measure::Acknowledge, 45, false),
            ]
        );
    }

    proptest! {
        /// On a round-the-clock UTC calendar, business time is the raw
        /// duration: an alert meets its target exactly when it was done
        /// within that many minutes.
        #[test]
        fn around_the_clock_attainment_is_wall_clock(
            durations in prop::collection::vec((0i64..10_000, prop::option::of(0i64..5_000)), 1..40),
            target in 1i64..3_000,
        ) {
            let cal = BusinessCalendar::always(TimeZone::UTC);
            let start = 1_767_225_600_000; // 2026-01-01
            let now = start + 20_000 * MINUTE;
            let alerts: Vec<SlaAlert> = durations.iter().enumerate().map(|(i, (open_after, took))| SlaAlert {
                id: format!("{i:03}"),
                kind: "k".to_owned(),
                severity: Severity::Critical,
                summary: String::new(),
                opened_at: start + open_after * MINUTE,
                acknowledged_at: took.map(|t| start + (open_after + t) * MINUTE),
                resolved_at: None,
            }).collect();
            let targets = |_| SeverityTargets { acknowledge_minutes: Some(target), resolve_minutes: None };
            let report = attainment(&cal, targets, &alerts, start, now);
            let met = durations.iter().filter(|(_, t)| t.is_some_and(|t| t <= target)).count();
            let late = durations.iter().filter(|(_, t)| t.is_some_and(|t| t > target)).count();
            let open_late = durations.iter().filter(|(o, t)| t.is_none() && 20_000 - o > target).count();
            let tally = report.severities[0].acknowledge;
            prop_assert_eq!(tally.met as usize, met);
            prop_assert_eq!(tally.breached as usize, late + open_late);
            prop_assert_eq!((tally.met + tally.breached + tally.pending) as usize, durations.len());
            prop_assert_eq!(report.breaches.len(), late + open_late);
            let weekly: u32 = report.weeks.iter().map(|w| w.severities[0].met + w.severities[0].breached + w.severities[0].pending).sum();
            prop_assert_eq!(weekly as usize, durations.len());
        }
    }
}
