//! Public keys and their ids.

use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::envelope::{SignatureEntry, approval_challenge};
use crate::webauthn::{APPROVAL_RP_ID, WebAuthnCredential};

/// A public key that may sign statements: an Ed25519 key on the signer's
/// machine, or a passkey / security key used through the console.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
#[non_exhaustive]
pub enum PublicKey {
    #[n(0)]
    Ed25519(#[cbor(n(0), with = "minicbor::bytes")] [u8; 32]),
    /// A WebAuthn credential, bound to the console's RP id (part of the key
    /// id, so the same key under another RP id is another key).
    #[n(1)]
    WebAuthn(#[n(0)] WebAuthnCredential),
}

/// SHA-256 of the key's canonical encoding: how signatures name their key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[cbor(transparent)]
pub struct KeyId(#[cbor(n(0), with = "minicbor::bytes")] pub [u8; 32]);

impl PublicKey {
    pub fn id(&self) -> KeyId {
        KeyId(Sha256::digest(bulwark_protocol::codec::to_canonical(self)).into())
    }

    /// Does `entry` hold this key's signature over `message` (the PAE bytes)?
    ///
    /// Ed25519: strict verification of the 64-byte signature over `message`.
    /// WebAuthn (RFD 0005): the credential is an approval credential (RP id
    /// [`APPROVAL_RP_ID`], which no page a server serves can use), the
    /// assertion was made on that exact host, its challenge is
    /// [`approval_challenge`]`(message)` (domain-separated from every other
    /// ceremony), the user verified (a PIN or biometric, not a mere touch),
    /// and the unused 64-byte field zero, so each approval has one encoding.
    /// A console credential (sign-in, step-up) never approves anything. An
    /// entry of the other kind than its key never verifies.
    pub fn verify(&self, message: &[u8], entry: &SignatureEntry) -> bool {
        match (self, &entry.webauthn) {
            (PublicKey::Ed25519(bytes), None) => ed25519_dalek::VerifyingKey::from_bytes(bytes)
                .is_ok_and(|k| {
                    k.verify_strict(
                        message,
                        &ed25519_dalek::Signature::from_bytes(&entry.signature),
                    )
                    .is_ok()
                }),
            (PublicKey::WebAuthn(credential), Some(assertion)) => {
                entry.signature == [0; 64]
                    && credential.rp_id == APPROVAL_RP_ID
                    && assertion
                        .verify(credential, &approval_challenge(message), true)
                        .is_ok()
            }
            _ => false,
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
