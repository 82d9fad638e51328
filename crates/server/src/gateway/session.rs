//! A connected agent's session: the loop that reads its frames (heartbeats,
//! inventory, job results, trust refusals and trust status), records each,
//! acknowledges what it stored, and sends work when presence is nudged.
//! An `agent_busy` or `log_head_stale` answer is not a result: the job goes
//! again ([`super::delivery`]).

use bulwark_store::AuditAction;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use bulwark_protocol::message::{
    Ack, AgentMessage, AgentRefusalCode, CheckScript, JobOutcome, JobResult, RefusalCode, Refused,
    ResultAck, ServerMessage, TrustRefused, TrustStatus,
};
use bulwark_protocol::{ProtocolError, decode_agent_frame, encode_server_frame};
use bulwark_store::StoreError;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{info, warn};

use super::delivery::{send_cancels, send_scheduled, send_work};
use super::{GatewayState, Ws};
use crate::{now_millis, rfc3339};
use std::time::Duration;

/// "Not before anything happens" for the session's look-again timer.
const FAR_FUTURE: Duration = Duration::from_secs(24 * 3600);

/// How many [`AgentRefusalCode::LogHeadStale`] answers one connection resends at once;
/// past that the jobs wait for the next connection's `Hello`.
const MAX_STALE_ANSWERS: u32 = 64;

/// An authenticated agent connection.
pub(super) struct Session {
    pub(super) ws: Ws,
    pub(super) device_id: String,
    pub(super) agent_version: String,
    /// The protocol version the agent's first frame chose: every frame of
    /// the session, both ways, is in it (RFD 0010).
    pub(super) protocol_version: u16,
    pub(super) tenant_id: String,
    pub(super) tenant: String,
    pub(super) peer: SocketAddr,
    /// The size of the last tree head of its tenant's log the agent accepted.
    pub(super) log_size: Option<u64>,
}

/// What a session knows and keeps between frames.
struct Live {
    device_id: String,
    tenant_id: String,
    version: u16,
    peer: SocketAddr,
    /// The size of the last tree head of its tenant's log the agent accepted.
    log_size: Option<u64>,
    /// Jobs sent in this session and not answered yet: each is sent once per
    /// session (a nudge sends only what is new), again only after the agent
    /// said it was too busy to read it.
    sent: HashSet<String>,
    busy_returned: bool,
    stale_answers: u32,
    check_reports: super::rate::Bucket,
    check_flood_logged: bool,
    /// Live output pieces this connection may send (RFD 0012): a flood is
    /// dropped here, before storage.
    output_pieces: super::rate::Bucket,
    output_flood_logged: bool,
    /// Cancelled jobs this connection was sent a cancel for (once each).
    cancels_sent: HashSet<String>,
    /// Script check contents this connection may ask for (RFD 0009).
    script_requests: super::rate::Bucket,
}

/// Live output pieces one connection may send: a burst (a job's whole
/// 1 MiB cap is 64 full pieces) and then ten a second.
const OUTPUT_PIECE_BURST: u32 = 128;
const OUTPUT_PIECES_PER_MINUTE: u32 = 600;

/// Check reports one connection may send: a burst (a policy change makes
/// every check report at once, in one report) and then one a second.
const CHECK_REPORT_BURST: u32 = 30;
const CHECK_REPORTS_PER_MINUTE: u32 = 60;

/// Script check contents one connection may ask for: every script check of
/// a policy at once (a waiting check asks every two seconds), then one a second.
const SCRIPT_REQUEST_BURST: u32 = 64;
const SCRIPT_REQUESTS_PER_MINUTE: u32 = 60;

