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
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/tenants/{tenant}/sla", get(sla_page))
}

/// The chart's drawing area, in SVG user units (about the card's width in
/// pixels, so text is drawn at its size).
const CHART_W: u32 = 1080;
const CHART_H: u32 = 200;
/// Margins: the percent labels left, the week labels below, room above
/// for the top label.
const LEFT: u32 = 44;
const BOTTOM: u32 = 22;
const TOP: u32 = 8;

/// One bar: a severity's attainment in one week.
struct Bar {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    severity: &'static str,
    label: String,
}

/// A week whose alerts of a severity were all still undecided, or none:
/// a small mark on the axis, so "no alerts" does not read as 0 %.
struct Gap {
    x: u32,
    width: u32,
}

struct Tick {
    x: u32,
    text: String,
}

struct Chart {
    width: u32,
    height: u32,
    plot_bottom: u32,
    left: u32,
    bars: Vec<Bar>,
    gaps: Vec<Gap>,
    ticks: Vec<Tick>,
    /// Horizontal lines at 0, 50 and 100 % (y, label).
    grid: Vec<(u32, &'static str)>,
    summary: String,
}

const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

fn chart(report: &SlaReport) -> Chart {
    let plot_h = CHART_H - BOTTOM - TOP;
    let plot_w = CHART_W - LEFT;
    let weeks = u32::try_from(report.weeks.len().max(1)).unwrap_or(1);
    let slot = plot_w / weeks;
    // Three bars and a gap of one bar's width per week.
    let bar = (slot / 4).max(1);
    let y_of = |percent: f64| {
        let p = percent.clamp(0.0, 100.0);
        // Rounded to whole units: pixels, and the template stays integer.
        TOP + plot_h - (p * f64::from(plot_h) / 100.0).round() as u32
    };
    let mut bars = Vec::new();
    let mut gaps = Vec::new();
    let mut ticks = Vec::new();
    let every = (weeks / 8).max(1);
    let mut drawn = 0;
    for (i, week) in report.weeks.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or_default();
        let x0 = LEFT + i * slot + bar / 2;
        if i % every == 0 {
            ticks.push(Tick {
                x: x0,
                text: week.start.get(5..).unwrap_or(&week.start).to_owned(),
            });
        }
        for (j, s) in week.severities.iter().enumerate() {
            let j = u32::try_from(j).unwrap_or_default();
            let x = x0 + j * bar;
            let severity = SEVERITIES.get(j as usize).copied().unwrap_or("info");
            match s.attainment_percent {
                Some(p) => {
                    drawn += 1;
                    let y = y_of(p).min(TOP + plot_h - 3);
                    bars.push(Bar {
                        x,
                        y,
                        width: bar,
                        // 0 % still shows, as a sliver of its colour.
                        height: (TOP + plot_h - y).max(3),
                        severity,
                        label: format!(
                            "week of {}, {severity}: {:.0} % ({} met, {} breached{})",
                            week.start,
                            p,
                            s.met,
                            s.breached,
                            if s.pending > 0 {
                                format!(", {} pending", s.pending)
                            } else {
                                String::new()
                            }
                        ),
                    });
                }
                None => gaps.push(Gap { x, width: bar }),
            }
        }
    }
    Chart {
        width: CHART_W,
        height: CHART_H,
        plot_bottom: TOP + plot_h,
        left: LEFT,
        bars,
        gaps,
        ticks,
        grid: vec![
            (TOP, "100 %"),
            (TOP + plot_h / 2, "50 %"),
            (TOP + plot_h, "0 %"),
        ],
        summary: format!(
            "Weekly SLA attainment by severity, {} weeks, {drawn} weeks with decided alerts",
            report.weeks.len()
        ),
    }
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
    let patch = match report.patch_critical.target_days {
        Some(days) => format!(
            "Critical security updates within {days} days: {}.",
            report.patch_critical.note
        ),
        None => "No patch target set.".to_owned(),
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
