//! `add-checkpoint` (C2SP tlog-witness): the request body and the decision
//! whether to cosign. Pure: the state and the log key come in, the answer
//! goes out; storage, the clock and HTTP are the caller's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_translog::Limits;
use bulwark_translog::checkpoint::{Checkpoint, verify_log_note};
use bulwark_translog::hash::Hash;
use bulwark_translog::note::{NoteError, NoteVerifier};
use bulwark_translog::proof::verify_consistency;

/// The spec's cap on consistency proof lines.
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body taken: the proof lines and a checkpoint note.
pub fn max_body_bytes(limits: &Limits) -> usize {
    64 + MAX_PROOF_LINES * 46 + limits.max_note_bytes
}

/// A parsed request: the size the client believes this witness holds for
/// the log, the consistency proof from there, and the checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    pub note: String,
}

/// The last checkpoint this witness cosigned for a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosigned {
    pub size: u64,
    pub root: Hash,
}

/// Why a checkpoint is not cosigned, with the status the spec gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the body is not a request, or `old` is above the checkpoint's size.
    BadRequest(String),
    /// 403: no valid signature of the log's key (or a bad one by it).
    Forbidden(String),
    /// 404: this witness does not follow that origin.
    UnknownOrigin(String),
    /// 409: `old` is not what this witness holds; the body is its size.
    Conflict { size: u64 },
    /// 422: the checkpoint does not extend what this witness cosigned.
    Inconsistent(String),
    /// 423 (a Bulwark rule, RFD 0006): the log's tenant is frozen by its
    /// customer and the grace has passed; nothing of it is cosigned until a
    /// root-signed unfreeze. Not 403 or 409, which the spec gives other
    /// meanings (a 409 body is read as a size).
    Frozen(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent(_) => 422,
            Refusal::Frozen(_) => 423,
        }
    }

    /// The answer's body: the size for a 409 (`text/x.tlog.size`), else a
    /// sentence for people.
    pub fn body(&self) -> String {
        match self {
            Refusal::Conflict { size } => format!("{size}\n"),
            Refusal::BadRequest(m)
            | Refusal::Forbidden(m)
            | Refusal::UnknownOrigin(m)
            | Refusal::Inconsistent(m)
            | Refusal::Frozen(m) => format!("{m}\n"),
        }
    }
}

fn bad(message: &str) -> Refusal {
    Refusal::BadRequest(message.to_owned())
}

/// Parses a request body strictly: `old <decimal>`, 0 to 63 lines of a
/// base64 hash, an empty line, the checkpoint note.
pub fn parse_request(body: &[u8], limits: &Limits) -> Result<Request, Refusal> {
    if body.len() > max_body_bytes(limits) {
        return Err(bad("the request is too large"));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("the request is not UTF-8"))?;
    let (old_line, rest) = text
        .split_once('\n')
        .ok_or_else(|| bad("the request has no old size line"))?;
    let old = old_line
        .strip_prefix("old ")
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    if old.is_empty()
        || !old.bytes().all(|b| b.is_ascii_digit())
        || (old.len() > 1 && old.starts_with('0'))
    {
        return Err(bad("the old size is not a decimal without leading zeroes"));
    }
    let old_size = old
        .parse()
        .map_err(|_| bad("the old size does not fit in 64 bits"))?;
    // No proof: the empty line comes at once (the note holds blank lines
    // of its own, so this is looked at before searching for one).
    let (proof_text, note) = rest
        .strip_prefix('\n')
        .map(|n| ("", n))
        .or_else(|| rest.split_once("\n\n"))
        .ok_or_else(|| bad("no empty line between the proof and the checkpoint"))?;
    let mut proof = Vec::new();
    if !proof_text.is_empty() {
        for line in proof_text.split('\n') {
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 consistency proof lines"));
            }
            let hash = STANDARD
                .decode(line)
                .ok()
                .and_then(|h| Hash::try_from(h.as_slice()).ok())
                .ok_or_else(|| bad("a proof line is not the base64 of 32 bytes"))?;
            proof.push(hash);
        }
    }
    Ok(Request {
        old_size,
        proof,
        note: note.to_owned(),
    })
}

/// The checkpoint's origin line, to find the log before anything is checked.
pub fn origin(note: &str) -> Result<&str, Refusal> {
    note.split_once('\n')
        .map(|(origin, _)| origin)
        .filter(|origin| !origin.is_empty())
        .ok_or_else(|| bad("the checkpoint has no origin line"))
}

