//! The MSP's operators (`/operators`): who they are and their roles,
//! inviting a new one (the link is shown once), revoking a pending
//! invitation and disabling an operator, and one operator's grants page
//! (owners edit the role held per tenant, or reset the operator's
//! passkeys; the logic is `auth::grants`).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bulwark_api::operators::{InvitationView, OperatorSummary};

use super::{CsrfForm, UserBar, error_page, error_page_back, render};
use crate::api::error::ApiError;
use crate::api::operators::operator_summaries;
use crate::auth::grants::{self, GrantRequest};
use crate::auth::invite;
use crate::auth::session::CookieCaller;
use crate::auth::{Action, Caller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/operators", get(operators_page))
        .route("/operators/invitations", post(operators_invite))
        .route("/operators/invitations/{id}/revoke", post(operators_revoke))
        .route("/operators/{id}/disable", post(operators_disable))
        .route(
            "/operators/{id}/grants",
            get(grants_page).post(grants_submit),
        )
        .route("/operators/{id}/passkeys/reset", post(passkeys_reset))
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
        let invitations = match invite::pending(&state.auth, caller).await {
            Ok(i) => i.into_iter().map(crate::api::views::invitation).collect(),
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
    match invite::invite(&state.auth, &caller, request).await {
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
    match invite::revoke(&state.auth, &caller, &id).await {
        Ok(()) => Redirect::to("/operators").into_response(),
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
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
    match crate::auth::account::disable_operator(&state.auth, &caller, &id).await {
        Ok(_) => {
            state.presence.shells().end_operator(&id);
            Redirect::to("/operators").into_response()
        }
        Err(e) => error_page_back(e, UserBar::of(&caller), "/operators"),
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
    match grants::set_grants(&state.auth, &caller, &id, &requested).await {
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
    match grants::reset_passkeys(&state.auth, &caller, &id).await {
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
