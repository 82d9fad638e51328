//! The auditor's read-only view of the transparency logs (RFD 0003): the
//! log key, each log's signed head, its entries, its stored signed heads
//! and inclusion and consistency proofs, enough for an outside verifier to
//! check the whole log with nothing but this API and the log key.
//!
//! A tenant's log (log id = tenant id) is read by every role holding a
//! grant on that tenant ([`Action::ViewTenantLog`]; a foreign tenant is a
//! 404 like everywhere); the MSP-wide log (`msp`) by owners and security
//! officers ([`Action::ViewMspLog`]). Reading changes nothing in the log;
//! reading a head may sign a new checkpoint of it, so that an auditor
//! always gets a signed head of the whole log. The one write is the
//! announcement of an export (`POST …/log/exports`, same authorisation as
//! reading): a `log.exported` event in the log being read, appended after
//! the head the reader announced, so it never breaks that reader's check.
//! Reading is not blocked without it: it records honest tools' exports.
//!
//! Encodings, for outside verifiers:
//! - `leaf`: standard base64 (RFC 4648 §4, padded) of the exact leaf bytes;
//!   the tree holds their RFC 6962 leaf hash `SHA-256(0x00 || leaf)`.
//! - `root` and proof `hashes`: standard base64 of 32-byte SHA-256 values;
//!   proofs as RFC 9162 §2.1.3 (inclusion) and §2.1.4 (consistency).
//! - `note`: the C2SP checkpoint (`tlog-checkpoint`), signed as a Go
//!   signed note (`sumdb/note`, Ed25519) by the key of `GET /api/v1/log/key`,
//!   verbatim.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::error::ErrorBody;
use bulwark_api::error::ErrorCode;
use bulwark_api::log::{
    CheckpointsQuery, ConsistencyProofView, ConsistencyQuery, EntriesQuery, ExportRecorded,
    ExportRequest, InclusionProofView, InclusionQuery, JobEnvelopeView, LogCheckpointsView,
    LogEntriesView, LogEntryView, LogHeadView, LogKeyView, LogStatementsView, TrustStatementView,
};
use bulwark_store::AuditAction;
use bulwark_store::MSP_LOG;
use bulwark_translog::Hash;

use super::error::ApiError;
use super::{ApiJson, ApiPath};
use crate::auth::policy::Credential;
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;

/// Most entries or checkpoints in one page.
pub const MAX_PAGE: u32 = 1000;

/// The action of the event an export announcement appends.
pub const EXPORTED_ACTION: AuditAction = AuditAction::LogExported;

fn b64(hash: &[u8]) -> String {
    B64.encode(hash)
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|rejection| ApiError::bad_request(format!("bad query: {}", rejection.body_text())))
}

/// The largest index or tree size a query may name: storage counts in
/// `i64`, and the document says so (`maximum`), so a larger one is refused
/// rather than read as an empty page.
const MAX_POSITION: u64 = i64::MAX as u64;

fn position(name: &str, value: u64) -> Result<u64, ApiError> {
    if value > MAX_POSITION {
        return Err(ApiError::bad_request(format!(
            "{name} must be at most {MAX_POSITION}, not {value}"
        )));
    }
    Ok(value)
}

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(MAX_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}, not {n}"
        ))),
    }
}

/// The tenant named (by name or id) in the path, in the caller's scope
/// (else 404), with [`Action::ViewTenantLog`] checked on it: its log id
/// (the tenant id) and name. The console's audit page finds it the same way.
pub(crate) async fn tenant_log(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
) -> Result<(String, String), ApiError> {
    let scope = caller.scope();
    let (id, name) = match state.store.tenant_by_name(&scope, tenant).await? {
        Some(found) => (found.id, found.name),
        None => state
            .store
            .list_tenants(&scope)
            .await?
            .into_iter()
            .find(|t| t.id == tenant)
            .map(|t| (t.id, t.name))
            .ok_or_else(|| ApiError::not_found("tenant"))?,
    };
    caller.require_in(Action::ViewTenantLog, &id)?;
    Ok((id, name))
}

fn msp_log(caller: &Caller) -> Result<String, ApiError> {
    caller.require(Action::ViewMspLog)?;
    Ok(MSP_LOG.to_owned())
}

async fn log_size(state: &AppState, log_id: &str) -> Result<u64, ApiError> {
    Ok(state.store.log_head(log_id).await?.map_or(0, |h| h.size))
}

