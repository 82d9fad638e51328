//! Installed software and disk use, end to end: the real agent of `bulwark
//! up` reports this machine's dpkg packages and they appear through the API
//! and the CLI as `dpkg-query` lists them; its disks as `df` counts them. A
//! hostile endpoint (a real agent in a mount namespace of its own, with a
//! fake dpkg database bind-mounted over the real one) reports HTML names and
//! then more packages than the limit: the names come back as text, the
//! oversized list is refused by the agent's parser, the server stays up.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::devices::{DevicePackagesView, DeviceView};
use bulwark_e2e::{OperatorSetup, Proc, agent_bin, decode_json, enroll_agent, wait_for};

const PASSPHRASE: &str = "e2e packages: a passphrase nobody guesses";

/// `name|version|architecture` of every installed package, as dpkg-query says.
fn dpkg_query() -> Result<Vec<String>> {
    let out = std::process::Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev}|${Package}|${Version}|${Architecture}\n",
        ])
        .output()
        .context("dpkg-query (this test needs a Debian machine)")?;
    let mut list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ii ") || l.starts_with("hi "))
        .filter_map(|l| l.split_once('|').map(|(_, rest)| rest.to_owned()))
        .collect();
    list.sort();
    Ok(list)
}

async fn packages(s: &OperatorSetup, id: &str, q: &str) -> Result<DevicePackagesView> {
    s.api
        .get_as(&format!("/api/v1/devices/{id}/packages?q={q}"))
        .await
}

#[tokio::test]
async fn this_machines_packages_and_disks_reach_the_api_and_the_cli() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let expected = dpkg_query()?;
    let listed = wait_for(
        Duration::from_secs(60),
        "the local agent's packages",
        async || {
            let view = packages(&s, &s.local, "").await?;
            Ok((view.total > 0).then_some(view))
        },
    )
    .await?;
    let mut got: Vec<String> = listed
        .packages
        .iter()
        .map(|p| format!("{}|{}|{}", p.name, p.version, p.architecture))
        .collect();
    got.sort();
    ensure!(
        got == expected,
        "API {} packages, dpkg-query {}",
        got.len(),
        expected.len()
    );
    eprintln!("{} packages reported by the real agent", got.len());

    // Filter: any case, literal text.
    let libc = packages(&s, &s.local, "LIBC").await?;
    ensure!(
        libc.total > 0 && libc.packages.iter().all(|p| p.name.contains("libc")),
        "{libc:?}"
    );
    ensure!(
        packages(&s, &s.local, "%25").await?.total == 0,
        "% is literal"
    );

    // The CLI, by host name.
    let device: DeviceView = s.api.device(&s.local).await?;
    ensure!(
        device.package_count == Some(expected.len() as u64),
        "{:?}",
        device.package_count
    );
    let shown = s
        .cli(&["device", "show", &device.hostname], None)
        .await?
        .ok()?;
    ensure!(
        shown
            .stdout
            .contains(&format!("Packages   {}", expected.len())),
        "{}",
        shown.stdout
    );
    ensure!(shown.stdout.contains("USE%"), "{}", shown.stdout);
    let json = s
        .cli(
            &[
                "device",
                "packages",
                &device.hostname,
                "--search",
                "libc",
                "--json",
            ],
            None,
        )
        .await?
        .ok()?;
    let from_cli: DevicePackagesView = decode_json(&json.stdout)?;
    ensure!(
        from_cli.total == libc.total,
        "{} vs {}",
        from_cli.total,
        libc.total
    );
    let table = s
        .cli(&["device", "packages", &device.hostname], None)
        .await?
        .ok()?;
    ensure!(
        table
            .stdout
            .contains(&format!("{} packages installed", expected.len())),
        "{}",
        table.stdout
    );

    // Disks as df counts them (within what was written in between).
    let df = std::process::Command::new("df")
        .args(["-B1", "--output=target,used,avail", "/"])
        .output()?;
    let df = String::from_utf8_lossy(&df.stdout);
    let row: Vec<u64> = df
        .lines()
        .nth(1)
        .context("df row")?
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    let disks = device.inventory.and_then(|i| i.disks).unwrap_or_default();
    let root = disks
        .iter()
        .find(|d| d.mount_point == "/")
        .context("/ reported")?;
    let used = root.used_bytes.context("used bytes")?;
    ensure!(
        used.abs_diff(row[0]) < 256 << 20,
        "used {used}, df {}",
        row[0]
    );
    ensure!(
        root.available_bytes.abs_diff(row[1]) < 256 << 20,
        "avail vs df {}",
        row[1]
    );
    Ok(())
}

