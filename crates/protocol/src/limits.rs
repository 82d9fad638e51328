//! Every size and count cap of the trust path, in one struct with documented
//! defaults: frames (this crate), signed statements (`bulwark_policy`) and
//! the transparency log (`bulwark_translog`), so that an audit can check
//! them in one place and no decoder can be made to hold unbounded data.

/// Size caps of signed statements. Their rules live in `bulwark_policy`;
/// their sizes live here, so that the envelope a server accepts, the
/// envelope an agent decodes and the frame that carries it come from the
/// same numbers (a job that passes the server but not the agent's frame
/// check would be dropped, and redelivered, forever).
pub mod statement {
    /// Most targets of one job, and package names of one patch job.
    pub const MAX_TARGETS: usize = 10_000;
    /// Longest short text of a statement (a target's device id and
    /// hostname, a package name, the tenant's id and name).
    pub const MAX_TEXT: usize = 256;
    /// Longest script body a job carries beside its statement.
    pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;
    /// Largest encoded job target at the caps: a map header, three keys,
    /// two texts with 3-byte headers and a 32-byte key with a 2-byte one.
    pub const MAX_JOB_TARGET_BYTES: usize = 1 + 3 + 2 * (3 + MAX_TEXT) + 2 + 32;
    /// A job statement's fields besides targets and packages at their caps
    /// (a 4 KiB reason, two texts, ids, times), with room to spare.
    pub const MAX_JOB_OTHER_BYTES: usize = 8 * 1024;
    /// Largest statement payload: a job naming [`MAX_TARGETS`] devices
    /// and as many packages, every text at [`MAX_TEXT`] (issue 18: one
    /// job reaches `max_targets` devices whatever their host names).
    pub const MAX_PAYLOAD_BYTES: usize = 3
        + MAX_TARGETS * MAX_JOB_TARGET_BYTES
        + 3
        + MAX_TARGETS * (3 + MAX_TEXT)
        + MAX_JOB_OTHER_BYTES;
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

    /// Largest frame a server sends from protocol version 7: a job with
    /// the largest envelope, script and log proof (a leaf, two notes of
    /// 16 KiB and three proofs of 64 hashes), plus 4 KiB of headers.
    pub const MAX_SERVER_FRAME_BYTES: usize = envelope_cap(MAX_PAYLOAD_BYTES, MAX_SIGNATURES)
        + MAX_SCRIPT_BYTES
        + crate::audit_leaf::MAX_LEAF_BYTES
        + 2 * 16 * 1024
        + 3 * 64 * 32
        + 4096;
}

