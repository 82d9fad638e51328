//! Scheduled jobs (RFD 0019): the occurrences the agent computes, DST as
//! the RFD decides, and every refusal of a run a lying server asks for.
// The test is the edge that loads zones from the system tz database, as
// the agent does; the crate itself may not (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;

use bulwark_policy::cron::Cron;
use bulwark_policy::freeze::FreezeState;
use bulwark_policy::job::{AgentContext, Interpreter, JobAction, JobTarget, verify_job};
use bulwark_policy::policy::{ActionClass, OperatorKey, Policy, Quorum, ScheduleId, ScriptHash};
use bulwark_policy::root::Holder;
use bulwark_policy::schedule::{
    LocalWindow, RunRequest, ScheduleHistory, ScheduleStatement, Timetable, run_job_id,
    verify_occurrence,
};
use bulwark_policy::{AgentRefusalCode, Limits, PublicKey, Refusal, Signed};
use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn zone(name: &str) -> TimeZone {
    jiff::tz::db()
        .get(name)
        .expect("the system tz database has the zone")
}

fn zones(name: &str) -> Option<TimeZone> {
    jiff::tz::db().get(name).ok()
}

fn at(text: &str) -> u64 {
    let ts: Timestamp = text.parse().expect("an RFC 3339 instant");
    u64::try_from(ts.as_second()).expect("after 1970")
}

fn timetable(
    cron: &str,
    zone_name: &str,
    window: Option<&str>,
    from: u64,
    until: u64,
) -> Timetable {
    Timetable {
        cron: Cron::parse(cron).expect("parses"),
        zone: zone(zone_name),
        window: window.map(|w| LocalWindow::parse(w).expect("window")),
        not_before: from,
        not_after: until,
    }
}

fn check_upcoming(t: &Timetable, after: &str, expect: &[&str]) {
    let got = t.upcoming(at(after), expect.len() + 1);
    let want: Vec<u64> = expect.iter().map(|s| at(s)).collect();
    assert_eq!(
        &got[..want.len().min(got.len())],
        &want[..],
        "after {after}"
    );
}

// ---- DST, as RFD 0019 decides: gap skipped, fold once (the earlier) ----

#[test]
fn berlin_spring_forward_skips_the_missing_time() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    let t = timetable(
        "30 2 * * *",
        "Europe/Berlin",
        None,
        at("2026-03-01T00:00:00Z"),
        at("2026-05-01T00:00:00Z"),
    );
    check_upcoming(
        &t,
        "2026-03-27T12:00:00Z",
        &[
            "2026-03-28T01:30:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z",
        ],
    );
    assert!(
        !t.is_occurrence(at("2026-03-29T01:30:00Z")),
        "03:30 CEST is not 02:30"
    );
}

#[test]
fn berlin_fall_back_runs_once_at_the_earlier_instant() {
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    let t = timetable(
        "30 2 * * *",
        "Europe/Berlin",
        None,
        at("2026-10-01T00:00:00Z"),
        at("2026-12-01T00:00:00Z"),
    );
    check_upcoming(
        &t,
        "2026-10-24T12:00:00Z",
        &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    );
    assert!(t.is_occurrence(at("2026-10-25T00:30:00Z")));
    assert!(
        !t.is_occurrence(at("2026-10-25T01:30:00Z")),
        "the second 02:30 never runs"
    );
    // Every half hour across the fold: the repeated hour once.
    let t = timetable(
        "*/30 * * * *",
        "Europe/Berlin",
        None,
        at("2026-10-01T00:00:00Z"),
        at("2026-12-01T00:00:00Z"),
    );
    check_upcoming(
        &t,
        "2026-10-24T23:59:00Z",
        &[
            "2026-10-25T00:00:00Z", // 02:00 CEST
            "2026-10-25T00:30:00Z", // 02:30 CEST
            "2026-10-25T02:00:00Z", // 03:00 CET (02:00 and 02:30 CET skipped)
        ],
    );
}

