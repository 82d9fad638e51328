//! The agent gateway: TLS 1.3, then one WebSocket per agent, authenticated by
//! a challenge signed with the device key and bound to the TLS session.
//!
//! A connection goes through two phases. The handshake (TLS, WebSocket
//! upgrade, challenge, enrol or hello) runs as its own boxed future under a
//! deadline, so its buffers are gone before the long-lived phase starts and
//! each idle connection costs only its session loop. Every frame passes
//! through [`bulwark_protocol::decode_agent_frame`] (size cap, canonical
//! encoding, field limits); the first bad frame ends that connection and no
//! other.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulwark_protocol::envelope::{
    CHANNEL_BINDING_LABEL, DeviceStatement, EnrollStatement, HelloStatement,
};
use bulwark_protocol::message::{
    Ack, AgentMessage, ByteBuf, Challenge, DeviceId, Enroll, Enrolled, Hello, JOB_BUSY, Job,
    JobOutcome, JobResult, LOG_HEAD_STALE, LogProof, RefusalCode, Refused, ResultAck,
    ServerMessage, Trust, TrustRefused, TrustStatus, Welcome,
};
use bulwark_protocol::{Limits, decode_agent_frame, encode_server_frame};
use bulwark_store::{NewDevice, Store, StoreError};
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use crate::presence::Presence;
use crate::{now_millis, rfc3339};

/// Time allowed for TLS, the upgrade and authentication together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many [`LOG_HEAD_STALE`] answers one connection resends at once;
/// past that the jobs wait for the next connection's `Hello`.
const MAX_STALE_ANSWERS: u32 = 64;

pub struct GatewayState {
    pub store: Store,
    pub presence: Presence,
    pub acceptor: TlsAcceptor,
    pub limits: Limits,
    pub heartbeat: Duration,
    pub slots: Arc<Semaphore>,
    /// Signs the tree heads that jobs are delivered under.
    pub log: Arc<crate::checkpoints::LogSigner>,
}

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// An authenticated agent connection.
struct Session {
    ws: Ws,
    device_id: String,
    agent_version: String,
    tenant_id: String,
    tenant: String,
    peer: SocketAddr,
    /// The size of the last tree head of its tenant's log the agent accepted.
    log_size: Option<u64>,
}

/// Why a connection ends before it is authenticated.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("TLS or WebSocket handshake failed: {0}")]
    Transport(String),
    #[error("agent refused: {1}")]
    Refused(RefusalCode, String),
}

fn ws_config(limits: &Limits) -> WebSocketConfig {
    // A small read buffer: tungstenite's default 128 KiB stays allocated for
    // the life of every idle connection.
    WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(0)
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes))
}

/// Accepts agent connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<GatewayState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        warn!(%error, "Agent gateway accept failed.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = state.slots.clone().try_acquire_owned() else {
                    warn!(%peer, "Agent connection refused: connection limit reached.");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let state = state.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    connection(state, tcp, peer, shutdown).await;
                    drop(permit);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(
    state: Arc<GatewayState>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let handshake = Box::pin(tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(state.clone(), tcp, peer),
    ));
    let session = match handshake.await {
        Ok(Ok(Some(session))) => session,
        Ok(Ok(None)) => return, // enrolment done
        Ok(Err(HandshakeError::Transport(error))) => {
            debug!(%peer, %error, "Agent handshake failed.");
            return;
        }
        Ok(Err(HandshakeError::Refused(code, reason))) => {
            warn!(%peer, ?code, %reason, "Agent refused.");
            return;
        }
        Err(_) => {
            debug!(%peer, "Agent handshake timed out.");
            return;
        }
    };
    run_session(state, session, shutdown).await;
}

async fn send(ws: &mut Ws, message: &ServerMessage) -> Result<(), HandshakeError> {
    ws.send(Message::Binary(encode_server_frame(message).into()))
        .await
        .map_err(|e| HandshakeError::Transport(e.to_string()))
}

async fn refuse(ws: &mut Ws, code: RefusalCode, message: &str) -> HandshakeError {
    let _ = send(
        ws,
        &ServerMessage::Refused(Refused {
            code,
            message: message.to_owned(),
        }),
    )
    .await;
    let _ = ws.close(None).await;
    HandshakeError::Refused(code, message.to_owned())
}

