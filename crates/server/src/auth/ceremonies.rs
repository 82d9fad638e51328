//! Passkey ceremonies waiting for their answer: a random challenge per
//! ceremony, kept in the database so that a ceremony begun through one node
//! is answered through another (RFD 0018, migration 0035), single use
//! (answering deletes the row in one statement, on whichever node), bound
//! to its purpose (the session registering, stepping up or approving a CLI
//! sign-in, or the username signing in) and gone after [`CEREMONY_TTL_MS`].
//! The WebAuthn checks of the answers are in [`super::passkey`].
//!
//! What the database holds is a random challenge and what it is for, never
//! a key or a credential. Whoever owns the database can make a ceremony
//! pass, as the server it owns could already; a ceremony still never
//! becomes a job approval, because agents accept only signatures over
//! statements rendered by the operator's own software (DESIGN.md).
//!
//! **Budgets** (issue 13): a login ceremony starts without a session, so
//! anyone can ask for many. Waiting ceremonies are counted in budgets, and
//! a full budget never refuses: its oldest ceremony gives way (expired ones
//! leave first). The store enforces them in the transaction that keeps a
//! new ceremony (`Store::start_ceremony`).
//! - Unauthenticated (login) ceremonies: at most
//!   [`MAX_LOGIN_CEREMONIES_PER_ADDRESS`] (16) per client address (an IPv4
//!   address, an IPv6 /64: the login throttle's [`throttle::addr_key`]),
//!   [`MAX_LOGIN_CEREMONIES_PER_USERNAME`] (4) per username (the oldest of
//!   that name asked from the same address goes first, else the name's
//!   oldest: one address asking for someone's name mostly churns its
//!   own), and [`MAX_LOGIN_CEREMONIES`] (8,192) in all. A client that asks
//!   again drops only its own oldest, so it is never locked out by its own
//!   retries; filling the whole pool takes 512 addresses asking all the
//!   time, and even then a person asking gets a working ceremony, which
//!   lasts until 8,192 newer ones have been asked for (or its three
//!   minutes are up).
//! - Signed-in ceremonies (registration, step-up, CLI sign-in approval)
//!   have a budget of their own, keyed by the session, which login
//!   ceremonies never touch: [`MAX_CEREMONIES_PER_SESSION`] (8) per
//!   session and [`MAX_SESSION_CEREMONIES`] (2,048) in all.
//! - The table stays bounded: at most 10,240 rows of under 1 KiB.
//!
//! The budgets decide only which ceremonies wait; answering one
//! ([`finish`]) is as before: once, for its purpose, in time.

use std::net::IpAddr;

use bulwark_store::{CeremonyBudgets, CeremonyOwner, NewCeremony, Store, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{session, throttle};

/// How long a ceremony (its challenge) may be answered.
pub const CEREMONY_TTL_MS: i64 = 3 * 60 * 1000;
/// Most unauthenticated (login) ceremonies waiting at once, whoever asked:
/// starting one needs no session, so this caps what anyone can make the
/// server hold. When full, the oldest gives way (see the module notes).
pub const MAX_LOGIN_CEREMONIES: usize = 8_192;
/// Most login ceremonies waiting for one client address (an IPv4 address,
/// an IPv6 /64: [`throttle::addr_key`]). A few people signing in at once
/// behind one NAT, each retrying, fit; one attacker's address holds no more.
pub const MAX_LOGIN_CEREMONIES_PER_ADDRESS: usize = 16;
/// Most login ceremonies waiting for one username: a person with a tab or
/// two and a retry.
pub const MAX_LOGIN_CEREMONIES_PER_USERNAME: usize = 4;
/// Most signed-in ceremonies (registration, step-up, CLI sign-in approval)
/// waiting at once: a budget of their own, which login ceremonies never use.
pub const MAX_SESSION_CEREMONIES: usize = 2_048;
/// Most ceremonies one session may have waiting.
pub const MAX_CEREMONIES_PER_SESSION: usize = 8;

/// The budgets above, as the store takes them.
pub const BUDGETS: CeremonyBudgets = CeremonyBudgets {
    logins: MAX_LOGIN_CEREMONIES as i64,
    logins_per_address: MAX_LOGIN_CEREMONIES_PER_ADDRESS as i64,
    logins_per_username: MAX_LOGIN_CEREMONIES_PER_USERNAME as i64,
    sessions: MAX_SESSION_CEREMONIES as i64,
    per_session: MAX_CEREMONIES_PER_SESSION as i64,
};

/// What a challenge was issued for; an answer for anything else fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Registration by the session whose token hashes to this.
    Register { session: [u8; 32] },
    /// Login as this username.
    Login { username: String },
    /// Step-up by this session.
    StepUp { session: [u8; 32] },
    /// Approval of the CLI sign-in with this user code, by this session.
    DeviceApproval {
        session: [u8; 32],
        user_code: String,
    },
}

