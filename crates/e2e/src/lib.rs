//! Harness for Bulwark's end-to-end tests.
//!
//! The tests in `tests/` run the real binaries the way a person would: `bulwark
//! up` on a fresh data directory with ports chosen by the OS, `bulwark-agent
//! enroll` and `run`, the operator CLI, and the HTTP API through [`Api`].
//! Nothing here talks to the server's code directly; what these tests see is
//! what an operator or an agent sees.
//!
//! The binaries are found next to the test executable (`target/debug`), so run
//! `cargo build --workspace --bins` (or `cargo xtask test`, which does it) first.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

mod operator;

pub use operator::{
    OPERATOR_WAIT, OperatorSetup, decode_hex, marker_script, operator_cli, operator_login,
    sql_text, sqlite, target_of, wait_job_final,
};
pub use reqwest::{Method, StatusCode};
pub use tempfile::TempDir;

/// How long `bulwark up` may take to write `server.json`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped process may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The password every test owner gets (the server requires at least 12 characters).
pub const OWNER_PASSWORD: &str = "correct horse battery staple";
pub const OWNER_USERNAME: &str = "owner";
/// TOTP parameters the contract fixes: SHA-1, 6 digits, 30-second steps.
pub const TOTP_STEP_SECS: u64 = 30;

// ---------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------

/// The directory cargo put the workspace binaries in: the test executable is
/// `target/<profile>/deps/NAME-HASH`, the binaries are in `target/<profile>`.
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the test executable")?;
    let deps = exe
        .parent()
        .context("test executable has no parent directory")?;
    let dir = if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().context("deps directory has no parent")?
    } else {
        deps
    };
    Ok(dir.to_path_buf())
}

/// Path of a workspace binary (`bulwark` or `bulwark-agent`), or a clear
/// error telling how to build it.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "the end-to-end tests need the `{name}` binary at {}, which does not exist.\n\
             Build the binaries first: `cargo build --workspace --bins` (or run everything with `cargo xtask test`).",
            path.display()
        );
    }
    Ok(path)
}

pub fn bulwark_bin() -> Result<PathBuf> {
    binary("bulwark")
}

pub fn agent_bin() -> Result<PathBuf> {
    binary("bulwark-agent")
}

/// The workspace root (for example to write `docs/screenshots`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// Lines a child process printed, collected by a background thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn snapshot(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    /// The first word after `prefix` on the first line that contains it
    /// (`Setup code: ABCD-…  (one-time; …)` → `ABCD-…`).
    pub fn value_after(&self, prefix: &str) -> Option<String> {
        self.snapshot().iter().find_map(|line| {
            let (_, rest) = line.split_once(prefix)?;
            rest.split_whitespace().next().map(str::to_owned)
        })
    }

    fn push(&self, line: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    /// Reads `source` line by line until it closes. Each line is also echoed
    /// to stderr with `label`: the test harness captures it and shows it only
    /// when the test fails.
    fn collect_from(&self, label: String, source: impl Read + Send + 'static) {
        let lines = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(source).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{label}] {line}");
                lines.push(line);
            }
        });
    }
}

