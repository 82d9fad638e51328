//! A transparency-log witness (RFD 0006; C2SP `tlog-witness` and
//! `tlog-cosignature/v1`): it cosigns a log's checkpoint only when the
//! checkpoint extends the last one it cosigned for that log, and records
//! that before the cosignature leaves. A customer, a third party or another
//! MSP runs it (`bulwark witness`); a tenant's policy names the witnesses
//! whose cosignatures its agents require.
//!
//! It also takes a tenant's root-signed freeze (`POST /bulwark/v1/freeze`,
//! [`freeze`]): from a grace after it holds one, it cosigns nothing more of
//! that tenant's log until a root-signed unfreeze, so agents, which want
//! fresh cosignatures, stop whatever the server does. It checks the freeze
//! with `bulwark_policy`'s trust replay from the tenant's first root,
//! pinned when the log was added.
//!
//! **May not:** read entries, judge what a log holds, or hold any key that
//! can make an agent act: its key only says "I saw this tree head,
//! consistent with the earlier ones". No dependency on the server or the
//! store.

pub mod add_checkpoint;
pub mod freeze;
pub mod serve;
pub mod state;

/// Entry point for the `witness_request` fuzz target: an `add-checkpoint`
/// body from anyone on the network, parsed and checked against a log key
/// and a recorded state; and the same bytes as a `/bulwark/v1/freeze`
/// body, parsed and offered to a log's trust. Must never panic.
#[cfg(fuzzing)]
pub fn fuzz_add_checkpoint(bytes: &[u8]) {
    use bulwark_translog::Limits;
    use bulwark_translog::hash::Hash;
    use bulwark_translog::note::NoteVerifier;
    let limits = Limits::default();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let Ok(log_key) = NoteVerifier::new("log.example", key) else {
        return;
    };
    if let Ok(request) = add_checkpoint::parse_request(bytes, &limits) {
        let _ = add_checkpoint::origin(&request.note);
        let held = add_checkpoint::Cosigned {
            size: 3,
            root: Hash([1; 32]),
        };
        let _ = add_checkpoint::check(&request, &log_key, None, &limits);
        let _ = add_checkpoint::check(&request, &log_key, Some(&held), &limits);
    }
    if let Ok(request) = freeze::parse_request(bytes, &limits) {
        let trust = freeze::LogTrust::new([7; 32], &request.statement.tenant);
        if let Ok(taken) = trust.offer(&request, 1, &limits) {
            let _ = freeze::may_cosign(taken.trust.freeze(), 0, 1);
        }
    }
}
