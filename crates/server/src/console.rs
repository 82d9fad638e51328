//! The web console: server-rendered pages (askama escapes every value by
//! default), one stylesheet and one script served from here, no inline
//! script or style, nothing fetched from elsewhere.
//!
//! This module holds what every page shares: the router (each page family
//! brings its own routes), the signed-in header (`UserBar`), the error
//! pages, the cross-site form check, the assets and the units pages show
//! (bytes, durations, bar steps). Each family of pages is a module of its
//! own: `sign_in`, `tenants`, `devices`, `jobs`, `operators`, `cli_sign_in`,
//! `account`, `settings`, `audit`, `sla`, `metrics` (charts and the
//! dashboard) and `scripts` (the script library and the Run panel).

use askama::Template;
use axum::Router;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use bulwark_api::error::ErrorCode;
use serde::Deserialize;

use crate::api::error::{ApiError, is_error, refusal, with_headers};
use crate::auth::session::{CookieCaller, cross_origin_write};
use crate::auth::{Action, Caller};
use crate::state::AppState;

mod account;
mod alerts;
mod audit;
mod cli_sign_in;
mod devices;
mod fleet;
mod jobs;
mod metrics;
mod operators;
mod patching;
mod scripts;
mod settings;
mod shells;
mod sign_in;
mod sla;
mod tenants;
mod vendor;

/// The console's routes. Two things hold for all of them:
///
/// - a form posted from another site is refused before its handler runs
///   ([`same_origin_forms`]), those needing no session too: `POST /login`,
///   `POST /setup`, `POST /setup/totp`, `POST /invite/{token}` and
///   `POST /invite/totp` (login CSRF); the signed-in ones (`/logout`,
///   `/device`, `/account/...`, `/operators/...`, ...) as well, besides their
///   own CSRF field;
/// - every error is an HTML page ([`html_errors`]), a 405 too.
pub fn router() -> Router<AppState> {
    pages()
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(same_origin_forms))
        .layer(axum::middleware::map_response(html_errors))
}

fn pages() -> Router<AppState> {
    Router::new()
        .merge(sign_in::router())
        .merge(tenants::router())
        .merge(devices::router())
        .merge(fleet::router())
        .merge(jobs::router())
        .merge(scripts::router())
        .merge(alerts::router())
        .merge(sla::router())
        .merge(patching::router())
        .merge(operators::router())
        .merge(cli_sign_in::router())
        .merge(account::router())
        .merge(settings::router())
        .merge(audit::router())
        .merge(metrics::router())
        .merge(shells::router())
        .merge(vendor::router())
        .route("/", get(home))
        .route(
            "/assets/app.css",
            get(|| asset("text/css; charset=utf-8", include_str!("../assets/app.css"))),
        )
        .route(
            "/assets/app.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/app.js"),
                )
            }),
        )
        .route(
            "/assets/passkeys.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/passkeys.js"),
                )
            }),
        )
        .route(
            "/assets/jobs.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/jobs.js"),
                )
            }),
        )
        .route(
            "/assets/favicon.svg",
            get(|| asset("image/svg+xml", include_str!("../assets/favicon.svg"))),
        )
}

/// Login CSRF: an unsafe-method request from a page of another site is
/// refused with a 403 page, and nothing happens (no session, no cookie, no
/// throttle charge, no audit event). The decision is
/// [`crate::auth::session::cross_origin_write`], the one the API's session
/// check makes.
async fn same_origin_forms(request: axum::extract::Request, next: Next) -> Response {
    if cross_origin_write(request.method(), request.headers()) {
        return error_page(ApiError::cross_origin(), None);
    }
    next.run(request).await
}

/// An error response that is not a page yet (an extractor's rejection, a
/// handler's or extractor's [`ApiError`]) becomes the error page.
async fn html_errors(response: Response) -> Response {
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html || !is_error(response.status()) {
        return response;
    }
    let (error, headers) = refusal(response).await;
    with_headers(error_page(error, None), headers)
}

async fn method_not_allowed(method: Method) -> Response {
    error_page(
        ApiError::rejected(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("this page does not take {method}"),
        ),
        None,
    )
}

