//! The `[[checks]]` tables of the editable policy (RFD 0009).

use bulwark_policy::Interpreter;
use bulwark_policy::checks::{CheckDefinition, PostureItem, Probe};
use bulwark_policy::policy::ScriptHash;

use super::*;

/// One check as people write it: the probe's kind by name and its target
/// in the field that kind needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckDoc {
    pub name: String,
    /// cpu, memory, disk, load, service, process, tcp-port, file-hash,
    /// http, tls-expiry, script.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// A log-pattern check's regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A posture check's item: ssh-password-login, ssh-root-login,
    /// firewall, disk-encryption or security-updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Echo requests of a ping check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u8>,
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
    /// The `[[device_groups]]` this check runs on (RFD 0022); absent:
    /// every device of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
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
        url: None,
        expect_status: None,
        server_name: None,
        ca_file: None,
        interpreter: None,
        count: None,
        pattern: None,
        item: None,
        interval_secs: check.interval_secs,
        warning: check.warning,
        critical: check.critical,
        for_secs: check.for_secs,
        timeout_secs: Some(check.timeout_secs),
        groups: check.groups.clone(),
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
        Probe::Http {
            url,
            expect_status,
            ca_file,
        } => {
            doc.url = Some(url.clone());
            doc.expect_status = *expect_status;
            doc.ca_file = ca_file.clone();
        }
        Probe::TlsExpiry {
            host,
            port,
            server_name,
            ca_file,
        } => {
            doc.host = Some(host.clone());
            doc.port = Some(*port);
            doc.server_name = server_name.clone();
            doc.ca_file = ca_file.clone();
        }
        Probe::Script {
            sha256,
            interpreter,
        } => {
            doc.sha256 = Some(hex::encode(sha256.0));
            doc.interpreter = Some(interpreter.name().to_owned());
        }
        Probe::Ping { host, count } => {
            doc.host = Some(host.clone());
            doc.count = Some(*count);
        }
        Probe::LogPattern { path, pattern } => {
            doc.path = Some(path.clone());
            doc.pattern = Some(pattern.clone());
        }
        Probe::Posture { item } => doc.item = Some(item.as_str().to_owned()),
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
    let sha256 = || -> Result<[u8; 32]> {
        hex::decode(needs(&doc.sha256, "sha256")?.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("check {name:?}: sha256 is not a SHA-256 in hex"))
    };
    let port = || {
        doc.port
            .with_context(|| format!("check {name:?} of kind {} needs port", doc.kind))
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
            port: port()?,
        },
        "file-hash" => Probe::FileHash {
            path: needs(&doc.path, "path")?,
            sha256: sha256()?,
        },
        "http" => Probe::Http {
            url: needs(&doc.url, "url")?,
            expect_status: doc.expect_status,
            ca_file: doc.ca_file.clone(),
        },
        "tls-expiry" => Probe::TlsExpiry {
            host: needs(&doc.host, "host")?,
            port: port()?,
            server_name: doc.server_name.clone(),
            ca_file: doc.ca_file.clone(),
        },
        "script" => Probe::Script {
            sha256: ScriptHash(sha256()?),
            interpreter: match &doc.interpreter {
                None => Interpreter::Sh,
                Some(i) => Interpreter::from_name(i).with_context(|| {
                    format!("check {name:?}: interpreter {i:?}; use sh, bash or python3")
                })?,
            },
        },
        "ping" => Probe::Ping {
            host: needs(&doc.host, "host")?,
            count: doc.count.unwrap_or(4),
        },
        "log-pattern" => {
            let pattern = needs(&doc.pattern, "pattern")?;
            // The agent compiles it too; a typo is better caught before signing.
            regex::Regex::new(&pattern)
                .with_context(|| format!("check {name:?}: the pattern does not compile"))?;
            Probe::LogPattern {
                path: needs(&doc.path, "path")?,
                pattern,
            }
        }
        "posture" => {
            let item = needs(&doc.item, "item")?;
            Probe::Posture {
                item: PostureItem::parse(&item).with_context(|| {
                    format!(
                        "check {name:?}: unknown posture item {item:?}; use {}",
                        PostureItem::ALL.map(PostureItem::as_str).join(", ")
                    )
                })?,
            }
        }
        other => bail!(
            "check {name:?}: unknown kind {other:?}; use cpu, memory, disk, load, service, process, tcp-port, file-hash, http, tls-expiry, script, ping, log-pattern or posture"
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
        Probe::Http { .. } => &["url", "expect_status", "ca_file"],
        Probe::TlsExpiry { .. } => &["host", "port", "server_name", "ca_file"],
        Probe::Script { .. } => &["sha256", "interpreter"],
        Probe::Ping { .. } => &["host", "count"],
        Probe::LogPattern { .. } => &["path", "pattern"],
        Probe::Posture { .. } => &["item"],
    };
    for (field, set) in [
        ("mount", doc.mount.is_some()),
        ("unit", doc.unit.is_some()),
        ("process", doc.process.is_some()),
        ("host", doc.host.is_some()),
        ("port", doc.port.is_some()),
        ("path", doc.path.is_some()),
        ("sha256", doc.sha256.is_some()),
        ("url", doc.url.is_some()),
        ("expect_status", doc.expect_status.is_some()),
        ("server_name", doc.server_name.is_some()),
        ("ca_file", doc.ca_file.is_some()),
        ("interpreter", doc.interpreter.is_some()),
        ("count", doc.count.is_some()),
        ("pattern", doc.pattern.is_some()),
        ("item", doc.item.is_some()),
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
        groups: doc
            .groups
            .as_ref()
            .map(|g| g.iter().map(|n| n.trim().to_owned()).collect()),
    })
}

