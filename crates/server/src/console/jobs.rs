//! Jobs as approvers see them: a tenant's jobs (`/tenants/{tenant}/jobs`),
//! one job's page (script, digest, targets and their results, watched by
//! `assets/jobs.js` while unfinished) and rejecting it. No page here
//! approves: approvals are made on the approver's machine (`bulwark job
//! approve`, RFD 0005), and the page shows the command.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{UserBar, error_page, error_page_back, render};
use crate::api::error::ApiError;
use crate::auth::session::CookieCaller;
use crate::auth::{Action, Caller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants/{tenant}/jobs", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/reject", post(job_reject))
        .route("/jobs/{id}/cancel", post(job_cancel))
}

struct JobRow {
    id: String,
    short_id: String,
    state: String,
    /// What happened (`bulwark_api::job_status`).
    status: &'static str,
    class: String,
    requested_by: String,
    reason: String,
    finished: usize,
    targets: usize,
    refused: usize,
    created_at: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    user: Option<UserBar>,
    version: &'static str,
    tenant: String,
    jobs: Vec<JobRow>,
    pending: usize,
}

async fn jobs_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
) -> Response {
    let views =
        match crate::api::tenants::tenant_for(&state, &caller, &tenant, Action::ViewJobs).await {
            Ok(t) => crate::api::jobs::job_views(&state, &caller, &t).await,
            Err(e) => Err(e),
        };
    let views = match views {
        Ok(v) => v,
        Err(e) => return error_page(e, UserBar::of(&caller)),
    };
    let jobs: Vec<JobRow> = views
        .into_iter()
        .map(|j| JobRow {
            short_id: j.id.chars().take(8).collect(),
            finished: j.targets.iter().filter(|t| t.status.is_final()).count(),
            refused: j.targets.iter().filter(|t| t.state == "refused").count(),
            targets: j.targets.len(),
            id: j.id,
            state: j.state,
            status: j.status.as_str(),
            class: j.class,
            requested_by: j.requested_by,
            reason: j.reason,
            created_at: j.created_at,
        })
        .collect();
    render(JobsPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        pending: jobs.iter().filter(|j| j.state == "pending").count(),
        tenant,
        jobs,
    })
}

struct TargetRow {
    t: bulwark_api::jobs::JobTargetView,
    exit: String,
    status: &'static str,
    label: &'static str,
    took: String,
    /// Connected with a protocol version without live output or cancel.
    too_old: bool,
    /// The page loads its live output (`assets/jobs.js`).
    live_output: bool,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    user: Option<UserBar>,
    version: &'static str,
    j: bulwark_api::jobs::JobView,
    short_id: String,
    sha_grouped: String,
    script_lines: usize,
    targets: Vec<TargetRow>,
    refusals: usize,
    /// Pending, and the caller's role on the tenant may approve.
    can_decide: bool,
    /// The caller asked for this job (and may not approve it).
    own_request: bool,
    /// Unfinished: the page watches for changes.
    live: bool,
    /// The caller may cancel it, and it is not over.
    can_cancel: bool,
    /// The job's state and its targets' states, to notice changes.
    progress: String,
    csrf: String,
    notice: Option<String>,
}

#[derive(Deserialize)]
struct JobQuery {
    approved: Option<String>,
    rejected: Option<String>,
    cancelled: Option<String>,
}

