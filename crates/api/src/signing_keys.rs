//! Operators' job-signing keys: registering one and listing a tenant's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRequest {
    /// A name the operator recognises ("laptop"): at most 64 characters, no
    /// control characters, not only spaces.
    #[schema(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// Ed25519 public key, base64 of its 32 bytes.
    pub public_key: Option<String>,
    /// Or an approval passkey: base64 of the canonical CBOR of its
    /// `WebAuthnCredential` (RP id `bulwark-approve.localhost`, public key),
    /// as the operator's `bulwark keys add-passkey` read it from the
    /// authenticator.
    pub webauthn_credential: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyView {
    /// SHA-256 of the key's canonical encoding (hex): how signatures name it.
    pub key_id: String,
    pub name: String,
    pub kind: String,
    /// Base64 of the canonical CBOR of the public key.
    pub public_key: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}
