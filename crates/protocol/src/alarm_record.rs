//! An agent's own record of the security alarms it raised (issue 16; RFD
//! 0007, "What if the server lies"), and how an auditor holds it against
//! the tenant's verified log.
//!
//! An agent reports a log refusal (a job the transparency log does not
//! vouch for) or a trust refusal (a root, policy or freeze statement it
//! would not take) to the server, which should append `alert.log_refused`
//! or `alert.trust_refused` to the tenant's log and raise an alert. An
//! owned server can drop the report instead. So the agent also appends
//! every alarm to a file in its state directory, and `bulwark audit verify
//! --alarms FILE` checks that each one is in the verified log: an alarm
//! the endpoint raised and the log lacks is a server that suppressed it.
//!
//! One alarm a line, eight fields separated by tabs:
//!
//! ```text
//! bulwark-alarm/1 <at ms> <tenant> <device> <kind> <subject> <code> <reason>
//! ```
//!
//! Only the reason is free text; [`Alarm::to_line`] turns its control
//! characters into spaces and clips it. The other fields must be
//! printable text without tabs. [`parse_record`] is strict and bounded:
//! the file comes from an endpoint to an auditor's machine, and every byte
//! of it is read as untrusted (fuzzed: `fuzz/fuzz_targets/alarm_record.rs`).
//! Blank lines and lines starting with `#` are skipped, so records of
//! several devices can be concatenated with a note of where each came from.

use crate::audit_leaf::AuditLeaf;

/// The first field of every line: the format and its version.
pub const RECORD_TAG: &str = "bulwark-alarm/1";

/// The log action of an agent's refusal of a job the log does not vouch for.
pub const ALERT_LOG_REFUSED: &str = "alert.log_refused";
/// The log action of an agent's refusal of a trust statement.
pub const ALERT_TRUST_REFUSED: &str = "alert.trust_refused";

/// Longest line read, newline excluded.
pub const MAX_LINE_BYTES: usize = 2048;
/// Longest reason written (clipped on a character boundary).
pub const MAX_REASON_BYTES: usize = 1024;
/// Longest tenant, device, subject or code.
pub const MAX_FIELD_BYTES: usize = 128;
/// Most alarms read from one record.
pub const MAX_ALARMS: usize = 100_000;

/// What kind of refusal an alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmKind {
    /// A job (or a scheduled run) the transparency log does not vouch for;
    /// the subject is the job id in hex.
    LogRefused,
    /// A trust statement; the subject is [`trust_subject`].
    TrustRefused,
}

impl AlarmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::LogRefused => "log_refused",
            AlarmKind::TrustRefused => "trust_refused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "log_refused" => Some(AlarmKind::LogRefused),
            "trust_refused" => Some(AlarmKind::TrustRefused),
            _ => None,
        }
    }

    /// The action of the log entry the server must append for it.
    pub fn log_action(self) -> &'static str {
        match self {
            AlarmKind::LogRefused => ALERT_LOG_REFUSED,
            AlarmKind::TrustRefused => ALERT_TRUST_REFUSED,
        }
    }
}

/// The target of an `alert.trust_refused` entry and the subject of its
/// alarm: the statement's kind and version, e.g. `policy v7`. The server
/// and the agent both build it here, so the two cannot drift apart.
pub fn trust_subject(kind: &str, version: u64) -> String {
    format!("{kind} v{version}")
}

/// The actor of an entry an agent's report caused.
pub fn agent_actor(device_id: &str) -> String {
    format!("agent:{device_id}")
}

/// One alarm an agent raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// The agent's clock, Unix milliseconds.
    pub at: u64,
    /// The tenant id: whose log must hold it.
    pub tenant: String,
    pub device: String,
    pub kind: AlarmKind,
    /// The job id (hex) or [`trust_subject`].
    pub subject: String,
    /// The refusal code (`bulwark_protocol::message::AgentRefusalCode`).
    pub code: String,
    /// The refusal's reason, for people.
    pub reason: String,
}

/// Why a record cannot be read; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("the record holds more than {MAX_ALARMS} alarms")]
    TooMany,
}

