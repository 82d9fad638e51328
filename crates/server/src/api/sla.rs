//! A tenant's SLA (RFD 0008): its targets and business calendar, and the
//! attainment report computed from its alerts.
//!
//! Reading is for everyone who sees the tenant's alerts, the customer's
//! auditor included (`Action::ViewSla`); changing the targets is the
//! owners' (`Action::ManageSla`, privileged), recorded as `sla.changed` in
//! the tenant's log.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use bulwark_api::alerts::SeverityView;
use bulwark_api::error::ErrorBody;
use bulwark_api::sla::{
    BusinessHoursView, MAX_BREACHES_LISTED, MAX_HOLIDAYS, MAX_PATCH_DAYS, MAX_REPORT_DAYS,
    MAX_TARGET_MINUTES, MAX_UPTIME_TARGETS, SlaBreachView, SlaCompliancePointView, SlaDowntimeView,
    SlaOverdueDeviceView, SlaPatchView, SlaReport, SlaReportQuery, SlaSettingsView,
    SlaSeverityView, SlaTallyView, SlaTargetView, SlaUptimeView, SlaView, SlaWeekSeverityView,
    SlaWeekView, UptimeTargetView, WeekdayView,
};
use bulwark_store::{Severity, SeverityTargets, SlaSettings, Tenant, UptimeTarget};
use jiff::tz::TimeZone;

use super::ApiJson;
use super::ApiPath;
use super::error::ApiError;
use crate::alerts::business_time::{
    self, BusinessCalendar, CalendarError, DayHours, WeekHours, parse_date, parse_time,
};
use crate::alerts::patching;
use crate::alerts::sla::{self, Attainment, MINUTE, Tally};
use crate::alerts::uptime::{self, GroupUptime};
use crate::auth::{Action, Caller};
use crate::state::AppState;
use crate::{now_millis, rfc3339};

/// Most alerts one report reads.
const MAX_REPORT_ALERTS: u32 = 10_000;
/// Most devices, and most outages, one report's uptime reads.
const MAX_UPTIME_ROWS: u32 = 50_000;
const DAY_MS: i64 = 24 * 60 * MINUTE;
/// Time zone names: IANA names are ASCII letters, digits, `/`, `_`, `-`, `+`.
const MAX_ZONE_NAME: usize = 64;
/// Most overdue devices one report lists.
const MAX_OVERDUE_LISTED: usize = 100;

fn bad(error: CalendarError) -> ApiError {
    ApiError::bad_request(error.to_string())
}

fn severity_of(view: SeverityView) -> Severity {
    match view {
        SeverityView::Info => Severity::Info,
        SeverityView::Warning => Severity::Warning,
        SeverityView::Critical => Severity::Critical,
    }
}

fn severity_view(severity: Severity) -> SeverityView {
    match severity {
        Severity::Info => SeverityView::Info,
        Severity::Warning => SeverityView::Warning,
        Severity::Critical => SeverityView::Critical,
    }
}

/// The zone named `name` in this server's tzdb, or a 400 saying so.
pub fn time_zone(name: &str) -> Result<TimeZone, ApiError> {
    let unknown = || {
        ApiError::bad_request(format!(
            "{name:?} is not a known time zone: use an IANA name such as Europe/Berlin"
        ))
    };
    let plain = !name.is_empty()
        && name.len() <= MAX_ZONE_NAME
        && !name.starts_with('/')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
    if !plain {
        return Err(unknown());
    }
    TimeZone::get(name).map_err(|_| unknown())
}

