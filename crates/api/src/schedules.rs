//! Scheduled jobs (RFD 0019): a schedule signed once on the operator's
//! machine, stored by the server, verified by every agent at every run.
//! Everything here is the server's word for people; agents check the
//! envelope itself.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::jobs::QuorumView;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The signed schedule statement: base64 of its canonical CBOR envelope.
    pub envelope: String,
    /// The script body whose SHA-256 the statement names (empty for an
    /// action without a script).
    pub script: String,
}

/// Revoke a schedule: the server delivers no more of its occurrences.
/// (Against a server that keeps delivering, the root holders list the
/// schedule in the policy's `revoked_schedules`.)
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeScheduleRequest {
    /// Why (1 to 1000 characters), for the audit log.
    pub reason: String,
}

/// An occurrence a server node claimed and delivers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleRunView {
    /// RFC 3339, UTC.
    pub occurrence: String,
    /// The run's job id (hex).
    pub job_id: String,
    pub claimed_by: String,
    pub claimed_at: String,
    /// What each target did with it, as its job (`GET /api/v1/jobs/{job_id}`
    /// has the rest): the state, and the exit status and output or the
    /// agent's refusal.
    pub results: Vec<ScheduleRunResultView>,
}

/// One target's result of one run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleRunResultView {
    pub device_id: String,
    pub hostname: String,
    /// waiting, delivered, succeeded, failed, timed_out or refused.
    pub state: String,
    pub exit_code: Option<i64>,
    /// The agent's refusal code (`schedule_not_an_occurrence`, ...).
    pub refusal_code: Option<String>,
    pub refusal_reason: Option<String>,
    /// As the agent sent it (bounded by the agent).
    pub stdout: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// 32 hex characters.
    pub id: String,
    pub tenant_id: String,
    /// The class the action derives to under the current policy.
    pub class: String,
    /// What each run does, from the signed statement.
    pub action: String,
    pub reason: String,
    pub cron: String,
    /// IANA zone name.
    pub zone: String,
    /// Local daily window `HH:MM-HH:MM`, if any.
    pub window: Option<String>,
    pub not_before: String,
    pub not_after: String,
    /// Device ids with the host names the signer chose them by.
    pub targets: Vec<ScheduleTargetView>,
    pub created_by: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Signatures against the current policy's quorum for the class.
    pub quorum: Option<QuorumView>,
    /// The next occurrences by the server's clock and zone rules (at most 5;
    /// empty once revoked or ended).
    pub next_occurrences: Vec<String>,
    /// Past claimed occurrences, newest first (only in a single view).
    pub runs: Vec<ScheduleRunView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleTargetView {
    pub device_id: String,
    pub hostname: String,
}
