//! Differential test against python-tuf, the TUF reference implementation
//! (PyPI `tuf`, installed by `cargo xtask test`): `python_tuf/scenarios.py`
//! makes release channels with python-tuf's own metadata API (a good one,
//! root rotations, a thief's rotation, expired and rolled-back roles, a
//! swapped binary, an unknown signer) and records python-tuf's client
//! verdict on each. This client must reach the same verdict on every one.
// The test is the I/O edge the crate leaves to its caller: files, a
// process, the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../../../xtask/src/schemathesis.rs"]
#[allow(dead_code)]
mod python_tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use bulwark_releases::{Error, Limits, Repository, RoleName, check_target, refresh};

const AGENT: &str = "bulwark-agent/x86_64-unknown-linux-gnu";

struct DirRepo {
    served: PathBuf,
    stored: BTreeMap<&'static str, Vec<u8>>,
}

impl Repository for DirRepo {
    fn fetch(&mut self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, Error> {
        match std::fs::read(self.served.join(path)) {
            Ok(b) if b.len() as u64 > max_len => Err(Error::Fetch(format!("{path} too long"))),
            Ok(b) => Ok(Some(b)),
            Err(_) => Ok(None),
        }
    }
    fn stored(&mut self, role: RoleName) -> Option<Vec<u8>> {
        self.stored.get(role.as_str()).cloned()
    }
    fn store(&mut self, role: RoleName, bytes: &[u8]) -> Result<(), Error> {
        self.stored.insert(role.as_str(), bytes.to_vec());
        Ok(())
    }
}

fn read_stored(dir: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    let mut out = BTreeMap::new();
    for role in ["root", "timestamp", "snapshot", "targets"] {
        if let Ok(b) = std::fs::read(dir.join(format!("{role}.json"))) {
            out.insert(role, b);
        }
    }
    out
}

#[test]
fn every_verdict_matches_python_tufs_client() {
    let python = python_tools::venv_python();
    assert!(
        python.is_file(),
        "{} is missing: run `cargo xtask test` (it installs python-tuf)",
        python.display()
    );
    let out = tempfile_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_tuf/scenarios.py");
    let made = Command::new(&python)
        .arg(&script)
        .arg(&out)
        .output()
        .expect("runs python");
    assert!(
        made.status.success(),
        "scenarios.py failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let names: Vec<String> = serde_json::from_slice(&made.stdout).expect("scenario names");
    assert!(names.len() >= 12, "{names:?}");
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("fits");
    let mut disagreements = Vec::new();
    for name in &names {
        let dir = out.join(name);
        let verdict: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("verdict.json")).expect("verdict"))
                .expect("verdict json");
        let root = std::fs::read(dir.join("root.json")).expect("root");
        let mut repo = DirRepo {
            served: dir.join("served"),
            stored: read_stored(&dir.join("stored")),
        };
        let ours = refresh(&root, &mut repo, Limits::default(), now);
        let theirs_ok = verdict["ok"] == serde_json::json!(true);
        match (&ours, theirs_ok) {
            (Ok(set), true) => {
                let binary = std::fs::read(dir.join("binary")).expect("binary");
                let ours_target = set
                    .target(AGENT)
                    .map(|file| check_target(AGENT, file, &binary).is_ok());
                let theirs_target = verdict["target_ok"].as_bool();
                if ours_target != theirs_target {
                    disagreements.push(format!(
                        "{name}: target check ours {ours_target:?}, python-tuf {theirs_target:?}"
                    ));
                }
            }
            (Err(_), false) => {}
            _ => disagreements.push(format!(
                "{name}: ours {:?}, python-tuf {}",
                ours.as_ref().err(),
                verdict["error"]
            )),
        }
        println!(
            "{name}: {}",
            match &ours {
                Ok(_) => "trusted".to_owned(),
                Err(e) => format!("refused ({e})"),
            }
        );
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bulwark-python-tuf-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
