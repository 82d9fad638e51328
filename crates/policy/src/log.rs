//! Step 13 of [`crate::job::verify_job`]'s contract (DESIGN.md invariant 1):
//! a job runs only if it is in its tenant's transparency log, under a tree
//! head signed by the log key the agent pinned at enrolment, and that head
//! extends every head the agent accepted before. A forked, truncated or
//! rewritten log, or a job the log does not hold, is refused; the agent
//! reports the refusal as a security alert.
//!
//! With witnesses in the policy (RFD 0006), the head must also carry fresh
//! cosignatures of `k` of them (13g, [`crate::witness::verify_witnessed`]):
//! a history re-signed with a stolen log key gathers none.
//!
//! Two calls, because the tree head is worth keeping even when the job is
//! refused for another reason: [`verify_log_head`] first (the agent stores
//! the head it returns), then [`verify_job_entry`] once the job itself has
//! passed steps 1 to 12.

use bulwark_protocol::audit_leaf::{
    AuditLeaf, JOB_RELEASED, SCHEDULE_CREATED, job_released_detail,
};
use bulwark_translog::proof::parse_concatenated_proof;
use bulwark_translog::{
    Checkpoint, ExtensionError, NoteVerifier, check_extension, leaf_hash, verify_inclusion,
    verify_log_note,
};

use crate::Refusal;
use crate::envelope::Signed;
use crate::limits::Limits;

/// The origin line of a log's checkpoints: the log key's name, then the
/// log id (a tenant id, or `msp`).
pub fn log_origin(key_name: &str, log_id: &str) -> String {
    format!("{key_name}/{log_id}")
}

/// What comes with a job to prove it is in the log (the wire form is
/// `bulwark_protocol::message::LogProof`).
#[derive(Debug, Clone, Copy)]
pub struct JobLogProof<'a> {
    /// The entry's exact leaf bytes.
    pub leaf: &'a [u8],
    /// The entry's index in the log.
    pub index: u64,
    /// A signed C2SP checkpoint covering the entry.
    pub checkpoint: &'a str,
    /// Inclusion proof of `index` in the checkpoint's tree, hashes concatenated.
    pub inclusion: &'a [u8],
    /// The size of the tree head the server believes the agent holds.
    pub consistency_from: u64,
    /// Consistency proof from `consistency_from` to the checkpoint's size.
    pub consistency: &'a [u8],
    /// For a delayed mass action: an earlier checkpoint covering the entry
    /// (`None`: `checkpoint` itself) and the consistency proof from it to
    /// `checkpoint`.
    pub witnessed_since: Option<&'a str>,
    pub witnessed_since_consistency: &'a [u8],
}

/// 13a–13c: the tree head is signed by the pinned log key, is the tenant's
/// log, and extends `held` (the last head the agent accepted). Returns the
/// new head, which the agent keeps if it is larger.
pub fn verify_log_head(
    log_key: &NoteVerifier,
    tenant: &str,
    held: Option<&Checkpoint>,
    proof: &JobLogProof<'_>,
    limits: &Limits,
) -> Result<Checkpoint, Refusal> {
    // 13a. Signed by the log key pinned at enrolment.
    let head = verify_log_note(proof.checkpoint, log_key, limits)
        .map_err(|e| Refusal::LogHeadUnsigned(e.to_string()))?;
    // 13b. This tenant's log, not another tenant's or the MSP's.
    let origin = log_origin(log_key.name(), tenant);
    if head.origin() != origin {
        return Err(Refusal::LogHeadUnsigned(format!(
            "the tree head is of log {:?}, not {origin:?}",
            head.origin()
        )));
    }
    // 13c. Consistent with the head held: never shorter, and the held tree
    //      a prefix of the new one.
    if let Some(held) = held {
        // The very head held, named again: nothing to prove. A proof from
        // another size is then the server's drift (a restarted agent
        // announced an older head), not a fork, and needs no round trip.
        if head.size() == held.size() && head.root() == held.root() {
            return Ok(head);
        }
        if proof.consistency_from != held.size() {
            return Err(Refusal::LogHeadStale {
                held: held.size(),
                from: proof.consistency_from,
            });
        }
        let hashes = parse_concatenated_proof(proof.consistency, limits)
            .map_err(|e| Refusal::LogInconsistent(e.to_string()))?;
        check_extension(held, &head, &hashes)
            .map_err(|e: ExtensionError| Refusal::LogInconsistent(e.to_string()))?;
    }
    Ok(head)
}

/// 13d–13f: the entry at `proof.index` is in `head`'s tree, and it is this
/// job's release entry: this tenant, action `job.released`, the job id, and
/// the SHA-256 of exactly the bytes its signers signed.
pub fn verify_job_entry(
    head: &Checkpoint,
    tenant: &str,
    job_id: &[u8; 16],
    signed: &Signed,
    proof: &JobLogProof<'_>,
    limits: &Limits,
) -> Result<(), Refusal> {
    let target = hex::encode(job_id);
    verify_entry(head, tenant, JOB_RELEASED, &target, signed, proof, limits)
}

