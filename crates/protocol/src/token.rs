//! Enrolment tokens.
//!
//! A token is `bwe1.<secret>.<CA>.<root>`, each part the base64url (no
//! padding) of 32 bytes: random secret bytes, the SHA-256 fingerprint of the
//! server's agent CA certificate (DER), and the fingerprint of the tenant's
//! first trust root (SHA-256 of its payload, `bulwark_policy::root::root_fingerprint`).
//! The agent pins the CA and the root the token names, so the server can show
//! it neither another CA nor another root; the server stores only the
//! SHA-256 of the secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::ProtocolError;

const PREFIX: &str = "bwe1.";
/// Longest token text accepted before any parsing (a token is 137 bytes).
const MAX_TOKEN_LEN: usize = 160;

#[derive(Clone, PartialEq, Eq)]
pub struct EnrollToken {
    pub secret: [u8; 32],
    pub ca_fingerprint: [u8; 32],
    /// SHA-256 of the payload of the tenant's version 1 trust root.
    pub root_fingerprint: [u8; 32],
}

impl std::fmt::Debug for EnrollToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollToken")
            .field("secret", &"<redacted>")
            .field("ca_fingerprint", &fingerprint_text(&self.ca_fingerprint))
            .field(
                "root_fingerprint",
                &fingerprint_text(&self.root_fingerprint),
            )
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
        let mut parts = rest.split('.');
        let secret = parts.next().unwrap_or_default();
        let ca = parts
            .next()
            .ok_or(ProtocolError::BadToken("missing CA fingerprint"))?;
        let root = parts
            .next()
            .ok_or(ProtocolError::BadToken("missing trust root fingerprint"))?;
        if parts.next().is_some() {
            return Err(ProtocolError::BadToken("too many parts"));
        }
        Ok(Self {
            secret: decode32(secret)?,
            ca_fingerprint: decode32(ca)?,
            root_fingerprint: decode32(root)?,
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
            "{PREFIX}{}.{}.{}",
            URL_SAFE_NO_PAD.encode(self.secret),
            URL_SAFE_NO_PAD.encode(self.ca_fingerprint),
            URL_SAFE_NO_PAD.encode(self.root_fingerprint)
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

/// Longest fingerprint text accepted: `SHA256:` and 32 colon-separated pairs.
const MAX_FINGERPRINT_TEXT: usize = 7 + 32 * 3 + 16;

/// Reads a SHA-256 fingerprint as people copy it: [`fingerprint_text`]'s
/// `SHA256:AB:CD:…`, or 64 hex digits with or without `:`, spaces or
/// dashes between them, in either case.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], ProtocolError> {
    let text = text.trim();
    if text.len() > MAX_FINGERPRINT_TEXT {
        return Err(ProtocolError::BadToken("fingerprint too long"));
    }
    let body = text
        .strip_prefix("SHA256:")
        .or_else(|| text.strip_prefix("sha256:"))
        .unwrap_or(text);
    let digits: String = body
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ProtocolError::BadToken(
            "a fingerprint is 64 hex digits (SHA256:AB:CD:… as printed)",
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
            .map_err(|_| ProtocolError::BadToken("not hex"))?;
    }
    Ok(out)
}

/// Entry point for the `enroll_token` fuzz target: token and fingerprint
/// text never panic, and what parses prints back to itself.
#[cfg(fuzzing)]
pub fn fuzz_token(text: &str) {
    if let Ok(token) = EnrollToken::parse(text) {
        assert_eq!(EnrollToken::parse(&token.to_string()), Ok(token));
    }
    if let Ok(fingerprint) = parse_fingerprint(text) {
        assert_eq!(
            parse_fingerprint(&fingerprint_text(&fingerprint)),
            Ok(fingerprint)
        );
    }
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
    fn fingerprints_read_as_people_copy_them() {
        let fp: [u8; 32] = std::array::from_fn(|i| u8::try_from(i * 7).unwrap_or(0));
        let hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
        for text in [
            fingerprint_text(&fp),
            fingerprint_text(&fp).to_lowercase(),
            hex.clone(),
            hex.to_uppercase(),
            format!("  {hex}\n"),
            fp.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        ] {
            assert_eq!(parse_fingerprint(&text), Ok(fp), "{text:?}");
        }
        for bad in [
            "",
            "SHA256:",
            &hex[..62],
            &format!("{hex}00"),
            &hex.replace('0', "g"),
            &"a".repeat(500),
        ] {
            assert!(parse_fingerprint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let t = EnrollToken {
            secret: [9; 32],
            ca_fingerprint: [0xAB; 32],
            root_fingerprint: [0xCD; 32],
        };
        let text = t.to_string();
        assert!(text.starts_with("bwe1."));
        assert_eq!(text.len(), 5 + 3 * 43 + 2);
        assert_eq!(text.split('.').count(), 4);
        assert_eq!(EnrollToken::parse(&text), Ok(t.clone()));
        assert_eq!(EnrollToken::parse(&format!("  {text}\n")), Ok(t.clone()));

        assert!(EnrollToken::parse("").is_err());
        assert!(EnrollToken::parse("bwe2.AAAA.AAAA.AAAA").is_err());
        assert!(EnrollToken::parse(&text[..text.len() - 1]).is_err());
        assert!(EnrollToken::parse(&format!("{text}A")).is_err());
        assert!(EnrollToken::parse(&text.replace('.', "")).is_err());
        assert!(EnrollToken::parse(&"bwe1.".repeat(100)).is_err());
        // A token of the old two-part format names no root: refused.
        let (old, _root) = text.rsplit_once('.').expect("four parts");
        assert_eq!(
            EnrollToken::parse(old),
            Err(ProtocolError::BadToken("missing trust root fingerprint"))
        );
        assert_eq!(
            EnrollToken::parse(&format!("{text}.AAAA")),
            Err(ProtocolError::BadToken("too many parts"))
        );
        // Each fingerprint is parsed into its own field.
        let swapped = format!(
            "bwe1.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(t.secret),
            URL_SAFE_NO_PAD.encode(t.root_fingerprint),
            URL_SAFE_NO_PAD.encode(t.ca_fingerprint)
        );
        let parsed = EnrollToken::parse(&swapped).expect("well formed");
        assert_eq!(parsed.ca_fingerprint, [0xCD; 32]);
        assert_eq!(parsed.root_fingerprint, [0xAB; 32]);
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let t = EnrollToken {
            secret: [0x41; 32],
            ca_fingerprint: [0; 32],
            root_fingerprint: [1; 32],
        };
        assert!(!format!("{t:?}").contains("65, 65"));
        assert!(format!("{t:?}").contains("redacted"));
    }
}
