//! Retention with archives (RFD 0003, "Retention and archives").
//!
//! At start and then every [`RETENTION_INTERVAL`], for each log, the
//! entries whose own signed time is more than `retention_days` ago (a
//! prefix of the log: the archived part is always `[0, archived_below)`)
//! are
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
//!    and to the archived log itself ([`Store::prune_log_entries`]): its
//!    detail, `archived [0, below) root <hex>` (the whole archived prefix),
//!    lets the tenant's own auditor tell archived entries from deleted ones.
//!
//! Subtree hashes, heads and signed heads stay: every proof still works,
//! only leaf bytes leave. Which prefix may go is the pure
//! [`archivable_below`], over each entry's [`leaf_time`]: the time inside
//! the leaf bytes the tree commits to, never the `log_entries.at` column,
//! which whoever holds the database can change.

use bulwark_store::AuditAction;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_store::{AuditLeaf, LogEntry, NewAuditEvent, Store};
use bulwark_translog::{
    Checkpoint, Frontier, Hash, Limits, LogAuditor, NoteVerifier, check_extension, leaf_hash,
    verify_log_note,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::MIN_RETENTION_DAYS;
use crate::transparency_log::checkpoints::LogSigner;

/// How often the archiver looks for entries past their retention.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Most entries in one archive directory (a longer due prefix becomes
/// several consecutive directories).
pub const ARCHIVE_BATCH: u32 = 100_000;
/// Entries read at first from where a log's archived part ends (most runs
/// stop at the first entry, not yet due); each further page doubles, up to
/// [`MAX_PAGE`].
const FIRST_PAGE: u32 = 64;
const MAX_PAGE: u32 = 4096;
const DAY_MS: i64 = 86_400_000;

/// Entries signed before this time are past their retention.
/// `retention_days` below the minimum counts as the minimum.
pub fn retention_cutoff(retention_days: u32, now: i64) -> i64 {
    let days = i64::from(retention_days.max(MIN_RETENTION_DAYS));
    now.saturating_sub(days.saturating_mul(DAY_MS))
}

/// What retention knows of one entry's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafTime {
    /// The time inside the leaf bytes (an audit event leaf's `at`, unix
    /// milliseconds): the tree commits to it, and every signed head with it.
    Signed(i64),
    /// A leaf of a kind that carries no time. None exists yet (every leaf
    /// the server writes is an audit event leaf); such an entry goes only
    /// with a later entry whose signed time is due (see
    /// [`archivable_below`]).
    Untimed,
    /// A leaf this build cannot read, or whose bytes are not the ones the
    /// tree holds at its index: nothing at or past it may go.
    Unreadable(String),
}

/// The time an entry of `log_id` carries, from its leaf bytes alone: an
/// audit event leaf (version 1, canonical, of this log) whose bytes hash to
/// the leaf hash the tree holds at that index gives its `at`; anything else
/// is [`LeafTime::Unreadable`]. The entry's `at` column is not read.
pub fn leaf_time(log_id: &str, entry: &LogEntry) -> LeafTime {
    if leaf_hash(&entry.leaf) != entry.hash {
        return LeafTime::Unreadable(
            "its bytes are not the leaf the tree holds at this index".to_owned(),
        );
    }
    match AuditLeaf::decode(&entry.leaf) {
        Ok(leaf) if leaf.log_id() == log_id => LeafTime::Signed(leaf.at),
        Ok(leaf) => {
            LeafTime::Unreadable(format!("an audit event of another log ({})", leaf.log_id()))
        }
        Err(error) => LeafTime::Unreadable(format!("not an audit event leaf: {error}")),
    }
}

/// Why [`archivable_below`] stopped where it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The entries given ran out (later ones may be due too).
    End,
    /// The entry at this index is not due yet, by its signed time.
    NotDue(u64),
    /// The entry at this index is missing from those given.
    Missing(u64),
    /// The entry at this index cannot be read (why): nothing at or past it
    /// may go until it is repaired.
    Unreadable(u64, String),
}

/// What [`archivable_below`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archivable {
    /// Entries below this index may go.
    pub below: u64,
    pub stop: Stop,
}