/// 13d–f for an entry `action` of `target` binding `signed`'s payload: a
/// job's release or a schedule's creation (RFD 0019).
fn verify_entry(
    head: &Checkpoint,
    tenant: &str,
    action: &str,
    target: &str,
    signed: &Signed,
    proof: &JobLogProof<'_>,
    limits: &Limits,
) -> Result<(), Refusal> {
    // 13d. The entry is in the tree the head commits to.
    let hashes = parse_concatenated_proof(proof.inclusion, limits)
        .map_err(|e| Refusal::NotInLog(e.to_string()))?;
    verify_inclusion(
        &leaf_hash(proof.leaf),
        proof.index,
        head.size(),
        &hashes,
        head.root(),
    )
    .map_err(|e| Refusal::NotInLog(e.to_string()))?;
    // 13e. The entry is a well-formed leaf of this tenant's log.
    let leaf = AuditLeaf::decode(proof.leaf)
        .map_err(|e| Refusal::LogEntryMismatch(format!("the entry is not a leaf: {e}")))?;
    if leaf.tenant.as_deref() != Some(tenant) {
        return Err(Refusal::LogEntryMismatch(
            "the entry belongs to another log".into(),
        ));
    }
    // 13f. It releases this very job: same id, same signed bytes.
    let detail = job_released_detail(&signed.digest());
    if leaf.action != action || leaf.target != target || leaf.detail != detail {
        return Err(Refusal::LogEntryMismatch(format!(
            "the entry is {} of {:?}, not {action} of {target:?} with these signed bytes",
            leaf.action, leaf.target
        )));
    }
    Ok(())
}

/// 13h's checkpoint: `proof.witnessed_since` if given (signed by the log
/// key, the same log, covering the entry, and a prefix of `head`), else
/// `head`'s own note.
fn witnessed_since<'a>(
    log_key: &NoteVerifier,
    head: &Checkpoint,
    proof: &JobLogProof<'a>,
    limits: &Limits,
) -> Result<&'a str, Refusal> {
    let Some(note) = proof.witnessed_since else {
        return Ok(proof.checkpoint);
    };
    let since = verify_log_note(note, log_key, limits)
        .map_err(|e| Refusal::LogHeadUnsigned(e.to_string()))?;
    if since.origin() != head.origin() || since.size() <= proof.index {
        return Err(Refusal::LogHeadUnsigned(
            "the earlier tree head is of another log or does not cover the entry".into(),
        ));
    }
    let hashes = parse_concatenated_proof(proof.witnessed_since_consistency, limits)
        .map_err(|e| Refusal::LogInconsistent(e.to_string()))?;
    check_extension(&since, head, &hashes)
        .map_err(|e: ExtensionError| Refusal::LogInconsistent(e.to_string()))?;
    Ok(note)
}

/// What an agent knows of its tenant's log: the key pinned at enrolment
/// (`None` for an agent enrolled before there was one) and the last tree
/// head it accepted.
#[derive(Debug, Clone, Copy)]
pub struct LogContext<'a> {
    pub key: Option<&'a NoteVerifier>,
    pub held: Option<&'a Checkpoint>,
}

/// The agent's whole decision on one job: the verdict of steps 1 to 13,
/// and the tree head to keep (a valid head larger than the held one is
/// kept even when the job is refused for another reason, so the next
/// consistency proof starts from where the server believes the agent is).
#[derive(Debug, Clone)]
pub struct JobDecision {
    pub verdict: Result<crate::job::VerifiedJob, Refusal>,
    pub new_head: Option<Checkpoint>,
}

/// Invariant 1 of DESIGN.md in one pure function: may this agent run this
/// job now, and which tree head does it hold afterwards? The agent only
/// stores the head and acts on the verdict.
#[allow(clippy::too_many_arguments)]
pub fn decide_job(
    signed: &Signed,
    script: &[u8],
    proof: Option<&JobLogProof<'_>>,
    agent: crate::job::AgentContext<'_>,
    log: LogContext<'_>,
    history: &impl crate::job::JobHistory,
    now: u64,
    limits: &Limits,
) -> JobDecision {
    // 13a–c first: a tree head signed by the pinned key, extending the held
    // one. A job without a proof goes through 1–12 first, so a forged job
    // is reported for what is wrong with it.
    let head = match (proof, log.key) {
        (Some(proof), Some(key)) => {
            match verify_log_head(key, agent.tenant, log.held, proof, limits) {
                Ok(head) => Some(head),
                Err(refusal) => {
                    return JobDecision {
                        verdict: Err(refusal),
                        new_head: None,
                    };
                }
            }
        }
        _ => None,
    };
    let new_head = head
        .clone()
        .filter(|h| log.held.is_none_or(|held| h.size() > held.size()));
    // 1–12, then 13d–f: the entry is in that tree and releases this job.
    let verdict =
        crate::job::verify_job(signed, script, agent, history, now, limits).and_then(|verified| {
            let (Some(head), Some(proof)) = (&head, proof) else {
                return Err(Refusal::LogProofMissing);
            };
            verify_job_entry(
                head,
                agent.tenant,
                &verified.statement.job_id,
                signed,
                proof,
                limits,
            )?;
            // 13g. Witnessed: k of the policy's witnesses cosigned this very
            //      head recently, by this agent's clock.
            if let Some(witnessing) = &agent.policy.witnessing {
                crate::witness::verify_witnessed(proof.checkpoint, witnessing, now, limits)?;
                // 13h. A mass action: the witnesses saw it in the log at
                //      least the policy's delay ago.
                if let (Some(rule), Some(key)) = (&agent.policy.mass_action_delay, log.key)
                    && rule.applies(&verified.statement, verified.class)
                {
                    let since = witnessed_since(key, head, proof, limits)?;
                    crate::delay::verify_delay_elapsed(since, witnessing, rule, now, limits)?;
                }
            }
            Ok(verified)
        });
    JobDecision { verdict, new_head }
}

