//! The sealed shell channel between the operator's CLI and the agent
//! (RFD 0015 section 3): X25519 between two ephemeral keys, HKDF-SHA256
//! over the signed transcript, ChaCha20-Poly1305 per direction with a
//! counter the receiver requires in order. The server relays the sealed
//! frames and can neither read, inject, replay, reorder nor drop one
//! without the session ending.

use minicbor::{Decode, Encode};
use ring::{aead, agreement, hkdf, rand::SecureRandom};
use sha2::{Digest, Sha256};

use bulwark_protocol::codec::{from_canonical, to_canonical};

use crate::envelope::Signed;

/// Most bytes of plain text in one frame.
pub const MAX_SHELL_FRAME: usize = 16 * 1024;
/// What a sealed frame adds: the counter and the tag.
pub const SEAL_OVERHEAD: usize = 8 + 16;

const INFO_TO_AGENT: &[u8] = b"bulwark shell v1 client to agent";
const INFO_TO_CLIENT: &[u8] = b"bulwark shell v1 agent to client";

/// Why a channel ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    #[error("the key exchange failed (a bad ephemeral key)")]
    KeyExchange,
    #[error("frame {got} arrived where {expected} was due: replayed, reordered or dropped")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("a frame failed authentication: forged or altered on the way")]
    Forged,
    #[error("a frame is malformed: {0}")]
    Malformed(String),
    #[error("a frame is over the 16 KiB limit")]
    TooLarge,
    #[error("the channel has ended")]
    Ended,
}

/// Which end of the channel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Agent,
}

/// A one-use X25519 key.
pub struct Ephemeral {
    private: agreement::EphemeralPrivateKey,
    public: [u8; 32],
}

impl Ephemeral {
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, ChannelError> {
        let private = agreement::EphemeralPrivateKey::generate(&agreement::X25519, rng)
            .map_err(|_| ChannelError::KeyExchange)?;
        let public = private
            .compute_public_key()
            .map_err(|_| ChannelError::KeyExchange)?
            .as_ref()
            .try_into()
            .map_err(|_| ChannelError::KeyExchange)?;
        Ok(Self { private, public })
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }
}

/// What the client sends inside the channel.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ShellInput {
    /// Keystrokes, written to the PTY as they are.
    #[n(0)]
    Data(#[cbor(n(0), with = "minicbor::bytes")] Vec<u8>),
    #[n(1)]
    Resize {
        #[n(0)]
        cols: u16,
        #[n(1)]
        rows: u16,
    },
    #[n(2)]
    Close,
}

/// What the agent sends inside the channel.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ShellOutput {
    #[n(0)]
    Data(#[cbor(n(0), with = "minicbor::bytes")] Vec<u8>),
    /// The shell ended (its exit code, when it exited), or the agent ended
    /// the session (the grant expired or was revoked): the reason.
    #[n(1)]
    Ended {
        #[n(0)]
        exit_code: Option<i32>,
        #[n(1)]
        reason: String,
    },
}

/// One end of an established channel.
pub struct Channel {
    sealer: aead::LessSafeKey,
    opener: aead::LessSafeKey,
    sent: u64,
    received: u64,
    send_label: &'static [u8],
    receive_label: &'static [u8],
    /// A frame failed: nothing more is opened (the sender may still say why).
    broken: bool,
    ended: bool,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// The channel's keys from this side's ephemeral key, the peer's public
/// key and the two signed envelopes (open, then answer) that carried them.
pub fn establish(
    side: Side,
    ephemeral: Ephemeral,
    peer_public: &[u8; 32],
    open: &Signed,
    answer: &Signed,
) -> Result<Channel, ChannelError> {
    let mut transcript = Sha256::new();
    transcript.update(open.signing_bytes());
    transcript.update(answer.signing_bytes());
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &transcript.finalize());
    let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, peer_public);
    let (to_agent, to_client) = agreement::agree_ephemeral(ephemeral.private, &peer, |shared| {
        let prk = salt.extract(shared);
        Ok::<_, ChannelError>((key(&prk, INFO_TO_AGENT)?, key(&prk, INFO_TO_CLIENT)?))
    })
    .map_err(|_| ChannelError::KeyExchange)??;
    let (sealer, opener, send_label, receive_label) = match side {
        Side::Client => (to_agent, to_client, INFO_TO_AGENT, INFO_TO_CLIENT),
        Side::Agent => (to_client, to_agent, INFO_TO_CLIENT, INFO_TO_AGENT),
    };
    Ok(Channel {
        sealer,
        opener,
        sent: 0,
        received: 0,
        send_label,
        receive_label,
        broken: false,
        ended: false,
    })
}

