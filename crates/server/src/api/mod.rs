//! The JSON API under `/api/v1/`, described by the OpenAPI document at
//! `/api/v1/openapi.json` (generated from these handlers).
//!
//! Public routes (no session): `GET /healthz`, `GET /api/v1/openapi.json`,
//! `POST /api/v1/setup`, `POST /api/v1/setup/confirm`, `POST /api/v1/auth/login`,
//! `POST /api/v1/invitations/redeem`, `POST /api/v1/invitations/confirm`,
//! `POST /api/v1/auth/passkey/options`, `POST /api/v1/auth/passkey/login`,
//! `POST /api/v1/auth/device`, `POST /api/v1/auth/device/token`.
//! Agents enrol through the gateway, not this API. Every other route takes a
//! [`Caller`] and calls [`Caller::require`] before doing anything, or, for an
//! action on one tenant, finds the tenant inside the caller's scope first (a
//! foreign tenant's object is a 404, never a 403) and then calls
//! [`Caller::require_in`] with it (a role lacking the action there is a 403).
//! `tests/authz_matrix.rs` tries every route of [`router`] as every role.
//! Privileged actions ([`crate::auth::policy::Action::privileged`]) also need
//! an MFA check within five minutes: `Caller::require` answers 403
//! `step_up_required` otherwise, and `POST /api/v1/auth/step-up` refreshes it.

pub mod device;
pub mod error;
pub mod jobs;
pub mod log;
pub mod operators;
pub mod passkeys;
pub mod refusals;
pub mod trust;
pub mod views;

pub use refusals::{ApiJson, ApiPath, with_api_errors};

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Json, Router};
use bulwark_protocol::token::{EnrollToken, fingerprint_text};
use futures_util::Stream;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::{ApiError, ErrorBody};
use self::views::{DeviceView, TenantView};
use crate::auth::flows::{self, ClientInfo, SessionKind};
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;

/// Largest request body accepted anywhere but job submission.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest job submission: the script (base64-free JSON text) and its envelope.
pub const MAX_JOB_BODY_BYTES: usize = 3 * jobs::MAX_SCRIPT_BYTES;

/// Longest lifetime an enrolment token may be given.
const MAX_TOKEN_TTL_MINUTES: u32 = 7 * 24 * 60;

#[derive(OpenApi)]
#[openapi(
    info(title = "Bulwark API", description = "Remote monitoring and management where the customer's endpoints, not the server, decide what runs. Every error answers `application/json` in the `ErrorBody` shape, including a 404 for a path no route has and a 405 (with `Allow`) for a method a path does not take; the one exception is `POST /api/v1/auth/device/token`, whose RFC 8628 answers (400) are a `DeviceTokenError`."),
    modifiers(&SecurityAddon),
    components(schemas(ErrorBody)),
    tags((name = "setup"), (name = "auth"), (name = "tenants"), (name = "devices"), (name = "operators"), (name = "trust"), (name = "jobs"), (name = "log", description = "The transparency logs, read-only but for announcing an export (POST .../log/exports records `log.exported`): entries (`leaf`: standard padded base64 of the exact leaf bytes, whose RFC 6962 leaf hash SHA-256(0x00 || leaf) is in the tree), roots and proof hashes (standard base64 of 32 bytes; RFC 9162 §2.1.3 and §2.1.4 proofs) and signed heads (`note`: the C2SP checkpoint signed as a Go signed note by the key of GET /api/v1/log/key, verbatim)."))
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::session::COOKIE_NAME,
            ))),
        );
    }
}

