//! The bytes of one transparency-log entry (RFD 0003, "Audit event leaf,
//! version 1"): what the server appends, what an agent checks a job
//! against, and what an auditor's verifier decodes.
//!
//! `{0: 1, 1: at, 2: tenant (absent in the MSP log), 3: actor, 4: action,
//!   5: target, 6: detail}` in canonical CBOR.

use minicbor::{Decode, Encode};

use crate::ProtocolError;

/// The log id of the MSP-wide log (events that belong to no tenant). Every
/// other log id is a tenant id (a UUID), so the two never collide.
pub const MSP_LOG: &str = "msp";

/// The action of the entry a job gets when it is released to its agents
/// (approved with its quorum); its target is the job id in hex and its
/// detail [`job_released_detail`] of the signed payload.
pub const JOB_RELEASED: &str = "job.released";

/// The action of the entry that puts a schedule in its tenant's log (RFD
/// 0019); its target is the schedule id in hex and its detail
/// [`job_released_detail`] of the signed schedule's payload.
pub const SCHEDULE_CREATED: &str = "schedule.created";

/// Longest leaf a decoder reads (an audit event's texts are capped far
/// below this by the server).
pub const MAX_LEAF_BYTES: usize = 64 * 1024;

/// The detail of a [`JOB_RELEASED`] entry: `sha256:` and the lowercase hex
/// SHA-256 of the job's signed DSSE payload, which binds the entry to the
/// exact job that runs.
pub fn job_released_detail(payload_sha256: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(payload_sha256))
}

/// One audit event as a log leaf.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct AuditLeaf {
    #[n(0)]
    version: u16,
    /// Unix milliseconds.
    #[n(1)]
    pub at: i64,
    /// The tenant id; `None` for MSP-wide events.
    #[n(2)]
    pub tenant: Option<String>,
    #[n(3)]
    pub actor: String,
    #[n(4)]
    pub action: String,
    #[n(5)]
    pub target: String,
    #[n(6)]
    pub detail: String,
}

impl AuditLeaf {
    /// The only leaf version this build writes and reads.
    pub const VERSION: u16 = 1;

    pub fn new(
        at: i64,
        tenant: Option<String>,
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            version: Self::VERSION,
            at,
            tenant,
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            detail: detail.into(),
        }
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// The leaf bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::to_canonical(self)
    }

    /// Reads leaf bytes, accepting only the canonical encoding of version 1
    /// of at most [`MAX_LEAF_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_LEAF_BYTES {
            return Err(ProtocolError::FieldTooLarge {
                field: "leaf",
                limit: MAX_LEAF_BYTES,
            });
        }
        let leaf: Self = crate::codec::from_canonical(bytes)?;
        if leaf.version != Self::VERSION {
            return Err(ProtocolError::UnsupportedVersion { got: leaf.version });
        }
        Ok(leaf)
    }

    /// The log this event belongs to: its tenant's, else [`MSP_LOG`].
    pub fn log_id(&self) -> &str {
        self.tenant.as_deref().unwrap_or(MSP_LOG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_leaf_is_canonical_cbor_with_integer_keys() {
        let leaf = AuditLeaf::new(
            1_700_000_000_000,
            Some("t1".into()),
            "alice",
            "job.created",
            "job-1",
            "x",
        );
        let bytes = leaf.encode();
        // a7 (map of 7) 00 01 (version 1) 01 1b.. (at) 02 62 "t1" 03 65 "alice"
        // 04 6b "job.created" 05 65 "job-1" 06 61 "x"
        let expected = [
            &[0xa7, 0x00, 0x01, 0x01, 0x1b][..],
            &1_700_000_000_000u64.to_be_bytes(),
            &[0x02, 0x62],
            b"t1",
            &[0x03, 0x65],
            b"alice",
            &[0x04, 0x6b],
            b"job.created",
            &[0x05, 0x65],
            b"job-1",
            &[0x06, 0x61],
            b"x",
        ]
        .concat();
        assert_eq!(bytes, expected);
        let decoded = AuditLeaf::decode(&bytes).expect("decodes");
        assert_eq!(decoded, leaf);
        assert_eq!(decoded.log_id(), "t1");

        // An MSP-wide event has no key 2 at all (the RFD's example).
        let msp = AuditLeaf::new(5, None, "a", "b", "c", "").encode();
        assert_eq!(
            msp,
            [
                0xa6, 0x00, 0x01, 0x01, 0x05, 0x03, 0x61, b'a', 0x04, 0x61, b'b', 0x05, 0x61, b'c',
                0x06, 0x60
            ]
        );
        assert_eq!(AuditLeaf::decode(&msp).expect("decodes").log_id(), MSP_LOG);
    }

    #[test]
    fn audit_leaves_of_other_versions_or_encodings_are_refused() {
        let mut leaf = AuditLeaf::new(5, None, "a", "b", "c", "");
        leaf.version = 2;
        assert!(matches!(
            AuditLeaf::decode(&leaf.encode()),
            Err(ProtocolError::UnsupportedVersion { got: 2 })
        ));
        // `at` = 5 written in two bytes instead of one: not canonical.
        let long = [
            0xa6, 0x00, 0x01, 0x01, 0x18, 0x05, 0x03, 0x61, b'a', 0x04, 0x61, b'b', 0x05, 0x61,
            b'c', 0x06, 0x60,
        ];
        assert!(AuditLeaf::decode(&long).is_err());
        assert!(AuditLeaf::decode(&vec![0u8; MAX_LEAF_BYTES + 1]).is_err());
    }
}
