//! The web console: server-rendered pages (askama escapes every value by
//! default), one stylesheet and one script served from here, no inline
//! script or style, nothing fetched from elsewhere.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;

use crate::api::error::{ApiError, is_error, refusal, with_headers};
use crate::api::views::{DeviceView, InventoryView};
use crate::api::{
    ApiTokenView, EnrollmentTokenView, InvitationView, OperatorSummary, SessionView, client_info,
    device_view, device_views, issue_enrollment_token, operator_summaries,
};
use crate::auth::flows::{self, SessionKind};
use crate::auth::invite;
use crate::auth::session::{CookieCaller, clear_cookie, cross_origin_write, session_cookie};
use crate::auth::{Action, Caller, Standing};
use crate::state::AppState;

mod audit;
mod identity;

/// The console's routes. Two things hold for all of them:
///
/// - a form posted from another site is refused before its handler runs
///   ([`same_origin_forms`]), those needing no session too: `POST /login`,
///   `POST /setup`, `POST /setup/totp`, `POST /invite/{token}` and
///   `POST /invite/totp` (login CSRF); the signed-in ones (`/logout`,
///   `/device`, `/account/...`, `/operators/...`, ...) as well, besides their
///   own CSRF field;
/// - every error is an HTML page ([`html_errors`]), a 405 too.
pub fn router() -> Router<AppState> {
    pages()
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(same_origin_forms))
        .layer(axum::middleware::map_response(html_errors))
}

fn pages() -> Router<AppState> {
    Router::new()
        .merge(identity::router())
        .merge(audit::router())
        .route("/", get(home))
        .route("/setup", get(setup_page).post(setup_submit))
        .route("/setup/totp", post(setup_totp_submit))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/tenants", get(tenants_page))
        .route("/tenants/{tenant}", get(tenant_page))
        .route(
            "/tenants/{tenant}/enrollment-tokens",
            post(tenant_issue_token),
        )
        .route("/tenants/{tenant}/jobs", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/reject", post(job_reject))
        .route("/devices/{id}", get(device_page))
        .route("/invite/totp", post(invite_totp_submit))
        .route("/invite/{token}", get(invite_page).post(invite_submit))
        .route("/operators", get(operators_page))
        .route("/operators/invitations", post(operators_invite))
        .route("/operators/invitations/{id}/revoke", post(operators_revoke))
        .route("/operators/{id}/disable", post(operators_disable))
        .route("/account", get(account_page))
        .route("/account/sessions/{id}/revoke", post(account_revoke))
        .route(
            "/account/sessions/revoke-others",
            post(account_revoke_others),
        )
        .route("/account/step-up", post(account_step_up))
        .route("/account/recovery-codes", post(account_recovery_codes))
        .route("/account/api-tokens", post(account_create_token))
        .route(
            "/account/api-tokens/{id}/revoke",
            post(account_revoke_token),
        )
        .route(
            "/account/passkeys/{id}/remove",
            post(account_remove_passkey),
        )
        .route("/settings", get(settings_page))
        .route("/settings/passkey-policy", post(settings_passkey_policy))
        .route(
            "/assets/app.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../assets/app.css"))),
        )
        .route(
            "/assets/app.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/app.js"),
                )
            }),
        )
        .route(
            "/assets/passkeys.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/passkeys.js"),
                )
            }),
        )
        .route(
            "/assets/jobs.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/jobs.js"),
                )
            }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| asset("image/svg+xml", include_str!("../assets/favicon.svg"))),
        )
}

/// Login CSRF: an unsafe-method request from a page of another site is
/// refused with a 403 page, and nothing happens (no session, no cookie, no
/// throttle charge, no audit event). The decision is
/// [`crate::auth::session::cross_origin_write`], the one the API's session
/// check makes.
async fn same_origin_forms(request: axum::extract::Request, next: Next) -> Response {
    if cross_origin_write(request.method(), request.headers()) {
        return error_page(ApiError::cross_origin(), None);
    }
    next.run(request).await
}

/// An error response that is not a page yet (an extractor's rejection, a
/// handler's or extractor's [`ApiError`]) becomes the error page.
async fn html_errors(response: Response) -> Response {
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html || !is_error(response.status()) {
        return response;
    }
    let (error, headers) = refusal(response).await;
    with_headers(error_page(error, None), headers)
}

async fn method_not_allowed(method: Method) -> Response {
    error_page(
        ApiError::rejected(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("this page does not take {method}"),
        ),
        None,
    )
}

