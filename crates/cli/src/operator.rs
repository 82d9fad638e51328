//! The operator commands: the dispatcher of `bulwark login`, `logout`,
//! `tenant …`, `device …`, `keys`, `policy` and `job`, and the tenant and
//! device commands themselves. They speak the same JSON API as the console
//! (`/api/v1/…`) through [`crate::client`] and print through
//! [`crate::output`]; signing in is [`crate::login`].

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use bulwark_protocol::token::fingerprint_text;
use bulwark_server::console::human_bytes;
use serde_json::{Value, json};

use crate::client::*;
use crate::login::*;
use crate::output::*;

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
        command: TenantCommand,
    },
    /// Managed devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Signing keys held on this machine (never sent to the server).
    Keys {
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// A tenant's signed policy: who may sign which jobs, quorums, allow-list.
    Policy {
        #[command(subcommand)]
        command: crate::trust::PolicyCommand,
    },
    /// Trust statements signed by several people: list, check and sign proposals.
    Trust {
        #[command(subcommand)]
        command: crate::proposals::TrustCommand,
    },
    /// Signed jobs: run a script on devices, approve, follow results.
    Job {
        #[command(subcommand)]
        command: crate::jobs::JobCommand,
    },
    /// Transparency logs: verify one end to end, or export it for offline checks.
    Audit {
        #[command(subcommand)]
        command: crate::audit::AuditCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// List the tenants with their device counts.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Issue a one-time enrolment token for a new agent.
    EnrollToken {
        #[arg(long)]
        tenant: String,
        /// How long the token stays valid (the server's default when omitted).
        #[arg(long, value_name = "MINUTES")]
        ttl_minutes: Option<u32>,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Trust(crate::trust::TenantTrustCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// List the devices of a tenant.
    List {
        #[arg(long)]
        tenant: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one device with its inventory.
    Show {
        /// Device id (from `bulwark device list`).
        id: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
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
        OperatorCommand::Keys { command } => crate::keys::run(command).await,
        OperatorCommand::Policy { command } => crate::trust::run_policy(command).await,
        OperatorCommand::Tenant {
            command: TenantCommand::Trust(command),
        } => crate::trust::run_tenant(command).await,
        OperatorCommand::Job { command } => crate::jobs::run(command).await,
        OperatorCommand::Audit { command } => crate::audit::run(command).await,
        OperatorCommand::Trust { command } => crate::proposals::run(command).await,
        OperatorCommand::Tenant {
            command: TenantCommand::List { json },
        } => {
            let tenants = Session::load()?.get("/api/v1/tenants").await?;
            if json {
                print_json(&tenants)
            } else {
                print_tenants(&tenants)
            }
        }
        OperatorCommand::Tenant {
            command:
                TenantCommand::EnrollToken {
                    tenant,
                    ttl_minutes,
                    json,
                },
        } => {
            let body = match ttl_minutes {
                Some(minutes) => json!({ "ttl_minutes": minutes }),
                None => json!({}),
            };
            let path = format!(
                "/api/v1/tenants/{}/enrollment-tokens",
                path_segment(&tenant)?
            );
            let session = Session::load()?;
            let mut reply = session.post(&path, &body).await?;
            let pinned = pinned_enrolment(&session, &tenant, &reply).await?;
            if json {
                reply["root_fingerprint"] = json!(fingerprint_text(&pinned.root));
                reply["log_key"] = json!(pinned.log_key);
                reply["install_command"] = json!(pinned.install_command(&reply)?);
                print_json(&reply)
            } else {
                print_enroll_token(&reply, &pinned)
            }
        }
        OperatorCommand::Device {
            command: DeviceCommand::List { tenant, json },
        } => {
            let path = format!("/api/v1/tenants/{}/devices", path_segment(&tenant)?);
            let devices = Session::load()?.get(&path).await?;
            if json {
                print_json(&devices)
            } else {
                print_devices(&devices)
            }
        }
        OperatorCommand::Device {
            command: DeviceCommand::Show { id, json },
        } => {
            let device = Session::load()?
                .get(&format!("/api/v1/devices/{}", path_segment(&id)?))
                .await?;
            if json {
                print_json(&device)
            } else {
                print_device(&device)
            }
        }
    }
}

fn status_cell(online: &Value) -> Cell {
    match online.as_bool() {
        Some(true) => Cell {
            text: "online".to_owned(),
            colour: Some(GREEN),
        },
        Some(false) => Cell {
            text: "offline".to_owned(),
            colour: Some(RED),
        },
        None => Cell::from("-"),
    }
}

fn print_tenants(tenants: &Value) -> Result<()> {
    let tenants = items(tenants)?;
    if tenants.is_empty() {
        println!("No tenants.");
        return Ok(());
    }
    let rows: Vec<Vec<Cell>> = tenants
        .iter()
        .map(|t| {
            vec![
                text(&t["name"]).into(),
                text(&t["device_count"]).into(),
                text(&t["online_count"]).into(),
                text(&t["id"]).into(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(&["NAME", "DEVICES", "ONLINE", "ID"], &rows, use_colour())
    );
    Ok(())
}

fn print_devices(devices: &Value) -> Result<()> {
    let devices = items(devices)?;
    if devices.is_empty() {
        println!("No devices. Enrol one with `bulwark tenant enroll-token --tenant NAME`.");
        return Ok(());
    }
    let rows: Vec<Vec<Cell>> = devices
        .iter()
        .map(|d| {
            vec![
                text(&d["id"]).into(),
                text(&d["hostname"]).into(),
                status_cell(&d["online"]),
                text(&d["os"]).into(),
                text(&d["agent_version"]).into(),
                text(&d["last_seen_at"]).into(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &["ID", "HOSTNAME", "STATUS", "OS", "AGENT", "LAST SEEN"],
            &rows,
            use_colour()
        )
    );
    Ok(())
}

/// The trust anchors an enrolment carries, from this machine's pins.
struct PinnedEnrolment {
    root: [u8; 32],
    log_key: String,
}

impl PinnedEnrolment {
    fn install_command(&self, reply: &Value) -> Result<String> {
        let token = reply["token"]
            .as_str()
            .context("the server's reply has no token")?;
        Ok(format!(
            "bulwark-agent enroll --server https://GATEWAY:PORT --token {token} --root {} --log-key {}",
            hex::encode(self.root),
            self.log_key
        ))
    }
}

/// The token's root must be the root this machine pinned for the tenant,
/// and the server's log key the one pinned for the server: the install
/// command then carries the pins, and the agent refuses a token or a
/// server that disagrees with them.
async fn pinned_enrolment(
    session: &Session,
    tenant: &str,
    reply: &Value,
) -> Result<PinnedEnrolment> {
    let token = bulwark_protocol::token::EnrollToken::parse(
        reply["token"]
            .as_str()
            .context("the server's reply has no token")?,
    )
    .context("the server's token is malformed")?;
    let trust = crate::trust::fetch_trust(session, tenant).await?;
    let root = trust
        .fingerprint
        .with_context(|| format!("tenant {tenant} has no trust root yet"))?;
    ensure!(
        token.root_fingerprint == root,
        "STOP: the server issued a token that pins trust root {}, but tenant {tenant}'s root is {} \
         (pinned on this machine). An agent enrolled with it would obey another root: do not use it",
        fingerprint_text(&token.root_fingerprint),
        fingerprint_text(&root)
    );
    let served = session.get("/api/v1/log/key").await?;
    let served = served["vkey"]
        .as_str()
        .context("the server's log key reply has no vkey")?
        .trim()
        .to_owned();
    if let (path, Some(_)) = crate::pins::check_log_key(session.server(), &served)? {
        eprintln!(
            "First use: pinned the log key {served}\n  in {path}. Compare it with the MSP out of band."
        );
    }
    Ok(PinnedEnrolment {
        root,
        log_key: served,
    })
}

fn print_enroll_token(reply: &Value, pinned: &PinnedEnrolment) -> Result<()> {
    let token = reply["token"]
        .as_str()
        .context("the server's reply has no token")?;
    println!(
        "Enrolment token for tenant {} (one use, expires {}):",
        text(&reply["tenant"]),
        text(&reply["expires_at"])
    );
    println!();
    println!("  {token}");
    println!();
    println!(
        "Server CA fingerprint:   {}",
        text(&reply["ca_fingerprint"])
    );
    println!(
        "Tenant root (pinned):    {}",
        fingerprint_text(&pinned.root)
    );
    println!("Log key (pinned):        {}", pinned.log_key);
    println!("On the device, run:");
    println!("  {}", pinned.install_command(reply)?);
    Ok(())
}

fn print_device(device: &Value) -> Result<()> {
    let colour = use_colour();
    let status = status_cell(&device["online"]);
    let status = match (colour, status.colour) {
        (true, Some(code)) => format!("{code}{}{RESET}", status.text),
        _ => status.text,
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", text(&device["hostname"]));
    let fields = [
        ("ID", text(&device["id"])),
        ("Tenant", text(&device["tenant"])),
        ("Status", status),
        ("OS", text(&device["os"])),
        ("Agent", text(&device["agent_version"])),
        ("Enrolled", text(&device["enrolled_at"])),
        ("Last seen", text(&device["last_seen_at"])),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "  {name:<10} {value}");
    }
    match &device["inventory"] {
        Value::Object(sections) => render_inventory(&mut out, sections, unix_now()),
        _ => {
            let _ = writeln!(out, "\nNo inventory reported yet.");
        }
    }
    print!("{out}");
    Ok(())
}

/// The inventory sections people look for, in a fixed order and readable
/// units; sections this version does not know are shown generically.
fn render_inventory(out: &mut String, sections: &serde_json::Map<String, Value>, now: u64) {
    let known = ["system", "cpu", "memory", "disks", "network", "users"];
    let system = &sections["system"];
    if system.is_object() {
        let os = format!(
            "{} {}",
            text(&system["os_name"]),
            text(&system["os_version"])
        );
        let uptime = system["boot_time"].as_u64().map_or_else(
            || "-".to_owned(),
            |boot| human_duration(now.saturating_sub(boot)),
        );
        let _ = writeln!(out, "\nSystem");
        for (name, value) in [
            ("OS", os.trim().to_owned()),
            ("Kernel", text(&system["kernel_version"])),
            ("Arch", text(&system["architecture"])),
            ("Uptime", uptime),
        ] {
            let _ = writeln!(out, "  {name:<10} {value}");
        }
    }
    let cpu = &sections["cpu"];
    let memory = &sections["memory"];
    if cpu.is_object() || memory.is_object() {
        let _ = writeln!(out, "\nCPU and memory");
        if cpu.is_object() {
            let physical = cpu["physical_cores"]
                .as_u64()
                .map_or_else(String::new, |n| format!(" ({n} physical)"));
            let _ = writeln!(
                out,
                "  {:<10} {} · {} cores{physical}",
                "CPU",
                text(&cpu["model"]),
                text(&cpu["logical_cores"])
            );
        }
        if memory.is_object() {
            let used_of = |total: &Value, free: &Value| match (total.as_u64(), free.as_u64()) {
                (Some(total), Some(free)) => format!(
                    "{} used of {}",
                    human_bytes(total.saturating_sub(free)),
                    human_bytes(total)
                ),
                _ => "-".to_owned(),
            };
            let ram = used_of(&memory["total_bytes"], &memory["available_bytes"]);
            let swap = used_of(&memory["swap_total_bytes"], &memory["swap_free_bytes"]);
            let _ = writeln!(out, "  {:<10} {ram}", "Memory");
            let _ = writeln!(out, "  {:<10} {swap}", "Swap");
        }
    }
    if let Some(disks) = sections["disks"].as_array() {
        let _ = writeln!(out, "\nDisks");
        let rows: Vec<Vec<Cell>> = disks
            .iter()
            .map(|d| {
                let used = match (d["total_bytes"].as_u64(), d["available_bytes"].as_u64()) {
                    (Some(total), Some(free)) if total > 0 => {
                        format!("{}%", total.saturating_sub(free) * 100 / total)
                    }
                    _ => "-".to_owned(),
                };
                vec![
                    text(&d["mount_point"]).into(),
                    text(&d["name"]).into(),
                    text(&d["file_system"]).into(),
                    field_text("total_bytes", &d["total_bytes"]).into(),
                    field_text("available_bytes", &d["available_bytes"]).into(),
                    used.into(),
                ]
            })
            .collect();
        let headers = [
            "MOUNT POINT",
            "DEVICE",
            "FILE SYSTEM",
            "SIZE",
            "FREE",
            "USED",
        ];
        indented_table(out, &headers, &rows);
    }
    if let Some(interfaces) = sections["network"].as_array() {
        let _ = writeln!(out, "\nNetwork");
        let rows: Vec<Vec<Cell>> = interfaces
            .iter()
            .map(|n| {
                let mac = n["mac"].as_str().filter(|m| !m.is_empty()).unwrap_or("-");
                let addresses = field_text("addresses", &n["addresses"]);
                let addresses = if addresses.is_empty() {
                    "-".to_owned()
                } else {
                    addresses
                };
                vec![text(&n["name"]).into(), mac.into(), addresses.into()]
            })
            .collect();
        indented_table(out, &["INTERFACE", "MAC", "ADDRESSES"], &rows);
    }
    if let Some(users) = sections["users"].as_array() {
        let _ = writeln!(out, "\nLogged-in users");
        if users.is_empty() {
            let _ = writeln!(out, "  Nobody is logged in.");
        } else {
            let rows: Vec<Vec<Cell>> = users
                .iter()
                .map(|u| {
                    let since = u["login_time"].as_u64().map_or_else(
                        || "-".to_owned(),
                        |t| format!("{} ago", human_duration(now.saturating_sub(t))),
                    );
                    vec![
                        text(&u["name"]).into(),
                        text(&u["terminal"]).into(),
                        text(&u["host"]).into(),
                        since.into(),
                    ]
                })
                .collect();
            indented_table(out, &["USER", "TERMINAL", "FROM", "SINCE"], &rows);
        }
    }
    for (name, section) in sections
        .iter()
        .filter(|(name, _)| !known.contains(&name.as_str()))
    {
        let _ = writeln!(out, "\n{}", title(name));
        render_section(out, section);
    }
}

/// "disk_info" → "Disk info".
fn title(key: &str) -> String {
    let spaced = key.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    }
}

/// An inventory section: an object as `key: value` lines, a list of objects
/// as a table, anything else as its text.
fn render_section(out: &mut String, section: &Value) {
    match section {
        Value::Object(fields) => {
            let width = fields.keys().map(|k| k.len()).max().unwrap_or(0) + 1;
            for (key, value) in fields {
                let _ = writeln!(
                    out,
                    "  {:<width$} {}",
                    format!("{}:", title(key)),
                    field_text(key, value)
                );
            }
        }
        Value::Array(rows) if rows.iter().all(Value::is_object) => {
            if rows.is_empty() {
                let _ = writeln!(out, "  (none)");
                return;
            }
            let mut columns: Vec<&str> = Vec::new();
            for row in rows.iter().filter_map(Value::as_object) {
                for key in row.keys() {
                    if !columns.contains(&key.as_str()) {
                        columns.push(key);
                    }
                }
            }
            let headers: Vec<String> = columns
                .iter()
                .map(|c| c.replace('_', " ").to_uppercase())
                .collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let cells: Vec<Vec<Cell>> = rows
                .iter()
                .map(|row| {
                    columns
                        .iter()
                        .map(|c| Cell::from(field_text(c, &row[*c])))
                        .collect()
                })
                .collect();
            for line in render_table(&headers, &cells, false).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        other => {
            let _ = writeln!(out, "  {}", field_text("", other));
        }
    }
}

fn field_text(key: &str, value: &Value) -> String {
    match value {
        Value::Number(n) if key.ends_with("_bytes") => {
            n.as_u64().map_or_else(|| n.to_string(), human_bytes)
        }
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_is_readable() {
        let inventory = json!({
            "system": {"hostname": "vm", "os_name": "Debian GNU/Linux", "os_version": "12",
                       "kernel_version": "6.1", "architecture": "x86_64", "boot_time": 1000,
                       "agent_version": "0.1.0"},
            "cpu": {"model": "AMD EPYC", "logical_cores": 2, "physical_cores": 2},
            "memory": {"total_bytes": 4096, "available_bytes": 1024,
                       "swap_total_bytes": 0, "swap_free_bytes": 0},
            "disks": [{"name": "/dev/vda", "mount_point": "/", "file_system": "ext4",
                       "total_bytes": 2048, "available_bytes": 1024, "removable": false}],
            "network": [{"name": "lo", "mac": "", "addresses": ["127.0.0.1/8", "::1/128"]}],
            "users": [],
            "future_section": {"answer": 42}
        });
        let mut out = String::new();
        let sections = inventory.as_object().expect("object");
        render_inventory(&mut out, sections, 1000 + 2 * 3600 + 60);
        let expected = "
System
  OS         Debian GNU/Linux 12
  Kernel     6.1
  Arch       x86_64
  Uptime     2 h 1 min

CPU and memory
  CPU        AMD EPYC · 2 cores (2 physical)
  Memory     3.0 KiB used of 4.0 KiB
  Swap       0 B used of 0 B

Disks
  MOUNT POINT  DEVICE    FILE SYSTEM  SIZE     FREE     USED
  /            /dev/vda  ext4         2.0 KiB  1.0 KiB  50%

Network
  INTERFACE  MAC  ADDRESSES
  lo         -    127.0.0.1/8, ::1/128

Logged-in users
  Nobody is logged in.

Future section
  Answer: 42
";
        assert_eq!(out, expected);
    }
}
