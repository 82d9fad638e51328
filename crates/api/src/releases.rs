//! The agent release mirror (RFD 0017): an owner's import of a TUF
//! repository's files, and reading its metadata back. The server only
//! stores and serves these bytes; agents and the CLI verify them with the
//! release root they hold, never with anything the server says.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest metadata document the mirror keeps (RFD 0017: 1 MiB).
pub const MAX_METADATA_BYTES: usize = 1 << 20;
/// Largest target file (an agent binary) the mirror keeps (RFD 0017: 64 MiB).
pub const MAX_TARGET_BYTES: usize = 64 << 20;
/// Largest upload body: a target in base64 and the JSON around it.
pub const MAX_UPLOAD_BODY_BYTES: usize = MAX_TARGET_BYTES / 3 * 4 + (64 << 10);

/// One file of a TUF repository, as `bulwark release import` uploads it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseFileUpload {
    /// `metadata` (a file of the repository's `metadata/` folder) or
    /// `target` (a file under `targets/`).
    #[schema(pattern = "^(metadata|target)$", example = "metadata")]
    pub kind: String,
    /// The file's name under that folder: `timestamp.json`, `2.root.json`;
    /// `bulwark-agent/0.2.0/<sha256>.x86_64-unknown-linux-gnu`.
    #[schema(example = "timestamp.json", min_length = 1)]
    pub path: String,
    /// The file's bytes, standard base64.
    pub content: String,
}

/// What the mirror stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseFileStored {
    pub kind: String,
    pub path: String,
    pub bytes: u64,
    /// SHA-256 of the bytes stored, hex (for the operator to compare; no
    /// one trusts it).
    pub sha256: String,
}

/// A metadata document, byte for byte as imported.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseMetadataView {
    pub name: String,
    /// Standard base64 of the document.
    pub content: String,
}

/// Is `name` a metadata document name the mirror serves: `root.json`,
/// `timestamp.json`, `snapshot.json`, `targets.json`, each optionally
/// prefixed by a version (`7.snapshot.json`)?
pub fn is_metadata_name(name: &str) -> bool {
    let (version, role) = match name.split_once('.') {
        Some((v, rest)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(v), rest)
        }
        _ => (None, name),
    };
    version.is_none_or(|v| v.len() <= 19)
        && matches!(
            role,
            "root.json" | "timestamp.json" | "snapshot.json" | "targets.json"
        )
}

/// Is `path` a target path the mirror keeps: 1 to 8 `/`-separated
/// components of ASCII letters, digits, `.`, `_`, `-`, none empty, `.` or
/// `..`, at most 255 bytes in all (no way out of a folder, nothing a shell
/// or a URL reads specially).
pub fn is_target_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    path.len() <= 255
        && (1..=8).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in [
            "root.json",
            "12.root.json",
            "timestamp.json",
            "3.targets.json",
        ] {
            assert!(is_metadata_name(good), "{good}");
        }
        for bad in [
            "",
            ".root.json",
            "x.root.json",
            "root",
            "../root.json",
            "1.2.root.json",
            "a.json",
        ] {
            assert!(!is_metadata_name(bad), "{bad}");
        }
        for good in ["bulwark-agent/0.2.0/ab12.x86_64-unknown-linux-gnu", "f"] {
            assert!(is_target_path(good), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/../b", "a b", "a\\b", "a?b", "a%2e",
        ] {
            assert!(!is_target_path(bad), "{bad}");
        }
        assert!(!is_target_path("a/b/c/d/e/f/g/h/i"));
    }
}
