//! Installed software from the dpkg status database (`/var/lib/dpkg/status`).
//!
//! [`parse_dpkg_status`] is pure and fuzzed (`fuzz/fuzz_targets/dpkg_status.rs`):
//! the file is written by dpkg, but any package's maintainer scripts run as
//! root and a hostile package can put anything in it, so every byte is
//! untrusted. The format is deb822: stanzas of `Field: value` lines separated
//! by blank lines, continuation lines starting with a space or a tab. Only
//! [`read_installed`] touches the file system; nothing here runs dpkg.
//!
//! RPM systems report no packages: the rpm database is SQLite (or Berkeley
//! DB on older systems), and reading it would put a database engine into
//! the agent, whose footprint is on every endpoint. The headers it holds
//! can be parsed already ([`crate::rpm::parse_header`]); reading the file
//! is what is left.

use std::io::Read;
use std::path::Path;

use bulwark_protocol::Limits;
use bulwark_protocol::inventory::InstalledPackage;

/// Where dpkg keeps what is installed.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Caps on what [`parse_dpkg_status`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageLimits {
    /// Largest status file, in bytes. Default 64 MiB (a Debian host with
    /// 4,000 packages has about 4 MiB).
    pub max_input_bytes: usize,
    /// Most installed packages. Default: what one inventory may carry.
    pub max_packages: usize,
    /// Longest name, version, architecture or source, in bytes. Default:
    /// the protocol's short text.
    pub max_field_bytes: usize,
}

impl Default for PackageLimits {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_input_bytes: 64 * 1024 * 1024,
            max_packages: limits.max_packages,
            max_field_bytes: limits.max_text,
        }
    }
}

/// Why a package list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackagesError {
    #[error("the package database is larger than the {max} bytes the agent reads")]
    TooLarge { max: usize },
    #[error("more than {max} packages are installed; the agent reports none rather than a part")]
    TooManyPackages { max: usize },
    #[error("package {package:?}: its {field} is longer than {max} bytes")]
    FieldTooLong {
        package: String,
        field: &'static str,
        max: usize,
    },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The installed packages of dpkg status `bytes`, sorted by name and
/// architecture, one per (name, architecture).
///
/// A package counts when its status is installed without an error flag
/// (`install ok installed`, and also `hold ok installed`: a held package is
/// on disk just the same); half-installed, config-files and not-installed
/// ones do not. `Source: name (version)` gives the source package and
/// version; without it the source is the package itself.
pub fn parse_dpkg_status(
    bytes: &[u8],
    limits: &PackageLimits,
) -> Result<Vec<InstalledPackage>, PackagesError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(PackagesError::TooLarge {
            max: limits.max_input_bytes,
        });
    }
    let mut packages = Vec::new();
    let mut stanza = Stanza::default();
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            stanza.finish(&mut packages, limits)?;
        } else if !matches!(line.first(), Some(b' ' | b'\t')) {
            // Continuation lines only extend multi-line fields (Description,
            // Conffiles), none of which the inventory keeps.
            stanza.field(line);
        }
    }
    stanza.finish(&mut packages, limits)?;
    packages.sort();
    packages.dedup_by(|a, b| a.name == b.name && a.architecture == b.architecture);
    Ok(packages)
}

/// The fields of one stanza that the inventory keeps, as they appeared.
#[derive(Default)]
struct Stanza<'a> {
    package: Option<&'a [u8]>,
    status: Option<&'a [u8]>,
    version: Option<&'a [u8]>,
    architecture: Option<&'a [u8]>,
    source: Option<&'a [u8]>,
}

impl<'a> Stanza<'a> {
    fn field(&mut self, line: &'a [u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return; // not a field: dpkg would refuse the file; skip the line
        };
        let value = Some(line[colon + 1..].trim_ascii());
        let name = line[..colon].trim_ascii();
        // Field names are case-insensitive (deb822).
        let slot = match name.to_ascii_lowercase().as_slice() {
            b"package" => &mut self.package,
            b"status" => &mut self.status,
            b"version" => &mut self.version,
            b"architecture" => &mut self.architecture,
            b"source" => &mut self.source,
            _ => return,
        };
        *slot = value;
    }

    /// Adds the stanza's package if it is installed, and starts a new stanza.
    fn finish(
        &mut self,
        packages: &mut Vec<InstalledPackage>,
        limits: &PackageLimits,
    ) -> Result<(), PackagesError> {
        let stanza = std::mem::take(self);
        let (Some(name), Some(status)) = (stanza.package, stanza.status) else {
            return Ok(());
        };
        if name.is_empty() || !installed(status) {
            return Ok(());
        }
        if packages.len() == limits.max_packages {
            return Err(PackagesError::TooManyPackages {
                max: limits.max_packages,
            });
        }
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let name = text(name);
        let version = stanza.version.map(text).unwrap_or_default();
        let (source, source_version) = match stanza.source.map(split_source) {
            Some((source, Some(v))) if !source.is_empty() => (text(source), text(v)),
            Some((source, None)) if !source.is_empty() => (text(source), version.clone()),
            _ => (name.clone(), version.clone()),
        };
        let package = InstalledPackage {
            architecture: stanza.architecture.map(text).unwrap_or_default(),
            name,
            version,
            source,
            source_version,
        };
        for (field, value) in [
            ("name", &package.name),
            ("version", &package.version),
            ("architecture", &package.architecture),
            ("source", &package.source),
            ("source version", &package.source_version),
        ] {
            if value.len() > limits.max_field_bytes {
                let mut shown = package.name.clone();
                crate::text::clip(&mut shown, 64);
                return Err(PackagesError::FieldTooLong {
                    package: shown,
                    field,
                    max: limits.max_field_bytes,
                });
            }
        }
        packages.push(package);
        Ok(())
    }
}

/// `Status: WANT FLAG STATUS`: installed, without an error flag.
fn installed(status: &[u8]) -> bool {
    let mut words = status
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty());
    let (_want, flag, state) = (words.next(), words.next(), words.next());
    flag == Some(b"ok".as_slice())
        && state == Some(b"installed".as_slice())
        && words.next().is_none()
}

/// `name (version)` or `name`.
fn split_source(value: &[u8]) -> (&[u8], Option<&[u8]>) {
    match value.iter().position(|&b| b == b'(') {
        Some(open) => {
            let rest = &value[open + 1..];
            let version = rest.strip_suffix(b")").unwrap_or(rest).trim_ascii();
            (
                value[..open].trim_ascii(),
                Some(version).filter(|v| !v.is_empty()),
            )
        }
        None => (value, None),
    }
}

/// Reads and parses the dpkg status file at `path`; `Ok(None)` when there is
/// none (not a dpkg system).
pub fn read_installed(
    path: &Path,
    limits: &PackageLimits,
) -> Result<Option<Vec<InstalledPackage>>, PackagesError> {
    let unreadable = |error: std::io::Error| PackagesError::Unreadable {
        path: path.display().to_string(),
        reason: error.to_string(),
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(unreadable(error)),
    };
    // One byte more than the cap, so an oversized file is told apart.
    let mut bytes = Vec::new();
    file.take(limits.max_input_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    parse_dpkg_status(&bytes, limits).map(Some)
}

#[cfg(test)]
mod tests;