#[test]
fn new_york_gap_and_fold() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    let t = timetable(
        "15 2 * * *",
        "America/New_York",
        None,
        at("2026-03-01T00:00:00Z"),
        at("2026-04-01T00:00:00Z"),
    );
    check_upcoming(
        &t,
        "2026-03-07T00:00:00Z",
        &["2026-03-07T07:15:00Z", "2026-03-09T06:15:00Z"],
    );
    // 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
    let t = timetable(
        "30 1 * * *",
        "America/New_York",
        None,
        at("2026-10-15T00:00:00Z"),
        at("2026-12-01T00:00:00Z"),
    );
    check_upcoming(
        &t,
        "2026-10-31T12:00:00Z",
        &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    );
    assert!(!t.is_occurrence(at("2026-11-01T06:30:00Z")));
}

#[test]
fn a_window_is_local_time_and_may_cross_midnight() {
    let t = timetable(
        "0 * * * 1",
        "Europe/Berlin",
        Some("22:00-02:00"),
        at("2026-12-01T00:00:00Z"),
        at("2027-01-01T00:00:00Z"),
    );
    // Monday 2026-12-07, local 22:00 and 23:00 (21:00Z, 22:00Z), then the
    // Monday morning hours 00:00 and 01:00 of the next Monday.
    check_upcoming(
        &t,
        "2026-12-07T12:00:00Z",
        &[
            "2026-12-07T21:00:00Z",
            "2026-12-07T22:00:00Z",
            "2026-12-13T23:00:00Z",
            "2026-12-14T00:00:00Z",
        ],
    );
    assert!(
        !t.is_occurrence(at("2026-12-07T20:00:00Z")),
        "21:00 local is outside"
    );
}

#[test]
fn occurrences_stay_inside_the_lifetime() {
    let t = timetable(
        "0 3 * * *",
        "UTC",
        None,
        at("2026-12-01T03:00:00Z"),
        at("2026-12-03T03:00:00Z"),
    );
    assert_eq!(
        t.upcoming(0, 10),
        vec![at("2026-12-01T03:00:00Z"), at("2026-12-02T03:00:00Z")]
    );
    assert_eq!(
        t.due_at(at("2026-12-02T03:05:00Z"), 0),
        Some(at("2026-12-02T03:00:00Z"))
    );
    assert_eq!(t.due_at(at("2026-12-01T02:59:00Z"), 0), None);
    // Never: 30 February.
    let never = timetable(
        "0 0 30 2 *",
        "UTC",
        None,
        at("2026-01-01T00:00:00Z"),
        at("2026-03-31T00:00:00Z"),
    );
    assert_eq!(never.next_after(0), None);
}

#[test]
fn windows_parse_strictly() {
    assert_eq!(
        LocalWindow::parse("02:00-05:00").expect("ok").to_string(),
        "02:00-05:00"
    );
    for bad in [
        "2:00-05:00",
        "02:00-02:00",
        "24:00-01:00",
        "02:60-03:00",
        "02:00",
        "02:00-05:00-06:00",
        "+2:00-05:00",
    ] {
        assert!(LocalWindow::parse(bad).is_err(), "{bad}");
    }
}

// ---- agreement with a minute-by-minute reference ----

/// A straightforward reading of one cron field, from its text, at match time.
fn reference_field(text: &str, value: u32, lo: u32, hi: u32) -> bool {
    text.split(',').any(|item| {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().expect("step")),
            None => (item, 1),
        };
        let (from, to) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().expect("n"), b.parse().expect("n")),
                None => {
                    let a: u32 = r.parse().expect("n");
                    (a, if item.contains('/') { hi } else { a })
                }
            },
        };
        value >= from && value <= to && (value - from).is_multiple_of(step)
    })
}

