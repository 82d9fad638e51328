//! OSV records (the OSV schema, <https://ossf.github.io/osv-schema/>) as
//! OSV publishes them for Debian and Ubuntu: one JSON object per file.
//!
//! [`parse_record`] reads one file's bytes within [`Limits`] and keeps what
//! matching needs: the advisory's id, aliases, summary and severity, and
//! for each `Debian:*` or `Ubuntu:*` package (a Debian OSV package name is
//! the *source* package) its `ECOSYSTEM` ranges and listed versions, parsed
//! with dpkg's rules. Bytes that are not an OSV record, or break a limit,
//! are an [`OsvError`] (the import stops and names the file); parts that
//! are fine OSV but of no use here are skipped and counted
//! ([`SkipReason`]).
//!
//! Memory: serde builds each list before its count is checked, so the file
//! size cap is what bounds the memory one record may take.

use serde::Deserialize;

use crate::cvss::{self, Rating};
use crate::version::Version;

/// Every size and count cap of the import, with its default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// One record's file (OSV's largest Debian and Ubuntu records are a few
    /// hundred KiB, mostly `versions[]` and `details`).
    pub max_record_bytes: usize,
    /// Records in one import (OSV's Debian set holds ~60,000).
    pub max_records: usize,
    pub max_affected: usize,
    pub max_ranges: usize,
    pub max_events: usize,
    pub max_versions: usize,
    pub max_aliases: usize,
    pub max_severities: usize,
    /// Ids, aliases, package names, ecosystems, timestamps.
    pub max_name_len: usize,
    pub max_summary_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_bytes: 4 << 20,
            max_records: 1_000_000,
            max_affected: 1024,
            max_ranges: 64,
            max_events: 512,
            max_versions: 20_000,
            max_aliases: 256,
            max_severities: 16,
            max_name_len: 256,
            max_summary_len: 4096,
        }
    }
}

/// Why a file is not a usable OSV record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OsvError {
    #[error("the record is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not an OSV record: {0}")]
    Json(String),
    #[error("{what}: {count} entries, over the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{what} is {len} bytes long, over the limit of {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{0} is empty or has control characters")]
    BadText(&'static str),
}

/// What was left out, and why (counted in the import's summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// The whole record: it is withdrawn.
    Withdrawn,
    /// The whole record: no Debian or Ubuntu package was left.
    NoDebianOrUbuntuPackage,
    /// A package of another ecosystem, or `Debian` without a release.
    OtherEcosystem,
    /// A range that is not `ECOSYSTEM` (`GIT`, `SEMVER`).
    NonEcosystemRange,
    /// A package entry with a version dpkg would not accept.
    InvalidVersion,
    /// A range event with no version, or more than one.
    BadEvent,
    /// A severity whose CVSS vector does not parse (the record stays).
    BadSeverity,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Withdrawn => "withdrawn",
            SkipReason::NoDebianOrUbuntuPackage => "no Debian or Ubuntu package",
            SkipReason::OtherEcosystem => "other ecosystem",
            SkipReason::NonEcosystemRange => "range not of type ECOSYSTEM",
            SkipReason::InvalidVersion => "invalid Debian version",
            SkipReason::BadEvent => "malformed range event",
            SkipReason::BadSeverity => "malformed CVSS vector",
        }
    }
}

/// A severity as the data gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Severity {
    /// `CVSS_V3`, `CVSS_V4` or `Ubuntu` (Ubuntu's priority word).
    pub kind: String,
    /// The vector (or Ubuntu's word) as given.
    pub vector: String,
    /// The CVSS v3 base score; none for v4 vectors and Ubuntu's words.
    pub score: Option<f64>,
    pub rating: Option<Rating>,
}

/// One event of an `ECOSYSTEM` range.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `introduced: "0"`: below every version.
    IntroducedZero,
    Introduced(Version),
    Fixed(Version),
    LastAffected(Version),
}

/// One package of one ecosystem release, as matching needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Affected {
    /// As OSV spells it, release included: `Debian:12`, `Ubuntu:22.04:LTS`.
    pub ecosystem: String,
    /// The source package name.
    pub package: String,
    /// Each `ECOSYSTEM` range's events, as given.
    pub ranges: Vec<Vec<Event>>,
    /// `versions[]`: versions affected, listed one by one.
    pub versions: Vec<Version>,
    /// The package's own severity, else the record's.
    pub severity: Option<Severity>,
}

