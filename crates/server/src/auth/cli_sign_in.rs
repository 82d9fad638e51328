//! `bulwark login --device`: the OAuth 2.0 device authorization grant
//! (RFC 8628) with a passkey as the approval.
//!
//! 1. The CLI asks `POST /api/v1/auth/device` (public) and gets a
//!    `device_code` (32 random bytes, its secret; kept here only as its
//!    SHA-256), a `user_code` (8 letters, `BCDF-GHJK`, from the RFC's
//!    20-consonant alphabet: no vowels, so no words), the console path
//!    `/device`, `expires_in` (10 minutes) and `interval` (5 s).
//! 2. A signed-in operator types the user code on `/device`, sees what is
//!    asking (address, user agent, time) and approves with a **fresh
//!    passkey assertion** made for this session and this code (a ceremony
//!    of [`super::passkey::device_approval_options`]; a step-up or a TOTP
//!    code is not enough), or denies. Audit: `session.device_approved`,
//!    `session.device_denied`, `session.device_approval_failed`.
//! 3. The CLI polls `POST /api/v1/auth/device/token` with the device code:
//!    `authorization_pending`, `slow_down` (polled before `interval` passed;
//!    the interval grows by 5 s each time), `access_denied`, `expired_token`
//!    (RFC 8628 §3.5), `invalid_grant` (unknown or used), or, once
//!    approved, a new CLI session of the approving operator whose MFA time
//!    is the approval time and which counts as signed in with the passkey
//!    used. The code is gone once answered with a session or a denial
//!    (single use).
//!
//! Throttles: at most [`MAX_PENDING_PER_ADDRESS`] unexpired requests per
//! client address and [`MAX_PENDING`] in all; a signed-in operator may type
//! [`MAX_WRONG_CODES`] wrong (well-formed) user codes per
//! [`WRONG_CODE_WINDOW_MS`], then every lookup is refused (429) until the
//! window ends. A malformed code is refused before any lookup.
//!
//! Like passkey ceremonies, requests live in the database (RFD 0018,
//! migration 0035): the CLI may poll one node while the console approves
//! on another, and a restart does not end the sign-ins in flight. The
//! wrong-code counts are sign-in throttle rows (`device-code:<operator>`).

use bulwark_api::error::ErrorCode;
use bulwark_api::passkeys::AssertionCeremony;
use bulwark_store::AuditAction;
use bulwark_store::{DeviceAnswer, DeviceSignIn, StoreError, ThrottleCounter};

use axum::http::StatusCode;
use bulwark_store::{NewAuditEvent, NewSession, SessionKind};
use rand::RngCore;

use super::Auth;
use super::flows::{ClientInfo, NewLogin};
use super::passkey::{self, Assertion};
use super::policy::Action;
use super::session::{self, Caller};
use crate::api::error::ApiError;
use crate::now_millis;

/// How long a device code may be approved and polled (RFC 8628 `expires_in`).
pub const DEVICE_CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// The least time between two polls (RFC 8628 `interval`), in seconds.
pub const POLL_INTERVAL_SECS: u64 = 5;
/// Unexpired requests one client address may hold.
pub const MAX_PENDING_PER_ADDRESS: usize = 32;
/// Unexpired requests in all (starting one needs no session).
pub const MAX_PENDING: usize = 10_000;
/// Wrong user codes one operator may type per window.
pub const MAX_WRONG_CODES: u32 = 5;
/// The window of [`MAX_WRONG_CODES`].
pub const WRONG_CODE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// The console page the user code is typed on.
pub const VERIFICATION_PATH: &str = "/device";
/// RFC 8628 §6.1: consonants only, so no word (and no 0/O, 1/I) appears.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Expired requests are kept this long to answer `expired_token`.
pub const KEEP_EXPIRED_MS: i64 = 10 * 60 * 1000;

