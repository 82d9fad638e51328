//! Every cap on signed statements, in one place (tough's `Limits` is the model).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest statement payload, in bytes. Default 256 KiB.
    pub max_payload_bytes: usize,
    /// Most signatures on one envelope. Default 32.
    pub max_signatures: usize,
    /// Most keys in a trust root. Default 32.
    pub max_root_keys: usize,
    /// Most operator keys in a policy. Default 1024.
    pub max_operator_keys: usize,
    /// Most targets of one job. Default 10 000.
    pub max_targets: usize,
    /// Most script hashes on the allow-list. Default 10 000.
    pub max_allowed_scripts: usize,
    /// Most maintenance windows. Default 64.
    pub max_windows: usize,
    /// Longest text field (names, tenant), in bytes. Default 256.
    pub max_text: usize,
    /// Longest a job may stay valid, in seconds. Default 7 days.
    pub max_job_validity_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: bulwark_protocol::limits::statement::MAX_PAYLOAD_BYTES,
            max_signatures: bulwark_protocol::limits::statement::MAX_SIGNATURES,
            max_root_keys: 32,
            max_operator_keys: 1024,
            max_targets: 10_000,
            max_allowed_scripts: 10_000,
            max_windows: 64,
            max_text: 256,
            max_job_validity_secs: 7 * 24 * 3600,
        }
    }
}

pub(crate) fn cap(len: usize, limit: usize, what: &'static str) -> Result<(), crate::Refusal> {
    if len > limit {
        Err(crate::Refusal::TooLarge(what))
    } else {
        Ok(())
    }
}
