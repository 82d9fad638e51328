//! Whether a directory read offline (`verify --from DIR`) holds every entry
//! it must (issue 14). An export (`bulwark audit export`) must reach its
//! newest signed head, and the head it recorded (`head.json`): entries cut
//! from its end, or all of them, leave a directory whose remaining entries
//! still match an older head, so only this check shows the cut. An archive
//! written by the server's retention (RFD 0003, "Retention and archives")
//! holds a range of a longer log by design. Pure, so the decisions are
//! unit-tested here; `verify` gathers the facts from the files.

use super::*;

/// The file in which an export records the head it was made up to.
pub(super) const RECORDED_HEAD: &str = "head.json";

/// The first line of the README the server writes into an archive
/// (`bulwark_server::transparency_log::retention::ARCHIVE_README`).
const ARCHIVE_TITLE: &str = "Bulwark transparency log archive";

/// What a directory read offline is, which decides what it must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirKind {
    /// An export: every entry from its start (0, or the compact range of an
    /// archived prefix) up to its newest signed head.
    Export,
    /// One of the server's archives: entries `[first, below)`, a head at
    /// exactly `below`, and the log's latest head then, which it need not
    /// reach.
    Archive,
}

impl DirKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DirKind::Export => "export",
            DirKind::Archive => "archive",
        }
    }
}

/// What a directory holds, as far as its kind goes.
#[derive(Debug)]
pub(super) struct DirFacts<'a> {
    /// The first line of its `README.txt`, if it has one.
    pub(super) readme_title: Option<&'a str>,
    /// It holds a file only exports write (`statements.json`, `head.json`).
    pub(super) export_files: bool,
    /// The indices its `entries.ndjson` holds, `[first, below)`; `None`: none.
    pub(super) entries: Option<(u64, u64)>,
    /// Its `checkpoints.ndjson` lines in file order: the size, and whether
    /// the line gives a compact range (`"frontier"`).
    pub(super) heads: &'a [(u64, bool)],
}

/// An archive only if the directory says so (the archive README, no file
/// only exports write) and holds exactly what the server writes into one:
/// at least one entry, and the heads of an archive (the start's with its
/// compact range when it does not start at 0, the one at its end, then at
/// most the log's latest). Anything else is an export, held to the whole
/// of its newest head: a directory that passes neither for what it claims
/// fails loudly rather than verifying as a part of a log.
pub(super) fn dir_kind(facts: &DirFacts) -> DirKind {
    let says_archive = facts.readme_title.map(str::trim) == Some(ARCHIVE_TITLE);
    let archive = says_archive
        && !facts.export_files
        && facts
            .entries
            .is_some_and(|(first, below)| archive_heads(first, below, facts.heads));
    if archive {
        DirKind::Archive
    } else {
        DirKind::Export
    }
}

/// The heads of an archive of `[first, below)`, as the server writes them.
fn archive_heads(first: u64, below: u64, heads: &[(u64, bool)]) -> bool {
    let rest = match heads.split_first() {
        Some((&(size, true), rest)) if first > 0 && size == first => rest,
        _ if first > 0 => return false,
        _ => heads,
    };
    match rest {
        [(end, false)] => *end == below,
        [(end, false), (latest, false)] => *end == below && *latest > below,
        _ => false,
    }
}

/// `n` entries, named.
fn entries_named(from: u64, below: u64) -> String {
    let n = below - from;
    let noun = if n == 1 { "entry" } else { "entries" };
    format!("entries {from} to {} ({n} {noun})", below - 1)
}

/// The entries missing before an export's first entry `first`. An export
/// starts at 0, or where it gives the compact range of the entries before
/// (`frontiers`: the sizes of the checkpoint lines carrying one; the
/// archived prefix, which is not missing), and no later than where it
/// recorded its start (`recorded_start`: `head.json`'s `archived_below`).
pub(super) fn missing_at_start(
    first: u64,
    frontiers: &[u64],
    recorded_start: Option<u64>,
) -> Option<Bad> {
    if first == 0 {
        return None;
    }
    let (from, message) = if frontiers.contains(&first) {
        let from = recorded_start.filter(|&start| start < first)?;
        (
            from,
            format!(
                "the export recorded ({RECORDED_HEAD}) that its entries start at {from}, but \
                 entries.ndjson starts at entry {first}: {} are missing",
                entries_named(from, first)
            ),
        )
    } else {
        // Replay could start at the nearest compact range before `first`
        // (or at 0), or where the export said it starts.
        let nearest = frontiers
            .iter()
            .copied()
            .filter(|&size| size < first)
            .max()
            .unwrap_or(0);
        let from = recorded_start.map_or(nearest, |start| start.min(nearest));
        (
            from,
            format!(
                "entries.ndjson starts at entry {first}, and the export gives no compact range \
                 (\"frontier\") of the entries before it to start from: {} are missing",
                entries_named(from, first)
            ),
        )
    };
    Some(Bad::entry(from, "deleted_entry", message))
}

