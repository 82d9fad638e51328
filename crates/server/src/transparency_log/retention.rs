//! Retention with archives (RFD 0003, "Retention and archives").
//!
//! At start and then every [`RETENTION_INTERVAL`], for each log, the
//! entries appended more than `retention_days` ago (a prefix of the log:
//! the archived part is always `[0, archived_below)`) are
//!
//! 1. written to `data_dir/archive/<log id>/<first>-<last>/` in the export
//!    format (`log.vkey`, `entries.ndjson`, `checkpoints.ndjson` with a
//!    signed head at exactly the range's end and the log's latest head,
//!    `proofs.ndjson`, `README.txt`; a range that does not start at 0 also
//!    carries, on its starting head, the compact range of the entries
//!    before it), every file and the directory fsynced;
//! 2. read back and verified with [`LogAuditor`] against the signed head at
//!    the range's end, and the consistency proof from it to the latest;
//! 3. only then removed from `log_entries`, in the transaction that moves
//!    the log's `archived_below` and appends `log.archived` to the MSP log
//!    ([`Store::prune_log_entries`]).
//!
//! Subtree hashes, heads and signed heads stay: every proof still works,
//! only leaf bytes leave. Which prefix may go is the pure
//! [`archivable_below`].

use bulwark_store::AuditAction;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_store::{LogEntry, NewAuditEvent, Store};
use bulwark_translog::{
    Checkpoint, Frontier, Hash, Limits, LogAuditor, NoteVerifier, check_extension, verify_note,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::transparency_log::checkpoints::LogSigner;
use crate::config::MIN_RETENTION_DAYS;

/// How often the archiver looks for entries past their retention.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Most entries in one archive directory (a longer due prefix becomes
/// several consecutive directories).
pub const ARCHIVE_BATCH: u32 = 100_000;
const DAY_MS: i64 = 86_400_000;

/// Entries appended before this time are past their retention.
/// `retention_days` below the minimum counts as the minimum.
pub fn retention_cutoff(retention_days: u32, now: i64) -> i64 {
    let days = i64::from(retention_days.max(MIN_RETENTION_DAYS));
    now.saturating_sub(days.saturating_mul(DAY_MS))
}

/// The pure decision: how far a log's archived prefix may move. Given where
/// it ends now (`archived_below`) and the (index, append time) of the
/// entries from there on in index order, the new end is past the longest
/// run of consecutive indices from `archived_below` all appended before
/// [`retention_cutoff`]. An entry not yet due (or a missing index) stops the
/// run, even if later ones are older (a clock that went back): the archived
/// part stays a prefix. Returns `archived_below` when nothing may go.
pub fn archivable_below(
    archived_below: u64,
    entries: &[(u64, i64)],
    retention_days: u32,
    now: i64,
) -> u64 {
    let cutoff = retention_cutoff(retention_days, now);
    let mut below = archived_below;
    for &(idx, at) in entries {
        if idx != below || at >= cutoff {
            break;
        }
        below += 1;
    }
    below
}

/// One archive written and pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub log_id: String,
    /// Entries `[from, below)`.
    pub from: u64,
    pub below: u64,
    pub dir: PathBuf,
}