// Storage calls inside the session are boxed: their futures are large
// (sqlx) and would otherwise be part of every idle connection's state.
pub(super) async fn run_session(
    state: Arc<GatewayState>,
    session: Session,
    mut shutdown: watch::Receiver<bool>,
) {
    let Session {
        mut ws,
        device_id,
        agent_version,
        protocol_version: version,
        tenant_id,
        tenant,
        peer,
        log_size,
    } = session;
    let now = now_millis();
    if let Err(error) = Box::pin(state.store.device_seen(&device_id, now, &agent_version)).await {
        warn!(%device_id, %error, "Cannot record device as seen.");
    }
    let registration =
        state
            .presence
            .register(&device_id, &tenant_id, &tenant, version, rfc3339(now));
    // Trust statements and approved jobs waiting for this device.
    registration.work.notify_one();
    let mut live = Live {
        device_id,
        tenant_id,
        version,
        peer,
        log_size,
        sent: HashSet::new(),
        busy_returned: false,
        stale_answers: 0,
        check_reports: super::rate::Bucket::new(CHECK_REPORT_BURST, CHECK_REPORTS_PER_MINUTE, now),
        check_flood_logged: false,
        output_pieces: super::rate::Bucket::new(OUTPUT_PIECE_BURST, OUTPUT_PIECES_PER_MINUTE, now),
        output_flood_logged: false,
        cancels_sent: HashSet::new(),
        script_requests: super::rate::Bucket::new(
            SCRIPT_REQUEST_BURST,
            SCRIPT_REQUESTS_PER_MINUTE,
            now,
        ),
    };
    // Remote shells (RFD 0015): what the relay sends this agent, from
    // protocol version 5 on.
    let relay = state.presence.shells().clone();
    let mut shell_frames =
        (version >= 5).then(|| relay.attach_agent(&live.device_id, registration.connection));
    let silence = state.heartbeat * 3;
    // When to look for work again unprompted: a mass action held for the
    // policy's delay becomes deliverable with no event to nudge it.
    let mut look_again = tokio::time::Instant::now() + FAR_FUTURE;
    let reason = loop {
        tokio::select! {
            _ = registration.work.notified() => {
                if let Err(error) = Box::pin(send_cancels(&state, &mut ws, version, &live.device_id, &mut live.cancels_sent)).await {
                    warn!(device_id = %live.device_id, %error, "Cannot send cancels to the agent.");
                    break "transport error";
                }
                match Box::pin(send_work(&state, &mut ws, version, &live.device_id, &live.tenant_id, &mut live.log_size, &mut live.sent)).await {
                    Ok(wait) => look_again = tokio::time::Instant::now() + wait.unwrap_or(FAR_FUTURE),
                    Err(error) => {
                        warn!(device_id = %live.device_id, %error, "Cannot send work to the agent.");
                        break "transport error";
                    }
                }
                if let Err(error) = Box::pin(send_scheduled(&state, &mut ws, version, &live.device_id, &live.tenant_id, &mut live.log_size, &mut live.sent)).await {
                    warn!(device_id = %live.device_id, %error, "Cannot send scheduled runs to the agent.");
                    break "transport error";
                }
            }
            Some(frame) = next_shell_frame(&mut shell_frames) => {
                if let Err(reason) = send(&mut ws, version, &frame).await {
                    break reason;
                }
            }
            _ = tokio::time::sleep_until(look_again) => {
                look_again = tokio::time::Instant::now() + FAR_FUTURE;
                registration.work.notify_one();
            }
            next = tokio::time::timeout(silence, ws.next()) => {
                let bytes = match next {
                    Err(_) => break "silent for three heartbeat intervals",
                    // An agent closes this way when the server broke the
                    // protocol (a frame in another version, say): its reason shows why.
                    Ok(Some(Ok(Message::Close(Some(close))))) if close.code == CloseCode::Protocol => {
                        warn!(device_id = %live.device_id, peer = %live.peer, reason = %close.reason, "The agent closed its connection: it says the server broke the protocol.");
                        break "closed by agent: protocol error";
                    }
                    Ok(None) | Ok(Some(Ok(Message::Close(_)))) => break "closed by agent",
                    Ok(Some(Err(_))) => break "transport error",
                    Ok(Some(Ok(Message::Binary(bytes)))) => bytes,
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                    Ok(Some(Ok(_))) => {
                        let _ = send(&mut ws, version, &refused(RefusalCode::Malformed, "expected a binary frame")).await;
                        break "text frame";
                    }
                };
                if let ControlFlow::Break(reason) = Box::pin(handle_frame(&state, &mut live, &mut ws, &registration.work, &bytes)).await {
                    break reason;
                }
            }
            _ = registration.kicked.notified() => break "replaced by a newer connection",
            _ = shutdown.changed() => break "server shutting down",
        }
    };
    let _ = ws.close(None).await;
    if shell_frames.is_some() {
        relay.detach_agent(&live.device_id, registration.connection);
    }
    let now = now_millis();
    if let Err(error) = Box::pin(
        state
            .store
            .device_seen(&live.device_id, now, &agent_version),
    )
    .await
    {
        warn!(device_id = %live.device_id, %error, "Cannot record device as seen.");
    }
    state
        .presence
        .unregister(&registration, &tenant, rfc3339(now));
    info!(device_id = %live.device_id, peer = %live.peer, reason, "Agent disconnected.");
}

