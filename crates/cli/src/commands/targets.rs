//! Which devices a job is signed for (`bulwark job run --targets`,
//! `--all`, `--tag`, `--group`).
//!
//! Every way of choosing ends as explicit devices, each named in the signed
//! statement by id, host name and key: an agent runs the job only if they
//! describe it. Tags and groups are the server's word (RFD 0016), so the
//! devices a tag or group resolves to are listed here, host name by host
//! name with the count, before anything is signed; a device the server
//! files under another tenant is refused, and the tenant's fan-out and
//! mass-action rules count exactly the devices listed.
//!
//! Each device's key is held to this machine's pin (`pins::hold_devices`):
//! the server cannot swap a pinned device's key, nor answer a host name the
//! operator typed with another device, without the job stopping unsigned.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail, ensure};
use bulwark_api::devices::DeviceView;
use bulwark_policy::JobTarget;

use crate::client::{Session, path_segment};
use crate::output::Cell;
use crate::pins::{self, DevicePin, NamedBy};

/// Which devices a job is for.
pub(crate) enum Targets<'a> {
    /// By id or host name.
    Named(&'a [String]),
    /// Every device the tenant has.
    All,
    /// The tenant's devices carrying every tag and in the group (the
    /// server's answer, shown before signing).
    Labelled {
        tags: &'a [String],
        group: Option<&'a str>,
    },
}

/// The devices the server listed for a tag or group of `tenant`, checked:
/// every one must be filed under `tenant` (a device of another tenant is
/// refused, naming it), and there must be one at least. Returns the ids
/// and the list people read before signing.
pub(crate) fn labelled_devices(
    tenant: &str,
    what: &str,
    devices: &[DeviceView],
) -> Result<(Vec<String>, String)> {
    if let Some(foreign) = devices.iter().find(|d| d.tenant != tenant) {
        bail!(
            "the server listed device {} ({}) of tenant {:?} for {what} in tenant {tenant:?}: refused, nothing signed",
            Cell::from(foreign.id.as_str()).text,
            Cell::from(foreign.hostname.as_str()).text,
            Cell::from(foreign.tenant.as_str()).text,
        );
    }
    ensure!(
        !devices.is_empty(),
        "no device of tenant {tenant} has {what}"
    );
    let mut list = format!(
        "{what} in tenant {tenant}: {} device{} (as the server lists them; the job names exactly these):\n",
        devices.len(),
        if devices.len() == 1 { "" } else { "s" }
    );
    for d in devices {
        let _ = writeln!(
            list,
            "  {}  {}",
            Cell::from(d.hostname.as_str()).text,
            Cell::from(d.id.as_str()).text
        );
    }
    Ok((devices.iter().map(|d| d.id.clone()).collect(), list))
}

fn describe(tags: &[String], group: Option<&str>) -> String {
    let mut parts = Vec::new();
    if !tags.is_empty() {
        parts.push(format!("tag {}", tags.join(" and ")));
    }
    if let Some(group) = group {
        parts.push(format!("group {group:?}"));
    }
    parts.join(", ")
}

/// The targets for the given ids or hostnames, each a device of the tenant,
/// named with the host name and key it was chosen by: an agent runs the job
/// only if they describe it, so a server that maps a name to another device
/// gets a refusal, not a run.
pub(crate) async fn resolve_targets(
    session: &Session,
    tenant: &str,
    wanted: Targets<'_>,
) -> Result<Vec<JobTarget>> {
    let devices: Vec<DeviceView> = session
        .get(&format!(
            "/api/v1/tenants/{}/devices",
            path_segment(tenant)?
        ))
        .await?;
    let chosen: Vec<String>;
    let wanted = match wanted {
        Targets::Named(names) => names,
        Targets::All => {
            chosen = devices.iter().map(|d| d.id.clone()).collect();
            ensure!(!chosen.is_empty(), "tenant {tenant} has no devices");
            eprintln!("All {} devices of tenant {tenant}.", chosen.len());
            &chosen
        }
        Targets::Labelled { tags, group } => {
            let search = super::fleet::Search {
                tenant: Some(tenant.to_owned()),
                tags: tags.to_vec(),
                group: group.map(str::to_owned),
                ..super::fleet::Search::default()
            };
            let found = super::fleet::find(session, &search).await?;
            let (ids, list) = labelled_devices(tenant, &describe(tags, group), &found)?;
            eprint!("{list}");
            chosen = ids;
            &chosen
        }
    };
    let mut ids = Vec::new();
    let mut chosen_pins = Vec::new();
    for want in wanted.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
        let matches: Vec<&DeviceView> = devices
            .iter()
            .filter(|d| d.id == want || d.hostname == want)
            .collect();
        match matches.as_slice() {
            [one] => {
                let hostname = one.hostname.clone();
                ensure!(
                    want == one.id || want.eq_ignore_ascii_case(&hostname),
                    "the server answered {want:?} with device {} called {hostname:?}",
                    one.id
                );
                // Without its key a job runs on whichever machine answers to
                // the id and name; the server may not leave it out.
                let key = pins::parse_device_key(&one.key_fingerprint).with_context(|| {
                    format!(
                        "the server listed device {} ({hostname}) without a valid key: refused, nothing signed",
                        one.id
                    )
                })?;
                let named_by = if want == one.id {
                    NamedBy::Other
                } else {
                    NamedBy::Hostname
                };
                chosen_pins.push((
                    DevicePin {
                        device_id: one.id.clone(),
                        key,
                        hostname: hostname.clone(),
                    },
                    named_by,
                ));
                ids.push(JobTarget {
                    device_id: one.id.clone(),
                    hostname,
                    device_key: Some(key),
                })
            }
            [] => bail!("no device {want:?} in tenant {tenant}"),
            _ => bail!("several devices are called {want:?}: name them by id"),
        }
    }
    ids.sort();
    ids.dedup_by(|a, b| a.device_id == b.device_id);
    ensure!(!ids.is_empty(), "no targets given");
    pins::hold_devices(session.server(), tenant, &chosen_pins)?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, tenant: &str, hostname: &str) -> DeviceView {
        serde_json::from_value(serde_json::json!({
            "id": id, "tenant": tenant, "hostname": hostname, "key_fingerprint": "",
            "agent_version": "0.1.0", "online": true, "last_seen_at": null,
            "enrolled_at": "2026-12-06T00:00:00Z", "os": null
        }))
        .expect("a device view")
    }

    #[test]
    fn a_tag_lists_every_device_and_refuses_another_tenants() {
        let devices = [
            device("a", "acme", "web-1"),
            device("b", "acme", "web\u{1b}[2J"),
        ];
        let (ids, list) = labelled_devices("acme", "tag finance", &devices).expect("listed");
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            list,
            "tag finance in tenant acme: 2 devices (as the server lists them; the job names exactly these):\n  web-1  a\n  web\u{fffd}[2J  b\n"
        );
        let smuggled = [device("a", "acme", "web-1"), device("g", "globex", "pos-1")];
        let refused = labelled_devices("acme", "tag finance", &smuggled).expect_err("refused");
        assert!(
            refused
                .to_string()
                .contains("g (pos-1) of tenant \"globex\""),
            "{refused}"
        );
        assert!(labelled_devices("acme", "tag x", &[]).is_err());
        assert_eq!(
            describe(&["finance".into(), "server".into()], Some("HQ")),
            "tag finance and server, group \"HQ\""
        );
    }
}
