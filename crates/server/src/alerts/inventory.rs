//! Alerts from what a device's inventory changed (issue 15): a new
//! listening port and a change of local administrators are how a
//! compromise often shows, so each raises a warning for the device's
//! tenant. Pure: the gateway stores the report, gets the changes from the
//! store ([`bulwark_store::SecurityChanges`]) and raises what
//! [`inventory_alerts`] returns; a device's first report raises nothing.
//!
//! These are the server's own observations, like a device gone silent:
//! raised directly, not from a log entry.

use std::collections::BTreeSet;

use bulwark_protocol::inventory::{ListeningPort, LocalAdmin};
use bulwark_store::{NewAlert, SecurityChanges, Severity};
use sha2::{Digest, Sha256};

pub const NEW_LISTENING_PORT: &str = "inventory.new_listening_port";
pub const ADMINS_CHANGED: &str = "inventory.admins_changed";

/// Most new ports raised one by one from one report; more are one alert.
pub const MAX_PORT_ALERTS: usize = 8;

/// `tcp 0.0.0.0:22`, `udp [::]:546`.
fn endpoint(p: &ListeningPort) -> String {
    if p.address.contains(':') {
        format!("{} [{}]:{}", p.protocol, p.address, p.port)
    } else {
        format!("{} {}:{}", p.protocol, p.address, p.port)
    }
}

fn loopback(address: &str) -> bool {
    address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback() || matches!(a, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())))
}

