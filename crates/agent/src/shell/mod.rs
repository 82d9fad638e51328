//! Remote shells (RFD 0015, protocol version 5): the agent verifies each
//! grant and session-open itself (`bulwark_policy::shell`), answers with
//! its own ephemeral key signed by its device key, and relays a PTY
//! through the sealed channel. The server carries opaque bytes.
//!
//! [`Shells`] lives as long as one connection: no session outlives the
//! relay it was opened through.

pub mod notice;
pub mod pty;
pub mod recording;
pub mod session;
#[doc(hidden)]
pub mod testing;
pub mod wall;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_policy::shell::channel::{Ephemeral, Side, establish};
use bulwark_policy::shell::{
    RevokedGrants, SeenOpens, SessionAnswer, ShellAccount, ShellNotice, VerifiedGrant,
    verify_grant, verify_open,
};
use bulwark_policy::{AgentContext, Limits, Refusal, Signed};
use bulwark_protocol::message::{
    AgentMessage, AgentRefusalCode, ShellClose, ShellClosed, ShellData, ShellOpen, ShellOpened,
    ShellRevoke,
};
use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::trust::TrustState;

/// The unprivileged account shells run as unless configured otherwise.
pub const DEFAULT_SHELL_ACCOUNT: &str = "bulwark-shell";

/// What an agent needs to open shells.
#[derive(Clone)]
pub struct ShellConfig {
    pub trust: Arc<Mutex<TrustState>>,
    pub device_id: String,
    pub device_key: SigningKey,
    /// The account of unprivileged shells (`--shell-account`).
    pub unprivileged_account: String,
    /// The passwd database (a test points it elsewhere).
    pub passwd: std::path::PathBuf,
    /// Where the notices the policy asks for go (a test points it elsewhere).
    pub notice_terminals: wall::NoticeTerminals,
}

impl std::fmt::Debug for ShellConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellConfig")
            .field("device_id", &self.device_id)
            .field("unprivileged_account", &self.unprivileged_account)
            .finish_non_exhaustive()
    }
}

/// A grant that verified, and what its policy says about notices.
struct Verified {
    grant: VerifiedGrant,
    notice: Option<ShellNotice>,
    grantee_name: String,
}

struct Live {
    grant_id: [u8; 16],
    /// The grant as verified at the open, checked again when trust changes.
    grant: Signed,
    events: mpsc::Sender<session::Event>,
}