/// Handles one frame from the agent: records it, acknowledges what was
/// stored; `Break` with the reason when the session must end. Boxed by the
/// caller, so its state (decoded messages, storage and send futures) exists
/// only while a frame is handled, not in every idle connection.
async fn handle_frame(
    state: &GatewayState,
    live: &mut Live,
    ws: &mut Ws,
    work: &tokio::sync::Notify,
    bytes: &[u8],
) -> ControlFlow<&'static str> {
    match decode_agent_frame(bytes, &state.limits).and_then(|f| f.in_version(live.version)) {
        // Last-seen times of connected devices are written in
        // batches ([`super::record_connected`]), not per heartbeat.
        Ok(AgentMessage::Heartbeat(_)) => {}
        Ok(AgentMessage::Inventory(report)) => {
            let seq = report.seq;
            match Box::pin(crate::alerts::store_inventory(
                &state.store,
                &live.device_id,
                &live.tenant_id,
                report.full,
                report.inventory,
            ))
            .await
            {
                Ok(()) => {
                    let ack = ServerMessage::Ack(Ack { seq });
                    if let Err(reason) = send(ws, live.version, &ack).await {
                        return ControlFlow::Break(reason);
                    }
                }
                // Not acknowledged: the agent sends it again after reconnecting.
                Err(error) => warn!(device_id = %live.device_id, %error, "Cannot store inventory."),
            }
        }
        Ok(AgentMessage::JobResult(result)) => {
            let job_id = result.job_id;
            let id = hex::encode(job_id);
            if let JobOutcome::Refused(r) = &result.outcome
                && r.code == AgentRefusalCode::LogHeadStale
            {
                // Not an answer: this session's idea of the
                // agent's head was wrong. Prove from the size it
                // holds, and send again now (a bounded number of
                // times: an agent that keeps answering this is
                // not helped by more).
                warn!(device_id = %live.device_id, job = %id, believed = ?live.log_size, held = ?r.log_size, "The agent holds another tree head than this connection assumed; the job will be sent again with a proof from it.");
                live.log_size = r.log_size;
                live.sent.remove(&id);
                live.stale_answers += 1;
                if live.stale_answers <= MAX_STALE_ANSWERS {
                    work.notify_one();
                }
                let ack = ServerMessage::ResultAck(ResultAck { job_id });
                if let Err(reason) = send(ws, live.version, &ack).await {
                    return ControlFlow::Break(reason);
                }
                return ControlFlow::Continue(());
            }
            if matches!(&result.outcome, JobOutcome::Refused(r) if r.code == AgentRefusalCode::AgentBusy)
            {
                // Not an answer: sent again after the next one.
                info!(device_id = %live.device_id, job = %id, "The agent's queue is full; the job will be sent again.");
                live.sent.remove(&id);
                live.busy_returned = true;
                let ack = ServerMessage::ResultAck(ResultAck { job_id });
                if let Err(reason) = send(ws, live.version, &ack).await {
                    return ControlFlow::Break(reason);
                }
                return ControlFlow::Continue(());
            }
            match Box::pin(record_result(
                state,
                &live.device_id,
                &live.tenant_id,
                result,
            ))
            .await
            {
                Ok(()) => {
                    live.sent.remove(&id);
                    // A slot is free: what was refused as busy goes now.
                    if std::mem::take(&mut live.busy_returned) {
                        work.notify_one();
                    }
                    let ack = ServerMessage::ResultAck(ResultAck { job_id });
                    if let Err(reason) = send(ws, live.version, &ack).await {
                        return ControlFlow::Break(reason);
                    }
                }
                // Not acknowledged: the agent sends it again after reconnecting.
                Err(error) => {
                    warn!(device_id = %live.device_id, %error, "Cannot store a job result.")
                }
            }
        }
        Ok(AgentMessage::TrustRefused(refusal)) => {
            Box::pin(record_trust_refusal(
                state,
                &live.device_id,
                &live.tenant_id,
                refusal,
            ))
            .await;
        }
        Ok(AgentMessage::Checks(report)) => {
            // Over its rate: dropped, not acknowledged; the
            // agent sends every state again later.
            if !live.check_reports.take(now_millis()) {
                if !std::mem::replace(&mut live.check_flood_logged, true) {
                    warn!(device_id = %live.device_id, "The agent sends check reports faster than {CHECK_REPORTS_PER_MINUTE} a minute; dropping the excess.");
                }
                return ControlFlow::Continue(());
            }
            let seq = report.seq;
            match Box::pin(crate::alerts::checks::record(
                &state.store,
                &state.alert_nudge,
                &live.device_id,
                &live.tenant_id,
                &report,
            ))
            .await
            {
                Ok(()) => {
                    let ack = ServerMessage::Ack(Ack { seq });
                    if let Err(reason) = send(ws, live.version, &ack).await {
                        return ControlFlow::Break(reason);
                    }
                }
                // Not acknowledged: the agent sends every state again.
                Err(error) => {
                    warn!(device_id = %live.device_id, error = %format!("{error:#}"), "Cannot store check states.")
                }
            }
        }
        Ok(AgentMessage::JobStarted(started)) => {
            let job_id = hex::encode(started.job_id);
            let at = i64::try_from(started.started_at_ms).unwrap_or(i64::MAX);
            match Box::pin(state.store.mark_running(&job_id, &live.device_id, at)).await {
                Ok(true) => {
                    info!(device_id = %live.device_id, job = %job_id, "The agent started a job.")
                }
                Ok(false) => {}
                Err(error) => {
                    warn!(device_id = %live.device_id, %error, "Cannot record a job's start.")
                }
            }
        }
        Ok(AgentMessage::JobOutput(piece)) => {
            // Over its rate: dropped; the result stays the record.
            if !live.output_pieces.take(now_millis()) {
                if !std::mem::replace(&mut live.output_flood_logged, true) {
                    warn!(device_id = %live.device_id, "The agent sends live output faster than {OUTPUT_PIECES_PER_MINUTE} pieces a minute; dropping the excess.");
                }
                return ControlFlow::Continue(());
            }
            let job_id = hex::encode(piece.job_id);
            match Box::pin(state.store.append_output(
                &job_id,
                &live.device_id,
                piece.seq,
                piece.stream.as_str(),
                &piece.data,
                piece.skipped,
                state.limits.max_live_output_bytes,
                now_millis(),
            ))
            .await
            {
                Ok(_) => {}
                // Not a job it runs now (late, stray or forged): nothing to keep.
                Err(StoreError::NotFound) => {}
                Err(error) => {
                    warn!(device_id = %live.device_id, %error, "Cannot store live output.")
                }
            }
        }
        Ok(AgentMessage::CheckScriptWanted(wanted)) => {
            // A courier only: the agent runs what hashes to its policy's
            // value, whatever is sent. Rate-limited like reports.
            if !live.script_requests.take(now_millis()) {
                return ControlFlow::Continue(());
            }
            let content = match Box::pin(
                state
                    .store
                    .script_content_by_sha256(&hex::encode(wanted.sha256)),
            )
            .await
            {
                Ok(content) => content.map(String::into_bytes),
                Err(error) => {
                    warn!(device_id = %live.device_id, %error, "Cannot read a check script.");
                    None
                }
            };
            let answer = ServerMessage::CheckScript(CheckScript {
                sha256: wanted.sha256,
                content,
            });
            if let Err(reason) = send(ws, live.version, &answer).await {
                return ControlFlow::Break(reason);
            }
        }
        // Remote shells (RFD 0015): how a session ended and its recording;
        // the device's answer and sealed frames go to the session's client
        // (only a session of this device's).
        Ok(AgentMessage::ShellClosed(closed)) => {
            super::shells::record_closed(state, &live.device_id, &live.tenant_id, &closed).await;
            let session_id = closed.session_id;
            state.presence.shells().from_agent(
                &live.device_id,
                session_id,
                AgentMessage::ShellClosed(closed),
            );
        }
        Ok(AgentMessage::ShellRecording(piece)) => {
            super::shells::record_piece(state, &live.device_id, &piece).await;
        }
        Ok(AgentMessage::ShellOpened(opened)) => {
            let session_id = opened.session_id;
            state.presence.shells().from_agent(
                &live.device_id,
                session_id,
                AgentMessage::ShellOpened(opened),
            );
        }
        Ok(AgentMessage::ShellData(data)) => {
            let session_id = data.session_id;
            state.presence.shells().from_agent(
                &live.device_id,
                session_id,
                AgentMessage::ShellData(data),
            );
        }
        Ok(AgentMessage::TrustStatus(status)) => {
            if let Err(error) = Box::pin(record_trust_status(state, &live.device_id, status)).await
            {
                warn!(device_id = %live.device_id, %error, "Cannot record the agent's trust status.");
            }
        }
        Ok(_) => {
            let _ = send(
                ws,
                live.version,
                &refused(RefusalCode::UnexpectedMessage, "already authenticated"),
            )
            .await;
            return ControlFlow::Break("unexpected message");
        }
        Err(error) => {
            warn!(device_id = %live.device_id, peer = %live.peer, %error, "Malformed frame from agent; closing its connection.");
            let code = match error {
                ProtocolError::UnsupportedVersion { .. }
                | ProtocolError::VersionSwitched { .. }
                | ProtocolError::NotInVersion { .. } => RefusalCode::UnsupportedVersion,
                _ => RefusalCode::Malformed,
            };
            let _ = send(ws, live.version, &refused(code, &error.to_string())).await;
            return ControlFlow::Break("malformed frame");
        }
    }
    ControlFlow::Continue(())
}

