//! TUF metadata documents: parsing with limits, and signature thresholds.
//!
//! A document is `{"signatures": [...], "signed": {...}}`. Signatures are
//! checked over the canonical bytes of `signed` ([`crate::canonical`]);
//! the typed role is read from that same parsed value. Unknown fields are
//! allowed (TUF lets metadata grow), unknown key types simply verify
//! nothing, and every collection has a cap ([`Limits`]).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::{Error, Limits, canonical};

/// The four top-level roles, by their metadata `_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleName {
    Root,
    Timestamp,
    Snapshot,
    Targets,
}

impl RoleName {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Root => "root",
            RoleName::Timestamp => "timestamp",
            RoleName::Snapshot => "snapshot",
            RoleName::Targets => "targets",
        }
    }

    /// The most bytes a document of this role may have.
    pub fn max_len(self, limits: &Limits) -> u64 {
        match self {
            RoleName::Root => limits.root_bytes,
            RoleName::Timestamp => limits.timestamp_bytes,
            RoleName::Snapshot => limits.snapshot_bytes,
            RoleName::Targets => limits.targets_bytes,
        }
    }
}

#[derive(Deserialize)]
struct RawSignature {
    keyid: String,
    sig: String,
}

#[derive(Deserialize)]
struct RawEnvelope {
    signatures: Vec<RawSignature>,
    signed: Value,
}

/// Fields every role has.
#[derive(Debug, Clone, Deserialize)]
struct Common {
    #[serde(rename = "_type")]
    kind: String,
    spec_version: String,
    version: u64,
    expires: String,
}

/// A parsed document whose signatures are not checked yet.
pub struct Document<T> {
    pub signed: T,
    pub version: u64,
    /// Seconds since the Unix epoch.
    pub expires: i64,
    canonical: Vec<u8>,
    /// key id -> signature bytes (64), each key id at most once.
    signatures: BTreeMap<String, Vec<u8>>,
}

impl<T> Document<T> {
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires
    }
}

