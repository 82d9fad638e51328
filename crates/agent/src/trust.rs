//! What this agent trusts (RFD 0002): the tenant root pinned at enrolment,
//! the latest root, policy and freeze statements it accepted, and how it
//! accepts new ones.
//!
//! On disk, in the state directory (0700; files 0600, replaced atomically):
//!
//! * `trust/pinned-root`: the fingerprint from the enrolment token (hex);
//! * `trust/root.signed`, `trust/policy.signed`, `trust/freeze.signed`: the
//!   latest accepted envelopes, in their canonical encoding. The freeze
//!   state (sequence, frozen) is derived from `freeze.signed` at load; it
//!   has no file of its own, so the two cannot disagree.
//! * `trust/log.vkey`: the transparency log's key, pinned at enrolment (Go
//!   signed-note verifier key text);
//! * `trust/log.head`: the last tree head of the tenant's log this agent
//!   accepted (a signed C2SP checkpoint). Every later head must extend it
//!   (`bulwark_policy::log`); it only ever grows.
//!
//! The server relays statements; it cannot make them. [`TrustState::apply`]
//! checks every one with `bulwark_policy` and keeps only what verifies.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bulwark_policy::{
    FreezeState, FreezeStatement, Limits, Policy, Refusal, Signed, TrustHistory, TrustRoot,
    envelope::Statement,
};
use bulwark_protocol::message::{Trust, TrustRefused, TrustStatus};
use bulwark_translog::{Checkpoint, NoteVerifier, verify_log_note};
use tracing::{info, warn};

use crate::files::{private_dir, read_optional, write_atomic};

pub use bulwark_policy::{TrustKind, TrustOutcome};

/// The report a refused statement becomes (`None` for an accepted one).
pub fn refusal_report(outcome: &TrustOutcome) -> Option<TrustRefused> {
    match outcome {
        TrustOutcome::Accepted { .. } => None,
        TrustOutcome::Refused {
            kind,
            version,
            refusal,
        } => Some(TrustRefused {
            kind: kind.as_str().to_owned(),
            version: *version,
            code: refusal.code(),
            reason: crate::text::clipped(
                &refusal.to_string(),
                bulwark_protocol::Limits::default().max_long_text,
            ),
        }),
    }
}

/// The agent's trust, in memory. Everything in it passed verification when
/// it was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustState {
    /// The root pinned at enrolment and the root, policy and freeze
    /// statement accepted since: `bulwark_policy`'s one trust replay.
    pub history: TrustHistory,
    /// The log key pinned at enrolment; `None` for an agent enrolled before
    /// the transparency log (it refuses every job: enrol it again).
    pub log_key: Option<NoteVerifier>,
    /// The last accepted tree head of the tenant's log, as signed.
    pub log_head: Option<(String, Checkpoint)>,
}

fn trust_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("trust")
}

fn file(state_dir: &Path, name: &str) -> PathBuf {
    trust_dir(state_dir).join(name)
}

const PINNED: &str = "pinned-root";
const ROOT: &str = "root.signed";
const POLICY: &str = "policy.signed";
const FREEZE: &str = "freeze.signed";
const LOG_KEY: &str = "log.vkey";
const LOG_HEAD: &str = "log.head";

/// Reads an envelope and the statement it carries.
fn open<T: Statement>(bytes: &[u8], limits: &Limits) -> Result<(Signed, T), Refusal> {
    let signed = Signed::from_bytes(bytes, limits)?;
    let statement = signed.statement::<T>(limits)?;
    Ok((signed, statement))
}

impl TrustState {
    /// Nothing accepted yet, only the pin.
    pub fn new(pinned: [u8; 32]) -> Self {
        Self {
            history: TrustHistory::new(pinned, None),
            log_key: None,
            log_head: None,
        }
    }

    /// Records the transparency log's key from the enrolment answer.
    pub fn pin_log_key(state_dir: &Path, vkey: &str) -> anyhow::Result<()> {
        NoteVerifier::from_vkey(vkey)
            .map_err(|e| anyhow::anyhow!("the server's log key is not valid: {e}"))?;
        private_dir(&trust_dir(state_dir))?;
        write_atomic(
            &file(state_dir, LOG_KEY),
            format!("{vkey}\n").as_bytes(),
            0o600,
        )?;
        Ok(())
    }

    /// The size of the held tree head (what the agent tells the server).
    pub fn log_size(&self) -> Option<u64> {
        self.log_head.as_ref().map(|(_, head)| head.size())
    }

