//! What an auditor checks of a tenant's log beyond its tree (issue 12): the
//! meaning of its entries. The log is replayed entry by entry: each trust
//! statement it records as published is checked with the agents' own rules
//! (the first root against the auditor's pin, then rotations, policies and
//! freezes in the order the log gives them), and each released job must
//! have been requested before, be the envelope the release names, and carry
//! the signatures the policy in force then requires for the class its
//! action derives to. A released job's targets must carry the key their
//! device was enrolled with (`device.enrolled` names it), so a server that
//! steered a job to a key it controls shows in the log. A tree that verifies
//! but whose entries say something no agent would have accepted names the
//! first such entry.
//!
//! Pure: the statements (envelopes by kind and version, job envelopes by
//! id) are given by the caller, which fetched them from the server or read
//! them from an export; time is each entry's own.

use std::collections::{BTreeMap, HashMap, HashSet};

use bulwark_protocol::audit_leaf::{AuditLeaf, JOB_RELEASED, job_released_detail};
use bulwark_protocol::message::TrustKind;

use crate::envelope::Signed;
use crate::history::TrustHistory;
use crate::job::{JobStatement, check_quorum};
use crate::limits::Limits;

/// The statements a replay may need, as the caller obtained them.
#[derive(Debug, Default, Clone)]
pub struct Statements {
    pub roots: BTreeMap<u64, Signed>,
    pub policies: BTreeMap<u64, Signed>,
    pub freezes: BTreeMap<u64, Signed>,
    /// Job envelopes by job id (32 hex digits).
    pub jobs: HashMap<String, Signed>,
}

/// An entry whose meaning does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayProblem {
    pub index: u64,
    /// Stable snake_case name.
    pub code: &'static str,
    pub message: String,
}

/// The replay of one tenant's log.
#[derive(Debug)]
pub struct TrustReplay {
    tenant: String,
    history: TrustHistory,
    requested: HashSet<String>,
    /// Each device id's key fingerprint, as its enrolment entry named it.
    enrolled: HashMap<String, [u8; 32]>,
    /// Jobs released, for the summary.
    pub released: u64,
}

/// The version a trust event names: its target ends in ` v<N>`.
fn named_version(target: &str) -> Option<u64> {
    target.rsplit_once(" v").and_then(|(_, v)| v.parse().ok())
}

impl TrustReplay {
    /// A replay of `tenant`'s log (its id) from its first entry, with the
    /// first root's fingerprint as the auditor pinned it.
    pub fn new(tenant: &str, pinned: [u8; 32]) -> Self {
        Self {
            tenant: tenant.to_owned(),
            history: TrustHistory::new(pinned, Some(tenant)),
            requested: HashSet::new(),
            enrolled: HashMap::new(),
            released: 0,
        }
    }

