//! A transparency-log witness (RFD 0006; C2SP `tlog-witness` and
//! `tlog-cosignature/v1`): it cosigns a log's checkpoint only when the
//! checkpoint extends the last one it cosigned for that log, and records
//! that before the cosignature leaves. A customer, a third party or another
//! MSP runs it (`bulwark witness`); a tenant's policy names the witnesses
//! whose cosignatures its agents require.
//!
//! **May not:** read entries, judge what a log holds, or hold any key that
//! can make an agent act: its key only says "I saw this tree head,
//! consistent with the earlier ones". No dependency on the server or the
//! store.

pub mod add_checkpoint;
pub mod serve;
pub mod state;
