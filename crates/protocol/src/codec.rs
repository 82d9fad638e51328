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
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, ProtocolError};

/// One frame: the protocol version it is written in, and its message.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Frame<M> {
    #[n(0)]
    pub version: u16,
    #[n(1)]
    pub message: M,
}

impl<M> Frame<M> {
    /// The message, if the frame is in the version its connection
    /// negotiated: every frame after the agent's first must be (RFD 0010).
    pub fn in_version(self, negotiated: u16) -> Result<M, ProtocolError> {
        if self.version != negotiated {
            return Err(ProtocolError::VersionSwitched {
                negotiated,
                got: self.version,
            });
        }
        Ok(self.message)
    }
}

/// A message that knows the protocol version that introduced it (RFD 0010):
/// a frame of an earlier version is never written or read with it.
pub trait Versioned {
    /// The version that introduced this message, or the field of it that
    /// this value carries (a field added later is `Some` only from then on).
    fn since(&self) -> u16;
}

/// `version` is one this build speaks and that has a message of `since`.
fn check_version(version: u16, since: u16) -> Result<(), ProtocolError> {
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(ProtocolError::UnsupportedVersion { got: version });
    }
    if since > version {
        return Err(ProtocolError::NotInVersion { since, version });
    }
    Ok(())
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

/// Refuses (never drops a part of) a message the version does not have.
fn encode<M: Encode<()> + Versioned>(version: u16, message: &M) -> Result<Vec<u8>, ProtocolError> {
    check_version(version, message.since())?;
    Ok(to_canonical(&Frame { version, message }))
}

fn decode<'b, M>(
    bytes: &'b [u8],
    limits: &Limits,
    cap: impl Fn(u16) -> usize,
) -> Result<Frame<M>, ProtocolError>
where
    M: Decode<'b, ()> + Encode<()> + Validate + Versioned,
{
    // 1. Size before anything is parsed; then the cap of the version the
    //    frame claims (a server frame below version 7 has the older one).
    let too_large = |limit: usize| ProtocolError::FrameTooLarge {
        size: bytes.len(),
        limit,
    };
    if bytes.len() > cap(PROTOCOL_VERSION) {
        return Err(too_large(cap(PROTOCOL_VERSION)));
    }
    let version = peek_version(bytes)?;
    if bytes.len() > cap(version) {
        return Err(too_large(cap(version)));
    }
    // 2. Version before the body, so an agent of another version gets a clear answer.
    check_version(version, MIN_PROTOCOL_VERSION)?;
    // 3. The one canonical encoding of a frame, of a message its version has.
    let frame: Frame<M> = from_canonical(bytes)?;
    check_version(frame.version, frame.message.since())?;
    // 4. Every field within its limit.
    frame.message.validate(limits)?;
    Ok(frame)
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

/// An agent's frame in `version`: the highest this build speaks for its
/// first frame, then the one its connection negotiated.
pub fn encode_agent_frame(version: u16, message: &AgentMessage) -> Result<Vec<u8>, ProtocolError> {
    encode(version, message)
}

/// A server's frame in `version`: the one the agent's first frame chose.
pub fn encode_server_frame(
    version: u16,
    message: &ServerMessage,
) -> Result<Vec<u8>, ProtocolError> {
    encode(version, message)
}

/// Decodes what an agent sent; the server calls this on every frame.
pub fn decode_agent_frame(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Frame<AgentMessage>, ProtocolError> {
    decode(bytes, limits, |_| limits.max_frame_bytes)
}

/// Decodes what the server sent; the agent calls this on every frame.
pub fn decode_server_frame(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Frame<ServerMessage>, ProtocolError> {
    decode(bytes, limits, |version| limits.server_frame_cap(version))
}

/// Entry point for the `frame_decoder` fuzz target: must never panic.
#[cfg(fuzzing)]
pub fn fuzz_decode(bytes: &[u8]) {
    let limits = Limits::default();
    if let Ok(f) = decode_agent_frame(bytes, &limits) {
        assert_eq!(
            encode_agent_frame(f.version, &f.message).ok().as_deref(),
            Some(bytes)
        );
    }
    if let Ok(f) = decode_server_frame(bytes, &limits) {
        assert_eq!(
            encode_server_frame(f.version, &f.message).ok().as_deref(),
            Some(bytes)
        );
    }
    // Transparency-log leaves, as agents and auditors read them.
    if let Ok(leaf) = crate::audit_leaf::AuditLeaf::decode(bytes) {
        assert_eq!(leaf.encode(), bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of a later version than the frame's: each version so far
    /// has every message, so this one stands in for the next.
    #[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
    enum Probe {
        #[n(0)]
        Old(#[n(0)] u8),
        #[n(1)]
        New(#[n(0)] u8),
    }

    impl Versioned for Probe {
        fn since(&self) -> u16 {
            match self {
                Probe::Old(_) => MIN_PROTOCOL_VERSION,
                Probe::New(_) => MIN_PROTOCOL_VERSION + 1,
            }
        }
    }

    impl Validate for Probe {
        fn validate(&self, _: &Limits) -> Result<(), ProtocolError> {
            Ok(())
        }
    }

    #[test]
    fn a_message_newer_than_the_frame_is_refused_both_ways() {
        let limits = Limits::default();
        let (min, max) = (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION);
        assert_eq!(
            encode(min, &Probe::New(7)),
            Err(ProtocolError::NotInVersion {
                since: min + 1,
                version: min
            })
        );
        // Written anyway (by hand, as an older or hostile peer could):
        // the decoder refuses it too.
        let forged = to_canonical(&Frame {
            version: min,
            message: Probe::New(7),
        });
        assert_eq!(
            decode::<Probe>(&forged, &limits, |_| limits.max_frame_bytes),
            Err(ProtocolError::NotInVersion {
                since: min + 1,
                version: min
            })
        );
        for version in min..=max {
            let old = encode(version, &Probe::Old(1)).expect("every version has it");
            assert_eq!(
                decode::<Probe>(&old, &limits, |_| limits.max_frame_bytes)
                    .map(|f| (f.version, f.message)),
                Ok((version, Probe::Old(1)))
            );
        }
        let new = encode(max, &Probe::New(2)).expect("the newest version has it");
        assert_eq!(
            decode::<Probe>(&new, &limits, |_| limits.max_frame_bytes)
                .and_then(|f| f.in_version(max)),
            Ok(Probe::New(2))
        );
    }

    #[test]
    fn versions_outside_the_range_are_refused_at_encode() {
        for version in [0, MIN_PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, u16::MAX] {
            assert_eq!(
                encode(version, &Probe::Old(1)),
                Err(ProtocolError::UnsupportedVersion { got: version })
            );
        }
    }

    #[test]
    fn a_frame_in_another_version_than_the_negotiated_one_is_refused() {
        let frame = Frame {
            version: PROTOCOL_VERSION,
            message: Probe::Old(1),
        };
        assert_eq!(
            frame.clone().in_version(MIN_PROTOCOL_VERSION),
            Err(ProtocolError::VersionSwitched {
                negotiated: MIN_PROTOCOL_VERSION,
                got: PROTOCOL_VERSION
            })
        );
        assert_eq!(frame.in_version(PROTOCOL_VERSION), Ok(Probe::Old(1)));
    }
}