/// The entries missing after an export's entries, which replayed up to
/// `below` (from `first`; `first == below`: it holds none), when its newest
/// signed head has size `newest`: a checkpoint, or only the head it
/// recorded (`recorded_only`: checkpoints.ndjson stops before it).
pub(super) fn missing_at_end(
    first: u64,
    below: u64,
    newest: u64,
    recorded_only: bool,
) -> Option<Bad> {
    if below >= newest {
        return None;
    }
    let held = if first == below {
        "entries.ndjson holds no entries".to_owned()
    } else {
        format!("entries.ndjson ends at entry {}", below - 1)
    };
    let head = if recorded_only {
        format!(
            "the signed head the export recorded ({RECORDED_HEAD}) has size {newest}, beyond \
             every head left in checkpoints.ndjson"
        )
    } else {
        format!("the export's newest signed tree head has size {newest}")
    };
    Some(Bad {
        index: Some(below),
        head_size: Some(newest),
        code: "truncated",
        message: format!(
            "{held}, but {head}: {} are missing (an export must hold every entry up to its \
             newest head)",
            entries_named(below, newest)
        ),
    })
}

/// The entries missing after an export that reaches its newest signed head
/// (size `newest`, replayed up to `below`) but not the head the auditor
/// saved earlier (`--head`, size `saved`): the export was cut back together
/// with its later heads, or made before that head was saved.
pub(super) fn short_of_saved_head(below: u64, newest: u64, saved: u64) -> Option<Bad> {
    if below >= saved {
        return None;
    }
    Some(Bad {
        index: Some(below),
        head_size: Some(saved),
        code: "truncated",
        message: format!(
            "the export ends at size {below} (its newest signed tree head has size {newest}), \
             but the saved head has size {saved}: {} are missing (the export was cut back, \
             or made before the head was saved)",
            entries_named(below, saved)
        ),
    })
}

/// The head an export recorded (`head.json`): the size it was made up to,
/// that head's signed note, and where its entries start.
#[derive(Debug, Clone)]
pub(super) struct RecordedHead {
    pub(super) size: u64,
    pub(super) note: String,
    pub(super) archived_below: u64,
}