/// A child process in its own process group, killed (group and all) on drop.
pub struct Proc {
    child: Child,
    label: String,
    pub stdout: Lines,
    pub stderr: Lines,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `command` in a new process group with piped stdout and stderr.
    pub fn spawn(label: &str, command: &mut Command) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {label}: {command:?}"))?;
        let stdout = Lines::default();
        let stderr = Lines::default();
        if let Some(out) = child.stdout.take() {
            stdout.collect_from(format!("{label} stdout"), out);
        }
        if let Some(err) = child.stderr.take() {
            stderr.collect_from(format!("{label} stderr"), err);
        }
        Ok(Self {
            child,
            label: label.to_owned(),
            stdout,
            stderr,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for {}", self.label))?;
        }
        Ok(self.exited)
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` (a `kill` signal name) to the process itself.
    pub fn signal(&self, signal: &str) -> Result<()> {
        send_signal(signal, &self.pid().to_string())
    }

    /// Sends `signal` to every process in the group.
    pub fn signal_group(&self, signal: &str) -> Result<()> {
        send_signal(signal, &format!("-{}", self.pid()))
    }

    /// Whether any process of the group is still alive (children included).
    pub fn group_alive(&self) -> bool {
        Command::new("kill")
            .args(["-0", "--", &format!("-{}", self.pid())])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// SIGKILL to the whole group, at once (a crash, not a shutdown).
    pub async fn kill9(&mut self) -> Result<ExitStatus> {
        self.signal_group("KILL")?;
        self.wait_timeout(STOP_TIMEOUT)
            .await?
            .with_context(|| format!("{} did not die after SIGKILL", self.label))
    }

    /// SIGTERM to the process; waits for its exit status. Fails if it does not
    /// exit in time or leaves processes of its group behind.
    pub async fn terminate(&mut self) -> Result<ExitStatus> {
        self.stop_with("TERM").await
    }

    /// Like [`Proc::terminate`] with another signal. `INT` goes to the whole
    /// process group, as a terminal sends Ctrl-C; others to the process only.
    pub async fn stop_with(&mut self, signal: &str) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        if signal == "INT" {
            self.signal_group(signal)?;
        } else {
            self.signal(signal)?;
        }
        let status = self.wait_timeout(STOP_TIMEOUT).await?;
        let Some(status) = status else {
            let _ = self.signal_group("KILL");
            bail!(
                "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM",
                self.label
            );
        };
        // Children (the local agent) get a moment to finish their own shutdown.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.group_alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.group_alive() {
            let _ = self.signal_group("KILL");
            bail!(
                "{} exited ({status}) but left processes of its group running",
                self.label
            );
        }
        Ok(status)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group_alive() {
            let _ = self.signal_group("TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.group_alive() && Instant::now() < deadline {
                let _ = self.child.try_wait();
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.signal_group("KILL");
        }
        let _ = self.child.wait();
    }
}

fn send_signal(signal: &str, target: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), "--", target])
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    ensure!(
        status.success(),
        "kill -{signal} {target} failed ({status})"
    );
    Ok(())
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout and stderr together, for message checks and failure reports.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Fails with everything the command printed unless it exited 0.
    pub fn ok(self) -> Result<Self> {
        ensure!(
            self.success(),
            "command failed ({}):\n{}",
            self.status,
            self.all_output()
        );
        Ok(self)
    }
}

/// Runs a command to completion (stdin from `input`), killing it after `timeout`.
pub async fn run_command(
    mut command: tokio::process::Command,
    input: Option<&str>,
    timeout: Duration,
) -> Result<Finished> {
    use tokio::io::AsyncWriteExt;
    command
        .process_group(0)
        .kill_on_drop(true)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{command:?}");
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .await
            .context("writing stdin")?;
        drop(stdin);
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{shown} did not finish within {timeout:?}"))?
        .with_context(|| format!("waiting for {shown}"))?;
    let finished = Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!(
        "[{shown}] exited {}\nstdout:\n{}\nstderr:\n{}",
        finished.status, finished.stdout, finished.stderr
    );
    Ok(finished)
}

// ---------------------------------------------------------------------------
// `bulwark up`
// ---------------------------------------------------------------------------

/// How to start `bulwark up`.
#[derive(Clone, Default)]
pub struct UpOptions {
    /// `--heartbeat-secs`; tests that watch a device go offline set it low.
    pub heartbeat_secs: Option<u64>,
    /// `--database-url` (PostgreSQL); SQLite in the data directory otherwise.
    pub database_url: Option<String>,
    /// Reuse a data directory (a restart); a fresh temporary one otherwise.
    pub data_dir: Option<Arc<TempDir>>,
    /// Extra environment variables (e.g. `BULWARK_CONFIG_DIR`, `BULWARK_KEY_PASSPHRASE`).
    pub env: Vec<(String, String)>,
    /// `--listen` and `--gateway-listen`; `127.0.0.1:0` (chosen at start)
    /// otherwise. A test that restarts the server fixes them, so that its
    /// agents and API client find it again.
    pub listen: Option<(String, String)>,
}

impl UpOptions {
    pub fn heartbeat_secs(mut self, secs: u64) -> Self {
        self.heartbeat_secs = Some(secs);
        self
    }

    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    pub fn data_dir(mut self, dir: Arc<TempDir>) -> Self {
        self.data_dir = Some(dir);
        self
    }

    /// Fixed addresses, on ports free now, kept over restarts.
    pub fn fixed_ports(mut self) -> Result<Self> {
        let free = || -> Result<String> {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            Ok(listener.local_addr()?.to_string())
        };
        self.listen = Some((free()?, free()?));
        Ok(self)
    }

    /// Sets an environment variable for `bulwark up` (and so its local agent).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The `bulwark up` command line for these options on `dir`.
    pub fn command(&self, dir: &Path) -> Result<Command> {
        let mut command = Command::new(bulwark_bin()?);
        command
            .arg("up")
            .arg("--data-dir")
            .arg(dir)
            .args(match &self.listen {
                Some((api, gateway)) => ["--listen", api, "--gateway-listen", gateway],
                None => ["--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0"],
            })
            .arg("--agent-bin")
            .arg(agent_bin()?)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            );
        if let Some(secs) = self.heartbeat_secs {
            command.args(["--heartbeat-secs", &secs.to_string()]);
        }
        // `up` makes the demo tenant's root and the owner's signing key in the
        // operator's key store; a test gets its own, unlocked by a known passphrase.
        command
            .env("BULWARK_CONFIG_DIR", dir.join("operator-config"))
            .env("BULWARK_KEY_PASSPHRASE", TEST_KEY_PASSPHRASE);
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        Ok(command)
    }
}

/// The passphrase of the signing keys `bulwark up` makes in tests.
pub const TEST_KEY_PASSPHRASE: &str = "e2e key passphrase, not a secret";

/// `DIR/server.json`, written by `bulwark up` once it listens.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `http://localhost:PORT/`
    pub console_url: String,
    /// `https://127.0.0.1:PORT`
    pub gateway_url: String,
    pub pid: u64,
}

impl ServerInfo {
    fn parse(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).context("server.json is not JSON")?;
        let field = |name: &str| {
            value[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("server.json has no string `{name}`: {value}"))
        };
        Ok(Self {
            console_url: field("console_url")?,
            gateway_url: field("gateway_url")?,
            pid: value["pid"]
                .as_u64()
                .with_context(|| format!("server.json has no numeric `pid`: {value}"))?,
        })
    }
}