    /// Keeps `head` (already checked by `bulwark_policy::log::verify_log_head`)
    /// if it is larger than the held one, on disk first.
    pub fn accept_log_head(
        &mut self,
        state_dir: &Path,
        note: &str,
        head: Checkpoint,
    ) -> std::io::Result<()> {
        if self.log_size().is_some_and(|held| held >= head.size()) {
            return Ok(());
        }
        private_dir(&trust_dir(state_dir))?;
        write_atomic(&file(state_dir, LOG_HEAD), note.as_bytes(), 0o600)?;
        self.log_head = Some((note.to_owned(), head));
        Ok(())
    }

    /// Records the root fingerprint from the enrolment token (at enrolment,
    /// before anything else of the tenant's is seen).
    pub fn pin(state_dir: &Path, pinned: &[u8; 32]) -> std::io::Result<()> {
        private_dir(&trust_dir(state_dir))?;
        write_atomic(
            &file(state_dir, PINNED),
            format!("{}\n", hex::encode(pinned)).as_bytes(),
            0o600,
        )
    }

    /// Loads what was accepted before. The files are the agent's own (in its
    /// 0700 directory, written only after verification), so this checks
    /// them for consistency rather than re-verifying the whole history: the
    /// root must carry its own threshold's signatures (and be the pinned one
    /// if it is version 1), and the policy and freeze statements must be for
    /// its tenant. Anything else is an error: the agent does not start
    /// rather than forget a freeze or accept an older policy.
    pub fn load(state_dir: &Path, limits: &Limits) -> anyhow::Result<Self> {
        let pinned_path = file(state_dir, PINNED);
        let text = read_optional(&pinned_path)
            .with_context(|| format!("cannot read {}", pinned_path.display()))?
            .with_context(|| {
                format!(
                    "{} is missing: this agent was enrolled before signed jobs; enrol it again",
                    pinned_path.display()
                )
            })?;
        let pinned: [u8; 32] = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| hex::decode(t.trim()).ok())
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is corrupt", pinned_path.display()))?;
        let mut state = Self::new(pinned);
        let (mut held_root, mut policy, mut freeze) = (None, None, None);

        let read = |name: &str| -> anyhow::Result<Option<Vec<u8>>> {
            let path = file(state_dir, name);
            read_optional(&path).with_context(|| format!("cannot read {}", path.display()))
        };
        let corrupt = |name: &str, why: &dyn std::fmt::Display| {
            anyhow::anyhow!("{} is not valid: {why}", file(state_dir, name).display())
        };

