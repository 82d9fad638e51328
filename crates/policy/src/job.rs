//! Job statements and the check an agent makes before running anything.
//!
//! A job says what it does in a typed [`JobAction`]; the action class that
//! picks its quorum is derived from that payload ([`JobAction::class`]),
//! never taken from the label beside it (RFD 0005). Each target names the
//! device as the operator chose it (hostname, and the device key where the
//! operator's software knew it), so a server that swaps hostnames or device
//! ids sends the job to an agent that refuses it.

use std::collections::BTreeSet;

use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::Refusal;
use crate::envelope::{Signed, Statement};
use crate::freeze::FreezeState;
use crate::keys::KeyId;
use crate::limits::{Limits, cap};
use crate::policy::{ActionClass, Policy, Quorum, ScriptHash};
use crate::root::Holder;

/// The program that runs a script, chosen by the signer and signed with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum Interpreter {
    /// `/bin/sh`.
    #[n(0)]
    Sh,
    /// `/bin/bash`.
    #[n(1)]
    Bash,
    /// `python3` from the job's `PATH`, where present.
    #[n(2)]
    Python3,
}

impl Interpreter {
    pub const ALL: [Interpreter; 3] = [Interpreter::Sh, Interpreter::Bash, Interpreter::Python3];

    pub fn name(self) -> &'static str {
        match self {
            Interpreter::Sh => "sh",
            Interpreter::Bash => "bash",
            Interpreter::Python3 => "python3",
        }
    }

    pub fn from_name(name: &str) -> Option<Interpreter> {
        Self::ALL.into_iter().find(|i| i.name() == name.trim())
    }

    /// The interpreter a script's first line asks for (`#!/bin/bash`,
    /// `#!/usr/bin/env python3`, ...); `sh` otherwise. The signer's software
    /// proposes this; what is signed is what runs.
    pub fn from_shebang(script: &[u8]) -> Interpreter {
        let first = script.split(|b| *b == b'\n').next().unwrap_or_default();
        let Some(rest) = first.strip_prefix(b"#!") else {
            return Interpreter::Sh;
        };
        let line = String::from_utf8_lossy(rest);
        let mut words = line.split_whitespace();
        let program = match words.next() {
            Some("/usr/bin/env") => words.next().unwrap_or_default(),
            Some(path) => path.rsplit('/').next().unwrap_or_default(),
            None => "",
        };
        match program {
            "bash" => Interpreter::Bash,
            "python3" => Interpreter::Python3,
            _ => Interpreter::Sh,
        }
    }
}

/// One setting of the agent's own configuration (for `ChangeAgentSettings`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct AgentSetting {
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub value: String,
}

/// What a job does. The agent derives the action class from this, so a
/// script cannot run under another class's quorum by being relabelled.
/// Variants the agent does not implement yet are refused
/// (`action_not_supported`) until it does.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum JobAction {
    /// Collect and send a full inventory snapshot. Carries no script.
    #[n(0)]
    InventoryRefresh,
    /// Run a script body whose SHA-256 is signed, with the signed interpreter.
    #[n(1)]
    RunScript {
        #[n(0)]
        interpreter: Interpreter,
        #[n(1)]
        script_sha256: ScriptHash,
    },
    /// Install package updates (all pending security updates when empty).
    #[n(2)]
    InstallPatches {
        #[n(0)]
        packages: Vec<String>,
    },
    /// An interactive shell as an unprivileged user.
    #[n(3)]
    OpenShell,
    /// An interactive shell with administrative rights.
    #[n(4)]
    OpenAdminShell,
    #[n(5)]
    ChangeAgentSettings {
        #[n(0)]
        settings: Vec<AgentSetting>,
    },
    /// Replace the agent with a signed release.
    #[n(6)]
    UpdateAgent {
        #[n(0)]
        version: String,
        #[cbor(n(1), with = "minicbor::bytes")]
        binary_sha256: [u8; 32],
    },
    #[n(7)]
    RestoreBackup {
        #[n(0)]
        snapshot: String,
        #[n(1)]
        path: String,
    },
}

