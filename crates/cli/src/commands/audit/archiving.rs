//! Whether the entries a log no longer holds were archived, as the log
//! itself records it (RFD 0003, "Retention and archives"). The server's
//! `archived_below` and its compact range of the absent prefix say only
//! that the entries are gone: whoever holds the database can delete the
//! first entries and raise `archived_below` by hand. Retention appends a
//! `log.archived` entry to the archived log itself, in the transaction that
//! removes the entries, naming the range and the root of the tree that ends
//! with it (`bulwark_api::log::parse_archived_detail`). `verify` requires
//! the entries it checked to hold such records for the absent prefix, each
//! root the signed head at its range's end: a prefix removed without one is
//! reported as entries missing (exit 1), not as archived (exit 3).
//!
//! A record sits after the entries it names, so a later archive can take
//! it too: the records of the oldest archives may be inside the archived
//! prefix. A prefix `[0, x)` in no record, followed by records up to the
//! end of the absent prefix, is therefore reported as archived with its
//! record not seen (still exit 3, pass `--archive`); a prefix with no
//! record after it, or a hole between records, is missing. The decision
//! ([`recorded`]) is pure and unit-tested here.
//!
//! Servers before these records wrote `log.archived` only to the MSP log
//! (about its own archives too, without the root): in the MSP log such a
//! record counts by its range ([`legacy_range`]); a tenant log archived by
//! such a server holds none, which its auditor cannot tell from deletion.

use super::*;

/// The action of the record.
const LOG_ARCHIVED: &str = "log.archived";

/// A `log.archived` entry of this log: entries `[from, below)` archived,
/// `root` the root of the tree of the first `below` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ArchiveRecord {
    /// Its index in the log.
    pub(super) index: u64,
    pub(super) from: u64,
    pub(super) below: u64,
    /// `None`: a record in the MSP log by a server older than the root in
    /// the detail ([`legacy_range`]).
    pub(super) root: Option<Hash>,
}

impl ArchiveRecord {
    /// The record `event` (entry `index` of log `log_id`) is, if it is a
    /// `log.archived` event about this log with a detail that reads back.
    /// (The MSP log also holds the records of the tenant logs' archives:
    /// their target is the tenant's log id.)
    pub(super) fn read(index: u64, event: &AuditLeaf, log_id: &str) -> Option<Self> {
        if event.action != LOG_ARCHIVED || event.target != log_id {
            return None;
        }
        let (from, below, root) = match bulwark_api::log::parse_archived_detail(&event.detail) {
            Some((from, below, root)) => (from, below, Some(Hash(root))),
            // Older servers recorded the MSP log's archives in it too,
            // without the root (and the tenant logs' only there).
            None if log_id == bulwark_protocol::audit_leaf::MSP_LOG => {
                let (from, below) = legacy_range(&event.detail)?;
                (from, below, None)
            }
            None => return None,
        };
        Some(Self {
            index,
            from,
            below,
            root,
        })
    }

    fn named(&self) -> String {
        format!(
            "log.archived at index {} (entries {} to {}{})",
            self.index,
            self.from,
            self.below - 1,
            if self.root.is_none() {
                ", recorded by an older server without the root"
            } else {
                ""
            }
        )
    }
}

/// The range `[from, below)` of a `log.archived` detail as servers wrote
/// it before it carried the root (RFD 0003): `entries A..B (older than N
/// days) archived to DIR`, `B` the last entry archived.
pub(super) fn legacy_range(detail: &str) -> Option<(u64, u64)> {
    let rest = detail.strip_prefix("entries ")?;
    let (from, rest) = rest.split_once("..")?;
    let last = rest.split(' ').next()?;
    let (from, last): (u64, u64) = (from.parse().ok()?, last.parse().ok()?);
    (from <= last && rest.contains(" archived to ")).then_some((from, last.checked_add(1)?))
}

