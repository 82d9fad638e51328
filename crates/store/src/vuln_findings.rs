//! Which candidate rows are open vulnerabilities, and their ranking: pure
//! (no I/O), over the rows `device_vulns` read. SQL found them by
//! (ecosystem release, source package); dpkg's ordering decides here.

use std::collections::{BTreeMap, BTreeSet};

use bulwark_vulndb::{Version, matching, stored};

/// One row of the join: a device's package and a stored advisory entry for
/// its source package in the device's release.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CandidateRow {
    pub device_id: String,
    /// The source package name.
    pub package: String,
    /// The binary package's name.
    pub binary: String,
    /// The binary package's version (the agent's).
    pub version: String,
    /// The source version the package database records (the agent's;
    /// may be empty).
    pub source_version: String,
    pub ecosystem: String,
    pub advisory_id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    pub ranges: String,
    pub vector: Option<String>,
    pub score_tenths: Option<i64>,
    pub rating: Option<String>,
}

/// A source package of the device an advisory affects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VulnerablePackage {
    /// The source package name.
    pub package: String,
    /// The installed source version.
    pub installed: String,
    /// The version that fixes it, when the advisory names one.
    pub fixed: Option<String>,
    /// The source version a pending update of the device would install,
    /// when every affected binary of this source has one whose source
    /// version is known (the binary's version minus a `+bN` rebuild
    /// suffix, for binaries versioned as their source).
    pub pending: Option<String>,
}

/// A device's pending updates: binary package name to the version an
/// upgrade would install (the agent's report).
pub(crate) type PendingVersions = BTreeMap<String, String>;

/// An open advisory on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceVulnerability {
    pub advisory_id: String,
    /// CVE ids and other names of the same issue.
    pub aliases: Vec<String>,
    pub summary: String,
    /// CVSS v3 base score in tenths: the highest of its affected entries.
    pub score_tenths: Option<i64>,
    pub rating: Option<String>,
    pub vector: Option<String>,
    pub packages: Vec<VulnerablePackage>,
    /// A pending update fixes it: every package it affects has a fixed
    /// version and a pending version at least that (dpkg's ordering).
    pub fixed_by_pending_update: bool,
}

/// An advisory across a tenant's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantVulnerability {
    pub advisory_id: String,
    pub aliases: Vec<String>,
    pub summary: String,
    pub score_tenths: Option<i64>,
    pub rating: Option<String>,
    /// How many of the tenant's devices it affects.
    pub devices: u64,
    /// The source packages it affects on them.
    pub packages: Vec<String>,
}

/// The installed source version: the recorded one, else the binary's
/// without a `+bN` rebuild suffix. `None`: not a Debian version (the
/// agent's text), so it cannot be compared.
fn installed_version(row: &CandidateRow) -> Option<Version> {
    if row.source_version.is_empty() {
        Version::parse(&row.version)
            .ok()
            .map(|v| matching::source_version_of_binary(&v))
    } else {
        Version::parse(&row.source_version).ok()
    }
}

/// The source version the pending update of `row`'s binary installs, if
/// it has one and the binary is versioned as its source.
fn pending_version(
    row: &CandidateRow,
    pending: &PendingVersions,
    installed: &Version,
) -> Option<Version> {
    let new = Version::parse(pending.get(&row.binary)?).ok()?;
    let binary = Version::parse(&row.version).ok()?;
    (matching::source_version_of_binary(&binary) == *installed)
        .then(|| matching::source_version_of_binary(&new))
}

