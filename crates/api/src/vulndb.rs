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
