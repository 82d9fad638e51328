//! Signing in and out: first-owner setup (`/setup`, then its TOTP step),
//! login (a one-time code or a passkey), logout, and redeeming an
//! invitation (`/invite/{token}`, then its TOTP step); both enrolments end
//! on the recovery codes page. The logic is `auth::flows` and `auth::invite`.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;

use super::{CsrfForm, UserBar, error_page, render};
use crate::api::client_info;
use crate::api::error::ApiError;
use crate::auth::flows::{self, SessionKind};
use crate::auth::invite;
use crate::auth::session::{CookieCaller, clear_cookie, session_cookie};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/setup", get(setup_page).post(setup_submit))
        .route("/setup/totp", post(setup_totp_submit))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/invite/totp", post(invite_totp_submit))
        .route("/invite/{token}", get(invite_page).post(invite_submit))
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
    match flows::setup_start(&state.auth, &form.code, &form.username, &form.password).await {
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
    match flows::setup_confirm(&state.auth, &form.enrolment, &form.otp).await {
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
                &state.auth,
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
            let max_age = state.auth.session_policy.absolute_lifetime_ms / 1000;
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

async fn logout(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    if let Err(e) = flows::logout(&state.auth, &caller).await {
        return error_page(e, UserBar::of(&caller));
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
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
    match invite::lookup(&state.auth, &token).await {
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
    match invite::redeem(&state.auth, &token, &form.password).await {
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
    match invite::confirm(&state.auth, &form.enrolment, &form.otp).await {
        Ok((_, _, codes)) => recovery_codes_page(codes),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            // Show the same secret again so the person can retry.
            match invite::enrolment(&state.auth, &form.enrolment).await {
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