/// The open vulnerabilities among `rows`, per device id, each ranked;
/// `pending` holds the pending updates of the devices that reported them.
pub(crate) fn assess(
    rows: &[CandidateRow],
    pending: &BTreeMap<String, PendingVersions>,
) -> BTreeMap<String, Vec<DeviceVulnerability>> {
    let none = PendingVersions::new();
    let mut found: BTreeMap<(String, String), DeviceVulnerability> = BTreeMap::new();
    for row in rows {
        let Some(installed) = installed_version(row) else {
            continue;
        };
        // Stored by this server from a parsed record; a row that no longer
        // decodes is left out rather than failing the whole answer.
        let Ok(affected) = stored::decode(&row.ecosystem, &row.package, &row.ranges) else {
            continue;
        };
        let Some(hit) = matching::affects(&affected, &installed) else {
            continue;
        };
        let entry = found
            .entry((row.device_id.clone(), row.advisory_id.clone()))
            .or_insert_with(|| DeviceVulnerability {
                advisory_id: row.advisory_id.clone(),
                aliases: row.aliases.clone(),
                summary: row.summary.clone(),
                score_tenths: None,
                rating: None,
                vector: None,
                packages: Vec::new(),
                fixed_by_pending_update: false,
            });
        let higher = match (row.score_tenths, entry.score_tenths) {
            (Some(new), Some(old)) => new > old,
            (Some(_), None) => true,
            (None, _) => entry.rating.is_none() && entry.vector.is_none(),
        };
        if higher {
            entry.score_tenths = row.score_tenths;
            entry.rating.clone_from(&row.rating);
            entry.vector.clone_from(&row.vector);
        }
        let device_pending = pending.get(&row.device_id).unwrap_or(&none);
        let package = VulnerablePackage {
            package: row.package.clone(),
            installed: installed.to_string(),
            fixed: hit.fixed.map(|v| v.to_string()),
            pending: pending_version(row, device_pending, &installed).map(|v| v.to_string()),
        };
        // Several binaries of one source: listed once, with a pending
        // version only if each of them has one (the lowest).
        match entry.packages.iter_mut().find(|p| {
            (&p.package, &p.installed, &p.fixed)
                == (&package.package, &package.installed, &package.fixed)
        }) {
            Some(listed) => {
                listed.pending = match (listed.pending.take(), package.pending) {
                    (Some(a), Some(b)) => Some(lower(a, b)),
                    _ => None,
                };
            }
            None => {
                entry.packages.push(package);
                entry.packages.sort();
            }
        }
    }
    for v in found.values_mut() {
        v.fixed_by_pending_update = v.packages.iter().all(|p| {
            let (Some(fixed), Some(pending)) = (&p.fixed, &p.pending) else {
                return false;
            };
            matches!(
                (Version::parse(pending), Version::parse(fixed)),
                (Ok(pending), Ok(fixed)) if pending >= fixed
            )
        });
    }
    let mut by_device: BTreeMap<String, Vec<DeviceVulnerability>> = BTreeMap::new();
    for ((device, _), v) in found {
        by_device.entry(device).or_default().push(v);
    }
    for list in by_device.values_mut() {
        list.sort_by(|a, b| {
            b.score_tenths
                .cmp(&a.score_tenths)
                .then_with(|| a.advisory_id.cmp(&b.advisory_id))
        });
    }
    by_device
}

/// The lower of two versions by dpkg's ordering (texts this module wrote).
fn lower(a: String, b: String) -> String {
    match (Version::parse(&a), Version::parse(&b)) {
        (Ok(va), Ok(vb)) if vb < va => b,
        _ => a,
    }
}

