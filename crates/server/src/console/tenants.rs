//! The tenants an operator sees (`/tenants`, with how many of their
//! devices are online) and one tenant's page: its devices and, for those
//! who may, a new enrolment token.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use bulwark_api::devices::DeviceView;
use bulwark_api::tenants::EnrollmentTokenView;

use super::{CsrfForm, UserBar, error_page, error_page_back, pct_step, render};
use crate::api::devices::device_views;
use crate::api::tenants::issue_enrollment_token;
use crate::auth::session::CookieCaller;
use crate::auth::{Action, Caller, Standing};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(tenants_page))
        .route("/tenants/{tenant}", get(tenant_page))
        .route(
            "/tenants/{tenant}/enrollment-tokens",
            post(tenant_issue_token),
        )
}

struct TenantRow {
    name: String,
    device_count: i64,
    online_count: i64,
    online_pct_step: i64,
}

#[derive(Template)]
#[template(path = "tenants.html")]
struct TenantsPage {
    user: Option<UserBar>,
    version: &'static str,
    tenants: Vec<TenantRow>,
}

async fn tenants_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
) -> Response {
    if let Err(e) = caller.require(Action::ListTenants) {
        return error_page(e, UserBar::of(&caller));
    }
    let tenants = match state.store.list_tenants(&caller.scope()).await {
        Ok(t) => t,
        Err(e) => return error_page(e.into(), UserBar::of(&caller)),
    };
    let tenants = tenants
        .into_iter()
        .map(|t| {
            let online = i64::try_from(state.presence.online_in_tenant(&t.id)).unwrap_or_default();
            let step = pct_step(
                u64::try_from(online).unwrap_or_default(),
                u64::try_from(t.device_count).unwrap_or_default(),
            );
            TenantRow {
                name: t.name,
                device_count: t.device_count,
                online_count: online,
                online_pct_step: i64::try_from(step).unwrap_or_default(),
            }
        })
        .collect();
    render(TenantsPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        tenants,
    })
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct TenantPage {
    user: Option<UserBar>,
    version: &'static str,
    tenant: String,
    devices: Vec<DeviceView>,
    online: usize,
    token: Option<EnrollmentTokenView>,
    gateway_url: String,
    can_enroll: bool,
    csrf: String,
    charts: Vec<crate::chart::Chart>,
    ranges: Vec<super::metrics::RangeLink>,
    run: Option<super::scripts::RunPanel>,
    /// The tenant's schedules (RFD 0019), as the server holds them; none
    /// for a caller who may not see jobs.
    schedules: Vec<bulwark_api::schedules::ScheduleView>,
    /// The stored policy's device groups and the checks on each (RFD 0022).
    check_groups: Vec<CheckGroupCard>,
}

/// A device group of the policy: who is in it, which checks run on it.
struct CheckGroupCard {
    name: String,
    checks: String,
    members: Vec<GroupMemberRow>,
}

struct GroupMemberRow {
    hostname: String,
    device_id: String,
    /// The key fingerprint, hex.
    key: String,
}

fn check_group_cards(policy: &bulwark_policy::Policy) -> Vec<CheckGroupCard> {
    policy
        .device_groups()
        .iter()
        .map(|g| CheckGroupCard {
            name: g.name.clone(),
            checks: policy
                .checks()
                .iter()
                .filter(|c| c.groups.as_ref().is_some_and(|on| on.contains(&g.name)))
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            members: g
                .members
                .iter()
                .map(|m| GroupMemberRow {
                    hostname: m.hostname.clone(),
                    device_id: m.device_id.clone(),
                    key: hex::encode(m.device_key),
                })
                .collect(),
        })
        .collect()
}

/// Whether the page offers enrolment tokens on `tenant` (a name already shown
/// to the caller); the API call behind the button checks again.
fn can_enroll(caller: &Caller, tenant: &str) -> bool {
    match &caller.standing {
        Standing::Owner => true,
        Standing::Granted(grants) => grants
            .iter()
            .find(|g| g.tenant_name == tenant)
            .is_some_and(|g| caller.allows_in(Action::IssueEnrollmentToken, &g.tenant_id)),
    }
}

async fn tenant_page_with(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    token: Option<EnrollmentTokenView>,
    range: super::metrics::ChartRange,
) -> Response {
    let page = async {
        let devices = device_views(state, caller, tenant).await?;
        let t = crate::api::tenants::tenant_for(state, caller, tenant, Action::ViewDevices).await?;
        let charts = super::metrics::tenant_charts(state, caller, tenant, &t.id, range).await?;
        let groups = crate::transparency_log::witnessing::policy_of(&state.store, &t.id)
            .await
            .ok()
            .flatten()
            .map(|p| check_group_cards(&p))
            .unwrap_or_default();
        Ok::<_, crate::api::error::ApiError>((devices, charts, groups))
    };
    let run = super::scripts::run_panel(state, caller, tenant, "").await;
    let schedules = crate::api::schedules::schedule_views(state, caller, tenant)
        .await
        .unwrap_or_default();
    match page.await {
        Ok((devices, charts, check_groups)) => render(TenantPage {
            check_groups,
            charts,
            ranges: super::metrics::range_links(&format!("/tenants/{tenant}"), range),
            run,
            schedules,
            can_enroll: can_enroll(caller, tenant),
            user: UserBar::of(caller),
            version: crate::VERSION,
            tenant: tenant.to_owned(),
            online: devices.iter().filter(|d| d.online).count(),
            devices,
            token,
            gateway_url: state.gateway_url.clone(),
            csrf: caller.csrf_token.clone(),
        }),
        Err(e) => error_page(e, UserBar::of(caller)),
    }
}

async fn tenant_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let range = super::metrics::ChartRange::from_query(raw.as_deref());
    tenant_page_with(&state, &caller, &tenant, None, range).await
}

async fn tenant_issue_token(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match issue_enrollment_token(&state, &caller, &tenant, 60).await {
        Ok(token) => {
            tenant_page_with(
                &state,
                &caller,
                &tenant,
                Some(token),
                super::metrics::ChartRange::Day,
            )
            .await
        }
        Err(e) => error_page_back(e, UserBar::of(&caller), &format!("/tenants/{tenant}")),
    }
}