/// `dir/head.json`, if the export has one (exports made before it have
/// none). Its note is checked with the checkpoints (signature, log, size).
pub(super) fn read_recorded_head(dir: &Path) -> Result<Option<RecordedHead>> {
    let path = dir.join(RECORDED_HEAD);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let field = |name: &str| {
        value[name]
            .as_u64()
            .with_context(|| format!("{} has no {name:?}", path.display()))
    };
    Ok(Some(RecordedHead {
        size: field("size")?,
        note: value["note"]
            .as_str()
            .with_context(|| format!("{} has no \"note\"", path.display()))?
            .to_owned(),
        archived_below: field("archived_below")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARCHIVE: Option<&str> = Some(ARCHIVE_TITLE);
    const EXPORT: Option<&str> = Some("Bulwark transparency log export");

    fn kind(
        readme_title: Option<&str>,
        export_files: bool,
        entries: Option<(u64, u64)>,
        heads: &[(u64, bool)],
    ) -> DirKind {
        dir_kind(&DirFacts {
            readme_title,
            export_files,
            entries,
            heads,
        })
    }

    #[test]
    fn the_servers_archives_are_archives() {
        // From 0: the head at the end, and the latest if the log grew.
        assert_eq!(
            kind(ARCHIVE, false, Some((0, 12)), &[(12, false)]),
            DirKind::Archive
        );
        assert_eq!(
            kind(ARCHIVE, false, Some((0, 12)), &[(12, false), (30, false)]),
            DirKind::Archive
        );
        // A later archive: first the head at its start, with its compact range.
        assert_eq!(
            kind(
                ARCHIVE,
                false,
                Some((12, 20)),
                &[(12, true), (20, false), (31, false)]
            ),
            DirKind::Archive
        );
    }

    #[test]
    fn anything_else_is_an_export_held_to_its_newest_head() {
        // An export's README, or a file only exports write.
        assert_eq!(
            kind(EXPORT, false, Some((0, 12)), &[(12, false), (30, false)]),
            DirKind::Export
        );
        assert_eq!(
            kind(ARCHIVE, true, Some((0, 12)), &[(12, false), (30, false)]),
            DirKind::Export
        );
        assert_eq!(
            kind(None, false, Some((0, 12)), &[(12, false), (30, false)]),
            DirKind::Export
        );
        // An archive's README over an export's heads: every head the log
        // had, not an archive's.
        assert_eq!(
            kind(
                ARCHIVE,
                false,
                Some((0, 12)),
                &[(5, false), (12, false), (30, false)]
            ),
            DirKind::Export
        );
        // Entries that do not end at a head, or a head before the end.
        assert_eq!(
            kind(ARCHIVE, false, Some((0, 11)), &[(12, false), (30, false)]),
            DirKind::Export
        );
        assert_eq!(
            kind(ARCHIVE, false, Some((0, 12)), &[(12, false), (10, false)]),
            DirKind::Export
        );
        assert_eq!(
            kind(
                ARCHIVE,
                false,
                Some((0, 12)),
                &[(12, false), (20, false), (30, false)]
            ),
            DirKind::Export
        );
        // A later start without its compact range, or one at another size.
        assert_eq!(
            kind(ARCHIVE, false, Some((12, 20)), &[(20, false), (31, false)]),
            DirKind::Export
        );
        assert_eq!(
            kind(
                ARCHIVE,
                false,
                Some((12, 20)),
                &[(10, true), (20, false), (31, false)]
            ),
            DirKind::Export
        );
        // No entries: the server never writes an empty archive.
        assert_eq!(kind(ARCHIVE, false, None, &[(12, false)]), DirKind::Export);
        assert_eq!(kind(ARCHIVE, false, None, &[]), DirKind::Export);
    }

    #[test]
    fn an_export_must_reach_its_newest_head() {
        // Cut back to an earlier signed size: named, with the count.
        let bad = missing_at_end(0, 19, 26, false).expect("missing");
        assert_eq!(
            (bad.index, bad.head_size, bad.code),
            (Some(19), Some(26), "truncated")
        );
        assert!(
            bad.message.contains("ends at entry 18")
                && bad
                    .message
                    .contains("entries 19 to 25 (7 entries) are missing"),
            "{}",
            bad.message
        );
        // Empty.
        let bad = missing_at_end(0, 0, 26, false).expect("missing");
        assert_eq!((bad.index, bad.head_size), (Some(0), Some(26)));
        assert!(
            bad.message.contains("holds no entries")
                && bad
                    .message
                    .contains("entries 0 to 25 (26 entries) are missing"),
            "{}",
            bad.message
        );
        let bad = missing_at_end(0, 25, 26, false).expect("missing");
        assert!(
            bad.message.contains("entries 25 to 25 (1 entry)"),
            "{}",
            bad.message
        );
        // Empty after an archived prefix: from the prefix's end.
        let bad = missing_at_end(12, 12, 26, false).expect("missing");
        assert!(
            bad.message
                .contains("entries 12 to 25 (14 entries) are missing"),
            "{}",
            bad.message
        );
        // Short of the head recorded in head.json, the later checkpoints gone.
        let bad = missing_at_end(0, 19, 26, true).expect("missing");
        assert!(
            bad.message.contains("recorded (head.json) has size 26")
                && bad
                    .message
                    .contains("entries 19 to 25 (7 entries) are missing"),
            "{}",
            bad.message
        );
        // Complete: nothing missing (an empty log, a wholly archived one).
        assert!(missing_at_end(0, 26, 26, false).is_none());
        assert!(missing_at_end(0, 0, 0, false).is_none());
        assert!(missing_at_end(12, 12, 12, false).is_none());
    }

    #[test]
    fn an_export_must_reach_the_saved_head() {
        assert!(short_of_saved_head(26, 26, 26).is_none());
        assert!(short_of_saved_head(26, 26, 19).is_none());
        let bad = short_of_saved_head(19, 19, 26).expect("missing");
        assert_eq!(
            (bad.index, bad.head_size, bad.code),
            (Some(19), Some(26), "truncated")
        );
        assert!(
            bad.message
                .contains("entries 19 to 25 (7 entries) are missing"),
            "{}",
            bad.message
        );
    }

    #[test]
    fn an_archived_prefix_is_not_missing_but_a_cut_start_is() {
        // From 0, or from a compact range: nothing missing.
        assert!(missing_at_start(0, &[], None).is_none());
        assert!(missing_at_start(0, &[], Some(0)).is_none());
        assert!(missing_at_start(12, &[12], None).is_none());
        assert!(missing_at_start(12, &[12], Some(12)).is_none());
        // The first entries removed, no compact range for the new start.
        let bad = missing_at_start(5, &[], None).expect("missing");
        assert_eq!((bad.index, bad.code), (Some(0), "deleted_entry"));
        assert!(
            bad.message
                .contains("entries 0 to 4 (5 entries) are missing"),
            "{}",
            bad.message
        );
        // After an archived prefix: missing from the prefix's end.
        let bad = missing_at_start(15, &[12], Some(12)).expect("missing");
        assert_eq!(bad.index, Some(12));
        assert!(
            bad.message
                .contains("entries 12 to 14 (3 entries) are missing"),
            "{}",
            bad.message
        );
        // A compact range made up for a later start than the export recorded.
        let bad = missing_at_start(15, &[15], Some(12)).expect("missing");
        assert_eq!(bad.index, Some(12));
        assert!(
            bad.message
                .contains("entries 12 to 14 (3 entries) are missing"),
            "{}",
            bad.message
        );
    }
}
