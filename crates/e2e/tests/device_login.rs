//! `bulwark login --device` as a real process, approved in real headless
//! Chromium with a virtual authenticator: the owner adds a passkey, the CLI
//! prints a code, the owner types it on `/device`, sees what is asking and
//! approves with the passkey; the CLI's poll then gets a session and
//! `bulwark tenant list` works with it.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test
//! fails, it does not skip.

#[path = "support/browser.rs"]
mod browser;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use browser::Browser;
use bulwark_e2e::{Proc, UpOptions, UpProcess, bulwark_bin, run_command};

#[tokio::test]
async fn cli_device_login_approved_with_a_passkey_in_chromium() -> Result<()> {
    let mut up = UpProcess::start(UpOptions::default()).await?;
    let code = up.setup_code().await?;
    let base = up.base_url();
    let browser = Browser::start().await?;
    let config = tempfile::tempdir()?;
    let result = walk_through(&browser, &base, &code, config.path()).await;
    if result.is_err()
        && let Ok(source) = browser.client().source().await
    {
        eprintln!("[device-login] page source at the failure:\n{source}");
    }
    browser.close().await?;
    up.stop().await?;
    result
}

async fn walk_through(
    browser: &Browser,
    base: &str,
    code: &str,
    config: &std::path::Path,
) -> Result<()> {
    // 1. The first owner, signed in, with a passkey named "laptop".
    browser.set_up_owner(base, code).await?;
    browser.goto(&format!("{base}/account")).await?;
    browser.fill("passkey_name", "laptop").await?;
    browser.click("#passkey-add").await?;
    browser.wait_text("p.notice", "Passkey added.").await?;

    // 2. The CLI asks for a device code and waits.
    let mut cli = Proc::spawn(
        "bulwark login --device",
        Command::new(bulwark_bin()?)
            .args(["login", "--server", base, "--device"])
            .env("BULWARK_CONFIG_DIR", config)
            .env("NO_COLOR", "1")
            .env_remove("BULWARK_SERVER"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let user_code = loop {
        let found = cli.stdout.snapshot().iter().find_map(|line| {
            let word = line.trim();
            (word.len() == 9 && word.as_bytes()[4] == b'-').then(|| word.to_owned())
        });
        if let Some(found) = found {
            break found;
        }
        if Instant::now() > deadline {
            bail!("the CLI printed no code:\n{}", cli.stdout.text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(
        cli.stdout.text().contains(&format!("{base}/device")),
        "the CLI names the console page: {}",
        cli.stdout.text()
    );

    // 3. The owner types it on /device, sees what asks, approves with the passkey.
    browser.goto(&format!("{base}/device")).await?;
    browser.fill("user_code", &user_code.to_lowercase()).await?;
    browser.click("#device-continue").await?;
    let asking = browser.wait_text("#device-request", &user_code).await?;
    ensure!(
        asking.contains("127.0.0.1") && asking.contains("bulwark-cli/"),
        "the page shows the CLI's address and user agent: {asking}"
    );
    let before = browser.credentials().await?[0]["signCount"]
        .as_u64()
        .unwrap_or_default();
    browser.click("#device-approve").await?;
    browser.wait_text("#device-notice", "Approved").await?;
    let after = browser.credentials().await?[0]["signCount"]
        .as_u64()
        .unwrap_or_default();
    ensure!(after > before, "the approval used the passkey");

    // 4. The CLI's next poll signs it in; `bulwark tenant list` works.
    let status = cli
        .wait_timeout(Duration::from_secs(30))
        .await?
        .context("the CLI did not finish after the approval")?;
    ensure!(
        status.success() && cli.stdout.text().contains("Logged in to"),
        "the CLI login failed ({status}):\n{}\n{}",
        cli.stdout.text(),
        cli.stderr.text()
    );
    let mut command = tokio::process::Command::new(bulwark_bin()?);
    command
        .args(["tenant", "list"])
        .env("BULWARK_CONFIG_DIR", config)
        .env("NO_COLOR", "1")
        .env_remove("BULWARK_SERVER");
    let listed = run_command(command, None, Duration::from_secs(60))
        .await?
        .ok()?;
    ensure!(
        listed.stdout.contains("demo"),
        "tenant list: {}",
        listed.stdout
    );

    // 5. The code worked once: typing it again finds nothing.
    browser.goto(&format!("{base}/device")).await?;
    browser.fill("user_code", &user_code).await?;
    browser.click("#device-continue").await?;
    browser
        .wait_text("#device-error", "no such pending sign-in")
        .await?;
    Ok(())
}
