//! A tenant's trust history: the one replay of its roots, policies and
//! freeze statements (issue 12).
//!
//! The agent applies statements one at a time as the server relays them;
//! the server (before it stores one), the CLI (before it shows or extends a
//! policy) and the auditor (entry by entry from the log) replay with the
//! same [`TrustHistory`], so all four follow one set of rules: the first
//! root is the pinned one, version 1, for the expected tenant; each later
//! root is a rotation of the one before; a policy is signed by the root's
//! threshold, for its tenant, strictly newer; a freeze moves its sequence
//! forward and is signed by whom it may be.

use bulwark_protocol::message::TrustKind;

use crate::Refusal;
use crate::envelope::Signed;
use crate::freeze::FreezeState;
use crate::limits::Limits;
use crate::policy::Policy;
use crate::root::{TrustRoot, root_fingerprint};

/// What became of one statement offered to a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustOutcome {
    /// Now in force. `version`: root or policy version, or freeze sequence.
    Accepted { kind: TrustKind, version: u64 },
    /// Not applied, and nothing changed.
    Refused {
        kind: TrustKind,
        /// What the statement claims (0 when it could not be read).
        version: u64,
        refusal: Refusal,
    },
}

impl TrustOutcome {
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            TrustOutcome::Accepted { .. } => None,
            TrustOutcome::Refused { refusal, .. } => Some(refusal),
        }
    }
}

/// A tenant's trust as replayed so far. Everything in it verified when it
/// was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustHistory {
    /// Fingerprint of the tenant's first root.
    pinned: [u8; 32],
    /// The tenant the first root must name; `None` takes the pinned root's
    /// own (an agent learns its tenant from the root it pinned).
    tenant: Option<String>,
    root: Option<(Signed, TrustRoot)>,
    policy: Option<(Signed, Policy)>,
    freeze: FreezeState,
    freeze_signed: Option<Signed>,
}

impl TrustHistory {
    /// Nothing applied yet.
    pub fn new(pinned: [u8; 32], tenant: Option<&str>) -> Self {
        Self {
            pinned,
            tenant: tenant.map(str::to_owned),
            root: None,
            policy: None,
            freeze: FreezeState::default(),
            freeze_signed: None,
        }
    }

    /// A history resumed from state its holder accepted before (the agent's
    /// own files). The caller has checked them for consistency; nothing is
    /// re-verified here.
    pub fn resume(
        pinned: [u8; 32],
        root: Option<(Signed, TrustRoot)>,
        policy: Option<(Signed, Policy)>,
        freeze: Option<(Signed, FreezeState)>,
    ) -> Self {
        let (freeze_signed, freeze) = match freeze {
            Some((signed, state)) => (Some(signed), state),
            None => (None, FreezeState::default()),
        };
        Self {
            pinned,
            tenant: None,
            root,
            policy,
            freeze,
            freeze_signed,
        }
    }

    /// A stored history replayed: `roots` in order from the first (whose
    /// fingerprint is the pin unless `pinned` is given), then the latest
    /// policy and freeze statement. Policy expiry is not checked (an expired
    /// policy is shown, flagged, and replaced). A refused statement is left
    /// out and returned; roots after a refused one are not tried.
    pub fn replay(
        tenant: &str,
        pinned: Option<[u8; 32]>,
        roots: &[Signed],
        policy: Option<&Signed>,
        freeze: Option<&Signed>,
        limits: &Limits,
    ) -> (Self, Vec<TrustOutcome>) {
        let pin = pinned
            .or_else(|| roots.first().map(root_fingerprint))
            .unwrap_or_default();
        let mut history = Self::new(pin, Some(tenant));
        let mut refused = Vec::new();
        let mut keep = |outcome: TrustOutcome| {
            let ok = outcome.refusal().is_none();
            if !ok {
                refused.push(outcome);
            }
            ok
        };
        for root in roots {
            if !keep(history.apply_root(root, limits)) {
                break;
            }
        }
        if let Some(policy) = policy {
            keep(history.apply_policy(policy, None, limits));
        }
        if let Some(freeze) = freeze {
            keep(history.apply_freeze(freeze, limits));
        }
        (history, refused)
    }

    pub fn pinned(&self) -> &[u8; 32] {
        &self.pinned
    }

    /// The tenant id this history is for, once a root is in force.
    pub fn tenant(&self) -> Option<&str> {
        self.root.as_ref().map(|(_, r)| r.tenant.as_str())
    }

    pub fn root(&self) -> Option<&TrustRoot> {
        self.root.as_ref().map(|(_, r)| r)
    }

    pub fn root_signed(&self) -> Option<&Signed> {
        self.root.as_ref().map(|(s, _)| s)
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref().map(|(_, p)| p)
    }

