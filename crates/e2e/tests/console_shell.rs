//! Remote shells in the console (RFD 0015, issue 15), in real Chromium: a
//! shell made for real with the CLI (`bulwark up`'s agent, the owner's
//! `bulwark shell`), then its recording played back on the session's page
//! in xterm.js served by Bulwark itself, under the unchanged strict CSP
//! and without a console error. The device page shows the Shell panel
//! with the commands; another tenant's operator gets 404 on every page of
//! it; a recording changed in the database is not played.
//!
//! Saves the README's screenshot (`docs/screenshots/shell-playback.png`).

#[path = "support/browser.rs"]
mod browser;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::operators::InvitationCreated;
use bulwark_api::setup::SetupResponse;
use bulwark_api::shells::{ShellGrantView, ShellSessionView};
use bulwark_e2e::{OperatorSetup, Owner, http_client, shell_account_ready, sql_text, wait_for};
use serde_json::json;

const PASSPHRASE: &str = "console shell e2e passphrase";
const WAIT: Duration = Duration::from_secs(30);
const REASON: &str = "nginx won't start <again>";
/// The console's policy, byte for byte (`runtime.rs`): the player must not
/// have loosened it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// What is typed: a 24-bit colour (xterm.js writes it as a style
/// attribute), markup, and a line only the shell's output holds.
const TYPED: &str = "printf '\\033[38;2;255;120;0m%s\\033[0m\\n' orange-text; echo '<b>not-bold</b>'; echo console-playback-$((6*7))\nexit\n";
const SCREENSHOT: &str = "docs/screenshots/shell-playback.png";

/// A console sign-in of `who` (password and TOTP): the session cookie.
async fn console_cookie(base: &str, who: &Owner) -> Result<String> {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let login = http_client()?
        .post(format!("{base}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "username={}&password={}&otp={}",
            encode(&who.username),
            encode(&who.password),
            who.next_otp().await?
        ))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    ensure!(!cookie.is_empty(), "no session cookie ({})", login.status());
    Ok(cookie)
}

struct Page {
    status: u16,
    csp: String,
    cache: String,
    body: String,
}

async fn get(base: &str, cookie: &str, path: &str) -> Result<Page> {
    let reply = http_client()?
        .get(format!("{base}{path}"))
        .header("Cookie", cookie)
        .send()
        .await?;
    let header = |name: &str| {
        reply
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Page {
        status: reply.status().as_u16(),
        csp: header("content-security-policy"),
        cache: header("cache-control"),
        body: reply.text().await?,
    })
}

/// A technician of a new tenant `other` only.
async fn foreign_operator(s: &OperatorSetup) -> Result<Owner> {
    s.api
        .post_json("/api/v1/tenants", &json!({ "name": "other" }))
        .await?;
    let invite: InvitationCreated = s
        .api
        .post_as(
            "/api/v1/invitations",
            &json!({ "username": "stranger", "role": "technician", "tenants": ["other"] }),
        )
        .await?;
    let password = "stranger password, long enough";
    let redeemed: SetupResponse = s
        .api
        .post_as(
            "/api/v1/invitations/redeem",
            &json!({ "token": invite.token, "password": password }),
        )
        .await?;
    let stranger = Owner::new("stranger", password, &redeemed.totp_secret);
    s.api
        .post_json(
            "/api/v1/invitations/confirm",
            &json!({ "enrolment_id": redeemed.enrolment_id, "otp": stranger.next_otp().await? }),
        )
        .await?;
    Ok(stranger)
}

