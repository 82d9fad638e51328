//! The agent's identity on disk, in its own state directory (mode 0700):
//! `device.key` (the Ed25519 seed, 0600, never leaves the machine) and
//! `agent.json` (server URL, device id, tenant, pinned CA fingerprint, 0600).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentState {
    /// Gateway URL, e.g. `https://rmm.example.com:8443`.
    pub server: String,
    pub device_id: String,
    pub tenant: String,
    /// SHA-256 of the server CA (hex), pinned at enrolment.
    pub ca_fingerprint: String,
}

pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("device.key")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("agent.json")
    }

    pub fn is_enrolled(&self) -> bool {
        self.state_path().exists()
    }

    /// Creates the directory with mode 0700 (and tightens an existing one).
    pub fn create(&self) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("cannot create the state directory {}", self.dir.display()))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    pub fn load(&self) -> anyhow::Result<(AgentState, SigningKey)> {
        let path = self.state_path();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "this agent is not enrolled ({} is missing); run `bulwark-agent enroll` first",
                path.display()
            )
        })?;
        let state: AgentState = serde_json::from_str(&text)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        let key_path = self.key_path();
        check_private(&key_path)?;
        let seed = std::fs::read(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is corrupt", key_path.display()))?;
        Ok((state, SigningKey::from_bytes(&seed)))
    }

    /// Writes the key and the state; the state file last, so a crash in
    /// between leaves the agent not enrolled rather than half enrolled.
    pub fn save(&self, state: &AgentState, key: &SigningKey) -> anyhow::Result<()> {
        self.create()?;
        write_private(&self.key_path(), key.as_bytes())?;
        write_private(
            &self.state_path(),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )?;
        Ok(())
    }

    pub fn fingerprint(state: &AgentState) -> anyhow::Result<[u8; 32]> {
        let bytes = hex_decode(&state.ca_fingerprint)
            .context("the pinned CA fingerprint in agent.json is corrupt")?;
        bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the pinned CA fingerprint in agent.json is corrupt"))
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Refuses a key file others can read: someone may have copied it.
fn check_private(path: &Path) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); it must be 0600",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_private_files_and_loads_them_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = StateDir::new(dir.path().join("state"));
        let key = SigningKey::from_bytes(&[5; 32]);
        let state = AgentState {
            server: "https://127.0.0.1:8443".into(),
            device_id: "d".into(),
            tenant: "demo".into(),
            ca_fingerprint: hex_encode(&[0xab; 32]),
        };
        state_dir.save(&state, &key).expect("save");
        let (loaded, loaded_key) = state_dir.load().expect("load");
        assert_eq!(loaded, state);
        assert_eq!(loaded_key.to_bytes(), key.to_bytes());
        assert_eq!(StateDir::fingerprint(&loaded).expect("fp"), [0xab; 32]);
        for f in ["device.key", "agent.json"] {
            let mode = std::fs::metadata(state_dir.path().join(f))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(state_dir.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);

        std::fs::set_permissions(
            state_dir.path().join("device.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        assert!(
            state_dir.load().is_err(),
            "a world-readable key must be refused"
        );
    }
}
