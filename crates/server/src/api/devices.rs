//! Devices: listing a tenant's, one with its inventory and the trust it
//! reported, and the live presence stream (server-sent events).

use super::ApiPath;
use super::error::ApiError;
use crate::auth::{Action, Caller};
use crate::state::AppState;
use axum::Json;
use axum::extract::Query;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use bulwark_api::devices::{DevicePackagesView, DeviceView, MAX_PACKAGES_LISTED, PackagesQuery};
use bulwark_api::error::ErrorBody;
use futures_util::Stream;
use std::convert::Infallible;

pub async fn device_views(
    state: &AppState,
    caller: &Caller,
    tenant_name: &str,
) -> Result<Vec<DeviceView>, ApiError> {
    let scope = caller.scope();
    let tenant =
        super::tenants::tenant_for(state, caller, tenant_name, Action::ViewDevices).await?;
    let devices = state.store.list_devices(&scope, &tenant.id).await?;
    let labels = state.store.device_labels(&scope, Some(&tenant.id)).await?;
    Ok(devices
        .iter()
        .map(|d| {
            super::device_search::with_labels(
                crate::api::views::device(d, state.presence.protocol_version(&d.id), false),
                labels.get(&d.id),
            )
        })
        .collect())
}

/// Devices of a tenant with their online status.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/devices", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [DeviceView]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_devices(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    Ok(Json(device_views(&state, &caller, &tenant).await?))
}