impl JobAction {
    /// The action class this payload is, under `policy`: the class whose
    /// quorum applies. A script is `run-allow-listed-script` exactly when its
    /// hash is on the policy's allow-list, else `run-script`.
    pub fn class(&self, policy: &Policy) -> ActionClass {
        match self {
            JobAction::InventoryRefresh => ActionClass::InventoryRefresh,
            JobAction::RunScript { script_sha256, .. } => {
                if policy.allowed_scripts.contains(script_sha256) {
                    ActionClass::RunAllowListedScript
                } else {
                    ActionClass::RunScript
                }
            }
            JobAction::InstallPatches { .. } => ActionClass::InstallPatches,
            JobAction::OpenShell => ActionClass::OpenShell,
            JobAction::OpenAdminShell => ActionClass::OpenAdminShell,
            JobAction::ChangeAgentSettings { .. } => ActionClass::ChangeAgentSettings,
            JobAction::UpdateAgent { .. } => ActionClass::UpdateAgent,
            JobAction::RestoreBackup { .. } => ActionClass::RestoreBackup,
        }
    }

    /// The script body's signed hash, for the one action that runs a script.
    pub fn script_sha256(&self) -> Option<&ScriptHash> {
        match self {
            JobAction::RunScript { script_sha256, .. } => Some(script_sha256),
            _ => None,
        }
    }

