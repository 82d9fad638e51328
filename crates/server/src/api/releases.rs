//! The agent release mirror (RFD 0017): an owner uploads a TUF
//! repository's files (`bulwark release import DIR`), and every operator
//! may read its metadata back (the CLI verifies it before it signs an
//! update job). The server verifies nothing here that anyone relies on:
//! agents and the CLI check every document and binary with the release
//! root they hold. It only checks names and sizes, so that a mistake
//! fails early with a clear message.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::error::ErrorBody;
use bulwark_api::releases::{
    MAX_METADATA_BYTES, MAX_TARGET_BYTES, ReleaseFileStored, ReleaseFileUpload,
    ReleaseMetadataView, is_metadata_name, is_target_path,
};
use bulwark_store::{AuditAction, ReleaseFileKind};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;

/// Stores one file of a release repository (owners): TUF metadata (`metadata`, at most 1 MiB, a name such as `timestamp.json` or `2.root.json`) or a target (`target`, at most 64 MiB, a `/`-separated path). Replaces a file of the same name. Recorded as `release.imported` in the MSP log. Nothing is verified that an agent relies on: agents verify every file with their own release root.
#[utoipa::path(post, path = "/api/v1/releases/files", tag = "releases",
    request_body = ReleaseFileUpload,
    responses((status = 200, body = ReleaseFileStored), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn upload_file(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(upload): ApiJson<ReleaseFileUpload>,
) -> Result<Json<ReleaseFileStored>, ApiError> {
    caller.require(Action::ImportRelease)?;
    let (kind, max) = match upload.kind.as_str() {
        "metadata" if is_metadata_name(&upload.path) => {
            (ReleaseFileKind::Metadata, MAX_METADATA_BYTES)
        }
        "metadata" => {
            return Err(ApiError::bad_request(
                "a metadata name is root.json, timestamp.json, snapshot.json or targets.json, \
                 optionally after a version: 2.root.json",
            ));
        }
        "target" if is_target_path(&upload.path) => (ReleaseFileKind::Target, MAX_TARGET_BYTES),
        "target" => {
            return Err(ApiError::bad_request(
                "a target path is 1 to 8 `/`-separated parts of letters, digits, `.`, `_` and `-`",
            ));
        }
        _ => return Err(ApiError::bad_request("kind is metadata or target")),
    };
    if upload.content.len() > max / 3 * 4 + 4 {
        return Err(ApiError::bad_request(format!(
            "{} is larger than {max} bytes",
            upload.path
        )));
    }
    let content = B64
        .decode(upload.content.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("content is not base64: {e}")))?;
    if content.len() > max {
        return Err(ApiError::bad_request(format!(
            "{} is larger than {max} bytes",
            upload.path
        )));
    }
    // A metadata document must at least be JSON, so that a wrong file is
    // named now rather than by every agent later.
    if kind == ReleaseFileKind::Metadata
        && serde_json::from_slice::<serde_json::Value>(&content).is_err()
    {
        return Err(ApiError::bad_request(format!(
            "{} is not a JSON document",
            upload.path
        )));
    }
    let sha256 = hex::encode(Sha256::digest(&content));
    let event = audit_event(&caller, None, AuditAction::ReleaseImported, &upload.path).with_detail(
        format!(
            "{} {}: {} bytes, sha256 {sha256}",
            kind.as_str(),
            upload.path,
            content.len()
        ),
    );
    state
        .store
        .put_release_file(kind, &upload.path, &content, now_millis(), &event)
        .await?;
    Ok(Json(ReleaseFileStored {
        kind: kind.as_str().to_owned(),
        path: upload.path,
        bytes: content.len() as u64,
        sha256,
    }))
}

/// One TUF metadata document of the release mirror, byte for byte as imported. Verify it with your own release root: the server's word on it means nothing.
#[utoipa::path(get, path = "/api/v1/releases/metadata/{name}", tag = "releases",
    params(("name" = String, Path, description = "root.json, 2.root.json, timestamp.json, 3.snapshot.json, targets.json, ...")),
    responses((status = 200, body = ReleaseMetadataView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn metadata(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ReleaseMetadataView>, ApiError> {
    caller.require(Action::ViewReleases)?;
    if !is_metadata_name(&name) {
        return Err(ApiError::not_found("release metadata"));
    }
    let content = state
        .store
        .release_file(ReleaseFileKind::Metadata, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("release metadata"))?;
    Ok(Json(ReleaseMetadataView {
        name,
        content: B64.encode(content),
    }))
}