/// The page for a path no route has.
pub fn not_found_page() -> Response {
    error_page(ApiError::not_found("page"), None)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Who is signed in, as the page header shows it.
struct UserBar {
    username: String,
    role: &'static str,
    csrf: String,
    /// Show the Operators page in the navigation.
    operators: bool,
    /// Show the security settings page in the navigation.
    settings: bool,
    /// Show the MSP-wide audit log in the navigation.
    msp_log: bool,
}

impl UserBar {
    fn of(caller: &Caller) -> Option<Self> {
        Some(Self {
            username: caller.operator.username.clone(),
            role: caller.account_label(),
            csrf: caller.csrf_token.clone(),
            operators: caller.require(Action::ListOperators).is_ok(),
            settings: caller.require(Action::ViewPasskeyPolicy).is_ok(),
            msp_log: caller.require(Action::ViewMspLog).is_ok(),
        })
    }
}

fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

/// An error as a page, for people rather than programs.
fn error_page(error: ApiError, user: Option<UserBar>) -> Response {
    error_page_back(error, user, "/tenants")
}

/// [`error_page`]; a `step_up_required` refusal also shows the step-up form,
/// which returns to `next` (the page the action was on) once passed.
fn error_page_back(error: ApiError, user: Option<UserBar>, next: &str) -> Response {
    let status = error.status;
    let step_up = error.code == "step_up_required" && user.is_some();
    let csrf = user.as_ref().map(|u| u.csrf.clone()).unwrap_or_default();
    let title = if step_up {
        "Confirm it is you"
    } else {
        match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            _ if status.is_server_error() => "Something went wrong",
            _ => "Request refused",
        }
    };
    let passkey_required = error.code == "passkey_required" && user.is_some();
    let mut response = render(ErrorPage {
        user,
        version: crate::VERSION,
        title,
        message: error.message,
        step_up,
        passkey_required,
        csrf,
        next: next.to_owned(),
    });
    *response.status_mut() = status;
    response
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    user: Option<UserBar>,
    version: &'static str,
    title: &'static str,
    message: String,
    step_up: bool,
    /// The session may only register a passkey: point to the account page.
    passkey_required: bool,
    csrf: String,
    next: String,
}

async fn home(caller: Option<CookieCaller>) -> Redirect {
    if caller.is_some() {
        Redirect::to("/tenants")
    } else {
        Redirect::to("/login")
    }
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    user: Option<UserBar>,
    version: &'static str,
    error: Option<String>,
    code: String,
    username: String,
}

async fn setup_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    if state.store.operator_count().await? > 0 {
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(render(SetupPage {
        user: None,
        version: crate::VERSION,
        error: None,
        code: String::new(),
        username: String::new(),
    }))
}

#[derive(Deserialize)]
struct SetupForm {
    code: String,
    username: String,
    password: String,
    password_confirm: String,
}

#[derive(Template)]
#[template(path = "setup_totp.html")]
struct SetupTotpPage {
    user: Option<UserBar>,
    version: &'static str,
    /// Where the code is posted: first-owner setup or an invitation.
    action: &'static str,
    error: Option<String>,
    qr_data_url: String,
    secret: String,
    enrolment: String,
}

fn svg_data_url(svg: &str) -> String {
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    )
}

async fn setup_submit(State(state): State<AppState>, Form(form): Form<SetupForm>) -> Response {
    let again = |error: String| {
        let mut r = render(SetupPage {
            user: None,
            version: crate::VERSION,
            error: Some(error),
            code: form.code.clone(),
            username: form.username.clone(),
        });
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    };
    if form.password != form.password_confirm {
        return again("the two passwords differ".into());
    }
    match flows::setup_start(&state, &form.code, &form.username, &form.password).await {
        Ok(started) => render(SetupTotpPage {
            user: None,
            version: crate::VERSION,
            action: "/setup/totp",
            error: None,
            qr_data_url: svg_data_url(&started.qr_svg),
            secret: started.totp_secret,
            enrolment: started.enrolment_id,
        }),
        Err(e) if e.status == StatusCode::CONFLICT => Redirect::to("/login").into_response(),
        Err(e) if e.status.is_server_error() => error_page(e, None),
        Err(e) => again(e.message),
    }
}

#[derive(Deserialize)]
struct SetupTotpForm {
    enrolment: String,
    otp: String,
}

async fn setup_totp_submit(
    State(state): State<AppState>,
    Form(form): Form<SetupTotpForm>,
) -> Response {
    match flows::setup_confirm(&state, &form.enrolment, &form.otp).await {
        Ok((_, codes)) => recovery_codes_page(codes),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            // Show the same secret again so the person can retry.
            let id_hash = crate::auth::session::hash_token(&form.enrolment);
            match state
                .store
                .setup_enrolment(id_hash, crate::now_millis())
                .await
            {
                Ok(Some(enrolment)) => {
                    let url =
                        crate::auth::totp::otpauth_url(&enrolment.totp_secret, &enrolment.username);
                    let mut r = render(SetupTotpPage {
                        user: None,
                        version: crate::VERSION,
                        action: "/setup/totp",
                        error: Some(e.message),
                        qr_data_url: svg_data_url(&crate::auth::totp::qr_svg(&url)),
                        secret: enrolment.totp_secret,
                        enrolment: form.enrolment,
                    });
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    r
                }
                _ => error_page(
                    ApiError::not_found(
                        "setup enrolment (it expires after 15 minutes; start again)",
                    ),
                    None,
                ),
            }
        }
        Err(e) => error_page(e, None),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: Option<UserBar>,
    version: &'static str,
    error: Option<String>,
    notice: Option<String>,
    username: String,
}

#[derive(Deserialize)]
struct LoginQuery {
    welcome: Option<String>,
}

