//! Signed statements: a DSSE-style envelope (payload type, canonical payload,
//! signatures by key id) and the ONE function that counts signers.

use std::collections::BTreeSet;

use bulwark_protocol::codec::{from_canonical, to_canonical};
use bulwark_protocol::envelope::pae;
use ed25519_dalek::{Signer, SigningKey};
use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::Refusal;
use crate::keys::{KeyId, PublicKey};
use crate::limits::{Limits, cap};
use crate::webauthn::WebAuthnSignature;

/// A statement kind: its DSSE payload type keeps signatures of one kind from
/// ever verifying as another.
pub trait Statement: Encode<()> + for<'b> Decode<'b, ()> {
    const PAYLOAD_TYPE: &'static str;
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Signed {
    #[n(0)]
    pub payload_type: String,
    /// Canonical CBOR of the statement: the exact bytes that were signed (after PAE).
    #[cbor(n(1), with = "minicbor::bytes")]
    pub payload: Vec<u8>,
    #[n(2)]
    pub signatures: Vec<SignatureEntry>,
}

/// One signature. An Ed25519 entry is `{0: key id, 1: signature}`, as it
/// always was. A passkey entry adds field 2, the WebAuthn assertion, and
/// keeps field 1 all zero (it must be zero: see [`PublicKey::verify`]);
/// absent fields are not encoded, so Ed25519 entries, their envelopes and
/// key ids are unchanged by passkeys.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct SignatureEntry {
    #[n(0)]
    pub key_id: KeyId,
    /// Ed25519 over the PAE bytes; zero in a WebAuthn entry.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub signature: [u8; 64],
    /// A passkey's assertion over [`Signed::approval_challenge`].
    #[n(2)]
    pub webauthn: Option<WebAuthnSignature>,
}

/// Domain separation of passkey approvals: no other ceremony's challenge
/// (a sign-in's, a step-up's, a device approval's: random nonces the server
/// picks) can be this hash of a statement unless SHA-256 collides.
pub const APPROVAL_CHALLENGE_TAG: &[u8] = b"bulwark job approval v1\n";

/// The challenge a passkey signs to approve the statement whose DSSE
/// signing bytes are `signing_bytes`.
pub fn approval_challenge(signing_bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(APPROVAL_CHALLENGE_TAG);
    hasher.update(signing_bytes);
    hasher.finalize().into()
}

/// The outcome of checking an envelope's signatures against a set of keys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Distinct allowed keys whose signature verifies.
    pub valid: BTreeSet<KeyId>,
    /// Signatures that name an allowed key but do not verify.
    pub bad: usize,
    /// Signatures that name no allowed key (unknown or revoked).
    pub unknown: usize,
}

impl Tally {
    /// Turns a tally into a decision: `need` distinct valid signers, and the
    /// most specific reason when there are too few.
    pub fn require(&self, need: usize) -> Result<(), Refusal> {
        let have = self.valid.len();
        if have >= need {
            Ok(())
        } else if self.bad > 0 {
            Err(Refusal::BadSignature)
        } else if have == 0 && self.unknown > 0 {
            Err(Refusal::UnknownKey)
        } else {
            Err(Refusal::TooFewSigners { have, need })
        }
    }
}

impl Signed {
    /// An unsigned envelope holding `statement`.
    pub fn new<T: Statement>(statement: &T) -> Self {
        Self {
            payload_type: T::PAYLOAD_TYPE.to_owned(),
            payload: to_canonical(statement),
            signatures: Vec::new(),
        }
    }

    /// The bytes every signer signs: DSSE's pre-authentication encoding of
    /// payload type and payload.
    pub fn signing_bytes(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// SHA-256 of [`Self::signing_bytes`]: what the job's `job.released`
    /// log entry names (the statement, whoever signed it).
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.signing_bytes()).into()
    }

    /// What a passkey approval signs: [`approval_challenge`] of the signing
    /// bytes. Only operator-side software asks for it (RFD 0005).
    pub fn approval_challenge(&self) -> [u8; 32] {
        approval_challenge(&self.signing_bytes())
    }

    /// Adds an Ed25519 signature (done on the signer's own machine, never the server).
    pub fn sign(&mut self, key: &SigningKey) {
        let public = PublicKey::Ed25519(key.verifying_key().to_bytes());
        let signature = key.sign(&self.signing_bytes()).to_bytes();
        self.signatures.push(SignatureEntry {
            key_id: public.id(),
            signature,
            webauthn: None,
        });
    }

    /// Adds a passkey approval as the browser returned it (an assertion over
    /// [`Self::approval_challenge`]). Not checked here: [`Self::tally`] checks it.
    pub fn add_webauthn(&mut self, key_id: KeyId, assertion: WebAuthnSignature) {
        self.signatures.push(SignatureEntry {
            key_id,
            signature: [0; 64],
            webauthn: Some(assertion),
        });
    }

    /// The statement, if the envelope carries the expected kind, within
    /// limits, in canonical encoding. Says nothing about signatures.
    pub fn statement<T: Statement>(&self, limits: &Limits) -> Result<T, Refusal> {
        cap(self.payload.len(), limits.max_payload_bytes, "payload")?;
        cap(self.signatures.len(), limits.max_signatures, "signatures")?;
        if self.payload_type != T::PAYLOAD_TYPE {
            return Err(Refusal::Malformed(format!(
                "payload type {:?}, expected {:?}",
                self.payload_type,
                T::PAYLOAD_TYPE
            )));
        }
        from_canonical(&self.payload).map_err(|e| Refusal::Malformed(e.to_string()))
    }

    /// Counts distinct keys among `allowed` that signed this envelope. This is
    /// the only place signatures are counted: a key that signs twice, or is
    /// listed twice, counts once (GHSA-5q2r-92f9-4m49 is the bug this avoids).
    pub fn tally<'k>(&self, allowed: impl IntoIterator<Item = &'k PublicKey>) -> Tally {
        let allowed: Vec<(KeyId, &PublicKey)> = allowed.into_iter().map(|k| (k.id(), k)).collect();
        let message = self.signing_bytes();
        let mut tally = Tally::default();
        for entry in &self.signatures {
            match allowed.iter().find(|(id, _)| *id == entry.key_id) {
                None => tally.unknown += 1,
                Some((id, key)) => {
                    if key.verify(&message, entry) {
                        tally.valid.insert(*id);
                    } else {
                        tally.bad += 1;
                    }
                }
            }
        }
        tally
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_canonical(self)
    }

    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, Refusal> {
        // The same cap as the agent's frame check (`bulwark_protocol::Limits::max_envelope_bytes`).
        cap(
            bytes.len(),
            bulwark_protocol::limits::statement::envelope_cap(
                limits.max_payload_bytes,
                limits.max_signatures,
            ),
            "envelope",
        )?;
        from_canonical(bytes).map_err(|e| Refusal::Malformed(e.to_string()))
    }
}
