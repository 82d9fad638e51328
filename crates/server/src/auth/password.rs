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

use argon2::password_hash::{Output, PasswordHash, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use unicode_normalization::UnicodeNormalization;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; we ask 12).
pub const MIN_LEN: usize = 12;
/// Longest password accepted: bounds hashing work per request.
pub const MAX_LEN: usize = 1024;

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
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

/// Argon2 runs on one dedicated thread that owns its 19 MiB of working
/// memory, allocated once: never on the async runtime nor on tokio's
/// blocking pool. With a fresh allocation per hash, glibc kept freed blocks
/// in every thread's arena and fragmentation made each hash take new memory
/// (40 logins grew the server by 80 MB). One thread bounds both the memory
/// and the CPU that password guessing can take, whatever the attack; the
/// login throttle bounds the queue.
type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

struct HashingThread {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

/// Jobs waiting beyond this are refused rather than queued without end.
const HASHING_QUEUE: usize = 256;

fn hashing_thread() -> Option<&'static HashingThread> {
    static THREAD: std::sync::OnceLock<Option<HashingThread>> = std::sync::OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(HASHING_QUEUE);
            std::thread::Builder::new()
                .name("bulwark-argon2".into())
                .spawn(move || {
                    let mut memory = vec![Block::default(); params().block_count()];
                    while let Ok(job) = queue.recv() {
                        job(&mut memory);
                    }
                })
                .ok()?;
            Some(HashingThread { jobs })
        })
        .as_ref()
}

/// Runs `work` on the hashing thread and waits for it without blocking the runtime.
async fn on_hashing_thread<T: Send + 'static>(
    work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
) -> anyhow::Result<T> {
    let thread = hashing_thread()
        .ok_or_else(|| anyhow::anyhow!("the password hashing thread could not start"))?;
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |memory| {
        let _ = done.send(work(memory));
    });
    thread
        .jobs
        .try_send(job)
        .map_err(|_| anyhow::anyhow!("too many password checks at once"))?;
    result
        .await
        .map_err(|_| anyhow::anyhow!("the password hashing thread stopped"))
}

/// Raw argon2id with our parameters, in `memory`, into `out`.
fn raw_hash(
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut [Block],
) -> Result<(), argon2::Error> {
    argon2().hash_password_into_with_memory(password, salt, out, memory)
}

pub async fn hash(password: String) -> anyhow::Result<String> {
    on_hashing_thread(move |memory| {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let mut out = [0u8; 32];
        raw_hash(
            normalise(&password).as_bytes(),
            salt_bytes,
            &mut out,
            memory,
        )
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&params())
                .try_into()
                .map_err(|e| anyhow::anyhow!("params: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
        };
        Ok(phc.to_string())
    })
    .await?
}

/// Verifies `password` against a stored PHC string. Takes the same time for
/// a missing account when given [`dummy_hash`].
pub async fn verify(password: String, phc: String) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    on_hashing_thread(move |memory| {
        let password = normalise(&password);
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        let ours = Params::try_from(&parsed).is_ok_and(|p| {
            let ours = params();
            (p.m_cost(), p.t_cost(), p.p_cost()) == (ours.m_cost(), ours.t_cost(), ours.p_cost())
        }) && parsed.algorithm == Algorithm::Argon2id.ident()
            && parsed.version == Some(Version::V0x13.into());
        if !ours {
            // A hash made with other parameters (older settings): the slow path.
            return argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
        }
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let mut out = vec![0u8; expected.len()];
        raw_hash(password.as_bytes(), salt_bytes, &mut out, memory).is_ok()
            // Output's equality is constant-time.
            && Output::new(&out).is_ok_and(|computed| computed == expected)
    })
    .await
    .unwrap_or(false)
}

/// Verified against when a login names no account, so that an unknown user
/// costs the same argon2 work as a wrong password. A constant: the hash of a
/// random password nobody kept, with the current parameters (a test checks
/// they match). Being constant, it costs nothing at start-up, so the 19 MiB
/// of argon2 memory is only taken at the first login.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$5etJBB1NjkjWM/G6D1KXXA$7PfxBDQQXbvQHCgzpbe0NPnvqHx1kJ8lgGKGqTeW2QU";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_uses_the_current_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("PHC");
        let p = Params::try_from(&parsed).expect("params");
        assert_eq!(
            (p.m_cost(), p.t_cost(), p.p_cost()),
            (params().m_cost(), params().t_cost(), params().p_cost())
        );
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
    }

    #[tokio::test]
    async fn the_fast_path_agrees_with_the_argon2_crate() {
        use argon2::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let standard = argon2()
            .hash_password(b"correct horse battery staple", &salt)
            .expect("hash")
            .to_string();
        assert!(verify("correct horse battery staple".into(), standard.clone()).await);
        assert!(!verify("correct horse battery stapler".into(), standard).await);
        let ours = hash("correct horse battery staple".into())
            .await
            .expect("hash");
        let parsed = PasswordHash::new(&ours).expect("PHC");
        assert!(
            argon2()
                .verify_password(b"correct horse battery staple", &parsed)
                .is_ok()
        );
        // Other parameters take the slow path and still verify.
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).expect("params"),
        )
        .hash_password(b"correct horse battery staple", &salt)
        .expect("hash")
        .to_string();
        assert!(verify("correct horse battery staple".into(), other).await);
    }

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
