//! Public keys and their ids.

use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

/// A public key that may sign statements. Passkey (WebAuthn) credentials join
/// as another variant when approvals in the console arrive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
#[non_exhaustive]
pub enum PublicKey {
    #[n(0)]
    Ed25519(#[cbor(n(0), with = "minicbor::bytes")] [u8; 32]),
}

/// SHA-256 of the key's canonical encoding: how signatures name their key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[cbor(transparent)]
pub struct KeyId(#[cbor(n(0), with = "minicbor::bytes")] pub [u8; 32]);

impl PublicKey {
    pub fn id(&self) -> KeyId {
        KeyId(Sha256::digest(bulwark_protocol::codec::to_canonical(self)).into())
    }

    /// Strict Ed25519 verification of `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        match self {
            PublicKey::Ed25519(bytes) => {
                ed25519_dalek::VerifyingKey::from_bytes(bytes).is_ok_and(|k| {
                    k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
                        .is_ok()
                })
            }
        }
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