    /// A short description for people: "run-script (bash, sha256 ab12…)".
    pub fn describe(&self) -> String {
        match self {
            JobAction::InventoryRefresh => "refresh the inventory (no script)".into(),
            JobAction::RunScript {
                interpreter,
                script_sha256,
            } => format!(
                "run a {} script, sha256 {}",
                interpreter.name(),
                hex::encode(script_sha256.0)
            ),
            JobAction::InstallPatches { packages } if packages.is_empty() => {
                "install every pending security update".into()
            }
            JobAction::InstallPatches { packages } => {
                format!("install updates of {}", packages.join(", "))
            }
            JobAction::OpenShell => "open a shell".into(),
            JobAction::OpenAdminShell => "open an administrative shell".into(),
            JobAction::ChangeAgentSettings { settings } => format!(
                "change agent settings: {}",
                settings
                    .iter()
                    .map(|s| format!("{}={}", s.name, s.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            JobAction::UpdateAgent {
                version,
                binary_sha256,
            } => format!(
                "update the agent to {version} (sha256 {})",
                hex::encode(binary_sha256)
            ),
            JobAction::RestoreBackup { snapshot, path } => {
                format!("restore backup snapshot {snapshot} to {path}")
            }
        }
    }

    fn validate(&self, limits: &Limits) -> Result<(), Refusal> {
        match self {
            JobAction::InstallPatches { packages } => {
                cap(packages.len(), limits.max_targets, "packages")?;
                for p in packages {
                    cap(p.len(), limits.max_text, "package name")?;
                    if !is_package_name(p) {
                        return Err(Refusal::Malformed(format!(
                            "{p:?} is not a Debian package name"
                        )));
                    }
                }
            }
            JobAction::ChangeAgentSettings { settings } => {
                cap(settings.len(), 64, "settings")?;
                for s in settings {
                    cap(s.name.len(), limits.max_text, "setting name")?;
                    cap(s.value.len(), limits.max_text, "setting value")?;
                }
            }
            JobAction::UpdateAgent { version, .. } => {
                cap(version.len(), limits.max_text, "version")?
            }
            JobAction::RestoreBackup { snapshot, path } => {
                cap(snapshot.len(), limits.max_text, "snapshot")?;
                cap(path.len(), 4096, "path")?;
            }
            JobAction::InventoryRefresh
            | JobAction::RunScript { .. }
            | JobAction::OpenShell
            | JobAction::OpenAdminShell => {}
        }
        Ok(())
    }
}

/// Debian's package-name grammar (Policy 5.6.1: lower-case letters,
/// digits, `+`, `-`, `.`; at least two characters, starting with a letter
/// or digit), with an optional `:architecture` qualifier: a name that
/// passes can never be read as an option by apt or dpkg.
pub fn is_package_name(name: &str) -> bool {
    let (package, arch) = name.split_once(':').unwrap_or((name, "a"));
    let starts_well =
        |s: &str| s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    package.len() >= 2
        && starts_well(package)
        && package
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        && starts_well(arch)
        && arch
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// One device a job is for, as the operator chose it: the device id, the
/// hostname the operator picked it by, and (where the operator's software
/// knew it) SHA-256 of the device's public key. The agent runs the job only
/// if this entry describes itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
#[cbor(map)]
pub struct JobTarget {
    /// Canonical UUID text.
    #[n(0)]
    pub device_id: String,
    #[n(1)]
    pub hostname: String,
    #[cbor(n(2), with = "minicbor::bytes")]
    pub device_key: Option<[u8; 32]>,
}

/// What operators sign: exactly what will run, where, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct JobStatement {
    /// The tenant id.
    #[n(0)]
    pub tenant: String,
    /// Unique per job: an agent runs a job id at most once.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub job_id: [u8; 16],
    #[n(2)]
    pub targets: Vec<JobTarget>,
    /// The class the requester declared; it must be the class the action
    /// derives to ([`JobAction::class`]), or the agent refuses the job.
    #[n(3)]
    pub class: ActionClass,
    #[n(4)]
    pub action: JobAction,
    /// Unix seconds.
    #[n(5)]
    pub not_before: u64,
    /// Unix seconds.
    #[n(6)]
    pub expires_at: u64,
    #[cbor(n(7), with = "minicbor::bytes")]
    pub nonce: [u8; 16],
    /// Why, in the requester's words (shown to approvers and auditors).
    #[n(8)]
    pub reason: String,
    /// The agent stops the script after this many seconds (1 to a day).
    #[n(9)]
    pub timeout_secs: u32,
    /// The tenant's name as the requester chose it; checked against the
    /// name in the tenant's root-signed policy.
    #[n(10)]
    pub tenant_name: String,
}

/// Longest a script may be allowed to run: one day.
pub const MAX_TIMEOUT_SECS: u32 = 24 * 3600;

impl Statement for JobStatement {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.job.v2+cbor";
}

impl JobStatement {
    /// The target entry naming `device_id`, if any.
    pub fn target(&self, device_id: &str) -> Option<&JobTarget> {
        self.targets.iter().find(|t| t.device_id == device_id)
    }

    /// The device ids this job is for.
    pub fn device_ids(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.device_id.as_str())
    }

    /// The job's own checks, independent of any agent: caps, timeout,
    /// targets named once each. Step 2 of [`verify_job`]; the server and the
    /// CLI run it too.
    pub fn validate(&self, limits: &Limits) -> Result<(), Refusal> {
        cap(self.targets.len(), limits.max_targets, "targets")?;
        cap(self.reason.len(), 4096, "reason")?;
        cap(self.tenant.len(), limits.max_text, "tenant")?;
        cap(self.tenant_name.len(), limits.max_text, "tenant name")?;
        for t in &self.targets {
            cap(t.device_id.len(), limits.max_text, "device id")?;
            cap(t.hostname.len(), limits.max_text, "hostname")?;
        }
        let ids: BTreeSet<&str> = self.device_ids().collect();
        if ids.len() != self.targets.len() {
            return Err(Refusal::Malformed("a device is named twice".into()));
        }
        self.action.validate(limits)?;
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(Refusal::Malformed(format!(
                "timeout of {} s outside 1..={MAX_TIMEOUT_SECS}",
                self.timeout_secs
            )));
        }
        Ok(())
    }
}

/// SHA-256 of a device's Ed25519 public key: how a job names the key.
pub fn device_key_fingerprint(public_key: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(public_key).into()
}

/// Is `a` the same host name as `b`? Host names compare without ASCII case.
pub fn same_hostname(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The agent's memory of jobs it has run (kept on disk, across restarts).
pub trait JobHistory {
    fn seen(&self, job_id: &[u8; 16], nonce: &[u8; 16]) -> bool;
}

/// Who the agent is and what it currently trusts.
#[derive(Debug, Clone, Copy)]
pub struct AgentContext<'a> {
    pub tenant: &'a str,
    pub device_id: &'a str,
    /// The host name the agent reads from its own system at verification time.
    pub hostname: &'a str,
    /// [`device_key_fingerprint`] of the agent's own key.
    pub device_key: &'a [u8; 32],
    pub policy: &'a Policy,
    pub freeze: FreezeState,
}

/// A job that passed every check, with the keys that vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJob {
    pub statement: JobStatement,
    /// The class derived from the action, whose quorum was met.
    pub class: ActionClass,
    pub signers: BTreeSet<KeyId>,
}

