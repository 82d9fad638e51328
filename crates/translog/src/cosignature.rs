//! Witness cosignatures, C2SP `tlog-cosignature/v1` with Ed25519 (RFD 0006).
//!
//! A cosignature is a note signature line on a checkpoint,
//! `— <witness name> base64(key ID || timestamp || signature)`: the key ID
//! is `SHA-256(name || 0x0A || 0x04 || public key)[:4]`, the timestamp 8
//! bytes big-endian (POSIX seconds, at most 2^63 - 1), and the Ed25519
//! signature covers
//!
//! ```text
//! cosignature/v1
//! time <timestamp>
//! <the checkpoint body: origin, size, root and any extension lines>
//! ```
//!
//! It says: as of that time, the largest consistent tree the witness saw
//! for this origin has this root. Keys travel as vkeys of type 0x04.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::Limits;
use crate::note::{
    NoteError, SIG_PREFIX, check_key_name, key_text, parse_key_text, parse_signature_line,
    split_note, typed_key_id,
};

/// The signature type of an Ed25519 `cosignature/v1`.
pub const SIG_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// The largest timestamp the format allows.
const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// What a cosignature signs: the v1 header, the time, the checkpoint body.
fn signed_message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// A witness's signing key.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key: SigningKey,
    id: u32,
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cosigner({}+{:08x})", self.name, self.id)
    }
}

