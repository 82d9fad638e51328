//! The agent gateway: TLS 1.3, then one WebSocket per agent, authenticated by
//! a challenge signed with the device key and bound to the TLS session.
//!
//! A connection goes through two phases. The handshake (TLS, WebSocket
//! upgrade, challenge, enrol or hello: [`handshake`]) runs as its own boxed
//! future under a deadline, so its buffers are gone before the long-lived
//! phase starts and each idle connection costs only its session loop
//! ([`session`], which sends work through [`delivery`]). Every frame passes
//! through [`bulwark_protocol::decode_agent_frame`] (size cap, version,
//! canonical encoding, field limits) and is in the protocol version the
//! agent's first frame chose (RFD 0010); the first bad frame ends that
//! connection and no other.
//!
//! This module holds the entry point: the listener, the connection slots,
//! and what ties the two phases together.

pub mod admission;
mod delivery;
pub mod fanout;
mod handshake;
pub(crate) mod mass_action;
mod rate;
pub mod releases;
mod session;
mod shells;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulwark_protocol::Limits;
use bulwark_store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};

use crate::presence::Presence;
use handshake::{HandshakeError, handshake};
use session::run_session;

/// Time allowed for TLS, the upgrade and authentication together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct GatewayState {
    pub store: Store,
    pub presence: Presence,
    pub acceptor: TlsAcceptor,
    pub limits: Limits,
    pub heartbeat: Duration,
    pub slots: Arc<Semaphore>,
    /// Signs the tree heads that jobs are delivered under.
    pub log: Arc<crate::transparency_log::checkpoints::LogSigner>,
    /// Has those heads cosigned by the tenant's witnesses first.
    pub witnesses: Arc<crate::transparency_log::witnessing::WitnessClient>,
    /// Wakes the alert notifier when a check report opened an alert.
    pub alert_nudge: Arc<tokio::sync::Notify>,
    /// Release downloads served at once ([`releases::MAX_DOWNLOADS`]).
    pub downloads: Arc<Semaphore>,
    /// Records deliveries in batches ([`fanout::Recorder`]).
    pub deliveries: fanout::Recorder,
    /// Log proofs shared by the sessions of one fan-out.
    pub proofs: Arc<fanout::ProofCache>,
    /// Handshakes run at once; the rest wait briefly, then are closed.
    pub admission: admission::Admission,
}

type Ws = WebSocketStream<releases::Prefixed<TlsStream<TcpStream>>>;

/// Connections the kernel queues before the gateway accepts them. A
/// restarted node is met by its whole fleet at once; with the usual 128 or
/// 1,024 the rest of the SYNs are dropped and retried by the clients' kernels
/// only after 1, 3, 7 s. The kernel caps this at `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 8192;

/// The gateway's listening socket.
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A node restarted after a crash binds again while the old
    // connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(ACCEPT_BACKLOG)
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
                    // A connection that sends nothing waits without a turn:
                    // silent connections cannot hold the handshakes up.
                    // (`peek`, not `readable`: that may wake with nothing to read.)
                    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut [0u8; 1])).await;
                    if !matches!(first, Ok(Ok(1..))) {
                        debug!(%peer, "Agent connection silent or closed before its handshake.");
                        return;
                    }
                    let Some(turn) = state.admission.admit().await else {
                        // Closed before any TLS work: the agent backs off and retries.
                        let refused = state.admission.refused();
                        if refused % 1000 == 1 {
                            warn!(%peer, refused, "Agent connection closed: too many handshakes at once (a reconnect storm); it will retry.");
                        }
                        return;
                    };
                    connection(state, tcp, peer, shutdown, turn).await;
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
    turn: OwnedSemaphorePermit,
) {
    let state_for_handshake = state.clone();
    let handshake = Box::pin(async move {
        let done =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(state_for_handshake, tcp, peer))
                .await;
        // The next connection's turn: this one's handshake is over.
        drop(turn);
        done
    });
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

/// Writes the last-seen time of every agent connected to this node, once
/// per heartbeat interval, in a few statements; until `shutdown`. A session
/// writes its own time when it starts and when it ends, so the stored time
/// of a connected device is at most one interval old and that of a
/// disconnected one exact.
pub async fn record_connected(
    store: Store,
    presence: Presence,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let connected = presence.online_devices();
        if connected.is_empty() {
            continue;
        }
        if let Err(error) = store.devices_seen(&connected, crate::now_millis()).await {
            warn!(%error, devices = connected.len(), "Cannot record the connected devices as seen.");
        }
    }
}

/// What one idle agent connection's task costs, before TLS and WebSocket buffers.
pub fn session_task_size(
    state: Arc<GatewayState>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    turn: OwnedSemaphorePermit,
) -> usize {
    std::mem::size_of_val(&connection(state, tcp, peer, shutdown, turn))
}