/// Checks a request and makes it the stored settings and their calendar;
/// a 400 naming the first thing wrong, before anything is stored.
fn check(
    tenant_id: &str,
    req: &SlaSettingsView,
    actor: &str,
    now: i64,
) -> Result<SlaSettings, ApiError> {
    let zone = time_zone(req.time_zone.trim())?;
    if req.business_hours.is_empty() {
        return Err(bad(CalendarError::NoBusinessDay));
    }
    let mut week: WeekHours = [None; 7];
    for hours in &req.business_hours {
        let index = WeekdayView::ALL
            .iter()
            .position(|d| *d == hours.day)
            .unwrap_or_default();
        if week[index].is_some() {
            return Err(bad(CalendarError::Duplicate(hours.day.as_str().to_owned())));
        }
        week[index] = Some(DayHours {
            start: parse_time(&hours.start).map_err(bad)?,
            end: parse_time(&hours.end).map_err(bad)?,
        });
    }
    if req.holidays.len() > MAX_HOLIDAYS {
        return Err(bad(CalendarError::TooManyHolidays));
    }
    let mut holidays = Vec::with_capacity(req.holidays.len());
    for text in &req.holidays {
        let date = parse_date(text).map_err(bad)?;
        if holidays.contains(&date) {
            return Err(bad(CalendarError::Duplicate(text.clone())));
        }
        holidays.push(date);
    }
    holidays.sort();
    BusinessCalendar::new(zone, week, holidays.iter().copied()).map_err(bad)?;
    let mut targets = [None::<SeverityTargets>; 3];
    let minutes = |m: Option<u32>, what: &str| match m {
        None => Ok(None),
        Some(m) if (1..=MAX_TARGET_MINUTES).contains(&m) => Ok(Some(i64::from(m))),
        Some(_) => Err(ApiError::bad_request(format!(
            "{what} must be between 1 and {MAX_TARGET_MINUTES} business minutes"
        ))),
    };
    for target in &req.targets {
        let slot = &mut targets[sla::SEVERITIES
            .iter()
            .position(|s| *s == severity_of(target.severity))
            .unwrap_or_default()];
        let name = severity_of(target.severity).as_str();
        if slot.is_some() {
            return Err(ApiError::bad_request(format!(
                "the {name} targets are given twice"
            )));
        }
        *slot = Some(SeverityTargets {
            acknowledge_minutes: minutes(
                target.acknowledge_minutes,
                &format!("the {name} acknowledge target"),
            )?,
            resolve_minutes: minutes(
                target.resolve_minutes,
                &format!("the {name} resolve target"),
            )?,
        });
    }
    if let Some(days) = req.patch_critical_days
        && !(1..=MAX_PATCH_DAYS).contains(&days)
    {
        return Err(ApiError::bad_request(format!(
            "the patch target must be between 1 and {MAX_PATCH_DAYS} days"
        )));
    }
    let [critical, warning, info] = targets.map(Option::unwrap_or_default);
    let uptime = uptime_targets(&req.uptime_targets)?;
    Ok(SlaSettings {
        tenant_id: tenant_id.to_owned(),
        time_zone: req.time_zone.trim().to_owned(),
        business_hours: business_time::encode_week(&week),
        holidays: holidays
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        critical,
        warning,
        info,
        patch_critical_days: req.patch_critical_days.map(i64::from),
        uptime,
        updated_by: actor.to_owned(),
        updated_at: now,
    })
}

/// Uptime targets as stored: a group name devices can carry, once each,
/// and a percent above 0 and at most 100 with at most two decimals.
fn uptime_targets(views: &[UptimeTargetView]) -> Result<Vec<UptimeTarget>, ApiError> {
    if views.len() > MAX_UPTIME_TARGETS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_UPTIME_TARGETS} uptime targets"
        )));
    }
    let mut targets: Vec<UptimeTarget> = Vec::with_capacity(views.len());
    for view in views {
        let group_name = bulwark_api::fleet::parse_group(&view.group)
            .map_err(|e| ApiError::bad_request(format!("uptime target: {e}")))?;
        let group_key = bulwark_api::fleet::group_key(&group_name);
        let hundredths = view.percent * 100.0;
        if !(view.percent > 0.0 && view.percent <= 100.0)
            || (hundredths - hundredths.round()).abs() > 1e-6
        {
            return Err(ApiError::bad_request(format!(
                "the uptime target of {group_name} must be a percent above 0 and at most 100, \
                 with at most two decimals"
            )));
        }
        if targets.iter().any(|t| t.group_key == group_key) {
            return Err(ApiError::bad_request(format!(
                "the group {group_name} has two uptime targets"
            )));
        }
        targets.push(UptimeTarget {
            group_name,
            group_key,
            // In (0, 10000] by the check above.
            basis_points: hundredths.round() as i64,
        });
    }
    targets.sort_by(|a, b| a.group_key.cmp(&b.group_key));
    Ok(targets)
}

