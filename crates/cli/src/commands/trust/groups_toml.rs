//! The `[[device_groups]]` of the editable policy, and `bulwark policy
//! set-group` (RFD 0022): groups a check may apply to, each device named by
//! its id and the fingerprint of its key, as the agent knows itself.
//!
//! The server resolves the host names a person types (it is the only one
//! that knows them), so its answer is held to this machine's device pins
//! (`targets::resolve_targets`, as for a job) and shown in full, id and
//! key, before the root holders sign it.

use std::fmt::Write as _;

use bulwark_policy::groups::{DeviceGroup, GroupMember};

use super::*;
use crate::output::Cell;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupDoc {
    pub name: String,
    #[serde(default)]
    pub members: Vec<MemberDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberDoc {
    /// How the signer named the device; shown, never matched.
    pub hostname: String,
    pub device_id: String,
    /// SHA-256 of the device's key, 64 hex digits (`bulwark-agent status`
    /// prints it on the machine as `key hash`).
    pub key: String,
}

pub(crate) fn group_to_doc(group: &DeviceGroup) -> GroupDoc {
    GroupDoc {
        name: group.name.clone(),
        members: group
            .members
            .iter()
            .map(|m| MemberDoc {
                hostname: m.hostname.clone(),
                device_id: m.device_id.clone(),
                key: hex::encode(m.device_key),
            })
            .collect(),
    }
}

pub(crate) fn doc_to_group(doc: &GroupDoc) -> Result<DeviceGroup> {
    Ok(DeviceGroup {
        name: doc.name.trim().to_owned(),
        members: doc
            .members
            .iter()
            .map(|m| {
                Ok(GroupMember {
                    device_id: m.device_id.trim().to_owned(),
                    device_key: crate::pins::parse_device_key(m.key.trim())
                        .with_context(|| format!("group {:?}, device {}", doc.name, m.device_id))?,
                    hostname: m.hostname.trim().to_owned(),
                })
            })
            .collect::<Result<_>>()?,
    })
}

/// A group as people check it before signing: every member's host name,
/// id and key, and the checks that will run on it.
pub(crate) fn group_lines(policy: &Policy, group: &DeviceGroup) -> String {
    let mut out = String::new();
    let checks: Vec<&str> = policy
        .checks()
        .iter()
        .filter(|c| c.groups.as_ref().is_some_and(|g| g.contains(&group.name)))
        .map(|c| c.name.as_str())
        .collect();
    let _ = writeln!(
        out,
        "  group {} ({} device{}){}",
        group.name,
        group.members.len(),
        if group.members.len() == 1 { "" } else { "s" },
        if checks.is_empty() {
            String::new()
        } else {
            format!(": checks {}", checks.join(", "))
        }
    );
    for m in &group.members {
        let _ = writeln!(
            out,
            "    {}  {}  key {}",
            Cell::from(m.hostname.as_str()).text,
            Cell::from(m.device_id.as_str()).text,
            hex::encode(m.device_key)
        );
    }
    out
}

/// `policy` with group `name` holding exactly `members` (added, or
/// replacing a group of that name).
pub(crate) fn with_group(policy: &mut Policy, name: &str, members: Vec<GroupMember>) {
    let group = DeviceGroup {
        name: name.to_owned(),
        members,
    };
    let groups = policy.device_groups.get_or_insert_with(Vec::new);
    match groups.iter_mut().find(|g| g.name == name) {
        Some(existing) => *existing = group,
        None => groups.push(group),
    }
}

/// `bulwark policy set-group`: resolves `devices` through the server, held
/// to this machine's pins, shows the group as it will be signed, and
/// publishes (or proposes) the next policy version.
pub(super) async fn set_group(
    tenant: &str,
    name: &str,
    devices: &[String],
    otp: Option<&str>,
) -> Result<()> {
    let session = Session::load()?;
    let trust = fetch_trust(&session, tenant).await?;
    let mut policy = next_policy(&trust, tenant)?;
    let targets = crate::commands::targets::resolve_targets(
        &session,
        tenant,
        crate::commands::targets::Targets::Named(devices),
    )
    .await?;
    let mut members = Vec::new();
    for t in targets {
        // resolve_targets refuses a device the server lists without a key.
        let key = t
            .device_key
            .with_context(|| format!("device {} has no key", t.device_id))?;
        members.push(GroupMember {
            device_id: t.device_id,
            device_key: key,
            hostname: t.hostname,
        });
    }
    with_group(&mut policy, name, members);
    policy
        .validate(&bulwark_policy::Limits::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let group = policy
        .device_groups()
        .iter()
        .find(|g| g.name == name)
        .context("the group just set")?;
    print!(
        "Policy version {} of tenant {tenant} will hold (signed as shown: the agents match id and key):\n{}",
        policy.version,
        group_lines(&policy, group)
    );
    publish_policy(&session, tenant, &trust, &policy, otp).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_survives_the_toml_round_trip_and_bad_keys_are_refused() {
        let group = DeviceGroup {
            name: "servers".into(),
            members: vec![GroupMember {
                device_id: "00000000-0000-4000-8000-000000000001".into(),
                device_key: [7; 32],
                hostname: "web-1".into(),
            }],
        };
        let doc = group_to_doc(&group);
        let text = toml::to_string(&doc).expect("toml");
        let back: GroupDoc = toml::from_str(&text).expect("parsed");
        assert_eq!(doc_to_group(&back).expect("group"), group);
        let mut short = back.clone();
        short.members[0].key = "abcd".into();
        assert!(doc_to_group(&short).is_err());
    }

    #[test]
    fn set_group_replaces_a_group_of_the_same_name() {
        let mut policy = default_policy("t", "acme", Vec::new(), 0);
        let member = |n: u8| GroupMember {
            device_id: format!("id-{n}"),
            device_key: [n; 32],
            hostname: format!("host-{n}"),
        };
        with_group(&mut policy, "a", vec![member(1)]);
        with_group(&mut policy, "b", vec![member(2)]);
        with_group(&mut policy, "a", vec![member(3)]);
        let groups = policy.device_groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].members, [member(3)]);
        let shown = group_lines(&policy, &groups[0]);
        assert!(shown.contains("host-3  id-3  key 0303"), "{shown}");
    }
}
