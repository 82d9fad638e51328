//! `bulwark device …`: a tenant's devices, and one device (by id or host
//! name) with its inventory, as their agents reported them.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail, ensure};
use bulwark_api::devices::{DevicePackagesView, DeviceView, InventoryView};
use bulwark_api::tenants::TenantView;
use bulwark_server::console::human_bytes;

use crate::client::*;
use crate::commands::device_sections::{Section, render as render_section};
use crate::output::*;

/// `bulwark device …`.
pub async fn run(command: DeviceCommand) -> Result<()> {
    match command {
        DeviceCommand::List {
            tenant,
            search,
            tags,
            group,
            online,
            offline,
            json,
        } => {
            let search = super::fleet::Search {
                tenant,
                text: search,
                tags,
                group,
                online: match (online, offline) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            super::fleet::list(search, json).await
        }
        DeviceCommand::Tag {
            device,
            tenant,
            add,
            remove,
            json,
        } => super::fleet::tag(device, tenant, add, remove, json).await,
        DeviceCommand::Group {
            device,
            tenant,
            group,
            none,
            json,
        } => {
            ensure!(group.is_some() != none, "name a group, or --none");
            super::fleet::group(device, tenant, group, json).await
        }
        DeviceCommand::Pins { tenant } => {
            let session = Session::load()?;
            let pins = crate::pins::device_pins(session.server(), &tenant)?;
            if pins.is_empty() {
                println!("No device of tenant {tenant} is pinned on this machine yet.");
                return Ok(());
            }
            let rows: Vec<Vec<Cell>> = pins
                .iter()
                .map(|p| {
                    vec![
                        Cell::from(p.hostname.as_str()),
                        Cell::from(p.device_id.as_str()),
                        Cell::from(hex::encode(p.key)),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(&["HOST NAME", "DEVICE", "KEY HASH"], &rows, use_colour())
            );
            Ok(())
        }
        DeviceCommand::Pin {
            device,
            tenant,
            key,
        } => {
            let read_on_machine = crate::pins::parse_device_key(key.trim())
                .context("--key: the `key hash` `bulwark-agent status` prints")?;
            let session = Session::load()?;
            let id = device_id(&session, device, Some(&tenant)).await?;
            let view: DeviceView = session
                .get(&format!("/api/v1/devices/{}", path_segment(&id)?))
                .await?;
            ensure!(
                view.tenant == tenant,
                "STOP: the server says device {} is in tenant {:?}, not {tenant:?}. Nothing was pinned.",
                view.id,
                view.tenant
            );
            let served = crate::pins::parse_device_key(&view.key_fingerprint).ok();
            ensure!(
                served == Some(read_on_machine),
                "STOP: the server shows key {} for {} ({}), but the machine's agent says {}. \
                 Either the server is connected to another machine under that name, or it is \
                 lying about the key. Nothing was pinned.",
                served.map_or("(none)".into(), hex::encode),
                view.hostname,
                view.id,
                hex::encode(read_on_machine)
            );
            let pin = crate::pins::DevicePin {
                device_id: view.id.clone(),
                key: read_on_machine,
                hostname: view.hostname.clone(),
            };
            let (removed, path) = crate::pins::replace_device(session.server(), &tenant, &pin)?;
            for old in &removed {
                println!(
                    "Unpinned {} ({}) key {}",
                    old.hostname,
                    old.device_id,
                    hex::encode(old.key)
                );
            }
            println!(
                "Pinned {} ({}) to key {}\n  in {}",
                pin.hostname,
                pin.device_id,
                hex::encode(pin.key),
                path.display()
            );
            Ok(())
        }
        DeviceCommand::Forget { device, tenant } => {
            let session = Session::load()?;
            let (removed, path) = crate::pins::forget_device(session.server(), &tenant, &device)?;
            for old in &removed {
                println!(
                    "Forgot {} ({}) key {}",
                    old.hostname,
                    old.device_id,
                    hex::encode(old.key)
                );
            }
            println!(
                "  in {}\nThe next job or shell pins the key the server shows then: compare it \
                 with the `key hash` `bulwark-agent status` prints on the machine.",
                path.display()
            );
            Ok(())
        }
        DeviceCommand::Show {
            device,
            tenant,
            json,
        } => {
            let session = Session::load()?;
            let id = device_id(&session, device, tenant.as_deref()).await?;
            let device: DeviceView = session
                .get(&format!("/api/v1/devices/{}", path_segment(&id)?))
                .await?;
            if json {
                print_json(&device)
            } else {
                print_device(&device)
            }
        }
        DeviceCommand::Packages {
            device,
            tenant,
            search,
            json,
        } => {
            let session = Session::load()?;
            let id = device_id(&session, device, tenant.as_deref()).await?;
            let mut path = format!("/api/v1/devices/{}/packages", path_segment(&id)?);
            if let Some(search) = &search {
                path.push_str("?q=");
                path.push_str(&super::fleet::query_value(search));
            }
            let packages: DevicePackagesView = session.get(&path).await?;
            if json {
                print_json(&packages)
            } else {
                print!("{}", render_packages(&packages, search.as_deref()));
                Ok(())
            }
        }
        DeviceCommand::Checks {
            device,
            tenant,
            json,
        } => {
            let session = Session::load()?;
            let id = device_id(&session, device, tenant.as_deref()).await?;
            let path = format!("/api/v1/devices/{}/checks", path_segment(&id)?);
            let view: bulwark_api::checks::DeviceChecksView = session.get(&path).await?;
            if json {
                return print_json(&view);
            }
            // Which tenant a device is in is the server's word: when the
            // operator named the tenant, a device the server files under
            // another one is refused, not shown against that one's policy.
            if let Some(asked) = tenant.as_deref()
                && asked != view.tenant
            {
                bail!(
                    "the server says device {} is in tenant {:?}, not {asked:?}",
                    view.device_id,
                    view.tenant
                );
            }
            // The list of checks is the verified policy's, not the server's;
            // which of them are this device's, the agent's own function
            // decides, with the key this machine pinned for the device.
            let trust = crate::commands::trust::fetch_trust(&session, &view.tenant).await?;
            let policy = trust.policy.as_ref();
            let key = super::checks::device_key(session.server(), &view)?;
            let mine: Vec<bulwark_policy::CheckDefinition> = policy
                .map(|p| {
                    let me = bulwark_policy::DeviceIdentity {
                        device_id: &view.device_id,
                        device_key: &key,
                    };
                    bulwark_policy::checks_for(p, me)
                        .into_iter()
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            print!(
                "{}",
                super::checks::render(policy.map(|p| p.version), &mine, &view, use_colour())
            );
            let elsewhere = policy.map_or(0, |p| p.checks().len()) - mine.len();
            if elsewhere > 0 {
                println!(
                    "{elsewhere} check(s) of the policy are on device groups this device is not in \
                     (`bulwark policy show --tenant {}` lists the groups).",
                    view.tenant
                );
            }
            Ok(())
        }
        DeviceCommand::Ports {
            device,
            tenant,
            json,
        } => print_section(device, tenant, json, Section::Ports).await,
        DeviceCommand::Admins {
            device,
            tenant,
            json,
        } => print_section(device, tenant, json, Section::Admins).await,
        DeviceCommand::Services {
            device,
            tenant,
            json,
        } => print_section(device, tenant, json, Section::Services).await,
        DeviceCommand::Processes {
            device,
            tenant,
            json,
        } => print_section(device, tenant, json, Section::Processes).await,
        DeviceCommand::Updates {
            device,
            tenant,
            json,
        } => print_section(device, tenant, json, Section::Updates).await,
        DeviceCommand::Vulns {
            device,
            tenant,
            json,
        } => {
            let session = Session::load()?;
            let id = device_id(&session, device, tenant.as_deref()).await?;
            let path = format!("/api/v1/devices/{}/vulnerabilities", path_segment(&id)?);
            let view: bulwark_api::vulndb::DeviceVulnerabilitiesView = session.get(&path).await?;
            if json {
                print_json(&view)
            } else {
                print!("{}", super::vulns::render_device(&view));
                Ok(())
            }
        }
    }
}

/// One section of a device's inventory (`bulwark device ports` and its
/// siblings); `--json` prints the section as the API gives it.
async fn print_section(
    device: String,
    tenant: Option<String>,
    json: bool,
    section: Section,
) -> Result<()> {
    let session = Session::load()?;
    let id = device_id(&session, device, tenant.as_deref()).await?;
    let view: DeviceView = session
        .get(&format!("/api/v1/devices/{}", path_segment(&id)?))
        .await?;
    let inventory = view.inventory.as_ref();
    if json {
        let value = match section {
            Section::Ports => {
                serde_json::to_value(inventory.and_then(|i| i.listening_ports.as_ref()))?
            }
            Section::Admins => {
                serde_json::to_value(inventory.and_then(|i| i.local_admins.as_ref()))?
            }
            Section::Services => serde_json::to_value(inventory.and_then(|i| i.services.as_ref()))?,
            Section::Processes => {
                serde_json::to_value(inventory.and_then(|i| i.processes.as_ref()))?
            }
            Section::Updates => {
                serde_json::to_value(inventory.and_then(|i| i.pending_updates.as_ref()))?
            }
        };
        return print_json(&value);
    }
    print!("{}", render_section(&view.hostname, inventory, section));
    Ok(())
}

fn render_packages(view: &DevicePackagesView, search: Option<&str>) -> String {
    let mut out = String::new();
    let what = match search {
        Some(text) => format!("{} packages matching {text:?}", view.total),
        None => format!("{} packages installed", view.total),
    };
    let _ = writeln!(out, "{}: {}", Cell::from(view.hostname.as_str()).text, what);
    let rows: Vec<Vec<Cell>> = view
        .packages
        .iter()
        .map(|p| {
            let source = if p.source == p.name && p.source_version == p.version {
                "-".to_owned()
            } else {
                format!("{} {}", p.source, p.source_version)
            };
            vec![
                p.name.as_str().into(),
                p.version.as_str().into(),
                p.architecture.as_str().into(),
                source.into(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&render_table(
            &["NAME", "VERSION", "ARCH", "SOURCE"],
            &rows,
            false,
        ));
    }
    if (view.packages.len() as u64) < view.total {
        let _ = writeln!(out, "(first {} shown)", view.packages.len());
    }
    out
}

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// List devices across every tenant you may see (or one), found by
    /// text, tags, group and status.
    List {
        /// Only this tenant's devices.
        #[arg(long)]
        tenant: Option<String>,
        /// Text in the host name, OS or an IP address, or the start of the
        /// device id (any case).
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// Devices carrying this tag (repeat, or comma separated: all must match).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Devices in this group.
        #[arg(long)]
        group: Option<String>,
        /// Online devices only.
        #[arg(long, conflicts_with = "offline")]
        online: bool,
        /// Offline devices only.
        #[arg(long)]
        offline: bool,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add or remove a device's tags (letters, digits, '-', '_', '.').
    Tag {
        /// Device id or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// A tag to add (repeat, or comma separated).
        #[arg(long, value_name = "TAG")]
        add: Vec<String>,
        /// A tag to remove (repeat, or comma separated).
        #[arg(long, value_name = "TAG")]
        remove: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Put a device into a group of its tenant (a site or department), or
    /// take it out of its group with --none.
    Group {
        /// Device id or host name.
        device: String,
        /// The group ("HQ", "Branch Leeds").
        #[arg(conflicts_with = "none")]
        group: Option<String>,
        /// Take the device out of its group.
        #[arg(long)]
        none: bool,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one device with its inventory.
    Show {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only (default: every
        /// tenant you may see).
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the software installed on one device, as its agent reported it.
    Packages {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// Only packages whose name contains this text (any case).
        #[arg(long)]
        search: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the ports a device listens on (TCP and UDP), with the process
    /// behind each, as its agent reported them.
    Ports {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the accounts that can act as root on a device (uid 0, groups
    /// sudo, wheel and admin, sudoers rules) and how.
    Admins {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List a device's systemd services and their states.
    Services {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List what runs on a device: the largest programs by memory, from a
    /// snapshot its agent takes every 15 minutes.
    Processes {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the updates apt would install on a device (a simulated
    /// upgrade its agent runs), security updates first.
    Updates {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a device's monitoring checks: those of the tenant's policy,
    /// verified here against its root, with the states its agent reported.
    Checks {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON (the server's answer only) instead.
        #[arg(long)]
        json: bool,
    },
    /// List the device keys this machine pinned for a tenant: `job run`,
    /// `job approve` and `shell` stop when the server shows another key.
    Pins {
        #[arg(long)]
        tenant: String,
    },
    /// Pin a device to the key read on the machine itself (`bulwark-agent
    /// status` prints it as `key hash`), replacing its old pin: after a
    /// re-install, or to pin before first use. Nothing is pinned unless the
    /// server shows that same key.
    Pin {
        /// Device id or host name.
        device: String,
        #[arg(long)]
        tenant: String,
        /// The `key hash` the machine's agent prints (64 hex digits).
        #[arg(long)]
        key: String,
    },
    /// Forget a device's pin (by id or host name): the next job pins the
    /// key the server shows then, on trust. `device pin --key` is safer.
    Forget {
        /// Device id or host name, as pinned.
        device: String,
        #[arg(long)]
        tenant: String,
    },
    /// List a device's open vulnerabilities (its packages against the
    /// imported database), highest score first.
    Vulns {
        /// Device id (from `bulwark device list`) or host name.
        device: String,
        /// Look for the host name in this tenant only.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A device id is a UUID (`8-4-4-4-12` hex digits); anything else is a
/// host name.
fn looks_like_device_id(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The one device named `hostname` (case-insensitively, as DNS does) among
/// `devices`; a name two devices share is refused with their ids, so the
/// operator picks one rather than the CLI guessing.
fn choose_by_hostname<'a>(hostname: &str, devices: &'a [DeviceView]) -> Result<&'a DeviceView> {
    let matching: Vec<&DeviceView> = devices
        .iter()
        .filter(|d| d.hostname.eq_ignore_ascii_case(hostname))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => bail!("no device is named {hostname:?} in the tenants you may see"),
        several => bail!(
            "{} devices are named {hostname:?}; name one by id: {}",
            several.len(),
            several
                .iter()
                .map(|d| format!("{} (tenant {})", d.id, d.tenant))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The id of the device named `device` (an id, or a host name looked up
/// in `tenant` or every tenant the caller may see).
pub(crate) async fn device_id(
    session: &Session,
    device: String,
    tenant: Option<&str>,
) -> Result<String> {
    if looks_like_device_id(&device) {
        Ok(device)
    } else {
        find_by_hostname(session, &device, tenant).await
    }
}

async fn find_by_hostname(
    session: &Session,
    hostname: &str,
    tenant: Option<&str>,
) -> Result<String> {
    let tenants = match tenant {
        Some(name) => vec![name.to_owned()],
        None => session
            .get::<Vec<TenantView>>("/api/v1/tenants")
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect(),
    };
    let mut devices = Vec::new();
    for tenant in tenants {
        let path = format!("/api/v1/tenants/{}/devices", path_segment(&tenant)?);
        devices.extend(session.get::<Vec<DeviceView>>(&path).await?);
    }
    Ok(choose_by_hostname(hostname, &devices)?.id.clone())
}

fn status_cell(online: bool) -> Cell {
    if online {
        Cell {
            text: "online".to_owned(),
            colour: Some(GREEN),
        }
    } else {
        Cell {
            text: "offline".to_owned(),
            colour: Some(RED),
        }
    }
}

fn print_device(device: &DeviceView) -> Result<()> {
    let colour = use_colour();
    let status = status_cell(device.online);
    let status = match (colour, status.colour) {
        (true, Some(code)) => format!("{code}{}{RESET}", status.text),
        _ => status.text,
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", device.hostname);
    let fields = [
        ("ID", device.id.clone()),
        ("Tenant", device.tenant.clone()),
        ("Status", status),
        ("OS", or_dash(device.os.as_deref())),
        ("Agent", device.agent_version.clone()),
        ("Agent hash", or_dash(device.agent_sha256.as_deref())),
        ("Protocol", or_dash(device.protocol_version)),
        ("Enrolled", device.enrolled_at.clone()),
        ("Last seen", or_dash(device.last_seen_at.as_deref())),
        ("Packages", or_dash(device.package_count)),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "  {name:<10} {value}");
    }
    match &device.inventory {
        Some(inventory) => render_inventory(&mut out, inventory, unix_now()),
        None => {
            let _ = writeln!(out, "\nNo inventory reported yet.");
        }
    }
    print!("{out}");
    Ok(())
}

/// The inventory sections people look for, in a fixed order and readable
/// units; a section the agent did not report is left out.
fn render_inventory(out: &mut String, inventory: &InventoryView, now: u64) {
    if let Some(system) = &inventory.system {
        let os = format!("{} {}", system.os_name, system.os_version);
        let uptime = human_duration(now.saturating_sub(system.boot_time));
        let _ = writeln!(out, "\nSystem");
        for (name, value) in [
            ("OS", os.trim()),
            ("Kernel", system.kernel_version.as_str()),
            ("Arch", system.architecture.as_str()),
            ("Uptime", uptime.as_str()),
        ] {
            let _ = writeln!(out, "  {name:<10} {value}");
        }
    }
    let cpu = &inventory.cpu;
    let memory = &inventory.memory;
    if cpu.is_some() || memory.is_some() {
        let _ = writeln!(out, "\nCPU and memory");
        if let Some(cpu) = cpu {
            let physical = cpu
                .physical_cores
                .map_or_else(String::new, |n| format!(" ({n} physical)"));
            let _ = writeln!(
                out,
                "  {:<10} {} · {} cores{physical}",
                "CPU", cpu.model, cpu.logical_cores
            );
        }
        if let Some(memory) = memory {
            let used_of = |total: u64, free: u64| {
                format!(
                    "{} used of {}",
                    human_bytes(total.saturating_sub(free)),
                    human_bytes(total)
                )
            };
            let ram = used_of(memory.total_bytes, memory.available_bytes);
            let swap = used_of(memory.swap_total_bytes, memory.swap_free_bytes);
            let _ = writeln!(out, "  {:<10} {ram}", "Memory");
            let _ = writeln!(out, "  {:<10} {swap}", "Swap");
        }
    }
    if let Some(disks) = &inventory.disks {
        let _ = writeln!(out, "\nDisks");
        let rows: Vec<Vec<Cell>> = disks
            .iter()
            .map(|d| {
                // As df shows them: used and available apart (root's
                // reserve is neither), Use% = used / (used + available).
                vec![
                    d.mount_point.as_str().into(),
                    d.name.as_str().into(),
                    d.file_system.as_str().into(),
                    human_bytes(d.total_bytes).into(),
                    d.used_bytes
                        .map_or_else(|| "-".to_owned(), human_bytes)
                        .into(),
                    human_bytes(d.available_bytes).into(),
                    or_dash(d.use_percent().map(|p| format!("{p}%"))).into(),
                ]
            })
            .collect();
        let headers = [
            "MOUNT POINT",
            "DEVICE",
            "FILE SYSTEM",
            "SIZE",
            "USED",
            "AVAIL",
            "USE%",
        ];
        indented_table(out, &headers, &rows);
    }
    if let Some(interfaces) = &inventory.network {
        let _ = writeln!(out, "\nNetwork");
        let rows: Vec<Vec<Cell>> = interfaces
            .iter()
            .map(|n| {
                let mac = if n.mac.is_empty() { "-" } else { &n.mac };
                let addresses = if n.addresses.is_empty() {
                    "-".to_owned()
                } else {
                    n.addresses.join(", ")
                };
                vec![n.name.as_str().into(), mac.into(), addresses.into()]
            })
            .collect();
        indented_table(out, &["INTERFACE", "MAC", "ADDRESSES"], &rows);
    }
    if let Some(users) = &inventory.users {
        let _ = writeln!(out, "\nLogged-in users");
        if users.is_empty() {
            let _ = writeln!(out, "  Nobody is logged in.");
        } else {
            let rows: Vec<Vec<Cell>> = users
                .iter()
                .map(|u| {
                    let since = format!("{} ago", human_duration(now.saturating_sub(u.login_time)));
                    vec![
                        u.name.as_str().into(),
                        u.terminal.as_str().into(),
                        u.host.as_str().into(),
                        since.into(),
                    ]
                })
                .collect();
            indented_table(out, &["USER", "TERMINAL", "FROM", "SINCE"], &rows);
        }
    }
    if let Some(admins) = &inventory.local_admins {
        let names: Vec<&str> = admins.iter().map(|a| a.name.as_str()).collect();
        let _ = writeln!(out, "\nLocal administrators (bulwark device admins)");
        let _ = writeln!(out, "  {}", Cell::from(names.join(", ")).text);
    }
    let counts = [
        (
            "listening ports",
            "ports",
            inventory.listening_ports.as_ref().map(Vec::len),
        ),
        (
            "services",
            "services",
            inventory.services.as_ref().map(|s| s.units.len()),
        ),
        (
            "processes",
            "processes",
            inventory.processes.as_ref().map(Vec::len),
        ),
    ];
    if counts.iter().any(|(_, _, count)| count.is_some()) {
        let _ = writeln!(out, "\nMore");
    }
    for (what, command, count) in counts {
        if let Some(count) = count {
            let _ = writeln!(out, "  {count} {what}: bulwark device {command}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, tenant: &str, hostname: &str) -> DeviceView {
        DeviceView {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            hostname: hostname.to_owned(),
            key_fingerprint: String::new(),
            agent_version: "0.1.0".to_owned(),
            agent_sha256: None,
            online: true,
            protocol_version: Some(2),
            last_seen_at: None,
            enrolled_at: "2026-12-06T00:00:00Z".to_owned(),
            os: None,
            inventory: None,
            trust: None,
            package_count: None,
            tags: Vec::new(),
            group: None,
        }
    }

    #[test]
    fn a_device_is_named_by_id_or_by_one_host_name() {
        assert!(looks_like_device_id("0f7c2a8e-1b2c-4d3e-8f9a-0b1c2d3e4f5a"));
        assert!(!looks_like_device_id("ws-042"));
        assert!(!looks_like_device_id("0f7c2a8e-1b2c-4d3e-8f9a-0b1c2d3e4f5"));
        let devices = [
            device("a", "acme", "ws-042"),
            device("b", "acme", "WS-043"),
            device("c", "globex", "ws-043"),
        ];
        assert_eq!(
            choose_by_hostname("WS-042", &devices)
                .map(|d| d.id.as_str())
                .ok(),
            Some("a")
        );
        let shared = choose_by_hostname("ws-043", &devices).expect_err("two share it");
        assert!(
            shared
                .to_string()
                .contains("b (tenant acme), c (tenant globex)"),
            "{shared}"
        );
        assert!(choose_by_hostname("ws-999", &devices).is_err());
    }

    #[test]
    fn inventory_is_readable() {
        let inventory: InventoryView = serde_json::from_value(serde_json::json!({
            "system": {"hostname": "vm", "os_name": "Debian GNU/Linux", "os_version": "12",
                       "kernel_version": "6.1", "architecture": "x86_64", "boot_time": 1000,
                       "agent_version": "0.1.0"},
            "cpu": {"model": "AMD EPYC", "logical_cores": 2, "physical_cores": 2},
            "memory": {"total_bytes": 4096, "available_bytes": 1024,
                       "swap_total_bytes": 0, "swap_free_bytes": 0},
            "disks": [{"name": "/dev/vda", "mount_point": "/", "file_system": "ext4",
                       "total_bytes": 2048, "available_bytes": 1024, "removable": false,
                       "used_bytes": 512},
                      {"name": "/dev/vdb", "mount_point": "/old", "file_system": "xfs",
                       "total_bytes": 2048, "available_bytes": 1024, "removable": false}],
            "network": [{"name": "lo", "mac": "", "addresses": ["127.0.0.1/8", "::1/128"]}],
            "users": []
        }))
        .expect("an inventory as the API serves it");
        let mut out = String::new();
        render_inventory(&mut out, &inventory, 1000 + 2 * 3600 + 60);
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
  MOUNT POINT  DEVICE    FILE SYSTEM  SIZE     USED   AVAIL    USE%
  /            /dev/vda  ext4         2.0 KiB  512 B  1.0 KiB  34%
  /old         /dev/vdb  xfs          2.0 KiB  -      1.0 KiB  -

Network
  INTERFACE  MAC  ADDRESSES
  lo         -    127.0.0.1/8, ::1/128

Logged-in users
  Nobody is logged in.
";
        assert_eq!(out, expected);
    }

    #[test]
    fn packages_are_listed_and_hostile_text_is_defused() {
        let view: DevicePackagesView = serde_json::from_value(serde_json::json!({
            "device_id": "d", "hostname": "web\u{1b}[2J-1", "total": 3,
            "packages": [
                {"name": "bsdutils", "version": "1:2.38.1-5", "architecture": "amd64",
                 "source": "util-linux", "source_version": "2.38.1-5"},
                {"name": "evil\u{1b}]0;pwned\u{7}", "version": "1\r", "architecture": "all",
                 "source": "evil\u{1b}]0;pwned\u{7}", "source_version": "1\r"}
            ]
        }))
        .expect("packages as the API serves them");
        let out = render_packages(&view, Some("e"));
        assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
        let expected = "web\u{fffd}[2J-1: 3 packages matching \"e\"
NAME            VERSION     ARCH   SOURCE
bsdutils        1:2.38.1-5  amd64  util-linux 2.38.1-5
evil\u{fffd}]0;pwned\u{fffd}  1\u{fffd}          all    -
(first 2 shown)
";
        assert_eq!(out, expected);
        assert_eq!(
            super::super::fleet::query_value("lib c+6/%"),
            "lib%20c%2B6%2F%25"
        );
    }
}
