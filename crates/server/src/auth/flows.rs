//! The login and first-owner setup flows, shared by the API and the console.

use bulwark_api::error::ErrorCode;
use bulwark_store::AuditAction;
pub use bulwark_store::SessionKind;
use bulwark_store::{NewAuditEvent, NewSession, Operator, SetupEnrolment, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Auth;
use super::policy::LoginOutcome;
use super::throttle::{self, Decision, ThrottlePolicy};
use super::{account, passkey, password, session, totp};
use crate::api::error::ApiError;
use crate::now_millis;

/// How long a setup code stays valid.
pub const SETUP_CODE_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// How long a first-owner enrolment waits for its TOTP confirmation.
const ENROLMENT_TTL_MS: i64 = 15 * 60 * 1000;

pub struct NewLogin {
    pub token: String,
    pub expires_at: i64,
    pub operator: Operator,
    /// The session may only register a passkey: the owner requires one of
    /// this account's roles to sign in with a passkey, and it holds none yet.
    pub passkey_enrolment_only: bool,
}

/// What proves the second factor, besides the password.
pub enum SecondFactor<'a> {
    /// A TOTP code, or a recovery code, typed in the one-time code field.
    Code(&'a str),
    /// A passkey's answer to a login ceremony ([`passkey::login_options`]).
    Passkey(&'a passkey::Assertion),
}

/// Where a request came from, for the session list and the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

async fn audit(state: &Auth, actor: &str, action: AuditAction, target: &str, detail: &str) {
    state
        .store
        .record_event(NewAuditEvent::new(now_millis(), actor, action, target).with_detail(detail))
        .await;
}

async fn audit_locked(
    state: &Auth,
    username: &str,
    key: &str,
    charged: &throttle::Charged,
    client: &ClientInfo,
) {
    let until = charged
        .counter
        .locked_until
        .map(crate::rfc3339)
        .unwrap_or_default();
    audit(
        state,
        username,
        AuditAction::LoginLocked,
        key,
        &format!(
            "{} failures; locked until {until}; last from {}",
            charged.counter.failures, client.ip
        ),
    )
    .await;
}

/// Password and TOTP, both always: [`login_with`] a [`SecondFactor::Code`].
pub async fn login(
    state: &Auth,
    username: &str,
    password_text: &str,
    otp: &str,
    kind: SessionKind,
    client: &ClientInfo,
) -> Result<NewLogin, ApiError> {
    login_with(
        state,
        username,
        password_text,
        SecondFactor::Code(otp),
        kind,
        client,
    )
    .await
}

/// Password and a second factor (TOTP, recovery code or passkey), both
/// always, in one step; the same answer and about the same time whether the
/// account exists or not.
///
/// Throttling ([`throttle`]) runs first, the same way for every username: an
/// attempt that is too early or locked gets exactly the wrong-password
/// answer, without hashing anything. Then the owner's passkey policy
/// decides what a verified login yields ([`super::policy::login_outcome`]).
pub async fn login_with(
    state: &Auth,
    username: &str,
    password_text: &str,
    factor: SecondFactor<'_>,
    kind: SessionKind,
    client: &ClientInfo,
) -> Result<NewLogin, ApiError> {
    let now = now_millis();
    // A passkey's challenge is taken out first: one answer, one try.
    let challenge = match &factor {
        SecondFactor::Passkey(assertion) => {
            passkey::take_login_challenge(state, &assertion.ceremony, username).await?
        }
        SecondFactor::Code(_) => None,
    };
    let policy = ThrottlePolicy::default();
    let user_key = throttle::user_key(username);
    let addr_key = throttle::addr_key(&client.ip);
    let attempt = state
        .store
        .update_throttle(&[&user_key, &addr_key], |before| {
            let attempt = throttle::attempt(&policy, before[0], before[1], now);
            (vec![attempt.user.counter, attempt.addr.counter], attempt)
        })
        .await?;
    if attempt.addr.newly_locked {
        audit_locked(state, username, &addr_key, &attempt.addr, client).await;
    }
    if attempt.decision != Decision::Allow {
        if attempt.user.newly_locked {
            audit_locked(state, username, &user_key, &attempt.user, client).await;
        }
        let why = match attempt.decision {
            Decision::Locked { .. } => "locked",
            _ => "too soon after failures",
        };
        audit(
            state,
            username,
            AuditAction::LoginFailed,
            username,
            &format!("throttled ({why}); from {}", client.ip),
        )
        .await;
        return Err(ApiError::login_failed());
    }

    let found = if username.len() > 64 {
        None
    } else {
        state.store.operator_by_username(username).await?
    };
    let phc = found.as_ref().map_or_else(
        || password::DUMMY_HASH.to_owned(),
        |o| o.password_hash.clone(),
    );
    let password_ok = password::verify(password_text.to_owned(), phc).await;
    let operator = match found {
        Some(o) if password_ok && o.disabled_at.is_none() => o,
        _ => {
            if attempt.user.newly_locked {
                audit_locked(state, username, &user_key, &attempt.user, client).await;
            }
            audit(
                state,
                username,
                AuditAction::LoginFailed,
                username,
                &format!("password; from {}", client.ip),
            )
            .await;
            return Err(ApiError::login_failed());
        }
    };
    let otp = match factor {
        SecondFactor::Code(otp) => otp,
        SecondFactor::Passkey(assertion) => {
            return finish_passkey_login(
                state, operator, challenge, assertion, kind, client, &attempt,
            )
            .await;
        }
    };
    // A recovery code stands in for the TOTP code (each once).
    let recovery = account::looks_like_recovery_code(otp);
    let accepted = if recovery {
        // The spent code is recorded with the code's use, not with the
        // session: a login refused later still spent it.
        let username = operator.username.clone();
        let ip = client.ip.clone();
        state
            .store
            .use_recovery_code(
                &operator.id,
                account::recovery_code_hash(otp),
                now,
                move |left| {
                    vec![
                        NewAuditEvent::new(
                            now,
                            &username,
                            AuditAction::LoginRecoveryCodeUsed,
                            &username,
                        )
                        .with_detail(format!("{left} recovery codes left; from {ip}")),
                    ]
                },
            )
            .await?
    } else {
        let now_secs = u64::try_from(now / 1000).unwrap_or_default();
        match totp::verify(&operator.totp_secret, otp, now_secs) {
            Some(step) => state.store.accept_totp_step(&operator.id, step).await?,
            None => false,
        }
    };
    if !accepted {
        audit(
            state,
            username,
            AuditAction::LoginFailed,
            username,
            &format!(
                "{}; from {}",
                if recovery {
                    "recovery code"
                } else {
                    "one-time code"
                },
                client.ip
            ),
        )
        .await;
        if attempt.user.newly_locked {
            audit_locked(state, username, &user_key, &attempt.user, client).await;
        }
        return Err(ApiError::login_failed());
    }
    open_session(state, operator, None, kind, client, &attempt).await
}

/// The passkey half of [`login_with`], once the password has passed.
async fn finish_passkey_login(
    state: &Auth,
    operator: Operator,
    challenge: Option<[u8; 32]>,
    assertion: &passkey::Assertion,
    kind: SessionKind,
    client: &ClientInfo,
    attempt: &throttle::Attempt,
) -> Result<NewLogin, ApiError> {
    match passkey::verify_login(state, &operator, challenge, assertion).await? {
        Ok(used) => open_session(state, operator, Some(used), kind, client, attempt).await,
        Err(reason) => {
            let username = operator.username.as_str();
            audit(
                state,
                username,
                AuditAction::LoginFailed,
                username,
                &format!("{reason}; from {}", client.ip),
            )
            .await;
            if attempt.user.newly_locked {
                let user_key = throttle::user_key(username);
                audit_locked(state, username, &user_key, &attempt.user, client).await;
            }
            Err(ApiError::login_failed())
        }
    }
}

/// A login whose password and second factor passed (`used_passkey`: the one
/// used, if any): the owner's passkey policy, then a fresh session.
async fn open_session(
    state: &Auth,
    operator: Operator,
    used_passkey: Option<bulwark_store::Passkey>,
    kind: SessionKind,
    client: &ClientInfo,
    attempt: &throttle::Attempt,
) -> Result<NewLogin, ApiError> {
    let now = now_millis();
    let username = operator.username.as_str();
    let (required, holds_passkey) = passkey::login_policy(state, &operator).await?;
    let outcome = super::policy::login_outcome(required, used_passkey.is_some(), holds_passkey);
    if outcome == LoginOutcome::Refused {
        audit(
            state,
            username,
            AuditAction::LoginFailed,
            username,
            &format!(
                "one-time code refused: the role requires a passkey; from {}",
                client.ip
            ),
        )
        .await;
        if attempt.user.newly_locked {
            let user_key = throttle::user_key(username);
            audit_locked(state, username, &user_key, &attempt.user, client).await;
        }
        return Err(passkey::login_code_refused());
    }
    let policy = ThrottlePolicy::default();
    let user_key = throttle::user_key(username);
    let addr_key = throttle::addr_key(&client.ip);
    state
        .store
        .update_throttle(&[&user_key, &addr_key], |before| {
            let (user, addr) = throttle::succeeded(&policy, before[1]);
            (vec![user, addr], ())
        })
        .await?;
    // Counters idle for a whole window hold nothing: drop them now and then.
    let window_ms = i64::try_from(policy.user.window.as_millis()).unwrap_or(i64::MAX);
    if let Err(error) = state.store.prune_throttle(now - window_ms, now).await {
        tracing::warn!(%error, "Cannot prune login throttle counters.");
    }

    let (token, hash) = session::new_token();
    let (csrf_token, _) = session::new_token();
    let expires_at = now + state.session_policy.absolute_lifetime_ms;
    let passkey_enrolment_only = outcome == LoginOutcome::PasskeyEnrolmentOnly;
    let signed_in = NewAuditEvent::new(now, username, AuditAction::LoginSucceeded, username)
        .with_detail(format!(
            "{} session from {}; {}{}",
            kind.as_str(),
            client.ip,
            match &used_passkey {
                Some(used) => format!("passkey {:?}", used.name),
                None => "one-time code".to_owned(),
            },
            if passkey_enrolment_only {
                "; may only register a passkey (the role requires one)"
            } else {
                ""
            }
        ));
    state
        .store
        .create_session(
            NewSession {
                id_hash: hash,
                operator_id: operator.id.clone(),
                kind,
                csrf_token,
                created_at: now,
                expires_at,
                mfa_at: now,
                ip: Some(client.ip.chars().take(64).collect()),
                user_agent: Some(client.user_agent.chars().take(256).collect()),
                passkey_id: used_passkey.as_ref().map(|used| used.id.clone()),
            },
            &[signed_in],
        )
        .await?;
    Ok(NewLogin {
        token,
        expires_at,
        operator,
        passkey_enrolment_only,
    })
}

pub async fn logout(state: &Auth, caller: &session::Caller) -> Result<(), ApiError> {
    if caller.credential == super::policy::Credential::ApiToken {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "an API token is not a session: revoke it with DELETE /api/v1/api-tokens/{id}",
        ));
    }
    let now = now_millis();
    let who = &caller.operator.username;
    state
        .store
        .revoke_session(
            caller.session_hash,
            now,
            &[NewAuditEvent::new(now, who, AuditAction::Logout, who)],
        )
        .await?;
    Ok(())
}