async fn handshake(
    state: Arc<GatewayState>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<Option<Session>, HandshakeError> {
    let tls = state
        .acceptor
        .accept(tcp)
        .await
        .map_err(|e| HandshakeError::Transport(e.to_string()))?;
    let mut channel_binding = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut channel_binding, CHANNEL_BINDING_LABEL, None)
        .map_err(|e| HandshakeError::Transport(e.to_string()))?;
    let mut ws = tokio_tungstenite::accept_async_with_config(tls, Some(ws_config(&state.limits)))
        .await
        .map_err(|e| HandshakeError::Transport(e.to_string()))?;

    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    send(
        &mut ws,
        &ServerMessage::Challenge(Challenge {
            nonce,
            server_version: crate::VERSION.into(),
        }),
    )
    .await?;

    let first = match ws.next().await {
        Some(Ok(Message::Binary(bytes))) => decode_agent_frame(&bytes, &state.limits),
        Some(Ok(_)) => {
            return Err(refuse(&mut ws, RefusalCode::Malformed, "expected a binary frame").await);
        }
        Some(Err(e)) => return Err(HandshakeError::Transport(e.to_string())),
        None => {
            return Err(HandshakeError::Transport(
                "closed before authenticating".into(),
            ));
        }
    };
    match first {
        Ok(AgentMessage::Enroll(enroll)) => {
            let result = enroll_device(&state, enroll, nonce, channel_binding, peer).await;
            match result {
                Ok(enrolled) => {
                    send(&mut ws, &ServerMessage::Enrolled(enrolled)).await?;
                    let _ = ws.close(None).await;
                    Ok(None)
                }
                Err((code, reason)) => Err(refuse(&mut ws, code, reason).await),
            }
        }
        Ok(AgentMessage::Hello(hello)) => {
            match authenticate(&state, &hello, nonce, channel_binding).await {
                Ok((tenant_id, tenant)) => {
                    let welcome = Welcome {
                        device_id: hello.device_id.clone(),
                        tenant: tenant.clone(),
                        heartbeat_secs: u32::try_from(state.heartbeat.as_secs()).unwrap_or(30),
                    };
                    send(&mut ws, &ServerMessage::Welcome(welcome)).await?;
                    info!(%peer, device_id = %hello.device_id, agent_version = %hello.agent_version, "Agent connected.");
                    Ok(Some(Session {
                        ws,
                        device_id: hello.device_id.to_string(),
                        agent_version: hello.agent_version.clone(),
                        tenant_id,
                        tenant,
                        peer,
                        log_size: hello.log_size,
                    }))
                }
                Err((code, reason)) => Err(refuse(&mut ws, code, reason).await),
            }
        }
        Ok(_) => Err(refuse(
            &mut ws,
            RefusalCode::UnexpectedMessage,
            "expected enroll or hello",
        )
        .await),
        Err(bulwark_protocol::ProtocolError::UnsupportedVersion { .. }) => Err(refuse(
            &mut ws,
            RefusalCode::UnsupportedVersion,
            "unsupported protocol version",
        )
        .await),
        Err(e) => Err(refuse(&mut ws, RefusalCode::Malformed, &e.to_string()).await),
    }
}

async fn enroll_device(
    state: &GatewayState,
    enroll: Enroll,
    nonce: [u8; 32],
    channel_binding: [u8; 32],
    peer: SocketAddr,
) -> Result<Enrolled, (RefusalCode, &'static str)> {
    let token_hash = bulwark_protocol::token::hash_secret(&enroll.token_secret);
    let statement = EnrollStatement {
        nonce,
        channel_binding,
        device_key: enroll.device_key,
        token_hash,
    };
    // 1. The device holds the key it registers, on this very TLS connection.
    statement
        .verify(&enroll.device_key, &enroll.signature)
        .map_err(|_| {
            (
                RefusalCode::BadSignature,
                "enrolment signature does not verify",
            )
        })?;
    // 2. The token is known, unused and unexpired; it is consumed in the same
    //    transaction that creates the device.
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let device_id = DeviceId::from_random_bytes(id);
    let new = NewDevice {
        id: device_id.to_string(),
        public_key: enroll.device_key,
        hostname: enroll.hostname.clone(),
        agent_version: enroll.agent_version.clone(),
    };
    match state
        .store
        .enroll_device(token_hash, new, now_millis())
        .await
    {
        Ok(device) => {
            info!(%peer, %device_id, tenant = %device.tenant_name, hostname = %enroll.hostname, "Device enrolled.");
            Ok(Enrolled {
                device_id,
                tenant: device.tenant_name,
                log_key: state.log.vkey(),
            })
        }
        Err(StoreError::NotFound) => Err((
            RefusalCode::BadToken,
            "the enrolment token is unknown, already used or expired",
        )),
        Err(StoreError::Conflict(_)) => Err((
            RefusalCode::AlreadyEnrolled,
            "this device key is already enrolled",
        )),
        Err(error) => {
            warn!(%error, "Enrolment failed in storage.");
            Err((
                RefusalCode::Unavailable,
                "the server cannot enrol devices right now",
            ))
        }
    }
}

