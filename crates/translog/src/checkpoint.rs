//! Signed tree heads as C2SP checkpoints (`tlog-checkpoint`), and the check
//! an agent or auditor runs between two of them.
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <base64 root hash>
//! [extension lines]
//! ```
//!
//! signed as a note (see [`crate::note`]) by the log's key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Limits;
use crate::hash::Hash;
use crate::note::{NoteError, NoteSigner, NoteVerifier, open_note};
use crate::proof::{ProofError, verify_consistency};

/// A tree head: the log `origin` had `size` entries with root hash `root`.
/// Made through [`Checkpoint::new`] or [`verify_note`], so its body is
/// always well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

fn check_line(line: &str, what: &'static str) -> Result<(), NoteError> {
    if line.is_empty() {
        return Err(NoteError::MalformedCheckpoint(what));
    }
    if line.chars().any(char::is_control) {
        return Err(NoteError::ControlCharacter);
    }
    Ok(())
}

impl Checkpoint {
    /// Checks the origin (non-empty, no control characters, no leading or
    /// trailing whitespace) and extension lines (non-empty, no control
    /// characters). Sizes are checked by [`verify_note`]'s `Limits`.
    pub fn new(
        origin: impl Into<String>,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<Self, NoteError> {
        let origin = origin.into();
        check_line(&origin, "the origin line is empty")?;
        if origin.trim() != origin {
            return Err(NoteError::MalformedCheckpoint(
                "the origin has leading or trailing whitespace",
            ));
        }
        for e in &extensions {
            check_line(e, "an extension line is empty")?;
        }
        Ok(Self {
            origin,
            size,
            root,
            extensions,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n`, then one line per extension.
    pub fn to_note_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root.0)
        );
        for e in &self.extensions {
            body.push_str(e);
            body.push('\n');
        }
        body
    }

    /// The full signed note, as Go's `note.Sign` would write it.
    pub fn sign(&self, signer: &NoteSigner) -> String {
        // The body is well formed by construction (see `new`): non-empty
        // lines without control characters, ending in a newline.
        signer.sign_checked(&self.to_note_body())
    }

    /// The full signed note as a log's head: signed by `log_key` under the
    /// checkpoint's origin (`<log key name>/<log id>`), the key name C2SP
    /// asks a checkpoint's signature to have.
    pub fn sign_as_log(&self, log_key: &NoteSigner) -> Result<String, NoteError> {
        Ok(self.sign(&log_key.renamed(&self.origin)?))
    }

    /// Parses a checkpoint body strictly (the text of an opened note).
    pub fn parse_body(text: &str, limits: &Limits) -> Result<Self, NoteError> {
        // 1. At least three non-empty lines, each ending in a newline.
        let Some(text) = text.strip_suffix('\n') else {
            return Err(NoteError::MalformedCheckpoint(
                "the body does not end with a newline",
            ));
        };
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::MalformedCheckpoint(
                "the body needs an origin, a size and a root hash line",
            ));
        };
        // 2. Origin: non-empty, within limits.
        if origin.len() > limits.max_origin_bytes {
            return Err(NoteError::TooLarge("origin"));
        }
        // 3. Size: ASCII decimal, no sign, no leading zeros (except "0"), fits u64.
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NoteError::MalformedCheckpoint(
                "the size is not a decimal number",
            ));
        }
        if size.len() > 1 && size.starts_with('0') {
            return Err(NoteError::MalformedCheckpoint("the size has leading zeros"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| NoteError::MalformedCheckpoint("the size does not fit in 64 bits"))?;
        // 4. Root: canonical standard base64 of exactly 32 bytes.
        let root = STANDARD
            .decode(root)
            .map_err(|_| NoteError::MalformedCheckpoint("the root hash is not base64"))?;
        let root = Hash::try_from(root.as_slice())
            .map_err(|_| NoteError::MalformedCheckpoint("the root hash is not 32 bytes"))?;
        // 5. Extension lines, if any: non-empty (and the origin rules of `new`).
        let extensions = lines.map(str::to_owned).collect();
        Self::new(origin, size, root, extensions)
    }
}

/// Opens a log's head signed with the log key `log_key` (named `<name>`):
/// the origin must be `<name>/<log id>`, and the signature is looked for
/// under the origin as key name ([`Checkpoint::sign_as_log`]), or, for
/// heads signed before this server did so, under `<name>` (the same key).
pub fn verify_log_note(
    note: &str,
    log_key: &NoteVerifier,
    limits: &Limits,
) -> Result<Checkpoint, NoteError> {
    let origin = note.split('\n').next().unwrap_or_default();
    if origin.len() > limits.max_origin_bytes {
        return Err(NoteError::TooLarge("origin"));
    }
    if !origin
        .strip_prefix(log_key.name())
        .is_some_and(|log_id| log_id.len() > 1 && log_id.starts_with('/'))
    {
        return Err(NoteError::MalformedCheckpoint(
            "the origin is not <log key name>/<log id>",
        ));
    }
    match verify_note(note, &log_key.renamed(origin)?, limits) {
        Err(NoteError::NoTrustedSignature { .. }) => verify_note(note, log_key, limits),
        opened => opened,
    }
}

/// Opens a checkpoint note signed by `verifier`'s key (see
/// [`crate::note::open_note`]) and parses its body.
pub fn verify_note(
    note: &str,
    verifier: &NoteVerifier,
    limits: &Limits,
) -> Result<Checkpoint, NoteError> {
    let text = open_note(note, verifier, limits)?;
    Checkpoint::parse_body(text, limits)
}

/// Why a new tree head does not extend an old one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    #[error("the checkpoints are of different logs ({old:?} and {new:?})")]
    OriginMismatch { old: String, new: String },
    #[error("the log shrank from {old} to {new} entries: it was truncated or rolled back")]
    Shrunk { old: u64, new: u64 },
    #[error("an empty tree's root must be SHA-256 of nothing")]
    BadEmptyRoot,
    #[error("the new tree head does not extend the old one: {0}")]
    NotAnExtension(#[from] ProofError),
}

/// What an agent or auditor runs before accepting `new` after `old` (both
/// already verified with [`verify_note`]): same log, no fewer entries, and
/// `proof` shows `old`'s tree is a prefix of `new`'s. A forked, truncated or
/// rewritten log fails here.
pub fn check_extension(
    old: &Checkpoint,
    new: &Checkpoint,
    proof: &[Hash],
) -> Result<(), ExtensionError> {
    // 1. The same log.
    if old.origin != new.origin {
        return Err(ExtensionError::OriginMismatch {
            old: old.origin.clone(),
            new: new.origin.clone(),
        });
    }
    // 2. Never fewer entries.
    if new.size < old.size {
        return Err(ExtensionError::Shrunk {
            old: old.size,
            new: new.size,
        });
    }
    // 3. Every tree extends the empty tree: nothing to prove, but an empty
    //    tree has exactly one root.
    if old.size == 0 {
        if old.root != Hash::empty_tree() || (new.size == 0 && new.root != old.root) {
            return Err(ExtensionError::BadEmptyRoot);
        }
        if !proof.is_empty() {
            return Err(ProofError::TooManyHashes.into());
        }
        return Ok(());
    }
    // 4. The consistency proof (equal sizes: empty proof, equal roots).
    verify_consistency(old.size, new.size, &old.root, &new.root, proof)?;
    Ok(())
}