/// Invariant 1 of DESIGN.md: may this agent run this job now?
pub fn verify_job(
    signed: &Signed,
    script: &[u8],
    agent: AgentContext<'_>,
    history: &impl JobHistory,
    now: u64,
    limits: &Limits,
) -> Result<VerifiedJob, Refusal> {
    let policy = agent.policy;
    // 1. A frozen tenant runs nothing, whatever the job says.
    if agent.freeze.frozen {
        return Err(Refusal::Frozen);
    }
    // 2. A job statement, canonical, within limits.
    let job: JobStatement = signed.statement(limits)?;
    job.validate(limits)?;
    // 3. For this tenant (by id, and by name where the policy signs one)
    //    and for this device as the operator chose it.
    if job.tenant != agent.tenant || policy.tenant != agent.tenant {
        return Err(Refusal::WrongTenant);
    }
    if let Some(name) = &policy.tenant_name
        && *name != job.tenant_name
    {
        return Err(Refusal::WrongTenant);
    }
    let target = job.target(agent.device_id).ok_or(Refusal::NotATarget)?;
    if !same_hostname(&target.hostname, agent.hostname) {
        return Err(Refusal::TargetMismatch(format!(
            "the job names host {:?}, this device is {:?}",
            target.hostname, agent.hostname
        )));
    }
    if let Some(key) = &target.device_key
        && key != agent.device_key
    {
        return Err(Refusal::TargetMismatch(
            "the job names another device key".into(),
        ));
    }
    // 4. Under a policy that is still in force.
    if now >= policy.expires_at {
        return Err(Refusal::PolicyExpired);
    }
    // 5. Inside the job's validity window, which may not be overly long.
    if now < job.not_before {
        return Err(Refusal::NotYetValid);
    }
    if now >= job.expires_at {
        return Err(Refusal::Expired);
    }
    if job.expires_at.saturating_sub(job.not_before) > limits.max_job_validity_secs {
        return Err(Refusal::ValidityTooLong);
    }
    // 6. Never twice: neither the job id nor the nonce.
    if history.seen(&job.job_id, &job.nonce) {
        return Err(Refusal::Replayed);
    }
    // 7. The body is the one that was signed; an action without a script
    //    comes without one.
    match job.action.script_sha256() {
        Some(hash) if ScriptHash(Sha256::digest(script).into()) != *hash => {
            return Err(Refusal::ScriptMismatch);
        }
        None if !script.is_empty() => return Err(Refusal::ScriptMismatch),
        _ => {}
    }
    // 8-12. The derived class: its label, permission, allow-list, window,
    //       quorum and customer co-signer.
    let (class, signers) = check_quorum(signed, &job, policy, now)?;
    // 13. The job is in the tenant's log under a signed tree head consistent
    //     with the last one accepted (`crate::log`, run by the agent).
    Ok(VerifiedJob {
        statement: job,
        class,
        signers,
    })
}