    /// Applies entry `index`. Entries that change no trust and release no
    /// job pass untouched.
    pub fn feed(
        &mut self,
        index: u64,
        leaf: &AuditLeaf,
        statements: &Statements,
    ) -> Result<(), ReplayProblem> {
        let limits = Limits::default();
        let problem = |code: &'static str, message: String| ReplayProblem {
            index,
            code,
            message: format!("entry {index} ({} {}): {message}", leaf.action, leaf.target),
        };
        let now = u64::try_from(leaf.at / 1000).unwrap_or(0);
        match leaf.action.as_str() {
            "trust.root_published"
            | "trust.policy_published"
            | "trust.frozen"
            | "trust.unfrozen" => {
                let version = named_version(&leaf.target)
                    .ok_or_else(|| problem("trust_unreadable", "names no version".into()))?;
                let (kind, held) = match leaf.action.as_str() {
                    "trust.root_published" => (TrustKind::Root, &statements.roots),
                    "trust.policy_published" => (TrustKind::Policy, &statements.policies),
                    _ => (TrustKind::Freeze, &statements.freezes),
                };
                let signed = held.get(&version).ok_or_else(|| {
                    problem(
                        "statement_missing",
                        format!("{} {version} is not among the statements", kind.as_str()),
                    )
                })?;
                let outcome = match kind {
                    TrustKind::Root => self.history.apply_root(signed, &limits),
                    TrustKind::Policy => self.history.apply_policy(signed, Some(now), &limits),
                    TrustKind::Freeze => self.history.apply_freeze(signed, &limits),
                };
                if let Some(e) = outcome.refusal() {
                    return Err(problem(
                        match kind {
                            TrustKind::Root => "root_refused",
                            TrustKind::Policy => "policy_refused",
                            TrustKind::Freeze => "freeze_refused",
                        },
                        format!("{e} ({})", e.code()),
                    ));
                }
            }
            "job.requested" => {
                self.requested.insert(leaf.target.clone());
            }
            "device.enrolled" => {
                if let Some(key) = enrolled_key(&leaf.detail)
                    && let Some(before) = self.enrolled.insert(leaf.target.clone(), key)
                    && before != key
                {
                    return Err(problem(
                        "device_key_changed",
                        "the device id was enrolled before with another key".into(),
                    ));
                }
            }
            JOB_RELEASED => {
                if !self.requested.contains(&leaf.target) {
                    return Err(problem(
                        "release_without_request",
                        "the job was released but never requested in this log".into(),
                    ));
                }
                let signed = statements.jobs.get(&leaf.target).ok_or_else(|| {
                    problem(
                        "statement_missing",
                        "the released job's envelope is not among the statements".into(),
                    )
                })?;
                if job_released_detail(&signed.digest()) != leaf.detail {
                    return Err(problem(
                        "release_mismatch",
                        "the release names other signed bytes than the job's envelope".into(),
                    ));
                }
                let job: JobStatement = signed
                    .statement(&limits)
                    .map_err(|e| problem("job_refused", e.to_string()))?;
                if job.tenant != self.tenant || hex::encode(job.job_id) != leaf.target {
                    return Err(problem(
                        "job_refused",
                        "the envelope is another tenant's or another job's".into(),
                    ));
                }
                if let Some(target) = job.targets.iter().find(|t| {
                    t.device_key.is_some_and(|key| {
                        self.enrolled
                            .get(&t.device_id)
                            .is_some_and(|enrolled| *enrolled != key)
                    })
                }) {
                    return Err(problem(
                        "target_key_not_enrolled",
                        format!(
                            "the job is signed for device {} ({}) with a key that is not the one \
                             its enrolment entry names",
                            target.device_id, target.hostname
                        ),
                    ));
                }
                // A release while the tenant is frozen is not a forgery: the
                // server releases, every agent refuses (step 1).
                let policy = self
                    .history
                    .policy()
                    .ok_or_else(|| problem("job_refused", "released before any policy".into()))?;
                check_quorum(signed, &job, policy, now).map_err(|e| {
                    problem(
                        "quorum_not_met",
                        format!(
                            "its signatures do not meet the policy in force (v{}): {e} ({})",
                            policy.version,
                            e.code()
                        ),
                    )
                })?;
                self.released += 1;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The key fingerprint a `device.enrolled` entry names in its one
/// ` key=<64 hex> token_created_by=`. The host name and version before it
/// are the device's own words: a detail where that pattern appears more
/// than once (a look-alike in a host name) names no key, and its jobs are
/// not held to one.
fn enrolled_key(detail: &str) -> Option<[u8; 32]> {
    const FIELD: &str = " key=";
    const NEXT: &str = " token_created_by=";
    let mut found = None;
    for (at, _) in detail.match_indices(FIELD) {
        let rest = &detail[at + FIELD.len()..];
        let (Some(hex_part), Some(tail)) = (rest.get(..64), rest.get(64..)) else {
            continue;
        };
        if !tail.starts_with(NEXT) || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut key).ok()?;
        found = Some(key);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::enrolled_key;

    #[test]
    fn the_enrolment_entry_names_one_key() {
        let key = "ab".repeat(32);
        let detail = format!("hostname=db01 agent_version=0.1.0 key={key} token_created_by=alice");
        assert_eq!(enrolled_key(&detail), Some([0xab; 32]));
        // Entries written before keys were logged name none.
        assert_eq!(
            enrolled_key("hostname=db01 agent_version=0.1.0 token_created_by=alice"),
            None
        );
        // A host name that imitates the field makes the entry name none.
        let forged = format!(
            "hostname=x key={} token_created_by=y agent_version=0.1.0 key={key} token_created_by=alice",
            "cd".repeat(32)
        );
        assert_eq!(enrolled_key(&forged), None);
        assert_eq!(enrolled_key(&format!("hostname=x key={key}")), None);
    }
}
