//! Charts of the metrics history (RFD 0014) on the device and tenant
//! pages, and the dashboard across tenants (`/dashboard`). Every chart is
//! drawn by [`crate::chart`]; the data comes from the API's own views, so
//! the console shows what the API answers and nothing more.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use bulwark_api::metrics::{DeviceMetricsView, MetricKindView, MetricSeriesView, MetricsQuery};

use super::{UserBar, error_page, render};
use crate::api::error::ApiError;
use crate::auth::Caller;
use crate::auth::session::CookieCaller;
use crate::chart::{Chart, Group, Series, bar_chart, line_chart};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/dashboard", get(dashboard_page))
}

/// The ranges a chart page links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartRange {
    Hour,
    Day,
    Week,
    Month,
}

impl ChartRange {
    pub const ALL: [ChartRange; 4] = [
        ChartRange::Hour,
        ChartRange::Day,
        ChartRange::Week,
        ChartRange::Month,
    ];

    /// `range=` in a page's query (`1h`, `24h`, `7d`, `30d`); anything
    /// else is the default, 24 h.
    pub fn from_query(raw: Option<&str>) -> Self {
        let value = raw
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("range="));
        Self::ALL
            .into_iter()
            .find(|r| Some(r.as_str()) == value)
            .unwrap_or(ChartRange::Day)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChartRange::Hour => "1h",
            ChartRange::Day => "24h",
            ChartRange::Week => "7d",
            ChartRange::Month => "30d",
        }
    }

    fn secs(self) -> u64 {
        match self {
            ChartRange::Hour => 3600,
            ChartRange::Day => 86_400,
            ChartRange::Week => 7 * 86_400,
            ChartRange::Month => 30 * 86_400,
        }
    }

    /// The API query for this range ending now.
    pub fn query(self, metric: Option<String>) -> MetricsQuery {
        let now = u64::try_from(crate::now_millis() / 1000).unwrap_or_default();
        MetricsQuery {
            metric,
            from: Some(now.saturating_sub(self.secs())),
            to: Some(now),
        }
    }
}

/// The range links above a page's charts: (text, href, current).
pub struct RangeLink {
    pub text: &'static str,
    pub href: String,
    pub current: bool,
}

pub fn range_links(base: &str, current: ChartRange) -> Vec<RangeLink> {
    ChartRange::ALL
        .into_iter()
        .map(|r| RangeLink {
            text: r.as_str(),
            href: format!("{base}?range={}", r.as_str()),
            current: r == current,
        })
        .collect()
}

/// A chart title and y unit for a metric's kind (the label, a mount or
/// host:port, is the policy's: the template escapes it).
fn title_of(s: &MetricSeriesView) -> (String, &'static str, i64) {
    let with = |what: &str| {
        if s.label.is_empty() {
            format!("{what} ({})", s.metric)
        } else {
            format!("{what} {} ({})", s.label, s.metric)
        }
    };
    match s.kind {
        Some(MetricKindView::Cpu) => (with("CPU"), " %", 100),
        Some(MetricKindView::Memory) => (with("Memory"), " %", 100),
        Some(MetricKindView::Disk) => (with("Disk"), " %", 100),
        Some(MetricKindView::Load) => (with("Load per core ×100"), "", 100),
        Some(MetricKindView::Latency) => (with("Check latency"), " ms", 10),
        None => (format!("{} (no longer in the policy)", s.metric), "", 1),
    }
}

/// One chart per series: average and maximum per bucket; pure.
pub fn device_charts(view: &DeviceMetricsView) -> Vec<Chart> {
    let from = i64::try_from(view.from.saturating_mul(1000)).unwrap_or(i64::MAX);
    let to = i64::try_from(view.to.saturating_mul(1000)).unwrap_or(i64::MAX);
    view.series
        .iter()
        .map(|s| {
            let (title, unit, y_max) = title_of(s);
            let at = |p: &bulwark_api::metrics::MetricPointView| {
                i64::try_from(p.at.saturating_mul(1000)).unwrap_or(i64::MAX)
            };
            let value = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            let mut series = vec![Series {
                class: "chart-avg",
                label: "average".to_owned(),
                points: s.points.iter().map(|p| (at(p), value(p.avg))).collect(),
            }];
            // Raw samples: average and maximum are the sample itself.
            if s.points.iter().any(|p| p.samples > 1) {
                series.push(Series {
                    class: "chart-max",
                    label: "maximum".to_owned(),
                    points: s.points.iter().map(|p| (at(p), value(p.max))).collect(),
                });
            }
            line_chart(title, unit, series, from, to, y_max, 150)
        })
        .collect()
}

/// The device page's charts card.
pub struct DeviceChartsCard {
    pub charts: Vec<Chart>,
    pub ranges: Vec<RangeLink>,
    /// The tenant's policy has no numeric check: nothing to chart.
    pub nothing_to_chart: bool,
    pub tenant: String,
}

pub async fn device_charts_card(
    state: &AppState,
    caller: &Caller,
    id: &str,
    range: ChartRange,
) -> Result<DeviceChartsCard, ApiError> {
    let view =
        crate::api::metrics_history::device_metrics_view(state, caller, id, &range.query(None))
            .await?;
    Ok(DeviceChartsCard {
        charts: device_charts(&view),
        ranges: range_links(&format!("/devices/{}", view.device_id), range),
        nothing_to_chart: view.series.is_empty(),
        tenant: view.tenant,
    })
}