/// Whether to cosign `request`'s checkpoint for a log signed by `log_key`,
/// given what this witness last cosigned for it (`None`: never). The
/// checkpoint returned is the one to record and cosign; anything else is
/// refused without a change.
pub fn check(
    request: &Request,
    log_key: &NoteVerifier,
    cosigned: Option<&Cosigned>,
    limits: &Limits,
) -> Result<Checkpoint, Refusal> {
    let checkpoint = verify_log_note(&request.note, log_key, limits).map_err(|e| match e {
        NoteError::BadSignature { .. } | NoteError::NoTrustedSignature { .. } => {
            Refusal::Forbidden(e.to_string())
        }
        other => Refusal::BadRequest(other.to_string()),
    })?;
    let size = checkpoint.size();
    if request.old_size > size {
        return Err(bad("the old size is above the checkpoint's size"));
    }
    let held = cosigned.map_or(0, |c| c.size);
    if request.old_size != held {
        return Err(Refusal::Conflict { size: held });
    }
    let inconsistent = |m: String| Err(Refusal::Inconsistent(m));
    if size == 0 && *checkpoint.root() != Hash::empty_tree() {
        return inconsistent("a checkpoint of size 0 must have the empty tree's root".into());
    }
    match cosigned {
        None | Some(Cosigned { size: 0, .. }) if !request.proof.is_empty() => {
            inconsistent("no proof is taken from size 0".into())
        }
        None | Some(Cosigned { size: 0, .. }) => Ok(checkpoint),
        Some(held) => match verify_consistency(
            held.size,
            size,
            &held.root,
            checkpoint.root(),
            &request.proof,
        ) {
            Ok(()) => Ok(checkpoint),
            Err(e) => inconsistent(format!(
                "not consistent with the checkpoint of size {} cosigned before: {e}",
                held.size
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_translog::hash::{leaf_hash, root_of_leaf_hashes as root_of};
    use bulwark_translog::note::NoteSigner;
    use bulwark_translog::proof::{ProofError, consistency_proof};
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "log.example/acme";

    fn log() -> NoteSigner {
        NoteSigner::new("log.example", SigningKey::from_bytes(&[4; 32])).expect("log key")
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// The RFC 9162 consistency proof between two sizes of `leaves`.
    fn proof_of(leaves: &[Hash], old: u64, new: u64) -> Vec<Hash> {
        consistency_proof::<ProofError>(old, new, |node| {
            let first = usize::try_from(node.first_leaf()).expect("small");
            Ok(root_of(&leaves[first..first + (1usize << node.level)]))
        })
        .expect("proof")
    }

    fn note(leaves: &[Hash]) -> String {
        Checkpoint::new(ORIGIN, leaves.len() as u64, root_of(leaves), vec![])
            .expect("checkpoint")
            .sign(&log())
    }

    fn body(old: u64, proof: &[Hash], note: &str) -> Vec<u8> {
        let mut body = format!("old {old}\n");
        for h in proof {
            body.push_str(&STANDARD.encode(h.0));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        body.into_bytes()
    }

    #[test]
    fn a_log_that_grows_is_cosigned_and_a_fork_or_rollback_is_not() {
        let limits = Limits::default();
        let key = log().verifier();
        let all = leaves(20);
        let first = parse_request(&body(0, &[], &note(&all[..8])), &limits).expect("parses");
        let at8 = check(&first, &key, None, &limits).expect("first checkpoint");
        let held = Cosigned {
            size: 8,
            root: *at8.root(),
        };

        let proof = proof_of(&all, 8, 20);
        let grown = parse_request(&body(8, &proof, &note(&all)), &limits).expect("parses");
        assert_eq!(
            check(&grown, &key, Some(&held), &limits).map(|c| c.size()),
            Ok(20)
        );

        // A fork: twenty other leaves, a proof from size 8 that cannot hold.
        let mut forked = all.clone();
        forked[3] = leaf_hash(b"rewritten");
        let fork = parse_request(&body(8, &proof, &note(&forked)), &limits).expect("parses");
        assert!(matches!(
            check(&fork, &key, Some(&held), &limits),
            Err(Refusal::Inconsistent(_))
        ));
        // A smaller tree: old is above the checkpoint.
        let back = parse_request(&body(8, &[], &note(&all[..5])), &limits).expect("parses");
        assert_eq!(
            check(&back, &key, Some(&held), &limits).map_err(|r| r.status()),
            Err(400)
        );
        // The same size with another root.
        let same = parse_request(&body(8, &[], &note(&forked[..8])), &limits).expect("parses");
        assert_eq!(
            check(&same, &key, Some(&held), &limits).map_err(|r| r.status()),
            Err(422)
        );
        // An old size this witness does not hold: 409 with the size it holds.
        let stale = parse_request(&body(0, &[], &note(&all)), &limits).expect("parses");
        assert_eq!(
            check(&stale, &key, Some(&held), &limits),
            Err(Refusal::Conflict { size: 8 })
        );
        assert_eq!(Refusal::Conflict { size: 8 }.body(), "8\n");
        // Another key's checkpoint.
        let other = NoteSigner::new("log.example", SigningKey::from_bytes(&[5; 32])).expect("key");
        let foreign = Checkpoint::new(ORIGIN, 20, root_of(&all), vec![])
            .expect("cp")
            .sign(&other);
        let foreign = parse_request(&body(8, &proof, &foreign), &limits).expect("parses");
        assert_eq!(
            check(&foreign, &key, Some(&held), &limits).map_err(|r| r.status()),
            Err(403)
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let limits = Limits::default();
        let n = note(&leaves(2));
        for bad_body in [
            "".to_owned(),
            format!("old 01\n\n{n}"),
            format!("old -1\n\n{n}"),
            format!("old 1\nnot base64\n\n{n}"),
            format!("new 1\n\n{n}"),
            format!("old 1\n{n}"),
        ] {
            assert!(
                parse_request(bad_body.as_bytes(), &limits).is_err(),
                "{bad_body:?}"
            );
        }
        let too_many: Vec<Hash> = leaves(64);
        assert!(parse_request(&body(1, &too_many, &n), &limits).is_err());
        let empty_proof_from_zero =
            parse_request(&body(0, &leaves(1), &n), &limits).expect("parses");
        assert_eq!(
            check(&empty_proof_from_zero, &log().verifier(), None, &limits).map_err(|r| r.status()),
            Err(422)
        );
    }
}
