//! `bulwark up` and `bulwark server` as the tests run them: options, the
//! `server.json` they write, crash and restart.

use crate::*;

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
    /// Days the clock of `bulwark up` (and of its local agent) is set from
    /// this machine's, by libfaketime: negative in the past, 0 (the
    /// default) the real clock. See [`UpOptions::clock_offset_days`].
    pub clock_offset_days: i64,
    /// `--no-agent`: the server alone (a second node, say).
    pub no_agent: bool,
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

    /// Starts the server without its local agent (`--no-agent`).
    pub fn no_agent(mut self) -> Self {
        self.no_agent = true;
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

    /// Runs `bulwark up` (and so its local agent) with its clock `days` from
    /// this machine's (in the past if negative; 0: the real clock), as
    /// `faketime -f "<days>d"` would: libfaketime preloaded with `FAKETIME`,
    /// the monotonic clock untouched (`FAKETIME_DONT_FAKE_MONOTONIC`, so
    /// tokio's timers run normally) and file times not faked. Everything the
    /// server signs and stores then carries that time: no clock override in
    /// the server. The library is preloaded directly rather than through the
    /// `faketime` wrapper, which runs the program in a child it forks and
    /// passes no signal on: `bulwark up` would then be neither the process
    /// the harness started and stops nor the pid `server.json` must name.
    /// Needs the Debian package `faketime`. API clients from
    /// [`UpProcess::api`] and [`operator_login`](crate::operator_login) make
    /// their TOTP codes for the server's clock.
    pub fn clock_offset_days(mut self, days: i64) -> Self {
        self.clock_offset_days = days;
        self
    }

    /// [`UpOptions::clock_offset_days`] in seconds.
    pub fn clock_offset_secs(&self) -> i64 {
        self.clock_offset_days.saturating_mul(86_400)
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
            .env("BULWARK_AGENT_APT_CONFIG", stub_apt_config()?)
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
        if self.no_agent {
            command.arg("--no-agent");
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if self.clock_offset_days != 0 {
            command
                .env("LD_PRELOAD", libfaketime()?)
                .env("FAKETIME", format!("{:+}d", self.clock_offset_days))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("NO_FAKE_STAT", "1");
        }
        Ok(command)
    }
}

/// The library `faketime` preloads (Debian package `libfaketime`, a
/// dependency of `faketime`): `/usr/lib/<multiarch triplet>/faketime/`, or
/// `/usr/local/lib/faketime/` when built from source.
pub fn libfaketime() -> Result<PathBuf> {
    const NAME: &str = "faketime/libfaketime.so.1";
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join(NAME))
        .collect();
    candidates.sort();
    candidates.extend(["/usr/lib", "/usr/local/lib"].map(|dir| Path::new(dir).join(NAME)));
    candidates.into_iter().find(|path| path.is_file()).context(
        "a test that sets the server's clock needs libfaketime: install the Debian package \
             `faketime` (`apt-get install faketime`, or run `cargo xtask test`, which does it)",
    )
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
    pub(crate) fn parse(text: &str) -> Result<Self> {
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
    pub(crate) proc: Proc,
    pub(crate) data_dir: Arc<TempDir>,
    pub info: ServerInfo,
    pub(crate) options: UpOptions,
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

    /// An API client; its TOTP codes follow the server's clock
    /// ([`UpOptions::clock_offset_days`]).
    pub fn api(&self) -> Api {
        Api::new(&self.base_url()).with_clock_offset_secs(self.options.clock_offset_secs())
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

/// A running `bulwark server --config FILE`.
pub struct ServerProcess {
    pub(crate) proc: Proc,
    pub(crate) config: PathBuf,
    pub(crate) data_dir: PathBuf,
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
