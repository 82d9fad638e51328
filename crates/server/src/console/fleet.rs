//! Finding devices in the console (RFD 0016): `/devices`, every device the
//! signed-in person may see across tenants, with a search box and filters
//! as a plain GET form (no script needed), paging and the count; and the
//! forms that set a device's tags and group from its page (CSRF field,
//! same checks as the API: `api::device_search`).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bulwark_api::devices::DeviceView;
use bulwark_api::fleet::{DeviceGroupRequest, DeviceSearch, DeviceTagsRequest};
use serde::Deserialize;

use super::audit::encode;
use super::{UserBar, error_page, error_page_back, render};
use crate::auth::session::CookieCaller;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/devices", get(devices_page))
        .route("/devices/{id}/tags", post(tags_form))
        .route("/devices/{id}/group", post(group_form))
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    user: Option<UserBar>,
    version: &'static str,
    /// The form as it was sent (shown back, escaped).
    q: String,
    tenant: String,
    tag: String,
    group: String,
    status: String,
    os: String,
    tenants: Vec<String>,
    devices: Vec<DeviceView>,
    total: u64,
    /// Links to the next page and back to the first.
    next: Option<String>,
    first: Option<String>,
    /// Why the search was refused (a bad parameter).
    problem: Option<String>,
    filtered: bool,
}

/// The form's fields, in the order the API takes them; `cursor` and
/// `limit` are left to the links.
const FIELDS: [&str; 6] = ["q", "tenant", "tag", "group", "status", "os"];

async fn devices_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let pairs = query.map(|Query(p)| p).unwrap_or_default();
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let tenants = match state.store.list_tenants(&caller.scope()).await {
        Ok(list) => list.into_iter().map(|t| t.name).collect(),
        Err(e) => return error_page(e.into(), UserBar::of(&caller)),
    };
    // The form's own fields, then the page's cursor.
    let form: Vec<(String, String)> = FIELDS
        .iter()
        .map(|name| ((*name).to_owned(), field(name)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let base: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut sent = form.clone();
    if !field("cursor").is_empty() {
        sent.push(("cursor".to_owned(), field("cursor")));
    }
    let (devices, total, next, problem) = match DeviceSearch::from_pairs(&sent) {
        Ok(search) => {
            match crate::api::device_search::search_view(&state, &caller, &search).await {
                Ok(view) => (view.devices, view.total, view.next_cursor, None),
                Err(e) if e.status.is_client_error() && e.status.as_u16() != 403 => {
                    (Vec::new(), 0, None, Some(e.message.clone()))
                }
                Err(e) => return error_page(e, UserBar::of(&caller)),
            }
        }
        Err(why) => (Vec::new(), 0, None, Some(why)),
    };
    let link = |cursor: Option<&str>| {
        let mut parts: Vec<String> = if base.is_empty() {
            Vec::new()
        } else {
            vec![base.clone()]
        };
        if let Some(c) = cursor {
            parts.push(format!("cursor={}", encode(c)));
        }
        format!("/devices?{}", parts.join("&"))
    };
    render(DevicesPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        q: field("q"),
        tenant: field("tenant"),
        tag: field("tag"),
        group: field("group"),
        status: field("status"),
        os: field("os"),
        tenants,
        next: next.as_deref().map(|c| link(Some(c))),
        first: (!field("cursor").is_empty()).then(|| link(None)),
        filtered: !form.is_empty(),
        devices,
        total,
        problem,
    })
}

#[derive(Deserialize)]
struct TagsForm {
    csrf: String,
    #[serde(default)]
    add: String,
    #[serde(default)]
    remove: String,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn tags_form(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<TagsForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    let request = DeviceTagsRequest {
        add: list(&form.add),
        remove: list(&form.remove),
    };
    match crate::api::device_search::change_tags(&state, &caller, &id, &request).await {
        Ok(view) => Redirect::to(&format!("/devices/{}#labels", view.device_id)).into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), &format!("/devices/{id}")),
    }
}

#[derive(Deserialize)]
struct GroupForm {
    csrf: String,
    /// Empty: no group.
    #[serde(default)]
    group: String,
}

async fn group_form(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<GroupForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    let request = DeviceGroupRequest {
        group: (!form.group.trim().is_empty()).then(|| form.group.clone()),
    };
    match crate::api::device_search::set_group(&state, &caller, &id, request.group.as_deref()).await
    {
        Ok(view) => Redirect::to(&format!("/devices/{}#labels", view.device_id)).into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), &format!("/devices/{id}")),
    }
}