/// The unit of a probe's value, for people.
pub(crate) fn probe_unit(probe: &Probe) -> &'static str {
    match probe {
        Probe::Cpu | Probe::Memory | Probe::Disk { .. } => "%",
        Probe::Load => " load/core x100",
        Probe::Service { .. }
        | Probe::Process { .. }
        | Probe::FileHash { .. }
        | Probe::Script { .. } => "",
        Probe::TcpPort { .. } | Probe::Http { .. } => " ms",
        Probe::TlsExpiry { .. } => " days",
        Probe::Ping { .. } => "% lost",
        Probe::LogPattern { .. } => " lines",
        Probe::Posture {
            item: PostureItem::SecurityUpdates,
        } => " pending",
        Probe::Posture { .. } => "",
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
        Probe::Http { url, .. } => url.clone(),
        Probe::TlsExpiry {
            host,
            port,
            server_name,
            ..
        } => match server_name {
            Some(name) => format!("{host}:{port} ({name})"),
            None => format!("{host}:{port}"),
        },
        Probe::Script {
            sha256,
            interpreter,
        } => format!("{} sha256 {}", interpreter.name(), hex::encode(sha256.0)),
        Probe::Ping { host, count } => format!("{host} ({count} requests)"),
        Probe::LogPattern { path, pattern } => format!("{path} /{pattern}/"),
        Probe::Posture { item } => item.as_str().to_owned(),
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
    let at = if check.probe.direction() == bulwark_policy::checks::Direction::Falling {
        "<="
    } else {
        ">="
    };
    let threshold = |label: &str, v: Option<u64>| v.map(|v| format!(" {label} {at} {v}{unit}"));
    let thresholds: String = [
        threshold("warning", check.warning),
        threshold("critical", check.critical),
    ]
    .into_iter()
    .flatten()
    .collect();
    let thresholds = if matches!(check.probe, Probe::Script { .. }) {
        " exit code 0 ok, 1 warning, 2 critical".to_owned()
    } else if thresholds.is_empty() {
        " pass/fail".to_owned()
    } else {
        thresholds
    };
    let on = match &check.groups {
        Some(groups) => format!(", on group {}", groups.join(", ")),
        None => String::new(),
    };
    format!(
        "{}: {what} every {} s,{thresholds}, for {} s{on}",
        check.name, check.interval_secs, check.for_secs
    )
}
