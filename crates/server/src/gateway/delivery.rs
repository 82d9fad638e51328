//! Delivery: the tenant's trust statements and the approved jobs waiting for
//! a device, each job with its proof of being in the tenant's log (inclusion
//! under a signed tree head, consistency from the head the agent holds).
//! The session calls it when presence is nudged, and again with the agent's
//! own head size after a `log_head_stale` answer.

use bulwark_store::AuditAction;
use std::collections::HashSet;

use bulwark_protocol::encode_server_frame;
use bulwark_protocol::message::{
    ByteBuf, CancelJob, Job, LogProof, ScheduledRun, ServerMessage, Trust,
};
use bulwark_store::{Delivery, StoreError};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, warn};

use super::mass_action::{Hold, mass_action_hold};
use super::{GatewayState, Ws};
use crate::now_millis;
use crate::transparency_log::witnessing::policy_of;
use bulwark_policy::Witnessing;
use std::time::Duration;

/// Sends a cancel for each cancelled job this device was sent and has not
/// answered, once per connection (RFD 0012). Nothing to a connection of a
/// protocol version before 3: it has no such message, and its agent runs
/// the job to its end.
pub(super) async fn send_cancels(
    state: &GatewayState,
    ws: &mut Ws,
    version: u16,
    device_id: &str,
    sent: &mut HashSet<String>,
) -> anyhow::Result<()> {
    if version < 3 {
        return Ok(());
    }
    for (id, reason) in state.store.cancels_for_device(device_id).await? {
        if sent.contains(&id) {
            continue;
        }
        let Some(job_id) = hex::decode(&id)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
        else {
            continue;
        };
        let reason = reason.chars().take(1000).collect();
        let message = ServerMessage::CancelJob(CancelJob { job_id, reason });
        ws.send(Message::Binary(
            encode_server_frame(version, &message)?.into(),
        ))
        .await?;
        debug!(%device_id, job = %id, "Cancel sent.");
        sent.insert(id);
    }
    Ok(())
}

/// Sends the tenant's trust statements, then every approved job waiting for
/// this device, each with its proof of being in the tenant's log. The agent
/// ignores what it already holds and refuses replays, so sending again after
/// a reconnect is safe. `log_size` is the size of the tree head the agent
/// holds; it follows what this connection sent. Returns when to look
/// again if a delayed mass action is held back ([`super::mass_action`]).
pub(super) async fn send_work(
    state: &GatewayState,
    ws: &mut Ws,
    version: u16,
    device_id: &str,
    tenant_id: &str,
    log_size: &mut Option<u64>,
    sent: &mut HashSet<String>,
) -> anyhow::Result<Option<Duration>> {
    let set = state.store.trust_for_device_tenant(tenant_id).await?;
    if !set.roots.is_empty() {
        let trust = ServerMessage::Trust(Trust {
            roots: set.roots.into_iter().map(ByteBuf::from).collect(),
            policy: set.policy.map(|(_, bytes)| bytes),
            freeze: set.freeze.map(|(_, bytes)| bytes),
        });
        ws.send(Message::Binary(
            encode_server_frame(version, &trust)?.into(),
        ))
        .await?;
    }
    let now = now_millis();
    let mut jobs = state
        .store
        .deliverable_jobs_for_device(device_id, now)
        .await?;
    jobs.retain(|(job, _)| !sent.contains(&job.id));
    if jobs.is_empty() {
        return Ok(None);
    }
    // One tree head for the batch: it covers every job's entry and, if it
    // can, the head the agent holds.
    let needed = jobs
        .iter()
        .filter_map(|(job, _)| job.release_log_idx.map(|idx| idx + 1))
        .chain(*log_size)
        .max();
    let (checkpoint, policy) = batch_head(state, device_id, tenant_id, needed, *log_size).await?;
    let now_secs = u64::try_from(now_millis() / 1000).unwrap_or(0);
    let mut look_again: Option<Duration> = None;
    for (job, _) in jobs {
        let hold = mass_action_hold(
            &state.store,
            tenant_id,
            &job,
            policy.as_ref(),
            checkpoint.as_ref(),
            now_secs,
        )
        .await?;
        let since = match hold {
            Hold::Deliver(since) => since,
            Hold::Wait(wait) => {
                debug!(%device_id, job = %job.id, ?wait, "Mass action held for the policy's delay.");
                look_again = Some(look_again.map_or(wait, |w| w.min(wait)));
                continue;
            }
        };
        let log = match (job.release_log_idx, &checkpoint) {
            (Some(idx), Some(checkpoint)) => {
                let mut proof = job_log_proof(state, tenant_id, idx, checkpoint, *log_size).await?;
                if let Some((note, consistency)) = since {
                    proof.witnessed_since = Some(note);
                    proof.witnessed_since_consistency = Some(ByteBuf(consistency));
                }
                Some(proof)
            }
            _ => {
                warn!(%device_id, job = %job.id, "Job has no log entry; delivered without proof (the agent refuses it).");
                None
            }
        };
        // The agent moves to this head if it is consistent with its own.
        if let (Some(proof), Some(checkpoint)) = (&log, &checkpoint)
            && proof.consistency_from <= checkpoint.size
        {
            *log_size = Some(checkpoint.size);
        }
        let entry = log
            .as_ref()
            .map(|l| format!(", log entry {}", l.index))
            .unwrap_or_default();
        let message = ServerMessage::Job(Job {
            envelope: job.envelope,
            script: job.script,
            log,
        });
        let frame = encode_server_frame(version, &message)?;
        sent.insert(job.id.clone());
        if !fits(state, version, frame.len(), device_id, &job.id) {
            continue;
        }
        ws.send(Message::Binary(frame.into())).await?;
        // The first delivery is recorded, with its audit event, before the
        // agent's next frame is read (batched with other sessions': `fanout`).
        let delivered = bulwark_store::NewAuditEvent::new(
            now_millis(),
            "server",
            AuditAction::JobDelivered,
            &job.id,
        )
        .in_tenant(Some(tenant_id))
        .with_detail(format!("to {device_id}{entry}"));
        state
            .deliveries
            .record(Delivery {
                job_id: job.id.clone(),
                device_id: device_id.to_owned(),
                at: now_millis(),
                events: vec![delivered],
            })
            .await?;
        debug!(%device_id, job = %job.id, "Job delivered.");
    }
    Ok(look_again)
}

