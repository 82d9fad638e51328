//! Every size and count cap of the protocol, in one struct with documented
//! defaults, so that an audit can check them in one place and so that no
//! decoder can be made to hold unbounded data.

/// Size caps of signed statements. Their rules live in `bulwark_policy`;
/// their sizes live here, so that the envelope a server accepts, the
/// envelope an agent decodes and the frame that carries it come from the
/// same numbers (a job that passes the server but not the agent's frame
/// check would be dropped, and redelivered, forever).
pub mod statement {
    /// Largest statement payload. 256 KiB.
    pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
    /// Most signatures on one envelope.
    pub const MAX_SIGNATURES: usize = 32;
    /// Longest clientDataJSON of a passkey assertion (browsers send about 150 bytes).
    pub const MAX_CLIENT_DATA_JSON: usize = 4096;
    /// Longest assertion authenticator data (37 bytes plus extensions).
    pub const MAX_AUTHENTICATOR_DATA: usize = 1024;
    /// Longest WebAuthn signature: DER ECDSA P-256 is at most 72 bytes.
    pub const MAX_WEBAUTHN_SIGNATURE: usize = 72;
    /// Largest encoded signature entry: key id, the 64-byte Ed25519 field
    /// and a passkey assertion at its caps, plus CBOR headers.
    pub const MAX_SIGNATURE_ENTRY_BYTES: usize =
        128 + MAX_AUTHENTICATOR_DATA + MAX_CLIENT_DATA_JSON + MAX_WEBAUTHN_SIGNATURE + 32;

    /// Largest envelope of a `payload`-byte statement with `signatures` entries.
    pub const fn envelope_cap(payload: usize, signatures: usize) -> usize {
        payload + signatures * MAX_SIGNATURE_ENTRY_BYTES + 256
    }
}

/// Caps applied to every frame before and after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame (one WebSocket message) accepted, in bytes. Default 1 MiB.
    pub max_frame_bytes: usize,
    /// Longest short text field (names, versions, addresses), in bytes. Default 256.
    pub max_text: usize,
    /// Longest free-text field (messages, OS descriptions), in bytes. Default 4096.
    pub max_long_text: usize,
    /// Most disks in one inventory. Default 256.
    pub max_disks: usize,
    /// Most network interfaces in one inventory. Default 256.
    pub max_interfaces: usize,
    /// Most addresses on one interface. Default 64.
    pub max_addresses: usize,
    /// Most logged-in user sessions in one inventory. Default 1024.
    pub max_users: usize,
    /// Largest signed envelope (a trust root, policy, freeze or job
    /// statement with its signatures), in bytes: the cap
    /// `bulwark_policy::Signed::from_bytes` applies,
    /// [`statement::envelope_cap`] of a 256 KiB payload and 32 signatures
    /// each as large as a passkey assertion may be. Default 433,664.
    pub max_envelope_bytes: usize,
    /// Largest job script body, in bytes. Default 256 KiB.
    pub max_script_bytes: usize,
    /// Most root envelopes in one `Trust` message. Default 64.
    pub max_trust_roots: usize,
    /// Most bytes of stdout, and of stderr, in one job result (the agent
    /// keeps the first bytes and hashes all of them). Default 64 KiB.
    pub max_output_bytes: usize,
    /// Longest transparency-log leaf carried with a job.
    pub max_log_leaf_bytes: usize,
    /// Longest signed tree head (C2SP checkpoint note) carried with a job.
    pub max_log_note_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1024 * 1024,
            max_text: 256,
            max_long_text: 4096,
            max_disks: 256,
            max_interfaces: 256,
            max_addresses: 64,
            max_users: 1024,
            max_envelope_bytes: statement::envelope_cap(
                statement::MAX_PAYLOAD_BYTES,
                statement::MAX_SIGNATURES,
            ),
            max_script_bytes: 256 * 1024,
            max_trust_roots: 64,
            max_output_bytes: 64 * 1024,
            max_log_leaf_bytes: crate::audit_leaf::MAX_LEAF_BYTES,
            max_log_note_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    pub(crate) fn text(
        &self,
        field: &'static str,
        value: &str,
    ) -> Result<(), crate::ProtocolError> {
        check_len(field, value.len(), self.max_text)
    }

    pub(crate) fn long_text(
        &self,
        field: &'static str,
        value: &str,
    ) -> Result<(), crate::ProtocolError> {
        check_len(field, value.len(), self.max_long_text)
    }

    pub(crate) fn envelope(
        &self,
        field: &'static str,
        value: &[u8],
    ) -> Result<(), crate::ProtocolError> {
        check_len(field, value.len(), self.max_envelope_bytes)
    }
}

pub(crate) fn check_len(
    field: &'static str,
    len: usize,
    limit: usize,
) -> Result<(), crate::ProtocolError> {
    if len > limit {
        Err(crate::ProtocolError::FieldTooLarge { field, limit })
    } else {
        Ok(())
    }
}

/// Implemented by every message: checks each field against [`Limits`].
pub trait Validate {
    fn validate(&self, limits: &Limits) -> Result<(), crate::ProtocolError>;
}