/// Runs [`archive_due`] at start and every [`RETENTION_INTERVAL`] until
/// shutdown.
pub async fn archive_old_entries(
    signer: Arc<LogSigner>,
    store: Store,
    data_dir: PathBuf,
    retention_days: u32,
    siem_sinks: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    // A long run (a large backlog at first start) delays the next, never
    // bunches runs up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let started = Instant::now();
                match archive_due(&signer, &store, &data_dir, retention_days, &siem_sinks, crate::now_millis()).await {
                    Ok(done) => {
                        for a in &done {
                            tracing::info!(
                                log = %a.log_id, from = a.from, below = a.below,
                                dir = %a.dir.display(), seconds = started.elapsed().as_secs_f64(),
                                "Archived log entries past their retention."
                            );
                        }
                    }
                    Err(error) => tracing::error!(error = format!("{error:#}"), "Archiving failed; nothing was removed."),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// A log id usable as a directory name (tenant UUIDs and `msp` are).
fn safe_log_id(log_id: &str) -> bool {
    !log_id.is_empty()
        && log_id.len() <= 64
        && log_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Archives, verifies and prunes every log's entries past their retention,
/// but never an entry a configured SIEM sink (`siem_sinks`, by name) has
/// not acknowledged yet: a SIEM outage must not lose what the archive
/// removes from the database.
pub async fn archive_due(
    signer: &LogSigner,
    store: &Store,
    data_dir: &Path,
    retention_days: u32,
    siem_sinks: &[String],
    now: i64,
) -> Result<Vec<Archived>> {
    let cutoff = retention_cutoff(retention_days, now);
    let mut done = Vec::new();
    for log_id in store.log_ids().await? {
        if !safe_log_id(&log_id) {
            tracing::error!(log = %log_id, "A log id unfit for a directory name: not archived.");
            continue;
        }
        loop {
            let Some(candidates) = store
                .archive_candidates(&log_id, cutoff, ARCHIVE_BATCH)
                .await?
            else {
                break;
            };
            let times: Vec<(u64, i64)> = candidates.entries.iter().map(|e| (e.idx, e.at)).collect();
            let from = candidates.archived_below;
            let mut below = archivable_below(from, &times, retention_days, now);
            for sink in siem_sinks {
                below = below.min(store.siem_cursor(sink, &log_id).await?);
            }
            if below <= from {
                break;
            }
            let entries = &candidates.entries[..(below - from) as usize];
            let dir = archive_range(signer, store, data_dir, &log_id, entries, now)
                .await
                .with_context(|| format!("archiving entries {from}..{below} of log {log_id}"))?;
            let event = NewAuditEvent::new(now, "server", AuditAction::LogArchived, &log_id)
                .with_detail(format!(
                    "entries {from}..{} (older than {retention_days} days) archived to {}",
                    below - 1,
                    dir.display()
                ));
            store
                .prune_log_entries(&log_id, from, below, &event)
                .await
                .with_context(|| format!("pruning entries {from}..{below} of log {log_id}"))?;
            done.push(Archived {
                log_id: log_id.clone(),
                from,
                below,
                dir,
            });
            if candidates.entries.len() < ARCHIVE_BATCH as usize {
                break;
            }
        }
    }
    Ok(done)
}

/// The archive's files, as written and as read back.
struct ArchiveFiles {
    vkey: String,
    /// (size, note, compact range of the entries before it if given).
    checkpoints: Vec<(u64, String, Option<Vec<String>>)>,
    proofs: Vec<(u64, u64, Vec<String>)>,
}

/// Writes entries `entries` (consecutive, `[from, below)`) of `log_id` to
/// `data_dir/archive/<log id>/<from>-<below - 1>/` and verifies what was
/// written; returns the directory.
async fn archive_range(
    signer: &LogSigner,
    store: &Store,
    data_dir: &Path,
    log_id: &str,
    entries: &[LogEntry],
    now: i64,
) -> Result<PathBuf> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        bail!("nothing to archive");
    };
    let (from, below) = (first.idx, last.idx + 1);
    // The heads: at the range's start (when it is not 0), at its end, and
    // the latest.
    let end = signer.sign_head_at(store, log_id, below, now).await?;
    let latest = signer
        .sign_head(store, log_id, now)
        .await?
        .ok_or_else(|| anyhow!("the log has no head"))?;
    let mut checkpoints = Vec::new();
    let mut proofs = Vec::new();
    if from > 0 {
        let start = signer.sign_head_at(store, log_id, from, now).await?;
        let frontier = store.log_frontier_at(log_id, from).await?;
        checkpoints.push((
            from,
            start.note,
            Some(frontier.iter().map(|h| B64.encode(h)).collect()),
        ));
        let proof = store.consistency_proof(log_id, from, below).await?;
        proofs.push((from, below, proof.iter().map(|h| B64.encode(h)).collect()));
    }
    checkpoints.push((below, end.note, None));
    if latest.size > below {
        let proof = store.consistency_proof(log_id, below, latest.size).await?;
        proofs.push((
            below,
            latest.size,
            proof.iter().map(|h| B64.encode(h)).collect(),
        ));
        checkpoints.push((latest.size, latest.note, None));
    }
    let files = ArchiveFiles {
        vkey: signer.vkey(),
        checkpoints,
        proofs,
    };
    let dir = data_dir
        .join("archive")
        .join(log_id)
        .join(format!("{from}-{}", below - 1));
    let entries = entries.to_vec();
    let verifier = signer.verifier();
    let origin = signer.origin(log_id);
    let written = dir.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        write_archive(&written, &files, &entries)?;
        verify_archive(&written, &verifier, &origin, from, below)
    })
    .await
    .context("the archive writer stopped")??;
    Ok(dir)
}

fn write_synced(path: &Path, contents: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    contents(&mut out)?;
    let file = out
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {}", path.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory {}", dir.display()))
}