/// Whether a job's frame of `size` bytes may go on a connection of
/// `version`. An agent before protocol version 7 closes its connection on
/// a frame over its older cap (a job to thousands of devices): sending it
/// would have it reconnect and be sent the same frame, and nothing after
/// it, forever. The job waits for that device's agent to be updated.
fn fits(state: &GatewayState, version: u16, size: usize, device_id: &str, job: &str) -> bool {
    let cap = state.limits.server_frame_cap(version);
    if size > cap {
        warn!(%device_id, %job, size, cap, version, "Job not sent: larger than the agent's protocol version takes; it waits for the agent's update.");
    }
    size <= cap
}

/// One tree head for a batch of deliveries: covering `needed` entries and,
/// if it can, the head the agent holds (`log_size`), witnessed if the
/// tenant's policy names witnesses; with that policy.
async fn batch_head(
    state: &GatewayState,
    device_id: &str,
    tenant_id: &str,
    needed: Option<u64>,
    log_size: Option<u64>,
) -> anyhow::Result<(
    Option<bulwark_store::LogCheckpoint>,
    Option<bulwark_policy::Policy>,
)> {
    let now = now_millis();
    let checkpoint = match needed {
        Some(min_size) => {
            match state
                .log
                .checkpoint_covering(&state.store, tenant_id, min_size, now)
                .await
            {
                Ok(checkpoint) => Some(checkpoint),
                // The log is shorter than the agent's head: truncated or
                // rolled back. Deliver under the latest head anyway; the
                // agent refuses it and raises the alarm.
                Err(StoreError::Invalid(_)) => {
                    warn!(%device_id, tenant = %tenant_id, ?log_size, "The tenant's log is shorter than the tree head the agent holds.");
                    state.log.sign_head(&state.store, tenant_id, now).await?
                }
                Err(other) => return Err(other.into()),
            }
        }
        None => None,
    };
    let policy = match policy_of(&state.store, tenant_id).await {
        Ok(policy) => policy,
        Err(error) => {
            warn!(tenant = %tenant_id, "Cannot read the tenant's policy: {error:#}");
            None
        }
    };
    let checkpoint = match (
        checkpoint,
        policy.as_ref().and_then(|p| p.witnessing.as_ref()),
    ) {
        (Some(checkpoint), Some(witnessing)) => {
            Some(witnessed(state, tenant_id, witnessing, checkpoint).await)
        }
        (checkpoint, _) => checkpoint,
    };
    Ok((checkpoint, policy))
}

