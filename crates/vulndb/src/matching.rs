//! Which advisories affect an installed version: OSV's evaluation of
//! `ECOSYSTEM` ranges (the schema's "Evaluation" section) with dpkg's
//! ordering, plus the versions listed one by one.
//!
//! A range's events are sorted by version (`introduced: "0"` below every
//! version; at one version, `introduced` before the others) and walked:
//! `introduced <= v` makes `v` affected, `fixed <= v` or `last_affected <
//! v` makes it not. The fix offered is the first `fixed` above `v` in the
//! range that affects it.

use std::cmp::Ordering;

use crate::osv::{Advisory, Affected, Event};
use crate::version::Version;

/// An advisory's verdict on one version.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The version that fixes it, if the data names one above `v`.
    pub fixed: Option<Version>,
}

fn event_version(e: &Event) -> Option<&Version> {
    match e {
        Event::IntroducedZero => None,
        Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) => Some(v),
    }
}

fn sort_key(a: &Event, b: &Event) -> Ordering {
    let rank = |e: &Event| match e {
        Event::IntroducedZero | Event::Introduced(_) => 0,
        _ => 1,
    };
    match (event_version(a), event_version(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.cmp(y),
    }
    .then_with(|| rank(a).cmp(&rank(b)))
}

/// Does this range contain `v`, and what fixes it?
fn in_range(events: &[Event], v: &Version) -> Option<Hit> {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by(|a, b| sort_key(a, b));
    let mut affected = false;
    let mut position = 0;
    for (i, e) in sorted.iter().enumerate() {
        match e {
            Event::IntroducedZero => affected = true,
            Event::Introduced(x) if x <= v => affected = true,
            Event::Fixed(x) if x <= v => affected = false,
            Event::LastAffected(x) if x < v => affected = false,
            _ => break,
        }
        position = i + 1;
    }
    if !affected {
        return None;
    }
    // The next event above `v`: a fix, or the end of a last_affected range
    // (no fix known), or another introduced (cannot follow while affected
    // in well-formed data; read as no fix known).
    let fixed = match sorted.get(position) {
        Some(Event::Fixed(x)) => Some(x.clone()),
        _ => None,
    };
    Some(Hit { fixed })
}

/// One package entry's verdict on `v`.
pub fn affects(affected: &Affected, v: &Version) -> Option<Hit> {
    let mut hit: Option<Hit> = None;
    for range in &affected.ranges {
        if let Some(h) = in_range(range, v) {
            // Several ranges: the lowest fix above `v` is the one to offer,
            // and a range with no fix wins (the version stays affected).
            hit = Some(match (hit, h) {
                (None, h) => h,
                (Some(a), b) => Hit {
                    fixed: match (a.fixed, b.fixed) {
                        (Some(x), Some(y)) => Some(if y < x { y } else { x }),
                        _ => None,
                    },
                },
            });
        }
    }
    if hit.is_none() && affected.versions.iter().any(|listed| listed == v) {
        hit = Some(Hit { fixed: None });
    }
    hit
}

/// A source version from a binary package's version: Debian's binary-only
/// rebuilds append `+bN` to the revision (`1.2-3+b1` is built from source
/// `1.2-3`). Other differences (a binary's own epoch or version, as
/// `bsdutils` from `util-linux`) need the source version the package
/// database records; prefer it when it is known.
pub fn source_version_of_binary(binary: &Version) -> Version {
    let text = binary.as_str();
    if let Some((base, n)) = text.rsplit_once("+b")
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && let Ok(v) = Version::parse(base)
    {
        return v;
    }
    binary.clone()
}

/// Every advisory of `advisories` that affects `package` (a source package
/// name) at version `v` in `ecosystem` (e.g. `Debian:12`), with its fix.
pub fn matching<'a>(
    advisories: &'a [Advisory],
    ecosystem: &str,
    package: &str,
    v: &Version,
) -> Vec<(&'a Advisory, &'a Affected, Hit)> {
    let mut hits = Vec::new();
    for advisory in advisories {
        for a in &advisory.affected {
            if a.ecosystem == ecosystem
                && a.package == package
                && let Some(hit) = affects(a, v)
            {
                hits.push((advisory, a, hit));
            }
        }
    }
    hits
}
