//! Job statements and the check an agent makes before running anything.

use std::collections::BTreeSet;

use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::Refusal;
use crate::envelope::{Signed, Statement};
use crate::freeze::FreezeState;
use crate::keys::KeyId;
use crate::limits::{Limits, cap};
use crate::policy::{ActionClass, Policy, ScriptHash};
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
}

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
    let fan_out = usize::try_from(policy.fan_out_limit).unwrap_or(usize::MAX);
    let need = usize::try_from(quorum.signers)
        .unwrap_or(usize::MAX)
        .saturating_add(usize::from(targets.len() > fan_out));
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
    // 13. (Transparency-log issue) The envelope is included in the tenant's
    //     log under a signed tree head consistent with the last one accepted.
    Ok(VerifiedJob {
        statement: job,
        signers: tally.valid,
    })
}
