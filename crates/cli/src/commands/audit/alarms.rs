//! `bulwark audit verify --alarms FILE`: the alarms agents recorded on their
//! endpoints (`bulwark-agent alarms --record`), held against the verified
//! log. Each must be in it as the `alert.*` entry its report should have
//! become (`bulwark_protocol::alarm_record`); one that is not, and is older
//! than `--alarm-grace`, is an alarm the server suppressed (exit 5).

use bulwark_protocol::alarm_record::{AlarmCheck, AlarmStatus, parse_record};

use super::*;

/// Exit code of `verify` when the log verified but lacks alarms the agents'
/// records hold.
pub(super) const EXIT_ALARMS_MISSING: i32 = 5;

/// The alarms of `log_id`'s tenant in `files`; alarms of other tenants are
/// counted and left out (records of a whole fleet can be passed at once).
pub(super) fn read_alarms(files: &[PathBuf], log_id: &str) -> Result<Option<(AlarmCheck, usize)>> {
    if files.is_empty() {
        return Ok(None);
    }
    ensure!(
        log_id != bulwark_protocol::audit_leaf::MSP_LOG,
        "--alarms needs a tenant's log: agents' alarms are recorded there, not in the MSP log"
    );
    let mut alarms = Vec::new();
    let mut foreign = 0;
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the alarm record {}", file.display()))?;
        let read = parse_record(&text)
            .with_context(|| format!("{} is not an agent's alarm record", file.display()))?;
        for alarm in read {
            if alarm.tenant == log_id {
                alarms.push(alarm);
            } else {
                foreign += 1;
            }
        }
    }
    ensure!(
        !alarms.is_empty() || foreign == 0,
        "the alarm records hold {foreign} alarm(s), none of tenant {log_id}: check --alarms and --tenant"
    );
    Ok(Some((AlarmCheck::new(alarms), foreign)))
}

/// What the alarm check found, once the log verified.
pub(super) struct AlarmReport {
    logged: usize,
    recent: usize,
    missing: Vec<String>,
    foreign: usize,
    /// Entries `0..n` were not checked (archived): a missing alarm may be there.
    unchecked_below: Option<u64>,
}

impl AlarmReport {
    pub(super) fn new(
        check: &AlarmCheck,
        foreign: usize,
        now_ms: u64,
        grace_ms: u64,
        unchecked_below: Option<u64>,
    ) -> Self {
        let mut report = Self {
            logged: 0,
            recent: 0,
            missing: Vec::new(),
            foreign,
            unchecked_below,
        };
        for (alarm, status) in check.outcome(now_ms, grace_ms) {
            match status {
                AlarmStatus::Logged(_) => report.logged += 1,
                AlarmStatus::Recent => report.recent += 1,
                AlarmStatus::Missing => report.missing.push(format!(
                    "{} device {} {} {} ({}): {}",
                    utc(alarm.at / 1000),
                    alarm.device,
                    alarm.kind.as_str(),
                    alarm.subject,
                    alarm.code,
                    alarm.reason
                )),
            }
        }
        report
    }

    /// Exit code: [`EXIT_ALARMS_MISSING`] if the checked log lacks an alarm.
    pub(super) fn exit_code(&self) -> Option<i32> {
        (!self.missing.is_empty() && self.unchecked_below.is_none()).then_some(EXIT_ALARMS_MISSING)
    }

    pub(super) fn summary(&self) -> String {
        let mut text = format!(
            "{} in the log, {} missing, {} too recent to expect",
            self.logged,
            self.missing.len(),
            self.recent
        );
        if self.foreign > 0 {
            text.push_str(&format!(", {} of other tenants ignored", self.foreign));
        }
        match (self.missing.is_empty(), self.unchecked_below) {
            (true, _) => {}
            (false, Some(n)) => text.push_str(&format!(
                ": NOT in the entries checked; entries 0 to {} were not (pass --archive DIR)",
                n - 1
            )),
            (false, None) => text.push_str(
                ": the agents raised these and the log does not hold them, so the server \
                 suppressed their reports",
            ),
        }
        text
    }

    pub(super) fn lines(&self) -> &[String] {
        &self.missing
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "logged": self.logged,
            "recent": self.recent,
            "missing": self.missing,
            "other_tenants": self.foreign,
            "missing_may_be_archived": self.unchecked_below.is_some() && !self.missing.is_empty(),
        })
    }
}