fn reference_is_occurrence(
    fields: &[String; 5],
    zone: &TimeZone,
    t: u64,
    from: u64,
    until: u64,
) -> bool {
    if !t.is_multiple_of(60) || t < from || t >= until {
        return false;
    }
    let ts = Timestamp::from_second(t as i64).expect("in range");
    let local = zone.to_datetime(ts);
    // Runs once: no earlier instant has this local time.
    if zone
        .to_ambiguous_timestamp(local)
        .earlier()
        .expect("exists")
        != ts
    {
        return false;
    }
    let m = reference_field(&fields[0], local.minute() as u32, 0, 59);
    let h = reference_field(&fields[1], local.hour() as u32, 0, 23);
    let mon = reference_field(&fields[3], local.month() as u32, 1, 12);
    let dom = reference_field(&fields[2], local.day() as u32, 1, 31);
    let wd = local.weekday().to_sunday_zero_offset() as u32;
    let dow =
        reference_field(&fields[4], wd, 0, 7) || (wd == 0 && reference_field(&fields[4], 7, 0, 7));
    let day = if !fields[2].starts_with('*') && !fields[4].starts_with('*') {
        dom || dow
    } else {
        dom && dow
    };
    m && h && mon && day
}

fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    let one = prop_oneof![
        3 => Just("*".to_owned()),
        2 => (lo..=hi).prop_map(|n| n.to_string()),
        2 => (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        2 => (1..=hi.max(1)).prop_map(|s| format!("*/{s}")),
        1 => (lo..=hi, 1..=hi.max(1)).prop_map(|(a, s)| format!("{a}/{s}")),
    ];
    proptest::collection::vec(one, 1..3).prop_map(|items| items.join(","))
}

const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn occurrences_agree_with_the_reference(
        minute in field(0, 59),
        hour in prop_oneof![Just("*".to_owned()), Just("1,2,3".to_owned()), field(0, 23)],
        dom in field(1, 31),
        month in prop_oneof![3 => Just("*".to_owned()), 1 => field(1, 12)],
        dow in field(0, 7),
        zone_index in 0..ZONES.len(),
        // Starts around the 2026 DST changes (and anywhere in the year).
        start in prop_oneof![
            Just(1_774_652_400u64), // 2026-03-27T23:00Z
            Just(1_772_838_000u64), // 2026-03-06T23:00Z
            Just(1_792_537_200u64), // 2026-10-23T23:00Z
            Just(1_793_401_200u64), // 2026-11-02T23:00Z
            1_767_225_600u64..1_798_761_600u64,
        ],
        offset in 0u64..60,
    ) {
        let fields = [minute, hour, dom, month, dow];
        let text = fields.join(" ");
        let name = ZONES[zone_index];
        let from = start + offset;
        let until = from + 4 * 86_400;
        let t = timetable(&text, name, None, from, until);
        let zone = zone(name);
        let mut reference = Vec::new();
        let mut m = from.div_ceil(60) * 60;
        while m < until && reference.len() < 20 {
            if reference_is_occurrence(&fields, &zone, m, from, until) {
                reference.push(m);
            }
            m += 60;
        }
        let got = t.upcoming(from.saturating_sub(1), 20);
        prop_assert_eq!(&got, &reference, "{} in {}", text, name);
        for occurrence in &got {
            prop_assert!(t.is_occurrence(*occurrence));
        }
    }

    #[test]
    fn around_dst_changes_occurrences_agree_with_the_reference(
        minute in field(0, 59),
        hour in prop_oneof![Just("*".to_owned()), Just("0-3".to_owned()), Just("1,2".to_owned())],
        change in 0usize..4,
        zone_index in 1usize..3,
    ) {
        // The day before each 2026 change, in both zones.
        let starts = [[1_774_652_400u64, 1_792_537_200], [1_772_838_000, 1_793_401_200]];
        let name = ZONES[zone_index];
        let from = starts[zone_index - 1][change % 2] + 3600 * (change as u64 / 2);
        let until = from + 2 * 86_400;
        let fields = [minute, hour, "*".to_owned(), "*".to_owned(), "*".to_owned()];
        let text = fields.join(" ");
        let t = timetable(&text, name, None, from, until);
        let zone = zone(name);
        let mut reference = Vec::new();
        let mut m = from.div_ceil(60) * 60;
        while m < until {
            if reference_is_occurrence(&fields, &zone, m, from, until) {
                reference.push(m);
            }
            m += 60;
        }
        prop_assert_eq!(t.upcoming(from.saturating_sub(1), 4000), reference, "{} in {}", text, name);
    }

    #[test]
    fn is_occurrence_agrees_with_the_reference(
        minute in field(0, 59),
        hour in field(0, 23),
        dom in field(1, 31),
        dow in field(0, 7),
        zone_index in 0..ZONES.len(),
        probe in 1_767_225_600u64..1_798_761_600u64,
    ) {
        let fields = [minute, hour, dom, "*".to_owned(), dow];
        let text = fields.join(" ");
        let name = ZONES[zone_index];
        let t = timetable(&text, name, None, 0, u64::MAX / 4);
        let probe = probe / 60 * 60;
        prop_assert_eq!(t.is_occurrence(probe), reference_is_occurrence(&fields, &zone(name), probe, 0, u64::MAX / 4));
    }

    #[test]
    fn the_parser_never_panics(text in "[0-9*,/ -]{0,40}") {
        if let Ok(cron) = Cron::parse(&text) {
            let _ = cron.times().count();
        }
    }
}

