//! Online, which entry a signed head does not hold: each entry's inclusion
//! proof from the server, checked against the head.

use super::*;

/// Which entry of `from..head.size()` is not in the signed head: each
/// entry's inclusion proof from the server, checked against the head.
pub(super) async fn pinpoint_online(
    session: &Session,
    base: &str,
    archives: &[EntryFile],
    head: &Checkpoint,
    from: u64,
) -> Result<Bad> {
    let size = head.size();
    let mut leaves: Vec<(u64, Vec<u8>, Vec<Hash>)> = Vec::new();
    let mut next = from;
    // Archived entries from the archives (their proofs still come from the
    // server, which keeps every subtree hash).
    for archive in archives {
        if archive.below <= next || archive.first >= size {
            continue;
        }
        for (index, leaf) in archive.leaves(next, size)? {
            let proof = inclusion_proof(session, base, index, size).await?;
            leaves.push((index, leaf, proof));
            next = index + 1;
        }
    }
    while next < size {
        let page = fetch_entries(session, base, next).await?;
        if page.is_empty() {
            break;
        }
        for (index, leaf) in page {
            if index >= size {
                break;
            }
            next = index + 1;
            let proof = inclusion_proof(session, base, index, size).await?;
            leaves.push((index, leaf, proof));
        }
    }
    let found = pinpoint(
        head,
        leaves
            .iter()
            .map(|(i, l, p)| (*i, l.as_slice(), p.as_slice())),
    );
    Ok(match found {
        Pinpoint::Entry(index) => Bad::changed_entry(index, size),
        Pinpoint::Head => Bad {
            index: Some(from),
            head_size: Some(size),
            code: "forged_head",
            message: format!(
                "no entry from {from} to {} is in the signed tree head of size {size}: that \
                 head was not made from this log (a second, forked tree head for size {size}), \
                 or every one of those entries was changed",
                size - 1
            ),
        },
        Pinpoint::None => Bad {
            index: Some(from),
            head_size: Some(size),
            code: "root_mismatch",
            message: format!(
                "entries {from} to {} do not give the root of the signed tree head of size \
                 {size}, yet each is included in it: entries were removed or inserted",
                size - 1
            ),
        },
    })
}
