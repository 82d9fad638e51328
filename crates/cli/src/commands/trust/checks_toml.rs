//! The `[[checks]]` tables of the editable policy (RFD 0009).

use bulwark_policy::checks::{CheckDefinition, Probe};

use super::*;

/// One check as people write it: the probe's kind by name and its target
/// in the field that kind needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckDoc {
    pub name: String,
    /// cpu, memory, disk, load, service, process, tcp-port, file-hash.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default = "default_interval")]
    pub interval_secs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<u64>,
    /// How long a new state must hold before it is reported.
    #[serde(default)]
    pub for_secs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
}

fn default_interval() -> u32 {
    60
}

pub(crate) fn check_to_doc(check: &CheckDefinition) -> CheckDoc {
    let mut doc = CheckDoc {
        name: check.name.clone(),
        kind: check.probe.kind().to_owned(),
        mount: None,
        unit: None,
        process: None,
        host: None,
        port: None,
        path: None,
        sha256: None,
        interval_secs: check.interval_secs,
        warning: check.warning,
        critical: check.critical,
        for_secs: check.for_secs,
        timeout_secs: Some(check.timeout_secs),
    };
    match &check.probe {
        Probe::Cpu | Probe::Memory | Probe::Load => {}
        Probe::Disk { mount } => doc.mount = Some(mount.clone()),
        Probe::Service { unit } => doc.unit = Some(unit.clone()),
        Probe::Process { name } => doc.process = Some(name.clone()),
        Probe::TcpPort { host, port } => {
            doc.host = Some(host.clone());
            doc.port = Some(*port);
        }
        Probe::FileHash { path, sha256 } => {
            doc.path = Some(path.clone());
            doc.sha256 = Some(hex::encode(sha256));
        }
    }
    doc
}

pub(crate) fn doc_to_check(doc: &CheckDoc) -> Result<CheckDefinition> {
    let name = &doc.name;
    let needs = |value: &Option<String>, field: &str| -> Result<String> {
        value
            .clone()
            .with_context(|| format!("check {name:?} of kind {} needs {field}", doc.kind))
    };
    let probe = match doc.kind.trim() {
        "cpu" => Probe::Cpu,
        "memory" => Probe::Memory,
        "load" => Probe::Load,
        "disk" => Probe::Disk {
            mount: needs(&doc.mount, "mount")?,
        },
        "service" => Probe::Service {
            unit: needs(&doc.unit, "unit")?,
        },
        "process" => Probe::Process {
            name: needs(&doc.process, "process")?,
        },
        "tcp-port" => Probe::TcpPort {
            host: needs(&doc.host, "host")?,
            port: doc
                .port
                .with_context(|| format!("check {name:?} of kind tcp-port needs port"))?,
        },
        "file-hash" => Probe::FileHash {
            path: needs(&doc.path, "path")?,
            sha256: hex::decode(needs(&doc.sha256, "sha256")?.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("check {name:?}: sha256 is not a SHA-256 in hex"))?,
        },
        other => bail!(
            "check {name:?}: unknown kind {other:?}; use cpu, memory, disk, load, service, process, tcp-port or file-hash"
        ),
    };
    // A field the kind does not use is a mistake worth saying, not ignoring.
    let used: &[&str] = match &probe {
        Probe::Cpu | Probe::Memory | Probe::Load => &[],
        Probe::Disk { .. } => &["mount"],
        Probe::Service { .. } => &["unit"],
        Probe::Process { .. } => &["process"],
        Probe::TcpPort { .. } => &["host", "port"],
        Probe::FileHash { .. } => &["path", "sha256"],
    };
    for (field, set) in [
        ("mount", doc.mount.is_some()),
        ("unit", doc.unit.is_some()),
        ("process", doc.process.is_some()),
        ("host", doc.host.is_some()),
        ("port", doc.port.is_some()),
        ("path", doc.path.is_some()),
        ("sha256", doc.sha256.is_some()),
    ] {
        ensure!(
            !set || used.contains(&field),
            "check {name:?}: a {} check takes no {field}",
            doc.kind
        );
    }
    Ok(CheckDefinition {
        name: name.trim().to_owned(),
        probe,
        interval_secs: doc.interval_secs,
        warning: doc.warning,
        critical: doc.critical,
        for_secs: doc.for_secs,
        timeout_secs: doc.timeout_secs.unwrap_or(doc.interval_secs.min(10)),
    })
}

/// The unit of a probe's value, for people.
pub(crate) fn probe_unit(probe: &Probe) -> &'static str {
    match probe {
        Probe::Cpu | Probe::Memory | Probe::Disk { .. } => "%",
        Probe::Load => " load/core x100",
        Probe::Service { .. } | Probe::Process { .. } | Probe::FileHash { .. } => "",
        Probe::TcpPort { .. } => " ms",
    }
}

/// What a check looks at, for people: "/var", "sshd.service", ….
pub(crate) fn probe_target(probe: &Probe) -> String {
    match probe {
        Probe::Cpu | Probe::Memory | Probe::Load => String::new(),
        Probe::Disk { mount } => mount.clone(),
        Probe::Service { unit } => unit.clone(),
        Probe::Process { name } => name.clone(),
        Probe::TcpPort { host, port } => format!("{host}:{port}"),
        Probe::FileHash { path, .. } => path.clone(),
    }
}

/// One line per check for `policy show` and proposal summaries.
pub(crate) fn check_line(check: &CheckDefinition) -> String {
    let target = probe_target(&check.probe);
    let what = if target.is_empty() {
        check.probe.kind().to_owned()
    } else {
        format!("{} {target}", check.probe.kind())
    };
    let unit = probe_unit(&check.probe);
    let threshold = |label: &str, v: Option<u64>| v.map(|v| format!(" {label} >= {v}{unit}"));
    let thresholds: String = [
        threshold("warning", check.warning),
        threshold("critical", check.critical),
    ]
    .into_iter()
    .flatten()
    .collect();
    let thresholds = if thresholds.is_empty() {
        " pass/fail".to_owned()
    } else {
        thresholds
    };
    format!(
        "{}: {what} every {} s,{thresholds}, for {} s",
        check.name, check.interval_secs, check.for_secs
    )
}
