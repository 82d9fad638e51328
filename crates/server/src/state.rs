//! What every HTTP handler shares.

use std::sync::Arc;

use bulwark_store::Store;

use crate::presence::Presence;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub presence: Presence,
    /// SHA-256 of the agent CA: goes into every enrolment token.
    pub ca_fingerprint: [u8; 32],
    /// Where agents connect, shown with enrolment tokens.
    pub gateway_url: String,
    /// What operator authentication works with (handed to `auth`, which
    /// sees nothing else of this state).
    pub auth: crate::auth::Auth,
    /// The transparency log's key: signs tree heads.
    pub log: Arc<crate::transparency_log::checkpoints::LogSigner>,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl AsRef<crate::auth::Auth> for AppState {
    fn as_ref(&self) -> &crate::auth::Auth {
        &self.0.auth
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
