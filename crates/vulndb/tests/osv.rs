//! OSV records written here in the real schema (as OSV publishes Debian's
//! DSA/DLA/DEBIAN-CVE and Ubuntu's USN records), parsed and matched.

use bulwark_vulndb::cvss::Rating;
use bulwark_vulndb::matching::{affects, matching, source_version_of_binary};
use bulwark_vulndb::osv::{OsvError, parse_record};
use bulwark_vulndb::{Advisory, Limits, Parsed, SkipReason, Version, stored};

fn v(text: &str) -> Version {
    Version::parse(text).expect("valid version")
}

fn advisory(json: &str) -> Advisory {
    match parse_record(json.as_bytes(), &Limits::default()).expect("parses") {
        Parsed::Advisory(a, _) => a,
        Parsed::Skipped(reason) => panic!("skipped: {reason:?}"),
    }
}

const DSA_OPENSSL: &str = r#"{
  "schema_version": "1.6.0",
  "id": "DSA-5764-1",
  "summary": "openssl - security update",
  "details": "Multiple vulnerabilities were discovered in OpenSSL.",
  "aliases": ["CVE-2024-5535", "CVE-2024-6119"],
  "modified": "2024-09-04T05:12:25Z",
  "published": "2024-09-03T00:00:00Z",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H"}],
  "affected": [{
    "package": {"ecosystem": "Debian:12", "name": "openssl", "purl": "pkg:deb/debian/openssl?arch=source"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.15-1~deb12u1"}]}],
    "versions": ["3.0.11-1~deb12u2", "3.0.13-1~deb12u1", "3.0.14-1~deb12u1", "3.0.14-1~deb12u2"],
    "ecosystem_specific": {"urgency": "not yet assigned"},
    "database_specific": {"source": "https://salsa.debian.org/security-tracker-team/security-tracker/-/raw/master/data/DSA/list"}
  }],
  "references": [{"type": "ADVISORY", "url": "https://www.debian.org/security/2024/dsa-5764"}]
}"#;

#[test]
fn a_dsa_for_openssl_matches_below_its_fix() {
    let dsa = advisory(DSA_OPENSSL);
    assert_eq!(dsa.aliases, ["CVE-2024-5535", "CVE-2024-6119"]);
    let a = &dsa.affected[0];
    assert_eq!(
        (a.ecosystem.as_str(), a.package.as_str()),
        ("Debian:12", "openssl")
    );
    let severity = a.severity.as_ref().expect("record severity applies");
    assert_eq!(severity.score, Some(9.1));
    assert_eq!(severity.rating, Some(Rating::Critical));
    for (installed, expect) in [
        ("3.0.11-1~deb12u2", true),
        ("3.0.15-1~deb12u1~", true), // a tilde just below the fix
        ("3.0.15-1~deb12u1", false), // the fix itself
        ("3.0.15-1", false),
        ("3.0.15-1+deb12u1", false),
        ("1:1.0", false), // an epoch is above every epoch-less version
        ("0~", true),
    ] {
        let hit = affects(a, &v(installed));
        assert_eq!(hit.is_some(), expect, "{installed}");
        if let Some(hit) = hit {
            assert_eq!(hit.fixed, Some(v("3.0.15-1~deb12u1")));
        }
    }
    let hits = matching(
        std::slice::from_ref(&dsa),
        "Debian:12",
        "openssl",
        &v("3.0.11-1~deb12u2"),
    );
    assert_eq!(hits.len(), 1);
    assert!(
        matching(
            std::slice::from_ref(&dsa),
            "Debian:13",
            "openssl",
            &v("3.0.11-1")
        )
        .is_empty()
    );
    assert!(
        matching(
            std::slice::from_ref(&dsa),
            "Debian:12",
            "libssl3",
            &v("3.0.11-1")
        )
        .is_empty()
    );
}