fn percent_of(basis_points: i64) -> f64 {
    basis_points as f64 / 100.0
}

/// A tenant without an SLA: UTC, Monday to Friday 09:00-17:00, no targets.
fn defaults(tenant_id: &str) -> SlaSettings {
    SlaSettings {
        tenant_id: tenant_id.to_owned(),
        time_zone: "UTC".to_owned(),
        business_hours: "mon 09:00-17:00,tue 09:00-17:00,wed 09:00-17:00,thu 09:00-17:00,\
                         fri 09:00-17:00"
            .to_owned(),
        holidays: String::new(),
        critical: SeverityTargets::default(),
        warning: SeverityTargets::default(),
        info: SeverityTargets::default(),
        patch_critical_days: None,
        uptime: Vec::new(),
        updated_by: String::new(),
        updated_at: 0,
    }
}

/// The calendar of stored settings. They were checked when stored; a zone
/// the server's tzdb no longer knows is the server's problem (500).
pub fn calendar_of(settings: &SlaSettings) -> Result<BusinessCalendar, ApiError> {
    let zone = TimeZone::get(&settings.time_zone).map_err(|e| {
        ApiError::internal(format!(
            "the SLA time zone {:?} is not in this server's tzdb: {e}",
            settings.time_zone
        ))
    })?;
    let week = business_time::decode_week(&settings.business_hours).map_err(ApiError::internal)?;
    let holidays = settings
        .holidays
        .split(',')
        .filter(|h| !h.is_empty())
        .map(parse_date)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    BusinessCalendar::new(zone, week, holidays).map_err(ApiError::internal)
}

fn to_u32(m: Option<i64>) -> Option<u32> {
    m.and_then(|m| u32::try_from(m).ok())
}

fn settings_view(settings: &SlaSettings) -> Result<SlaSettingsView, ApiError> {
    let week = business_time::decode_week(&settings.business_hours).map_err(ApiError::internal)?;
    let business_hours = week
        .iter()
        .zip(WeekdayView::ALL)
        .filter_map(|(hours, day)| {
            hours.map(|h| BusinessHoursView {
                day,
                start: business_time::format_time(h.start),
                end: business_time::format_time(h.end),
            })
        })
        .collect();
    let targets = sla::SEVERITIES
        .iter()
        .filter_map(|&severity| {
            let t = settings.targets(severity);
            (t != SeverityTargets::default()).then(|| SlaTargetView {
                severity: severity_view(severity),
                acknowledge_minutes: to_u32(t.acknowledge_minutes),
                resolve_minutes: to_u32(t.resolve_minutes),
            })
        })
        .collect();
    Ok(SlaSettingsView {
        time_zone: settings.time_zone.clone(),
        business_hours,
        holidays: settings
            .holidays
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        targets,
        patch_critical_days: to_u32(settings.patch_critical_days),
        uptime_targets: settings
            .uptime
            .iter()
            .map(|u| UptimeTargetView {
                group: u.group_name.clone(),
                percent: percent_of(u.basis_points),
            })
            .collect(),
    })
}

/// The stored settings of a tenant found in scope, or its defaults.
async fn settings_of(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
) -> Result<(bool, SlaSettings), ApiError> {
    Ok(
        match state
            .store
            .sla_settings(&caller.scope(), &tenant.id)
            .await?
        {
            Some(settings) => (true, settings),
            None => (false, defaults(&tenant.id)),
        },
    )
}

/// A tenant's SLA (for the console too).
pub async fn sla_view(
    state: &AppState,
    caller: &Caller,
    tenant_name: &str,
) -> Result<SlaView, ApiError> {
    let tenant = super::tenants::tenant_for(state, caller, tenant_name, Action::ViewSla).await?;
    let (configured, settings) = settings_of(state, caller, &tenant).await?;
    Ok(SlaView {
        tenant: tenant.name,
        configured,
        settings: settings_view(&settings)?,
        updated_by: configured.then(|| settings.updated_by.clone()),
        updated_at: configured.then(|| rfc3339(settings.updated_at)),
    })
}

/// A tenant's SLA targets and business calendar (defaults when none is set).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/sla", tag = "alerts",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = SlaView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_sla(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<SlaView>, ApiError> {
    Ok(Json(sla_view(&state, &caller, &tenant).await?))
}

