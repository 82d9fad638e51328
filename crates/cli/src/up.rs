//! `bulwark up`: everything on one machine, for trying Bulwark out.
//!
//! The server keeps its data under `--data-dir`; the local agent is a real
//! `bulwark-agent` process with its own state directory (`DATA_DIR/agent`),
//! enrolled into tenant `demo` through the same token path as any endpoint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use bulwark_protocol::token::{EnrollToken, fingerprint_text};
use bulwark_store::{AuditAction, NewAuditEvent};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// Who the audit log names for what `bulwark up` sets up itself (the demo
/// tenant, its trust root and policy, the local agent's enrolment token).
const UP_ACTOR: &str = "bulwark up";

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the database, TLS material and the local agent's state live.
    #[arg(long, default_value = "./bulwark-data")]
    data_dir: PathBuf,
    /// Console and API address (plain HTTP: loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Agent gateway address (always TLS).
    #[arg(long, default_value = "127.0.0.1:8443")]
    gateway_listen: SocketAddr,
    /// Use PostgreSQL instead of the embedded SQLite database.
    #[arg(long, env = "BULWARK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The bus between nodes, `nats://host:4222`, for a node that shares
    /// its PostgreSQL database with others (RFD 0018); default: in process.
    #[arg(long, env = "BULWARK_BUS_URL", value_name = "URL")]
    bus: Option<String>,
    /// Agent heartbeat interval in seconds (an agent silent for three is offline).
    #[arg(long, default_value_t = 30)]
    heartbeat_secs: u32,
    /// Days the audit logs keep an entry in the database (minimum 180).
    #[arg(long, default_value_t = bulwark_server::config::DEFAULT_RETENTION_DAYS)]
    retention_days: u32,
    /// The `bulwark-agent` binary (default: next to this one, built on first use).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Start only the server, without the local agent.
    #[arg(long)]
    no_agent: bool,
    /// A device silent this many seconds raises an offline alert (never
    /// less than three heartbeats).
    #[arg(long, env = "BULWARK_OFFLINE_ALERT_SECS", default_value_t = 300)]
    offline_alert_secs: u32,
    /// The SMTP relay alert e-mail goes through (host:port; STARTTLS required).
    #[arg(long, env = "BULWARK_SMTP_RELAY", value_name = "HOST:PORT")]
    smtp_relay: Option<String>,
    /// The sender of alert e-mail.
    #[arg(long, env = "BULWARK_SMTP_FROM", default_value = "bulwark@localhost")]
    smtp_from: String,
    /// A PEM file of CA certificates to trust for the relay (a private CA).
    #[arg(long, env = "BULWARK_SMTP_CA_FILE", value_name = "FILE")]
    smtp_ca_file: Option<PathBuf>,
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut config = bulwark_server::ServerConfig::quickstart(
        args.data_dir.clone(),
        args.listen,
        args.gateway_listen,
    );
    config.database_url = args.database_url.clone();
    config.bus_url = args.bus.clone();
    config.heartbeat_secs = args.heartbeat_secs;
    config.retention_days = args.retention_days;
    config.offline_alert_secs = args.offline_alert_secs;
    config.smtp = args
        .smtp_relay
        .clone()
        .map(|relay| bulwark_server::config::SmtpRelay {
            relay,
            from: args.smtp_from.clone(),
            server_name: None,
            ca_file: args.smtp_ca_file.clone(),
            security: bulwark_server::config::SmtpSecurity::Starttls,
            username: None,
            password: None,
        });
    let server = bulwark_server::start(config).await?;
    let now = bulwark_server::now_millis();
    let demo = server.store.ensure_tenant("demo", UP_ACTOR, now).await?;
    let demo_root = match ensure_demo_trust(&server, &demo.id).await {
        Ok(pin) => pin,
        Err(error) => {
            eprintln!("warning: the demo tenant has no trust root: {error:#}");
            None
        }
    };

    println!();
    println!("Bulwark is running.");
    println!("Console:    {}", server.console_url);
    match &server.setup_code {
        Some(code) => {
            println!("Setup code: {code}");
            println!(
                "            (one-time, valid 24 h: open {}setup to create the owner account)",
                server.console_url
            );
        }
        None => println!("Sign in with your owner account (password and one-time code)."),
    }
    println!(
        "Agents:     {} (CA {})",
        server.gateway_url,
        fingerprint_text(&server.ca_fingerprint)
    );

    let mut agent = None;
    if args.no_agent {
    } else if let Some(root_fingerprint) = demo_root {
        match LocalAgent::start(&args, &server, &demo.id, root_fingerprint).await {
            Ok(a) => {
                println!(
                    "Local agent: device {} in tenant demo (log: {})",
                    a.device_id,
                    a.log.display()
                );
                agent = Some(a);
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "The local agent did not start; the server runs without it.");
                eprintln!("warning: the local agent did not start: {e:#}");
            }
        }
    } else {
        eprintln!(
            "warning: no local agent: an agent pins its tenant's trust root at enrolment, and demo has none yet"
        );
    }
    println!("Press Ctrl-C to stop.");

    match agent.as_mut() {
        Some(agent) => agent.supervise(wait_for_signal()).await,
        None => wait_for_signal().await,
    }
    println!("Stopping…");
    if let Some(agent) = agent {
        agent.stop().await;
    }
    server.shutdown().await;
    println!("Stopped.");
    Ok(())
}

