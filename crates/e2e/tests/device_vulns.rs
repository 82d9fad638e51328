//! A device's open vulnerabilities with the real binaries: the real agent
//! of `bulwark up` reports this machine's dpkg packages and its release
//! (this machine is Debian 12); OSV records written here name one of its
//! real source packages, are imported through `bulwark vulndb import`, and
//! `bulwark device vulns` shows the one fixed above the installed version,
//! not the one fixed below it. `bulwark tenant vulns` ranks it, and the
//! console's device page shows it.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::devices::{DevicePackagesView, DeviceView};
use bulwark_api::vulndb::{DeviceVulnerabilitiesView, TenantVulnerabilitiesView};
use bulwark_e2e::{OperatorSetup, wait_for};
use serde_json::{Value, json};

const PASSPHRASE: &str = "e2e device vulnerabilities passphrase";

/// `bash`'s source package and source version as dpkg records them (any
/// Debian system has it).
fn installed_source() -> Result<(String, String)> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${source:Package} ${source:Version}", "bash"])
        .output()
        .context("dpkg-query (this test needs a Debian machine)")?;
    let text = String::from_utf8(out.stdout)?;
    let (package, version) = text.trim().split_once(' ').context("dpkg-query output")?;
    Ok((package.to_owned(), version.to_owned()))
}

fn record(id: &str, package: &str, fixed: &str, vector: &str) -> Value {
    json!({
      "id": id,
      "modified": "2024-10-01T00:00:00Z",
      "summary": format!("{package} - security update"),
      "aliases": [format!("CVE-{id}")],
      "severity": [{"type": "CVSS_V3", "score": vector}],
      "affected": [{
        "package": {"ecosystem": "Debian:12", "name": package},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
      }]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn this_machines_packages_show_the_advisory_fixed_above_them() -> Result<()> {
    let os_release = std::fs::read_to_string("/etc/os-release")?;
    ensure!(
        os_release.contains("VERSION_ID=\"12\"") && os_release.contains("ID=debian"),
        "this test expects Debian 12"
    );
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let (package, installed) = installed_source()?;
    // Wait for the real agent's package list to be stored.
    wait_for(
        Duration::from_secs(60),
        "the local agent's packages",
        async || {
            let view: DevicePackagesView = s
                .api
                .get_as(&format!("/api/v1/devices/{}/packages", s.local))
                .await?;
            Ok((view.total > 0).then_some(()))
        },
    )
    .await?;

    // Above the installed version (a `+` suffix sorts after it), and below.
    let above = format!("{installed}+zz1");
    let folder = s.work.path().join("osv");
    std::fs::create_dir_all(&folder)?;
    for r in [
        record(
            "DEBIAN-CVE-2099-0001",
            &package,
            &above,
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        ),
        record(
            "DEBIAN-CVE-1999-0001",
            &package,
            "0.1-1",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        ),
    ] {
        let name = format!("{}.json", r["id"].as_str().unwrap_or("x"));
        std::fs::write(folder.join(name), serde_json::to_vec(&r)?)?;
    }
    s.cli(&["vulndb", "import", &folder.display().to_string()], None)
        .await?
        .ok()?;

    let device: DeviceView = s.api.device(&s.local).await?;
    let view: DeviceVulnerabilitiesView = s
        .cli_as(&["device", "vulns", &device.hostname, "--json"])
        .await?;
    ensure!(view.ecosystem.as_deref() == Some("Debian:12"), "{view:?}");
    let ids: Vec<&str> = view
        .vulnerabilities
        .iter()
        .map(|v| v.advisory.as_str())
        .collect();
    ensure!(ids == ["DEBIAN-CVE-2099-0001"], "{ids:?}");
    let hit = &view.vulnerabilities[0];
    ensure!(hit.score == Some(9.8), "{hit:?}");
    ensure!(hit.packages.len() == 1, "{hit:?}");
    ensure!(hit.packages[0].installed == installed, "{hit:?}");
    ensure!(
        hit.packages[0].fixed.as_deref() == Some(above.as_str()),
        "{hit:?}"
    );

    let table = s
        .cli(&["device", "vulns", &device.hostname], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        table.contains("DEBIAN-CVE-2099-0001 (CVE-DEBIAN-CVE-2099-0001)")
            && table.contains("9.8")
            && table.contains(&above)
            && !table.contains("DEBIAN-CVE-1999-0001"),
        "{table}"
    );

    let tenant: TenantVulnerabilitiesView = s
        .cli_as(&["tenant", "vulns", "--tenant", &device.tenant, "--json"])
        .await?;
    ensure!(
        tenant.vulnerabilities.len() == 1 && tenant.vulnerabilities[0].devices == 1,
        "{tenant:?}"
    );
    let text = s
        .cli(&["tenant", "vulns", "--tenant", &device.tenant], None)
        .await?
        .ok()?
        .stdout;
    ensure!(text.contains("1 open advisories"), "{text}");

    // The console's device page: the card, the advisory, its fix; no script.
    let page = s.console_page(&format!("/devices/{}", s.local)).await?;
    ensure!(
        page.contains("<h2>Vulnerabilities</h2>")
            && page.contains("DEBIAN-CVE-2099-0001")
            && page.contains("1 critical")
            && !page.contains("DEBIAN-CVE-1999-0001"),
        "{page}"
    );
    ensure!(!page.contains("<script>"), "no inline script");
    Ok(())
}