#[derive(Debug, Clone, Deserialize)]
struct RawKey {
    keytype: String,
    scheme: String,
    keyval: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct RawRoot {
    #[serde(default)]
    consistent_snapshot: bool,
    keys: BTreeMap<String, RawKey>,
    roles: BTreeMap<String, Role>,
}

#[derive(Debug, Clone)]
pub struct Root {
    pub consistent_snapshot: bool,
    /// Ed25519 keys by key id; keys of other types are left out (they
    /// can verify nothing here).
    keys: BTreeMap<String, VerifyingKey>,
    roles: BTreeMap<String, Role>,
}

/// A file named by `timestamp` (the snapshot) or `snapshot` (targets).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default)]
    pub length: Option<u64>,
    #[serde(default)]
    pub hashes: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawMeta {
    meta: BTreeMap<String, MetaFile>,
}

#[derive(Debug, Clone)]
pub struct Timestamp {
    pub snapshot: MetaFile,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub meta: BTreeMap<String, MetaFile>,
}

/// A target file: a release binary, with what identifies it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default)]
    pub custom: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawTargets {
    #[serde(default)]
    targets: BTreeMap<String, TargetFile>,
}

#[derive(Debug, Clone)]
pub struct Targets {
    pub targets: BTreeMap<String, TargetFile>,
}

/// What a role's document holds, parsed from its `signed` value.
pub trait Signed: Sized {
    const ROLE: RoleName;
    fn from_signed(signed: Value, limits: &Limits) -> Result<Self, Error>;
}

fn malformed(role: RoleName, e: impl std::fmt::Display) -> Error {
    Error::Malformed(format!("{}: {e}", role.as_str()))
}

impl Signed for Root {
    const ROLE: RoleName = RoleName::Root;
    fn from_signed(signed: Value, limits: &Limits) -> Result<Self, Error> {
        let raw: RawRoot = serde_json::from_value(signed).map_err(|e| malformed(Self::ROLE, e))?;
        if raw.keys.len() > limits.keys {
            return Err(malformed(Self::ROLE, "too many keys"));
        }
        let names: BTreeSet<&str> = raw.roles.keys().map(String::as_str).collect();
        if names != BTreeSet::from(["root", "timestamp", "snapshot", "targets"]) {
            return Err(malformed(
                Self::ROLE,
                "roles must be exactly root, timestamp, snapshot and targets",
            ));
        }
        for (name, role) in &raw.roles {
            let unique: BTreeSet<&String> = role.keyids.iter().collect();
            if role.threshold < 1 || unique.len() != role.keyids.len() {
                return Err(malformed(
                    Self::ROLE,
                    format!("role {name}: threshold under 1 or a key id twice"),
                ));
            }
            if role.keyids.len() > limits.keys {
                return Err(malformed(Self::ROLE, format!("role {name}: too many keys")));
            }
        }
        let mut keys = BTreeMap::new();
        for (id, key) in raw.keys {
            if key.keytype != "ed25519" || key.scheme != "ed25519" {
                continue;
            }
            let public = key
                .keyval
                .get("public")
                .and_then(Value::as_str)
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or_else(|| malformed(Self::ROLE, format!("key {id}: not an Ed25519 key")))?;
            keys.insert(id, public);
        }
        Ok(Root {
            consistent_snapshot: raw.consistent_snapshot,
            keys,
            roles: raw.roles,
        })
    }
}

impl Signed for Timestamp {
    const ROLE: RoleName = RoleName::Timestamp;
    fn from_signed(signed: Value, _: &Limits) -> Result<Self, Error> {
        let raw: RawMeta = serde_json::from_value(signed).map_err(|e| malformed(Self::ROLE, e))?;
        let mut meta = raw.meta.into_iter();
        match (meta.next(), meta.next()) {
            (Some((name, snapshot)), None) if name == "snapshot.json" => Ok(Timestamp { snapshot }),
            _ => Err(malformed(Self::ROLE, "meta must name snapshot.json only")),
        }
    }
}

impl Signed for Snapshot {
    const ROLE: RoleName = RoleName::Snapshot;
    fn from_signed(signed: Value, limits: &Limits) -> Result<Self, Error> {
        let raw: RawMeta = serde_json::from_value(signed).map_err(|e| malformed(Self::ROLE, e))?;
        if raw.meta.len() > limits.targets {
            return Err(malformed(Self::ROLE, "too many files"));
        }
        if !raw.meta.contains_key("targets.json") {
            return Err(malformed(Self::ROLE, "meta does not name targets.json"));
        }
        Ok(Snapshot { meta: raw.meta })
    }
}

impl Signed for Targets {
    const ROLE: RoleName = RoleName::Targets;
    fn from_signed(signed: Value, limits: &Limits) -> Result<Self, Error> {
        let raw: RawTargets =
            serde_json::from_value(signed).map_err(|e| malformed(Self::ROLE, e))?;
        if raw.targets.len() > limits.targets {
            return Err(malformed(Self::ROLE, "too many targets"));
        }
        Ok(Targets {
            targets: raw.targets,
        })
    }
}

/// Parses `bytes` as a document of role `T`: size, envelope, `_type`,
/// spec version, expiry format, the role's own fields. Checks no
/// signature: that is [`Root::verify`].
pub fn parse<T: Signed>(bytes: &[u8], limits: &Limits) -> Result<Document<T>, Error> {
    let role = T::ROLE;
    if bytes.len() as u64 > role.max_len(limits) {
        return Err(Error::TooLarge {
            what: role.as_str(),
            limit: role.max_len(limits),
        });
    }
    let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|e| malformed(role, e))?;
    if raw.signatures.len() > limits.signatures {
        return Err(malformed(role, "too many signatures"));
    }
    let mut signatures = BTreeMap::new();
    for s in raw.signatures {
        let sig = hex::decode(&s.sig).map_err(|e| malformed(role, e))?;
        if signatures.insert(s.keyid, sig).is_some() {
            return Err(malformed(role, "two signatures by one key id"));
        }
    }
    let canonical = canonical::encode(&raw.signed)?;
    let common: Common =
        serde_json::from_value(raw.signed.clone()).map_err(|e| malformed(role, e))?;
    if common.kind != role.as_str() {
        return Err(Error::WrongRole {
            want: role.as_str(),
            got: common.kind,
        });
    }
    let major = common.spec_version.split('.').next().unwrap_or_default();
    let parts = common.spec_version.split('.').count();
    if major != "1" || !(2..=3).contains(&parts) {
        return Err(malformed(
            role,
            format!("unsupported spec_version {:?}", common.spec_version),
        ));
    }
    if common.version < 1 {
        return Err(malformed(role, "version under 1"));
    }
    // TUF's one format: "2030-01-01T00:00:00Z", no fractions, no offsets.
    let e = &common.expires;
    if e.len() != 20 || !e.ends_with('Z') {
        return Err(malformed(
            role,
            format!("expires {e:?} is not YYYY-MM-DDTHH:MM:SSZ"),
        ));
    }
    let expires = jiff::Timestamp::from_str(e)
        .map_err(|x| malformed(role, format!("expires {e:?}: {x}")))?
        .as_second();
    let signed = T::from_signed(raw.signed, limits)?;
    Ok(Document {
        signed,
        version: common.version,
        expires,
        canonical,
        signatures,
    })
}

