//! Inviting operators: an owner names the username and the grants; the
//! invited person redeems the one-time link in two steps, exactly like the
//! first owner's setup ([`super::flows::setup_start`] / `setup_confirm`):
//! choose a password and receive a TOTP secret, then prove the
//! authenticator with a code. Only then is the account created, with its
//! grants, and the invitation consumed (one transaction in the store).

use bulwark_store::{
    ACCOUNT_OPERATOR, ACCOUNT_OWNER, Grant, Invitation, InvitationEnrolment, NewInvitation,
    Operator, StoreError,
};

use super::Auth;
use super::flows::{SetupStarted, check_username};
use super::policy::{Action, Role};
use super::session::{self, Caller};
use super::{password, totp};
use crate::api::error::ApiError;
use crate::now_millis;

/// Lifetime of an invitation link when the owner names none.
pub const DEFAULT_TTL_HOURS: u32 = 72;
/// Longest lifetime an invitation link may be given (7 days).
pub const MAX_TTL_HOURS: u32 = 7 * 24;
/// Most tenants one invitation may grant.
pub const MAX_TENANTS: usize = 256;
/// How long a redemption waits for its TOTP confirmation.
const ENROLMENT_TTL_MS: i64 = 15 * 60 * 1000;

/// What an owner asks for.
pub struct InviteRequest {
    pub username: String,
    /// Any role; [`Role::Owner`] grants every tenant and takes no tenant list.
    pub role: Role,
    /// Tenant names the role is granted on (exactly one for a tenant auditor).
    pub tenants: Vec<String>,
    pub ttl_hours: Option<u32>,
}

/// A new invitation and its link token (shown once; only its hash is stored).
pub struct Issued {
    pub token: String,
    pub invitation: Invitation,
}

/// Where the invited person goes: the console's redemption page.
pub fn invite_path(token: &str) -> String {
    format!("/invite/{token}")
}

/// Stores an invitation (owners only); audited as `operator.invited`.
pub async fn invite(
    state: &Auth,
    caller: &Caller,
    request: InviteRequest,
) -> Result<Issued, ApiError> {
    caller.require(Action::InviteOperator)?;
    check_username(&request.username)?;
    let ttl_hours = request.ttl_hours.unwrap_or(DEFAULT_TTL_HOURS);
    if !(1..=MAX_TTL_HOURS).contains(&ttl_hours) {
        return Err(ApiError::bad_request(format!(
            "ttl_hours must be between 1 and {MAX_TTL_HOURS}"
        )));
    }
    let mut names = request.tenants;
    names.sort();
    names.dedup();
    let account_role = match request.role {
        Role::Owner if names.is_empty() => ACCOUNT_OWNER,
        Role::Owner => {
            return Err(ApiError::bad_request(
                "an owner acts on every tenant: name no tenants",
            ));
        }
        Role::TenantAuditor if names.len() != 1 => {
            return Err(ApiError::bad_request(
                "a tenant auditor is granted exactly one tenant",
            ));
        }
        _ if names.is_empty() => {
            return Err(ApiError::bad_request(
                "name at least one tenant to grant the role on",
            ));
        }
        _ => ACCOUNT_OPERATOR,
    };
    if names.len() > MAX_TENANTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_TENANTS} tenants per invitation"
        )));
    }
    let scope = caller.scope();
    let mut grants = Vec::with_capacity(names.len());
    for name in &names {
        let tenant = state
            .store
            .tenant_by_name(&scope, name)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant"))?;
        grants.push((tenant.id, request.role.as_str().to_owned()));
    }
    let (token, token_hash) = session::new_token();
    let now = now_millis();
    let invitation = state
        .store
        .create_invitation(
            &NewInvitation {
                token_hash,
                username: request.username,
                account_role: account_role.to_owned(),
                grants,
                created_by: caller.operator.id.clone(),
                created_at: now,
                expires_at: now + i64::from(ttl_hours) * 3_600_000,
            },
            &caller.operator.username,
        )
        .await?;
    Ok(Issued { token, invitation })
}