/// A running `bulwark up`: server plus local agent.
pub struct UpProcess {
    proc: Proc,
    data_dir: Arc<TempDir>,
    pub info: ServerInfo,
    options: UpOptions,
}

impl UpProcess {
    /// Starts `bulwark up` and waits (up to [`START_TIMEOUT`]) for `server.json`.
    pub async fn start(options: UpOptions) -> Result<Self> {
        let data_dir = match &options.data_dir {
            Some(dir) => dir.clone(),
            None => Arc::new(tempfile::Builder::new().prefix("bulwark-e2e-").tempdir()?),
        };
        let server_json = data_dir.path().join("server.json");
        let mut proc = Proc::spawn("bulwark up", &mut options.command(data_dir.path())?)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let info = loop {
            if let Some(status) = proc.try_wait()? {
                bail!(
                    "bulwark up exited ({status}) before writing server.json\nstdout:\n{}\nstderr:\n{}",
                    proc.stdout.text(),
                    proc.stderr.text()
                );
            }
            // The file may be caught half-written: retry until it parses.
            if let Ok(text) = std::fs::read_to_string(&server_json)
                && let Ok(info) = ServerInfo::parse(&text)
            {
                break info;
            }
            if Instant::now() >= deadline {
                bail!(
                    "bulwark up did not write {} within {START_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                    server_json.display(),
                    proc.stdout.text(),
                    proc.stderr.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        ensure!(
            info.pid == u64::from(proc.pid()),
            "server.json names pid {} but `bulwark up` is pid {}",
            info.pid,
            proc.pid()
        );
        Ok(Self {
            proc,
            data_dir,
            info,
            options,
        })
    }

    /// Kills `bulwark up` (and its local agent) with SIGKILL, as a crash or
    /// an OOM kill would, and starts it again on the same data directory
    /// and addresses (set [`UpOptions::fixed_ports`]) after `down`.
    pub async fn crash_and_restart(&mut self, down: Duration) -> Result<()> {
        self.proc.kill9().await?;
        // A crash leaves server.json behind; the new process writes its own.
        let _ = std::fs::remove_file(self.data_dir().join("server.json"));
        tokio::time::sleep(down).await;
        let options = self.options.clone().data_dir(self.data_dir.clone());
        *self = Self::start(options).await?;
        Ok(())
    }

    /// Starts `bulwark up` again on this instance's data directory, after it stopped.
    pub async fn restart(self) -> Result<Self> {
        let mut this = self;
        this.stop().await?;
        let options = this.options.clone().data_dir(this.data_dir.clone());
        drop(this);
        Self::start(options).await
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Keeps the data directory alive beyond this process (to start another on it).
    pub fn shared_data_dir(&self) -> Arc<TempDir> {
        self.data_dir.clone()
    }

    pub fn options(&self) -> &UpOptions {
        &self.options
    }

    pub fn process(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// The console URL without the trailing slash, for joining paths.
    pub fn base_url(&self) -> String {
        self.info.console_url.trim_end_matches('/').to_owned()
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base_url())
    }

    /// Everything printed to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.proc.stdout.snapshot()
    }

    /// The `Console:` URL printed on stdout (waits up to 10 s for it).
    pub async fn printed_console_url(&self) -> Result<String> {
        self.wait_printed("Console:").await
    }

    /// The one-time `Setup code:` printed on stdout (waits up to 10 s for it).
    pub async fn setup_code(&self) -> Result<String> {
        self.wait_printed("Setup code:").await
    }

    async fn wait_printed(&self, prefix: &str) -> Result<String> {
        let lines = self.proc.stdout.clone();
        wait_for(
            Duration::from_secs(10),
            &format!("`{prefix}` on stdout of bulwark up"),
            async || Ok(lines.value_after(prefix)),
        )
        .await
    }

    /// SIGTERM and wait: the contract is a clean shutdown of server and agent,
    /// exit code 0, and `server.json` removed.
    pub async fn stop(&mut self) -> Result<()> {
        self.stop_with("TERM").await
    }

    /// Like [`UpProcess::stop`] with another signal (`INT`: Ctrl-C, to the group).
    pub async fn stop_with(&mut self, signal: &str) -> Result<()> {
        let status = self.proc.stop_with(signal).await?;
        ensure!(
            status.success(),
            "bulwark up exited with {status} after SIG{signal} (expected 0)\nstderr:\n{}",
            self.proc.stderr.text()
        );
        let server_json = self.data_dir().join("server.json");
        ensure!(
            !server_json.exists(),
            "bulwark up left {} behind after a clean shutdown",
            server_json.display()
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------

/// `bulwark-agent enroll --server URL --token TOKEN --state-dir DIR`, run to completion.
pub async fn enroll_agent(gateway_url: &str, token: &str, state_dir: &Path) -> Result<Finished> {
    enroll_agent_as(None, gateway_url, token, state_dir).await
}

/// The agent binary, run with `hostname` as its machine's host name: in a
/// UTS namespace of its own (`unshare --uts`, as root), so that several
/// real agents on this machine are told apart by host name as on a network.
fn agent_program(hostname: Option<&str>) -> Result<(PathBuf, Vec<std::ffi::OsString>)> {
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
                "hostname \"$1\" && shift && exec \"$@\"".into(),
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
    let (program, prefix) = agent_program(hostname)?;
    let mut command = Command::new(program);
    command.args(prefix);
    command.arg("run").arg("--state-dir").arg(state_dir).env(
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
        let before: Vec<String> = api
            .devices(tenant)
            .await?
            .iter()
            .filter_map(device_id)
            .collect();
        let token = api.issue_token(tenant).await?;
        let state_dir = tempfile::Builder::new()
            .prefix("bulwark-agent-")
            .tempdir()?;
        enroll_agent_as(hostname, gateway_url, &token, state_dir.path())
            .await?
            .ok()?;
        let proc = spawn_agent_as(hostname, state_dir.path())?;
        let device_id = wait_for(
            Duration::from_secs(20),
            "the new agent's device to be online",
            async || {
                let devices = api.devices(tenant).await?;
                Ok(devices
                    .iter()
                    .find(|d| {
                        device_id(d).is_some_and(|id| !before.contains(&id))
                            && d["online"] == json!(true)
                    })
                    .and_then(device_id))
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

fn device_id(device: &Value) -> Option<String> {
    match &device["id"] {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `condition` every 200 ms until it is true; fails after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `probe` every 200 ms until it returns `Some`; errors count as "not
/// yet". After `timeout`, fails naming `what` and the last error seen.
pub async fn wait_for<T, F>(timeout: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: AsyncFnMut() -> Result<Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(error) => {
                    error.context(format!("timed out after {timeout:?} waiting for {what}"))
                }
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------
// TOTP and owners
// ---------------------------------------------------------------------------

/// The first owner account, with what a person keeps: password and TOTP secret.
#[derive(Clone)]
pub struct Owner {
    pub username: String,
    pub password: String,
    /// RFC 4648 base32, as shown at enrolment.
    pub totp_secret: String,
    /// The last TOTP time step used for this account: the server accepts each
    /// step once, so every login must use a later one.
    last_step: Arc<Mutex<u64>>,
}

impl Owner {
    pub fn new(username: &str, password: &str, totp_secret: &str) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            totp_secret: totp_secret.to_owned(),
            last_step: Arc::new(Mutex::new(0)),
        }
    }

    /// A code the server accepts and this account has not used yet.
    ///
    /// The server accepts the previous, current and next 30 s step, each once
    /// per account. So the first code uses the previous step and later ones
    /// move forward a step at a time: three logins in a row need no waiting,
    /// and only a fourth within the same 30 s sleeps until a new step starts.
    /// Near the end of a step the previous one is skipped, since it may have
    /// fallen out of the window by the time the server checks it.
    pub async fn next_otp(&self) -> Result<String> {
        loop {
            let now = unix_now();
            let now_step = now / TOTP_STEP_SECS;
            let oldest_safe = if now % TOTP_STEP_SECS >= TOTP_STEP_SECS - 5 {
                now_step
            } else {
                now_step - 1
            };
            let step = {
                let mut last = self
                    .last_step
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let candidate = (*last + 1).max(oldest_safe);
                if candidate <= now_step + 1 {
                    *last = candidate;
                    Some(candidate)
                } else {
                    None
                }
            };
            match step {
                Some(step) => return totp_code(&self.totp_secret, step * TOTP_STEP_SECS),
                None => {
                    let wait = TOTP_STEP_SECS - now % TOTP_STEP_SECS;
                    eprintln!("[e2e] TOTP steps used up; waiting {wait} s for the next one");
                    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100))
                        .await;
                }
            }
        }
    }
}

/// The 6-digit SHA-1 TOTP code of a base32 secret at `unix_time`.
pub fn totp_code(base32_secret: &str, unix_time: u64) -> Result<String> {
    use totp_rs::{Algorithm, Secret, TOTP};
    let bytes = Secret::Encoded(base32_secret.trim().to_owned())
        .to_bytes()
        .map_err(|error| anyhow!("TOTP secret {base32_secret:?} is not base32: {error:?}"))?;
    let totp = TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        TOTP_STEP_SECS,
        bytes,
        None,
        "e2e".to_owned(),
    );
    Ok(totp.generate(unix_time))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// HTTP API
// ---------------------------------------------------------------------------

/// A reqwest client using rustls with the ring provider (the workspace builds
/// reqwest without a default crypto provider).
pub fn http_client() -> Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// The JSON API of one server, optionally with a bearer token.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

/// A response as the tests inspect it: status, headers and the body (JSON
/// when it parses, else a JSON string of the text, `null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the contract's error shape `{"error":{"code","message"}}` and
    /// returns the code.
    pub fn error_code(&self) -> Result<String> {
        let code = self.body["error"]["code"].as_str();
        let message = self.body["error"]["message"].as_str();
        match (code, message) {
            (Some(code), Some(message)) if !code.is_empty() && !message.is_empty() => {
                Ok(code.to_owned())
            }
            _ => bail!(
                "expected the error shape {{\"error\":{{\"code\",\"message\"}}}} with HTTP {}, got: {}",
                self.status,
                self.body
            ),
        }
    }
}

impl Api {
    pub fn new(base_url: &str) -> Self {
        // A client that cannot be built is a broken test machine, not a test result.
        let http = http_client().expect("building the HTTP client");
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            token: None,
        }
    }

    /// The same server, authenticated with `token`.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the bearer token (if any) set.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and reads the whole reply, whatever its status.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply> {
        let response = request.send().await.context("sending the request")?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.context("reading the response body")?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// GET, expecting 200 and JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let reply = self.call(Method::GET, path, None).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "GET {path}: expected 200, got {} {}",
            reply.status,
            reply.body
        );
        Ok(reply.body)
    }

    /// POST JSON, expecting a 2xx status.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let reply = self.call(Method::POST, path, Some(body)).await?;
        ensure!(
            reply.status.is_success(),
            "POST {path}: expected 2xx, got {} {}",
            reply.status,
            reply.body
        );
        Ok(reply.body)
    }

    /// Redeems the setup code and enrols TOTP: the first owner account.
    pub async fn create_owner(&self, setup_code: &str) -> Result<Owner> {
        let path = "/api/v1/setup";
        let body =
            json!({ "code": setup_code, "username": OWNER_USERNAME, "password": OWNER_PASSWORD });
        let reply = self.call(Method::POST, path, Some(&body)).await?;
        ensure!(
            reply.status == StatusCode::CREATED,
            "POST {path}: expected 201, got {} {}",
            reply.status,
            reply.body
        );
        let enrolment_id = reply.body["enrolment_id"].clone();
        ensure!(
            !enrolment_id.is_null(),
            "POST {path}: no enrolment_id in {}",
            reply.body
        );
        let secret = reply.body["totp_secret"]
            .as_str()
            .with_context(|| format!("POST {path}: no totp_secret in {}", reply.body))?;
        let owner = Owner::new(OWNER_USERNAME, OWNER_PASSWORD, secret);

        let path = "/api/v1/setup/confirm";
        let body = json!({ "enrolment_id": enrolment_id, "otp": owner.next_otp().await? });
        let reply = self.call(Method::POST, path, Some(&body)).await?;
        ensure!(
            reply.status == StatusCode::CREATED,
            "POST {path}: expected 201, got {} {}",
            reply.status,
            reply.body
        );
        ensure!(
            reply.body["username"] == json!(OWNER_USERNAME),
            "POST {path}: expected username {OWNER_USERNAME:?}, got {}",
            reply.body
        );
        Ok(owner)
    }

    /// Logs in with password and a fresh TOTP code; returns the bearer token.
    pub async fn login(&self, owner: &Owner) -> Result<String> {
        let path = "/api/v1/auth/login";
        let body = json!({ "username": owner.username, "password": owner.password, "otp": owner.next_otp().await? });
        let reply = self.call(Method::POST, path, Some(&body)).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "POST {path}: expected 200, got {} {}",
            reply.status,
            reply.body
        );
        reply.body["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("POST {path}: no token in {}", reply.body))
    }

    /// Setup code → owner → login: an authenticated client for a fresh server.
    pub async fn bootstrap(up: &UpProcess) -> Result<(Owner, Api)> {
        let api = up.api();
        let owner = api.create_owner(&up.setup_code().await?).await?;
        let token = api.login(&owner).await?;
        Ok((owner, api.with_token(&token)))
    }

    pub async fn tenants(&self) -> Result<Vec<Value>> {
        as_array(self.get_json("/api/v1/tenants").await?)
    }

    pub async fn devices(&self, tenant: &str) -> Result<Vec<Value>> {
        as_array(
            self.get_json(&format!("/api/v1/tenants/{tenant}/devices"))
                .await?,
        )
    }

    pub async fn device(&self, id: &str) -> Result<Value> {
        self.get_json(&format!("/api/v1/devices/{id}")).await
    }

    /// A new enrolment token for `tenant` (the whole reply).
    pub async fn issue_token_reply(&self, tenant: &str) -> Result<Value> {
        self.post_json(
            &format!("/api/v1/tenants/{tenant}/enrollment-tokens"),
            &json!({}),
        )
        .await
    }

    pub async fn issue_token(&self, tenant: &str) -> Result<String> {
        let reply = self.issue_token_reply(tenant).await?;
        reply["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no token in {reply}"))
    }

    /// Waits until `tenant` has exactly one device and it is online; returns it.
    pub async fn wait_single_device_online(
        &self,
        tenant: &str,
        timeout: Duration,
    ) -> Result<Value> {
        wait_for(
            timeout,
            &format!("the one device of tenant {tenant} to be online"),
            async || {
                let devices = self.devices(tenant).await?;
                ensure!(
                    devices.len() <= 1,
                    "expected at most one device in {tenant}, got {devices:?}"
                );
                Ok(devices.into_iter().find(|d| d["online"] == json!(true)))
            },
        )
        .await
    }

    /// Waits until device `id` reports `online == want`.
    pub async fn wait_device_online(
        &self,
        id: &str,
        want: bool,
        timeout: Duration,
    ) -> Result<Value> {
        let what = format!(
            "device {id} to be {}",
            if want { "online" } else { "offline" }
        );
        wait_for(timeout, &what, async || {
            let device = self.device(id).await?;
            Ok((device["online"] == json!(want)).then_some(device))
        })
        .await
    }
}

fn as_array(value: Value) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => bail!("expected a JSON array, got {other}"),
    }
}

/// The `id` of a device (or any object) as a string.
pub fn id_of(value: &Value) -> Result<String> {
    device_id(value).with_context(|| format!("no id in {value}"))
}

/// Starts `chromedriver` on a free loopback port and waits until it is
/// ready: (process, base URL). chromedriver also binds the same port on
/// IPv6 and exits when another process holds it there, so a port that
/// loses that race is retried with a fresh one.
pub async fn start_chromedriver(binary: &str) -> Result<(Proc, String)> {
    let http = http_client()?;
    let mut last = anyhow!("chromedriver did not start");
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut driver = Proc::spawn(
            "chromedriver",
            Command::new(binary).args([&format!("--port={port}"), "--allowed-ips=127.0.0.1"]),
        )?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = driver.try_wait()? {
                last = anyhow!("chromedriver on port {port} exited ({status})");
                break;
            }
            let ready = async {
                let status: Value = http
                    .get(format!("{url}/status"))
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::Ok(status["value"]["ready"] == json!(true))
            };
            if matches!(ready.await, Ok(true)) {
                return Ok((driver, url));
            }
            if Instant::now() > deadline {
                last = anyhow!("timed out after 20s waiting for chromedriver to be ready");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Err(last)
}

// ---------------------------------------------------------------------------
// `bulwark server` (HTTPS, TOML configuration)
// ---------------------------------------------------------------------------

impl Api {
    /// Like [`Api::new`], for a server whose certificate chains to the PEM
    /// CA certificate `ca_pem` (a `bulwark server`'s `DATA_DIR/tls/ca.pem`).
    pub fn with_ca(base_url: &str, ca_pem: &str) -> Result<Self> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("the CA file is not PEM")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            token: None,
        })
    }
}

