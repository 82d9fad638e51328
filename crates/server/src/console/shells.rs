//! Remote shells in the console (RFD 0015): the device page's Shell panel
//! (the device's live grants and the `bulwark shell` commands to ask for,
//! approve and open one), the lists of sessions (a device's, a tenant's)
//! and one session's page, which plays its recording back in xterm.js
//! (`assets/shell-playback.js`).
//!
//! The console opens no live shell, and never will: the session is sealed
//! end to end between the operator's `bulwark` and the agent, and a
//! terminal on a page the server serves would hand the keystrokes to the
//! server. A recording is played as the server serves it; the page says so
//! and names the commands that check it against the digest in the log.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bulwark_store::{ShellGrant, ShellSession};

use super::vendor::{XTERM_CSS, XTERM_JS, XTERM_LICENSE, XTERM_VERSION};
use super::{UserBar, error_page, human_bytes, human_duration, render, sh_word};
use crate::api::error::ApiError;
use crate::api::shells::grant_view;
use crate::auth::session::CookieCaller;
use crate::auth::{Action, Caller};
use crate::rfc3339;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/tenants/{tenant}/shell-sessions",
            get(tenant_sessions_page),
        )
        .route("/shell-sessions/{id}", get(session_page))
        .route(
            "/assets/shell-playback.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    include_str!("../../assets/shell-playback.js"),
                )
                    .into_response()
            }),
        )
}

/// A live grant on the device page.
pub(super) struct GrantRow {
    pub(super) id: String,
    pub(super) grantee: String,
    pub(super) account: String,
    pub(super) reason: String,
    pub(super) expires_at: String,
    /// `pending` or `approved`, by the agent's own rule (`grant_view`).
    pub(super) state: String,
    /// `bulwark shell approve ...` (pending) or `bulwark shell ...` (approved).
    pub(super) command: String,
}

/// A session as the lists show it.
pub(super) struct SessionRow {
    pub(super) id: String,
    pub(super) device_id: String,
    pub(super) hostname: String,
    pub(super) operator: String,
    pub(super) grant_id: String,
    pub(super) grant_short: String,
    pub(super) account: String,
    pub(super) reason: String,
    pub(super) opened_at: String,
    pub(super) closed_at: Option<String>,
    pub(super) duration: String,
    /// The recording's SHA-256 as the agent reported it, and its first
    /// 12 characters for the lists.
    pub(super) digest: Option<String>,
    pub(super) digest_short: String,
    pub(super) size: String,
}

/// The device page's Shell panel and its sessions.
pub(super) struct ShellPanel {
    pub(super) grants: Vec<GrantRow>,
    pub(super) sessions: Vec<SessionRow>,
    /// `bulwark shell request ...` for this device, for who may ask.
    pub(super) request: Option<String>,
    pub(super) tenant: String,
    /// The caller may read recordings (a read-only role sees the list only).
    pub(super) play: bool,
    /// What the tenant's policy says about telling the device's logged-in
    /// users (the server's copy: `bulwark policy show` verifies it).
    pub(super) notice: String,
}

/// The Shell panel of one device, or `None` for a role that sees no shells.
pub(super) async fn shell_panel(
    state: &AppState,
    caller: &Caller,
    device: &bulwark_store::Device,
) -> Result<Option<ShellPanel>, ApiError> {
    if caller
        .require_in(Action::ViewShells, &device.tenant_id)
        .is_err()
    {
        return Ok(None);
    }
    let rows = state
        .store
        .shell_grants(&caller.scope(), &device.tenant_id)
        .await?;
    let now = crate::now_millis() / 1000;
    let mut grants = Vec::new();
    for row in rows.iter().filter(|g| {
        g.grant.device_id == device.id && g.revoked_at.is_none() && g.grant.expires_at > now
    }) {
        let view = grant_view(state, caller, row).await?;
        let command = if view.state == "approved" {
            open_command(&device.tenant_name, &device.hostname, &view.id)
        } else {
            format!("bulwark shell approve {}", sh_word(&view.id))
        };
        grants.push(GrantRow {
            id: view.id,
            grantee: view.requested_by,
            account: view.account,
            reason: view.reason,
            expires_at: view.expires_at,
            state: view.state,
            command,
        });
    }
    let sessions = state
        .store
        .shell_sessions(&caller.scope(), &device.id)
        .await?;
    let hostnames = HashMap::from([(device.id.clone(), device.hostname.clone())]);
    let sessions = session_rows(state, sessions, &rows, &hostnames).await?;
    let request = caller
        .require_in(Action::RequestShell, &device.tenant_id)
        .is_ok()
        .then(|| request_command(&device.tenant_name, &device.hostname));
    let set = state
        .store
        .trust_statements(&caller.scope(), &device.tenant_id)
        .await?;
    let trust = crate::api::trust::TenantTrust::load(&device.tenant_id, &set);
    let notice = match trust.policy() {
        Some(policy) => format!(
            "Shell notices (policy v{}): {}.",
            policy.version,
            bulwark_policy::shell::notice_summary(policy.shell_notice.as_ref())
        ),
        None => "No policy yet: no shell opens.".to_owned(),
    };
    Ok(Some(ShellPanel {
        notice,
        play: caller
            .require_in(Action::ViewShellRecordings, &device.tenant_id)
            .is_ok(),
        grants,
        sessions,
        request,
        tenant: device.tenant_name.clone(),
    }))
}