/// What one poll does (RFC 8628 §3.5), decided from the stored request
/// and the time alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Answer this, change nothing.
    Answer(PollError),
    /// Still pending: record this poll (and the interval, grown after a
    /// poll too soon), then answer.
    Record { interval_ms: i64, answer: PollError },
    /// Answered in the console: take the request out (once) and hand out
    /// what it holds.
    Take,
}

fn step(flow: &DeviceSignIn, now: i64) -> Step {
    if now >= flow.expires_at {
        return Step::Answer(PollError::ExpiredToken);
    }
    match flow.answer {
        DeviceAnswer::Pending => {
            let early = flow
                .last_poll_at
                .is_some_and(|at| now - at < flow.interval_ms);
            if early {
                Step::Record {
                    interval_ms: flow.interval_ms.saturating_add(5_000),
                    answer: PollError::SlowDown,
                }
            } else {
                Step::Record {
                    interval_ms: flow.interval_ms,
                    answer: PollError::AuthorizationPending,
                }
            }
        }
        DeviceAnswer::Approved { .. } | DeviceAnswer::Denied => Step::Take,
    }
}

/// The throttle key counting `operator_id`'s wrong user codes.
fn wrong_codes_key(operator_id: &str) -> String {
    format!("device-code:{operator_id}")
}

/// `operator_id`'s wrong codes in the current window, after adding one if
/// `wrong`. Kept with the sign-in throttles, so every node counts the same.
async fn wrong_codes(
    state: &Auth,
    operator_id: &str,
    wrong: bool,
    now: i64,
) -> Result<u32, ApiError> {
    let key = wrong_codes_key(operator_id);
    let count = state
        .store
        .update_throttle(&[&key], |before| {
            let mut counter = before[0];
            if now >= counter.window_start.saturating_add(WRONG_CODE_WINDOW_MS) {
                counter = ThrottleCounter::default();
            }
            if wrong {
                if counter.failures == 0 {
                    counter.window_start = now;
                }
                counter.failures += 1;
                counter.last_failure_at = now;
            }
            (vec![counter], counter.failures)
        })
        .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// What `POST /api/v1/auth/device` answers.
pub struct Started {
    pub device_code: String,
    pub user_code: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// A pending request as the approving operator sees it.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    pub user_code: String,
    pub ip: String,
    pub user_agent: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The RFC 8628 §3.5 (and RFC 6749 §5.2) answers to a poll without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    InvalidGrant,
}

impl PollError {
    pub fn code(self) -> &'static str {
        match self {
            PollError::AuthorizationPending => "authorization_pending",
            PollError::SlowDown => "slow_down",
            PollError::AccessDenied => "access_denied",
            PollError::ExpiredToken => "expired_token",
            PollError::InvalidGrant => "invalid_grant",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            PollError::AuthorizationPending => {
                "not approved yet: approve the code in the console, then poll again"
            }
            PollError::SlowDown => "polled too soon: wait the interval (now 5 s longer)",
            PollError::AccessDenied => "the sign-in was denied in the console",
            PollError::ExpiredToken => "the code expired: start `bulwark login --device` again",
            PollError::InvalidGrant => "unknown or already used device code",
        }
    }
}

fn new_user_code() -> String {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // 256 = 12 * 20 + 16: reject the top 16 values so every letter is equally likely.
    let mut chars = Vec::with_capacity(8);
    let mut pool = bytes.to_vec();
    while chars.len() < 8 {
        if pool.is_empty() {
            let mut more = [0u8; 8];
            rand::rngs::OsRng.fill_bytes(&mut more);
            pool.extend_from_slice(&more);
        }
        let b = pool.remove(0);
        if b < 240 {
            chars.push(char::from(
                USER_CODE_ALPHABET[usize::from(b) % USER_CODE_ALPHABET.len()],
            ));
        }
    }
    let text: String = chars.into_iter().collect();
    format!("{}-{}", &text[..4], &text[4..])
}

