//! One entry of a tenant's log, proven: found among the served entries and
//! checked to be included in a head signed with this machine's pinned log
//! key and, when the tenant's verified policy lists witnesses, cosigned by
//! as many of them as it asks. For commands that take a fact from the log
//! (a shell recording's digest) rather than from the server's rows, which
//! an owned server rewrites at will. The log key is the server's own, so
//! without witnesses an owned server could sign a rewritten history; the
//! witnesses cosign only heads that extend what they cosigned before.

use bulwark_translog::{CosignatureVerifier, cosignature_times};

use super::*;

/// An entry found and proven included in the head of `head_size`.
pub(crate) struct ProvenEntry {
    pub index: u64,
    pub leaf: AuditLeaf,
    pub head_size: u64,
    /// How many of the policy's witnesses cosigned that head (`None`: the
    /// policy lists none, and the head is the server's word alone).
    pub witnessed: Option<usize>,
}

/// The newest entry of `tenant`'s log that `want` picks, proven included
/// in a head checked with the pinned log key (pinned on first use): the
/// smallest stored head past it that the policy's witnesses cosigned, or
/// the head the server signs now if the policy lists no witnesses.
pub(crate) async fn newest_proven(
    session: &Session,
    tenant: &str,
    want: impl Fn(&AuditLeaf) -> bool,
) -> Result<ProvenEntry> {
    let base = format!("/api/v1/tenants/{}/log", path_segment(tenant)?);
    let key: LogKeyView = session.get("/api/v1/log/key").await?;
    let (verifier, _) = trusted_key(&key.vkey, None, Some(session.server()), false)?;
    let head: LogHeadView = session.get(&base).await?;
    let note = head
        .checkpoint
        .context("the server shows no signed head for the tenant's log")?
        .note;
    let limits = Limits::default();
    let current = verify_log_note(&note, &verifier, &limits)
        .map_err(|e| anyhow!("the log's head does not verify with the pinned log key: {e}"))?;
    let (index, bytes, leaf) = find_newest(session, &base, current.size(), want)
        .await?
        .with_context(|| {
            format!(
                "no such entry in tenant {tenant}'s log (size {})",
                current.size()
            )
        })?;
    let trust = crate::commands::trust::fetch_trust(session, tenant).await?;
    let witnessing = trust.policy.as_ref().and_then(|p| p.witnessing.as_ref());
    let (head, witnessed) = match witnessing {
        None => (current, None),
        Some(w) => {
            let keys = w.verifiers();
            let need = (w.threshold as usize).max(1);
            let mut from = index + 1;
            loop {
                let query = CheckpointsQuery {
                    from_size: Some(from),
                    limit: Some(PAGE),
                };
                let page: LogCheckpointsView =
                    get_query(session, &format!("{base}/checkpoints"), &query).await?;
                let notes: Vec<(u64, String)> = page
                    .checkpoints
                    .into_iter()
                    .map(|c| (c.size, c.note))
                    .collect();
                if let Some(found) = first_witnessed(&notes, index, &verifier, &keys, need)? {
                    break (found.0, Some(found.1));
                }
                match notes.last() {
                    Some((size, _)) if notes.len() == PAGE as usize => from = size + 1,
                    _ => bail!(
                        "entry {index} of tenant {tenant}'s log is in no head that {need} of the \
                         policy's witnesses cosigned yet: try again once they have, or run \
                         `bulwark audit verify --tenant {tenant}`"
                    ),
                }
            }
        }
    };
    let size = head.size();
    let proof = inclusion_proof(session, &base, index, size).await?;
    bulwark_translog::verify_inclusion(
        &bulwark_translog::leaf_hash(&bytes),
        index,
        size,
        &proof,
        head.root(),
    )
    .map_err(|e| anyhow!("entry {index} is not in the log's signed head of size {size}: {e}"))?;
    Ok(ProvenEntry {
        index,
        leaf,
        head_size: size,
        witnessed,
    })
}

/// The newest entry below `size` that `want` picks, newest page first.
async fn find_newest(
    session: &Session,
    base: &str,
    size: u64,
    want: impl Fn(&AuditLeaf) -> bool,
) -> Result<Option<(u64, Vec<u8>, AuditLeaf)>> {
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(u64::from(PAGE));
        let page = fetch_entries(session, base, start).await?;
        for (index, bytes) in page.into_iter().rev() {
            if index >= end || index < start {
                continue;
            }
            if let Ok(leaf) = AuditLeaf::decode(&bytes)
                && want(&leaf)
            {
                return Ok(Some((index, bytes, leaf)));
            }
        }
        end = start;
    }
    Ok(None)
}

