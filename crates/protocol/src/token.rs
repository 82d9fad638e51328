//! Enrolment tokens.
//!
//! A token is `bwe1.` followed by the base64url (no padding) of 32 random
//! secret bytes, a `.`, and the base64url of the SHA-256 fingerprint of the
//! server's agent CA certificate (DER). The agent pins the CA whose
//! fingerprint the token carries; the server stores only the SHA-256 of the
//! secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::ProtocolError;

const PREFIX: &str = "bwe1.";
/// Longest token text accepted before any parsing.
const MAX_TOKEN_LEN: usize = 128;

#[derive(Clone, PartialEq, Eq)]
pub struct EnrollToken {
    pub secret: [u8; 32],
    pub ca_fingerprint: [u8; 32],
}

impl std::fmt::Debug for EnrollToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollToken")
            .field("secret", &"<redacted>")
            .field("ca_fingerprint", &fingerprint_text(&self.ca_fingerprint))
            .finish()
    }
}

impl EnrollToken {
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(ProtocolError::BadToken("too long"));
        }
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or(ProtocolError::BadToken("unknown format (expected bwe1.)"))?;
        let (secret, fingerprint) = rest
            .split_once('.')
            .ok_or(ProtocolError::BadToken("missing CA fingerprint"))?;
        Ok(Self {
            secret: decode32(secret)?,
            ca_fingerprint: decode32(fingerprint)?,
        })
    }

    /// What the server stores and looks the token up by.
    pub fn secret_hash(&self) -> [u8; 32] {
        hash_secret(&self.secret)
    }
}

impl std::fmt::Display for EnrollToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(self.secret),
            URL_SAFE_NO_PAD.encode(self.ca_fingerprint)
        )
    }
}

pub fn hash_secret(secret: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// SHA-256 of a DER certificate.
pub fn certificate_fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// A fingerprint as people compare it: `SHA256:` and colon-separated hex pairs.
pub fn fingerprint_text(fingerprint: &[u8; 32]) -> String {
    let pairs: Vec<String> = fingerprint.iter().map(|b| format!("{b:02X}")).collect();
    format!("SHA256:{}", pairs.join(":"))
}

fn decode32(text: &str) -> Result<[u8; 32], ProtocolError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ProtocolError::BadToken("not base64url"))?;
    bytes
        .try_into()
        .map_err(|_| ProtocolError::BadToken("wrong length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_tampering() {
        let t = EnrollToken {
            secret: [9; 32],
            ca_fingerprint: [0xAB; 32],
        };
        let text = t.to_string();
        assert!(text.starts_with("bwe1."));
        assert_eq!(EnrollToken::parse(&text), Ok(t.clone()));
        assert_eq!(EnrollToken::parse(&format!("  {text}\n")), Ok(t));

        assert!(EnrollToken::parse("").is_err());
        assert!(EnrollToken::parse("bwe2.AAAA.AAAA").is_err());
        assert!(EnrollToken::parse(&text[..text.len() - 1]).is_err());
        assert!(EnrollToken::parse(&format!("{text}A")).is_err());
        assert!(EnrollToken::parse(&text.replace('.', "")).is_err());
        assert!(EnrollToken::parse(&"bwe1.".repeat(100)).is_err());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let t = EnrollToken {
            secret: [0x41; 32],
            ca_fingerprint: [0; 32],
        };
        assert!(!format!("{t:?}").contains("65, 65"));
        assert!(format!("{t:?}").contains("redacted"));
    }
}
