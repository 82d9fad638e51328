//! WebAuthn (passkeys and security keys) without a browser: the relying
//! party's checks on an assertion (WebAuthn Level 2 §7.2) and on a
//! registration (§7.1).
//!
//! Two callers share this code. The agent verifies an operator's approval of
//! a job, whose challenge is SHA-256 of the envelope's PAE bytes (see
//! [`crate::Signed::challenge`]), so the server relays approvals but can
//! forge none. The server verifies passkey logins, whose challenge is a nonce
//! it issued. The sign counter is returned, not judged: only a caller that
//! stores it (the server) can compare it with the last one; an agent needs
//! no counter because each job hash is signed once and each job runs once.
//!
//! Pure: no I/O, no clock. serde is used only to read the browser's
//! clientDataJSON into a private struct; nothing public is serde.
//!
//! Every input is capped before it is parsed, and every refusal says what
//! to change.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minicbor::data::Type;
use minicbor::{Decode, Decoder, Encode};
use sha2::{Digest, Sha256};

/// Longest clientDataJSON accepted (browsers send about 150 bytes).
pub const MAX_CLIENT_DATA_JSON: usize = bulwark_protocol::limits::statement::MAX_CLIENT_DATA_JSON;
/// Longest assertion authenticator data (37 bytes plus extensions).
pub const MAX_AUTHENTICATOR_DATA: usize =
    bulwark_protocol::limits::statement::MAX_AUTHENTICATOR_DATA;
/// Longest registration authenticator data: it also carries the credential
/// id (up to 1023 bytes) and the public key.
pub const MAX_REGISTRATION_AUTHENTICATOR_DATA: usize = 2048;
/// Longest attestation object (a certificate chain fits; we do not read it).
pub const MAX_ATTESTATION_OBJECT: usize = 16 * 1024;
/// Longest signature: a DER ECDSA P-256 signature is at most 72 bytes,
/// an Ed25519 one exactly 64.
pub const MAX_SIGNATURE: usize = bulwark_protocol::limits::statement::MAX_WEBAUTHN_SIGNATURE;
/// Longest credential id (WebAuthn Level 3 §7.1 step 23).
pub const MAX_CREDENTIAL_ID: usize = 1023;
/// Longest relying party id: a DNS name.
pub const MAX_RP_ID: usize = 253;
/// The relying party id of passkeys that approve jobs (RFD 0005). Browsers
/// resolve every `*.localhost` name to this machine, so only a page served
/// on the operator's own machine (the `bulwark` CLI's approval page) can
/// use it: a page of the console, served from the MSP's host or from
/// `localhost`, cannot claim it, and an agent accepts no other RP id for
/// an approval (nor any origin but `http(s)://bulwark-approve.localhost[:port]`).
pub const APPROVAL_RP_ID: &str = "bulwark-approve.localhost";

/// Shortest challenge: WebAuthn asks for at least 16 random bytes (§13.4.3).
pub const MIN_CHALLENGE: usize = 16;

/// A credential an operator registered: the relying party id (the console's
/// host name) it is bound to, and its public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
#[cbor(map)]
pub struct WebAuthnCredential {
    #[n(0)]
    pub rp_id: String,
    #[n(1)]
    pub key: CoseKey,
}

/// The credential public keys Bulwark accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
#[non_exhaustive]
pub enum CoseKey {
    /// ECDSA P-256 with SHA-256 (COSE alg -7): the uncompressed SEC1 point
    /// `04 || x || y`.
    #[n(0)]
    Es256 {
        #[cbor(n(0), with = "minicbor::bytes")]
        sec1: [u8; 65],
    },
    /// Ed25519 (COSE alg -8, EdDSA).
    #[n(1)]
    Ed25519(#[cbor(n(0), with = "minicbor::bytes")] [u8; 32]),
}

/// An assertion as the browser returns it from `navigator.credentials.get`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct WebAuthnSignature {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub authenticator_data: Vec<u8>,
    #[cbor(n(1), with = "minicbor::bytes")]
    pub client_data_json: Vec<u8>,
    /// DER for ES256, 64 raw bytes for Ed25519.
    #[cbor(n(2), with = "minicbor::bytes")]
    pub signature: Vec<u8>,
}