/// Records `caller` announcing an export of the log `log_id` (in
/// `tenant_id`; `None` for the MSP log) up to `req.tree_size`: one
/// `log.exported` event in that log, or nothing (400) for a size beyond
/// the log. An event that cannot be recorded is a 500: the caller is never
/// told it was recorded when it was not.
async fn record_export(
    state: &AppState,
    caller: &Caller,
    log_id: &str,
    tenant_id: Option<&str>,
    req: ExportRequest,
) -> Result<(StatusCode, Json<ExportRecorded>), ApiError> {
    let size = log_size(state, log_id).await?;
    if req.tree_size > size {
        return Err(ApiError::bad_request(format!(
            "tree_size {} is beyond the log's {size} entries",
            req.tree_size
        )));
    }
    let via = match caller.credential {
        Credential::ApiToken => "api token",
        Credential::Session { .. } | Credential::NeedsPasskey { .. } => "session",
    };
    let event =
        super::audit_event(caller, tenant_id, EXPORTED_ACTION, log_id).with_detail(format!(
            "{} up to size {} ({via})",
            req.purpose.as_str(),
            req.tree_size
        ));
    state
        .store
        .append_audit(event)
        .await
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(ExportRecorded {
            action: EXPORTED_ACTION.as_str().to_owned(),
            tree_size: req.tree_size,
        }),
    ))
}

async fn head(state: &AppState, log_id: String) -> Result<LogHeadView, ApiError> {
    let (size, root, archived_below) = match state.store.log_head(&log_id).await? {
        Some(head) => (head.size, head.root, head.archived_below),
        None => (0, Hash::empty_tree().0, 0),
    };
    let archived_frontier = if archived_below > 0 {
        state
            .store
            .log_frontier_at(&log_id, archived_below)
            .await?
            .iter()
            .map(|h| b64(h))
            .collect()
    } else {
        Vec::new()
    };
    let checkpoint = if size == 0 {
        state.store.latest_checkpoint(&log_id).await?
    } else {
        Some(
            state
                .log
                .checkpoint_covering(&state.store, &log_id, size, now_millis())
                .await?,
        )
    };
    Ok(LogHeadView {
        origin: state.log.origin(&log_id),
        log_id,
        size,
        root: b64(&root),
        checkpoint: checkpoint.map(crate::api::views::checkpoint),
        archived_below,
        archived_frontier,
    })
}

async fn entries(
    state: &AppState,
    log_id: &str,
    q: EntriesQuery,
) -> Result<LogEntriesView, ApiError> {
    let limit = page_limit(q.limit)?;
    let start = position("start", q.start.unwrap_or(0))?;
    let archived_below = state
        .store
        .log_head(log_id)
        .await?
        .map_or(0, |h| h.archived_below);
    if start < archived_below {
        return Err(ApiError::new(
            StatusCode::GONE,
            ErrorCode::Archived,
            format!(
                "entries 0 to {} of log {log_id} are archived (past the retention period; on the \
                 server in data_dir/archive/{log_id}/, in the export format): this log serves \
                 entries from {archived_below} on",
                archived_below - 1
            ),
        ));
    }
    let rows = state.store.log_entries(log_id, start, limit).await?;
    Ok(LogEntriesView {
        entries: rows
            .into_iter()
            .map(|e| LogEntryView {
                index: e.idx,
                leaf: B64.encode(&e.leaf),
                at: e.at,
                hash: B64.encode(e.hash.0),
            })
            .collect(),
    })
}

async fn checkpoints(
    state: &AppState,
    log_id: &str,
    q: CheckpointsQuery,
) -> Result<LogCheckpointsView, ApiError> {
    let limit = page_limit(q.limit)?;
    let from_size = position("from_size", q.from_size.unwrap_or(0))?;
    let rows = state.store.checkpoints(log_id, from_size, limit).await?;
    Ok(LogCheckpointsView {
        checkpoints: rows
            .into_iter()
            .map(crate::api::views::checkpoint)
            .collect(),
    })
}

async fn inclusion(
    state: &AppState,
    log_id: &str,
    q: InclusionQuery,
) -> Result<InclusionProofView, ApiError> {
    if q.index >= q.tree_size {
        return Err(ApiError::bad_request(format!(
            "index {} is not in a tree of size {} (index must be below tree_size)",
            q.index, q.tree_size
        )));
    }
    let size = log_size(state, log_id).await?;
    if q.tree_size > size {
        return Err(ApiError::bad_request(format!(
            "tree_size {} is beyond the log's {size} entries",
            q.tree_size
        )));
    }
    let hashes = state
        .store
        .inclusion_proof(log_id, q.index, q.tree_size)
        .await?;
    Ok(InclusionProofView {
        index: q.index,
        tree_size: q.tree_size,
        hashes: hashes.iter().map(|h| b64(h)).collect(),
    })
}

