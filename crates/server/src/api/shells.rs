//! Remote shells (RFD 0015): grants, their approvals and revocation, the
//! sessions opened under them and their recordings, and the relay's
//! WebSocket for the grantee's `bulwark shell`.
//!
//! The server stores and relays what people signed on their own machines;
//! it signs nothing, and the agent checks every grant and session-open
//! again (`bulwark_policy::shell`). Its checks here say early what an
//! agent would refuse, with the agent's own function (`verify_grant`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulwark_api::error::ErrorBody;
use bulwark_api::jobs::{QuorumView, SignerView};
use bulwark_api::shells::{
    ShellApprovalRequest, ShellGrantRequest, ShellGrantView, ShellRevokeRequest, ShellSessionView,
};
use bulwark_policy::envelope::SignatureEntry;
use bulwark_policy::shell::{RevokedGrants, ShellAccount, ShellGrant, verify_grant};
use bulwark_policy::{AgentContext, Policy, PublicKey, Signed, device_key_fingerprint};
use bulwark_protocol::message::{AgentMessage, ServerMessage};
use bulwark_protocol::{PROTOCOL_VERSION, decode_server_frame, encode_agent_frame};
use bulwark_store::{AuditAction, Device, ShellGrant as GrantRow, ShellSession, StoreError};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{info, warn};

use super::error::ApiError;
use super::refusals::base64_field;
use super::signing_keys::{own_keys, parse_key_id};
use super::tenants::tenant_for;
use super::trust::{TenantTrust, decode_envelope, limits, load_trust, now_secs};
use super::{ApiJson, ApiPath, audit_event};
use crate::auth::{Action, Caller};
use crate::shell_relay::ToClient;
use crate::state::AppState;
use crate::{now_millis, rfc3339};

