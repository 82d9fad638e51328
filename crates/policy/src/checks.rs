//! Monitoring checks in the signed policy (RFD 0009): what every agent of
//! the tenant measures, how often, and at which thresholds it calls the
//! result a warning or critical.
//!
//! A check is part of the root-signed policy, so whoever owns the server
//! can neither switch one off nor loosen its thresholds: the agent runs the
//! checks of the newest policy it verified and refuses an unsigned change
//! (with the same `trust_refused` report as any other policy). The most an
//! owned server can do is drop the results it receives; the agent keeps
//! its own record of them.

use std::collections::BTreeSet;

use minicbor::{Decode, Encode};

use crate::Refusal;
use crate::job::Interpreter;
use crate::limits::{Limits, cap};
use crate::policy::ScriptHash;

/// Most checks one policy defines (RFD 0009's budget: 50 checks every
/// minute is the figure the agent is measured at).
pub const MAX_CHECKS: usize = 256;
/// Shortest and longest interval between two runs of one check.
pub const MIN_INTERVAL_SECS: u32 = 5;
pub const MAX_INTERVAL_SECS: u32 = 24 * 3600;
/// Longest a check may run before the agent kills it and calls it unknown.
pub const MAX_TIMEOUT_SECS: u32 = 300;
/// Longest a state must hold before the agent reports it.
pub const MAX_FOR_SECS: u32 = 24 * 3600;
/// Longest URL an HTTP check may name.
pub const MAX_URL: usize = 1024;

/// What a check measures. Each probe yields a number in its unit (see
/// [`Probe::unit`]) or fails (the check is then `unknown`, or critical for
/// the probes whose failure is the finding: a service down, a port closed).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Probe {
    /// CPU busy, percent of all cores, over the last interval.
    #[n(0)]
    Cpu,
    /// Memory in use (total minus available), percent.
    #[n(1)]
    Memory,
    /// Space used on the filesystem mounted at `mount`, percent as `df`
    /// computes it (used / (used + available to users)).
    #[n(2)]
    Disk {
        #[n(0)]
        mount: String,
    },
    /// One-minute load average per logical core, in hundredths.
    #[n(3)]
    Load,
    /// A systemd unit: 0 when active, critical otherwise.
    #[n(4)]
    Service {
        #[n(0)]
        unit: String,
    },
    /// A process with this exact name runs; critical when none does.
    #[n(5)]
    Process {
        #[n(0)]
        name: String,
    },
    /// A TCP connect from the agent, latency in milliseconds; critical
    /// when refused or timed out.
    #[n(6)]
    TcpPort {
        #[n(0)]
        host: String,
        #[n(1)]
        port: u16,
    },
    /// The SHA-256 of a file: 0 when it matches `sha256`, critical when it
    /// differs or the file is gone.
    #[n(7)]
    FileHash {
        #[n(0)]
        path: String,
        #[cbor(n(1), with = "minicbor::bytes")]
        sha256: [u8; 32],
    },
    /// An HTTP(S) GET from the agent: milliseconds from connect to the
    /// response head; critical when the status is not the expected one
    /// (any 2xx or 3xx unless `expect_status`), refused or timed out. The
    /// body is never read. `ca_file`: a PEM file on the endpoint whose CAs
    /// alone are trusted (an internal service); else the web's roots.
    #[n(8)]
    Http {
        #[n(0)]
        url: String,
        #[n(1)]
        expect_status: Option<u16>,
        #[n(2)]
        ca_file: Option<String>,
    },
    /// Days until the notAfter of the certificate a TLS server presents;
    /// critical when the certificate fails verification (expired, unknown
    /// issuer, another name), the reason as the summary.
    #[n(9)]
    TlsExpiry {
        #[n(0)]
        host: String,
        #[n(1)]
        port: u16,
        /// The name to ask for and verify; `host` when absent.
        #[n(2)]
        server_name: Option<String>,
        #[n(3)]
        ca_file: Option<String>,
    },
    /// A script whose SHA-256 the policy allow-lists; its exit code is the
    /// state (0 ok, 1 warning, 2 critical, anything else unknown: the
    /// Nagios convention). The agent runs only content that hashes to
    /// `sha256`; a script it cannot get, refuses or that times out is
    /// critical, so withholding it silences nothing.
    #[n(10)]
    Script {
        #[n(0)]
        sha256: ScriptHash,
        #[n(1)]
        interpreter: Interpreter,
    },
    /// ICMP echo from the agent: percent of `count` requests unanswered
    /// (thresholds on the loss; the round trip is in the summary); unknown
    /// when the agent may not open an ICMP socket.
    #[n(11)]
    Ping {
        #[n(0)]
        host: String,
        #[n(1)]
        count: u8,
    },
    /// Lines appended to a log file since the last run that match
    /// `pattern` (a regular expression, compiled by the agent within size
    /// limits); the file is followed across rotation and truncation.
    #[n(12)]
    LogPattern {
        #[n(0)]
        path: String,
        #[n(1)]
        pattern: String,
    },
    /// A security posture finding read on the endpoint itself: 0 when
    /// sound, else 1 (for security updates: how many are pending); what
    /// was found is the summary. Unknown when the endpoint cannot tell.
    #[n(13)]
    Posture {
        #[n(0)]
        item: PostureItem,
    },
}