/// A user code as typed (case, spaces and dashes do not matter), in its
/// canonical `XXXX-XXXX` form; `None` if it cannot be one.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    if typed.len() > 32 {
        return None;
    }
    let letters: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = letters.len() == 8 && letters.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    ok.then(|| format!("{}-{}", &letters[..4], &letters[4..]))
}

fn malformed_code() -> ApiError {
    ApiError::bad_request("a code is 8 letters, as `bulwark login --device` printed it (XXXX-XXXX)")
}

fn unknown_code() -> ApiError {
    ApiError::not_found(
        "pending sign-in with this code (check it, or run `bulwark login --device` again: codes \
         expire after 10 minutes and work once)",
    )
}

fn too_many_wrong_codes() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooManyAttempts,
        "too many wrong codes: wait 15 minutes, then type the code the CLI shows",
    )
}

/// Starts a device sign-in for the CLI at `client`.
pub async fn start(state: &Auth, client: &ClientInfo) -> Result<Started, ApiError> {
    let now = now_millis();
    let (device_code, hash) = session::new_token();
    let mut request = DeviceSignIn {
        device_hash: hash,
        user_code: new_user_code(),
        ip: client.ip.chars().take(64).collect(),
        user_agent: client.user_agent.chars().take(256).collect(),
        created_at: now,
        expires_at: now + DEVICE_CODE_TTL_MS,
        interval_ms: i64::try_from(POLL_INTERVAL_SECS * 1000).unwrap_or(5_000),
        last_poll_at: None,
        answer: DeviceAnswer::Pending,
    };
    // A user code already waiting: draw another (20^8 codes; a few tries
    // at most even with the table full).
    let mut tries = 0;
    let kept = loop {
        match state
            .store
            .start_device_sign_in(
                &request,
                now - KEEP_EXPIRED_MS,
                MAX_PENDING_PER_ADDRESS as i64,
                MAX_PENDING as i64,
            )
            .await
        {
            Err(StoreError::Conflict(_)) if tries < 8 => {
                tries += 1;
                request.user_code = new_user_code();
            }
            other => break other?,
        }
    };
    if kept.is_err() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            "too many sign-ins are waiting for approval from this address: approve or let them \
             expire (10 minutes) first",
        ));
    }
    Ok(Started {
        device_code,
        user_code: request.user_code,
        expires_in: u64::try_from(DEVICE_CODE_TTL_MS / 1000).unwrap_or(600),
        interval: POLL_INTERVAL_SECS,
    })
}

/// The pending request `typed` names, for `caller` to see before approving.
/// Counts wrong codes against the caller ([`MAX_WRONG_CODES`]).
pub async fn lookup(state: &Auth, caller: &Caller, typed: &str) -> Result<DeviceRequest, ApiError> {
    caller.require(Action::ApproveDevice)?;
    let user_code = normalize_user_code(typed).ok_or_else(malformed_code)?;
    let now = now_millis();
    let operator = caller.operator.id.clone();
    if wrong_codes(state, &operator, false, now).await? >= MAX_WRONG_CODES {
        return Err(too_many_wrong_codes());
    }
    let found = state
        .store
        .device_sign_in_by_code(&user_code)
        .await?
        .filter(|f| now < f.expires_at && f.answer == DeviceAnswer::Pending)
        .map(|f| DeviceRequest {
            user_code: f.user_code,
            ip: f.ip,
            user_agent: f.user_agent,
            created_at: f.created_at,
            expires_at: f.expires_at,
        });
    match found {
        Some(request) => Ok(request),
        None => {
            wrong_codes(state, &operator, true, now).await?;
            Err(unknown_code())
        }
    }
}

/// Passkey options for approving `typed` (a pending code; see [`lookup`]).
pub async fn approval_options(
    state: &Auth,
    caller: &Caller,
    typed: &str,
) -> Result<AssertionCeremony, ApiError> {
    let request = lookup(state, caller, typed).await?;
    passkey::device_approval_options(state, caller, &request.user_code).await
}

