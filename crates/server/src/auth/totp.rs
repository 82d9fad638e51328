//! TOTP (RFC 6238): SHA-1, 6 digits, 30-second steps, as every authenticator
//! app supports. One step of clock skew either way is accepted; a step is
//! accepted at most once per account (the store keeps the last one used).

use totp_rs::{Algorithm, Secret, TOTP};

pub const STEP_SECS: u64 = 30;
const ISSUER: &str = "Bulwark";

/// A new random 160-bit secret, base32 encoded.
pub fn new_secret() -> String {
    Secret::generate_secret().to_encoded().to_string()
}

fn totp(secret_b32: &str, account: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_owned()).to_bytes().ok()?;
    Some(TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        bytes,
        Some(ISSUER.to_owned()),
        account.to_owned(),
    ))
}

/// The time step `code` is valid for at `now_secs`, if any (current, previous or next).
pub fn verify(secret_b32: &str, code: &str, now_secs: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret_b32, "")?;
    let current = now_secs / STEP_SECS;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .find_map(|step| {
            let expected = totp.generate(step * STEP_SECS);
            constant_time_eq(expected.as_bytes(), code.as_bytes())
                .then(|| i64::try_from(step).unwrap_or(i64::MAX))
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `otpauth://` URL authenticator apps scan.
pub fn otpauth_url(secret_b32: &str, account: &str) -> String {
    totp(secret_b32, account)
        .map(|t| t.get_url())
        .unwrap_or_default()
}

/// The otpauth URL as an SVG QR code.
pub fn qr_svg(url: &str) -> String {
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890" (base32 below),
    // truncated to 6 digits.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc_6238_vectors() {
        for (time, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(
                verify(RFC_SECRET, code, time),
                Some(i64::try_from(time / 30).expect("fits")),
                "t={time}"
            );
        }
    }

    #[test]
    fn skew_of_one_step_only() {
        let t = 1_111_111_109u64;
        assert!(verify(RFC_SECRET, "081804", t + 30).is_some());
        assert!(verify(RFC_SECRET, "081804", t - 30).is_some());
        assert!(verify(RFC_SECRET, "081804", t + 61).is_none());
        assert!(verify(RFC_SECRET, "81804", t).is_none());
        assert!(verify(RFC_SECRET, "08180a", t).is_none());
    }

    #[test]
    fn qr_code_is_svg() {
        let url = otpauth_url(&new_secret(), "alice");
        assert!(url.starts_with("otpauth://totp/Bulwark:alice?"), "{url}");
        assert!(qr_svg(&url).contains("<svg"));
    }
}