/// Sets a tenant's SLA targets and business calendar, replacing what was
/// there; recorded as `sla.changed` in the tenant's log. Owners only, with
/// a fresh MFA check. A bad zone, time, date or target is a 400 and
/// changes nothing.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/sla", tag = "alerts",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = SlaSettingsView,
    responses((status = 200, body = SlaView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn put_sla(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<SlaSettingsView>,
) -> Result<Json<SlaView>, ApiError> {
    let tenant = super::tenants::tenant_for(&state, &caller, &tenant, Action::ManageSla).await?;
    let settings = check(&tenant.id, &req, &caller.operator.username, now_millis())?;
    state.store.set_sla_settings(&settings).await?;
    Ok(Json(sla_view(&state, &caller, &tenant.name).await?))
}

fn tally_view(tally: Tally) -> SlaTallyView {
    SlaTallyView {
        met: tally.met,
        breached: tally.breached,
        pending: tally.pending,
        attainment_percent: tally.percent(),
    }
}

fn report_view(
    (tenant, configured): (String, bool),
    settings: &SlaSettings,
    days: u32,
    (from, to): (i64, i64),
    (attainment, alerts_truncated): (Attainment, bool),
    (groups, uptime_truncated): (Vec<GroupUptime>, bool),
    patch_critical: SlaPatchView,
) -> SlaReport {
    let breaches_total = u32::try_from(attainment.breaches.len()).unwrap_or(u32::MAX);
    SlaReport {
        tenant,
        configured,
        time_zone: settings.time_zone.clone(),
        days,
        from: rfc3339(from),
        to: rfc3339(to),
        severities: attainment
            .severities
            .iter()
            .map(|s| SlaSeverityView {
                severity: s.severity.as_str().to_owned(),
                acknowledge_target_minutes: to_u32(s.targets.acknowledge_minutes),
                resolve_target_minutes: to_u32(s.targets.resolve_minutes),
                alerts: s.alerts,
                acknowledge: tally_view(s.acknowledge),
                resolve: tally_view(s.resolve),
            })
            .collect(),
        weeks: attainment
            .weeks
            .iter()
            .map(|w| SlaWeekView {
                start: w.start.to_string(),
                severities: sla::SEVERITIES
                    .iter()
                    .zip(w.severities)
                    .map(|(s, t)| SlaWeekSeverityView {
                        severity: s.as_str().to_owned(),
                        met: t.met,
                        breached: t.breached,
                        pending: t.pending,
                        attainment_percent: t.percent(),
                    })
                    .collect(),
            })
            .collect(),
        breaches: attainment
            .breaches
            .into_iter()
            .take(MAX_BREACHES_LISTED)
            .map(|b| SlaBreachView {
                alert_id: b.alert_id,
                kind: b.kind,
                summary: b.summary,
                severity: b.severity.as_str().to_owned(),
                opened_at: rfc3339(b.opened_at),
                measure: b.measure.as_str().to_owned(),
                taken_minutes: u64::try_from(b.taken / MINUTE).unwrap_or_default(),
                target_minutes: u32::try_from(b.target_minutes).unwrap_or(u32::MAX),
                open: b.open,
            })
            .collect(),
        breaches_total,
        alerts_truncated,
        patch_critical,
        uptime: groups.into_iter().map(uptime_view).collect(),
        uptime_truncated,
    }
}

/// The patch SLA over `[from, now]`: compliance now and at each day's end,
/// and the devices overdue now.
async fn patch_view(
    state: &AppState,
    caller: &Caller,
    tenant_id: &str,
    settings: &SlaSettings,
    from: i64,
    now: i64,
) -> Result<SlaPatchView, ApiError> {
    let target_days = to_u32(settings.patch_critical_days);
    let Some(days) = settings.patch_critical_days else {
        return Ok(SlaPatchView {
            target_days: None,
            measured: false,
            note: "no patch target set".to_owned(),
            devices: 0,
            compliant: 0,
            compliance_percent: None,
            overdue: Vec::new(),
            days: Vec::new(),
        });
    };
    let grace = days.saturating_mul(patching::DAY);
    let (watched, spans) = state
        .store
        .patch_compliance_inputs(&caller.scope(), tenant_id, from, MAX_UPTIME_ROWS)
        .await?;
    let current = patching::compliance_at(&watched, &spans, grace, now);
    let overdue = patching::overdue_devices(&watched, &spans, grace, now)
        .into_iter()
        .take(MAX_OVERDUE_LISTED)
        .map(|d| SlaOverdueDeviceView {
            device_id: d.device_id,
            hostname: d.hostname,
            pending_since: rfc3339(d.oldest),
            overdue_updates: d.overdue_count,
            packages: d.packages,
        })
        .collect();
    let days_view = patching::daily(&watched, &spans, grace, from, now)
        .into_iter()
        .map(|(at, c)| SlaCompliancePointView {
            at: rfc3339(at),
            devices: c.measured,
            compliant: c.compliant,
            compliance_percent: c.percent(),
        })
        .collect();
    Ok(SlaPatchView {
        target_days,
        measured: current.measured > 0,
        note: if current.measured > 0 {
            format!(
                "devices with no security update pending more than {days} days, from the \
                 agents' own simulated upgrades"
            )
        } else {
            "no device has reported its pending updates yet".to_owned()
        },
        devices: current.measured,
        compliant: current.compliant,
        compliance_percent: current.percent(),
        overdue,
        days: days_view,
    })
}

fn minutes_of(ms: i64) -> u64 {
    u64::try_from(ms / MINUTE).unwrap_or_default()
}

fn uptime_view(g: GroupUptime) -> SlaUptimeView {
    SlaUptimeView {
        target_percent: percent_of(g.basis_points),
        devices: g.devices,
        uptime_percent: g.percent(),
        met: g.met(),
        downtime_minutes: minutes_of(g.down_ms),
        most_down: g
            .most_down
            .into_iter()
            .map(|d| SlaDowntimeView {
                device_id: d.device_id,
                hostname: d.hostname,
                downtime_minutes: minutes_of(d.down_ms),
                outages: d.outages,
            })
            .collect(),
        group: g.group_name,
    }
}

/// A tenant's SLA report over the last `days` days (for the console too).
pub async fn sla_report(
    state: &AppState,
    caller: &Caller,
    tenant_name: &str,
    days: Option<u32>,
) -> Result<SlaReport, ApiError> {
    let days = days.unwrap_or(30);
    if !(1..=MAX_REPORT_DAYS).contains(&days) {
        return Err(ApiError::bad_request(format!(
            "days must be between 1 and {MAX_REPORT_DAYS}"
        )));
    }
    let tenant = super::tenants::tenant_for(state, caller, tenant_name, Action::ViewSla).await?;
    let (configured, settings) = settings_of(state, caller, &tenant).await?;
    let calendar = calendar_of(&settings)?;
    let now = now_millis();
    let from = now - i64::from(days) * DAY_MS;
    let alerts = state
        .store
        .sla_alerts(
            &caller.scope(),
            &tenant.id,
            from,
            now.saturating_add(1),
            MAX_REPORT_ALERTS,
        )
        .await?;
    let truncated = alerts.len() >= MAX_REPORT_ALERTS as usize;
    let (devices, outages) = state
        .store
        .sla_uptime_inputs(
            &caller.scope(),
            &tenant.id,
            from,
            now.saturating_add(1),
            MAX_UPTIME_ROWS,
        )
        .await?;
    let uptime_truncated =
        devices.len() >= MAX_UPTIME_ROWS as usize || outages.len() >= MAX_UPTIME_ROWS as usize;
    let groups = uptime::uptime(&settings.uptime, &devices, &outages, from, now);
    let patch = patch_view(state, caller, &tenant.id, &settings, from, now).await?;
    // Pure and linear in alerts x days: off the async workers.
    let targets = settings.clone();
    let attainment = tokio::task::spawn_blocking(move || {
        sla::attainment(&calendar, |s| targets.targets(s), &alerts, from, now)
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(report_view(
        (tenant.name, configured),
        &settings,
        days,
        (from, now),
        (attainment, truncated),
        (groups, uptime_truncated),
        patch,
    ))
}

/// How a tenant's alerts did against its SLA over the last `days` days
/// (default 30): per severity, per local week, and every breach. Computed
/// by the server from its alert rows.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/sla/report", tag = "alerts",
    params(("tenant" = String, Path, description = "Tenant name"), SlaReportQuery),
    responses((status = 200, body = SlaReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_sla_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    q: Result<Query<SlaReportQuery>, QueryRejection>,
) -> Result<Json<SlaReport>, ApiError> {
    let q = super::log::query(q)?;
    Ok(Json(sla_report(&state, &caller, &tenant, q.days).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SlaSettingsView {
        SlaSettingsView {
            time_zone: "Europe/Berlin".to_owned(),
            business_hours: vec![BusinessHoursView {
                day: WeekdayView::Mon,
                start: "09:00".to_owned(),
                end: "17:00".to_owned(),
            }],
            holidays: vec!["2026-12-25".to_owned()],
            targets: vec![SlaTargetView {
                severity: SeverityView::Critical,
                acknowledge_minutes: Some(30),
                resolve_minutes: Some(240),
            }],
            patch_critical_days: Some(14),
            uptime_targets: vec![
                UptimeTargetView {
                    group: "Branch Offices".to_owned(),
                    percent: 99.5,
                },
                UptimeTargetView {
                    group: "Servers".to_owned(),
                    percent: 99.95,
                },
            ],
        }
    }

    fn refused(change: impl Fn(&mut SlaSettingsView)) -> String {
        let mut req = request();
        change(&mut req);
        let error = check("t", &req, "olivia", 0).expect_err("refused");
        serde_json::to_string(
            &axum::response::IntoResponse::into_response(error)
                .status()
                .as_u16(),
        )
        .unwrap_or_default()
    }

    #[test]
    fn a_good_request_round_trips() {
        let settings = check("t", &request(), "olivia", 0).expect("accepted");
        assert_eq!(settings.business_hours, "mon 09:00-17:00");
        assert_eq!(settings.critical.acknowledge_minutes, Some(30));
        let bp: Vec<i64> = settings.uptime.iter().map(|u| u.basis_points).collect();
        assert_eq!(bp, [9_950, 9_995]);
        assert_eq!(settings.uptime[1].group_key, "servers");
        assert_eq!(settings_view(&settings).expect("view"), request());
        calendar_of(&settings).expect("calendar");
    }

    #[test]
    fn bad_requests_are_400s() {
        for change in [
            (|r: &mut SlaSettingsView| r.time_zone = "Mars/Olympus".to_owned())
                as fn(&mut SlaSettingsView),
            |r| r.time_zone = "../../etc/passwd".to_owned(),
            |r| r.time_zone = "/usr/share/zoneinfo/UTC".to_owned(),
            |r| r.business_hours.clear(),
            |r| r.business_hours[0].end = "08:00".to_owned(),
            |r| r.business_hours[0].start = "9am".to_owned(),
            |r| r.business_hours.push(r.business_hours[0].clone()),
            |r| r.holidays.push("2026-13-01".to_owned()),
            |r| r.holidays.push("2026-12-25".to_owned()),
            |r| {
                r.holidays = (0..201)
                    .map(|d| format!("2026-01-{:02}", 1 + d % 28))
                    .collect()
            },
            |r| r.targets[0].acknowledge_minutes = Some(0),
            |r| r.targets[0].resolve_minutes = Some(MAX_TARGET_MINUTES + 1),
            |r| r.targets.push(r.targets[0].clone()),
            |r| r.patch_critical_days = Some(0),
            |r| r.uptime_targets[0].percent = 0.0,
            |r| r.uptime_targets[0].percent = 100.01,
            |r| r.uptime_targets[0].percent = 99.999,
            |r| r.uptime_targets[0].percent = f64::NAN,
            |r| r.uptime_targets[0].group = " ".to_owned(),
            |r| r.uptime_targets[0].group = "x".repeat(65),
            |r| r.uptime_targets[1].group = "branch offices".to_owned(),
            |r| {
                r.uptime_targets = (0..=MAX_UPTIME_TARGETS)
                    .map(|n| UptimeTargetView {
                        group: format!("g{n}"),
                        percent: 99.0,
                    })
                    .collect()
            },
        ] {
            assert_eq!(refused(change), "400");
        }
    }
}