impl Cosigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let id = typed_key_id(SIG_TYPE_COSIGNATURE_V1, name, &key.verifying_key());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>`.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey(
                "a signer key starts with PRIVATE+KEY+",
            ))?;
        let (name, id, seed) = parse_key_text(SIG_TYPE_COSIGNATURE_V1, rest)?;
        let cosigner = Self::new(&name, SigningKey::from_bytes(&seed))?;
        if cosigner.id != id {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        Ok(cosigner)
    }

    /// A secret, to be stored like one.
    pub fn to_skey(&self) -> String {
        let key = key_text(
            SIG_TYPE_COSIGNATURE_V1,
            &self.name,
            self.id,
            self.key.as_bytes(),
        );
        format!("PRIVATE+KEY+{key}")
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// The cosignature line (ending in a newline) over a checkpoint `body`
    /// (its text, ending in a newline, without signature lines) at
    /// `timestamp`.
    pub fn cosign(&self, body: &str, timestamp: u64) -> Result<String, NoteError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(NoteError::MalformedText("the timestamp exceeds 2^63 - 1"));
        }
        if !body.ends_with('\n') || body.contains("\n\n") {
            return Err(NoteError::MalformedText(
                "a checkpoint body ends in a newline and has no blank line",
            ));
        }
        let signature = self.key.sign(signed_message(body, timestamp).as_bytes());
        let mut blob = Vec::with_capacity(4 + 8 + 64);
        blob.extend_from_slice(&self.id.to_be_bytes());
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// A witness's public key, as a tenant's policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key: VerifyingKey,
    id: u32,
}

impl CosignatureVerifier {
    /// `<name>+<hex id>+<base64(0x04 || public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_key_text(SIG_TYPE_COSIGNATURE_V1, vkey)?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 public key"))?;
        let verifier = Self {
            id: typed_key_id(SIG_TYPE_COSIGNATURE_V1, &name, &key),
            name,
            key,
        };
        if verifier.id != id {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        Ok(verifier)
    }

    pub fn to_vkey(&self) -> String {
        key_text(
            SIG_TYPE_COSIGNATURE_V1,
            &self.name,
            self.id,
            self.key.as_bytes(),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Ed25519 public key, to tell two names for one key apart.
    pub fn key_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

/// The time of each witness's valid cosignature on a checkpoint note (the
/// log's signature and cosignatures, as the witness protocol and the
/// server hand it on): for each of `witnesses`, in order, `Some(timestamp)`
/// or `None` if the note holds no cosignature of its key. A line that names
/// a witness's key but does not verify is an error (the note was altered);
/// lines of other keys are ignored. The log's own signature is the caller's
/// to check ([`crate::checkpoint::verify_note`]). Of two lines of one
/// witness, the newer counts.
pub fn cosignature_times(
    note: &str,
    witnesses: &[CosignatureVerifier],
    limits: &Limits,
) -> Result<Vec<Option<u64>>, NoteError> {
    let ranges = cosignature_time_ranges(note, witnesses, limits)?;
    Ok(ranges
        .into_iter()
        .map(|r| r.map(|(_, last)| last))
        .collect())
}

/// As [`cosignature_times`], with each witness's earliest and latest
/// cosignature time: a note may carry a witness's first cosignature of a
/// tree head (since when it has seen it) beside its latest (that it still
/// does).
pub fn cosignature_time_ranges(
    note: &str,
    witnesses: &[CosignatureVerifier],
    limits: &Limits,
) -> Result<Vec<Option<(u64, u64)>>, NoteError> {
    let (body, lines) = split_note(note, limits)?;
    let mut times: Vec<Option<(u64, u64)>> = vec![None; witnesses.len()];
    for (i, line) in lines.iter().enumerate() {
        let (name, id, blob) = parse_signature_line(i + 1, line, limits)?;
        let Some(w) = witnesses.iter().position(|w| w.name == name && w.id == id) else {
            continue;
        };
        let bad = || NoteError::BadSignature {
            name: name.to_owned(),
        };
        let (timestamp, signature) = blob[4..].split_at_checked(8).ok_or_else(bad)?;
        let timestamp = u64::from_be_bytes(timestamp.try_into().map_err(|_| bad())?);
        let signature = <[u8; 64]>::try_from(signature).map_err(|_| bad())?;
        if timestamp > MAX_TIMESTAMP {
            return Err(bad());
        }
        witnesses[w]
            .key
            .verify_strict(
                signed_message(body, timestamp).as_bytes(),
                &Signature::from_bytes(&signature),
            )
            .map_err(|_| bad())?;
        times[w] = Some(match times[w] {
            None => (timestamp, timestamp),
            Some((first, last)) => (first.min(timestamp), last.max(timestamp)),
        });
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::hash::Hash;
    use crate::note::NoteSigner;

    fn cosigner(name: &str, seed: u8) -> Cosigner {
        Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).expect("cosigner")
    }

    fn note() -> String {
        let log =
            NoteSigner::new("example.com/log", SigningKey::from_bytes(&[9; 32])).expect("log");
        Checkpoint::new("example.com/log/t1", 20, Hash([7; 32]), vec![])
            .expect("checkpoint")
            .sign(&log)
    }

    #[test]
    fn cosignatures_verify_by_their_own_key_and_time() {
        let (w1, w2, w3) = (cosigner("w1", 1), cosigner("w2", 2), cosigner("w3", 3));
        let note = note();
        let body = &note[..note.find("\n\n").expect("body") + 1];
        let mut cosigned = note.clone();
        cosigned.push_str(&w1.cosign(body, 1_700_000_000).expect("w1"));
        cosigned.push_str(&w2.cosign(body, 1_700_000_100).expect("w2"));
        let limits = Limits::default();
        let witnesses = [w1.verifier(), w2.verifier(), w3.verifier()];
        assert_eq!(
            cosignature_times(&cosigned, &witnesses, &limits),
            Ok(vec![Some(1_700_000_000), Some(1_700_000_100), None])
        );
        // The vkey names the type: a note key of the same name and seed is
        // another key id, and a cosignature vkey does not read as a note key.
        let vkey = w1.verifier().to_vkey();
        assert_eq!(CosignatureVerifier::from_vkey(&vkey), Ok(w1.verifier()));
        assert!(crate::note::NoteVerifier::from_vkey(&vkey).is_err());
        assert_eq!(
            Cosigner::from_skey(&w1.to_skey()).map(|c| c.verifier()),
            Ok(w1.verifier())
        );
    }

    #[test]
    fn an_altered_time_or_body_is_refused() {
        let w1 = cosigner("w1", 1);
        let note = note();
        let body = &note[..note.find("\n\n").expect("body") + 1];
        let line = w1.cosign(body, 1_700_000_000).expect("w1");
        // Move the timestamp by one second inside the signature blob.
        let b64 = line.trim_end().rsplit(' ').next().expect("blob");
        let mut blob = STANDARD.decode(b64).expect("base64");
        blob[11] ^= 1;
        let forged = format!("{SIG_PREFIX}w1 {}\n", STANDARD.encode(&blob));
        let limits = Limits::default();
        assert!(matches!(
            cosignature_times(&format!("{note}{forged}"), &[w1.verifier()], &limits),
            Err(NoteError::BadSignature { .. })
        ));
        // The same cosignature on another checkpoint.
        let other = note.replace("\n20\n", "\n21\n");
        assert!(cosignature_times(&format!("{other}{line}"), &[w1.verifier()], &limits).is_err());
        assert!(w1.cosign(body, u64::MAX).is_err());
    }
}
