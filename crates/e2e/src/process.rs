//! Child processes: each in its own process group, its output collected
//! line by line, killed (group and all) when dropped; one-shot commands; the
//! browser driver.

use crate::*;

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

    pub(crate) fn push(&self, line: String) {
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
    pub(crate) child: Child,
    pub(crate) label: String,
    pub stdout: Lines,
    pub stderr: Lines,
    pub(crate) exited: Option<ExitStatus>,
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

pub(crate) fn send_signal(signal: &str, target: &str) -> Result<()> {
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