/// A setup code as people type it: 16 base32 characters in groups of four.
pub fn new_setup_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Case, spaces and dashes do not matter when typing a setup code.
pub fn setup_code_hash(code: &str) -> [u8; 32] {
    let normalised: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Sha256::digest(normalised.as_bytes()).into()
}

/// Replaces any earlier setup code with a new one, if no owner exists yet.
pub async fn issue_setup_code(store: &bulwark_store::Store) -> anyhow::Result<Option<String>> {
    if store.operator_count().await? > 0 {
        return Ok(None);
    }
    let code = new_setup_code();
    let now = now_millis();
    store
        .replace_setup_code(setup_code_hash(&code), now, now + SETUP_CODE_TTL_MS)
        .await?;
    Ok(Some(code))
}

pub struct SetupStarted {
    pub enrolment_id: String,
    pub totp_secret: String,
    pub otpauth_url: String,
    pub qr_svg: String,
}

/// Step 1 of creating the first owner: setup code, username and password.
/// Nothing usable exists until [`setup_confirm`] proves the TOTP enrolment.
pub async fn setup_start(
    state: &Auth,
    code: &str,
    username: &str,
    password_text: &str,
) -> Result<SetupStarted, ApiError> {
    let now = now_millis();
    let code_hash = setup_code_hash(code);
    if state.store.operator_count().await? > 0 {
        return Err(ApiError::conflict(
            "an owner already exists; sign in instead",
        ));
    }
    if !state.store.setup_code_valid(code_hash, now).await? {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            ErrorCode::BadSetupCode,
            "the setup code is wrong or expired; `bulwark up` prints a new one at each start",
        ));
    }
    check_username(username)?;
    password::check_new_password_blocking(password_text.to_owned(), username.to_owned())
        .await?
        .map_err(ApiError::bad_request)?;
    let password_hash = password::hash(password_text.to_owned()).await?;
    let totp_secret = totp::new_secret();
    let (enrolment_id, id_hash) = session::new_token();
    state
        .store
        .create_setup_enrolment(
            id_hash,
            &SetupEnrolment {
                code_hash,
                username: username.to_owned(),
                password_hash,
                totp_secret: totp_secret.clone(),
                created_at: now,
                expires_at: now + ENROLMENT_TTL_MS,
            },
        )
        .await?;
    let otpauth_url = totp::otpauth_url(&totp_secret, username);
    let qr_svg = totp::qr_svg(&otpauth_url);
    Ok(SetupStarted {
        enrolment_id,
        totp_secret,
        otpauth_url,
        qr_svg,
    })
}