/// How long the client has to send its session-open after the upgrade.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest WebSocket message the relay takes from a client: a
/// session-open (a grant and an open) or one sealed frame, with room.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// The relay's side of a client's socket (an HTTP/1.1 connection upgraded
/// by hand: axum's `ws` feature would link a second tungstenite).
type ClientSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The `Sec-WebSocket-Accept` of an RFC 6455 upgrade request, or why the
/// request is not one.
fn websocket_accept(headers: &HeaderMap) -> Result<String, ApiError> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let not_upgrade = || ApiError::bad_request("this route takes a WebSocket upgrade");
    if !has(header::CONNECTION, "upgrade")
        || !has(header::UPGRADE, "websocket")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
    {
        return Err(not_upgrade());
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(not_upgrade)?;
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

fn secs_rfc3339(secs: i64) -> String {
    rfc3339(secs.saturating_mul(1000))
}

/// The grant's state by the agent's own rule, checked against what the
/// server knows of the device now.
fn grant_state(
    row: &GrantRow,
    device: Option<&Device>,
    trust: &TenantTrust,
    now: u64,
) -> (&'static str, Option<QuorumView>) {
    if row.revoked_at.is_some() {
        return ("revoked", None);
    }
    if u64::try_from(row.grant.expires_at).unwrap_or_default() <= now {
        return ("expired", None);
    }
    let limits = limits();
    let (Ok(signed), Some(policy), Some(device)) = (
        Signed::from_bytes(&row.grant.envelope, &limits),
        trust.policy(),
        device,
    ) else {
        return ("pending", None);
    };
    let Ok(public_key) = <[u8; 32]>::try_from(device.public_key.as_slice()) else {
        return ("pending", None);
    };
    let quorum = quorum_view(&signed, policy);
    let context = AgentContext {
        tenant: &row.grant.tenant_id,
        device_id: &device.id,
        hostname: &device.hostname,
        device_key: &device_key_fingerprint(&public_key),
        policy,
        freeze: trust.freeze(),
    };
    // The agent's own check, at a time inside the window (not_before may
    // be a little ahead of this clock).
    let at = now.max(u64::try_from(row.grant.not_before).unwrap_or_default());
    match verify_grant(&signed, context, &RevokedGrants::default(), at, &limits) {
        Ok(_) => ("approved", quorum),
        Err(_) => ("pending", quorum),
    }
}

fn quorum_view(signed: &Signed, policy: &Policy) -> Option<QuorumView> {
    let grant: ShellGrant = signed.statement(&limits()).ok()?;
    let class = grant.account.class();
    let quorum = policy.quorum(class)?;
    let mut need = usize::try_from(quorum.signers).unwrap_or(usize::MAX);
    if grant.account == ShellAccount::Root {
        need = need.max(2);
    }
    let have = signed.tally(policy.signers_for(class, None)).valid.len();
    let customer_signed = !signed
        .tally(policy.signers_for(class, Some(bulwark_policy::Holder::Customer)))
        .valid
        .is_empty();
    Some(QuorumView {
        have,
        need,
        customer_required: quorum.customer_required,
        customer_signed,
    })
}

pub(crate) async fn grant_view(
    state: &AppState,
    caller: &Caller,
    row: &GrantRow,
) -> Result<ShellGrantView, ApiError> {
    let device = state
        .store
        .device(&caller.scope(), &row.grant.device_id)
        .await?;
    let set = state
        .store
        .trust_statements(&caller.scope(), &row.grant.tenant_id)
        .await?;
    let trust = TenantTrust::load(&row.grant.tenant_id, &set);
    let (grant_state, quorum) = grant_state(row, device.as_ref(), &trust, now_secs());
    let policy = trust.policy();
    let signers = Signed::from_bytes(&row.grant.envelope, &limits())
        .map(|s| {
            s.signatures
                .iter()
                .map(|e| SignerView {
                    key_id: hex::encode(e.key_id.0),
                    name: policy.and_then(|p| {
                        p.operators
                            .iter()
                            .find(|o| o.key.id() == e.key_id)
                            .map(|o| o.name.clone())
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    let name_of = |id: &str| {
        let id = id.to_owned();
        async move {
            state
                .store
                .operator_by_id(&id)
                .await
                .map(|o| o.map_or(id, |o| o.username))
        }
    };
    Ok(ShellGrantView {
        id: row.grant.id.clone(),
        tenant: device
            .as_ref()
            .map(|d| d.tenant_name.clone())
            .unwrap_or_default(),
        device_id: row.grant.device_id.clone(),
        hostname: device.as_ref().map(|d| d.hostname.clone()),
        device_public_key: device.as_ref().map(|d| hex::encode(&d.public_key)),
        requested_by: name_of(&row.grant.requested_by).await?,
        grantee_key: row.grant.grantee_key.clone(),
        account: row.grant.account.clone(),
        reason: row.grant.reason.clone(),
        not_before: secs_rfc3339(row.grant.not_before),
        expires_at: secs_rfc3339(row.grant.expires_at),
        created_at: rfc3339(row.created_at),
        revoked_at: row.revoked_at.map(rfc3339),
        revoked_by: match &row.revoked_by {
            Some(id) => Some(name_of(id).await?),
            None => None,
        },
        state: grant_state.to_owned(),
        signers,
        quorum,
        envelope: base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &row.grant.envelope,
        ),
    })
}

async fn session_view(state: &AppState, s: ShellSession) -> Result<ShellSessionView, ApiError> {
    let operator = state
        .store
        .operator_by_id(&s.operator_id)
        .await?
        .map_or(s.operator_id.clone(), |o| o.username);
    Ok(ShellSessionView {
        id: s.id,
        grant_id: s.grant_id,
        device_id: s.device_id,
        operator,
        opened_at: rfc3339(s.opened_at),
        closed_at: s.closed_at.map(rfc3339),
        refusal: s.end.refusal,
        reason: (!s.end.reason.is_empty()).then_some(s.end.reason),
        recording_sha256: s.end.recording_sha256,
        recording_len: s.end.recording_len,
        truncated: s.end.truncated,
        stored_len: s.stored_len,
    })
}

/// A grant in the caller's scope, with `action` required on its tenant.
async fn grant_in_scope(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<GrantRow, ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("shell grant"));
    }
    let row = state
        .store
        .shell_grant(&caller.scope(), &id.to_ascii_lowercase())
        .await?
        .ok_or_else(|| ApiError::not_found("shell grant"))?;
    caller.require_in(action, &row.grant.tenant_id)?;
    Ok(row)
}

/// Asks for a shell on one device: a grant the requester signed with their
/// own key, naming that key as grantee. It is pending until the tenant
/// policy's quorum for `open-shell` (or `open-admin-shell`: at least two
/// signers, one another operator) has signed it (`bulwark shell approve`).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/shell-grants", tag = "shells",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = ShellGrantRequest,
    responses((status = 201, body = ShellGrantView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn request_shell_grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<ShellGrantRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::RequestShell).await?;
    let limits = limits();
    let signed = decode_envelope(&req.envelope)?;
    let grant: ShellGrant = signed
        .statement(&limits)
        .map_err(|e| ApiError::bad_request(format!("not a shell grant: {e}")))?;
    grant
        .validate(&limits)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if grant.tenant != tenant.id || grant.tenant_name != tenant.name {
        return Err(ApiError::bad_request(
            "the grant names another tenant (its id and name must be this tenant's)",
        ));
    }
    if grant.expires_at <= now_secs() {
        return Err(ApiError::bad_request("the grant has already expired"));
    }
    let device = state
        .store
        .device(&caller.scope(), &grant.device.device_id)
        .await?
        .filter(|d| d.tenant_id == tenant.id)
        .ok_or_else(|| ApiError::bad_request("the grant names no device of this tenant"))?;
    if !bulwark_policy::same_hostname(&device.hostname, &grant.device.hostname) {
        return Err(ApiError::bad_request(format!(
            "device {} is called {:?}, not {:?}: its agent would refuse the grant",
            device.id, device.hostname, grant.device.hostname
        )));
    }
    let fingerprint: [u8; 32] = Sha256::digest(&device.public_key).into();
    if grant.device.device_key != Some(fingerprint) {
        return Err(ApiError::bad_request(
            "the grant must name the device's key fingerprint (the key `bulwark shell` pins)",
        ));
    }
    // The grantee is the requester, with one of their own registered keys.
    let own = own_keys(&state, &caller).await?;
    let grantee = own
        .iter()
        .find(|k| k.id() == grant.grantee)
        .ok_or_else(|| {
            ApiError::bad_request("the grantee must be one of your registered signing keys")
        })?;
    if signed.tally(std::iter::once(grantee)).valid.is_empty() {
        return Err(ApiError::bad_request(
            "the grant must carry the grantee's valid signature",
        ));
    }
    let trust = load_trust(&state, &caller, &tenant).await?;
    trust.require_intact()?;
    if trust.policy().is_none() {
        return Err(ApiError::conflict(
            "the tenant has no policy yet: run `bulwark tenant init`",
        ));
    }
    let id = hex::encode(grant.grant_id);
    let row = bulwark_store::NewShellGrant {
        id: id.clone(),
        tenant_id: tenant.id.clone(),
        device_id: device.id.clone(),
        requested_by: caller.operator.id.clone(),
        grantee_key: hex::encode(grant.grantee.0),
        account: grant.account.name().to_owned(),
        reason: grant.reason.clone(),
        not_before: i64::try_from(grant.not_before).unwrap_or(i64::MAX),
        expires_at: i64::try_from(grant.expires_at).unwrap_or(i64::MAX),
        envelope: signed.to_bytes(),
    };
    let event = audit_event(
        &caller,
        Some(&tenant.id),
        AuditAction::ShellGrantRequested,
        &id,
    )
    .with_detail(format!(
        "{} shell on {} ({}) until {}: {}",
        grant.account.name(),
        device.hostname,
        device.id,
        secs_rfc3339(row.expires_at),
        grant.reason
    ));
    match state
        .store
        .create_shell_grant(&row, now_millis(), &[event])
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::conflict("a grant with this id exists"));
        }
        Err(e) => return Err(e.into()),
    }
    let stored = grant_in_scope(&state, &caller, &id, Action::ViewShells).await?;
    Ok((
        StatusCode::CREATED,
        Json(grant_view(&state, &caller, &stored).await?),
    ))
}

/// A tenant's shell grants, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/shell-grants", tag = "shells",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<ShellGrantView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_shell_grants(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<ShellGrantView>>, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::ViewShells).await?;
    let rows = state
        .store
        .shell_grants(&caller.scope(), &tenant.id)
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        views.push(grant_view(&state, &caller, row).await?);
    }
    Ok(Json(views))
}

