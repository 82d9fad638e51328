//! One entry of a tenant's log, proven: found among the served entries and
//! checked to be included in a head signed with this machine's pinned log
//! key. For commands that take a fact from the log (a shell recording's
//! digest) rather than from the server's rows, which an owned server
//! rewrites at will.

use super::*;

/// An entry found and proven included in the signed head of `head_size`.
pub(crate) struct ProvenEntry {
    pub index: u64,
    pub leaf: AuditLeaf,
    pub head_size: u64,
}

/// The newest entry of `tenant`'s log that `want` picks, proven included
/// in the head the server signs now (checked with the pinned log key; the
/// key is pinned on first use).
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
    let checkpoint = verify_log_note(&note, &verifier, &Limits::default())
        .map_err(|e| anyhow!("the log's head does not verify with the pinned log key: {e}"))?;
    let size = checkpoint.size();
    let mut end = size;
    // Newest first, a page at a time.
    while end > 0 {
        let start = end.saturating_sub(u64::from(PAGE));
        let page = fetch_entries(session, &base, start).await?;
        for (index, bytes) in page.iter().rev() {
            if *index >= end || *index < start {
                continue;
            }
            let Ok(leaf) = AuditLeaf::decode(bytes) else {
                continue;
            };
            if !want(&leaf) {
                continue;
            }
            let proof = inclusion_proof(session, &base, *index, size).await?;
            bulwark_translog::verify_inclusion(
                &bulwark_translog::leaf_hash(bytes),
                *index,
                size,
                &proof,
                checkpoint.root(),
            )
            .map_err(|e| {
                anyhow!("entry {index} is not in the log's signed head of size {size}: {e}")
            })?;
            return Ok(ProvenEntry {
                index: *index,
                leaf,
                head_size: size,
            });
        }
        end = start;
    }
    bail!("no such entry in tenant {tenant}'s log (size {size})")
}