struct LocalAgent {
    binary: PathBuf,
    state_dir: PathBuf,
    /// This run's gateway: the port may differ from the one at enrolment.
    gateway_url: String,
    log: PathBuf,
    device_id: String,
    child: Child,
}

impl LocalAgent {
    async fn start(
        args: &UpArgs,
        server: &bulwark_server::RunningServer,
        tenant_id: &str,
        root_fingerprint: [u8; 32],
    ) -> anyhow::Result<Self> {
        let binary = agent_binary(args.agent_bin.clone())?;
        let state_dir = args.data_dir.join("agent");
        let log = args.data_dir.join("agent.log");
        if !state_dir.join("agent.json").exists() {
            enroll(&binary, &state_dir, server, tenant_id, root_fingerprint).await?;
        }
        let identity: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(state_dir.join("agent.json"))?)?;
        let device_id = identity["device_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let gateway_url = server.gateway_url.clone();
        let child = spawn_agent(&binary, &state_dir, &gateway_url, &log)?;
        Ok(Self {
            binary,
            state_dir,
            gateway_url,
            log,
            device_id,
            child,
        })
    }

    /// Restarts the agent if it dies, until `stop` completes.
    async fn supervise(&mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                status = self.child.wait() => {
                    warn!(?status, "The local agent exited; restarting it in 5 s.");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = &mut stop => return,
                    }
                    match spawn_agent(&self.binary, &self.state_dir, &self.gateway_url, &self.log) {
                        Ok(child) => self.child = child,
                        Err(error) => warn!(error = %format!("{error:#}"), "Cannot restart the local agent."),
                    }
                }
                _ = &mut stop => return,
            }
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn spawn_agent(
    binary: &Path,
    state_dir: &Path,
    gateway_url: &str,
    log: &Path,
) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let child = Command::new(binary)
        .arg("run")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--server")
        .arg(gateway_url)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    info!(pid = child.id(), "Local agent started.");
    Ok(child)
}

