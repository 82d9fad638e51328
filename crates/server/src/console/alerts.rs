//! Alerts in the console (`/alerts`, RFD 0007): the unresolved ones of the
//! tenants the operator may see (or all, or one tenant's), each with what
//! raised it, and buttons to acknowledge or resolve where the role allows.
//! Alerts are the server speaking: the page says where to check.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bulwark_api::alerts::{AlertQuery, AlertStateFilter, AlertView};
use bulwark_store::AlertState;
use serde::Deserialize;

use super::{UserBar, error_page, error_page_back, render};
use crate::auth::Action;
use crate::auth::session::CookieCaller;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/alerts", get(alerts_page))
        .route("/alerts/{id}/acknowledge", post(acknowledge))
        .route("/alerts/{id}/resolve", post(resolve))
}

struct AlertRow {
    a: AlertView,
    /// The caller's role on the alert's tenant may acknowledge and resolve.
    can_handle: bool,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    user: Option<UserBar>,
    version: &'static str,
    alerts: Vec<AlertRow>,
    /// `unresolved`, `all`, …: the filter shown.
    filter: String,
    tenant: String,
    critical: usize,
    /// The latest change of the alerts the caller sees, when the page was
    /// made: the live stream's later changes show a notice.
    changed_at: String,
    csrf: String,
}

#[derive(Deserialize)]
struct PageQuery {
    state: Option<String>,
    tenant: Option<String>,
}

async fn alerts_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Query(q): Query<PageQuery>,
) -> Response {
    let filter = q.state.unwrap_or_else(|| "unresolved".to_owned());
    let query = AlertQuery {
        tenant: q.tenant.clone().filter(|t| !t.is_empty()),
        state: match filter.as_str() {
            "all" => None,
            "open" => Some(AlertStateFilter::Open),
            "acknowledged" => Some(AlertStateFilter::Acknowledged),
            "resolved" => Some(AlertStateFilter::Resolved),
            _ => Some(AlertStateFilter::Unresolved),
        },
        limit: Some(500),
    };
    let views = match crate::api::alerts::alert_views(&state, &caller, &query).await {
        Ok(v) => v,
        Err(e) => return error_page(e, UserBar::of(&caller)),
    };
    let mut tenant_ids = std::collections::HashMap::new();
    if let Ok(tenants) = state.store.list_tenants(&caller.scope()).await {
        for t in tenants {
            tenant_ids.insert(t.name.clone(), t.id);
        }
    }
    let alerts: Vec<AlertRow> = views
        .into_iter()
        .map(|a| {
            let can_handle = match a.tenant.as_ref().and_then(|t| tenant_ids.get(t)) {
                Some(id) => caller.allows_in(Action::HandleAlerts, id),
                None => a.tenant.is_none() && caller.allows(Action::HandleAlerts),
            };
            AlertRow { a, can_handle }
        })
        .collect();
    let changed_at = state
        .store
        .alert_pulse(&caller.scope())
        .await
        .ok()
        .filter(|p| p.changed_at > 0)
        .map(|p| crate::rfc3339(p.changed_at))
        .unwrap_or_default();
    render(AlertsPage {
        changed_at,
        user: UserBar::of(&caller),
        version: crate::VERSION,
        critical: alerts
            .iter()
            .filter(|r| r.a.severity == "critical" && r.a.state != "resolved")
            .count(),
        alerts,
        filter,
        tenant: q.tenant.unwrap_or_default(),
        csrf: caller.csrf_token.clone(),
    })
}

#[derive(Deserialize)]
struct HandleForm {
    csrf: String,
}

async fn handle(
    state: AppState,
    caller: crate::auth::Caller,
    id: String,
    form: HandleForm,
    to: AlertState,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::api::alerts::handle_alert(&state, &caller, &id, to).await {
        Ok(_) => Redirect::to("/alerts").into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), "/alerts"),
    }
}

async fn acknowledge(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<HandleForm>,
) -> Response {
    handle(state, caller, id, form, AlertState::Acknowledged).await
}

async fn resolve(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<HandleForm>,
) -> Response {
    handle(state, caller, id, form, AlertState::Resolved).await
}
