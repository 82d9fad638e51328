//! The offline vulnerability database (issue 17): status, checking one
//! package version, and an owner's import.
//!
//! Where the import runs: the operator's `bulwark vulndb import` reads the
//! OSV files (a folder or OSV's `all.zip`) on the operator's machine,
//! reports on them, and uploads the records in batches; the server parses
//! every record again with `bulwark_vulndb::osv::parse_record` (it trusts
//! no client's parsing), stores it in a staging generation, and switches
//! the generation in atomically. The server reads no path and fetches
//! nothing from the internet: OSV data reaches it only through an owner.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use bulwark_api::error::ErrorBody;
use bulwark_api::vulndb::{
    MAX_BATCH_RECORDS, VulnDbBatch, VulnDbBatchResult, VulnDbCheckQuery, VulnDbCheckView,
    VulnDbEcosystemView, VulnDbGenerationView, VulnDbImportStarted, VulnDbStatusView,
    VulnDbSwitched, VulnFindingView, VulnSeverityView,
};
use bulwark_store::{AuditAction, NewVulnAdvisory, NewVulnAffected, VulnGeneration, VulnSeverity};
use bulwark_vulndb::matching::{affects, source_version_of_binary};
use bulwark_vulndb::osv::{self, Severity, is_dpkg_ecosystem};
use bulwark_vulndb::{Advisory, Limits, Parsed, Version, stored};

use super::error::ApiError;
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;

/// Largest batch upload: records are parsed twice (as JSON values, then as
/// OSV), so this bounds one request's memory; the CLI fills batches to
/// about half of it.
pub const MAX_BATCH_BODY_BYTES: usize = 8 << 20;

fn generation_view(g: VulnGeneration) -> VulnDbGenerationView {
    VulnDbGenerationView {
        generation: g.id,
        records: g.records,
        imported_at: g.switched_at.map(crate::rfc3339),
        imported_by: g.created_by,
    }
}

