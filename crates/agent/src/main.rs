//! `bulwark-agent`: enrol this machine, then keep it connected.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bulwark_agent::backoff::Backoff;
use bulwark_agent::connection::{self, Endpoint, ServerAddress, SessionError, SessionOptions};
use bulwark_agent::identity::{AgentState, StateDir, hex_encode};
use bulwark_agent::install::{Layout, Systemd};
use bulwark_agent::inventory::Collector;
use bulwark_agent::jobs::{self, JobRunner};
use bulwark_agent::trust::TrustState;
use bulwark_agent::updates::Updates;
use bulwark_protocol::message::DeviceId;
use bulwark_protocol::token::{EnrollToken, fingerprint_text, parse_fingerprint};
use clap::{Parser, Subcommand};
use ed25519_dalek::SigningKey;
use rand::Rng;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(name = "bulwark-agent", version, about = "The Bulwark endpoint agent")]
struct Cli {
    /// Where the device key and identity live (mode 0700).
    #[arg(
        long,
        global = true,
        env = "BULWARK_AGENT_STATE_DIR",
        default_value = "/var/lib/bulwark-agent"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol this machine with a one-time token from `bulwark tenant enroll-token`.
    Enroll {
        /// The agent gateway, e.g. https://rmm.example.com:8443
        #[arg(long)]
        server: String,
        /// The one-time enrolment token (it names the server CA to pin).
        #[arg(long, env = "BULWARK_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// The tenant's root fingerprint as the operator's own `bulwark` pinned
        /// it (`SHA256:AB:CD:…` or hex): a token naming another root is refused.
        #[arg(long, value_name = "FINGERPRINT")]
        root: Option<String>,
        /// The transparency log's key as the operator's `bulwark` pinned it
        /// (`name+id+key`): a server serving another log key is refused.
        #[arg(long, value_name = "VKEY")]
        log_key: Option<String>,
    },
    /// Connect and stay connected until stopped (SIGINT or SIGTERM).
    Run {
        /// Connect to this gateway URL instead of the one stored at enrolment
        /// (the server moved). The pinned CA still decides whom to trust.
        #[arg(long)]
        server: Option<String>,
        /// Seconds between inventory checks (changes only are sent).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        inventory_secs: u64,
        /// Seconds between reports of check values (a changed state is
        /// reported at once).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3_600))]
        check_values_secs: u64,
        /// Seconds between reads of the pending updates (a simulated apt
        /// upgrade; as root, after refreshing the package lists).
        #[arg(long, default_value_t = 6 * 3600, value_parser = clap::value_parser!(u64).range(1..=7 * 86_400))]
        updates_secs: u64,
        /// An apt configuration file given to every apt run as `APT_CONFIG`
        /// (pending updates, install-patches jobs); default: the system's
        /// apt. For apt and dpkg confined to another directory (tests).
        #[arg(long, env = "BULWARK_AGENT_APT_CONFIG", value_name = "FILE")]
        apt_config: Option<PathBuf>,
        /// The account unprivileged remote shells run as (RFD 0015); admin
        /// shells run as root. A missing account refuses plain shells.
        #[arg(long, env = "BULWARK_AGENT_SHELL_ACCOUNT", default_value = bulwark_agent::shell::DEFAULT_SHELL_ACCOUNT)]
        shell_account: String,
        /// Tests only: the utmp file whose users get shell notices
        /// (default: /run/utmp, then /var/run/utmp).
        #[arg(
            long,
            env = "BULWARK_AGENT_SHELL_NOTICE_UTMP",
            value_name = "FILE",
            hide = true
        )]
        shell_notice_utmp: Option<PathBuf>,
        /// Tests only: the directory their terminals are under (default /dev).
        #[arg(
            long,
            env = "BULWARK_AGENT_SHELL_NOTICE_DEV",
            value_name = "DIR",
            hide = true
        )]
        shell_notice_dev: Option<PathBuf>,
    },
    /// Install as a service: copy this binary to /usr/local/bin, write the
    /// systemd unit, make the state directory (mode 0700), enrol with
    /// --token unless already enrolled, then enable and start the service
    /// where systemd runs. Run it again to update; it changes only what differs.
    Install {
        /// The agent gateway to enrol with, e.g. https://rmm.example.com:8443
        #[arg(long, requires = "token")]
        server: Option<String>,
        /// A one-time enrolment token (`bulwark tenant enroll-token`).
        #[arg(
            long,
            env = "BULWARK_ENROLL_TOKEN",
            hide_env_values = true,
            requires = "server"
        )]
        token: Option<String>,
        /// The tenant's root fingerprint as the operator's `bulwark` pinned it.
        #[arg(long, value_name = "FINGERPRINT", requires = "token")]
        root: Option<String>,
        /// The transparency log's key as the operator's `bulwark` pinned it.
        #[arg(long, value_name = "VKEY", requires = "token")]
        log_key: Option<String>,
        /// Install into this directory instead of `/` (an image being built,
        /// a test); nothing is started there.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root_dir: PathBuf,
        /// Write everything but do not enable or start the service.
        #[arg(long)]
        no_start: bool,
        /// An argument for `run` in the unit, e.g. `--run-arg=--inventory-secs=300`.
        #[arg(long = "run-arg", value_name = "ARG", allow_hyphen_values = true)]
        run_args: Vec<String>,
        /// The agent release channel's TUF `root.json`, from the release
        /// publisher (never from the server): pinned in the state directory,
        /// the start of trust for signed agent updates (RFD 0017). A root
        /// already pinned is never replaced.
        #[arg(long, value_name = "FILE")]
        release_root: Option<PathBuf>,
    },
    /// Stop and remove the service and the installed binary. The state
    /// directory (the device key) stays unless --purge.
    Uninstall {
        /// Also delete the device key and identity (the device must enrol
        /// again; remove it in the console too).
        #[arg(long)]
        purge: bool,
        #[arg(long, value_name = "DIR", default_value = "/")]
        root_dir: PathBuf,
    },
    /// Print this agent's identity.
    Status,
    /// Print this agent's own record of the security alarms it raised (jobs
    /// the transparency log did not vouch for, trust statements refused),
    /// the newest first; with --record, the record itself, for an
    /// auditor's `bulwark audit verify --tenant T --alarms FILE`.
    Alarms {
        /// How many alarms to print.
        #[arg(long, default_value_t = 50, conflicts_with = "record")]
        last: usize,
        /// Print the whole record in its file format (both generations).
        #[arg(long)]
        record: bool,
    },
    /// Print this agent's own record of check state changes (the last
    /// ones first), to compare with the alerts the server shows.
    Checks {
        /// How many changes to print.
        #[arg(long, default_value_t = 50)]
        last: usize,
    },
    /// Supervise one job's script (the agent runs this itself; see
    /// `bulwark_agent::supervisor`).
    #[command(hide = true)]
    Supervise {
        run_dir: PathBuf,
        name: String,
        interpreter: PathBuf,
        timeout_secs: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Supervise {
        run_dir,
        name,
        interpreter,
        timeout_secs,
    } = &cli.command
    {
        // No runtime, no logging setup: a small process that waits.
        bulwark_agent::supervisor::supervise(
            run_dir,
            name,
            interpreter,
            Duration::from_secs(*timeout_secs),
        )?;
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One thread: an agent's work is small and its footprint matters.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let system_state_dir = cli.state_dir.clone();
    let state_dir = StateDir::new(cli.state_dir);
    match cli.command {
        Command::Install {
            server,
            token,
            root,
            log_key,
            root_dir,
            no_start,
            run_args,
            release_root,
        } => {
            let layout = Layout::standard(&root_dir, &system_state_dir);
            if let Some(file) = &release_root {
                let root = std::fs::read(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let dir = layout.under_root(&layout.state_dir);
                bulwark_agent::files::private_dir(&dir)?;
                if bulwark_agent::self_update::pin_release_root(&dir, &root)? {
                    println!("Pinned the release root from {}", file.display());
                }
            }
            let enrolment = server.zip(token).map(|(server, token)| Enrolment {
                server,
                token,
                root,
                log_key,
            });
            runtime.block_on(install(&layout, enrolment, no_start, &run_args))
        }
        Command::Uninstall { purge, root_dir } => {
            uninstall(&Layout::standard(&root_dir, &system_state_dir), purge)
        }
        Command::Enroll {
            server,
            token,
            root,
            log_key,
        } => runtime.block_on(enroll(
            &state_dir,
            &server,
            &token,
            root.as_deref(),
            log_key.as_deref(),
        )),
        Command::Run {
            server,
            inventory_secs,
            check_values_secs,
            updates_secs,
            apt_config,
            shell_account,
            shell_notice_utmp,
            shell_notice_dev,
        } => {
            let mut notice_terminals = bulwark_agent::shell::wall::NoticeTerminals::default();
            if let Some(utmp) = shell_notice_utmp {
                notice_terminals.utmp = vec![utmp];
            }
            if let Some(dev) = shell_notice_dev {
                notice_terminals.dev_root = dev;
            }
            // The launcher: an installed release runs instead of this
            // binary, or is rolled back (RFD 0017). Returns here only if
            // this binary is the one to run.
            bulwark_agent::self_update::launch(state_dir.path())?;
            runtime.block_on(run(
                &state_dir,
                server,
                Duration::from_secs(inventory_secs),
                Duration::from_secs(check_values_secs),
                (Duration::from_secs(updates_secs), apt_config),
                (shell_account, notice_terminals),
            ))
        }
        Command::Checks { last } => {
            for line in bulwark_agent::checks::journal_lines(state_dir.path(), last)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Alarms { last, record } => {
            if record {
                let text = bulwark_agent::alarms::record_text(state_dir.path())?;
                // `| head` closes the pipe early: not an error.
                match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                    _ => {}
                }
            } else {
                let lines = bulwark_agent::alarms::record_lines(state_dir.path(), last)?;
                if lines.is_empty() {
                    println!("No alarms recorded on this endpoint.");
                }
                for line in lines {
                    println!("{line}");
                }
            }
            Ok(())
        }
        // Handled before anything else is set up.
        Command::Supervise { .. } => Ok(()),
        Command::Status => {
            let (state, key) = state_dir.load()?;
            println!("device:   {}", state.device_id);
            println!("tenant:   {}", state.tenant);
            println!("server:   {}", state.server);
            println!(
                "CA pin:   {}",
                fingerprint_text(&StateDir::fingerprint(&state)?)
            );
            println!("key:      {}", hex_encode(&key.verifying_key().to_bytes()));
            // What jobs and the operator's pins name the device by.
            println!(
                "key hash: {}",
                hex_encode(&bulwark_policy::device_key_fingerprint(
                    &key.verifying_key().to_bytes()
                ))
            );
            match TrustState::load(state_dir.path(), &bulwark_policy::Limits::default()) {
                Ok(trust) => {
                    println!("root pin: {}", fingerprint_text(trust.history.pinned()));
                    match (&trust.log_key, &trust.log_head) {
                        (None, _) => println!(
                            "log key:  none (enrolled before the transparency log: enrol again)"
                        ),
                        (Some(key), None) => {
                            println!("log key:  {}\nlog head: none yet", key.to_vkey())
                        }
                        (Some(key), Some((_, head))) => println!(
                            "log key:  {}\nlog head: {} entries of {}",
                            key.to_vkey(),
                            head.size(),
                            head.origin()
                        ),
                    }
                    let status = trust.status();
                    let or_none =
                        |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
                    println!("root:     version {}", or_none(status.root_version));
                    println!("policy:   version {}", or_none(status.policy_version));
                    println!(
                        "frozen:   {} (freeze sequence {})",
                        if status.frozen { "yes" } else { "no" },
                        status.freeze_sequence
                    );
                }
                Err(error) => println!("trust:    {error:#}"),
            }
            Ok(())
        }
    }
}

/// `install`'s enrolment arguments.
struct Enrolment {
    server: String,
    token: String,
    root: Option<String>,
    log_key: Option<String>,
}

fn require_root(layout: &Layout) -> anyhow::Result<()> {
    if layout.is_live_system() && !rustix::process::geteuid().is_root() {
        bail!(
            "installing or removing the service needs root: run it with sudo (or use --root-dir \
             DIR to lay it out in a directory)"
        );
    }
    Ok(())
}

async fn install(
    layout: &Layout,
    enrolment: Option<Enrolment>,
    no_start: bool,
    run_args: &[String],
) -> anyhow::Result<()> {
    require_root(layout)?;
    let source = std::env::current_exe().context("cannot find this program's own file")?;
    let done = bulwark_agent::install::install(layout, &source, run_args)
        .context("installation failed")?;
    let report = |changed: bool, what: &str, path: &std::path::Path| {
        let verb = if changed { "Installed" } else { "Unchanged" };
        println!("{verb:<9} {what:<16} {}", layout.under_root(path).display());
    };
    report(done.binary_copied, "binary", &layout.binary);
    report(done.unit_written, "systemd unit", &layout.unit);
    report(done.state_dir_created, "state directory", &layout.state_dir);
    let account = bulwark_agent::shell::DEFAULT_SHELL_ACCOUNT;
    if bulwark_agent::install::ensure_shell_account(layout, account)
        .with_context(|| format!("cannot make the {account} account"))?
    {
        println!("Installed account          {account} (unprivileged remote shells)");
    }
    let state_dir = StateDir::new(layout.under_root(&layout.state_dir));
    match enrolment {
        Some(_) if state_dir.is_enrolled() => {
            let (state, _) = state_dir.load()?;
            println!(
                "Already enrolled as device {} in tenant {}: the token was not used.",
                state.device_id, state.tenant
            );
        }
        Some(e) => {
            enroll(
                &state_dir,
                &e.server,
                &e.token,
                e.root.as_deref(),
                e.log_key.as_deref(),
            )
            .await?
        }
        None => {}
    }
    let enrolled = state_dir.is_enrolled();
    let unit = bulwark_agent::install::UNIT_NAME;
    match Systemd::detect(layout) {
        Systemd::Running if enrolled && !no_start => {
            Systemd::systemctl(&["daemon-reload"])?;
            Systemd::systemctl(&["enable", unit])?;
            // A restart, not a start: an update must run the new binary.
            Systemd::systemctl(&["restart", unit])?;
            println!("Started {unit}; it starts at every boot. Logs: journalctl -u {unit}");
        }
        Systemd::Running => {
            Systemd::systemctl(&["daemon-reload"])?;
            if enrolled {
                println!("Not started (--no-start). Start it with: systemctl enable --now {unit}");
            } else {
                println!(
                    "Not enrolled yet, so not started: run `bulwark-agent install` again with \
                     --server, --token and --root (the console's tenant page prints the command)."
                );
            }
        }
        Systemd::Absent => println!(
            "systemd is not running {}: start the agent with `{} --state-dir {} run`.",
            if layout.is_live_system() {
                "here"
            } else {
                "in a --root-dir"
            },
            layout.binary.display(),
            layout.state_dir.display()
        ),
    }
    Ok(())
}

fn uninstall(layout: &Layout, purge: bool) -> anyhow::Result<()> {
    require_root(layout)?;
    let unit = bulwark_agent::install::UNIT_NAME;
    let systemd = Systemd::detect(layout);
    if let Systemd::Running = systemd
        && let Err(error) = Systemd::systemctl(&["disable", "--now", unit])
    {
        warn!("{error}");
    }
    let removed = bulwark_agent::install::uninstall(layout, purge).context("uninstall failed")?;
    if let Systemd::Running = systemd {
        Systemd::systemctl(&["daemon-reload"])?;
    }
    let report = |gone: bool, what: &str, path: &std::path::Path| {
        let verb = if gone { "Removed" } else { "Absent" };
        println!("{verb:<8} {what:<16} {}", layout.under_root(path).display());
    };
    report(removed.unit, "systemd unit", &layout.unit);
    report(removed.binary, "binary", &layout.binary);
    let account = bulwark_agent::shell::DEFAULT_SHELL_ACCOUNT;
    match bulwark_agent::install::remove_shell_account(layout, account) {
        Ok(true) => println!("Removed  account          {account}"),
        Ok(false) => {}
        Err(error) => warn!(%error, "Cannot remove the shell account."),
    }
    if purge {
        report(removed.state_dir, "state directory", &layout.state_dir);
        println!(
            "The device key is gone: remove the device in the console, and enrol anew to come back."
        );
    } else {
        println!(
            "Kept {} (the device key and identity): --purge removes it.",
            layout.under_root(&layout.state_dir).display()
        );
    }
    Ok(())
}

fn hostname() -> String {
    jobs::current_hostname()
}

async fn enroll(
    state_dir: &StateDir,
    server: &str,
    token_text: &str,
    root: Option<&str>,
    log_key: Option<&str>,
) -> anyhow::Result<()> {
    let token = EnrollToken::parse(token_text).context("the enrolment token is not valid")?;
    // The operator's own software pinned the tenant's root; the token came
    // from the server. They must agree before anything is sent.
    match root {
        Some(root) => {
            let expected = parse_fingerprint(root).context("--root is not a fingerprint")?;
            if expected != token.root_fingerprint {
                bail!(
                    "the token names trust root {}, but --root is {}: this token was not issued \
                     for the tenant root you pinned (a server serving another root?). Nothing was \
                     sent and nothing was stored",
                    fingerprint_text(&token.root_fingerprint),
                    fingerprint_text(&expected)
                );
            }
        }
        None => eprintln!(
            "warning: no --root given; the root the token names is pinned without a check \
             against the one your `bulwark tenant enroll-token` printed"
        ),
    }
    if state_dir.is_enrolled() {
        let (state, _) = state_dir.load()?;
        bail!(
            "this agent is already enrolled as device {} in tenant {}; to enrol again, remove {} first",
            state.device_id,
            state.tenant,
            state_dir.path().display()
        );
    }
    let address = ServerAddress::parse(server)?;
    println!(
        "Pinning the server CA {}",
        fingerprint_text(&token.ca_fingerprint)
    );
    println!(
        "Pinning the tenant trust root {}",
        fingerprint_text(&token.root_fingerprint)
    );
    println!("(compare both with the fingerprints shown where the token was issued)");
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let enrolled = connection::enroll(&address, &token, &key, &hostname())
        .await
        .map_err(|e| match e {
            SessionError::Refused { message, .. } => {
                anyhow::anyhow!("enrolment refused by the server: {message}")
            }
            SessionError::Transport(e) => e.context("enrolment failed"),
        })?;
    let state = AgentState {
        server: server.trim().to_owned(),
        device_id: enrolled.device_id.to_string(),
        tenant: enrolled.tenant.clone(),
        ca_fingerprint: hex_encode(&token.ca_fingerprint),
    };
    if let Some(expected) = log_key
        && expected.trim() != enrolled.log_key.trim()
    {
        bail!(
            "the server's log key is {}, but --log-key is {}: refusing to pin it. The server \
             has recorded this device; remove it there. Nothing was stored here",
            enrolled.log_key.trim(),
            expected.trim()
        );
    }
    // The pin before the identity: `agent.json` is written last, so a crash
    // in between leaves the agent not enrolled rather than enrolled unpinned.
    state_dir.create()?;
    TrustState::pin(state_dir.path(), &token.root_fingerprint)
        .context("cannot store the pinned trust root")?;
    TrustState::pin_log_key(state_dir.path(), &enrolled.log_key)
        .context("cannot store the pinned log key")?;
    state_dir.save(&state, &key)?;
    println!(
        "Enrolled as device {} in tenant {}.",
        enrolled.device_id, enrolled.tenant
    );
    println!(
        "Identity stored in {}. Start the agent with `bulwark-agent run`.",
        state_dir.path().display()
    );
    Ok(())
}

async fn shutdown_signal() {
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

async fn run(
    state_dir: &StateDir,
    server: Option<String>,
    inventory_interval: Duration,
    check_values_interval: Duration,
    (updates_interval, apt_config): (Duration, Option<PathBuf>),
    (shell_account, notice_terminals): (String, bulwark_agent::shell::wall::NoticeTerminals),
) -> anyhow::Result<()> {
    let (mut state, key) = state_dir.load()?;
    if let Some(server) = server {
        state.server = server;
    }
    let endpoint = Endpoint {
        address: ServerAddress::parse(&state.server)?,
        pin: StateDir::fingerprint(&state)?,
        device_id: DeviceId::parse(&state.device_id)
            .context("the device id in agent.json is corrupt")?,
        key,
    };
    let running = bulwark_agent::self_update::Running::detect(state_dir.path())
        .context("cannot read this agent's own binary")?;
    info!(device_id = %endpoint.device_id, tenant = %state.tenant, server = %state.server, version = %running.version, sha256 = %hex_encode(&running.sha256), "Agent starting.");
    // A binary started by an update that is not welcomed in time exits,
    // and its launcher restores the previous one.
    if let Some(left) = bulwark_agent::self_update::health_deadline(state_dir.path(), &running) {
        let (dir, me) = (state_dir.path().to_owned(), running.clone());
        tokio::spawn(async move {
            tokio::time::sleep(left).await;
            if bulwark_agent::self_update::health_deadline(&dir, &me).is_none() {
                return; // welcomed in time
            }
            error!(
                "This updated agent was not welcomed by the server in time; exiting so that the previous binary is restored."
            );
            bulwark_agent::self_update::flush_logs();
            std::process::exit(75);
        });
    }

    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });

    // What this agent trusts, and the job runner that obeys it (a task of
    // its own, so a running script never delays a heartbeat).
    let trust = TrustState::load(state_dir.path(), &bulwark_policy::Limits::default())?;
    let trust_status = trust.status();
    info!(
        root_version = ?trust_status.root_version,
        policy_version = ?trust_status.policy_version,
        frozen = trust_status.frozen,
        "Trust state loaded."
    );
    let runner = JobRunner::open(
        state_dir.path(),
        &state.device_id,
        &endpoint.key.verifying_key().to_bytes(),
        std::sync::Arc::new(std::sync::Mutex::new(trust)),
    )
    .with_context(|| {
        format!(
            "cannot open the job directory in {}",
            state_dir.path().display()
        )
    })?;
    // Pending updates, read on a task of their own (apt takes seconds).
    if let Some(config) = &apt_config {
        info!(apt_config = %config.display(), "apt runs with this configuration (APT_CONFIG).");
    }
    let updates = Updates::new(apt_config);
    tokio::spawn(updates.clone().run(updates_interval));
    let release = bulwark_agent::self_update::SelfUpdate {
        state_dir: state_dir.path().to_owned(),
        address: endpoint.address.clone(),
        pin: endpoint.pin,
        running: running.clone(),
    };
    let runner = runner
        .with_updates(updates.clone())
        .with_self_update(release.clone())
        // Named by the verified root's tenant id once one is in force.
        .with_alarms(bulwark_agent::alarms::AlarmLog::new(
            state_dir.path(),
            &state.tenant,
            &state.device_id,
        ));
    let trust = runner.trust().clone();
    let shell = bulwark_agent::shell::ShellConfig {
        trust: trust.clone(),
        device_id: state.device_id.clone(),
        device_key: endpoint.key.clone(),
        unprivileged_account: shell_account,
        passwd: PathBuf::from("/etc/passwd"),
        notice_terminals,
    };
    let (jobs, worker) = jobs::start(runner);
    let jobs_handle = jobs.clone();
    tokio::spawn(worker);
    // The verified policy's checks, on a task of their own.
    let own = bulwark_agent::checks::OwnIdentity {
        device_id: state.device_id.clone(),
        device_key: bulwark_policy::device_key_fingerprint(
            &endpoint.key.verifying_key().to_bytes(),
        ),
    };
    let (checks, checks_task) = bulwark_agent::checks::start(
        trust,
        own,
        state_dir.path(),
        Some(updates.clone()),
        Some(release),
    );
    tokio::spawn(checks_task);

    let updates_read = updates.subscribe();
    let mut collector = Collector::new(bulwark_agent::AGENT_VERSION).with_updates(updates);
    let options = SessionOptions {
        inventory_interval,
        jobs: Some(jobs),
        checks: Some(checks),
        check_values_interval,
        updates_read: Some(updates_read),
        agent_version: running.reported(),
        shell: Some(shell),
    };
    let backoff = Backoff::default();
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let mut connected_at = None;
        let result = connection::session(
            &endpoint,
            &mut collector,
            &options,
            &mut stopped,
            &mut || {
                connected_at = Some(Instant::now());
                // Welcomed: an update that started this binary is done.
                if let Some(result) =
                    bulwark_agent::self_update::confirm_healthy(state_dir.path(), &running)
                {
                    match jobs_handle.spool_result(&result) {
                        Ok(()) => bulwark_agent::self_update::finish_update(state_dir.path()),
                        Err(error) => {
                            error!(%error, "Cannot record the update's result; trying at the next connection.")
                        }
                    }
                }
            },
        )
        .await;
        match result {
            Ok(()) => {
                info!("Agent stopped.");
                return Ok(());
            }
            Err(SessionError::Refused { code, message }) => {
                error!(?code, %message, "The server refused this agent.")
            }
            Err(SessionError::Transport(e)) => {
                warn!(error = %format!("{e:#}"), "Connection to the server lost.")
            }
        }
        // A session that lived a while starts the backoff over.
        if connected_at.is_some() && started.elapsed() > Duration::from_secs(60) {
            attempt = 0;
        }
        let delay = backoff.delay(attempt, rand::thread_rng().r#gen::<f64>());
        attempt = attempt.saturating_add(1);
        info!(
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "Reconnecting after a delay."
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped.changed() => {
                info!("Agent stopped.");
                return Ok(());
            }
        }
    }
}
