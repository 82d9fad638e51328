//! An operator's own account: sessions (listed and revoked), step-up (a
//! fresh MFA check for privileged actions), recovery codes; and disabling an
//! operator, which ends every session it holds.
//!
//! Recovery codes are 16 characters from a 32-letter alphabet (80 random
//! bits each, typed like setup codes: case, spaces and dashes do not
//! matter). The store keeps their SHA-256, not an argon2id hash: with 80
//! bits of entropy an offline search of a leaked table is out of reach
//! anyway (2^80 hashes per code), exactly as for session and enrolment
//! tokens, while a slow salted hash would cost one argon2id run per stored
//! code on every attempt (ten per login: a denial-of-service lever) for no
//! gain. Passwords are argon2id because people choose them; these codes
//! are chosen by the server.

use bulwark_api::error::ErrorCode;
use bulwark_store::AuditAction;
use bulwark_store::{Operator, SessionKind, StoreError};

use super::Auth;
use super::flows::{ClientInfo, SecondFactor, new_setup_code, setup_code_hash};
use super::policy::{Action, SessionState, session_state};
use super::session::Caller;
use super::throttle::{self, Decision, ThrottlePolicy};
use super::{passkey, totp};
use crate::api::error::ApiError;
use crate::now_millis;

/// How many recovery codes an operator holds after enrolment or regeneration.
pub const RECOVERY_CODES: usize = 10;

/// Characters of a recovery code once normalised (16 × 5 bits = 80 bits).
const RECOVERY_CODE_CHARS: usize = 16;

/// Fresh recovery codes as shown to the person, and the hashes to store.
pub fn new_recovery_codes() -> (Vec<String>, Vec<[u8; 32]>) {
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_setup_code()).collect();
    let hashes = codes.iter().map(|c| recovery_code_hash(c)).collect();
    (codes, hashes)
}

/// The stored hash of a recovery code as typed.
pub fn recovery_code_hash(code: &str) -> [u8; 32] {
    setup_code_hash(code)
}

/// Is `text` (typed in the one-time code field) shaped like a recovery code
/// rather than a 6-digit TOTP code?
pub fn looks_like_recovery_code(text: &str) -> bool {
    text.len() <= 64
        && text.chars().filter(|c| c.is_ascii_alphanumeric()).count() == RECOVERY_CODE_CHARS
}

/// Replaces `operator`'s recovery codes with new ones and returns them (the
/// only time they are shown). Audited as `recovery_codes.generated`.
pub async fn issue_recovery_codes(
    state: &Auth,
    operator: &Operator,
    actor: &str,
) -> Result<Vec<String>, ApiError> {
    let (codes, hashes) = new_recovery_codes();
    state
        .store
        .replace_recovery_codes(&operator.id, &hashes, actor, now_millis())
        .await?;
    Ok(codes)
}

/// `POST /api/v1/auth/recovery-codes`: new codes for the caller (step-up required).
pub async fn regenerate_recovery_codes(
    state: &Auth,
    caller: &Caller,
) -> Result<Vec<String>, ApiError> {
    caller.require(Action::RegenerateRecoveryCodes)?;
    issue_recovery_codes(state, &caller.operator, &caller.operator.username).await
}

async fn audit(state: &Auth, caller: &Caller, action: AuditAction, detail: String) {
    let who = &caller.operator.username;
    state
        .store
        .record_event(
            bulwark_store::NewAuditEvent::new(now_millis(), who, action, who).with_detail(detail),
        )
        .await;
}

fn step_up_failed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        ErrorCode::StepUpFailed,
        "the one-time code or passkey was not accepted (each code works once): wait for the \
         next code, or use the passkey again",
    )
}

/// Step-up with a TOTP code: [`step_up_with`] a [`SecondFactor::Code`].
pub async fn step_up(
    state: &Auth,
    caller: &Caller,
    otp: &str,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    step_up_with(state, caller, SecondFactor::Code(otp), client).await
}