async fn login_page(
    State(state): State<AppState>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    if state.store.operator_count().await? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    let notice = q
        .welcome
        .map(|_| "Your account is ready. Sign in with your password and a fresh code.".to_owned());
    Ok(render(LoginPage {
        user: None,
        version: crate::VERSION,
        error: None,
        notice,
        username: String::new(),
    }))
}

/// The login form: the one-time code, or (filled in by `passkeys.js`) a
/// passkey's answer to a ceremony from `POST /api/v1/auth/passkey/options`.
#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    credential_id: String,
    #[serde(default)]
    authenticator_data: String,
    #[serde(default)]
    client_data_json: String,
    #[serde(default)]
    signature: String,
}

async fn login_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = client_info(Some(peer), &headers);
    let assertion = if form.credential_id.is_empty() {
        None
    } else {
        Some(crate::auth::passkey::Assertion::decode(
            &form.ceremony,
            &form.credential_id,
            &form.authenticator_data,
            &form.client_data_json,
            &form.signature,
        ))
    };
    let factor = match &assertion {
        None => Ok(flows::SecondFactor::Code(&form.otp)),
        Some(Ok(assertion)) => Ok(flows::SecondFactor::Passkey(assertion)),
        Some(Err(e)) => Err(ApiError::bad_request(e.message.clone())),
    };
    let result = match factor {
        Ok(factor) => {
            flows::login_with(
                &state,
                &form.username,
                &form.password,
                factor,
                SessionKind::Browser,
                &client,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(login) => {
            let max_age = state.session_policy.absolute_lifetime_ms / 1000;
            // A session that may only register a passkey starts where it can.
            let to = if login.passkey_enrolment_only {
                "/account"
            } else {
                "/tenants"
            };
            let mut response = Redirect::to(to).into_response();
            if let Ok(cookie) = HeaderValue::from_str(&session_cookie(&login.token, max_age)) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(e) if e.status.is_server_error() => error_page(e, None),
        Err(e) => {
            let mut r = render(LoginPage {
                user: None,
                version: crate::VERSION,
                error: Some(e.message),
                notice: None,
                username: form.username,
            });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    if let Err(e) = flows::logout(&state, &caller).await {
        return error_page(e, UserBar::of(&caller));
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

struct TenantRow {
    name: String,
    device_count: i64,
    online_count: i64,
    online_pct_step: i64,
}

#[derive(Template)]
#[template(path = "tenants.html")]
struct TenantsPage {
    user: Option<UserBar>,
    version: &'static str,
    tenants: Vec<TenantRow>,
}

fn pct_step(part: u64, whole: u64) -> u64 {
    // Anything above zero shows at least one step, so a bar is never empty by rounding.
    if part > 0 && whole > 0 && part.saturating_mul(20) < whole {
        return 1;
    }
    (part.saturating_mul(10) + whole / 2)
        .checked_div(whole)
        .unwrap_or(0)
        .min(10)
}

async fn tenants_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
) -> Response {
    if let Err(e) = caller.require(Action::ListTenants) {
        return error_page(e, UserBar::of(&caller));
    }
    let tenants = match state.store.list_tenants(&caller.scope()).await {
        Ok(t) => t,
        Err(e) => return error_page(e.into(), UserBar::of(&caller)),
    };
    let tenants = tenants
        .into_iter()
        .map(|t| {
            let online = i64::try_from(state.presence.online_in_tenant(&t.id)).unwrap_or_default();
            let step = pct_step(
                u64::try_from(online).unwrap_or_default(),
                u64::try_from(t.device_count).unwrap_or_default(),
            );
            TenantRow {
                name: t.name,
                device_count: t.device_count,
                online_count: online,
                online_pct_step: i64::try_from(step).unwrap_or_default(),
            }
        })
        .collect();
    render(TenantsPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        tenants,
    })
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct TenantPage {
    user: Option<UserBar>,
    version: &'static str,
    tenant: String,
    devices: Vec<DeviceView>,
    online: usize,
    token: Option<EnrollmentTokenView>,
    gateway_url: String,
    can_enroll: bool,
    csrf: String,
}

/// Whether the page offers enrolment tokens on `tenant` (a name already shown
/// to the caller); the API call behind the button checks again.
fn can_enroll(caller: &Caller, tenant: &str) -> bool {
    match &caller.standing {
        Standing::Owner => true,
        Standing::Granted(grants) => grants
            .iter()
            .find(|g| g.tenant_name == tenant)
            .is_some_and(|g| caller.allows_in(Action::IssueEnrollmentToken, &g.tenant_id)),
    }
}

async fn tenant_page_with(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    token: Option<EnrollmentTokenView>,
) -> Response {
    match device_views(state, caller, tenant).await {
        Ok(devices) => render(TenantPage {
            can_enroll: can_enroll(caller, tenant),
            user: UserBar::of(caller),
            version: crate::VERSION,
            tenant: tenant.to_owned(),
            online: devices.iter().filter(|d| d.online).count(),
            devices,
            token,
            gateway_url: state.gateway_url.clone(),
            csrf: caller.csrf_token.clone(),
        }),
        Err(e) => error_page(e, UserBar::of(caller)),
    }
}

async fn tenant_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
) -> Response {
    tenant_page_with(&state, &caller, &tenant, None).await
}

async fn tenant_issue_token(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match issue_enrollment_token(&state, &caller, &tenant, 60).await {
        Ok(token) => tenant_page_with(&state, &caller, &tenant, Some(token)).await,
        Err(e) => error_page_back(e, UserBar::of(&caller), &format!("/tenants/{tenant}")),
    }
}

struct DiskRow {
    mount: String,
    name: String,
    fs: String,
    size: String,
    free: String,
    used_pct: u64,
    used_pct_step: u64,
}

struct NetRow {
    name: String,
    mac: String,
    addresses: String,
}

struct UserRow {
    name: String,
    terminal: String,
    host: String,
}

struct InventoryPage {
    os: String,
    kernel: String,
    arch: String,
    uptime: String,
    cpu: String,
    memory: String,
    memory_pct_step: u64,
    swap: String,
    disks: Vec<DiskRow>,
    network: Vec<NetRow>,
    users: Vec<UserRow>,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    user: Option<UserBar>,
    version: &'static str,
    d: DeviceView,
    inv: Option<InventoryPage>,
}

/// Bytes as people read them (binary units).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn human_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    }
}

fn inventory_page(inv: &InventoryView, now_secs: u64) -> InventoryPage {
    let not_reported = || "not reported".to_owned();
    let system = inv.system.as_ref();
    let (memory, memory_pct_step, swap) = match &inv.memory {
        Some(m) => {
            let used = m.total_bytes.saturating_sub(m.available_bytes);
            (
                format!(
                    "{} used of {}",
                    human_bytes(used),
                    human_bytes(m.total_bytes)
                ),
                pct_step(used, m.total_bytes),
                format!(
                    "{} free of {}",
                    human_bytes(m.swap_free_bytes),
                    human_bytes(m.swap_total_bytes)
                ),
            )
        }
        None => (not_reported(), 0, not_reported()),
    };
    InventoryPage {
        os: system.map_or_else(not_reported, |s| format!("{} {}", s.os_name, s.os_version)),
        kernel: system.map_or_else(not_reported, |s| s.kernel_version.clone()),
        arch: system.map_or_else(not_reported, |s| s.architecture.clone()),
        uptime: system.map_or_else(not_reported, |s| {
            human_duration(now_secs.saturating_sub(s.boot_time))
        }),
        cpu: inv
            .cpu
            .as_ref()
            .map_or_else(not_reported, |c| match c.physical_cores {
                Some(p) => format!("{} · {} cores ({} physical)", c.model, c.logical_cores, p),
                None => format!("{} · {} cores", c.model, c.logical_cores),
            }),
        memory,
        memory_pct_step,
        swap,
        disks: inv
            .disks
            .iter()
            .flatten()
            .map(|d| {
                let used = d.total_bytes.saturating_sub(d.available_bytes);
                DiskRow {
                    mount: d.mount_point.clone(),
                    name: d.name.clone(),
                    fs: d.file_system.clone(),
                    size: human_bytes(d.total_bytes),
                    free: human_bytes(d.available_bytes),
                    used_pct: used
                        .saturating_mul(100)
                        .checked_div(d.total_bytes)
                        .unwrap_or(0),
                    used_pct_step: pct_step(used, d.total_bytes),
                }
            })
            .collect(),
        network: inv
            .network
            .iter()
            .flatten()
            .map(|n| NetRow {
                name: n.name.clone(),
                mac: n.mac.clone(),
                addresses: n.addresses.join(", "),
            })
            .collect(),
        users: inv
            .users
            .iter()
            .flatten()
            .map(|u| UserRow {
                name: u.name.clone(),
                terminal: u.terminal.clone(),
                host: u.host.clone(),
            })
            .collect(),
    }
}

async fn device_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
) -> Response {
    match device_view(&state, &caller, &id).await {
        Ok(mut d) => {
            let now_secs = u64::try_from(crate::now_millis() / 1000).unwrap_or_default();
            let inv = d.inventory.take().map(|i| inventory_page(&i, now_secs));
            render(DevicePage {
                user: UserBar::of(&caller),
                version: crate::VERSION,
                d,
                inv,
            })
        }
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    user: Option<UserBar>,
    version: &'static str,
    error: Option<String>,
    token: String,
    username: String,
    summary: String,
}

/// "technician on a, b" or "owner of every tenant", as the invitation page says it.
fn grants_summary(invitation: &bulwark_store::Invitation) -> String {
    match invitation.grants.first() {
        None => "owner of every tenant".to_owned(),
        Some(first) => format!(
            "{} on {}",
            first.role,
            invitation
                .grants
                .iter()
                .map(|g| g.tenant_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn invite_page_with(state: &AppState, token: String, error: Option<String>) -> Response {
    match invite::lookup(state, &token).await {
        Ok(invitation) => {
            let failed = error.is_some();
            let mut r = render(InvitePage {
                user: None,
                version: crate::VERSION,
                error,
                summary: grants_summary(&invitation),
                username: invitation.username,
                token,
            });
            if failed {
                *r.status_mut() = StatusCode::BAD_REQUEST;
            }
            r
        }
        Err(e) => error_page(e, None),
    }
}

async fn invite_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    invite_page_with(&state, token, None).await
}

#[derive(Deserialize)]
struct InviteForm {
    password: String,
    password_confirm: String,
}

async fn invite_submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Form(form): Form<InviteForm>,
) -> Response {
    if form.password != form.password_confirm {
        return invite_page_with(&state, token, Some("the two passwords differ".into())).await;
    }
    match invite::redeem(&state, &token, &form.password).await {
        Ok(started) => render(SetupTotpPage {
            user: None,
            version: crate::VERSION,
            action: "/invite/totp",
            error: None,
            qr_data_url: svg_data_url(&started.qr_svg),
            secret: started.totp_secret,
            enrolment: started.enrolment_id,
        }),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            invite_page_with(&state, token, Some(e.message)).await
        }
        Err(e) => error_page(e, None),
    }
}

async fn invite_totp_submit(
    State(state): State<AppState>,
    Form(form): Form<SetupTotpForm>,
) -> Response {
    match invite::confirm(&state, &form.enrolment, &form.otp).await {
        Ok((_, _, codes)) => recovery_codes_page(codes),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            // Show the same secret again so the person can retry.
            match invite::enrolment(&state, &form.enrolment).await {
                Ok(pending) => {
                    let url =
                        crate::auth::totp::otpauth_url(&pending.totp_secret, &pending.username);
                    let mut r = render(SetupTotpPage {
                        user: None,
                        version: crate::VERSION,
                        action: "/invite/totp",
                        error: Some(e.message),
                        qr_data_url: svg_data_url(&crate::auth::totp::qr_svg(&url)),
                        secret: pending.totp_secret,
                        enrolment: form.enrolment,
                    });
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    r
                }
                Err(e) => error_page(e, None),
            }
        }
        Err(e) => error_page(e, None),
    }
}

/// A new invitation's link, shown once.
struct LinkShown {
    username: String,
    path: String,
    expires_at: String,
}

#[derive(Template)]
#[template(path = "operators.html")]
struct OperatorsPage {
    user: Option<UserBar>,
    version: &'static str,
    error: Option<String>,
    link: Option<LinkShown>,
    operators: Vec<OperatorSummary>,
    can_invite: bool,
    can_disable: bool,
    self_id: String,
    invitations: Vec<InvitationView>,
    tenants: Vec<String>,
    csrf: String,
}

async fn operators_page_with(
    state: &AppState,
    caller: &Caller,
    link: Option<LinkShown>,
    error: Option<ApiError>,
) -> Response {
    let operators = match operator_summaries(state, caller).await {
        Ok(o) => o,
        Err(e) => return error_page(e, UserBar::of(caller)),
    };
    let can_invite = caller.allows(Action::InviteOperator);
    let (invitations, tenants) = if can_invite {
        let invitations = match invite::pending(state, caller).await {
            Ok(i) => i.into_iter().map(InvitationView::from).collect(),
            Err(e) => return error_page(e, UserBar::of(caller)),
        };
        let tenants = match state.store.list_tenants(&caller.scope()).await {
            Ok(t) => t.into_iter().map(|t| t.name).collect(),
            Err(e) => return error_page(e.into(), UserBar::of(caller)),
        };
        (invitations, tenants)
    } else {
        (Vec::new(), Vec::new())
    };
    let status = error.as_ref().map(|e| e.status);
    let mut r = render(OperatorsPage {
        user: UserBar::of(caller),
        version: crate::VERSION,
        error: error.map(|e| e.message),
        link,
        operators,
        can_invite,
        can_disable: caller.allows(Action::DisableOperator),
        self_id: caller.operator.id.clone(),
        invitations,
        tenants,
        csrf: caller.csrf_token.clone(),
    });
    if let Some(status) = status {
        *r.status_mut() = status;
    }
    r
}

async fn operators_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
) -> Response {
    operators_page_with(&state, &caller, None, None).await
}

/// The invitation form: repeated `tenant` fields, so read as pairs.
async fn operators_invite(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if let Err(e) = caller.check_csrf(&field("csrf")) {
        return error_page(e, UserBar::of(&caller));
    }
    let request = match (
        crate::auth::Role::parse(&field("role")),
        field("ttl_hours").trim().parse::<u32>(),
    ) {
        (Some(role), Ok(ttl_hours)) => invite::InviteRequest {
            username: field("username").trim().to_owned(),
            role,
            tenants: fields
                .iter()
                .filter(|(k, _)| k == "tenant")
                .map(|(_, v)| v.clone())
                .collect(),
            ttl_hours: Some(ttl_hours),
        },
        _ => {
            let e = ApiError::bad_request("choose a role and a lifetime in hours");
            return operators_page_with(&state, &caller, None, Some(e)).await;
        }
    };
    match invite::invite(&state, &caller, request).await {
        Ok(issued) => {
            let link = LinkShown {
                username: issued.invitation.username.clone(),
                path: invite::invite_path(&issued.token),
                expires_at: crate::rfc3339(issued.invitation.expires_at),
            };
            operators_page_with(&state, &caller, Some(link), None).await
        }
        Err(e) if e.status.is_client_error() && e.status != StatusCode::FORBIDDEN => {
            operators_page_with(&state, &caller, None, Some(e)).await
        }
        Err(e) => error_page_back(e, UserBar::of(&caller), "/operators"),
    }
}

async fn operators_revoke(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match invite::revoke(&state, &caller, &id).await {
        Ok(()) => Redirect::to("/operators").into_response(),
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesPage {
    user: Option<UserBar>,
    version: &'static str,
    codes: Vec<String>,
}

/// After TOTP enrolment: the new account's recovery codes, shown this once.
fn recovery_codes_page(codes: Vec<String>) -> Response {
    let mut r = render(RecoveryCodesPage {
        user: None,
        version: crate::VERSION,
        codes,
    });
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn operators_disable(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::auth::account::disable_operator(&state, &caller, &id).await {
        Ok(_) => Redirect::to("/operators").into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), "/operators"),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    user: Option<UserBar>,
    version: &'static str,
    username: String,
    notice: Option<String>,
    sessions: Vec<SessionView>,
    codes: Vec<String>,
    codes_left: i64,
    tokens: Vec<ApiTokenView>,
    new_token: Option<String>,
    tenants: Vec<String>,
    error: Option<String>,
    csrf: String,
    next: &'static str,
    passkeys: Vec<crate::api::passkeys::PasskeyView>,
    /// This session may only register a passkey (the role requires one).
    passkey_only: bool,
    /// The account holds a passkey (step-up offers it).
    has_passkey: bool,
}

/// What the account page shows once, beside its lists.
#[derive(Default)]
struct AccountExtras {
    notice: Option<String>,
    codes: Vec<String>,
    new_token: Option<String>,
    error: Option<ApiError>,
}

async fn account_page_with(state: &AppState, caller: &Caller, extras: AccountExtras) -> Response {
    let sessions = match crate::auth::account::sessions(state, caller).await {
        Ok(s) => s.into_iter().map(SessionView::from).collect(),
        Err(e) => return error_page(e, UserBar::of(caller)),
    };
    let passkeys: Vec<crate::api::passkeys::PasskeyView> =
        match crate::auth::passkey::list(state, caller).await {
            Ok(p) => p.into_iter().map(Into::into).collect(),
            Err(e) => return error_page(e, UserBar::of(caller)),
        };
    // A session restricted by the passkey policy sees only what it may use.
    let passkey_only = matches!(
        caller.credential,
        crate::auth::policy::Credential::NeedsPasskey { .. }
    );
    let tokens = if passkey_only {
        Vec::new()
    } else {
        match crate::auth::account::api_tokens(state, caller).await {
            Ok(t) => t.into_iter().map(ApiTokenView::from).collect(),
            Err(e) => return error_page(e, UserBar::of(caller)),
        }
    };
    let codes_left = match state.store.recovery_codes_left(&caller.operator.id).await {
        Ok(n) => n,
        Err(e) => return error_page(e.into(), UserBar::of(caller)),
    };
    let tenants = match state.store.list_tenants(&caller.scope()).await {
        Ok(t) if !passkey_only => t.into_iter().map(|t| t.name).collect(),
        Ok(_) => Vec::new(),
        Err(e) => return error_page(e.into(), UserBar::of(caller)),
    };
    let secret_shown = !extras.codes.is_empty() || extras.new_token.is_some();
    let status = extras.error.as_ref().map(|e| e.status);
    let mut r = render(AccountPage {
        user: UserBar::of(caller),
        version: crate::VERSION,
        username: caller.operator.username.clone(),
        notice: extras.notice,
        sessions,
        codes: extras.codes,
        codes_left,
        tokens,
        new_token: extras.new_token,
        tenants,
        error: extras.error.map(|e| e.message),
        csrf: caller.csrf_token.clone(),
        next: "/account",
        has_passkey: !passkeys.is_empty(),
        passkeys,
        passkey_only,
    });
    if let Some(status) = status {
        *r.status_mut() = status;
    }
    if secret_shown {
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

#[derive(Deserialize)]
struct AccountQuery {
    /// Set by `passkeys.js` after a registration.
    passkey_added: Option<String>,
}

async fn account_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Query(q): Query<AccountQuery>,
) -> Response {
    let notice = q.passkey_added.map(|_| "Passkey added.".to_owned());
    account_page_with(
        &state,
        &caller,
        AccountExtras {
            notice,
            ..AccountExtras::default()
        },
    )
    .await
}

async fn account_remove_passkey(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::auth::passkey::remove(&state, &caller, &id).await {
        Ok(()) => Redirect::to("/account").into_response(),
        Err(e) if e.status == StatusCode::CONFLICT => {
            let extras = AccountExtras {
                error: Some(e),
                ..AccountExtras::default()
            };
            account_page_with(&state, &caller, extras).await
        }
        Err(e) => error_page_back(e, UserBar::of(&caller), "/account"),
    }
}

/// One role's box on the security settings page.
struct RoleChoice {
    name: &'static str,
    label: &'static str,
    checked: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    user: Option<UserBar>,
    version: &'static str,
    notice: Option<String>,
    roles: Vec<RoleChoice>,
    csrf: String,
}

async fn settings_page_with(state: &AppState, caller: &Caller, notice: Option<String>) -> Response {
    if let Err(e) = caller.require(Action::ViewPasskeyPolicy) {
        return error_page(e, UserBar::of(caller));
    }
    let required = match crate::auth::passkey::required_roles(state).await {
        Ok(r) => r,
        Err(e) => return error_page(e, UserBar::of(caller)),
    };
    use crate::auth::Role;
    let roles = [
        (Role::Owner, "Owners"),
        (Role::SecurityOfficer, "Security officers"),
        (Role::Technician, "Technicians"),
        (Role::ReadOnly, "Read-only operators"),
        (Role::TenantAuditor, "Tenant auditors"),
    ]
    .into_iter()
    .map(|(role, label)| RoleChoice {
        name: role.as_str(),
        label,
        checked: required.contains(&role),
    })
    .collect();
    render(SettingsPage {
        user: UserBar::of(caller),
        version: crate::VERSION,
        notice,
        roles,
        csrf: caller.csrf_token.clone(),
    })
}

async fn settings_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
) -> Response {
    settings_page_with(&state, &caller, None).await
}

/// The role checklist: repeated `role` fields, so read as pairs.
async fn settings_passkey_policy(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if let Err(e) = caller.check_csrf(csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    let roles: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| v.clone())
        .collect();
    match crate::auth::passkey::set_required_roles(&state, &caller, &roles).await {
        Ok(_) => settings_page_with(&state, &caller, Some("Saved.".to_owned())).await,
        Err(e) => error_page_back(e, UserBar::of(&caller), "/settings"),
    }
}

async fn account_revoke(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::auth::account::revoke_session(&state, &caller, &id).await {
        Ok(()) => Redirect::to("/account").into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), "/account"),
    }
}

async fn account_revoke_others(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::auth::account::revoke_other_sessions(&state, &caller).await {
        Ok(n) => {
            let extras = AccountExtras {
                notice: Some(format!("{n} other sessions signed out.")),
                ..AccountExtras::default()
            };
            account_page_with(&state, &caller, extras).await
        }
        Err(e) => error_page_back(e, UserBar::of(&caller), "/account"),
    }
}

#[derive(Deserialize)]
struct StepUpForm {
    csrf: String,
    otp: String,
    next: String,
}

/// Only a path on this console: `/x...`, never `//host` or `/\host`.
fn local_path(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok { next } else { "/account" }
}

async fn account_step_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    CookieCaller(caller): CookieCaller,
    Form(form): Form<StepUpForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    let client = client_info(Some(peer), &headers);
    let next = local_path(&form.next);
    match crate::auth::account::step_up(&state, &caller, &form.otp, &client).await {
        Ok(()) => Redirect::to(next).into_response(),
        Err(e) if e.code == "step_up_failed" => {
            let message = e.message.clone();
            let mut again = ApiError::step_up_required();
            again.message = message;
            let mut r = error_page_back(again, UserBar::of(&caller), next);
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

async fn account_recovery_codes(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::auth::account::regenerate_recovery_codes(&state, &caller).await {
        Ok(codes) => {
            let extras = AccountExtras {
                codes,
                ..AccountExtras::default()
            };
            account_page_with(&state, &caller, extras).await
        }
        Err(e) => error_page_back(e, UserBar::of(&caller), "/account"),
    }
}

/// The API token form: repeated `tenant` fields, so read as pairs.
async fn account_create_token(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if let Err(e) = caller.check_csrf(&field("csrf")) {
        return error_page(e, UserBar::of(&caller));
    }
    let Ok(ttl_days) = field("ttl_days").trim().parse::<u32>() else {
        let extras = AccountExtras {
            error: Some(ApiError::bad_request("give a lifetime in days")),
            ..AccountExtras::default()
        };
        return account_page_with(&state, &caller, extras).await;
    };
    let request = crate::auth::account::ApiTokenRequest {
        name: field("name"),
        role: field("role"),
        tenants: fields
            .iter()
            .filter(|(k, _)| k == "tenant")
            .map(|(_, v)| v.clone())
            .collect(),
        ttl_days: Some(ttl_days),
    };
    match crate::auth::account::create_api_token(&state, &caller, request).await {
        Ok((secret, _)) => {
            let extras = AccountExtras {
                new_token: Some(secret),
                ..AccountExtras::default()
            };
            account_page_with(&state, &caller, extras).await
        }
        Err(e) if e.code == "step_up_required" => {
            error_page_back(e, UserBar::of(&caller), "/account")
        }
        Err(e) if e.status.is_client_error() => {
            let extras = AccountExtras {
                error: Some(e),
                ..AccountExtras::default()
            };
            account_page_with(&state, &caller, extras).await
        }
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

async fn account_revoke_token(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::auth::account::revoke_api_token(&state, &caller, &id).await {
        Ok(()) => Redirect::to("/account").into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), "/account"),
    }
}

// ---- jobs: what approvers see, and approving with a passkey ----

/// A target state people read at a glance, and whether it is final.
fn target_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "timed_out" | "refused")
}

struct JobRow {
    id: String,
    short_id: String,
    state: String,
    class: String,
    requested_by: String,
    reason: String,
    finished: usize,
    targets: usize,
    refused: usize,
    created_at: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    user: Option<UserBar>,
    version: &'static str,
    tenant: String,
    jobs: Vec<JobRow>,
    pending: usize,
}

async fn jobs_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
) -> Response {
    let views = match crate::api::jobs::tenant_for(&state, &caller, &tenant, Action::ViewJobs).await
    {
        Ok(t) => crate::api::jobs::job_views(&state, &caller, &t).await,
        Err(e) => Err(e),
    };
    let views = match views {
        Ok(v) => v,
        Err(e) => return error_page(e, UserBar::of(&caller)),
    };
    let jobs: Vec<JobRow> = views
        .into_iter()
        .map(|j| JobRow {
            short_id: j.id.chars().take(8).collect(),
            finished: j.targets.iter().filter(|t| target_final(&t.state)).count(),
            refused: j.targets.iter().filter(|t| t.state == "refused").count(),
            targets: j.targets.len(),
            id: j.id,
            state: j.state,
            class: j.class,
            requested_by: j.requested_by,
            reason: j.reason,
            created_at: j.created_at,
        })
        .collect();
    render(JobsPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        pending: jobs.iter().filter(|j| j.state == "pending").count(),
        tenant,
        jobs,
    })
}

