//! Passwords: the rules for new ones (NIST SP 800-63B §3.1.1.2) and hashing
//! with argon2id (RFC 9106), always off the async runtime.
//!
//! - At least [`MIN_LEN`] characters, at most [`MAX_LEN`] bytes; no
//!   composition rules (no "one digit, one symbol").
//! - Unicode NFKC before hashing and before verifying (SP 800-63B asks for
//!   NFKC or NFKD), so the same password typed on another keyboard or OS
//!   still matches.
//! - Refused: a password in the list of the most common passwords shipped by
//!   the `passwords` crate (about 100,000 from breach corpora), and anything
//!   zxcvbn scores below 3 (guessable in fewer than 10^10 tries), with
//!   zxcvbn's own advice in the message.

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use unicode_normalization::UnicodeNormalization;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; we ask 12).
pub const MIN_LEN: usize = 12;
/// Longest password accepted: bounds hashing work per request.
pub const MAX_LEN: usize = 1024;

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Lowest zxcvbn score accepted: 3, "safely unguessable" (more than 10^8
/// guesses; 4 is more than 10^10).
pub const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;
/// zxcvbn's time grows quickly with length; the first this many characters
/// decide (a password whose start is strong is at least as strong).
const ZXCVBN_MAX_CHARS: usize = 100;

/// The form a password is hashed and verified in: Unicode NFKC.
pub fn normalise(password: &str) -> String {
    password.nfkc().collect()
}

/// Why a new password is refused, in words for the person choosing it
/// ([`check_new_password_for`] without a username).
pub fn check_new_password(password: &str) -> Result<(), String> {
    check_new_password_for(password, "")
}

/// Why a new password is refused, in words for the person choosing it.
/// `username` counts as a known word (a password built on it is weak).
///
/// CPU-bound (zxcvbn, a list look-up; a few milliseconds): best called off
/// the async runtime, as [`check_new_password_blocking`] does.
pub fn check_new_password_for(password: &str, username: &str) -> Result<(), String> {
    if password.len() > MAX_LEN {
        return Err(format!("the password must be at most {MAX_LEN} bytes long"));
    }
    let password = normalise(password);
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(format!(
            "the password must be at least {MIN_LEN} characters long"
        ));
    }
    if passwords::analyzer::is_common_password(&password)
        || passwords::analyzer::is_common_password(password.to_lowercase())
    {
        return Err(
            "this password is on the list of the most common passwords, which attackers try first; choose another"
                .to_owned(),
        );
    }
    let head: String = password.chars().take(ZXCVBN_MAX_CHARS).collect();
    let inputs: &[&str] = if username.is_empty() {
        &[]
    } else {
        &[username]
    };
    let estimate = zxcvbn::zxcvbn(&head, inputs);
    if estimate.score() < MIN_SCORE {
        let mut message = String::from("this password is too easy to guess");
        if let Some(feedback) = estimate.feedback() {
            if let Some(warning) = feedback.warning() {
                message.push_str(&format!(": {}", lower_first(&warning.to_string())));
            }
            for suggestion in feedback.suggestions() {
                message.push_str(&format!(" {suggestion}"));
            }
        }
        if !message.ends_with('.') {
            message.push('.');
        }
        message.push_str(" A few unrelated words make a strong password that is easy to remember.");
        return Err(message);
    }
    Ok(())
}

/// [`check_new_password`] on a blocking thread.
pub async fn check_new_password_blocking(
    password: String,
    username: String,
) -> anyhow::Result<Result<(), String>> {
    Ok(tokio::task::spawn_blocking(move || check_new_password_for(&password, &username)).await?)
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        let password = normalise(&password);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
    })
    .await?
}

/// Verifies `password` against a stored PHC string. Takes the same time for
/// a missing account when given [`dummy_hash`].
pub async fn verify(password: String, phc: String) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    tokio::task::spawn_blocking(move || {
        let password = normalise(&password);
        PasswordHash::new(&phc).is_ok_and(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, verified against when the account does not
/// exist so that an unknown user costs the same time as a wrong password.
pub async fn dummy_hash() -> anyhow::Result<String> {
    use rand::Rng;
    let random: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    hash(random).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let h = hash("correct horse battery staple".into())
            .await
            .expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery staple".into(), h.clone()).await);
        assert!(!verify("correct horse battery stapl".into(), h.clone()).await);
        assert!(!verify("x".into(), "not a hash".into()).await);
    }

    /// A new password and the start of the refusal message (`None`: accepted).
    fn check(password: &str, expect: Option<&str>) {
        let got = check_new_password_for(password, "alice");
        match (expect, &got) {
            (None, Ok(())) => {}
            (Some(start), Err(message)) if message.starts_with(start) => {}
            _ => panic!("{password:?}: expected {expect:?}, got {got:?}"),
        }
    }

    #[test]
    fn new_password_rules() {
        check("elevenchars", Some("the password must be at least 12"));
        check(
            &"x".repeat(MAX_LEN + 1),
            Some("the password must be at most"),
        );
        // Long enough, but on the common-password list.
        check("123456789012", Some("this password is on the list"));
        check("qwerty123456", Some("this password is on the list"));
        check("PASSWORD1234", Some("this password is on the list"));
        // Not on the list, but zxcvbn finds it easy.
        check(
            "kkkkkkkkkkkkkkkk",
            Some("this password is too easy to guess"),
        );
        check(
            "qwertyuiopasdfgh",
            Some("this password is too easy to guess"),
        );
        check("alice1234567", Some("this password is too easy to guess"));
        check(
            "abcdefghijklmnop",
            Some("this password is too easy to guess"),
        );
        // No composition rules: long lower-case phrases are fine.
        check("correct horse battery staple", None);
        check("grumpy lantern orbits quietly", None);
        check("z9$Kq!7vRw#2", None);
    }

    #[test]
    fn weak_passwords_are_explained() {
        let message = check_new_password_for("kkkkkkkkkkkkkkkk", "alice").expect_err("weak");
        assert!(message.contains("repeat"), "{message}");
    }

    #[test]
    fn length_counts_characters_after_nfkc() {
        // Eleven full-width letters are eleven characters after NFKC too.
        check(
            "ｇｒｕｍｐｙｌａｎｔｅ",
            Some("the password must be at least 12"),
        );
        assert_eq!(normalise("ｆｕｌｌ"), "full");
        // "ﬁ" (U+FB01) is "fi" after NFKC.
        assert_eq!(normalise("\u{FB01}"), "fi");
    }

    #[tokio::test]
    async fn equivalent_unicode_forms_verify() {
        // "é" precomposed (U+00E9) and as e + combining acute (U+0301).
        let composed = "caf\u{E9} lantern orbits quietly";
        let decomposed = "cafe\u{301} lantern orbits quietly";
        let h = hash(composed.into()).await.expect("hash");
        assert!(verify(decomposed.into(), h.clone()).await);
        let h = hash("\u{FB01}ne lantern orbits".into())
            .await
            .expect("hash");
        assert!(verify("fine lantern orbits".into(), h).await);
    }
}