async fn audit(state: &Auth, caller: &Caller, action: AuditAction, detail: String) {
    state
        .store
        .record_event(
            NewAuditEvent::new(
                now_millis(),
                &caller.operator.username,
                action,
                &caller.operator.username,
            )
            .with_detail(detail),
        )
        .await;
}

/// Approves the pending sign-in `typed` with a fresh passkey assertion made
/// for this session and this code. Audited as `session.device_approved`.
pub async fn approve(
    state: &Auth,
    caller: &Caller,
    typed: &str,
    assertion: &Assertion,
) -> Result<DeviceRequest, ApiError> {
    let request = lookup(state, caller, typed).await?;
    let used = match passkey::verify_device_approval(state, caller, &request.user_code, assertion)
        .await?
    {
        Ok(used) => used,
        Err(reason) => {
            audit(
                state,
                caller,
                AuditAction::SessionDeviceApprovalFailed,
                format!("code {}: {reason}", request.user_code),
            )
            .await;
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::PasskeyRejected,
                "the passkey did not confirm this approval: try again",
            ));
        }
    };
    let now = now_millis();
    let approved = DeviceAnswer::Approved {
        operator_id: caller.operator.id.clone(),
        passkey_id: used.id.clone(),
        approved_at: now,
    };
    if !state
        .store
        .answer_device_sign_in(&request.user_code, &approved, now)
        .await?
    {
        return Err(unknown_code());
    }
    audit(
        state,
        caller,
        AuditAction::SessionDeviceApproved,
        format!(
            "cli sign-in {} from {} ({}) approved with passkey {:?}",
            request.user_code, request.ip, request.user_agent, used.name
        ),
    )
    .await;
    Ok(request)
}

/// Denies the pending sign-in `typed`: its next poll is `access_denied`.
/// Audited as `session.device_denied`.
pub async fn deny(state: &Auth, caller: &Caller, typed: &str) -> Result<(), ApiError> {
    let request = lookup(state, caller, typed).await?;
    if !state
        .store
        .answer_device_sign_in(&request.user_code, &DeviceAnswer::Denied, now_millis())
        .await?
    {
        return Err(unknown_code());
    }
    audit(
        state,
        caller,
        AuditAction::SessionDeviceDenied,
        format!(
            "cli sign-in {} from {} ({}) denied",
            request.user_code, request.ip, request.user_agent
        ),
    )
    .await;
    Ok(())
}

