//! The script library in the console (RFD 0013): `/scripts` (the list),
//! `/scripts/{name}` (versions, one version's content, escaped, and its
//! reviews as the server says), and the Run panel: `/tenants/{tenant}/run`
//! prepares a job (a library script or a one-off command, targets,
//! parameters) and shows the exact `bulwark job run …` command that signs
//! it on the operator's machine. Nothing here signs or submits a job
//! (RFD 0005): the operator's `bulwark` fetches the version, checks its
//! hash and review against the tenant's verified policy, shows what it
//! signs and asks before signing.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use bulwark_scripts::{Limits, parse_assignment, parse_params};
use serde::Deserialize;

use super::{UserBar, error_page, render, sh_word};
use crate::api::error::ApiError;
use crate::auth::session::CookieCaller;
use crate::auth::{Action, Caller};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/scripts", get(scripts_page))
        .route("/scripts/{name}", get(script_page))
        .route("/tenants/{tenant}/run", get(run_page))
}

struct ScriptRow {
    name: String,
    description: String,
    latest_version: u32,
    latest_reviews: i64,
}

#[derive(Template)]
#[template(path = "scripts.html")]
struct ScriptsPage {
    user: Option<UserBar>,
    version: &'static str,
    scripts: Vec<ScriptRow>,
}

async fn scripts_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
) -> Response {
    let rows = async {
        caller.require(Action::ViewScripts)?;
        Ok::<_, ApiError>(state.store.list_scripts().await?)
    };
    match rows.await {
        Ok(scripts) => render(ScriptsPage {
            user: UserBar::of(&caller),
            version: crate::VERSION,
            scripts: scripts
                .into_iter()
                .map(|s| ScriptRow {
                    name: s.name,
                    description: s.description,
                    latest_version: s.latest_version,
                    latest_reviews: s.latest_reviews,
                })
                .collect(),
        }),
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u32>,
}

struct VersionRow {
    version: u32,
    interpreter: &'static str,
    sha256: String,
    author: String,
    reviews: usize,
    created_at: String,
}

struct Shown {
    version: u32,
    interpreter: &'static str,
    params: Vec<String>,
    sha256: String,
    author: String,
    created_at: String,
    reviewers: Vec<String>,
    content: String,
}

#[derive(Template)]
#[template(path = "script.html")]
struct ScriptPage {
    user: Option<UserBar>,
    version: &'static str,
    name: String,
    description: String,
    versions: Vec<VersionRow>,
    shown: Option<Shown>,
}

async fn script_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(name): Path<String>,
    query: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let wanted = query.ok().and_then(|Query(q)| q.version);
    let page = async {
        caller.require(Action::ViewScripts)?;
        let view = crate::api::scripts::script_view(&state, &name).await?;
        let shown_number = wanted.or(view.versions.first().map(|v| v.version));
        let shown = match shown_number {
            Some(number) => {
                let script = state
                    .store
                    .script_by_name(&name)
                    .await?
                    .ok_or_else(|| ApiError::not_found("script"))?;
                let row = state
                    .store
                    .script_version(&script.id, number)
                    .await?
                    .ok_or_else(|| ApiError::not_found("script version"))?;
                let reviews = state.store.script_reviews(&script.id, number).await?;
                Some(Shown {
                    version: row.version,
                    interpreter: interpreter_name(&row.interpreter),
                    params: crate::api::scripts::param_lines(&row.params),
                    sha256: row.sha256,
                    author: row.author_username,
                    created_at: crate::rfc3339(row.created_at),
                    reviewers: reviews.into_iter().map(|r| r.reviewer_username).collect(),
                    content: row.content,
                })
            }
            None => None,
        };
        Ok::<_, ApiError>((view, shown))
    };
    match page.await {
        Ok((view, shown)) => render(ScriptPage {
            user: UserBar::of(&caller),
            version: crate::VERSION,
            versions: view
                .versions
                .iter()
                .map(|v| VersionRow {
                    version: v.version,
                    interpreter: v.interpreter.name(),
                    sha256: v.sha256.clone(),
                    author: v.author.clone(),
                    reviews: v.reviews.len(),
                    created_at: v.created_at.clone(),
                })
                .collect(),
            name: view.name,
            description: view.description,
            shown,
        }),
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

fn interpreter_name(stored: &str) -> &'static str {
    match stored {
        "bash" => "bash",
        "python3" => "python3",
        _ => "sh",
    }
}

/// The Run panel on the device and tenant pages: shown to whoever may
/// request jobs in the tenant.
pub(super) struct RunPanel {
    pub tenant: String,
    /// Prefilled targets (the device's host name on a device page).
    pub targets: String,
    /// Prefilled tag and group choices (RFD 0016).
    pub tag: String,
    pub group: String,
    pub scripts: Vec<String>,
}

/// The panel for `tenant`, if the caller may request jobs there.
pub(super) async fn run_panel(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    targets: &str,
) -> Option<RunPanel> {
    crate::api::tenants::tenant_for(state, caller, tenant, Action::RequestJob)
        .await
        .ok()?;
    let scripts = if caller.require(Action::ViewScripts).is_ok() {
        state
            .store
            .list_scripts()
            .await
            .ok()?
            .into_iter()
            .map(|s| s.name)
            .collect()
    } else {
        Vec::new()
    };
    Some(RunPanel {
        tenant: tenant.to_owned(),
        targets: targets.to_owned(),
        tag: String::new(),
        group: String::new(),
        scripts,
    })
}

#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    /// `library` or `command`.
    source: Option<String>,
    script: Option<String>,
    command: Option<String>,
    /// `name=value`, one per line.
    params: Option<String>,
    targets: Option<String>,
    /// Tags (comma separated) and a group: the devices `bulwark` lists
    /// and signs for (RFD 0016).
    tag: Option<String>,
    group: Option<String>,
    all: Option<String>,
    reason: Option<String>,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    user: Option<UserBar>,
    version: &'static str,
    run: RunPanel,
    query_script: String,
    query_command: String,
    query_params: String,
    query_reason: String,
    all: bool,
    library: bool,
    /// The command that signs the prepared job, or why it cannot be prepared.
    prepared: Option<Result<String, String>>,
}

