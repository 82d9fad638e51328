//! Signed jobs: submitting one, the approvals it gathers, and what each
//! targeted device answered.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::job_status::{JobStatus, TargetStatus};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The signed job statement: base64 of its canonical CBOR envelope.
    pub envelope: String,
    /// The script body whose SHA-256 the statement names.
    pub script: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuorumView {
    pub have: usize,
    pub need: usize,
    pub customer_required: bool,
    pub customer_signed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignerView {
    pub key_id: String,
    /// The policy's name for the key, when the current policy lists it.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobTargetView {
    pub device_id: String,
    pub hostname: String,
    /// waiting, delivered, succeeded, failed, timed_out or refused.
    pub state: String,
    pub exit_code: Option<i32>,
    pub refusal_code: Option<String>,
    pub refusal_reason: Option<String>,
    pub output_sha256: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// When the server first sent the job to the device.
    pub delivered_at: Option<String>,
    /// The agent's clock: when the script started and ended.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// What an install-patches job did on this device, as its agent reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<PatchReportView>,
    /// What happened on this device (RFD 0012): `state` with the job's
    /// cancel, the agent's word that it started, and the device's presence.
    pub status: TargetStatus,
    /// The agent's clock: when it said the script started (protocol 3 and later).
    pub running_at: Option<String>,
    /// How long the script ran: `finished_at - started_at` of its result.
    pub duration_ms: Option<i64>,
    /// The protocol version of the device's connection, while it is
    /// connected; live output and cancel need 3 or later.
    pub protocol_version: Option<u16>,
    /// Live output bytes kept, and bytes not kept (past the cap, or never
    /// received): `GET /api/v1/jobs/{id}/output`.
    pub live_bytes: i64,
    pub live_truncated: i64,
}

/// The result of an install-patches job on one device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatchReportView {
    pub installed: Vec<PatchedPackageView>,
    pub failed: Vec<PatchFailureView>,
    /// The device asks for a reboot (`/var/run/reboot-required`).
    pub reboot_required: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatchedPackageView {
    pub name: String,
    /// Empty when the package was not installed before.
    pub old_version: String,
    pub new_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatchFailureView {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job id (32 hex characters).
    pub id: String,
    pub tenant: String,
    pub class: String,
    /// What the job does, from its signed statement ("run a bash script, sha256 …").
    pub action: Option<String>,
    pub reason: String,
    pub requested_by: String,
    pub script_sha256: String,
    /// pending, approved, rejected or expired: where the job is in its
    /// approval; `status` says what happened.
    pub state: String,
    /// What happened to the job as a whole (RFD 0012).
    pub status: JobStatus,
    /// When, by whom (username) and why it was cancelled.
    pub cancelled_at: Option<String>,
    pub cancelled_by: Option<String>,
    pub cancel_reason: Option<String>,
    pub quorum: Option<QuorumView>,
    pub signers: Vec<SignerView>,
    pub not_before: String,
    pub expires_at: String,
    pub created_at: String,
    /// When the quorum was met (or the job rejected or expired).
    pub decided_at: Option<String>,
    pub timeout_secs: u32,
    pub decision_note: Option<String>,
    pub targets: Vec<JobTargetView>,
    /// Only on a single job: the exact script text.
    pub script: Option<String>,
    /// Only on a single job: the envelope with every signature (base64).
    pub envelope: Option<String>,
    /// Only on a single job: SHA-256 of the envelope's signing bytes (hex),
    /// which the job's `job.released` log entry names.
    pub challenge: Option<String>,
    /// Set when the tenant's policy calls this job a mass action: it waits
    /// after entering the witnessed log, and the tenant can freeze meanwhile.
    #[serde(default)]
    pub mass_action_delay: Option<MassActionDelayView>,
}

/// A delayed mass action's wait (RFD 0006). Agents time it from the
/// witnesses' cosignatures; `runs_from` is the server's estimate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MassActionDelayView {
    pub delay_secs: u64,
    /// RFC 3339: approval plus the delay (none while pending).
    pub runs_from: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// The signing key (hex key id, as `bulwark keys list` shows it).
    pub key_id: String,
    /// Ed25519 signature over the envelope's signing bytes (base64 of 64
    /// bytes). Either this or `webauthn`.
    #[serde(default)]
    pub signature: Option<String>,
    /// An approval passkey's assertion over the job's approval challenge
    /// (made in the page of the approver's own `bulwark`, RFD 0005), as the
    /// browser returned it. Either this or `signature`.
    #[serde(default)]
    pub webauthn: Option<WebAuthnApproval>,
}

/// `navigator.credentials.get`'s response fields, base64url (padding tolerated).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebAuthnApproval {
    pub authenticator_data: String,
    pub client_data_json: String,
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    pub reason: String,
}

/// Cancel a job: waiting devices never get it, running ones are told to
/// stop (agents of protocol version 3 and later).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why (1 to 1000 characters), for the audit log and the agents' logs.
    pub reason: String,
}

/// Which stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputStreamView {
    Stdout,
    Stderr,
}

/// A piece of a running job's output on one device, as its agent sent it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutputChunkView {
    /// Its number: ask for pieces after the last one seen (`after`).
    pub seq: i64,
    pub stream: OutputStreamView,
    /// The bytes as UTF-8 (invalid sequences replaced). The agent's text:
    /// escape it before showing it (HTML, terminal control sequences).
    pub text: String,
    /// Bytes of this stream missing just before this piece.
    pub skipped: i64,
}

/// Live output of one job on one device, after a cursor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobOutputView {
    pub job_id: String,
    pub device_id: String,
    pub status: TargetStatus,
    pub job_status: JobStatus,
    /// At most 256 pieces after `after`, oldest first.
    pub chunks: Vec<OutputChunkView>,
    /// The cursor for the next call (the last `seq` returned, or `after`).
    pub next: Option<i64>,
    /// Bytes not kept (past the cap, or never received): shown as
    /// `[... N bytes truncated ...]` after what was kept.
    pub truncated_bytes: i64,
    /// The device's connection speaks a protocol version without live
    /// output (before 3): only the result shows what it wrote.
    pub agent_too_old: bool,
}

/// Query of `GET /api/v1/jobs/{id}/output`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// The target device's id.
    pub device: String,
    /// Pieces after this sequence number (none: from the first).
    #[param(minimum = 0)]
    pub after: Option<i64>,
}