/// The authenticator data flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub u8);

impl Flags {
    pub fn user_present(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// A PIN, biometric or similar second factor on the authenticator.
    pub fn user_verified(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// BE: the credential may be synced to other devices (a passkey).
    pub fn backup_eligible(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// BS: the credential is synced now.
    pub fn backed_up(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// AT: attested credential data follows (registrations).
    pub fn attested_credential(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// ED: extension data follows.
    pub fn extensions(self) -> bool {
        self.0 & 0x80 != 0
    }
}

/// What a verified assertion tells the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssertionInfo {
    /// For the caller to compare with the last one it stored (0 means the
    /// authenticator keeps no counter, as synced passkeys do).
    pub sign_count: u32,
    pub flags: Flags,
}

/// A credential the browser just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredCredential {
    /// What the console passes in `allowCredentials` later.
    pub credential_id: Vec<u8>,
    pub credential: WebAuthnCredential,
    /// The authenticator model, as the authenticator claims it (unverified).
    pub aaguid: [u8; 16],
    pub sign_count: u32,
    pub flags: Flags,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebAuthnError {
    #[error("{what} is {len} bytes, more than the {limit} allowed")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error(
        "the relying party id {0:?} is not a lowercase DNS name (a-z, 0-9, '-', '.'; 1 to 253 bytes)"
    )]
    BadRpId(String),
    #[error(
        "the expected challenge is {0} bytes; WebAuthn needs at least 16 random bytes (a bug in the caller)"
    )]
    ShortChallenge(usize),
    #[error("clientDataJSON is not the JSON a browser sends (type, challenge, origin): {0}")]
    ClientDataJson(String),
    #[error("clientDataJSON has type {got:?}, expected {expected:?}")]
    WrongType { expected: &'static str, got: String },
    #[error(
        "the authenticator signed another challenge (another job, or a stale login): sign again"
    )]
    ChallengeMismatch,
    #[error(
        "the credential was used from origin {origin:?}; only https://{rp_id}[:port] is accepted (and http://localhost[:port] for localhost)"
    )]
    WrongOrigin { origin: String, rp_id: String },
    #[error("the credential was used inside a frame of another site (crossOrigin is true)")]
    CrossOrigin,
    #[error("the authenticator data is {0} bytes; at least 37 are needed")]
    AuthenticatorDataTooShort(usize),
    #[error(
        "the authenticator signed for another relying party id (rpIdHash differs): use the credential registered for this console"
    )]
    RpIdMismatch,
    #[error("the authenticator did not report a user present (UP flag clear): touch the key")]
    UserNotPresent,
    #[error(
        "the authenticator did not verify the user (UV flag clear): set a PIN or biometric on it, user verification is required"
    )]
    UserNotVerified,
    #[error("the authenticator data says backed up (BS) but not backup eligible (BE)")]
    InconsistentBackupFlags,
    #[error("the signature does not verify with the registered credential key")]
    BadSignature,
    #[error("the credential's public key is not a valid {0} key")]
    BadKey(&'static str),
    #[error(
        "the credential key is COSE kty {kty:?}, alg {alg:?}, crv {crv:?}; only ES256 (-7, P-256) and EdDSA (-8, Ed25519) are accepted: offer only those in pubKeyCredParams"
    )]
    UnsupportedKey {
        kty: Option<i64>,
        alg: Option<i64>,
        crv: Option<i64>,
    },
    #[error("the attestation object is malformed: {0}")]
    AttestationObject(String),
    #[error(
        "attestation format {0:?} is not accepted: create the credential with attestation \"none\""
    )]
    UnsupportedAttestation(String),
    #[error("the registration carries no credential (AT flag clear)")]
    NoCredential,
    #[error("the credential id is {0} bytes; 1 to 1023 are allowed")]
    CredentialIdLength(usize),
}

