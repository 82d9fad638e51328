//! Scheduled jobs (RFD 0019): a schedule is signed once, and the agent
//! verifies every run of it itself: the signatures under its *current*
//! policy, that the time it is asked to run is really an occurrence of the
//! signed expression in the signed zone, by its own clock, never twice.
//!
//! Time zones: the caller looks the zone up (the agent in its own system
//! tz database) and hands [`jiff::tz::TimeZone`] values in through a
//! closure; nothing here reads a file or a clock.
//!
//! DST, as RFD 0019 decides: a local time in a gap (spring forward) has no
//! occurrence; a local time that happens twice (fall back) has one, the
//! earlier instant.

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::Refusal;
use crate::cron::Cron;
use crate::envelope::{Signed, Statement};
use crate::job::{AgentContext, JobAction, JobStatement, JobTarget, check_quorum, same_hostname};
use crate::keys::KeyId;
use crate::limits::{Limits, cap};
use crate::policy::{ActionClass, ScheduleId, ScriptHash};

/// How early, by the agent's clock, a run may start before its occurrence
/// (clock skew between server and agent).
pub const EARLY_TOLERANCE_SECS: u64 = 30;
/// How late a run may start after its occurrence; later it is missed.
pub const LATE_TOLERANCE_SECS: u64 = 600;
/// Longest IANA zone name accepted.
pub const MAX_ZONE_NAME: usize = 64;

/// A daily window of local wall-clock time, `[start, end)` in minutes after
/// midnight; `end < start` runs past midnight. Never empty, never all day
/// (no window means all day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct LocalWindow {
    #[n(0)]
    pub start_minute: u16,
    #[n(1)]
    pub end_minute: u16,
}

impl LocalWindow {
    /// Parses `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<LocalWindow, Refusal> {
        let bad = || Refusal::Malformed(format!("window {text:?} is not HH:MM-HH:MM"));
        let minute = |s: &str| -> Result<u16, Refusal> {
            let (h, m) = s.split_once(':').ok_or_else(bad)?;
            let digits = |t: &str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit());
            if !digits(h) || !digits(m) {
                return Err(bad());
            }
            let h: u16 = h.parse().map_err(|_| bad())?;
            let m: u16 = m.parse().map_err(|_| bad())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let window = LocalWindow {
            start_minute: minute(a)?,
            end_minute: minute(b)?,
        };
        window.validate()?;
        Ok(window)
    }

    fn validate(&self) -> Result<(), Refusal> {
        if self.start_minute >= 1440 || self.end_minute >= 1440 {
            return Err(Refusal::Malformed("a window outside the day".into()));
        }
        if self.start_minute == self.end_minute {
            return Err(Refusal::Malformed("an empty window".into()));
        }
        Ok(())
    }

    /// Is this local time of day inside the window?
    pub fn contains(&self, time: Time) -> bool {
        let minute =
            u16::from(time.hour().unsigned_abs()) * 60 + u16::from(time.minute().unsigned_abs());
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

impl std::fmt::Display for LocalWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.start_minute), hm(self.end_minute))
    }
}

/// What operators sign once: the job body and when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ScheduleStatement {
    #[n(0)]
    pub tenant: String,
    #[n(1)]
    pub tenant_name: String,
    /// Unique per schedule: the agent keeps its last run per id.
    #[cbor(n(2), with = "minicbor::bytes")]
    pub schedule_id: [u8; 16],
    #[n(3)]
    pub targets: Vec<JobTarget>,
    /// The declared class; it must be the class the action derives to.
    #[n(4)]
    pub class: ActionClass,
    #[n(5)]
    pub action: JobAction,
    /// Five cron fields ([`Cron`]), matched in `zone`'s local time.
    #[n(6)]
    pub cron: String,
    /// An IANA zone name (`Europe/Berlin`), looked up by the agent itself.
    #[n(7)]
    pub zone: String,
    #[n(8)]
    pub window: Option<LocalWindow>,
    /// Unix seconds: the first instant an occurrence may be.
    #[n(9)]
    pub not_before: u64,
    /// Unix seconds: occurrences are strictly before this.
    #[n(10)]
    pub not_after: u64,
    #[cbor(n(11), with = "minicbor::bytes")]
    pub nonce: [u8; 16],
    #[n(12)]
    pub reason: String,
    #[n(13)]
    pub timeout_secs: u32,
}

impl Statement for ScheduleStatement {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.schedule.v1+cbor";
}

/// The parts of a schedule an agent computes with, after its checks.
#[derive(Debug, Clone)]
pub struct Timetable {
    pub cron: Cron,
    pub zone: TimeZone,
    pub window: Option<LocalWindow>,
    pub not_before: u64,
    pub not_after: u64,
}

