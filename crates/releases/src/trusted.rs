//! The trusted metadata set: TUF's client workflow (specification 1.0,
//! section 5.3-5.6) as one state machine that only ever moves forward.
//! Each `update_*` takes a document's bytes and the time, and either
//! makes it trusted or refuses it and changes nothing (except where TUF
//! keeps a document that is valid but expired, to stop a later rollback
//! to something older, as python-tuf's `TrustedMetadataSet` does).

use crate::metadata::{
    self, Document, RoleName, Root, Snapshot, TargetFile, Targets, Timestamp, parse,
};
use crate::{Error, Limits};

/// A verified document and the bytes it came as (to be stored).
pub struct Trusted<T> {
    pub doc: Document<T>,
    pub bytes: Vec<u8>,
}

pub struct TrustedSet {
    limits: Limits,
    root: Trusted<Root>,
    timestamp: Option<Trusted<Timestamp>>,
    snapshot: Option<Trusted<Snapshot>>,
    targets: Option<Trusted<Targets>>,
}

impl TrustedSet {
    /// Starts from a root trusted out of band (compiled into the agent or
    /// stored by it earlier). It must still be signed by its own root
    /// role's threshold; it may be expired (a newer root may follow).
    pub fn new(root: &[u8], limits: Limits) -> Result<Self, Error> {
        let doc: Document<Root> = parse(root, &limits)?;
        doc.signed.verify(RoleName::Root, &doc)?;
        Ok(TrustedSet {
            limits,
            root: Trusted {
                doc,
                bytes: root.to_vec(),
            },
            timestamp: None,
            snapshot: None,
            targets: None,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn root(&self) -> &Trusted<Root> {
        &self.root
    }

    pub fn timestamp(&self) -> Option<&Trusted<Timestamp>> {
        self.timestamp.as_ref()
    }

    pub fn snapshot(&self) -> Option<&Trusted<Snapshot>> {
        self.snapshot.as_ref()
    }

    pub fn targets(&self) -> Option<&Trusted<Targets>> {
        self.targets.as_ref()
    }

    /// The next root (5.3): signed by the threshold of the trusted root
    /// AND of itself, version exactly one more.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.timestamp.is_some() {
            return Err(Error::Order("a root after the timestamp"));
        }
        let doc: Document<Root> = parse(bytes, &self.limits)?;
        self.root.doc.signed.verify(RoleName::Root, &doc)?;
        let want = self.root.doc.version + 1;
        if doc.version != want {
            return Err(Error::Version {
                role: "root",
                got: doc.version,
                want: format!("exactly {want}"),
            });
        }
        doc.signed.verify(RoleName::Root, &doc)?;
        self.root = Trusted {
            doc,
            bytes: bytes.to_vec(),
        };
        Ok(())
    }

    /// The timestamp (5.4). `Ok(false)`: the same version as the trusted
    /// one, which is kept (the repository has nothing new).
    pub fn update_timestamp(&mut self, bytes: &[u8], now: i64) -> Result<bool, Error> {
        if self.snapshot.is_some() {
            return Err(Error::Order("a timestamp after the snapshot"));
        }
        if self.root.doc.is_expired(now) {
            return Err(Error::Expired("root"));
        }
        let doc: Document<Timestamp> = parse(bytes, &self.limits)?;
        self.root.doc.signed.verify(RoleName::Timestamp, &doc)?;
        if let Some(old) = &self.timestamp {
            if doc.version < old.doc.version {
                return Err(Error::Version {
                    role: "timestamp",
                    got: doc.version,
                    want: format!("at least {}", old.doc.version),
                });
            }
            if doc.version == old.doc.version {
                return Ok(false);
            }
            if doc.signed.snapshot.version < old.doc.signed.snapshot.version {
                return Err(Error::Version {
                    role: "snapshot (named by the timestamp)",
                    got: doc.signed.snapshot.version,
                    want: format!("at least {}", old.doc.signed.snapshot.version),
                });
            }
        }
        self.timestamp = Some(Trusted {
            doc,
            bytes: bytes.to_vec(),
        });
        self.final_timestamp(now)?;
        Ok(true)
    }

    fn final_timestamp(&self, now: i64) -> Result<&Trusted<Timestamp>, Error> {
        let ts = self
            .timestamp
            .as_ref()
            .ok_or(Error::Order("a snapshot before the timestamp"))?;
        if ts.doc.is_expired(now) {
            return Err(Error::Expired("timestamp"));
        }
        Ok(ts)
    }

    /// The snapshot (5.5). `stored`: bytes this client stored earlier,
    /// not checked against the timestamp's hashes (they may be older).
    pub fn update_snapshot(&mut self, bytes: &[u8], now: i64, stored: bool) -> Result<(), Error> {
        if self.targets.is_some() {
            return Err(Error::Order("a snapshot after the targets"));
        }
        let meta = &self.final_timestamp(now)?.doc.signed.snapshot;
        if !stored {
            metadata::check_length_and_hashes(
                "snapshot",
                bytes,
                meta.length,
                meta.hashes.as_ref(),
            )?;
        }
        let doc: Document<Snapshot> = parse(bytes, &self.limits)?;
        self.root.doc.signed.verify(RoleName::Snapshot, &doc)?;
        if let Some(old) = &self.snapshot {
            for (name, file) in &old.doc.signed.meta {
                match doc.signed.meta.get(name) {
                    None => {
                        return Err(Error::Mismatch(format!(
                            "the new snapshot no longer names {name}"
                        )));
                    }
                    Some(new) if new.version < file.version => {
                        return Err(Error::Version {
                            role: "targets (named by the snapshot)",
                            got: new.version,
                            want: format!("at least {}", file.version),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        self.snapshot = Some(Trusted {
            doc,
            bytes: bytes.to_vec(),
        });
        self.final_snapshot(now).map(|_| ())
    }

    fn final_snapshot(&self, now: i64) -> Result<&Trusted<Snapshot>, Error> {
        let ts = self.final_timestamp(now)?;
        let snapshot = self
            .snapshot
            .as_ref()
            .ok_or(Error::Order("targets before the snapshot"))?;
        if snapshot.doc.is_expired(now) {
            return Err(Error::Expired("snapshot"));
        }
        if snapshot.doc.version != ts.doc.signed.snapshot.version {
            return Err(Error::Version {
                role: "snapshot",
                got: snapshot.doc.version,
                want: format!("the timestamp's {}", ts.doc.signed.snapshot.version),
            });
        }
        Ok(snapshot)
    }

    /// The top-level targets (5.6): length and hashes as the snapshot
    /// names them (unless `stored`), the targets role's threshold, the
    /// snapshot's version, not expired.
    pub fn update_targets(&mut self, bytes: &[u8], now: i64, stored: bool) -> Result<(), Error> {
        let snapshot = self.final_snapshot(now)?;
        let meta = snapshot
            .doc
            .signed
            .meta
            .get("targets.json")
            .ok_or_else(|| Error::Malformed("the snapshot names no targets.json".into()))?;
        if !stored {
            metadata::check_length_and_hashes("targets", bytes, meta.length, meta.hashes.as_ref())?;
        }
        let doc: Document<Targets> = parse(bytes, &self.limits)?;
        self.root.doc.signed.verify(RoleName::Targets, &doc)?;
        if doc.version != meta.version {
            return Err(Error::Version {
                role: "targets",
                got: doc.version,
                want: format!("the snapshot's {}", meta.version),
            });
        }
        if doc.is_expired(now) {
            return Err(Error::Expired("targets"));
        }
        self.targets = Some(Trusted {
            doc,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    /// A target named by the verified top-level targets. Delegated roles
    /// are never consulted: Bulwark's release channel has none, and a
    /// delegation can only add targets.
    pub fn target(&self, name: &str) -> Option<&TargetFile> {
        self.targets.as_ref()?.doc.signed.targets.get(name)
    }
}
