//! What a Bulwark agent obeys, and nothing else.
//!
//! A tenant's **trust root** is a set of keys with a threshold (k of n), like
//! TUF's root role; some keys are held by the MSP's security officers, some
//! by the customer. The root signs the tenant **policy**: which operator keys
//! may sign which action classes, how many distinct signers each class needs,
//! whether a customer key must be among them, fan-out limits, the script
//! allow-list and maintenance windows. Operators sign **job statements**. The
//! agent runs a job only when [`job::verify_job`] says yes, so whoever owns
//! the server can still not make an agent act (DESIGN.md invariants 1, 2, 5).
//!
//! A signer's key is Ed25519 (kept on the operator's machine) or a WebAuthn
//! credential under the approval RP id [`webauthn::APPROVAL_RP_ID`], which
//! only a page the operator's own `bulwark` serves on this machine can use.
//! A passkey signs [`Signed::approval_challenge`], a domain-separated hash of
//! the same bytes an Ed25519 key signs, and the agent checks the assertion
//! itself with user verification required ([`webauthn`]); the server holds
//! nothing that can sign either way, and no credential of its console (RP id
//! of the console's host) ever counts. The [`webauthn`] module also serves
//! passkey login on the server (registration and assertion checks, with a
//! server nonce as challenge).
//!
//! Pure: no I/O, no clock (time is an argument, in seconds since the Unix
//! epoch), no serde in any format it defines (serde_json only reads the
//! browser's clientDataJSON, into a private struct). Every statement is canonical CBOR signed under its own
//! DSSE payload type (see `bulwark_protocol::envelope`). Verification reads
//! like the spec: each step is numbered in the code.

pub mod checks;
pub mod cron;
pub mod delay;
pub mod envelope;
pub mod freeze;
pub mod groups;
pub mod history;
pub mod job;
pub mod keys;
pub mod limits;
pub mod log;
pub mod policy;
pub mod replay;
pub mod root;
pub mod schedule;
pub mod shell;
pub mod webauthn;
pub mod witness;

pub use bulwark_protocol::message::{AgentRefusalCode, TrustKind};
pub use checks::{CheckDefinition, CheckState, PostureItem, Probe};
pub use delay::MassActionDelay;
pub use envelope::{SignatureEntry, Signed, approval_challenge};
pub use freeze::{FreezeState, FreezeStatement};
pub use groups::{DeviceGroup, DeviceIdentity, GroupMember, checks_for};
pub use history::{TrustHistory, TrustOutcome};
pub use job::{
    AgentContext, AgentSetting, Interpreter, JobAction, JobHistory, JobStatement, JobTarget,
    QuorumProgress, VerifiedJob, check_quorum, derive_class, device_key_fingerprint,
    quorum_progress, same_hostname, verify_job,
};
pub use keys::{KeyId, PublicKey};
pub use limits::Limits;
pub use policy::{ActionClass, MaintenanceWindow, OperatorKey, Policy, Quorum, ScheduleId};
pub use root::{Holder, RootKey, TrustRoot};
pub use webauthn::{
    APPROVAL_RP_ID, AssertionInfo, CoseKey, RegisteredCredential, WebAuthnCredential,
    WebAuthnError, WebAuthnSignature, parse_registration, verify_assertion,
};
pub use witness::{WitnessKey, Witnessing};

