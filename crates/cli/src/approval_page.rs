//! The page this `bulwark` serves on the operator's own machine for the
//! passkey ceremonies that approve jobs (RFD 0005): registering an approval
//! passkey, and approving one job.
//!
//! Approval passkeys live under the RP id [`APPROVAL_RP_ID`]
//! (`bulwark-approve.localhost`). Browsers resolve every `*.localhost` name
//! to this machine and treat it as a secure context, so only a page served
//! here can use such a credential: a console page, served from the MSP's
//! host or from `localhost`, cannot claim that RP id (the browser refuses
//! with a SecurityError), and agents accept no other RP id and no other
//! origin for an approval. What the person approves is rendered here, by
//! this binary, from the statement's own bytes.
//!
//! Any page in the same browser can reach a port on this machine, so the
//! page lives under a random path secret per launch, answers only requests
//! whose `Host` is `bulwark-approve.localhost:<port>` (no DNS rebinding),
//! takes the browser's result only from its own origin, and only once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_policy::APPROVAL_RP_ID;
use rand::RngCore as _;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// How long the page waits for the person.
pub(crate) const WAIT: Duration = Duration::from_secs(300);

/// What the page asks the authenticator for.
pub(crate) enum Ceremony {
    /// `navigator.credentials.create` for a new approval passkey.
    Register {
        name: String,
        user_id: [u8; 16],
        challenge: [u8; 32],
    },
    /// `navigator.credentials.get` over a job's approval challenge.
    Approve {
        /// What the person approves, rendered from the statement's bytes.
        summary: String,
        script: String,
        challenge: [u8; 32],
        credential_id: Vec<u8>,
    },
}

/// Checks what the browser sent; `Ok` carries the message the page shows.
pub(crate) type Check = Box<dyn Fn(&Value) -> Result<String> + Send + Sync>;

struct Page {
    secret: String,
    host: String,
    origin: String,
    ceremony: Ceremony,
    check: Check,
    done: Mutex<Option<oneshot::Sender<Value>>>,
}

/// Serves the page until the browser returns a result that `check`
/// accepts (then returns it), or [`WAIT`] passes.
pub(crate) async fn run(ceremony: Ceremony, check: Check) -> Result<Value> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("opening the approval page on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let host = format!("{APPROVAL_RP_ID}:{port}");
    let origin = format!("http://{host}");
    let url = format!("{origin}/{secret}/");
    let (done, result) = oneshot::channel();
    let page = Arc::new(Page {
        secret,
        host,
        origin,
        ceremony,
        check,
        done: Mutex::new(Some(done)),
    });
    let app = Router::new()
        .route("/{secret}/", get(html))
        .route("/{secret}/page.js", get(script))
        .route("/{secret}/ceremony", get(ceremony_json))
        .route("/{secret}/result", post(result_json))
        .with_state(page);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!("Open this page in a browser on this machine and use your passkey there:\n  {url}");
    open_browser(&url);
    let outcome = tokio::time::timeout(WAIT, result).await;
    server.abort();
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(anyhow!("the approval page stopped")),
        Err(_) => Err(anyhow!(
            "nobody used the page within {} minutes",
            WAIT.as_secs() / 60
        )),
    }
}

/// Opens `url` with `$BROWSER`, if set (people on a desktop set it, or
/// open the printed address themselves).
fn open_browser(url: &str) {
    if let Some(browser) = std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
        let _ = std::process::Command::new(browser)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// The request is for this page: the path secret, and our host name (a
/// page elsewhere that re-points a name at 127.0.0.1 sends another Host).
fn admitted(page: &Page, secret: &str, headers: &HeaderMap) -> bool {
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.eq_ignore_ascii_case(&page.host));
    secret == page.secret && host_ok
}