/// The alerts `changes` raise for a device.
pub fn inventory_alerts(
    device_id: &str,
    tenant_id: &str,
    hostname: &str,
    changes: &SecurityChanges,
) -> Vec<NewAlert> {
    let alert =
        |kind: &str, severity, dedup_key: String, summary: String, detail: String| NewAlert {
            tenant_id: Some(tenant_id.to_owned()),
            device_id: Some(device_id.to_owned()),
            kind: kind.to_owned(),
            severity,
            dedup_key,
            summary,
            detail,
            log_id: None,
            log_idx: None,
            // Security findings: never silenced by a maintenance window.
            silenced: None,
        };
    let mut alerts = Vec::new();
    if let Some((before, after)) = &changes.listening_ports {
        let known: BTreeSet<(&str, &str, u16)> = before
            .iter()
            .map(|p| (p.protocol.as_str(), p.address.as_str(), p.port))
            .collect();
        let new: Vec<&ListeningPort> = after
            .iter()
            .filter(|p| !known.contains(&(p.protocol.as_str(), p.address.as_str(), p.port)))
            .collect();
        let owner = |p: &ListeningPort| match (&p.process, p.pid) {
            (Some(name), Some(pid)) => format!("{name} (pid {pid})"),
            (Some(name), None) => name.clone(),
            (None, _) => "a process the agent could not see".to_owned(),
        };
        for p in new.iter().take(MAX_PORT_ALERTS) {
            let at = endpoint(p);
            // Reachable from the network or only from the device itself.
            let severity = if loopback(&p.address) {
                Severity::Info
            } else {
                Severity::Warning
            };
            alerts.push(alert(
                NEW_LISTENING_PORT,
                severity,
                format!("{NEW_LISTENING_PORT}:{device_id}:{at}"),
                format!("New listening port {at} on {hostname}"),
                format!(
                    "The agent of {hostname} ({device_id}) reports {} listening on {at}, which it did not report before. \
                     If nobody installed or started it, look at the device.",
                    owner(p)
                ),
            ));
        }
        if new.len() > MAX_PORT_ALERTS {
            let rest: Vec<String> = new[MAX_PORT_ALERTS..].iter().map(|p| endpoint(p)).collect();
            alerts.push(alert(
                NEW_LISTENING_PORT,
                Severity::Warning,
                format!("{NEW_LISTENING_PORT}:{device_id}:more"),
                format!("{} more new listening ports on {hostname}", rest.len()),
                format!("Also new on {hostname} ({device_id}): {}.", rest.join(", ")),
            ));
        }
    }
    if let Some((before, after)) = &changes.local_admins {
        let describe = |a: &LocalAdmin| {
            let how: Vec<String> = a
                .grants
                .iter()
                .map(|g| {
                    if g.via.is_empty() {
                        g.kind.clone()
                    } else {
                        format!("{} {}", g.kind, g.via)
                    }
                })
                .collect();
            format!("{} ({})", a.name, how.join(", "))
        };
        let names = |list: &[LocalAdmin]| -> BTreeSet<String> {
            list.iter().map(|a| a.name.clone()).collect()
        };
        let (was, now) = (names(before), names(after));
        let added: Vec<String> = after
            .iter()
            .filter(|a| !was.contains(&a.name))
            .map(describe)
            .collect();
        let removed: Vec<&String> = was.difference(&now).collect();
        let regranted: Vec<String> = after
            .iter()
            .filter(|a| {
                before
                    .iter()
                    .any(|b| b.name == a.name && b.grants != a.grants)
            })
            .map(describe)
            .collect();
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("added {}", added.join("; ")));
        }
        if !removed.is_empty() {
            let removed: Vec<&str> = removed.iter().map(|s| s.as_str()).collect();
            parts.push(format!("removed {}", removed.join(", ")));
        }
        if !regranted.is_empty() {
            parts.push(format!("now {}", regranted.join("; ")));
        }
        // One alert per resulting set: the same change seen again counts
        // as an occurrence, a further change opens another alert.
        let mut hash = Sha256::new();
        for a in after {
            hash.update(describe(a).as_bytes());
            hash.update([0]);
        }
        let digest = hex::encode(&hash.finalize()[..8]);
        alerts.push(alert(
            ADMINS_CHANGED,
            Severity::Warning,
            format!("{ADMINS_CHANGED}:{device_id}:{digest}"),
            format!("Administrators changed on {hostname}"),
            format!(
                "The accounts that can act as root on {hostname} ({device_id}) changed: {}.",
                parts.join("; ")
            ),
        ));
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_protocol::inventory::AdminGrant;

    fn port(address: &str, port: u16) -> ListeningPort {
        ListeningPort {
            protocol: "tcp".into(),
            address: address.into(),
            port,
            process: Some("nc".into()),
            pid: Some(4242),
        }
    }

    fn admin(name: &str, kind: &str, via: &str) -> LocalAdmin {
        LocalAdmin {
            name: name.into(),
            grants: vec![AdminGrant {
                kind: kind.into(),
                via: via.into(),
            }],
        }
    }

    fn check(changes: SecurityChanges, expect: &[(&str, &str, &str)]) {
        let got: Vec<(String, String, String)> = inventory_alerts("d1", "t1", "web-1", &changes)
            .into_iter()
            .map(|a| {
                assert_eq!(a.tenant_id.as_deref(), Some("t1"));
                assert_eq!(a.device_id.as_deref(), Some("d1"));
                (a.severity.as_str().to_owned(), a.dedup_key, a.summary)
            })
            .collect();
        let expect: Vec<(String, String, String)> = expect
            .iter()
            .map(|(s, k, m)| (s.to_string(), k.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn nothing_changed_raises_nothing() {
        check(SecurityChanges::default(), &[]);
        // A port gone is not an alert.
        check(
            SecurityChanges {
                listening_ports: Some((vec![port("0.0.0.0", 22)], vec![])),
                local_admins: None,
            },
            &[],
        );
    }

    #[test]
    fn each_new_port_is_an_alert_loopback_ones_informational() {
        check(
            SecurityChanges {
                listening_ports: Some((
                    vec![port("0.0.0.0", 22)],
                    vec![
                        port("0.0.0.0", 22),
                        port("0.0.0.0", 4444),
                        port("::", 4444),
                        port("127.0.0.1", 8080),
                        port("::ffff:127.0.0.1", 8443),
                    ],
                )),
                local_admins: None,
            },
            &[
                (
                    "warning",
                    "inventory.new_listening_port:d1:tcp 0.0.0.0:4444",
                    "New listening port tcp 0.0.0.0:4444 on web-1",
                ),
                (
                    "warning",
                    "inventory.new_listening_port:d1:tcp [::]:4444",
                    "New listening port tcp [::]:4444 on web-1",
                ),
                (
                    "info",
                    "inventory.new_listening_port:d1:tcp 127.0.0.1:8080",
                    "New listening port tcp 127.0.0.1:8080 on web-1",
                ),
                (
                    "info",
                    "inventory.new_listening_port:d1:tcp [::ffff:127.0.0.1]:8443",
                    "New listening port tcp [::ffff:127.0.0.1]:8443 on web-1",
                ),
            ],
        );
    }

    #[test]
    fn many_new_ports_are_bounded() {
        let after: Vec<ListeningPort> = (1..=20).map(|p| port("0.0.0.0", p)).collect();
        let alerts = inventory_alerts(
            "d1",
            "t1",
            "web-1",
            &SecurityChanges {
                listening_ports: Some((vec![], after)),
                local_admins: None,
            },
        );
        assert_eq!(alerts.len(), MAX_PORT_ALERTS + 1);
        assert_eq!(
            alerts[MAX_PORT_ALERTS].summary,
            "12 more new listening ports on web-1"
        );
    }

    #[test]
    fn admin_changes_say_who_and_how() {
        let before = vec![admin("bob", "group", "sudo"), admin("root", "uid0", "")];
        let after = vec![
            admin("eve", "sudoers", "/etc/sudoers.d/x:1"),
            admin("root", "gid0", ""),
        ];
        let alerts = inventory_alerts(
            "d1",
            "t1",
            "web-1",
            &SecurityChanges {
                listening_ports: None,
                local_admins: Some((before.clone(), after.clone())),
            },
        );
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.kind, ADMINS_CHANGED);
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(
            a.detail,
            "The accounts that can act as root on web-1 (d1) changed: added eve (sudoers \
             /etc/sudoers.d/x:1); removed bob; now root (gid0)."
        );
        // The same resulting set has the same key; another set another.
        let again = inventory_alerts(
            "d1",
            "t1",
            "web-1",
            &SecurityChanges {
                listening_ports: None,
                local_admins: Some((vec![], after)),
            },
        );
        assert_eq!(again[0].dedup_key, a.dedup_key);
        let other = inventory_alerts(
            "d1",
            "t1",
            "web-1",
            &SecurityChanges {
                listening_ports: None,
                local_admins: Some((vec![], before)),
            },
        );
        assert_ne!(other[0].dedup_key, a.dedup_key);
    }
}