/// One grant, with its envelope (what `bulwark shell approve` verifies and signs).
#[utoipa::path(get, path = "/api/v1/shell-grants/{id}", tag = "shells",
    params(("id" = String, Path, description = "Grant id (32 hex characters)")),
    responses((status = 200, body = ShellGrantView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn get_shell_grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ShellGrantView>, ApiError> {
    let row = grant_in_scope(&state, &caller, &id, Action::ViewShells).await?;
    Ok(Json(grant_view(&state, &caller, &row).await?))
}

/// Adds the caller's Ed25519 signature, made by their own `bulwark shell
/// approve`, to a grant. The requester cannot approve their own grant.
#[utoipa::path(post, path = "/api/v1/shell-grants/{id}/approvals", tag = "shells",
    params(("id" = String, Path, description = "Grant id (32 hex characters)")), request_body = ShellApprovalRequest,
    responses((status = 200, body = ShellGrantView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn approve_shell_grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ShellApprovalRequest>,
) -> Result<Json<ShellGrantView>, ApiError> {
    let row = grant_in_scope(&state, &caller, &id, Action::ApproveShell).await?;
    if row.revoked_at.is_some() {
        return Err(ApiError::conflict("the grant is revoked"));
    }
    if u64::try_from(row.grant.expires_at).unwrap_or_default() <= now_secs() {
        return Err(ApiError::conflict("the grant has expired"));
    }
    if row.grant.requested_by == caller.operator.id {
        return Err(ApiError::conflict(
            "the requester cannot approve their own grant: another person must",
        ));
    }
    let limits = limits();
    let mut signed =
        Signed::from_bytes(&row.grant.envelope, &limits).map_err(ApiError::internal)?;
    let key_id = parse_key_id(&req.key_id)?;
    let own = own_keys(&state, &caller).await?;
    let signer = own
        .iter()
        .find(|k| k.id() == key_id && matches!(k, PublicKey::Ed25519(_)))
        .ok_or_else(|| {
            ApiError::bad_request("key_id is not one of your registered Ed25519 signing keys")
        })?;
    if signed.signatures.iter().any(|e| e.key_id == key_id) {
        return Err(ApiError::conflict("this key has already signed the grant"));
    }
    if signed.signatures.len() >= limits.max_signatures {
        return Err(ApiError::conflict(
            "the grant carries the most signatures an envelope may hold",
        ));
    }
    let signature: [u8; 64] = base64_field("signature", &req.signature)?
        .try_into()
        .map_err(|_| ApiError::bad_request("signature must be 64 bytes"))?;
    signed.signatures.push(SignatureEntry {
        key_id,
        signature,
        webauthn: None,
    });
    if signed.tally(std::iter::once(signer)).valid.is_empty() {
        return Err(ApiError::bad_request(
            "the signature does not verify over this grant's envelope",
        ));
    }
    let event = audit_event(
        &caller,
        Some(&row.grant.tenant_id),
        AuditAction::ShellGrantApproved,
        &row.grant.id,
    )
    .with_detail(format!("signed with key {}", hex::encode(key_id.0)));
    match state
        .store
        .update_shell_grant_envelope(&row.grant.id, &signed.to_bytes(), &[event])
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(what)) => return Err(ApiError::conflict(what)),
        Err(e) => return Err(e.into()),
    }
    let row = grant_in_scope(&state, &caller, &row.grant.id, Action::ViewShells).await?;
    Ok(Json(grant_view(&state, &caller, &row).await?))
}

/// Revokes a grant: its live sessions end now (the relay stops and the
/// agent is told) and no session opens under it again.
#[utoipa::path(post, path = "/api/v1/shell-grants/{id}/revoke", tag = "shells",
    params(("id" = String, Path, description = "Grant id (32 hex characters)")), request_body = ShellRevokeRequest,
    responses((status = 200, body = ShellGrantView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn revoke_shell_grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ShellRevokeRequest>,
) -> Result<Json<ShellGrantView>, ApiError> {
    let row = grant_in_scope(&state, &caller, &id, Action::RevokeShell).await?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::bad_request("reason: 1 to 500 characters"));
    }
    let event = audit_event(
        &caller,
        Some(&row.grant.tenant_id),
        AuditAction::ShellGrantRevoked,
        &row.grant.id,
    )
    .with_detail(reason.to_owned());
    match state
        .store
        .revoke_shell_grant(&row.grant.id, &caller.operator.id, now_millis(), &[event])
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(what)) => return Err(ApiError::conflict(what)),
        Err(e) => return Err(e.into()),
    }
    if let Ok(bytes) =
        <[u8; 16]>::try_from(hex::decode(&row.grant.id).unwrap_or_default().as_slice())
    {
        state.presence.shells().revoke(
            &row.grant.device_id,
            bytes,
            u64::try_from(row.grant.expires_at).unwrap_or_default(),
        );
    }
    info!(grant = %row.grant.id, by = %caller.operator.username, "A shell grant was revoked.");
    let row = grant_in_scope(&state, &caller, &row.grant.id, Action::ViewShells).await?;
    Ok(Json(grant_view(&state, &caller, &row).await?))
}

