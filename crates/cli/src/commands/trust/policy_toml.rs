//! The editable TOML form of a policy (`policy show --toml`, `policy sign --file`).

use super::*;

/// A policy as people edit it: names instead of enum numbers, hex keys,
/// days and "HH:MM" for windows, a lifetime in days instead of a timestamp.
/// Tenant and version are not in it: `policy sign` fills them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyDoc {
    pub expires_in_days: u64,
    pub fan_out_limit: u32,
    #[serde(default)]
    pub allowed_scripts: Vec<String>,
    #[serde(default)]
    pub maintenance_windows: Vec<WindowDoc>,
    /// By class name; a class absent here is not permitted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quorums: BTreeMap<String, QuorumDoc>,
    #[serde(default)]
    pub operators: Vec<OperatorDoc>,
    /// The witnesses a job's tree head needs (RFD 0006); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnesses: Option<WitnessesDoc>,
    /// Which jobs wait after entering the witnessed log (RFD 0006).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mass_action_delay: Option<MassActionDoc>,
    /// What every agent of the tenant monitors (RFD 0009).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDoc>,
    /// Schedule ids (32 hex digits) every agent refuses to run (RFD 0019).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_schedules: Vec<String>,
    /// Devices by id and key, for checks on a group (RFD 0022).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_groups: Vec<GroupDoc>,
    /// Whether the device's logged-in users are told when a remote shell
    /// starts and ends (RFD 0015); absent: they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_notice: Option<ShellNoticeDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShellNoticeDoc {
    /// Tell them when a session opens.
    #[serde(default)]
    pub at_start: bool,
    /// Tell them when a session ends.
    #[serde(default)]
    pub at_end: bool,
    /// A line added to every notice (at most 200 bytes, plain text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MassActionDoc {
    /// A job reaching more devices than this waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_than_targets: Option<u32>,
    /// Jobs of these classes wait, however many devices they reach.
    #[serde(default)]
    pub classes: Vec<String>,
    /// How long, in seconds, after the witnesses first saw the job in the log.
    pub delay_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WitnessesDoc {
    /// How many of them must have cosigned (k of n).
    pub required: u32,
    /// How old a cosignature may be, by the agent's clock.
    pub freshness_secs: u64,
    pub list: Vec<WitnessDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WitnessDoc {
    /// What `bulwark witness init` printed: `<name>+<id>+<key>`.
    pub vkey: String,
    /// Where the server reaches its add-checkpoint endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuorumDoc {
    pub signers: u32,
    #[serde(default)]
    pub customer_required: bool,
    #[serde(default)]
    pub in_window_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperatorDoc {
    pub name: String,
    pub public_key: String,
    /// "msp" or "customer".
    pub holder: String,
    pub classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowDoc {
    /// "mon" … "sun".
    pub days: Vec<String>,
    /// "HH:MM", UTC.
    pub start: String,
    pub duration_minutes: u16,
}

pub(crate) fn policy_to_doc(policy: &Policy, now: u64) -> PolicyDoc {
    PolicyDoc {
        expires_in_days: policy.expires_at.saturating_sub(now).div_ceil(DAY),
        fan_out_limit: policy.fan_out_limit,
        allowed_scripts: policy
            .allowed_scripts
            .iter()
            .map(|h| hex::encode(h.0))
            .collect(),
        maintenance_windows: policy
            .maintenance_windows
            .iter()
            .map(|w| WindowDoc {
                days: window_days(w),
                start: minute_text(w.start_minute),
                duration_minutes: w.duration_minutes,
            })
            .collect(),
        quorums: policy
            .quorums
            .iter()
            .map(|q| {
                (
                    class_name(q.class).to_owned(),
                    QuorumDoc {
                        signers: q.signers,
                        customer_required: q.customer_required,
                        in_window_only: q.in_window_only,
                    },
                )
            })
            .collect(),
        operators: policy
            .operators
            .iter()
            .map(|o| OperatorDoc {
                name: o.name.clone(),
                public_key: public_hex(&o.key),
                holder: holder_name(o.holder).to_owned(),
                classes: o
                    .classes
                    .iter()
                    .map(|c| class_name(*c).to_owned())
                    .collect(),
            })
            .collect(),
        witnesses: policy.witnessing.as_ref().map(|w| WitnessesDoc {
            required: w.threshold,
            freshness_secs: w.freshness_secs,
            list: w
                .witnesses
                .iter()
                .map(|k| WitnessDoc {
                    vkey: k.vkey.clone(),
                    url: k.url.clone(),
                })
                .collect(),
        }),
        mass_action_delay: policy.mass_action_delay.as_ref().map(|d| MassActionDoc {
            more_than_targets: d.more_than_targets,
            classes: d
                .classes
                .iter()
                .map(|c| class_name(*c).to_owned())
                .collect(),
            delay_secs: d.delay_secs,
        }),
        checks: policy.checks().iter().map(check_to_doc).collect(),
        revoked_schedules: policy
            .revoked_schedules()
            .iter()
            .map(|id| hex::encode(id.0))
            .collect(),
        device_groups: policy.device_groups().iter().map(group_to_doc).collect(),
        shell_notice: policy.shell_notice.as_ref().map(|n| ShellNoticeDoc {
            at_start: n.at_start,
            at_end: n.at_end,
            message: n.message.clone(),
        }),
    }
}

pub(crate) fn doc_to_policy(
    doc: &PolicyDoc,
    tenant_id: &str,
    tenant_name: &str,
    version: u64,
    now: u64,
) -> Result<Policy> {
    ensure!(
        (1..=MAX_POLICY_DAYS).contains(&doc.expires_in_days),
        "expires_in_days must be between 1 and {MAX_POLICY_DAYS}"
    );
    let mut operators: Vec<OperatorKey> = Vec::new();
    for o in &doc.operators {
        let key =
            parse_operator_key(&o.public_key).with_context(|| format!("operator {:?}", o.name))?;
        ensure!(
            !o.name.trim().is_empty(),
            "an operator key has an empty name"
        );
        let classes = o
            .classes
            .iter()
            .map(|c| parse_class(c))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("operator {:?}", o.name))?;
        add_operator(
            &mut operators,
            OperatorKey {
                key,
                name: o.name.clone(),
                holder: parse_holder(&o.holder)
                    .with_context(|| format!("operator {:?}", o.name))?,
                classes,
            },
        )?;
    }
    let mut quorums = Vec::new();
    for (name, q) in &doc.quorums {
        let class = parse_class(name).context("in [quorums]")?;
        ensure!(q.signers >= 1, "{name} needs at least 1 signer");
        quorums.push(Quorum {
            class,
            signers: q.signers,
            customer_required: q.customer_required,
            in_window_only: q.in_window_only,
        });
    }
    quorums.sort_by_key(|q| q.class);
    let mut allowed_scripts = Vec::new();
    for text in &doc.allowed_scripts {
        let hash: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("allowed script {text:?} is not a SHA-256 in hex"))?;
        ensure!(
            !allowed_scripts.contains(&ScriptHash(hash)),
            "allowed script {text} is listed twice"
        );
        allowed_scripts.push(ScriptHash(hash));
    }
    let mut maintenance_windows = Vec::new();
    for w in &doc.maintenance_windows {
        let mut weekdays = 0u8;
        for day in &w.days {
            let index = WEEKDAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day.trim()))
                .with_context(|| {
                    format!("unknown day {day:?} in a maintenance window; use mon … sun")
                })?;
            weekdays |= 1 << index;
        }
        ensure!(weekdays != 0, "a maintenance window has no days");
        let start = parse_minute(&w.start)?;
        ensure!(
            (1..=1440).contains(&w.duration_minutes),
            "a maintenance window lasts 1 to 1440 minutes"
        );
        maintenance_windows.push(MaintenanceWindow {
            weekdays,
            start_minute: start,
            duration_minutes: w.duration_minutes,
        });
    }
    let mass_action_delay = match &doc.mass_action_delay {
        None => None,
        Some(d) => Some(MassActionDelay {
            more_than_targets: d.more_than_targets,
            classes: d
                .classes
                .iter()
                .map(|name| {
                    ActionClass::from_name(name)
                        .with_context(|| format!("unknown class {name:?} in mass_action_delay"))
                })
                .collect::<Result<_>>()?,
            delay_secs: d.delay_secs,
        }),
    };
    let checks = doc
        .checks
        .iter()
        .map(doc_to_check)
        .collect::<Result<Vec<_>>>()?;
    let revoked_schedules = doc
        .revoked_schedules
        .iter()
        .map(|text| {
            let bytes: [u8; 16] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("revoked schedule {text:?} is not 32 hex digits"))?;
            Ok(bulwark_policy::ScheduleId(bytes))
        })
        .collect::<Result<Vec<_>>>()?;
    let device_groups = doc
        .device_groups
        .iter()
        .map(doc_to_group)
        .collect::<Result<Vec<_>>>()?;
    let shell_notice = doc
        .shell_notice
        .as_ref()
        .and_then(|n| shell_notice(n.at_start, n.at_end, n.message.as_deref().map(str::trim)));
    if let Some(notice) = &shell_notice {
        notice.validate().context("in [shell_notice]")?;
    }
    Ok(Policy {
        tenant: tenant_id.to_owned(),
        tenant_name: Some(tenant_name.to_owned()),
        version,
        expires_at: now + doc.expires_in_days * DAY,
        operators,
        quorums,
        fan_out_limit: doc.fan_out_limit,
        allowed_scripts,
        maintenance_windows,
        witnessing: doc.witnesses.as_ref().map(|w| Witnessing {
            witnesses: w
                .list
                .iter()
                .map(|k| WitnessKey {
                    vkey: k.vkey.trim().to_owned(),
                    url: k.url.clone(),
                })
                .collect(),
            threshold: w.required,
            freshness_secs: w.freshness_secs,
        }),
        mass_action_delay,
        checks: (!checks.is_empty()).then_some(checks),
        revoked_schedules: (!revoked_schedules.is_empty()).then_some(revoked_schedules),
        device_groups: (!device_groups.is_empty()).then_some(device_groups),
        shell_notice,
    })
}

