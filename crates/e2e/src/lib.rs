//! Harness for Bulwark's end-to-end tests.
//!
//! The tests in `tests/` run the real binaries the way a person would: `bulwark
//! up` on a fresh data directory with ports chosen by the OS, `bulwark-agent
//! enroll` and `run`, the operator CLI, and the HTTP API through [`Api`].
//! Nothing here talks to the server's code directly; what these tests see is
//! what an operator or an agent sees.
//!
//! The binaries are found next to the test executable (`target/debug`), so run
//! `cargo build --workspace --bins` (or `cargo xtask test`, which does it) first.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

mod agents;
mod api;
pub mod apt_sandbox;
mod export;
mod mail;
mod operator;
mod owner;
mod process;
/// Where `cargo xtask test` installs the Python tools the tests run
/// (schemathesis, aiosmtpd): the one file both compile.
#[path = "../../../xtask/src/schemathesis.rs"]
pub mod python_tools;
mod server;
mod waiting;
mod webhook;
mod witness;

pub use agents::*;
pub use api::*;
pub use export::*;
pub use mail::*;
pub use owner::*;
pub use process::*;
pub use server::*;
pub use waiting::*;
pub use webhook::*;
pub use witness::*;

pub use operator::{
    OPERATOR_WAIT, OperatorSetup, decode_hex, is_final, marker_script, operator_cli,
    operator_login, sql_text, sqlite, target_of, wait_job_final,
};
pub use reqwest::{Method, StatusCode};
pub use tempfile::TempDir;

/// How long `bulwark up` may take to write `server.json`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped process may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The password every test owner gets (the server requires at least 12 characters).
pub const OWNER_PASSWORD: &str = "correct horse battery staple";
pub const OWNER_USERNAME: &str = "owner";
/// TOTP parameters the contract fixes: SHA-1, 6 digits, 30-second steps.
pub const TOTP_STEP_SECS: u64 = 30;

// ---------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------

/// The directory cargo put the workspace binaries in: the test executable is
/// `target/<profile>/deps/NAME-HASH`, the binaries are in `target/<profile>`.
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the test executable")?;
    let deps = exe
        .parent()
        .context("test executable has no parent directory")?;
    let dir = if deps.file_name().is_some_and(|name| name == "deps") {
        deps.parent().context("deps directory has no parent")?
    } else {
        deps
    };
    Ok(dir.to_path_buf())
}

/// Path of a workspace binary (`bulwark` or `bulwark-agent`), or a clear
/// error telling how to build it.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "the end-to-end tests need the `{name}` binary at {}, which does not exist.\n\
             Build the binaries first: `cargo build --workspace --bins` (or run everything with `cargo xtask test`).",
            path.display()
        );
    }
    if let Some(newer) = source_newer_than(&path)? {
        bail!(
            "the `{name}` binary at {} is older than {}, one of its sources: `cargo test` does not \
             rebuild the binaries the end-to-end tests run.\n\
             Build them first: `cargo build --workspace --bins` (or run everything with `cargo xtask test`).",
            path.display(),
            newer.display()
        );
    }
    Ok(path)
}

/// A source file of `binary` changed after it was built, by the dep-info
/// file cargo writes beside it (`NAME.d`: the binary, a colon, every file
/// it was built from). No dep-info: nothing to say.
fn source_newer_than(binary: &Path) -> Result<Option<PathBuf>> {
    let mut dep_info = binary.as_os_str().to_owned();
    dep_info.push(".d");
    let Ok(text) = std::fs::read_to_string(&dep_info) else {
        return Ok(None);
    };
    let built = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading the time {} was built", binary.display()))?;
    let Some((_, sources)) = text.lines().next().and_then(|l| l.split_once(": ")) else {
        return Ok(None);
    };
    Ok(dep_info_paths(sources).into_iter().find(|source| {
        std::fs::metadata(source)
            .and_then(|m| m.modified())
            .is_ok_and(|changed| changed > built)
    }))
}

