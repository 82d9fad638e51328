//! The console's audit-log page in real headless Chromium (RFD 0003,
//! "Console"): the demo tenant's log after a real signed job, filtered by
//! action, and "Verify" run in the browser (WebCrypto SHA-256 and Ed25519
//! against the API's signed tree head and inclusion proof). Then the SQLite
//! database is rewritten behind the server's back, one entry re-encoded
//! with another detail and one made undecodable, and Verify on each must
//! fail; an entry deleted outright shows as a red gap. Saves `docs/screenshots/audit.png` (after a successful verify).
//!
//! Needs Debian's `chromium`, `chromium-driver` and the `sqlite3` tool;
//! without them the test fails, it does not skip.

#[path = "support/browser.rs"]
mod browser;

use anyhow::{Context, Result, ensure};
use browser::Browser;
use bulwark_api::log::LogHeadView;
use bulwark_e2e::{OperatorSetup, decode_hex, sql_text};
use bulwark_protocol::audit_leaf::AuditLeaf;

const PASSPHRASE: &str = "e2e audit page: a passphrase nobody guesses";
/// Where the screenshot for the docs goes, relative to the workspace root.
const SCREENSHOT: &str = "docs/screenshots/audit.png";
const OK_TEXT: &str = "\u{2713} included in the signed tree head of";

#[tokio::test]
async fn audit_page_verifies_entries_in_the_browser_and_catches_tampering() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    // A real job: job.* entries in the demo tenant's log.
    s.good_job_runs(&s.local, "audit-page").await?;
    let browser = Browser::plain(1000).await?;
    let result = walk_through(&browser, &s).await;
    if result.is_err() {
        let shot =
            std::env::temp_dir().join(format!("bulwark-audit-failure-{}.png", std::process::id()));
        if browser.screenshot(&shot).await.is_ok() {
            eprintln!("[audit] screenshot of the failure: {}", shot.display());
        }
        if let Ok(source) = browser.client().source().await {
            eprintln!("[audit] page source at the failure:\n{source}");
        }
    }
    browser.close().await?;
    result
}