#[tokio::test]
async fn a_recorded_shell_plays_back_in_the_console_under_the_strict_csp() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    ensure!(
        shell_account_ready(),
        "no bulwark-shell account, and this test could not make one (run it as root)"
    );
    let device = s.local.clone();

    // A real session, made as a technician makes one: one signer suffices
    // under `tenant init`'s default policy.
    let grant: ShellGrantView = s
        .cli_as(&[
            "shell", "request", &device, "--tenant", "demo", "--reason", REASON, "--for", "30m",
            "--json",
        ])
        .await?;
    ensure!(grant.state == "approved", "{grant:?}");
    let shell = s
        .cli(&["shell", &device, "--grant", &grant.id], Some(TYPED))
        .await?
        .ok()?;
    ensure!(shell.stdout.contains("console-playback-42"), "{shell:?}");
    let session: ShellSessionView = wait_for(WAIT, "the session's recording", async || {
        let sessions: Vec<ShellSessionView> = s
            .api
            .get_as(&format!("/api/v1/devices/{device}/shell-sessions"))
            .await?;
        Ok(sessions
            .into_iter()
            .find(|x| x.recording_len.is_some_and(|len| len == x.stored_len)))
    })
    .await?;
    let digest = session.recording_sha256.clone().context("no digest")?;
    let page_path = format!("/shell-sessions/{}", session.id);

    // The pages as served: the policy unchanged, the facts, the commands.
    let base = s.up.base_url();
    let cookie = console_cookie(&base, &s.owner).await?;
    let page = get(&base, &cookie, &page_path).await?;
    ensure!(page.status == 200, "{}: {}", page.status, page.body);
    ensure!(page.csp == CSP, "the session page's CSP: {}", page.csp);
    for want in [
        digest.as_str(),
        &format!("bulwark shell recording {} --output", session.id),
        "bulwark audit verify --tenant demo",
        "as the server serves it",
        "nginx won&#39;t start &#60;again&#62;",
        "/assets/vendor/xterm-6.0.0/xterm.js",
    ] {
        ensure!(page.body.contains(want), "no {want:?} on the page");
    }
    let xterm = get(&base, "", "/assets/vendor/xterm-6.0.0/xterm.js").await?;
    ensure!(
        xterm.status == 200
            && xterm.csp == CSP
            && xterm.cache.contains("immutable")
            && xterm.body.contains("xterm"),
        "xterm.js: {} {} {}",
        xterm.status,
        xterm.csp,
        xterm.cache
    );
    let css = get(&base, "", "/assets/vendor/xterm-6.0.0/xterm.css").await?;
    eprintln!(
        "[console_shell] served xterm.js {} bytes, xterm.css {} bytes, shell-playback.js {} bytes",
        xterm.body.len(),
        css.body.len(),
        get(&base, "", "/assets/shell-playback.js")
            .await?
            .body
            .len()
    );
    let device_page = get(&base, &cookie, &format!("/devices/{device}")).await?;
    for want in [
        "id=\"shell-panel\"",
        "bulwark shell request ",
        &format!("--grant {}", grant.id),
        &format!("href=\"{page_path}\""),
        "never in this page",
    ] {
        ensure!(
            device_page.body.contains(want),
            "no {want:?} on the device page"
        );
    }
    let list = get(&base, &cookie, "/tenants/demo/shell-sessions").await?;
    ensure!(
        list.status == 200 && list.body.contains(&format!("href=\"{page_path}\"")),
        "the tenant's sessions: {} {}",
        list.status,
        list.body
    );

    // Played in Chromium: the recorded output reaches the terminal's DOM.
    let browser = browser::Browser::plain(1100).await?;
    let played = async {
        browser.sign_in(&base, &s.owner).await?;
        browser.goto(&format!("{base}/devices/{device}")).await?;
        browser
            .click(&format!("#device-shell-sessions a[href=\"{page_path}\"]"))
            .await?;
        browser.wait_path(&page_path).await?;
        browser.find("#terminal[data-state=\"paused\"]").await?;
        browser.click("button.speed[data-speed=\"8\"]").await?;
        browser.click("#play").await?;
        browser
            .wait_text("#terminal .xterm-rows", "console-playback-42")
            .await?;
        browser.find("#terminal[data-state=\"ended\"]").await?;
        let rows = browser.text("#terminal .xterm-rows").await?;
        ensure!(rows.contains("<b>not-bold</b>"), "markup as text: {rows}");
        let facts = browser
            .run_js(
                "const spans = [...document.querySelectorAll('#terminal .xterm-rows span')];
                 return {
                   bold: document.querySelectorAll('#terminal .xterm-rows b').length,
                   orange: spans.some(s => s.textContent.includes('orange-text') && s.style.color === 'rgb(255, 120, 0)'),
                   inline_styles: document.querySelectorAll('style').length,
                 };",
            )
            .await?;
        ensure!(
            facts == json!({ "bold": 0, "orange": true, "inline_styles": 0 }),
            "the terminal's DOM: {facts}"
        );
        // Back to the start with the progress bar, then to the end.
        browser
            .run_js(
                "const p = document.getElementById('progress'); p.value = '0';
                 p.dispatchEvent(new Event('input')); return true;",
            )
            .await?;
        let rewound = browser.text("#terminal .xterm-rows").await?;
        ensure!(
            !rewound.contains("console-playback-42"),
            "rewound: {rewound}"
        );
        browser.click("#to-end").await?;
        browser
            .wait_text("#terminal .xterm-rows", "console-playback-42")
            .await?;
        browser.find("#terminal[data-state=\"ended\"]").await?;
        let shot = bulwark_e2e::workspace_root().join(SCREENSHOT);
        browser.screenshot(&shot).await?;
        eprintln!("[console_shell] screenshot: {}", shot.display());
        let errors = browser.console_errors().await?;
        ensure!(errors.is_empty(), "console errors: {errors:#?}");
        // The check sees a violation: a <style> made past the player's
        // adapter is refused by the policy and logged.
        browser
            .run_js(
                "const s = document.createElementNS('http://www.w3.org/1999/xhtml', 'style');
                 s.textContent = 'body { color: red; }'; document.head.appendChild(s); return true;",
            )
            .await?;
        let logged = wait_for(
            Duration::from_secs(10),
            "the CSP violation in the log",
            async || {
                let errors = browser.console_errors().await?;
                Ok(errors
                    .iter()
                    .any(|e| e.contains("Content Security Policy"))
                    .then_some(errors))
            },
        )
        .await?;
        eprintln!("[console_shell] a planted inline style is refused: {logged:?}");

        // A recording changed in the database is not played.
        s.sql(&format!(
            "UPDATE shell_recording_pieces SET data = CAST('{{\"version\": 2}}' AS BLOB) WHERE session_id = {}",
            sql_text(&session.id)
        ))?;
        browser.goto(&format!("{base}{page_path}")).await?;
        let status = browser
            .wait_text("#player-status", "did not serve")
            .await?;
        ensure!(status.contains("does not match"), "{status}");
        browser.find("#terminal[data-state=\"refused\"]").await?;
        Ok(())
    }
    .await;
    browser.close().await?;
    played?;

    // Another tenant's operator: not found, as if none existed.
    let stranger = foreign_operator(&s).await?;
    let foreign = console_cookie(&base, &stranger).await?;
    for path in [
        page_path.clone(),
        format!("/devices/{device}"),
        "/tenants/demo/shell-sessions".to_owned(),
        format!("/api/v1/shell-sessions/{}/recording", session.id),
    ] {
        let page = get(&base, &foreign, &path).await?;
        ensure!(
            page.status == 404 && !page.body.contains(&digest),
            "{path} as another tenant's operator: {} {}",
            page.status,
            page.body
        );
    }
    Ok(())
}
