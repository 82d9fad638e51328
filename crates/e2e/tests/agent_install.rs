//! `bulwark-agent install` as a technician runs it on a new machine, laid
//! out in a directory (systemd is not the init here, and the test must not
//! touch this machine's /usr and /etc): the command the console prints
//! enrols the device against a real server, writes the binary, the unit
//! and a private state directory; the installed binary then connects with
//! the state it made. A second run changes nothing, an argument that would
//! smuggle a second command into the unit is refused before anything is
//! written, and uninstall keeps the device key unless told to purge it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_e2e::{
    Api, Finished, UpOptions, UpProcess, agent_bin, run_command, spawn_agent, wait_for,
};

async fn agent(args: &[&str]) -> Result<Finished> {
    let mut command = tokio::process::Command::new(agent_bin()?);
    command.args(args);
    run_command(command, None, Duration::from_secs(60)).await
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .permissions()
        .mode()
        & 0o777)
}

#[tokio::test]
async fn the_install_command_enrols_writes_a_unit_and_the_installed_agent_connects() -> Result<()> {
    let up = UpProcess::start(UpOptions::default()).await?;
    let (_owner, api) = Api::bootstrap(&up).await?;
    let before = api.devices("demo").await?.len();
    let token = api.issue_token_reply("demo").await?;
    let root_dir = tempfile::tempdir()?;
    let root = root_dir.path().to_str().context("utf-8 temp dir")?;

    // A smuggled ExecStartPre through a pasted argument: refused, nothing written.
    let smuggled = agent(&[
        "install",
        "--root-dir",
        root,
        "--run-arg",
        "--inventory-secs=60\nExecStartPre=/bin/sh -c id",
    ])
    .await?;
    ensure!(
        !smuggled.success()
            && smuggled
                .all_output()
                .contains("cannot be written into the unit"),
        "{}",
        smuggled.all_output()
    );
    ensure!(
        std::fs::read_dir(root_dir.path())?.next().is_none(),
        "a refused install left files behind"
    );

    // What the console's tenant page prints, with --root-dir added.
    let install = [
        "install",
        "--root-dir",
        root,
        "--server",
        &up.info.gateway_url,
        "--token",
        &token.token,
        "--root",
        &token.root_fingerprint,
        "--run-arg=--inventory-secs=300",
    ];
    let installed = agent(&install).await?.ok()?;
    let out = installed.all_output();
    ensure!(
        out.contains("Installed binary")
            && out.contains("Installed systemd unit")
            && out.contains("Enrolled as device")
            && out.contains("systemd is not running in a --root-dir"),
        "{out}"
    );
    let binary = root_dir.path().join("usr/local/bin/bulwark-agent");
    ensure!(
        std::fs::read(&binary)? == std::fs::read(agent_bin()?)?,
        "the installed binary is not this agent"
    );
    ensure!(mode(&binary)? == 0o755, "binary mode {:o}", mode(&binary)?);
    let state = root_dir.path().join("var/lib/bulwark-agent");
    ensure!(mode(&state)? == 0o700, "state dir mode {:o}", mode(&state)?);
    let unit_path = root_dir
        .path()
        .join("etc/systemd/system/bulwark-agent.service");
    let unit = std::fs::read_to_string(&unit_path)?;
    ensure!(
        unit.contains(
            "ExecStart=/usr/local/bin/bulwark-agent --state-dir /var/lib/bulwark-agent run --inventory-secs=300\n"
        ),
        "{unit}"
    );
    // systemd's own reading of the unit, where systemd-analyze is installed:
    // nothing to say but that the binary is not on this machine's /usr/local
    // (it is under the root directory).
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let mut verify = tokio::process::Command::new("systemd-analyze");
        verify.arg("verify").arg(&unit_path);
        let verified = run_command(verify, None, Duration::from_secs(30)).await?;
        let output = verified.all_output();
        let complaints: Vec<&str> = output
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("is not executable"))
            .collect();
        ensure!(
            complaints.is_empty(),
            "systemd-analyze verify: {complaints:?}"
        );
    }

    // Installing again: nothing to do, and the token is not spent twice.
    let again = agent(&install).await?.ok()?;
    let out = again.all_output();
    ensure!(
        out.contains("Unchanged binary")
            && out.contains("Unchanged systemd unit")
            && out.contains("Already enrolled"),
        "{out}"
    );

    // The state the install made is what the agent runs with.
    let _running = spawn_agent(&state)?;
    wait_for(
        Duration::from_secs(30),
        "the installed agent's device online",
        async || {
            let devices = api.devices("demo").await?;
            Ok((devices.len() == before + 1 && devices.iter().all(|d| d.online)).then_some(()))
        },
    )
    .await?;
    drop(_running);

    let kept = agent(&["uninstall", "--root-dir", root]).await?.ok()?;
    ensure!(
        !binary.exists() && !unit_path.exists() && state.join("agent.json").exists(),
        "{}",
        kept.all_output()
    );
    agent(&["uninstall", "--root-dir", root, "--purge"])
        .await?
        .ok()?;
    ensure!(!state.exists(), "--purge kept the state directory");
    Ok(())
}