/// Step 2: a valid TOTP code proves the authenticator holds the secret; only
/// then is the owner created (and the setup code consumed). Returns the
/// owner and its recovery codes (shown this once).
pub async fn setup_confirm(
    state: &Auth,
    enrolment_id: &str,
    otp: &str,
) -> Result<(Operator, Vec<String>), ApiError> {
    let now = now_millis();
    let id_hash = session::hash_token(enrolment_id);
    let enrolment = state
        .store
        .setup_enrolment(id_hash, now)
        .await?
        .ok_or_else(|| {
            ApiError::not_found("setup enrolment (it expires after 15 minutes; start again)")
        })?;
    let now_secs = u64::try_from(now / 1000).unwrap_or_default();
    let step = totp::verify(&enrolment.totp_secret, otp, now_secs).ok_or_else(|| {
        ApiError::bad_request(
            "the one-time code is wrong; check the authenticator's clock and try the current code",
        )
    })?;
    let code_hash = enrolment.code_hash;
    let operator = match state
        .store
        .create_first_owner(code_hash, id_hash, now)
        .await
    {
        Ok(o) => o,
        Err(StoreError::NotFound) => {
            return Err(ApiError::not_found(
                "valid setup code (it may have expired)",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    state.store.accept_totp_step(&operator.id, step).await?;
    let codes = account::issue_recovery_codes(state, &operator, &operator.username).await?;
    Ok((operator, codes))
}

pub fn check_username(username: &str) -> Result<(), ApiError> {
    let ok = (2..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the username must be 2 to 64 characters: letters, digits, '.', '_', '-' or '@'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_codes_are_typed_forgivingly() {
        let code = new_setup_code();
        assert_eq!(code.len(), 19);
        assert_eq!(
            setup_code_hash(&code),
            setup_code_hash(&code.to_lowercase().replace('-', " "))
        );
        assert_ne!(setup_code_hash(&code), setup_code_hash(&new_setup_code()));
    }
}