/// One poll of the CLI holding `device_code`: an RFC 8628 error, or (once)
/// the new CLI session.
pub async fn poll(
    state: &Auth,
    device_code: &str,
) -> Result<Result<NewLogin, PollError>, ApiError> {
    if device_code.is_empty() || device_code.len() > 128 {
        return Ok(Err(PollError::InvalidGrant));
    }
    let hash = session::hash_token(device_code);
    let now = now_millis();
    let Some(flow) = state.store.device_sign_in(&hash).await? else {
        return Ok(Err(PollError::InvalidGrant));
    };
    match step(&flow, now) {
        Step::Answer(answer) => return Ok(Err(answer)),
        Step::Record {
            interval_ms,
            answer,
        } => {
            state
                .store
                .record_device_poll(&hash, now, interval_ms)
                .await?;
            return Ok(Err(answer));
        }
        Step::Take => {}
    }
    // One statement takes it out: of two polls at once (on any nodes),
    // one gets the session.
    let Some(taken) = state.store.take_device_sign_in(&flow).await? else {
        return Ok(Err(PollError::InvalidGrant));
    };
    let (operator_id, passkey_id, approved_at) = match taken.answer {
        DeviceAnswer::Approved {
            operator_id,
            passkey_id,
            approved_at,
        } => (operator_id, passkey_id, approved_at),
        DeviceAnswer::Denied => return Ok(Err(PollError::AccessDenied)),
        DeviceAnswer::Pending => return Ok(Err(PollError::InvalidGrant)),
    };
    let client = ClientInfo {
        ip: taken.ip,
        user_agent: taken.user_agent,
    };
    let Some(operator) = state.store.operator_by_id(&operator_id).await? else {
        return Ok(Err(PollError::AccessDenied));
    };
    if operator.disabled_at.is_some() {
        return Ok(Err(PollError::AccessDenied));
    }
    let (token, token_hash) = session::new_token();
    let (csrf_token, _) = session::new_token();
    let expires_at = now + state.session_policy.absolute_lifetime_ms;
    let signed_in = NewAuditEvent::new(
        now,
        &operator.username,
        AuditAction::LoginSucceeded,
        &operator.username,
    )
    .with_detail(format!(
        "cli session from {} by device code (approved in the console with a passkey)",
        client.ip
    ));
    state
        .store
        .create_session(
            NewSession {
                id_hash: token_hash,
                operator_id: operator.id.clone(),
                kind: SessionKind::Cli,
                csrf_token,
                created_at: now,
                expires_at,
                mfa_at: approved_at,
                ip: Some(client.ip.clone()),
                user_agent: Some(client.user_agent.clone()),
                // Signed in with the passkey that approved it (the passkey
                // policy sees so).
                passkey_id: Some(passkey_id),
            },
            &[signed_in],
        )
        .await?;
    Ok(Ok(NewLogin {
        token,
        expires_at,
        operator,
        passkey_enrolment_only: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_typed_forgivingly() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(code.len(), 9);
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
            let typed = code.to_lowercase().replace('-', " ");
            assert_eq!(normalize_user_code(&typed).as_deref(), Some(code.as_str()));
        }
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(normalize_user_code("BCDF-GHJA"), None, "no vowels");
        assert_eq!(normalize_user_code("BCDF-GHJ1"), None);
        assert_eq!(normalize_user_code(&"B".repeat(40)), None);
    }

    fn flow(now: i64, answer: DeviceAnswer) -> DeviceSignIn {
        DeviceSignIn {
            device_hash: [7; 32],
            user_code: "BCDF-GHJK".to_owned(),
            ip: String::new(),
            user_agent: String::new(),
            created_at: now,
            expires_at: now + DEVICE_CODE_TTL_MS,
            interval_ms: 5_000,
            last_poll_at: None,
            answer,
        }
    }

    #[test]
    fn polls_follow_rfc_8628() {
        let now = 1_000_000;
        let mut f = flow(now, DeviceAnswer::Pending);
        let pending = |interval_ms| Step::Record {
            interval_ms,
            answer: PollError::AuthorizationPending,
        };
        let slow = |interval_ms| Step::Record {
            interval_ms,
            answer: PollError::SlowDown,
        };
        assert_eq!(step(&f, now), pending(5_000));
        f.last_poll_at = Some(now);
        assert_eq!(step(&f, now + 1_000), slow(10_000));
        // The interval grew by 5 s: 9 s after the last poll is still early.
        f.interval_ms = 10_000;
        f.last_poll_at = Some(now + 1_000);
        assert_eq!(step(&f, now + 10_000), slow(15_000));
        f.interval_ms = 15_000;
        f.last_poll_at = Some(now + 10_000);
        assert_eq!(step(&f, now + 30_000), pending(15_000));
        // Expired: `expired_token`, whatever the answer.
        assert_eq!(
            step(&f, now + DEVICE_CODE_TTL_MS),
            Step::Answer(PollError::ExpiredToken)
        );
        let approved = DeviceAnswer::Approved {
            operator_id: "op".to_owned(),
            passkey_id: "pk".to_owned(),
            approved_at: now + 5,
        };
        assert_eq!(step(&flow(now, approved.clone()), now + 10), Step::Take);
        assert_eq!(
            step(&flow(now, approved), now + DEVICE_CODE_TTL_MS),
            Step::Answer(PollError::ExpiredToken)
        );
        assert_eq!(step(&flow(now, DeviceAnswer::Denied), now), Step::Take);
    }
}
