//! The MSP's script library (issue 15, RFD 0013): one library per server,
//! not per tenant.
//!
//! The server keeps scripts, immutable versions and reviews, and checks
//! what it is given with the same pure code the CLI runs
//! (`bulwark_scripts`): the author's and each reviewer's signed statement
//! names exactly this version (name, number, content hash, interpreter,
//! parameters), is signed by one of the caller's own registered keys, and
//! a reviewer is not the author. These checks are a courtesy: nobody
//! trusts the server's word on a review. The operator's `bulwark` verifies
//! every signature against a tenant's verified policy before it signs a
//! job, and agents only ever see a signed `RunScript` job.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_api::error::ErrorBody;
use bulwark_api::scripts::{
    ScriptCreateRequest, ScriptInterpreter, ScriptReviewRequest, ScriptReviewView,
    ScriptSummaryView, ScriptVersionRequest, ScriptVersionView, ScriptView,
};
use bulwark_policy::{Interpreter, Signed};
use bulwark_scripts::{
    Limits, ParamSpec, SignerRole, VersionFacts, check_content, check_description, check_name,
    content_hash, hash_hex, open_statement, parse_params, signer_among,
};
use bulwark_store::{
    AuditAction, NewScript, NewScriptVersion, Script, ScriptReview, ScriptVersion,
};

use super::error::ApiError;
use super::signing_keys::own_keys;
use super::trust::decode_envelope;
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::state::AppState;
use crate::{now_millis, rfc3339};

pub(crate) fn interpreter_of(api: ScriptInterpreter) -> Interpreter {
    match api {
        ScriptInterpreter::Sh => Interpreter::Sh,
        ScriptInterpreter::Bash => Interpreter::Bash,
        ScriptInterpreter::Python3 => Interpreter::Python3,
    }
}

fn api_interpreter(stored: &str) -> Result<ScriptInterpreter, ApiError> {
    match stored {
        "sh" => Ok(ScriptInterpreter::Sh),
        "bash" => Ok(ScriptInterpreter::Bash),
        "python3" => Ok(ScriptInterpreter::Python3),
        other => Err(ApiError::internal(format!(
            "stored script interpreter {other:?}"
        ))),
    }
}

