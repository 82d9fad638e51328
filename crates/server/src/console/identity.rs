//! Console pages for operator identity: `/device` (approve a
//! `bulwark login --device` sign-in with a passkey) and an operator's
//! grants page (owners edit the role held per tenant, or reset the
//! operator's passkeys). The logic is `auth::device` and `auth::grants`.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{CsrfForm, UserBar, error_page, error_page_back, render};
use crate::api::error::ApiError;
use crate::auth::grants::GrantRequest;
use crate::auth::session::CookieCaller;
use crate::auth::{Action, Caller, device, grants};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/device", get(device_page).post(device_lookup))
        .route("/device/deny", post(device_deny))
        .route(
            "/operators/{id}/grants",
            get(grants_page).post(grants_submit),
        )
        .route("/operators/{id}/passkeys/reset", post(passkeys_reset))
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
    match device::lookup(&state, &caller, &form.user_code) {
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
    match device::deny(&state, &caller, &form.user_code).await {
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

/// One tenant's row on the grants page.
struct TenantChoice {
    name: String,
    /// The role held there now ("" for none).
    role: String,
}

#[derive(Template)]
#[template(path = "operator_grants.html")]
struct GrantsPage {
    user: Option<UserBar>,
    version: &'static str,
    csrf: String,
    id: String,
    username: String,
    tenants: Vec<TenantChoice>,
    passkeys: usize,
    notice: Option<String>,
}

async fn grants_page_with(
    state: &AppState,
    caller: &Caller,
    id: &str,
    notice: Option<String>,
) -> Response {
    if !caller.allows(Action::ManageGrants) {
        return error_page(ApiError::forbidden(), UserBar::of(caller));
    }
    let target = match state.store.operator_by_id(id).await {
        Ok(Some(o)) if o.role != bulwark_store::ACCOUNT_OWNER => o,
        Ok(_) => return error_page(ApiError::not_found("operator"), UserBar::of(caller)),
        Err(e) => return error_page(e.into(), UserBar::of(caller)),
    };
    let scope = caller.scope();
    let (held, tenants, passkeys) = match tokio::try_join!(
        state.store.operator_grants(&target.id),
        state.store.list_tenants(&scope),
        state.store.passkey_count(&target.id),
    ) {
        Ok(found) => found,
        Err(e) => return error_page(e.into(), UserBar::of(caller)),
    };
    let tenants = tenants
        .into_iter()
        .map(|t| TenantChoice {
            role: held
                .iter()
                .find(|g| g.tenant_id == t.id)
                .map(|g| g.role.clone())
                .unwrap_or_default(),
            name: t.name,
        })
        .collect();
    render(GrantsPage {
        user: UserBar::of(caller),
        version: crate::VERSION,
        csrf: caller.csrf_token.clone(),
        id: target.id,
        username: target.username,
        tenants,
        passkeys: usize::try_from(passkeys).unwrap_or_default(),
        notice,
    })
}

async fn grants_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
) -> Response {
    grants_page_with(&state, &caller, &id, None).await
}

/// The form: `csrf`, then `role:<tenant>` = a role or "" (none).
async fn grants_submit(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
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
    let requested: Vec<GrantRequest> = fields
        .iter()
        .filter_map(|(k, v)| {
            let tenant = k.strip_prefix("role:")?;
            (!v.is_empty()).then(|| GrantRequest {
                tenant: tenant.to_owned(),
                role: v.clone(),
            })
        })
        .collect();
    let back = format!("/operators/{id}/grants");
    match grants::set_grants(&state, &caller, &id, &requested).await {
        Ok(_) => grants_page_with(&state, &caller, &id, Some("Grants saved.".to_owned())).await,
        Err(e) => error_page_back(e, UserBar::of(&caller), &back),
    }
}

async fn passkeys_reset(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    let back = format!("/operators/{id}/grants");
    match grants::reset_passkeys(&state, &caller, &id).await {
        Ok(n) => {
            grants_page_with(
                &state,
                &caller,
                &id,
                Some(format!(
                    "{n} passkeys removed and the operator's sessions ended."
                )),
            )
            .await
        }
        Err(e) => error_page_back(e, UserBar::of(&caller), &back),
    }
    .into_response()
}