// ---- the agent's verification of each run ----

const NOW: u64 = 1_800_000_000; // 2027-01-15T08:00:00Z, 09:00 in Berlin
const DEVICE: &str = "6f1c2a3b-0000-4000-8000-000000000001";
const HOST: &str = "ws-042";
const DEVICE_KEY: [u8; 32] = [0x42; 32];
const SCRIPT: &[u8] = b"#!/bin/sh\nuptime\n";
const SCHEDULE_ID: [u8; 16] = [9; 16];

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn policy(signers: &[&SigningKey]) -> Policy {
    Policy {
        tenant: "acme".into(),
        version: 2,
        expires_at: NOW + 30 * 86_400,
        operators: signers
            .iter()
            .enumerate()
            .map(|(i, k)| OperatorKey {
                key: PublicKey::Ed25519(k.verifying_key().to_bytes()),
                name: format!("operator {i}"),
                holder: Holder::Msp,
                classes: vec![ActionClass::RunScript],
            })
            .collect(),
        quorums: vec![Quorum {
            class: ActionClass::RunScript,
            signers: 2,
            customer_required: false,
            in_window_only: false,
        }],
        fan_out_limit: 10,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
        tenant_name: Some("Acme".into()),
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    }
}

fn schedule() -> ScheduleStatement {
    ScheduleStatement {
        tenant: "acme".into(),
        tenant_name: "Acme".into(),
        schedule_id: SCHEDULE_ID,
        targets: vec![JobTarget {
            device_id: DEVICE.into(),
            hostname: HOST.into(),
            device_key: Some(DEVICE_KEY),
        }],
        class: ActionClass::RunScript,
        action: JobAction::RunScript {
            interpreter: Interpreter::Sh,
            script_sha256: ScriptHash(Sha256::digest(SCRIPT).into()),
        },
        cron: "*/5 * * * *".into(),
        zone: "Europe/Berlin".into(),
        window: None,
        not_before: NOW - 86_400,
        not_after: NOW + 30 * 86_400,
        nonce: [3; 16],
        reason: "nightly cleanup".into(),
        timeout_secs: 60,
    }
}

fn sign(statement: &ScheduleStatement) -> Signed {
    let mut signed = Signed::new(statement);
    signed.sign(&key(10));
    signed.sign(&key(11));
    signed
}

#[derive(Default)]
struct Runs(HashMap<[u8; 16], u64>);

impl ScheduleHistory for Runs {
    fn last_run(&self, schedule_id: &[u8; 16]) -> Option<u64> {
        self.0.get(schedule_id).copied()
    }
}

struct Case {
    signed: Signed,
    script: Vec<u8>,
    occurrence: u64,
    now: u64,
    policy: Policy,
    frozen: bool,
    runs: Runs,
    hostname: &'static str,
}

impl Case {
    fn new() -> Case {
        Case {
            signed: sign(&schedule()),
            script: SCRIPT.to_vec(),
            occurrence: NOW,
            now: NOW + 5,
            policy: policy(&[&key(10), &key(11)]),
            frozen: false,
            runs: Runs::default(),
            hostname: HOST,
        }
    }

