//! Holding back delayed mass actions (RFD 0006). A job the tenant's policy
//! calls a mass action is delivered only once `k` of its witnesses have
//! cosigned a tree head covering its entry at least the policy's delay
//! ago; it comes with that head, so the agent checks the wait itself
//! (step 13h) by the witnesses' times and its own clock. Delivering early
//! would only get the job refused with an alarm: this is the server being
//! honest, not the protection.

use std::time::Duration;

use bulwark_policy::{Limits, MassActionDelay, Policy, Signed, derive_class, job::JobStatement};
use bulwark_store::{Job, LogCheckpoint, Store, StoreError};
use bulwark_translog::cosignature_time_ranges;

use crate::transparency_log::witnessing::WITNESS_TICK;

/// What to do with one job now.
#[derive(Debug)]
pub(super) enum Hold {
    /// Deliver; for a mass action, with the earlier witnessed head and the
    /// consistency proof from it to the head the job comes under.
    Deliver(Option<(String, Vec<u8>)>),
    /// Not yet: look again after this long.
    Wait(Duration),
}

/// The policy's mass-action delay if it applies to the job signed in
/// `envelope` (with its statement); `None` for any other job, and for one
/// that does not decode (the agent refuses that for what it is).
pub(crate) fn delayed_by<'p>(
    policy: &'p Policy,
    envelope: &[u8],
) -> Option<(&'p MassActionDelay, JobStatement)> {
    let rule = policy.mass_action_delay.as_ref()?;
    policy.witnessing.as_ref()?;
    let limits = Limits::default();
    let statement = Signed::from_bytes(envelope, &limits)
        .and_then(|signed| signed.statement::<JobStatement>(&limits))
        .ok()?;
    let class = derive_class(&statement, policy).unwrap_or(statement.class);
    rule.applies(&statement, class).then_some((rule, statement))
}

/// Whether `job` waits, and if not, what shows the agent it waited.
pub(super) async fn mass_action_hold(
    store: &Store,
    tenant_id: &str,
    job: &Job,
    policy: Option<&Policy>,
    head: Option<&LogCheckpoint>,
    now_secs: u64,
) -> Result<Hold, StoreError> {
    let (Some(policy), Some(head), Some(idx)) = (policy, head, job.release_log_idx) else {
        return Ok(Hold::Deliver(None));
    };
    let Some((rule, _)) = delayed_by(policy, &job.envelope) else {
        return Ok(Hold::Deliver(None));
    };
    let Some(witnessing) = &policy.witnessing else {
        return Ok(Hold::Deliver(None));
    };
    let limits = Limits::default();
    // The smallest witnessed head covering the entry: the earliest proof
    // that the witnesses have seen it.
    let verifiers = witnessing.verifiers();
    let need = witnessing.threshold as usize;
    for since in store.checkpoints(tenant_id, idx + 1, 64).await? {
        if since.size > head.size {
            break;
        }
        let Ok(ranges) = cosignature_time_ranges(&since.note, &verifiers, &limits) else {
            continue;
        };
        let mut firsts: Vec<u64> = ranges.into_iter().flatten().map(|(f, _)| f).collect();
        firsts.sort_unstable();
        let Some(&seen_by_k) = firsts.get(need.saturating_sub(1)) else {
            continue;
        };
        let ready_at = seen_by_k.saturating_add(rule.delay_secs);
        if ready_at > now_secs {
            // One second late rather than early: the agent's clock decides.
            return Ok(Hold::Wait(Duration::from_secs(ready_at - now_secs + 1)));
        }
        if since.size == head.size {
            return Ok(Hold::Deliver(None));
        }
        let proof = store
            .consistency_proof(tenant_id, since.size, head.size)
            .await?;
        return Ok(Hold::Deliver(Some((since.note, proof.concat()))));
    }
    // No head covering it is witnessed yet.
    Ok(Hold::Wait(WITNESS_TICK))
}
