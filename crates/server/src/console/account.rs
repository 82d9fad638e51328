//! An operator's own account (`/account`): sessions (sign one or all
//! others out), step-up, recovery codes, API tokens and passkeys. Secrets
//! (new codes, a new token) are shown once, on a page no cache keeps. The
//! logic is `auth::account` and `auth::passkey`.

use bulwark_api::account::{ApiTokenView, SessionView};
use bulwark_api::error::ErrorCode;
use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{CsrfForm, UserBar, error_page, error_page_back, render};
use crate::api::client_info;
use crate::api::error::ApiError;
use crate::auth::Caller;
use crate::auth::session::CookieCaller;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
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
    passkeys: Vec<bulwark_api::passkeys::PasskeyView>,
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
    let sessions = match crate::auth::account::sessions(&state.auth, caller).await {
        Ok(s) => s.into_iter().map(crate::api::views::session).collect(),
        Err(e) => return error_page(e, UserBar::of(caller)),
    };
    let passkeys: Vec<bulwark_api::passkeys::PasskeyView> =
        match crate::auth::passkey::list(&state.auth, caller).await {
            Ok(p) => p.into_iter().map(crate::api::views::passkey).collect(),
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
        match crate::auth::account::api_tokens(&state.auth, caller).await {
            Ok(t) => t.into_iter().map(crate::api::views::api_token).collect(),
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
    match crate::auth::passkey::remove(&state.auth, &caller, &id).await {
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

async fn account_revoke(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::auth::account::revoke_session(&state.auth, &caller, &id).await {
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
    match crate::auth::account::revoke_other_sessions(&state.auth, &caller).await {
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
    match crate::auth::account::step_up(&state.auth, &caller, &form.otp, &client).await {
        Ok(()) => Redirect::to(next).into_response(),
        Err(e) if e.code == ErrorCode::StepUpFailed => {
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
    match crate::auth::account::regenerate_recovery_codes(&state.auth, &caller).await {
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
    match crate::auth::account::create_api_token(&state.auth, &caller, request).await {
        Ok((secret, _)) => {
            let extras = AccountExtras {
                new_token: Some(secret),
                ..AccountExtras::default()
            };
            account_page_with(&state, &caller, extras).await
        }
        Err(e) if e.code == ErrorCode::StepUpRequired => {
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
    match crate::auth::account::revoke_api_token(&state.auth, &caller, &id).await {
        Ok(()) => Redirect::to("/account").into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), "/account"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
