//! What every HTTP handler shares.

use std::sync::Arc;

use bulwark_store::Store;

use crate::auth::policy::SessionPolicy;
use crate::presence::Presence;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub presence: Presence,
    pub session_policy: SessionPolicy,
    /// SHA-256 of the agent CA: goes into every enrolment token.
    pub ca_fingerprint: [u8; 32],
    /// Where agents connect, shown with enrolment tokens.
    pub gateway_url: String,
    /// The WebAuthn relying party id (the console's host); `None`: no
    /// passkeys (see `auth::passkey::rp_id_for`).
    pub rp_id: Option<String>,
    /// Passkey challenges waiting for their answer.
    pub passkeys: crate::auth::ceremonies::Ceremonies,
    /// `bulwark login --device` sign-ins waiting for approval (RFC 8628).
    pub device_flows: crate::auth::device::DeviceFlows,
    /// The transparency log's key: signs tree heads.
    pub log: Arc<crate::checkpoints::LogSigner>,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl AppState {
    /// See [`record_event`].
    pub async fn record_event(&self, event: bulwark_store::NewAuditEvent) {
        record_event(&self.store, event).await;
    }
}

/// Records an audit event that comes with no other change: a failed
/// attempt (a wrong password, a refused step-up or approval) or an alarm (a
/// refused trust statement, a failing SIEM sink). The event is the whole
/// change, in a transaction of its own. A change's own events go to the
/// store method that makes it, in the same transaction (invariant 4). A
/// failure to record is logged loudly: the attempt fails either way.
pub async fn record_event(store: &Store, event: bulwark_store::NewAuditEvent) {
    let action = event.action.clone();
    if let Err(error) = store.append_audit(event).await {
        tracing::error!(%error, %action, "Cannot record audit event.");
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