/// The API router and its OpenAPI document, built from the same handler list.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(setup_start))
        .routes(routes!(setup_confirm))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(create_enrollment_token))
        .routes(routes!(list_devices))
        .routes(routes!(get_device))
        .routes(routes!(events))
        .routes(routes!(list_lockouts))
        .routes(routes!(lift_lockout))
        .routes(routes!(list_audit))
        .routes(routes!(list_operators))
        .routes(routes!(list_invitations, create_invitation))
        .routes(routes!(revoke_invitation))
        .routes(routes!(redeem_invitation))
        .routes(routes!(confirm_invitation))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_other_sessions))
        .routes(routes!(disable_operator))
        .routes(routes!(step_up))
        .routes(routes!(regenerate_recovery_codes))
        .routes(routes!(list_api_tokens, create_api_token))
        .routes(routes!(revoke_api_token))
        .routes(routes!(passkeys::list_passkeys))
        .routes(routes!(passkeys::registration_options))
        .routes(routes!(passkeys::register_passkey))
        .routes(routes!(passkeys::rename_passkey, passkeys::remove_passkey))
        .routes(routes!(passkeys::login_options))
        .routes(routes!(passkeys::passkey_login))
        .routes(routes!(passkeys::step_up_options))
        .routes(routes!(passkeys::step_up_passkey))
        .routes(routes!(
            passkeys::get_passkey_policy,
            passkeys::set_passkey_policy
        ))
        .routes(routes!(device::device_authorization))
        .routes(routes!(device::device_token))
        .routes(routes!(device::device_approval_options))
        .routes(routes!(device::device_approve))
        .routes(routes!(device::device_deny))
        .routes(routes!(operators::set_operator_grants))
        .routes(routes!(operators::reset_operator_passkeys))
        .routes(routes!(jobs::get_trust))
        .routes(routes!(jobs::publish_root))
        .routes(routes!(jobs::publish_policy))
        .routes(routes!(jobs::publish_freeze))
        .routes(routes!(trust::list_proposals, trust::create_proposal))
        .routes(routes!(trust::get_proposal))
        .routes(routes!(trust::sign_proposal))
        .routes(routes!(jobs::register_signing_key, jobs::list_signing_keys))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::approve_job))
        .routes(routes!(jobs::reject_job))
        .routes(routes!(log::log_key))
        .routes(routes!(log::tenant_log_head))
        .routes(routes!(log::tenant_log_statements))
        .routes(routes!(log::tenant_log_entries))
        .routes(routes!(log::tenant_log_checkpoints))
        .routes(routes!(log::tenant_log_inclusion))
        .routes(routes!(log::tenant_log_consistency))
        .routes(routes!(log::tenant_log_export))
        .routes(routes!(log::msp_log_head))
        .routes(routes!(log::msp_log_entries))
        .routes(routes!(log::msp_log_checkpoints))
        .routes(routes!(log::msp_log_inclusion))
        .routes(routes!(log::msp_log_consistency))
        .routes(routes!(log::msp_log_export))
        // A job carries its script: a larger body than anywhere else.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(jobs::create_job))
                .layer(axum::extract::DefaultBodyLimit::max(MAX_JOB_BODY_BYTES)),
        )
        .split_for_parts();
    refusals::RefusedRequests.modify(&mut doc);
    (router, doc)
}

pub fn client_info(addr: Option<SocketAddr>, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: addr.map(|a| a.ip().to_string()).unwrap_or_default(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    }
}

#[derive(Serialize, ToSchema)]
struct Health {
    status: &'static str,
}

/// Liveness: no authentication, no storage access.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetupRequest {
    /// The one-time setup code `bulwark up` printed.
    code: String,
    username: String,
    /// At least 12 characters.
    password: String,
}

#[derive(Serialize, ToSchema)]
struct SetupResponse {
    enrolment_id: String,
    /// Base32 TOTP secret (SHA-1, 6 digits, 30 s).
    totp_secret: String,
    otpauth_url: String,
    qr_svg: String,
}