use WebAuthnError as E;

/// Verifies an assertion (§7.2 steps 10 to 21, less what needs a browser
/// or stored state) made by `cred` over `challenge`.
pub fn verify_assertion(
    cred: &WebAuthnCredential,
    challenge: &[u8],
    authenticator_data: &[u8],
    client_data_json: &[u8],
    signature: &[u8],
    require_user_verification: bool,
) -> Result<AssertionInfo, WebAuthnError> {
    // 1. Sizes, before anything is parsed.
    cap(
        "authenticator data",
        authenticator_data,
        MAX_AUTHENTICATOR_DATA,
    )?;
    cap("clientDataJSON", client_data_json, MAX_CLIENT_DATA_JSON)?;
    cap("signature", signature, MAX_SIGNATURE)?;
    // 2. What the browser says: a sign-in, for this challenge, on our origin.
    check_client_data(client_data_json, "webauthn.get", challenge, &cred.rp_id)?;
    // 3. What the authenticator says: our RP id, a present (and verified) user.
    let auth = AuthData::parse(authenticator_data, &cred.rp_id, require_user_verification)?;
    // 4. Signed by the credential key, over both.
    cred.key.verify(
        &signed_bytes(authenticator_data, client_data_json),
        signature,
    )?;
    Ok(AssertionInfo {
        sign_count: auth.sign_count,
        flags: auth.flags,
    })
}

impl WebAuthnSignature {
    /// [`verify_assertion`] on this assertion.
    pub fn verify(
        &self,
        cred: &WebAuthnCredential,
        challenge: &[u8],
        require_user_verification: bool,
    ) -> Result<AssertionInfo, WebAuthnError> {
        verify_assertion(
            cred,
            challenge,
            &self.authenticator_data,
            &self.client_data_json,
            &self.signature,
            require_user_verification,
        )
    }
}

