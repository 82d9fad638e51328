//! `GET /api/v1/metrics`: Bulwark's own health in the Prometheus text
//! format (0.0.4), for the MSP's monitoring: connected agents, devices,
//! the transparency logs' size, unresolved alerts, the notification
//! outbox, job targets waiting for delivery, the metrics history's rows
//! and each export cursor's lag in entries (the alert raiser's and every
//! SIEM sink's, by sink name; RFD 0014). Owners and security officers (a Prometheus scraper uses an API
//! token of one of them); no tenant's name or id appears.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use bulwark_api::error::ErrorBody;
use bulwark_store::{AlertCounts, Severity};

use super::error::ApiError;
use crate::auth::{Action, Caller};
use crate::state::AppState;

/// What the exposition shows, gathered first (so that rendering is pure).
pub struct Snapshot {
    pub agents_connected: usize,
    pub logs: usize,
    pub log_entries: u64,
    pub alerts: AlertCounts,
    /// Job targets waiting for delivery.
    pub jobs_waiting: u64,
    /// Rows in the metrics history (RFD 0014).
    pub metric_rows: u64,
    /// Per export cursor (the alert raiser's, each SIEM sink's): entries
    /// behind over all logs together, and behind in the log furthest behind.
    pub cursor_lag: Vec<(String, u64, u64)>,
}

/// Lag per cursor name, over every log: a log the cursor has no row for
/// is behind by its whole size; pure. `names` are the cursors that must
/// appear even without rows.
pub fn cursor_lags(
    heads: &[(String, u64)],
    cursors: &[(String, String, u64)],
    names: &[String],
) -> Vec<(String, u64, u64)> {
    let mut all: Vec<String> = names.to_vec();
    all.extend(cursors.iter().map(|c| c.0.clone()));
    all.sort();
    all.dedup();
    all.into_iter()
        .map(|name| {
            let (mut total, mut max) = (0u64, 0u64);
            for (log, size) in heads {
                let next = cursors
                    .iter()
                    .find(|c| c.0 == name && &c.1 == log)
                    .map_or(0, |c| c.2);
                let lag = size.saturating_sub(next);
                total = total.saturating_add(lag);
                max = max.max(lag);
            }
            (name, total, max)
        })
        .collect()
}

/// A label value as the exposition format writes it.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The text exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    gauge(
        &mut out,
        "bulwark_agents_connected",
        "Agents connected to this server now.",
        &[("", snapshot.agents_connected.to_string())],
    );
    gauge(
        &mut out,
        "bulwark_transparency_logs",
        "Transparency logs (the MSP's and one per tenant).",
        &[("", snapshot.logs.to_string())],
    );
    gauge(
        &mut out,
        "bulwark_transparency_log_entries",
        "Entries in all transparency logs together, archived ones included.",
        &[("", snapshot.log_entries.to_string())],
    );
    let unresolved: Vec<(String, String)> = Severity::ALL
        .iter()
        .map(|severity| {
            let n = snapshot
                .alerts
                .unresolved
                .iter()
                .find(|(s, _)| s == severity)
                .map_or(0, |(_, n)| *n);
            (
                format!("{{severity=\"{}\"}}", severity.as_str()),
                n.to_string(),
            )
        })
        .collect();
    let unresolved: Vec<(&str, String)> = unresolved
        .iter()
        .map(|(l, v)| (l.as_str(), v.clone()))
        .collect();
    gauge(
        &mut out,
        "bulwark_alerts_unresolved",
        "Alerts open or acknowledged, by severity.",
        &unresolved,
    );
    gauge(
        &mut out,
        "bulwark_notifications",
        "Alert notifications not sent: pending (being tried) or failed (given up).",
        &[
            (
                "{state=\"pending\"}",
                snapshot.alerts.notifications_pending.to_string(),
            ),
            (
                "{state=\"failed\"}",
                snapshot.alerts.notifications_failed.to_string(),
            ),
        ],
    );
    gauge(
        &mut out,
        "bulwark_jobs_waiting",
        "Job targets waiting for delivery to their agent.",
        &[("", snapshot.jobs_waiting.to_string())],
    );
    gauge(
        &mut out,
        "bulwark_metric_samples",
        "Rows in the metrics history (every tier).",
        &[("", snapshot.metric_rows.to_string())],
    );
    let mut lag: Vec<(String, String)> = Vec::new();
    for (name, total, max) in &snapshot.cursor_lag {
        let name = label_value(name);
        lag.push((
            format!("{{cursor=\"{name}\",over=\"all\"}}"),
            total.to_string(),
        ));
        lag.push((
            format!("{{cursor=\"{name}\",over=\"worst\"}}"),
            max.to_string(),
        ));
    }
    let lag: Vec<(&str, String)> = lag.iter().map(|(l, v)| (l.as_str(), v.clone())).collect();
    gauge(
        &mut out,
        "bulwark_cursor_lag_entries",
        "Log entries an export cursor (alert-raiser, each SIEM sink) has not read: over all logs together, and in the log furthest behind.",
        &lag,
    );
    out
}