/// Step-up: a TOTP code (each time step once, as at login) or a passkey
/// (a ceremony of this session, [`passkey::step_up_options`]) refreshes the
/// session's MFA time. Throttled like a login on the same username and
/// address counters, so a stolen session cannot guess codes. A code does
/// not do for an account that must use, and holds, a passkey
/// ([`super::policy::code_step_up_allowed`]). Recovery codes are for login
/// only.
pub async fn step_up_with(
    state: &Auth,
    caller: &Caller,
    factor: SecondFactor<'_>,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    caller.require(Action::StepUp)?;
    if let SecondFactor::Code(_) = factor {
        let required = passkey::required_for(state, &caller.standing).await?;
        let holds = state.store.passkey_count(&caller.operator.id).await? > 0;
        if !super::policy::code_step_up_allowed(required, holds) {
            audit(
                state,
                caller,
                AuditAction::StepUpFailed,
                format!(
                    "one-time code refused: the role requires a passkey; from {}",
                    client.ip
                ),
            )
            .await;
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                ErrorCode::StepUpFailed,
                "your role requires a passkey: confirm with your passkey, not a one-time code",
            ));
        }
    }
    let now = now_millis();
    let policy = ThrottlePolicy::default();
    let user_key = throttle::user_key(&caller.operator.username);
    let addr_key = throttle::addr_key(&client.ip);
    let attempt = state
        .store
        .update_throttle(&[&user_key, &addr_key], |before| {
            let attempt = throttle::attempt(&policy, before[0], before[1], now);
            (vec![attempt.user.counter, attempt.addr.counter], attempt)
        })
        .await?;
    let mut why = "throttled".to_owned();
    let accepted = if attempt.decision == Decision::Allow {
        match factor {
            SecondFactor::Code(otp) => {
                why = "one-time code".to_owned();
                let now_secs = u64::try_from(now / 1000).unwrap_or_default();
                match totp::verify(&caller.operator.totp_secret, otp, now_secs) {
                    Some(step) => {
                        state
                            .store
                            .accept_totp_step(&caller.operator.id, step)
                            .await?
                    }
                    None => false,
                }
            }
            SecondFactor::Passkey(assertion) => {
                match passkey::verify_step_up(state, caller, assertion).await? {
                    Ok(used) => {
                        why = format!("passkey {:?}", used.name);
                        true
                    }
                    Err(reason) => {
                        why = reason;
                        false
                    }
                }
            }
        }
    } else {
        false
    };
    if !accepted {
        audit(
            state,
            caller,
            AuditAction::StepUpFailed,
            format!("{why}; from {}", client.ip),
        )
        .await;
        return Err(step_up_failed());
    }
    state
        .store
        .update_throttle(&[&user_key, &addr_key], |before| {
            let (user, addr) = throttle::succeeded(&policy, before[1]);
            (vec![user, addr], ())
        })
        .await?;
    let who = &caller.operator.username;
    let stepped_up =
        bulwark_store::NewAuditEvent::new(now, who, AuditAction::StepUpSucceeded, who).with_detail(
            format!("session {}; {why}; from {}", caller.session_id, client.ip),
        );
    state
        .store
        .refresh_session_mfa(caller.session_hash, now, &[stepped_up])
        .await?;
    Ok(())
}

/// One of the caller's live sessions, as the session list shows it.
pub struct SessionInfo {
    pub id: String,
    pub kind: SessionKind,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub ip: String,
    pub user_agent: String,
    pub current: bool,
}

/// The caller's sessions that still work (not revoked, idle or expired), newest first.
pub async fn sessions(state: &Auth, caller: &Caller) -> Result<Vec<SessionInfo>, ApiError> {
    caller.require(Action::ManageOwnSessions)?;
    let now = now_millis();
    let sessions = state.store.list_sessions(&caller.operator.id, now).await?;
    Ok(sessions
        .into_iter()
        .filter(|s| {
            s.id_hash == caller.session_hash
                || session_state(
                    &state.session_policy,
                    s.last_seen_at,
                    s.expires_at,
                    s.revoked_at,
                    now,
                ) == SessionState::Valid
        })
        .map(|s| SessionInfo {
            current: s.id_hash == caller.session_hash,
            id: s.public_id,
            kind: s.kind,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            ip: s.ip.unwrap_or_default(),
            user_agent: s.user_agent.unwrap_or_default(),
        })
        .collect())
}

/// Ends one of the caller's own sessions (another operator's, or an unknown
/// id: the same 404). Audited as `session.revoked`.
pub async fn revoke_session(state: &Auth, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require(Action::ManageOwnSessions)?;
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::not_found("session"));
    }
    match state
        .store
        .revoke_own_session(
            &caller.operator.id,
            id,
            &caller.operator.username,
            now_millis(),
        )
        .await
    {
        Err(StoreError::NotFound) => Err(ApiError::not_found("session")),
        other => Ok(other?),
    }
}

/// Ends every session of the caller but the one it calls from. Audited as
/// `session.revoked_others`.
pub async fn revoke_other_sessions(state: &Auth, caller: &Caller) -> Result<u64, ApiError> {
    caller.require(Action::ManageOwnSessions)?;
    Ok(state
        .store
        .revoke_other_sessions(
            &caller.operator.id,
            caller.session_hash,
            &caller.operator.username,
            now_millis(),
        )
        .await?)
}

