//! Debian package versions, parsed and ordered exactly as dpkg does
//! (`lib/dpkg/parsehelp.c` `parseversion`, `lib/dpkg/version.c`
//! `dpkg_version_compare`, dpkg 1.21).
//!
//! A version is `[epoch:]upstream[-revision]`. Ordering: epochs as numbers,
//! then upstream, then revision, each with dpkg's `verrevcmp`: alternating
//! runs of non-digits (compared character by character, where `~` sorts
//! before everything, even the end of the string, letters before every
//! other character) and digit runs (compared as numbers).
//!
//! Parsing is dpkg's, with one deliberate difference: what dpkg only warns
//! about (an upstream not starting with a digit, characters outside
//! `[A-Za-z0-9.+~:-]`, an epoch written with a sign, which `strtol` takes)
//! is refused here. Vulnerability data with such a version is malformed,
//! and the versions we accept are a subset of those dpkg accepts without a
//! warning, on which the ordering is identical (`tests/dpkg.rs` checks both
//! against the real `dpkg`).

use std::cmp::Ordering;
use std::fmt;

/// Longest version text accepted (dpkg has no cap; Debian's longest real
/// versions are well under 100 bytes).
pub const MAX_VERSION_LEN: usize = 256;

/// Why a version was refused, in dpkg's words where dpkg has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    #[error("version string is empty")]
    Empty,
    #[error("version string is longer than {MAX_VERSION_LEN} bytes")]
    TooLong,
    #[error("version string has embedded spaces")]
    EmbeddedSpaces,
    #[error("epoch in version is empty")]
    EpochEmpty,
    /// dpkg's "not number", and also a sign (`+1:`, `-0:`), which dpkg's
    /// `strtol` would take.
    #[error("epoch in version is not number")]
    EpochNotNumber,
    #[error("epoch in version is too big")]
    EpochTooBig,
    #[error("nothing after colon in version number")]
    NothingAfterColon,
    #[error("revision number is empty")]
    RevisionEmpty,
    #[error("version number is empty")]
    UpstreamEmpty,
    /// A warning in dpkg; refused here.
    #[error("version number does not start with digit")]
    UpstreamNotDigit,
    /// A warning in dpkg; refused here.
    #[error("invalid character in version number")]
    UpstreamCharacter,
    /// A warning in dpkg; refused here.
    #[error("invalid character in revision number")]
    RevisionCharacter,
}

