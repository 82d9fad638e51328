//! A tenant's patch page (`/tenants/{tenant}/patching`, RFD 0021): each
//! patch policy with what it installs and its rings' states (waiting,
//! running, soaking, released, held and why), and the daily patch
//! compliance chart of the SLA report. The server's account, for people:
//! every agent checks each ring's signed schedule itself.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use bulwark_api::patch_policies::PatchPolicyView;

use super::{UserBar, error_page, render};
use crate::auth::session::CookieCaller;
use crate::chart::Chart;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/tenants/{tenant}/patching", get(patching_page))
}

#[derive(Template)]
#[template(path = "patching.html")]
struct PatchingPage {
    user: Option<UserBar>,
    version: &'static str,
    tenant: String,
    policies: Vec<PatchPolicyView>,
    compliance_chart: Option<Chart>,
}

async fn patching_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
) -> Response {
    let policies =
        match crate::api::patch_policies::patch_policy_views(&state, &caller, &tenant).await {
            Ok(v) => v,
            Err(e) => return error_page(e, UserBar::of(&caller)),
        };
    // The chart needs the SLA report, which whoever sees alerts may read:
    // a caller who may not sees the policies without it.
    let compliance_chart = crate::api::sla::sla_report(&state, &caller, &tenant, Some(90))
        .await
        .ok()
        .and_then(|report| super::sla::compliance_chart(&report));
    render(PatchingPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        tenant,
        policies,
        compliance_chart,
    })
}
