//! Job statements and the check an agent makes before running anything.

use std::collections::BTreeSet;

use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::Refusal;
use crate::envelope::{Signed, Statement};
use crate::freeze::FreezeState;
use crate::keys::KeyId;
use crate::limits::{Limits, cap};
use crate::policy::{ActionClass, Policy, Quorum, ScriptHash};
use crate::root::Holder;

/// What operators sign: exactly what will run, where, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct JobStatement {
    #[n(0)]
    pub tenant: String,
    /// Unique per job: an agent runs a job id at most once.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub job_id: [u8; 16],
    /// Device ids (canonical UUID text).
    #[n(2)]
    pub targets: Vec<String>,
    #[n(3)]
    pub class: ActionClass,
    /// SHA-256 of the script body the agent will run.
    #[n(4)]
    pub script_sha256: ScriptHash,
    /// Unix seconds.
    #[n(5)]
    pub not_before: u64,
    /// Unix seconds.
    #[n(6)]
    pub expires_at: u64,
    #[cbor(n(7), with = "minicbor::bytes")]
    pub nonce: [u8; 16],
    /// Why, in the requester's words (shown to approvers and auditors).
    #[n(8)]
    pub reason: String,
    /// The agent stops the script after this many seconds (1 to a day).
    #[n(9)]
    pub timeout_secs: u32,
}

/// Longest a script may be allowed to run: one day.
pub const MAX_TIMEOUT_SECS: u32 = 24 * 3600;

impl Statement for JobStatement {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.job.v1+cbor";
}

/// The agent's memory of jobs it has run (kept on disk, across restarts).
pub trait JobHistory {
    fn seen(&self, job_id: &[u8; 16], nonce: &[u8; 16]) -> bool;
}

/// Who the agent is and what it currently trusts.
#[derive(Debug, Clone, Copy)]
pub struct AgentContext<'a> {
    pub tenant: &'a str,
    pub device_id: &'a str,
    pub policy: &'a Policy,
    pub freeze: FreezeState,
}

/// A job that passed every check, with the keys that vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJob {
    pub statement: JobStatement,
    pub signers: BTreeSet<KeyId>,
}

/// Invariant 1 of DESIGN.md: may this agent run this job now?
pub fn verify_job(
    signed: &Signed,
    script: &[u8],
    agent: AgentContext<'_>,
    history: &impl JobHistory,
    now: u64,
    limits: &Limits,
) -> Result<VerifiedJob, Refusal> {
    let policy = agent.policy;
    // 1. A frozen tenant runs nothing, whatever the job says.
    if agent.freeze.frozen {
        return Err(Refusal::Frozen);
    }
    // 2. A job statement, canonical, within limits.
    let job: JobStatement = signed.statement(limits)?;
    cap(job.targets.len(), limits.max_targets, "targets")?;
    cap(job.reason.len(), 4096, "reason")?;
    if job.timeout_secs == 0 || job.timeout_secs > MAX_TIMEOUT_SECS {
        return Err(Refusal::Malformed(format!(
            "timeout of {} s outside 1..={MAX_TIMEOUT_SECS}",
            job.timeout_secs
        )));
    }
    // 3. For this tenant and this device.
    if job.tenant != agent.tenant || policy.tenant != agent.tenant {
        return Err(Refusal::WrongTenant);
    }
    let targets: BTreeSet<&str> = job.targets.iter().map(String::as_str).collect();
    if !targets.contains(agent.device_id) {
        return Err(Refusal::NotATarget);
    }
    // 4. Under a policy that is still in force.
    if now >= policy.expires_at {
        return Err(Refusal::PolicyExpired);
    }
    // 5. Inside the job's validity window, which may not be overly long.
    if now < job.not_before {
        return Err(Refusal::NotYetValid);
    }
    if now >= job.expires_at {
        return Err(Refusal::Expired);
    }
    if job.expires_at.saturating_sub(job.not_before) > limits.max_job_validity_secs {
        return Err(Refusal::ValidityTooLong);
    }
    // 6. Never twice: neither the job id nor the nonce.
    if history.seen(&job.job_id, &job.nonce) {
        return Err(Refusal::Replayed);
    }
    // 7. The body is the one that was signed.
    if ScriptHash(Sha256::digest(script).into()) != job.script_sha256 {
        return Err(Refusal::ScriptMismatch);
    }
    // 8-12. Permitted class, allow-list, window, quorum, customer co-signer.
    let signers = check_quorum(signed, &job, policy, now)?;
    // 13. (Transparency-log issue) The envelope is included in the tenant's
    //     log under a signed tree head consistent with the last one accepted.
    Ok(VerifiedJob {
        statement: job,
        signers,
    })
}

/// Steps 8 to 12 of [`verify_job`]: does the policy let these signatures
/// run this job now? The server calls this too, to show approvers how far a
/// job is from its quorum; only the agent's answer counts.
pub fn check_quorum(
    signed: &Signed,
    job: &JobStatement,
    policy: &Policy,
    now: u64,
) -> Result<BTreeSet<KeyId>, Refusal> {
    // 8. The policy permits the class at all...
    let quorum = policy.quorum(job.class).ok_or(Refusal::ClassNotPermitted)?;
    // 9. ...with an allow-listed script where the class requires one...
    if job.class == ActionClass::RunAllowListedScript
        && !policy.allowed_scripts.contains(&job.script_sha256)
    {
        return Err(Refusal::ScriptNotAllowListed);
    }
    // 10. ...and now, if the class is restricted to maintenance windows.
    if quorum.in_window_only && !policy.in_window(now) {
        return Err(Refusal::OutsideMaintenanceWindow);
    }
    // 11. Enough distinct signers authorised for this class; one more when
    //     the job fans out beyond the policy's limit.
    let need = signers_needed(quorum, job, policy);
    let tally = signed.tally(policy.signers_for(job.class, None));
    tally.require(need)?;
    // 12. A customer-held key among them, where the policy demands it.
    if quorum.customer_required
        && signed
            .tally(policy.signers_for(job.class, Some(Holder::Customer)))
            .valid
            .is_empty()
    {
        return Err(Refusal::MissingCustomerCosigner);
    }
    Ok(tally.valid)
}

/// How far a job's signatures are from its quorum (for people, not for the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumProgress {
    /// Distinct valid signers authorised for the class.
    pub have: usize,
    /// How many the class needs for this many targets.
    pub need: usize,
    pub customer_required: bool,
    pub customer_signed: bool,
}

/// Counts valid authorised signers against the policy's quorum for the job's class.
pub fn quorum_progress(
    signed: &Signed,
    job: &JobStatement,
    policy: &Policy,
) -> Option<QuorumProgress> {
    let quorum = policy.quorum(job.class)?;
    Some(QuorumProgress {
        have: signed
            .tally(policy.signers_for(job.class, None))
            .valid
            .len(),
        need: signers_needed(quorum, job, policy),
        customer_required: quorum.customer_required,
        customer_signed: !signed
            .tally(policy.signers_for(job.class, Some(Holder::Customer)))
            .valid
            .is_empty(),
    })
}

/// The class's quorum, plus one signer when the job targets more distinct
/// devices than the policy's fan-out limit.
fn signers_needed(quorum: &Quorum, job: &JobStatement, policy: &Policy) -> usize {
    let targets: BTreeSet<&str> = job.targets.iter().map(String::as_str).collect();
    let fan_out = usize::try_from(policy.fan_out_limit).unwrap_or(usize::MAX);
    usize::try_from(quorum.signers)
        .unwrap_or(usize::MAX)
        .saturating_add(usize::from(targets.len() > fan_out))
}
