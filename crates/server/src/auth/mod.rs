//! Operator authentication: passwords (argon2id), TOTP, sessions and the one
//! authorisation check every route goes through.
//!
//! Pure decisions live in [`policy`]; this module adds hashing (off the async
//! runtime), secrets and the axum extractor [`Caller`].

pub mod account;
pub mod ceremonies;
pub mod device;
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
