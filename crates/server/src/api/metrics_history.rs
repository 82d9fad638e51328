//! Metrics history for charts and the dashboard across tenants (RFD 0014):
//! a device's series (its own authorisation, `visible_device`), a
//! tenant's aggregate (`tenant_for`, the one tenant check) and one row per
//! tenant in the caller's scope. Nothing here decides anything for an
//! agent: these are pictures of what agents reported.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use bulwark_api::error::ErrorBody;
use bulwark_api::metrics::{
    AlertCountView, DashboardRowView, DashboardView, DeviceMetricsView, MAX_RANGE_SECS,
    MAX_TIME_SECS, MetricKindView, MetricPointView, MetricSeriesView, MetricsQuery,
    TenantMetricPointView, TenantMetricsQuery, TenantMetricsView, TierView,
};
use bulwark_store::metrics_plan::{MetricKind, TIERS};

use super::ApiPath;
use super::error::ApiError;
use crate::auth::{Action, Caller};
use crate::metrics_history::{MetricDef, tenant_metrics};
use crate::state::AppState;

/// Ranges up to this many seconds are answered from raw samples.
const RAW_RANGE_SECS: u64 = 6 * 3600;
/// Ranges up to this many seconds from 15-minute buckets; longer: days.
const QUARTER_RANGE_SECS: u64 = 31 * 86_400;

/// A checked range: Unix seconds, and the tier that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: u64,
    pub to: u64,
    pub tier: usize,
}

/// The range `q` asks for at `now` (Unix seconds), or why not; pure. The
/// tier follows from the span, and moves coarser when the range starts
/// before the finer tier's retention (its rows are rolled up by then).
pub fn range(from: Option<u64>, to: Option<u64>, now: u64) -> Result<Range, ApiError> {
    let to = to.unwrap_or(now);
    let from = from.unwrap_or_else(|| to.saturating_sub(86_400));
    if to > MAX_TIME_SECS || from > MAX_TIME_SECS {
        return Err(ApiError::bad_request(format!(
            "times are Unix seconds up to {MAX_TIME_SECS}"
        )));
    }
    if from >= to {
        return Err(ApiError::bad_request("`from` must be before `to`"));
    }
    let span = to - from;
    if span > MAX_RANGE_SECS {
        return Err(ApiError::bad_request(format!(
            "a range spans at most {} days",
            MAX_RANGE_SECS / 86_400
        )));
    }
    let mut tier = if span <= RAW_RANGE_SECS {
        0
    } else if span <= QUARTER_RANGE_SECS {
        1
    } else {
        2
    };
    while tier < TIERS.len() - 1 {
        let kept = u64::try_from(TIERS[tier].1 / 1000).unwrap_or(u64::MAX);
        if from >= now.saturating_sub(kept) {
            break;
        }
        tier += 1;
    }
    Ok(Range { from, to, tier })
}

fn tier_view(tier: usize) -> TierView {
    match tier {
        0 => TierView::Raw,
        1 => TierView::QuarterHour,
        _ => TierView::Day,
    }
}

fn bucket_secs(tier: usize) -> u64 {
    u64::try_from(TIERS.get(tier).map_or(0, |t| t.0) / 1000).unwrap_or(0)
}

pub fn kind_view(kind: MetricKind) -> MetricKindView {
    match kind {
        MetricKind::Cpu => MetricKindView::Cpu,
        MetricKind::Memory => MetricKindView::Memory,
        MetricKind::Disk => MetricKindView::Disk,
        MetricKind::Load => MetricKindView::Load,
        MetricKind::Latency => MetricKindView::Latency,
    }
}