/// Reads a new credential from `navigator.credentials.create` (§7.1 steps 7
/// to 21, less what needs a browser or stored state).
///
/// Attestation is not relied on. An operator's key becomes trusted when the
/// tenant's root threshold signs a policy that lists it, not because a vendor
/// certificate vouches for the authenticator model; and browsers may replace
/// attestation by "none" anyway. So "none" is accepted, and "packed" too:
/// its self-attestation (no certificate chain) is checked, since it costs one
/// signature and proves the key works; a chain (`x5c`) is ignored unread,
/// which makes such a registration worth exactly a "none" one.
pub fn parse_registration(
    attestation_object: &[u8],
    client_data_json: &[u8],
    expected_challenge: &[u8],
    rp_id: &str,
    require_uv: bool,
) -> Result<RegisteredCredential, WebAuthnError> {
    // 1. Sizes, before anything is parsed.
    cap(
        "attestation object",
        attestation_object,
        MAX_ATTESTATION_OBJECT,
    )?;
    cap("clientDataJSON", client_data_json, MAX_CLIENT_DATA_JSON)?;
    // 2. What the browser says: a registration, for this challenge, on our origin.
    check_client_data(
        client_data_json,
        "webauthn.create",
        expected_challenge,
        rp_id,
    )?;
    // 3. The attestation object, a CBOR map in whatever order the browser chose.
    let object = AttestationObject::parse(attestation_object)?;
    cap(
        "registration authenticator data",
        object.auth_data,
        MAX_REGISTRATION_AUTHENTICATOR_DATA,
    )?;
    // 4. The authenticator data, as for an assertion, then the new credential.
    let auth = AuthData::parse(object.auth_data, rp_id, require_uv)?;
    if !auth.flags.attested_credential() {
        return Err(E::NoCredential);
    }
    let (aaguid, rest) = split::<16>(auth.rest, "the AAGUID")?;
    let (id_len, rest) = split::<2>(rest, "the credential id length")?;
    let id_len = usize::from(u16::from_be_bytes(*id_len));
    if id_len == 0 || id_len > MAX_CREDENTIAL_ID {
        return Err(E::CredentialIdLength(id_len));
    }
    let (credential_id, rest) = rest
        .split_at_checked(id_len)
        .ok_or_else(|| truncated("the credential id"))?;
    let mut d = Decoder::new(rest);
    let key = CoseKey::decode_from(&mut d)?;
    if auth.flags.extensions() {
        // Extension outputs: a map we do not read, but it must be one.
        if !matches!(d.datatype(), Ok(Type::Map | Type::MapIndef)) {
            return Err(E::AttestationObject("extension data is not a map".into()));
        }
        d.skip().map_err(cbor)?;
    }
    if d.position() != rest.len() {
        return Err(E::AttestationObject(
            "bytes after the credential data".into(),
        ));
    }
    // 5. The attestation statement (see above for why so little).
    match object.fmt {
        // An empty map, nothing else.
        "none" => {
            definite_map(&mut Decoder::new(object.att_stmt), 0)?;
        }
        "packed" => {
            if let Some((alg, sig)) = packed_self_attestation(object.att_stmt)? {
                if alg != key.alg() {
                    return Err(E::AttestationObject(format!(
                        "self-attestation algorithm {alg} differs from the key's {}",
                        key.alg()
                    )));
                }
                key.verify(&signed_bytes(object.auth_data, client_data_json), sig)?;
            }
        }
        other => return Err(E::UnsupportedAttestation(other.to_owned())),
    }
    Ok(RegisteredCredential {
        credential_id: credential_id.to_vec(),
        credential: WebAuthnCredential {
            rp_id: rp_id.to_owned(),
            key,
        },
        aaguid: *aaguid,
        sign_count: auth.sign_count,
        flags: auth.flags,
    })
}

impl CoseKey {
    /// Reads a COSE_Key (RFC 9053) as an authenticator encodes it, with
    /// nothing after it.
    pub fn from_cose(bytes: &[u8]) -> Result<CoseKey, WebAuthnError> {
        let mut d = Decoder::new(bytes);
        let key = Self::decode_from(&mut d)?;
        if d.position() != bytes.len() {
            return Err(E::AttestationObject("bytes after the COSE key".into()));
        }
        Ok(key)
    }

    /// Map of integer labels: kty 1, alg 3, crv -1, x -2, y -3; others skipped.
    fn decode_from(d: &mut Decoder<'_>) -> Result<CoseKey, WebAuthnError> {
        let (mut kty, mut alg, mut crv, mut x, mut y) = (None, None, None, None, None);
        for _ in 0..definite_map(d, 16)? {
            match d.i64().map_err(cbor)? {
                1 => set_once(&mut kty, d.i64().map_err(cbor)?, "kty")?,
                3 => set_once(&mut alg, d.i64().map_err(cbor)?, "alg")?,
                -1 => set_once(&mut crv, d.i64().map_err(cbor)?, "crv")?,
                -2 => set_once(&mut x, d.bytes().map_err(cbor)?, "x")?,
                -3 => set_once(&mut y, d.bytes().map_err(cbor)?, "y")?,
                _ => d.skip().map_err(cbor)?,
            }
        }
        match (kty, alg, crv, x, y) {
            (Some(2), Some(-7), Some(1), Some(x), Some(y)) => {
                let (Ok(x), Ok(y)) = (<[u8; 32]>::try_from(x), <[u8; 32]>::try_from(y)) else {
                    return Err(E::BadKey("P-256"));
                };
                let mut sec1 = [4; 65];
                sec1[1..33].copy_from_slice(&x);
                sec1[33..].copy_from_slice(&y);
                // An off-curve point verifies nothing (ring checks it on use).
                Ok(CoseKey::Es256 { sec1 })
            }
            (Some(1), Some(-8), Some(6), Some(x), None) => {
                let x = <[u8; 32]>::try_from(x).map_err(|_| E::BadKey("Ed25519"))?;
                ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| E::BadKey("Ed25519"))?;
                Ok(CoseKey::Ed25519(x))
            }
            _ => Err(E::UnsupportedKey { kty, alg, crv }),
        }
    }

    /// The COSE algorithm identifier.
    pub fn alg(&self) -> i64 {
        match self {
            CoseKey::Es256 { .. } => -7,
            CoseKey::Ed25519(_) => -8,
        }
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), WebAuthnError> {
        let ok = match self {
            CoseKey::Es256 { sec1 } => ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                sec1,
            )
            .verify(message, signature)
            .is_ok(),
            CoseKey::Ed25519(bytes) => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| E::BadKey("Ed25519"))?;
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|s| key.verify_strict(message, &s).is_ok())
            }
        };
        if ok { Ok(()) } else { Err(E::BadSignature) }
    }
}

