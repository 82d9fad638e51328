//! Frames in deterministic CBOR (RFC 8949 section 4.2.1): integers and lengths
//! in their shortest form, definite lengths only, map keys (small unsigned
//! integers) in ascending order, no floating point, no tags.
//!
//! The encoder (minicbor with integer-keyed derives) produces exactly that.
//! The decoder accepts a frame only if re-encoding the decoded value gives the
//! same bytes, so every value has exactly one accepted encoding: trailing
//! bytes, unknown fields, indefinite lengths and over-long integers are all
//! refused. An independent verifier needs only a deterministic CBOR library
//! and the field numbers in [`crate::message`].

use minicbor::{Decode, Encode};

use crate::limits::{Limits, Validate};
use crate::message::{AgentMessage, ServerMessage};
use crate::{PROTOCOL_VERSION, ProtocolError};

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
struct Frame<M> {
    #[n(0)]
    version: u16,
    #[n(1)]
    message: M,
}

/// Canonical encoding of any protocol value (also used for signed statements).
pub fn to_canonical<T: Encode<()> + ?Sized>(value: &T) -> Vec<u8> {
    // Writing to a Vec cannot fail (`Infallible` writer error); the only other
    // error source is a custom Encode impl, and this crate has none that fail.
    minicbor::to_vec(value).unwrap_or_default()
}

/// Decodes `bytes` as a `T`, accepting only the canonical encoding.
pub fn from_canonical<'b, T>(bytes: &'b [u8]) -> Result<T, ProtocolError>
where
    T: Decode<'b, ()> + Encode<()>,
{
    let value: T = minicbor::decode(bytes).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if to_canonical(&value) != bytes {
        return Err(ProtocolError::NotCanonical);
    }
    Ok(value)
}

fn encode<M: Encode<()>>(message: M) -> Vec<u8> {
    to_canonical(&Frame {
        version: PROTOCOL_VERSION,
        message,
    })
}

fn decode<'b, M>(bytes: &'b [u8], limits: &Limits) -> Result<M, ProtocolError>
where
    M: Decode<'b, ()> + Encode<()> + Validate,
{
    // 1. Size before anything is parsed.
    if bytes.len() > limits.max_frame_bytes {
        return Err(ProtocolError::FrameTooLarge {
            size: bytes.len(),
            limit: limits.max_frame_bytes,
        });
    }
    // 2. Version before the body, so an agent of another version gets a clear answer.
    let version = peek_version(bytes)?;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion { got: version });
    }
    // 3. The one canonical encoding of a frame.
    let frame: Frame<M> = from_canonical(bytes)?;
    // 4. Every field within its limit.
    frame.message.validate(limits)?;
    Ok(frame.message)
}

/// Reads field 0 (the version) of a frame without decoding the message.
fn peek_version(bytes: &[u8]) -> Result<u16, ProtocolError> {
    let malformed = |e: minicbor::decode::Error| ProtocolError::Malformed(e.to_string());
    let mut d = minicbor::Decoder::new(bytes);
    d.map().map_err(malformed)?;
    let key = d.u32().map_err(malformed)?;
    if key != 0 {
        return Err(ProtocolError::Malformed(
            "frame does not start with its version".into(),
        ));
    }
    d.u16().map_err(malformed)
}

pub fn encode_agent_frame(message: &AgentMessage) -> Vec<u8> {
    encode(message)
}

pub fn encode_server_frame(message: &ServerMessage) -> Vec<u8> {
    encode(message)
}

/// Decodes what an agent sent; the server calls this on every frame.
pub fn decode_agent_frame(bytes: &[u8], limits: &Limits) -> Result<AgentMessage, ProtocolError> {
    decode(bytes, limits)
}

/// Decodes what the server sent; the agent calls this on every frame.
pub fn decode_server_frame(bytes: &[u8], limits: &Limits) -> Result<ServerMessage, ProtocolError> {
    decode(bytes, limits)
}

/// Entry point for the `frame_decoder` fuzz target: must never panic.
#[cfg(fuzzing)]
pub fn fuzz_decode(bytes: &[u8]) {
    let limits = Limits::default();
    if let Ok(m) = decode_agent_frame(bytes, &limits) {
        assert_eq!(encode_agent_frame(&m), bytes);
    }
    if let Ok(m) = decode_server_frame(bytes, &limits) {
        assert_eq!(encode_server_frame(&m), bytes);
    }
    // Transparency-log leaves, as agents and auditors read them.
    if let Ok(leaf) = crate::audit_leaf::AuditLeaf::decode(bytes) {
        assert_eq!(leaf.encode(), bytes);
    }
}