/// What the log's own records say of its absent prefix `[0, absent_below)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Recorded {
    /// Every absent entry is in a recorded range.
    All,
    /// Entries `[0, below)` are in no record seen, and every later absent
    /// entry is: the records of their archives may be in the archived
    /// prefix themselves (or an older server archived them, recording it
    /// only in the MSP log).
    PrefixUnseen { below: u64 },
    /// These ranges `[from, below)`, in order, are in no record, and no
    /// record follows them up to the end of the absent prefix: removed
    /// without a record of archiving.
    Missing(Vec<(u64, u64)>),
}

/// The ranges of `[0, absent_below)` that no range `[from, below)` of
/// `ranges` covers, in order.
pub(super) fn uncovered(absent_below: u64, ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = ranges
        .iter()
        .map(|&(from, below)| (from, below.min(absent_below)))
        .filter(|&(from, below)| from < below)
        .collect();
    ranges.sort_unstable();
    let mut gaps = Vec::new();
    let mut next = 0u64;
    for (from, below) in ranges {
        if from > next {
            gaps.push((next, from));
        }
        next = next.max(below);
    }
    if next < absent_below {
        gaps.push((next, absent_below));
    }
    gaps
}

/// Whether the records' ranges account for the absent prefix `[0,
/// absent_below)` (see [`Recorded`]). The last archive's record always
/// follows the absent prefix (it is appended after it, in the transaction
/// that moves `archived_below`), and the records after it are newer, so
/// honest records cover `[x, absent_below)` with no hole, `x` 0 unless
/// the oldest records were archived in turn.
pub(super) fn recorded(absent_below: u64, ranges: &[(u64, u64)]) -> Recorded {
    let gaps = uncovered(absent_below, ranges);
    match gaps.as_slice() {
        [] => Recorded::All,
        &[(0, below)] if below < absent_below => Recorded::PrefixUnseen { below },
        _ => Recorded::Missing(gaps),
    }
}

/// The records that account for an absent prefix, once checked.
#[derive(Debug, Clone)]
pub(super) struct Archiving {
    /// Where the entries checked start: `[0, absent_below)` is absent.
    pub(super) absent_below: u64,
    /// The records whose root is the signed head at their end, of ranges
    /// within the absent prefix.
    pub(super) records: Vec<ArchiveRecord>,
    /// Entries `[0, n)` in no record seen (see [`Recorded::PrefixUnseen`]).
    pub(super) unseen_below: Option<u64>,
}

impl Archiving {
    /// One line for the output.
    pub(super) fn summary(&self) -> String {
        let records = self
            .records
            .iter()
            .map(ArchiveRecord::named)
            .collect::<Vec<_>>()
            .join(", ");
        match self.unseen_below {
            None => format!(
                "recorded in this log: {records}; each names the root of the signed head at its \
                 end"
            ),
            Some(x) => format!(
                "entries {x} to {} recorded in this log: {records}; entries 0 to {} are in no \
                 record among the entries checked (the record of their archiving is itself \
                 archived, or an older server recorded it only in the MSP log): pass --archive \
                 DIR",
                self.absent_below - 1,
                x - 1
            ),
        }
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "records": self.records.iter().map(|r| json!({
                "index": r.index,
                "from": r.from,
                "below": r.below,
            })).collect::<Vec<_>>(),
            "unseen_below": self.unseen_below,
        })
    }
}