/// Sends every claimed occurrence of a schedule waiting for this device
/// (protocol version 6, RFD 0019), each with its schedule's
/// `schedule.created` entry under one tree head; the agent decides itself
/// whether it runs. Nothing to an older agent: it gets no schedules.
pub(super) async fn send_scheduled(
    state: &GatewayState,
    ws: &mut Ws,
    version: u16,
    device_id: &str,
    tenant_id: &str,
    log_size: &mut Option<u64>,
    sent: &mut HashSet<String>,
) -> anyhow::Result<()> {
    if version < 6 {
        return Ok(());
    }
    let mut runs = state
        .store
        .scheduled_runs_for_device(device_id, now_millis())
        .await?;
    runs.retain(|run| !sent.contains(&run.job_id));
    if runs.is_empty() {
        return Ok(());
    }
    let needed = runs
        .iter()
        .filter_map(|run| run.log_idx.and_then(|idx| u64::try_from(idx).ok()))
        .map(|idx| idx + 1)
        .chain(*log_size)
        .max();
    let (checkpoint, _) = batch_head(state, device_id, tenant_id, needed, *log_size).await?;
    for run in runs {
        let (Some(job_id), Ok(occurrence)) = (
            hex::decode(&run.job_id)
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok()),
            u64::try_from(run.occurrence),
        ) else {
            warn!(%device_id, job = %run.job_id, "A claimed occurrence with an unreadable job id or time; not delivered.");
            continue;
        };
        let log = match (run.log_idx.and_then(|i| u64::try_from(i).ok()), &checkpoint) {
            (Some(idx), Some(checkpoint)) => {
                Some(job_log_proof(state, tenant_id, idx, checkpoint, *log_size).await?)
            }
            _ => {
                warn!(%device_id, schedule = %run.schedule_id, "The schedule has no log entry; delivered without proof (the agent refuses it).");
                None
            }
        };
        if let (Some(proof), Some(checkpoint)) = (&log, &checkpoint)
            && proof.consistency_from <= checkpoint.size
        {
            *log_size = Some(checkpoint.size);
        }
        let message = ServerMessage::ScheduledRun(ScheduledRun {
            envelope: run.envelope,
            script: run.script,
            occurrence,
            job_id,
            log,
        });
        let frame = encode_server_frame(version, &message)?;
        sent.insert(run.job_id.clone());
        if !fits(state, version, frame.len(), device_id, &run.job_id) {
            continue;
        }
        ws.send(Message::Binary(frame.into())).await?;
        let delivered = bulwark_store::NewAuditEvent::new(
            now_millis(),
            "server",
            AuditAction::JobDelivered,
            &run.job_id,
        )
        .in_tenant(Some(tenant_id))
        .with_detail(format!(
            "to {device_id}: occurrence {occurrence} of schedule {}",
            run.schedule_id
        ));
        state
            .deliveries
            .record(Delivery {
                job_id: run.job_id.clone(),
                device_id: device_id.to_owned(),
                at: now_millis(),
                events: vec![delivered],
            })
            .await?;
        debug!(%device_id, job = %run.job_id, "Scheduled run delivered.");
    }
    Ok(())
}

/// `checkpoint` with fresh cosignatures of the tenant's witnesses, if its
/// policy names any (RFD 0006). Delivered as it is when they cannot be had:
/// the agent then refuses with `witness_cosignatures_missing`, which is
/// what an operator must see.
async fn witnessed(
    state: &GatewayState,
    tenant_id: &str,
    witnessing: &Witnessing,
    checkpoint: bulwark_store::LogCheckpoint,
) -> bulwark_store::LogCheckpoint {
    let now_secs = u64::try_from(now_millis() / 1000).unwrap_or(0);
    match state
        .witnesses
        .witness(&state.store, &state.log, witnessing, &checkpoint, now_secs)
        .await
    {
        Ok(witnessed) => witnessed,
        Err(error) => {
            warn!(tenant = %tenant_id, size = checkpoint.size, "Cannot have the tree head witnessed: {error:#}");
            checkpoint
        }
    }
}

/// A job's entry, its inclusion proof under `checkpoint`, and the
/// consistency proof from the head the agent holds (empty when there is
/// none to give: the agent then refuses if it holds a head).
async fn job_log_proof(
    state: &GatewayState,
    tenant_id: &str,
    idx: u64,
    checkpoint: &bulwark_store::LogCheckpoint,
    held: Option<u64>,
) -> anyhow::Result<LogProof> {
    let (leaf, inclusion) = state
        .proofs
        .inclusion(&state.store, tenant_id, idx, checkpoint.size)
        .await?;
    let from = held.unwrap_or(0);
    let consistency = state
        .proofs
        .consistency(&state.store, tenant_id, from, checkpoint.size)
        .await?;
    Ok(LogProof {
        leaf,
        index: idx,
        checkpoint: checkpoint.note.clone(),
        inclusion,
        consistency_from: from,
        consistency,
        witnessed_since: None,
        witnessed_since_consistency: None,
    })
}