async fn consistency(
    state: &AppState,
    log_id: &str,
    q: ConsistencyQuery,
) -> Result<ConsistencyProofView, ApiError> {
    if q.from == 0 {
        return Err(ApiError::bad_request(
            "from must be at least 1 (every tree extends the empty tree; RFC 9162 defines no proof from it)",
        ));
    }
    if q.from > q.to {
        return Err(ApiError::bad_request(format!(
            "from ({}) must not be larger than to ({})",
            q.from, q.to
        )));
    }
    let size = log_size(state, log_id).await?;
    if q.to > size {
        return Err(ApiError::bad_request(format!(
            "to ({}) is beyond the log's {size} entries",
            q.to
        )));
    }
    let hashes = state.store.consistency_proof(log_id, q.from, q.to).await?;
    Ok(ConsistencyProofView {
        from: q.from,
        to: q.to,
        hashes: hashes.iter().map(|h| b64(h)).collect(),
    })
}

/// The transparency log's public key: pin it (and compare it out of band)
/// to verify every checkpoint `note` of every log.
#[utoipa::path(get, path = "/api/v1/log/key", tag = "log",
    responses((status = 200, body = LogKeyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn log_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<LogKeyView>, ApiError> {
    caller.require(Action::ViewLogKey)?;
    Ok(Json(LogKeyView {
        vkey: state.log.vkey(),
        key_name: state.log.verifier().name().to_owned(),
    }))
}

/// A tenant's log head: size, root, and a signed checkpoint covering it
/// (signed now if the latest does not). Every role with a grant on the tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/log", tag = "log",
    params(("tenant" = String, Path, description = "Tenant name or id")),
    responses((status = 200, body = LogHeadView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_log_head(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<LogHeadView>, ApiError> {
    let (log_id, _) = tenant_log(&state, &caller, &tenant).await?;
    Ok(Json(head(&state, log_id).await?))
}

/// Every trust statement and job envelope of a tenant: what an auditor
/// needs to replay the meaning of its log (`bulwark audit verify` checks
/// each published statement with the agents' rules and each released job
/// against the policy in force then). The server's word, checked by the
/// auditor against the log's entries and the pinned root. Every role with
/// a grant on the tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/log/statements", tag = "log",
    params(("tenant" = String, Path, description = "Tenant name or id")),
    responses((status = 200, body = LogStatementsView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_log_statements(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<LogStatementsView>, ApiError> {
    let (tenant_id, _) = tenant_log(&state, &caller, &tenant).await?;
    let scope = caller.scope();
    let trust = state
        .store
        .trust_history(&scope, &tenant_id)
        .await?
        .into_iter()
        .map(|(kind, version, envelope)| TrustStatementView {
            kind: kind.to_string(),
            version,
            envelope: B64.encode(envelope),
        })
        .collect();
    let jobs = state
        .store
        .list_jobs(&scope, &tenant_id, i64::MAX)
        .await?
        .into_iter()
        .map(|job| JobEnvelopeView {
            id: job.id,
            envelope: B64.encode(&job.envelope),
        })
        .collect();
    Ok(Json(LogStatementsView { trust, jobs }))
}

/// A tenant's log entries from `start`, in index order. Entries below the
/// head's `archived_below` were archived (past the retention period): a
/// `start` below it is answered 410 Gone, code `archived`, with a message
/// naming the archived range.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/log/entries", tag = "log",
    params(("tenant" = String, Path, description = "Tenant name or id"), EntriesQuery),
    responses((status = 200, body = LogEntriesView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, description = "`start` is below the log's `archived_below`: those entries are archived (code `archived`; the message names the range)", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_log_entries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    q: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Json<LogEntriesView>, ApiError> {
    let (log_id, _) = tenant_log(&state, &caller, &tenant).await?;
    let q = query(q)?;
    Ok(Json(entries(&state, &log_id, q).await?))
}

/// A tenant's stored signed heads from `from_size`, smallest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/log/checkpoints", tag = "log",
    params(("tenant" = String, Path, description = "Tenant name or id"), CheckpointsQuery),
    responses((status = 200, body = LogCheckpointsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_log_checkpoints(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    q: Result<Query<CheckpointsQuery>, QueryRejection>,
) -> Result<Json<LogCheckpointsView>, ApiError> {
    let (log_id, _) = tenant_log(&state, &caller, &tenant).await?;
    let q = query(q)?;
    Ok(Json(checkpoints(&state, &log_id, q).await?))
}

/// The inclusion proof of entry `index` in the tree of the first
/// `tree_size` entries of a tenant's log.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/log/proof/inclusion", tag = "log",
    params(("tenant" = String, Path, description = "Tenant name or id"), InclusionQuery),
    responses((status = 200, body = InclusionProofView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_log_inclusion(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProofView>, ApiError> {
    let (log_id, _) = tenant_log(&state, &caller, &tenant).await?;
    let q = query(q)?;
    Ok(Json(inclusion(&state, &log_id, q).await?))
}

/// The consistency proof from the tree of `from` entries of a tenant's log
/// to the tree of `to`.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/log/proof/consistency", tag = "log",
    params(("tenant" = String, Path, description = "Tenant name or id"), ConsistencyQuery),
    responses((status = 200, body = ConsistencyProofView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_log_consistency(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    let (log_id, _) = tenant_log(&state, &caller, &tenant).await?;
    let q = query(q)?;
    Ok(Json(consistency(&state, &log_id, q).await?))
}

/// Announces that the caller is about to read (verify or export) a
/// tenant's log up to `tree_size`: appends one `log.exported` event (actor
/// the caller, target the log id, detail the purpose and size) to that
/// log, after the announced head, so the reader's own check is unchanged.
/// Same authorisation as reading the log. Reading is not blocked without
/// it: the event records the exports of tools that announce them.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/log/exports", tag = "log",
    params(("tenant" = String, Path, description = "Tenant name or id")),
    request_body = ExportRequest,
    responses((status = 201, body = ExportRecorded), (status = 400, description = "A malformed body, an unknown field or purpose, or a `tree_size` beyond the log: nothing recorded", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_log_export(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    body: Result<ApiJson<ExportRequest>, ApiError>,
) -> Result<(StatusCode, Json<ExportRecorded>), ApiError> {
    let (log_id, _) = tenant_log(&state, &caller, &tenant).await?;
    let ApiJson(req) = body?;
    record_export(&state, &caller, &log_id, Some(&log_id), req).await
}

/// The MSP-wide log's head (owners and security officers).
#[utoipa::path(get, path = "/api/v1/msp/log", tag = "log",
    responses((status = 200, body = LogHeadView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn msp_log_head(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<LogHeadView>, ApiError> {
    let log_id = msp_log(&caller)?;
    Ok(Json(head(&state, log_id).await?))
}

/// The MSP-wide log's entries from `start`, in index order; 410 Gone
/// (code `archived`) for a `start` below the head's `archived_below`.
#[utoipa::path(get, path = "/api/v1/msp/log/entries", tag = "log",
    params(EntriesQuery),
    responses((status = 200, body = LogEntriesView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 410, description = "`start` is below the log's `archived_below`: those entries are archived (code `archived`; the message names the range)", body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn msp_log_entries(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Json<LogEntriesView>, ApiError> {
    let log_id = msp_log(&caller)?;
    let q = query(q)?;
    Ok(Json(entries(&state, &log_id, q).await?))
}

/// The MSP-wide log's stored signed heads from `from_size`, smallest first.
#[utoipa::path(get, path = "/api/v1/msp/log/checkpoints", tag = "log",
    params(CheckpointsQuery),
    responses((status = 200, body = LogCheckpointsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn msp_log_checkpoints(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<CheckpointsQuery>, QueryRejection>,
) -> Result<Json<LogCheckpointsView>, ApiError> {
    let log_id = msp_log(&caller)?;
    let q = query(q)?;
    Ok(Json(checkpoints(&state, &log_id, q).await?))
}

/// An inclusion proof in the MSP-wide log.
#[utoipa::path(get, path = "/api/v1/msp/log/proof/inclusion", tag = "log",
    params(InclusionQuery),
    responses((status = 200, body = InclusionProofView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn msp_log_inclusion(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProofView>, ApiError> {
    let log_id = msp_log(&caller)?;
    let q = query(q)?;
    Ok(Json(inclusion(&state, &log_id, q).await?))
}

/// A consistency proof in the MSP-wide log.
#[utoipa::path(get, path = "/api/v1/msp/log/proof/consistency", tag = "log",
    params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProofView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn msp_log_consistency(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    let log_id = msp_log(&caller)?;
    let q = query(q)?;
    Ok(Json(consistency(&state, &log_id, q).await?))
}

/// Announces that the caller is about to read (verify or export) the
/// MSP-wide log up to `tree_size`: one `log.exported` event in the MSP log
/// (owners and security officers, like reading it).
#[utoipa::path(post, path = "/api/v1/msp/log/exports", tag = "log",
    request_body = ExportRequest,
    responses((status = 201, body = ExportRecorded), (status = 400, description = "A malformed body, an unknown field or purpose, or a `tree_size` beyond the log: nothing recorded", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn msp_log_export(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<ExportRequest>, ApiError>,
) -> Result<(StatusCode, Json<ExportRecorded>), ApiError> {
    let log_id = msp_log(&caller)?;
    let ApiJson(req) = body?;
    record_export(&state, &caller, &log_id, None, req).await
}