/// Invitations still waiting to be redeemed (owners only).
pub async fn pending(state: &Auth, caller: &Caller) -> Result<Vec<Invitation>, ApiError> {
    caller.require(Action::ManageInvitations)?;
    Ok(state.store.pending_invitations(now_millis()).await?)
}

/// Revokes a pending invitation (owners only); audited as `invitation.revoked`.
pub async fn revoke(state: &Auth, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require(Action::ManageInvitations)?;
    match state
        .store
        .revoke_invitation(id, &caller.operator.username, now_millis())
        .await
    {
        Err(StoreError::NotFound) => Err(ApiError::not_found("pending invitation")),
        other => Ok(other?),
    }
}

fn no_invitation() -> ApiError {
    ApiError::not_found("invitation (it may have expired, been used or been revoked)")
}

/// The pending invitation a link token names.
pub async fn lookup(state: &Auth, token: &str) -> Result<Invitation, ApiError> {
    if token.is_empty() || token.len() > 128 {
        return Err(no_invitation());
    }
    state
        .store
        .invitation_by_token(session::hash_token(token), now_millis())
        .await?
        .ok_or_else(no_invitation)
}

/// Step 1 of redeeming: the link token and a password. Nothing usable
/// exists until [`confirm`] proves the TOTP enrolment.
pub async fn redeem(
    state: &Auth,
    token: &str,
    password_text: &str,
) -> Result<SetupStarted, ApiError> {
    let invitation = lookup(state, token).await?;
    password::check_new_password_blocking(password_text.to_owned(), invitation.username.clone())
        .await?
        .map_err(ApiError::bad_request)?;
    let password_hash = password::hash(password_text.to_owned()).await?;
    let totp_secret = totp::new_secret();
    let (enrolment_id, id_hash) = session::new_token();
    let now = now_millis();
    state
        .store
        .create_invitation_enrolment(
            id_hash,
            &InvitationEnrolment {
                invitation_id: invitation.id,
                username: invitation.username.clone(),
                password_hash,
                totp_secret: totp_secret.clone(),
                created_at: now,
                expires_at: now + ENROLMENT_TTL_MS,
            },
        )
        .await?;
    let otpauth_url = totp::otpauth_url(&totp_secret, &invitation.username);
    let qr_svg = totp::qr_svg(&otpauth_url);
    Ok(SetupStarted {
        enrolment_id,
        totp_secret,
        otpauth_url,
        qr_svg,
    })
}

/// The enrolment a redemption started, while it and its invitation are usable.
pub async fn enrolment(state: &Auth, enrolment_id: &str) -> Result<InvitationEnrolment, ApiError> {
    state
        .store
        .invitation_enrolment(session::hash_token(enrolment_id), now_millis())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "invitation enrolment (it expires after 15 minutes; open the invitation link again)",
            )
        })
}

/// Step 2: a valid TOTP code proves the authenticator holds the secret; only
/// then is the operator created with its grants and the invitation consumed.
/// Also returns its recovery codes (shown this once).
pub async fn confirm(
    state: &Auth,
    enrolment_id: &str,
    otp: &str,
) -> Result<(Operator, Vec<Grant>, Vec<String>), ApiError> {
    let now = now_millis();
    let pending = enrolment(state, enrolment_id).await?;
    let now_secs = u64::try_from(now / 1000).unwrap_or_default();
    let step = totp::verify(&pending.totp_secret, otp, now_secs).ok_or_else(|| {
        ApiError::bad_request(
            "the one-time code is wrong; check the authenticator's clock and try the current code",
        )
    })?;
    let (operator, grants) = match state
        .store
        .accept_invitation(session::hash_token(enrolment_id), now)
        .await
    {
        Ok(done) => done,
        Err(StoreError::NotFound) => return Err(no_invitation()),
        Err(e) => return Err(e.into()),
    };
    state.store.accept_totp_step(&operator.id, step).await?;
    let codes = super::account::issue_recovery_codes(state, &operator, &operator.username).await?;
    Ok((operator, grants, codes))
}
