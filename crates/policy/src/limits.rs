//! The caps on signed statements live with every other cap of the trust
//! path in `bulwark_protocol::Limits` (`max_payload_bytes` … `max_job_validity_secs`).

pub use bulwark_protocol::Limits;

pub(crate) fn cap(len: usize, limit: usize, what: &'static str) -> Result<(), crate::Refusal> {
    if len > limit {
        Err(crate::Refusal::TooLarge(what))
    } else {
        Ok(())
    }
}