/// The page for a path no route has.
pub fn not_found_page() -> Response {
    error_page(ApiError::not_found("page"), None)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Who is signed in, as the page header shows it.
struct UserBar {
    username: String,
    role: &'static str,
    csrf: String,
    /// Show the Operators page in the navigation.
    operators: bool,
    /// Show the security settings page in the navigation.
    settings: bool,
    /// Show the MSP-wide audit log in the navigation.
    msp_log: bool,
    /// Show the script library in the navigation.
    scripts: bool,
}

impl UserBar {
    fn of(caller: &Caller) -> Option<Self> {
        Some(Self {
            username: caller.operator.username.clone(),
            role: caller.account_label(),
            csrf: caller.csrf_token.clone(),
            operators: caller.require(Action::ListOperators).is_ok(),
            settings: caller.require(Action::ViewPasskeyPolicy).is_ok(),
            msp_log: caller.require(Action::ViewMspLog).is_ok(),
            scripts: caller.require(Action::ViewScripts).is_ok(),
        })
    }
}

fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

/// An error as a page, for people rather than programs.
fn error_page(error: ApiError, user: Option<UserBar>) -> Response {
    error_page_back(error, user, "/tenants")
}

/// [`error_page`]; a `step_up_required` refusal also shows the step-up form,
/// which returns to `next` (the page the action was on) once passed.
fn error_page_back(error: ApiError, user: Option<UserBar>, next: &str) -> Response {
    let status = error.status;
    let step_up = error.code == ErrorCode::StepUpRequired && user.is_some();
    let csrf = user.as_ref().map(|u| u.csrf.clone()).unwrap_or_default();
    let title = if step_up {
        "Confirm it is you"
    } else {
        match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            _ if status.is_server_error() => "Something went wrong",
            _ => "Request refused",
        }
    };
    let passkey_required = error.code == ErrorCode::PasskeyRequired && user.is_some();
    let mut response = render(ErrorPage {
        user,
        version: crate::VERSION,
        title,
        message: error.message,
        step_up,
        passkey_required,
        csrf,
        next: next.to_owned(),
    });
    *response.status_mut() = status;
    response
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    user: Option<UserBar>,
    version: &'static str,
    title: &'static str,
    message: String,
    step_up: bool,
    /// The session may only register a passkey: point to the account page.
    passkey_required: bool,
    csrf: String,
    next: String,
}

async fn home(caller: Option<CookieCaller>) -> Redirect {
    if caller.is_some() {
        Redirect::to("/dashboard")
    } else {
        Redirect::to("/login")
    }
}

/// A form that carries nothing but its CSRF token.
#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `part` of `whole` in tenths (0 to 10), the step a bar is drawn at.
fn pct_step(part: u64, whole: u64) -> u64 {
    // Anything above zero shows at least one step, so a bar is never empty by rounding.
    if part > 0 && whole > 0 && part.saturating_mul(20) < whole {
        return 1;
    }
    (part.saturating_mul(10) + whole / 2)
        .checked_div(whole)
        .unwrap_or(0)
        .min(10)
}

/// POSIX single quoting for a command the console shows, to be pasted into
/// a terminal: whatever the value (a host name an agent chose, a reason),
/// it stays one word and runs nothing.
fn sh_word(value: &str) -> String {
    if !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ',' | '/' | ':' | '=')
        })
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Bytes as people read them (binary units).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// 5 → "5 s", 93 → "1 min", 7260 → "2 h 1 min", 200000 → "2 d 7 h": the
/// one way the console and the CLI show a duration.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(8 * 1024 * 1024 * 1024), "8.0 GiB");
        assert_eq!(human_duration(90_061), "1 d 1 h");
        assert_eq!(human_duration(5), "5 s");
        assert_eq!(human_duration(93), "1 min");
        assert_eq!(human_duration(7260), "2 h 1 min");
        assert_eq!(human_duration(200_000), "2 d 7 h");
        assert_eq!(pct_step(5, 10), 5);
        assert_eq!(pct_step(1, 0), 0);
    }

    #[test]
    fn shown_words_are_one_shell_word_each() {
        assert_eq!(sh_word("acme"), "acme");
        assert_eq!(sh_word("cleanup@2"), "cleanup@2");
        assert_eq!(sh_word("a b"), "'a b'");
        assert_eq!(sh_word("it's $(rm -rf /)"), r"'it'\''s $(rm -rf /)'");
        assert_eq!(sh_word(""), "''");
        assert_eq!(sh_word("db01\n; reboot"), "'db01\n; reboot'");
    }
}
