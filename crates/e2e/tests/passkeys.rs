//! Passkeys in real headless Chromium, through ChromeDriver with a virtual
//! authenticator (the WebDriver WebAuthn extension, which Chromium backs
//! with the DevTools `WebAuthn.addVirtualAuthenticator`): the owner adds a
//! passkey named "laptop" on the account page, signs out, and signs in with
//! password and passkey; then the owner requires passkeys for technicians,
//! and a technician without one signs in with a code, is told to add one,
//! adds one and signs in with it. Saves `docs/screenshots/passkeys.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test
//! fails, it does not skip.

#[path = "support/browser.rs"]
mod browser;

use anyhow::{Context, Result, ensure};
use browser::Browser;
use bulwark_api::operators::InvitationCreated;
use bulwark_api::setup::SetupResponse;
use bulwark_e2e::{Api, Owner, UpOptions, UpProcess};
use serde_json::json;

/// Where the screenshot for the docs goes, relative to the workspace root.
const SCREENSHOT: &str = "docs/screenshots/passkeys.png";

#[tokio::test]
async fn passkey_registration_login_and_policy_in_chromium() -> Result<()> {
    let mut up = UpProcess::start(UpOptions::default()).await?;
    let code = up.setup_code().await?;
    let base = up.base_url();
    ensure!(
        base.starts_with("http://localhost:"),
        "the console must be at localhost (the passkeys' relying party id): {base}"
    );
    let browser = Browser::start().await?;
    let result = walk_through(&browser, &up, &base, &code).await;
    if result.is_err() {
        let shot = std::env::temp_dir().join(format!(
            "bulwark-passkeys-failure-{}.png",
            std::process::id()
        ));
        if let Ok(png) = browser.client().screenshot().await
            && std::fs::write(&shot, png).is_ok()
        {
            eprintln!("[passkeys] screenshot of the failure: {}", shot.display());
        }
        if let Ok(source) = browser.client().source().await {
            eprintln!("[passkeys] page source at the failure:\n{source}");
        }
    }
    browser.close().await?;
    up.stop().await?;
    result
}