/// The pure decision: how far a log's archived prefix may move. Given where
/// it ends now (`archived_below`) and the index and [`LeafTime`] of the
/// entries from there on in index order, the new end is past the longest
/// run of consecutive indices from `archived_below` that are due:
///
/// - an entry whose signed time is before [`retention_cutoff`] is due;
/// - an untimed entry is due only once a later entry of the run, with a
///   signed time, is due (it goes with it, never alone: trailing untimed
///   entries wait);
/// - an entry signed at or after the cutoff stops the run, even if later
///   ones are older (a clock that went back): the archived part stays a
///   prefix;
/// - a missing index or an unreadable leaf stops it too, and is reported.
///
/// Returns `archived_below` as `below` when nothing may go.
pub fn archivable_below(
    archived_below: u64,
    entries: &[(u64, LeafTime)],
    retention_days: u32,
    now: i64,
) -> Archivable {
    let cutoff = retention_cutoff(retention_days, now);
    let mut below = archived_below;
    let mut next = archived_below;
    for (idx, time) in entries {
        let stop = if *idx != next {
            Stop::Missing(next)
        } else {
            match time {
                LeafTime::Signed(at) if *at < cutoff => {
                    // Due, and so is every untimed entry before it.
                    below = idx + 1;
                    next = below;
                    continue;
                }
                LeafTime::Untimed => {
                    next = idx + 1;
                    continue;
                }
                LeafTime::Signed(_) => Stop::NotDue(*idx),
                LeafTime::Unreadable(why) => Stop::Unreadable(*idx, why.clone()),
            }
        };
        return Archivable { below, stop };
    }
    Archivable {
        below,
        stop: Stop::End,
    }
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

/// An entry that stopped a log's archiving because it cannot be trusted:
/// nothing at or past it is archived while it stays (logged as an error at
/// every run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub log_id: String,
    pub idx: u64,
    pub reason: String,
}