/// Writes the archive into `<dir>.tmp`, syncs it, and renames it to `dir`
/// (replacing a directory left by a run that crashed before its prune
/// committed: the database still holds those entries).
fn write_archive(dir: &Path, files: &ArchiveFiles, entries: &[LogEntry]) -> Result<()> {
    let parent = dir.parent().context("an archive directory has a parent")?;
    crate::datadir::create_private_dir(parent)?;
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    crate::datadir::create_private_dir(&tmp)?;
    write_synced(&tmp.join("log.vkey"), |out| {
        Ok(writeln!(out, "{}", files.vkey.trim())?)
    })?;
    write_synced(&tmp.join("entries.ndjson"), |out| {
        for e in entries {
            writeln!(
                out,
                "{}",
                json!({"index": e.idx, "leaf": B64.encode(&e.leaf), "at": e.at, "hash": B64.encode(e.hash.0)})
            )?;
        }
        Ok(())
    })?;
    write_synced(&tmp.join("checkpoints.ndjson"), |out| {
        for (size, note, frontier) in &files.checkpoints {
            let mut line = json!({"size": size, "note": note});
            if let Some(frontier) = frontier {
                line["frontier"] = json!(frontier);
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    })?;
    write_synced(&tmp.join("proofs.ndjson"), |out| {
        for (from, to, hashes) in &files.proofs {
            writeln!(out, "{}", json!({"from": from, "to": to, "hashes": hashes}))?;
        }
        Ok(())
    })?;
    write_synced(&tmp.join("README.txt"), |out| {
        Ok(out.write_all(ARCHIVE_README.as_bytes())?)
    })?;
    sync_dir(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    sync_dir(parent)
}

fn read_lines(path: &Path) -> Result<Vec<Value>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if !line.trim().is_empty() {
            out.push(
                serde_json::from_str(&line)
                    .with_context(|| format!("{} line {} is not JSON", path.display(), n + 1))?,
            );
        }
    }
    Ok(out)
}

fn hashes(value: &Value) -> Result<Vec<Hash>> {
    value
        .as_array()
        .context("hashes are not a list")?
        .iter()
        .map(|h| {
            let bytes = B64
                .decode(h.as_str().unwrap_or_default())
                .context("a hash is not base64")?;
            Hash::try_from(bytes.as_slice()).map_err(|_| anyhow!("a hash is not 32 bytes"))
        })
        .collect()
}

/// Reads the archive in `dir` back and checks it: the key, every head
/// signed by it and of this log, entries exactly `[from, below)` replayed
/// (from the compact range on the starting head when `from > 0`) to the
/// signed root at `below`, and every consistency proof.
fn verify_archive(
    dir: &Path,
    key: &NoteVerifier,
    origin: &str,
    from: u64,
    below: u64,
) -> Result<()> {
    let vkey = std::fs::read_to_string(dir.join("log.vkey"))?;
    ensure!(vkey.trim() == key.to_vkey(), "log.vkey is not the log key");
    let limits = Limits::default();
    let mut heads: Vec<Checkpoint> = Vec::new();
    let mut start = Frontier::new();
    for line in read_lines(&dir.join("checkpoints.ndjson"))? {
        let note = line["note"]
            .as_str()
            .context("a checkpoint without a note")?;
        let head = verify_note(note, key, &limits).map_err(|e| anyhow!("a bad head: {e}"))?;
        ensure!(head.origin() == origin, "a head of another log");
        ensure!(
            Some(head.size()) == line["size"].as_u64(),
            "a head listed with the wrong size"
        );
        if let Some(frontier) = line.get("frontier") {
            start = Frontier::from_parts(head.size(), hashes(frontier)?)
                .map_err(|e| anyhow!("the compact range at {}: {e}", head.size()))?;
        }
        heads.push(head);
    }
    ensure!(start.size() == from, "the archive does not start at {from}");
    for line in read_lines(&dir.join("proofs.ndjson"))? {
        let (a, b) = (line["from"].as_u64(), line["to"].as_u64());
        let old = heads.iter().find(|h| Some(h.size()) == a);
        let new = heads.iter().find(|h| Some(h.size()) == b);
        let (Some(old), Some(new)) = (old, new) else {
            bail!("a proof between sizes that are not signed heads");
        };
        check_extension(old, new, &hashes(&line["hashes"])?)
            .map_err(|e| anyhow!("heads {a:?} and {b:?} are not consistent: {e}"))?;
    }
    let covered: Vec<Checkpoint> = heads
        .iter()
        .filter(|h| h.size() <= below)
        .cloned()
        .collect();
    ensure!(
        covered.iter().any(|h| h.size() == below),
        "no signed head at the archive's end {below}"
    );
    let mut auditor = LogAuditor::resume(&covered, None, start)
        .map_err(|p| anyhow!("the archive's start: {p}"))?;
    for line in read_lines(&dir.join("entries.ndjson"))? {
        let index = line["index"]
            .as_u64()
            .context("an entry without an index")?;
        let leaf = B64
            .decode(line["leaf"].as_str().unwrap_or_default())
            .with_context(|| format!("entry {index}: the leaf is not base64"))?;
        auditor
            .push(index, &leaf)
            .map_err(|p| anyhow!("read back: {p}"))?;
    }
    let summary = auditor.finish().map_err(|p| anyhow!("read back: {p}"))?;
    ensure!(
        summary.size == below,
        "the archive ends at {}",
        summary.size
    );
    Ok(())
}

/// The README of an archive directory.
pub const ARCHIVE_README: &str = "\
Bulwark transparency log archive
================================

This directory holds entries of one Bulwark transparency log (RFD 0003,
\"Retention and archives\") that were older than the server's retention
period. The server wrote them here, verified them, and only then removed
their leaf bytes from its database; it keeps the hash of every subtree and
every signed tree head, so proofs about these entries still work.

The name of the directory is <first index>-<last index>. The format is that
of `bulwark audit export` (see its README and RFD 0003, \"Export format\"):

log.vkey           The log key (Go signed-note verifier key).
entries.ndjson     The archived entries, in index order:
                   {\"index\": N, \"leaf\": \"<base64>\", \"at\": <unix ms>,
                    \"hash\": \"<base64>\"} (hash: the tree's leaf hash there)
checkpoints.ndjson Signed tree heads, smallest first: one at exactly the end
                   of the archived range, and the log's latest when the
                   archive was written. When the range does not start at 0,
                   the head at its start comes first and carries
                   \"frontier\": the base64 hashes of the complete subtrees
                   covering the entries before it (largest first), whose
                   fold is that head's root.
proofs.ndjson      RFC 9162 consistency proofs between consecutive heads.

Verify it
---------
Offline, this directory alone (entries against the signed head at its end,
heads against each other):

    bulwark audit verify --from DIR [--log-key VKEY]

A whole log, the archived part from archives and the rest from the server:

    bulwark audit verify --tenant T --archive DIR [--archive DIR2 ...]
";

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn days(n: i64) -> i64 {
        n * DAY_MS
    }

    #[test]
    fn only_a_prefix_older_than_the_retention_may_go() {
        let old = NOW - days(400);
        let new = NOW - days(10);
        // Nothing due.
        assert_eq!(archivable_below(0, &[(0, new), (1, new)], 365, NOW), 0);
        assert_eq!(archivable_below(0, &[], 365, NOW), 0);
        // The old prefix.
        assert_eq!(
            archivable_below(0, &[(0, old), (1, old), (2, new), (3, old)], 365, NOW),
            2,
            "an entry not yet due stops the prefix, even if later ones are older"
        );
        // From where the archived part ends; a missing index stops it.
        assert_eq!(archivable_below(5, &[(5, old), (6, old)], 365, NOW), 7);
        assert_eq!(archivable_below(5, &[(6, old), (7, old)], 365, NOW), 5);
        assert_eq!(archivable_below(5, &[(5, old), (7, old)], 365, NOW), 6);
        // Exactly at the cutoff is not past it.
        let cutoff = NOW - days(365);
        assert_eq!(
            archivable_below(0, &[(0, cutoff - 1), (1, cutoff)], 365, NOW),
            1
        );
    }

    #[test]
    fn the_retention_never_goes_below_the_minimum() {
        let at = NOW - days(100);
        assert_eq!(archivable_below(0, &[(0, at)], 30, NOW), 0);
        assert_eq!(archivable_below(0, &[(0, at)], 0, NOW), 0);
        assert_eq!(
            retention_cutoff(0, NOW),
            NOW - days(i64::from(MIN_RETENTION_DAYS))
        );
        let at = NOW - days(181);
        assert_eq!(archivable_below(0, &[(0, at)], 180, NOW), 1);
        // No overflow at the edges of time.
        assert_eq!(retention_cutoff(u32::MAX, i64::MIN), i64::MIN);
        assert_eq!(archivable_below(0, &[(0, i64::MIN)], u32::MAX, 0), 1);
        assert_eq!(archivable_below(0, &[(0, i64::MIN)], u32::MAX, i64::MIN), 0);
    }

    #[test]
    fn log_ids_as_directory_names() {
        assert!(safe_log_id("msp"));
        assert!(safe_log_id("4f8c7f1e-0000-4000-8000-000000000001"));
        assert!(!safe_log_id("../x"));
        assert!(!safe_log_id(""));
        assert!(!safe_log_id("a/b"));
    }
}
