//! Listening ports, local administrators, services and processes, end to
//! end: the real agent of `bulwark up` (root, on this machine) reports a
//! listener this test opens, with this test process as its owner; its
//! administrators as this machine's /etc/passwd and /etc/group name them;
//! its services and a process snapshot. A listener opened afterwards
//! raises an `inventory.new_listening_port` alert, and the CLI prints each
//! section.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::alerts::AlertView;
use bulwark_api::devices::{InventoryView, ListeningPortView};
use bulwark_e2e::{OperatorSetup, decode_json, wait_for};

const PASSPHRASE: &str = "e2e inventory sections: a passphrase nobody guesses";

/// The administrators this machine's files name, computed here from the
/// files without the agent's code: uid 0 or primary gid 0 in /etc/passwd,
/// members (listed or primary) of sudo, wheel and admin in /etc/group.
fn expected_admins() -> Result<BTreeSet<String>> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let group = std::fs::read_to_string("/etc/group")?;
    let mut admins = BTreeSet::new();
    let accounts: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    for f in &accounts {
        if f[2] == "0" || f[3] == "0" {
            admins.insert(f[0].to_owned());
        }
    }
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && ["sudo", "wheel", "admin"].contains(&f[0]) {
            admins.extend(f[3].split(',').filter(|m| !m.is_empty()).map(str::to_owned));
            admins.extend(
                accounts
                    .iter()
                    .filter(|a| a[3] == f[2])
                    .map(|a| a[0].to_owned()),
            );
        }
    }
    ensure!(
        !std::path::Path::new("/etc/sudoers").exists(),
        "this test's expectation leaves sudoers out: run it where there is none"
    );
    Ok(admins)
}

async fn inventory(s: &OperatorSetup) -> Result<InventoryView> {
    s.api
        .device(&s.local)
        .await?
        .inventory
        .context("no inventory yet")
}

fn mine(ports: &[ListeningPortView], port: u16) -> Option<&ListeningPortView> {
    ports
        .iter()
        .find(|p| p.protocol == "tcp" && p.address == "127.0.0.1" && p.port == port)
}

#[tokio::test]
async fn ports_admins_services_and_processes_reach_the_api_the_cli_and_alerts() -> Result<()> {
    // Open before the agent starts: its first full report carries it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    // The kernel's name of this process (what the agent reads in /proc).
    let comm = std::fs::read_to_string("/proc/self/comm")?
        .trim_end()
        .to_owned();
    let s = OperatorSetup::start(PASSPHRASE).await?;

    let inv = wait_for(
        Duration::from_secs(60),
        "the local agent's listening ports",
        async || {
            let inv = inventory(&s).await.ok();
            Ok(inv.filter(|i| {
                i.listening_ports
                    .as_deref()
                    .is_some_and(|p| mine(p, port).is_some())
            }))
        },
    )
    .await?;
    let ports = inv.listening_ports.as_deref().unwrap_or_default();
    let reported = mine(ports, port).context("our listener")?;
    ensure!(
        reported.pid == Some(std::process::id()),
        "pid {:?}, this test is {}",
        reported.pid,
        std::process::id()
    );
    ensure!(
        reported.process.as_deref() == Some(comm.as_str()),
        "{:?} vs {comm}",
        reported.process
    );

    let admins: BTreeSet<String> = inv
        .local_admins
        .as_deref()
        .context("admins reported")?
        .iter()
        .map(|a| a.name.clone())
        .collect();
    ensure!(admins == expected_admins()?, "{admins:?}");
    let services = inv.services.as_ref().context("services reported")?;
    ensure!(
        services.systemd_running == std::path::Path::new("/run/systemd/system").is_dir(),
        "{services:?}"
    );
    let processes = inv.processes.as_deref().context("processes reported")?;
    ensure!(
        !processes.is_empty()
            && processes.len() <= 100
            && processes
                .windows(2)
                .all(|w| w[0].memory_bytes >= w[1].memory_bytes),
        "a bounded snapshot, largest first: {processes:?}"
    );

    // The CLI, by host name.
    let device = s.api.device(&s.local).await?;
    let shown = s
        .cli(&["device", "ports", &device.hostname], None)
        .await?
        .ok()?;
    ensure!(
        shown.stdout.lines().any(|l| l.contains("127.0.0.1")
            && l.contains(&format!(" {port} "))
            && l.contains(&comm)),
        "{}",
        shown.stdout
    );
    let json = s
        .cli(&["device", "admins", &device.hostname, "--json"], None)
        .await?
        .ok()?;
    let from_cli: Vec<bulwark_api::devices::LocalAdminView> = decode_json(&json.stdout)?;
    ensure!(from_cli.len() == admins.len());
    for section in ["services", "processes"] {
        s.cli(&["device", section, &device.hostname], None)
            .await?
            .ok()?;
    }

    // A new listener, seen at the agent's next check (every 60 s), raises
    // one warning-or-info alert for the tenant.
    let second = std::net::TcpListener::bind("127.0.0.1:0")?;
    let second_port = second.local_addr()?.port();
    let alert = wait_for(
        Duration::from_secs(150),
        "the new listening port's alert",
        async || {
            let out = s
                .cli(&["alert", "list", "--tenant", "demo", "--json"], None)
                .await?
                .ok()?
                .stdout;
            let alerts: Vec<AlertView> = decode_json(&out)?;
            Ok(alerts.into_iter().find(|a| {
                a.kind == "inventory.new_listening_port"
                    && a.summary.contains(&format!("127.0.0.1:{second_port}"))
            }))
        },
    )
    .await?;
    ensure!(alert.device_id.as_deref() == Some(s.local.as_str()));
    ensure!(
        alert.severity == "info",
        "loopback only: {}",
        alert.severity
    );
    ensure!(
        alert.detail.contains(&std::process::id().to_string()),
        "{}",
        alert.detail
    );
    drop((listener, second));
    Ok(())
}
