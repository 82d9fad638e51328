//! Operator authentication: passwords (argon2id), TOTP, sessions and the one
//! authorisation check every route goes through.
//!
//! Pure decisions live in [`policy`]; this module adds hashing (off the async
//! runtime), secrets and the axum extractor [`Caller`].

pub mod account;
pub mod ceremonies;
pub mod cli_sign_in;
pub mod flows;
pub mod grants;
pub mod invite;
pub mod passkey;
pub mod password;
pub mod policy;
pub mod session;
pub mod throttle;
pub mod totp;

pub use policy::{Action, Role, Standing, TenantRole, authorize, authorize_in};
pub use session::{Caller, CookieCaller};

/// What authentication needs from the server, handed in by it: the store,
/// the session rules and the ceremonies in flight. The auth code never sees
/// the rest of the server's state (the agent gateway, presence, the log key),
/// so nothing here can reach an agent.
pub struct Auth {
    pub store: bulwark_store::Store,
    pub session_policy: policy::SessionPolicy,
    /// The WebAuthn relying party id (the console's host); `None`: no
    /// passkeys (see [`passkey::rp_id_for`]).
    pub rp_id: Option<String>,
    /// The login decoy key (passkey ceremonies and `bulwark login
    /// --device` sign-ins in flight are in the store, RFD 0018).
    pub passkeys: ceremonies::Ceremonies,
}
