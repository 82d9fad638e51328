//! Signed notes (C2SP `signed-note`, as Go's `golang.org/x/mod/sumdb/note`
//! writes them), with Ed25519 signatures.
//!
//! ```text
//! <text, ending in a newline>
//!
//! — <key name> <base64(4-byte key ID || 64-byte Ed25519 signature)>
//! ```
//!
//! The signature covers the text including its final newline. The key ID is
//! the first four bytes, big-endian, of
//! `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)`, 0x01 being the
//! signature type of Ed25519. Keys travel in Go's text forms: the verifier
//! key `<name>+<hex key ID>+<base64(0x01 || public key)>` and the signer key
//! `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Limits;

/// The signature type byte of Ed25519 in the signed-note spec.
pub const SIG_TYPE_ED25519: u8 = 0x01;

pub(crate) const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note (or a key, or a checkpoint body) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error("the note exceeds a limit: {0}")]
    TooLarge(&'static str),
    #[error("the note contains a control character other than newline")]
    ControlCharacter,
    #[error("the note has no blank line separating the text from its signatures")]
    NoSignatureBlock,
    #[error("the note has no signature lines")]
    NoSignatures,
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine { line: usize, reason: &'static str },
    #[error("key name {0:?} is not valid: it must be non-empty, without spaces or '+'")]
    BadKeyName(String),
    #[error("the signature of trusted key {name} does not verify: the note was altered")]
    BadSignature { name: String },
    #[error("the note carries no signature from the trusted key {name} ({key_id:08x})")]
    NoTrustedSignature { name: String, key_id: u32 },
    #[error("the key is malformed: {0}")]
    MalformedKey(&'static str),
    #[error("the note text is malformed: {0}")]
    MalformedText(&'static str),
    #[error("the checkpoint is malformed: {0}")]
    MalformedCheckpoint(&'static str),
}

/// The signed-note key ID of an Ed25519 key.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    typed_key_id(SIG_TYPE_ED25519, name, key)
}

/// The key ID of `key` under signature type `sig_type` (0x01 a note
/// signature, 0x04 a witness cosignature).
pub(crate) fn typed_key_id(sig_type: u8, name: &str, key: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Key names (and checkpoint origins used as key names) are non-empty and
/// hold neither Unicode spaces nor '+'.
pub(crate) fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name.contains('+')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(NoteError::BadKeyName(name.to_owned()));
    }
    Ok(())
}

/// Note texts are non-empty, end in a newline and hold no control character but newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::MalformedText("it must end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::ControlCharacter);
    }
    Ok(())
}

/// `<name>+<8 hex digits>+<base64(type || 32 bytes)>`: a key as Go writes it.
pub(crate) fn key_text(sig_type: u8, name: &str, id: u32, key: &[u8; 32]) -> String {
    let mut raw = vec![sig_type];
    raw.extend_from_slice(key);
    format!("{name}+{id:08x}+{}", STANDARD.encode(raw))
}

/// Parses `<name>+<8 hex digits>+<base64(type || 32 bytes)>` of signature
/// type `sig_type`; the caller checks the key ID.
pub(crate) fn parse_key_text(
    sig_type: u8,
    text: &str,
) -> Result<(String, u32, [u8; 32]), NoteError> {
    let (name, rest) = text
        .split_once('+')
        .ok_or(NoteError::MalformedKey("expected <name>+<key id>+<key>"))?;
    let (id_hex, material) = rest
        .split_once('+')
        .ok_or(NoteError::MalformedKey("expected <name>+<key id>+<key>"))?;
    check_key_name(name)?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey("the key id must be 8 hex digits"));
    }
    let id = u32::from_str_radix(id_hex, 16)
        .map_err(|_| NoteError::MalformedKey("the key id must be 8 hex digits"))?;
    let raw = STANDARD
        .decode(material)
        .map_err(|_| NoteError::MalformedKey("the key is not base64"))?;
    let Some((_, key)) = raw.split_first().filter(|(t, _)| **t == sig_type) else {
        return Err(NoteError::MalformedKey("not a key of this signature type"));
    };
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::MalformedKey("an Ed25519 key is 32 bytes"))?;
    Ok((name.to_owned(), id, key))
}

/// A named Ed25519 key that signs notes (the log's checkpoint key).
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: u32,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.id)
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let id = key_id(name, &key.verifying_key());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// Parses Go's signer key text, `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey(
                "a signer key starts with PRIVATE+KEY+",
            ))?;
        let (name, id, seed) = parse_key_text(SIG_TYPE_ED25519, rest)?;
        let signer = Self::new(&name, SigningKey::from_bytes(&seed))?;
        if signer.id != id {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// This key in Go's signer key text form (what [`Self::from_skey`]
    /// reads): a secret, to be stored like one.
    pub fn to_skey(&self) -> String {
        let key = key_text(SIG_TYPE_ED25519, &self.name, self.id, self.key.as_bytes());
        format!("PRIVATE+KEY+{key}")
    }

    /// The same key under another name: a log signs each log's heads
    /// under its origin, as C2SP asks ([`crate::checkpoint::Checkpoint::sign_as_log`]).
    pub fn renamed(&self, name: &str) -> Result<Self, NoteError> {
        Self::new(name, self.key.clone())
    }

    /// The verifier for this key.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// Signs `text` (non-empty, ending in a newline) and returns the whole note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(self.sign_checked(text))
    }

    /// Precondition: `text` passed [`check_text`].
    pub(crate) fn sign_checked(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.id.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        )
    }
}

