//! The console's half of the CLI's sign-in (`bulwark login --device`,
//! RFC 8628): `/device`, where the operator enters the code the CLI shows
//! and approves it with a passkey. The logic is `auth::cli_sign_in`.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{UserBar, error_page, render};
use crate::api::error::ApiError;
use crate::auth::session::CookieCaller;
use crate::auth::{Caller, cli_sign_in as device};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/device", get(device_page).post(device_lookup))
        .route("/device/deny", post(device_deny))
        .route(
            "/assets/device.js",
            get(|| {
                super::asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../assets/device.js"),
                )
            }),
        )
}

/// The sign-in being approved, as the page shows it.
struct Asking {
    user_code: String,
    ip: String,
    user_agent: String,
    created_at: String,
    expires_at: String,
}

#[derive(Template)]
#[template(path = "device_approval.html")]
struct DevicePage {
    user: Option<UserBar>,
    version: &'static str,
    csrf: String,
    /// The code from the link (`?code=`), to prefill.
    code: String,
    asking: Option<Asking>,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize)]
struct CodeQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    approved: Option<String>,
}

fn device_page_with(
    caller: &Caller,
    code: String,
    asking: Option<Asking>,
    error: Option<ApiError>,
    notice: Option<String>,
) -> Response {
    let status = error.as_ref().map(|e| e.status);
    let mut r = render(DevicePage {
        user: UserBar::of(caller),
        version: crate::VERSION,
        csrf: caller.csrf_token.clone(),
        code: code.chars().take(32).collect(),
        asking,
        error: error.map(|e| e.message),
        notice,
    });
    if let Some(status) = status {
        *r.status_mut() = status;
    }
    r
}

async fn device_page(
    CookieCaller(caller): CookieCaller,
    Query(query): Query<CodeQuery>,
) -> Response {
    let notice = query.approved.map(|code| {
        format!(
            "Approved: the CLI that showed {} is signed in as you.",
            code.chars().take(16).collect::<String>()
        )
    });
    device_page_with(&caller, query.code, None, None, notice)
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    user_code: String,
}

/// The code typed: what is asking, and the passkey button (`device.js`).
async fn device_lookup(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match device::lookup(&state.auth, &caller, &form.user_code).await {
        Ok(request) => {
            let asking = Asking {
                user_code: request.user_code,
                ip: request.ip,
                user_agent: request.user_agent,
                created_at: crate::rfc3339(request.created_at),
                expires_at: crate::rfc3339(request.expires_at),
            };
            device_page_with(&caller, String::new(), Some(asking), None, None)
        }
        Err(e) => device_page_with(&caller, form.user_code, None, Some(e), None),
    }
}

async fn device_deny(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match device::deny(&state.auth, &caller, &form.user_code).await {
        Ok(()) => device_page_with(
            &caller,
            String::new(),
            None,
            None,
            Some("Denied: that CLI is not signed in.".to_owned()),
        ),
        Err(e) => device_page_with(&caller, String::new(), None, Some(e), None),
    }
}
