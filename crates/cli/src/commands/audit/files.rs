//! Where a log is read from (the server or an export directory), and the
//! entry files of exports and archives.

use super::*;

/// Where the log comes from.
pub(super) enum Source {
    Online {
        session: Session,
        base: String,
        /// Entries below this were archived by the server (410 Gone).
        archived_below: u64,
        /// The server's compact range of `[0, archived_below)`.
        archived_frontier: Vec<Hash>,
        /// Archive directories supplying `[0, archived_below)`, in order.
        archives: Vec<EntryFile>,
    },
    Offline {
        dir: PathBuf,
        /// Its entries; when it holds none, `[n, n)` with `n` where they
        /// would start (the largest compact range it gives, or 0).
        entries: EntryFile,
        /// The compact range of the entries before the first one (from the
        /// checkpoint line of that size), when they do not start at 0.
        start: Option<Frontier>,
        /// An export (complete up to its newest head) or a server archive.
        kind: DirKind,
        /// The sizes of the checkpoint lines that give a compact range.
        frontiers: Vec<u64>,
        /// Where the export recorded that its entries start (`head.json`).
        recorded_start: Option<u64>,
        /// The largest size checkpoints.ndjson lists (the recorded head may
        /// be beyond it).
        listed_newest: u64,
    },
}

/// An `entries.ndjson` and the indices it holds, `[first, below)`.
#[derive(Debug, Clone)]
pub(super) struct EntryFile {
    pub(super) dir: PathBuf,
    pub(super) first: u64,
    pub(super) below: u64,
}

/// The index and leaf of one line of an `entries.ndjson`.
pub(super) fn decode_leaf(entry: &Value) -> Result<(u64, Vec<u8>)> {
    let index = entry["index"]
        .as_u64()
        .ok_or_else(|| anyhow!("an entry without an index: {entry}"))?;
    let leaf = entry["leaf"]
        .as_str()
        .ok_or_else(|| anyhow!("entry {index} has no leaf"))?;
    Ok((index, leaf_bytes(index, leaf)?))
}

/// A list of hashes in a file (`"hashes"` of a proof, `"frontier"` of a
/// checkpoint line): each standard base64 of 32 bytes.
pub(super) fn decode_hash_list(value: &Value) -> Result<Vec<Hash>> {
    value
        .as_array()
        .ok_or_else(|| anyhow!("a proof without hashes"))?
        .iter()
        .map(|h| decode_hash(h.as_str().unwrap_or_default()))
        .collect()
}

/// The entries of `dir/entries.ndjson`, one JSON value per non-blank
/// line, streamed; an unreadable or non-JSON line is an error naming it.
pub(super) fn entry_lines(dir: &Path) -> Result<impl Iterator<Item = Result<Value>>> {
    let path = dir.join("entries.ndjson");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(move |(n, line)| {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {} is not JSON", path.display(), n + 1))
        }))
}

impl EntryFile {
    /// Reads the first and last index of `dir/entries.ndjson`.
    pub(super) fn scan(dir: &Path) -> Result<Self> {
        let mut first = None;
        let mut last = None;
        for entry in entry_lines(dir)? {
            let index = entry?["index"]
                .as_u64()
                .with_context(|| format!("{}: an entry without an index", dir.display()))?;
            first.get_or_insert(index);
            last = Some(index);
        }
        let first = first.unwrap_or(0);
        Ok(Self {
            dir: dir.to_owned(),
            first,
            below: last.map_or(first, |l| l + 1),
        })
    }

    /// Feeds every entry of the file to `checker`; `Ok(Err)` at the first
    /// bad one.
    pub(super) fn feed(
        &self,
        checker: &mut Checker,
        bar: &indicatif::ProgressBar,
    ) -> Result<Result<(), Bad>> {
        for entry in entry_lines(&self.dir)? {
            let (index, leaf) = decode_leaf(&entry?)?;
            if let Err(bad) = checker.feed(index, &leaf) {
                return Ok(Err(bad));
            }
            if index % 1024 == 0 {
                bar.set_position(index);
            }
        }
        Ok(Ok(()))
    }