/// Runs a real agent whose dpkg database is `status` (bind-mounted in a
/// mount namespace of its own, as root).
fn spawn_with_status(state_dir: &std::path::Path, status: &std::path::Path) -> Result<Proc> {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--mount", "--", "/bin/sh", "-c"])
        .arg("mount --bind \"$1\" /var/lib/dpkg/status && exec \"$2\" run --state-dir \"$3\"")
        .arg("sh")
        .arg(status)
        .arg(agent_bin()?)
        .arg(state_dir)
        .env("RUST_LOG", "info");
    Proc::spawn("hostile bulwark-agent", &mut command)
}

fn stanza(name: &str, version: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n\n"
    )
}

#[tokio::test]
async fn a_hostile_endpoints_packages_are_bounded_and_shown_as_text() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let work = tempfile::tempdir()?;
    let status = work.path().join("status");
    let hostile = "<script>alert(1)</script>";
    let mut fake = stanza(hostile, "1&amp;\"'");
    fake.push_str(&stanza("\u{1b}[31mred", "2"));
    fake.push_str(&stanza("plain", "3"));
    std::fs::write(&status, &fake)?;

    let token = s.api.issue_token("demo").await?;
    let state = tempfile::tempdir()?;
    enroll_agent(&s.up.info.gateway_url, &token, state.path())
        .await?
        .ok()?;
    let agent = spawn_with_status(state.path(), &status)?;
    let id = wait_for(Duration::from_secs(30), "the hostile device", async || {
        let devices = s.api.devices("demo").await?;
        Ok(devices
            .into_iter()
            .find(|d| d.id != s.local && d.online)
            .map(|d| d.id))
    })
    .await?;
    let view = wait_for(
        Duration::from_secs(60),
        "the hostile packages",
        async || {
            let view = packages(&s, &id, "").await?;
            Ok((view.total == 3).then_some(view))
        },
    )
    .await?;
    let names: Vec<&str> = view.packages.iter().map(|p| p.name.as_str()).collect();
    ensure!(
        names == ["\u{1b}[31mred", "<script>alert(1)</script>", "plain"],
        "{names:?}"
    );
    ensure!(
        view.packages[1].version == "1&amp;\"'",
        "stored as sent, not decoded"
    );

    // More than the agent's limit: its parser refuses the database (a clear
    // warning in its log) and the new session's full report carries no
    // list, so the server empties the device's: nothing stale is shown.
    agent.signal_group("KILL")?;
    drop(agent);
    let mut many = String::new();
    for n in 0..10_001 {
        many.push_str(&stanza(&format!("p{n:05}"), "1"));
    }
    std::fs::write(&status, &many)?;
    let agent = spawn_with_status(state.path(), &status)?;
    wait_for(
        Duration::from_secs(60),
        "the oversized list to be refused",
        async || Ok((packages(&s, &id, "").await?.total == 0).then_some(())),
    )
    .await?;
    let log = format!("{}{}", agent.stdout.text(), agent.stderr.text());
    ensure!(log.contains("more than 10000 packages"), "{log}");
    // The server is up and answers for everyone else.
    ensure!(s.api.devices("demo").await?.len() >= 2);
    ensure!(packages(&s, &s.local, "").await?.total > 0);
    Ok(())
}