    fn with(statement: ScheduleStatement) -> Case {
        Case {
            signed: sign(&statement),
            ..Case::new()
        }
    }

    fn verify(&self) -> Result<bulwark_policy::schedule::VerifiedRun, Refusal> {
        let agent = AgentContext {
            tenant: "acme",
            device_id: DEVICE,
            hostname: self.hostname,
            device_key: &DEVICE_KEY,
            policy: &self.policy,
            freeze: FreezeState {
                sequence: u64::from(self.frozen),
                frozen: self.frozen,
            },
        };
        let run = RunRequest {
            signed: &self.signed,
            script: &self.script,
            occurrence: self.occurrence,
        };
        verify_occurrence(run, agent, zones, &self.runs, self.now, &Limits::default())
    }

    fn refused(&self) -> AgentRefusalCode {
        self.verify().expect_err("refused").code()
    }
}

#[test]
fn a_due_occurrence_runs_as_its_own_job() {
    let run = Case::new().verify().expect("runs");
    assert_eq!(run.occurrence, NOW);
    assert_eq!(run.job.job_id, run_job_id(&SCHEDULE_ID, NOW));
    assert_ne!(
        run_job_id(&SCHEDULE_ID, NOW),
        run_job_id(&SCHEDULE_ID, NOW + 300)
    );
    assert_eq!(run.signers.len(), 2);
    // Within the 30 s of clock skew allowed early, and the 10 minutes late.
    for now in [NOW - 30, NOW + 599] {
        Case { now, ..Case::new() }.verify().expect("on time");
    }
}

#[test]
fn early_delivery_is_refused() {
    let case = Case {
        now: NOW - 60,
        ..Case::new()
    };
    assert_eq!(case.refused(), AgentRefusalCode::ScheduleNotDue);
}

#[test]
fn late_delivery_is_a_missed_run() {
    let case = Case {
        now: NOW + 600,
        ..Case::new()
    };
    assert_eq!(case.refused(), AgentRefusalCode::ScheduleRunMissed);
}

#[test]
fn a_time_the_expression_does_not_name_is_refused() {
    for occurrence in [NOW + 60, NOW + 30, NOW + 1] {
        let case = Case {
            occurrence,
            now: occurrence,
            ..Case::new()
        };
        assert_eq!(
            case.refused(),
            AgentRefusalCode::ScheduleNotAnOccurrence,
            "{occurrence}"
        );
    }
    // Outside the signed window (09:00 Berlin is not in 02:00-05:00).
    let case = Case::with(ScheduleStatement {
        window: Some(LocalWindow::parse("02:00-05:00").expect("window")),
        ..schedule()
    });
    assert_eq!(case.refused(), AgentRefusalCode::ScheduleNotAnOccurrence);
    // Before the schedule starts.
    let case = Case::with(ScheduleStatement {
        not_before: NOW + 1,
        ..schedule()
    });
    assert_eq!(case.refused(), AgentRefusalCode::ScheduleNotAnOccurrence);
}

#[test]
fn a_replay_or_an_older_occurrence_is_refused() {
    let mut case = Case::new();
    case.runs.0.insert(SCHEDULE_ID, NOW);
    assert_eq!(case.refused(), AgentRefusalCode::Replayed);
    case.runs.0.insert(SCHEDULE_ID, NOW + 300);
    assert_eq!(case.refused(), AgentRefusalCode::Replayed);
    // Another schedule's runs do not count.
    case.runs.0.clear();
    case.runs.0.insert([1; 16], NOW + 300);
    case.verify().expect("runs");
}

#[test]
fn an_expired_schedule_is_refused() {
    let case = Case::with(ScheduleStatement {
        not_after: NOW,
        ..schedule()
    });
    assert_eq!(case.refused(), AgentRefusalCode::Expired);
}

#[test]
fn a_lifetime_beyond_the_cap_is_refused() {
    let case = Case::with(ScheduleStatement {
        not_after: NOW - 86_400 + 90 * 86_400 + 1,
        ..schedule()
    });
    assert_eq!(case.refused(), AgentRefusalCode::ValidityTooLong);
}

