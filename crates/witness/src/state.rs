//! The witness's directory: its key (`witness.skey`, 0600), the logs it
//! follows (`logs/<id>.log`: origin and the log's vkey) and, per log, the
//! last checkpoint it cosigned (`logs/<id>.state`: `<size> <base64 root>`),
//! `<id>` being the hex SHA-256 of the origin.
//!
//! A state is written before the cosignature that depends on it leaves
//! (RFD 0006): temporary file, fsync, rename, fsync of the directory. A
//! state that does not read stops that log (an error, never a restart
//! from zero, which would let a rewritten log be cosigned).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_translog::cosignature::Cosigner;
use bulwark_translog::hash::Hash;
use bulwark_translog::note::NoteVerifier;
use sha2::{Digest, Sha256};

use crate::add_checkpoint::Cosigned;

const KEY_FILE: &str = "witness.skey";

/// A log this witness follows.
#[derive(Debug, Clone)]
pub struct FollowedLog {
    pub origin: String,
    pub key: NoteVerifier,
}

/// The directory, opened.
#[derive(Debug)]
pub struct WitnessDir {
    dir: PathBuf,
}

fn log_id(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

/// Writes `contents` to `path` so that a crash leaves the old file or the
/// new one, whole, and the new one survives a power cut once this returns.
fn write_durably(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().context("a file without a directory")?;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl WitnessDir {
    /// Makes a new witness: its key, named `name` (a schema-less URL, e.g.
    /// `witness.example.com/acme`). Refuses a directory that holds one.
    pub fn init(dir: &Path, name: &str) -> Result<Cosigner> {
        std::fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(KEY_FILE);
        ensure!(
            !path.exists(),
            "{} already holds a witness key: a witness keeps its key for life",
            path.display()
        );
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let cosigner = Cosigner::new(name, key).context("the witness name")?;
        write_durably(&path, format!("{}\n", cosigner.to_skey()).as_bytes(), 0o600)?;
        Ok(cosigner)
    }

    pub fn open(dir: &Path) -> Result<(Self, Cosigner)> {
        let path = dir.join(KEY_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (make a witness with `bulwark witness init`)",
                path.display()
            )
        })?;
        let cosigner = Cosigner::from_skey(text.trim())
            .with_context(|| format!("{} is not a witness key", path.display()))?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
            },
            cosigner,
        ))
    }

    /// Follows the log `origin`, whose checkpoints `log_vkey` signs.
    pub fn add_log(&self, origin: &str, log_vkey: &str) -> Result<()> {
        ensure!(
            !origin.is_empty() && !origin.contains('\n') && origin.trim() == origin,
            "an origin is one line without surrounding spaces"
        );
        NoteVerifier::from_vkey(log_vkey).context("the log's vkey")?;
        let path = self
            .dir
            .join("logs")
            .join(format!("{}.log", log_id(origin)));
        if path.exists() {
            bail!("this witness already follows {origin}");
        }
        write_durably(&path, format!("{origin}\n{log_vkey}\n").as_bytes(), 0o644)
    }

    /// Every log followed.
    pub fn logs(&self) -> Result<Vec<FollowedLog>> {
        let mut logs = Vec::new();
        let dir = self.dir.join("logs");
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let (origin, vkey) = text
                .strip_suffix('\n')
                .and_then(|t| t.split_once('\n'))
                .with_context(|| format!("{} is not `<origin>\\n<vkey>\\n`", path.display()))?;
            ensure!(
                path.file_stem().is_some_and(|s| *s == *log_id(origin)),
                "{} does not belong to the origin it names",
                path.display()
            );
            logs.push(FollowedLog {
                origin: origin.to_owned(),
                key: NoteVerifier::from_vkey(vkey)
                    .with_context(|| format!("the vkey in {}", path.display()))?,
            });
        }
        Ok(logs)
    }

    fn state_path(&self, origin: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.state", log_id(origin)))
    }

    /// What this witness last cosigned for `origin` (`None`: nothing yet).
    pub fn cosigned(&self, origin: &str) -> Result<Option<Cosigned>> {
        let path = self.state_path(origin);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let state = text
            .strip_suffix('\n')
            .and_then(|t| t.split_once(' '))
            .and_then(|(size, root)| {
                let size = size.parse().ok()?;
                let root = STANDARD.decode(root).ok()?;
                Some(Cosigned {
                    size,
                    root: Hash::try_from(root.as_slice()).ok()?,
                })
            });
        state.map(Some).with_context(|| {
            format!(
                "{} does not hold `<size> <base64 root>`: this log stays stopped until an operator restores it",
                path.display()
            )
        })
    }

    /// Records `state` for `origin`, durably, before it is cosigned.
    pub fn record(&self, origin: &str, state: &Cosigned) -> Result<()> {
        let line = format!("{} {}\n", state.size, STANDARD.encode(state.root.0));
        write_durably(&self.state_path(origin), line.as_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_witness_keeps_its_key_logs_and_states() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cosigner = WitnessDir::init(dir.path(), "witness.example/w1").expect("init");
        assert!(WitnessDir::init(dir.path(), "witness.example/w1").is_err());
        let (witness, reopened) = WitnessDir::open(dir.path()).expect("open");
        assert_eq!(reopened.verifier(), cosigner.verifier());
        let log = bulwark_translog::note::NoteSigner::new(
            "log.example",
            ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        )
        .expect("log");
        witness
            .add_log("log.example/acme", &log.verifier().to_vkey())
            .expect("add");
        assert!(
            witness
                .add_log("log.example/acme", &log.verifier().to_vkey())
                .is_err()
        );
        assert_eq!(witness.logs().expect("logs").len(), 1);
        assert_eq!(witness.cosigned("log.example/acme").expect("state"), None);
        let state = Cosigned {
            size: 7,
            root: Hash([3; 32]),
        };
        witness.record("log.example/acme", &state).expect("record");
        assert_eq!(
            witness.cosigned("log.example/acme").expect("state"),
            Some(state)
        );
        std::fs::write(witness.state_path("log.example/acme"), "garbage").expect("write");
        assert!(
            witness.cosigned("log.example/acme").is_err(),
            "a bad state stops the log"
        );
    }
}