/// The `bulwark job run` command for a prepared job, after the checks the
/// CLI will make again (the script and version exist, each parameter is
/// one of the version's, valid for its type, and every one has a value).
async fn prepare(
    state: &AppState,
    tenant: &str,
    q: &RunQuery,
    library: bool,
) -> Result<String, String> {
    let targets: Vec<&str> = q
        .targets
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let all = q.all.is_some();
    let tags = q
        .tag
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(bulwark_api::fleet::parse_tag)
        .collect::<Result<Vec<_>, _>>()?;
    let group = match q.group.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
        Some(g) => Some(bulwark_api::fleet::parse_group(g)?),
        None => None,
    };
    if targets.is_empty() && !all && tags.is_empty() && group.is_none() {
        return Err("Name the targets (host names or device ids, comma separated), a tag or a group, or choose the whole tenant.".into());
    }
    let mut words = vec![
        "bulwark".to_owned(),
        "job".into(),
        "run".into(),
        "--tenant".into(),
        sh_word(tenant),
    ];
    if all {
        words.push("--all".into());
    } else if !tags.is_empty() || group.is_some() {
        for tag in &tags {
            words.push("--tag".into());
            words.push(sh_word(tag));
        }
        if let Some(group) = &group {
            words.push("--group".into());
            words.push(sh_word(group));
        }
    } else {
        words.push("--targets".into());
        words.push(sh_word(&targets.join(",")));
    }
    if library {
        let reference = q.script.as_deref().unwrap_or_default().trim();
        let (name, number) = match reference.split_once('@') {
            Some((n, v)) => (
                n,
                Some(
                    v.parse::<u32>()
                        .map_err(|_| "The version after @ is a number.".to_owned())?,
                ),
            ),
            None => (reference, None),
        };
        let script = state
            .store
            .script_by_name(name)
            .await
            .map_err(|_| "The library could not be read.".to_owned())?
            .ok_or_else(|| format!("No script {name:?} in the library."))?;
        let number = number.unwrap_or(script.latest_version);
        let version = state
            .store
            .script_version(&script.id, number)
            .await
            .map_err(|_| "The library could not be read.".to_owned())?
            .ok_or_else(|| format!("{name} has no version {number}."))?;
        let limits = Limits::default();
        let specs = parse_params(&crate::api::scripts::param_lines(&version.params), &limits)
            .map_err(|e| e.to_string())?;
        let mut values: Vec<(String, String)> = Vec::new();
        for line in q.params.as_deref().unwrap_or_default().lines() {
            if line.trim().is_empty() {
                continue;
            }
            values.push(parse_assignment(line.trim_end_matches('\r')).map_err(|e| e.to_string())?);
        }
        // The CLI's own check, run here too so a mistake shows before the terminal.
        bulwark_scripts::script_with_params(
            bulwark_policy::Interpreter::Sh,
            &specs,
            &values,
            "",
            &limits,
        )
        .map_err(|e| e.to_string())?;
        words.push("--library".into());
        words.push(sh_word(&format!("{}@{number}", script.name)));
        for (k, v) in &values {
            words.push("--param".into());
            words.push(sh_word(&format!("{k}={v}")));
        }
    } else {
        let command = q.command.as_deref().unwrap_or_default().trim();
        if command.is_empty() || command.contains('\n') || command.chars().any(char::is_control) {
            return Err("Write a one-line command.".into());
        }
        words.push("--command".into());
        words.push(sh_word(command));
    }
    let reason = q.reason.as_deref().unwrap_or_default().trim();
    if !reason.is_empty() {
        words.push("--reason".into());
        words.push(sh_word(reason));
    }
    Ok(words.join(" "))
}

async fn run_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let found = crate::api::tenants::tenant_for(&state, &caller, &tenant, Action::RequestJob).await;
    let tenant_row = match found {
        Ok(t) => t,
        Err(e) => return error_page(e, UserBar::of(&caller)),
    };
    let Some(mut run) = run_panel(
        &state,
        &caller,
        &tenant_row.name,
        q.targets.as_deref().unwrap_or_default(),
    )
    .await
    else {
        return error_page(ApiError::forbidden(), UserBar::of(&caller));
    };
    run.tag = q.tag.clone().unwrap_or_default();
    run.group = q.group.clone().unwrap_or_default();
    let library = q.source.as_deref() != Some("command");
    let asked = q.source.is_some();
    let prepared = if asked && library && caller.require(Action::ViewScripts).is_err() {
        Some(Err("Your role does not see the script library.".to_owned()))
    } else if asked {
        Some(prepare(&state, &tenant_row.name, &q, library).await)
    } else {
        None
    };
    render(RunPage {
        user: UserBar::of(&caller),
        version: crate::VERSION,
        run,
        query_script: q.script.clone().unwrap_or_default(),
        query_command: q.command.clone().unwrap_or_default(),
        query_params: q.params.clone().unwrap_or_default(),
        query_reason: q.reason.clone().unwrap_or_default(),
        all: q.all.is_some(),
        library,
        prepared,
    })
}