/// What one [`archive_due`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionRun {
    pub archived: Vec<Archived>,
    pub refused: Vec<Refused>,
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
                    // Refusals were logged as they were found.
                    Ok(run) => {
                        for a in &run.archived {
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

/// Reads the entries of `log_id` from `from` on, in growing pages, until
/// [`archivable_below`] stops or [`ARCHIVE_BATCH`] entries were read; returns
/// them and the decision over them.
async fn due_prefix(
    store: &Store,
    log_id: &str,
    from: u64,
    retention_days: u32,
    now: i64,
) -> Result<(Vec<LogEntry>, Archivable)> {
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut times: Vec<(u64, LeafTime)> = Vec::new();
    let mut page = FIRST_PAGE;
    loop {
        let want = page.min(ARCHIVE_BATCH - entries.len() as u32);
        let read = store
            .log_entries(log_id, from + entries.len() as u64, want)
            .await?;
        let short = read.len() < want as usize;
        times.extend(read.iter().map(|e| (e.idx, leaf_time(log_id, e))));
        entries.extend(read);
        let decision = archivable_below(from, &times, retention_days, now);
        if decision.stop != Stop::End || short || entries.len() >= ARCHIVE_BATCH as usize {
            return Ok((entries, decision));
        }
        page = page.saturating_mul(2).min(MAX_PAGE);
    }
}

/// Archives, verifies and prunes every log's entries past their retention
/// by the time signed inside each leaf ([`leaf_time`]; the `log_entries.at`
/// column is not read), but never an entry a configured SIEM sink
/// (`siem_sinks`, by name) has not acknowledged yet: a SIEM outage must not
/// lose what the archive removes from the database. An entry whose leaf
/// cannot be read, or is missing, stops its log there: it is logged as an
/// error and returned in [`RetentionRun::refused`].
pub async fn archive_due(
    signer: &LogSigner,
    store: &Store,
    data_dir: &Path,
    retention_days: u32,
    siem_sinks: &[String],
    now: i64,
) -> Result<RetentionRun> {
    let mut run = RetentionRun::default();
    for log_id in store.log_ids().await? {
        if !safe_log_id(&log_id) {
            tracing::error!(log = %log_id, "A log id unfit for a directory name: not archived.");
            continue;
        }
        loop {
            let Some(head) = store.log_head(&log_id).await? else {
                break;
            };
            let from = head.archived_below;
            let (entries, decision) = due_prefix(store, &log_id, from, retention_days, now).await?;
            let refused = match &decision.stop {
                Stop::Unreadable(idx, reason) => Some((*idx, reason.clone())),
                // A later entry was read, so this one was deleted.
                Stop::Missing(idx) => {
                    Some((*idx, "the entry is missing from the database".to_owned()))
                }
                _ => None,
            };
            if let Some((idx, reason)) = refused {
                tracing::error!(
                    log = %log_id, index = idx, reason = %reason,
                    "A log entry cannot be trusted: nothing at or past it is archived."
                );
                run.refused.push(Refused {
                    log_id: log_id.clone(),
                    idx,
                    reason,
                });
            }
            let mut below = decision.below;
            for sink in siem_sinks {
                below = below.min(store.siem_cursor(sink, &log_id).await?);
            }
            if below <= from {
                break;
            }
            let entries = &entries[..(below - from) as usize];
            let dir = archive_range(signer, store, data_dir, &log_id, entries, now)
                .await
                .with_context(|| format!("archiving entries {from}..{below} of log {log_id}"))?;
            // The whole archived prefix, not only this run's range: the
            // record of an earlier run may itself be archived by now, and the
            // newest record must still cover everything below it.
            let detail = bulwark_api::log::archived_detail(
                0,
                below,
                &store.log_root_at(&log_id, below).await?,
            );
            let event = |tenant: Option<&str>| {
                NewAuditEvent::new(now, "server", AuditAction::LogArchived, &log_id)
                    .in_tenant(tenant)
                    .with_detail(format!(
                        "{detail} (this run: entries {from}..{}, older than {retention_days} days, to {})",
                        below - 1,
                        dir.display()
                    ))
            };
            // In the MSP log for the MSP, and in the archived log itself,
            // so that its own auditor (who cannot read the MSP log) can tell
            // archived entries from deleted ones.
            let mut events = vec![event(None)];
            if log_id != bulwark_store::MSP_LOG {
                events.push(event(Some(&log_id)));
            }
            store
                .prune_log_entries(&log_id, from, below, &events)
                .await
                .with_context(|| format!("pruning entries {from}..{below} of log {log_id}"))?;
            run.archived.push(Archived {
                log_id: log_id.clone(),
                from,
                below,
                dir,
            });
            // Only a full batch, all due, may be followed by more.
            if decision.stop != Stop::End || entries.len() < ARCHIVE_BATCH as usize {
                break;
            }
        }
    }
    Ok(run)
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
        let head = verify_log_note(note, key, &limits).map_err(|e| anyhow!("a bad head: {e}"))?;
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

    fn signed(entries: &[(u64, i64)]) -> Vec<(u64, LeafTime)> {
        entries
            .iter()
            .map(|&(idx, at)| (idx, LeafTime::Signed(at)))
            .collect()
    }

    fn below(archived_below: u64, entries: &[(u64, LeafTime)], days: u32, now: i64) -> u64 {
        archivable_below(archived_below, entries, days, now).below
    }

    #[test]
    fn only_a_prefix_signed_before_the_retention_may_go() {
        let old = NOW - days(400);
        let new = NOW - days(10);
        // Nothing due.
        let none = archivable_below(0, &signed(&[(0, new), (1, new)]), 365, NOW);
        assert_eq!(
            none,
            Archivable {
                below: 0,
                stop: Stop::NotDue(0)
            }
        );
        assert_eq!(
            archivable_below(0, &[], 365, NOW),
            Archivable {
                below: 0,
                stop: Stop::End
            }
        );
        // The old prefix.
        assert_eq!(
            archivable_below(
                0,
                &signed(&[(0, old), (1, old), (2, new), (3, old)]),
                365,
                NOW
            ),
            Archivable {
                below: 2,
                stop: Stop::NotDue(2)
            },
            "an entry not yet due stops the prefix, even if later ones are older"
        );
        // From where the archived part ends; a missing index stops it.
        assert_eq!(
            archivable_below(5, &signed(&[(5, old), (6, old)]), 365, NOW),
            Archivable {
                below: 7,
                stop: Stop::End
            }
        );
        assert_eq!(
            archivable_below(5, &signed(&[(6, old), (7, old)]), 365, NOW),
            Archivable {
                below: 5,
                stop: Stop::Missing(5)
            }
        );
        assert_eq!(
            archivable_below(5, &signed(&[(5, old), (7, old)]), 365, NOW),
            Archivable {
                below: 6,
                stop: Stop::Missing(6)
            }
        );
        // Exactly at the cutoff is not past it.
        let cutoff = NOW - days(365);
        assert_eq!(
            below(0, &signed(&[(0, cutoff - 1), (1, cutoff)]), 365, NOW),
            1
        );
    }

    #[test]
    fn an_unreadable_leaf_lets_nothing_past_it_go() {
        let old = NOW - days(400);
        let bad = LeafTime::Unreadable("not an audit event leaf".to_owned());
        let entries = [
            (0, LeafTime::Signed(old)),
            (1, bad.clone()),
            (2, LeafTime::Signed(old)),
        ];
        assert_eq!(
            archivable_below(0, &entries, 365, NOW),
            Archivable {
                below: 1,
                stop: Stop::Unreadable(1, "not an audit event leaf".to_owned())
            }
        );
        assert_eq!(
            below(0, &[(0, bad), (1, LeafTime::Signed(old))], 365, NOW),
            0
        );
    }

    #[test]
    fn an_untimed_leaf_goes_only_with_a_later_signed_one() {
        let old = NOW - days(400);
        let new = NOW - days(10);
        let u = || LeafTime::Untimed;
        let s = LeafTime::Signed;
        // Between two due entries: it goes.
        assert_eq!(
            below(0, &[(0, s(old)), (1, u()), (2, u()), (3, s(old))], 365, NOW),
            4
        );
        // Followed by nothing (yet): it waits.
        assert_eq!(
            archivable_below(0, &[(0, s(old)), (1, u()), (2, u())], 365, NOW),
            Archivable {
                below: 1,
                stop: Stop::End
            }
        );
        // Followed by an entry not yet due, a gap or an unreadable leaf: it
        // stays.
        assert_eq!(below(0, &[(0, u()), (1, s(new))], 365, NOW), 0);
        assert_eq!(below(0, &[(0, u()), (2, s(old))], 365, NOW), 0);
        let bad = LeafTime::Unreadable("x".to_owned());
        assert_eq!(below(0, &[(0, u()), (1, bad)], 365, NOW), 0);
        assert_eq!(below(0, &[(0, u()), (1, u())], 365, NOW), 0);
    }

    #[test]
    fn the_retention_never_goes_below_the_minimum() {
        let at = NOW - days(100);
        assert_eq!(below(0, &signed(&[(0, at)]), 30, NOW), 0);
        assert_eq!(below(0, &signed(&[(0, at)]), 0, NOW), 0);
        assert_eq!(
            retention_cutoff(0, NOW),
            NOW - days(i64::from(MIN_RETENTION_DAYS))
        );
        let at = NOW - days(181);
        assert_eq!(below(0, &signed(&[(0, at)]), 180, NOW), 1);
        // No overflow at the edges of time.
        assert_eq!(retention_cutoff(u32::MAX, i64::MIN), i64::MIN);
        assert_eq!(below(0, &signed(&[(0, i64::MIN)]), u32::MAX, 0), 1);
        assert_eq!(below(0, &signed(&[(0, i64::MIN)]), u32::MAX, i64::MIN), 0);
    }

    fn entry(idx: u64, leaf: Vec<u8>) -> LogEntry {
        LogEntry {
            idx,
            hash: leaf_hash(&leaf),
            leaf,
            // The column: never read.
            at: i64::MIN,
        }
    }

    #[test]
    fn the_time_is_read_from_the_leaf_the_tree_holds() {
        let log = "4f8c7f1e-0000-4000-8000-000000000001";
        let leaf = |tenant: Option<&str>| {
            AuditLeaf::new(NOW, tenant.map(str::to_owned), "a", "b", "c", "").encode()
        };
        assert_eq!(
            leaf_time(log, &entry(3, leaf(Some(log)))),
            LeafTime::Signed(NOW)
        );
        assert_eq!(
            leaf_time("msp", &entry(3, leaf(None))),
            LeafTime::Signed(NOW)
        );
        let unreadable = |time: LeafTime| matches!(time, LeafTime::Unreadable(_));
        // Not an audit event leaf, or one of another log.
        assert!(unreadable(leaf_time(log, &entry(3, b"entry 3".to_vec()))));
        assert!(unreadable(leaf_time(log, &entry(3, leaf(None)))));
        assert!(unreadable(leaf_time("msp", &entry(3, leaf(Some(log))))));
        // Bytes that are not the ones the tree holds at the index.
        let mut swapped = entry(3, leaf(Some(log)));
        swapped.leaf = AuditLeaf::new(0, Some(log.to_owned()), "a", "b", "c", "").encode();
        assert!(unreadable(leaf_time(log, &swapped)));
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
