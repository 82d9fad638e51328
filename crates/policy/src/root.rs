//! The tenant trust root: k of n keys (TUF's root role is the model).
//!
//! The agent pins the SHA-256 of the first root's payload at enrolment (it
//! travels with the enrolment token), so the server cannot hand it another.
//! A new root is accepted only with version + 1, signed by a threshold of the
//! old root AND a threshold of the new one, so neither a stolen old key set
//! nor a freshly made one can rotate alone.

use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::Refusal;
use crate::envelope::{Signed, Statement};
use crate::keys::{KeyId, PublicKey};
use crate::limits::{Limits, cap};

/// Who holds a root or operator key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum Holder {
    /// The MSP (security officers, technicians).
    #[n(0)]
    Msp,
    /// The customer: may co-sign where policy requires it, and freeze the tenant alone.
    #[n(1)]
    Customer,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct RootKey {
    #[n(0)]
    pub key: PublicKey,
    #[n(1)]
    pub holder: Holder,
    /// A name people recognise ("Customer CISO YubiKey").
    #[n(2)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct TrustRoot {
    #[n(0)]
    pub tenant: String,
    #[n(1)]
    pub version: u64,
    #[n(2)]
    pub threshold: u32,
    #[n(3)]
    pub keys: Vec<RootKey>,
}

impl Statement for TrustRoot {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.root.v1+cbor";
}

/// What the agent pins: SHA-256 of a root's canonical payload.
pub fn root_fingerprint(signed: &Signed) -> [u8; 32] {
    Sha256::digest(&signed.payload).into()
}

impl TrustRoot {
    fn validate(&self, limits: &Limits) -> Result<(), Refusal> {
        cap(self.keys.len(), limits.max_root_keys, "root keys")?;
        cap(self.tenant.len(), limits.max_text, "tenant")?;
        for k in &self.keys {
            cap(k.name.len(), limits.max_text, "root key name")?;
        }
        let distinct: std::collections::BTreeSet<KeyId> =
            self.keys.iter().map(|k| k.key.id()).collect();
        if distinct.len() != self.keys.len() {
            return Err(Refusal::Malformed("a root key is listed twice".into()));
        }
        let threshold = usize::try_from(self.threshold).unwrap_or(usize::MAX);
        if threshold == 0 || threshold > self.keys.len() {
            return Err(Refusal::Malformed(
                "the root threshold must be between 1 and the number of keys".into(),
            ));
        }
        Ok(())
    }

    pub fn threshold(&self) -> usize {
        usize::try_from(self.threshold).unwrap_or(usize::MAX)
    }

    pub fn public_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter().map(|k| &k.key)
    }

    /// Customer-held root keys.
    pub fn customer_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys
            .iter()
            .filter(|k| k.holder == Holder::Customer)
            .map(|k| &k.key)
    }

    /// The first root of a tenant: its fingerprint must be the pinned one and
    /// it must be signed by its own threshold.
    pub fn verify_pinned(
        signed: &Signed,
        pinned: &[u8; 32],
        tenant: &str,
        limits: &Limits,
    ) -> Result<Self, Refusal> {
        // 1. The very root the customer's token named.
        if root_fingerprint(signed) != *pinned {
            return Err(Refusal::NotPinnedRoot);
        }
        // 2. Well formed, for this tenant.
        let root: TrustRoot = signed.statement(limits)?;
        root.validate(limits)?;
        if root.tenant != tenant {
            return Err(Refusal::WrongTenant);
        }
        // 3. Self-signed by its threshold.
        root.require_threshold(signed)?;
        Ok(root)
    }

    /// A root rotation: version + 1, signed by a threshold of `self` and of the new root.
    pub fn verify_rotation(&self, signed: &Signed, limits: &Limits) -> Result<TrustRoot, Refusal> {
        // 1. Well formed, same tenant.
        let next: TrustRoot = signed.statement(limits)?;
        next.validate(limits)?;
        if next.tenant != self.tenant {
            return Err(Refusal::WrongTenant);
        }
        // 2. Exactly the next version: no skipping, no rollback.
        if next.version != self.version.saturating_add(1) {
            return Err(Refusal::Rollback {
                what: "root version",
                accepted: self.version,
                offered: next.version,
            });
        }
        // 3. The old threshold consents.
        self.require_threshold(signed)?;
        // 4. The new threshold consents (its keys exist and are held).
        next.require_threshold(signed)?;
        Ok(next)
    }

    /// `signed` carries signatures of this root's threshold of distinct keys
    /// (a root, a rotation, a policy, an unfreeze).
    pub(crate) fn require_threshold(&self, signed: &Signed) -> Result<(), Refusal> {
        signed
            .tally(self.public_keys())
            .require(self.threshold())
            .map_err(|_| Refusal::RootThresholdNotMet)
    }
}
