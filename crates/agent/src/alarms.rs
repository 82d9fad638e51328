//! The agent's own record of the security alarms it raised: every job it
//! refused because the transparency log does not vouch for it, every trust
//! statement it refused (`bulwark_protocol::alarm_record` has the format
//! and why). The server may drop the reports; this record stays on the
//! endpoint, for `bulwark-agent alarms` and an auditor's `bulwark audit
//! verify --alarms`.
//!
//! `alarms/record` in the state directory (0700; the file 0600), one line an
//! alarm, appended and fsynced before the report is sent. Past
//! [`RECORD_BYTES`] the file becomes `alarms/record.1` (replacing the one
//! before) and a new one starts, so the two hold at least the last
//! [`RECORD_BYTES`] of alarms.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bulwark_protocol::alarm_record::{Alarm, AlarmKind, parse_record, trust_subject};
use bulwark_protocol::message::{JobOutcome, JobResult, TrustRefused};
use tracing::{error, info};

use crate::files::private_dir;

/// Size at which the record moves to `record.1`: about 2,000 alarms.
pub const RECORD_BYTES: u64 = 1024 * 1024;

/// Appends alarms to the record. Cheap to clone; appends are serialised.
#[derive(Debug, Clone)]
pub struct AlarmLog {
    path: PathBuf,
    /// The tenant id of the root in force (what the log is named by), or
    /// until one is, what enrolment said.
    tenant: Arc<Mutex<String>>,
    device: String,
    lock: Arc<Mutex<()>>,
}

impl AlarmLog {
    /// The record of `device` under `state_dir`; `tenant` until
    /// [`AlarmLog::set_tenant`] names the verified one.
    pub fn new(state_dir: &Path, tenant: &str, device: &str) -> Self {
        Self {
            path: record_path(state_dir),
            tenant: Arc::new(Mutex::new(tenant.to_owned())),
            device: device.to_owned(),
            lock: Arc::default(),
        }
    }

    /// The tenant id of the trust root in force: the log an auditor
    /// checks the alarms against is named by it.
    pub fn set_tenant(&self, tenant: &str) {
        *self.tenant.lock().unwrap_or_else(PoisonError::into_inner) = tenant.to_owned();
    }

    fn tenant(&self) -> String {
        self.tenant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records `result` if the server must raise `alert.log_refused` for
    /// it (a refusal whose code is a log alarm); `now` in Unix ms.
    pub fn job_result(&self, result: &JobResult, now: u64) {
        if let JobOutcome::Refused(refused) = &result.outcome
            && refused.code.is_log_alarm()
        {
            self.record(Alarm {
                at: now,
                tenant: self.tenant(),
                device: self.device.clone(),
                kind: AlarmKind::LogRefused,
                subject: hex::encode(result.job_id),
                code: refused.code.as_str().to_owned(),
                reason: refused.reason.clone(),
            });
        }
    }

    /// Records a refused trust statement (every one is an alert on the
    /// server: `alert.trust_refused`).
    pub fn trust_refused(&self, refusal: &TrustRefused, now: u64) {
        self.record(Alarm {
            at: now,
            tenant: self.tenant(),
            device: self.device.clone(),
            kind: AlarmKind::TrustRefused,
            subject: trust_subject(&refusal.kind, refusal.version),
            code: refusal.code.as_str().to_owned(),
            reason: refusal.reason.clone(),
        });
    }

    fn record(&self, alarm: Alarm) {
        let Some(line) = alarm.to_line() else {
            error!(subject = %alarm.subject, "An alarm with a field that is not plain text was not recorded.");
            return;
        };
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        match append(&self.path, line.as_bytes()) {
            Ok(()) => {
                info!(kind = alarm.kind.as_str(), subject = %alarm.subject, "Alarm recorded on this endpoint.")
            }
            // The report still goes to the server; only the endpoint's own
            // copy is missing, and the agent's log says so.
            Err(error) => {
                error!(%error, path = %self.path.display(), subject = %alarm.subject, "SECURITY: cannot record an alarm on this endpoint.")
            }
        }
    }
}

fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("alarms").join("record")
}

fn append(path: &Path, line: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= RECORD_BYTES) {
        std::fs::rename(path, path.with_extension("1"))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()
}

/// The record's text, the older file first (as `bulwark audit verify
/// --alarms` reads it); empty if nothing was ever recorded.
pub fn record_text(state_dir: &Path) -> io::Result<String> {
    let path = record_path(state_dir);
    let mut text = String::new();
    for file in [path.with_extension("1"), path] {
        match std::fs::read_to_string(&file) {
            Ok(part) => text.push_str(&part),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(text)
}

/// The record as lines for people, the newest `count` first.
pub fn record_lines(state_dir: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    let alarms = parse_record(&record_text(state_dir)?)?;
    Ok(alarms
        .iter()
        .rev()
        .take(count)
        .map(|a| {
            format!(
                "{}  {:<13} {:<34} {:<28} {}",
                crate::text::utc_text(a.at / 1000),
                a.kind.as_str(),
                a.subject,
                a.code,
                a.reason
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_protocol::message::{AgentRefusalCode, JobRefused};

    fn refusal(code: AgentRefusalCode) -> JobResult {
        JobResult {
            job_id: [7; 16],
            outcome: JobOutcome::Refused(JobRefused {
                code,
                reason: "entry\tnot included\n".into(),
                log_size: None,
            }),
        }
    }

    #[test]
    fn log_alarms_and_trust_refusals_are_recorded_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = AlarmLog::new(dir.path(), "t1", "d1");
        log.job_result(&refusal(AgentRefusalCode::LogNotIncluded), 1_000);
        log.job_result(&refusal(AgentRefusalCode::LogHeadStale), 2_000);
        log.job_result(&refusal(AgentRefusalCode::AgentBusy), 3_000);
        log.trust_refused(
            &TrustRefused {
                kind: "policy".into(),
                version: 4,
                code: AgentRefusalCode::parse("rollback"),
                reason: "older than v5".into(),
            },
            4_000,
        );
        let alarms = parse_record(&record_text(dir.path()).expect("record")).expect("reads");
        assert_eq!(alarms.len(), 2);
        assert_eq!(alarms[0].kind, AlarmKind::LogRefused);
        assert_eq!(alarms[0].subject, hex::encode([7; 16]));
        assert_eq!(alarms[0].reason, "entry not included ");
        assert_eq!(alarms[1].subject, "policy v4");
        assert_eq!(alarms[1].at, 4_000);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(record_path(dir.path()))
                .expect("metadata")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(record_lines(dir.path(), 1).expect("lines").len(), 1);
    }

    #[test]
    fn a_full_record_moves_aside_and_both_are_read_oldest_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = AlarmLog::new(dir.path(), "t1", "d1");
        let mut big = refusal(AgentRefusalCode::LogNotIncluded);
        if let JobOutcome::Refused(r) = &mut big.outcome {
            r.reason = "x".repeat(1000);
        }
        let mut n = 0;
        while !record_path(dir.path()).with_extension("1").exists() {
            n += 1;
            log.job_result(&big, n);
        }
        log.job_result(&big, n + 1);
        let alarms = parse_record(&record_text(dir.path()).expect("record")).expect("reads");
        assert_eq!(alarms.len() as u64, n + 1);
        assert!(alarms.windows(2).all(|w| w[0].at < w[1].at));
    }
}