/// One advisory, reduced to what Bulwark keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Advisory {
    pub id: String,
    pub modified: String,
    pub published: Option<String>,
    pub aliases: Vec<String>,
    /// `summary`, or the first line of `details` when there is none.
    pub summary: String,
    pub affected: Vec<Affected>,
}

/// What one file gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Kept, with what inside it was left out.
    Advisory(Advisory, Vec<SkipReason>),
    /// Nothing kept.
    Skipped(SkipReason),
}

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    modified: String,
    published: Option<String>,
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    summary: Option<String>,
    details: Option<String>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    affected: Vec<RawAffected>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    package: Option<RawPackage>,
    #[serde(default)]
    severity: Vec<RawSeverity>,
    #[serde(default)]
    ranges: Vec<RawRange>,
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    introduced: Option<String>,
    fixed: Option<String>,
    last_affected: Option<String>,
    limit: Option<String>,
}

fn count(what: &'static str, count: usize, limit: usize) -> Result<(), OsvError> {
    if count > limit {
        return Err(OsvError::TooMany { what, count, limit });
    }
    Ok(())
}

fn text(what: &'static str, value: &str, limit: usize) -> Result<(), OsvError> {
    if value.len() > limit {
        return Err(OsvError::TooLong {
            what,
            len: value.len(),
            limit,
        });
    }
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(OsvError::BadText(what));
    }
    Ok(())
}

/// The release-qualified Debian and Ubuntu ecosystems: `Debian:12`,
/// `Ubuntu:22.04:LTS`, `Ubuntu:Pro:18.04:LTS`. Bare `Debian` names no
/// release, so no device can be matched against it.
pub fn is_dpkg_ecosystem(ecosystem: &str) -> bool {
    match ecosystem.split_once(':') {
        Some(("Debian" | "Ubuntu", release)) => !release.is_empty(),
        _ => false,
    }
}

fn severity(
    raw: &[RawSeverity],
    limits: &Limits,
    skipped: &mut Vec<SkipReason>,
) -> Option<Severity> {
    // Preference: a CVSS v3 score, then a v4 vector, then Ubuntu's word.
    let find = |kind: &str| raw.iter().find(|s| s.kind == kind);
    if let Some(s) = find("CVSS_V3") {
        match cvss::base_score(&s.score) {
            Ok((score, rating)) if s.score.len() <= limits.max_name_len => {
                return Some(Severity {
                    kind: s.kind.clone(),
                    vector: s.score.clone(),
                    score: Some(score),
                    rating: Some(rating),
                });
            }
            _ => skipped.push(SkipReason::BadSeverity),
        }
    }
    let other = find("CVSS_V4").or_else(|| find("Ubuntu"))?;
    if other.score.len() > limits.max_name_len || other.score.chars().any(char::is_control) {
        skipped.push(SkipReason::BadSeverity);
        return None;
    }
    Some(Severity {
        kind: other.kind.clone(),
        vector: other.score.clone(),
        score: None,
        rating: Rating::parse(&other.score),
    })
}

fn event(raw: &RawEvent) -> Result<Option<Event>, SkipReason> {
    let given = [&raw.introduced, &raw.fixed, &raw.last_affected, &raw.limit];
    if given.iter().filter(|v| v.is_some()).count() != 1 {
        return Err(SkipReason::BadEvent);
    }
    let parse = |v: &str| Version::parse(v).map_err(|_| SkipReason::InvalidVersion);
    Ok(match raw {
        RawEvent {
            introduced: Some(v),
            ..
        } if v == "0" => Some(Event::IntroducedZero),
        RawEvent {
            introduced: Some(v),
            ..
        } => Some(Event::Introduced(parse(v)?)),
        RawEvent { fixed: Some(v), .. } => Some(Event::Fixed(parse(v)?)),
        RawEvent {
            last_affected: Some(v),
            ..
        } => Some(Event::LastAffected(parse(v)?)),
        // `limit` only bounds git ranges.
        _ => None,
    })
}