impl Alarm {
    /// The line for this alarm, newline included. `None` if a field other
    /// than the reason is not plain text (the agent names its own subject
    /// and code, so that is a bug, not input).
    pub fn to_line(&self) -> Option<String> {
        for field in [&self.tenant, &self.device, &self.subject, &self.code] {
            plain(field).ok()?;
        }
        let reason: String = self
            .reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut end = reason.len().min(MAX_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Some(format!(
            "{RECORD_TAG}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            self.at,
            self.tenant,
            self.device,
            self.kind.as_str(),
            self.subject,
            self.code,
            &reason[..end]
        ))
    }

    /// Whether `leaf` is the log entry this alarm's report must have become:
    /// the same tenant, this agent as actor, the alarm's action and subject.
    /// Time is not compared: the entry's is the server's clock.
    pub fn is_logged_by(&self, leaf: &AuditLeaf) -> bool {
        leaf.tenant.as_deref() == Some(self.tenant.as_str())
            && leaf.action == self.kind.log_action()
            && leaf.target == self.subject
            && leaf.actor == agent_actor(&self.device)
    }
}

/// Printable text without tabs, of at most [`MAX_FIELD_BYTES`].
fn plain(field: &str) -> Result<(), String> {
    if field.is_empty() {
        return Err("an empty field".into());
    }
    if field.len() > MAX_FIELD_BYTES {
        return Err(format!("a field longer than {MAX_FIELD_BYTES} bytes"));
    }
    if field.chars().any(|c| c.is_control() || c == '\t') {
        return Err("a field with a control character".into());
    }
    Ok(())
}

/// Reads a record: every alarm in it, in order.
pub fn parse_record(text: &str) -> Result<Vec<Alarm>, RecordError> {
    let mut alarms = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| RecordError::Line {
            line: i + 1,
            message,
        };
        if line.len() > MAX_LINE_BYTES {
            return Err(bad(format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        if alarms.len() == MAX_ALARMS {
            return Err(RecordError::TooMany);
        }
        alarms.push(parse_line(line).map_err(bad)?);
    }
    Ok(alarms)
}

fn parse_line(line: &str) -> Result<Alarm, String> {
    let fields: Vec<&str> = line.splitn(8, '\t').collect();
    let [tag, at, tenant, device, kind, subject, code, reason] = fields[..] else {
        return Err(format!(
            "{} tab-separated fields where 8 belong",
            fields.len()
        ));
    };
    if tag != RECORD_TAG {
        return Err(format!("not a {RECORD_TAG} line"));
    }
    let at = at
        .parse::<u64>()
        .map_err(|_| format!("the time {at:?} is not Unix milliseconds"))?;
    for (name, field) in [
        ("tenant", tenant),
        ("device", device),
        ("subject", subject),
        ("code", code),
    ] {
        plain(field).map_err(|e| format!("the {name}: {e}"))?;
    }
    let kind = AlarmKind::parse(kind).ok_or_else(|| format!("unknown alarm kind {kind:?}"))?;
    if reason.len() > MAX_REASON_BYTES || reason.chars().any(char::is_control) {
        return Err("the reason is too long or holds control characters".into());
    }
    Ok(Alarm {
        at,
        tenant: tenant.to_owned(),
        device: device.to_owned(),
        kind,
        subject: subject.to_owned(),
        code: code.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Where an alarm stands after the verified log was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmStatus {
    /// In the log, at this entry (the first that matches).
    Logged(u64),
    /// Not in the log, but raised less than the grace period before the
    /// check: its report may still be on its way.
    Recent,
    /// Not in the log and older than the grace period: suppressed, or in
    /// entries that were not checked.
    Missing,
}

/// Holds a tenant's alarms against its log's entries as they are fed.
#[derive(Debug, Clone)]
pub struct AlarmCheck {
    alarms: Vec<Alarm>,
    logged: Vec<Option<u64>>,
}

impl AlarmCheck {
    pub fn new(alarms: Vec<Alarm>) -> Self {
        let logged = vec![None; alarms.len()];
        Self { alarms, logged }
    }

    /// Entry `index` of the log was verified and decodes as `leaf`.
    pub fn feed(&mut self, index: u64, leaf: &AuditLeaf) {
        if !leaf.action.starts_with("alert.") {
            return;
        }
        for (alarm, logged) in self.alarms.iter().zip(self.logged.iter_mut()) {
            if logged.is_none() && alarm.is_logged_by(leaf) {
                *logged = Some(index);
            }
        }
    }

    /// Each alarm and where it stands at `now` (Unix ms) with `grace_ms`.
    pub fn outcome(&self, now: u64, grace_ms: u64) -> Vec<(&Alarm, AlarmStatus)> {
        self.alarms
            .iter()
            .zip(&self.logged)
            .map(|(alarm, logged)| {
                let status = match logged {
                    Some(index) => AlarmStatus::Logged(*index),
                    None if alarm.at.saturating_add(grace_ms) > now => AlarmStatus::Recent,
                    None => AlarmStatus::Missing,
                };
                (alarm, status)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TENANT: &str = "6f1c2a9e-0000-4000-8000-000000000001";
    const DEVICE: &str = "0d2b7c11-0000-4000-8000-000000000002";

    fn alarm(kind: AlarmKind, subject: &str) -> Alarm {
        Alarm {
            at: 1_700_000_000_000,
            tenant: TENANT.into(),
            device: DEVICE.into(),
            kind,
            subject: subject.into(),
            code: "log_not_included".into(),
            reason: "entry 12 is not in the tree".into(),
        }
    }

    fn leaf(action: &str, actor: &str, target: &str) -> AuditLeaf {
        AuditLeaf::new(1, Some(TENANT.into()), actor, action, target, "")
    }

    #[test]
    fn a_line_reads_back_as_the_alarm() {
        let a = alarm(AlarmKind::LogRefused, "00112233445566778899aabbccddeeff");
        let line = a.to_line().expect("writes");
        assert!(line.starts_with("bulwark-alarm/1\t1700000000000\t"));
        assert_eq!(parse_record(&line).expect("reads"), vec![a]);
    }

    #[test]
    fn the_reason_loses_control_characters_and_is_clipped() {
        let mut a = alarm(AlarmKind::TrustRefused, &trust_subject("policy", 7));
        a.reason = format!("a\tb\nc\u{1b}[2J{}", "é".repeat(MAX_REASON_BYTES));
        let line = a.to_line().expect("writes");
        assert_eq!(line.matches('\n').count(), 1);
        let read = &parse_record(&line).expect("reads")[0];
        assert!(read.reason.starts_with("a b c [2J"));
        assert!(read.reason.len() <= MAX_REASON_BYTES);
    }

    #[test]
    fn fields_other_than_the_reason_must_be_plain() {
        let mut a = alarm(AlarmKind::LogRefused, "ab");
        a.subject = "a\tb".into();
        assert_eq!(a.to_line(), None);
        for bad in [
            "bulwark-alarm/2\t1\tt\td\tlog_refused\ts\tc\tr",
            "bulwark-alarm/1\tsoon\tt\td\tlog_refused\ts\tc\tr",
            "bulwark-alarm/1\t1\tt\td\tsomething\ts\tc\tr",
            "bulwark-alarm/1\t1\t\td\tlog_refused\ts\tc\tr",
            "bulwark-alarm/1\t1\tt\td\tlog_refused\ts\tc",
            "bulwark-alarm/1\t1\tt\td\tlog_refused\ts\tc\tr\u{7}",
        ] {
            assert!(
                matches!(parse_record(bad), Err(RecordError::Line { line: 1, .. })),
                "{bad:?}"
            );
        }
        let long = format!(
            "bulwark-alarm/1\t1\tt\td\tlog_refused\ts\tc\t{}",
            "x".repeat(3000)
        );
        assert!(parse_record(&long).is_err());
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_errors_name_the_line() {
        let a = alarm(AlarmKind::LogRefused, "ab")
            .to_line()
            .expect("writes");
        let text = format!("# host-a\n\n{}\r\n# host-b\ngarbage\n", a.trim_end());
        assert!(matches!(
            parse_record(&text),
            Err(RecordError::Line { line: 5, .. })
        ));
        let text = format!("# host-a\n\n{a}# host-b\n{a}");
        assert_eq!(parse_record(&text).expect("reads").len(), 2);
    }

    #[test]
    fn only_the_entry_of_this_alarm_logs_it() {
        let a = alarm(AlarmKind::LogRefused, "ab");
        let actor = agent_actor(DEVICE);
        assert!(a.is_logged_by(&leaf(ALERT_LOG_REFUSED, &actor, "ab")));
        // Another job, another device, another action, another tenant.
        assert!(!a.is_logged_by(&leaf(ALERT_LOG_REFUSED, &actor, "cd")));
        assert!(!a.is_logged_by(&leaf(ALERT_LOG_REFUSED, "agent:other", "ab")));
        assert!(!a.is_logged_by(&leaf("job.refused_by_agent", &actor, "ab")));
        let mut foreign = leaf(ALERT_LOG_REFUSED, &actor, "ab");
        foreign.tenant = Some("another".into());
        assert!(!a.is_logged_by(&foreign));
    }

    #[test]
    fn the_check_tells_logged_recent_and_missing_apart() {
        let now = 1_700_000_600_000;
        let mut old = alarm(AlarmKind::LogRefused, "ab");
        old.at = now - 3_600_000;
        let mut fresh = alarm(AlarmKind::LogRefused, "cd");
        fresh.at = now - 60_000;
        let logged = alarm(AlarmKind::TrustRefused, "policy v3");
        let mut check = AlarmCheck::new(vec![old, fresh, logged]);
        let actor = agent_actor(DEVICE);
        check.feed(4, &leaf(ALERT_TRUST_REFUSED, &actor, "policy v3"));
        check.feed(9, &leaf(ALERT_TRUST_REFUSED, &actor, "policy v3"));
        let statuses: Vec<AlarmStatus> = check
            .outcome(now, 600_000)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            statuses,
            vec![
                AlarmStatus::Missing,
                AlarmStatus::Recent,
                AlarmStatus::Logged(4)
            ]
        );
    }

    proptest! {
        #[test]
        fn any_alarm_written_reads_back(
            at in any::<u64>(),
            subject in "[!-~]{1,64}",
            code in "[a-z_]{1,32}",
            reason in any::<String>(),
            trust in any::<bool>(),
        ) {
            let kind = if trust { AlarmKind::TrustRefused } else { AlarmKind::LogRefused };
            let a = Alarm { at, tenant: TENANT.into(), device: DEVICE.into(), kind, subject, code, reason };
            let line = a.to_line().expect("writes");
            let read = parse_record(&line).expect("reads");
            prop_assert_eq!(read.len(), 1);
            let read = &read[0];
            prop_assert_eq!(read.at, a.at);
            prop_assert_eq!(&read.subject, &a.subject);
            prop_assert!(!read.reason.chars().any(char::is_control));
        }

        #[test]
        fn no_input_panics(text in any::<String>()) {
            let _ = parse_record(&text);
        }
    }
}
