//! The JSON API under `/api/v1/`, described by the OpenAPI document at
//! `/api/v1/openapi.json` (generated from these handlers).
//!
//! Public routes (no session): `GET /healthz`, `GET /api/v1/openapi.json`,
//! `POST /api/v1/setup`, `POST /api/v1/setup/confirm`, `POST /api/v1/auth/login`.
//! Agents enrol through the gateway, not this API. Every other route takes a
//! [`Caller`] and calls [`Caller::require`] before doing anything.

pub mod error;
pub mod views;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Json, Router};
use bulwark_protocol::token::{EnrollToken, fingerprint_text};
use futures_util::Stream;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;
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

/// Largest request body accepted anywhere.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest lifetime an enrolment token may be given.
const MAX_TOKEN_TTL_MINUTES: u32 = 7 * 24 * 60;

#[derive(OpenApi)]
#[openapi(
    info(title = "Bulwark API", description = "Remote monitoring and management where the customer's endpoints, not the server, decide what runs."),
    modifiers(&SecurityAddon),
    components(schemas(ErrorBody)),
    tags((name = "setup"), (name = "auth"), (name = "tenants"), (name = "devices"))
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
    OpenApiRouter::with_openapi(ApiDoc::openapi())
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
        .split_for_parts()
}

/// JSON body extractor whose rejections use the API's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

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
}

/// Step 2: proves the TOTP enrolment and creates the owner.
#[utoipa::path(post, path = "/api/v1/setup/confirm", tag = "setup", request_body = SetupConfirmRequest,
    responses((status = 201, body = OperatorView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn setup_confirm(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let operator = flows::setup_confirm(&state, &req.enrolment_id, &req.otp).await?;
    Ok((
        StatusCode::CREATED,
        Json(OperatorView {
            id: operator.id,
            username: operator.username,
            role: operator.role,
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
            online_count: i64::try_from(state.presence.online_in_tenant(&t.name))
                .unwrap_or_default(),
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
    let tenant = state.store.create_tenant(&req.name, now_millis()).await?;
    audit(
        &state,
        &caller,
        Some(&tenant.id),
        "tenant.created",
        &tenant.name,
    )
    .await;
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

pub async fn audit(
    state: &AppState,
    caller: &Caller,
    tenant_id: Option<&str>,
    action: &str,
    target: &str,
) {
    let event = bulwark_store::NewAuditEvent {
        at: now_millis(),
        tenant_id: tenant_id.map(str::to_owned),
        actor: caller.operator.username.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail: String::new(),
    };
    if let Err(error) = state.store.append_audit(event).await {
        tracing::error!(%error, action, "Cannot record audit event.");
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct EnrollmentTokenRequest {
    /// Lifetime in minutes (default 60, at most 10080).
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
}

/// Issues a one-time token; its tenant, expiry and hash are stored. The raw token is only in this response.
pub async fn issue_enrollment_token(
    state: &AppState,
    caller: &Caller,
    tenant_name: &str,
    ttl_minutes: u32,
) -> Result<EnrollmentTokenView, ApiError> {
    caller.require(Action::IssueEnrollmentToken)?;
    if !(1..=MAX_TOKEN_TTL_MINUTES).contains(&ttl_minutes) {
        return Err(ApiError::bad_request(format!(
            "ttl_minutes must be between 1 and {MAX_TOKEN_TTL_MINUTES}"
        )));
    }
    let tenant = state
        .store
        .tenant_by_name(&caller.scope(), tenant_name)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = EnrollToken {
        secret,
        ca_fingerprint: state.ca_fingerprint,
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
        )
        .await?;
    audit(
        state,
        caller,
        Some(&tenant.id),
        "enrollment_token.issued",
        &tenant.name,
    )
    .await;
    Ok(EnrollmentTokenView {
        token: token.to_string(),
        tenant: tenant.name,
        expires_at: crate::rfc3339(expires_at),
        ca_fingerprint: fingerprint_text(&state.ca_fingerprint),
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
    Path(tenant): Path<String>,
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
    caller.require(Action::ViewDevices)?;
    let scope = caller.scope();
    let tenant = state
        .store
        .tenant_by_name(&scope, tenant_name)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
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
    Path(tenant): Path<String>,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    Ok(Json(device_views(&state, &caller, &tenant).await?))
}

pub async fn device_view(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<DeviceView, ApiError> {
    caller.require(Action::ViewDevices)?;
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(ApiError::not_found("device"));
    }
    let device = state
        .store
        .device(&caller.scope(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("device"))?;
    Ok(DeviceView::new(
        &device,
        state.presence.is_online(&device.id),
        true,
    ))
}

/// One device with its inventory.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id (UUID)")),
    responses((status = 200, body = DeviceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
async fn get_device(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
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
    let visible: std::collections::HashSet<String> = state
        .store
        .list_tenants(&caller.scope())
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let stream = BroadcastStream::new(state.presence.subscribe()).filter_map(move |event| {
        let event = event.ok()?;
        if !visible.contains(&event.tenant) {
            return None;
        }
        Event::default()
            .event("presence")
            .json_data(&event)
            .ok()
            .map(Ok)
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
