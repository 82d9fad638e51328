//! The web console in real headless Chromium, driven through ChromeDriver
//! (WebDriver) with fantoccini: first-owner setup with TOTP enrolment, login,
//! tenants, the live device list and the device page. Saves the screenshot
//! the README shows (`docs/screenshots/console.png`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`cargo xtask test`
//! installs them); without them the test fails, it does not skip.

#[path = "support/browser.rs"]
mod browser;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use browser::{Browser, PAGE_TIMEOUT};
use bulwark_e2e::{ExtraAgent, Owner, UpOptions, UpProcess, http_client, wait_for};
use fantoccini::Locator;
use serde_json::json;

const HEARTBEAT_SECS: u64 = 2;
/// Where the screenshot for the README goes, relative to the workspace root.
const SCREENSHOT: &str = "docs/screenshots/console.png";

#[tokio::test]
async fn console_setup_login_and_live_device_list() -> Result<()> {
    let up = UpProcess::start(UpOptions::default().heartbeat_secs(HEARTBEAT_SECS)).await?;
    let code = up.setup_code().await?;
    let base = up.base_url();
    let browser = Browser::plain(800).await?;
    let result = walk_through(&browser, &up, &base, &code).await;
    if result.is_err() {
        let shot = std::env::temp_dir().join(format!(
            "bulwark-console-failure-{}.png",
            std::process::id()
        ));
        if browser.screenshot(&shot).await.is_ok() {
            eprintln!("[console] screenshot of the failure: {}", shot.display());
        }
        if let Ok(source) = browser.client().source().await {
            eprintln!("[console] page source at the failure:\n{source}");
        }
    }
    browser.close().await?;
    result
}