/// The stored parameter schema as lines (`name:type`).
pub(crate) fn param_lines(stored: &str) -> Vec<String> {
    stored
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn bad(error: bulwark_scripts::ScriptError) -> ApiError {
    ApiError::bad_request(error.to_string())
}

/// A checked new version: the schema parsed, the content within its caps,
/// and the author's statement naming exactly it, signed by one of the
/// caller's own keys.
async fn checked_version(
    state: &AppState,
    caller: &Caller,
    name: &str,
    req: &ScriptVersionRequest,
) -> Result<NewScriptVersion, ApiError> {
    let limits = Limits::default();
    let (version, interpreter, content) = (req.version, req.interpreter, req.content.as_str());
    let specs: Vec<ParamSpec> = parse_params(&req.params, &limits).map_err(bad)?;
    check_content(content, &limits).map_err(bad)?;
    let signed = decode_envelope(&req.author_envelope)?;
    let facts = VersionFacts {
        name,
        version,
        content,
        interpreter: interpreter_of(interpreter),
        params: &specs,
    };
    open_statement(&signed, &facts, SignerRole::Author)
        .map_err(|e| ApiError::bad_request(format!("author_envelope: {e}")))?;
    require_own_signature(state, caller, &signed, "author_envelope").await?;
    Ok(NewScriptVersion {
        version,
        interpreter: interpreter.name().to_owned(),
        params: specs
            .iter()
            .map(ParamSpec::to_text)
            .collect::<Vec<_>>()
            .join("\n"),
        content: content.to_owned(),
        sha256: hash_hex(&content_hash(content)),
        author_id: caller.operator.id.clone(),
        author_envelope: signed.to_bytes(),
    })
}

/// The envelope's one signature verifies under one of the caller's own
/// unrevoked signing keys.
async fn require_own_signature(
    state: &AppState,
    caller: &Caller,
    signed: &Signed,
    field: &str,
) -> Result<(), ApiError> {
    let keys: Vec<((), bulwark_policy::PublicKey)> = own_keys(state, caller)
        .await?
        .into_iter()
        .map(|k| ((), k))
        .collect();
    if signer_among(signed, &keys).is_none() {
        return Err(ApiError::bad_request(format!(
            "{field} is not signed by one of your registered signing keys (`bulwark keys register`)"
        )));
    }
    Ok(())
}

fn review_view(review: &ScriptReview) -> ScriptReviewView {
    ScriptReviewView {
        reviewer: review.reviewer_username.clone(),
        envelope: B64.encode(&review.envelope),
        created_at: rfc3339(review.created_at),
    }
}

fn version_view(
    name: &str,
    version: &ScriptVersion,
    reviews: &[ScriptReview],
    with_content: bool,
) -> Result<ScriptVersionView, ApiError> {
    Ok(ScriptVersionView {
        name: name.to_owned(),
        version: version.version,
        interpreter: api_interpreter(&version.interpreter)?,
        params: param_lines(&version.params),
        sha256: version.sha256.clone(),
        author: version.author_username.clone(),
        author_envelope: B64.encode(&version.author_envelope),
        created_at: rfc3339(version.created_at),
        reviews: reviews.iter().map(review_view).collect(),
        content: with_content.then(|| version.content.clone()),
    })
}

async fn script_named(state: &AppState, name: &str) -> Result<Script, ApiError> {
    state
        .store
        .script_by_name(name)
        .await?
        .ok_or_else(|| ApiError::not_found("script"))
}

/// The library, by name.
#[utoipa::path(get, path = "/api/v1/scripts", tag = "scripts",
    responses((status = 200, body = [ScriptSummaryView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_scripts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ScriptSummaryView>>, ApiError> {
    caller.require(Action::ViewScripts)?;
    let scripts = state.store.list_scripts().await?;
    Ok(Json(
        scripts
            .into_iter()
            .map(|s| ScriptSummaryView {
                name: s.name,
                description: s.description,
                latest_version: s.latest_version,
                latest_reviews: s.latest_reviews,
                created_at: rfc3339(s.created_at),
            })
            .collect(),
    ))
}

/// Adds a script with its version 1, signed by its author.
#[utoipa::path(post, path = "/api/v1/scripts", tag = "scripts", request_body = ScriptCreateRequest,
    responses((status = 201, body = ScriptVersionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn create_script(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ScriptCreateRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::ManageScripts)?;
    let limits = Limits::default();
    check_name(&req.name, &limits).map_err(bad)?;
    check_description(&req.description, &limits).map_err(bad)?;
    let first = ScriptVersionRequest {
        version: 1,
        interpreter: req.interpreter,
        params: req.params.clone(),
        content: req.content.clone(),
        author_envelope: req.author_envelope.clone(),
    };
    let version = checked_version(&state, &caller, &req.name, &first).await?;
    let script = NewScript {
        id: uuid::Uuid::new_v4().to_string(),
        name: req.name.clone(),
        description: req.description.clone(),
    };
    let event = audit_event(&caller, None, AuditAction::ScriptAdded, &req.name)
        .with_detail(format!("version 1 sha256 {}", version.sha256));
    let stored = state
        .store
        .create_script(&script, &version, now_millis(), &[event])
        .await?;
    let row = state
        .store
        .script_version(&stored.id, 1)
        .await?
        .ok_or_else(|| ApiError::internal("the new script's version 1 is missing"))?;
    Ok((
        StatusCode::CREATED,
        Json(version_view(&stored.name, &row, &[], false)?),
    ))
}

/// A script and its versions (newest first, without content).
#[utoipa::path(get, path = "/api/v1/scripts/{name}", tag = "scripts",
    params(("name" = String, Path, description = "Script name")),
    responses((status = 200, body = ScriptView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_script(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ScriptView>, ApiError> {
    caller.require(Action::ViewScripts)?;
    Ok(Json(script_view(&state, &name).await?))
}

pub(crate) async fn script_view(state: &AppState, name: &str) -> Result<ScriptView, ApiError> {
    let script = script_named(state, name).await?;
    let mut versions = Vec::new();
    for version in state.store.script_versions(&script.id).await? {
        let reviews = state
            .store
            .script_reviews(&script.id, version.version)
            .await?;
        versions.push(version_view(&script.name, &version, &reviews, false)?);
    }
    Ok(ScriptView {
        name: script.name,
        description: script.description,
        created_at: rfc3339(script.created_at),
        versions,
    })
}

/// Adds the next version of a script, signed by its author.
#[utoipa::path(post, path = "/api/v1/scripts/{name}/versions", tag = "scripts", request_body = ScriptVersionRequest,
    params(("name" = String, Path, description = "Script name")),
    responses((status = 201, body = ScriptVersionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn add_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ScriptVersionRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::ManageScripts)?;
    let script = script_named(&state, &name).await?;
    let version = checked_version(&state, &caller, &script.name, &req).await?;
    let event =
        audit_event(&caller, None, AuditAction::ScriptVersionAdded, &script.name).with_detail(
            format!("version {} sha256 {}", version.version, version.sha256),
        );
    let row = state
        .store
        .add_script_version(&script.id, &version, now_millis(), &[event])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(version_view(&script.name, &row, &[], false)?),
    ))
}

/// One version with its content, its author's statement and its reviews.
#[utoipa::path(get, path = "/api/v1/scripts/{name}/versions/{version}", tag = "scripts",
    params(("name" = String, Path, description = "Script name"), ("version" = u32, Path, description = "Version number")),
    responses((status = 200, body = ScriptVersionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((name, version)): ApiPath<(String, u32)>,
) -> Result<Json<ScriptVersionView>, ApiError> {
    caller.require(Action::ViewScripts)?;
    let script = script_named(&state, &name).await?;
    let row = state
        .store
        .script_version(&script.id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("script version"))?;
    let reviews = state.store.script_reviews(&script.id, version).await?;
    Ok(Json(version_view(&script.name, &row, &reviews, true)?))
}

/// Records a review: the reviewer's signed statement over exactly this
/// version, by one of the caller's keys. The author cannot review.
#[utoipa::path(post, path = "/api/v1/scripts/{name}/versions/{version}/reviews", tag = "scripts", request_body = ScriptReviewRequest,
    params(("name" = String, Path, description = "Script name"), ("version" = u32, Path, description = "Version number")),
    responses((status = 201, body = ScriptVersionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn review_version(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((name, version)): ApiPath<(String, u32)>,
    ApiJson(req): ApiJson<ScriptReviewRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::ReviewScript)?;
    let script = script_named(&state, &name).await?;
    let row = state
        .store
        .script_version(&script.id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("script version"))?;
    if row.author_id == caller.operator.id {
        return Err(ApiError::conflict(
            "the author of a version cannot review it: another operator must",
        ));
    }
    let specs = parse_params(&param_lines(&row.params), &Limits::default())
        .map_err(|e| ApiError::internal(format!("stored script parameters: {e}")))?;
    let signed = decode_envelope(&req.envelope)?;
    let facts = VersionFacts {
        name: &script.name,
        version,
        content: &row.content,
        interpreter: interpreter_of(api_interpreter(&row.interpreter)?),
        params: &specs,
    };
    open_statement(&signed, &facts, SignerRole::Reviewer)
        .map_err(|e| ApiError::bad_request(format!("envelope: {e}")))?;
    require_own_signature(&state, &caller, &signed, "envelope").await?;
    let event = audit_event(&caller, None, AuditAction::ScriptReviewed, &script.name)
        .with_detail(format!("version {version} sha256 {}", row.sha256));
    state
        .store
        .add_script_review(
            &script.id,
            version,
            &caller.operator.id,
            &signed.to_bytes(),
            now_millis(),
            &[event],
        )
        .await?;
    let reviews = state.store.script_reviews(&script.id, version).await?;
    Ok((
        StatusCode::CREATED,
        Json(version_view(&script.name, &row, &reviews, false)?),
    ))
}
