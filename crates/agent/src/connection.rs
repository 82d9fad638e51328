//! The agent's side of the gateway protocol: connect (TLS with the pinned CA,
//! then WebSocket), answer the challenge, and keep the session.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bulwark_protocol::envelope::{
    CHANNEL_BINDING_LABEL, DeviceStatement, EnrollStatement, HelloStatement,
};
use bulwark_protocol::inventory::Inventory;
use bulwark_protocol::message::{
    AgentMessage, AgentRefusalCode, CheckScriptWanted, Enroll, Enrolled, Heartbeat, Hello,
    InventoryReport, RefusalCode, ServerMessage, ShellClosed, Welcome,
};
use bulwark_protocol::token::EnrollToken;
use bulwark_protocol::{
    Frame, Limits, PROTOCOL_VERSION, ProtocolError, decode_server_frame, encode_agent_frame,
};
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use sha2::Digest;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tracing::{debug, info, warn};

use crate::AGENT_VERSION;
use crate::checks::ChecksHandle;
use crate::inventory::Collector;
use crate::jobs::JobsHandle;
use crate::shell::Shells;

type Ws = WebSocketStream<TlsStream<TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the gateway is: parsed from `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
}

impl ServerAddress {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.trim().strip_prefix("https://").ok_or_else(|| {
            anyhow!(
                "the server URL must start with https:// (the agent gateway is TLS only): {url}"
            )
        })?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| anyhow!("bad IPv6 address in {url}"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("no host in the server URL {url}");
        }
        let port = match port {
            Some(p) => p.parse().with_context(|| format!("bad port in {url}"))?,
            None => 443,
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The server refused this agent; retrying may not help.
    #[error("the server refused this agent: {message} ({code:?})")]
    Refused { code: RefusalCode, message: String },
    #[error("{0:#}")]
    Transport(anyhow::Error),
}

impl From<anyhow::Error> for SessionError {
    fn from(e: anyhow::Error) -> Self {
        SessionError::Transport(e)
    }
}

fn ws_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        // What the server sends: a job to every target fits (issue 18);
        // each frame is then held to its version's cap when decoded.
        .max_message_size(Some(limits.max_server_frame_bytes))
        .max_frame_size(Some(limits.max_server_frame_bytes))
}

/// TLS (pinned CA), channel binding, WebSocket upgrade.
async fn connect(
    address: &ServerAddress,
    pin: [u8; 32],
    limits: &Limits,
) -> anyhow::Result<(Ws, [u8; 32])> {
    let config = crate::pinning::client_config(pin)?;
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((address.host.as_str(), address.port)),
    )
    .await
    .map_err(|_| anyhow!("timed out connecting to {}:{}", address.host, address.port))?
    .with_context(|| format!("cannot connect to {}:{}", address.host, address.port))?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from(address.host.clone())
        .with_context(|| format!("bad server name {}", address.host))?;
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| anyhow!("TLS handshake timed out"))?
        .context("TLS handshake with the server failed")?;
    let mut binding = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut binding, CHANNEL_BINDING_LABEL, None)?;
    let url = format!("wss://{}:{}/agent/v1", address.host, address.port);
    let (ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_with_config(url.as_str(), tls, Some(ws_config(limits))),
    )
    .await
    .map_err(|_| anyhow!("WebSocket upgrade timed out"))?
    .context("WebSocket upgrade failed")?;
    Ok((ws, binding))
}

/// Sends `message` in the connection's protocol `version`.
async fn send(ws: &mut Ws, version: u16, message: &AgentMessage) -> anyhow::Result<()> {
    let frame = encode_agent_frame(version, message)
        .with_context(|| format!("cannot send in protocol version {version}"))?;
    ws.send(Message::Binary(frame.into()))
        .await
        .context("cannot send to the server")
}

/// Closes a connection whose server broke the protocol, with a close frame
/// saying why (the server's log shows it), and says so.
async fn protocol_violation(ws: &mut Ws, error: &ProtocolError) -> SessionError {
    let reason = crate::text::clipped(&error.to_string(), 120);
    let close = CloseFrame {
        code: CloseCode::Protocol,
        reason: reason.into(),
    };
    let _ = ws.close(Some(close)).await;
    anyhow!("bad frame from server: {error}; connection closed").into()
}

/// The next frame, of any version this agent speaks; pings and pongs are
/// handled by the library.
async fn receive_frame(ws: &mut Ws, limits: &Limits) -> Result<Frame<ServerMessage>, SessionError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                return match decode_server_frame(&bytes, limits) {
                    Ok(frame) => Ok(frame),
                    Err(error) => Err(protocol_violation(ws, &error).await),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None => {
                return Err(anyhow!("the server closed the connection").into());
            }
            Some(Ok(_)) => return Err(anyhow!("unexpected text frame from server").into()),
            Some(Err(e)) => return Err(anyhow!("connection error: {e}").into()),
        }
    }
}

fn refused(message: ServerMessage) -> Result<ServerMessage, SessionError> {
    match message {
        ServerMessage::Refused(r) => Err(SessionError::Refused {
            code: r.code,
            message: r.message,
        }),
        message => Ok(message),
    }
}

/// The next protocol message, which must be in the connection's `version`:
/// a server that switches versions mid-session is refused.
async fn receive(
    ws: &mut Ws,
    version: u16,
    limits: &Limits,
) -> Result<ServerMessage, SessionError> {
    let frame = receive_frame(ws, limits).await?;
    match frame.in_version(version) {
        Ok(message) => refused(message),
        Err(error) => Err(protocol_violation(ws, &error).await),
    }
}

/// Connects, reads the challenge (in any version this agent speaks: it
/// comes before any negotiation) and sends the first frame, which `first`
/// makes from the nonce and the TLS channel binding, in the highest
/// protocol version this agent speaks (RFD 0010). The connection speaks
/// that version from then on, and the answer must be in it. One exception:
/// a server too old for that version refuses it `UnsupportedVersion` in the
/// newest version it speaks, and the agent tries again in that one on a new
/// connection (an upgrade may reach agents first). That can never go below
/// `MIN_PROTOCOL_VERSION` (no frame outside the range is read), and no
/// version checks less: signatures, policy, log proofs and what an agent
/// runs do not depend on it.
async fn greet(
    address: &ServerAddress,
    pin: [u8; 32],
    limits: &Limits,
    first: impl Fn([u8; 32], [u8; 32]) -> AgentMessage,
) -> Result<(Ws, u16, ServerMessage), SessionError> {
    let mut version = PROTOCOL_VERSION;
    loop {
        let (mut ws, channel_binding) = connect(address, pin, limits).await?;
        let nonce = match refused(receive_frame(&mut ws, limits).await?.message)? {
            ServerMessage::Challenge(c) => c.nonce,
            other => return Err(anyhow!("expected a challenge, got {other:?}").into()),
        };
        send(&mut ws, version, &first(nonce, channel_binding)).await?;
        let answer = receive_frame(&mut ws, limits).await?;
        if let ServerMessage::Refused(r) = answer.message {
            if r.code == RefusalCode::UnsupportedVersion && answer.version < version {
                warn!(
                    tried = version,
                    offered = answer.version,
                    "The server does not speak this agent's protocol version; trying the one it speaks."
                );
                let _ = ws.close(None).await;
                version = answer.version;
                continue;
            }
            // A refusal ends the connection in any version (a server that
            // could not read the first frame answers in its oldest).
            return Err(SessionError::Refused {
                code: r.code,
                message: r.message,
            });
        }
        return match answer.in_version(version) {
            Ok(message) => Ok((ws, version, refused(message)?)),
            Err(error) => Err(protocol_violation(&mut ws, &error).await),
        };
    }
}

/// Enrols this device with a one-time token; returns what the server assigned.
pub async fn enroll(
    address: &ServerAddress,
    token: &EnrollToken,
    key: &SigningKey,
    hostname: &str,
) -> Result<Enrolled, SessionError> {
    let limits = Limits::default();
    let device_key = key.verifying_key().to_bytes();
    let hostname = crate::text::clipped(hostname, limits.max_text);
    let enroll = |nonce, channel_binding| {
        let statement = EnrollStatement {
            nonce,
            channel_binding,
            device_key,
            token_hash: token.secret_hash(),
        };
        AgentMessage::Enroll(Enroll {
            token_secret: token.secret,
            device_key,
            hostname: hostname.clone(),
            agent_version: AGENT_VERSION.to_owned(),
            signature: statement.sign(key),
        })
    };
    let (mut ws, _, reply) = greet(address, token.ca_fingerprint, &limits, enroll).await?;
    let _ = ws.close(None).await;
    match reply {
        ServerMessage::Enrolled(enrolled) => Ok(enrolled),
        other => Err(anyhow!("unexpected reply to enrolment: {other:?}").into()),
    }
}

/// Session settings; tests shorten the intervals.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub inventory_interval: Duration,
    /// Signed jobs (RFD 0002): the job runner this agent feeds, which also
    /// holds its trust state. `None` for an agent that takes no jobs (the
    /// simulator's virtual devices): it ignores `Trust` and answers every
    /// `Job` with a `jobs_disabled` refusal.
    pub jobs: Option<JobsHandle>,
    /// The policy's checks (RFD 0009), whose states the session reports;
    /// `None` for an agent that runs none (the simulator's devices).
    pub checks: Option<ChecksHandle>,
    /// How often new check values (not states: those go at once) are sent.
    pub check_values_interval: Duration,
    /// Changes when new pending updates were read ([`crate::updates`]): the
    /// inventory changes are then sent at once, not at the next interval.
    pub updates_read: Option<tokio::sync::watch::Receiver<u64>>,
    /// What `Hello` says this agent runs: its release version and the
    /// SHA-256 of its binary ([`crate::self_update::Running::reported`]).
    pub agent_version: String,
    /// Remote shells (RFD 0015, protocol version 5); `None` for an agent
    /// that opens none (it refuses each `ShellOpen`).
    pub shell: Option<crate::shell::ShellConfig>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            inventory_interval: Duration::from_secs(60),
            jobs: None,
            checks: None,
            check_values_interval: Duration::from_secs(60),
            updates_read: None,
            agent_version: AGENT_VERSION.to_owned(),
            shell: None,
        }
    }
}

/// Who this agent is and which server it trusts: everything a session needs
/// from the state directory.
pub struct Endpoint {
    pub address: ServerAddress,
    /// SHA-256 of the server CA pinned at enrolment.
    pub pin: [u8; 32],
    pub device_id: bulwark_protocol::message::DeviceId,
    pub key: SigningKey,
}

/// One authenticated session, until the connection ends or `shutdown` fires.
/// Returns Ok(()) on a requested shutdown.
pub async fn session(
    endpoint: &Endpoint,
    collector: &mut Collector,
    options: &SessionOptions,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    connected: &mut (dyn FnMut() + Send),
) -> Result<(), SessionError> {
    let Endpoint {
        address,
        pin,
        device_id,
        key,
    } = endpoint;
    let limits = Limits::default();
    let log_size = options.jobs.as_ref().and_then(JobsHandle::begin_session);
    let hello = |nonce, channel_binding| {
        let statement = HelloStatement {
            nonce,
            channel_binding,
            device_id: device_id.clone(),
        };
        AgentMessage::Hello(Hello {
            device_id: device_id.clone(),
            agent_version: options.agent_version.clone(),
            signature: statement.sign(key),
            log_size,
        })
    };
    let (mut ws, version, reply) = greet(address, *pin, &limits, hello).await?;
    let welcome: Welcome = match reply {
        ServerMessage::Welcome(w) => w,
        other => return Err(anyhow!("expected welcome, got {other:?}").into()),
    };
    info!(device_id = %welcome.device_id, tenant = %welcome.tenant, protocol_version = version, "Connected to the server.");
    connected();

    // Full snapshot first; afterwards only sections that changed since the
    // last snapshot the server acknowledged.
    let mut seq: u64 = 0;
    let mut acknowledged = Inventory::default();
    let mut next_seq = || {
        seq += 1;
        seq
    };
    let snapshot = collector.collect();
    let report_seq = next_seq();
    send(
        &mut ws,
        version,
        &AgentMessage::Inventory(InventoryReport {
            seq: report_seq,
            full: true,
            inventory: snapshot.clone(),
        }),
    )
    .await?;
    let mut in_flight: Option<(u64, Inventory)> = Some((report_seq, snapshot));

    // A verified inventory-refresh job asks for a full snapshot.
    let mut refresh = options.jobs.as_ref().map(|jobs| {
        let mut r = jobs.subscribe_refresh();
        r.mark_unchanged();
        r
    });

    // Every check's state now, then changes: a report the server has not
    // acknowledged when the next one is due is replaced by a full one.
    let mut check_changes = options.checks.as_ref().map(ChecksHandle::subscribe);
    let mut checks_in_flight: Option<u64> = None;
    if let Some(checks) = &options.checks
        && let Some(report) = checks.full_report(next_seq())
    {
        checks_in_flight = Some(report.seq);
        send(&mut ws, version, &AgentMessage::Checks(report)).await?;
    }
    if let Some(checks) = &options.checks {
        ask_for_scripts(&mut ws, version, checks).await?;
    }
    let mut check_values = tokio::time::interval_at(
        tokio::time::Instant::now() + options.check_values_interval,
        options.check_values_interval,
    );

    // Results the server has not acknowledged yet, from earlier sessions too.
    let mut results = options.jobs.as_ref().map(ResultSender::new);
    if let Some(results) = &mut results {
        results.send_new(&mut ws, version).await?;
    }

    let heartbeat_every = Duration::from_secs(u64::from(welcome.heartbeat_secs.clamp(1, 3600)));
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_every,
        heartbeat_every,
    );
    let mut inventory = tokio::time::interval_at(
        tokio::time::Instant::now() + options.inventory_interval,
        options.inventory_interval,
    );
    let mut updates_read = options.updates_read.clone();
    if let Some(r) = &mut updates_read {
        r.mark_unchanged();
    }
    // Three silent heartbeat intervals from the server's side mean the link is dead.
    let silence = heartbeat_every * 3;
    // Protocol version 3 (RFD 0012): job start notices and live output go
    // while this connection lasts. An older server gets neither.
    let mut live = match &options.jobs {
        Some(jobs) if version >= 3 => Some(jobs.attach_live().await),
        _ => None,
    };
    // Protocol version 5 (RFD 0015): shell sessions of this connection,
    // which end with it (dropping `shells` ends them).
    let (shell_out, mut shell_messages) = tokio::sync::mpsc::channel(64);
    let mut shells = match &options.shell {
        Some(config) if version >= 5 => Some(Shells::new(config.clone(), shell_out)),
        _ => None,
    };

    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                let s = next_seq();
                send(&mut ws, version, &AgentMessage::Heartbeat(Heartbeat { seq: s })).await?;
            }
            () = checks_changed(&mut check_changes) => {
                if let Some(checks) = &options.checks {
                    let s = next_seq();
                    let report = if checks_in_flight.is_some() { checks.full_report(s) } else { checks.changes(s, false) };
                    if let Some(report) = report {
                        debug!(seq = s, checks = report.checks.len(), "Sending check states.");
                        checks_in_flight = Some(s);
                        send(&mut ws, version, &AgentMessage::Checks(report)).await?;
                    }
                    ask_for_scripts(&mut ws, version, checks).await?;
                }
            }
            _ = check_values.tick() => {
                if let Some(checks) = &options.checks {
                    let s = next_seq();
                    let report = if checks_in_flight.is_some() { checks.full_report(s) } else { checks.changes(s, true) };
                    if let Some(report) = report {
                        checks_in_flight = Some(s);
                        send(&mut ws, version, &AgentMessage::Checks(report)).await?;
                    }
                }
            }
            Some(message) = shell_messages.recv() => {
                send(&mut ws, version, &message).await?;
            }
            Some(message) = live_message(&mut live) => {
                send(&mut ws, version, &message).await?;
            }
            () = spooled(&mut results) => {
                if let Some(results) = &mut results {
                    results.send_new(&mut ws, version).await?;
                }
            }
            () = refresh_requested(&mut updates_read) => {
                // New pending updates: the changes go now.
                inventory.reset_immediately();
            }
            () = refresh_requested(&mut refresh) => {
                let current = collector.collect();
                let s = next_seq();
                info!(seq = s, "Sending a full inventory snapshot (inventory-refresh job).");
                send(&mut ws, version, &AgentMessage::Inventory(InventoryReport { seq: s, full: true, inventory: current.clone() })).await?;
                in_flight = Some((s, current));
            }
            _ = inventory.tick() => {
                if in_flight.is_some() {
                    continue; // the previous report is not acknowledged yet
                }
                let current = collector.collect();
                let changes = current.changes_since(&acknowledged);
                if !changes.is_empty() {
                    let s = next_seq();
                    debug!(seq = s, "Sending inventory changes.");
                    send(&mut ws, version, &AgentMessage::Inventory(InventoryReport { seq: s, full: false, inventory: changes })).await?;
                    in_flight = Some((s, current));
                }
            }
            message = tokio::time::timeout(silence, receive(&mut ws, version, &limits)) => {
                match message {
                    Err(_) => return Err(anyhow!("the server has been silent for {silence:?}").into()),
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(ServerMessage::Ack(ack))) => {
                        if checks_in_flight == Some(ack.seq) {
                            checks_in_flight = None;
                        }
                        if let Some((s, sent)) = in_flight.take() {
                            if s == ack.seq {
                                acknowledged = sent;
                            } else {
                                in_flight = Some((s, sent));
                            }
                        }
                    }
                    Ok(Ok(ServerMessage::Trust(trust))) => match &options.jobs {
                        Some(jobs) => {
                            let (refusals, status) = jobs.apply_trust(&trust);
                            for refusal in refusals {
                                send(&mut ws, version, &AgentMessage::TrustRefused(refusal)).await?;
                            }
                            send(&mut ws, version, &AgentMessage::TrustStatus(status)).await?;
                            // A freeze or a new policy may end live shells.
                            if let Some(shells) = &mut shells {
                                shells.recheck();
                            }
                        }
                        None => debug!("Trust statements ignored: this agent runs no jobs."),
                    },
                    Ok(Ok(ServerMessage::Job(job))) => match &options.jobs {
                        Some(jobs) => {
                            if let Some(busy) = jobs.submit(job) {
                                send(&mut ws, version, &AgentMessage::JobResult(busy)).await?;
                            }
                        }
                        None => {
                            if let Some(result) = crate::jobs::disabled_result(&job) {
                                send(&mut ws, version, &AgentMessage::JobResult(result)).await?;
                            }
                        }
                    },
                    Ok(Ok(ServerMessage::ScheduledRun(run))) => match &options.jobs {
                        Some(jobs) => {
                            if let Some(busy) = jobs.submit_scheduled(run) {
                                send(&mut ws, version, &AgentMessage::JobResult(busy)).await?;
                            }
                        }
                        None => {
                            let refused = crate::jobs::refused(
                                run.job_id,
                                AgentRefusalCode::JobsDisabled,
                                "this agent does not run jobs",
                            );
                            send(&mut ws, version, &AgentMessage::JobResult(refused)).await?;
                        }
                    },
                    Ok(Ok(ServerMessage::CancelJob(cancel))) => {
                        if let Some(jobs) = &options.jobs {
                            jobs.cancel(&cancel.job_id, &cancel.reason);
                        }
                    }
                    Ok(Ok(ServerMessage::ShellOpen(open))) => {
                        let answer = match &mut shells {
                            Some(shells) => shells.open(open),
                            None => AgentMessage::ShellClosed(ShellClosed {
                                session_id: open.session_id,
                                refusal: Some(AgentRefusalCode::ActionNotSupported),
                                reason: "this agent opens no shells".into(),
                                recording: None,
                            }),
                        };
                        send(&mut ws, version, &answer).await?;
                    }
                    Ok(Ok(ServerMessage::ShellData(data))) => {
                        if let Some(shells) = &mut shells {
                            shells.data(data);
                        }
                    }
                    Ok(Ok(ServerMessage::ShellClose(close))) => {
                        if let Some(shells) = &mut shells {
                            shells.close(close);
                        }
                    }
                    Ok(Ok(ServerMessage::ShellRevoke(revoke))) => {
                        if let Some(shells) = &mut shells {
                            shells.revoke(revoke);
                        }
                    }
                    Ok(Ok(ServerMessage::ResultAck(ack))) => {
                        if let Some(jobs) = &options.jobs {
                            jobs.acknowledge(&ack.job_id);
                        }
                        if let Some(results) = &mut results {
                            results.acknowledged(&ack.job_id);
                        }
                    }
                    Ok(Ok(ServerMessage::CheckScript(script))) => {
                        if let Some(checks) = &options.checks {
                            checks.script_arrived(script.sha256, script.content);
                        }
                    }
                    Ok(Ok(other)) => warn!(?other, "Unexpected message from the server; ignored."),
                }
            }
            _ = shutdown.changed() => {
                let _ = ws.close(None).await;
                return Ok(());
            }
        }
    }
}

/// Sends spooled job results, each once per session (all of them again
/// after a reconnect, until the server acknowledges them). A result spooled
/// again after its acknowledgement (the recorded answer to a job delivered
/// again after it ran) goes again.
struct ResultSender {
    jobs: JobsHandle,
    changed: tokio::sync::watch::Receiver<u64>,
    /// The hash of the result sent for each job in this session.
    sent: std::collections::HashMap<[u8; 16], [u8; 32]>,
}

impl ResultSender {
    fn new(jobs: &JobsHandle) -> Self {
        let mut changed = jobs.subscribe();
        changed.mark_unchanged();
        Self {
            jobs: jobs.clone(),
            changed,
            sent: std::collections::HashMap::new(),
        }
    }

    async fn send_new(&mut self, ws: &mut Ws, version: u16) -> anyhow::Result<()> {
        for answer in self.jobs.take_answers() {
            send(ws, version, &AgentMessage::JobResult(answer)).await?;
        }
        for result in self.jobs.pending_results() {
            let job_id = result.job_id;
            let message = AgentMessage::JobResult(result);
            let digest: [u8; 32] =
                sha2::Sha256::digest(bulwark_protocol::codec::to_canonical(&message)).into();
            if self.sent.insert(job_id, digest) != Some(digest) {
                send(ws, version, &message).await?;
            }
        }
        Ok(())
    }

    /// The server stored `job_id`'s result: if it is spooled again (the
    /// answer to the job delivered again after it ran), it goes again.
    fn acknowledged(&mut self, job_id: &[u8; 16]) {
        self.sent.remove(job_id);
    }
}

/// Resolves when an inventory refresh was asked for (or pending updates
/// read); never for an agent without jobs (or once the job runner has
/// stopped).
async fn refresh_requested(refresh: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(r) = refresh
        && r.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Asks the server for the scripts of script checks (protocol version 4;
/// an older server cannot send them, and those checks say so).
async fn ask_for_scripts(ws: &mut Ws, version: u16, checks: &ChecksHandle) -> anyhow::Result<()> {
    if version < 4 {
        return Ok(());
    }
    for sha256 in checks.wanted_scripts() {
        debug!(sha256 = %hex::encode(sha256), "Asking the server for a check script.");
        send(
            ws,
            version,
            &AgentMessage::CheckScriptWanted(CheckScriptWanted { sha256 }),
        )
        .await?;
    }
    Ok(())
}

/// Resolves when a check's state changed; never for an agent without checks.
async fn checks_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(r) = changes
        && r.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// The next start notice or output piece; never without a version 3
/// connection's hold on the live link.
async fn live_message(live: &mut Option<crate::jobs::Attached>) -> Option<AgentMessage> {
    match live {
        Some(attached) => attached.next().await,
        None => std::future::pending().await,
    }
}

/// Resolves when a new result was spooled; never for an agent without jobs
/// (or once the job runner has stopped).
async fn spooled(results: &mut Option<ResultSender>) {
    if let Some(r) = results
        && r.changed.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_urls() {
        assert_eq!(
            ServerAddress::parse("https://127.0.0.1:8443").expect("v4"),
            ServerAddress {
                host: "127.0.0.1".into(),
                port: 8443
            }
        );
        assert_eq!(
            ServerAddress::parse("https://rmm.example.com").expect("name"),
            ServerAddress {
                host: "rmm.example.com".into(),
                port: 443
            }
        );
        assert_eq!(
            ServerAddress::parse("https://[::1]:9/x").expect("v6"),
            ServerAddress {
                host: "::1".into(),
                port: 9
            }
        );
        assert!(ServerAddress::parse("http://127.0.0.1:8443").is_err());
        assert!(ServerAddress::parse("https://:1").is_err());
        assert!(ServerAddress::parse("https://h:99999").is_err());
    }
}
