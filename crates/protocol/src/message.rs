//! Messages between an agent and the server's agent gateway.
//!
//! This file is long because every message of both directions is here,
//! with its bounds and the version that introduced it: the one place an
//! auditor reads what crosses the wire (protocol version 6 brought it past
//! 800 code lines with `ScheduledRun`).
//!
//! One WebSocket binary message carries one frame: a protocol version and
//! one message, in deterministic CBOR with integer map keys. The
//! conversation on a connection is:
//!
//! 1. server: [`ServerMessage::Challenge`] (a fresh nonce), in
//!    [`crate::MIN_PROTOCOL_VERSION`] so that every agent can read it;
//! 2. agent: [`AgentMessage::Enroll`] (new device, one-time token) or
//!    [`AgentMessage::Hello`] (known device), each signed by the device key
//!    over the nonce and the TLS channel binding, in the highest version it
//!    speaks (RFD 0010): every later frame, both ways, is in that version;
//! 3. server: [`ServerMessage::Enrolled`] (then closes) or
//!    [`ServerMessage::Welcome`], or [`ServerMessage::Refused`] (then closes;
//!    `UnsupportedVersion` in the highest version the server speaks, which
//!    the agent then tries on a new connection);
//! 4. after `Welcome`: heartbeats and inventory reports from the agent, each
//!    acknowledged by sequence number;
//! 5. signed jobs (RFD 0002): the server relays the tenant's trust statements
//!    ([`ServerMessage::Trust`]; the agent answers [`AgentMessage::TrustStatus`],
//!    after an [`AgentMessage::TrustRefused`] for each statement it refused)
//!    and jobs ([`ServerMessage::Job`]); the agent verifies each job itself
//!    and answers [`AgentMessage::JobResult`], re-sent after every reconnect
//!    until the server acknowledges it with [`ServerMessage::ResultAck`].

use minicbor::{Decode, Encode};

use crate::ProtocolError;
use crate::inventory::Inventory;
use crate::limits::{Limits, Validate, check_len};