async fn walk_through(browser: &Browser, up: &UpProcess, base: &str, code: &str) -> Result<()> {
    check_security_headers(base).await?;

    // 1. Redeem the setup code.
    browser.goto(&format!("{base}/setup")).await?;
    let username = bulwark_e2e::OWNER_USERNAME;
    let password = bulwark_e2e::OWNER_PASSWORD;
    browser.fill("code", code).await?;
    browser.fill("username", username).await?;
    browser.fill("password", password).await?;
    browser.fill("password_confirm", password).await?;
    browser.find("#setup-submit").await?.click().await?;

    // 2. Enrol TOTP: the QR code is shown (and loads under the CSP), the
    // secret is readable as text for people who cannot scan.
    let secret = browser.text("#totp-secret").await?;
    ensure!(
        secret.len() >= 16
            && secret
                .chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c) || c == '='),
        "#totp-secret is not RFC 4648 base32: {secret:?}"
    );
    browser.find("#totp-qr").await?;
    let qr_width = browser
        .client()
        .execute(
            "return document.getElementById('totp-qr').naturalWidth;",
            vec![],
        )
        .await?;
    ensure!(
        qr_width.as_u64().is_some_and(|w| w > 0),
        "the TOTP QR image did not load (naturalWidth {qr_width})"
    );
    let owner = Owner::new(username, password, &secret);
    browser.fill("otp", &owner.next_otp().await?).await?;
    browser.find("#totp-submit").await?.click().await?;
    // The recovery codes, shown once, then on to sign in.
    let codes = browser.text("#recovery-codes").await?;
    ensure!(
        codes.split_whitespace().count() == 10,
        "expected 10 recovery codes, got {codes:?}"
    );
    browser.find("#recovery-continue").await?.click().await?;
    browser.wait_path("/login").await?;

    // 3. Log in with a fresh code (each time step works once per account).
    browser.fill("username", username).await?;
    browser.fill("password", password).await?;
    browser.fill("otp", &owner.next_otp().await?).await?;
    browser.find("#login-submit").await?.click().await?;
    browser.wait_path("/tenants").await?;

    // A second agent through the API, to watch its status change live.
    let api = up.api();
    let api = api.with_token(&api.login(&owner).await?);
    let local = api
        .wait_single_device_online("demo", Duration::from_secs(15))
        .await?;
    let local_id = local.id.clone();
    let mut extra = ExtraAgent::start(&api, &up.info.gateway_url, "demo").await?;

    // 4. Tenants → demo → devices, both online.
    browser.find("#tenants").await?;
    let link = browser.find("#tenants a[href=\"/tenants/demo\"]").await?;
    ensure!(
        link.text().await?.trim() == "demo",
        "the tenant link does not read demo"
    );
    link.click().await?;
    browser.wait_path("/tenants/demo").await?;
    let local_status = format!("#devices tr[data-device-id=\"{local_id}\"] .status");
    let extra_status = format!(
        "#devices tr[data-device-id=\"{}\"] .status",
        extra.device_id
    );
    wait_text(browser, &local_status, "online").await?;
    wait_text(browser, &extra_status, "online").await?;

    // 5. Kill the second agent: its row turns offline without a reload.
    browser
        .client()
        .execute("window.__bulwarkNoReload = true; return true;", vec![])
        .await?;
    extra.proc.kill9().await?;
    wait_text(browser, &extra_status, "offline")
        .await
        .context("the device list did not update live")?;
    let same_page = browser
        .client()
        .execute("return window.__bulwarkNoReload === true;", vec![])
        .await?;
    ensure!(
        same_page == json!(true),
        "the page reloaded to show the new status; it should update live"
    );
    ensure!(
        browser.text(&local_status).await? == "online",
        "the local agent's row went offline"
    );
    let devices_png = browser.client().screenshot().await?;

    // 6. The device page: hostname heading and the inventory.
    let row_link =
        format!("#devices tr[data-device-id=\"{local_id}\"] a[href=\"/devices/{local_id}\"]");
    browser.find(&row_link).await?.click().await?;
    browser.wait_path(&format!("/devices/{local_id}")).await?;
    let hostname = local.hostname.as_str();
    ensure!(
        browser.text("h1").await? == hostname,
        "the device page's h1 is not the hostname {hostname}"
    );
    let detail = api.device(&local_id).await?;
    let os_name = detail
        .inventory
        .and_then(|i| i.system)
        .map(|s| s.os_name)
        .unwrap_or_default();
    let inventory = wait_for(
        PAGE_TIMEOUT,
        "the inventory section to show the OS",
        async || {
            let text = browser.text("#inventory").await?;
            Ok((!os_name.is_empty() && text.contains(&os_name)).then_some(text))
        },
    )
    .await?;
    ensure!(
        inventory.contains(hostname) || inventory.contains(&os_name),
        "inventory section:\n{inventory}"
    );
    let device_png = browser.client().screenshot().await?;

    // Both pages go under target/screenshots for people debugging; the README
    // shows the device page (the list has two devices of the same hostname).
    let target = bulwark_e2e::bin_dir()?
        .parent()
        .context("target dir")?
        .join("screenshots");
    std::fs::create_dir_all(&target)?;
    std::fs::write(target.join("devices.png"), &devices_png)?;
    std::fs::write(target.join("device.png"), &device_png)?;
    let screenshot = bulwark_e2e::workspace_root().join(SCREENSHOT);
    std::fs::create_dir_all(screenshot.parent().context("screenshot path")?)?;
    std::fs::write(&screenshot, device_png)
        .with_context(|| format!("writing {}", screenshot.display()))?;

    Ok(())
}

async fn wait_text(browser: &Browser, css: &str, want: &str) -> Result<()> {
    wait_for(
        PAGE_TIMEOUT,
        &format!("`{css}` to read {want:?}"),
        async || {
            let text = browser
                .client()
                .find(Locator::Css(css))
                .await?
                .text()
                .await?;
            Ok((text.trim() == want).then_some(()))
        },
    )
    .await
}

/// Console pages carry a Content-Security-Policy without 'unsafe-inline'.
async fn check_security_headers(base: &str) -> Result<()> {
    let http = http_client()?;
    for path in ["/login", "/setup"] {
        let response = http.get(format!("{base}{path}")).send().await?;
        let status = response.status();
        let csp = response
            .headers()
            .get("content-security-policy")
            .with_context(|| {
                format!("GET {path} ({status}) has no Content-Security-Policy header")
            })?
            .to_str()?
            .to_owned();
        ensure!(
            !csp.contains("unsafe-inline"),
            "GET {path}: the CSP allows 'unsafe-inline': {csp}"
        );
        ensure!(
            !csp.contains("unsafe-eval"),
            "GET {path}: the CSP allows 'unsafe-eval': {csp}"
        );
        ensure!(
            csp.contains("default-src") || csp.contains("script-src"),
            "GET {path}: the CSP restricts no scripts: {csp}"
        );
    }
    Ok(())
}
