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
use crate::limits::{Limits, cap};

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
}

/// Which way a probe's number gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Higher is worse (usage, latency).
    Rising,
    /// The probe is pass or fail: anything but 0 is critical.
    PassFail,
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
        }
    }

    /// Is a probe that cannot measure critical (the port refused, the file
    /// gone) rather than unknown (no systemd, no permission)?
    pub fn failure_is_critical(&self) -> bool {
        matches!(self, Probe::TcpPort { .. } | Probe::FileHash { .. })
    }

    pub fn direction(&self) -> Direction {
        match self {
            Probe::Cpu
            | Probe::Memory
            | Probe::Disk { .. }
            | Probe::Load
            | Probe::TcpPort { .. } => Direction::Rising,
            Probe::Service { .. } | Probe::Process { .. } | Probe::FileHash { .. } => {
                Direction::PassFail
            }
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
}

impl CheckDefinition {
    fn validate(&self, limits: &Limits) -> Result<(), Refusal> {
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
            Probe::Cpu | Probe::Memory | Probe::Load => {}
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
                // A port check without thresholds is pass or fail.
                let pass_fail_ok = matches!(self.probe, Probe::TcpPort { .. });
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
            Direction::PassFail => {
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
pub(crate) fn validate_checks(checks: &[CheckDefinition], limits: &Limits) -> Result<(), Refusal> {
    cap(checks.len(), MAX_CHECKS, "checks")?;
    let mut names = BTreeSet::new();
    for check in checks {
        check.validate(limits)?;
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
        assert_eq!(check.validate(&Limits::default()), Ok(()));
        assert_eq!(check.classify(0), CheckState::Ok);
        assert_eq!(check.classify(1), CheckState::Critical);
    }

    #[test]
    fn malformed_checks_are_refused() {
        let limits = Limits::default();
        let refused = |check: CheckDefinition| {
            assert!(
                matches!(
                    validate_checks(std::slice::from_ref(&check), &limits),
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
            validate_checks(&[disk(Some(1), None), disk(Some(2), None)], &limits),
            Err(Refusal::Malformed(_))
        ));
        assert_eq!(validate_checks(&[disk(Some(80), None)], &limits), Ok(()));
    }
}