fn secs(ms: i64) -> u64 {
    u64::try_from(ms / 1000).unwrap_or(0)
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn now_secs() -> u64 {
    secs(crate::now_millis())
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn metric_name(metric: Option<&str>) -> Result<Option<&str>, ApiError> {
    match metric {
        Some(m) if !crate::alerts::checks::is_policy_name(m) => Err(ApiError::bad_request(
            "`metric` is a check name: lowercase letters, digits, '-', '_' and '.', at most 64",
        )),
        other => Ok(other),
    }
}

pub async fn device_metrics_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
    q: &MetricsQuery,
) -> Result<DeviceMetricsView, ApiError> {
    let device = super::devices::visible_device(state, caller, id).await?;
    let metric = metric_name(q.metric.as_deref())?;
    let r = range(q.from, q.to, now_secs())?;
    let stored = state
        .store
        .metric_series(
            &caller.scope(),
            &device.id,
            r.tier,
            metric,
            ms(r.from),
            ms(r.to),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let defs = tenant_metrics(&state.store, &device.tenant_id).await;
    // Every metric of the policy, in policy order (empty ones too, so the
    // page can say "no samples yet"); then stored ones the policy dropped.
    let mut series: Vec<MetricSeriesView> = defs
        .iter()
        .filter(|d| metric.is_none_or(|m| m == d.name))
        .map(|d: &MetricDef| MetricSeriesView {
            metric: d.name.clone(),
            kind: Some(kind_view(d.kind)),
            label: d.label.clone(),
            points: Vec::new(),
        })
        .collect();
    for s in stored {
        let points = s
            .points
            .iter()
            .map(|(at, b)| MetricPointView {
                at: secs(*at),
                avg: unsigned(b.avg()),
                max: unsigned(b.max),
                samples: unsigned(b.n),
            })
            .collect();
        match series.iter_mut().find(|v| v.metric == s.metric) {
            Some(v) => v.points = points,
            None => series.push(MetricSeriesView {
                metric: s.metric,
                kind: None,
                label: String::new(),
                points,
            }),
        }
    }
    Ok(DeviceMetricsView {
        device_id: device.id,
        hostname: device.hostname,
        tenant: device.tenant_name,
        from: r.from,
        to: r.to,
        tier: tier_view(r.tier),
        bucket_secs: bucket_secs(r.tier),
        series,
    })
}

/// A device's metrics history: the policy's numeric checks (cpu, memory,
/// disk per mount, load, tcp-port latency), averages and maxima per bucket.
#[utoipa::path(get, path = "/api/v1/devices/{id}/metrics", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)"), MetricsQuery),
    responses((status = 200, body = DeviceMetricsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_metrics(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    q: Result<Query<MetricsQuery>, QueryRejection>,
) -> Result<Json<DeviceMetricsView>, ApiError> {
    let q = super::log::query(q)?;
    Ok(Json(device_metrics_view(&state, &caller, &id, &q).await?))
}

pub async fn tenant_metrics_view(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    q: &MetricsQuery,
) -> Result<TenantMetricsView, ApiError> {
    let tenant = super::tenants::tenant_for(state, caller, tenant, Action::ViewDevices).await?;
    let metric = metric_name(q.metric.as_deref())?
        .ok_or_else(|| ApiError::bad_request("`metric` is required for a tenant"))?;
    let r = range(q.from, q.to, now_secs())?;
    // Raw samples of different devices fall in different 10 s slots:
    // they are grouped by the minute.
    let group = if r.tier == 0 { 60_000 } else { TIERS[r.tier].0 };
    let points = state
        .store
        .tenant_metric_series(
            &caller.scope(),
            &tenant.id,
            metric,
            r.tier,
            group,
            ms(r.from),
            ms(r.to),
        )
        .await?;
    let kind = tenant_metrics(&state.store, &tenant.id)
        .await
        .into_iter()
        .find(|d| d.name == metric)
        .map(|d| kind_view(d.kind));
    Ok(TenantMetricsView {
        tenant: tenant.name,
        metric: metric.to_owned(),
        kind,
        from: r.from,
        to: r.to,
        tier: tier_view(r.tier),
        bucket_secs: secs(group),
        points: points
            .iter()
            .map(|p| TenantMetricPointView {
                at: secs(p.at),
                avg: unsigned(p.bucket.avg()),
                max: unsigned(p.bucket.max),
                devices: unsigned(p.devices),
            })
            .collect(),
    })
}

/// One metric (a check of the tenant's policy) over all the tenant's
/// devices: the average of every sample and the largest, per bucket.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/metrics", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant name"), TenantMetricsQuery),
    responses((status = 200, body = TenantMetricsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_metrics_route(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    q: Result<Query<TenantMetricsQuery>, QueryRejection>,
) -> Result<Json<TenantMetricsView>, ApiError> {
    let q = MetricsQuery::from(super::log::query(q)?);
    Ok(Json(
        tenant_metrics_view(&state, &caller, &tenant, &q).await?,
    ))
}

pub async fn dashboard_view(state: &AppState, caller: &Caller) -> Result<DashboardView, ApiError> {
    caller.require(Action::ListTenants)?;
    let rows = state.store.dashboard_counts(&caller.scope()).await?;
    Ok(DashboardView {
        tenants: rows
            .into_iter()
            .map(|r| DashboardRowView {
                online: u64::try_from(state.presence.online_in_tenant(&r.tenant_id))
                    .unwrap_or_default(),
                tenant: r.name,
                devices: unsigned(r.devices),
                alerts: AlertCountView {
                    critical: unsigned(r.alerts[0]),
                    warning: unsigned(r.alerts[1]),
                    info: unsigned(r.alerts[2]),
                },
                failing_checks: unsigned(r.failing_checks),
            })
            .collect(),
    })
}

/// Counts across the tenants the caller may see: devices, online, open
/// alerts by severity, failing checks; one row per tenant, by name.
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "tenants",
    responses((status = 200, body = DashboardView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<DashboardView>, ApiError> {
    Ok(Json(dashboard_view(&state, &caller).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn the_tier_follows_the_range_and_bad_ranges_are_refused() {
        let r = |from, to| range(from, to, NOW).map(|r| r.tier);
        assert_eq!(r(Some(NOW - 3600), None).expect("test value"), 0);
        assert_eq!(r(None, None).expect("test value"), 1); // the default: 24 h
        assert_eq!(r(Some(NOW - 30 * 86_400), None).expect("test value"), 1);
        assert_eq!(r(Some(NOW - 90 * 86_400), None).expect("test value"), 2);
        // An hour three days ago: raw rows are rolled up by then.
        assert_eq!(
            r(Some(NOW - 3 * 86_400), Some(NOW - 3 * 86_400 + 3600)).expect("test value"),
            1
        );
        for (from, to) in [
            (Some(NOW), Some(NOW)),
            (Some(NOW), Some(NOW - 1)),
            (Some(0), Some(NOW)),
            (Some(NOW), Some(u64::MAX)),
            (Some(u64::MAX), None),
        ] {
            let e = range(from, to, NOW).expect_err("refused");
            assert_eq!(
                e.status,
                axum::http::StatusCode::BAD_REQUEST,
                "{from:?} {to:?}"
            );
        }
        assert!(metric_name(Some("cpu")).is_ok());
        for bad in ["", "CPU", "a b", "<x>", &"x".repeat(65)] {
            assert!(metric_name(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