/// Bulwark's own health in the Prometheus text format.
#[utoipa::path(get, path = "/api/v1/metrics", tag = "alerts",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::ViewMetrics)?;
    let mut logs = 0;
    let mut log_entries = 0u64;
    let mut heads: Vec<(String, u64)> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = state.store.log_heads(after.as_deref(), 1000).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.log_id.clone());
        logs += page.len();
        log_entries += page.iter().map(|h| h.size).sum::<u64>();
        heads.extend(page.iter().map(|h| (h.log_id.clone(), h.size)));
        if page.len() < 1000 {
            break;
        }
    }
    let snapshot = Snapshot {
        agents_connected: state.presence.online_count(),
        logs,
        log_entries,
        alerts: state.store.alert_counts().await?,
        jobs_waiting: state.store.jobs_waiting().await?,
        metric_rows: state.store.metric_sample_rows().await?,
        cursor_lag: cursor_lags(
            &heads,
            &state.store.siem_cursor_positions().await?,
            &[crate::alerts::CURSOR.to_owned()],
        ),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&snapshot),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_severity() {
        let text = render(&Snapshot {
            agents_connected: 3,
            logs: 2,
            log_entries: 40,
            alerts: AlertCounts {
                unresolved: vec![(Severity::Critical, 2)],
                notifications_pending: 1,
                notifications_failed: 0,
            },
            jobs_waiting: 4,
            metric_rows: 1234,
            cursor_lag: cursor_lags(
                &[("msp".into(), 10), ("t1".into(), 5)],
                &[
                    ("alerts:raiser".into(), "msp".into(), 8),
                    ("siem \"a\"".into(), "t1".into(), 5),
                ],
                &["alerts:raiser".into()],
            ),
        });
        assert!(text.contains("bulwark_jobs_waiting 4\n"));
        assert!(text.contains("bulwark_metric_samples 1234\n"));
        assert!(
            text.contains("bulwark_cursor_lag_entries{cursor=\"alerts:raiser\",over=\"all\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "bulwark_cursor_lag_entries{cursor=\"alerts:raiser\",over=\"worst\"} 5\n"
            )
        );
        assert!(
            text.contains(
                "bulwark_cursor_lag_entries{cursor=\"siem \\\"a\\\"\",over=\"all\"} 10\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE bulwark_agents_connected gauge\nbulwark_agents_connected 3\n")
        );
        assert!(text.contains("bulwark_alerts_unresolved{severity=\"critical\"} 2\n"));
        assert!(text.contains("bulwark_alerts_unresolved{severity=\"info\"} 0\n"));
        assert!(text.contains("bulwark_notifications{state=\"pending\"} 1\n"));
        assert!(text.contains("bulwark_transparency_log_entries 40\n"));
    }
}
