//! Which OSV ecosystem release a device runs, from what its agent reported
//! (os-release's `NAME` and `VERSION_ID`, as the agent's inventory carries
//! them: `Debian GNU/Linux` and `12`, `Ubuntu` and `22.04`).
//!
//! The report is the agent's, untrusted: at worst a device names another
//! release and is matched against that release's advisories. Anything not
//! recognised gets no release, and callers say "not matched", never
//! "no vulnerabilities".

/// `Debian:12`, `Ubuntu:22.04:LTS` or `Ubuntu:23.10`; `None` when the
/// system is not a Debian or Ubuntu release this can name.
pub fn ecosystem_release(os_name: &str, os_version: &str) -> Option<String> {
    let name = os_name.trim().to_ascii_lowercase();
    let version = release_number(os_version).or_else(|| release_number(os_name))?;
    if name.starts_with("debian") {
        // Debian's VERSION_ID is the major release; a point release
        // ("12.5") is the same OSV ecosystem.
        let major = version.split('.').next()?;
        return Some(format!("Debian:{major}"));
    }
    if name.starts_with("ubuntu") {
        // "22.04.3" (a point release in the pretty name) is 22.04.
        let mut parts = version.split('.');
        let (year, month) = (parts.next()?, parts.next()?);
        if year.len() != 2 || month.len() != 2 {
            return None;
        }
        let year: u32 = year.parse().ok()?;
        // Long-term support: the April release of even years.
        let lts = year.is_multiple_of(2) && month == "04";
        return Some(if lts {
            format!("Ubuntu:{year}.{month}:LTS")
        } else {
            format!("Ubuntu:{year}.{month}")
        });
    }
    None
}

/// The first run of digits and dots in `text` that starts with a digit,
/// without a trailing dot: `12` in "12 (bookworm)", `22.04.3` in
/// "22.04.3 LTS".
fn release_number(text: &str) -> Option<&str> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let number = rest[..end].trim_end_matches('.');
    // Bounded: a real release number is short.
    (number.len() <= 16).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::ecosystem_release;

    fn release(name: &str, version: &str) -> Option<String> {
        ecosystem_release(name, version)
    }

    #[test]
    fn debian_from_os_release_fields() {
        assert_eq!(
            release("Debian GNU/Linux", "12").as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            release("Debian GNU/Linux", "11").as_deref(),
            Some("Debian:11")
        );
        assert_eq!(
            release("Debian GNU/Linux", "12.5").as_deref(),
            Some("Debian:12")
        );
        // The pretty name, when only that was reported.
        assert_eq!(
            release("Debian GNU/Linux 12 (bookworm)", "").as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            release("debian", "12 (bookworm)").as_deref(),
            Some("Debian:12")
        );
    }

    #[test]
    fn ubuntu_lts_and_interim() {
        assert_eq!(
            release("Ubuntu", "22.04").as_deref(),
            Some("Ubuntu:22.04:LTS")
        );
        assert_eq!(
            release("Ubuntu", "24.04").as_deref(),
            Some("Ubuntu:24.04:LTS")
        );
        assert_eq!(release("Ubuntu", "23.10").as_deref(), Some("Ubuntu:23.10"));
        assert_eq!(release("Ubuntu", "21.04").as_deref(), Some("Ubuntu:21.04"));
        assert_eq!(
            release("Ubuntu 22.04.3 LTS", "").as_deref(),
            Some("Ubuntu:22.04:LTS")
        );
        assert_eq!(release("Ubuntu", "2204"), None);
    }

    #[test]
    fn unknown_systems_get_no_release() {
        assert_eq!(release("", ""), None);
        assert_eq!(release("Debian GNU/Linux", ""), None);
        assert_eq!(release("Debian GNU/Linux trixie/sid", "n/a"), None);
        assert_eq!(release("Fedora Linux", "39"), None);
        assert_eq!(release("Windows", "11"), None);
        assert_eq!(release("Darwin", "14.1"), None);
        assert_eq!(release("Ubuntu", "noble"), None);
        assert_eq!(release("Debian GNU/Linux", "99999999999999999999"), None);
    }
}