struct TargetRow {
    t: crate::api::jobs::JobTargetView,
    exit: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    user: Option<UserBar>,
    version: &'static str,
    j: crate::api::jobs::JobView,
    short_id: String,
    sha_grouped: String,
    script_lines: usize,
    targets: Vec<TargetRow>,
    refusals: usize,
    /// Pending, and the caller's role on the tenant may approve.
    can_decide: bool,
    /// The caller asked for this job (and may not approve it).
    own_request: bool,
    /// Unfinished: the page watches for changes.
    live: bool,
    /// The job's state and its targets' states, to notice changes.
    progress: String,
    csrf: String,
    notice: Option<String>,
}

#[derive(Deserialize)]
struct JobQuery {
    approved: Option<String>,
    rejected: Option<String>,
}

async fn job_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Query(q): Query<JobQuery>,
) -> Response {
    let notice = if q.approved.is_some() {
        Some("Your passkey signature was added to the job.".to_owned())
    } else {
        q.rejected.map(|_| "The job was rejected.".to_owned())
    };
    match job_page_with(&state, &caller, &id, notice).await {
        Ok(r) => r,
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

async fn job_page_with(
    state: &AppState,
    caller: &Caller,
    id: &str,
    notice: Option<String>,
) -> Result<Response, ApiError> {
    let (j, tenant_id) = crate::api::jobs::job_for_console(state, caller, id).await?;
    let own_request = j.requested_by == caller.operator.username;
    let pending = j.state == "pending";
    let live =
        pending || (j.state == "approved" && j.targets.iter().any(|t| !target_final(&t.state)));
    let progress = format!(
        "{}|{}",
        j.state,
        j.targets
            .iter()
            .map(|t| t.state.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let sha_grouped = j
        .script_sha256
        .as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let script_lines = j.script.as_deref().map_or(0, |s| s.lines().count());
    let targets: Vec<TargetRow> = j
        .targets
        .iter()
        .map(|t| TargetRow {
            t: crate::api::jobs::JobTargetView {
                device_id: t.device_id.clone(),
                hostname: t.hostname.clone(),
                state: t.state.clone(),
                exit_code: t.exit_code,
                refusal_code: t.refusal_code.clone(),
                refusal_reason: t.refusal_reason.clone(),
                output_sha256: t.output_sha256.clone(),
                stdout: t.stdout.clone().filter(|s| !s.is_empty()),
                stderr: t.stderr.clone().filter(|s| !s.is_empty()),
                delivered_at: t.delivered_at.clone(),
                started_at: t.started_at.clone(),
                finished_at: t.finished_at.clone(),
            },
            exit: t.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        })
        .collect();
    Ok(render(JobPage {
        user: UserBar::of(caller),
        version: crate::VERSION,
        short_id: j.id.chars().take(8).collect(),
        sha_grouped,
        script_lines,
        refusals: targets.iter().filter(|t| t.t.state == "refused").count(),
        targets,
        can_decide: pending && caller.allows_in(Action::ApproveJob, &tenant_id),
        own_request,
        live,
        progress,
        csrf: caller.csrf_token.clone(),
        notice,
        j,
    }))
}

#[derive(Deserialize)]
struct RejectForm {
    csrf: String,
    reason: String,
}

async fn job_reject(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<RejectForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::api::jobs::reject(&state, &caller, &id, &form.reason).await {
        Ok(j) => Redirect::to(&format!("/jobs/{}?rejected=1", j.id)).into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), &format!("/jobs/{id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(8 * 1024 * 1024 * 1024), "8.0 GiB");
        assert_eq!(human_duration(90_061), "1 d 1 h");
        assert_eq!(pct_step(5, 10), 5);
        assert_eq!(pct_step(1, 0), 0);
    }

    #[test]
    fn step_up_returns_only_to_local_paths() {
        assert_eq!(local_path("/tenants/acme"), "/tenants/acme");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
            "/a b",
        ] {
            assert_eq!(local_path(bad), "/account", "{bad}");
        }
    }
}