/// The shell sessions of one connection.
pub struct Shells {
    config: ShellConfig,
    sessions: HashMap<[u8; 16], Live>,
    revoked: RevokedGrants,
    seen: SeenOpens,
    out: mpsc::Sender<AgentMessage>,
    limits: bulwark_protocol::Limits,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn closed(session_id: [u8; 16], refusal: AgentRefusalCode, reason: String) -> AgentMessage {
    AgentMessage::ShellClosed(ShellClosed {
        session_id,
        refusal: Some(refusal),
        reason: crate::text::clipped(&reason, bulwark_protocol::Limits::default().max_long_text),
        recording: None,
    })
}

impl Shells {
    /// Sessions send what they have for the server through `out`.
    pub fn new(config: ShellConfig, out: mpsc::Sender<AgentMessage>) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
            revoked: RevokedGrants::default(),
            seen: SeenOpens::default(),
            out,
            limits: bulwark_protocol::Limits::default(),
        }
    }

    /// Opens a session, or says why not: the answer to send at once.
    pub fn open(&mut self, message: ShellOpen) -> AgentMessage {
        let session_id = message.session_id;
        self.sessions.retain(|_, live| !live.events.is_closed());
        if self.sessions.contains_key(&session_id) {
            return closed(
                session_id,
                AgentRefusalCode::Replayed,
                "this session is open already".into(),
            );
        }
        if self.sessions.len() >= self.limits.max_shell_sessions {
            return closed(
                session_id,
                AgentRefusalCode::AgentBusy,
                format!(
                    "this device has {} shell sessions open, the most it takes",
                    self.sessions.len()
                ),
            );
        }
        match self.start(&message) {
            Ok((answer, live)) => {
                self.sessions.insert(session_id, live);
                AgentMessage::ShellOpened(ShellOpened { session_id, answer })
            }
            Err((code, reason)) => {
                warn!(session = %hex::encode(session_id), %code, %reason, "Shell session refused.");
                closed(session_id, code, reason)
            }
        }
    }

    fn start(
        &mut self,
        message: &ShellOpen,
    ) -> Result<(Vec<u8>, Live), (AgentRefusalCode, String)> {
        let limits = Limits::default();
        let now = now_secs();
        let refused = |r: Refusal| (r.code(), r.to_string());
        let grant_envelope = Signed::from_bytes(&message.grant, &limits).map_err(refused)?;
        let open_envelope = Signed::from_bytes(&message.open, &limits).map_err(refused)?;
        // The grant and the open, verified under the trust jobs use.
        let Verified {
            grant,
            notice: notice_setting,
            grantee_name,
        } = self.verify(&grant_envelope, now).map_err(refused)?;
        let open = verify_open(
            &open_envelope,
            &grant,
            &message.session_id,
            &mut self.seen,
            now,
            &limits,
        )
        .map_err(refused)?;
        let account_name = match grant.grant.account {
            ShellAccount::Root => "root",
            ShellAccount::Unprivileged => self.config.unprivileged_account.as_str(),
        };
        let agent_error = |what: String| (AgentRefusalCode::AgentError, what);
        let passwd = std::fs::read_to_string(&self.config.passwd)
            .map_err(|e| agent_error(format!("cannot read the accounts: {e}")))?;
        let account =
            pty::find_account(&passwd, account_name).map_err(|e| agent_error(format!("{e:#}")))?;
        // The answer: a fresh ephemeral key, signed by the device key.
        let rng = ring::rand::SystemRandom::new();
        let ephemeral = Ephemeral::generate(&rng).map_err(|e| agent_error(e.to_string()))?;
        let mut answer = Signed::new(&SessionAnswer {
            open_digest: open_envelope.digest(),
            agent_ephemeral: ephemeral.public(),
        });
        answer.sign(&self.config.device_key);
        let channel = establish(
            Side::Agent,
            ephemeral,
            &open.client_ephemeral,
            &open_envelope,
            &answer,
        )
        .map_err(|e| agent_error(e.to_string()))?;
        let pty = pty::Pty::spawn(&account, open.cols, open.rows)
            .map_err(|e| agent_error(format!("{e:#}")))?;
        let (events, receiver) = mpsc::channel(64);
        let remaining = Duration::from_secs(grant.grant.expires_at.saturating_sub(now));
        info!(
            session = %hex::encode(message.session_id),
            grant = %hex::encode(grant.grant.grant_id),
            account = %account.name,
            reason = %grant.grant.reason,
            "Shell session opened."
        );
        // The notices as the policy verified at the open asks for them,
        // told only what the verified grant and policy say.
        let notices = notice_setting.map(|setting| session::Notices {
            facts: notice::NoticeFacts {
                grantee: grantee_name,
                tenant: grant.grant.tenant_name.clone(),
                reason: grant.grant.reason.clone(),
                account: account.name.clone(),
                expires_at: grant.grant.expires_at,
                message: setting.message.clone(),
            },
            setting,
            terminals: self.config.notice_terminals.clone(),
        });
        tokio::spawn(session::run(
            session::Session {
                session_id: message.session_id,
                channel,
                pty,
                recording: session::recording(open.cols, open.rows, now),
                remaining,
                notices,
            },
            receiver,
            self.out.clone(),
        ));
        Ok((
            answer.to_bytes(),
            Live {
                grant_id: grant.grant.grant_id,
                grant: grant_envelope,
                events,
            },
        ))
    }

    /// `verify_grant` under the trust state held now, with what the same
    /// policy says about notices and the grantee's name.
    fn verify(&self, grant: &Signed, now: u64) -> Result<Verified, Refusal> {
        let trust = self
            .config
            .trust
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tenant = trust.tenant().ok_or(Refusal::NoPolicy)?.to_owned();
        let policy = trust.history.policy().ok_or(Refusal::NoPolicy)?;
        let hostname = crate::jobs::current_hostname();
        let device_key = bulwark_policy::device_key_fingerprint(
            &self.config.device_key.verifying_key().to_bytes(),
        );
        let context = AgentContext {
            tenant: &tenant,
            device_id: &self.config.device_id,
            hostname: &hostname,
            device_key: &device_key,
            policy,
            freeze: trust.history.freeze(),
        };
        let grant = verify_grant(grant, context, &self.revoked, now, &Limits::default())?;
        let grantee_name = policy
            .operators
            .iter()
            .find(|o| o.key.id() == grant.grant.grantee)
            .map_or_else(|| grant.grant.grantee.to_string(), |o| o.name.clone());
        Ok(Verified {
            notice: policy.shell_notice.clone(),
            grantee_name,
            grant,
        })
    }

    /// After the trust state changed (a freeze, a policy that no longer
    /// lists the grantee or its signers): every live session whose grant no
    /// longer verifies ends, with the refusal.
    pub fn recheck(&mut self) {
        let now = now_secs();
        let failed: Vec<([u8; 16], Refusal)> = self
            .sessions
            .iter()
            .filter_map(|(id, live)| self.verify(&live.grant, now).err().map(|r| (*id, r)))
            .collect();
        for (id, refusal) in failed {
            if let Some(live) = self.sessions.remove(&id) {
                warn!(session = %hex::encode(id), %refusal, "A live shell's grant no longer verifies; ending it.");
                let _ = live.events.try_send(session::Event::End {
                    refusal: Some(refusal.code()),
                    reason: refusal.to_string(),
                });
            }
        }
    }

    /// A sealed frame from the client; the session checks it. Never waits
    /// (a session may be waiting on this connection): input faster than
    /// the shell takes it ends the session, whose queue is dropped.
    pub fn data(&mut self, message: ShellData) {
        if let Some(live) = self.sessions.get(&message.session_id)
            && live
                .events
                .try_send(session::Event::Data(message.sealed))
                .is_err()
        {
            warn!(session = %hex::encode(message.session_id), "Shell input arrives faster than the session takes it; ending it.");
            self.sessions.remove(&message.session_id);
        }
    }

    /// Ends a session (dropping its queue ends it too, should it be full).
    pub fn close(&mut self, message: ShellClose) {
        if let Some(live) = self.sessions.remove(&message.session_id) {
            let _ = live.events.try_send(session::Event::End {
                refusal: None,
                reason: format!("the server closed the session: {}", message.reason),
            });
        }
    }

    /// A revoked grant: its sessions end, and it opens no more until it expires.
    pub fn revoke(&mut self, message: ShellRevoke) {
        self.revoked
            .revoke(message.grant_id, message.expires_at, now_secs());
        let ids: Vec<[u8; 16]> = self
            .sessions
            .iter()
            .filter(|(_, live)| live.grant_id == message.grant_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(live) = self.sessions.remove(&id) {
                let _ = live.events.try_send(session::Event::End {
                    refusal: Some(AgentRefusalCode::GrantRevoked),
                    reason: "the grant was revoked".into(),
                });
            }
        }
    }
}