/// A parsed Debian version. Equality is dpkg's: `1.0`, `0:1.0` and
/// `1.0-0` are equal (so there is deliberately no `Hash`).
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u32,
    upstream: String,
    revision: String,
    /// The text as given (blanks trimmed), for display.
    text: String,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl Version {
    /// Parses `text` as dpkg's `parseversion` does (see the module for the
    /// warnings refused here).
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        if text.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong);
        }
        // 1. Trim leading and trailing blanks; anything blank inside is an error.
        let trimmed = text.trim_matches(|c: char| c == ' ' || c == '\t');
        if trimmed.is_empty() {
            return Err(VersionError::Empty);
        }
        if trimmed.bytes().any(is_blank) {
            return Err(VersionError::EmbeddedSpaces);
        }
        // 2. The epoch is what precedes the first colon.
        let (epoch, rest) = match trimmed.split_once(':') {
            None => (0, trimmed),
            Some((epoch, rest)) => {
                if epoch.is_empty() {
                    return Err(VersionError::EpochEmpty);
                }
                if !epoch.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::EpochNotNumber);
                }
                // dpkg: at most INT_MAX.
                let value = epoch
                    .parse::<u32>()
                    .ok()
                    .filter(|&e| e <= i32::MAX as u32)
                    .ok_or(VersionError::EpochTooBig)?;
                if rest.is_empty() {
                    return Err(VersionError::NothingAfterColon);
                }
                (value, rest)
            }
        };
        // 3. The revision is what follows the last hyphen.
        let (upstream, revision) = match rest.rsplit_once('-') {
            None => (rest, ""),
            Some((_, "")) => return Err(VersionError::RevisionEmpty),
            Some((upstream, revision)) => (upstream, revision),
        };
        // 4. Character checks, in dpkg's order.
        let first = upstream.bytes().next().ok_or(VersionError::UpstreamEmpty)?;
        if !first.is_ascii_digit() {
            return Err(VersionError::UpstreamNotDigit);
        }
        if !upstream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+~:".contains(&b))
        {
            return Err(VersionError::UpstreamCharacter);
        }
        if !revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b))
        {
            return Err(VersionError::RevisionCharacter);
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
            text: trimmed.to_owned(),
        })
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision, empty when there is none.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The text as given, blanks trimmed.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    /// dpkg's `dpkg_version_compare`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| verrevcmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// dpkg's `order`: the weight of one byte of a non-digit run; 0 is the end
/// of the string (and digits, which end the run).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` over one part (upstream or revision).
pub fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit_at = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        // A non-digit run: byte by byte, the end weighing 0.
        while (i < a.len() && !digit_at(a, i)) || (j < b.len() && !digit_at(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // A digit run: as a number, without leading zeros.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit_at(a, i) && digit_at(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit_at(a, i) {
            return Ordering::Greater;
        }
        if digit_at(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Fuzzing entry (`fuzz/fuzz_targets/debian_version.rs`): two versions
/// from one input, split at the first NUL; parsing never panics, and the
/// ordering of what parses is antisymmetric, reflexive and consistent with
/// a round trip through the displayed text.
#[cfg(fuzzing)]
pub fn fuzz_compare(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\0').unwrap_or((&text, "0"));
    let (Ok(va), Ok(vb)) = (Version::parse(a), Version::parse(b)) else {
        return;
    };
    assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
    assert_eq!(va.cmp(&va), Ordering::Equal);
    let again = Version::parse(va.as_str()).expect("a parsed version's text parses");
    assert_eq!(again.cmp(&va), Ordering::Equal);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// `a` sorts `expect` relative to `b`, and the reverse holds.
    fn check(a: &str, expect: Ordering, b: &str) {
        assert_eq!(v(a).cmp(&v(b)), expect, "{a} vs {b}");
        assert_eq!(v(b).cmp(&v(a)), expect.reverse(), "{b} vs {a}");
    }

    #[test]
    fn tricky_orderings() {
        use Ordering::*;
        for (a, o, b) in [
            ("1.0~rc1", Less, "1.0"),
            ("1:0", Greater, "2.0"),
            ("1.0-1", Less, "1.0-1+deb12u1"),
            ("0~", Less, "0"),
            ("1.0~~", Less, "1.0~"),
            ("1.0~~a", Less, "1.0~"),
            ("1.0~", Less, "1.0"),
            ("1.0", Less, "1.0a"),
            ("1.0a", Less, "1.0+"),
            ("1.0+", Less, "1.0."),
            ("1.0", Equal, "1.00"),
            ("1.0", Equal, "0:1.0"),
            ("1.0", Equal, "1.0-0"),
            ("1.10", Greater, "1.9"),
            ("1.001", Equal, "1.1"),
            ("2.0-1", Greater, "1.99-99"),
            ("3.0.15-1~deb12u1", Greater, "3.0.11-1~deb12u2"),
            ("3.0.15-1~deb12u1", Less, "3.0.15-1"),
            ("3.0.15-1~deb12u1", Less, "3.0.15-1+deb12u1"),
            ("1:2.38.1-5+deb12u1", Greater, "2.38.1-5+deb12u3"),
            ("1.2.3-1ubuntu0.1", Greater, "1.2.3-1"),
            ("1.2.3-1ubuntu0.1", Less, "1.2.3-1ubuntu1"),
            ("1.0-a", Greater, "1.0-1"),
            ("1.0-1.1", Greater, "1.0-1"),
            ("0", Less, "0.0.1"),
            ("1:1", Greater, "0:999999999999999999999"),
            ("2:1.0", Greater, "1:9.9"),
            ("1.0-1~bpo12+1", Less, "1.0-1"),
            ("10", Greater, "9"),
            ("1a", Less, "1b"),
            ("1Z", Less, "1a"),
            ("1:1.2:3-4", Greater, "1:1.2"),
        ] {
            check(a, o, b);
        }
    }

    #[test]
    fn parts_are_dpkgs() {
        let x = v(" 2:1.2-3-4~x ");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (2, "1.2-3", "4~x"));
        assert_eq!(x.as_str(), "2:1.2-3-4~x");
        let y = v("1:2:3");
        assert_eq!((y.epoch(), y.upstream(), y.revision()), (1, "2:3", ""));
    }

    #[test]
    fn invalid_versions_name_dpkgs_reason() {
        use VersionError::*;
        for (text, error) in [
            ("", Empty),
            ("  ", Empty),
            ("1 0", EmbeddedSpaces),
            (":1", EpochEmpty),
            ("a:1", EpochNotNumber),
            ("+1:0", EpochNotNumber),
            ("-1:0", EpochNotNumber),
            ("2147483648:1", EpochTooBig),
            ("1:", NothingAfterColon),
            ("1.0-", RevisionEmpty),
            ("-1", UpstreamEmpty),
            ("1:-1", UpstreamEmpty),
            ("a1.0", UpstreamNotDigit),
            ("~1", UpstreamNotDigit),
            ("1.0_1", UpstreamCharacter),
            ("1.0-1_2", RevisionCharacter),
            ("1.0-1:2", EpochNotNumber),
            ("1:1.0-1:2", RevisionCharacter),
            ("1é", UpstreamCharacter),
        ] {
            assert_eq!(Version::parse(text).err(), Some(error), "{text:?}");
        }
        assert_eq!(Version::parse(&"1".repeat(257)).err(), Some(TooLong));
        assert!(Version::parse("2147483647:1").is_ok());
    }

    #[test]
    fn verrevcmp_handles_the_ends() {
        assert_eq!(verrevcmp(b"", b""), Ordering::Equal);
        assert_eq!(verrevcmp(b"", b"~"), Ordering::Greater);
        assert_eq!(verrevcmp(b"", b"0"), Ordering::Equal);
        assert_eq!(verrevcmp(b"a", b""), Ordering::Greater);
    }
}
