//! The scheduler duty's pure part (RFD 0019): which occurrence of a stored
//! schedule is due at `now`. No clock, no I/O: the loop at the edge (next
//! slice) reads `Store::live_schedules`, asks this, claims each answer with
//! `Store::claim_occurrence` (the row is the claim, so two nodes deliver
//! once) and delivers it. Agents decide again with their own clock.

use bulwark_policy::Limits;
use bulwark_policy::Signed;
use bulwark_policy::schedule::{LATE_TOLERANCE_SECS, ScheduleStatement, run_job_id};
use jiff::tz::TimeZone;

/// One occurrence to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Unix seconds.
    pub occurrence: u64,
    /// The run's job id (`run_job_id`), hex.
    pub job_id: String,
}

/// The latest occurrence of the schedule in `envelope` at or before `now`
/// that agents would still run (less than `LATE_TOLERANCE_SECS` ago), if
/// any. `None` for an envelope that does not decode or a zone `zones` lacks.
pub fn due_at(
    envelope: &[u8],
    now: u64,
    zones: impl FnOnce(&str) -> Option<TimeZone>,
) -> Option<Due> {
    let limits = Limits::default();
    let signed = Signed::from_bytes(envelope, &limits).ok()?;
    let schedule: ScheduleStatement = signed.statement(&limits).ok()?;
    let timetable = schedule.timetable(&limits, zones).ok()?;
    // Only occurrences an agent would still accept: a missed one is not made up.
    let since = now.saturating_sub(LATE_TOLERANCE_SECS);
    let occurrence = timetable.due_at(now, since)?;
    Some(Due {
        occurrence,
        job_id: hex::encode(run_job_id(&schedule.schedule_id, occurrence)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_policy::policy::ScriptHash;
    use bulwark_policy::{ActionClass, Interpreter, JobAction, JobTarget};

    const T: u64 = 1_800_000_000; // 2027-01-15T08:00:00Z

    fn envelope(cron: &str, zone: &str) -> Vec<u8> {
        let statement = ScheduleStatement {
            tenant: "t".into(),
            tenant_name: "T".into(),
            schedule_id: [7; 16],
            targets: vec![JobTarget {
                device_id: "6f1c2a3b-0000-4000-8000-000000000001".into(),
                hostname: "ws".into(),
                device_key: None,
            }],
            class: ActionClass::RunScript,
            action: JobAction::RunScript {
                interpreter: Interpreter::Sh,
                script_sha256: ScriptHash([0; 32]),
            },
            cron: cron.into(),
            zone: zone.into(),
            window: None,
            not_before: T - 3600,
            not_after: T + 86_400,
            nonce: [1; 16],
            reason: String::new(),
            timeout_secs: 60,
        };
        Signed::new(&statement).to_bytes()
    }

    fn utc(_: &str) -> Option<TimeZone> {
        Some(TimeZone::UTC)
    }

    fn check(cron: &str, now: u64, expect: Option<u64>) {
        let got = due_at(&envelope(cron, "UTC"), now, utc).map(|d| d.occurrence);
        assert_eq!(got, expect, "{cron} at {now}");
    }

    #[test]
    fn the_latest_occurrence_agents_still_run() {
        check("*/5 * * * *", T, Some(T));
        check("*/5 * * * *", T + 299, Some(T));
        check("*/5 * * * *", T + 300, Some(T + 300));
        // Hourly: due for ten minutes, then missed, not made up.
        check("0 * * * *", T + 599, Some(T));
        check("0 * * * *", T + 600, None);
        check("0 * * * *", T - 1, None);
        let due = due_at(&envelope("0 * * * *", "UTC"), T, utc).expect("due");
        assert_eq!(due.job_id, hex::encode(run_job_id(&[7; 16], T)));
    }

    #[test]
    fn what_does_not_decode_or_has_no_zone_is_never_due() {
        assert_eq!(due_at(b"not an envelope", T, utc), None);
        assert_eq!(
            due_at(&envelope("0 * * * *", "Nowhere/Here"), T, |_| None),
            None
        );
    }
}
