use super::*;
use proptest::prelude::*;
use std::fmt::Write as _;

/// `(name, version, architecture, source, source version)` per package.
fn check(status: &str, expect: &[(&str, &str, &str, &str, &str)]) {
    let got = parse_dpkg_status(status.as_bytes(), &PackageLimits::default()).expect("parses");
    let got: Vec<_> = got
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.version.as_str(),
                p.architecture.as_str(),
                p.source.as_str(),
                p.source_version.as_str(),
            )
        })
        .collect();
    assert_eq!(got, expect);
}

const REAL: &str = "\
Package: bsdutils
Essential: yes
Status: install ok installed
Priority: required
Section: utils
Installed-Size: 356
Maintainer: util-linux packagers <util-linux@packages.debian.org>
Architecture: amd64
Multi-Arch: foreign
Source: util-linux (2.38.1-5+deb12u3)
Version: 1:2.38.1-5+deb12u3
Replaces: bash-completion (<< 1:2.1-4.1~)
Recommends: bsdextrautils, sensible-utils
Description: basic utilities from 4.4BSD-Lite
 This package contains the bits and pieces from 4.4BSD-Lite which
 .
 are still used.

Package: adduser
Status: install ok installed
Priority: important
Architecture: all
Multi-Arch: foreign
Version: 3.134
Conffiles:
 /etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18
 /etc/deluser.conf 11a06baf8245fd8d690b99024d228c1f
Description: add and remove users and groups

Package: libgcc-s1
Status: install ok installed
Architecture: i386
Source: gcc-12
Version: 12.2.0-14
Description: GCC support library

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Source: gcc-12
Version: 12.2.0-14

Package: old-kernel
Status: deinstall ok config-files
Architecture: amd64
Version: 5.10.0-1

Package: broken
Status: install reinstreq half-installed
Architecture: amd64
Version: 1.0

Package: pinned
Status: hold ok installed
Architecture: amd64
Version: 2.0
";

#[test]
fn real_stanzas() {
    check(
        REAL,
        &[
            ("adduser", "3.134", "all", "adduser", "3.134"),
            (
                "bsdutils",
                "1:2.38.1-5+deb12u3",
                "amd64",
                "util-linux",
                "2.38.1-5+deb12u3",
            ),
            ("libgcc-s1", "12.2.0-14", "amd64", "gcc-12", "12.2.0-14"),
            ("libgcc-s1", "12.2.0-14", "i386", "gcc-12", "12.2.0-14"),
            ("pinned", "2.0", "amd64", "pinned", "2.0"),
        ],
    );
}

#[test]
fn layout_variants() {
    // CRLF, field names in any case, blank lines made of spaces, no final
    // newline, several blank lines, a line that is not a field.
    check(
        "package: a\r\nSTATUS: install ok installed\r\nversion:  1.0 \r\n \t\r\n\n\nnot a field\nPackage: b\nStatus: install  ok\tinstalled\nSource: b-src ( 2 )",
        &[("a", "1.0", "", "a", "1.0"), ("b", "", "", "b-src", "2")],
    );
    // A stanza without Package or Status, an empty name, a status with an
    // extra word, a continuation line before any field.
    check(
        " orphan continuation\nStatus: install ok installed\n\nPackage:\nStatus: install ok installed\n\nPackage: x\nStatus: install ok installed extra\n",
        &[],
    );
    // The same package twice: reported once.
    check(
        "Package: a\nStatus: install ok installed\nArchitecture: all\n\nPackage: a\nStatus: install ok installed\nArchitecture: all\n",
        &[("a", "", "all", "a", "")],
    );
    check("", &[]);
}

#[test]
fn limits_give_clear_errors() {
    let limits = PackageLimits {
        max_input_bytes: 200,
        max_packages: 1,
        max_field_bytes: 8,
    };
    let two =
        "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: install ok installed\n";
    assert_eq!(
        parse_dpkg_status(two.as_bytes(), &limits),
        Err(PackagesError::TooManyPackages { max: 1 })
    );
    let long = "Package: a\nStatus: install ok installed\nVersion: 123456789\n";
    let error = parse_dpkg_status(long.as_bytes(), &limits).expect_err("too long");
    assert_eq!(
        error.to_string(),
        "package \"a\": its version is longer than 8 bytes"
    );
    let big = "x".repeat(201);
    assert_eq!(
        parse_dpkg_status(big.as_bytes(), &limits),
        Err(PackagesError::TooLarge { max: 200 })
    );
    // Not installed packages do not count against the cap.
    let one =
        "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: purge ok not-installed\n";
    assert_eq!(
        parse_dpkg_status(one.as_bytes(), &limits).map(|p| p.len()),
        Ok(1)
    );
}