/// The policy's shell-notice setting: `None` when it tells nobody anything.
pub(crate) fn shell_notice(
    at_start: bool,
    at_end: bool,
    message: Option<&str>,
) -> Option<ShellNotice> {
    (at_start || at_end).then(|| ShellNotice {
        at_start,
        at_end,
        message: message.filter(|m| !m.is_empty()).map(str::to_owned),
    })
}

pub(super) fn parse_minute(text: &str) -> Result<u16> {
    let parsed = text.trim().split_once(':').and_then(|(h, m)| {
        let h: u16 = h.parse().ok()?;
        let m: u16 = m.parse().ok()?;
        (h < 24 && m < 60).then_some(h * 60 + m)
    });
    parsed.with_context(|| format!("{text:?} is not a time of day as HH:MM (00:00 to 23:59)"))
}

/// The editable document, with a header saying what to do with it.
pub(super) fn policy_toml(
    tenant: &str,
    tenant_id: &str,
    policy: &Policy,
    now: u64,
) -> Result<String> {
    let mut doc = policy_to_doc(policy, now);
    let quorums = std::mem::take(&mut doc.quorums);
    let body = toml::to_string_pretty(&doc).context("writing the policy as TOML")?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Policy of tenant {tenant} (id {tenant_id}), version {}, verified against its root.",
        policy.version
    );
    let _ = writeln!(
        out,
        "# Edit it, then sign and publish it as version {} with:",
        policy.version + 1
    );
    let _ = writeln!(out, "#   bulwark policy sign --tenant {tenant} --file FILE");
    let _ = writeln!(
        out,
        "# Classes: {}.",
        ALL_CLASSES.map(class_name).join(", ")
    );
    let _ = writeln!(
        out,
        "# A class absent from [quorums] is not permitted. Holders: \"msp\", \"customer\"."
    );
    let _ = writeln!(
        out,
        "# Windows: days mon … sun, start \"HH:MM\" in UTC. expires_in_days counts from signing."
    );
    out.push('\n');
    out.push_str(&body);
    // One line per class, in the classes' order: easier to read and edit
    // than the table-per-class the serializer would write.
    let _ = writeln!(out, "\n[quorums]");
    for class in ALL_CLASSES {
        if let Some(q) = quorums.get(class_name(class)) {
            let _ = writeln!(
                out,
                "{} = {{ signers = {}, customer_required = {}, in_window_only = {} }}",
                class_name(class),
                q.signers,
                q.customer_required,
                q.in_window_only
            );
        }
    }
    Ok(out)
}

pub(super) fn read_small(path: &std::path::Path, limit: u64) -> Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    ensure!(
        len <= limit,
        "{} is larger than {limit} bytes",
        path.display()
    );
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