/// The paths of a dep-info line: separated by spaces, a space inside a
/// path escaped as `\ `.
fn dep_info_paths(line: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => {
                if !current.is_empty() {
                    paths.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        paths.push(PathBuf::from(current));
    }
    paths
}

pub fn bulwark_bin() -> Result<PathBuf> {
    binary("bulwark")
}

pub fn agent_bin() -> Result<PathBuf> {
    binary("bulwark-agent")
}

/// An apt configuration with no package sources and its own lists and
/// cache, given to every agent the harness starts (`BULWARK_AGENT_APT_CONFIG`):
/// an agent runs as root here and would otherwise run `apt-get update`
/// against this machine's sources and write its lists. Tests of patching
/// give their own (`patch_jobs.rs`). Made once per test process.
pub fn stub_apt_config() -> Result<PathBuf> {
    static CONFIG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(path) = CONFIG.get() {
        return Ok(path.clone());
    }
    let dir = tempfile::Builder::new()
        .prefix("bulwark-e2e-apt-")
        .tempdir()?
        .keep();
    for sub in ["sources.list.d", "lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::write(dir.join("sources.list"), "")?;
    let path = dir.join("apt.conf");
    std::fs::write(
        &path,
        format!(
            "Dir::Etc::sourcelist \"{0}/sources.list\";\n\
             Dir::Etc::sourceparts \"{0}/sources.list.d\";\n\
             Dir::State::lists \"{0}/lists\";\n\
             Dir::Cache \"{0}/cache\";\n",
            dir.display()
        ),
    )?;
    Ok(CONFIG.get_or_init(|| path).clone())
}

/// The workspace root (for example to write `docs/screenshots`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

// ---------------------------------------------------------------------------
// `bulwark up`
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// `bulwark server` (HTTPS, TOML configuration)
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_paths_keep_escaped_spaces() {
        assert_eq!(
            dep_info_paths("/a/src/main.rs /b\\ c/lib.rs  /d.html"),
            [
                PathBuf::from("/a/src/main.rs"),
                PathBuf::from("/b c/lib.rs"),
                PathBuf::from("/d.html")
            ]
        );
    }

    #[test]
    fn a_source_newer_than_the_binary_is_named() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let source = dir.path().join("main.rs");
        let binary = dir.path().join("tool");
        std::fs::write(&source, "fn main() {}")?;
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&binary, "built")?;
        std::fs::write(
            dir.path().join("tool.d"),
            format!("{}: {}\n", binary.display(), source.display()),
        )?;
        assert_eq!(source_newer_than(&binary)?, None);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&source, "fn main() { changed() }")?;
        assert_eq!(source_newer_than(&binary)?, Some(source));
        Ok(())
    }

    #[test]
    fn totp_matches_rfc6238_sha1_vectors() {
        // RFC 6238 appendix B: the SHA-1 seed is "12345678901234567890"; the
        // RFC prints 8 digits, the last 6 are the 6-digit code.
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert_eq!(totp_code(secret, 59).ok().as_deref(), Some("287082"));
        assert_eq!(
            totp_code(secret, 1_111_111_109).ok().as_deref(),
            Some("081804")
        );
        assert_eq!(
            totp_code(secret, 20_000_000_000).ok().as_deref(),
            Some("353130")
        );
    }

    #[test]
    fn reads_printed_values() {
        let lines = Lines::default();
        lines.push("Console:    http://localhost:1234/".into());
        lines.push(
            "Setup code: ABCD-EFGH-JKLM-NPQR  (one-time; create the first owner at /setup)".into(),
        );
        assert_eq!(
            lines.value_after("Console:").as_deref(),
            Some("http://localhost:1234/")
        );
        assert_eq!(
            lines.value_after("Setup code:").as_deref(),
            Some("ABCD-EFGH-JKLM-NPQR")
        );
        assert_eq!(lines.value_after("Nope:"), None);
    }

    #[test]
    fn parses_server_json() {
        let info = ServerInfo::parse(
            r#"{"console_url":"http://localhost:1/","gateway_url":"https://127.0.0.1:2","pid":3}"#,
        );
        assert!(info.is_ok_and(|info| info.pid == 3 && info.gateway_url == "https://127.0.0.1:2"));
        assert!(ServerInfo::parse(r#"{"console_url":"http://localhost:1/""#).is_err());
    }
}