/// A device's identity on the server: a UUID, carried in its canonical
/// lower-case hyphenated text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[cbor(transparent)]
pub struct DeviceId(#[n(0)] String);

impl DeviceId {
    /// Parses a device id; only the canonical lower-case hyphenated form is accepted.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let invalid = ProtocolError::InvalidField {
            field: "device_id",
            reason: "not a canonical UUID",
        };
        let parsed = uuid::Uuid::try_parse(text).map_err(|_| invalid.clone())?;
        if parsed.hyphenated().to_string() != text {
            return Err(invalid);
        }
        Ok(Self(text.to_owned()))
    }

    /// Makes a device id from 16 random bytes (a version 4 UUID).
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        Self(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Display` is the name on the wire.
macro_rules! display_as_str {
    ($($name:ty),*) => {$(
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(DeviceId, TrustKind, AgentRefusalCode);

/// What an agent sends.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum AgentMessage {
    #[n(0)]
    Enroll(#[n(0)] Enroll),
    #[n(1)]
    Hello(#[n(0)] Hello),
    #[n(2)]
    Heartbeat(#[n(0)] Heartbeat),
    #[n(3)]
    Inventory(#[n(0)] InventoryReport),
    #[n(4)]
    JobResult(#[n(0)] JobResult),
    #[n(5)]
    TrustRefused(#[n(0)] TrustRefused),
    #[n(6)]
    TrustStatus(#[n(0)] TrustStatus),
    /// The states of the policy's checks (RFD 0009); acknowledged with `Ack`.
    #[n(7)]
    Checks(#[n(0)] crate::checks::CheckReport),
    /// Version 3 (RFD 0012): a verified job's script started.
    #[n(8)]
    JobStarted(#[n(0)] JobStarted),
    /// Version 3 (RFD 0012): a piece of a running job's output.
    #[n(9)]
    JobOutput(#[n(0)] JobOutput),
    /// Version 4 (RFD 0009): the content of a script check's script.
    #[n(10)]
    CheckScriptWanted(#[n(0)] CheckScriptWanted),
    // Numbered so that no shell message has the shape of the server's
    // message of the same number: the directions stay apart.
    /// Version 5 (RFD 0015): a session ended (or was never opened), with
    /// its recording's hash.
    #[n(11)]
    ShellClosed(#[n(0)] ShellClosed),
    /// Version 5: the device's signed answer to a session-open.
    #[n(12)]
    ShellOpened(#[n(0)] ShellOpened),
    /// Version 5: a sealed frame of a shell session, agent to client.
    #[n(13)]
    ShellData(#[n(0)] ShellData),
    /// Version 5: a piece of a finished session's recording.
    #[n(14)]
    ShellRecording(#[n(0)] ShellRecording),
}

/// The one place that says which protocol version introduced each message
/// (RFD 0010). A new message or field states its version here; every
/// version so far has them all.
impl crate::codec::Versioned for AgentMessage {
    fn since(&self) -> u16 {
        match self {
            AgentMessage::Enroll(_)
            | AgentMessage::Hello(_)
            | AgentMessage::Heartbeat(_)
            | AgentMessage::Inventory(_)
            | AgentMessage::JobResult(_)
            | AgentMessage::TrustRefused(_)
            | AgentMessage::TrustStatus(_)
            | AgentMessage::Checks(_) => 1,
            AgentMessage::JobStarted(_) | AgentMessage::JobOutput(_) => 3,
            AgentMessage::CheckScriptWanted(_) => 4,
            AgentMessage::ShellOpened(_)
            | AgentMessage::ShellData(_)
            | AgentMessage::ShellClosed(_)
            | AgentMessage::ShellRecording(_) => 5,
        }
    }
}

/// The kind of a trust statement: what `TrustRefused::kind` names, what
/// storage files it under, what a trust history replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrustKind {
    /// A `TrustRoot` (versions 1, 2, ... without gaps).
    Root,
    /// A root-signed `Policy`.
    Policy,
    /// A `FreezeStatement` (freeze or unfreeze); its version is the sequence.
    Freeze,
}

impl TrustKind {
    /// The name on the wire and in storage: "root", "policy" or "freeze".
    pub fn as_str(self) -> &'static str {
        match self {
            TrustKind::Root => "root",
            TrustKind::Policy => "policy",
            TrustKind::Freeze => "freeze",
        }
    }

    pub fn parse(text: &str) -> Option<TrustKind> {
        [TrustKind::Root, TrustKind::Policy, TrustKind::Freeze]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ServerMessage {
    #[n(0)]
    Challenge(#[n(0)] Challenge),
    #[n(1)]
    Enrolled(#[n(0)] Enrolled),
    #[n(2)]
    Welcome(#[n(0)] Welcome),
    #[n(3)]
    Ack(#[n(0)] Ack),
    #[n(4)]
    Refused(#[n(0)] Refused),
    #[n(5)]
    Trust(#[n(0)] Trust),
    #[n(6)]
    Job(#[n(0)] Job),
    #[n(7)]
    ResultAck(#[n(0)] ResultAck),
    /// Version 3 (RFD 0012): stop a job (kill its script if it runs,
    /// never start it if it waits).
    #[n(8)]
    CancelJob(#[n(0)] CancelJob),
    /// Version 4 (RFD 0009): a script check's content, as the server has it.
    #[n(9)]
    CheckScript(#[n(0)] CheckScript),
    /// Version 5 (RFD 0015): open a shell session (a grant and a
    /// session-open the agent verifies itself).
    #[n(10)]
    ShellOpen(#[n(0)] ShellOpen),
    /// Version 5: a sealed frame of a shell session, client to agent.
    #[n(11)]
    ShellData(#[n(0)] ShellData),
    /// Version 5: end a session (the client left or the relay closed).
    #[n(12)]
    ShellClose(#[n(0)] ShellClose),
    /// Version 5: a grant was revoked; end its sessions, open no more.
    #[n(13)]
    ShellRevoke(#[n(0)] ShellRevoke),
    /// Version 6 (RFD 0019): run one occurrence of a signed schedule.
    #[n(14)]
    ScheduledRun(#[n(0)] ScheduledRun),
}

/// Like [`AgentMessage`]'s: the one place for the server's messages.
impl crate::codec::Versioned for ServerMessage {
    fn since(&self) -> u16 {
        match self {
            ServerMessage::Challenge(_)
            | ServerMessage::Enrolled(_)
            | ServerMessage::Welcome(_)
            | ServerMessage::Ack(_)
            | ServerMessage::Refused(_)
            | ServerMessage::Trust(_)
            | ServerMessage::Job(_)
            | ServerMessage::ResultAck(_) => 1,
            ServerMessage::CancelJob(_) => 3,
            ServerMessage::CheckScript(_) => 4,
            ServerMessage::ShellOpen(_)
            | ServerMessage::ShellData(_)
            | ServerMessage::ShellClose(_)
            | ServerMessage::ShellRevoke(_) => 5,
            ServerMessage::ScheduledRun(_) => 6,
        }
    }
}

/// The agent asks for the content of a script its policy's script check
/// names (RFD 0009). It runs only content that hashes to `sha256`, which
/// the root-signed policy allow-lists: the server is a courier.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct CheckScriptWanted {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub sha256: [u8; 32],
}

/// The server's answer: the script library's content with that hash, or
/// `None` when it has none.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct CheckScript {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub sha256: [u8; 32],
    #[cbor(n(1), with = "minicbor::bytes")]
    pub content: Option<Vec<u8>>,
}

/// First message on every connection: a nonce the agent must sign.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Challenge {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub nonce: [u8; 32],
    #[n(1)]
    pub server_version: String,
}

/// A new device asks to join a tenant with a one-time enrolment token.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Enroll {
    /// The secret part of the enrolment token (see [`crate::token`]).
    #[cbor(n(0), with = "minicbor::bytes")]
    pub token_secret: [u8; 32],
    /// The device's Ed25519 public key, generated on the device.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub device_key: [u8; 32],
    #[n(2)]
    pub hostname: String,
    #[n(3)]
    pub agent_version: String,
    /// Signature by `device_key` over [`crate::envelope::EnrollStatement`].
    #[cbor(n(4), with = "minicbor::bytes")]
    pub signature: [u8; 64],
}

/// A known device proves it holds its key.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Hello {
    #[n(0)]
    pub device_id: DeviceId,
    #[n(1)]
    pub agent_version: String,
    /// Signature by the device key over [`crate::envelope::HelloStatement`].
    #[cbor(n(2), with = "minicbor::bytes")]
    pub signature: [u8; 64],
    /// The size of the last tree head of its tenant's log the agent
    /// accepted (absent: none yet), so that the server proves consistency
    /// from there.
    #[n(3)]
    pub log_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Enrolled {
    #[n(0)]
    pub device_id: DeviceId,
    #[n(1)]
    pub tenant: String,
    /// The transparency log's key (Go signed-note verifier key text), which
    /// the agent pins: every job must come under a tree head it signed.
    #[n(2)]
    pub log_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Welcome {
    #[n(0)]
    pub device_id: DeviceId,
    #[n(1)]
    pub tenant: String,
    /// How often the agent must send a heartbeat; the server closes a
    /// connection silent for three intervals.
    #[n(2)]
    pub heartbeat_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Heartbeat {
    #[n(0)]
    pub seq: u64,
}

/// An inventory snapshot (`full`) or the sections that changed since the last
/// acknowledged report.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct InventoryReport {
    #[n(0)]
    pub seq: u64,
    #[n(1)]
    pub full: bool,
    #[n(2)]
    pub inventory: Inventory,
}

/// The server stored the message with this sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Ack {
    #[n(0)]
    pub seq: u64,
}

/// The server refuses the connection or message; it closes the connection after.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Refused {
    #[n(0)]
    pub code: RefusalCode,
    #[n(1)]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum RefusalCode {
    /// The frame could not be decoded or broke a limit.
    #[n(0)]
    Malformed,
    /// Another protocol version is needed.
    #[n(1)]
    UnsupportedVersion,
    /// The enrolment token is unknown, used, expired or tampered with.
    #[n(2)]
    BadToken,
    /// The signature over the challenge does not verify.
    #[n(3)]
    BadSignature,
    /// No such device (or it was removed).
    #[n(4)]
    UnknownDevice,
    /// The message was not expected at this point of the conversation.
    #[n(5)]
    UnexpectedMessage,
    /// The server is overloaded or shutting down; try again later.
    #[n(6)]
    Unavailable,
    /// This device key is already enrolled.
    #[n(7)]
    AlreadyEnrolled,
}

/// A byte string inside a list: encoded as a CBOR byte string (major type 2),
/// not as an array of integers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(transparent)]
pub struct ByteBuf(#[cbor(n(0), with = "minicbor::bytes")] pub Vec<u8>);

impl From<Vec<u8>> for ByteBuf {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl std::ops::Deref for ByteBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// The tenant's trust statements, each a `bulwark_policy::Signed` envelope in
/// its canonical encoding. Sent right after `Welcome` and again whenever one
/// of them changes; the agent applies what is newer than what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Trust {
    /// Every root of the tenant, oldest (version 1) first.
    #[n(0)]
    pub roots: Vec<ByteBuf>,
    /// The latest policy.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub policy: Option<Vec<u8>>,
    /// The latest freeze or unfreeze statement.
    #[cbor(n(2), with = "minicbor::bytes")]
    pub freeze: Option<Vec<u8>>,
}

/// A job to verify and, if the agent agrees, run.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Job {
    /// A `Signed` job statement with every signature gathered so far.
    #[cbor(n(0), with = "minicbor::bytes")]
    pub envelope: Vec<u8>,
    /// The script body; its SHA-256 is in the signed statement.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub script: Vec<u8>,
    /// Proof that the job is in its tenant's transparency log; a job
    /// without one is refused.
    #[n(2)]
    pub log: Option<LogProof>,
}

/// "Run occurrence `occurrence` of this signed schedule" (RFD 0019). The
/// agent checks everything itself (`bulwark_policy::log::decide_occurrence`):
/// the server's word on the time is only a claim.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ScheduledRun {
    /// A `Signed` schedule statement, signed once.
    #[cbor(n(0), with = "minicbor::bytes")]
    pub envelope: Vec<u8>,
    /// The script body; its SHA-256 is in the signed statement.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub script: Vec<u8>,
    /// Unix seconds, a whole minute: the occurrence claimed due.
    #[n(2)]
    pub occurrence: u64,
    /// The server's job id for this run, under which the agent reports it;
    /// a run that runs has the id `run_job_id(schedule, occurrence)`.
    #[cbor(n(3), with = "minicbor::bytes")]
    pub job_id: [u8; 16],
    /// The schedule's `schedule.created` entry in its tenant's log.
    #[n(4)]
    pub log: Option<LogProof>,
}

/// A job's place in its tenant's log, under a signed tree head, and that
/// head's consistency with the one the agent holds (`bulwark_policy::log`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct LogProof {
    /// The job's `job.released` entry, its exact leaf bytes.
    #[cbor(n(0), with = "minicbor::bytes")]
    pub leaf: Vec<u8>,
    #[n(1)]
    pub index: u64,
    /// A C2SP checkpoint signed by the log key.
    #[n(2)]
    pub checkpoint: String,
    /// Inclusion proof: 32-byte hashes, concatenated.
    #[cbor(n(3), with = "minicbor::bytes")]
    pub inclusion: Vec<u8>,
    /// The tree size the consistency proof starts from (the agent's `log_size`).
    #[n(4)]
    pub consistency_from: u64,
    /// Consistency proof: 32-byte hashes, concatenated.
    #[cbor(n(5), with = "minicbor::bytes")]
    pub consistency: Vec<u8>,
    /// For a job the policy delays (RFD 0006): the earliest witnessed
    /// checkpoint covering the entry, whose cosignature times show since
    /// when the witnesses have seen it; `None` when `checkpoint` shows it.
    #[n(6)]
    pub witnessed_since: Option<String>,
    /// Consistency proof from `witnessed_since` to `checkpoint`.
    #[n(7)]
    pub witnessed_since_consistency: Option<ByteBuf>,
}

/// The server stored the result of this job; the agent drops it from its spool.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ResultAck {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub job_id: [u8; 16],
}

/// The agent started a verified job (version 3, RFD 0012): the server shows
/// it running. Sent once, while connected; never spooled (the result that
/// follows carries the same start time).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct JobStarted {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub job_id: [u8; 16],
    /// Unix time in milliseconds, the agent's clock.
    #[n(1)]
    pub started_at_ms: u64,
}

/// Which stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum OutputStream {
    #[n(0)]
    Stdout,
    #[n(1)]
    Stderr,
}

impl OutputStream {
    /// "stdout" or "stderr": the name in storage and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }

    pub fn parse(text: &str) -> Option<OutputStream> {
        match text {
            "stdout" => Some(OutputStream::Stdout),
            "stderr" => Some(OutputStream::Stderr),
            _ => None,
        }
    }
}

/// A piece of a running job's output (version 3, RFD 0012): at most
/// [`Limits::max_output_chunk_bytes`], best effort (never spooled; the
/// result stays the record). Pieces of a job are numbered from 0 across
/// both streams; `skipped` counts the bytes of this stream the agent did
/// not send just before this piece (past its [`Limits::max_live_output_bytes`],
/// or dropped while no connection took them), so a reader knows what is
/// missing and where.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct JobOutput {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub job_id: [u8; 16],
    #[n(1)]
    pub seq: u64,
    #[n(2)]
    pub stream: OutputStream,
    #[cbor(n(3), with = "minicbor::bytes")]
    pub data: Vec<u8>,
    #[n(4)]
    pub skipped: u64,
}

/// The server asks the agent to stop a job (version 3, RFD 0012). It can
/// only make less run: a waiting job is answered `cancelled` and never
/// starts; a running script's process group is killed, except an
/// install-patches run, which finishes (a half-done dpkg run leaves the
/// system broken). Nothing runs because of it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct CancelJob {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub job_id: [u8; 16],
    /// Who cancelled and why, for the agent's log.
    #[n(1)]
    pub reason: String,
}

/// Open a shell session (version 5, RFD 0015). Both envelopes are signed
/// statements the agent verifies itself (`bulwark_policy::shell`); the
/// server only relays them.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellOpen {
    /// The relay's name for the session, picked by the client and signed in its open.
    #[cbor(n(0), with = "minicbor::bytes")]
    pub session_id: [u8; 16],
    /// A `Signed` shell grant with its approvals.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub grant: Vec<u8>,
    /// A `Signed` session-open by the grantee's key.
    #[cbor(n(2), with = "minicbor::bytes")]
    pub open: Vec<u8>,
}

/// The agent's answer: a `Signed` session answer by the device key.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellOpened {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub session_id: [u8; 16],
    #[cbor(n(1), with = "minicbor::bytes")]
    pub answer: Vec<u8>,
}

/// One sealed frame of a session, either way: opaque to the server (a
/// counter, ChaCha20-Poly1305 ciphertext and tag). Keystrokes, output and
/// window size changes all travel as these.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellData {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub session_id: [u8; 16],
    #[cbor(n(1), with = "minicbor::bytes")]
    pub sealed: Vec<u8>,
}

/// The server ends a session: the client left or the relay closed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellClose {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub session_id: [u8; 16],
    #[n(1)]
    pub reason: String,
}

/// A grant was revoked (unsigned: it can only make less happen). The agent
/// remembers it until `expires_at` (the server's word, which only shortens
/// its own revocation) and ends the grant's live sessions.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellRevoke {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub grant_id: [u8; 16],
    #[n(1)]
    pub expires_at: u64,
}

/// A recording's digest: what the tenant's log keeps of a session.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct RecordingDigest {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub sha256: [u8; 32],
    #[n(1)]
    pub len: u64,
    /// The recording hit its cap and stopped (the session went on).
    #[n(2)]
    pub truncated: bool,
}

/// A session ended, or was refused before it opened (no recording then).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellClosed {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub session_id: [u8; 16],
    /// Why the agent refused or ended the session (a bad grant or open,
    /// expiry, revocation, a frame that failed the channel); `None` when
    /// the shell exited or either side closed it.
    #[n(1)]
    pub refusal: Option<AgentRefusalCode>,
    #[n(2)]
    pub reason: String,
    #[n(3)]
    pub recording: Option<RecordingDigest>,
}

/// A piece of a finished session's asciicast recording, for upload.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ShellRecording {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub session_id: [u8; 16],
    #[n(1)]
    pub offset: u64,
    #[cbor(n(2), with = "minicbor::bytes")]
    pub data: Vec<u8>,
}

/// What became of a job on this device. Sent again after every reconnect
/// until the server answers [`ResultAck`].
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct JobResult {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub job_id: [u8; 16],
    #[n(1)]
    pub outcome: JobOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum JobOutcome {
    /// The agent verified the job and ran its script.
    #[n(0)]
    Ran(#[n(0)] JobRun),
    /// The agent did not run the job.
    #[n(1)]
    Refused(#[n(0)] JobRefused),
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct JobRun {
    /// The script's exit status; absent when a signal ended it (a timeout,
    /// or the agent stopping while it ran).
    #[n(0)]
    pub exit_code: Option<i32>,
    /// The agent killed the script's process group at the signed timeout.
    #[n(1)]
    pub timed_out: bool,
    /// The first [`Limits::max_output_bytes`] of standard output.
    #[cbor(n(2), with = "minicbor::bytes")]
    pub stdout: Vec<u8>,
    /// The first [`Limits::max_output_bytes`] of standard error.
    #[cbor(n(3), with = "minicbor::bytes")]
    pub stderr: Vec<u8>,
    /// SHA-256 of everything the script wrote: all of stdout, then all of stderr.
    #[cbor(n(4), with = "minicbor::bytes")]
    pub output_sha256: [u8; 32],
    /// Unix time in milliseconds.
    #[n(5)]
    pub started_at_ms: u64,
    /// Unix time in milliseconds.
    #[n(6)]
    pub finished_at_ms: u64,
    /// What an install-patches job did; absent for other actions.
    #[n(7)]
    pub patches: Option<PatchReport>,
}

/// The result of an install-patches job on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct PatchReport {
    /// Sorted by name.
    #[n(0)]
    pub installed: Vec<PatchedPackage>,
    /// Packages asked for (or pending) that were not upgraded, sorted by name.
    #[n(1)]
    pub failed: Vec<PatchFailure>,
    /// The system asks for a reboot (`/var/run/reboot-required`).
    #[n(2)]
    pub reboot_required: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct PatchedPackage {
    #[n(0)]
    pub name: String,
    /// Empty when the package was not installed before.
    #[n(1)]
    pub old_version: String,
    #[n(2)]
    pub new_version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct PatchFailure {
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub reason: String,
}

/// Defines [`AgentRefusalCode`] from one table: each variant and its name.
macro_rules! agent_refusal_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Why an agent refused a job or a trust statement ([`JobRefused::code`],
        /// [`TrustRefused::code`]): `bulwark_policy::Refusal::code`, or one of
        /// the agent's own. On the wire, in storage and in the console it is
        /// its stable snake_case name, a CBOR text string.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum AgentRefusalCode {
            $($(#[doc = $doc])* $variant,)*
            /// A name this build does not know (a newer agent's), kept as
            /// sent so it is shown and stored unchanged. Never a known name:
            /// [`AgentRefusalCode::parse`] gives the variant for those.
            Unknown(String),
        }

        impl AgentRefusalCode {
            /// Every code this build knows.
            pub const KNOWN: &'static [AgentRefusalCode] = &[$(AgentRefusalCode::$variant,)*];

            /// The stable snake_case name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(AgentRefusalCode::$variant => $name,)*
                    AgentRefusalCode::Unknown(name) => name,
                }
            }

            /// The code of this name: a known one, else [`AgentRefusalCode::Unknown`].
            pub fn parse(name: &str) -> Self {
                match name {
                    $($name => AgentRefusalCode::$variant,)*
                    other => AgentRefusalCode::Unknown(other.to_owned()),
                }
            }
        }
    };
}

agent_refusal_codes! {
    // The verdicts of `bulwark_policy` (see `Refusal` for each).
    Malformed = "malformed",
    TooLarge = "too_large",
    BadSignature = "bad_signature",
    UnknownKey = "unknown_key",
    TooFewSigners = "too_few_signers",
    MissingCustomerCosigner = "missing_customer_cosigner",
    WrongTenant = "wrong_tenant",
    NotATarget = "not_a_target",
    TargetMismatch = "target_mismatch",
    ClassMismatch = "class_mismatch",
    ActionNotSupported = "action_not_supported",
    NotYetValid = "not_yet_valid",
    Expired = "expired",
    ValidityTooLong = "validity_too_long",
    OutsideMaintenanceWindow = "outside_maintenance_window",
    Replayed = "replayed",
    ScriptMismatch = "script_mismatch",
    ScriptNotAllowListed = "script_not_allow_listed",
    ClassNotPermitted = "class_not_permitted",
    Frozen = "frozen",
    Rollback = "rollback",
    PolicyExpired = "policy_expired",
    RootThresholdNotMet = "root_threshold_not_met",
    NotPinnedRoot = "not_pinned_root",
    NoRoot = "no_root",
    NoPolicy = "no_policy",
    LogProofMissing = "log_proof_missing",
    LogHeadUnsigned = "log_head_unsigned",
    /// Not an answer (like [`AgentRefusalCode::AgentBusy`]): the job's
    /// consistency proof starts from a tree size the agent does not hold (the server's belief
    /// of the agent's head drifted). Not an alarm: nothing was shown to be
    /// inconsistent. The agent names the size it holds in
    /// [`JobRefused::log_size`]; the server proves from there and sends again.
    LogHeadStale = "log_head_stale",
    LogInconsistent = "log_inconsistent",
    LogNotIncluded = "log_not_included",
    LogEntryMismatch = "log_entry_mismatch",
    /// Fewer than the policy's threshold of witnesses cosigned the tree
    /// head recently (RFD 0006).
    WitnessCosignaturesMissing = "witness_cosignatures_missing",
    /// A mass action delivered before the witnesses saw it in the log for
    /// the policy's delay (RFD 0006).
    MassActionDelayNotElapsed = "mass_action_delay_not_elapsed",
    /// A shell grant the server said was revoked (RFD 0015).
    GrantRevoked = "grant_revoked",
    /// A scheduled run's time is not an occurrence of its signed expression
    /// in its signed zone and window (RFD 0019).
    ScheduleNotAnOccurrence = "schedule_not_an_occurrence",
    /// A scheduled run delivered before its occurrence by the agent's clock.
    ScheduleNotDue = "schedule_not_due",
    /// A scheduled run delivered too long after its occurrence.
    ScheduleRunMissed = "schedule_run_missed",
    /// The agent's policy lists the schedule as revoked.
    ScheduleRevoked = "schedule_revoked",
    /// The schedule names a time zone the agent's tz database lacks.
    ScheduleZoneUnknown = "schedule_zone_unknown",
    // The agent's own.
    /// The agent could not record, start or watch the job.
    AgentError = "agent_error",
    /// Not an answer (like [`AgentRefusalCode::LogHeadStale`]): the agent's
    /// queue is full and the job was not read. The server does not record it; it delivers the
    /// job again once the agent reports another result.
    AgentBusy = "agent_busy",
    /// This agent takes no jobs (the simulator's virtual devices).
    JobsDisabled = "jobs_disabled",
    /// The server cancelled the job before it started (RFD 0012); it did
    /// not run. A text string like every code: older servers show it as sent.
    Cancelled = "cancelled",
    // Agent updates (RFD 0017).
    /// The release metadata or binary does not verify from the agent's
    /// pinned release root (too few release keys, rolled back, expired,
    /// tampered on the mirror), or the agent has no release root.
    ReleaseNotVerified = "release_not_verified",
    /// The signed job names a version or SHA-256 the release keys did not
    /// sign for this platform.
    ReleaseMismatch = "release_mismatch",
    /// The version named is not newer than the one running (never a downgrade).
    Downgrade = "downgrade",
}

impl AgentRefusalCode {
    /// Whether the code means the transparency log was tampered with or
    /// withheld: the agent logs a security event and the server raises
    /// `alert.log_refused`, not only a failed job. A stale proof start
    /// ([`AgentRefusalCode::LogHeadStale`]) is not one: it shows nothing.
    pub fn is_log_alarm(&self) -> bool {
        use AgentRefusalCode::*;
        matches!(
            self,
            LogProofMissing
                | LogHeadUnsigned
                | LogInconsistent
                | LogNotIncluded
                | LogEntryMismatch
                | WitnessCosignaturesMissing
                | MassActionDelayNotElapsed
        )
    }
}

/// Exactly a text string, as when the field was one: every frame decodes
/// and re-encodes to the same bytes.
impl<C> Encode<C> for AgentRefusalCode {
    fn encode<W: minicbor::encode::Write>(
        &self,
        e: &mut minicbor::Encoder<W>,
        _: &mut C,
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        e.str(self.as_str())?.ok()
    }
}

impl<'b, C> Decode<'b, C> for AgentRefusalCode {
    fn decode(d: &mut minicbor::Decoder<'b>, _: &mut C) -> Result<Self, minicbor::decode::Error> {
        d.str().map(AgentRefusalCode::parse)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct JobRefused {
    #[n(0)]
    pub code: AgentRefusalCode,
    /// The human explanation.
    #[n(1)]
    pub reason: String,
    /// With [`AgentRefusalCode::LogHeadStale`]: the size of the tree head the agent holds
    /// (absent: none).
    #[n(2)]
    pub log_size: Option<u64>,
}

/// The agent refused a trust statement (the server records a security alert).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct TrustRefused {
    /// `root`, `policy` or `freeze`.
    #[n(0)]
    pub kind: String,
    /// The version (root, policy) or sequence (freeze) the statement claims;
    /// 0 when it could not be read.
    #[n(1)]
    pub version: u64,
    #[n(2)]
    pub code: AgentRefusalCode,
    #[n(3)]
    pub reason: String,
}

/// What the agent holds after processing a [`Trust`] message.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct TrustStatus {
    /// Absent until the agent accepted its pinned first root.
    #[n(0)]
    pub root_version: Option<u64>,
    /// Absent until the agent accepted a policy.
    #[n(1)]
    pub policy_version: Option<u64>,
    /// 0 when no freeze statement was ever accepted.
    #[n(2)]
    pub freeze_sequence: u64,
    #[n(3)]
    pub frozen: bool,
}

impl Validate for AgentMessage {
    fn validate(&self, l: &Limits) -> Result<(), ProtocolError> {
        match self {
            AgentMessage::Enroll(m) => {
                l.text("hostname", &m.hostname)?;
                l.text("agent_version", &m.agent_version)
            }
            AgentMessage::Hello(m) => {
                DeviceId::parse(m.device_id.as_str())?;
                l.text("agent_version", &m.agent_version)
            }
            AgentMessage::Heartbeat(_) => Ok(()),
            AgentMessage::Inventory(m) => m.inventory.validate(l),
            AgentMessage::JobResult(m) => match &m.outcome {
                JobOutcome::Ran(r) => {
                    check_len("stdout", r.stdout.len(), l.max_output_bytes)?;
                    check_len("stderr", r.stderr.len(), l.max_output_bytes)?;
                    let Some(p) = &r.patches else { return Ok(()) };
                    check_len("patches.installed", p.installed.len(), l.max_packages)?;
                    check_len("patches.failed", p.failed.len(), l.max_packages)?;
                    for i in &p.installed {
                        for text in [&i.name, &i.old_version, &i.new_version] {
                            l.text("patches.installed", text)?;
                        }
                    }
                    for f in &p.failed {
                        l.text("patches.failed.name", &f.name)?;
                        l.long_text("patches.failed.reason", &f.reason)?;
                    }
                    Ok(())
                }
                JobOutcome::Refused(r) => {
                    l.text("code", r.code.as_str())?;
                    l.long_text("reason", &r.reason)
                }
            },
            AgentMessage::TrustRefused(m) => {
                l.text("kind", &m.kind)?;
                l.text("code", m.code.as_str())?;
                l.long_text("reason", &m.reason)
            }
            AgentMessage::TrustStatus(_) => Ok(()),
            AgentMessage::Checks(m) => m.validate(l),
            AgentMessage::JobStarted(_) => Ok(()),
            AgentMessage::JobOutput(m) => check_len("data", m.data.len(), l.max_output_chunk_bytes),
            AgentMessage::CheckScriptWanted(_) => Ok(()),
            AgentMessage::ShellOpened(m) => l.envelope("answer", &m.answer),
            AgentMessage::ShellData(m) => {
                check_len("sealed", m.sealed.len(), l.max_shell_frame_bytes)
            }
            AgentMessage::ShellClosed(m) => {
                if let Some(code) = &m.refusal {
                    l.text("refusal", code.as_str())?;
                }
                l.long_text("reason", &m.reason)
            }
            AgentMessage::ShellRecording(m) => {
                check_len("data", m.data.len(), l.max_output_chunk_bytes)
            }
        }
    }
}

impl Validate for LogProof {
    fn validate(&self, l: &Limits) -> Result<(), ProtocolError> {
        let log = self;
        check_len("log.leaf", log.leaf.len(), l.max_log_leaf_bytes)?;
        check_len("log.checkpoint", log.checkpoint.len(), l.max_note_bytes)?;
        // 64 hashes: the longest proof in any tree this side of 2^63 entries.
        check_len("log.inclusion", log.inclusion.len(), 64 * 32)?;
        check_len("log.consistency", log.consistency.len(), 64 * 32)?;
        if let Some(since) = &log.witnessed_since {
            check_len("log.witnessed_since", since.len(), l.max_note_bytes)?;
        }
        if let Some(proof) = &log.witnessed_since_consistency {
            check_len("log.witnessed_since_consistency", proof.len(), 64 * 32)?;
        }
        Ok(())
    }
}

impl Validate for ServerMessage {
    fn validate(&self, l: &Limits) -> Result<(), ProtocolError> {
        match self {
            ServerMessage::Challenge(m) => l.text("server_version", &m.server_version),
            ServerMessage::Enrolled(m) => {
                DeviceId::parse(m.device_id.as_str())?;
                l.text("tenant", &m.tenant)?;
                l.text("log_key", &m.log_key)
            }
            ServerMessage::Welcome(m) => {
                DeviceId::parse(m.device_id.as_str())?;
                l.text("tenant", &m.tenant)
            }
            ServerMessage::Ack(_) => Ok(()),
            ServerMessage::Refused(m) => l.long_text("message", &m.message),
            ServerMessage::Trust(m) => {
                check_len("roots", m.roots.len(), l.max_trust_roots)?;
                for root in &m.roots {
                    l.envelope("roots", root)?;
                }
                if let Some(policy) = &m.policy {
                    l.envelope("policy", policy)?;
                }
                if let Some(freeze) = &m.freeze {
                    l.envelope("freeze", freeze)?;
                }
                Ok(())
            }
            ServerMessage::Job(m) => {
                l.envelope("envelope", &m.envelope)?;
                check_len("script", m.script.len(), l.max_script_bytes)?;
                m.log.as_ref().map_or(Ok(()), |log| log.validate(l))
            }
            ServerMessage::ScheduledRun(m) => {
                l.envelope("envelope", &m.envelope)?;
                check_len("script", m.script.len(), l.max_script_bytes)?;
                m.log.as_ref().map_or(Ok(()), |log| log.validate(l))
            }
            ServerMessage::ResultAck(_) => Ok(()),
            ServerMessage::CancelJob(m) => l.long_text("reason", &m.reason),
            ServerMessage::CheckScript(m) => check_len(
                "content",
                m.content.as_ref().map_or(0, Vec::len),
                l.max_script_bytes,
            ),
            ServerMessage::ShellOpen(m) => {
                l.envelope("grant", &m.grant)?;
                l.envelope("open", &m.open)
            }
            ServerMessage::ShellData(m) => {
                check_len("sealed", m.sealed.len(), l.max_shell_frame_bytes)
            }
            ServerMessage::ShellClose(m) => l.long_text("reason", &m.reason),
            ServerMessage::ShellRevoke(_) => Ok(()),
        }
    }
}