#[test]
fn a_missing_database_is_no_packages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("status");
    assert_eq!(read_installed(&path, &PackageLimits::default()), Ok(None));
    std::fs::write(&path, "x".repeat(100)).expect("write");
    let small = PackageLimits {
        max_input_bytes: 99,
        ..PackageLimits::default()
    };
    assert_eq!(
        read_installed(&path, &small),
        Err(PackagesError::TooLarge { max: 99 })
    );
}

/// This machine's dpkg database, read by the agent's parser, lists what
/// `dpkg-query` lists as installed. (The test runs dpkg-query; the agent never does.)
#[test]
fn agrees_with_dpkg_query_on_this_machine() {
    let Ok(output) = std::process::Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev}|${Package}|${Version}|${Architecture}|${source:Package}|${source:Version}\n",
        ])
        .output()
    else {
        // FIXME: only meaningful on a dpkg system; the e2e test needs one too.
        assert!(!Path::new(DPKG_STATUS).exists(), "dpkg-query missing on a dpkg system");
        return;
    };
    assert!(output.status.success());
    let mut expected: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("ii ") || l.starts_with("hi "))
        .map(|l| l.split_once('|').map_or("", |(_, rest)| rest).to_owned())
        .collect();
    expected.sort();
    let started = std::time::Instant::now();
    let parsed = read_installed(Path::new(DPKG_STATUS), &PackageLimits::default())
        .expect("parses")
        .expect("a dpkg system");
    let took = started.elapsed();
    let mut got: Vec<String> = parsed
        .iter()
        .map(|p| {
            format!(
                "{}|{}|{}|{}|{}",
                p.name, p.version, p.architecture, p.source, p.source_version
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);
    assert!(!got.is_empty());
    eprintln!("parsed {} installed packages in {took:?}", got.len());
}

fn word() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9+.~:-]{0,30}"
}

fn package() -> impl Strategy<Value = InstalledPackage> {
    (
        word(),
        word(),
        "[a-z0-9]{1,8}",
        proptest::option::of(word()),
        proptest::option::of(word()),
    )
        .prop_map(|(name, version, architecture, source, source_version)| {
            let source_version = source.as_ref().and(source_version);
            InstalledPackage {
                source: source.clone().unwrap_or_else(|| name.clone()),
                source_version: source_version.unwrap_or_else(|| version.clone()),
                name,
                version,
                architecture,
            }
        })
}

/// Writes packages as dpkg would, with fields the parser skips around them.
fn render(packages: &[InstalledPackage], uninstalled: &[InstalledPackage]) -> String {
    let mut out = String::new();
    for (p, status) in packages
        .iter()
        .map(|p| (p, "install ok installed"))
        .chain(uninstalled.iter().map(|p| (p, "deinstall ok config-files")))
    {
        let _ = write!(
            out,
            "Package: {}\nStatus: {status}\nPriority: optional\n",
            p.name
        );
        let _ = write!(
            out,
            "Architecture: {}\nVersion: {}\n",
            p.architecture, p.version
        );
        if p.source != p.name || p.source_version != p.version {
            let _ = writeln!(out, "Source: {} ({})", p.source, p.source_version);
        }
        out.push_str("Description: a package\n with: a continuation\n .\n Package: fake\n\n");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_input_gives_a_result_within_limits(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let limits = PackageLimits { max_input_bytes: 4096, max_packages: 8, max_field_bytes: 16 };
        if let Ok(packages) = parse_dpkg_status(&bytes, &limits) {
            prop_assert!(packages.len() <= 8);
            for p in &packages {
                for f in [&p.name, &p.version, &p.architecture, &p.source, &p.source_version] {
                    prop_assert!(f.len() <= 16);
                }
            }
        }
    }

    #[test]
    fn stanza_like_input_never_panics(lines in proptest::collection::vec(
        "(Package|Status|Source|Version|Architecture|X)?:? ?[ -~()]{0,12}|[ \t]?|install ok installed", 0..64)) {
        let _ = parse_dpkg_status(lines.join("\n").as_bytes(), &PackageLimits::default());
    }

    #[test]
    fn generated_packages_round_trip(
        packages in proptest::collection::vec(package(), 0..40),
        uninstalled in proptest::collection::vec(package(), 0..5),
    ) {
        let mut expected = packages.clone();
        expected.sort();
        expected.dedup_by(|a, b| a.name == b.name && a.architecture == b.architecture);
        let got = parse_dpkg_status(render(&packages, &uninstalled).as_bytes(), &PackageLimits::default());
        prop_assert_eq!(got, Ok(expected));
    }
}