/// What a posture check looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum PostureItem {
    /// sshd accepts passwords (`PasswordAuthentication`, or keyboard-
    /// interactive through PAM).
    #[n(0)]
    SshPasswordLogin,
    /// sshd lets root log in with a password (`PermitRootLogin yes`).
    #[n(1)]
    SshRootLogin,
    /// No firewall is set to load at boot.
    #[n(2)]
    Firewall,
    /// The root filesystem is not on an encrypted (dm-crypt) device.
    #[n(3)]
    DiskEncryption,
    /// Security updates pending (a count).
    #[n(4)]
    SecurityUpdates,
    /// The agent's own binary is not the one its release keys signed for
    /// the version it runs (checked against TUF metadata the agent
    /// verifies from its pinned release root).
    #[n(5)]
    AgentIntegrity,
}

impl PostureItem {
    pub const ALL: [PostureItem; 6] = [
        Self::SshPasswordLogin,
        Self::SshRootLogin,
        Self::Firewall,
        Self::DiskEncryption,
        Self::SecurityUpdates,
        Self::AgentIntegrity,
    ];

    /// The kebab-case name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SshPasswordLogin => "ssh-password-login",
            Self::SshRootLogin => "ssh-root-login",
            Self::Firewall => "firewall",
            Self::DiskEncryption => "disk-encryption",
            Self::SecurityUpdates => "security-updates",
            Self::AgentIntegrity => "agent-integrity",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == text)
    }
}

/// Most echo requests one ping check sends.
pub const MAX_PING_COUNT: u8 = 20;

/// An HTTP check's URL, parsed strictly: `http` or `https`, a host name,
/// IPv4 or bracketed IPv6 address, an optional port, a path of visible
/// ASCII; no user info, no fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub tls: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HttpTarget {
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        if url.len() > MAX_URL {
            return Err(format!("a URL is at most {MAX_URL} bytes"));
        }
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("a URL starts with http:// or https://".into());
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or("an IPv6 host needs its ']'")?;
                addr.parse::<std::net::Ipv6Addr>()
                    .map_err(|_| "the IPv6 host is not an address")?;
                (addr, after)
            }
            None => match authority.find(':') {
                Some(i) => authority.split_at(i),
                None => (authority, ""),
            },
        };
        let host_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
        if host.is_empty() || (!authority.starts_with('[') && !host.bytes().all(host_ok)) {
            return Err("the host is a name or an address (no user info)".into());
        }
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(digits)
                if !digits.is_empty()
                    && digits.len() <= 5
                    && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                match digits.parse::<u16>() {
                    Ok(p) if p != 0 => p,
                    _ => return Err("the port is 1 to 65535".into()),
                }
            }
            _ => return Err("the port is 1 to 65535".into()),
        };
        if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains('#') {
            return Err("the path is visible ASCII without a fragment".into());
        }
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Ok(HttpTarget {
            tls,
            host: host.to_owned(),
            port,
            path,
        })
    }
}

