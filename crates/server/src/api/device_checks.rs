//! The states of the policy's checks on a device (RFD 0009): the device's
//! own authorisation (`ViewDevices`), found in the caller's scope first, so
//! a foreign device is the same 404 as everywhere else.

use super::ApiPath;
use super::error::ApiError;
use crate::auth::Caller;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use bulwark_api::checks::{CheckStateView, CheckView, DeviceChecksView, ExpectedCheckView};
use bulwark_api::error::ErrorBody;
use bulwark_policy::groups::{DeviceIdentity, checks_for, groups_of};
use bulwark_policy::{Policy, device_key_fingerprint};
use bulwark_protocol::checks::CheckState;

pub fn state_view(state: CheckState) -> CheckStateView {
    match state {
        CheckState::Ok => CheckStateView::Ok,
        CheckState::Unknown => CheckStateView::Unknown,
        CheckState::Warning => CheckStateView::Warning,
        CheckState::Critical => CheckStateView::Critical,
    }
}

pub async fn device_checks_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<DeviceChecksView, ApiError> {
    let device = super::devices::visible_device(state, caller, id).await?;
    let checks = state
        .store
        .device_checks(&caller.scope(), &device.id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    let key = <[u8; 32]>::try_from(device.public_key.as_slice())
        .map(|k| device_key_fingerprint(&k))
        .ok();
    let policy = match crate::transparency_log::witnessing::policy_of(
        &state.store,
        &device.tenant_id,
    )
    .await
    {
        Ok(policy) => policy,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), tenant_id = %device.tenant_id, "Cannot read the tenant's policy for a device's checks.");
            None
        }
    };
    let (expected, groups) = match (&policy, &key) {
        (Some(policy), Some(key)) => expected_checks(policy, &device.id, key),
        _ => (Vec::new(), Vec::new()),
    };
    Ok(DeviceChecksView {
        key_fingerprint: key.map(hex::encode).unwrap_or_default(),
        expected,
        groups,
        device_id: device.id,
        hostname: device.hostname,
        tenant: device.tenant_name,
        checks: checks
            .into_iter()
            .map(|c| CheckView {
                name: c.name,
                state: state_view(c.state),
                value: c.value,
                summary: c.summary,
                since: crate::rfc3339(c.since),
                measured_at: (c.measured_at > 0).then(|| crate::rfc3339(c.measured_at)),
                policy_version: c.policy_version,
                reported_at: crate::rfc3339(c.reported_at),
            })
            .collect(),
    })
}

/// The checks `policy` puts on the device, and its groups: the agent's
/// own function (`bulwark_policy::groups`), so the two cannot disagree.
pub fn expected_checks(
    policy: &Policy,
    device_id: &str,
    key: &[u8; 32],
) -> (Vec<ExpectedCheckView>, Vec<String>) {
    let me = DeviceIdentity {
        device_id,
        device_key: key,
    };
    let expected = checks_for(policy, me)
        .into_iter()
        .map(|c| ExpectedCheckView {
            name: c.name.clone(),
            kind: c.probe.kind().to_owned(),
            groups: c.groups.clone().unwrap_or_default(),
        })
        .collect();
    let groups = groups_of(policy, me)
        .into_iter()
        .map(str::to_owned)
        .collect();
    (expected, groups)
}

/// The states of the tenant policy's checks on a device, as its agent
/// reported them (it applies the root-signed thresholds itself).
#[utoipa::path(get, path = "/api/v1/devices/{id}/checks", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)")),
    responses((status = 200, body = DeviceChecksView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_checks(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeviceChecksView>, ApiError> {
    Ok(Json(device_checks_view(&state, &caller, &id).await?))
}
