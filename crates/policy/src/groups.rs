//! Device groups in the signed policy, and which checks apply to a device
//! (RFD 0022).
//!
//! A group names its members by what an agent can verify about itself: its
//! device id and the fingerprint of its own key. The server's groups and
//! tags (migration 0029) are for finding devices; membership that decides
//! what an endpoint monitors is signed by the tenant's root, so an owned
//! server can move no device into or out of a check.
//!
//! [`checks_for`] is the one place that decides: the agent runs what it
//! returns, the server shows it as the device's expected checks, the CLI
//! lists it.

use std::collections::BTreeSet;

use minicbor::{Decode, Encode};

use crate::Refusal;
use crate::checks::CheckDefinition;
use crate::limits::{Limits, cap};
use crate::policy::Policy;

/// A named set of the tenant's devices.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct DeviceGroup {
    /// Unique within the policy: lowercase letters, digits, `-`, `_`, `.`.
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub members: Vec<GroupMember>,
}

/// One device of a group, as the root holders chose it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct GroupMember {
    /// Canonical UUID text, as the device enrolled.
    #[n(0)]
    pub device_id: String,
    /// [`crate::device_key_fingerprint`] of the device's key: a device id
    /// the server hands to another enrolment does not carry membership.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub device_key: [u8; 32],
    /// The host name the signer saw; shown to people, never matched (a
    /// renamed machine stays in its groups).
    #[n(2)]
    pub hostname: String,
}

/// What an agent knows of itself, and all membership is decided by.
#[derive(Debug, Clone, Copy)]
pub struct DeviceIdentity<'a> {
    pub device_id: &'a str,
    /// [`crate::device_key_fingerprint`] of the device's key.
    pub device_key: &'a [u8; 32],
}

impl GroupMember {
    pub fn is(&self, device: DeviceIdentity<'_>) -> bool {
        self.device_id == device.device_id && self.device_key == *device.device_key
    }
}

/// The names of the policy's groups `device` is a member of.
pub fn groups_of<'a>(policy: &'a Policy, device: DeviceIdentity<'_>) -> BTreeSet<&'a str> {
    policy
        .device_groups()
        .iter()
        .filter(|g| g.members.iter().any(|m| m.is(device)))
        .map(|g| g.name.as_str())
        .collect()
}

