//! Open vulnerabilities of a device, or of a tenant's devices (issue 17):
//! the devices' installed packages joined with the current vulnerability
//! database generation on (ecosystem release, source package) in one SQL
//! statement per device set, then matched with dpkg's ordering in Rust
//! ([`crate::vuln_findings`]).
//!
//! A device's release comes from its agent's report
//! ([`bulwark_vulndb::release`]); a device whose release is not known is
//! not matched at all, and the answer says so (`ecosystem: None`).

use std::collections::BTreeMap;

use bulwark_vulndb::release::ecosystem_release;
use sqlx::Row;

use crate::vuln_findings::{
    CandidateRow, DeviceVulnerability, PendingVersions, TenantVulnerability, assess, rank_across,
};
use crate::{Device, Store, StoreError, TenantScope, in_scope};

/// Most candidate rows read for one device set: a Debian release's whole
/// advisory set against a full system stays well below it; beyond it the
/// answer says `truncated`.
pub const MAX_CANDIDATE_ROWS: usize = 100_000;

/// Device ids per statement (bound parameters; far below SQLite's limit).
const DEVICES_PER_QUERY: usize = 500;

/// A device's open vulnerabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceVulnerabilities {
    /// The release matched (`Debian:12`); `None`: the device's system is not
    /// one the database can name, so nothing was matched.
    pub ecosystem: Option<String>,
    /// Ranked by score, at most the limit asked for.
    pub vulnerabilities: Vec<DeviceVulnerability>,
    /// How many there are in all (before the limit).
    pub total: u64,
    /// Candidate rows were cut at [`MAX_CANDIDATE_ROWS`]: some may be missing.
    pub truncated: bool,
}

/// What to patch first across a tenant's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantVulnerabilities {
    /// The tenant's devices.
    pub devices: u64,
    /// Hostnames of the devices whose release is not known (not matched).
    pub unmatched_devices: Vec<String>,
    /// Ranked by score, then device count, at most the limit asked for.
    pub vulnerabilities: Vec<TenantVulnerability>,
    pub total: u64,
    pub truncated: bool,
}

fn device_release(device: &Device) -> Option<String> {
    let system = device.inventory.as_ref()?.system.as_ref()?;
    ecosystem_release(&system.os_name, &system.os_version)
}

fn candidate_sql(devices: usize) -> String {
    let mut ids = String::new();
    for i in 0..devices {
        if i > 0 {
            ids.push_str(", ");
        }
        ids.push_str(&format!("${}", i + 5));
    }
    format!(
        concat!(
            "SELECT DISTINCT p.device_id AS device_id, p.source AS package, p.name AS binary_name, p.version AS version, ",
            "p.source_version AS source_version, a.ecosystem AS ecosystem, a.advisory_id AS advisory_id, ",
            "v.aliases AS aliases, v.summary AS summary, a.ranges AS ranges, ",
            "a.severity_vector AS severity_vector, a.score_tenths AS score_tenths, a.rating AS rating ",
            "FROM device_packages p JOIN devices d ON d.id = p.device_id ",
            "JOIN vulndb_generations g ON g.state = 'current' ",
            "JOIN vulndb_affected a ON a.generation = g.id AND a.ecosystem = $3 AND a.package = p.source ",
            "JOIN vulndb_advisories v ON v.generation = a.generation AND v.id = a.advisory_id ",
            "WHERE ",
            in_scope!("d.tenant_id"),
            " AND p.device_id IN ({ids}) ",
            "ORDER BY p.device_id, a.advisory_id, p.source, p.version LIMIT $4"
        ),
        ids = ids
    )
}