/// The vulnerability database: current and previous generation, counts per ecosystem release.
#[utoipa::path(get, path = "/api/v1/vulndb", tag = "vulndb",
    responses((status = 200, body = VulnDbStatusView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VulnDbStatusView>, ApiError> {
    caller.require(Action::ViewVulnDb)?;
    let status = state.store.vulndb_status().await?;
    Ok(Json(VulnDbStatusView {
        current: status.current.map(generation_view),
        previous: status.previous.map(generation_view),
        ecosystems: status
            .ecosystems
            .into_iter()
            .map(|e| VulnDbEcosystemView {
                ecosystem: e.ecosystem,
                advisories: e.advisories,
                packages: e.packages,
            })
            .collect(),
    }))
}

fn severity_view(s: &VulnSeverity) -> VulnSeverityView {
    VulnSeverityView {
        kind: s.kind.clone(),
        vector: s.vector.clone(),
        score: s.score_tenths.map(|t| t as f64 / 10.0),
        rating: s.rating.clone(),
    }
}

/// Highest score first, then rating, then advisory id: what to patch first.
pub fn rank(findings: &mut [VulnFindingView]) {
    let key = |f: &VulnFindingView| {
        let s = f.severity.as_ref();
        let tenths = s.and_then(|s| s.score).map(|x| (x * 10.0).round() as i64);
        let rating = s
            .and_then(|s| s.rating.as_deref())
            .and_then(bulwark_vulndb::cvss::Rating::parse);
        (std::cmp::Reverse(tenths), std::cmp::Reverse(rating))
    };
    findings.sort_by(|a, b| {
        key(a)
            .cmp(&key(b))
            .then_with(|| a.advisory.cmp(&b.advisory))
    });
}

/// The advisories of the current generation that affect one source package version, highest severity first.
#[utoipa::path(get, path = "/api/v1/vulndb/check", tag = "vulndb",
    params(VulnDbCheckQuery),
    responses((status = 200, body = VulnDbCheckView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<VulnDbCheckQuery>, QueryRejection>,
) -> Result<Json<VulnDbCheckView>, ApiError> {
    caller.require(Action::ViewVulnDb)?;
    let Query(q) = query.map_err(|rejection| {
        ApiError::bad_request(format!("bad query: {}", rejection.body_text()))
    })?;
    let limits = Limits::default();
    if !is_dpkg_ecosystem(&q.ecosystem) || q.ecosystem.len() > limits.max_name_len {
        return Err(ApiError::bad_request(
            "ecosystem must be a Debian or Ubuntu release as OSV names it, e.g. Debian:12 or Ubuntu:22.04:LTS",
        ));
    }
    if q.package.is_empty() || q.package.len() > limits.max_name_len {
        return Err(ApiError::bad_request(
            "package must be a source package name",
        ));
    }
    let installed =
        Version::parse(&q.version).map_err(|e| ApiError::bad_request(format!("version: {e}")))?;
    let version = source_version_of_binary(&installed);
    let candidates = state
        .store
        .vulndb_candidates(&q.ecosystem, &q.package)
        .await?;
    let mut generation = candidates.first().map(|c| c.generation);
    let mut findings = Vec::new();
    for c in candidates {
        let entry = stored::decode(&c.ecosystem, &c.package, &c.ranges)
            .map_err(|e| ApiError::internal(format!("advisory {}: {e}", c.advisory_id)))?;
        if let Some(hit) = affects(&entry, &version) {
            findings.push(VulnFindingView {
                advisory: c.advisory_id,
                aliases: c.aliases,
                summary: c.summary,
                severity: c.severity.as_ref().map(severity_view),
                fixed_version: hit.fixed.map(|v| v.to_string()),
                modified: c.modified,
            });
        }
    }
    rank(&mut findings);
    if generation.is_none() {
        generation = state.store.vulndb_status().await?.current.map(|g| g.id);
    }
    Ok(Json(VulnDbCheckView {
        ecosystem: q.ecosystem,
        package: q.package,
        version: version.to_string(),
        generation,
        findings,
    }))
}

/// Starts an import (owners; privileged): a staging generation no reader sees until it is switched in. An unfinished earlier import is dropped.
#[utoipa::path(post, path = "/api/v1/vulndb/imports", tag = "vulndb",
    responses((status = 201, body = VulnDbImportStarted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn start_import(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<VulnDbImportStarted>), ApiError> {
    caller.require(Action::ImportVulnDb)?;
    let generation = state
        .store
        .vulndb_begin_import(now_millis(), &caller.operator.username)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(VulnDbImportStarted { generation }),
    ))
}

fn stored_severity(s: &Severity) -> VulnSeverity {
    VulnSeverity {
        kind: s.kind.clone(),
        vector: s.vector.clone(),
        score_tenths: s.score.map(|x| (x * 10.0).round() as i64),
        rating: s.rating.map(|r| r.as_str().to_owned()),
    }
}

/// What the store keeps of one parsed advisory.
pub fn to_store(a: &Advisory) -> NewVulnAdvisory {
    NewVulnAdvisory {
        id: a.id.clone(),
        modified: a.modified.clone(),
        published: a.published.clone(),
        aliases: a.aliases.clone(),
        summary: a.summary.clone(),
        affected: a
            .affected
            .iter()
            .map(|p| NewVulnAffected {
                ecosystem: p.ecosystem.clone(),
                package: p.package.clone(),
                ranges: stored::encode(p),
                severity: p.severity.as_ref().map(stored_severity),
            })
            .collect(),
    }
}

/// Adds a batch of OSV records to a started import (owners). Every record is parsed again here; one that does not parse refuses the whole batch (400, naming it) and nothing of it is stored.
#[utoipa::path(post, path = "/api/v1/vulndb/imports/{generation}/records", tag = "vulndb",
    params(("generation" = i64, Path, description = "The generation the import started")),
    request_body = VulnDbBatch,
    responses((status = 200, body = VulnDbBatchResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn add_records(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(generation): ApiPath<i64>,
    ApiJson(batch): ApiJson<VulnDbBatch>,
) -> Result<Json<VulnDbBatchResult>, ApiError> {
    caller.require(Action::UploadVulnDbRecords)?;
    if batch.records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BATCH_RECORDS} records in one batch"
        )));
    }
    let limits = Limits::default();
    let mut kept = Vec::new();
    let mut skipped = 0u64;
    for (i, record) in batch.records.iter().enumerate() {
        let bytes = serde_json::to_vec(record).map_err(ApiError::internal)?;
        match osv::parse_record(&bytes, &limits) {
            Ok(Parsed::Advisory(a, _)) => kept.push(to_store(&a)),
            Ok(Parsed::Skipped(_)) => skipped += 1,
            Err(e) => {
                let id = record.get("id").and_then(|v| v.as_str()).unwrap_or("?");
                let id: String = id.chars().take(64).collect();
                return Err(ApiError::bad_request(format!("record {i} ({id:?}): {e}")));
            }
        }
    }
    state
        .store
        .vulndb_add_records(generation, &kept)
        .await
        .map_err(|e| match e {
            bulwark_store::StoreError::NotFound => ApiError::not_found("import in progress"),
            other => other.into(),
        })?;
    Ok(Json(VulnDbBatchResult {
        imported: kept.len() as u64,
        skipped,
    }))
}

/// Switches a started import in (owners): in one transaction it becomes current, the old current is kept as previous, and the one before is deleted; readers see the old set until then. Recorded as `vulndb.imported` in the MSP log.
#[utoipa::path(post, path = "/api/v1/vulndb/imports/{generation}/switch", tag = "vulndb",
    params(("generation" = i64, Path, description = "The generation the import started")),
    responses((status = 200, body = VulnDbSwitched), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn switch_import(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(generation): ApiPath<i64>,
) -> Result<Json<VulnDbSwitched>, ApiError> {
    caller.require(Action::UploadVulnDbRecords)?;
    let records = state
        .store
        .vulndb_commit_import(generation, now_millis(), |records| {
            vec![
                audit_event(&caller, None, AuditAction::VulnDbImported, "vulndb")
                    .with_detail(format!("generation {generation}: {records} advisories")),
            ]
        })
        .await
        .map_err(|e| match e {
            bulwark_store::StoreError::NotFound => ApiError::not_found("import in progress"),
            other => other.into(),
        })?;
    Ok(Json(VulnDbSwitched {
        generation,
        records,
    }))
}
