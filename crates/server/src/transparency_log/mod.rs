//! The server's side of the transparency logs (RFD 0003); the logs
//! themselves, entries, tree and proofs, are in `bulwark_store` and
//! `bulwark_translog`. Here: the log key that signs tree heads
//! ([`checkpoints`]), their submission to the tenants' witnesses
//! ([`witnessing`], RFD 0006), the archiving of entries past the retention period
//! ([`retention`]) and the export of every entry to SIEM sinks ([`siem`]).
//! None of it can make an agent act: agents check heads for consistency,
//! never as authority.

pub mod checkpoints;
pub mod retention;
pub mod siem;
pub mod witnessing;