    pub fn policy_signed(&self) -> Option<&Signed> {
        self.policy.as_ref().map(|(s, _)| s)
    }

    pub fn freeze(&self) -> FreezeState {
        self.freeze
    }

    pub fn freeze_signed(&self) -> Option<&Signed> {
        self.freeze_signed.as_ref()
    }

    /// Whether `signed` is exactly the statement of this kind in force (or,
    /// for a root, one the chain already passed): offering it again changes
    /// nothing and is not an error (the server relays the whole chain).
    pub fn holds(&self, kind: TrustKind, signed: &Signed, limits: &Limits) -> bool {
        let same = |held: Option<&Signed>| held.is_some_and(|h| h.payload == signed.payload);
        match kind {
            TrustKind::Root => match (&self.root, signed.statement::<TrustRoot>(limits)) {
                (Some((held, root)), Ok(offered)) => {
                    offered.version < root.version || same(Some(held))
                }
                _ => false,
            },
            TrustKind::Policy => same(self.policy_signed()),
            TrustKind::Freeze => same(self.freeze_signed()),
        }
    }

    /// The first root (the pinned one, version 1, for the expected tenant),
    /// or a rotation of the root in force.
    pub fn apply_root(&mut self, signed: &Signed, limits: &Limits) -> TrustOutcome {
        let result = match &self.root {
            None => self.first_root(signed, limits),
            Some((_, held)) => held.verify_rotation(signed, limits),
        };
        match result {
            // A policy and a freeze signed under the old root stay in force
            // until newer ones arrive, as in TUF: a rotation does not by
            // itself withdraw them (a freeze in particular must survive it).
            Ok(root) => {
                let version = root.version;
                self.root = Some((signed.clone(), root));
                accepted(TrustKind::Root, version)
            }
            Err(refusal) => refused::<TrustRoot>(TrustKind::Root, signed, refusal, limits),
        }
    }

    fn first_root(&self, signed: &Signed, limits: &Limits) -> Result<TrustRoot, Refusal> {
        let claimed = signed.statement::<TrustRoot>(limits)?;
        let tenant = self.tenant.as_deref().unwrap_or(&claimed.tenant);
        let root = TrustRoot::verify_pinned(signed, &self.pinned, tenant, limits)?;
        if root.version != 1 {
            return Err(Refusal::Malformed(
                "the first root must be version 1".into(),
            ));
        }
        Ok(root)
    }

    /// A policy newer than the one in force, signed by the root's threshold.
    /// `now` (Unix seconds) also refuses an expired one; `None` leaves
    /// expiry to the caller.
    pub fn apply_policy(
        &mut self,
        signed: &Signed,
        now: Option<u64>,
        limits: &Limits,
    ) -> TrustOutcome {
        let result = match &self.root {
            None => Err(Refusal::NoRoot),
            Some((_, root)) => {
                Policy::verify_update(root, self.policy(), signed, now.unwrap_or(0), limits)
            }
        };
        match result {
            Ok(policy) => {
                let version = policy.version;
                self.policy = Some((signed.clone(), policy));
                accepted(TrustKind::Policy, version)
            }
            Err(refusal) => refused::<Policy>(TrustKind::Policy, signed, refusal, limits),
        }
    }

    /// A freeze or unfreeze with a newer sequence, signed by whom it may be.
    pub fn apply_freeze(&mut self, signed: &Signed, limits: &Limits) -> TrustOutcome {
        let result = match &self.root {
            None => Err(Refusal::NoRoot),
            Some((_, root)) => self.freeze.apply(root, signed, limits),
        };
        match result {
            Ok(state) => {
                self.freeze = state;
                self.freeze_signed = Some(signed.clone());
                accepted(TrustKind::Freeze, state.sequence)
            }
            Err(refusal) => {
                refused::<crate::FreezeStatement>(TrustKind::Freeze, signed, refusal, limits)
            }
        }
    }
}

fn accepted(kind: TrustKind, version: u64) -> TrustOutcome {
    TrustOutcome::Accepted { kind, version }
}

/// A refusal, with the version the statement claims where it can be read.
fn refused<T: Versioned>(
    kind: TrustKind,
    signed: &Signed,
    refusal: Refusal,
    limits: &Limits,
) -> TrustOutcome {
    TrustOutcome::Refused {
        kind,
        version: signed.statement::<T>(limits).map_or(0, |s| s.version()),
        refusal,
    }
}

/// What a trust statement's place in its history is called.
trait Versioned: crate::envelope::Statement {
    fn version(&self) -> u64;
}

impl Versioned for TrustRoot {
    fn version(&self) -> u64 {
        self.version
    }
}

impl Versioned for Policy {
    fn version(&self) -> u64 {
        self.version
    }
}

impl Versioned for crate::FreezeStatement {
    fn version(&self) -> u64 {
        self.sequence
    }
}