/// Why an agent refuses a statement. Each variant is a reason the agent
/// reports back and logs locally; none of them is ever ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the statement is malformed: {0}")]
    Malformed(String),
    #[error("the statement exceeds a limit: {0}")]
    TooLarge(&'static str),
    #[error("a signature from an authorised key does not verify")]
    BadSignature,
    #[error("signed only by keys the current policy does not list (unknown or revoked)")]
    UnknownKey,
    #[error("{have} distinct authorised signer(s), {need} needed")]
    TooFewSigners { have: usize, need: usize },
    #[error("the policy requires a customer key among the signers")]
    MissingCustomerCosigner,
    #[error("the statement is for another tenant")]
    WrongTenant,
    #[error("this device is not among the job's targets")]
    NotATarget,
    /// The job's entry for this device describes another host (the server
    /// swapped hostnames or device ids).
    #[error("the job's entry for this device names another device: {0}")]
    TargetMismatch(String),
    /// The label beside the payload is not the class the payload is.
    #[error(
        "the job is labelled {} but its payload is {}: the class comes from what the job does",
        .declared.name(), .derived.name()
    )]
    ClassMismatch {
        declared: ActionClass,
        derived: ActionClass,
    },
    /// A typed action this agent does not carry out yet.
    #[error("this agent does not carry out {} jobs yet", .0.name())]
    ActionNotSupported(ActionClass),
    #[error("the job is not valid yet")]
    NotYetValid,
    #[error("the job has expired")]
    Expired,
    #[error("the job's validity window is longer than allowed")]
    ValidityTooLong,
    #[error("the job's action class may only run inside a maintenance window")]
    OutsideMaintenanceWindow,
    #[error("this job id or nonce has been seen before")]
    Replayed,
    /// A shell grant the server said was revoked (RFD 0015).
    #[error("the shell grant was revoked")]
    GrantRevoked,
    #[error("the script body does not match the signed hash")]
    ScriptMismatch,
    #[error("the script is not on the policy's allow-list")]
    ScriptNotAllowListed,
    #[error("the policy does not permit this action class")]
    ClassNotPermitted,
    #[error(
        "the tenant is frozen by its customer: every job is refused until the root unfreezes it"
    )]
    Frozen,
    /// A trust statement that does not move forward: an older or equal
    /// policy version or freeze sequence, or a root version that is not the
    /// next one. `what` names which.
    #[error(
        "{what} {offered} is refused after the accepted {accepted}: policies and freezes only move forward, roots one version at a time"
    )]
    Rollback {
        what: &'static str,
        accepted: u64,
        offered: u64,
    },
    #[error("the policy has expired")]
    PolicyExpired,
    #[error("the root threshold has not signed this statement")]
    RootThresholdNotMet,
    #[error("the trust root is not the one pinned at enrolment")]
    NotPinnedRoot,
    #[error("no trust root is in force yet")]
    NoRoot,
    #[error("the agent holds no policy for its tenant yet")]
    NoPolicy,
    /// Step 13: the job came without a proof that it is in the log, or the
    /// agent holds no log key to check one with.
    #[error("the job comes without a proof that it is in the tenant's log")]
    LogProofMissing,
    #[error("the tree head is not signed by the pinned log key: {0}")]
    LogHeadUnsigned(String),
    /// The consistency proof starts from a size the agent does not hold:
    /// the server's idea of the agent's head is out of date. Nothing is
    /// shown to be inconsistent, so this is no alarm; the agent names the
    /// size it holds and the server proves from there
    /// (`AgentRefusalCode::LogHeadStale`).
    #[error("the consistency proof starts at size {from}, the agent holds size {held}")]
    LogHeadStale { held: u64, from: u64 },
    /// A forked, truncated or rewritten log.
    #[error("the log is not consistent with the tree head this agent holds: {0}")]
    LogInconsistent(String),
    #[error("the job is not in the log under the tree head given: {0}")]
    NotInLog(String),
    #[error("the log entry given is not this job's release: {0}")]
    LogEntryMismatch(String),
    /// Step 13g: the tree head lacks `k` fresh cosignatures of the policy's
    /// witnesses: the log may have been rewritten, the witnesses stopped
    /// cosigning (a freeze given to them), or they are unreachable.
    #[error(
        "{fresh} of the policy's witnesses cosigned the tree head within the last {window_secs} s, {need} needed"
    )]
    WitnessCosignaturesMissing {
        fresh: usize,
        need: usize,
        window_secs: u64,
    },
    /// Step 13h: a mass action the witnesses have not yet seen in the log
    /// for the policy's delay (the server delivered it early).
    #[error(
        "the policy delays this mass action {delay_secs} s after it entered the witnessed log; witnessed for {}",
        .witnessed_secs.map_or("no time yet".to_owned(), |s| format!("{s} s"))
    )]
    MassActionDelayNotElapsed {
        delay_secs: u64,
        witnessed_secs: Option<u64>,
    },
    /// RFD 0019 step 6: the server asked for a run at a time the signed
    /// schedule does not name.
    #[error("{0} is not an occurrence of the schedule in its zone and window")]
    ScheduleNotAnOccurrence(u64),
    /// Step 7: delivered early.
    #[error("occurrence {occurrence} is {early_secs} s in the future by this agent's clock")]
    ScheduleNotDue { occurrence: u64, early_secs: u64 },
    /// Step 7: delivered too late; the run is missed, not made up.
    #[error("occurrence {occurrence} was {late_secs} s ago: missed")]
    ScheduleRunMissed { occurrence: u64, late_secs: u64 },
    /// Step 4: the root-signed policy lists the schedule as revoked.
    #[error("the tenant's policy revokes this schedule")]
    ScheduleRevoked,
    /// Step 2: a zone this agent's tz database does not have.
    #[error("the schedule's time zone {0:?} is unknown to this device")]
    ScheduleZoneUnknown(String),
}