/// The entries `[from, below)`, named.
fn range_named(from: u64, below: u64) -> String {
    match below - from {
        1 => format!("entry {from}"),
        n => format!("entries {from} to {} ({n} entries)", below - 1),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn listed(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Checks that the entries `[0, absent_below)` the log no longer holds are
/// accounted for by its own `log.archived` records (`records`, read from
/// the entries checked). A record counts if a signed head of its range's
/// end is among `heads` with its root, that head is tied to the entries
/// checked (`tied`: by replay or consistency proofs), and it sits after
/// its range. `Err`: entries missing (exit 1).
pub(super) fn check_archiving(
    log_id: &str,
    absent_below: u64,
    records: &[ArchiveRecord],
    heads: &[Checkpoint],
    tied: impl Fn(u64) -> bool,
) -> Result<Archiving, Bad> {
    let mut valid = Vec::new();
    let mut ignored = Vec::new();
    for record in records.iter().filter(|r| r.from < absent_below) {
        let head = heads.iter().find(|h| h.size() == record.below);
        let why = match (record.root, head) {
            _ if record.index < record.below => Some("it names entries after itself".to_owned()),
            // An older server's record in the MSP log: the range only.
            (None, _) => None,
            (Some(_), None) => Some(format!("no signed head of size {} exists", record.below)),
            (Some(root), Some(head)) if *head.root() != root => Some(format!(
                "its root is not the signed head of size {}'s",
                record.below
            )),
            (Some(_), Some(_)) if !tied(record.below) => Some(format!(
                "the signed head of size {} is not tied to the entries checked by consistency \
                 proofs",
                record.below
            )),
            (Some(_), Some(_)) => None,
        };
        match why {
            Some(why) => ignored.push(format!("{} ignored: {why}", record.named())),
            None => valid.push(record.clone()),
        }
    }
    let ranges: Vec<(u64, u64)> = valid.iter().map(|r| (r.from, r.below)).collect();
    let unseen_below = match recorded(absent_below, &ranges) {
        Recorded::All => None,
        Recorded::PrefixUnseen { below } => Some(below),
        Recorded::Missing(gaps) => {
            let named = listed(
                &gaps
                    .iter()
                    .map(|&(from, below)| range_named(from, below))
                    .collect::<Vec<_>>(),
            );
            let mut notes = ignored;
            if !valid.is_empty() {
                notes.push(format!(
                    "recorded: {}",
                    listed(&valid.iter().map(ArchiveRecord::named).collect::<Vec<_>>())
                ));
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            };
            // The tenant's auditor cannot read the MSP log, where older
            // servers recorded a tenant log's archives.
            let older = if log_id == bulwark_protocol::audit_leaf::MSP_LOG {
                ""
            } else {
                ". A server older than these records recorded an archive only in the MSP log, \
                 which this log's auditor cannot read: to this auditor that cannot be told \
                 from deletion; the MSP can show the log.archived event in its MSP log \
                 (bulwark audit verify --msp) and hand over the archive (--archive DIR)"
            };
            return Err(Bad::entry(
                gaps[0].0,
                "deleted_entry",
                format!(
                    "{named} {} missing: the server no longer holds them (it reports entries 0 \
                     to {} archived) but they were removed without a record of archiving in \
                     this log: no log.archived entry of this log names them{notes}{older}",
                    if gaps.len() == 1 && gaps[0].1 - gaps[0].0 == 1 {
                        "is"
                    } else {
                        "are"
                    },
                    absent_below - 1
                ),
            ));
        }
    };
    Ok(Archiving {
        absent_below,
        records: valid,
        unseen_below,
    })
}

/// Whether the head of size `size` is tied to heads the entries checked,
/// from `start` on, verified: at or past `start`, or reaching it through
/// the verified consistency proofs `proofs` (`(from, to)` pairs).
pub(super) fn proven_to(size: u64, start: u64, proofs: &[(u64, u64)]) -> bool {
    let mut reached = vec![size];
    let mut next = 0;
    while let Some(&at) = reached.get(next) {
        if at >= start {
            return true;
        }
        for &(from, to) in proofs {
            if from == at && !reached.contains(&to) {
                reached.push(to);
            }
        }
        next += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_absent_prefix_is_covered_by_records() {
        // Nothing absent.
        assert_eq!(recorded(0, &[]), Recorded::All);
        // One archive, or consecutive ones, in any order.
        assert_eq!(recorded(10, &[(0, 10)]), Recorded::All);
        assert_eq!(recorded(25, &[(10, 25), (0, 10)]), Recorded::All);
        // Records that restate the whole prefix overlap; still covered.
        assert_eq!(recorded(25, &[(0, 10), (0, 25)]), Recorded::All);
        // A record past the prefix (read with an older archived_below).
        assert_eq!(recorded(10, &[(0, 12)]), Recorded::All);
    }

    #[test]
    fn a_prefix_removed_without_a_record_is_missing() {
        // Deleted, archived_below raised by hand: no record at all.
        assert_eq!(recorded(10, &[]), Recorded::Missing(vec![(0, 10)]));
        // Honest archives, then more removed by hand after them.
        assert_eq!(
            recorded(40, &[(0, 10), (10, 25)]),
            Recorded::Missing(vec![(25, 40)])
        );
        // A hole between records.
        assert_eq!(
            recorded(40, &[(0, 10), (25, 40)]),
            Recorded::Missing(vec![(10, 25)])
        );
        // The oldest record not seen and a later part unrecorded: both named.
        assert_eq!(
            recorded(40, &[(10, 25)]),
            Recorded::Missing(vec![(0, 10), (25, 40)])
        );
        // Records of entries the server still holds say nothing of the prefix.
        assert_eq!(recorded(10, &[(10, 20)]), Recorded::Missing(vec![(0, 10)]));
        assert_eq!(uncovered(10, &[(3, 3), (12, 20)]), vec![(0, 10)]);
    }

    #[test]
    fn the_oldest_records_may_be_archived_themselves() {
        // Records from 10 on reach the end: entries 0..10 were archived by
        // an archive whose record a later archive took.
        assert_eq!(
            recorded(40, &[(10, 25), (25, 40)]),
            Recorded::PrefixUnseen { below: 10 }
        );
        assert_eq!(
            recorded(40, &[(25, 40)]),
            Recorded::PrefixUnseen { below: 25 }
        );
    }

    fn head(size: u64, root: u8) -> Checkpoint {
        Checkpoint::new("example.com/bulwark-log/t", size, Hash([root; 32]), vec![])
            .expect("checkpoint")
    }

    fn record(index: u64, from: u64, below: u64, root: u8) -> ArchiveRecord {
        ArchiveRecord {
            index,
            from,
            below,
            root: Some(Hash([root; 32])),
        }
    }

    const TENANT: &str = "0195c5a4-3f6e-7c3e-9d3b-5f1a2b3c4d5e";

    #[test]
    fn a_record_counts_only_with_the_signed_root_at_its_end() {
        let heads = [head(10, 1), head(25, 2), head(30, 3)];
        let all = |_| true;
        let ok = check_archiving(
            TENANT,
            25,
            &[record(26, 0, 10, 1), record(27, 10, 25, 2)],
            &heads,
            all,
        )
        .expect("recorded");
        assert_eq!((ok.records.len(), ok.unseen_below), (2, None));
        assert!(
            ok.summary().contains("index 26 (entries 0 to 9)"),
            "{}",
            ok.summary()
        );
        // The oldest record not among the entries: said, not missing.
        let ok =
            check_archiving(TENANT, 25, &[record(27, 10, 25, 2)], &heads, all).expect("recorded");
        assert_eq!(ok.unseen_below, Some(10));
        assert!(
            ok.summary().contains("entries 0 to 9 are in no record"),
            "{}",
            ok.summary()
        );
        // A root that is not the signed head's: the record does not count.
        let bad =
            check_archiving(TENANT, 25, &[record(26, 0, 25, 9)], &heads, all).expect_err("bad");
        assert_eq!((bad.index, bad.code), (Some(0), "deleted_entry"));
        assert!(
            bad.message
                .contains("entries 0 to 24 (25 entries) are missing")
                && bad
                    .message
                    .contains("without a record of archiving in this log")
                && bad
                    .message
                    .contains("index 26 (entries 0 to 24) ignored: its root")
                && bad.message.contains("older than these records"),
            "{}",
            bad.message
        );
        // No signed head at its end, or one not tied to the entries checked.
        let bad =
            check_archiving(TENANT, 25, &[record(26, 0, 24, 2)], &heads, all).expect_err("bad");
        assert!(
            bad.message.contains("no signed head of size 24"),
            "{}",
            bad.message
        );
        let bad = check_archiving(TENANT, 25, &[record(26, 0, 25, 2)], &heads, |size| {
            size >= 30
        })
        .expect_err("bad");
        assert!(bad.message.contains("not tied"), "{}", bad.message);
        // A record before the entries it names.
        let bad =
            check_archiving(TENANT, 25, &[record(3, 0, 25, 2)], &heads, all).expect_err("bad");
        assert!(bad.message.contains("after itself"), "{}", bad.message);
        // Archives recorded, then more entries removed by hand.
        let bad = check_archiving(
            TENANT,
            30,
            &[record(31, 0, 10, 1), record(32, 10, 25, 2)],
            &heads,
            all,
        )
        .expect_err("bad");
        assert_eq!(bad.index, Some(25));
        assert!(
            bad.message
                .contains("entries 25 to 29 (5 entries) are missing")
                && bad.message.contains(
                    "recorded: log.archived at index 31 (entries 0 to 9) and log.archived at \
                     index 32 (entries 10 to 24)"
                ),
            "{}",
            bad.message
        );
        // Several ranges, the record of the first removed with the rest.
        let bad =
            check_archiving(TENANT, 30, &[record(31, 10, 25, 2)], &heads, all).expect_err("bad");
        assert_eq!(bad.index, Some(0));
        assert!(
            bad.message.starts_with(
                "entries 0 to 9 (10 entries) and entries 25 to 29 (5 entries) are missing"
            ),
            "{}",
            bad.message
        );
        let bad = check_archiving(TENANT, 1, &[], &heads, all).expect_err("bad");
        assert!(
            bad.message.starts_with("entry 0 is missing"),
            "{}",
            bad.message
        );
    }

    #[test]
    fn records_are_read_from_this_logs_events() {
        let event = |tenant: Option<&str>, target: &str, detail: &str| {
            AuditLeaf::new(
                5,
                tenant.map(str::to_owned),
                "server",
                LOG_ARCHIVED,
                target,
                detail,
            )
        };
        let detail = format!(
            "{} (older than 365 days) to /d",
            bulwark_api::log::archived_detail(0, 10, &[7; 32])
        );
        let msp = bulwark_protocol::audit_leaf::MSP_LOG;
        assert_eq!(
            ArchiveRecord::read(12, &event(Some(TENANT), TENANT, &detail), TENANT),
            Some(ArchiveRecord {
                index: 12,
                from: 0,
                below: 10,
                root: Some(Hash([7; 32])),
            })
        );
        // In the MSP log, the records of a tenant log's archives are not
        // the MSP log's.
        assert!(ArchiveRecord::read(12, &event(None, TENANT, &detail), msp).is_none());
        assert!(ArchiveRecord::read(12, &event(None, msp, &detail), msp).is_some());
        // Another action, or a detail that does not read back.
        let mut other = event(Some(TENANT), TENANT, &detail);
        other.action = "log.exported".to_owned();
        assert!(ArchiveRecord::read(12, &other, TENANT).is_none());
        let legacy = "entries 0..9 (older than 365 days) archived to /d";
        assert!(ArchiveRecord::read(12, &event(Some(TENANT), TENANT, legacy), TENANT).is_none());
        // An older server's record of the MSP log's own archive: the range.
        let read = ArchiveRecord::read(12, &event(None, msp, legacy), msp).expect("legacy");
        assert_eq!((read.from, read.below, read.root), (0, 10, None));
        assert_eq!(
            legacy_range("entries 3..3 (x) archived to /d"),
            Some((3, 4))
        );
        assert_eq!(legacy_range("entries 4..3 (x) archived to /d"), None);
        assert_eq!(legacy_range("entries 0..9"), None);
        let ok = check_archiving(msp, 10, &[read], &[], |_| false).expect("recorded");
        assert!(
            ok.summary().contains("without the root"),
            "{}",
            ok.summary()
        );
        // The MSP log's own auditor is not sent to the MSP log.
        let bad = check_archiving(msp, 10, &[], &[], |_| true).expect_err("missing");
        assert!(
            !bad.message.contains("older than these records"),
            "{}",
            bad.message
        );
    }

    #[test]
    fn heads_before_the_entries_are_tied_by_proofs() {
        assert!(proven_to(12, 12, &[]));
        assert!(proven_to(20, 12, &[]));
        assert!(!proven_to(5, 12, &[]));
        assert!(proven_to(5, 12, &[(5, 9), (9, 12)]));
        assert!(proven_to(5, 12, &[(5, 7), (5, 9), (9, 14)]));
        assert!(!proven_to(5, 12, &[(5, 9), (10, 12)]));
    }
}
