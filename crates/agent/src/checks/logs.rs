//! The log-pattern probe (RFD 0009): how many lines appended to a file
//! since the last run match a regular expression.
//!
//! The file is followed by offset, per check: the first run starts at the
//! end (history is not counted), a new file at the path (rotation: another
//! inode) is read from its start, and so is one shorter than the offset
//! (truncation). Each run reads at most [`MAX_READ`] bytes, so a flood is
//! counted over several runs instead of stalling the agent; only complete
//! lines count. The pattern (from the signed policy) is compiled with
//! size limits. Offsets live in memory: a restarted agent starts again at
//! the end.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::sync::{Mutex, PoisonError};

use regex::bytes::{Regex, RegexBuilder};

use super::probes::Measurement;

/// Most bytes read in one run.
pub const MAX_READ: u64 = 8 * 1024 * 1024;
/// Largest compiled pattern and lazy DFA.
const MAX_PATTERN_BYTES: usize = 1024 * 1024;

/// Where a check left its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    dev: u64,
    ino: u64,
    offset: u64,
}

/// Every log-pattern check's position.
#[derive(Debug, Default)]
pub struct Follower {
    positions: Mutex<HashMap<String, Position>>,
}

pub fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_BYTES)
        .dfa_size_limit(MAX_PATTERN_BYTES)
        .build()
        .map_err(|e| format!("the pattern does not compile: {e}"))
}

/// Counts the complete lines of `bytes` matching `regex`: the count and
/// the bytes consumed (up to the last newline; all of `bytes` when it holds
/// none and is `MAX_READ` long, a line too long to wait for).
pub fn count_lines(bytes: &[u8], regex: &Regex, full_read: bool) -> (u64, usize) {
    let consumed = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if full_read => bytes.len(),
        None => 0,
    };
    let count = bytes[..consumed]
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty() && regex.is_match(line))
        .count() as u64;
    (count, consumed)
}

impl Follower {
    /// Keeps only the positions of `names` (the current policy's checks).
    pub fn keep_only(&self, names: &[&str]) {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| names.contains(&name.as_str()));
    }

    /// One run of check `name`: new matching lines in `path`.
    pub fn scan(&self, name: &str, path: &str, pattern: &str) -> Measurement {
        let regex = compile(pattern)?;
        let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        let previous = self
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied();
        let (start, note) = match previous {
            None => {
                self.remember(
                    name,
                    Position {
                        dev,
                        ino,
                        offset: len,
                    },
                );
                return Ok((0, format!("following {path} from its end")));
            }
            Some(p) if (p.dev, p.ino) != (dev, ino) => (0, " (rotated: a new file)"),
            Some(p) if len < p.offset => (0, " (truncated)"),
            Some(p) => (p.offset, ""),
        };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let mut bytes = Vec::new();
        file.take(MAX_READ)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let full_read = bytes.len() as u64 == MAX_READ;
        let (count, consumed) = count_lines(&bytes, &regex, full_read);
        let offset = start + consumed as u64;
        self.remember(name, Position { dev, ino, offset });
        let behind = if len > offset + MAX_READ / 2 && full_read {
            format!(", {} MiB still to read", (len - offset) >> 20)
        } else {
            String::new()
        };
        Ok((
            count,
            format!("{count} new matching lines in {path}{note}{behind}"),
        ))
    }

    fn remember(&self, name: &str, position: Position) {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), position);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn append(path: &std::path::Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("append");
    }

    #[test]
    fn new_matching_lines_are_counted_across_rotation_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let p = path.to_str().expect("utf-8");
        append(&path, "ERROR old\nERROR old\n");
        let follower = Follower::default();
        let scan = || follower.scan("app", p, "ERROR|FATAL").expect("scan");
        // History is not counted.
        assert_eq!(scan().0, 0);
        append(&path, "ok\nERROR one\nFATAL two\nhalf a line ERROR");
        assert_eq!(scan().0, 2);
        // The half line counts once it is complete.
        append(&path, " done\n");
        assert_eq!(scan().0, 1);
        assert_eq!(scan().0, 0);
        // Truncated in place (copytruncate).
        std::fs::write(&path, "ERROR after truncate\n").expect("truncate");
        let (count, summary) = scan();
        assert_eq!(count, 1, "{summary}");
        assert!(summary.contains("truncated"), "{summary}");
        // Rotated: a new file at the path.
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rotate");
        append(
            &path,
            "ERROR in the new file\nERROR again\nok\nok\nok\nok\n",
        );
        let (count, summary) = scan();
        assert_eq!(count, 2, "{summary}");
        assert!(summary.contains("rotated"), "{summary}");
        // Gone: the reason.
        std::fs::remove_file(&path).expect("remove");
        assert!(follower.scan("app", p, "ERROR").is_err());
    }

    #[test]
    fn patterns_are_bounded_and_bytes_need_not_be_utf8() {
        assert!(compile("(").is_err());
        assert!(
            compile(&format!("a{{{}}}", 100_000)).is_err(),
            "too large compiled"
        );
        let regex = compile("ERROR").expect("compiles");
        assert_eq!(count_lines(b"\xff\xfeERROR\nok\n", &regex, false), (1, 11));
        assert_eq!(count_lines(b"ERROR no newline", &regex, false), (0, 0));
        assert_eq!(count_lines(b"ERROR no newline", &regex, true), (1, 16));
    }
}
