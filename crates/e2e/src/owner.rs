//! The owner account the tests create, and its TOTP codes.

use crate::*;

/// The first owner account, with what a person keeps: password and TOTP secret.
#[derive(Clone)]
pub struct Owner {
    pub username: String,
    pub password: String,
    /// RFC 4648 base32, as shown at enrolment.
    pub totp_secret: String,
    /// The last TOTP time step used for this account: the server accepts each
    /// step once, so every login must use a later one.
    pub(crate) last_step: Arc<Mutex<u64>>,
}

impl Owner {
    pub fn new(username: &str, password: &str, totp_secret: &str) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
            totp_secret: totp_secret.to_owned(),
            last_step: Arc::new(Mutex::new(0)),
        }
    }

    /// A code the server accepts and this account has not used yet.
    ///
    /// The server accepts the previous, current and next 30 s step, each once
    /// per account. So the first code uses the previous step and later ones
    /// move forward a step at a time: three logins in a row need no waiting,
    /// and only a fourth within the same 30 s sleeps until a new step starts.
    /// Near the end of a step the previous one is skipped, since it may have
    /// fallen out of the window by the time the server checks it.
    pub async fn next_otp(&self) -> Result<String> {
        self.next_otp_skewed(0).await
    }

    /// [`Owner::next_otp`] for a server whose clock is `offset_secs` from
    /// this machine's (behind if negative; [`UpOptions::clock_offset_days`]):
    /// the code of the server's current step. The server's clock may move
    /// forward between calls (a restart with a later clock), never back:
    /// the steps it accepted stay used.
    pub async fn next_otp_skewed(&self, offset_secs: i64) -> Result<String> {
        loop {
            let now = unix_now().saturating_add_signed(offset_secs);
            let now_step = now / TOTP_STEP_SECS;
            let oldest_safe = if now % TOTP_STEP_SECS >= TOTP_STEP_SECS - 5 {
                now_step
            } else {
                now_step - 1
            };
            let step = {
                let mut last = self
                    .last_step
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let candidate = (*last + 1).max(oldest_safe);
                if candidate <= now_step + 1 {
                    *last = candidate;
                    Some(candidate)
                } else if *last > now_step + 1 {
                    bail!(
                        "TOTP step {} was used with a server clock ahead of this one (step {now_step}): \
                         a server's clock may only move forward between logins",
                        *last
                    );
                } else {
                    None
                }
            };
            match step {
                Some(step) => return totp_code(&self.totp_secret, step * TOTP_STEP_SECS),
                None => {
                    let wait = TOTP_STEP_SECS - now % TOTP_STEP_SECS;
                    eprintln!("[e2e] TOTP steps used up; waiting {wait} s for the next one");
                    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100))
                        .await;
                }
            }
        }
    }
}

/// The 6-digit SHA-1 TOTP code of a base32 secret at `unix_time`.
pub fn totp_code(base32_secret: &str, unix_time: u64) -> Result<String> {
    use totp_rs::{Algorithm, Secret, TOTP};
    let bytes = Secret::Encoded(base32_secret.trim().to_owned())
        .to_bytes()
        .map_err(|error| anyhow!("TOTP secret {base32_secret:?} is not base32: {error:?}"))?;
    let totp = TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        TOTP_STEP_SECS,
        bytes,
        None,
        "e2e".to_owned(),
    );
    Ok(totp.generate(unix_time))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
