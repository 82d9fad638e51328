//! The scheduler duty (RFD 0019). Its pure part, [`due_at`], says which
//! occurrence of a stored schedule is due at `now` (no clock, no I/O); the
//! loop, [`run`], one node's duty under a lease (with SQLite, the only
//! node's), reads `Store::live_schedules` every few seconds, claims each
//! due occurrence with `Store::claim_occurrence` (the row is the claim, so
//! two nodes or a restart deliver it once; the claim makes the run's job
//! row) and nudges the targets' sessions, which deliver it to every online
//! target; an offline one gets it when it reconnects, while the run window
//! lasts. Agents decide again with their own clock.

use std::collections::HashMap;
use std::time::Duration;

use bulwark_policy::Limits;
use bulwark_policy::Signed;
use bulwark_policy::schedule::{LATE_TOLERANCE_SECS, ScheduleStatement, run_job_id};
use bulwark_store::{AuditAction, Claim, NewAuditEvent, Store, StoreError, TenantScope};
use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::patch_rings::{RingTwo, release_ring_two};
use crate::presence::Presence;

/// How often the duty looks for due occurrences (cron has minutes).
pub const TICK: Duration = Duration::from_secs(5);

/// The duty's loop, until `shutdown`.
pub async fn run(
    store: Store,
    presence: Presence,
    node: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    let mut seen = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = claim_due(&store, &presence, &node, &mut seen, crate::now_millis()).await {
                    warn!(%error, "Cannot claim the schedules' due occurrences.");
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Claims every occurrence due at `now_ms` not claimed yet and nudges its
/// targets; returns how many it claimed. `seen` holds the last occurrence
/// this loop tried per schedule, so it does not ask the store again each
/// tick (the claim row, not this, is what makes a run once).
pub async fn claim_due(
    store: &Store,
    presence: &Presence,
    node: &str,
    seen: &mut HashMap<String, u64>,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let now = u64::try_from(now_ms / 1000).unwrap_or(0);
    let mut claimed = 0;
    let live = store.live_schedules(now_ms).await?;
    seen.retain(|id, _| live.iter().any(|s| s.id == *id));
    for schedule in live {
        let Some(due) = due_at(&schedule.envelope, now, crate::api::schedules::zone_named) else {
            continue;
        };
        if seen.get(&schedule.id) == Some(&due.occurrence) {
            continue;
        }
        // Ring 2 of a patch policy: withheld until the canary soaked
        // healthy (RFD 0021). Asked again each tick while the run window
        // lasts, so a canary that finishes late still releases it.
        if let Some(policy) = store.patch_policy_of_ring_two(&schedule.id).await? {
            let runs = crate::api::patch_policies::canary_runs(
                store,
                presence,
                &TenantScope::All,
                &policy.id,
            )
            .await?;
            let soak = u64::try_from(policy.soak_secs).unwrap_or(u64::MAX);
            if let RingTwo::Hold(why) = release_ring_two(due.occurrence, soak, &runs) {
                debug!(schedule = %schedule.id, occurrence = due.occurrence, %why, "Ring 2 held.");
                continue;
            }
        }
        let occurrence = i64::try_from(due.occurrence).unwrap_or(i64::MAX);
        let script_sha256: [u8; 32] = Sha256::digest(&schedule.script).into();
        let event = NewAuditEvent::new(
            now_ms,
            "server",
            AuditAction::ScheduleOccurrenceDelivered,
            &schedule.id,
        )
        .in_tenant(Some(&schedule.tenant_id))
        .with_detail(format!(
            "occurrence {} ({occurrence}) as job {} to {} device(s)",
            crate::rfc3339(occurrence.saturating_mul(1000)),
            due.job_id,
            due.targets.len()
        ));
        let claim = Claim {
            schedule_id: &schedule.id,
            occurrence,
            job_id: &due.job_id,
            script_sha256: &script_sha256,
            targets: &due.targets,
            run_window_ms: i64::try_from(LATE_TOLERANCE_SECS * 1000).unwrap_or(i64::MAX),
        };
        let claimed_now = store
            .claim_occurrence(&claim, node, now_ms, &[event])
            .await?;
        seen.insert(schedule.id.clone(), due.occurrence);
        if claimed_now {
            info!(schedule = %schedule.id, occurrence, job = %due.job_id, "Claimed a schedule's occurrence; delivering it.");
            for device in &due.targets {
                presence.nudge_device(device);
            }
            claimed += 1;
        }
    }
    Ok(claimed)
}

/// One occurrence to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Unix seconds.
    pub occurrence: u64,
    /// The run's job id (`run_job_id`), hex.
    pub job_id: String,
    /// The device ids the schedule names.
    pub targets: Vec<String>,
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
        targets: schedule.targets.into_iter().map(|t| t.device_id).collect(),
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