/// Which way a probe's number gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Higher is worse (usage, latency).
    Rising,
    /// The probe is pass or fail: anything but 0 is critical.
    PassFail,
    /// Lower is worse (days left).
    Falling,
    /// The value is an exit code: 0 ok, 1 warning, 2 critical, else unknown.
    ExitCode,
}

impl Probe {
    /// The kebab-case name used in policy files, the API and the console.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Cpu => "cpu",
            Probe::Memory => "memory",
            Probe::Disk { .. } => "disk",
            Probe::Load => "load",
            Probe::Service { .. } => "service",
            Probe::Process { .. } => "process",
            Probe::TcpPort { .. } => "tcp-port",
            Probe::FileHash { .. } => "file-hash",
            Probe::Http { .. } => "http",
            Probe::TlsExpiry { .. } => "tls-expiry",
            Probe::Script { .. } => "script",
            Probe::Ping { .. } => "ping",
            Probe::LogPattern { .. } => "log-pattern",
            Probe::Posture { .. } => "posture",
        }
    }

    /// Is a probe that cannot measure critical (the port refused, the file
    /// gone) rather than unknown (no systemd, no permission)?
    pub fn failure_is_critical(&self) -> bool {
        matches!(
            self,
            Probe::TcpPort { .. }
                | Probe::FileHash { .. }
                | Probe::Http { .. }
                | Probe::TlsExpiry { .. }
                | Probe::Script { .. }
        )
    }

    pub fn direction(&self) -> Direction {
        match self {
            Probe::Cpu
            | Probe::Memory
            | Probe::Disk { .. }
            | Probe::Load
            | Probe::TcpPort { .. }
            | Probe::Http { .. }
            | Probe::Ping { .. }
            | Probe::LogPattern { .. }
            | Probe::Posture { .. } => Direction::Rising,
            Probe::Service { .. } | Probe::Process { .. } | Probe::FileHash { .. } => {
                Direction::PassFail
            }
            Probe::TlsExpiry { .. } => Direction::Falling,
            Probe::Script { .. } => Direction::ExitCode,
        }
    }
}

/// One check of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct CheckDefinition {
    /// Unique within the policy: lowercase letters, digits, `-`, `_`, `.`.
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub probe: Probe,
    #[n(2)]
    pub interval_secs: u32,
    /// At or above this value the check is a warning (rising probes).
    #[n(3)]
    pub warning: Option<u64>,
    /// At or above this value the check is critical (rising probes).
    #[n(4)]
    pub critical: Option<u64>,
    /// A new state must hold this long before the agent reports it, on the
    /// way up and on the way down: flapping input raises one alert.
    #[n(5)]
    pub for_secs: u32,
    #[n(6)]
    pub timeout_secs: u32,
    /// The policy's device groups this check runs on (RFD 0022); `None`:
    /// every device of the tenant.
    #[n(7)]
    pub groups: Option<Vec<String>>,
}

