//! The witness's directory: its key (`witness.skey`, 0600), the logs it
//! follows (`logs/<id>.log`: origin, the log's vkey and, for a tenant's log
//! that can be frozen, `root <hex>`, the fingerprint of the tenant's first
//! root), per log the last checkpoint it cosigned (`logs/<id>.state`:
//! `<size> <base64 root>`) and what it was given of the tenant's trust
//! (`logs/<id>.trust`: `root <base64 envelope>` lines from version 1, then
//! `freeze <since> <base64 envelope>`), `<id>` being the hex SHA-256 of the
//! origin.
//!
//! A state is written before the cosignature that depends on it leaves,
//! and a freeze before it is acknowledged (RFD 0006): temporary file,
//! fsync, rename, fsync of the directory. A state or trust record that does
//! not read stops that log (an error, never a restart from zero, which
//! would let a rewritten log be cosigned or forget a freeze).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bulwark_translog::Limits;
use bulwark_translog::cosignature::Cosigner;
use bulwark_translog::hash::Hash;
use bulwark_translog::note::NoteVerifier;
use sha2::{Digest, Sha256};

use crate::add_checkpoint::Cosigned;
use crate::freeze::{self, LogTrust};

const KEY_FILE: &str = "witness.skey";

/// A log this witness follows.
#[derive(Debug, Clone)]
pub struct FollowedLog {
    pub origin: String,
    pub key: NoteVerifier,
    /// The fingerprint of the tenant's first root (`add-log
    /// --root-fingerprint`) and the tenant, the origin's part after the log
    /// key's name: a log that has them can be frozen.
    pub freezable: Option<Freezable>,
}

