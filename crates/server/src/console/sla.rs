//! A tenant's SLA page (`/tenants/{tenant}/sla`, RFD 0008): the targets
//! and business calendar, attainment per severity, a chart of weekly
//! attainment (inline SVG drawn here, no script), and the breaches. For
//! everyone who may see the tenant's alerts, the customer's auditor
//! included; targets are set with `bulwark sla set`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use bulwark_api::sla::{SlaBreachView, SlaReport, SlaView};
use serde::Deserialize;

use super::{UserBar, error_page, render};
use crate::auth::session::CookieCaller;
use crate::chart::{Chart, Group, bar_chart};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/tenants/{tenant}/sla", get(sla_page))
}

const SEVERITIES: [(&str, &str); 3] = [
    ("critical", "sla-bar sla-critical"),
    ("warning", "sla-bar sla-warning"),
    ("info", "sla-bar sla-info"),
];

/// Weekly attainment per severity, on the console's one chart module: a
/// week whose alerts of a severity were all undecided (or none) is a mark
/// on the axis, not 0 %.
fn chart(report: &SlaReport) -> Chart {
    let groups = report
        .weeks
        .iter()
        .map(|week| Group {
            label: week.start.get(5..).unwrap_or(&week.start).to_owned(),
            bars: week
                .severities
                .iter()
                .zip(SEVERITIES)
                .map(|(s, (severity, class))| {
                    let pending = if s.pending > 0 {
                        format!(", {} pending", s.pending)
                    } else {
                        String::new()
                    };
                    match s.attainment_percent {
                        Some(p) => (
                            class,
                            // Whole percent: the SVG stays integer.
                            Some(p.clamp(0.0, 100.0).round() as i64),
                            format!(
                                "week of {}, {severity}: {p:.0} % ({} met, {} breached{pending})",
                                week.start, s.met, s.breached
                            ),
                        ),
                        None => (
                            class,
                            None,
                            format!(
                                "week of {}, {severity}: nothing decided{pending}",
                                week.start
                            ),
                        ),
                    }
                })
                .collect(),
        })
        .collect();
    let mut chart = bar_chart(
        "Weekly attainment".to_owned(),
        " %",
        groups,
        vec![
            ("sla-bar sla-critical", "critical".to_owned()),
            ("sla-bar sla-warning", "warning".to_owned()),
            ("sla-bar sla-info", "info".to_owned()),
            ("chart-gap", "nothing decided".to_owned()),
        ],
        100,
        200,
    );
    chart.summary = format!(
        "Weekly SLA attainment by severity, {} weeks",
        report.weeks.len()
    );
    chart
}

/// Patch compliance at each day's end: a day with no device measured is a
/// mark on the axis, not 0 %.
pub(super) fn compliance_chart(report: &SlaReport) -> Option<Chart> {
    let days = &report.patch_critical.days;
    if !report.patch_critical.measured || days.is_empty() {
        return None;
    }
    let groups = days
        .iter()
        .map(|d| {
            let date = d.at.get(..10).unwrap_or(&d.at);
            Group {
                label: date.get(5..).unwrap_or(date).to_owned(),
                bars: vec![match d.compliance_percent {
                    Some(p) => (
                        "sla-bar patch-compliance",
                        Some(p.clamp(0.0, 100.0).round() as i64),
                        format!(
                            "{date}: {p:.0} % ({} of {} devices)",
                            d.compliant, d.devices
                        ),
                    ),
                    None => ("chart-gap", None, format!("{date}: no device measured")),
                }],
            }
        })
        .collect();
    let mut chart = bar_chart(
        "Patch compliance".to_owned(),
        " %",
        groups,
        vec![
            (
                "sla-bar patch-compliance",
                "devices with no security update overdue".to_owned(),
            ),
            ("chart-gap", "no device measured".to_owned()),
        ],
        100,
        180,
    );
    chart.summary = format!("Daily patch compliance, {} days", days.len());
    Some(chart)
}

/// Minutes as people read a target: `45 min`, `4 h`, `1 h 30 min`.
fn minutes(m: Option<u64>) -> String {
    match m {
        None => "no target".to_owned(),
        Some(m) if m < 60 => format!("{m} min"),
        Some(m) if m % 60 == 0 => format!("{} h", m / 60),
        Some(m) => format!("{} h {} min", m / 60, m % 60),
    }
}