/// Among stored heads (`(size, note)`, smallest first), the first past
/// entry `index` that verifies with the log key and carries cosignatures
/// of at least `need` of `witnesses`, with how many it carries. A head
/// that does not verify, or a cosignature line of a listed witness that
/// does not, is an error: the server altered what it stores.
fn first_witnessed(
    notes: &[(u64, String)],
    index: u64,
    log_key: &NoteVerifier,
    witnesses: &[CosignatureVerifier],
    need: usize,
) -> Result<Option<(Checkpoint, usize)>> {
    let limits = Limits::default();
    for (size, note) in notes {
        if *size <= index {
            continue;
        }
        let head = verify_log_note(note, log_key, &limits).map_err(|e| {
            anyhow!("the stored head of size {size} does not verify with the log key: {e}")
        })?;
        let times = cosignature_times(note, witnesses, &limits).map_err(|e| {
            anyhow!(
                "the stored head of size {size} carries a cosignature that does not verify: {e}"
            )
        })?;
        let cosigned = times.iter().flatten().count();
        if head.size() == *size && cosigned >= need {
            return Ok(Some((head, cosigned)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use bulwark_translog::{Cosigner, NoteSigner};
    use ed25519_dalek::SigningKey;

    use super::*;

    fn log() -> NoteSigner {
        NoteSigner::new("log.example", SigningKey::from_bytes(&[9; 32])).expect("log")
    }

    fn note(size: u64) -> String {
        Checkpoint::new("log.example/t1", size, Hash([size as u8; 32]), vec![])
            .expect("checkpoint")
            .sign_as_log(&log())
            .expect("signed")
    }

    fn cosigned(note: &str, by: &[&Cosigner]) -> String {
        let body = &note[..note.find("\n\n").expect("body") + 1];
        let mut out = note.to_owned();
        for c in by {
            out.push_str(&c.cosign(body, 1_000).expect("cosign"));
        }
        out
    }

    #[test]
    fn the_head_relied_on_is_past_the_entry_and_cosigned_enough() {
        let a = Cosigner::new("w.example/a", SigningKey::from_bytes(&[1; 32])).expect("a");
        let b = Cosigner::new("w.example/b", SigningKey::from_bytes(&[2; 32])).expect("b");
        let stranger = Cosigner::new("w.example/x", SigningKey::from_bytes(&[3; 32])).expect("x");
        let keys = [a.verifier(), b.verifier()];
        let log_key = log().verifier();
        let notes = vec![
            (5, cosigned(&note(5), &[&a, &b])),
            (8, cosigned(&note(8), &[&a, &stranger])),
            (9, cosigned(&note(9), &[&a, &b])),
        ];
        // Entry 6: the head of 5 does not hold it; 8 has one listed witness.
        let (head, count) = first_witnessed(&notes, 6, &log_key, &keys, 2)
            .expect("verifies")
            .expect("found");
        assert_eq!((head.size(), count), (9, 2));
        let (head, _) = first_witnessed(&notes, 6, &log_key, &keys, 1)
            .expect("verifies")
            .expect("found");
        assert_eq!(head.size(), 8);
        // Entry 9 is in none of them yet.
        assert!(
            first_witnessed(&notes, 9, &log_key, &keys, 1)
                .expect("verifies")
                .is_none()
        );
        // A stored head signed by another key is refused rather than
        // skipped; one listed under another size is not relied on.
        let other = NoteSigner::new("log.example", SigningKey::from_bytes(&[7; 32])).expect("k");
        let forged = Checkpoint::new("log.example/t1", 9, Hash([9; 32]), vec![])
            .expect("checkpoint")
            .sign_as_log(&other)
            .expect("signed");
        assert!(first_witnessed(&[(9, forged)], 6, &log_key, &keys, 1).is_err());
        assert!(
            first_witnessed(
                &[(12, cosigned(&note(9), &[&a, &b]))],
                6,
                &log_key,
                &keys,
                1
            )
            .expect("verifies")
            .is_none()
        );
    }
}
