//! `bulwark`: the quickstart (`up`), the production server (`server`) and the
//! operator CLI (everything else, over the same HTTP API as the console).

mod approval_page;
mod client;
mod commands;
mod output;
mod pins;
mod up;
mod witness;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bulwark",
    version,
    about = "Bulwark: remote monitoring and management that a compromised server cannot turn against its endpoints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Quickstart on this machine: server with embedded SQLite, plus a local agent in tenant `demo`.
    Up(up::UpArgs),
    /// Production server (HTTPS) from a TOML configuration file.
    Server {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Days the audit logs keep an entry in the database (minimum 180;
        /// overrides `retention_days` in the file; default 365).
        #[arg(long)]
        retention_days: Option<u32>,
        /// The bus between nodes, `nats://host:4222` (overrides `bus_url`
        /// in the file; default: in process, one node). RFD 0018.
        #[arg(long, env = "BULWARK_BUS_URL", value_name = "URL")]
        bus: Option<String>,
    },
    /// Run a transparency-log witness: cosign tenants' checkpoints that extend what it cosigned (RFD 0006).
    Witness {
        #[command(subcommand)]
        command: witness::WitnessCommand,
    },
    #[command(flatten)]
    Operator(commands::OperatorCommand),
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// glibc gives every thread that allocates its own malloc arena; the
/// server's allocations spread over them and fragment, which doubled the
/// memory each connected agent costs (23 KiB instead of ~11 with two arenas,
/// measured with crates/sim/bench-fleet.sh). glibc reads the cap from the
/// environment at start-up only, so the server re-executes itself with it.
fn cap_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(VAR, "2")
        .exec();
    // exec returns only on failure: carry on with glibc's defaults.
    eprintln!(
        "warning: could not re-execute with {VAR}=2 ({error}); memory per agent will be higher"
    );
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Up(_) | Command::Server { .. }) {
        cap_malloc_arenas();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Up(args) => {
            init_logging();
            runtime.block_on(up::up(args))
        }
        Command::Server {
            config,
            retention_days,
            bus,
        } => {
            init_logging();
            runtime.block_on(server(config, retention_days, bus))
        }
        Command::Witness { command } => {
            init_logging();
            runtime.block_on(witness::run(command))
        }
        Command::Operator(command) => runtime.block_on(commands::run(command)),
    }
}

async fn server(
    path: PathBuf,
    retention_days: Option<u32>,
    bus: Option<String>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: bulwark_server::ServerConfig = toml::from_str(&text)
        .with_context(|| format!("invalid configuration in {}", path.display()))?;
    if let Some(days) = retention_days {
        config.retention_days = days;
    }
    if bus.is_some() {
        config.bus_url = bus;
    }
    let server = bulwark_server::start(config).await?;
    println!("Console:    {}", server.console_url);
    println!("Agents:     {}", server.gateway_url);
    if let Some(code) = &server.setup_code {
        println!(
            "Setup code: {code}  (one-time; create the first owner at {}setup)",
            server.console_url
        );
    }
    up::wait_for_signal().await;
    server.shutdown().await;
    Ok(())
}