async fn record_result(
    state: &GatewayState,
    device_id: &str,
    tenant_id: &str,
    result: JobResult,
) -> anyhow::Result<()> {
    let job_id = hex::encode(result.job_id);
    let to_ms = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
    // The transparency log did not vouch for the job (withheld, forked,
    // truncated or rewritten): a security alert, not a failed job.
    let log_alarm = matches!(&result.outcome, JobOutcome::Refused(r) if r.code.is_log_alarm());
    let (outcome, detail) = match result.outcome {
        JobOutcome::Ran(run) => {
            let detail = format!(
                "{job_id} on {device_id}: {}{} output sha256 {}",
                run.exit_code.map_or_else(
                    || "no exit status (killed)".to_owned(),
                    |c| format!("exit {c}")
                ),
                if run.timed_out { " (timed out)" } else { "" },
                hex::encode(run.output_sha256)
            );
            (
                bulwark_store::TargetOutcome::Ran {
                    exit_code: run.exit_code.map(i64::from),
                    timed_out: run.timed_out,
                    stdout: run.stdout,
                    stderr: run.stderr,
                    output_sha256: run.output_sha256,
                    started_at: to_ms(run.started_at_ms),
                    finished_at: to_ms(run.finished_at_ms),
                    patches: run.patches,
                },
                detail,
            )
        }
        JobOutcome::Refused(refused) => {
            warn!(%device_id, job = %job_id, code = %refused.code, reason = %refused.reason, "Agent refused a job.");
            let detail = format!(
                "{job_id} on {device_id}: refused ({}) {}",
                refused.code, refused.reason
            );
            (
                bulwark_store::TargetOutcome::Refused {
                    code: refused.code.as_str().to_owned(),
                    reason: refused.reason,
                },
                detail,
            )
        }
    };
    let action = match outcome {
        bulwark_store::TargetOutcome::Ran { .. } => AuditAction::JobResult,
        bulwark_store::TargetOutcome::Refused { .. } => AuditAction::JobRefusedByAgent,
    };
    // The device acts; the job is what it acted on. The result, its audit
    // event and, for a log refusal, the security alert commit together.
    let actor = bulwark_protocol::alarm_record::agent_actor(device_id);
    let now = now_millis();
    let mut events = vec![
        bulwark_store::NewAuditEvent::new(now, &actor, action, &job_id)
            .in_tenant(Some(tenant_id))
            .with_detail(detail.clone()),
    ];
    if log_alarm {
        warn!(%device_id, job = %job_id, %detail, "SECURITY ALERT: an agent refused a job because the transparency log does not vouch for it.");
        events.push(
            bulwark_store::NewAuditEvent::new(now, &actor, AuditAction::AlertLogRefused, &job_id)
                .in_tenant(Some(tenant_id))
                .with_detail(detail),
        );
    }
    match state
        .store
        .record_result(&job_id, device_id, &outcome, now, &events)
        .await
    {
        Ok(_) => {}
        // A different second report for the same job: the first one stands,
        // and the agent must still drop it from its spool.
        Err(StoreError::Conflict(what)) => {
            warn!(%device_id, job = %job_id, what, "A second, different result was ignored.");
        }
        // Not a target of this job (a forged or stray report): nothing to keep.
        Err(StoreError::NotFound) => {
            warn!(%device_id, job = %job_id, "A result for a job this device was not sent was ignored.");
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

async fn record_trust_refusal(
    state: &GatewayState,
    device_id: &str,
    tenant_id: &str,
    refusal: TrustRefused,
) {
    warn!(%device_id, kind = %refusal.kind, version = refusal.version, code = %refusal.code, reason = %refusal.reason,
        "SECURITY ALERT: an agent refused a trust statement.");
    let detail = format!(
        "{device_id} refused {} v{} ({}): {}",
        refusal.kind, refusal.version, refusal.code, refusal.reason
    );
    // The agent records the alarm under the same actor and target
    // (`bulwark_protocol::alarm_record`): an auditor holds the two together.
    let actor = bulwark_protocol::alarm_record::agent_actor(device_id);
    let target = bulwark_protocol::alarm_record::trust_subject(&refusal.kind, refusal.version);
    let event = bulwark_store::NewAuditEvent::new(
        now_millis(),
        &actor,
        AuditAction::AlertTrustRefused,
        &target,
    )
    .in_tenant(Some(tenant_id))
    .with_detail(detail);
    state.store.record_event(event).await;
}

async fn record_trust_status(
    state: &GatewayState,
    device_id: &str,
    status: TrustStatus,
) -> anyhow::Result<()> {
    state
        .store
        .set_device_trust(
            device_id,
            status.root_version.unwrap_or_default(),
            status.policy_version.unwrap_or_default(),
            status.freeze_sequence,
            status.frozen,
            now_millis(),
        )
        .await?;
    Ok(())
}

fn refused(code: RefusalCode, message: &str) -> ServerMessage {
    ServerMessage::Refused(Refused {
        code,
        message: message.to_owned(),
    })
}

/// Sends `message` in the session's protocol version; on failure, why the
/// session ends.
async fn send(ws: &mut Ws, version: u16, message: &ServerMessage) -> Result<(), &'static str> {
    let frame = encode_server_frame(version, message).map_err(|error| {
        warn!(%error, "A message the agent's protocol version does not have was not sent.");
        "message not in the agent's protocol version"
    })?;
    ws.send(Message::Binary(frame.into()))
        .await
        .map_err(|_| "transport error")
}

/// The relay's next frame for this agent; never, for a connection without shells.
async fn next_shell_frame(
    frames: &mut Option<tokio::sync::mpsc::Receiver<crate::shell_relay::ToAgent>>,
) -> Option<crate::shell_relay::ToAgent> {
    match frames {
        Some(frames) => frames.recv().await,
        None => std::future::pending().await,
    }
}
