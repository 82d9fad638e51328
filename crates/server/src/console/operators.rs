//! The MSP's operators (`/operators`): who they are and their roles,
//! inviting a new one (the link is shown once), revoking a pending
//! invitation and disabling an operator. An operator's grants and passkey
//! reset are in `identity`.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::{CsrfForm, UserBar, error_page, error_page_back, render};
use crate::api::error::ApiError;
use crate::api::{InvitationView, OperatorSummary, operator_summaries};
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