impl Store {
    /// Candidate rows for `devices` (ids) in `ecosystem`, at most
    /// [`MAX_CANDIDATE_ROWS`] in all; true when cut.
    async fn vuln_candidates(
        &self,
        scope: &TenantScope,
        ecosystem: &str,
        devices: &[&str],
        rows: &mut Vec<CandidateRow>,
    ) -> Result<bool, StoreError> {
        let (all, operator) = scope.args();
        for chunk in devices.chunks(DEVICES_PER_QUERY) {
            let room = MAX_CANDIDATE_ROWS.saturating_sub(rows.len());
            let sql = candidate_sql(chunk.len());
            let mut query = sqlx::query(&sql)
                .bind(all)
                .bind(operator)
                .bind(ecosystem)
                .bind(i64::try_from(room + 1).unwrap_or(i64::MAX));
            for id in chunk {
                query = query.bind(*id);
            }
            let fetched = query.fetch_all(&self.pool).await?;
            let cut = fetched.len() > room;
            for row in fetched.iter().take(room) {
                rows.push(CandidateRow {
                    device_id: row.try_get("device_id")?,
                    package: row.try_get("package")?,
                    binary: row.try_get("binary_name")?,
                    version: row.try_get("version")?,
                    source_version: row.try_get("source_version")?,
                    ecosystem: row.try_get("ecosystem")?,
                    advisory_id: row.try_get("advisory_id")?,
                    aliases: crate::vulndb::split_aliases(&row.try_get::<String, _>("aliases")?),
                    summary: row.try_get("summary")?,
                    ranges: row.try_get("ranges")?,
                    vector: row.try_get("severity_vector")?,
                    score_tenths: row.try_get("score_tenths")?,
                    rating: row.try_get("rating")?,
                });
            }
            if cut {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The open vulnerabilities of a device in `scope`, ranked by score, at
    /// most `limit`. `None` when the device is not in scope.
    pub async fn device_vulnerabilities(
        &self,
        scope: &TenantScope,
        device_id: &str,
        limit: usize,
    ) -> Result<Option<DeviceVulnerabilities>, StoreError> {
        let Some(device) = self.device(scope, device_id).await? else {
            return Ok(None);
        };
        let Some(ecosystem) = device_release(&device) else {
            return Ok(Some(DeviceVulnerabilities {
                ecosystem: None,
                vulnerabilities: Vec::new(),
                total: 0,
                truncated: false,
            }));
        };
        let mut rows = Vec::new();
        let truncated = self
            .vuln_candidates(scope, &ecosystem, &[device.id.as_str()], &mut rows)
            .await?;
        let pending: PendingVersions = self
            .device_inventory_sections(scope, &device.id)
            .await?
            .and_then(|sections| sections.pending_updates)
            .unwrap_or_default()
            .into_iter()
            .map(|u| (u.name, u.new_version))
            .collect();
        let pending = BTreeMap::from([(device.id.clone(), pending)]);
        let mut vulnerabilities = assess(&rows, &pending)
            .remove(&device.id)
            .unwrap_or_default();
        let total = u64::try_from(vulnerabilities.len()).unwrap_or(u64::MAX);
        vulnerabilities.truncate(limit);
        Ok(Some(DeviceVulnerabilities {
            ecosystem: Some(ecosystem),
            vulnerabilities,
            total,
            truncated,
        }))
    }

    /// What to patch first across the devices of a tenant in `scope`: per
    /// advisory, how many devices it affects and its highest score, at most
    /// `limit`. One statement per release present (and per
    /// 500 devices), not per device or package.
    pub async fn tenant_vulnerabilities(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        limit: usize,
    ) -> Result<TenantVulnerabilities, StoreError> {
        let devices = self.list_devices(scope, tenant_id).await?;
        let mut by_release: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut unmatched_devices = Vec::new();
        for device in &devices {
            match device_release(device) {
                Some(release) => by_release.entry(release).or_default().push(&device.id),
                None => unmatched_devices.push(device.hostname.clone()),
            }
        }
        let mut rows = Vec::new();
        let mut truncated = false;
        for (release, ids) in &by_release {
            if self.vuln_candidates(scope, release, ids, &mut rows).await? {
                truncated = true;
                break;
            }
        }
        let mut vulnerabilities = rank_across(&assess(&rows, &BTreeMap::new()));
        let total = u64::try_from(vulnerabilities.len()).unwrap_or(u64::MAX);
        vulnerabilities.truncate(limit);
        Ok(TenantVulnerabilities {
            devices: u64::try_from(devices.len()).unwrap_or(u64::MAX),
            unmatched_devices,
            vulnerabilities,
            total,
            truncated,
        })
    }
}
