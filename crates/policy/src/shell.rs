//! Remote shells (RFD 0015): the access grant an agent verifies like a job,
//! the session-open the grantee's own software signs, and the device's
//! answer. The sealed channel that follows is [`channel`].
//!
//! A grant is a permission for a time, not a one-shot job: its id may open
//! several sessions inside its window. The one-shot part is the
//! session-open, whose nonce and time the agent checks ([`SeenOpens`]).

pub mod channel;

use std::collections::{BTreeMap, BTreeSet};

use minicbor::{Decode, Encode};

use crate::Refusal;
use crate::envelope::{Signed, Statement};
use crate::job::{AgentContext, JobTarget, customer_signed, same_hostname};
use crate::keys::{KeyId, PublicKey};
use crate::limits::{Limits, cap};
use crate::policy::ActionClass;

/// Longest a grant may be valid: 8 hours. Grants are short because the
/// revoke is the server's courtesy and the expiry is the guarantee.
pub const MAX_GRANT_SECS: u64 = 8 * 3600;
/// How far a session-open's time may be from the agent's clock.
pub const OPEN_SKEW_SECS: u64 = 60;
/// Most session-open nonces an agent remembers (those inside the skew window).
pub const MAX_SEEN_OPENS: usize = 1024;
/// Most revoked grants an agent remembers (until each one's expiry).
pub const MAX_REVOKED: usize = 1024;
/// Largest terminal, in columns and rows.
pub const MAX_TERMINAL_SIZE: u16 = 1000;

/// The account a shell runs as. Root is the "admin shell", with its own class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum ShellAccount {
    /// The agent's configured unprivileged account.
    #[n(0)]
    Unprivileged,
    #[n(1)]
    Root,
}

impl ShellAccount {
    /// The class whose quorum a grant for this account needs.
    pub fn class(self) -> ActionClass {
        match self {
            ShellAccount::Unprivileged => ActionClass::OpenShell,
            ShellAccount::Root => ActionClass::OpenAdminShell,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ShellAccount::Unprivileged => "unprivileged",
            ShellAccount::Root => "root",
        }
    }
}

/// What approvers sign: who may open a shell, on which device, as whom, why
/// and until when.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellGrant {
    /// The tenant id.
    #[n(0)]
    pub tenant: String,
    /// The tenant's name as the requester chose it.
    #[n(1)]
    pub tenant_name: String,
    #[cbor(n(2), with = "minicbor::bytes")]
    pub grant_id: [u8; 16],
    /// The device as the operator chose it (id, hostname, key fingerprint).
    #[n(3)]
    pub device: JobTarget,
    /// The operator key that may open sessions under this grant.
    #[n(4)]
    pub grantee: KeyId,
    #[n(5)]
    pub account: ShellAccount,
    #[n(6)]
    pub reason: String,
    /// Unix seconds.
    #[n(7)]
    pub not_before: u64,
    /// Unix seconds; the agent ends every session under the grant then.
    #[n(8)]
    pub expires_at: u64,
    #[cbor(n(9), with = "minicbor::bytes")]
    pub nonce: [u8; 16],
}

impl Statement for ShellGrant {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.shell-grant.v1+cbor";
}

impl ShellGrant {
    /// The grant's own checks (step 2 of [`verify_grant`]); the server and
    /// the CLI run them too.
    pub fn validate(&self, limits: &Limits) -> Result<(), Refusal> {
        cap(self.tenant.len(), limits.max_text, "tenant")?;
        cap(self.tenant_name.len(), limits.max_text, "tenant name")?;
        cap(self.device.device_id.len(), limits.max_text, "device id")?;
        cap(self.device.hostname.len(), limits.max_text, "hostname")?;
        cap(self.reason.len(), 4096, "reason")?;
        if self.expires_at <= self.not_before {
            return Err(Refusal::Malformed("the grant ends before it starts".into()));
        }
        if self.expires_at - self.not_before > MAX_GRANT_SECS {
            return Err(Refusal::ValidityTooLong);
        }
        Ok(())
    }
}