/// What ties a log to its tenant's trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freezable {
    pub tenant: String,
    pub pinned_root: [u8; 32],
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

    /// Follows the log `origin`, whose checkpoints `log_vkey` signs. With
    /// `pinned_root`, the fingerprint of the tenant's first root, the log
    /// can be frozen by its tenant's customer; its origin must then be
    /// `<log key name>/<tenant id>`. Returns the tenant.
    pub fn add_log(
        &self,
        origin: &str,
        log_vkey: &str,
        pinned_root: Option<[u8; 32]>,
    ) -> Result<Option<String>> {
        ensure!(
            !origin.is_empty() && !origin.contains('\n') && origin.trim() == origin,
            "an origin is one line without surrounding spaces"
        );
        let key = NoteVerifier::from_vkey(log_vkey).context("the log's vkey")?;
        let tenant = match pinned_root {
            None => None,
            Some(_) => Some(
                freeze::tenant_of(origin, key.name())
                    .with_context(|| {
                        format!(
                            "a log with a root fingerprint is a tenant's: its origin must be \
                             `{}/<tenant id>`",
                            key.name()
                        )
                    })?
                    .to_owned(),
            ),
        };
        let path = self
            .dir
            .join("logs")
            .join(format!("{}.log", log_id(origin)));
        if path.exists() {
            bail!("this witness already follows {origin}");
        }
        let mut text = format!("{origin}\n{log_vkey}\n");
        if let Some(root) = pinned_root {
            text.push_str(&format!("root {}\n", hex::encode(root)));
        }
        write_durably(&path, text.as_bytes(), 0o644)?;
        Ok(tenant)
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
            let lines: Vec<&str> = text
                .strip_suffix('\n')
                .map(|t| t.split('\n').collect())
                .unwrap_or_default();
            let (origin, vkey, root) = match lines.as_slice() {
                [origin, vkey] => (*origin, *vkey, None),
                [origin, vkey, root] => (*origin, *vkey, Some(*root)),
                _ => bail!(
                    "{} is not `<origin>\\n<vkey>\\n[root <hex>\\n]`",
                    path.display()
                ),
            };
            ensure!(
                path.file_stem().is_some_and(|s| *s == *log_id(origin)),
                "{} does not belong to the origin it names",
                path.display()
            );
            let key = NoteVerifier::from_vkey(vkey)
                .with_context(|| format!("the vkey in {}", path.display()))?;
            let freezable = match root {
                None => None,
                Some(line) => {
                    let pinned_root = line
                        .strip_prefix("root ")
                        .and_then(|h| hex::decode(h).ok())
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .with_context(|| {
                            format!("{}: the root line is not `root <hex>`", path.display())
                        })?;
                    let tenant = freeze::tenant_of(origin, key.name()).with_context(|| {
                        format!("{}: the origin names no tenant", path.display())
                    })?;
                    Some(Freezable {
                        tenant: tenant.to_owned(),
                        pinned_root,
                    })
                }
            };
            logs.push(FollowedLog {
                origin: origin.to_owned(),
                key,
                freezable,
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

    fn trust_path(&self, origin: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.trust", log_id(origin)))
    }

    /// What this witness was given of `log`'s tenant trust, replayed from
    /// the pinned root (`None`: a log that cannot be frozen). An error
    /// stops the log.
    pub fn trust(&self, log: &FollowedLog, limits: &Limits) -> Result<Option<LogTrust>> {
        let Some(freezable) = &log.freezable else {
            return Ok(None);
        };
        let path = self.trust_path(&log.origin);
        let fresh = || LogTrust::new(freezable.pinned_root, &freezable.tenant);
        let text = match std::fs::read(&path) {
            Ok(bytes) => {
                ensure!(
                    bytes.len() <= 2 * freeze::max_body_bytes(limits),
                    "{} is larger than any record this witness writes",
                    path.display()
                );
                String::from_utf8(bytes)
                    .with_context(|| format!("{} is not UTF-8", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(fresh())),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let stopped = |why: &str| {
            anyhow::anyhow!(
                "{} {why}: this log stays stopped until an operator restores it",
                path.display()
            )
        };
        let envelope = |b64: &str| {
            STANDARD
                .decode(b64)
                .ok()
                .and_then(|bytes| bulwark_policy::Signed::from_bytes(&bytes, limits).ok())
                .ok_or_else(|| stopped("holds an envelope that does not decode"))
        };
        let mut roots = Vec::new();
        let mut held = None;
        for line in text
            .strip_suffix('\n')
            .ok_or_else(|| stopped("does not end with a newline"))?
            .split('\n')
        {
            if held.is_some() {
                return Err(stopped("has a line after the freeze"));
            }
            if let Some(b64) = line.strip_prefix("root ") {
                roots.push(envelope(b64)?);
            } else if let Some((since, b64)) = line
                .strip_prefix("freeze ")
                .and_then(|rest| rest.split_once(' '))
            {
                let since = since
                    .parse()
                    .map_err(|_| stopped("has a freeze time that is not a number"))?;
                held = Some((envelope(b64)?, since));
            } else {
                return Err(stopped("has a line that is not `root …` or `freeze …`"));
            }
        }
        LogTrust::restore(
            freezable.pinned_root,
            &freezable.tenant,
            roots,
            held,
            limits,
        )
        .map(Some)
        .map_err(|why| stopped(&why))
    }

    /// Records `trust` for `origin`, durably, before the freeze is acknowledged.
    pub fn record_trust(&self, origin: &str, trust: &LogTrust) -> Result<()> {
        let mut text = String::new();
        for root in trust.roots() {
            text.push_str(&format!("root {}\n", STANDARD.encode(root.to_bytes())));
        }
        if let Some(held) = trust.freeze() {
            text.push_str(&format!(
                "freeze {} {}\n",
                held.since,
                STANDARD.encode(held.signed.to_bytes())
            ));
        }
        write_durably(&self.trust_path(origin), text.as_bytes(), 0o644)
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
            .add_log("log.example/acme", &log.verifier().to_vkey(), None)
            .expect("add");
        assert!(
            witness
                .add_log("log.example/acme", &log.verifier().to_vkey(), None)
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

    #[test]
    fn a_freezable_log_keeps_its_pin_and_the_freeze_it_was_given() {
        use bulwark_policy::root::root_fingerprint;
        use bulwark_policy::{FreezeStatement, Holder, PublicKey, RootKey, Signed, TrustRoot};

        let limits = Limits::default();
        let dir = tempfile::tempdir().expect("tempdir");
        WitnessDir::init(dir.path(), "witness.example/w1").expect("init");
        let (witness, _) = WitnessDir::open(dir.path()).expect("open");
        let log = bulwark_translog::note::NoteSigner::new(
            "log.example",
            ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        )
        .expect("log");
        let vkey = log.verifier().to_vkey();
        let customer = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let mut root = Signed::new(&TrustRoot {
            tenant: "acme".into(),
            version: 1,
            threshold: 1,
            keys: vec![RootKey {
                key: PublicKey::Ed25519(customer.verifying_key().to_bytes()),
                holder: Holder::Customer,
                name: "customer".into(),
            }],
        });
        root.sign(&customer);
        let pin = root_fingerprint(&root);
        // A pinned root needs `<log key name>/<tenant>`.
        assert!(
            witness
                .add_log("other.example/acme", &vkey, Some(pin))
                .is_err()
        );
        assert!(
            witness
                .add_log("log.example/msp", &vkey, Some(pin))
                .is_err()
        );
        assert_eq!(
            witness
                .add_log("log.example/acme", &vkey, Some(pin))
                .expect("add"),
            Some("acme".to_owned())
        );
        witness
            .add_log("log.example/plain", &vkey, None)
            .expect("add");
        let logs = witness.logs().expect("logs");
        let acme = logs
            .iter()
            .find(|l| l.origin == "log.example/acme")
            .expect("acme");
        let plain = logs
            .iter()
            .find(|l| l.origin == "log.example/plain")
            .expect("plain");
        assert_eq!(
            acme.freezable,
            Some(Freezable {
                tenant: "acme".into(),
                pinned_root: pin
            })
        );
        assert!(witness.trust(plain, &limits).expect("plain").is_none());
        let fresh = witness.trust(acme, &limits).expect("read").expect("some");
        assert!(fresh.freeze().is_none());

        let mut statement = Signed::new(&FreezeStatement {
            tenant: "acme".into(),
            sequence: 1,
            frozen: true,
            reason: "stolen operator key".into(),
        });
        statement.sign(&customer);
        let request = freeze::parse_request(
            freeze::request_body(std::slice::from_ref(&root), &statement).as_bytes(),
            &limits,
        )
        .expect("parses");
        let taken = fresh.offer(&request, 1234, &limits).expect("taken").trust;
        witness
            .record_trust("log.example/acme", &taken)
            .expect("record");
        assert_eq!(
            witness.trust(acme, &limits).expect("read").as_ref(),
            Some(&taken)
        );
        std::fs::write(witness.trust_path("log.example/acme"), "root AAAA\n").expect("write");
        assert!(
            witness.trust(acme, &limits).is_err(),
            "a bad record stops the log"
        );
    }
}