/// The fields of clientDataJSON we read; serde ignores the others and
/// refuses a field given twice.
#[derive(serde::Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: bool,
}

fn check_client_data(
    json: &[u8],
    kind: &'static str,
    challenge: &[u8],
    rp_id: &str,
) -> Result<(), WebAuthnError> {
    check_rp_id(rp_id)?;
    if challenge.len() < MIN_CHALLENGE {
        return Err(E::ShortChallenge(challenge.len()));
    }
    let client: ClientData =
        serde_json::from_slice(json).map_err(|e| E::ClientDataJson(e.to_string()))?;
    if client.kind != kind {
        return Err(E::WrongType {
            expected: kind,
            got: client.kind,
        });
    }
    // The browser writes the challenge it was given, base64url without padding.
    if client.challenge != URL_SAFE_NO_PAD.encode(challenge) {
        return Err(E::ChallengeMismatch);
    }
    if !origin_allowed(&client.origin, rp_id) {
        return Err(E::WrongOrigin {
            origin: client.origin,
            rp_id: rp_id.to_owned(),
        });
    }
    // The console is never framed: an assertion made inside another site's
    // frame was not made on the console.
    if client.cross_origin {
        return Err(E::CrossOrigin);
    }
    Ok(())
}

/// The origins a credential bound to `rp_id` may be used from:
///
/// - `https://<rp_id>` or `https://<rp_id>:<port>`;
/// - for `rp_id` `localhost` or a name under `.localhost`, also
///   `http://<rp_id>[:<port>]` (browsers resolve these to this machine and
///   treat them as secure contexts; `bulwark up` serves the console on
///   `localhost`, the CLI its approval page on [`APPROVAL_RP_ID`]).
///
/// `<port>` is 1 to 65535 in decimal without leading zeros, as browsers
/// serialise origins. The host must BE the RP id: unlike WebAuthn, which
/// lets any subdomain of the RP id assert, Bulwark serves its console from
/// one host, so no other host (a subdomain an attacker may control) is
/// trusted. Browsers write origins in lowercase, as RP ids are here.
fn origin_allowed(origin: &str, rp_id: &str) -> bool {
    let rest = match origin.strip_prefix("https://") {
        Some(rest) => rest,
        None if rp_id == "localhost" || rp_id.ends_with(".localhost") => {
            match origin.strip_prefix("http://") {
                Some(rest) => rest,
                None => return false,
            }
        }
        None => return false,
    };
    match rest.strip_prefix(rp_id) {
        Some("") => true,
        Some(port) => port.strip_prefix(':').is_some_and(|p| {
            !p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        }),
        None => false,
    }
}

/// An RP id is a lowercase DNS name; anything else cannot be one the
/// browser accepted, and would make the origin rule ambiguous.
fn check_rp_id(rp_id: &str) -> Result<(), WebAuthnError> {
    let dns = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    if rp_id.is_empty() || rp_id.len() > MAX_RP_ID || !rp_id.bytes().all(dns) {
        return Err(E::BadRpId(rp_id.to_owned()));
    }
    Ok(())
}

