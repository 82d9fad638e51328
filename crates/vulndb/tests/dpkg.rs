//! Our ordering against the real `dpkg --compare-versions` on this machine,
//! for generated versions built from the pieces that make orderings tricky
//! (tildes, leading zeros, letters against punctuation, epochs, revisions),
//! and the properties an ordering must have.
//!
//! dpkg is spawned once per comparison, so each proptest case sends a
//! batch to one `sh` that runs them all and prints one answer per line.

use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

use bulwark_vulndb::Version;
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "0",
    "1",
    "2",
    "9",
    "10",
    "00",
    "01",
    "a",
    "b",
    "Z",
    "~",
    "~~",
    ".",
    "+",
    "deb12u1",
    "ubuntu0.1",
];

fn part(min: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), min..5).prop_map(|p| p.concat())
}

/// `[epoch:]digit upstream[-revision]`, valid by construction.
fn version() -> impl Strategy<Value = String> {
    (
        prop::option::of(0u32..3),
        0u8..10,
        part(0),
        prop::option::of(part(1)),
    )
        .prop_map(|(epoch, first, upstream, revision)| {
            let mut v = String::new();
            if let Some(e) = epoch {
                v.push_str(&format!("{e}:"));
            }
            v.push_str(&format!("{first}{upstream}"));
            if let Some(r) = revision {
                v.push('-');
                v.push_str(&r);
            }
            v
        })
}

/// Any short string of version-ish characters, valid or not.
fn anything() -> impl Strategy<Value = String> {
    "[0-9a-z:~+.\\-_ ]{0,10}"
}

/// Runs `script` (one line per question) in one shell; one answer a line.
fn sh(script: &str) -> Vec<String> {
    let mut child = Command::new("sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script written");
    let out = child.wait_with_output().expect("sh finishes");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Single quotes for sh; the generators never produce a quote.
fn q(text: &str) -> String {
    assert!(!text.contains('\''));
    format!("'{text}'")
}

fn dpkg_orderings(pairs: &[(String, String)]) -> Vec<Ordering> {
    let mut script = String::new();
    for (a, b) in pairs {
        let (a, b) = (q(a), q(b));
        script.push_str(&format!(
            "if dpkg --compare-versions -- {a} lt {b}; then echo lt; \
             elif dpkg --compare-versions -- {a} eq {b}; then echo eq; else echo gt; fi\n"
        ));
    }
    sh(&script)
        .iter()
        .map(|answer| match answer.as_str() {
            "lt" => Ordering::Less,
            "eq" => Ordering::Equal,
            _ => Ordering::Greater,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn ordering_is_dpkgs(pairs in prop::collection::vec((version(), version()), 150)) {
        let expected = dpkg_orderings(&pairs);
        prop_assert_eq!(expected.len(), pairs.len());
        for ((a, b), dpkg) in pairs.iter().zip(expected) {
            let ours = Version::parse(a).expect("valid").cmp(&Version::parse(b).expect("valid"));
            prop_assert_eq!(ours, dpkg, "{} vs {}", a, b);
        }
    }

    /// A sorted list is sorted for dpkg too (transitivity, end to end).
    #[test]
    fn sorted_lists_are_sorted_for_dpkg(mut list in prop::collection::vec(version(), 60)) {
        list.sort_by(|a, b| Version::parse(a).expect("valid").cmp(&Version::parse(b).expect("valid")));
        let pairs: Vec<_> = list.windows(2).map(|w| (w[0].clone(), w[1].clone())).collect();
        for (pair, dpkg) in pairs.iter().zip(dpkg_orderings(&pairs)) {
            prop_assert_ne!(dpkg, Ordering::Greater, "{} then {}", pair.0, pair.1);
        }
    }

    /// What we accept, dpkg accepts without a warning.
    #[test]
    fn accepted_versions_are_valid_for_dpkg(texts in prop::collection::vec(anything(), 100)) {
        let accepted: Vec<&String> = texts.iter().filter(|t| Version::parse(t).is_ok()).collect();
        let script: String = accepted
            .iter()
            .map(|t| format!("dpkg --validate-version -- {} && echo ok || echo bad\n", q(t)))
            .collect();
        for (text, answer) in accepted.iter().zip(sh(&script)) {
            prop_assert_eq!(answer, "ok", "{:?}", text);
        }
    }

    #[test]
    fn ordering_is_antisymmetric_and_transitive(a in version(), b in version(), c in version()) {
        let (a, b, c) = (
            Version::parse(&a).expect("valid"),
            Version::parse(&b).expect("valid"),
            Version::parse(&c).expect("valid"),
        );
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a.cmp(&a), Ordering::Equal);
        if a <= b && b <= c {
            prop_assert!(a <= c);
        }
        if a == b {
            prop_assert_eq!(a.cmp(&c), b.cmp(&c));
        }
    }
}

/// The table of tricky cases, asked of dpkg itself as well.
#[test]
fn the_tricky_table_is_dpkgs_too() {
    let table = [
        ("1.0~rc1", "1.0", Ordering::Less),
        ("1:0", "2.0", Ordering::Greater),
        ("1.0-1", "1.0-1+deb12u1", Ordering::Less),
        ("0~", "0", Ordering::Less),
        ("3.0.11-1~deb12u2", "3.0.15-1~deb12u1", Ordering::Less),
        ("1.0", "1.0-0", Ordering::Equal),
        ("1.0a", "1.0+", Ordering::Less),
    ];
    let pairs: Vec<_> = table
        .iter()
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .collect();
    for ((a, b, expect), dpkg) in table.iter().zip(dpkg_orderings(&pairs)) {
        assert_eq!(dpkg, *expect, "dpkg: {a} vs {b}");
        let ours = Version::parse(a)
            .expect("valid")
            .cmp(&Version::parse(b).expect("valid"));
        assert_eq!(ours, *expect, "ours: {a} vs {b}");
    }
}
