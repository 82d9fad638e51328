//! Log export directories as tests tamper with them: copy one, read and
//! rewrite its JSON-lines files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// A copy of the export directory `from` at `to` (returned), to tamper with.
pub fn copy_dir(from: &Path, to: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(to.to_owned())
}

/// The JSON lines of `dir/name`.
pub fn json_lines(dir: &Path, name: &str) -> Result<Vec<Value>> {
    std::fs::read_to_string(dir.join(name))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{name}: {l}")))
        .collect()
}

/// Writes `lines` as `dir/name`, one JSON value per line.
pub fn write_json_lines(dir: &Path, name: &str, lines: &[Value]) -> Result<()> {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join(name), body)?;
    Ok(())
}