impl Purpose {
    /// The stored form, compared whole when the ceremony is answered: a
    /// kind, then its fields (hex, or the username last so that no
    /// separator inside it can make two purposes read alike).
    fn key(&self) -> String {
        match self {
            Purpose::Register { session } => format!("register:{}", hex::encode(session)),
            Purpose::Login { username } => format!("login:{username}"),
            Purpose::StepUp { session } => format!("step-up:{}", hex::encode(session)),
            Purpose::DeviceApproval { session, user_code } => {
                format!("device:{}:{user_code}", hex::encode(session))
            }
        }
    }
}

/// Whose budget a waiting ceremony uses (see the module notes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Unauthenticated: asked from this client address key
    /// ([`throttle::addr_key`]) to sign in as this username.
    Login { addr: String, username: String },
    /// Started by the signed-in session whose token hashes to this.
    Session([u8; 32]),
}

/// The login decoy key (the ceremonies themselves are in the database).
pub struct Ceremonies {
    /// Makes the stand-in credential ids of accounts without passkeys (see
    /// [`Ceremonies::decoy_credential`]).
    decoy_key: [u8; 32],
}

impl Default for Ceremonies {
    fn default() -> Self {
        let mut decoy_key = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut decoy_key);
        Self { decoy_key }
    }
}

impl Ceremonies {
    /// Ceremonies whose decoy credential ids come from `decoy_key`: the
    /// deployment's (`Store::shared_secret`), so that every node gives the
    /// same stand-in ids for a name (RFD 0018).
    pub fn with_decoy_key(decoy_key: [u8; 32]) -> Self {
        Self { decoy_key }
    }

    /// Stand-in credential ids for a username with no passkey (or no
    /// account): the same for the same name on every node, so that
    /// the login options do not tell which accounts exist or hold passkeys.
    pub(super) fn decoy_credential(&self, username: &str) -> Vec<u8> {
        let mut hash = Sha256::new();
        hash.update(self.decoy_key);
        hash.update(username.as_bytes());
        hash.finalize().to_vec()
    }
}

/// A new challenge for `purpose`, counted against `owner`'s budgets: its
/// public id and the challenge. Never refused for budget (a full budget
/// drops its oldest ceremony).
pub(super) async fn start(
    store: &Store,
    purpose: Purpose,
    owner: Owner,
    now: i64,
) -> Result<(String, [u8; 32]), StoreError> {
    let (id, id_hash) = session::new_token();
    let mut challenge = [0; 32];
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    let owner = match owner {
        Owner::Login { addr, username } => CeremonyOwner::Login { addr, username },
        Owner::Session(hash) => CeremonyOwner::Session(hash),
    };
    store
        .start_ceremony(
            &NewCeremony {
                id_hash,
                challenge,
                purpose: purpose.key(),
                owner,
                created_at: now,
                expires_at: now.saturating_add(CEREMONY_TTL_MS),
            },
            &BUDGETS,
        )
        .await?;
    Ok((id, challenge))
}

/// A login ceremony for `username`, asked from `client`.
pub(super) async fn start_login(
    store: &Store,
    username: &str,
    client: IpAddr,
    now: i64,
) -> Result<(String, [u8; 32]), StoreError> {
    start(
        store,
        Purpose::Login {
            username: username.to_owned(),
        },
        Owner::Login {
            addr: throttle::addr_key(&client.to_string()),
            username: username.to_owned(),
        },
        now,
    )
    .await
}

/// The challenge of ceremony `id` if it was issued for `purpose` and has
/// not expired. The ceremony is gone afterwards whatever the answer, on
/// every node.
pub(super) async fn finish(
    store: &Store,
    id: &str,
    purpose: &Purpose,
    now: i64,
) -> Result<Option<[u8; 32]>, StoreError> {
    if id.is_empty() || id.len() > 128 {
        return Ok(None);
    }
    let Some(found) = store.take_ceremony(&session::hash_token(id)).await? else {
        return Ok(None);
    };
    Ok((found.purpose == purpose.key() && now < found.expires_at).then_some(found.challenge))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_never_read_alike() {
        let s = [1; 32];
        let keys = [
            Purpose::Register { session: s }.key(),
            Purpose::StepUp { session: s }.key(),
            // A username that reads like another purpose stays a login's.
            Purpose::Login {
                username: Purpose::Register { session: s }.key(),
            }
            .key(),
            Purpose::DeviceApproval {
                session: s,
                user_code: "BCDF-GHJK".into(),
            }
            .key(),
            Purpose::DeviceApproval {
                session: [2; 32],
                user_code: "BCDF-GHJK".into(),
            }
            .key(),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The longest username and code fit the stored column (512).
        let long = Purpose::Login {
            username: "x".repeat(256),
        };
        assert!(long.key().len() <= 512);
    }

    #[test]
    fn decoys_are_stable_per_key_and_name() {
        let c = Ceremonies::with_decoy_key([3; 32]);
        assert_eq!(c.decoy_credential("x"), c.decoy_credential("x"));
        assert_ne!(c.decoy_credential("x"), c.decoy_credential("y"));
        assert_ne!(
            Ceremonies::default().decoy_credential("x"),
            c.decoy_credential("x")
        );
    }
}
