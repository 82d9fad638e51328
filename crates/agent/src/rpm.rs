//! An RPM package header, as rpm keeps one per installed package.
//!
//! Modern rpm (4.16 and later) keeps its database in
//! `/var/lib/rpm/rpmdb.sqlite`: table `Packages`, one row per package, its
//! `blob` column the package's header. [`parse_header`] reads such a blob
//! (or a header with its 8-byte magic, as in a `.rpm` file) into an
//! [`InstalledPackage`]; it is pure and fuzzed
//! (`fuzz/fuzz_targets/rpm_header.rs`).
//!
//! Not wired into the inventory yet, on purpose: reading the SQLite file
//! itself would put an SQL engine (`libsqlite3-sys`) into the agent, which
//! `cargo xtask tidy` forbids, and a hand-written reader of SQLite's page
//! format is its own piece of work (B-tree pages, overflow pages for the
//! blobs of large headers). Until then RPM systems report no packages.
//!
//! The header format (rpm's `lib/header.c`, `headerImport`): a big-endian
//! `u32` count of index entries, a `u32` size of the data store, the index
//! (16 bytes per entry: tag, type, offset into the store, count), then the
//! store. Only the tags the inventory needs are read: NAME (1000), VERSION
//! (1001), RELEASE (1002), EPOCH (1003, an INT32), ARCH (1022) and
//! SOURCERPM (1044, `bash-5.1.8-6.el9.src.rpm`).

use bulwark_protocol::Limits;
use bulwark_protocol::inventory::InstalledPackage;

/// A header's magic in a `.rpm` file (absent from database blobs).
pub const HEADER_MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];

pub const TAG_NAME: u32 = 1000;
pub const TAG_VERSION: u32 = 1001;
pub const TAG_RELEASE: u32 = 1002;
pub const TAG_EPOCH: u32 = 1003;
pub const TAG_ARCH: u32 = 1022;
pub const TAG_SOURCERPM: u32 = 1044;

pub const TYPE_INT32: u32 = 4;
pub const TYPE_STRING: u32 = 6;
pub const TYPE_I18NSTRING: u32 = 9;

/// Caps on what [`parse_header`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpmLimits {
    /// Largest header, in bytes. Default 16 MiB (rpm's own cap is 256 MiB;
    /// a large package's header is a few MiB, mostly file lists).
    pub max_header_bytes: usize,
    /// Most index entries. Default 65,535 (rpm's `HEADER_TAGS_MAX`).
    pub max_entries: usize,
    /// Longest name, version, release, architecture or source, in bytes.
    /// Default: the protocol's short text.
    pub max_field_bytes: usize,
}