/// The indexes and texts of the table's rows, top to bottom.
async fn rows(browser: &Browser) -> Result<Vec<(u64, String)>> {
    let found = browser
        .client()
        .execute(
            "return Array.from(document.querySelectorAll('#audit tbody tr[data-index]'))\
             .map((r) => [Number(r.dataset.index), r.innerText]);",
            vec![],
        )
        .await?;
    found
        .as_array()
        .context("rows")?
        .iter()
        .map(|row| {
            Ok((
                row[0].as_u64().context("index")?,
                row[1].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

async fn walk_through(browser: &Browser, s: &OperatorSetup) -> Result<()> {
    let base = s.up.base_url();
    // Sign in as the owner.
    browser.sign_in(&base, &s.owner).await?;

    // The tenant page links to its audit log.
    browser.goto(&format!("{base}/tenants/demo")).await?;
    browser.click("#audit-link").await?;
    browser.wait_path("/tenants/demo/audit").await?;
    browser.find("#tree-head #head-root").await?;
    browser.find("#activity svg .chart-bar").await?;

    // Filter by action `job.`: only job entries are left.
    browser.fill("what", "job.").await?;
    browser.click("#filter-submit").await?;
    let listed = bulwark_e2e::wait_for(browser::PAGE_TIMEOUT, "the filtered table", async || {
        let url = browser.client().current_url().await?;
        if !url.query().unwrap_or_default().contains("what=job.") {
            return Ok(None);
        }
        let rows = rows(browser).await?;
        Ok((!rows.is_empty()).then_some(rows))
    })
    .await?;
    ensure!(
        listed.iter().all(|(_, text)| text.contains("job.")),
        "rows that are not job.*: {listed:?}"
    );
    ensure!(
        listed.windows(2).all(|w| w[0].0 > w[1].0),
        "not newest first: {listed:?}"
    );
    let released = listed
        .iter()
        .find(|(_, text)| text.contains("job.released"))
        .with_context(|| format!("no job.released row in {listed:?}"))?
        .0;
    let other = listed
        .iter()
        .find(|(idx, _)| *idx != released)
        .with_context(|| format!("only one job row in {listed:?}"))?
        .0;

    // Verify in the browser: the signed head, the proof, the signature.
    let row = |idx: u64| format!("#audit tr[data-index=\"{idx}\"]");
    browser
        .click(&format!("{} button.verify", row(released)))
        .await?;
    let shown = browser
        .wait_text(&format!("{} .verify-result", row(released)), OK_TEXT)
        .await?;
    eprintln!("[audit] entry {released}: {shown}");
    browser
        .click(&format!("{} button.verify", row(other)))
        .await?;
    browser
        .wait_text(&format!("{} .verify-result", row(other)), OK_TEXT)
        .await?;
    let screenshot = bulwark_e2e::workspace_root().join(SCREENSHOT);
    browser.screenshot(&screenshot).await?;

    // The attacker with the database: entry `released` re-encoded with
    // another detail (a canonical leaf, so the page shows it as any other),
    // entry `other` with a byte appended (no longer a leaf at all).
    let tenant = sql_text(s.sql("SELECT id FROM tenants WHERE name = 'demo'")?.trim());
    let leaf_sql = |idx: u64| {
        format!("SELECT hex(leaf) FROM log_entries WHERE log_id = {tenant} AND idx = {idx}")
    };
    let mut forged = AuditLeaf::decode(&decode_hex(&s.sql(&leaf_sql(released))?)?)?;
    forged.detail = format!("sha256:{}", "ab".repeat(32));
    s.sql(&format!(
        "UPDATE log_entries SET leaf = X'{}' WHERE log_id = {tenant} AND idx = {released}",
        hex_upper(&forged.encode())
    ))?;
    let mut broken = decode_hex(&s.sql(&leaf_sql(other))?)?;
    broken.push(0);
    s.sql(&format!(
        "UPDATE log_entries SET leaf = X'{}' WHERE log_id = {tenant} AND idx = {other}",
        hex_upper(&broken)
    ))?;

    browser.client().refresh().await?;
    browser
        .wait_text(&row(released), &"ab".repeat(32))
        .await
        .context("the forged detail is not shown")?;
    browser
        .wait_text(&format!("{} .leaf-problem", row(other)), "does not decode")
        .await?;
    for idx in [released, other] {
        browser
            .click(&format!("{} button.verify", row(idx)))
            .await?;
        let failed = browser
            .wait_text(
                &format!("{} .verify-result.verify-bad", row(idx)),
                "\u{2717}",
            )
            .await?;
        eprintln!("[audit] tampered entry {idx}: {failed}");
        ensure!(
            failed.contains("not included"),
            "entry {idx}: the failure does not say what failed: {failed}"
        );
    }
    // An entry deleted outright: a red row where it was, whatever the filter.
    let deleted = listed
        .iter()
        .map(|(idx, _)| *idx)
        .find(|idx| ![released, other].contains(idx) && *idx > 0)
        .with_context(|| format!("no third job row in {listed:?}"))?;
    s.sql(&format!(
        "DELETE FROM log_entries WHERE log_id = {tenant} AND idx = {deleted}"
    ))?;
    browser.client().refresh().await?;
    browser
        .wait_text(
            "#audit tr.row-gap",
            &format!("entry {deleted} is missing from the database"),
        )
        .await?;

    let target = bulwark_e2e::bin_dir()?
        .parent()
        .context("target dir")?
        .join("screenshots");
    browser
        .screenshot(&target.join("audit-tampered.png"))
        .await?;

    // The API still serves the head: nothing else broke.
    let head: LogHeadView = s.api.get_as("/api/v1/tenants/demo/log").await?;
    // Typed: a checkpoint whose `note` is not a string does not decode.
    ensure!(head.checkpoint.is_some(), "{head:?}");
    Ok(())
}