/// A device's shell sessions, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/shell-sessions", tag = "shells",
    params(("id" = String, Path, description = "Device id (UUID)")),
    responses((status = 200, body = Vec<ShellSessionView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn device_shell_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<ShellSessionView>>, ApiError> {
    let device = super::devices::visible_device(&state, &caller, &id).await?;
    caller.require_in(Action::ViewShells, &device.tenant_id)?;
    let sessions = state
        .store
        .shell_sessions(&caller.scope(), &device.id)
        .await?;
    let mut views = Vec::with_capacity(sessions.len());
    for s in sessions {
        views.push(session_view(&state, s).await?);
    }
    Ok(Json(views))
}

/// A tenant's shell sessions, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/shell-sessions", tag = "shells",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Vec<ShellSessionView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn tenant_shell_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<ShellSessionView>>, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, Action::ViewShells).await?;
    let sessions = state
        .store
        .tenant_shell_sessions(&caller.scope(), &tenant.id)
        .await?;
    let mut views = Vec::with_capacity(sessions.len());
    for s in sessions {
        views.push(session_view(&state, s).await?);
    }
    Ok(Json(views))
}

/// A finished session's recording (asciicast v2), exactly the bytes whose
/// SHA-256 the agent reported and the tenant's log holds (`shell.session`).
/// The server checks that digest before answering; `bulwark shell
/// recording` checks it again against the log.
#[utoipa::path(get, path = "/api/v1/shell-sessions/{id}/recording", tag = "shells",
    params(("id" = String, Path, description = "Session id (32 hex characters)")),
    responses((status = 200, description = "The asciicast v2 recording", content_type = "application/x-asciicast", body = String), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn shell_recording(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("shell session"));
    }
    let id = id.to_ascii_lowercase();
    let (session, bytes) = state
        .store
        .shell_recording(&caller.scope(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("shell session"))?;
    let grant = state
        .store
        .shell_grant(&caller.scope(), &session.grant_id)
        .await?
        .ok_or_else(|| ApiError::not_found("shell session"))?;
    caller.require_in(Action::ViewShellRecordings, &grant.grant.tenant_id)?;
    let (Some(digest), Some(len)) = (&session.end.recording_sha256, session.end.recording_len)
    else {
        return Err(ApiError::conflict(
            "this session has no recording (still open, or refused before it opened)",
        ));
    };
    if session.stored_len < len {
        return Err(ApiError::conflict(format!(
            "the agent has sent {} of the recording's {len} bytes so far",
            session.stored_len
        )));
    }
    if hex::encode(Sha256::digest(&bytes)) != *digest {
        warn!(session = %id, "A stored shell recording does not match its digest.");
        return Err(ApiError::conflict(
            "the stored recording does not match the digest its agent reported: it was changed in storage",
        ));
    }
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-asciicast"),
    );
    if let Ok(value) = HeaderValue::from_str(digest) {
        headers.insert("x-recording-sha256", value);
    }
    Ok(response)
}