impl Default for RpmLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024 * 1024,
            max_entries: 65_535,
            max_field_bytes: Limits::default().max_text,
        }
    }
}

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpmError {
    #[error("the header is larger than the {max} bytes the agent reads")]
    TooLarge { max: usize },
    #[error("the header is shorter than its index and data store say")]
    Truncated,
    #[error("the header has bytes after its data store")]
    TrailingBytes,
    #[error("the header has {count} index entries, over the {max} the agent reads")]
    TooManyEntries { count: u64, max: usize },
    #[error("tag {tag}: {why}")]
    BadEntry { tag: u32, why: &'static str },
    #[error("the header has no {0}")]
    Missing(&'static str),
    #[error("its {field} is longer than {max} bytes")]
    FieldTooLong { field: &'static str, max: usize },
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The package a header describes: version `[EPOCH:]VERSION-RELEASE`,
/// source from SOURCERPM (its name and the same version; the package itself
/// when there is none, as for `gpg-pubkey`).
pub fn parse_header(bytes: &[u8], limits: &RpmLimits) -> Result<InstalledPackage, RpmError> {
    if bytes.len() > limits.max_header_bytes {
        return Err(RpmError::TooLarge {
            max: limits.max_header_bytes,
        });
    }
    let bytes = bytes.strip_prefix(&HEADER_MAGIC[..]).unwrap_or(bytes);
    let (Some(entries), Some(data_len)) = (be32(bytes, 0), be32(bytes, 4)) else {
        return Err(RpmError::Truncated);
    };
    if entries as usize > limits.max_entries {
        return Err(RpmError::TooManyEntries {
            count: u64::from(entries),
            max: limits.max_entries,
        });
    }
    // Both counts are u32 and the entries capped, so this cannot overflow a u64.
    let store_at = 8 + 16 * u64::from(entries);
    let end = store_at + u64::from(data_len);
    match end.cmp(&(bytes.len() as u64)) {
        std::cmp::Ordering::Greater => return Err(RpmError::Truncated),
        std::cmp::Ordering::Less => return Err(RpmError::TrailingBytes),
        std::cmp::Ordering::Equal => {}
    }
    let store = &bytes[store_at as usize..];
    let mut fields: [Option<String>; 5] = Default::default();
    let mut epoch = None;
    for i in 0..entries as usize {
        let at = 8 + 16 * i;
        let (Some(tag), Some(kind), Some(offset), Some(count)) = (
            be32(bytes, at),
            be32(bytes, at + 4),
            be32(bytes, at + 8),
            be32(bytes, at + 12),
        ) else {
            return Err(RpmError::Truncated);
        };
        let slot = match tag {
            TAG_NAME => 0,
            TAG_VERSION => 1,
            TAG_RELEASE => 2,
            TAG_ARCH => 3,
            TAG_SOURCERPM => 4,
            TAG_EPOCH => {
                let bad = |why| RpmError::BadEntry { tag, why };
                if kind != TYPE_INT32 || count == 0 {
                    return Err(bad("not an INT32"));
                }
                if !offset.is_multiple_of(4) {
                    return Err(bad("misaligned"));
                }
                epoch = Some(be32(store, offset as usize).ok_or(bad("outside the data store"))?);
                continue;
            }
            _ => continue,
        };
        let bad = |why| RpmError::BadEntry { tag, why };
        if kind != TYPE_STRING && kind != TYPE_I18NSTRING {
            return Err(bad("not a string"));
        }
        let text = store
            .get(offset as usize..)
            .ok_or(bad("outside the data store"))?;
        // An I18NSTRING holds `count` strings; the first is the default locale's.
        let len = text
            .iter()
            .position(|&b| b == 0)
            .ok_or(bad("not NUL-terminated"))?;
        fields[slot] = Some(String::from_utf8_lossy(&text[..len]).into_owned());
    }
    let [name, version, release, arch, source_rpm] = fields;
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or(RpmError::Missing("name"))?;
    let version = version.ok_or(RpmError::Missing("version"))?;
    let release = release.ok_or(RpmError::Missing("release"))?;
    let evr = match epoch {
        Some(epoch) => format!("{epoch}:{version}-{release}"),
        None => format!("{version}-{release}"),
    };
    let source = source_rpm
        .as_deref()
        .and_then(|s| source_name(s, &version, &release))
        .unwrap_or(&name)
        .to_owned();
    let package = InstalledPackage {
        source,
        source_version: evr.clone(),
        name,
        version: evr,
        architecture: arch.unwrap_or_default(),
    };
    for (field, value) in [
        ("name", &package.name),
        ("version", &package.version),
        ("architecture", &package.architecture),
        ("source", &package.source),
    ] {
        if value.len() > limits.max_field_bytes {
            return Err(RpmError::FieldTooLong {
                field,
                max: limits.max_field_bytes,
            });
        }
    }
    Ok(package)
}

/// `bash-5.1.8-6.el9.src.rpm` → `bash`, when it ends in the binary's own
/// `-VERSION-RELEASE.src.rpm` (or `.nosrc.rpm`); otherwise the text before
/// its last two dashes.
fn source_name<'a>(source_rpm: &'a str, version: &str, release: &str) -> Option<&'a str> {
    let stem = source_rpm
        .strip_suffix(".src.rpm")
        .or_else(|| source_rpm.strip_suffix(".nosrc.rpm"))?;
    if let Some(name) = stem.strip_suffix(&format!("-{version}-{release}")) {
        return Some(name).filter(|n| !n.is_empty());
    }
    let (rest, _release) = stem.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    Some(name).filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests;
