//! The client workflow around [`TrustedSet`]: which documents to ask for,
//! in which order, under which names, and what to keep. The caller does
//! the I/O through [`Repository`] (the agent: its state directory and the
//! server's mirror; tests: a directory python-tuf wrote).

use crate::metadata::{RoleName, TargetFile};
use crate::trusted::TrustedSet;
use crate::{Error, Limits};

/// Where documents come from and where trusted ones are kept.
pub trait Repository {
    /// The remote document at `path` (relative to the metadata root, e.g.
    /// `2.root.json`, `timestamp.json`, `7.snapshot.json`), at most
    /// `max_len` bytes. `Ok(None)`: the repository has no such document
    /// (404/403), which ends the search for newer roots.
    fn fetch(&mut self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, Error>;
    /// The document of `role` this client stored earlier, if any.
    fn stored(&mut self, role: RoleName) -> Option<Vec<u8>>;
    /// Keeps a trusted document of `role` (replacing the previous one).
    fn store(&mut self, role: RoleName, bytes: &[u8]) -> Result<(), Error>;
}

/// Starts from the stored root (or `initial_root`, compiled in, the first
/// time), then brings root, timestamp, snapshot and targets up to date as
/// TUF's client workflow says. Returns the trusted set, from which
/// [`TrustedSet::target`] reads release files.
pub fn refresh(
    initial_root: &[u8],
    repo: &mut impl Repository,
    limits: Limits,
    now: i64,
) -> Result<TrustedSet, Error> {
    let root = repo
        .stored(RoleName::Root)
        .unwrap_or_else(|| initial_root.to_vec());
    let mut set = TrustedSet::new(&root, limits)?;
    let max_rotations = set.limits().root_rotations;
    for _ in 0..max_rotations {
        let next = set.root().doc.version + 1;
        let path = format!("{next}.root.json");
        let Some(bytes) = repo.fetch(&path, RoleName::Root.max_len(set.limits()))? else {
            break;
        };
        set.update_root(&bytes)?;
        repo.store(RoleName::Root, &bytes)?;
    }

    // A stored timestamp only guards against rollback; if it no longer
    // verifies (keys rotated) or expired, it is simply not used.
    if let Some(stored) = repo.stored(RoleName::Timestamp) {
        let _ = set.update_timestamp(&stored, now);
    }
    let max = RoleName::Timestamp.max_len(set.limits());
    let bytes = repo
        .fetch("timestamp.json", max)?
        .ok_or(Error::Missing("timestamp.json"))?;
    if set.update_timestamp(&bytes, now)? {
        repo.store(RoleName::Timestamp, &bytes)?;
    } else if set.timestamp().is_some_and(|t| t.doc.is_expired(now)) {
        return Err(Error::Expired("timestamp"));
    }

    // A stored snapshot that is still the one the timestamp names is used
    // as it is; otherwise the named one is fetched.
    let stored_ok = repo
        .stored(RoleName::Snapshot)
        .is_some_and(|stored| set.update_snapshot(&stored, now, true).is_ok());
    if !stored_ok {
        let meta = set
            .timestamp()
            .map(|t| t.doc.signed.snapshot.clone())
            .ok_or(Error::Order("a snapshot before the timestamp"))?;
        let max = meta
            .length
            .unwrap_or(RoleName::Snapshot.max_len(set.limits()));
        let path = if set.root().doc.signed.consistent_snapshot {
            format!("{}.snapshot.json", meta.version)
        } else {
            "snapshot.json".to_owned()
        };
        let bytes = repo
            .fetch(&path, max)?
            .ok_or(Error::Missing("snapshot.json"))?;
        set.update_snapshot(&bytes, now, false)?;
        repo.store(RoleName::Snapshot, &bytes)?;
    }

    let stored_ok = repo
        .stored(RoleName::Targets)
        .is_some_and(|stored| set.update_targets(&stored, now, true).is_ok());
    if !stored_ok {
        let meta = set
            .snapshot()
            .and_then(|s| s.doc.signed.meta.get("targets.json").cloned())
            .ok_or(Error::Missing("targets.json in the snapshot"))?;
        let max = meta
            .length
            .unwrap_or(RoleName::Targets.max_len(set.limits()));
        let path = if set.root().doc.signed.consistent_snapshot {
            format!("{}.targets.json", meta.version)
        } else {
            "targets.json".to_owned()
        };
        let bytes = repo
            .fetch(&path, max)?
            .ok_or(Error::Missing("targets.json"))?;
        set.update_targets(&bytes, now, false)?;
        repo.store(RoleName::Targets, &bytes)?;
    }
    Ok(set)
}

/// Where a target file is, relative to the targets root: with consistent
/// snapshots, one name per hash (`dir/<sha256>.name`), so a mirror can
/// never serve one file under another's name mid-release.
pub fn target_path(set: &TrustedSet, name: &str, file: &TargetFile) -> String {
    if !set.root().doc.signed.consistent_snapshot {
        return name.to_owned();
    }
    let hash = file
        .hashes
        .get("sha256")
        .or_else(|| file.hashes.values().next())
        .cloned()
        .unwrap_or_default();
    match name.rsplit_once('/') {
        Some((dir, base)) => format!("{dir}/{hash}.{base}"),
        None => format!("{hash}.{name}"),
    }
}

/// Checks downloaded target bytes against what the targets role signed.
pub fn check_target(name: &str, file: &TargetFile, bytes: &[u8]) -> Result<(), Error> {
    if file.hashes.is_empty() {
        return Err(Error::Mismatch(format!("{name}: signed with no hash")));
    }
    crate::metadata::check_length_and_hashes(name, bytes, Some(file.length), Some(&file.hashes))
}
