//! Bulwark's wire protocol, shared by the server and the agent.
//!
//! Everything here is pure: no I/O and no clock (time is always an argument),
//! so the code a security reviewer reads first can be tested with vectors.
//!
//! * [`codec`]: frames in deterministic CBOR (RFC 8949 section 4.2.1). A frame
//!   is accepted only if it is the one canonical encoding of its value.
//! * [`limits`]: every size and count cap, in one place.
//! * [`message`]: what the agent and the server say to each other.
//! * [`inventory`]: the device inventory and how deltas apply to it.
//! * [`envelope`]: domain-separated Ed25519 signatures (DSSE pre-authentication
//!   encoding), one payload type per statement kind.
//! * [`token`]: the enrolment token format.
//! * [`checks`]: the states of the policy's monitoring checks an agent reports.

pub mod alarm_record;
pub mod audit_leaf;
pub mod checks;
pub mod codec;
pub mod envelope;
pub mod inventory;
pub mod limits;
pub mod message;
pub mod token;

pub use codec::{
    Frame, Versioned, decode_agent_frame, decode_server_frame, encode_agent_frame,
    encode_server_frame,
};
pub use limits::Limits;

/// The newest protocol version this build speaks: an agent's first frame
/// is in it, and a connection speaks the lower of the two peers' newest
/// (RFD 0010). Version 2 is version 1 and that negotiation; version 3 adds
/// live job output and cancel (RFD 0012: `JobStarted`, `JobOutput`,
/// `CancelJob`); version 4 the content of script checks (RFD 0009:
/// `CheckScriptWanted`, `CheckScript`); version 5 adds remote shells (RFD
/// 0015: `ShellOpen`, `ShellOpened`, `ShellData`, `ShellClose`,
/// `ShellClosed`, `ShellRevoke`, `ShellRecording`); version 6 scheduled
/// runs (RFD 0019: `ScheduledRun`); version 7 no new message but server
/// frames up to `Limits::max_server_frame_bytes` (RFD 0001: a job naming
/// `max_targets` devices).
pub const PROTOCOL_VERSION: u16 = 7;

/// The oldest protocol version this build still speaks, so that agents
/// deployed with it keep working; an agent never speaks below it, whatever
/// the server asks. A frame outside `MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION`
/// is refused.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Why a frame, token or signature was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame is larger than [`Limits::max_frame_bytes`].
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: usize, limit: usize },
    /// The bytes are not a CBOR encoding of the expected message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The bytes decode, but are not the canonical (deterministic) encoding.
    #[error("frame is not in canonical CBOR encoding")]
    NotCanonical,
    /// The peer speaks a protocol version outside this build's range.
    #[error(
        "unsupported protocol version {got} (this build speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})"
    )]
    UnsupportedVersion { got: u16 },
    /// The message came with a later protocol version than the frame's
    /// (see `AgentMessage::since`).
    #[error("the message needs protocol version {since}, the frame is version {version}")]
    NotInVersion { since: u16, version: u16 },
    /// A frame in another version than the one its connection negotiated.
    #[error(
        "a frame of protocol version {got} on a connection that negotiated version {negotiated}"
    )]
    VersionSwitched { negotiated: u16, got: u16 },
    /// A field is longer, or a list has more items, than its limit.
    #[error("field `{field}` exceeds its limit of {limit}")]
    FieldTooLarge { field: &'static str, limit: usize },
    /// A field holds a value that is not allowed (for example an invalid id).
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    /// A signature does not verify under the expected key and payload type.
    #[error("signature does not verify")]
    BadSignature,
    /// An enrolment token is not in the expected format.
    #[error("enrolment token is malformed: {0}")]
    BadToken(&'static str),
}