    /// Which entry below `head`'s size is not the one the signed tree holds,
    /// from the leaf hashes the file lists beside its entries (`"hash"`):
    /// [`pinpoint_by_leaf_hashes`], streamed. `start`: the compact range
    /// before the file's first entry. An entry without a listed hash (an
    /// older export) ends the search: [`Pinpoint::None`].
    pub(super) fn pinpoint(&self, head: &Checkpoint, start: Frontier) -> Result<Pinpoint> {
        let mut failure = None;
        let entries = entry_lines(&self.dir)?.map_while(|entry| {
            let listed = entry.and_then(|entry| {
                let (index, leaf) = decode_leaf(&entry)?;
                Ok(match entry.get("hash") {
                    Some(hash) if !hash.is_null() => {
                        Some((index, leaf, decode_hash(hash.as_str().unwrap_or_default())?))
                    }
                    _ => None,
                })
            });
            listed.unwrap_or_else(|e| {
                failure = Some(e);
                None
            })
        });
        let found = pinpoint_by_leaf_hashes(head, start, entries);
        failure.map_or(Ok(found), Err)
    }

    /// The leaves of `[from, below)` this file holds.
    pub(super) fn leaves(&self, from: u64, below: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for entry in read_ndjson(&self.dir.join("entries.ndjson"))? {
            let (index, leaf) = decode_leaf(&entry)?;
            if (from..below).contains(&index) {
                out.push((index, leaf));
            }
        }
        Ok(out)
    }
}

/// The compact range given on the checkpoint line of size `size` of an
/// export or archive (`"frontier"`), if any.
pub(super) fn frontier_of(dir: &Path, size: u64) -> Result<Option<Frontier>> {
    for line in read_ndjson(&dir.join("checkpoints.ndjson"))? {
        if line["size"].as_u64() == Some(size)
            && let Some(hashes) = line.get("frontier")
        {
            let frontier = Frontier::from_parts(size, decode_hash_list(hashes)?).map_err(|e| {
                anyhow!(
                    "{}: the compact range at size {size} is malformed: {e}",
                    dir.display()
                )
            })?;
            return Ok(Some(frontier));
        }
    }
    Ok(None)
}

pub(super) fn read_saved_head(path: &Path, key: &NoteVerifier) -> Result<Result<Checkpoint, Bad>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(
        verify_log_note(&text, key, &Limits::default()).map_err(|e| Bad {
            index: None,
            head_size: None,
            code: "bad_saved_head",
            message: format!(
                "the saved head {} is not a checkpoint signed by the log key: {e}",
                path.display()
            ),
        }),
    )
}

/// The `--archive` directories, checked to be of this key and to chain
/// from 0 up to at least `archived_below`, in order.
pub(super) fn archive_chain(
    dirs: &[PathBuf],
    vkey: &str,
    archived_below: u64,
) -> Result<Vec<EntryFile>> {
    let mut chain = Vec::new();
    for dir in dirs {
        let key = std::fs::read_to_string(dir.join("log.vkey"))
            .with_context(|| format!("reading {}", dir.join("log.vkey").display()))?;
        ensure!(
            key.trim() == vkey.trim(),
            "the archive {} is signed by another log key ({}), not the server's ({})",
            dir.display(),
            key.trim(),
            vkey.trim()
        );
        chain.push(EntryFile::scan(dir)?);
    }
    chain.sort_by_key(|a| a.first);
    let mut next = 0u64;
    for archive in &chain {
        ensure!(
            archive.first == next,
            "the archives do not follow each other: {} starts at entry {}, where entry {next} \
             was due",
            archive.dir.display(),
            archive.first
        );
        next = archive.below;
    }
    if !chain.is_empty() {
        ensure!(
            next >= archived_below,
            "the archives given hold entries 0 to {}, but the server archived entries up to {}: \
             pass the archive directories of the rest too",
            next.saturating_sub(1),
            archived_below.saturating_sub(1)
        );
    }
    Ok(chain)
}

pub(super) fn read_ndjson(path: &Path) -> Result<Vec<Value>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {} is not JSON", path.display(), n + 1))?,
        );
    }
    Ok(out)
}