        if let Some(bytes) = read(ROOT)? {
            let (signed, root) =
                open::<TrustRoot>(&bytes, limits).map_err(|e| corrupt(ROOT, &e))?;
            if root.version == 1 {
                TrustRoot::verify_pinned(&signed, &pinned, &root.tenant, limits)
                    .map_err(|e| corrupt(ROOT, &e))?;
            } else {
                signed
                    .tally(root.public_keys())
                    .require(root.threshold())
                    .map_err(|e| corrupt(ROOT, &e))?;
            }
            held_root = Some((signed, root));
        }
        let tenant = held_root
            .as_ref()
            .map(|(_, r): &(Signed, TrustRoot)| r.tenant.clone());
        if let Some(bytes) = read(POLICY)? {
            let (signed, held) = open::<Policy>(&bytes, limits).map_err(|e| corrupt(POLICY, &e))?;
            if tenant.as_deref() != Some(held.tenant.as_str()) {
                return Err(corrupt(
                    POLICY,
                    &"it is not for the tenant of the held root",
                ));
            }
            policy = Some((signed, held));
        }
        if let Some(bytes) = read(LOG_KEY)? {
            let text = String::from_utf8(bytes).map_err(|e| corrupt(LOG_KEY, &e))?;
            state.log_key =
                Some(NoteVerifier::from_vkey(text.trim()).map_err(|e| corrupt(LOG_KEY, &e))?);
        }
        if let Some(bytes) = read(LOG_HEAD)? {
            let key = state
                .log_key
                .as_ref()
                .ok_or_else(|| corrupt(LOG_HEAD, &"there is no log key to check it with"))?;
            let note = String::from_utf8(bytes).map_err(|e| corrupt(LOG_HEAD, &e))?;
            let head = verify_log_note(&note, key, limits).map_err(|e| corrupt(LOG_HEAD, &e))?;
            state.log_head = Some((note, head));
        }
        if let Some(bytes) = read(FREEZE)? {
            let (signed, held) =
                open::<FreezeStatement>(&bytes, limits).map_err(|e| corrupt(FREEZE, &e))?;
            if tenant.as_deref() != Some(held.tenant.as_str()) {
                return Err(corrupt(
                    FREEZE,
                    &"it is not for the tenant of the held root",
                ));
            }
            let held = FreezeState {
                sequence: held.sequence,
                frozen: held.frozen,
            };
            freeze = Some((signed, held));
        }
        state.history = TrustHistory::resume(pinned, held_root, policy, freeze);
        Ok(state)
    }

    /// Writes every accepted envelope (each file replaced atomically). The
    /// root goes first: a crash part-way leaves an older policy or freeze
    /// with a newer root, which is a state the agent could have been in.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        private_dir(&trust_dir(state_dir))?;
        if let Some(signed) = self.history.root_signed() {
            write_atomic(&file(state_dir, ROOT), &signed.to_bytes(), 0o600)?;
        }
        if let Some(signed) = self.history.policy_signed() {
            write_atomic(&file(state_dir, POLICY), &signed.to_bytes(), 0o600)?;
        }
        if let Some(signed) = self.history.freeze_signed() {
            write_atomic(&file(state_dir, FREEZE), &signed.to_bytes(), 0o600)?;
        }
        Ok(())
    }

    /// The tenant id this agent obeys (its root's), once it holds a root.
    pub fn tenant(&self) -> Option<&str> {
        self.history.tenant()
    }

    /// What the agent holds, as reported to the server.
    pub fn status(&self) -> TrustStatus {
        TrustStatus {
            root_version: self.history.root().map(|r| r.version),
            policy_version: self.history.policy().map(|p| p.version),
            freeze_sequence: self.history.freeze().sequence,
            frozen: self.history.freeze().frozen,
        }
    }

    /// Applies a `Trust` message: roots in order, then the policy, then the
    /// freeze statement, each against the root held at that point. What the
    /// agent already holds is ignored; what fails verification is refused,
    /// logged here and returned (the session reports it as `TrustRefused`).
    /// `now` is Unix seconds. Nothing is written: call [`TrustState::save`]
    /// after an `Accepted` outcome.
    pub fn apply(&mut self, update: &Trust, now: u64, limits: &Limits) -> Vec<TrustOutcome> {
        let mut outcomes = Vec::new();
        let mut offer = |kind: TrustKind, bytes: &[u8], outcomes: &mut Vec<TrustOutcome>| {
            let signed = match Signed::from_bytes(bytes, limits) {
                Ok(signed) => signed,
                Err(refusal) => {
                    outcomes.push(TrustOutcome::Refused {
                        kind,
                        version: 0,
                        refusal,
                    });
                    return false;
                }
            };
            if self.history.holds(kind, &signed, limits) {
                return true;
            }
            if kind != TrustKind::Root && self.history.root().is_none() {
                warn!(
                    kind = kind.as_str(),
                    "A statement arrived before any trust root was accepted; ignored."
                );
                return false;
            }
            let outcome = match kind {
                TrustKind::Root => self.history.apply_root(&signed, limits),
                TrustKind::Policy => self.history.apply_policy(&signed, Some(now), limits),
                TrustKind::Freeze => self.history.apply_freeze(&signed, limits),
            };
            let ok = outcome.refusal().is_none();
            outcomes.push(outcome);
            ok
        };
        // Later roots chain from earlier ones: stop at the first refusal.
        for bytes in &update.roots {
            if !offer(TrustKind::Root, bytes, &mut outcomes) {
                break;
            }
        }
        if let Some(bytes) = &update.policy {
            offer(TrustKind::Policy, bytes, &mut outcomes);
        }
        if let Some(bytes) = &update.freeze {
            offer(TrustKind::Freeze, bytes, &mut outcomes);
        }
        for outcome in &outcomes {
            match outcome {
                TrustOutcome::Accepted { kind, version } => {
                    info!(kind = kind.as_str(), version, "Accepted a trust statement.");
                }
                TrustOutcome::Refused {
                    kind,
                    version,
                    refusal,
                } => warn!(
                    kind = kind.as_str(),
                    version,
                    code = %refusal.code(),
                    reason = %refusal,
                    "Refused a trust statement relayed by the server."
                ),
            }
        }
        outcomes
    }
}