#[test]
fn a_policy_that_revokes_the_schedule_stops_it() {
    let mut case = Case::new();
    case.policy.revoked_schedules = Some(vec![ScheduleId(SCHEDULE_ID)]);
    assert_eq!(case.refused(), AgentRefusalCode::ScheduleRevoked);
    case.policy.revoked_schedules = Some(vec![ScheduleId([1; 16])]);
    case.verify().expect("another schedule revoked");
}

#[test]
fn a_policy_that_drops_a_signer_or_raises_the_quorum_stops_it() {
    let case = Case {
        policy: policy(&[&key(10)]),
        ..Case::new()
    };
    assert_eq!(case.refused(), AgentRefusalCode::TooFewSigners);
    let mut case = Case::new();
    case.policy.quorums[0].signers = 3;
    assert_eq!(case.refused(), AgentRefusalCode::TooFewSigners);
}

#[test]
fn an_edited_statement_no_longer_verifies() {
    let edits: [fn(&mut ScheduleStatement); 6] = [
        |s| s.cron = "* * * * *".into(),
        |s| s.zone = "America/New_York".into(),
        |s| s.window = Some(LocalWindow::parse("08:00-10:00").expect("window")),
        |s| s.not_after += 86_400,
        |s| s.targets[0].hostname = "other".into(),
        |s| {
            s.action = JobAction::RunScript {
                interpreter: Interpreter::Sh,
                script_sha256: ScriptHash(Sha256::digest(b"rm -rf /").into()),
            }
        },
    ];
    for (i, edit) in edits.iter().enumerate() {
        let mut statement = schedule();
        edit(&mut statement);
        let mut case = Case::new();
        // The server's copy edited, the signatures kept.
        case.signed.payload = Signed::new(&statement).payload;
        case.script = b"rm -rf /".to_vec();
        let refused = case.verify().expect_err("refused");
        assert!(
            matches!(
                refused,
                Refusal::TooFewSigners { .. }
                    | Refusal::BadSignature
                    | Refusal::TargetMismatch(_)
                    | Refusal::ScriptMismatch
            ),
            "edit {i}: {refused}"
        );
    }
    // A swapped script alone.
    let case = Case {
        script: b"rm -rf /".to_vec(),
        ..Case::new()
    };
    assert_eq!(case.refused(), AgentRefusalCode::ScriptMismatch);
}

#[test]
fn a_frozen_tenant_runs_no_schedule() {
    let case = Case {
        frozen: true,
        ..Case::new()
    };
    assert_eq!(case.refused(), AgentRefusalCode::Frozen);
}

#[test]
fn another_host_or_an_unknown_zone_is_refused() {
    let case = Case {
        hostname: "ws-043",
        ..Case::new()
    };
    assert_eq!(case.refused(), AgentRefusalCode::TargetMismatch);
    let case = Case::with(ScheduleStatement {
        zone: "Mars/Olympus_Mons".into(),
        ..schedule()
    });
    assert_eq!(case.refused(), AgentRefusalCode::ScheduleZoneUnknown);
}

#[test]
fn schedules_and_jobs_never_stand_in_for_each_other() {
    let case = Case::new();
    let agent = AgentContext {
        tenant: "acme",
        device_id: DEVICE,
        hostname: HOST,
        device_key: &DEVICE_KEY,
        policy: &case.policy,
        freeze: FreezeState::default(),
    };
    struct Never;
    impl bulwark_policy::JobHistory for Never {
        fn seen(&self, _: &[u8; 16], _: &[u8; 16]) -> bool {
            false
        }
    }
    let as_job = verify_job(&case.signed, SCRIPT, agent, &Never, NOW, &Limits::default());
    assert!(matches!(as_job, Err(Refusal::Malformed(_))), "{as_job:?}");
    // The job a schedule describes, signed as a job, is no schedule.
    let mut job = Signed::new(&schedule().job_for(NOW));
    job.sign(&key(10));
    job.sign(&key(11));
    let case = Case {
        signed: job,
        ..Case::new()
    };
    assert_eq!(case.refused(), AgentRefusalCode::Malformed);
}
