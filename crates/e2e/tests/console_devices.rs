//! The console's `/devices` page in real headless Chromium (RFD 0016):
//! the navigation's "Devices" link, a tag and a group set with the device
//! page's forms, the search form (a plain GET form) filtering by tag and
//! group with the count and tag chips, a bad tag answered on the page, and
//! a hostile host name shown as text. Saves `docs/screenshots/devices.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test
//! fails, it does not skip.

#[path = "support/browser.rs"]
mod browser;

use anyhow::{Result, ensure};
use browser::Browser;
use bulwark_e2e::{ExtraAgent, OperatorSetup};

const PASSPHRASE: &str = "e2e console devices: a passphrase nobody guesses";
const SCREENSHOT: &str = "docs/screenshots/devices.png";
const HOSTILE: &str = "<b>pos-1</b>";

#[tokio::test]
async fn devices_page_finds_devices_by_tag_and_group() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let gateway = s.up.info.gateway_url.clone();
    let web = ExtraAgent::start_as(Some("web-leeds"), &s.api, &gateway, "demo").await?;
    let _pos = ExtraAgent::start_as(Some(HOSTILE), &s.api, &gateway, "demo").await?;
    s.cli(&["device", "tag", HOSTILE, "--add", "kiosk,finance"], None)
        .await?
        .ok()?;
    let browser = Browser::plain(900).await?;
    let result = walk_through(&browser, &s, &web.device_id).await;
    if result.is_err()
        && let Ok(source) = browser.client().source().await
    {
        eprintln!("[devices] page source at the failure:\n{source}");
    }
    browser.close().await?;
    result
}

async fn walk_through(browser: &Browser, s: &OperatorSetup, web: &str) -> Result<()> {
    let base = s.up.base_url();
    browser.sign_in(&base, &s.owner).await?;

    // The device page's forms set a tag and a group.
    browser.goto(&format!("{base}/devices/{web}")).await?;
    browser.fill("add", "server,Finance").await?;
    browser.click("#tags-submit").await?;
    browser.wait_text("#device-tags", "finance").await?;
    browser.fill("group", "Branch Leeds").await?;
    browser.click("#group-submit").await?;
    browser.wait_text("#device-group", "Branch Leeds").await?;

    // The navigation leads to every device.
    browser.click("#devices-link").await?;
    browser.wait_path("/devices").await?;
    let count = browser.wait_text("#result-count", "device").await?;
    ensure!(count.starts_with("3 devices"), "{count}");

    // Filter by tag: both finance devices, chips on each row.
    browser.fill("tag", "finance").await?;
    browser.click("#filter-submit").await?;
    let count = browser.wait_text("#result-count", "match").await?;
    ensure!(count.starts_with("2 devices"), "{count}");
    let table = browser.text("#device-results").await?;
    ensure!(
        table.contains("web-leeds") && table.contains(HOSTILE) && table.contains("Branch Leeds"),
        "{table}"
    );
    let chips = browser
        .client()
        .execute(
            "return document.querySelectorAll('#device-results .chip').length;",
            vec![],
        )
        .await?;
    ensure!(chips.as_u64() == Some(4), "chips: {chips}");
    let bold = browser
        .client()
        .execute(
            "return document.querySelectorAll('#device-results b').length;",
            vec![],
        )
        .await?;
    ensure!(
        bold.as_u64() == Some(0),
        "the agent's host name became markup"
    );
    let shot = bulwark_e2e::workspace_root().join(SCREENSHOT);
    browser.screenshot(&shot).await?;

    // And by group, in any case.
    browser.fill("tag", "").await?;
    browser.fill("group", "branch leeds").await?;
    browser.click("#filter-submit").await?;
    // The previous page's count also says "match": wait for the new one.
    let count = browser
        .wait_text("#result-count", "1 device matches")
        .await?;
    ensure!(count.starts_with("1 device matches"), "{count}");

    // A bad tag is answered on the page.
    browser.goto(&format!("{base}/devices?tag=a%3Cb")).await?;
    let problem = browser.text("#search-problem").await?;
    ensure!(problem.starts_with("tag:"), "{problem}");
    Ok(())
}
