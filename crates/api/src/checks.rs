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
    /// SHA-256 of the device's key, hex (what a policy's groups name).
    #[serde(default)]
    pub key_fingerprint: String,
    /// The checks of the tenant's stored policy this device runs, by the
    /// agent's own rule (RFD 0022): those on every device and those on a
    /// group that lists this device's id and key. Empty without a policy.
    #[serde(default)]
    pub expected: Vec<ExpectedCheckView>,
    /// The stored policy's device groups that list this device.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A check the policy puts on a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExpectedCheckView {
    pub name: String,
    /// The probe: cpu, disk, http, …
    pub kind: String,
    /// The groups it applies on; empty: every device of the tenant.
    pub groups: Vec<String>,
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