/// The agent's whole decision on one scheduled run (RFD 0019): `decide_job`
/// for [`crate::schedule::verify_occurrence`], whose step 11 is here: the
/// schedule's `schedule.created` entry is in the tenant's log under a head
/// that extends the held one (and is witnessed, if the policy says so).
pub struct OccurrenceDecision {
    pub verdict: Result<crate::schedule::VerifiedRun, Refusal>,
    pub new_head: Option<Checkpoint>,
}

/// May this agent run this occurrence now, and which head does it keep?
#[allow(clippy::too_many_arguments)]
pub fn decide_occurrence(
    run: crate::schedule::RunRequest<'_>,
    proof: Option<&JobLogProof<'_>>,
    agent: crate::job::AgentContext<'_>,
    log: LogContext<'_>,
    zones: impl FnOnce(&str) -> Option<jiff::tz::TimeZone>,
    history: &impl crate::schedule::ScheduleHistory,
    now: u64,
    limits: &Limits,
) -> OccurrenceDecision {
    let head = match (proof, log.key) {
        (Some(proof), Some(key)) => {
            match verify_log_head(key, agent.tenant, log.held, proof, limits) {
                Ok(head) => Some(head),
                Err(refusal) => {
                    return OccurrenceDecision {
                        verdict: Err(refusal),
                        new_head: None,
                    };
                }
            }
        }
        _ => None,
    };
    let new_head = head
        .clone()
        .filter(|h| log.held.is_none_or(|held| h.size() > held.size()));
    let verdict = crate::schedule::verify_occurrence(run, agent, zones, history, now, limits)
        .and_then(|verified| {
            let (Some(head), Some(proof)) = (&head, proof) else {
                return Err(Refusal::LogProofMissing);
            };
            let target = hex::encode(verified.schedule.schedule_id);
            verify_entry(
                head,
                agent.tenant,
                SCHEDULE_CREATED,
                &target,
                run.signed,
                proof,
                limits,
            )?;
            if let Some(witnessing) = &agent.policy.witnessing {
                crate::witness::verify_witnessed(proof.checkpoint, witnessing, now, limits)?;
            }
            Ok(verified)
        });
    OccurrenceDecision { verdict, new_head }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_translog::NoteSigner;
    use ed25519_dalek::SigningKey;

    fn head(signer: &NoteSigner, size: u64, root: u8) -> (String, Checkpoint) {
        let checkpoint = Checkpoint::new(
            log_origin(signer.name(), "tenant-a"),
            size,
            bulwark_translog::Hash([root; 32]),
            Vec::new(),
        )
        .expect("checkpoint");
        let note = checkpoint.sign_as_log(signer).expect("signs");
        (note, checkpoint)
    }

    fn proof(checkpoint: &str, consistency_from: u64) -> JobLogProof<'_> {
        JobLogProof {
            leaf: b"",
            index: 0,
            checkpoint,
            inclusion: b"",
            consistency_from,
            consistency: b"",
            witnessed_since: None,
            witnessed_since_consistency: b"",
        }
    }

    /// A restarted agent may announce an older head than the one it holds
    /// when the job arrives: the held head named again passes whatever
    /// size the server proved from, and a head of the same size with
    /// another root is still not taken without a proof.
    #[test]
    fn the_held_head_needs_no_consistency_proof_and_a_fork_of_it_does() {
        let signer = NoteSigner::new("log.test", SigningKey::from_bytes(&[9; 32])).expect("key");
        let limits = Limits::default();
        let (note, held) = head(&signer, 72, 1);
        let same = verify_log_head(
            &signer.verifier(),
            "tenant-a",
            Some(&held),
            &proof(&note, 70),
            &limits,
        )
        .expect("the held head again");
        assert_eq!(same, held);
        let (forked, _) = head(&signer, 72, 2);
        assert_eq!(
            verify_log_head(
                &signer.verifier(),
                "tenant-a",
                Some(&held),
                &proof(&forked, 70),
                &limits,
            ),
            Err(Refusal::LogHeadStale { held: 72, from: 70 })
        );
        assert!(matches!(
            verify_log_head(
                &signer.verifier(),
                "tenant-a",
                Some(&held),
                &proof(&forked, 72),
                &limits,
            ),
            Err(Refusal::LogInconsistent(_))
        ));
    }
}
