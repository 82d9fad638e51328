//! The offline vulnerability database: its status, checking one package
//! version, and an owner's import (start, batches of OSV records, switch).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Largest batch of records one upload carries (the CLI sends fewer).
pub const MAX_BATCH_RECORDS: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnDbGenerationView {
    /// Grows with every import started; never reused.
    pub generation: i64,
    /// Advisories kept in it.
    pub records: i64,
    /// When it was switched in (RFC 3339, UTC).
    pub imported_at: Option<String>,
    pub imported_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnDbEcosystemView {
    /// As OSV spells it, release included: `Debian:12`, `Ubuntu:22.04:LTS`.
    pub ecosystem: String,
    pub advisories: i64,
    /// Distinct source packages named.
    pub packages: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnDbStatusView {
    /// What every read uses; none before the first import.
    pub current: Option<VulnDbGenerationView>,
    /// The one before, kept until the next import switches in.
    pub previous: Option<VulnDbGenerationView>,
    /// The current generation's counts per ecosystem release.
    pub ecosystems: Vec<VulnDbEcosystemView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VulnDbCheckQuery {
    /// `Debian:12`, `Ubuntu:24.04:LTS`, ...
    pub ecosystem: String,
    /// The source package name (Debian advisories name source packages).
    pub package: String,
    /// The installed version: the source version where known; a binary
    /// version's `+bN` rebuild suffix is dropped.
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnSeverityView {
    /// `CVSS_V3`, `CVSS_V4` or `Ubuntu`.
    pub kind: String,
    /// The vector (or Ubuntu's priority word) as the data gives it.
    pub vector: String,
    /// CVSS v3 base score, computed from the vector.
    pub score: Option<f64>,
    /// `none`, `low`, `medium`, `high` or `critical`.
    pub rating: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnFindingView {
    /// The advisory id (`DSA-5764-1`, `DEBIAN-CVE-2024-5535`, `USN-...`).
    pub advisory: String,
    /// CVE ids and others.
    pub aliases: Vec<String>,
    pub summary: String,
    pub severity: Option<VulnSeverityView>,
    /// The version that fixes it; none when the data names no fix yet.
    pub fixed_version: Option<String>,
    pub modified: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnDbCheckView {
    pub ecosystem: String,
    pub package: String,
    /// The version matched (after dropping a `+bN` rebuild suffix).
    pub version: String,
    /// The generation answered from; none when nothing is imported.
    pub generation: Option<i64>,
    /// Highest score first: what to patch first.
    pub findings: Vec<VulnFindingView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnDbImportStarted {
    /// The staging generation to upload into; invisible to readers until switched in.
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VulnDbBatch {
    /// OSV records (schema 1.x), each one file's JSON object, at most
    /// [`MAX_BATCH_RECORDS`]. The server parses each again within its limits.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnDbBatchResult {
    /// Records kept from this batch.
    pub imported: u64,
    /// Records left out (withdrawn, or no Debian or Ubuntu package).
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnDbSwitched {
    pub generation: i64,
    pub records: i64,
}

/// Most advisories one device or tenant answer lists (ranked, so the rest
/// are the least severe).
pub const MAX_VULNERABILITIES_LISTED: usize = 2_000;

/// A source package of the device an advisory affects.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VulnerablePackageView {
    /// The source package name (the agent's report, matched to the data).
    pub package: String,
    /// The installed source version.
    pub installed: String,
    /// The version that fixes it; none when the data names no fix yet.
    pub fixed: Option<String>,
    /// The source version a pending update of the device would install
    /// (from the agent's simulated upgrade), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

/// One open advisory on a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceVulnerabilityView {
    pub advisory: String,
    /// CVE ids and others.
    pub aliases: Vec<String>,
    pub summary: String,
    /// CVSS v3 base score, where the data has one.
    pub score: Option<f64>,
    /// `low`, `medium`, `high`, `critical` (or the data's own word).
    pub rating: Option<String>,
    pub vector: Option<String>,
    pub packages: Vec<VulnerablePackageView>,
    /// A pending update fixes it: each package it affects has a pending
    /// version at or past the fixed one (dpkg's ordering).
    #[serde(default)]
    pub fixed_by_pending_update: bool,
}

/// `GET /api/v1/devices/{id}/vulnerabilities`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceVulnerabilitiesView {
    pub device_id: String,
    pub hostname: String,
    /// The release matched (`Debian:12`), from what the agent reported;
    /// none when it is not a release the data names: nothing was matched,
    /// which is not the same as nothing open.
    pub ecosystem: Option<String>,
    /// The generation matched against; none before the first import.
    pub generation: Option<i64>,
    /// How many advisories are open in all.
    pub total: u64,
    /// Some candidates were not read (too many): the list may be incomplete.
    pub truncated: bool,
    /// Highest score first, at most [`MAX_VULNERABILITIES_LISTED`].
    pub vulnerabilities: Vec<DeviceVulnerabilityView>,
}

/// One advisory across a tenant's devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantVulnerabilityView {
    pub advisory: String,
    pub aliases: Vec<String>,
    pub summary: String,
    /// The highest CVSS v3 base score among its entries.
    pub score: Option<f64>,
    pub rating: Option<String>,
    /// How many of the tenant's devices it affects.
    pub devices: u64,
    /// The source packages it affects.
    pub packages: Vec<String>,
}

/// `GET /api/v1/tenants/{tenant}/vulnerabilities`: what to patch first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantVulnerabilitiesView {
    pub tenant: String,
    pub generation: Option<i64>,
    /// The tenant's devices.
    pub devices: u64,
    /// Devices whose release is not known, by hostname: not matched.
    pub unmatched_devices: Vec<String>,
    pub total: u64,
    pub truncated: bool,
    /// By score, then how many devices, at most [`MAX_VULNERABILITIES_LISTED`].
    pub vulnerabilities: Vec<TenantVulnerabilityView>,
}
