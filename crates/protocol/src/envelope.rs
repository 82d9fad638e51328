//! Domain-separated Ed25519 signatures.
//!
//! Every signature in Bulwark is over the DSSE pre-authentication encoding
//! (<https://github.com/secure-systems-lab/dsse/blob/master/protocol.md>):
//!
//! ```text
//! PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//! ```
//!
//! where `type` names the statement kind and `body` is the statement's
//! canonical CBOR. A signature made for one kind of statement therefore never
//! verifies as another kind, and a verifier needs no Bulwark code to check it.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use minicbor::{Decode, Encode};

use crate::ProtocolError;
use crate::codec::to_canonical;
use crate::message::DeviceId;

/// Payload type of [`HelloStatement`].
pub const HELLO_PAYLOAD_TYPE: &str = "application/vnd.bulwark.agent-hello.v1+cbor";
/// Payload type of [`EnrollStatement`].
pub const ENROLL_PAYLOAD_TYPE: &str = "application/vnd.bulwark.agent-enroll.v1+cbor";

/// TLS exporter label (RFC 5705 / RFC 8446 section 7.5) for the channel
/// binding signed in hello and enrol statements: a signature made on one TLS
/// connection is useless on any other, so a relay cannot forward it.
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-bulwark-agent-auth-v1";

/// The DSSE pre-authentication encoding of `body` as a `payload_type`.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// A statement a device signs with its own key, alone (the handshake's
/// `Hello` and `Enroll`). Not `bulwark_policy::envelope::Statement`, which
/// travels in an envelope with a quorum of signatures.
pub trait DeviceStatement: Encode<()> {
    const PAYLOAD_TYPE: &'static str;

    fn signing_bytes(&self) -> Vec<u8> {
        pae(Self::PAYLOAD_TYPE, &to_canonical(self))
    }

    fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.signing_bytes()).to_bytes()
    }

    /// Strict Ed25519 verification (rejects small-order keys and
    /// non-canonical signatures).
    fn verify(&self, key: &[u8; 32], signature: &[u8; 64]) -> Result<(), ProtocolError> {
        let key = VerifyingKey::from_bytes(key).map_err(|_| ProtocolError::BadSignature)?;
        key.verify_strict(&self.signing_bytes(), &Signature::from_bytes(signature))
            .map_err(|_| ProtocolError::BadSignature)
    }
}

/// What a known device signs to open a session.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct HelloStatement {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub nonce: [u8; 32],
    #[cbor(n(1), with = "minicbor::bytes")]
    pub channel_binding: [u8; 32],
    #[n(2)]
    pub device_id: DeviceId,
}

impl DeviceStatement for HelloStatement {
    const PAYLOAD_TYPE: &'static str = HELLO_PAYLOAD_TYPE;
}

/// What a new device signs to enrol: proof that it holds the key it registers.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct EnrollStatement {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub nonce: [u8; 32],
    #[cbor(n(1), with = "minicbor::bytes")]
    pub channel_binding: [u8; 32],
    #[cbor(n(2), with = "minicbor::bytes")]
    pub device_key: [u8; 32],
    /// SHA-256 of the token secret, so the signature names the token it used.
    #[cbor(n(3), with = "minicbor::bytes")]
    pub token_hash: [u8; 32],
}

impl DeviceStatement for EnrollStatement {
    const PAYLOAD_TYPE: &'static str = ENROLL_PAYLOAD_TYPE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_specification_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn hello() -> HelloStatement {
        HelloStatement {
            nonce: [1; 32],
            channel_binding: [2; 32],
            device_id: DeviceId::from_random_bytes([3; 16]),
        }
    }

    #[test]
    fn a_signature_verifies_only_for_its_own_statement() {
        let k = key();
        let pk = k.verifying_key().to_bytes();
        let sig = hello().sign(&k);
        assert_eq!(hello().verify(&pk, &sig), Ok(()));

        let mut other_nonce = hello();
        other_nonce.nonce[0] ^= 1;
        assert_eq!(
            other_nonce.verify(&pk, &sig),
            Err(ProtocolError::BadSignature)
        );

        let mut other_binding = hello();
        other_binding.channel_binding[31] ^= 0x80;
        assert_eq!(
            other_binding.verify(&pk, &sig),
            Err(ProtocolError::BadSignature)
        );

        let mut flipped = sig;
        flipped[10] ^= 1;
        assert_eq!(
            hello().verify(&pk, &flipped),
            Err(ProtocolError::BadSignature)
        );

        let other_key = SigningKey::from_bytes(&[8u8; 32])
            .verifying_key()
            .to_bytes();
        assert_eq!(
            hello().verify(&other_key, &sig),
            Err(ProtocolError::BadSignature)
        );
    }

    #[test]
    fn a_hello_signature_is_not_an_enrol_signature() {
        // Same field numbers and byte lengths for the first two fields: only
        // the payload type keeps the two kinds apart.
        let k = key();
        let enroll = EnrollStatement {
            nonce: [1; 32],
            channel_binding: [2; 32],
            device_key: k.verifying_key().to_bytes(),
            token_hash: [4; 32],
        };
        let body = to_canonical(&enroll);
        let sig = k.sign(&pae(HELLO_PAYLOAD_TYPE, &body)).to_bytes();
        assert_eq!(
            enroll.verify(&k.verifying_key().to_bytes(), &sig),
            Err(ProtocolError::BadSignature)
        );
    }
}