impl Root {
    /// Whether `doc` carries signatures of at least the threshold of
    /// distinct keys this root gives `role`.
    pub fn verify<T>(&self, role: RoleName, doc: &Document<T>) -> Result<(), Error> {
        let spec = self
            .roles
            .get(role.as_str())
            .ok_or_else(|| Error::Malformed(format!("root has no {} role", role.as_str())))?;
        let good = spec
            .keyids
            .iter()
            .filter(|id| {
                let (Some(key), Some(sig)) = (self.keys.get(*id), doc.signatures.get(*id)) else {
                    return false;
                };
                Signature::from_slice(sig)
                    .is_ok_and(|sig| key.verify_strict(&doc.canonical, &sig).is_ok())
            })
            .count() as u64;
        if good < spec.threshold {
            return Err(Error::Threshold {
                role: role.as_str(),
                good,
                threshold: spec.threshold,
            });
        }
        Ok(())
    }

    /// The key ids and threshold of `role`, to notice a key rotation.
    pub fn role(&self, role: RoleName) -> Option<&Role> {
        self.roles.get(role.as_str())
    }
}

/// Checks `bytes` against a length and hashes that signed metadata names.
/// Every hash named must be one this crate computes (SHA-256, SHA-512)
/// and must match: an unknown algorithm is refused, never skipped.
pub fn check_length_and_hashes(
    what: &str,
    bytes: &[u8],
    length: Option<u64>,
    hashes: Option<&BTreeMap<String, String>>,
) -> Result<(), Error> {
    if let Some(length) = length
        && bytes.len() as u64 != length
    {
        return Err(Error::Mismatch(format!(
            "{what}: {} bytes, signed metadata says {length}",
            bytes.len()
        )));
    }
    for (algorithm, want) in hashes.into_iter().flatten() {
        let got = match algorithm.as_str() {
            "sha256" => hex::encode(Sha256::digest(bytes)),
            "sha512" => hex::encode(Sha512::digest(bytes)),
            other => {
                return Err(Error::Mismatch(format!(
                    "{what}: hash algorithm {other:?} is not supported"
                )));
            }
        };
        if !got.eq_ignore_ascii_case(want) {
            return Err(Error::Mismatch(format!("{what}: {algorithm} differs")));
        }
    }
    Ok(())
}