/// The relay for the grantee's `bulwark shell`: a WebSocket whose first
/// binary message is a protocol frame (`ShellOpen`, the grant and the
/// session-open the grantee signed), then `ShellData` frames both ways
/// (sealed end to end: the server neither reads nor types). The device's
/// frames come back as agent frames (`ShellOpened`, `ShellData`,
/// `ShellClosed`). A revoke or the operator's disabling closes it.
#[utoipa::path(get, path = "/api/v1/shell-grants/{id}/connect", tag = "shells",
    params(("id" = String, Path, description = "Grant id (32 hex characters)")),
    responses((status = 101, description = "Switching to the relay's WebSocket"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn connect_shell(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    mut request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let row = grant_in_scope(&state, &caller, &id, Action::RequestShell).await?;
    if row.grant.requested_by != caller.operator.id {
        return Err(ApiError::forbidden());
    }
    if row.revoked_at.is_some() {
        return Err(ApiError::conflict("the grant is revoked"));
    }
    if u64::try_from(row.grant.expires_at).unwrap_or_default() <= now_secs() {
        return Err(ApiError::conflict("the grant has expired"));
    }
    if !state.presence.shells().agent_attached(&row.grant.device_id) {
        return Err(ApiError::conflict(
            crate::shell_relay::RelayError::DeviceOffline.to_string(),
        ));
    }
    let accept = websocket_accept(request.headers())?;
    let upgrade = hyper::upgrade::on(&mut request);
    let operator = caller.operator.clone();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                warn!(%error, "A shell client's upgrade failed.");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        relay_client(state, operator, row, socket).await;
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|_| ApiError::bad_request("bad key"))?,
    );
    Ok(response)
}