/// A named Ed25519 public key trusted to sign notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    id: u32,
}

impl NoteVerifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &key),
            key,
        })
    }

    /// Parses Go's verifier key text, `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_key_text(SIG_TYPE_ED25519, vkey)?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 public key"))?;
        let verifier = Self::new(&name, key)?;
        if verifier.id != id {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        Ok(verifier)
    }

    /// The same key under another name (see [`NoteSigner::renamed`]).
    pub fn renamed(&self, name: &str) -> Result<Self, NoteError> {
        Self::new(name, self.key)
    }

    /// This key in Go's verifier key text form, for other tooling.
    pub fn to_vkey(&self) -> String {
        key_text(SIG_TYPE_ED25519, &self.name, self.id, self.key.as_bytes())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }
}

/// Opens a signed note: checks its syntax strictly and within `limits`, and
/// that it carries a valid signature of `verifier`'s key and no invalid one.
/// Returns the text (with its final newline). Signatures by other keys are
/// ignored, as the spec requires.
pub fn open_note<'a>(
    note: &'a str,
    verifier: &NoteVerifier,
    limits: &Limits,
) -> Result<&'a str, NoteError> {
    let (text, lines) = split_note(note, limits)?;
    let mut verified = 0usize;
    for (i, line) in lines.iter().enumerate() {
        let (name, id, blob) = parse_signature_line(i + 1, line, limits)?;
        // 7. Ignore unknown keys; a known key's signature must verify.
        if name != verifier.name || id != verifier.id {
            continue;
        }
        let signature = <[u8; 64]>::try_from(&blob[4..]).map_err(|_| NoteError::BadSignature {
            name: name.to_owned(),
        })?;
        verifier
            .key
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| NoteError::BadSignature {
                name: name.to_owned(),
            })?;
        verified += 1;
    }
    // 8. At least one signature from the trusted key.
    if verified == 0 {
        return Err(NoteError::NoTrustedSignature {
            name: verifier.name.clone(),
            key_id: verifier.id,
        });
    }
    Ok(text)
}

/// A note's text (with its final newline) and its signature lines, checked
/// for syntax within `limits` (steps 1 to 4 of [`open_note`]).
pub(crate) fn split_note<'a>(
    note: &'a str,
    limits: &Limits,
) -> Result<(&'a str, Vec<&'a str>), NoteError> {
    // 1. Caps first, before any work proportional to the input.
    if note.len() > limits.max_note_bytes {
        return Err(NoteError::TooLarge("note bytes"));
    }
    if note.bytes().filter(|&b| b == b'\n').count() > limits.max_note_lines {
        return Err(NoteError::TooLarge("note lines"));
    }
    // 2. UTF-8 (a &str) without ASCII control characters other than newline.
    if note.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter);
    }
    // 3. The text ends at the last blank line; it keeps its final newline.
    let split = note.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    // 4. One or more signature lines, each ending in a newline.
    if signatures.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    let Some(signatures) = signatures.strip_suffix('\n') else {
        return Err(NoteError::MalformedSignatureLine {
            line: signatures.split('\n').count(),
            reason: "the last signature line does not end with a newline",
        });
    };
    let lines: Vec<&str> = signatures.split('\n').collect();
    if lines.len() > limits.max_note_signatures {
        return Err(NoteError::TooLarge("signatures"));
    }
    Ok((text, lines))
}

/// One signature line, `— <key name> <base64(key ID || signature)>`
/// (steps 5 and 6 of [`open_note`]): the name, the key ID and the bytes
/// after it.
pub(crate) fn parse_signature_line<'a>(
    line_no: usize,
    line: &'a str,
    limits: &Limits,
) -> Result<(&'a str, u32, Vec<u8>), NoteError> {
    let malformed = |reason| NoteError::MalformedSignatureLine {
        line: line_no,
        reason,
    };
    // 5. `— <key name> <base64 signature>`.
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or_else(|| malformed("it does not start with an em dash and a space"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| malformed("expected a key name, a space and a signature"))?;
    if name.len() > limits.max_origin_bytes {
        return Err(NoteError::TooLarge("key name"));
    }
    check_key_name(name)?;
    let blob = STANDARD
        .decode(b64)
        .map_err(|_| malformed("the signature is not base64"))?;
    // 6. Four bytes of key ID, then at least one byte of signature.
    if blob.len() < 5 {
        return Err(malformed("the signature is too short"));
    }
    let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
    Ok((name, id, blob))
}