impl Refusal {
    /// The stable code reported over the wire and shown in the console next
    /// to the human message: the [`AgentRefusalCode`] of the same name (only
    /// [`Refusal::NotInLog`] is `log_not_included`). Whether it raises an
    /// alarm is [`AgentRefusalCode::is_log_alarm`]. The match is exhaustive:
    /// a new refusal does not build until it has a code.
    pub fn code(&self) -> AgentRefusalCode {
        macro_rules! same_name {
            ($($variant:ident,)*) => {
                match self {
                    Refusal::NotInLog(_) => AgentRefusalCode::LogNotIncluded,
                    $(Refusal::$variant { .. } => AgentRefusalCode::$variant,)*
                }
            };
        }
        same_name! {
            Malformed, TooLarge, BadSignature, UnknownKey, TooFewSigners,
            MissingCustomerCosigner, WrongTenant, NotATarget, TargetMismatch, ClassMismatch,
            ActionNotSupported, NotYetValid, Expired, ValidityTooLong, OutsideMaintenanceWindow,
            Replayed, GrantRevoked, ScriptMismatch, ScriptNotAllowListed, ClassNotPermitted, Frozen, Rollback,
            PolicyExpired, RootThresholdNotMet, NotPinnedRoot, NoRoot, NoPolicy,
            LogProofMissing, LogHeadUnsigned, LogHeadStale, LogInconsistent, LogEntryMismatch,
            WitnessCosignaturesMissing, MassActionDelayNotElapsed,
            ScheduleNotAnOccurrence, ScheduleNotDue, ScheduleRunMissed, ScheduleRevoked,
            ScheduleZoneUnknown,
        }
    }
}

/// Entry point for the `signed_statement` fuzz target: decodes an envelope
/// and every statement kind; must never panic, and what decodes must be canonical.
#[cfg(fuzzing)]
pub fn fuzz_signed(bytes: &[u8]) {
    let limits = Limits::default();
    if let Ok(signed) = Signed::from_bytes(bytes, &limits) {
        assert_eq!(signed.to_bytes(), bytes);
        let _ = signed.statement::<TrustRoot>(&limits);
        if let Ok(policy) = signed.statement::<Policy>(&limits)
            && policy.validate(&limits).is_ok()
        {
            // The groups' rule (RFD 0022) on whatever a valid policy holds.
            let me = groups::DeviceIdentity {
                device_id: policy.tenant.as_str(),
                device_key: &[0; 32],
            };
            let _ = groups::checks_for(&policy, me);
        }
        let _ = signed.statement::<FreezeStatement>(&limits);
        let _ = signed.statement::<JobStatement>(&limits);
        let _ = signed.statement::<shell::ShellGrant>(&limits);
        let _ = signed.statement::<shell::SessionOpen>(&limits);
        let _ = signed.statement::<shell::SessionAnswer>(&limits);
        if let Ok(schedule) = signed.statement::<schedule::ScheduleStatement>(&limits) {
            let _ = schedule.validate(&limits);
        }
        let _ = signed.tally(std::iter::empty());
        // No fuzzed key id names a known key, so reach the passkey checks directly.
        let challenge = signed.approval_challenge();
        let mut base_point = [0x66; 32];
        base_point[0] = 0x58;
        let credential = WebAuthnCredential {
            rp_id: webauthn::APPROVAL_RP_ID.into(),
            key: CoseKey::Ed25519(base_point),
        };
        for assertion in signed.signatures.iter().filter_map(|e| e.webauthn.as_ref()) {
            let _ = assertion.verify(&credential, &challenge, true);
        }
    }
}

/// Entry point for the `schedule_cron` fuzz target: the first line is a
/// cron expression, the second a window, then 8 bytes of a start time; the
/// occurrences found from there (in UTC, whose rules need no files) must
/// each be an occurrence, in order.
#[cfg(fuzzing)]
pub fn fuzz_schedule(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.splitn(3, '\n');
    let Ok(cron) = cron::Cron::parse(lines.next().unwrap_or_default()) else {
        return;
    };
    let window = lines
        .next()
        .and_then(|w| schedule::LocalWindow::parse(w).ok());
    let start = bytes
        .get(bytes.len().saturating_sub(8)..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, |b| u64::from_be_bytes(b) % 4_000_000_000);
    let timetable = schedule::Timetable {
        cron,
        zone: jiff::tz::TimeZone::UTC,
        window,
        not_before: start,
        not_after: start + 7 * 86_400,
    };
    let mut last = start;
    for at in timetable.upcoming(start, 50) {
        assert!(at > last && timetable.is_occurrence(at));
        last = at;
    }
}
