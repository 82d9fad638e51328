//! Alerts and their channels (RFD 0007): list, acknowledge, resolve; add
//! and remove where a tenant's alerts go.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bulwark_api::alerts::{
    AlertQuery, AlertStateFilter, AlertView, ChannelHoursView, ChannelKindView, ChannelRequest,
    ChannelView, NotificationView, SeverityView,
};
use bulwark_api::error::ErrorBody;
use bulwark_store::{
    Alert, AlertState, ChannelHours, ChannelKind, NewChannel, NotificationChannel, Severity,
};

use super::ApiJson;
use super::ApiPath;
use super::error::ApiError;
use crate::auth::{Action, Caller};
use crate::state::AppState;
use crate::{now_millis, rfc3339};

/// Most alerts one list returns.
const MAX_LIST: u32 = 1000;

fn view(alert: Alert) -> AlertView {
    AlertView {
        id: alert.id,
        tenant: alert.tenant_name,
        device_id: alert.device_id,
        kind: alert.kind,
        severity: alert.severity.as_str().to_owned(),
        summary: alert.summary,
        detail: alert.detail,
        state: alert.state.as_str().to_owned(),
        opened_at: rfc3339(alert.opened_at),
        last_seen_at: rfc3339(alert.last_seen_at),
        occurrences: alert.occurrences,
        acknowledged_by: alert.acknowledged_by,
        acknowledged_at: alert.acknowledged_at.map(rfc3339),
        resolved_by: alert.resolved_by,
        resolved_at: alert.resolved_at.map(rfc3339),
        log_id: alert.log_id,
        log_idx: alert.log_idx,
        silenced: alert.silenced,
        notifications: Vec::new(),
    }
}

fn channel_view(channel: NotificationChannel, tenant: Option<String>) -> ChannelView {
    ChannelView {
        id: channel.id,
        tenant,
        kind: channel.kind.as_str().to_owned(),
        target: channel.target,
        min_severity: channel.min_severity.as_str().to_owned(),
        created_by: channel.created_by,
        created_at: rfc3339(channel.created_at),
        escalate_after_secs: channel
            .escalate_after_ms
            .and_then(|ms| u64::try_from(ms / 1000).ok()),
        routing_key_hint: channel.routing_key.as_deref().map(routing_key_hint),
        hours: channel.hours.as_str().to_owned(),
    }
}

/// `…a1b2`: enough to tell two integrations apart, not to use one.
fn routing_key_hint(key: &str) -> String {
    if key.chars().count() <= 12 {
        return "…".to_owned();
    }
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// The alerts the caller may see, newest first (for the console too).
pub async fn alert_views(
    state: &AppState,
    caller: &Caller,
    q: &AlertQuery,
) -> Result<Vec<AlertView>, ApiError> {
    caller.require(Action::ViewAlerts)?;
    let tenant_id = match &q.tenant {
        Some(name) => Some(
            super::tenants::tenant_for(state, caller, name, Action::ViewAlerts)
                .await?
                .id,
        ),
        None => None,
    };
    let (state_filter, unresolved) = match q.state {
        None => (None, false),
        Some(AlertStateFilter::Unresolved) => (None, true),
        Some(AlertStateFilter::Open) => (Some(AlertState::Open), false),
        Some(AlertStateFilter::Acknowledged) => (Some(AlertState::Acknowledged), false),
        Some(AlertStateFilter::Resolved) => (Some(AlertState::Resolved), false),
    };
    let limit = q.limit.unwrap_or(200);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIST}"
        )));
    }
    let alerts = state
        .store
        .alerts(&caller.scope(), tenant_id.as_deref(), state_filter, limit)
        .await?;
    Ok(alerts
        .into_iter()
        .filter(|a| !unresolved || a.state != AlertState::Resolved)
        .map(view)
        .collect())
}

/// Alerts of the caller's tenants (MSP-wide ones for owners), newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = [AlertView]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    let q = super::log::query(q)?;
    Ok(Json(alert_views(&state, &caller, &q).await?))
}