/// Every cap, with its default. Tough's `Limits` is the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    // ---- frames (checked before and after decoding) ----
    /// Largest frame (one WebSocket message) accepted, in bytes: every
    /// agent frame, and a server frame below protocol version 7. Default 1 MiB.
    pub max_frame_bytes: usize,
    /// Largest server frame from protocol version 7 (what an agent
    /// accepts): [`statement::MAX_SERVER_FRAME_BYTES`], 8,700,406 bytes.
    pub max_server_frame_bytes: usize,
    /// Longest short text field (names, versions, addresses, tenant and
    /// device ids in statements), in bytes. Default 256.
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
    /// Most installed packages in one inventory. Default 10,000 (a Debian
    /// desktop has 2,000 to 4,000, about 100 bytes each on the wire).
    pub max_packages: usize,
    /// Most listening sockets in one inventory. Default 4096.
    pub max_listening_ports: usize,
    /// Most local administrators in one inventory. Default 1024.
    pub max_local_admins: usize,
    /// Most grants (reasons) per administrator. Default 32.
    pub max_admin_grants: usize,
    /// Most service units in one inventory. Default 4096 (a Debian server
    /// has 150 to 400 on disk).
    pub max_services: usize,
    /// Most entries of the process snapshot. Default 256 (the agent sends 100).
    pub max_processes: usize,
    /// Largest job script body, in bytes. Default 256 KiB.
    pub max_script_bytes: usize,
    /// Most root envelopes in one `Trust` message. Default 64.
    pub max_trust_roots: usize,
    /// Most bytes of stdout, and of stderr, in one job result (the agent
    /// keeps the first bytes and hashes all of them). Default 64 KiB.
    pub max_output_bytes: usize,
    /// Longest transparency-log leaf carried with a job.
    pub max_log_leaf_bytes: usize,
    /// Most bytes of data in one live output piece (`JobOutput`, RFD 0012).
    /// Default 16 KiB.
    pub max_output_chunk_bytes: usize,
    /// Most bytes of live output of one job on one device, both streams
    /// together: the agent sends no more, the server stores no more (the
    /// rest is counted, and shown as truncated). Default 1 MiB.
    pub max_live_output_bytes: usize,
    /// Largest sealed shell frame (`ShellData`, RFD 0015): 16 KiB of plain
    /// text, an 8-byte counter and a 16-byte tag. Default 16,408.
    pub max_shell_frame_bytes: usize,
    /// Most live shell sessions on one agent. Default 2.
    pub max_shell_sessions: usize,

    // ---- signed statements (bulwark_policy) ----
    /// Largest signed envelope (a trust root, policy, freeze or job
    /// statement with its signatures), in bytes: [`statement::envelope_cap`]
    /// of the largest payload with the most signatures, each as large as a
    /// passkey assertion may be. Default 8,329,718. Frames carrying envelopes
    /// are checked against it, so what a server accepts an agent decodes.
    pub max_envelope_bytes: usize,
    /// Largest statement payload, in bytes: [`statement::MAX_PAYLOAD_BYTES`]
    /// (8,158,198). Default 7.8 MiB.
    pub max_payload_bytes: usize,
    /// Most signatures on one envelope. Default 32.
    pub max_signatures: usize,
    /// Most keys in a trust root. Default 32.
    pub max_root_keys: usize,
    /// Most operator keys in a policy. Default 1024.
    pub max_operator_keys: usize,
    /// Most targets of one job (and packages of one patch job). Default 10 000.
    pub max_targets: usize,
    /// Most script hashes on the allow-list. Default 10 000.
    pub max_allowed_scripts: usize,
    /// Most maintenance windows. Default 64.
    pub max_windows: usize,
    /// Longest a job may stay valid, in seconds. Default 7 days.
    pub max_job_validity_secs: u64,
    /// Longest a schedule may run, `not_after - not_before`, in seconds
    /// (RFD 0019): a schedule must be signed again after it. Default 90 days.
    pub max_schedule_lifetime_secs: u64,
    /// Most schedule ids a policy lists as revoked. Default 10 000.
    pub max_revoked_schedules: usize,
    /// Most device groups in a policy (RFD 0022). Default 256.
    pub max_device_groups: usize,
    /// Most devices in one group. Default 10 000 (`max_targets`): a group
    /// reaches no more devices than one job may.
    pub max_group_members: usize,

    // ---- the transparency log (bulwark_translog) ----
    /// Largest signed note (checkpoint) accepted, in bytes, alone or
    /// carried with a job. Default 16 KiB: a checkpoint body is ~100 bytes
    /// and each signature line ~100 more, room for a hundred cosignatures.
    pub max_note_bytes: usize,
    /// Most lines in a note, text and signature lines together. Default 128.
    pub max_note_lines: usize,
    /// Most signature lines in a note. Default 32 (the signed-note spec asks
    /// verifiers to accept at least 16).
    pub max_note_signatures: usize,
    /// Longest checkpoint origin (and key name), in bytes. Default 256.
    pub max_origin_bytes: usize,
    /// Most hashes in one inclusion or consistency proof. Default 64: no
    /// inclusion proof in a tree of at most `u64::MAX` leaves is longer, nor
    /// any consistency proof in a tree of fewer than 2^63 leaves.
    pub max_proof_hashes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1024 * 1024,
            max_server_frame_bytes: statement::MAX_SERVER_FRAME_BYTES,
            max_text: statement::MAX_TEXT,
            max_long_text: 4096,
            max_disks: 256,
            max_interfaces: 256,
            max_addresses: 64,
            max_users: 1024,
            max_packages: 10_000,
            max_listening_ports: 4096,
            max_local_admins: 1024,
            max_admin_grants: 32,
            max_services: 4096,
            max_processes: 256,
            max_script_bytes: statement::MAX_SCRIPT_BYTES,
            max_trust_roots: 64,
            max_output_bytes: 64 * 1024,
            max_log_leaf_bytes: crate::audit_leaf::MAX_LEAF_BYTES,
            max_output_chunk_bytes: 16 * 1024,
            max_live_output_bytes: 1024 * 1024,
            max_shell_frame_bytes: 16 * 1024 + 24,
            max_shell_sessions: 2,
            max_envelope_bytes: statement::envelope_cap(
                statement::MAX_PAYLOAD_BYTES,
                statement::MAX_SIGNATURES,
            ),
            max_payload_bytes: statement::MAX_PAYLOAD_BYTES,
            max_signatures: statement::MAX_SIGNATURES,
            max_root_keys: 32,
            max_operator_keys: 1024,
            max_targets: statement::MAX_TARGETS,
            max_allowed_scripts: 10_000,
            max_windows: 64,
            max_job_validity_secs: 7 * 24 * 3600,
            max_schedule_lifetime_secs: 90 * 24 * 3600,
            max_revoked_schedules: 10_000,
            max_device_groups: 256,
            max_group_members: statement::MAX_TARGETS,
            max_note_bytes: 16 * 1024,
            max_note_lines: 128,
            max_note_signatures: 32,
            max_origin_bytes: 256,
            max_proof_hashes: 64,
        }
    }
}

impl Limits {
    /// Largest frame a server may send on a connection of `version`: an
    /// agent before version 7 closes its connection on more.
    pub fn server_frame_cap(&self, version: u16) -> usize {
        if version >= 7 {
            self.max_server_frame_bytes
        } else {
            self.max_frame_bytes
        }
    }

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