/// The checks `device` runs under `policy`, in policy order: those without
/// groups (every device of the tenant) and those on a group it is in.
/// Check names are unique in a valid policy, so a device in several groups
/// never has two checks of one name.
pub fn checks_for<'a>(policy: &'a Policy, device: DeviceIdentity<'_>) -> Vec<&'a CheckDefinition> {
    let mine = groups_of(policy, device);
    policy
        .checks()
        .iter()
        .filter(|c| match &c.groups {
            None => true,
            Some(groups) => groups.iter().any(|g| mine.contains(g.as_str())),
        })
        .collect()
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// Groups well formed, and every group a check names defined (step 1 of
/// policy verification: a check on a group nobody defined would silently
/// run nowhere, so such a policy is refused, by the CLI before signing and
/// by agents after).
pub(crate) fn validate_groups(
    groups: &[DeviceGroup],
    checks: &[CheckDefinition],
    limits: &Limits,
) -> Result<(), Refusal> {
    let malformed = |why: String| Err(Refusal::Malformed(why));
    cap(groups.len(), limits.max_device_groups, "device groups")?;
    let mut names = BTreeSet::new();
    for group in groups {
        cap(group.name.len(), 64, "group name")?;
        if !name_ok(&group.name) {
            return malformed(format!(
                "group name {:?}: use lowercase letters, digits, '-', '_' and '.'",
                group.name
            ));
        }
        if !names.insert(group.name.as_str()) {
            return malformed(format!("group {:?} is defined twice", group.name));
        }
        cap(
            group.members.len(),
            limits.max_group_members,
            "group members",
        )?;
        let mut ids = BTreeSet::new();
        for member in &group.members {
            cap(member.device_id.len(), limits.max_text, "device id")?;
            cap(member.hostname.len(), limits.max_text, "host name")?;
            if member.device_id.is_empty() || member.device_id.chars().any(char::is_control) {
                return malformed(format!("group {:?}: a device id is empty", group.name));
            }
            if member.hostname.chars().any(char::is_control) {
                return malformed(format!(
                    "group {:?}: a host name holds control characters",
                    group.name
                ));
            }
            if !ids.insert(member.device_id.as_str()) {
                return malformed(format!(
                    "group {:?} lists device {} twice",
                    group.name, member.device_id
                ));
            }
        }
    }
    for check in checks {
        let Some(on) = &check.groups else { continue };
        if on.is_empty() {
            return malformed(format!(
                "check {:?} names an empty list of groups (leave groups out for every device)",
                check.name
            ));
        }
        cap(on.len(), limits.max_device_groups, "groups of a check")?;
        for name in on {
            if !names.contains(name.as_str()) {
                return malformed(format!(
                    "check {:?} applies to group {name:?}, which the policy does not define",
                    check.name
                ));
            }
        }
        if on.iter().collect::<BTreeSet<_>>().len() != on.len() {
            return malformed(format!("check {:?} names a group twice", check.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Probe;
    use proptest::prelude::*;

    fn member(n: u8) -> GroupMember {
        GroupMember {
            device_id: format!("00000000-0000-4000-8000-0000000000{n:02x}"),
            device_key: [n; 32],
            hostname: format!("host-{n}"),
        }
    }

    fn check(name: &str, groups: Option<&[&str]>) -> CheckDefinition {
        CheckDefinition {
            name: name.into(),
            probe: Probe::Cpu,
            interval_secs: 60,
            warning: Some(90),
            critical: None,
            for_secs: 0,
            timeout_secs: 10,
            groups: groups.map(|g| g.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    fn policy(groups: Vec<DeviceGroup>, checks: Vec<CheckDefinition>) -> Policy {
        Policy {
            tenant: "t".into(),
            version: 1,
            expires_at: 10,
            operators: vec![],
            quorums: vec![],
            fan_out_limit: 1,
            allowed_scripts: vec![],
            maintenance_windows: vec![],
            tenant_name: None,
            witnessing: None,
            mass_action_delay: None,
            checks: Some(checks),
            revoked_schedules: None,
            device_groups: Some(groups),
            shell_notice: None,
        }
    }

    fn names(policy: &Policy, m: &GroupMember) -> Vec<String> {
        let me = DeviceIdentity {
            device_id: &m.device_id,
            device_key: &m.device_key,
        };
        checks_for(policy, me)
            .into_iter()
            .map(|c| c.name.clone())
            .collect()
    }

    #[test]
    fn a_check_on_a_group_runs_on_its_members_only() {
        let servers = DeviceGroup {
            name: "servers".into(),
            members: vec![member(1)],
        };
        let p = policy(
            vec![servers],
            vec![
                check("cpu-all", None),
                check("cpu-servers", Some(&["servers"])),
            ],
        );
        assert_eq!(p.validate(&Limits::default()), Ok(()));
        assert_eq!(names(&p, &member(1)), ["cpu-all", "cpu-servers"]);
        assert_eq!(names(&p, &member(2)), ["cpu-all"]);
        // The right id with another key (a re-enrolment, or a server that
        // hands the id to its own agent) is not the member.
        let impostor = GroupMember {
            device_key: [9; 32],
            ..member(1)
        };
        assert_eq!(names(&p, &impostor), ["cpu-all"]);
        // Nor is the member's key under another id.
        let moved = GroupMember {
            device_id: member(2).device_id,
            ..member(1)
        };
        assert_eq!(names(&p, &moved), ["cpu-all"]);
    }

    #[test]
    fn groups_are_optional_map_entries() {
        use bulwark_protocol::codec::{from_canonical, to_canonical};
        // Without groups a check is the six entries it always was (name,
        // probe, interval, warning, for, timeout): policies signed before
        // verify unchanged.
        assert_eq!(to_canonical(&check("c", None))[0], 0xa6);
        assert_eq!(to_canonical(&check("c", Some(&["g"])))[0], 0xa7);
        let p = policy(
            vec![DeviceGroup {
                name: "g".into(),
                members: vec![member(1)],
            }],
            vec![check("c", Some(&["g"]))],
        );
        let back: Policy = from_canonical(&to_canonical(&p)).expect("decodes");
        assert_eq!(back, p);
        let without = Policy {
            device_groups: None,
            checks: None,
            ..p
        };
        let back: Policy = from_canonical(&to_canonical(&without)).expect("decodes");
        assert_eq!(back, without);
    }

    #[test]
    fn malformed_groups_are_refused() {
        let limits = Limits::default();
        let g = |name: &str, members: Vec<GroupMember>| DeviceGroup {
            name: name.into(),
            members,
        };
        let refused = |groups: Vec<DeviceGroup>, checks: Vec<CheckDefinition>| {
            let p = policy(groups, checks);
            assert!(
                matches!(
                    p.validate(&limits),
                    Err(Refusal::Malformed(_) | Refusal::TooLarge(_))
                ),
                "{p:?}"
            );
        };
        // A group referenced but not defined.
        refused(vec![], vec![check("c", Some(&["servers"]))]);
        refused(vec![g("a", vec![])], vec![check("c", Some(&[]))]);
        refused(vec![g("a", vec![])], vec![check("c", Some(&["a", "a"]))]);
        refused(vec![g("a", vec![]), g("a", vec![])], vec![]);
        refused(vec![g("Servers", vec![])], vec![]);
        refused(vec![g("a", vec![member(1), member(1)])], vec![]);
        refused(
            vec![g(
                "a",
                vec![GroupMember {
                    device_id: String::new(),
                    ..member(1)
                }],
            )],
            vec![],
        );
        let tight = Limits {
            max_group_members: 1,
            max_device_groups: 1,
            ..Limits::default()
        };
        let p = policy(vec![g("a", vec![member(1), member(2)])], vec![]);
        assert_eq!(p.validate(&tight), Err(Refusal::TooLarge("group members")));
        let p = policy(vec![g("a", vec![]), g("b", vec![])], vec![]);
        assert_eq!(p.validate(&tight), Err(Refusal::TooLarge("device groups")));
        // Two groups a device is in cannot carry two checks of one name:
        // check names are unique in the policy.
        refused(
            vec![g("a", vec![member(1)]), g("b", vec![member(1)])],
            vec![check("c", Some(&["a"])), check("c", Some(&["b"]))],
        );
    }

    proptest! {
        /// Against a naive reading of the rule: a check runs on a device
        /// iff it has no groups or one of its groups lists the device's
        /// id with the device's key.
        #[test]
        fn checks_for_is_the_rule(
            membership in proptest::collection::vec(proptest::collection::vec(0u8..6, 0..4), 0..4),
            on in proptest::collection::vec(proptest::option::of(proptest::collection::btree_set(0usize..4, 1..3)), 0..6),
            device in 0u8..6,
            wrong_key in any::<bool>(),
        ) {
            let groups: Vec<DeviceGroup> = membership
                .iter()
                .enumerate()
                .map(|(i, ms)| DeviceGroup {
                    name: format!("g{i}"),
                    members: ms.iter().copied().collect::<BTreeSet<u8>>().into_iter().map(member).collect(),
                })
                .collect();
            let checks: Vec<CheckDefinition> = on
                .iter()
                .enumerate()
                .map(|(i, gs)| CheckDefinition {
                    groups: gs.as_ref().map(|gs| gs.iter().map(|g| format!("g{g}")).collect()),
                    ..check(&format!("c{i}"), None)
                })
                .collect();
            let p = policy(groups, checks);
            let valid = p.validate(&Limits::default()).is_ok();
            let defined = |g: &usize| *g < membership.len();
            prop_assert_eq!(valid, on.iter().flatten().flatten().all(defined));
            let mut me = member(device);
            if wrong_key {
                me.device_key = [0xff; 32];
            }
            let expected: Vec<String> = on
                .iter()
                .enumerate()
                .filter(|(_, gs)| match gs {
                    None => true,
                    Some(gs) => !wrong_key && gs.iter().any(|g| membership.get(*g).is_some_and(|ms| ms.contains(&device))),
                })
                .map(|(i, _)| format!("c{i}"))
                .collect();
            prop_assert_eq!(names(&p, &me), expected);
        }
    }
}