impl CheckDefinition {
    fn validate(&self, limits: &Limits, allowed_scripts: &[ScriptHash]) -> Result<(), Refusal> {
        let malformed = |why: String| Err(Refusal::Malformed(why));
        cap(self.name.len(), 64, "check name")?;
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        {
            return malformed(format!(
                "check name {:?}: use lowercase letters, digits, '-', '_' and '.'",
                self.name
            ));
        }
        let text_ok = |text: &str, what: &'static str| -> Result<(), Refusal> {
            cap(text.len(), limits.max_text, what)?;
            if text.is_empty() || text.chars().any(char::is_control) {
                return Err(Refusal::Malformed(format!(
                    "check {:?}: {what} is empty or has control characters",
                    self.name
                )));
            }
            Ok(())
        };
        match &self.probe {
            Probe::Cpu | Probe::Memory | Probe::Load | Probe::Posture { .. } => {}
            Probe::Disk { mount } => {
                text_ok(mount, "mount point")?;
                if !mount.starts_with('/') {
                    return malformed(format!("check {:?}: a mount point is absolute", self.name));
                }
            }
            Probe::Service { unit } => text_ok(unit, "unit")?,
            Probe::Process { name } => text_ok(name, "process name")?,
            Probe::TcpPort { host, port } => {
                text_ok(host, "host")?;
                if *port == 0 {
                    return malformed(format!("check {:?}: port 0", self.name));
                }
            }
            Probe::FileHash { path, .. } => {
                text_ok(path, "path")?;
                if !path.starts_with('/') {
                    return malformed(format!("check {:?}: a path is absolute", self.name));
                }
            }
            Probe::Http {
                url,
                expect_status,
                ca_file,
            } => {
                HttpTarget::parse(url)
                    .map_err(|why| Refusal::Malformed(format!("check {:?}: {why}", self.name)))?;
                if expect_status.is_some_and(|s| !(100..=599).contains(&s)) {
                    return malformed(format!("check {:?}: a status is 100 to 599", self.name));
                }
                if let Some(path) = ca_file {
                    text_ok(path, "CA file")?;
                }
            }
            Probe::TlsExpiry {
                host,
                port,
                server_name,
                ca_file,
            } => {
                text_ok(host, "host")?;
                if *port == 0 {
                    return malformed(format!("check {:?}: port 0", self.name));
                }
                if let Some(name) = server_name {
                    text_ok(name, "server name")?;
                }
                if let Some(path) = ca_file {
                    text_ok(path, "CA file")?;
                }
            }
            Probe::Ping { host, count } => {
                text_ok(host, "host")?;
                if !(1..=MAX_PING_COUNT).contains(count) {
                    return malformed(format!(
                        "check {:?}: a ping sends 1 to {MAX_PING_COUNT} requests",
                        self.name
                    ));
                }
                if self.warning.max(self.critical).is_some_and(|t| t > 100) {
                    return malformed(format!(
                        "check {:?}: loss thresholds are percentages",
                        self.name
                    ));
                }
            }
            Probe::LogPattern { path, pattern } => {
                text_ok(path, "path")?;
                text_ok(pattern, "pattern")?;
                if !path.starts_with('/') {
                    return malformed(format!("check {:?}: a path is absolute", self.name));
                }
            }
            // A script check runs only a script the same signed policy
            // allow-lists: one list of what may run, for jobs and checks.
            Probe::Script { sha256, .. } => {
                if !allowed_scripts.contains(sha256) {
                    return malformed(format!(
                        "check {:?}: script {} is not on the policy's allow-list",
                        self.name,
                        hex::encode(sha256.0)
                    ));
                }
            }
        }
        if let Probe::Http {
            ca_file: Some(path),
            ..
        }
        | Probe::TlsExpiry {
            ca_file: Some(path),
            ..
        } = &self.probe
            && !path.starts_with('/')
        {
            return malformed(format!(
                "check {:?}: a CA file is an absolute path",
                self.name
            ));
        }
        if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&self.interval_secs) {
            return malformed(format!(
                "check {:?}: interval must be {MIN_INTERVAL_SECS} s to {MAX_INTERVAL_SECS} s",
                self.name
            ));
        }
        if self.timeout_secs == 0
            || self.timeout_secs > MAX_TIMEOUT_SECS
            || self.timeout_secs > self.interval_secs
        {
            return malformed(format!(
                "check {:?}: timeout must be 1 s to {MAX_TIMEOUT_SECS} s and at most the interval",
                self.name
            ));
        }
        if self.for_secs > MAX_FOR_SECS {
            return malformed(format!(
                "check {:?}: for must be at most {MAX_FOR_SECS} s",
                self.name
            ));
        }
        match self.probe.direction() {
            Direction::Rising => {
                // A port or HTTP check without thresholds is pass or fail.
                let pass_fail_ok = matches!(self.probe, Probe::TcpPort { .. } | Probe::Http { .. });
                if self.warning.is_none() && self.critical.is_none() && !pass_fail_ok {
                    return malformed(format!(
                        "check {:?}: a {} check needs a warning or a critical threshold",
                        self.name,
                        self.probe.kind()
                    ));
                }
                if let (Some(w), Some(c)) = (self.warning, self.critical)
                    && w > c
                {
                    return malformed(format!(
                        "check {:?}: the warning threshold is above the critical one",
                        self.name
                    ));
                }
            }
            Direction::Falling => {
                if self.warning.is_none() && self.critical.is_none() {
                    return malformed(format!(
                        "check {:?}: a {} check needs a warning or a critical threshold",
                        self.name,
                        self.probe.kind()
                    ));
                }
                if let (Some(w), Some(c)) = (self.warning, self.critical)
                    && w < c
                {
                    return malformed(format!(
                        "check {:?}: the warning threshold is below the critical one",
                        self.name
                    ));
                }
            }
            Direction::PassFail | Direction::ExitCode => {
                if self.warning.is_some() || self.critical.is_some() {
                    return malformed(format!(
                        "check {:?}: a {} check passes or fails; it takes no thresholds",
                        self.name,
                        self.probe.kind()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The state a measured value is in, before "for N seconds".
    pub fn classify(&self, value: u64) -> CheckState {
        match self.probe.direction() {
            Direction::PassFail if value == 0 => CheckState::Ok,
            Direction::PassFail => CheckState::Critical,
            Direction::ExitCode => match value {
                0 => CheckState::Ok,
                1 => CheckState::Warning,
                2 => CheckState::Critical,
                _ => CheckState::Unknown,
            },
            Direction::Falling => {
                if self.critical.is_some_and(|c| value <= c) {
                    CheckState::Critical
                } else if self.warning.is_some_and(|w| value <= w) {
                    CheckState::Warning
                } else {
                    CheckState::Ok
                }
            }
            Direction::Rising => {
                if self.critical.is_some_and(|c| value >= c) {
                    CheckState::Critical
                } else if self.warning.is_some_and(|w| value >= w) {
                    CheckState::Warning
                } else {
                    CheckState::Ok
                }
            }
        }
    }
}

pub use bulwark_protocol::checks::CheckState;

/// Checks well formed as a set: within the cap, names unique.
pub(crate) fn validate_checks(
    checks: &[CheckDefinition],
    limits: &Limits,
    allowed_scripts: &[ScriptHash],
) -> Result<(), Refusal> {
    cap(checks.len(), MAX_CHECKS, "checks")?;
    let mut names = BTreeSet::new();
    for check in checks {
        check.validate(limits, allowed_scripts)?;
        if !names.insert(check.name.as_str()) {
            return Err(Refusal::Malformed(format!(
                "check {:?} is defined twice",
                check.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(warning: Option<u64>, critical: Option<u64>) -> CheckDefinition {
        CheckDefinition {
            name: "disk-root".into(),
            probe: Probe::Disk { mount: "/".into() },
            interval_secs: 60,
            warning,
            critical,
            for_secs: 300,
            timeout_secs: 10,
            groups: None,
        }
    }

    #[test]
    fn thresholds_classify_rising_values() {
        let check = disk(Some(80), Some(90));
        assert_eq!(check.classify(79), CheckState::Ok);
        assert_eq!(check.classify(80), CheckState::Warning);
        assert_eq!(check.classify(90), CheckState::Critical);
        let critical_only = disk(None, Some(95));
        assert_eq!(critical_only.classify(94), CheckState::Ok);
        assert_eq!(critical_only.classify(95), CheckState::Critical);
    }

    #[test]
    fn pass_fail_probes_are_ok_only_at_zero() {
        let check = CheckDefinition {
            probe: Probe::Service {
                unit: "ssh.service".into(),
            },
            warning: None,
            critical: None,
            ..disk(None, None)
        };
        assert_eq!(check.validate(&Limits::default(), &[]), Ok(()));
        assert_eq!(check.classify(0), CheckState::Ok);
        assert_eq!(check.classify(1), CheckState::Critical);
    }

    #[test]
    fn malformed_checks_are_refused() {
        let limits = Limits::default();
        let refused = |check: CheckDefinition| {
            assert!(
                matches!(
                    validate_checks(std::slice::from_ref(&check), &limits, &[]),
                    Err(Refusal::Malformed(_) | Refusal::TooLarge(_))
                ),
                "{check:?}"
            );
        };
        refused(disk(None, None));
        refused(disk(Some(95), Some(90)));
        refused(CheckDefinition {
            name: "Disk Root".into(),
            ..disk(Some(1), None)
        });
        refused(CheckDefinition {
            probe: Probe::Disk {
                mount: "var".into(),
            },
            ..disk(Some(1), None)
        });
        refused(CheckDefinition {
            interval_secs: 1,
            ..disk(Some(1), None)
        });
        refused(CheckDefinition {
            timeout_secs: 61,
            ..disk(Some(1), None)
        });
        refused(CheckDefinition {
            probe: Probe::Process {
                name: "a\nb".into(),
            },
            warning: None,
            ..disk(None, None)
        });
        refused(CheckDefinition {
            probe: Probe::TcpPort {
                host: "localhost".into(),
                port: 0,
            },
            ..disk(None, None)
        });
        assert!(matches!(
            validate_checks(&[disk(Some(1), None), disk(Some(2), None)], &limits, &[]),
            Err(Refusal::Malformed(_))
        ));
        assert_eq!(
            validate_checks(&[disk(Some(80), None)], &limits, &[]),
            Ok(())
        );
    }

    #[test]
    fn http_urls_are_parsed_strictly() {
        let ok = |url: &str, tls: bool, host: &str, port: u16, path: &str| {
            assert_eq!(
                HttpTarget::parse(url),
                Ok(HttpTarget {
                    tls,
                    host: host.into(),
                    port,
                    path: path.into()
                }),
                "{url}"
            );
        };
        ok("http://example.com", false, "example.com", 80, "/");
        ok("https://example.com", true, "example.com", 443, "/");
        ok(
            "https://10.0.0.1:8443/health?x=1",
            true,
            "10.0.0.1",
            8443,
            "/health?x=1",
        );
        ok("http://[::1]:8080/", false, "::1", 8080, "/");
        ok("http://host?q", false, "host", 80, "/?q");
        for bad in [
            "ftp://example.com/",
            "HTTP://example.com/",
            "http://",
            "http://user@example.com/",
            "http://example.com:0/",
            "http://example.com:65536/",
            "http://example.com:/",
            "http://example.com:80x/",
            "http://exa mple.com/",
            "http://example.com/a b",
            "http://example.com/#frag",
            "http://[::1/",
            "http://[zz]/",
            "http://example.com/\u{e9}",
            "http://ex\u{e9}mple.com/",
        ] {
            assert!(HttpTarget::parse(bad).is_err(), "{bad}");
        }
        assert!(HttpTarget::parse(&format!("http://h/{}", "a".repeat(MAX_URL))).is_err());
    }

    fn probe_check(probe: Probe, warning: Option<u64>, critical: Option<u64>) -> CheckDefinition {
        CheckDefinition {
            probe,
            warning,
            critical,
            ..disk(None, None)
        }
    }

    #[test]
    fn new_kinds_classify_and_validate() {
        let limits = Limits::default();
        let http = |url: &str, expect: Option<u16>| Probe::Http {
            url: url.into(),
            expect_status: expect,
            ca_file: None,
        };
        // HTTP: pass/fail without thresholds, latency with them.
        let check = probe_check(http("https://example.com/", None), None, None);
        assert_eq!(check.validate(&limits, &[]), Ok(()));
        let check = probe_check(
            http("https://example.com/", Some(204)),
            Some(500),
            Some(2000),
        );
        assert_eq!(check.validate(&limits, &[]), Ok(()));
        assert_eq!(check.classify(499), CheckState::Ok);
        assert_eq!(check.classify(500), CheckState::Warning);
        assert!(check.probe.failure_is_critical());
        for bad in [
            probe_check(http("gopher://x/", None), None, None),
            probe_check(http("https://x/", Some(99)), None, None),
            probe_check(
                Probe::Http {
                    url: "https://x/".into(),
                    expect_status: None,
                    ca_file: Some("ca.pem".into()),
                },
                None,
                None,
            ),
        ] {
            assert!(bad.validate(&limits, &[]).is_err(), "{bad:?}");
        }
        // TLS expiry: days left, lower is worse.
        let tls = |warning, critical| {
            probe_check(
                Probe::TlsExpiry {
                    host: "example.com".into(),
                    port: 443,
                    server_name: None,
                    ca_file: None,
                },
                warning,
                critical,
            )
        };
        let check = tls(Some(14), Some(2));
        assert_eq!(check.validate(&limits, &[]), Ok(()));
        assert_eq!(check.classify(15), CheckState::Ok);
        assert_eq!(check.classify(14), CheckState::Warning);
        assert_eq!(check.classify(2), CheckState::Critical);
        assert_eq!(check.classify(0), CheckState::Critical);
        assert!(tls(None, None).validate(&limits, &[]).is_err());
        assert!(tls(Some(2), Some(14)).validate(&limits, &[]).is_err());
        // Scripts: the exit code is the state, and only allow-listed ones.
        let hash = ScriptHash([7; 32]);
        let script = probe_check(
            Probe::Script {
                sha256: hash,
                interpreter: Interpreter::Sh,
            },
            None,
            None,
        );
        assert_eq!(script.validate(&limits, &[hash]), Ok(()));
        assert!(matches!(
            script.validate(&limits, &[ScriptHash([8; 32])]),
            Err(Refusal::Malformed(why)) if why.contains("allow-list")
        ));
        assert!(
            probe_check(script.probe.clone(), Some(1), None)
                .validate(&limits, &[hash])
                .is_err()
        );
        let states: Vec<CheckState> = (0..5).map(|code| script.classify(code)).collect();
        assert_eq!(
            states,
            [
                CheckState::Ok,
                CheckState::Warning,
                CheckState::Critical,
                CheckState::Unknown,
                CheckState::Unknown
            ]
        );
    }

    #[test]
    fn ping_thresholds_are_loss_percentages() {
        let limits = Limits::default();
        let ping = |count, warning, critical| {
            probe_check(
                Probe::Ping {
                    host: "192.0.2.1".into(),
                    count,
                },
                warning,
                critical,
            )
        };
        let check = ping(4, Some(25), Some(100));
        assert_eq!(check.validate(&limits, &[]), Ok(()));
        assert_eq!(check.classify(0), CheckState::Ok);
        assert_eq!(check.classify(25), CheckState::Warning);
        assert_eq!(check.classify(100), CheckState::Critical);
        assert!(
            !check.probe.failure_is_critical(),
            "no ICMP socket is unknown"
        );
        for bad in [
            ping(0, None, Some(100)),
            ping(MAX_PING_COUNT + 1, None, Some(100)),
            ping(4, None, None),
            ping(4, Some(50), Some(101)),
        ] {
            assert!(bad.validate(&limits, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_patterns_need_an_absolute_path_a_pattern_and_a_threshold() {
        let limits = Limits::default();
        let log = |path: &str, pattern: &str, critical| {
            probe_check(
                Probe::LogPattern {
                    path: path.into(),
                    pattern: pattern.into(),
                },
                None,
                critical,
            )
        };
        let check = log("/var/log/auth.log", "Failed password", Some(10));
        assert_eq!(check.validate(&limits, &[]), Ok(()));
        assert_eq!(check.classify(9), CheckState::Ok);
        assert_eq!(check.classify(10), CheckState::Critical);
        assert!(
            !check.probe.failure_is_critical(),
            "a missing file is unknown"
        );
        for bad in [
            log("auth.log", "x", Some(1)),
            log("/var/log/auth.log", "", Some(1)),
            log("/var/log/auth.log", "a\nb", Some(1)),
            log("/var/log/auth.log", "x", None),
        ] {
            assert!(bad.validate(&limits, &[]).is_err(), "{bad:?}");
        }
    }
}