async fn authenticate(
    state: &GatewayState,
    hello: &Hello,
    nonce: [u8; 32],
    channel_binding: [u8; 32],
) -> Result<(String, String), (RefusalCode, &'static str)> {
    let unknown = (RefusalCode::UnknownDevice, "unknown device");
    let found = match state
        .store
        .device_public_key(hello.device_id.as_str())
        .await
    {
        Ok(Some(found)) => found,
        Ok(None) => return Err(unknown),
        Err(error) => {
            warn!(%error, "Device lookup failed.");
            return Err((
                RefusalCode::Unavailable,
                "the server cannot authenticate devices right now",
            ));
        }
    };
    let key: [u8; 32] = found.public_key.try_into().map_err(|_| unknown)?;
    let statement = HelloStatement {
        nonce,
        channel_binding,
        device_id: hello.device_id.clone(),
    };
    statement.verify(&key, &hello.signature).map_err(|_| {
        (
            RefusalCode::BadSignature,
            "device signature does not verify",
        )
    })?;
    Ok((found.tenant_id, found.tenant_name))
}

// Storage calls inside the session are boxed: their futures are large
// (sqlx) and would otherwise be part of every idle connection's state.
async fn run_session(
    state: Arc<GatewayState>,
    session: Session,
    mut shutdown: watch::Receiver<bool>,
) {
    let Session {
        mut ws,
        device_id,
        agent_version,
        tenant_id,
        tenant,
        peer,
        mut log_size,
    } = session;
    let now = now_millis();
    if let Err(error) = Box::pin(state.store.device_seen(&device_id, now, &agent_version)).await {
        warn!(%device_id, %error, "Cannot record device as seen.");
    }
    let registration = state
        .presence
        .register(&device_id, &tenant_id, &tenant, rfc3339(now));
    // Trust statements and approved jobs waiting for this device.
    registration.work.notify_one();
    // Jobs sent in this session and not answered yet: each is sent once per
    // session (a nudge sends only what is new), again only after the agent
    // said it was too busy to read it.
    let mut sent: HashSet<String> = HashSet::new();
    let mut busy_returned = false;
    let mut stale_answers = 0u32;
    let silence = state.heartbeat * 3;
    let reason = loop {
        tokio::select! {
            _ = registration.work.notified() => {
                if let Err(error) = Box::pin(send_work(&state, &mut ws, &device_id, &tenant_id, &mut log_size, &mut sent)).await {
                    warn!(%device_id, %error, "Cannot send work to the agent.");
                    break "transport error";
                }
            }
            next = tokio::time::timeout(silence, ws.next()) => {
                let bytes = match next {
                    Err(_) => break "silent for three heartbeat intervals",
                    Ok(None) | Ok(Some(Ok(Message::Close(_)))) => break "closed by agent",
                    Ok(Some(Err(_))) => break "transport error",
                    Ok(Some(Ok(Message::Binary(bytes)))) => bytes,
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                    Ok(Some(Ok(_))) => {
                        let _ = ws.send(refused(RefusalCode::Malformed, "expected a binary frame")).await;
                        break "text frame";
                    }
                };
                match decode_agent_frame(&bytes, &state.limits) {
                    Ok(AgentMessage::Heartbeat(_)) => {
                        if let Err(error) = Box::pin(state.store.device_seen(&device_id, now_millis(), &agent_version)).await {
                            warn!(%device_id, %error, "Cannot record heartbeat.");
                        }
                    }
                    Ok(AgentMessage::Inventory(report)) => {
                        let seq = report.seq;
                        match Box::pin(state.store.update_inventory(&device_id, report.full, report.inventory, now_millis())).await {
                            Ok(_) => {
                                let ack = ServerMessage::Ack(Ack { seq });
                                if ws.send(Message::Binary(encode_server_frame(&ack).into())).await.is_err() {
                                    break "transport error";
                                }
                            }
                            // Not acknowledged: the agent sends it again after reconnecting.
                            Err(error) => warn!(%device_id, %error, "Cannot store inventory."),
                        }
                    }
                    Ok(AgentMessage::JobResult(result)) => {
                        let job_id = result.job_id;
                        let id = hex::encode(job_id);
                        if let JobOutcome::Refused(r) = &result.outcome
                            && r.code == LOG_HEAD_STALE
                        {
                            // Not an answer: this session's idea of the
                            // agent's head was wrong. Prove from the size it
                            // holds, and send again now (a bounded number of
                            // times: an agent that keeps answering this is
                            // not helped by more).
                            warn!(%device_id, job = %id, believed = ?log_size, held = ?r.log_size, "The agent holds another tree head than this connection assumed; the job will be sent again with a proof from it.");
                            log_size = r.log_size;
                            sent.remove(&id);
                            stale_answers += 1;
                            if stale_answers <= MAX_STALE_ANSWERS {
                                registration.work.notify_one();
                            }
                            let ack = ServerMessage::ResultAck(ResultAck { job_id });
                            if ws.send(Message::Binary(encode_server_frame(&ack).into())).await.is_err() {
                                break "transport error";
                            }
                            continue;
                        }
                        if matches!(&result.outcome, JobOutcome::Refused(r) if r.code == JOB_BUSY) {
                            // Not an answer: sent again after the next one.
                            info!(%device_id, job = %id, "The agent's queue is full; the job will be sent again.");
                            sent.remove(&id);
                            busy_returned = true;
                            let ack = ServerMessage::ResultAck(ResultAck { job_id });
                            if ws.send(Message::Binary(encode_server_frame(&ack).into())).await.is_err() {
                                break "transport error";
                            }
                            continue;
                        }
                        match Box::pin(record_result(&state, &device_id, &tenant_id, result)).await {
                            Ok(()) => {
                                sent.remove(&id);
                                // A slot is free: what was refused as busy goes now.
                                if std::mem::take(&mut busy_returned) {
                                    registration.work.notify_one();
                                }
                                let ack = ServerMessage::ResultAck(ResultAck { job_id });
                                if ws.send(Message::Binary(encode_server_frame(&ack).into())).await.is_err() {
                                    break "transport error";
                                }
                            }
                            // Not acknowledged: the agent sends it again after reconnecting.
                            Err(error) => warn!(%device_id, %error, "Cannot store a job result."),
                        }
                    }
                    Ok(AgentMessage::TrustRefused(refusal)) => {
                        Box::pin(record_trust_refusal(&state, &device_id, &tenant_id, refusal)).await;
                    }
                    Ok(AgentMessage::TrustStatus(status)) => {
                        if let Err(error) = Box::pin(record_trust_status(&state, &device_id, status)).await {
                            warn!(%device_id, %error, "Cannot record the agent's trust status.");
                        }
                    }
                    Ok(_) => {
                        let _ = ws.send(refused(RefusalCode::UnexpectedMessage, "already authenticated")).await;
                        break "unexpected message";
                    }
                    Err(error) => {
                        warn!(%device_id, %peer, %error, "Malformed frame from agent; closing its connection.");
                        let _ = ws.send(refused(RefusalCode::Malformed, &error.to_string())).await;
                        break "malformed frame";
                    }
                }
            }
            _ = registration.kicked.notified() => break "replaced by a newer connection",
            _ = shutdown.changed() => break "server shutting down",
        }
    };
    let _ = ws.close(None).await;
    let now = now_millis();
    if let Err(error) = Box::pin(state.store.device_seen(&device_id, now, &agent_version)).await {
        warn!(%device_id, %error, "Cannot record device as seen.");
    }
    state
        .presence
        .unregister(&registration, &tenant, rfc3339(now));
    info!(%device_id, %peer, reason, "Agent disconnected.");
}