/// The device with this id if the caller may view it: found in the
/// caller's scope (foreign or missing: the same 404), then
/// `require_in(ViewDevices)`. Every per-device read starts here.
pub async fn visible_device(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<bulwark_store::Device, ApiError> {
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(ApiError::not_found("device"));
    }
    let device = state
        .store
        .device(&caller.scope(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    caller.require_in(Action::ViewDevices, &device.tenant_id)?;
    Ok(device)
}

pub async fn device_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<DeviceView, ApiError> {
    let device = visible_device(state, caller, id).await?;
    let mut view =
        crate::api::views::device(&device, state.presence.protocol_version(&device.id), true);
    // Ports, administrators, services and processes are stored beside the
    // inventory (migration 0018): merged into its view here.
    let sections = state
        .store
        .device_inventory_sections(&caller.scope(), &device.id)
        .await?
        .unwrap_or_default();
    if !sections.is_empty() {
        let mut inventory = device.inventory.clone().unwrap_or_default();
        inventory.apply(sections);
        view.inventory = Some(crate::api::views::inventory(&inventory));
    }
    let labels = state
        .store
        .labels_of_device(&caller.scope(), &device.id)
        .await?;
    view = super::device_search::with_labels(view, Some(&labels));
    view.trust = state
        .store
        .device_trust(&caller.scope(), &device.id)
        .await?
        .map(crate::api::views::device_trust);
    view.package_count = state
        .store
        .device_packages(&caller.scope(), &device.id, "", 0)
        .await?
        .map(|(_, total)| total);
    Ok(view)
}

/// The installed packages of a device the caller may see: the device is
/// found in the caller's scope first (foreign or missing: the same 404),
/// then `require_in(ViewDevices)`, as for the device itself.
pub async fn packages_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
    name_contains: &str,
) -> Result<DevicePackagesView, ApiError> {
    if name_contains.len() > 256 {
        return Err(ApiError::bad_request("q: at most 256 bytes"));
    }
    let device = device_view(state, caller, id).await?;
    let (packages, total) = state
        .store
        .device_packages(
            &caller.scope(),
            &device.id,
            name_contains,
            MAX_PACKAGES_LISTED,
        )
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(DevicePackagesView {
        device_id: device.id,
        hostname: device.hostname,
        total,
        packages: packages
            .into_iter()
            .map(crate::api::views::package)
            .collect(),
    })
}

/// The software a device's agent reported installed (from its package
/// manager's database), by name; `q` filters by name. Texts are the agent's.
#[utoipa::path(get, path = "/api/v1/devices/{id}/packages", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)"), PackagesQuery),
    responses((status = 200, body = DevicePackagesView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_packages(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    q: Result<Query<PackagesQuery>, QueryRejection>,
) -> Result<Json<DevicePackagesView>, ApiError> {
    let Query(q) = q.map_err(|rejection| {
        ApiError::bad_request(format!("bad query: {}", rejection.body_text()))
    })?;
    let name_contains = q.q.unwrap_or_default();
    Ok(Json(
        packages_view(&state, &caller, &id, &name_contains).await?,
    ))
}

/// One device with its inventory.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)")),
    responses((status = 200, body = DeviceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_device(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(device_view(&state, &caller, &id).await?))
}

/// Live presence changes (server-sent events, `event: presence`) for the tenants the caller may
/// see, and for callers who may view alerts, the alert counts whenever they move (`event: alerts`:
/// open, acknowledged, unresolved critical, the latest change).
#[utoipa::path(get, path = "/api/v1/events", tag = "devices",
    responses((status = 200, description = "text/event-stream of presence and alert-count events", content_type = "text/event-stream"), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Action::WatchPresence)?;
    let visible = visible_tenants(&state, &caller).await?;
    let watch = Watch {
        events: state.presence.subscribe(),
        recheck: tokio::time::interval_at(
            tokio::time::Instant::now() + EVENTS_RECHECK,
            EVENTS_RECHECK,
        ),
        visible,
        alerts: caller.require(Action::ViewAlerts).is_ok().then(|| {
            (
                tokio::time::interval(ALERTS_POLL),
                bulwark_store::AlertPulse {
                    changed_at: -1,
                    ..Default::default()
                },
            )
        }),
        state,
        caller,
    };
    // Ends when the session or token is revoked or expires, or its operator
    // is disabled (checked every EVENTS_RECHECK); grants are re-read then too.
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        loop {
            tokio::select! {
                received = watch.events.recv() => match received {
                    Ok(event) if watch.visible.contains(&event.tenant) => {
                        if let Ok(event) = Event::default().event("presence").json_data(&event) {
                            return Some((Ok(event), watch));
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                // Read from the database, so an alert raised on any node shows.
                _ = tick_alerts(&mut watch.alerts) => {
                    let Ok(pulse) = watch.state.store.alert_pulse(&watch.caller.scope()).await else {
                        continue;
                    };
                    if let Some((_, last)) = &mut watch.alerts
                        && *last != pulse
                    {
                        *last = pulse;
                        let data = serde_json::json!({
                            "open": pulse.open,
                            "acknowledged": pulse.acknowledged,
                            "critical": pulse.critical,
                            "changed_at": (pulse.changed_at > 0).then(|| crate::rfc3339(pulse.changed_at)),
                        });
                        if let Ok(event) = Event::default().event("alerts").json_data(&data) {
                            return Some((Ok(event), watch));
                        }
                    }
                }
                _ = watch.recheck.tick() => {
                    if !matches!(watch.caller.still_valid(&watch.state.auth).await, Ok(true)) {
                        return None;
                    }
                    watch.visible = visible_tenants(&watch.state, &watch.caller).await.ok()?;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// How often a live event stream looks at the alerts (one indexed query).
const ALERTS_POLL: std::time::Duration = std::time::Duration::from_secs(3);

/// The next look at the alerts; never, for a caller who may not see them.
async fn tick_alerts(alerts: &mut Option<(tokio::time::Interval, bulwark_store::AlertPulse)>) {
    match alerts {
        Some((interval, _)) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// How often a live event stream re-checks its caller's credential and grants.
const EVENTS_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

struct Watch {
    events: tokio::sync::broadcast::Receiver<crate::presence::PresenceEvent>,
    recheck: tokio::time::Interval,
    visible: std::collections::HashSet<String>,
    /// For callers who may view alerts: when to look again, and what was sent last.
    alerts: Option<(tokio::time::Interval, bulwark_store::AlertPulse)>,
    state: AppState,
    caller: Caller,
}

pub async fn visible_tenants(
    state: &AppState,
    caller: &Caller,
) -> Result<std::collections::HashSet<String>, ApiError> {
    Ok(state
        .store
        .list_tenants(&caller.scope())
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect())
}