/// A running `bulwark server --config FILE`.
pub struct ServerProcess {
    proc: Proc,
    config: PathBuf,
    data_dir: PathBuf,
    pub info: ServerInfo,
}

impl ServerProcess {
    /// Starts `bulwark server --config config` and waits (up to
    /// [`START_TIMEOUT`]) for `data_dir/server.json`.
    pub async fn start(config: &Path, data_dir: &Path) -> Result<Self> {
        let mut command = Command::new(bulwark_bin()?);
        command.arg("server").arg("--config").arg(config).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        );
        let server_json = data_dir.join("server.json");
        let mut proc = Proc::spawn("bulwark server", &mut command)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let info = loop {
            if let Some(status) = proc.try_wait()? {
                bail!(
                    "bulwark server exited ({status}) before writing server.json\nstderr:\n{}",
                    proc.stderr.text()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&server_json)
                && let Ok(info) = ServerInfo::parse(&text)
                && info.pid == u64::from(proc.pid())
            {
                break info;
            }
            if Instant::now() >= deadline {
                bail!(
                    "bulwark server did not write {} within {START_TIMEOUT:?}\nstderr:\n{}",
                    server_json.display(),
                    proc.stderr.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Ok(Self {
            proc,
            config: config.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            info,
        })
    }

    /// An API client trusting the server's CA.
    pub fn api(&self) -> Result<Api> {
        let ca = std::fs::read_to_string(self.data_dir.join("tls").join("ca.pem"))?;
        Api::with_ca(&self.info.console_url, &ca)
    }

    /// The one-time setup code printed on stdout (waits up to 10 s).
    pub async fn setup_code(&self) -> Result<String> {
        let lines = self.proc.stdout.clone();
        wait_for(
            Duration::from_secs(10),
            "`Setup code:` on stdout of bulwark server",
            async || Ok(lines.value_after("Setup code:")),
        )
        .await
    }

    /// SIGTERM; expects a clean exit (code 0).
    pub async fn stop(&mut self) -> Result<()> {
        let status = self.proc.stop_with("TERM").await?;
        ensure!(
            status.success(),
            "bulwark server exited with {status} after SIGTERM\nstderr:\n{}",
            self.proc.stderr.text()
        );
        Ok(())
    }

    /// Stops and starts again with the same configuration.
    pub async fn restart(mut self) -> Result<Self> {
        self.stop().await?;
        Self::start(&self.config.clone(), &self.data_dir.clone()).await
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc6238_sha1_vectors() {
        // RFC 6238 appendix B: the SHA-1 seed is "12345678901234567890"; the
        // RFC prints 8 digits, the last 6 are the 6-digit code.
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert_eq!(totp_code(secret, 59).ok().as_deref(), Some("287082"));
        assert_eq!(
            totp_code(secret, 1_111_111_109).ok().as_deref(),
            Some("081804")
        );
        assert_eq!(
            totp_code(secret, 20_000_000_000).ok().as_deref(),
            Some("353130")
        );
    }

    #[test]
    fn reads_printed_values() {
        let lines = Lines::default();
        lines.push("Console:    http://localhost:1234/".into());
        lines.push(
            "Setup code: ABCD-EFGH-JKLM-NPQR  (one-time; create the first owner at /setup)".into(),
        );
        assert_eq!(
            lines.value_after("Console:").as_deref(),
            Some("http://localhost:1234/")
        );
        assert_eq!(
            lines.value_after("Setup code:").as_deref(),
            Some("ABCD-EFGH-JKLM-NPQR")
        );
        assert_eq!(lines.value_after("Nope:"), None);
    }

    #[test]
    fn parses_server_json() {
        let info = ServerInfo::parse(
            r#"{"console_url":"http://localhost:1/","gateway_url":"https://127.0.0.1:2","pid":3}"#,
        );
        assert!(info.is_ok_and(|info| info.pid == 3 && info.gateway_url == "https://127.0.0.1:2"));
        assert!(ServerInfo::parse(r#"{"console_url":"http://localhost:1/""#).is_err());
    }
}