/// 8a: the class the action derives to, which must be the declared one.
pub fn derive_class(job: &JobStatement, policy: &Policy) -> Result<ActionClass, Refusal> {
    let derived = job.action.class(policy);
    if derived == job.class {
        return Ok(derived);
    }
    // 9. A script declared allow-listed whose hash the policy does not list.
    if job.class == ActionClass::RunAllowListedScript && derived == ActionClass::RunScript {
        return Err(Refusal::ScriptNotAllowListed);
    }
    Err(Refusal::ClassMismatch {
        declared: job.class,
        derived,
    })
}

/// Steps 8 to 12 of [`verify_job`]: does the policy let these signatures
/// run this job now? Returns the derived class and the signers. The server
/// calls this too, to show approvers how far a job is from its quorum; only
/// the agent's answer counts.
pub fn check_quorum(
    signed: &Signed,
    job: &JobStatement,
    policy: &Policy,
    now: u64,
) -> Result<(ActionClass, BTreeSet<KeyId>), Refusal> {
    // 8. The class the payload is (never the label alone), permitted at all...
    let class = derive_class(job, policy)?;
    let quorum = policy.quorum(class).ok_or(Refusal::ClassNotPermitted)?;
    // 9. (An allow-listed script's hash is on the list: part of 8's derivation.)
    // 10. ...and now, if the class is restricted to maintenance windows.
    if quorum.in_window_only && !policy.in_window(now) {
        return Err(Refusal::OutsideMaintenanceWindow);
    }
    // 11. Enough distinct signers authorised for this class; one more when
    //     the job fans out beyond the policy's limit.
    let need = signers_needed(quorum, job, policy);
    let tally = signed.tally(policy.signers_for(class, None));
    tally.require(need)?;
    // 12. A customer-held key among them, where the policy demands it.
    if quorum.customer_required && !customer_signed(signed, policy, class) {
        return Err(Refusal::MissingCustomerCosigner);
    }
    Ok((class, tally.valid))
}

/// How far a job's signatures are from its quorum (for people, not for the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumProgress {
    /// Distinct valid signers authorised for the class.
    pub have: usize,
    /// How many the class needs for this many targets.
    pub need: usize,
    pub customer_required: bool,
    pub customer_signed: bool,
}

/// Counts valid authorised signers against the policy's quorum for the
/// job's derived class; `None` when the label and the payload disagree or
/// the policy does not permit the class.
pub fn quorum_progress(
    signed: &Signed,
    job: &JobStatement,
    policy: &Policy,
) -> Option<QuorumProgress> {
    let class = derive_class(job, policy).ok()?;
    let quorum = policy.quorum(class)?;
    Some(QuorumProgress {
        have: signed.tally(policy.signers_for(class, None)).valid.len(),
        need: signers_needed(quorum, job, policy),
        customer_required: quorum.customer_required,
        customer_signed: customer_signed(signed, policy, class),
    })
}

/// Whether a customer-held key authorised for `class` signed.
pub(crate) fn customer_signed(signed: &Signed, policy: &Policy, class: ActionClass) -> bool {
    let customer = signed.tally(policy.signers_for(class, Some(Holder::Customer)));
    !customer.valid.is_empty()
}

/// The class's quorum, plus one signer when the job targets more distinct
/// devices than the policy's fan-out limit.
fn signers_needed(quorum: &Quorum, job: &JobStatement, policy: &Policy) -> usize {
    let targets: BTreeSet<&str> = job.device_ids().collect();
    let fan_out = usize::try_from(policy.fan_out_limit).unwrap_or(usize::MAX);
    usize::try_from(quorum.signers)
        .unwrap_or(usize::MAX)
        .saturating_add(usize::from(targets.len() > fan_out))
}
