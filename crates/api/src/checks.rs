//! The states of the policy's checks on a device (RFD 0009).
//!
//! What the server says an agent reported: the checks themselves and their
//! thresholds are in the tenant's root-signed policy, which `bulwark device
//! checks` verifies on the operator's machine and compares with this.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /api/v1/devices/{id}/checks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceChecksView {
    pub device_id: String,
    pub hostname: String,
    pub tenant: String,
    /// By name.
    pub checks: Vec<CheckView>,
}

/// A check's state, as the device's agent judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStateView {
    Ok,
    /// The probe could not measure.
    Unknown,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    /// The check's name in the policy.
    pub name: String,
    pub state: CheckStateView,
    /// The last measured value in the probe's unit.
    pub value: Option<i64>,
    /// What the agent saw: "91% used, 2 GiB free".
    pub summary: String,
    /// When the state began, by the agent's clock.
    pub since: String,
    /// The last measurement, by the agent's clock; null before the first.
    pub measured_at: Option<String>,
    /// The policy version whose checks the agent ran.
    pub policy_version: u64,
    /// When the server stored the report.
    pub reported_at: String,
}
