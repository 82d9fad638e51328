//! Which log entries raise which alerts (RFD 0007): pure, time as an
//! argument. The raiser reads entries, asks [`classify`], and for a
//! released job that the tenant's policy delays builds the alert with
//! [`mass_action_alert`].

use bulwark_policy::MassActionDelay;
use bulwark_policy::job::JobStatement;
use bulwark_protocol::audit_leaf::{AuditLeaf, JOB_RELEASED};
use bulwark_store::{AuditAction, NewAlert, Severity};

/// Entries older than this when first read raise nothing: a server
/// upgraded onto an old log, or back from a long outage, must not page
/// anyone about yesterday.
pub const MAX_AGE_MS: i64 = 24 * 3600 * 1000;

/// What one entry means for alerting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    Raise(NewAlert),
    /// A job entered the log: it raises an alert if the tenant's policy
    /// delays it (the raiser looks the job and the policy up).
    Released {
        job_id: String,
    },
    Nothing,
}

/// Where an entry sits.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub log_id: &'a str,
    pub idx: u64,
}

/// `agent:<device id>` → the device id.
fn device_of(actor: &str) -> Option<String> {
    actor.strip_prefix("agent:").map(str::to_owned)
}

/// What `leaf`, read at `now` (Unix ms), raises.
pub fn classify(at: At<'_>, leaf: &AuditLeaf, now: i64) -> Classified {
    if now.saturating_sub(leaf.at) > MAX_AGE_MS {
        return Classified::Nothing;
    }
    if leaf.action == JOB_RELEASED {
        return Classified::Released {
            job_id: leaf.target.clone(),
        };
    }
    let tenant = leaf.tenant.clone();
    let scope = tenant.as_deref().unwrap_or("msp");
    let (severity, dedup_key, summary) = match AuditAction::parse(&leaf.action) {
        // Invariant-level: an agent says the log does not vouch for a job
        // the server sent it. One alert per job, however many devices.
        Some(AuditAction::AlertLogRefused) => (
            Severity::Critical,
            format!("{}:{scope}:{}", leaf.action, leaf.target),
            format!(
                "An agent refused job {} because the transparency log does not vouch for it",
                leaf.target
            ),
        ),
        Some(AuditAction::AlertTrustRefused) => (
            Severity::Critical,
            format!("{}:{scope}:{}", leaf.action, leaf.target),
            format!(
                "An agent refused the trust statement {} the server sent it",
                leaf.target
            ),
        ),
        Some(AuditAction::AlertLoginBurst) => (
            Severity::Warning,
            format!("{}:{scope}:{}", leaf.action, leaf.target),
            format!("A burst of failed sign-ins ({})", leaf.target),
        ),
        Some(AuditAction::SiemSinkFailed) => (
            Severity::Warning,
            format!("{}:{scope}:{}", leaf.action, leaf.target),
            format!("The SIEM export {} fails", leaf.target),
        ),
        _ => return Classified::Nothing,
    };
    Classified::Raise(NewAlert {
        tenant_id: tenant,
        device_id: device_of(&leaf.actor),
        kind: leaf.action.clone(),
        severity,
        dedup_key,
        summary,
        detail: leaf.detail.clone(),
        log_id: Some(at.log_id.to_owned()),
        log_idx: Some(at.idx),
        silenced: None,
    })
}

/// "1 h 30 min", "45 min", "90 s".
pub fn duration_text(secs: u64) -> String {
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, _) if h > 0 => format!("{h} h {m} min"),
        (_, m, s) => format!("{m} min {s} s"),
    }
}