async fn relay_client(
    state: AppState,
    operator: bulwark_store::Operator,
    row: GrantRow,
    mut socket: ClientSocket,
) {
    let limits = bulwark_protocol::Limits::default();
    let first = tokio::time::timeout(OPEN_TIMEOUT, socket.next()).await;
    let open = match first {
        Ok(Some(Ok(Message::Binary(bytes)))) => decode_server_frame(&bytes, &limits),
        _ => {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let open = match open {
        Ok(frame) => match frame.message {
            ServerMessage::ShellOpen(open) => open,
            _ => return close(socket, "the first frame must be a ShellOpen").await,
        },
        Err(e) => return close(socket, &format!("not a protocol frame: {e}")).await,
    };
    // The grant sent is the one this route is for (the agent verifies it).
    let grant_id = match Signed::from_bytes(&open.grant, &Default::default())
        .ok()
        .and_then(|s| s.statement::<ShellGrant>(&Default::default()).ok())
    {
        Some(g) if hex::encode(g.grant_id) == row.grant.id => g.grant_id,
        _ => return close(socket, "the frame carries another grant").await,
    };
    let session_id = open.session_id;
    let session_hex = hex::encode(session_id);
    let event = bulwark_store::NewAuditEvent::new(
        now_millis(),
        &operator.username,
        AuditAction::ShellSessionOpened,
        &session_hex,
    )
    .in_tenant(Some(&row.grant.tenant_id))
    .with_detail(format!(
        "grant {} on device {}",
        row.grant.id, row.grant.device_id
    ));
    if let Err(error) = state
        .store
        .open_shell_session(
            &session_hex,
            &row.grant.id,
            &operator.id,
            now_millis(),
            &[event],
        )
        .await
    {
        return close(socket, &format!("cannot open the session: {error}")).await;
    }
    let relay = state.presence.shells().clone();
    let mut from_agent = match relay.open(&row.grant.device_id, grant_id, &operator.id, open) {
        Ok(receiver) => receiver,
        Err(error) => return close(socket, &error.to_string()).await,
    };
    info!(session = %session_hex, grant = %row.grant.id, operator = %operator.username, "Relaying a shell session.");
    let reason = loop {
        tokio::select! {
            next = from_agent.recv() => match next {
                Some(ToClient::Agent(message)) => {
                    let last = matches!(*message, AgentMessage::ShellClosed(_));
                    let Ok(bytes) = encode_agent_frame(PROTOCOL_VERSION, &message) else {
                        break "cannot encode a frame".to_owned();
                    };
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        break "the client went away".to_owned();
                    }
                    if last {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                }
                Some(ToClient::End(reason)) => {
                    close(socket, &reason).await;
                    return;
                }
                None => break "the relay ended".to_owned(),
            },
            next = socket.next() => match next {
                Some(Ok(Message::Binary(bytes))) => {
                    match decode_server_frame(&bytes, &limits).map(|f| f.message) {
                        Ok(ServerMessage::ShellData(data)) if data.session_id == session_id => {
                            if !relay.client_data(session_id, data.sealed) {
                                break "the session is no longer relayed".to_owned();
                            }
                        }
                        Ok(ServerMessage::ShellClose(c)) if c.session_id == session_id => {
                            break format!("the client closed: {}", c.reason);
                        }
                        _ => break "the client sent a frame the relay does not take".to_owned(),
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => break "the client went away".to_owned(),
            },
        }
    };
    relay.client_gone(session_id, &reason);
    close(socket, &reason).await;
}

async fn close(mut socket: ClientSocket, reason: &str) {
    // A close frame's reason is at most 123 bytes.
    let mut reason: String = reason.chars().take(100).collect();
    while reason.len() > 120 {
        reason.pop();
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: reason.into(),
        })))
        .await;
}
