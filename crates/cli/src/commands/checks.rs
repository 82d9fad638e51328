//! `bulwark device checks HOST`: a device's checks, the verified policy's
//! next to what the server says its agent reported (RFD 0009).
//!
//! The server could hide a failing check by not listing it, or list one
//! the policy does not have. So the list of checks comes from the tenant's
//! policy verified here against its pinned root, and the server's answer
//! only fills in states: a check of the policy the server has no state for
//! is shown as such, never left out.

use std::fmt::Write as _;

use bulwark_api::checks::{CheckStateView, CheckView, DeviceChecksView};
use bulwark_policy::checks::CheckDefinition;

use crate::commands::trust::check_line;
use crate::output::*;

/// The device's key as groups name it: the one this machine pinned when it
/// first signed for the device, else the server's word (then a server
/// lying about it can only make a group check look like another device's,
/// which the line under the table counts).
pub(crate) fn device_key(server: &str, view: &DeviceChecksView) -> anyhow::Result<[u8; 32]> {
    let pinned = crate::pins::device_pins(server, &view.tenant)?
        .into_iter()
        .find(|p| p.device_id == view.device_id);
    match pinned {
        Some(pin) => Ok(pin.key),
        None => Ok(crate::pins::parse_device_key(&view.key_fingerprint).unwrap_or([0; 32])),
    }
}

/// One row: a check of the verified policy, or one only the server lists.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    pub name: &'a str,
    pub definition: Option<&'a CheckDefinition>,
    pub reported: Option<&'a CheckView>,
}

/// The policy's checks first, in its order, then what only the server lists.
pub(crate) fn rows<'a>(policy: &'a [CheckDefinition], view: &'a DeviceChecksView) -> Vec<Row<'a>> {
    let mut rows: Vec<Row<'a>> = policy
        .iter()
        .map(|d| Row {
            name: &d.name,
            definition: Some(d),
            reported: view.checks.iter().find(|c| c.name == d.name),
        })
        .collect();
    for c in &view.checks {
        if !policy.iter().any(|d| d.name == c.name) {
            rows.push(Row {
                name: &c.name,
                definition: None,
                reported: Some(c),
            });
        }
    }
    rows
}

fn state_cell(state: Option<CheckStateView>) -> Cell {
    let (text, colour) = match state {
        Some(CheckStateView::Ok) => ("ok", Some(GREEN)),
        Some(CheckStateView::Warning) => ("WARNING", Some(RED)),
        Some(CheckStateView::Critical) => ("CRITICAL", Some(RED)),
        Some(CheckStateView::Unknown) => ("unknown", None),
        None => ("NOT REPORTED", Some(RED)),
    };
    Cell {
        text: text.to_owned(),
        colour,
    }
}

pub(crate) fn render(
    policy_version: Option<u64>,
    policy: &[CheckDefinition],
    view: &DeviceChecksView,
    colour: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (tenant {}): checks of policy {}, verified against the tenant's root",
        Cell::from(view.hostname.as_str()).text,
        Cell::from(view.tenant.as_str()).text,
        policy_version.map_or_else(|| "(none)".to_owned(), |v| format!("v{v}"))
    );
    let rows = rows(policy, view);
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "The tenant's policy defines no checks: add [[checks]] with `bulwark policy sign`."
        );
        return out;
    }
    let table: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.into(),
                state_cell(r.reported.map(|c| c.state)),
                r.reported
                    .map_or("-".to_owned(), |c| c.summary.clone())
                    .into(),
                r.reported
                    .map_or("-".to_owned(), |c| c.since.clone())
                    .into(),
                r.definition
                    .map_or("not this device's in the verified policy".to_owned(), |d| {
                        check_line(d)
                            .split_once(": ")
                            .map(|(_, rest)| rest.to_owned())
                            .unwrap_or_default()
                    })
                    .into(),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &["CHECK", "STATE", "LAST SEEN", "SINCE", "DEFINED AS"],
        &table,
        colour,
    ));
    let missing = rows.iter().filter(|r| r.reported.is_none()).count();
    if missing > 0 {
        let _ = writeln!(
            out,
            "{missing} check(s) of the verified policy have no state on the server: the agent has \
             not reported them yet, or the server does not show them. `bulwark-agent checks` on \
             the device prints the agent's own record."
        );
    }
    if let Some(v) = policy_version
        && let Some(older) = view.checks.iter().map(|c| c.policy_version).min()
        && older < v
    {
        let _ = writeln!(
            out,
            "The agent last reported checks of policy v{older}; it has not taken v{v} yet."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use bulwark_policy::checks::Probe;

    use super::*;

    fn definition(name: &str) -> CheckDefinition {
        CheckDefinition {
            name: name.into(),
            probe: Probe::Disk { mount: "/".into() },
            interval_secs: 60,
            warning: Some(80),
            critical: Some(90),
            for_secs: 300,
            timeout_secs: 10,
            groups: None,
        }
    }

    fn reported(name: &str, state: CheckStateView) -> CheckView {
        CheckView {
            name: name.into(),
            state,
            value: Some(91),
            summary: "91% used".into(),
            since: "2026-12-06T10:00:00Z".into(),
            measured_at: None,
            policy_version: 3,
            reported_at: "2026-12-06T10:00:01Z".into(),
        }
    }

    #[test]
    fn a_check_the_server_leaves_out_is_still_shown() {
        let policy = vec![definition("disk-root"), definition("disk-var")];
        let view = DeviceChecksView {
            device_id: "d".into(),
            hostname: "web-1".into(),
            tenant: "acme".into(),
            key_fingerprint: String::new(),
            expected: vec![],
            groups: vec![],
            checks: vec![
                reported("disk-root", CheckStateView::Critical),
                reported("made-up", CheckStateView::Ok),
            ],
        };
        let text = render(Some(4), &policy, &view, false);
        assert!(text.contains("disk-var"), "{text}");
        assert!(text.contains("NOT REPORTED"), "{text}");
        assert!(text.contains("CRITICAL"), "{text}");
        assert!(
            text.contains("not this device's in the verified policy"),
            "{text}"
        );
        assert!(text.contains("1 check(s) of the verified policy"), "{text}");
        assert!(text.contains("has not taken v4 yet"), "{text}");
    }
}
