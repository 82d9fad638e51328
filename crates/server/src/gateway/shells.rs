//! What agents report of remote shell sessions (RFD 0015, protocol version
//! 5): how a session ended, with its recording's digest, which goes into
//! the tenant's log as `shell.session`, and the recording's pieces.
//!
//! Only the agent of the session's device is heard (`Store::
//! close_shell_session` and `append_shell_recording` check it), a session
//! closes once, and the stored bytes never pass the reported length or
//! [`MAX_RECORDING_BYTES`]: a lying agent can only misreport its own
//! sessions, and a lying server can store other bytes, which the digest in
//! the log exposes.

use bulwark_protocol::message::{ShellClosed, ShellRecording};
use bulwark_store::{AuditAction, NewAuditEvent, ShellEnd};
use tracing::{info, warn};

use super::GatewayState;
use crate::now_millis;

/// The most recording bytes the server keeps of one session (the agent's
/// own cap, `agent::shell::recording::MAX_RECORDING_BYTES`).
pub const MAX_RECORDING_BYTES: i64 = 8 * 1024 * 1024;

/// The log entry's detail: the digest as the agent reported it.
pub fn session_detail(closed: &ShellClosed) -> String {
    let ending = match &closed.refusal {
        Some(code) => format!("ended by the agent ({code}): {}", closed.reason),
        None => format!("ended: {}", closed.reason),
    };
    match &closed.recording {
        Some(r) => format!(
            "recording sha256 {} length {}{}; {ending}",
            hex::encode(r.sha256),
            r.len,
            if r.truncated { " (truncated)" } else { "" }
        ),
        None => format!("no recording; {ending}"),
    }
}

pub(super) async fn record_closed(
    state: &GatewayState,
    device_id: &str,
    tenant_id: &str,
    closed: &ShellClosed,
) {
    let session_id = hex::encode(closed.session_id);
    let end = ShellEnd {
        refusal: closed.refusal.as_ref().map(|c| c.as_str().to_owned()),
        reason: closed.reason.clone(),
        recording_sha256: closed.recording.as_ref().map(|r| hex::encode(r.sha256)),
        recording_len: closed
            .recording
            .as_ref()
            .map(|r| i64::try_from(r.len).unwrap_or(i64::MAX)),
        truncated: closed.recording.as_ref().is_some_and(|r| r.truncated),
    };
    let now = now_millis();
    let event = NewAuditEvent::new(
        now,
        &format!("agent:{device_id}"),
        AuditAction::ShellSession,
        &session_id,
    )
    .in_tenant(Some(tenant_id))
    .with_detail(session_detail(closed));
    match Box::pin(
        state
            .store
            .close_shell_session(&session_id, device_id, &end, now, &[event]),
    )
    .await
    {
        Ok(true) => info!(%device_id, session = %session_id, "A shell session ended."),
        // Not this device's open session (stray, repeated or forged): nothing kept.
        Ok(false) => {
            warn!(%device_id, session = %session_id, "A shell session end for no open session of this device was ignored.")
        }
        Err(error) => warn!(%device_id, %error, "Cannot record a shell session's end."),
    }
}

pub(super) async fn record_piece(state: &GatewayState, device_id: &str, piece: &ShellRecording) {
    let session_id = hex::encode(piece.session_id);
    let offset = i64::try_from(piece.offset).unwrap_or(i64::MAX);
    match Box::pin(state.store.append_shell_recording(
        &session_id,
        device_id,
        offset,
        &piece.data,
        MAX_RECORDING_BYTES,
    ))
    .await
    {
        Ok(true) => {}
        Ok(false) => {
            warn!(%device_id, session = %session_id, offset, "A recording piece out of place was ignored.")
        }
        Err(error) => warn!(%device_id, %error, "Cannot store a recording piece."),
    }
}