#[test]
fn epochs_and_last_affected_bound_ranges() {
    let rec = r#"{
      "id": "DEBIAN-CVE-2024-0001", "modified": "2024-01-01T00:00:00Z",
      "details": "First line of details.\nMore text.",
      "affected": [{
        "package": {"ecosystem": "Debian:12", "name": "util-linux"},
        "ranges": [
          {"type": "ECOSYSTEM", "events": [{"introduced": "2.38"}, {"fixed": "2.38.1-5+deb12u1"}]},
          {"type": "ECOSYSTEM", "events": [{"last_affected": "1:0.9"}, {"introduced": "1:0.1"}]},
          {"type": "GIT", "repo": "https://example.org/u.git", "events": [{"introduced": "abc"}, {"limit": "def"}]}
        ]
      }]
    }"#;
    let Parsed::Advisory(a, skipped) =
        parse_record(rec.as_bytes(), &Limits::default()).expect("parses")
    else {
        panic!("kept")
    };
    assert_eq!(skipped, [SkipReason::NonEcosystemRange]);
    assert_eq!(a.summary, "First line of details.");
    let entry = &a.affected[0];
    assert!(entry.severity.is_none());
    for (installed, expect, fixed) in [
        ("2.37.9", false, None),
        ("2.38", true, Some("2.38.1-5+deb12u1")),
        ("2.38.1-5", true, Some("2.38.1-5+deb12u1")),
        ("2.38.1-5+deb12u1", false, None),
        ("1:0.1~", false, None),
        ("1:0.1", true, None),
        ("1:0.9", true, None),
        ("1:0.9-1", false, None),
    ] {
        let hit = affects(entry, &v(installed));
        assert_eq!(hit.is_some(), expect, "{installed}");
        if let Some(hit) = hit {
            assert_eq!(hit.fixed, fixed.map(v), "{installed}");
        }
    }
    // The store's text form gives back the same verdicts.
    let again = stored::decode("Debian:12", "util-linux", &stored::encode(entry)).expect("decodes");
    assert_eq!(again.ranges, entry.ranges);
}

#[test]
fn listed_versions_match_by_dpkg_equality() {
    let rec = r#"{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
      "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "curl"},
                    "versions": ["7.81.0-1ubuntu1.15", "0:7.81.0-1ubuntu1.16"]}],
      "severity": [{"type": "Ubuntu", "score": "medium"}]}"#;
    let a = advisory(rec);
    let entry = &a.affected[0];
    assert!(affects(entry, &v("7.81.0-1ubuntu1.16")).is_some());
    assert!(affects(entry, &v("7.81.0-1ubuntu1.15")).is_some());
    assert!(affects(entry, &v("7.81.0-1ubuntu1.17")).is_none());
    let severity = entry.severity.as_ref().expect("Ubuntu priority");
    assert_eq!(
        (severity.score, severity.rating),
        (None, Some(Rating::Medium))
    );
}

#[test]
fn binary_rebuilds_map_to_their_source_version() {
    assert_eq!(source_version_of_binary(&v("1.2-3+b1")).as_str(), "1.2-3");
    assert_eq!(
        source_version_of_binary(&v("1.2-3+deb12u1")).as_str(),
        "1.2-3+deb12u1"
    );
    assert_eq!(source_version_of_binary(&v("1.2-3+b")).as_str(), "1.2-3+b");
}

#[test]
fn skipped_and_malformed_records() {
    let limits = Limits::default();
    let withdrawn = r#"{"id": "W-1", "modified": "2024-01-01T00:00:00Z", "withdrawn": "2024-02-01T00:00:00Z",
      "affected": [{"package": {"ecosystem": "Debian:12", "name": "x"}, "versions": ["1.0"]}]}"#;
    assert_eq!(
        parse_record(withdrawn.as_bytes(), &limits),
        Ok(Parsed::Skipped(SkipReason::Withdrawn))
    );
    let pypi = r#"{"id": "P-1", "modified": "2024-01-01T00:00:00Z",
      "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "versions": ["1.0"]},
                   {"package": {"ecosystem": "Debian", "name": "x"}, "versions": ["1.0"]}]}"#;
    assert_eq!(
        parse_record(pypi.as_bytes(), &limits),
        Ok(Parsed::Skipped(SkipReason::NoDebianOrUbuntuPackage))
    );
    let bad_version = r#"{"id": "B-1", "modified": "2024-01-01T00:00:00Z",
      "affected": [{"package": {"ecosystem": "Debian:12", "name": "x"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0_bad"}]}]}]}"#;
    assert_eq!(
        parse_record(bad_version.as_bytes(), &limits),
        Ok(Parsed::Skipped(SkipReason::NoDebianOrUbuntuPackage))
    );
    for (bytes, what) in [
        (&b"{"[..], "truncated JSON"),
        (&b"[]"[..], "an array"),
        (&br#"{"id": "", "modified": "x"}"#[..], "empty id"),
        (&br#"{"modified": "x"}"#[..], "no id"),
    ] {
        assert!(parse_record(bytes, &limits).is_err(), "{what}");
    }
    let small = Limits {
        max_record_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        parse_record(DSA_OPENSSL.as_bytes(), &small),
        Err(OsvError::TooLarge { .. })
    ));
    let few = Limits {
        max_versions: 2,
        ..Limits::default()
    };
    assert!(matches!(
        parse_record(DSA_OPENSSL.as_bytes(), &few),
        Err(OsvError::TooMany {
            what: "versions",
            ..
        })
    ));
}