fn key(prk: &hkdf::Prk, info: &'static [u8]) -> Result<aead::LessSafeKey, ChannelError> {
    let infos = [info];
    let okm = prk
        .expand(&infos, &aead::CHACHA20_POLY1305)
        .map_err(|_| ChannelError::KeyExchange)?;
    Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
}

fn nonce(counter: u64) -> aead::Nonce {
    let mut bytes = [0; 12];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    aead::Nonce::assume_unique_for_key(bytes)
}

fn aad(label: &[u8], counter: u64) -> aead::Aad<Vec<u8>> {
    let mut bytes = label.to_vec();
    bytes.extend_from_slice(&counter.to_be_bytes());
    aead::Aad::from(bytes)
}

impl Channel {
    /// Seals the next frame: its counter, then ciphertext and tag.
    pub fn seal_bytes(&mut self, plain: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if self.ended {
            return Err(ChannelError::Ended);
        }
        if plain.len() > MAX_SHELL_FRAME {
            return Err(ChannelError::TooLarge);
        }
        let counter = self.sent;
        // A counter never wraps: nonces are never reused under a key.
        self.sent = counter.checked_add(1).ok_or(ChannelError::Ended)?;
        let mut body = plain.to_vec();
        self.sealer
            .seal_in_place_append_tag(nonce(counter), aad(self.send_label, counter), &mut body)
            .map_err(|_| ChannelError::Ended)?;
        let mut frame = counter.to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    /// Opens the next frame. Any failure ends the receiving side for good;
    /// the sending side may still seal the reason.
    pub fn open_bytes(&mut self, sealed: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if self.ended || self.broken {
            return Err(ChannelError::Ended);
        }
        let result = self.open_inner(sealed);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn open_inner(&mut self, sealed: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if sealed.len() > MAX_SHELL_FRAME + SEAL_OVERHEAD {
            return Err(ChannelError::TooLarge);
        }
        let (head, body) = sealed
            .split_first_chunk::<8>()
            .filter(|(_, body)| body.len() >= 16)
            .ok_or_else(|| ChannelError::Malformed("shorter than a counter and a tag".into()))?;
        let counter = u64::from_be_bytes(*head);
        if counter != self.received {
            return Err(ChannelError::OutOfOrder {
                expected: self.received,
                got: counter,
            });
        }
        let mut body = body.to_vec();
        let plain_len = self
            .opener
            .open_in_place(nonce(counter), aad(self.receive_label, counter), &mut body)
            .map_err(|_| ChannelError::Forged)?
            .len();
        body.truncate(plain_len);
        self.received = counter.checked_add(1).ok_or(ChannelError::Ended)?;
        Ok(body)
    }

    pub fn seal<T: Encode<()>>(&mut self, message: &T) -> Result<Vec<u8>, ChannelError> {
        self.seal_bytes(&to_canonical(message))
    }

    pub fn open<T: Encode<()> + for<'b> Decode<'b, ()>>(
        &mut self,
        sealed: &[u8],
    ) -> Result<T, ChannelError> {
        let plain = self.open_bytes(sealed)?;
        from_canonical(&plain).map_err(|e| {
            self.broken = true;
            ChannelError::Malformed(e.to_string())
        })
    }

    /// Ends this side: nothing more is sealed or opened.
    pub fn end(&mut self) {
        self.ended = true;
    }
}

/// Entry point for the `shell_frame` fuzz target: frames a relay makes up
/// must end the channel, never panic, and never open.
#[cfg(fuzzing)]
pub fn fuzz_frame(bytes: &[u8]) {
    let rng = ring::rand::SystemRandom::new();
    let (Ok(client), Ok(agent)) = (Ephemeral::generate(&rng), Ephemeral::generate(&rng)) else {
        return;
    };
    let (open, answer) = (
        Signed::new(&crate::shell::SessionAnswer {
            open_digest: [0; 32],
            agent_ephemeral: client.public(),
        }),
        Signed::new(&crate::shell::SessionAnswer {
            open_digest: [1; 32],
            agent_ephemeral: agent.public(),
        }),
    );
    let client_public = client.public();
    if let Ok(mut channel) = establish(Side::Agent, agent, &client_public, &open, &answer) {
        assert!(channel.open::<ShellInput>(bytes).is_err());
        assert!(channel.open_bytes(bytes).is_err());
    }
}