/// A grant that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGrant {
    pub grant: ShellGrant,
    /// The grantee's key as the policy lists it: what a session-open must verify under.
    pub grantee_key: PublicKey,
    pub signers: BTreeSet<KeyId>,
}

/// Grants the server said were revoked, each kept until its expiry. The
/// server may lie about the expiry: a revoke only makes less happen, so a
/// lie here gains it nothing it lacked by withholding the revoke.
#[derive(Debug, Clone, Default)]
pub struct RevokedGrants {
    until: BTreeMap<[u8; 16], u64>,
    /// When the set was full, a revocation was dropped: every grant counts
    /// as revoked until then (fail closed).
    overflow_until: u64,
}

impl RevokedGrants {
    pub fn revoke(&mut self, grant_id: [u8; 16], expires_at: u64, now: u64) {
        self.until.retain(|_, until| *until > now);
        if self.until.len() >= MAX_REVOKED && !self.until.contains_key(&grant_id) {
            self.overflow_until = self.overflow_until.max(expires_at);
            return;
        }
        let until = self.until.entry(grant_id).or_insert(expires_at);
        *until = (*until).max(expires_at);
    }

    pub fn is_revoked(&self, grant_id: &[u8; 16], now: u64) -> bool {
        now < self.overflow_until || self.until.get(grant_id).is_some_and(|u| now < *u)
    }
}

/// May a session be opened under this grant on this agent now?
pub fn verify_grant(
    signed: &Signed,
    agent: AgentContext<'_>,
    revoked: &RevokedGrants,
    now: u64,
    limits: &Limits,
) -> Result<VerifiedGrant, Refusal> {
    let policy = agent.policy;
    // 1. A frozen tenant opens no shell.
    if agent.freeze.frozen {
        return Err(Refusal::Frozen);
    }
    // 2. A grant statement, canonical, within limits, at most 8 hours long.
    let grant: ShellGrant = signed.statement(limits)?;
    grant.validate(limits)?;
    // 3. For this tenant (id and signed name) and this device as the operator chose it.
    if grant.tenant != agent.tenant || policy.tenant != agent.tenant {
        return Err(Refusal::WrongTenant);
    }
    if policy
        .tenant_name
        .as_ref()
        .is_some_and(|name| *name != grant.tenant_name)
    {
        return Err(Refusal::WrongTenant);
    }
    if grant.device.device_id != agent.device_id {
        return Err(Refusal::NotATarget);
    }
    if !same_hostname(&grant.device.hostname, agent.hostname) {
        return Err(Refusal::TargetMismatch(format!(
            "the grant names host {:?}, this device is {:?}",
            grant.device.hostname, agent.hostname
        )));
    }
    if grant
        .device
        .device_key
        .is_some_and(|key| key != *agent.device_key)
    {
        return Err(Refusal::TargetMismatch(
            "the grant names another device key".into(),
        ));
    }
    // 4. Under a policy in force.
    if now >= policy.expires_at {
        return Err(Refusal::PolicyExpired);
    }
    // 5. Inside its window, on this agent's clock.
    if now < grant.not_before {
        return Err(Refusal::NotYetValid);
    }
    if now >= grant.expires_at {
        return Err(Refusal::Expired);
    }
    // 6. Not revoked.
    if revoked.is_revoked(&grant.grant_id, now) {
        return Err(Refusal::GrantRevoked);
    }
    // 7. The class the account derives to is permitted (now), and the
    //    grantee is a key the policy lists for it.
    let class = grant.account.class();
    let quorum = policy.quorum(class).ok_or(Refusal::ClassNotPermitted)?;
    if quorum.in_window_only && !policy.in_window(now) {
        return Err(Refusal::OutsideMaintenanceWindow);
    }
    let grantee = policy
        .operators
        .iter()
        .find(|o| o.key.id() == grant.grantee && o.classes.contains(&class))
        .ok_or(Refusal::UnknownKey)?;
    // 8. Enough distinct authorised signers; for a root shell at least two
    //    whatever the policy says, one of them another operator than the grantee.
    let need = usize::try_from(quorum.signers).unwrap_or(usize::MAX);
    let tally = signed.tally(policy.signers_for(class, None));
    if grant.account == ShellAccount::Root {
        tally.require(need.max(2))?;
        let someone_else = policy
            .operators
            .iter()
            .any(|o| tally.valid.contains(&o.key.id()) && o.name != grantee.name);
        if !someone_else {
            return Err(Refusal::TooFewSigners { have: 1, need: 2 });
        }
    } else {
        tally.require(need)?;
    }
    // 9. A customer-held key among them, where the class's quorum asks for one.
    if quorum.customer_required && !customer_signed(signed, policy, class) {
        return Err(Refusal::MissingCustomerCosigner);
    }
    Ok(VerifiedGrant {
        grantee_key: grantee.key.clone(),
        grant,
        signers: tally.valid,
    })
}

