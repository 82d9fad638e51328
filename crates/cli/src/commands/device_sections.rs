//! `bulwark device ports|admins|services|processes|updates`: the sections
//! of a device's inventory that answer "what listens, who is root, what
//! runs, what apt would upgrade",
//! read from `GET /api/v1/devices/{id}` and printed as tables. Every text is
//! the agent's: each goes through [`Cell`], which defuses control
//! characters.

use std::fmt::Write as _;

use bulwark_api::devices::InventoryView;
use bulwark_server::console::human_bytes;

use crate::output::*;

/// Which section to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Ports,
    Admins,
    Services,
    Processes,
    Updates,
}

/// `hostname`'s `section`, or a line saying its agent has not reported it
/// (an agent older than these sections never does).
pub fn render(hostname: &str, inventory: Option<&InventoryView>, section: Section) -> String {
    let mut out = String::new();
    let host = Cell::from(hostname).text;
    let not_reported =
        |what: &str| format!("{host}: no {what} reported (the agent may predate them).\n");
    match section {
        Section::Ports => {
            let Some(ports) = inventory.and_then(|i| i.listening_ports.as_ref()) else {
                return not_reported("listening ports");
            };
            let _ = writeln!(out, "{host}: {} listening ports", ports.len());
            let rows: Vec<Vec<Cell>> = ports
                .iter()
                .map(|p| {
                    vec![
                        p.protocol.as_str().into(),
                        p.address.as_str().into(),
                        p.port.to_string().into(),
                        or_dash(p.process.as_deref()).into(),
                        or_dash(p.pid).into(),
                    ]
                })
                .collect();
            indented_table(
                &mut out,
                &["PROTO", "ADDRESS", "PORT", "PROCESS", "PID"],
                &rows,
            );
        }
        Section::Admins => {
            let Some(admins) = inventory.and_then(|i| i.local_admins.as_ref()) else {
                return not_reported("local administrators");
            };
            let _ = writeln!(out, "{host}: {} accounts can act as root", admins.len());
            let rows: Vec<Vec<Cell>> = admins
                .iter()
                .map(|a| {
                    let how: Vec<String> = a
                        .grants
                        .iter()
                        .map(|g| match (g.kind.as_str(), g.via.is_empty()) {
                            ("uid0", _) => "uid 0".to_owned(),
                            ("gid0", _) => "primary group root (gid 0)".to_owned(),
                            ("group", false) => format!("member of {}", g.via),
                            ("sudoers", false) => format!("sudoers rule {}", g.via),
                            (kind, true) => kind.to_owned(),
                            (kind, false) => format!("{kind} {}", g.via),
                        })
                        .collect();
                    vec![a.name.as_str().into(), how.join(", ").into()]
                })
                .collect();
            indented_table(&mut out, &["ACCOUNT", "HOW"], &rows);
        }
        Section::Services => {
            let Some(services) = inventory.and_then(|i| i.services.as_ref()) else {
                return not_reported("services");
            };
            let _ = writeln!(out, "{host}: {} services", services.units.len());
            if !services.systemd_running {
                let _ = writeln!(
                    out,
                    "  systemd is not running on this device: units as found on disk, active state unknown."
                );
            }
            let rows: Vec<Vec<Cell>> = services
                .units
                .iter()
                .map(|u| {
                    vec![
                        u.name.as_str().into(),
                        u.load_state.as_str().into(),
                        u.active_state.as_str().into(),
                        u.sub_state.as_str().into(),
                        u.enabled_state.as_str().into(),
                    ]
                })
                .collect();
            indented_table(
                &mut out,
                &["UNIT", "LOAD", "ACTIVE", "SUB", "ENABLED"],
                &rows,
            );
        }
        Section::Processes => {
            let Some(processes) = inventory.and_then(|i| i.processes.as_ref()) else {
                return not_reported("processes");
            };
            let _ = writeln!(
                out,
                "{host}: the {} largest programs by memory (a snapshot taken every 15 minutes)",
                processes.len()
            );
            let rows: Vec<Vec<Cell>> = processes
                .iter()
                .map(|p| {
                    vec![
                        p.name.as_str().into(),
                        p.count.to_string().into(),
                        human_bytes(p.memory_bytes).into(),
                        p.pid.to_string().into(),
                        p.user.as_str().into(),
                        p.command_line.as_str().into(),
                    ]
                })
                .collect();
            indented_table(
                &mut out,
                &["NAME", "COUNT", "MEMORY", "PID", "USER", "COMMAND LINE"],
                &rows,
            );
        }
        Section::Updates => {
            let Some(updates) = inventory.and_then(|i| i.pending_updates.as_ref()) else {
                return not_reported("pending updates");
            };
            let security = updates.iter().filter(|u| u.security).count();
            let _ = writeln!(
                out,
                "{host}: {} pending updates, {security} from a security suite",
                updates.len()
            );
            let mut updates: Vec<_> = updates.iter().collect();
            updates.sort_by(|a, b| (!a.security, &a.name).cmp(&(!b.security, &b.name)));
            let rows: Vec<Vec<Cell>> = updates
                .iter()
                .map(|u| {
                    vec![
                        u.name.as_str().into(),
                        u.architecture.as_str().into(),
                        or_dash(Some(u.current_version.as_str()).filter(|v| !v.is_empty())).into(),
                        u.new_version.as_str().into(),
                        if u.security { "security" } else { "-" }.into(),
                        u.origin.as_str().into(),
                    ]
                })
                .collect();
            indented_table(
                &mut out,
                &["PACKAGE", "ARCH", "INSTALLED", "NEW", "SECURITY", "FROM"],
                &rows,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> InventoryView {
        serde_json::from_value(serde_json::json!({
            "system": null, "cpu": null, "memory": null, "disks": null, "network": null, "users": null,
            "listening_ports": [
                {"protocol": "tcp", "address": "0.0.0.0", "port": 22, "process": "sshd", "pid": 612},
                {"protocol": "udp", "address": "::", "port": 546, "process": null, "pid": null}
            ],
            "local_admins": [
                {"name": "alice", "grants": [{"kind": "group", "via": "sudo"}, {"kind": "sudoers", "via": "/etc/sudoers:31"}]},
                {"name": "root", "grants": [{"kind": "gid0", "via": ""}, {"kind": "uid0", "via": ""}]}
            ],
            "services": {"systemd_running": false, "units": [
                {"name": "ssh.service", "load_state": "loaded", "active_state": "unknown", "sub_state": "unknown", "enabled_state": "enabled"}
            ]},
            "processes": [
                {"name": "postgres\u{1b}[31m", "pid": 901, "user": "postgres", "command_line": "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", "memory_bytes": 94371840, "count": 7}
            ]
        }))
        .expect("valid view")
    }

    #[test]
    fn sections_are_tables() {
        let i = inventory();
        expect(
            &render("web-1", Some(&i), Section::Ports),
            "web-1: 2 listening ports\n  PROTO  ADDRESS  PORT  PROCESS  PID\n  tcp    0.0.0.0  22    sshd     612\n  udp    ::       546   -        -\n",
        );
        expect(
            &render("web-1", Some(&i), Section::Admins),
            "web-1: 2 accounts can act as root\n  ACCOUNT  HOW\n  alice    member of sudo, sudoers rule /etc/sudoers:31\n  root     primary group root (gid 0), uid 0\n",
        );
        let services = render("web-1", Some(&i), Section::Services);
        assert!(services.contains("systemd is not running"), "{services}");
        assert!(
            services.contains("ssh.service  loaded  unknown"),
            "{services}"
        );
        let processes = render("web-1", Some(&i), Section::Processes);
        assert!(!processes.contains('\u{1b}'), "escape defused: {processes}");
        assert!(
            processes.contains("90.0 MiB") || processes.contains("MiB"),
            "{processes}"
        );
    }

    #[test]
    fn an_old_agent_reported_none() {
        expect(
            &render("web-1", None, Section::Admins),
            "web-1: no local administrators reported (the agent may predate them).\n",
        );
    }

    fn expect(got: &str, want: &str) {
        assert_eq!(got, want, "\n{got}");
    }
}
