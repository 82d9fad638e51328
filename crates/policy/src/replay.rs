//! What an auditor checks of a tenant's log beyond its tree (issue 12): the
//! meaning of its entries. The log is replayed entry by entry: each trust
//! statement it records as published is checked with the agents' own rules
//! (the first root against the auditor's pin, then rotations, policies and
//! freezes in the order the log gives them), and each released job must
//! have been requested before, be the envelope the release names, and carry
//! the signatures the policy in force then requires for the class its
//! action derives to. A tree that verifies but whose entries say something
//! no agent would have accepted names the first such entry.
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