fn request_command(tenant: &str, hostname: &str) -> String {
    format!(
        "bulwark shell request {} --tenant {} --reason 'what for' --for 30m",
        sh_word(hostname),
        sh_word(tenant)
    )
}

fn open_command(tenant: &str, hostname: &str, grant: &str) -> String {
    format!(
        "bulwark shell {} --tenant {} --grant {}",
        sh_word(hostname),
        sh_word(tenant),
        sh_word(grant)
    )
}

/// "3 min" from a session's times; "open" while it lasts.
fn session_duration(s: &ShellSession) -> String {
    match s.closed_at {
        Some(closed) => human_duration(
            u64::try_from(closed.saturating_sub(s.opened_at) / 1000).unwrap_or_default(),
        ),
        None => "open".to_owned(),
    }
}

async fn session_rows(
    state: &AppState,
    sessions: Vec<ShellSession>,
    grants: &[ShellGrant],
    hostnames: &HashMap<String, String>,
) -> Result<Vec<SessionRow>, ApiError> {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut rows = Vec::with_capacity(sessions.len());
    for s in sessions {
        if !names.contains_key(&s.operator_id) {
            let name = state
                .store
                .operator_by_id(&s.operator_id)
                .await?
                .map_or_else(|| s.operator_id.clone(), |o| o.username);
            names.insert(s.operator_id.clone(), name);
        }
        let grant = grants.iter().find(|g| g.grant.id == s.grant_id);
        rows.push(SessionRow {
            duration: session_duration(&s),
            operator: names.get(&s.operator_id).cloned().unwrap_or_default(),
            hostname: hostnames
                .get(&s.device_id)
                .cloned()
                .unwrap_or_else(|| s.device_id.clone()),
            account: grant.map(|g| g.grant.account.clone()).unwrap_or_default(),
            reason: grant.map(|g| g.grant.reason.clone()).unwrap_or_default(),
            opened_at: rfc3339(s.opened_at),
            closed_at: s.closed_at.map(rfc3339),
            size: s
                .end
                .recording_len
                .map(|n| human_bytes(u64::try_from(n).unwrap_or_default()))
                .unwrap_or_else(|| "-".to_owned()),
            digest_short: s
                .end
                .recording_sha256
                .as_deref()
                .map_or_else(|| "-".to_owned(), |d| d.chars().take(12).collect()),
            digest: s.end.recording_sha256,
            id: s.id,
            device_id: s.device_id,
            grant_short: s.grant_id.chars().take(8).collect(),
            grant_id: s.grant_id,
        });
    }
    Ok(rows)
}

#[derive(Template)]
#[template(path = "shell_sessions.html")]
struct TenantSessionsPage {
    user: Option<UserBar>,
    version: &'static str,
    tenant: String,
    sessions: Vec<SessionRow>,
    play: bool,
}