/// The fixed part of authenticator data (§6.1): rpIdHash (32), flags (1),
/// signCount (4, big-endian), then whatever follows.
struct AuthData<'a> {
    flags: Flags,
    sign_count: u32,
    rest: &'a [u8],
}

impl<'a> AuthData<'a> {
    fn parse(data: &'a [u8], rp_id: &str, require_uv: bool) -> Result<Self, WebAuthnError> {
        let short = || E::AuthenticatorDataTooShort(data.len());
        let (rp_id_hash, rest) = data.split_first_chunk::<32>().ok_or_else(short)?;
        let (&[flags], rest) = rest.split_first_chunk::<1>().ok_or_else(short)?;
        let (count, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
        if rp_id_hash[..] != Sha256::digest(rp_id.as_bytes())[..] {
            return Err(E::RpIdMismatch);
        }
        let flags = Flags(flags);
        if !flags.user_present() {
            return Err(E::UserNotPresent);
        }
        if require_uv && !flags.user_verified() {
            return Err(E::UserNotVerified);
        }
        if flags.backed_up() && !flags.backup_eligible() {
            return Err(E::InconsistentBackupFlags);
        }
        Ok(AuthData {
            flags,
            sign_count: u32::from_be_bytes(*count),
            rest,
        })
    }
}

/// What the authenticator signs: authenticator data || SHA-256(clientDataJSON).
fn signed_bytes(authenticator_data: &[u8], client_data_json: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(authenticator_data.len() + 32);
    bytes.extend_from_slice(authenticator_data);
    bytes.extend_from_slice(&Sha256::digest(client_data_json));
    bytes
}

/// `{"fmt": text, "attStmt": map, "authData": bytes}`, keys in any order
/// (browsers do not all sort them); unknown keys are skipped.
struct AttestationObject<'a> {
    fmt: &'a str,
    att_stmt: &'a [u8],
    auth_data: &'a [u8],
}

impl<'a> AttestationObject<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, WebAuthnError> {
        let mut d = Decoder::new(bytes);
        let (mut fmt, mut att_stmt, mut auth_data) = (None, None, None);
        for _ in 0..definite_map(&mut d, 8)? {
            match d.str().map_err(cbor)? {
                "fmt" => set_once(&mut fmt, d.str().map_err(cbor)?, "fmt")?,
                "authData" => set_once(&mut auth_data, d.bytes().map_err(cbor)?, "authData")?,
                "attStmt" => {
                    let start = d.position();
                    d.skip().map_err(cbor)?;
                    set_once(&mut att_stmt, &bytes[start..d.position()], "attStmt")?;
                }
                _ => d.skip().map_err(cbor)?,
            }
        }
        if d.position() != bytes.len() {
            return Err(E::AttestationObject("bytes after the map".into()));
        }
        let missing = |what: &str| E::AttestationObject(format!("no {what}"));
        Ok(AttestationObject {
            fmt: fmt.ok_or_else(|| missing("fmt"))?,
            att_stmt: att_stmt.ok_or_else(|| missing("attStmt"))?,
            auth_data: auth_data.ok_or_else(|| missing("authData"))?,
        })
    }
}