/// Longest line the root holders may add to every shell notice, in bytes.
pub const MAX_NOTICE_MESSAGE: usize = 200;

/// Whether the endpoint's logged-in users are told when a remote shell
/// starts and ends (RFD 0015, "Notices"). It is in the root-signed policy,
/// so a server cannot switch it off: the agent takes it only from the
/// policy it verified.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellNotice {
    /// Tell them when a session opens.
    #[n(0)]
    pub at_start: bool,
    /// Tell them when a session ends, however it ends.
    #[n(1)]
    pub at_end: bool,
    /// A line added to every notice (whom to call, say); plain text.
    #[n(2)]
    pub message: Option<String>,
}

impl ShellNotice {
    /// The setting's own checks (part of [`crate::Policy::validate`]): a
    /// message of at most [`MAX_NOTICE_MESSAGE`] bytes with no control or
    /// bidirectional-formatting character (it reaches people's terminals).
    pub fn validate(&self) -> Result<(), Refusal> {
        if let Some(message) = &self.message {
            cap(message.len(), MAX_NOTICE_MESSAGE, "shell notice message")?;
            if message.chars().any(is_terminal_control) {
                return Err(Refusal::Malformed(
                    "the shell notice message holds a control character".into(),
                ));
            }
        }
        Ok(())
    }
}

/// What a policy's notice setting means, in one line (the CLI and the
/// console show it; the message is plain text, `validate` saw to that).
pub fn notice_summary(notice: Option<&ShellNotice>) -> String {
    let when = match notice {
        Some(n) if n.at_start && n.at_end => "when a remote shell starts and when it ends",
        Some(n) if n.at_start => "when a remote shell starts",
        Some(n) if n.at_end => "when a remote shell ends",
        _ => return "none (logged-in users are not told of remote shells)".to_owned(),
    };
    match notice.and_then(|n| n.message.as_deref()) {
        Some(message) => format!("logged-in users are told {when}, with {message:?}"),
        None => format!("logged-in users are told {when}"),
    }
}

/// A character that must never reach a terminal from text someone wrote:
/// C0 and C1 controls and DEL (escape sequences start with them), and the
/// bidirectional overrides, isolates and marks, which reorder what people read.
pub fn is_terminal_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// What the grantee's own software signs to open one session.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct SessionOpen {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub grant_id: [u8; 16],
    #[n(1)]
    pub device_id: String,
    /// The relay's name for the session, bound so a server cannot move an open to another.
    #[cbor(n(2), with = "minicbor::bytes")]
    pub session_id: [u8; 16],
    /// The client's ephemeral X25519 public key.
    #[cbor(n(3), with = "minicbor::bytes")]
    pub client_ephemeral: [u8; 32],
    #[cbor(n(4), with = "minicbor::bytes")]
    pub nonce: [u8; 16],
    /// Unix seconds on the client's clock.
    #[n(5)]
    pub time: u64,
    #[n(6)]
    pub cols: u16,
    #[n(7)]
    pub rows: u16,
}