/// Per advisory across devices, ranked by what to patch first: highest
/// score, then most devices, then id.
pub(crate) fn rank_across(
    by_device: &BTreeMap<String, Vec<DeviceVulnerability>>,
) -> Vec<TenantVulnerability> {
    let mut acc: BTreeMap<&str, (TenantVulnerability, BTreeSet<&str>)> = BTreeMap::new();
    for list in by_device.values() {
        for v in list {
            let (t, packages) = acc.entry(&v.advisory_id).or_insert_with(|| {
                (
                    TenantVulnerability {
                        advisory_id: v.advisory_id.clone(),
                        aliases: v.aliases.clone(),
                        summary: v.summary.clone(),
                        score_tenths: None,
                        rating: None,
                        devices: 0,
                        packages: Vec::new(),
                    },
                    BTreeSet::new(),
                )
            });
            t.devices += 1;
            // The highest score across devices (entries differ per release).
            if v.score_tenths > t.score_tenths || t.score_tenths.is_none() && t.rating.is_none() {
                t.score_tenths = v.score_tenths;
                t.rating.clone_from(&v.rating);
            }
            packages.extend(v.packages.iter().map(|p| p.package.as_str()));
        }
    }
    let mut ranked: Vec<TenantVulnerability> = acc
        .into_values()
        .map(|(mut t, packages)| {
            t.packages = packages.into_iter().map(str::to_owned).collect();
            t
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.score_tenths
            .cmp(&a.score_tenths)
            .then_with(|| b.devices.cmp(&a.devices))
            .then_with(|| a.advisory_id.cmp(&b.advisory_id))
    });
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        device: &str,
        advisory: &str,
        installed: &str,
        fixed: &str,
        score: Option<i64>,
    ) -> CandidateRow {
        CandidateRow {
            device_id: device.into(),
            package: "openssl".into(),
            binary: "libssl3".into(),
            version: installed.into(),
            source_version: installed.into(),
            ecosystem: "Debian:12".into(),
            advisory_id: advisory.into(),
            aliases: vec![format!("CVE-{advisory}")],
            summary: String::new(),
            ranges: format!(r#"{{"r":[[["i","0"],["f","{fixed}"]]]}}"#),
            vector: None,
            score_tenths: score,
            rating: score.map(|_| "HIGH".into()),
        }
    }

    #[test]
    fn dpkg_order_decides_and_ranking_is_by_score_then_devices() {
        let rows = vec![
            row("d1", "A", "3.0.11-1~deb12u2", "3.0.15-1~deb12u1", Some(75)),
            row("d1", "B", "3.0.15-1~deb12u1", "3.0.15-1~deb12u1", Some(98)),
            row("d1", "C", "3.0.11-1~deb12u2", "3.0.11-1", Some(50)),
            row("d2", "C", "3.0.11-1~deb12u2", "3.0.11-1", Some(50)),
            row("d2", "D", "3.0.11-1~deb12u2", "3.0.12", Some(75)),
            row("d2", "E", "not a version!", "9", Some(99)),
        ];
        let found = assess(&rows, &BTreeMap::new());
        let d1: Vec<&str> = found["d1"].iter().map(|v| v.advisory_id.as_str()).collect();
        assert_eq!(d1, ["A", "C"]);
        assert_eq!(
            found["d1"][0].packages[0].fixed.as_deref(),
            Some("3.0.15-1~deb12u1")
        );
        let ranked: Vec<(String, u64)> = rank_across(&found)
            .into_iter()
            .map(|t| (t.advisory_id, t.devices))
            .collect();
        assert_eq!(ranked, [("A".into(), 1), ("D".into(), 1), ("C".into(), 2)]);
    }

    #[test]
    fn binary_version_without_source_version_drops_rebuild_suffix() {
        let mut r = row("d1", "A", "1.2-3+b1", "1.2-3", None);
        r.source_version = String::new();
        assert!(assess(&[r.clone()], &BTreeMap::new()).is_empty());
        r.version = "1.2-2+b1".into();
        assert_eq!(
            assess(&[r], &BTreeMap::new())["d1"][0].packages[0].installed,
            "1.2-2"
        );
    }

    fn pending(binary: &str, version: &str) -> BTreeMap<String, PendingVersions> {
        BTreeMap::from([(
            "d1".to_owned(),
            PendingVersions::from([(binary.to_owned(), version.to_owned())]),
        )])
    }

    #[test]
    fn a_pending_update_at_or_past_the_fix_fixes_it() {
        let r = row("d1", "A", "3.0.11-1~deb12u2", "3.0.15-1~deb12u1", Some(75));
        let at = |v: &str, binary: &str| {
            assess(std::slice::from_ref(&r), &pending(binary, v))["d1"][0].clone()
        };
        // Exactly the fixed version, and a later one (a rebuild suffix dropped).
        assert!(at("3.0.15-1~deb12u1", "libssl3").fixed_by_pending_update);
        assert!(at("3.0.16-1+b1", "libssl3").fixed_by_pending_update);
        assert_eq!(
            at("3.0.16-1+b1", "libssl3").packages[0].pending.as_deref(),
            Some("3.0.16-1")
        );
        // Below the fix (`~` sorts first), or an update of another binary.
        assert!(!at("3.0.15-1~deb12u1~rc", "libssl3").fixed_by_pending_update);
        assert!(!at("3.0.15-1~deb12u1", "openssl").fixed_by_pending_update);
        assert!(
            !assess(std::slice::from_ref(&r), &BTreeMap::new())["d1"][0].fixed_by_pending_update
        );
        // No fixed version named: never "fixed by the pending update".
        let mut open = r.clone();
        open.ranges = r#"{"r":[[["i","0"]]]}"#.into();
        assert!(!assess(&[open], &pending("libssl3", "9.9"))["d1"][0].fixed_by_pending_update);
        // Two binaries of one source: both must have a fixing update.
        let mut other = r.clone();
        other.binary = "openssl".into();
        let both = [r.clone(), other];
        assert!(
            !assess(&both, &pending("libssl3", "3.0.15-1~deb12u1"))["d1"][0]
                .fixed_by_pending_update
        );
        // A binary versioned apart from its source (an epoch): unknown.
        let mut epoch = r;
        epoch.version = "1:3.0.11-1~deb12u2".into();
        assert!(
            !assess(&[epoch], &pending("libssl3", "1:3.0.15-1~deb12u1"))["d1"][0]
                .fixed_by_pending_update
        );
    }
}