async fn job_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Query(q): Query<JobQuery>,
) -> Response {
    let notice = if q.approved.is_some() {
        Some("Your passkey signature was added to the job.".to_owned())
    } else if q.cancelled.is_some() {
        Some("The job was cancelled: devices not sent it yet will never get it; devices running it were told to stop.".to_owned())
    } else {
        q.rejected.map(|_| "The job was rejected.".to_owned())
    };
    match job_page_with(&state, &caller, &id, notice).await {
        Ok(r) => r,
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

async fn job_page_with(
    state: &AppState,
    caller: &Caller,
    id: &str,
    notice: Option<String>,
) -> Result<Response, ApiError> {
    let (j, tenant_id) = crate::api::jobs::job_for_console(state, caller, id).await?;
    let own_request = j.requested_by == caller.operator.username;
    let pending = j.state == "pending";
    let live = !j.status.is_final();
    // What `assets/jobs.js` compares with the API's answer: the job's
    // status and each target's.
    let progress = format!(
        "{}|{}",
        j.status.as_str(),
        j.targets
            .iter()
            .map(|t| t.status.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let sha_grouped = j
        .script_sha256
        .as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let script_lines = j.script.as_deref().map_or(0, |s| s.lines().count());
    let targets: Vec<TargetRow> = j
        .targets
        .iter()
        .map(|t| TargetRow {
            t: bulwark_api::jobs::JobTargetView {
                device_id: t.device_id.clone(),
                hostname: t.hostname.clone(),
                state: t.state.clone(),
                exit_code: t.exit_code,
                refusal_code: t.refusal_code.clone(),
                refusal_reason: t.refusal_reason.clone(),
                output_sha256: t.output_sha256.clone(),
                stdout: t.stdout.clone().filter(|s| !s.is_empty()),
                stderr: t.stderr.clone().filter(|s| !s.is_empty()),
                delivered_at: t.delivered_at.clone(),
                started_at: t.started_at.clone(),
                finished_at: t.finished_at.clone(),
                patches: t.patches.clone(),
                status: t.status,
                running_at: t.running_at.clone(),
                duration_ms: t.duration_ms,
                protocol_version: t.protocol_version,
                live_bytes: t.live_bytes,
                live_truncated: t.live_truncated,
            },
            exit: t.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            status: t.status.as_str(),
            label: t.status.label(),
            took: t
                .duration_ms
                .map(|ms| format!("{}.{} s", ms / 1000, (ms % 1000) / 100))
                .unwrap_or_default(),
            too_old: !t.status.is_final() && t.protocol_version.is_some_and(|v| v < 3),
            live_output: t.live_bytes > 0
                || t.live_truncated > 0
                || matches!(
                    t.status,
                    bulwark_api::job_status::TargetStatus::Running
                        | bulwark_api::job_status::TargetStatus::Delivered
                ),
        })
        .collect();
    Ok(render(JobPage {
        user: UserBar::of(caller),
        version: crate::VERSION,
        short_id: j.id.chars().take(8).collect(),
        sha_grouped,
        script_lines,
        refusals: targets.iter().filter(|t| t.t.state == "refused").count(),
        targets,
        can_decide: pending && caller.allows_in(Action::ApproveJob, &tenant_id),
        can_cancel: live
            && j.cancelled_at.is_none()
            && caller.allows_in(Action::CancelJob, &tenant_id),
        own_request,
        live,
        progress,
        csrf: caller.csrf_token.clone(),
        notice,
        j,
    }))
}

#[derive(Deserialize)]
struct RejectForm {
    csrf: String,
    reason: String,
}

async fn job_reject(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<RejectForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::api::jobs::reject(&state, &caller, &id, &form.reason).await {
        Ok(j) => Redirect::to(&format!("/jobs/{}?rejected=1", j.id)).into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), &format!("/jobs/{id}")),
    }
}

#[derive(Deserialize)]
struct CancelForm {
    csrf: String,
    reason: String,
}

async fn job_cancel(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
    Form(form): Form<CancelForm>,
) -> Response {
    if let Err(e) = caller.check_csrf(&form.csrf) {
        return error_page(e, UserBar::of(&caller));
    }
    match crate::api::jobs::cancel(&state, &caller, &id, &form.reason).await {
        Ok(j) => Redirect::to(&format!("/jobs/{}?cancelled=1", j.id)).into_response(),
        Err(e) => error_page_back(e, UserBar::of(&caller), &format!("/jobs/{id}")),
    }
}
