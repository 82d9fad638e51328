//! Pending updates and an install-patches job, end to end (issue 17), with
//! a real apt and dpkg confined to a throwaway directory.
//!
//! The test builds a local apt repository (`bulwark_e2e::apt_sandbox`: two versions of a tiny package
//! made with `dpkg-deb`, indexed with `dpkg-scanpackages`, a Release file
//! naming the suite `bookworm-security`) and an apt configuration whose
//! every directory (lists, cache, sources, parts, logs, dpkg's status
//! database and root) is under a temporary directory; the agent of `bulwark
//! up` gets it through `BULWARK_AGENT_APT_CONFIG`. Version 1.0 is
//! installed into the throwaway root, 2.0 published; the agent (root here,
//! so it refreshes the lists itself) reports the pending security update;
//! the operator signs an install-patches job (quorum 1 in the default
//! policy); the agent upgrades; the result (1.0 -> 2.0, no failure) is
//! recorded and shown by `bulwark job show`, and the pending list empties.
//! A job naming an option-like package is refused. The machine's own dpkg
//! database is checked unchanged.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::devices::{InventoryView, PendingUpdateView};
use bulwark_api::jobs::JobView;
use bulwark_e2e::apt_sandbox::{AptSandbox, Install, SECURITY_SUITE};
use bulwark_e2e::{OperatorSetup, UpOptions, decode_json, target_of, wait_for};
use sha2::{Digest, Sha256};

const PASSPHRASE: &str = "e2e patch jobs: a passphrase nobody guesses";
const PACKAGE: &str = "bulwark-e2e-tiny";
const SUITE: &str = SECURITY_SUITE;

fn system_dpkg_status() -> Result<Vec<u8>> {
    Ok(Sha256::digest(std::fs::read(Path::new("/var/lib/dpkg/status"))?).to_vec())
}

async fn pending(s: &OperatorSetup) -> Result<Option<Vec<PendingUpdateView>>> {
    let inventory: Option<InventoryView> = s.api.device(&s.local).await?.inventory;
    Ok(inventory.and_then(|i| i.pending_updates))
}

#[tokio::test]
async fn a_pending_security_update_is_reported_installed_by_a_signed_job_and_recorded() -> Result<()>
{
    let system_before = system_dpkg_status()?;
    let sandbox = AptSandbox::new()?;
    sandbox.build(PACKAGE, "1.0", SUITE, Install::Succeeds)?;
    sandbox.publish()?;
    sandbox.apt(&["update", "-q"])?;
    sandbox.apt(&["install", "-y", "-q", PACKAGE])?;
    ensure!(sandbox.installed(PACKAGE)? == "1.0");
    // 2.0 is published; the agent refreshes the lists itself (it is root).
    sandbox.build(PACKAGE, "2.0", SUITE, Install::Succeeds)?;
    sandbox.publish()?;

    let s = OperatorSetup::start_with(
        PASSPHRASE,
        UpOptions::default().env(
            "BULWARK_AGENT_APT_CONFIG",
            sandbox.config().display().to_string(),
        ),
    )
    .await?;
    let update = wait_for(
        Duration::from_secs(90),
        "the pending update in the device's inventory",
        async || {
            Ok(pending(&s)
                .await?
                .and_then(|us| us.into_iter().find(|u| u.name == PACKAGE)))
        },
    )
    .await?;
    ensure!(
        update.current_version == "1.0" && update.new_version == "2.0" && update.security,
        "unexpected pending update: {update:?}"
    );
    ensure!(update.origin.contains(SUITE), "{update:?}");
    // Only the sandbox's packages: the machine's own lists are not read.
    let all = pending(&s).await?.unwrap_or_default();
    ensure!(all.len() == 1, "the agent read another apt: {all:?}");

    // The CLI lists it.
    let out = s
        .cli(&["device", "updates", &s.local], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        out.contains("1 pending updates, 1 from a security suite") && out.contains(PACKAGE),
        "{out}"
    );

    // The console's device page lists it, marked as a security update.
    let page = s.console_page(&format!("/devices/{}", s.local)).await?;
    ensure!(
        page.contains("Pending updates")
            && page.contains("1 pending, 1 from a security suite")
            && page.contains(PACKAGE),
        "the device page does not show the pending update"
    );

    // A job naming an option-like package is refused before anything is
    // signed or sent, and the refusal names the grammar.
    let refused = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                &s.local,
                "--install-patches",
                "--packages=-oAPT::Update::Pre-Invoke::=touch /tmp/x",
                "--reason",
                "e2e",
            ],
            None,
        )
        .await?;
    ensure!(
        !refused.success() && refused.all_output().contains("not a Debian package name"),
        "{}",
        refused.all_output()
    );

    // The signed job: every pending security update (no names).
    let out = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                &s.local,
                "--install-patches",
                "--reason",
                "e2e: security updates",
                "--timeout",
                "600",
                "--json",
            ],
            None,
        )
        .await?
        .ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    ensure!(view.class == "install-patches", "{view:?}");
    let target = target_of(&view, &s.local)?;
    ensure!(
        target.state == "succeeded" && target.exit_code == Some(0),
        "{target:?}"
    );
    let report = target.patches.context("no patch report")?;
    ensure!(report.failed.is_empty(), "{report:?}");
    ensure!(
        report.installed.len() == 1
            && report.installed[0].name == PACKAGE
            && report.installed[0].old_version == "1.0"
            && report.installed[0].new_version == "2.0",
        "{report:?}"
    );
    ensure!(sandbox.installed(PACKAGE)? == "2.0");

    // Recorded: `bulwark job show` prints it from the server's record.
    let shown = s.cli(&["job", "show", &view.id], None).await?.ok()?.stdout;
    ensure!(
        shown.contains("1 installed, 0 failed") && shown.contains("1.0 -> 2.0"),
        "{shown}"
    );
    // And the pending list empties.
    wait_for(
        Duration::from_secs(90),
        "the pending list to empty",
        async || Ok(pending(&s).await?.filter(|us| us.is_empty())),
    )
    .await?;
    // The console's job page shows what was installed.
    let page = s.console_page(&format!("/jobs/{}", view.id)).await?;
    ensure!(page.contains("patches-installed") && page.contains(PACKAGE));

    ensure!(
        system_dpkg_status()? == system_before,
        "the machine's own dpkg database changed"
    );
    Ok(())
}