async fn walk_through(browser: &Browser, up: &UpProcess, base: &str, code: &str) -> Result<()> {
    let username = bulwark_e2e::OWNER_USERNAME;
    let password = bulwark_e2e::OWNER_PASSWORD;

    // 1. The first owner, as a person makes it: setup code, TOTP, sign in.
    let owner = browser.set_up_owner(base, code).await?;

    // 2. Add a passkey named "laptop" on the account page.
    browser.goto(&format!("{base}/account")).await?;
    browser.find("#no-passkeys").await?;
    browser.fill("passkey_name", "laptop").await?;
    browser.click("#passkey-add").await?;
    let row = browser.wait_text("#passkeys tbody", "laptop").await?;
    ensure!(row.contains("never"), "a new passkey was never used: {row}");
    browser.wait_text("p.notice", "Passkey added.").await?;
    let held = browser.credentials().await?;
    ensure!(
        held.len() == 1 && held[0]["isResidentCredential"] == json!(true),
        "the authenticator should hold one discoverable credential: {held:?}"
    );

    // 3. Sign out; sign in with password and the passkey (no code).
    browser.sign_out().await?;
    browser.fill("username", username).await?;
    browser.fill("password", password).await?;
    let login_page = browser.client().screenshot().await?;
    browser.click("#login-passkey").await?;
    browser.wait_path("/tenants").await?;
    browser.find("#tenants a[href=\"/tenants/demo\"]").await?;
    let dashboard = browser.client().screenshot().await?;
    let held = browser.credentials().await?;
    ensure!(
        held[0]["signCount"].as_u64().is_some_and(|n| n >= 1),
        "the login used the passkey: {held:?}"
    );

    // The account page now shows when it was last used: the docs' picture.
    browser.goto(&format!("{base}/account")).await?;
    let row = browser.text("#passkeys tbody tr").await?;
    ensure!(
        row.contains("laptop") && !row.contains("never"),
        "the passkey should show a last use: {row}"
    );
    let account = browser.client().screenshot().await?;
    let target = bulwark_e2e::bin_dir()?
        .parent()
        .context("target dir")?
        .join("screenshots");
    std::fs::create_dir_all(&target)?;
    std::fs::write(target.join("passkeys-dashboard.png"), &dashboard)?;
    std::fs::write(target.join("passkeys-login.png"), &login_page)?;
    let screenshot = bulwark_e2e::workspace_root().join(SCREENSHOT);
    std::fs::create_dir_all(screenshot.parent().context("screenshot path")?)?;
    std::fs::write(&screenshot, &account)
        .with_context(|| format!("writing {}", screenshot.display()))?;

    // 4. A technician, invited through the API by the owner (a code login:
    // owners are not required to use passkeys).
    let api = up.api();
    let api = api.with_token(&api.login(&owner).await?);
    let invited: InvitationCreated = api
        .post_as(
            "/api/v1/invitations",
            &json!({"username": "tess", "role": "technician", "tenants": ["demo"]}),
        )
        .await?;
    let anonymous = Api::new(base);
    let redeemed: SetupResponse = anonymous
        .post_as(
            "/api/v1/invitations/redeem",
            &json!({"token": invited.token, "password": password}),
        )
        .await?;
    let tess = Owner::new("tess", password, &redeemed.totp_secret);
    anonymous
        .post_json(
            "/api/v1/invitations/confirm",
            &json!({"enrolment_id": redeemed.enrolment_id, "otp": tess.next_otp().await?}),
        )
        .await?;

    // 5. The owner requires passkeys for technicians, on the security page.
    browser.click("nav a[href=\"/settings\"]").await?;
    browser.wait_path("/settings").await?;
    browser
        .click("input[name=\"role\"][value=\"technician\"]")
        .await?;
    browser.click("#passkey-policy-save").await?;
    browser.wait_text("p.notice", "Saved.").await?;
    let checked = browser
        .client()
        .execute(
            "return document.querySelector('input[name=\"role\"][value=\"technician\"]').checked;",
            vec![],
        )
        .await?;
    ensure!(checked == json!(true), "the technician box stays checked");
    let policy = api.get_json("/api/v1/settings/passkey-policy").await?;
    ensure!(
        policy == json!({"roles": ["technician"]}),
        "policy: {policy}"
    );
    browser.sign_out().await?;

    // 6. The technician signs in with a code: told to add a passkey, and
    // nothing else works until it signs in with one.
    browser.fill("username", "tess").await?;
    browser.fill("password", password).await?;
    browser.fill("otp", &tess.next_otp().await?).await?;
    browser.click("#login-submit").await?;
    browser.wait_path("/account").await?;
    let told = browser.text("#passkey-required").await?;
    ensure!(
        told.contains("requires signing in with a passkey") && told.contains("Add one below"),
        "the technician is told to add a passkey: {told:?}"
    );
    std::fs::write(
        target.join("passkeys-required.png"),
        browser.client().screenshot().await?,
    )?;
    browser.goto(&format!("{base}/tenants/demo")).await?;
    browser.find("#add-passkey-link").await?;
    browser.goto(&format!("{base}/account")).await?;
    browser.fill("passkey_name", "tess phone").await?;
    browser.click("#passkey-add").await?;
    browser.wait_text("#passkeys tbody", "tess phone").await?;
    browser.wait_text("#passkey-required", "Sign out").await?;
    browser.sign_out().await?;
    browser.fill("username", "tess").await?;
    browser.fill("password", password).await?;
    browser.click("#login-passkey").await?;
    browser.wait_path("/tenants").await?;
    browser.find("#tenants a[href=\"/tenants/demo\"]").await?;
    ensure!(
        browser.credentials().await?.len() == 2,
        "one credential per account"
    );
    Ok(())
}