/// The alert for a released job that `rule` delays: the customer hears of
/// it while it waits and can still freeze the tenant (RFD 0006).
pub fn mass_action_alert(
    at: At<'_>,
    leaf: &AuditLeaf,
    job: &JobStatement,
    rule: &MassActionDelay,
) -> NewAlert {
    let delay = duration_text(rule.delay_secs);
    let devices = job.targets.len();
    let job_id = leaf.target.as_str();
    let tenant = job.tenant_name.as_str();
    let delay_ms = i64::try_from(rule.delay_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let runs_from = crate::rfc3339(leaf.at.saturating_add(delay_ms));
    NewAlert {
        tenant_id: leaf.tenant.clone(),
        device_id: None,
        kind: "mass_action.delayed".to_owned(),
        severity: Severity::Warning,
        dedup_key: format!("mass_action.delayed:{job_id}"),
        summary: format!(
            "Mass action: a {} job for {devices} device{} waits {delay} before any agent runs it",
            job.class.name(),
            if devices == 1 { "" } else { "s" }
        ),
        detail: format!(
            "Job {job_id} entered tenant {tenant}'s log at {entered} and is held by the policy's \
             mass-action delay: agents run it no earlier than {delay} after the tenant's \
             witnesses cosigned it (about {runs_from}), by their own clocks.\n\
             Reason given: {reason}\n\
             Check it on your own machine: bulwark job show {job_id}\n\
             If you did not expect it, freeze the tenant now: bulwark tenant freeze --tenant \
             {tenant} --reason \"unexpected mass action {job_id}\"",
            entered = crate::rfc3339(leaf.at),
            reason = if job.reason.is_empty() {
                "(none)"
            } else {
                job.reason.as_str()
            },
        ),
        log_id: Some(at.log_id.to_owned()),
        log_idx: Some(at.idx),
        silenced: None,
    }
}

/// The alert for a device silent for `after` and not connected. The
/// server observed it; no log entry raised it.
pub fn offline_alert(
    device_id: &str,
    tenant_id: &str,
    hostname: &str,
    last_seen: i64,
    after: std::time::Duration,
) -> NewAlert {
    NewAlert {
        tenant_id: Some(tenant_id.to_owned()),
        device_id: Some(device_id.to_owned()),
        kind: "device.offline".to_owned(),
        severity: Severity::Warning,
        dedup_key: format!("{}{device_id}", bulwark_store::OFFLINE_KEY_PREFIX),
        summary: format!("Device {hostname} is offline"),
        detail: format!(
            "Device {hostname} ({device_id}) was last heard of at {} and has been silent for \
             more than {}. The alert resolves itself when the device connects again.",
            crate::rfc3339(last_seen),
            duration_text(after.as_secs())
        ),
        log_id: None,
        log_idx: None,
        silenced: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const AT: At<'static> = At {
        log_id: "t1",
        idx: 7,
    };

    fn leaf(action: &str, actor: &str, target: &str, at: i64) -> AuditLeaf {
        AuditLeaf::new(at, Some("t1".into()), actor, action, target, "why")
    }

    #[test]
    fn a_log_refusal_is_critical_and_one_per_job() {
        let a = classify(
            AT,
            &leaf("alert.log_refused", "agent:d1", "job-1", NOW),
            NOW,
        );
        let b = classify(
            AT,
            &leaf("alert.log_refused", "agent:d2", "job-1", NOW),
            NOW,
        );
        let (Classified::Raise(a), Classified::Raise(b)) = (a, b) else {
            panic!("no alert");
        };
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.device_id.as_deref(), Some("d1"));
        assert_eq!(a.dedup_key, b.dedup_key);
        assert_eq!((a.log_id.as_deref(), a.log_idx), (Some("t1"), Some(7)));
    }

    #[test]
    fn old_entries_and_ordinary_ones_raise_nothing() {
        let old = leaf(
            "alert.log_refused",
            "agent:d1",
            "job-1",
            NOW - MAX_AGE_MS - 1,
        );
        assert_eq!(classify(AT, &old, NOW), Classified::Nothing);
        let result = leaf("job.result", "agent:d1", "job-1", NOW);
        assert_eq!(classify(AT, &result, NOW), Classified::Nothing);
        let released = leaf(JOB_RELEASED, "op", "job-9", NOW);
        assert_eq!(
            classify(AT, &released, NOW),
            Classified::Released {
                job_id: "job-9".into()
            }
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_text(45), "45 s");
        assert_eq!(duration_text(600), "10 min");
        assert_eq!(duration_text(3600), "1 h");
        assert_eq!(duration_text(5400), "1 h 30 min");
        assert_eq!(duration_text(61), "1 min 1 s");
    }
}
