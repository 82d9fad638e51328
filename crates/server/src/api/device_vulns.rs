//! Open vulnerabilities: a device's, and a tenant's ranked by what to
//! patch first (issue 17). Authorisation is the device's or tenant's own
//! (`ViewDevices`), found in the caller's scope first, so a foreign
//! device or tenant is the same 404 as everywhere else.

use super::ApiPath;
use super::error::ApiError;
use crate::auth::{Action, Caller};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use bulwark_api::error::ErrorBody;
use bulwark_api::vulndb::{
    DeviceVulnerabilitiesView, DeviceVulnerabilityView, MAX_VULNERABILITIES_LISTED,
    TenantVulnerabilitiesView, TenantVulnerabilityView, VulnerablePackageView,
};

fn score(tenths: Option<i64>) -> Option<f64> {
    // Tenths from 0 to 100: exact in f64.
    tenths.map(|t| t as f64 / 10.0)
}

async fn generation(state: &AppState) -> Result<Option<i64>, ApiError> {
    Ok(state.store.vulndb_status().await?.current.map(|g| g.id))
}

pub async fn device_vulnerabilities_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<DeviceVulnerabilitiesView, ApiError> {
    let device = super::devices::visible_device(state, caller, id).await?;
    let generation = generation(state).await?;
    let found = state
        .store
        .device_vulnerabilities(&caller.scope(), &device.id, MAX_VULNERABILITIES_LISTED)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(DeviceVulnerabilitiesView {
        device_id: device.id,
        hostname: device.hostname,
        ecosystem: found.ecosystem,
        generation,
        total: found.total,
        truncated: found.truncated,
        vulnerabilities: found
            .vulnerabilities
            .into_iter()
            .map(|v| DeviceVulnerabilityView {
                advisory: v.advisory_id,
                aliases: v.aliases,
                summary: v.summary,
                score: score(v.score_tenths),
                rating: v.rating,
                vector: v.vector,
                packages: v
                    .packages
                    .into_iter()
                    .map(|p| VulnerablePackageView {
                        package: p.package,
                        installed: p.installed,
                        fixed: p.fixed,
                        pending: p.pending,
                    })
                    .collect(),
                fixed_by_pending_update: v.fixed_by_pending_update,
            })
            .collect(),
    })
}

/// A device's open advisories, highest score first: its reported packages
/// (by source package and version) matched against the current database
/// for the release its agent reported. Package texts are the agent's.
#[utoipa::path(get, path = "/api/v1/devices/{id}/vulnerabilities", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)")),
    responses((status = 200, body = DeviceVulnerabilitiesView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_vulnerabilities(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeviceVulnerabilitiesView>, ApiError> {
    Ok(Json(
        device_vulnerabilities_view(&state, &caller, &id).await?,
    ))
}

/// What to patch first across a tenant's devices: each open advisory with
/// how many devices it affects and its highest score, by score then count.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/vulnerabilities", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = TenantVulnerabilitiesView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_vulnerabilities(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<TenantVulnerabilitiesView>, ApiError> {
    let tenant = super::tenants::tenant_for(&state, &caller, &tenant, Action::ViewDevices).await?;
    let generation = generation(&state).await?;
    let found = state
        .store
        .tenant_vulnerabilities(&caller.scope(), &tenant.id, MAX_VULNERABILITIES_LISTED)
        .await?;
    Ok(Json(TenantVulnerabilitiesView {
        tenant: tenant.name,
        generation,
        devices: found.devices,
        unmatched_devices: found.unmatched_devices,
        total: found.total,
        truncated: found.truncated,
        vulnerabilities: found
            .vulnerabilities
            .into_iter()
            .map(|v| TenantVulnerabilityView {
                advisory: v.advisory_id,
                aliases: v.aliases,
                summary: v.summary,
                score: score(v.score_tenths),
                rating: v.rating,
                devices: v.devices,
                packages: v.packages,
            })
            .collect(),
    }))
}