fn affected(
    raw: &RawAffected,
    record_severity: &Option<Severity>,
    limits: &Limits,
    skipped: &mut Vec<SkipReason>,
) -> Result<Option<Affected>, OsvError> {
    count("ranges", raw.ranges.len(), limits.max_ranges)?;
    count("versions", raw.versions.len(), limits.max_versions)?;
    count("severity", raw.severity.len(), limits.max_severities)?;
    let Some(package) = &raw.package else {
        skipped.push(SkipReason::OtherEcosystem);
        return Ok(None);
    };
    text("package.ecosystem", &package.ecosystem, limits.max_name_len)?;
    text("package.name", &package.name, limits.max_name_len)?;
    if !is_dpkg_ecosystem(&package.ecosystem) {
        skipped.push(SkipReason::OtherEcosystem);
        return Ok(None);
    }
    let mut ranges = Vec::new();
    for range in &raw.ranges {
        count("events", range.events.len(), limits.max_events)?;
        if range.kind != "ECOSYSTEM" {
            skipped.push(SkipReason::NonEcosystemRange);
            continue;
        }
        let events: Result<Vec<_>, _> = range.events.iter().map(event).collect();
        match events {
            Ok(events) => ranges.push(events.into_iter().flatten().collect()),
            Err(reason) => {
                // A range we cannot read would hide affected versions: drop
                // the whole package entry, never a part of it.
                skipped.push(reason);
                return Ok(None);
            }
        }
    }
    let mut versions = Vec::with_capacity(raw.versions.len());
    for v in &raw.versions {
        match Version::parse(v) {
            Ok(v) => versions.push(v),
            Err(_) => {
                skipped.push(SkipReason::InvalidVersion);
                return Ok(None);
            }
        }
    }
    let own = severity(&raw.severity, limits, skipped);
    Ok(Some(Affected {
        ecosystem: package.ecosystem.clone(),
        package: package.name.clone(),
        ranges,
        versions,
        severity: own.or_else(|| record_severity.clone()),
    }))
}

/// The first line of `details`, cut to `limit` bytes on a character boundary.
fn first_line(details: &str, limit: usize) -> String {
    let line = details.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut end = line.len().min(limit);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].trim().to_owned()
}

/// Parses one OSV record (one file's bytes).
pub fn parse_record(bytes: &[u8], limits: &Limits) -> Result<Parsed, OsvError> {
    if bytes.len() > limits.max_record_bytes {
        return Err(OsvError::TooLarge {
            size: bytes.len(),
            limit: limits.max_record_bytes,
        });
    }
    let raw: RawRecord =
        serde_json::from_slice(bytes).map_err(|e| OsvError::Json(e.to_string()))?;
    text("id", &raw.id, limits.max_name_len)?;
    text("modified", &raw.modified, limits.max_name_len)?;
    if let Some(published) = &raw.published {
        text("published", published, limits.max_name_len)?;
    }
    count("aliases", raw.aliases.len(), limits.max_aliases)?;
    for alias in &raw.aliases {
        text("alias", alias, limits.max_name_len)?;
    }
    count("affected", raw.affected.len(), limits.max_affected)?;
    count("severity", raw.severity.len(), limits.max_severities)?;
    let summary = match (&raw.summary, &raw.details) {
        (Some(s), _) if !s.trim().is_empty() => {
            if s.len() > limits.max_summary_len {
                return Err(OsvError::TooLong {
                    what: "summary",
                    len: s.len(),
                    limit: limits.max_summary_len,
                });
            }
            s.trim().replace(|c: char| c.is_control(), " ")
        }
        (_, Some(d)) => {
            first_line(d, limits.max_summary_len).replace(|c: char| c.is_control(), " ")
        }
        _ => String::new(),
    };
    if raw.withdrawn.is_some() {
        return Ok(Parsed::Skipped(SkipReason::Withdrawn));
    }
    let mut skipped = Vec::new();
    let record_severity = severity(&raw.severity, limits, &mut skipped);
    let mut kept = Vec::new();
    for a in &raw.affected {
        if let Some(a) = affected(a, &record_severity, limits, &mut skipped)? {
            kept.push(a);
        }
    }
    if kept.is_empty() {
        return Ok(Parsed::Skipped(SkipReason::NoDebianOrUbuntuPackage));
    }
    Ok(Parsed::Advisory(
        Advisory {
            id: raw.id,
            modified: raw.modified,
            published: raw.published,
            aliases: raw.aliases,
            summary,
            affected: kept,
        },
        skipped,
    ))
}

/// Fuzzing entry (`fuzz/fuzz_targets/osv_record.rs`): any bytes; never
/// panics, and whatever is kept is within the limits.
#[cfg(fuzzing)]
pub fn fuzz_record(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(Parsed::Advisory(advisory, _)) = parse_record(data, &limits) {
        assert!(advisory.id.len() <= limits.max_name_len);
        assert!(advisory.affected.len() <= limits.max_affected);
        for a in &advisory.affected {
            assert!(is_dpkg_ecosystem(&a.ecosystem));
        }
    }
}