fn with_headers(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

async fn html(
    State(page): State<Arc<Page>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !admitted(&page, &secret, &headers) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (title, body, button) = match &page.ceremony {
        Ceremony::Register { name, .. } => (
            "Add an approval passkey".to_owned(),
            format!(
                "<p>This page is served by <code>bulwark</code> on this machine. It creates the passkey \
                 <strong id=\"passkey-name\">{}</strong> for approving jobs. Its public key goes from your \
                 authenticator to <code>bulwark</code> here, never through the server.</p>",
                escape(name)
            ),
            "Create the passkey",
        ),
        Ceremony::Approve {
            summary, script, ..
        } => (
            "Approve this job".to_owned(),
            format!(
                "<p>This page is served by <code>bulwark</code> on this machine, from the job's signed \
                 statement. Your passkey signs exactly this:</p><pre id=\"statement\">{}</pre>{}",
                escape(summary),
                if script.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<p>The script (its hash checked against the statement):</p><pre id=\"script\">{}</pre>",
                        escape(script)
                    )
                }
            ),
            "Approve with my passkey",
        ),
    };
    let document = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Bulwark: {title}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}}\
         pre{{background:#f3f4f6;padding:1rem;white-space:pre-wrap;overflow-wrap:anywhere;border-radius:6px}}\
         button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:0;background:#1d4ed8;color:#fff;cursor:pointer}}\
         button:disabled{{background:#9ca3af}} .ok{{color:#166534;font-weight:600}} .error{{color:#b91c1c;font-weight:600}}</style>\
         <script src=\"page.js\"></script></head><body><h1>{title}</h1>{body}\
         <p><button type=\"button\" id=\"go\">{button}</button></p><p id=\"status\" role=\"status\"></p></body></html>"
    );
    with_headers(document.into_response(), "text/html; charset=utf-8")
}

async fn script(
    State(page): State<Arc<Page>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !admitted(&page, &secret, &headers) {
        return StatusCode::NOT_FOUND.into_response();
    }
    with_headers(PAGE_JS.into_response(), "text/javascript; charset=utf-8")
}

async fn ceremony_json(
    State(page): State<Arc<Page>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !admitted(&page, &secret, &headers) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let body = match &page.ceremony {
        Ceremony::Register {
            name,
            user_id,
            challenge,
        } => json!({
            "kind": "register",
            "rp_id": APPROVAL_RP_ID,
            "name": name,
            "user_id": b64(user_id),
            "challenge": b64(challenge),
        }),
        Ceremony::Approve {
            challenge,
            credential_id,
            ..
        } => json!({
            "kind": "approve",
            "rp_id": APPROVAL_RP_ID,
            "challenge": b64(challenge),
            "credential_id": b64(credential_id),
        }),
    };
    with_headers(axum::Json(body).into_response(), "application/json")
}

async fn result_json(
    State(page): State<Arc<Page>>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !admitted(&page, &secret, &headers) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let reply = |status: StatusCode, message: String| {
        with_headers(
            (status, axum::Json(json!({ "message": message }))).into_response(),
            "application/json",
        )
    };
    let same_origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| o == page.origin);
    if !same_origin {
        return reply(
            StatusCode::FORBIDDEN,
            "only this page may send its result".into(),
        );
    }
    if body.len() > 32 * 1024 {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the result is too large".into(),
        );
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return reply(StatusCode::BAD_REQUEST, "the result is not JSON".into());
    };
    match (page.check)(&value) {
        Ok(message) => {
            let sender = page
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            match sender {
                Some(sender) => {
                    let _ = sender.send(value);
                    reply(StatusCode::OK, message)
                }
                None => reply(StatusCode::CONFLICT, "this page was used already".into()),
            }
        }
        Err(error) => reply(StatusCode::BAD_REQUEST, format!("{error:#}")),
    }
}

/// The page's script: asks the authenticator, sends the answer back here.
const PAGE_JS: &str = r#""use strict";
const b64u = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const fromB64u = (text) => Uint8Array.from(
  atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4)),
  (c) => c.charCodeAt(0));
async function go() {
  const button = document.getElementById("go");
  const status = document.getElementById("status");
  button.disabled = true;
  status.className = "";
  status.textContent = "Waiting for your authenticator...";
  try {
    const c = await (await fetch("ceremony")).json();
    let body;
    if (c.kind === "register") {
      const credential = await navigator.credentials.create({ publicKey: {
        rp: { id: c.rp_id, name: "Bulwark job approvals" },
        user: { id: fromB64u(c.user_id), name: c.name, displayName: c.name },
        challenge: fromB64u(c.challenge),
        pubKeyCredParams: [{ type: "public-key", alg: -7 }, { type: "public-key", alg: -8 }],
        authenticatorSelection: { userVerification: "required", residentKey: "preferred" },
        attestation: "none",
        timeout: 120000,
      } });
      body = {
        credential_id: b64u(credential.rawId),
        attestation_object: b64u(credential.response.attestationObject),
        client_data_json: b64u(credential.response.clientDataJSON),
      };
    } else {
      const credential = await navigator.credentials.get({ publicKey: {
        rpId: c.rp_id,
        challenge: fromB64u(c.challenge),
        allowCredentials: [{ type: "public-key", id: fromB64u(c.credential_id) }],
        userVerification: "required",
        timeout: 120000,
      } });
      body = {
        credential_id: b64u(credential.rawId),
        authenticator_data: b64u(credential.response.authenticatorData),
        client_data_json: b64u(credential.response.clientDataJSON),
        signature: b64u(credential.response.signature),
      };
    }
    const response = await fetch("result", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    status.textContent = answer.message;
    status.className = response.ok ? "ok" : "error";
    if (!response.ok) button.disabled = false;
  } catch (error) {
    status.textContent = error.name + ": " + error.message;
    status.className = "error";
    button.disabled = false;
  }
}
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("go").addEventListener("click", go);
});
"#;

/// Decodes a base64url field of the browser's result.
pub(crate) fn field(value: &Value, name: &str, max: usize) -> Result<Vec<u8>> {
    let text = value[name]
        .as_str()
        .with_context(|| format!("the browser sent no {name}"))?;
    anyhow::ensure!(text.len() <= max * 4 / 3 + 4, "{name} is too long");
    URL_SAFE_NO_PAD
        .decode(text)
        .with_context(|| format!("{name} is not base64url"))
}