impl ScheduleStatement {
    /// The schedule's own checks, independent of any agent (step 2):
    /// caps, the job body's checks, the expression, the lifetime. The
    /// server and the CLI run them too.
    pub fn validate(&self, limits: &Limits) -> Result<Cron, Refusal> {
        cap(self.zone.len(), MAX_ZONE_NAME, "zone name")?;
        self.job_for(self.not_before).validate(limits)?;
        let cron = Cron::parse(&self.cron).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if let Some(window) = &self.window {
            window.validate()?;
        }
        if self.not_after <= self.not_before {
            return Err(Refusal::Malformed(
                "the schedule ends before it starts".into(),
            ));
        }
        if self.not_after - self.not_before > limits.max_schedule_lifetime_secs {
            return Err(Refusal::ValidityTooLong);
        }
        Ok(cron)
    }

    /// The job this schedule describes at occurrence `at`: what the quorum
    /// is counted on and what the run is recorded as. Its id and nonce are
    /// [`run_job_id`], so each run is a job run of its own.
    pub fn job_for(&self, at: u64) -> JobStatement {
        let id = run_job_id(&self.schedule_id, at);
        JobStatement {
            tenant: self.tenant.clone(),
            job_id: id,
            targets: self.targets.clone(),
            class: self.class,
            action: self.action.clone(),
            not_before: at,
            expires_at: at.saturating_add(LATE_TOLERANCE_SECS),
            nonce: id,
            reason: self.reason.clone(),
            timeout_secs: self.timeout_secs,
            tenant_name: self.tenant_name.clone(),
        }
    }

    /// Checks and compiles the timing fields, with the zone looked up by `zones`.
    pub fn timetable(
        &self,
        limits: &Limits,
        zones: impl FnOnce(&str) -> Option<TimeZone>,
    ) -> Result<Timetable, Refusal> {
        let cron = self.validate(limits)?;
        let zone =
            zones(&self.zone).ok_or_else(|| Refusal::ScheduleZoneUnknown(self.zone.clone()))?;
        Ok(Timetable {
            cron,
            zone,
            window: self.window,
            not_before: self.not_before,
            not_after: self.not_after,
        })
    }
}

/// The job id of occurrence `at` of a schedule: the first 16 bytes of
/// SHA-256("bulwark-schedule-run" ‖ schedule id ‖ at as 8 big-endian bytes).
pub fn run_job_id(schedule_id: &[u8; 16], at: u64) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"bulwark-schedule-run")
        .chain_update(schedule_id)
        .chain_update(at.to_be_bytes())
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

impl Timetable {
    /// Is `at` (Unix seconds) an occurrence? A whole minute, whose local
    /// time matches the expression and the window, the earlier instant of
    /// its local time, within `[not_before, not_after)`.
    pub fn is_occurrence(&self, at: u64) -> bool {
        if !at.is_multiple_of(60) || at < self.not_before || at >= self.not_after {
            return false;
        }
        let Some(ts) = timestamp(at) else {
            return false;
        };
        let local = self.zone.to_datetime(ts);
        if !self.cron.matches(local) || !self.window.is_none_or(|w| w.contains(local.time())) {
            return false;
        }
        // In a fold the same local time names two instants: only the earlier runs.
        self.instant_of(local) == Some(at)
    }

