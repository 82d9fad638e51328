//! Enrolling and running real `bulwark-agent` processes.

use crate::*;

/// `bulwark-agent enroll --server URL --token TOKEN --state-dir DIR`, run to completion.
pub async fn enroll_agent(gateway_url: &str, token: &str, state_dir: &Path) -> Result<Finished> {
    enroll_agent_as(None, gateway_url, token, state_dir).await
}

/// The agent binary, run with `hostname` as its machine's host name: in a
/// UTS namespace of its own (`unshare --uts`, as root), so that several
/// real agents on this machine are told apart by host name as on a network.
/// The name is written to the kernel directly, not through `hostname(1)`,
/// which refuses what a hostile endpoint could still set (HTML, spaces).
pub(crate) fn agent_program(hostname: Option<&str>) -> Result<(PathBuf, Vec<std::ffi::OsString>)> {
    let agent = agent_bin()?;
    Ok(match hostname {
        None => (agent, Vec::new()),
        Some(name) => (
            PathBuf::from("unshare"),
            vec![
                "--uts".into(),
                "--".into(),
                "/bin/sh".into(),
                "-c".into(),
                "printf %s \"$1\" > /proc/sys/kernel/hostname && shift && exec \"$@\"".into(),
                "sh".into(),
                name.into(),
                agent.into_os_string(),
            ],
        ),
    })
}

/// [`enroll_agent`] on a machine called `hostname` (see [`agent_program`]).
pub async fn enroll_agent_as(
    hostname: Option<&str>,
    gateway_url: &str,
    token: &str,
    state_dir: &Path,
) -> Result<Finished> {
    let (program, prefix) = agent_program(hostname)?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(prefix)
        .arg("enroll")
        .args(["--server", gateway_url, "--token", token])
        .arg("--state-dir")
        .arg(state_dir);
    run_command(command, None, Duration::from_secs(60)).await
}

/// `bulwark-agent run --state-dir DIR`, in the background.
pub fn spawn_agent(state_dir: &Path) -> Result<Proc> {
    spawn_agent_as(None, state_dir)
}

/// [`spawn_agent`] on a machine called `hostname` (see [`agent_program`]).
pub fn spawn_agent_as(hostname: Option<&str>, state_dir: &Path) -> Result<Proc> {
    spawn_agent_with(hostname, state_dir, &[])
}

/// [`spawn_agent_as`] with more `run` arguments (`--check-values-secs 1`).
pub fn spawn_agent_with(hostname: Option<&str>, state_dir: &Path, args: &[&str]) -> Result<Proc> {
    let (program, prefix) = agent_program(hostname)?;
    let mut command = Command::new(program);
    command.args(prefix);
    command
        .arg("run")
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env("BULWARK_AGENT_APT_CONFIG", stub_apt_config()?)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        );
    Proc::spawn("bulwark-agent run", &mut command)
}

/// A second agent, enrolled into `tenant` with a fresh token and running.
pub struct ExtraAgent {
    // Fields drop in order: the process stops before its state directory goes.
    pub proc: Proc,
    pub state_dir: TempDir,
    pub device_id: String,
    /// The host name it runs under, if not this machine's.
    pub hostname: Option<String>,
}

impl ExtraAgent {
    /// Issues a token, enrols a new agent with its own state directory, runs
    /// it and waits until its device is online. `known` are the device ids
    /// that existed before, so the new one can be told apart.
    pub async fn start(api: &Api, gateway_url: &str, tenant: &str) -> Result<Self> {
        Self::start_as(None, api, gateway_url, tenant).await
    }

    /// [`ExtraAgent::start`] on a machine called `hostname`.
    pub async fn start_as(
        hostname: Option<&str>,
        api: &Api,
        gateway_url: &str,
        tenant: &str,
    ) -> Result<Self> {
        Self::start_with(hostname, api, gateway_url, tenant, &[]).await
    }

    /// [`ExtraAgent::start_as`] with more `run` arguments.
    pub async fn start_with(
        hostname: Option<&str>,
        api: &Api,
        gateway_url: &str,
        tenant: &str,
        args: &[&str],
    ) -> Result<Self> {
        let before: Vec<String> = api
            .devices(tenant)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect();
        let token = api.issue_token(tenant).await?;
        let state_dir = tempfile::Builder::new()
            .prefix("bulwark-agent-")
            .tempdir()?;
        enroll_agent_as(hostname, gateway_url, &token, state_dir.path())
            .await?
            .ok()?;
        let proc = spawn_agent_with(hostname, state_dir.path(), args)?;
        let device_id = wait_for(
            Duration::from_secs(20),
            "the new agent's device to be online",
            async || {
                let devices = api.devices(tenant).await?;
                Ok(devices
                    .into_iter()
                    .find(|d| !before.contains(&d.id) && d.online)
                    .map(|d| d.id))
            },
        )
        .await?;
        Ok(Self {
            state_dir,
            proc,
            device_id,
            hostname: hostname.map(str::to_owned),
        })
    }
}

/// Shell lines for a job's script that kill its agent (kill -9) the moment
/// the run's script file is gone, i.e. just after the script exits and the
/// agent cleans up. The script's parent is its supervisor and the agent is
/// the supervisor's; the killer leaves the script's process group (killed
/// when the script exits) and the script waits until `ready` shows it runs.
pub fn kill_agent_after_exit(ready: &Path) -> String {
    format!(
        "agent=$(awk '{{print $4}}' /proc/$PPID/stat)\n\
         setsid sh -c 'touch \"$3\"; while [ -e \"$1\" ]; do :; done; kill -9 \"$2\"' \
           killer \"$0\" \"$agent\" '{ready}' </dev/null >/dev/null 2>&1 &\n\
         while [ ! -e '{ready}' ]; do :; done\n",
        ready = ready.display(),
    )
}

/// Is there a `bulwark-shell` account, the one unprivileged remote shells
/// run as (made here, as `bulwark-agent install` makes it, when the test
/// runs as root)?
pub fn shell_account_ready() -> bool {
    let has = || {
        std::fs::read_to_string("/etc/passwd")
            .is_ok_and(|p| p.lines().any(|l| l.starts_with("bulwark-shell:")))
    };
    if has() {
        return true;
    }
    let _ = std::process::Command::new("useradd")
        .args([
            "--system",
            "--create-home",
            "--shell",
            "/bin/sh",
            "bulwark-shell",
        ])
        .status();
    has()
}