/// The alert `id` inside the caller's scope, and the action checked on
/// its tenant (an MSP-wide alert: owners only).
async fn alert_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<Alert, ApiError> {
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(ApiError::not_found("alert"));
    }
    let alert = state
        .store
        .alert(&caller.scope(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("alert"))?;
    match &alert.tenant_id {
        Some(tenant) => caller.require_in(action, tenant)?,
        None => caller.require(action)?,
    }
    Ok(alert)
}

/// One alert, with where it was sent.
pub async fn alert_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<AlertView, ApiError> {
    let alert = alert_for(state, caller, id, Action::ViewAlerts).await?;
    let notifications = state.store.alert_notifications(&alert.id).await?;
    let mut view = view(alert);
    view.notifications = notifications
        .into_iter()
        .map(
            |(channel, target, state, attempts, last_error)| NotificationView {
                channel,
                target,
                state,
                attempts,
                last_error,
            },
        )
        .collect();
    Ok(view)
}

/// One alert, with where it was sent.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Alert id (UUID)")),
    responses((status = 200, body = AlertView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_alert(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlertView>, ApiError> {
    Ok(Json(alert_view(&state, &caller, &id).await?))
}

/// Moves an alert on (acknowledged or resolved), as the caller.
pub async fn handle_alert(
    state: &AppState,
    caller: &Caller,
    id: &str,
    to: AlertState,
) -> Result<AlertView, ApiError> {
    let alert = alert_for(state, caller, id, Action::HandleAlerts).await?;
    let alert = state
        .store
        .set_alert_state(
            &caller.scope(),
            &alert.id,
            to,
            &caller.operator.username,
            now_millis(),
        )
        .await?;
    Ok(view(alert))
}

/// Acknowledges an open alert: someone is on it.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = String, Path, description = "Alert id (UUID)")),
    responses((status = 200, body = AlertView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn acknowledge_alert(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlertView>, ApiError> {
    Ok(Json(
        handle_alert(&state, &caller, &id, AlertState::Acknowledged).await?,
    ))
}

/// Resolves an alert: the same source raises a new one from now on.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts",
    params(("id" = String, Path, description = "Alert id (UUID)")),
    responses((status = 200, body = AlertView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn resolve_alert(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AlertView>, ApiError> {
    Ok(Json(
        handle_alert(&state, &caller, &id, AlertState::Resolved).await?,
    ))
}

/// The action a channel of `kind` needs: anyone who may hear of a
/// tenant's alerts by e-mail may add an address; webhooks (the server
/// posting to a URL someone chose) are for the MSP's administrators.
fn channel_action(kind: ChannelKind) -> Action {
    match kind {
        ChannelKind::Email => Action::ManageAlertEmail,
        ChannelKind::Webhook | ChannelKind::PagerDuty => Action::ManageAlertChannels,
    }
}

/// A target the server will send to: an e-mail address, or an `https://`
/// URL (`http://` only to a loopback address, e.g. a local bridge).
fn check_target(kind: ChannelKind, target: &str) -> Result<(), ApiError> {
    if target.is_empty() || target.len() > bulwark_store::MAX_CHANNEL_TARGET {
        return Err(ApiError::bad_request(format!(
            "target must be 1 to {} bytes",
            bulwark_store::MAX_CHANNEL_TARGET
        )));
    }
    match kind {
        ChannelKind::Email => {
            target.parse::<lettre::Address>().map_err(|e| {
                ApiError::bad_request(format!("{target:?} is not an e-mail address: {e}"))
            })?;
        }
        ChannelKind::Webhook | ChannelKind::PagerDuty => {
            let url = reqwest::Url::parse(target)
                .map_err(|e| ApiError::bad_request(format!("{target:?} is not a URL: {e}")))?;
            let host = url.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            let ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
            if !ok || url.host().is_none() {
                return Err(ApiError::bad_request(
                    "a webhook URL is https:// (http:// only to a loopback address)",
                ));
            }
        }
    }
    Ok(())
}

/// A PagerDuty channel's routing key: required there, refused elsewhere;
/// printable ASCII without spaces (PagerDuty's are 32 characters).
fn check_routing_key(kind: ChannelKind, key: Option<&str>) -> Result<Option<String>, ApiError> {
    match (kind, key.map(str::trim)) {
        (ChannelKind::PagerDuty, Some(key))
            if (1..=bulwark_store::MAX_ROUTING_KEY).contains(&key.len())
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_owned()))
        }
        (ChannelKind::PagerDuty, _) => Err(ApiError::bad_request(format!(
            "routing_key: the PagerDuty integration's key, 1 to {} printable characters",
            bulwark_store::MAX_ROUTING_KEY
        ))),
        (_, None) => Ok(None),
        (_, Some(_)) => Err(ApiError::bad_request(
            "routing_key is for pagerduty channels only",
        )),
    }
}

/// Where a tenant's alerts go.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/alert-channels", tag = "alerts",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [ChannelView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_channels(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    let tenant = super::tenants::tenant_for(&state, &caller, &tenant, Action::ViewAlerts).await?;
    let channels = state
        .store
        .notification_channels(&caller.scope(), Some(&tenant.id))
        .await?;
    Ok(Json(
        channels
            .into_iter()
            .map(|c| channel_view(c, Some(tenant.name.clone())))
            .collect(),
    ))
}

/// Sends a tenant's alerts, from a severity on, to an e-mail address or a webhook.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/alert-channels", tag = "alerts",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = ChannelRequest,
    responses((status = 201, body = ChannelView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn add_channel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<ChannelRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let kind = match req.kind {
        ChannelKindView::Email => ChannelKind::Email,
        ChannelKindView::Webhook => ChannelKind::Webhook,
        ChannelKindView::Pagerduty => ChannelKind::PagerDuty,
    };
    let tenant = super::tenants::tenant_for(&state, &caller, &tenant, channel_action(kind)).await?;
    let min_severity = match req.min_severity {
        None | Some(SeverityView::Warning) => Severity::Warning,
        Some(SeverityView::Info) => Severity::Info,
        Some(SeverityView::Critical) => Severity::Critical,
    };
    let target = req.target.trim().to_owned();
    check_target(kind, &target)?;
    let routing_key = check_routing_key(kind, req.routing_key.as_deref())?;
    let hours = match req.hours {
        None | Some(ChannelHoursView::Always) => ChannelHours::Always,
        Some(ChannelHoursView::Business) => ChannelHours::Business,
        Some(ChannelHoursView::After) => ChannelHours::After,
    };
    // Hours without a calendar would mean nothing: say so now rather
    // than tell the channel always.
    if hours != ChannelHours::Always
        && state
            .store
            .sla_settings(&caller.scope(), &tenant.id)
            .await?
            .is_none()
    {
        return Err(ApiError::bad_request(format!(
            "hours {:?} needs tenant {}'s business hours: set them first (bulwark sla set)",
            hours.as_str(),
            tenant.name
        )));
    }
    let escalate_after_ms = match req.escalate_after_secs {
        None => None,
        Some(secs @ 1..=604_800) => Some(i64::try_from(secs * 1000).unwrap_or(i64::MAX)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "escalate_after_secs: 1 to 604800 (7 days)",
            ));
        }
    };
    let channel = state
        .store
        .add_notification_channel(
            &NewChannel {
                tenant_id: Some(tenant.id.clone()),
                kind,
                target,
                min_severity,
                created_by: caller.operator.username.clone(),
                escalate_after_ms,
                routing_key,
                hours,
            },
            now_millis(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(channel_view(channel, Some(tenant.name))),
    ))
}

/// Stops sending alerts to a channel (its unsent notifications are dropped).
#[utoipa::path(delete, path = "/api/v1/alert-channels/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Channel id (UUID)")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn remove_channel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(ApiError::not_found("alert channel"));
    }
    let channel = state
        .store
        .notification_channel(&caller.scope(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("alert channel"))?;
    let action = channel_action(channel.kind);
    match &channel.tenant_id {
        Some(tenant) => caller.require_in(action, tenant)?,
        None => caller.require(action)?,
    }
    state
        .store
        .remove_notification_channel(&channel, &caller.operator.username, now_millis())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