    /// The instant a local minute runs at: none in a gap, the earlier one in a fold.
    fn instant_of(&self, local: DateTime) -> Option<u64> {
        let ambiguous = self.zone.to_ambiguous_timestamp(local);
        if matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
            return None;
        }
        let second = ambiguous.earlier().ok()?.as_second();
        u64::try_from(second).ok()
    }

    /// The first occurrence strictly after `after` (Unix seconds), if any
    /// before `not_after`. Walks local days, and in each the allowed
    /// minutes earliest first: with the earlier instant of each fold, local
    /// order is time order, so the first match is the next occurrence.
    pub fn next_after(&self, after: u64) -> Option<u64> {
        let start = after.max(self.not_before.saturating_sub(1));
        let mut day: Date = self.zone.to_datetime(timestamp(start)?).date();
        loop {
            // The day's midnight is past the end: nothing more.
            let first = self.instant_of(day.to_datetime(Time::midnight()));
            if first.is_some_and(|t| t >= self.not_after.saturating_add(86_400)) {
                return None;
            }
            if self.cron.matches_date(day) {
                for (hour, minute) in self.cron.times() {
                    let Ok(time) = Time::new(hour, minute, 0, 0) else {
                        continue;
                    };
                    if !self.window.is_none_or(|w| w.contains(time)) {
                        continue;
                    }
                    let Some(at) = self.instant_of(day.to_datetime(time)) else {
                        continue;
                    };
                    if at >= self.not_after {
                        return None;
                    }
                    if at > start && at >= self.not_before {
                        return Some(at);
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
    }

    /// Up to `count` occurrences after `after`, earliest first.
    pub fn upcoming(&self, after: u64, count: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < count {
            let Some(next) = self.next_after(t) else {
                break;
            };
            out.push(next);
            t = next;
        }
        out
    }

    /// The latest occurrence at or before `now`, if any (what a server
    /// delivers at `now`).
    pub fn due_at(&self, now: u64, since: u64) -> Option<u64> {
        let mut last = None;
        let mut t = since;
        while let Some(next) = self.next_after(t) {
            if next > now {
                break;
            }
            last = Some(next);
            t = next;
        }
        last
    }
}

fn timestamp(at: u64) -> Option<Timestamp> {
    Timestamp::from_second(i64::try_from(at).ok()?).ok()
}

/// The agent's memory of the schedules it ran (kept on disk, across
/// restarts): the latest occurrence it started of each.
pub trait ScheduleHistory {
    fn last_run(&self, schedule_id: &[u8; 16]) -> Option<u64>;
}

/// A run that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRun {
    pub schedule: ScheduleStatement,
    pub occurrence: u64,
    /// The job this run is ([`ScheduleStatement::job_for`]).
    pub job: JobStatement,
    pub class: ActionClass,
    pub signers: BTreeSet<KeyId>,
}

/// What the server delivers: "run occurrence `occurrence` of this schedule".
#[derive(Debug, Clone, Copy)]
pub struct RunRequest<'a> {
    /// The signed schedule, with its signatures as the server holds them.
    pub signed: &'a Signed,
    /// The script body; its SHA-256 is in the schedule.
    pub script: &'a [u8],
    /// Unix seconds.
    pub occurrence: u64,
}

/// May this agent run occurrence `occurrence` of the signed schedule now?
/// RFD 0019's steps; step 11 (the schedule is in the tenant's log) is the
/// agent's, as for jobs.
pub fn verify_occurrence(
    run: RunRequest<'_>,
    agent: AgentContext<'_>,
    zones: impl FnOnce(&str) -> Option<TimeZone>,
    history: &impl ScheduleHistory,
    now: u64,
    limits: &Limits,
) -> Result<VerifiedRun, Refusal> {
    let RunRequest {
        signed,
        script,
        occurrence,
    } = run;
    let policy = agent.policy;
    // 1. A frozen tenant runs nothing.
    if agent.freeze.frozen {
        return Err(Refusal::Frozen);
    }
    // 2. A schedule statement (its own payload type), canonical, within
    //    limits, with an expression, a zone the agent knows and a capped lifetime.
    let schedule: ScheduleStatement = signed.statement(limits)?;
    let timetable = schedule.timetable(limits, zones)?;
    // 3. For this tenant and this device as the operator chose it.
    if schedule.tenant != agent.tenant || policy.tenant != agent.tenant {
        return Err(Refusal::WrongTenant);
    }
    if let Some(name) = &policy.tenant_name
        && *name != schedule.tenant_name
    {
        return Err(Refusal::WrongTenant);
    }
    let target = schedule
        .targets
        .iter()
        .find(|t| t.device_id == agent.device_id)
        .ok_or(Refusal::NotATarget)?;
    if !same_hostname(&target.hostname, agent.hostname) {
        return Err(Refusal::TargetMismatch(format!(
            "the schedule names host {:?}, this device is {:?}",
            target.hostname, agent.hostname
        )));
    }
    if let Some(key) = &target.device_key
        && key != agent.device_key
    {
        return Err(Refusal::TargetMismatch(
            "the schedule names another device key".into(),
        ));
    }
    // 4. Under a policy still in force that has not revoked the schedule.
    if now >= policy.expires_at {
        return Err(Refusal::PolicyExpired);
    }
    if policy
        .revoked_schedules()
        .contains(&ScheduleId(schedule.schedule_id))
    {
        return Err(Refusal::ScheduleRevoked);
    }
    // 5. Inside the schedule's life.
    if occurrence >= schedule.not_after
        || now >= schedule.not_after.saturating_add(LATE_TOLERANCE_SECS)
    {
        return Err(Refusal::Expired);
    }
    // 6. An occurrence of the signed expression, in the signed zone, by
    //    this agent's zone rules.
    if !timetable.is_occurrence(occurrence) {
        return Err(Refusal::ScheduleNotAnOccurrence(occurrence));
    }
    // 7. On time by this agent's clock.
    if now.saturating_add(EARLY_TOLERANCE_SECS) < occurrence {
        return Err(Refusal::ScheduleNotDue {
            occurrence,
            early_secs: occurrence - now,
        });
    }
    if now >= occurrence.saturating_add(LATE_TOLERANCE_SECS) {
        return Err(Refusal::ScheduleRunMissed {
            occurrence,
            late_secs: now - occurrence,
        });
    }
    // 8. Never twice, nor an older occurrence after a newer one.
    if history
        .last_run(&schedule.schedule_id)
        .is_some_and(|last| occurrence <= last)
    {
        return Err(Refusal::Replayed);
    }
    // 9. The body is the one that was signed.
    match schedule.action.script_sha256() {
        Some(hash) if ScriptHash(Sha256::digest(script).into()) != *hash => {
            return Err(Refusal::ScriptMismatch);
        }
        None if !script.is_empty() => return Err(Refusal::ScriptMismatch),
        _ => {}
    }
    // 10. The quorum under the CURRENT policy, with the code jobs use: a
    //     policy that drops a signer or raises the quorum stops the schedule.
    let job = schedule.job_for(occurrence);
    let (class, signers) = check_quorum(signed, &job, policy, now)?;
    Ok(VerifiedRun {
        schedule,
        occurrence,
        job,
        class,
        signers,
    })
}