/// Sends the tenant's trust statements, then every approved job waiting for
/// this device, each with its proof of being in the tenant's log. The agent
/// ignores what it already holds and refuses replays, so sending again after
/// a reconnect is safe. `log_size` is the size of the tree head the agent
/// holds; it follows what this connection sent.
async fn send_work(
    state: &GatewayState,
    ws: &mut Ws,
    device_id: &str,
    tenant_id: &str,
    log_size: &mut Option<u64>,
    sent: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let set = state.store.trust_for_device_tenant(tenant_id).await?;
    if !set.roots.is_empty() {
        let trust = ServerMessage::Trust(Trust {
            roots: set.roots.into_iter().map(ByteBuf::from).collect(),
            policy: set.policy.map(|(_, bytes)| bytes),
            freeze: set.freeze.map(|(_, bytes)| bytes),
        });
        ws.send(Message::Binary(encode_server_frame(&trust).into()))
            .await?;
    }
    let now = now_millis();
    let mut jobs = state
        .store
        .deliverable_jobs_for_device(device_id, now)
        .await?;
    jobs.retain(|(job, _)| !sent.contains(&job.id));
    // One tree head for the batch: it covers every job's entry and, if it
    // can, the head the agent holds.
    let needed = jobs
        .iter()
        .filter_map(|(job, _)| job.release_log_idx.map(|idx| idx + 1))
        .chain(*log_size)
        .max();
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
    for (job, _) in jobs {
        let log = match (job.release_log_idx, &checkpoint) {
            (Some(idx), Some(checkpoint)) => {
                Some(job_log_proof(state, tenant_id, idx, checkpoint, *log_size).await?)
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
        ws.send(Message::Binary(encode_server_frame(&message).into()))
            .await?;
        sent.insert(job.id.clone());
        // The first delivery is recorded, with its audit event, at once.
        let delivered =
            bulwark_store::NewAuditEvent::new(now_millis(), "server", "job.delivered", &job.id)
                .in_tenant(Some(tenant_id))
                .with_detail(format!("to {device_id}{entry}"));
        state
            .store
            .mark_delivered(&job.id, device_id, now_millis(), &[delivered])
            .await?;
        debug!(%device_id, job = %job.id, "Job delivered.");
    }
    Ok(())
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
    let leaf = state
        .store
        .log_entries(tenant_id, idx, 1)
        .await?
        .into_iter()
        .next()
        .map(|entry| entry.leaf)
        .unwrap_or_default();
    let inclusion = match state
        .store
        .inclusion_proof(tenant_id, idx, checkpoint.size)
        .await
    {
        Ok(proof) => proof,
        Err(StoreError::Invalid(_)) => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    let from = held.unwrap_or(0);
    let consistency = if from == 0 || from >= checkpoint.size {
        Vec::new()
    } else {
        match state
            .store
            .consistency_proof(tenant_id, from, checkpoint.size)
            .await
        {
            Ok(proof) => proof,
            Err(StoreError::Invalid(_)) => Vec::new(),
            Err(other) => return Err(other.into()),
        }
    };
    Ok(LogProof {
        leaf,
        index: idx,
        checkpoint: checkpoint.note.clone(),
        inclusion: inclusion.concat(),
        consistency_from: from,
        consistency: consistency.concat(),
    })
}

async fn record_result(
    state: &GatewayState,
    device_id: &str,
    tenant_id: &str,
    result: JobResult,
) -> anyhow::Result<()> {
    let job_id = hex::encode(result.job_id);
    let to_ms = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
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
                bulwark_store::JobOutcome::Ran {
                    exit_code: run.exit_code.map(i64::from),
                    timed_out: run.timed_out,
                    stdout: run.stdout,
                    stderr: run.stderr,
                    output_sha256: run.output_sha256,
                    started_at: to_ms(run.started_at_ms),
                    finished_at: to_ms(run.finished_at_ms),
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
                bulwark_store::JobOutcome::Refused {
                    code: refused.code,
                    reason: refused.reason,
                },
                detail,
            )
        }
    };
    let action = match outcome {
        bulwark_store::JobOutcome::Ran { .. } => "job.result",
        bulwark_store::JobOutcome::Refused { .. } => "job.refused_by_agent",
    };
    // The transparency log did not vouch for the job (withheld, forked,
    // truncated or rewritten): a security alert, not a failed job.
    let log_alarm = matches!(&outcome, bulwark_store::JobOutcome::Refused { code, .. } if bulwark_policy::is_log_alarm_code(code));
    // The device acts; the job is what it acted on. The result, its audit
    // event and, for a log refusal, the security alert commit together.
    let actor = format!("agent:{device_id}");
    let now = now_millis();
    let mut events = vec![
        bulwark_store::NewAuditEvent::new(now, &actor, action, &job_id)
            .in_tenant(Some(tenant_id))
            .with_detail(detail.clone()),
    ];
    if log_alarm {
        warn!(%device_id, job = %job_id, %detail, "SECURITY ALERT: an agent refused a job because the transparency log does not vouch for it.");
        events.push(
            bulwark_store::NewAuditEvent::new(now, &actor, "alert.log_refused", &job_id)
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
    let actor = format!("agent:{device_id}");
    let target = format!("{} v{}", refusal.kind, refusal.version);
    let event =
        bulwark_store::NewAuditEvent::new(now_millis(), &actor, "alert.trust_refused", &target)
            .in_tenant(Some(tenant_id))
            .with_detail(detail);
    crate::state::record_event(&state.store, event).await;
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

/// What one idle agent connection's task costs, before TLS and WebSocket buffers.
pub fn session_task_size(
    state: Arc<GatewayState>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> usize {
    std::mem::size_of_val(&connection(state, tcp, peer, shutdown))
}

fn refused(code: RefusalCode, message: &str) -> Message {
    Message::Binary(
        encode_server_frame(&ServerMessage::Refused(Refused {
            code,
            message: message.to_owned(),
        }))
        .into(),
    )
}