/// A week's hours as people write them: `mon–fri 09:00–17:00, sat
/// 10:00–14:00` (runs of days with the same hours joined).
fn week_text(hours: &[bulwark_api::sla::BusinessHoursView]) -> String {
    let index = |h: &bulwark_api::sla::BusinessHoursView| {
        bulwark_api::sla::WeekdayView::ALL
            .iter()
            .position(|d| *d == h.day)
            .unwrap_or_default()
    };
    let mut runs: Vec<(usize, usize, &str, &str)> = Vec::new();
    for h in hours {
        let i = index(h);
        match runs.last_mut() {
            Some(run) if run.1 + 1 == i && run.2 == h.start && run.3 == h.end => run.1 = i,
            _ => runs.push((i, i, &h.start, &h.end)),
        }
    }
    let name = |i: usize| bulwark_api::sla::WeekdayView::ALL[i].as_str();
    runs.iter()
        .map(|&(first, last, start, end)| {
            if first == last {
                format!("{} {start}–{end}", name(first))
            } else {
                format!("{}–{} {start}–{end}", name(first), name(last))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn percent(p: Option<f64>) -> String {
    p.map_or("–".to_owned(), |p| format!("{p:.1} %"))
}

struct SeverityRow {
    severity: String,
    acknowledge_target: String,
    resolve_target: String,
    alerts: u32,
    acknowledge: String,
    acknowledge_counts: String,
    resolve: String,
    resolve_counts: String,
}

struct UptimeRow {
    group: String,
    target: String,
    uptime: String,
    /// `met`, `breached` or `unmeasured`: the badge.
    verdict: &'static str,
    devices: u32,
    downtime: String,
    most_down: String,
}

fn uptime_rows(report: &SlaReport) -> Vec<UptimeRow> {
    report
        .uptime
        .iter()
        .map(|u| UptimeRow {
            group: u.group.clone(),
            target: format!("{:.2} %", u.target_percent),
            uptime: u
                .uptime_percent
                .map_or("–".to_owned(), |p| format!("{p:.2} %")),
            verdict: match u.met {
                Some(true) => "met",
                Some(false) => "breached",
                None => "unmeasured",
            },
            devices: u.devices,
            downtime: minutes(Some(u.downtime_minutes)),
            most_down: u
                .most_down
                .iter()
                .map(|d| format!("{} {}", d.hostname, minutes(Some(d.downtime_minutes))))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect()
}

struct BreachRow {
    b: SlaBreachView,
    taken: String,
    target: String,
}

#[derive(Template)]
#[template(path = "sla.html")]
struct SlaPage {
    user: Option<UserBar>,
    version: &'static str,
    tenant: String,
    sla: SlaView,
    report: SlaReport,
    hours: String,
    rows: Vec<SeverityRow>,
    chart: Chart,
    breaches: Vec<BreachRow>,
    patch: String,
    uptime: Vec<UptimeRow>,
    compliance_chart: Option<Chart>,
}

#[derive(Deserialize)]
struct PageQuery {
    days: Option<u32>,
}

fn counts(t: &bulwark_api::sla::SlaTallyView) -> String {
    let mut text = format!("{} met, {} breached", t.met, t.breached);
    if t.pending > 0 {
        text.push_str(&format!(", {} pending", t.pending));
    }
    text
}

async fn sla_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let sla = match crate::api::sla::sla_view(&state, &caller, &tenant).await {
        Ok(v) => v,
        Err(e) => return error_page(e, UserBar::of(&caller)),
    };
    let report =
        match crate::api::sla::sla_report(&state, &caller, &tenant, Some(q.days.unwrap_or(90)))
            .await
        {
            Ok(r) => r,
            Err(e) => return error_page(e, UserBar::of(&caller)),
        };
    let hours = week_text(&sla.settings.business_hours);
    let rows = report
        .severities
        .iter()
        .map(|s| SeverityRow {
            severity: s.severity.clone(),
            acknowledge_target: minutes(s.acknowledge_target_minutes.map(u64::from)),
            resolve_target: minutes(s.resolve_target_minutes.map(u64::from)),
            alerts: s.alerts,
            acknowledge: percent(s.acknowledge.attainment_percent),
            acknowledge_counts: counts(&s.acknowledge),
            resolve: percent(s.resolve.attainment_percent),
            resolve_counts: counts(&s.resolve),
        })
        .collect();
    let breaches = report
        .breaches
        .iter()
        .map(|b| BreachRow {
            taken: minutes(Some(b.taken_minutes)),
            target: minutes(Some(u64::from(b.target_minutes))),
            b: b.clone(),
        })
        .collect();
    let p = &report.patch_critical;
    let patch = match (p.target_days, p.compliance_percent) {
        (Some(days), Some(percent)) => format!(
            "Security updates within {days} days: {percent:.1} % compliant ({} of {} devices; {}).",
            p.compliant, p.devices, p.note
        ),
        (Some(days), None) => format!("Security updates within {days} days: {}.", p.note),
        (None, _) => "No patch target set.".to_owned(),
    };
    render(SlaPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        tenant: sla.tenant.clone(),
        chart: chart(&report),
        hours,
        rows,
        breaches,
        patch,
        uptime: uptime_rows(&report),
        compliance_chart: compliance_chart(&report),
        sla,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_people_say_them() {
        assert_eq!(minutes(Some(45)), "45 min");
        assert_eq!(minutes(Some(240)), "4 h");
        assert_eq!(minutes(Some(90)), "1 h 30 min");
        assert_eq!(minutes(None), "no target");
        assert_eq!(percent(Some(96.25)), "96.2 %");
        let day = |day, start: &str, end: &str| bulwark_api::sla::BusinessHoursView {
            day,
            start: start.to_owned(),
            end: end.to_owned(),
        };
        use bulwark_api::sla::WeekdayView::*;
        let week = [
            day(Mon, "09:00", "17:00"),
            day(Tue, "09:00", "17:00"),
            day(Wed, "09:00", "17:00"),
            day(Thu, "09:00", "12:00"),
            day(Sat, "10:00", "14:00"),
        ];
        assert_eq!(
            week_text(&week),
            "mon–wed 09:00–17:00, thu 09:00–12:00, sat 10:00–14:00"
        );
    }
}