/// The tenant page's charts: each numeric check of the policy over all
/// devices (average of every sample, largest of any device).
pub async fn tenant_charts(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    tenant_id: &str,
    range: ChartRange,
) -> Result<Vec<Chart>, ApiError> {
    let defs = crate::metrics_history::tenant_metrics(&state.store, tenant_id).await;
    let mut charts = Vec::new();
    for def in defs.iter().take(8) {
        let view = crate::api::metrics_history::tenant_metrics_view(
            state,
            caller,
            tenant,
            &range.query(Some(def.name.clone())),
        )
        .await?;
        let s = MetricSeriesView {
            metric: def.name.clone(),
            kind: Some(crate::api::metrics_history::kind_view(def.kind)),
            label: def.label.clone(),
            points: Vec::new(),
        };
        let (title, unit, y_max) = title_of(&s);
        let at = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let value = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        charts.push(line_chart(
            format!("{title}, all devices"),
            unit,
            vec![
                Series {
                    class: "chart-avg",
                    label: "average of every device".to_owned(),
                    points: view
                        .points
                        .iter()
                        .map(|p| (at(p.at), value(p.avg)))
                        .collect(),
                },
                Series {
                    class: "chart-max",
                    label: "largest of any device".to_owned(),
                    points: view
                        .points
                        .iter()
                        .map(|p| (at(p.at), value(p.max)))
                        .collect(),
                },
            ],
            at(view.from),
            at(view.to),
            y_max,
            150,
        ));
    }
    Ok(charts)
}

struct DashboardRow {
    tenant: String,
    devices: u64,
    online: u64,
    critical: u64,
    warning: u64,
    info: u64,
    failing_checks: u64,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    user: Option<UserBar>,
    version: &'static str,
    rows: Vec<DashboardRow>,
    totals: DashboardRow,
    chart: Chart,
}

async fn dashboard_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
) -> Response {
    let view = match crate::api::metrics_history::dashboard_view(&state, &caller).await {
        Ok(v) => v,
        Err(e) => return error_page(e, UserBar::of(&caller)),
    };
    let rows: Vec<DashboardRow> = view
        .tenants
        .iter()
        .map(|r| DashboardRow {
            tenant: r.tenant.clone(),
            devices: r.devices,
            online: r.online,
            critical: r.alerts.critical,
            warning: r.alerts.warning,
            info: r.alerts.info,
            failing_checks: r.failing_checks,
        })
        .collect();
    let sum = |f: fn(&DashboardRow) -> u64| rows.iter().map(f).sum::<u64>();
    let totals = DashboardRow {
        tenant: String::new(),
        devices: sum(|r| r.devices),
        online: sum(|r| r.online),
        critical: sum(|r| r.critical),
        warning: sum(|r| r.warning),
        info: sum(|r| r.info),
        failing_checks: sum(|r| r.failing_checks),
    };
    let v = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let chart = bar_chart(
        "Open alerts and failing checks per tenant".to_owned(),
        "",
        rows.iter()
            .take(40)
            .map(|r| Group {
                label: r.tenant.clone(),
                bars: vec![
                    (
                        "sla-critical",
                        Some(v(r.critical)),
                        format!("{}: {} critical alerts", r.tenant, r.critical),
                    ),
                    (
                        "sla-warning",
                        Some(v(r.warning)),
                        format!("{}: {} warning alerts", r.tenant, r.warning),
                    ),
                    (
                        "chart-failing",
                        Some(v(r.failing_checks)),
                        format!("{}: {} failing checks", r.tenant, r.failing_checks),
                    ),
                ],
            })
            .collect(),
        vec![
            ("sla-critical", "critical alerts".to_owned()),
            ("sla-warning", "warning alerts".to_owned()),
            ("chart-failing", "failing checks".to_owned()),
        ],
        4,
        140,
    );
    render(DashboardPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        rows,
        totals,
        chart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_api::metrics::{MetricPointView, TierView};

    #[test]
    fn ranges_parse_from_the_query_and_default_to_a_day() {
        assert_eq!(ChartRange::from_query(Some("range=7d")), ChartRange::Week);
        assert_eq!(
            ChartRange::from_query(Some("q=x&range=1h")),
            ChartRange::Hour
        );
        assert_eq!(ChartRange::from_query(Some("range=1y")), ChartRange::Day);
        assert_eq!(ChartRange::from_query(None), ChartRange::Day);
        let links = range_links("/devices/x", ChartRange::Week);
        assert_eq!(links[2].href, "/devices/x?range=7d");
        assert!(links[2].current && !links[0].current);
    }

    #[test]
    fn each_series_is_a_chart_titled_by_its_kind_and_label() {
        let view = DeviceMetricsView {
            device_id: "d".into(),
            hostname: "h".into(),
            tenant: "t".into(),
            from: 1_800_000_000,
            to: 1_800_003_600,
            tier: TierView::Raw,
            bucket_secs: 10,
            series: vec![
                MetricSeriesView {
                    metric: "disk-data".into(),
                    kind: Some(MetricKindView::Disk),
                    label: "/data".into(),
                    points: vec![MetricPointView {
                        at: 1_800_000_010,
                        avg: 40,
                        max: 40,
                        samples: 1,
                    }],
                },
                MetricSeriesView {
                    metric: "cpu".into(),
                    kind: Some(MetricKindView::Cpu),
                    label: String::new(),
                    points: Vec::new(),
                },
            ],
        };
        let charts = device_charts(&view);
        assert_eq!(charts[0].title, "Disk /data (disk-data)");
        assert_eq!(charts[0].lines.len(), 1);
        assert!(!charts[0].empty);
        assert_eq!(charts[1].title, "CPU (cpu)");
        assert!(charts[1].empty);
    }
}
