//! A tenant's trust history, replayed from its first root.
//!
//! The agent applies statements one at a time as they arrive; the server
//! (before it stores a new statement) and the CLI (before it shows or
//! extends a policy) replay the whole history with these functions, so all
//! three follow the same rules.

use crate::Refusal;
use crate::envelope::Signed;
use crate::freeze::{FreezeState, FreezeStatement};
use crate::limits::Limits;
use crate::policy::Policy;
use crate::root::{TrustRoot, root_fingerprint};

/// The latest root of a tenant: `roots[0]` must be the pinned first root,
/// each later one a valid rotation of the one before.
pub fn verify_root_chain(
    roots: &[Signed],
    pinned: &[u8; 32],
    tenant: &str,
    limits: &Limits,
) -> Result<TrustRoot, Refusal> {
    let (first, rest) = roots.split_first().ok_or(Refusal::NotPinnedRoot)?;
    let mut root = TrustRoot::verify_pinned(first, pinned, tenant, limits)?;
    if root.version != 1 {
        return Err(Refusal::Malformed(
            "the first root must be version 1".into(),
        ));
    }
    for next in rest {
        root = root.verify_rotation(next, limits)?;
    }
    Ok(root)
}

/// The latest policy as storage holds it, under the latest root: signed by
/// the root's threshold, for the root's tenant, well formed. Its expiry is
/// left to the caller (an expired policy is shown, flagged, and replaced).
/// The server and the CLI read a stored policy with this, the agent applies
/// each new one with [`Policy::verify_update`], which this calls.
pub fn stored_policy(
    root: &TrustRoot,
    signed: &Signed,
    limits: &Limits,
) -> Result<Policy, Refusal> {
    Policy::verify_update(root, None, signed, 0, limits)
}

/// The fingerprint a tenant's agents pin: that of its first root.
pub fn pinned_fingerprint(roots: &[Signed]) -> Option<[u8; 32]> {
    roots.first().map(root_fingerprint)
}

/// The freeze state after the latest freeze statement, checked against `root`.
/// `None` statement means never frozen.
pub fn freeze_state(
    root: &TrustRoot,
    latest: Option<&Signed>,
    limits: &Limits,
) -> Result<FreezeState, Refusal> {
    match latest {
        None => Ok(FreezeState::default()),
        Some(signed) => FreezeState::default().apply(root, signed, limits),
    }
}

/// The version a stored policy envelope claims, without checking signatures
/// (the caller decides what to trust; `Policy::verify_update` is the check).
pub fn policy_version(signed: &Signed, limits: &Limits) -> Result<u64, Refusal> {
    Ok(signed.statement::<Policy>(limits)?.version)
}

/// The sequence a stored freeze envelope claims, without checking signatures.
pub fn freeze_sequence(signed: &Signed, limits: &Limits) -> Result<u64, Refusal> {
    Ok(signed.statement::<FreezeStatement>(limits)?.sequence)
}
