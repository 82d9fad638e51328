//! The operator commands, one module per noun (`tenants`, `devices`,
//! `jobs`, `shells`, `keys`, `passkeys`, `trust` for roots, policies and freezes,
//! `proposals`, `audit`, and `login`), and the dispatcher of them all. They
//! speak the same JSON API as the console (`/api/v1/…`, typed by
//! `bulwark-api`) through [`crate::client`] and print through
//! [`crate::output`].

pub mod alerts;
pub mod audit;
pub mod checks;
pub mod device_sections;
pub mod devices;
pub mod fleet;
pub mod jobs;
pub mod keys;
pub mod login;
pub mod passkeys;
pub mod patch;
pub mod proposals;
pub mod releases;
pub mod schedules;
pub mod scripts;
pub mod shell_terminal;
pub mod shells;
pub mod sla;
pub mod targets;
pub mod tenants;
pub mod trust;
pub mod vulndb;
pub mod vulns;

use std::path::PathBuf;

use anyhow::Result;

use crate::commands::login::*;

/// Operator commands, flattened into the top-level `bulwark` command.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Log in to a Bulwark server: password and TOTP code (MFA is always
    /// required), or `--device`: a code approved in the console with a passkey.
    Login {
        /// Server URL, e.g. https://bulwark.example.net or http://localhost:8080.
        #[arg(long, env = "BULWARK_SERVER", value_name = "URL")]
        server: String,
        /// Account name; prompted for when stdin is a terminal.
        #[arg(long)]
        username: Option<String>,
        /// Read the password from stdin (for automation; requires --otp).
        #[arg(long)]
        password_stdin: bool,
        /// The current TOTP code from the authenticator app.
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
        /// PEM file with a CA certificate to trust for https (a private CA).
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// Sign in with a code approved in the console with a passkey (RFC 8628 device
        /// flow): prints a code and a URL, then waits for the approval.
        #[arg(long, conflicts_with_all = ["username", "password_stdin", "otp"])]
        device: bool,
    },
    /// End the session on the server and forget the stored token.
    Logout,
    /// Tenants (customers).
    Tenant {
        #[command(subcommand)]
        command: tenants::TenantCommand,
    },
    /// Managed devices.
    Device {
        #[command(subcommand)]
        command: devices::DeviceCommand,
    },
    /// Signing keys held on this machine (never sent to the server).
    Keys {
        #[command(subcommand)]
        command: crate::commands::keys::KeysCommand,
    },
    /// A tenant's signed policy: who may sign which jobs, quorums, allow-list.
    Policy {
        #[command(subcommand)]
        command: crate::commands::trust::PolicyCommand,
    },
    /// Trust statements signed by several people: list, check and sign proposals.
    Trust {
        #[command(subcommand)]
        command: crate::commands::proposals::TrustCommand,
    },
    /// Signed jobs: run a script on devices, approve, follow results.
    Job {
        #[command(subcommand)]
        command: crate::commands::jobs::JobCommand,
    },
    /// Scheduled jobs: sign a schedule once, list, show, revoke (RFD 0019).
    Schedule {
        #[command(subcommand)]
        command: schedules::ScheduleCommand,
    },
    /// Patching: patch policies, security updates by signed schedules with
    /// a canary ring first (RFD 0021).
    Patch {
        #[command(subcommand)]
        command: patch::PatchCommand,
    },
    /// Remote shells: `bulwark shell DEVICE` opens one under an approved
    /// grant; `request`, `approve`, `revoke`, `grants`, `sessions`, `recording`.
    Shell(shells::ShellArgs),
    /// The MSP's script library: add, version, review, allow-list (run with `job run --library`).
    Script {
        #[command(subcommand)]
        command: scripts::ScriptCommand,
    },
    /// Alerts: list, acknowledge, resolve, and where a tenant's are sent.
    Alert {
        #[command(subcommand)]
        command: alerts::AlertCommand,
    },
    /// SLAs: a tenant's targets in business hours, and how its alerts did.
    Sla {
        #[command(subcommand)]
        command: sla::SlaCommand,
    },
    /// Transparency logs: verify one end to end, or export it for offline checks.
    Audit {
        #[command(subcommand)]
        command: crate::commands::audit::AuditCommand,
    },
    /// Agents: update them to a signed release.
    Agent {
        #[command(subcommand)]
        command: releases::AgentCommand,
    },
    /// The agent release mirror: import a TUF repository of agent releases, show a release.
    Release {
        #[command(subcommand)]
        command: releases::ReleaseCommand,
    },
    /// The offline vulnerability database: import OSV data, status, check a package version.
    Vulndb {
        #[command(subcommand)]
        command: vulndb::VulnDbCommand,
    },
}

pub async fn run(cmd: OperatorCommand) -> Result<()> {
    match cmd {
        OperatorCommand::Login {
            server,
            username,
            password_stdin,
            otp,
            ca_cert,
            device,
        } => {
            if device {
                login_device(server, ca_cert).await
            } else {
                login(server, username, password_stdin, otp, ca_cert).await
            }
        }
        OperatorCommand::Logout => logout().await,
        OperatorCommand::Keys { command } => crate::commands::keys::run(command).await,
        OperatorCommand::Policy { command } => crate::commands::trust::run_policy(command).await,
        OperatorCommand::Tenant { command } => tenants::run(command).await,
        OperatorCommand::Device { command } => devices::run(command).await,
        OperatorCommand::Job { command } => crate::commands::jobs::run(command).await,
        OperatorCommand::Script { command } => scripts::run(command).await,
        OperatorCommand::Schedule { command } => schedules::run(command).await,
        OperatorCommand::Patch { command } => patch::run(command).await,
        OperatorCommand::Shell(args) => shells::run(args).await,
        OperatorCommand::Alert { command } => alerts::run(command).await,
        OperatorCommand::Sla { command } => sla::run(command).await,
        OperatorCommand::Audit { command } => crate::commands::audit::run(command).await,
        OperatorCommand::Trust { command } => crate::commands::proposals::run(command).await,
        OperatorCommand::Vulndb { command } => vulndb::run(command).await,
        OperatorCommand::Release { command } => releases::run(command).await,
        OperatorCommand::Agent { command } => releases::run_agent(command).await,
    }
}