/// Enrols the local agent exactly as an endpoint would: a one-time token
/// (stored hashed) and `bulwark-agent enroll`.
async fn enroll(
    binary: &Path,
    state_dir: &Path,
    server: &bulwark_server::RunningServer,
    tenant_id: &str,
    root_fingerprint: [u8; 32],
) -> anyhow::Result<()> {
    use rand::RngCore;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = EnrollToken {
        secret,
        ca_fingerprint: server.ca_fingerprint,
        root_fingerprint,
    };
    let now = bulwark_server::now_millis();
    server
        .store
        .create_enrollment_token(
            token.secret_hash(),
            tenant_id,
            None,
            now,
            now + 10 * 60_000,
            &[
                NewAuditEvent::new(now, UP_ACTOR, AuditAction::EnrollmentTokenIssued, "demo")
                    .in_tenant(Some(tenant_id))
                    .with_detail("the local demo agent"),
            ],
        )
        .await?;
    let output = Command::new(binary)
        .arg("enroll")
        .arg("--server")
        .arg(&server.gateway_url)
        .arg("--state-dir")
        .arg(state_dir)
        .env("BULWARK_ENROLL_TOKEN", token.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "local agent enrolment failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The demo tenant's trust root and first policy, made like `bulwark tenant
/// init` does: the root key and the owner's signing key (`operator`) are
/// created in the operator's own key store ($BULWARK_CONFIG_DIR/keys, by
/// default ~/.config/bulwark/keys), never in the server's data directory,
/// so the server can relay what they sign but never sign itself. Returns
/// the root fingerprint agents pin.
async fn ensure_demo_trust(
    server: &bulwark_server::RunningServer,
    tenant_id: &str,
) -> anyhow::Result<Option<[u8; 32]>> {
    use bulwark_policy::Signed;
    let limits = bulwark_policy::Limits::default();
    let existing = server.store.trust_for_device_tenant(tenant_id).await?;
    if let Some(first) = existing.roots.first() {
        let signed = Signed::from_bytes(first, &limits)
            .map_err(|e| anyhow::anyhow!("the stored demo root is unreadable: {e}"))?;
        return Ok(Some(bulwark_policy::root::root_fingerprint(&signed)));
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if std::env::var_os("BULWARK_KEY_PASSPHRASE").is_none() && !interactive {
        anyhow::bail!(
            "signing keys need a passphrase: run `bulwark up` in a terminal, or set BULWARK_KEY_PASSPHRASE"
        );
    }
    let store = crate::commands::keys::KeyStore::open_default()?;
    println!();
    println!(
        "Creating the demo tenant's trust root and your signing key in {}",
        store.dir().display()
    );
    println!(
        "(your machine, not the server's data directory: the server never holds a key that can sign)."
    );
    let passphrase = crate::commands::keys::passphrase(true)?;
    let root_name = format!("root-demo-{}", &tenant_id[..8.min(tenant_id.len())]);
    let (_, root_key) = store.create_with(&root_name, &format!("root:{tenant_id}"), &passphrase)?;
    let operator = if store.exists("operator")? {
        store.info("operator")?.public_key
    } else {
        store
            .create_with("operator", "operator", &passphrase)?
            .0
            .public_key
    };
    let now = u64::try_from(bulwark_server::now_millis() / 1000).unwrap_or_default();
    let genesis = crate::commands::trust::genesis(
        tenant_id,
        "demo",
        1,
        &[(root_name.clone(), root_key)],
        &[],
        vec![crate::commands::trust::msp_operator("operator", operator)],
        now,
    )?;
    let now_ms = bulwark_server::now_millis();
    server
        .store
        .add_trust_statement(
            tenant_id,
            bulwark_store::TrustKind::Root,
            1,
            &genesis.root.to_bytes(),
            None,
            now_ms,
            &[
                NewAuditEvent::new(now_ms, UP_ACTOR, AuditAction::TrustRootPublished, "demo v1")
                    .in_tenant(Some(tenant_id)),
            ],
        )
        .await?;
    server
        .store
        .add_trust_statement(
            tenant_id,
            bulwark_store::TrustKind::Policy,
            1,
            &genesis.policy.to_bytes(),
            None,
            now_ms,
            &[NewAuditEvent::new(
                now_ms,
                UP_ACTOR,
                AuditAction::TrustPolicyPublished,
                "demo v1",
            )
            .in_tenant(Some(tenant_id))],
        )
        .await?;
    println!(
        "Demo trust root {} (key {root_name}); your signing key is `operator`.",
        crate::commands::trust::grouped_hex(&genesis.fingerprint)
    );
    Ok(Some(genesis.fingerprint))
}

/// `--agent-bin`, else `bulwark-agent` next to this executable, else (in a
/// source checkout) build it with cargo into the same target directory.
fn agent_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .context("the bulwark executable has no directory")?;
    let candidate = dir.join("bulwark-agent");
    if candidate.exists() {
        return Ok(candidate);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = dir.parent();
    if workspace.join("Cargo.toml").exists() && target_dir.is_some() {
        eprintln!("Building bulwark-agent (first start only)…");
        let mut build =
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build.args([
            "build",
            "--package",
            "bulwark-agent",
            "--bin",
            "bulwark-agent",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        if let Some(target_dir) = target_dir {
            build.arg("--target-dir").arg(target_dir);
        }
        let status = build
            .current_dir(&workspace)
            .status()
            .context("cannot run cargo to build bulwark-agent")?;
        if status.success() && candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find bulwark-agent next to {}; build it with `cargo build --release -p bulwark-agent` or pass --agent-bin",
        exe.display()
    )
}
