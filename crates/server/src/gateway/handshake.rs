//! The handshake: TLS, the channel binding and the WebSocket upgrade, the
//! challenge, then the agent's enrolment (`Enroll`: proof of possession of
//! its new key on this TLS connection, the one-time token consumed in the
//! transaction that creates the device) or its hello (`Hello`: the device
//! key's signature over the nonce and the channel binding, checked against
//! the stored key). What comes out is an authenticated [`Session`], nothing
//! (enrolment done), or why the connection ends.

use std::net::SocketAddr;
use std::sync::Arc;

use bulwark_protocol::envelope::{
    CHANNEL_BINDING_LABEL, DeviceStatement, EnrollStatement, HelloStatement,
};
use bulwark_protocol::message::{
    AgentMessage, Challenge, DeviceId, Enroll, Enrolled, Hello, RefusalCode, Refused,
    ServerMessage, Welcome,
};
use bulwark_protocol::{
    Limits, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, ProtocolError, decode_agent_frame,
    encode_server_frame,
};
use bulwark_store::{NewDevice, StoreError};
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{info, warn};

use super::session::Session;
use super::{GatewayState, Ws};
use crate::now_millis;

/// Why a connection ends before it is authenticated.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
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

async fn send(ws: &mut Ws, version: u16, message: &ServerMessage) -> Result<(), HandshakeError> {
    let frame = encode_server_frame(version, message)
        .map_err(|e| HandshakeError::Transport(e.to_string()))?;
    ws.send(Message::Binary(frame.into()))
        .await
        .map_err(|e| HandshakeError::Transport(e.to_string()))
}

/// Refuses in `version`: the first frame's, or the oldest this server
/// speaks when it could not be read (every agent reads a refusal in any
/// version it speaks).
async fn refuse(ws: &mut Ws, version: u16, code: RefusalCode, message: &str) -> HandshakeError {
    let _ = send(
        ws,
        version,
        &ServerMessage::Refused(Refused {
            code,
            message: message.to_owned(),
        }),
    )
    .await;
    let _ = ws.close(None).await;
    HandshakeError::Refused(code, message.to_owned())
}

pub(super) async fn handshake(
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
    // A release download (RFD 0017) or the agent's WebSocket upgrade.
    let mut tls = tls;
    let head = super::releases::read_head(&mut tls)
        .await
        .map_err(|e| HandshakeError::Transport(e.to_string()))?;
    if let Some(request) = super::releases::release_request(&head) {
        super::releases::serve(state.clone(), tls, request);
        return Ok(None);
    }
    let tls = super::releases::Prefixed::new(tls, head);
    let mut ws = tokio_tungstenite::accept_async_with_config(tls, Some(ws_config(&state.limits)))
        .await
        .map_err(|e| HandshakeError::Transport(e.to_string()))?;

    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // Before the agent said which version it speaks: the oldest, which
    // every agent this server serves reads.
    send(
        &mut ws,
        MIN_PROTOCOL_VERSION,
        &ServerMessage::Challenge(Challenge {
            nonce,
            server_version: crate::VERSION.into(),
        }),
    )
    .await?;

    let first = match ws.next().await {
        Some(Ok(Message::Binary(bytes))) => decode_agent_frame(&bytes, &state.limits),
        Some(Ok(_)) => {
            return Err(refuse(
                &mut ws,
                MIN_PROTOCOL_VERSION,
                RefusalCode::Malformed,
                "expected a binary frame",
            )
            .await);
        }
        Some(Err(e)) => return Err(HandshakeError::Transport(e.to_string())),
        None => {
            return Err(HandshakeError::Transport(
                "closed before authenticating".into(),
            ));
        }
    };
    // The connection speaks the version of the agent's first frame (RFD
    // 0010): the highest it speaks, or the one it fell back to.
    let first = match first {
        Ok(frame) => frame,
        Err(ProtocolError::UnsupportedVersion { got }) => {
            // In the newest version this server speaks (the oldest, for an
            // agent older than that): an agent that speaks it tries again in it.
            let ours = got.clamp(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION);
            let message = format!(
                "unsupported protocol version {got}: this server speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
            );
            return Err(refuse(&mut ws, ours, RefusalCode::UnsupportedVersion, &message).await);
        }
        Err(e) => {
            let reason = e.to_string();
            let refusal = refuse(
                &mut ws,
                MIN_PROTOCOL_VERSION,
                RefusalCode::Malformed,
                &reason,
            );
            return Err(refusal.await);
        }
    };
    let version = first.version;
    match first.message {
        AgentMessage::Enroll(enroll) => {
            let result = enroll_device(&state, enroll, nonce, channel_binding, peer).await;
            match result {
                Ok(enrolled) => {
                    send(&mut ws, version, &ServerMessage::Enrolled(enrolled)).await?;
                    let _ = ws.close(None).await;
                    Ok(None)
                }
                Err((code, reason)) => Err(refuse(&mut ws, version, code, reason).await),
            }
        }
        AgentMessage::Hello(hello) => {
            match authenticate(&state, &hello, nonce, channel_binding).await {
                Ok((tenant_id, tenant)) => {
                    let welcome = Welcome {
                        device_id: hello.device_id.clone(),
                        tenant: tenant.clone(),
                        heartbeat_secs: u32::try_from(state.heartbeat.as_secs()).unwrap_or(30),
                    };
                    send(&mut ws, version, &ServerMessage::Welcome(welcome)).await?;
                    info!(%peer, device_id = %hello.device_id, agent_version = %hello.agent_version, protocol_version = version, "Agent connected.");
                    Ok(Some(Session {
                        ws,
                        device_id: hello.device_id.to_string(),
                        agent_version: hello.agent_version.clone(),
                        protocol_version: version,
                        tenant_id,
                        tenant,
                        peer,
                        log_size: hello.log_size,
                    }))
                }
                Err((code, reason)) => Err(refuse(&mut ws, version, code, reason).await),
            }
        }
        _ => Err(refuse(
            &mut ws,
            version,
            RefusalCode::UnexpectedMessage,
            "expected enroll or hello",
        )
        .await),
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
