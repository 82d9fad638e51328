//! The operator CLI on this machine against a `bulwark up`, and the
//! server's SQLite database rewritten behind its back: what the signed-job,
//! root-rotation and trust-proposal tests share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bulwark_api::jobs::{JobTargetView, JobView};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    Api, ExtraAgent, Finished, Owner, UpOptions, UpProcess, bulwark_bin, decode_json, run_command,
    wait_for,
};

/// How long the operator tests wait for an agent or a job.
pub const OPERATOR_WAIT: Duration = Duration::from_secs(30);

/// `bulwark ARGS` with configuration directory `config` and key passphrase
/// `passphrase` (no colour, no `BULWARK_SERVER` from the environment).
pub async fn operator_cli(
    config: &Path,
    passphrase: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Finished> {
    let mut command = tokio::process::Command::new(bulwark_bin()?);
    command
        .args(args)
        .env("BULWARK_CONFIG_DIR", config)
        .env("BULWARK_KEY_PASSPHRASE", passphrase)
        .env("NO_COLOR", "1")
        .env_remove("BULWARK_SERVER");
    run_command(command, stdin, Duration::from_secs(120)).await
}

/// `bulwark login` of `who` into `up` (password on stdin, a fresh TOTP code),
/// storing the session in `config`.
pub async fn operator_login(
    up: &UpProcess,
    config: &Path,
    passphrase: &str,
    who: &Owner,
) -> Result<()> {
    let otp = who
        .next_otp_skewed(up.options().clock_offset_secs())
        .await?;
    let password = format!("{}\n", who.password);
    operator_cli(
        config,
        passphrase,
        &[
            "login",
            "--server",
            &up.info.console_url,
            "--username",
            &who.username,
            "--password-stdin",
            "--otp",
            &otp,
        ],
        Some(&password),
    )
    .await?
    .ok()?;
    Ok(())
}

/// Runs SQL on `up`'s database with the `sqlite3` tool (foreign keys not
/// enforced: an attacker with the file is not bound by them).
pub fn sqlite(up: &UpProcess, sql: &str) -> Result<String> {
    let db = up.data_dir().join("bulwark.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .args(["-cmd", ".timeout 10000"])
        .arg(sql)
        .output()
        .context("running sqlite3")?;
    ensure!(
        out.status.success(),
        "sqlite3 {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("[sqlite3] {}", sql.chars().take(200).collect::<String>());
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `text` as an SQL string literal.
pub fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Bytes from upper- or lower-case hex (as `sqlite3`'s `hex()` prints them).
pub fn decode_hex(text: &str) -> Result<Vec<u8>> {
    ensure!(text.len().is_multiple_of(2), "odd hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("hex"))
        .collect()
}

/// A script in `dir` that touches `NAME.marker` there and prints `hello from
/// NAME`; returns (script, marker).
pub fn marker_script(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let marker = dir.join(format!("{name}.marker"));
    let script = dir.join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\necho 'hello from {name}'\n",
            marker.display()
        ),
    )?;
    Ok((script, marker))
}

/// `device`'s target in a job view.
pub fn target_of(view: &JobView, device: &str) -> Result<JobTargetView> {
    view.targets
        .iter()
        .find(|t| t.device_id == device)
        .cloned()
        .with_context(|| format!("no target {device} in {view:?}"))
}

/// A target's state is final: the agent answered (or the job timed out).
pub fn is_final(target: &JobTargetView) -> bool {
    matches!(
        target.state.as_str(),
        "succeeded" | "failed" | "timed_out" | "refused"
    )
}

/// Waits until `device`'s target of job `id` is in a final state; returns it.
pub async fn wait_job_final(api: &Api, id: &str, device: &str) -> Result<JobTargetView> {
    wait_for(
        OPERATOR_WAIT,
        &format!("job {id} to finish on {device}"),
        async || {
            let target = target_of(&api.job(id).await?, device)?;
            Ok(is_final(&target).then_some(target))
        },
    )
    .await
}

impl ExtraAgent {
    /// Stops the agent's process (its state directory stays).
    pub async fn stop(&mut self) -> Result<()> {
        self.proc.terminate().await?;
        Ok(())
    }

    /// Runs the agent again from its state directory.
    pub fn resume(&mut self) -> Result<()> {
        self.proc = crate::spawn_agent_as(self.hostname.as_deref(), self.state_dir.path())?;
        Ok(())
    }
}

/// One `bulwark up`, its owner logged in with the CLI (one registered key,
/// `operator`), and a scratch directory.
pub struct OperatorSetup {
    pub up: UpProcess,
    pub owner: Owner,
    pub api: Api,
    pub config: PathBuf,
    _config_tmp: tempfile::TempDir,
    pub work: tempfile::TempDir,
    /// The device of the local agent of `up` (tenant `demo`).
    pub local: String,
    passphrase: &'static str,
}

impl OperatorSetup {
    /// Starts `bulwark up` with the CLI's configuration directory and key
    /// passphrase in its environment, then logs the owner in with the CLI.
    pub async fn start(passphrase: &'static str) -> Result<Self> {
        Self::start_with(passphrase, UpOptions::default()).await
    }

    /// [`OperatorSetup::start`] with `bulwark up` started with `options`.
    pub async fn start_with(passphrase: &'static str, options: UpOptions) -> Result<Self> {
        let config_tmp = tempfile::tempdir()?;
        let config = config_tmp.path().join("bulwark");
        std::fs::create_dir_all(&config)?;
        let up = UpProcess::start(
            options
                .env("BULWARK_CONFIG_DIR", config.display().to_string())
                .env("BULWARK_KEY_PASSPHRASE", passphrase),
        )
        .await?;
        let (owner, api) = Api::bootstrap(&up).await?;
        let local = api
            .wait_single_device_online("demo", OPERATOR_WAIT)
            .await?
            .id;
        let setup = Self {
            up,
            owner,
            api,
            config,
            _config_tmp: config_tmp,
            work: tempfile::tempdir()?,
            local,
            passphrase,
        };
        operator_login(&setup.up, &setup.config, passphrase, &setup.owner).await?;
        setup
            .cli(&["keys", "register", "--name", "operator"], None)
            .await?
            .ok()?;
        Ok(setup)
    }

    /// `bulwark ARGS` with this setup's configuration directory and passphrase.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<Finished> {
        self.cli_in(&self.config, args, stdin).await
    }

    /// `bulwark ARGS` with another configuration directory and this setup's passphrase.
    pub async fn cli_in(
        &self,
        config: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Finished> {
        operator_cli(config, self.passphrase, args, stdin).await
    }

    /// `bulwark ARGS` that must succeed and print JSON.
    pub async fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let out = self.cli(args, None).await?.ok()?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("`bulwark {}` did not print JSON", args.join(" ")))
    }

    /// `bulwark ARGS` that must succeed and print the API type `T` as JSON
    /// (the `--json` of a command that prints a server reply).
    pub async fn cli_as<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let out = self.cli(args, None).await?.ok()?;
        decode_json(&out.stdout)
            .with_context(|| format!("`bulwark {}` did not print its reply", args.join(" ")))
    }

    /// The `check.failed` alerts of tenant `demo` raised by check `check` on
    /// `device`, in every state, as `bulwark alert list` shows them.
    pub async fn check_alerts(
        &self,
        device: &str,
        check: &str,
    ) -> Result<Vec<bulwark_api::alerts::AlertView>> {
        let alerts: Vec<bulwark_api::alerts::AlertView> = self
            .cli_as(&[
                "alert", "list", "--tenant", "demo", "--state", "all", "--json",
            ])
            .await?;
        Ok(alerts
            .into_iter()
            .filter(|a| {
                a.kind == "check.failed"
                    && a.device_id.as_deref() == Some(device)
                    && a.summary.contains(&format!("Check {check} "))
            })
            .collect())
    }

    /// Runs SQL on the server's database (see [`sqlite`]).
    pub fn sql(&self, sql: &str) -> Result<String> {
        sqlite(&self.up, sql)
    }

    /// A script in the scratch directory (see [`marker_script`]).
    pub fn script(&self, name: &str) -> Result<(PathBuf, PathBuf)> {
        marker_script(self.work.path(), name)
    }

    /// `bulwark job run` in `demo` of script `name` on `device`, with `extra`
    /// args; returns the JSON printed and the marker path.
    pub async fn job(
        &self,
        device: &str,
        name: &str,
        extra: &[&str],
    ) -> Result<(Finished, PathBuf)> {
        let (script, marker) = self.script(name)?;
        Ok((self.run_script(device, &script, extra).await?, marker))
    }

    /// `bulwark job run --json` in `demo` of the script file `script` on
    /// `device`, with `extra` args.
    pub async fn run_script(
        &self,
        device: &str,
        script: &Path,
        extra: &[&str],
    ) -> Result<Finished> {
        let script = script.display().to_string();
        let mut args = vec![
            "job",
            "run",
            "--tenant",
            "demo",
            "--targets",
            device,
            "--script",
            &script,
            "--reason",
            "e2e",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.cli(&args, None).await
    }

    /// A job submitted without waiting (`--no-wait`); returns its id and marker.
    pub async fn submit(
        &self,
        device: &str,
        name: &str,
        extra: &[&str],
    ) -> Result<(String, PathBuf)> {
        let mut args = vec!["--no-wait"];
        args.extend_from_slice(extra);
        let (out, marker) = self.job(device, name, &args).await?;
        let out = out.ok()?;
        let view: JobView = decode_json(&out.stdout).context("job run --json")?;
        Ok((view.id, marker))
    }

    /// A correct job that must run on `device`, waited for.
    pub async fn good_job_runs(&self, device: &str, name: &str) -> Result<JobView> {
        let (out, marker) = self.job(device, name, &[]).await?;
        let out = out.ok()?;
        let view: JobView = decode_json(&out.stdout).context("job run --json")?;
        let target = target_of(&view, device)?;
        ensure!(
            target.state == "succeeded" && target.exit_code == Some(0),
            "job {name} did not succeed on {device}: {view:?}"
        );
        ensure!(
            target
                .stdout
                .as_deref()
                .is_some_and(|s| s.contains(&format!("hello from {name}"))),
            "no output in {view:?}"
        );
        ensure!(marker.exists(), "{} was not created", marker.display());
        Ok(view)
    }

    pub async fn job_view(&self, id: &str) -> Result<JobView> {
        self.api.job(id).await
    }

    /// Waits until `device`'s target of job `id` is in a final state; returns it.
    pub async fn wait_final(&self, id: &str, device: &str) -> Result<JobTargetView> {
        wait_job_final(&self.api, id, device).await
    }

    /// run-script needs two signers from the next policy version on (policy
    /// show --toml, edit, policy sign: passkey keys round-trip through the TOML).
    pub async fn require_two_signers(&self) -> Result<()> {
        let toml = self
            .cli(&["policy", "show", "--tenant", "demo", "--toml"], None)
            .await?
            .ok()?
            .stdout;
        let toml = needs_two(&toml)?;
        let file = self.work.path().join("policy.toml");
        std::fs::write(&file, &toml)?;
        let file = file.display().to_string();
        self.cli(
            &["policy", "sign", "--tenant", "demo", "--file", &file],
            None,
        )
        .await?
        .ok()?;
        Ok(())
    }

    /// Waits for the refusal of job `id` by `device` with `code`; checks the
    /// script did not run.
    pub async fn expect_refused(
        &self,
        id: &str,
        device: &str,
        code: &str,
        marker: &Path,
    ) -> Result<()> {
        let target = self.wait_final(id, device).await?;
        ensure!(
            target.state == "refused" && target.refusal_code.as_deref() == Some(code),
            "expected job {id} refused with {code} on {device}, got {target:?}"
        );
        ensure!(
            !marker.exists(),
            "the refused job ran: {} exists",
            marker.display()
        );
        Ok(())
    }

    /// An extra agent in `demo` that the test stops and starts.
    pub async fn victim(&self) -> Result<ExtraAgent> {
        ExtraAgent::start(&self.api, &self.up.info.gateway_url, "demo").await
    }
}

/// The policy TOML with `signers = 2` for run-script.
pub fn needs_two(toml: &str) -> Result<String> {
    let mut out = String::new();
    let mut in_run_script = false;
    let mut changed = false;
    for line in toml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_run_script = trimmed.contains("run-script") && !trimmed.contains("allow-listed");
        }
        if in_run_script && trimmed.starts_with("signers") {
            out.push_str("signers = 2\n");
            changed = true;
            continue;
        }
        // An inline table: `run-script = { signers = 1, … }`.
        if (trimmed.starts_with("run-script") || trimmed.starts_with("\"run-script\""))
            && trimmed.contains("signers = 1")
        {
            out.push_str(&line.replacen("signers = 1", "signers = 2", 1));
            out.push('\n');
            changed = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !changed {
        bail!("no run-script quorum in the policy TOML:\n{toml}");
    }
    Ok(out)
}

impl OperatorSetup {
    /// A console page as the owner sees it (a fresh console sign-in with
    /// password and TOTP, then the page with that session's cookie): what
    /// the console shows is checked as a person would see it.
    pub async fn console_page(&self, path: &str) -> Result<String> {
        let encode = |text: &str| -> String {
            text.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let body = format!(
            "username={}&password={}&otp={}",
            encode(&self.owner.username),
            encode(&self.owner.password),
            self.owner.next_otp().await?
        );
        let http = crate::http_client()?;
        let base = self.up.base_url();
        let login = http
            .post(format!("{base}/login"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let cookie = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        ensure!(
            !cookie.is_empty(),
            "the console login set no cookie ({})",
            login.status()
        );
        let page = http
            .get(format!("{base}{path}"))
            .header("Cookie", cookie)
            .send()
            .await?;
        ensure!(page.status().is_success(), "GET {path}: {}", page.status());
        Ok(page.text().await?)
    }
}
