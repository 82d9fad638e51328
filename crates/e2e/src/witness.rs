//! A real `bulwark witness` for the tests of witnessed logs (RFD 0006), and
//! the policy edit that makes a tenant's root-signed policy name witnesses.
//!
//! Several tests run a witness the way an MSP would (`init`, `add-log`,
//! `serve`) and sign a policy with a `[witnesses]` section; they share this
//! one copy so that the way a witness is started and a policy edited is the
//! same everywhere.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bulwark_translog::cosignature::CosignatureVerifier;

use crate::{OperatorSetup, Proc, TempDir, bulwark_bin, http_client, wait_for};

/// What `bulwark witness serve` prints once it listens, before its URL.
const LISTENING: &str = "Witness listening on ";
/// How long a witness may take to listen (or, on a fixed port, to get it).
const WITNESS_START: Duration = Duration::from_secs(20);

/// A port nothing listens on right now (bound by the OS, then released).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `bulwark witness ARGS --dir DIR`, which must succeed: its stdout.
pub fn witness_command(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(bulwark_bin()?)
        .arg("witness")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "bulwark witness {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// A `bulwark witness` with its own directory, run as a separate process:
/// by default on a loopback port the OS picks when it starts, or on one
/// fixed up front ([`WitnessProcess::with_fixed_port`]) so that it comes back
/// at the address a policy names.
pub struct WitnessProcess {
    dir: TempDir,
    verifier: CosignatureVerifier,
    /// 0: the OS picks one at each start.
    port: u16,
    freeze_grace_secs: Option<u64>,
    url: String,
    process: Option<Proc>,
}

impl WitnessProcess {
    /// `bulwark witness init --name NAME`: its key, and its vkey from what
    /// init prints (checked to carry the name).
    pub fn init(name: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let out = witness_command(dir.path(), &["init", "--name", name])?;
        let vkey = out.lines().last().context("init prints the vkey")?.trim();
        let verifier = CosignatureVerifier::from_vkey(vkey)
            .with_context(|| format!("init printed {out:?}"))?;
        ensure!(
            verifier.name() == name,
            "the vkey names {}",
            verifier.name()
        );
        Ok(Self {
            dir,
            verifier,
            port: 0,
            freeze_grace_secs: None,
            url: String::new(),
            process: None,
        })
    }

    /// Listens on a free port chosen now, the same at every start: its URL
    /// is known before it first runs and stays valid across a restart.
    pub fn with_fixed_port(mut self) -> Result<Self> {
        self.port = free_port()?;
        self.url = format!("http://127.0.0.1:{}", self.port);
        Ok(self)
    }

    /// Serves with `--freeze-grace-secs SECS`: a short grace keeps freeze
    /// tests to seconds.
    #[must_use]
    pub fn with_freeze_grace(mut self, secs: u64) -> Self {
        self.freeze_grace_secs = Some(secs);
        self
    }

    /// Its cosignature verifier (name and key).
    pub fn verifier(&self) -> &CosignatureVerifier {
        &self.verifier
    }

    /// Its vkey, as a policy's `[[witnesses.list]]` names it.
    pub fn vkey(&self) -> String {
        self.verifier.to_vkey()
    }

    /// Where it listens (`http://127.0.0.1:PORT`); empty before the first
    /// start unless the port is fixed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `bulwark witness add-log`: follow the log of `origin`, signed by
    /// `log_vkey`, with the tenant's first root pinned if given (so that it
    /// takes the tenant's freeze). Returns what it prints.
    pub fn add_log(
        &self,
        origin: &str,
        log_vkey: &str,
        root_fingerprint: Option<&str>,
    ) -> Result<String> {
        let mut args = vec!["add-log", "--origin", origin, "--vkey", log_vkey];
        if let Some(fingerprint) = root_fingerprint {
            args.extend(["--root-fingerprint", fingerprint]);
        }
        witness_command(self.dir.path(), &args)
    }

    /// `bulwark witness serve`, waited for until it listens. On a fixed
    /// port, a port another process took in the meantime fails (a policy
    /// names this address); one still being released is retried for a
    /// moment.
    pub async fn start(&mut self) -> Result<()> {
        ensure!(self.process.is_none(), "the witness already runs");
        let listen = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + WITNESS_START;
        loop {
            let mut command = Command::new(bulwark_bin()?);
            command.args(["witness", "serve", "--listen", &listen]);
            if let Some(grace) = self.freeze_grace_secs {
                command.args(["--freeze-grace-secs", &grace.to_string()]);
            }
            command.arg("--dir").arg(self.dir.path());
            let mut process = Proc::spawn("witness", &mut command)?;
            let listening = wait_for(WITNESS_START, "the witness to listen or exit", async || {
                if let Some(url) = process.stdout.value_after(LISTENING) {
                    return Ok(Some(Some(url)));
                }
                Ok(process.try_wait()?.map(|_| None))
            })
            .await?;
            if let Some(url) = listening {
                ensure!(
                    self.port == 0 || url == self.url,
                    "the witness listens on {url}, not {}",
                    self.url
                );
                self.url = url;
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the witness cannot listen on {listen}: {}",
                    process.stderr.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// SIGTERM, waited for: the address answers nothing afterwards.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut process) = self.process.take() {
            process.terminate().await?;
        }
        Ok(())
    }

    /// Stopped and started again on the same directory: what it holds must
    /// survive.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.start().await
    }
}

/// A witness's answer to a POST: status, `Content-Type` and body.
pub struct WitnessAnswer {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

/// `POST URL PATH` with `body`, as a log or a customer talks to a witness.
pub async fn witness_post(url: &str, path: &str, body: String) -> Result<WitnessAnswer> {
    let reply = http_client()?
        .post(format!("{url}{path}"))
        .body(body)
        .send()
        .await?;
    let status = reply.status().as_u16();
    let content_type = reply
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(WitnessAnswer {
        status,
        content_type,
        text: reply.text().await?,
    })
}

/// `POST URL/add-checkpoint` (C2SP tlog-witness) with `body`.
pub async fn add_checkpoint(url: &str, body: String) -> Result<WitnessAnswer> {
    witness_post(url, "/add-checkpoint", body).await
}

/// The policy TOML without the sections named in `replaced` (and their
/// subtables, such as `[[witnesses.list]]`), with `sections` instead.
pub fn replace_policy_sections(toml: &str, replaced: &[&str], sections: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in toml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let header = trimmed.trim_start_matches('[').trim_end_matches(']').trim();
            skipping = replaced.iter().any(|name| {
                header == *name
                    || header
                        .strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('.'))
            });
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    out.push_str(sections);
    out
}

/// A `[witnesses]` section needing `required` of `witnesses`, each named by
/// its vkey and URL.
pub fn witnesses_section(
    required: u32,
    freshness_secs: u64,
    witnesses: &[&WitnessProcess],
) -> String {
    let mut section =
        format!("[witnesses]\nrequired = {required}\nfreshness_secs = {freshness_secs}\n");
    for w in witnesses {
        section.push_str(&format!(
            "\n[[witnesses.list]]\nvkey = \"{}\"\nurl = \"{}\"\n",
            w.vkey(),
            w.url()
        ));
    }
    section
}

impl OperatorSetup {
    /// Signs the next policy version of `demo` as a customer edits it:
    /// `policy show --toml`, the sections named in `replaced` swapped for
    /// `sections` in `WORK/FILE`, `policy sign`. Returns the policy the
    /// server then shows, for the caller to check.
    pub async fn sign_policy_sections(
        &self,
        replaced: &[&str],
        sections: &str,
        file: &str,
    ) -> Result<String> {
        let toml = self
            .cli(&["policy", "show", "--tenant", "demo", "--toml"], None)
            .await?
            .ok()?
            .stdout;
        let path = self.work.path().join(file);
        std::fs::write(&path, replace_policy_sections(&toml, replaced, sections))?;
        let path = path.display().to_string();
        self.cli(
            &["policy", "sign", "--tenant", "demo", "--file", &path],
            None,
        )
        .await?
        .ok()?;
        Ok(self
            .cli(&["policy", "show", "--tenant", "demo", "--toml"], None)
            .await?
            .ok()?
            .stdout)
    }
}
