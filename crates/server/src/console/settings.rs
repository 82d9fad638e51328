//! The MSP's security settings (`/settings`): which roles must sign in
//! with a passkey. The logic is `auth::passkey`.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};

use super::{UserBar, error_page, error_page_back, render};
use crate::auth::session::CookieCaller;
use crate::auth::{Action, Caller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/settings", get(settings_page))
        .route("/settings/passkey-policy", post(settings_passkey_policy))
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
    let required = match crate::auth::passkey::required_roles(&state.auth).await {
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
    match crate::auth::passkey::set_required_roles(&state.auth, &caller, &roles).await {
        Ok(_) => settings_page_with(&state, &caller, Some("Saved.".to_owned())).await,
        Err(e) => error_page_back(e, UserBar::of(&caller), "/settings"),
    }
}