impl Statement for SessionOpen {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.shell-open.v1+cbor";
}

/// The device's answer, signed by its identity key: its ephemeral key,
/// bound to the open it answers.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct SessionAnswer {
    /// [`Signed::digest`] of the session-open envelope.
    #[cbor(n(0), with = "minicbor::bytes")]
    pub open_digest: [u8; 32],
    #[cbor(n(1), with = "minicbor::bytes")]
    pub agent_ephemeral: [u8; 32],
}

impl Statement for SessionAnswer {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.shell-answer.v1+cbor";
}

/// Session-open nonces seen inside the skew window.
#[derive(Debug, Clone, Default)]
pub struct SeenOpens {
    nonces: BTreeMap<[u8; 16], u64>,
}

impl SeenOpens {
    fn check_and_insert(&mut self, nonce: [u8; 16], time: u64, now: u64) -> Result<(), Refusal> {
        self.nonces
            .retain(|_, t| t.saturating_add(OPEN_SKEW_SECS) >= now);
        if self.nonces.contains_key(&nonce) {
            return Err(Refusal::Replayed);
        }
        // Full: refuse rather than forget a nonce still inside the window.
        cap(
            self.nonces.len() + 1,
            MAX_SEEN_OPENS,
            "recent session opens",
        )?;
        self.nonces.insert(nonce, time);
        Ok(())
    }
}

/// May this session-open start a session under `grant` (verified just now)?
pub fn verify_open(
    signed: &Signed,
    grant: &VerifiedGrant,
    session_id: &[u8; 16],
    seen: &mut SeenOpens,
    now: u64,
    limits: &Limits,
) -> Result<SessionOpen, Refusal> {
    // 1. A session-open, canonical, within limits.
    let open: SessionOpen = signed.statement(limits)?;
    cap(open.device_id.len(), limits.max_text, "device id")?;
    // 2. For this grant, this device and this relay session.
    if open.grant_id != grant.grant.grant_id || *session_id != open.session_id {
        return Err(Refusal::Malformed(
            "the session-open names another grant or session".into(),
        ));
    }
    if open.device_id != grant.grant.device.device_id {
        return Err(Refusal::NotATarget);
    }
    // 3. Signed by the grantee's key, and only that key counts.
    signed.tally([&grant.grantee_key]).require(1)?;
    // 4. Fresh on the agent's clock.
    if open.time > now.saturating_add(OPEN_SKEW_SECS) {
        return Err(Refusal::NotYetValid);
    }
    if open.time.saturating_add(OPEN_SKEW_SECS) < now {
        return Err(Refusal::Expired);
    }
    // 5. A sane terminal.
    let size = 1..=MAX_TERMINAL_SIZE;
    if !size.contains(&open.cols) || !size.contains(&open.rows) {
        return Err(Refusal::Malformed("terminal size out of range".into()));
    }
    // 6. Never twice (after the signature, so forgeries cannot fill the set).
    seen.check_and_insert(open.nonce, open.time, now)?;
    Ok(open)
}

/// The client's check of the device's answer: signed by the device key it
/// pinned, answering its own open.
pub fn verify_answer(
    signed: &Signed,
    open: &Signed,
    device_public_key: &[u8; 32],
    limits: &Limits,
) -> Result<SessionAnswer, Refusal> {
    let answer: SessionAnswer = signed.statement(limits)?;
    signed
        .tally([&PublicKey::Ed25519(*device_public_key)])
        .require(1)?;
    if answer.open_digest != open.digest() {
        return Err(Refusal::Malformed(
            "the answer is for another session-open".into(),
        ));
    }
    Ok(answer)
}
