//! Messages between an agent and the server's agent gateway.
//!
//! One WebSocket binary message carries one frame: a [`crate::PROTOCOL_VERSION`]
//! and one message, in deterministic CBOR with integer map keys. The
//! conversation on a connection is:
//!
//! 1. server: [`ServerMessage::Challenge`] (a fresh nonce);
//! 2. agent: [`AgentMessage::Enroll`] (new device, one-time token) or
//!    [`AgentMessage::Hello`] (known device), each signed by the device key
//!    over the nonce and the TLS channel binding;
//! 3. server: [`ServerMessage::Enrolled`] (then closes) or
//!    [`ServerMessage::Welcome`], or [`ServerMessage::Refused`] (then closes);
//! 4. after `Welcome`: heartbeats and inventory reports from the agent, each
//!    acknowledged by sequence number.

use minicbor::{Decode, Encode};

use crate::ProtocolError;
use crate::inventory::Inventory;
use crate::limits::{Limits, Validate};

/// A device's identity on the server: a UUID, carried in its canonical
/// lower-case hyphenated text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[cbor(transparent)]
pub struct DeviceId(#[n(0)] String);

impl DeviceId {
    /// Parses a device id; only the canonical lower-case hyphenated form is accepted.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let invalid = ProtocolError::InvalidField {
            field: "device_id",
            reason: "not a canonical UUID",
        };
        let parsed = uuid::Uuid::try_parse(text).map_err(|_| invalid.clone())?;
        if parsed.hyphenated().to_string() != text {
            return Err(invalid);
        }
        Ok(Self(text.to_owned()))
    }

    /// Makes a device id from 16 random bytes (a version 4 UUID).
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        Self(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an agent sends.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum AgentMessage {
    #[n(0)]
    Enroll(#[n(0)] Enroll),
    #[n(1)]
    Hello(#[n(0)] Hello),
    #[n(2)]
    Heartbeat(#[n(0)] Heartbeat),
    #[n(3)]
    Inventory(#[n(0)] InventoryReport),
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ServerMessage {
    #[n(0)]
    Challenge(#[n(0)] Challenge),
    #[n(1)]
    Enrolled(#[n(0)] Enrolled),
    #[n(2)]
    Welcome(#[n(0)] Welcome),
    #[n(3)]
    Ack(#[n(0)] Ack),
    #[n(4)]
    Refused(#[n(0)] Refused),
}

/// First message on every connection: a nonce the agent must sign.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Challenge {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub nonce: [u8; 32],
    #[n(1)]
    pub server_version: String,
}

/// A new device asks to join a tenant with a one-time enrolment token.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Enroll {
    /// The secret part of the enrolment token (see [`crate::token`]).
    #[cbor(n(0), with = "minicbor::bytes")]
    pub token_secret: [u8; 32],
    /// The device's Ed25519 public key, generated on the device.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub device_key: [u8; 32],
    #[n(2)]
    pub hostname: String,
    #[n(3)]
    pub agent_version: String,
    /// Signature by `device_key` over [`crate::envelope::EnrollStatement`].
    #[cbor(n(4), with = "minicbor::bytes")]
    pub signature: [u8; 64],
}

/// A known device proves it holds its key.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Hello {
    #[n(0)]
    pub device_id: DeviceId,
    #[n(1)]
    pub agent_version: String,
    /// Signature by the device key over [`crate::envelope::HelloStatement`].
    #[cbor(n(2), with = "minicbor::bytes")]
    pub signature: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Enrolled {
    #[n(0)]
    pub device_id: DeviceId,
    #[n(1)]
    pub tenant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Welcome {
    #[n(0)]
    pub device_id: DeviceId,
    #[n(1)]
    pub tenant: String,
    /// How often the agent must send a heartbeat; the server closes a
    /// connection silent for three intervals.
    #[n(2)]
    pub heartbeat_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Heartbeat {
    #[n(0)]
    pub seq: u64,
}

/// An inventory snapshot (`full`) or the sections that changed since the last
/// acknowledged report.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct InventoryReport {
    #[n(0)]
    pub seq: u64,
    #[n(1)]
    pub full: bool,
    #[n(2)]
    pub inventory: Inventory,
}

/// The server stored the message with this sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Ack {
    #[n(0)]
    pub seq: u64,
}

/// The server refuses the connection or message; it closes the connection after.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Refused {
    #[n(0)]
    pub code: RefusalCode,
    #[n(1)]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum RefusalCode {
    /// The frame could not be decoded or broke a limit.
    #[n(0)]
    Malformed,
    /// Another protocol version is needed.
    #[n(1)]
    UnsupportedVersion,
    /// The enrolment token is unknown, used, expired or tampered with.
    #[n(2)]
    BadToken,
    /// The signature over the challenge does not verify.
    #[n(3)]
    BadSignature,
    /// No such device (or it was removed).
    #[n(4)]
    UnknownDevice,
    /// The message was not expected at this point of the conversation.
    #[n(5)]
    UnexpectedMessage,
    /// The server is overloaded or shutting down; try again later.
    #[n(6)]
    Unavailable,
    /// This device key is already enrolled.
    #[n(7)]
    AlreadyEnrolled,
}

impl Validate for AgentMessage {
    fn validate(&self, l: &Limits) -> Result<(), ProtocolError> {
        match self {
            AgentMessage::Enroll(m) => {
                l.text("hostname", &m.hostname)?;
                l.text("agent_version", &m.agent_version)
            }
            AgentMessage::Hello(m) => {
                DeviceId::parse(m.device_id.as_str())?;
                l.text("agent_version", &m.agent_version)
            }
            AgentMessage::Heartbeat(_) => Ok(()),
            AgentMessage::Inventory(m) => m.inventory.validate(l),
        }
    }
}

impl Validate for ServerMessage {
    fn validate(&self, l: &Limits) -> Result<(), ProtocolError> {
        match self {
            ServerMessage::Challenge(m) => l.text("server_version", &m.server_version),
            ServerMessage::Enrolled(m) => {
                DeviceId::parse(m.device_id.as_str())?;
                l.text("tenant", &m.tenant)
            }
            ServerMessage::Welcome(m) => {
                DeviceId::parse(m.device_id.as_str())?;
                l.text("tenant", &m.tenant)
            }
            ServerMessage::Ack(_) => Ok(()),
            ServerMessage::Refused(m) => l.long_text("message", &m.message),
        }
    }
}