async fn tenant_sessions_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(tenant): Path<String>,
) -> Response {
    let page = async {
        let tenant =
            crate::api::tenants::tenant_for(&state, &caller, &tenant, Action::ViewShells).await?;
        let sessions = state
            .store
            .tenant_shell_sessions(&caller.scope(), &tenant.id)
            .await?;
        let grants = state
            .store
            .shell_grants(&caller.scope(), &tenant.id)
            .await?;
        let mut hostnames = HashMap::new();
        for s in &sessions {
            if !hostnames.contains_key(&s.device_id)
                && let Some(d) = state.store.device(&caller.scope(), &s.device_id).await?
            {
                hostnames.insert(d.id, d.hostname);
            }
        }
        let sessions = session_rows(&state, sessions, &grants, &hostnames).await?;
        Ok::<_, ApiError>(TenantSessionsPage {
            play: caller
                .require_in(Action::ViewShellRecordings, &tenant.id)
                .is_ok(),
            user: UserBar::of(&caller),
            version: crate::VERSION,
            tenant: tenant.name,
            sessions,
        })
    };
    match page.await {
        Ok(page) => render(page),
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

#[derive(Template)]
#[template(path = "shell_session.html")]
struct SessionPage {
    user: Option<UserBar>,
    version: &'static str,
    tenant: String,
    s: SessionRow,
    /// Why the agent ended it, or its refusal.
    ended_because: String,
    truncated: bool,
    /// The recording is whole on the server: the player loads it.
    playable: bool,
    /// What to say instead of the player.
    not_playable: String,
    xterm_js: &'static str,
    xterm_css: &'static str,
    xterm_license: &'static str,
    xterm_version: &'static str,
    verify: String,
    audit: String,
}

async fn session_page(
    State(state): State<AppState>,
    CookieCaller(caller): CookieCaller,
    Path(id): Path<String>,
) -> Response {
    let page = async {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::not_found("shell session"));
        }
        let id = id.to_ascii_lowercase();
        // Another tenant's session is not found, as one that does not exist.
        let session = state
            .store
            .shell_session(&caller.scope(), &id)
            .await?
            .ok_or_else(|| ApiError::not_found("shell session"))?;
        let grant = state
            .store
            .shell_grant(&caller.scope(), &session.grant_id)
            .await?
            .ok_or_else(|| ApiError::not_found("shell session"))?;
        caller.require_in(Action::ViewShellRecordings, &grant.grant.tenant_id)?;
        let device = state
            .store
            .device(&caller.scope(), &session.device_id)
            .await?;
        let tenant = device
            .as_ref()
            .map(|d| d.tenant_name.clone())
            .unwrap_or_default();
        let hostnames: HashMap<String, String> =
            device.map(|d| (d.id, d.hostname)).into_iter().collect();
        let ended_because = match (&session.end.refusal, session.end.reason.as_str()) {
            (Some(code), "") => code.clone(),
            (Some(code), reason) => format!("{code}: {reason}"),
            (None, reason) => reason.to_owned(),
        };
        let truncated = session.end.truncated;
        let not_playable = match (session.end.recording_len, session.closed_at) {
            (_, None) => "The session is still open: its recording arrives when it ends.",
            (None, Some(_)) => "This session has no recording: it ended before a shell started.",
            (Some(len), Some(_)) if session.stored_len < len => {
                "The agent has not sent the whole recording yet: reload in a moment."
            }
            _ => "",
        };
        let s = session_rows(&state, vec![session], &[grant], &hostnames)
            .await?
            .pop()
            .ok_or_else(|| ApiError::not_found("shell session"))?;
        Ok::<_, ApiError>(SessionPage {
            user: UserBar::of(&caller),
            version: crate::VERSION,
            verify: format!(
                "bulwark shell recording {} --output {}.cast",
                sh_word(&s.id),
                sh_word(&s.id)
            ),
            audit: format!("bulwark audit verify --tenant {}", sh_word(&tenant)),
            tenant,
            ended_because,
            truncated,
            playable: not_playable.is_empty(),
            not_playable: not_playable.to_owned(),
            xterm_js: XTERM_JS,
            xterm_css: XTERM_CSS,
            xterm_license: XTERM_LICENSE,
            xterm_version: XTERM_VERSION,
            s,
        })
    };
    match page.await {
        Ok(page) => render(page),
        Err(e) => error_page(e, UserBar::of(&caller)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_quote_what_the_server_and_the_agent_said() {
        assert_eq!(
            request_command("acme", "db01"),
            "bulwark shell request db01 --tenant acme --reason 'what for' --for 30m"
        );
        // A host name an agent chose stays one word when pasted.
        assert_eq!(
            open_command("acme corp", "db01; rm -rf ~", "0a1b"),
            "bulwark shell 'db01; rm -rf ~' --tenant 'acme corp' --grant 0a1b"
        );
    }

    #[test]
    fn a_session_lasts_from_open_to_close() {
        let mut s = ShellSession {
            id: "s".into(),
            grant_id: "g".into(),
            device_id: "d".into(),
            operator_id: "o".into(),
            opened_at: 1_000,
            closed_at: None,
            end: Default::default(),
            stored_len: 0,
        };
        assert_eq!(session_duration(&s), "open");
        s.closed_at = Some(1_000 + 125_000);
        assert_eq!(session_duration(&s), "2 min");
    }
}