/// A "packed" statement's `alg` and `sig` when it is a self-attestation;
/// `None` when it carries a certificate chain (ignored, see `parse_registration`).
fn packed_self_attestation(stmt: &[u8]) -> Result<Option<(i64, &[u8])>, WebAuthnError> {
    let mut d = Decoder::new(stmt);
    let (mut alg, mut sig, mut x5c) = (None, None, false);
    for _ in 0..definite_map(&mut d, 3)? {
        match d.str().map_err(cbor)? {
            "alg" => set_once(&mut alg, d.i64().map_err(cbor)?, "alg")?,
            "sig" => set_once(&mut sig, d.bytes().map_err(cbor)?, "sig")?,
            "x5c" => {
                x5c = true;
                d.skip().map_err(cbor)?;
            }
            other => {
                return Err(E::AttestationObject(format!(
                    "unknown packed attestation field {other:?}"
                )));
            }
        }
    }
    match (x5c, alg, sig) {
        (true, _, _) => Ok(None),
        (false, Some(alg), Some(sig)) => Ok(Some((alg, sig))),
        _ => Err(E::AttestationObject(
            "a packed statement needs alg and sig".into(),
        )),
    }
}

/// Reads a definite-length map header with at most `max` entries.
fn definite_map(d: &mut Decoder<'_>, max: u64) -> Result<u64, WebAuthnError> {
    match d.map().map_err(cbor)? {
        Some(n) if n <= max => Ok(n),
        Some(n) => Err(E::AttestationObject(format!(
            "a map of {n} entries, at most {max} expected"
        ))),
        None => Err(E::AttestationObject("an indefinite-length map".into())),
    }
}

/// A field given twice is refused: which one counts would be a guess.
fn set_once<T>(slot: &mut Option<T>, value: T, what: &str) -> Result<(), WebAuthnError> {
    if slot.replace(value).is_some() {
        return Err(E::AttestationObject(format!("{what} appears twice")));
    }
    Ok(())
}

fn split<'a, const N: usize>(
    bytes: &'a [u8],
    what: &str,
) -> Result<(&'a [u8; N], &'a [u8]), WebAuthnError> {
    bytes
        .split_first_chunk::<N>()
        .ok_or_else(|| truncated(what))
}

fn truncated(what: &str) -> WebAuthnError {
    E::AttestationObject(format!("the authenticator data ends inside {what}"))
}

fn cap(what: &'static str, bytes: &[u8], limit: usize) -> Result<(), WebAuthnError> {
    if bytes.len() > limit {
        return Err(E::TooLarge {
            what,
            len: bytes.len(),
            limit,
        });
    }
    Ok(())
}

fn cbor(e: minicbor::decode::Error) -> WebAuthnError {
    E::AttestationObject(e.to_string())
}

/// Entry point for the `webauthn_assertion` fuzz target: the input is split
/// into three parts (two with a 2-byte length prefix, the rest), fed to
/// [`parse_registration`] and to [`verify_assertion`] for one credential of
/// each kind. Must never panic.
#[cfg(fuzzing)]
pub fn fuzz_webauthn(bytes: &[u8]) {
    fn take<'a>(bytes: &mut &'a [u8]) -> &'a [u8] {
        let Some((len, rest)) = bytes.split_first_chunk::<2>() else {
            return std::mem::take(bytes);
        };
        let (part, rest) = rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()));
        *bytes = rest;
        part
    }
    let mut input = bytes;
    let (data, client, signature) = (take(&mut input), take(&mut input), input);
    let challenge = [7; 32];
    if let Ok(reg) = parse_registration(data, client, &challenge, "localhost", false) {
        assert!(!reg.credential_id.is_empty() && reg.credential_id.len() <= MAX_CREDENTIAL_ID);
        assert!(reg.flags.user_present());
    }
    // P-256's generator and Ed25519's base point: valid keys nobody uses.
    let mut sec1 = [4; 65];
    sec1[1..].copy_from_slice(&[
        0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40,
        0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98,
        0xc2, 0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c,
        0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68,
        0x37, 0xbf, 0x51, 0xf5,
    ]);
    let mut ed = [0x66; 32];
    ed[0] = 0x58;
    for key in [CoseKey::Es256 { sec1 }, CoseKey::Ed25519(ed)] {
        let cred = WebAuthnCredential {
            rp_id: "localhost".into(),
            key,
        };
        let _ = verify_assertion(&cred, &challenge, data, client, signature, true);
    }
}