/// Disables an operator (owners only, step-up required): every session it
/// holds ends at once, and the session check refuses disabled operators
/// anyway. Audited as `operator.disabled`.
pub async fn disable_operator(
    state: &Auth,
    caller: &Caller,
    operator_id: &str,
) -> Result<Operator, ApiError> {
    caller.require(Action::DisableOperator)?;
    if operator_id == caller.operator.id {
        return Err(ApiError::conflict(
            "you cannot disable your own account; ask another owner",
        ));
    }
    if operator_id.is_empty() || operator_id.len() > 64 {
        return Err(ApiError::not_found("operator"));
    }
    match state
        .store
        .disable_operator(operator_id, &caller.operator.username, now_millis())
        .await
    {
        Err(StoreError::NotFound) => {
            Err(ApiError::not_found("operator (or it is disabled already)"))
        }
        other => Ok(other?),
    }
}

/// Lifetime of an API token when none is named.
pub const DEFAULT_TOKEN_TTL_DAYS: u32 = 90;
/// Longest lifetime an API token may be given.
pub const MAX_TOKEN_TTL_DAYS: u32 = 365;

/// What an operator asks for.
pub struct ApiTokenRequest {
    pub name: String,
    /// Any role but owner.
    pub role: String,
    pub tenants: Vec<String>,
    pub ttl_days: Option<u32>,
}

/// Makes an API token for the caller (step-up required), with a role the
/// caller holds on each named tenant (owners: any non-owner role). The
/// secret is in the result only; audited as `api_token.created`.
pub async fn create_api_token(
    state: &Auth,
    caller: &Caller,
    request: ApiTokenRequest,
) -> Result<(String, bulwark_store::ApiToken), ApiError> {
    caller.require(Action::CreateApiToken)?;
    let name = request.name.trim();
    if name.is_empty() || request.name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "a token name is 1 to 64 printable characters",
        ));
    }
    let role = super::Role::parse_grant(&request.role).ok_or_else(|| {
        ApiError::bad_request(
            "role must be security_officer, technician, read_only or tenant_auditor",
        )
    })?;
    let ttl_days = request.ttl_days.unwrap_or(DEFAULT_TOKEN_TTL_DAYS);
    if !(1..=MAX_TOKEN_TTL_DAYS).contains(&ttl_days) {
        return Err(ApiError::bad_request(format!(
            "ttl_days must be between 1 and {MAX_TOKEN_TTL_DAYS}"
        )));
    }
    let mut names = request.tenants;
    names.sort();
    names.dedup();
    if names.is_empty() || names.len() > super::invite::MAX_TENANTS {
        return Err(ApiError::bad_request(format!(
            "name 1 to {} tenants",
            super::invite::MAX_TENANTS
        )));
    }
    let scope = caller.scope();
    let mut tenant_ids = Vec::with_capacity(names.len());
    for name in &names {
        let tenant = state
            .store
            .tenant_by_name(&scope, name)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant"))?;
        if !caller.is_owner() && caller.standing.role_on(&tenant.id) != Some(role) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "a token can only hold a role you hold yourself on each of its tenants",
            ));
        }
        tenant_ids.push(tenant.id);
    }
    let (secret, hash) = super::session::new_token();
    let now = now_millis();
    let token = state
        .store
        .create_api_token(
            &bulwark_store::NewApiToken {
                token_hash: hash,
                operator_id: caller.operator.id.clone(),
                name: name.to_owned(),
                role: role.as_str().to_owned(),
                tenant_ids,
                created_at: now,
                expires_at: now + i64::from(ttl_days) * 86_400_000,
            },
            &caller.operator.username,
        )
        .await?;
    Ok((
        format!("{}{secret}", super::session::API_TOKEN_PREFIX),
        token,
    ))
}

/// The caller's API tokens still in force, newest first.
pub async fn api_tokens(
    state: &Auth,
    caller: &Caller,
) -> Result<Vec<bulwark_store::ApiToken>, ApiError> {
    caller.require(Action::ManageOwnApiTokens)?;
    Ok(state
        .store
        .list_api_tokens(&caller.operator.id, now_millis())
        .await?)
}

/// Revokes one of the caller's API tokens (another's: the same 404).
pub async fn revoke_api_token(state: &Auth, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require(Action::ManageOwnApiTokens)?;
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::not_found("API token"));
    }
    match state
        .store
        .revoke_api_token(
            &caller.operator.id,
            id,
            &caller.operator.username,
            now_millis(),
        )
        .await
    {
        Err(StoreError::NotFound) => Err(ApiError::not_found("API token")),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_distinct_and_typed_forgivingly() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut unique = hashes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
        for (code, hash) in codes.iter().zip(&hashes) {
            assert!(looks_like_recovery_code(code), "{code}");
            assert_eq!(
                recovery_code_hash(&code.to_lowercase().replace('-', " ")),
                *hash
            );
        }
        assert!(!looks_like_recovery_code("123456"));
        assert!(!looks_like_recovery_code(""));
    }
}