/// Step 1 of creating the first owner. Only works while no operator exists.
#[utoipa::path(post, path = "/api/v1/setup", tag = "setup", request_body = SetupRequest,
    responses((status = 201, body = SetupResponse), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn setup_start(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let started = flows::setup_start(&state, &req.code, &req.username, &req.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(SetupResponse {
            enrolment_id: started.enrolment_id,
            totp_secret: started.totp_secret,
            otpauth_url: started.otpauth_url,
            qr_svg: started.qr_svg,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetupConfirmRequest {
    enrolment_id: String,
    /// A current code from the authenticator holding the new secret.
    otp: String,
}

#[derive(Serialize, ToSchema)]
struct OperatorView {
    id: String,
    username: String,
    role: String,
    /// One-time recovery codes, usable in place of a TOTP code at login
    /// (each once). Shown only in this response; stored hashed.
    recovery_codes: Vec<String>,
}

/// Step 2: proves the TOTP enrolment and creates the owner.
#[utoipa::path(post, path = "/api/v1/setup/confirm", tag = "setup", request_body = SetupConfirmRequest,
    responses((status = 201, body = OperatorView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn setup_confirm(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (operator, recovery_codes) =
        flows::setup_confirm(&state, &req.enrolment_id, &req.otp).await?;
    Ok((
        StatusCode::CREATED,
        Json(OperatorView {
            id: operator.id,
            username: operator.username,
            role: operator.role,
            recovery_codes,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
    /// TOTP code: required, always.
    otp: String,
}

#[derive(Serialize, ToSchema)]
struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    expires_at: String,
}

/// Signs in with password and TOTP; returns a bearer token for the CLI and integrations.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let client = client_info(Some(peer), &headers);
    let login = flows::login(
        &state,
        &req.username,
        &req.password,
        &req.otp,
        SessionKind::Cli,
        &client,
    )
    .await?;
    Ok(Json(LoginResponse {
        token: login.token,
        expires_at: crate::rfc3339(login.expires_at),
    }))
}

/// Ends the calling session (its token stops working at once).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    flows::logout(&state, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tenant_views(state: &AppState, caller: &Caller) -> Result<Vec<TenantView>, ApiError> {
    let tenants = state.store.list_tenants(&caller.scope()).await?;
    Ok(tenants
        .into_iter()
        .map(|t| TenantView {
            online_count: i64::try_from(state.presence.online_in_tenant(&t.id)).unwrap_or_default(),
            id: t.id,
            name: t.name,
            device_count: t.device_count,
        })
        .collect())
}

/// Tenants the caller may see.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants",
    responses((status = 200, body = [TenantView]), (status = 401, body = ErrorBody)), security(("bearer" = []), ("session_cookie" = [])))]
async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TenantView>>, ApiError> {
    caller.require(Action::ListTenants)?;
    Ok(Json(tenant_views(&state, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenantRequest {
    /// Short name: lower-case letters, digits and '-', 2 to 63 characters.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,62}$")]
    name: String,
}

pub fn check_tenant_name(name: &str) -> Result<(), ApiError> {
    let ok = (2..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "a tenant name is 2 to 63 lower-case letters, digits or '-'",
        ))
    }
}

/// Creates a tenant (a customer).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenantRequest,
    responses((status = 201, body = TenantView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTenantRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::CreateTenant)?;
    check_tenant_name(&req.name)?;
    let tenant = state
        .store
        .create_tenant(&req.name, now_millis(), |tenant| {
            vec![audit_event(
                &caller,
                Some(&tenant.id),
                "tenant.created",
                &tenant.name,
            )]
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantView {
            id: tenant.id,
            name: tenant.name,
            device_count: 0,
            online_count: 0,
        }),
    ))
}

/// The audit event of `caller` doing `action` on `target`, for a store
/// method that records it in the change's own transaction.
pub fn audit_event(
    caller: &Caller,
    tenant_id: Option<&str>,
    action: &str,
    target: &str,
) -> bulwark_store::NewAuditEvent {
    bulwark_store::NewAuditEvent::new(now_millis(), &caller.operator.username, action, target)
        .in_tenant(tenant_id)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct EnrollmentTokenRequest {
    /// Lifetime in minutes (default 60, at most 10080).
    #[schema(minimum = 1, maximum = 10080)]
    #[serde(default, deserialize_with = "refusals::optional_whole_number")]
    ttl_minutes: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollmentTokenView {
    /// Give to `bulwark-agent enroll --token`; shown once, stored hashed.
    pub token: String,
    pub tenant: String,
    pub expires_at: String,
    /// The CA the agent will pin, as people compare it.
    pub ca_fingerprint: String,
    /// The tenant trust root the agent will pin (SHA-256 of the first root).
    pub root_fingerprint: String,
}

/// Issues a one-time token; its tenant, expiry and hash are stored. The raw token is only in this response.
pub async fn issue_enrollment_token(
    state: &AppState,
    caller: &Caller,
    tenant_name: &str,
    ttl_minutes: u32,
) -> Result<EnrollmentTokenView, ApiError> {
    let tenant = jobs::tenant_for(state, caller, tenant_name, Action::IssueEnrollmentToken).await?;
    if !(1..=MAX_TOKEN_TTL_MINUTES).contains(&ttl_minutes) {
        return Err(ApiError::bad_request(format!(
            "ttl_minutes must be between 1 and {MAX_TOKEN_TTL_MINUTES}"
        )));
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    // The agent pins the tenant's first root before the server shows it anything.
    let root_fingerprint = jobs::root_fingerprint_for(state, caller, &tenant).await?;
    let token = EnrollToken {
        secret,
        ca_fingerprint: state.ca_fingerprint,
        root_fingerprint,
    };
    let now = now_millis();
    let expires_at = now + i64::from(ttl_minutes) * 60_000;
    state
        .store
        .create_enrollment_token(
            token.secret_hash(),
            &tenant.id,
            Some(&caller.operator.id),
            now,
            expires_at,
            &[audit_event(
                caller,
                Some(&tenant.id),
                "enrollment_token.issued",
                &tenant.name,
            )],
        )
        .await?;
    Ok(EnrollmentTokenView {
        token: token.to_string(),
        tenant: tenant.name,
        expires_at: crate::rfc3339(expires_at),
        ca_fingerprint: fingerprint_text(&state.ca_fingerprint),
        root_fingerprint: fingerprint_text(&root_fingerprint),
    })
}

/// Issues a one-time enrolment token for a tenant.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/enrollment-tokens", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")), request_body = EnrollmentTokenRequest,
    responses((status = 201, body = EnrollmentTokenView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn create_enrollment_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<EnrollmentTokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let view =
        issue_enrollment_token(&state, &caller, &tenant, req.ttl_minutes.unwrap_or(60)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn device_views(
    state: &AppState,
    caller: &Caller,
    tenant_name: &str,
) -> Result<Vec<DeviceView>, ApiError> {
    let scope = caller.scope();
    let tenant = jobs::tenant_for(state, caller, tenant_name, Action::ViewDevices).await?;
    let devices = state.store.list_devices(&scope, &tenant.id).await?;
    Ok(devices
        .iter()
        .map(|d| DeviceView::new(d, state.presence.is_online(&d.id), false))
        .collect())
}

/// Devices of a tenant with their online status.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/devices", tag = "devices",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [DeviceView]), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn list_devices(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    Ok(Json(device_views(&state, &caller, &tenant).await?))
}

pub async fn device_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<DeviceView, ApiError> {
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(ApiError::not_found("device"));
    }
    let device = state
        .store
        .device(&caller.scope(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    caller.require_in(Action::ViewDevices, &device.tenant_id)?;
    let mut view = DeviceView::new(&device, state.presence.is_online(&device.id), true);
    view.trust = state
        .store
        .device_trust(&caller.scope(), &device.id)
        .await?
        .map(Into::into);
    Ok(view)
}

/// One device with its inventory.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)")),
    responses((status = 200, body = DeviceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn get_device(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(device_view(&state, &caller, &id).await?))
}

/// Live presence changes (server-sent events, `event: presence`) for the tenants the caller may see.
#[utoipa::path(get, path = "/api/v1/events", tag = "devices",
    responses((status = 200, description = "text/event-stream of presence events", content_type = "text/event-stream"), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Action::WatchPresence)?;
    let visible = visible_tenants(&state, &caller).await?;
    let watch = Watch {
        events: state.presence.subscribe(),
        recheck: tokio::time::interval_at(
            tokio::time::Instant::now() + EVENTS_RECHECK,
            EVENTS_RECHECK,
        ),
        visible,
        state,
        caller,
    };
    // Ends when the session or token is revoked or expires, or its operator
    // is disabled (checked every EVENTS_RECHECK); grants are re-read then too.
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        loop {
            tokio::select! {
                received = watch.events.recv() => match received {
                    Ok(event) if watch.visible.contains(&event.tenant) => {
                        if let Ok(event) = Event::default().event("presence").json_data(&event) {
                            return Some((Ok(event), watch));
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = watch.recheck.tick() => {
                    if !matches!(watch.caller.still_valid(&watch.state).await, Ok(true)) {
                        return None;
                    }
                    watch.visible = visible_tenants(&watch.state, &watch.caller).await.ok()?;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// How often a live event stream re-checks its caller's credential and grants.
const EVENTS_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

struct Watch {
    events: tokio::sync::broadcast::Receiver<crate::presence::PresenceEvent>,
    recheck: tokio::time::Interval,
    visible: std::collections::HashSet<String>,
    state: AppState,
    caller: Caller,
}

async fn visible_tenants(
    state: &AppState,
    caller: &Caller,
) -> Result<std::collections::HashSet<String>, ApiError> {
    Ok(state
        .store
        .list_tenants(&caller.scope())
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect())
}

#[derive(Serialize, ToSchema)]
struct LockoutView {
    /// `user:<username>` (whether or not the account exists) or `addr:<client address>`.
    key: String,
    /// Failed or refused attempts in the current window.
    failures: i64,
    locked_until: String,
}

/// Usernames and client addresses locked out of logging in (too many failures).
#[utoipa::path(get, path = "/api/v1/lockouts", tag = "auth",
    responses((status = 200, body = [LockoutView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn list_lockouts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<LockoutView>>, ApiError> {
    caller.require(Action::ViewLockouts)?;
    let lockouts = state.store.list_lockouts(now_millis()).await?;
    Ok(Json(
        lockouts
            .into_iter()
            .map(|l| LockoutView {
                key: l.key,
                failures: l.counter.failures,
                locked_until: l
                    .counter
                    .locked_until
                    .map(crate::rfc3339)
                    .unwrap_or_default(),
            })
            .collect(),
    ))
}

/// Lifts a lockout: forgets the key's failures and lock at once.
#[utoipa::path(delete, path = "/api/v1/lockouts/{key}", tag = "auth",
    params(("key" = String, Path, description = "`user:<username>` or `addr:<client address>`")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn lift_lockout(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Action::LiftLockout)?;
    if !crate::auth::throttle::valid_key(&key) {
        return Err(ApiError::not_found("lockout"));
    }
    let lifted = state
        .store
        .clear_throttle(&key, now_millis(), |was_locked| {
            let action = if was_locked {
                "login.unlocked"
            } else {
                "login.throttle_cleared"
            };
            vec![audit_event(&caller, None, action, &key)]
        })
        .await;
    match lifted {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(bulwark_store::StoreError::NotFound) => Err(ApiError::not_found("lockout")),
        Err(error) => Err(error.into()),
    }
}

#[derive(Serialize, ToSchema)]
struct AuditEventView {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

/// How many events one audit listing returns, newest first.
const AUDIT_PAGE: i64 = 200;

/// A tenant's audit log, newest first (owners, security officers and the tenant's auditors).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/audit", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses((status = 200, body = [AuditEventView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<AuditEventView>>, ApiError> {
    let scope = caller.scope();
    let tenant = state
        .store
        .tenant_by_name(&scope, &tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    caller.require_in(Action::ViewAudit, &tenant.id)?;
    let events = state
        .store
        .list_audit(&scope, Some(&tenant.id), AUDIT_PAGE)
        .await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| AuditEventView {
                seq: e.seq,
                at: crate::rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct GrantView {
    pub tenant: String,
    /// `security_officer`, `technician`, `read_only` or `tenant_auditor`.
    pub role: String,
}

impl From<bulwark_store::Grant> for GrantView {
    fn from(g: bulwark_store::Grant) -> Self {
        Self {
            tenant: g.tenant_name,
            role: g.role,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OperatorSummary {
    pub id: String,
    pub username: String,
    /// `owner` (every tenant) or `operator` (the tenants in `grants`).
    pub account: String,
    pub disabled: bool,
    pub created_at: String,
    pub grants: Vec<GrantView>,
}

/// Operators as `caller` may see them: owners see every account; a security
/// officer sees the owners and the operators holding a role on a tenant where
/// it is security officer, with only those tenants' grants.
pub async fn operator_summaries(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<OperatorSummary>, ApiError> {
    caller.require(Action::ListOperators)?;
    let operators = state.store.list_operators().await?;
    Ok(operators
        .into_iter()
        .filter_map(|(operator, grants)| {
            let owner = operator.role == bulwark_store::ACCOUNT_OWNER;
            let grants: Vec<GrantView> = grants
                .into_iter()
                .filter(|g| caller.allows_in(Action::ListOperators, &g.tenant_id))
                .map(GrantView::from)
                .collect();
            (caller.is_owner() || owner || !grants.is_empty()).then(|| OperatorSummary {
                id: operator.id,
                username: operator.username,
                account: operator.role,
                disabled: operator.disabled_at.is_some(),
                created_at: crate::rfc3339(operator.created_at),
                grants,
            })
        })
        .collect())
}

/// Operator accounts and their grants (owners and security officers).
#[utoipa::path(get, path = "/api/v1/operators", tag = "operators",
    responses((status = 200, body = [OperatorSummary]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn list_operators(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<OperatorSummary>>, ApiError> {
    Ok(Json(operator_summaries(&state, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct InvitationRequest {
    /// 2 to 64 letters, digits, '.', '_', '-' or '@'.
    #[schema(pattern = "^[A-Za-z0-9._@-]{2,64}$")]
    username: String,
    /// `owner`, `security_officer`, `technician`, `read_only` or `tenant_auditor`.
    #[schema(value_type = crate::auth::Role)]
    role: String,
    /// Tenant names the role is granted on: none for an owner, exactly one for a tenant auditor.
    #[serde(default)]
    tenants: Vec<String>,
    /// Lifetime of the link in hours (default 72, at most 168).
    #[schema(minimum = 1, maximum = 168)]
    #[serde(default, deserialize_with = "refusals::optional_whole_number")]
    ttl_hours: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationView {
    pub id: String,
    pub username: String,
    /// The role granted (`owner` for an owner invitation).
    pub role: String,
    pub grants: Vec<GrantView>,
    pub created_at: String,
    pub expires_at: String,
}

impl From<bulwark_store::Invitation> for InvitationView {
    fn from(i: bulwark_store::Invitation) -> Self {
        Self {
            role: i
                .grants
                .first()
                .map_or_else(|| i.account_role.clone(), |g| g.role.clone()),
            id: i.id,
            username: i.username,
            grants: i.grants.into_iter().map(GrantView::from).collect(),
            created_at: crate::rfc3339(i.created_at),
            expires_at: crate::rfc3339(i.expires_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct InvitationCreated {
    #[serde(flatten)]
    invitation: InvitationView,
    /// The one-time secret of the link; shown once, stored hashed.
    token: String,
    /// The console path to send to the invited person (`/invite/<token>`).
    path: String,
}

/// Invites an operator by a one-time, expiring link (owners only).
#[utoipa::path(post, path = "/api/v1/invitations", tag = "operators", request_body = InvitationRequest,
    responses((status = 201, body = InvitationCreated), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn create_invitation(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<InvitationRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::InviteOperator)?;
    let role = crate::auth::Role::parse(&req.role).ok_or_else(|| {
        ApiError::bad_request(
            "role must be owner, security_officer, technician, read_only or tenant_auditor",
        )
    })?;
    let issued = crate::auth::invite::invite(
        &state,
        &caller,
        crate::auth::invite::InviteRequest {
            username: req.username,
            role,
            tenants: req.tenants,
            ttl_hours: req.ttl_hours,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(InvitationCreated {
            path: crate::auth::invite::invite_path(&issued.token),
            token: issued.token,
            invitation: issued.invitation.into(),
        }),
    ))
}

/// Invitations not yet redeemed, revoked or expired (owners only).
#[utoipa::path(get, path = "/api/v1/invitations", tag = "operators",
    responses((status = 200, body = [InvitationView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn list_invitations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<InvitationView>>, ApiError> {
    let pending = crate::auth::invite::pending(&state, &caller).await?;
    Ok(Json(
        pending.into_iter().map(InvitationView::from).collect(),
    ))
}

/// Revokes a pending invitation: its link stops working at once (owners only).
#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "operators",
    params(("id" = String, Path, description = "Invitation id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn revoke_invitation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::auth::invite::revoke(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RedeemRequest {
    /// The token from the invitation link.
    token: String,
    /// At least 12 characters.
    password: String,
}

/// Step 1 of accepting an invitation: choose a password, receive a TOTP secret.
#[utoipa::path(post, path = "/api/v1/invitations/redeem", tag = "operators", request_body = RedeemRequest,
    responses((status = 201, body = SetupResponse), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn redeem_invitation(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let started = crate::auth::invite::redeem(&state, &req.token, &req.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(SetupResponse {
            enrolment_id: started.enrolment_id,
            totp_secret: started.totp_secret,
            otpauth_url: started.otpauth_url,
            qr_svg: started.qr_svg,
        }),
    ))
}

/// Step 2: proves the TOTP enrolment; creates the operator with its grants and consumes the invitation.
#[utoipa::path(post, path = "/api/v1/invitations/confirm", tag = "operators", request_body = SetupConfirmRequest,
    responses((status = 201, body = OperatorView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn confirm_invitation(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (operator, _grants, recovery_codes) =
        crate::auth::invite::confirm(&state, &req.enrolment_id, &req.otp).await?;
    Ok((
        StatusCode::CREATED,
        Json(OperatorView {
            id: operator.id,
            username: operator.username,
            role: operator.role,
            recovery_codes,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// Public id (not a secret): name it to revoke the session.
    pub id: String,
    /// `browser` or `cli`.
    pub kind: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub ip: String,
    pub user_agent: String,
    /// The session this request came with.
    pub current: bool,
}

impl From<crate::auth::account::SessionInfo> for SessionView {
    fn from(s: crate::auth::account::SessionInfo) -> Self {
        Self {
            id: s.id,
            kind: s.kind.as_str().to_owned(),
            created_at: crate::rfc3339(s.created_at),
            last_seen_at: crate::rfc3339(s.last_seen_at),
            expires_at: crate::rfc3339(s.expires_at),
            ip: s.ip,
            user_agent: s.user_agent,
            current: s.current,
        }
    }
}

/// The caller's own sessions that still work, newest first.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "auth",
    responses((status = 200, body = [SessionView]), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sessions = crate::auth::account::sessions(&state, &caller).await?;
    Ok(Json(sessions.into_iter().map(SessionView::from).collect()))
}

/// Ends one of the caller's own sessions at once (another operator's session is a 404).
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "auth",
    params(("id" = String, Path, description = "Session id, as listed")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::auth::account::revoke_session(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
struct RevokedCount {
    revoked: u64,
}

/// Ends every session of the caller except the one making this request.
#[utoipa::path(post, path = "/api/v1/sessions/revoke-others", tag = "auth",
    responses((status = 200, body = RevokedCount), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn revoke_other_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RevokedCount>, ApiError> {
    let revoked = crate::auth::account::revoke_other_sessions(&state, &caller).await?;
    Ok(Json(RevokedCount { revoked }))
}

/// Disables an operator: every session it holds ends at once (owners only; step-up required).
#[utoipa::path(post, path = "/api/v1/operators/{id}/disable", tag = "operators",
    params(("id" = String, Path, description = "Operator id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn disable_operator(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::auth::account::disable_operator(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StepUpRequest {
    /// A current TOTP code (each time step works once).
    otp: String,
}

/// Confirms a fresh TOTP code: privileged actions are allowed on this session for five minutes.
#[utoipa::path(post, path = "/api/v1/auth/step-up", tag = "auth", request_body = StepUpRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn step_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    caller: Caller,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> Result<StatusCode, ApiError> {
    let client = client_info(Some(peer), &headers);
    crate::auth::account::step_up(&state, &caller, &req.otp, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
struct RecoveryCodes {
    /// One-time codes usable in place of a TOTP code at login; shown only
    /// now, stored hashed. Every earlier code stops working.
    recovery_codes: Vec<String>,
}

/// Replaces the caller's recovery codes (step-up required).
#[utoipa::path(post, path = "/api/v1/auth/recovery-codes", tag = "auth",
    responses((status = 201, body = RecoveryCodes), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let recovery_codes = crate::auth::account::regenerate_recovery_codes(&state, &caller).await?;
    Ok((StatusCode::CREATED, Json(RecoveryCodes { recovery_codes })))
}

#[derive(Serialize, ToSchema)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    /// The role held on each tenant in `tenants`.
    pub role: String,
    pub tenants: Vec<String>,
    pub created_at: String,
    pub expires_at: String,
    pub last_used_at: Option<String>,
}

impl From<bulwark_store::ApiToken> for ApiTokenView {
    fn from(t: bulwark_store::ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role,
            tenants: t.grants.into_iter().map(|g| g.tenant_name).collect(),
            created_at: crate::rfc3339(t.created_at),
            expires_at: crate::rfc3339(t.expires_at),
            last_used_at: t.last_used_at.map(crate::rfc3339),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ApiTokenRequest {
    /// What the token is for, e.g. "PSA sync": at most 64 characters, no
    /// control characters, not only spaces.
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: String,
    /// `security_officer`, `technician`, `read_only` or `tenant_auditor`:
    /// one you hold on every tenant named (owners: any).
    #[schema(pattern = "^(security_officer|technician|read_only|tenant_auditor)$")]
    role: String,
    /// Tenant names the role applies to (1 to 256).
    #[schema(min_items = 1, max_items = 256)]
    tenants: Vec<String>,
    /// Lifetime in days (default 90, at most 365).
    #[schema(minimum = 1, maximum = 365)]
    #[serde(default, deserialize_with = "refusals::optional_whole_number")]
    ttl_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct ApiTokenCreated {
    #[serde(flatten)]
    token: ApiTokenView,
    /// Send as `Authorization: Bearer <secret>`; shown once, stored hashed.
    secret: String,
}

/// Makes an API token for an integration (step-up required; never from another API token).
#[utoipa::path(post, path = "/api/v1/api-tokens", tag = "auth", request_body = ApiTokenRequest,
    responses((status = 201, body = ApiTokenCreated), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn create_api_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ApiTokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (secret, token) = crate::auth::account::create_api_token(
        &state,
        &caller,
        crate::auth::account::ApiTokenRequest {
            name: req.name,
            role: req.role,
            tenants: req.tenants,
            ttl_days: req.ttl_days,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiTokenCreated {
            token: token.into(),
            secret,
        }),
    ))
}

/// The caller's API tokens still in force, newest first.
#[utoipa::path(get, path = "/api/v1/api-tokens", tag = "auth",
    responses((status = 200, body = [ApiTokenView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn list_api_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ApiTokenView>>, ApiError> {
    let tokens = crate::auth::account::api_tokens(&state, &caller).await?;
    Ok(Json(tokens.into_iter().map(ApiTokenView::from).collect()))
}

/// Revokes one of the caller's API tokens at once (another operator's is a 404).
#[utoipa::path(delete, path = "/api/v1/api-tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "API token id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn revoke_api_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    crate::auth::account::revoke_api_token(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
