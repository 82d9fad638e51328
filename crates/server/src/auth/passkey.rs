//! Passkeys and security keys (WebAuthn) for operators: registration, a
//! passkey as the second factor at login and at step-up, and the owner's
//! policy naming the roles that must sign in with one.
//!
//! Verification is `bulwark_policy::webauthn` (pure; no OpenSSL, no second
//! crypto stack): [`parse_registration`] and [`verify_assertion`], with user
//! verification required and the origin rule written there (the console's
//! host, exactly). This module adds what needs state:
//!
//! - **Challenges** live in the database ([`super::ceremonies`], with the
//!   budgets that bound them), so any node answers a ceremony another began:
//!   32 random bytes, single use (taken out on the first answer, right or
//!   wrong, by one statement), bound to their purpose (the session
//!   registering or stepping up, or the username signing in), and gone
//!   after [`super::ceremonies::CEREMONY_TTL_MS`].
//! - **The signature counter** ([`counter_acceptable`], WebAuthn §7.2 step
//!   21): when either the stored or the received counter is non-zero, the
//!   received one must be greater. Otherwise two copies of the credential
//!   exist (a cloned authenticator): the login is refused and
//!   `passkey.counter_regressed` recorded. The store moves the counter by
//!   compare-and-set, so of two logins reading the same counter only one
//!   passes.
//! - **The relying party id** is the console's host: `localhost` for
//!   `bulwark up`, else the first of `public_hostnames` ([`rp_id_for`]). A
//!   credential is bound to the RP id it was made for (stored with it).
//! - **Require by role**: the owner names roles ([`required_roles`]); an
//!   account holding any of them (on any tenant) must sign in with a
//!   passkey. The decisions are pure, in [`super::policy`]:
//!   `login_outcome` at login, and `decide` on every request, through
//!   [`session_credential`] which marks a session signed in without a
//!   passkey as [`Credential::NeedsPasskey`].
//!
//! Audit: `passkey.added`, `passkey.renamed`, `passkey.removed` (by the
//! store, in the change's transaction), `passkey.counter_regressed`,
//! `settings.passkey_policy_changed`, and the login and step-up events of
//! [`super::flows`] and [`super::account`].

use bulwark_api::error::ErrorCode;
use bulwark_api::passkeys::{
    AssertionCeremony, AuthenticatorSelection, CreationOptions, CredentialDescriptor,
    CredentialParameter, RegistrationCeremony, RelyingParty, RequestOptions, UserEntity,
};
use bulwark_store::AuditAction;
use std::net::IpAddr;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_policy::webauthn::{WebAuthnCredential, parse_registration, verify_assertion};
use bulwark_protocol::codec::{from_canonical, to_canonical};
use bulwark_store::{LastPasskey, NewAuditEvent, NewPasskey, Operator, Passkey, StoreError};

use super::Auth;
use super::ceremonies::{self, Owner, Purpose};
use super::policy::{self, Action, Credential, Role, Standing};
use super::session::Caller;
use crate::api::error::ApiError;
use crate::api::refusals::base64url_field;
use crate::config::ServeMode;
use crate::now_millis;

/// What the browser is told (`timeout`): a little less than the TTL.
pub const CEREMONY_TIMEOUT_MS: u64 = 2 * 60 * 1000;
/// Most passkeys one operator may hold (bounds `excludeCredentials` and
/// `allowCredentials`).
pub const MAX_PASSKEYS: usize = 20;
/// The setting holding the roles that must sign in with a passkey.
pub const REQUIRED_ROLES_SETTING: &str = "passkey_required_roles";
/// Shown to people as the relying party's name.
const RP_NAME: &str = "Bulwark";

/// The WebAuthn relying party id of a server: `localhost` for `bulwark up`
/// (http://localhost is a secure context), else the first public host name,
/// lowercased. `None` when that is missing or an IP address (an RP id is a
/// DNS name): passkeys are then unavailable and say why.
pub fn rp_id_for(mode: ServeMode, public_hostnames: &[String]) -> Option<String> {
    match mode {
        ServeMode::LoopbackHttp => Some("localhost".to_owned()),
        ServeMode::Https => {
            let host = public_hostnames.first()?.trim().to_ascii_lowercase();
            let dns = !host.is_empty()
                && host.len() <= bulwark_policy::webauthn::MAX_RP_ID
                && host.parse::<IpAddr>().is_err()
                && host.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            dns.then_some(host)
        }
    }
}

fn rp_id(state: &Auth) -> Result<&str, ApiError> {
    state.rp_id.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::PasskeysUnavailable,
            "passkeys need the console served under a DNS name: set public_hostnames in the \
             server configuration (the first one is the relying party id)",
        )
    })
}

/// The answer to an action a session may not take before it signs in with
/// a passkey ([`policy::Decision::PasskeyRequired`]).
pub fn passkey_required() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::PasskeyRequired,
        "your role requires signing in with a passkey: add one on your account page, \
         then sign out and sign in with it",
    )
}

/// The answer to a one-time code where the account must use its passkey.
pub fn login_code_refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::PasskeyRequired,
        "your role requires signing in with a passkey: choose \"Sign in with a passkey\" \
         (a one-time code is not enough)",
    )
}

// ------------------------------------------------------- WebAuthn JSON options

fn credential_descriptor(credential_id: &[u8]) -> CredentialDescriptor {
    CredentialDescriptor {
        kind: "public-key".to_owned(),
        id: URL_SAFE_NO_PAD.encode(credential_id),
    }
}

fn request_options(rp_id: &str, challenge: &[u8; 32], allow: Vec<Vec<u8>>) -> RequestOptions {
    RequestOptions {
        challenge: URL_SAFE_NO_PAD.encode(challenge),
        rp_id: rp_id.to_owned(),
        timeout: CEREMONY_TIMEOUT_MS,
        allow_credentials: allow.iter().map(|id| credential_descriptor(id)).collect(),
        user_verification: "required".to_owned(),
    }
}

// ------------------------------------------------------------ browser answers

/// What `navigator.credentials.get` returned, decoded.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub ceremony: String,
    pub credential_id: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Assertion {
    /// From the base64url fields the browser's script sends. Sizes are
    /// capped here; the verifier caps them again.
    pub fn decode(
        ceremony: &str,
        credential_id: &str,
        authenticator_data: &str,
        client_data_json: &str,
        signature: &str,
    ) -> Result<Self, ApiError> {
        use bulwark_policy::webauthn as w;
        Ok(Self {
            ceremony: ceremony.to_owned(),
            credential_id: base64url_field("credentialId", credential_id, w::MAX_CREDENTIAL_ID)?,
            authenticator_data: base64url_field(
                "authenticatorData",
                authenticator_data,
                w::MAX_AUTHENTICATOR_DATA,
            )?,
            client_data_json: base64url_field(
                "clientDataJSON",
                client_data_json,
                w::MAX_CLIENT_DATA_JSON,
            )?,
            signature: base64url_field("signature", signature, w::MAX_SIGNATURE)?,
        })
    }
}

/// WebAuthn Level 2 §7.2 step 21: if either counter is non-zero, the
/// received one must be greater than the stored one; otherwise the
/// credential exists twice (a cloned authenticator). Both zero: the
/// authenticator keeps no counter (synced passkeys), nothing to compare.
pub fn counter_acceptable(stored: u32, received: u32) -> bool {
    (stored == 0 && received == 0) || received > stored
}

/// Checks `assertion` against the stored `passkey` and a `challenge` this
/// server issued, then moves its counter. `Ok(Err(reason))` is a refusal
/// (the reason is for the audit log, never for the client).
async fn verify_with(
    state: &Auth,
    operator: &Operator,
    passkey: &Passkey,
    challenge: &[u8; 32],
    assertion: &Assertion,
    now: i64,
) -> Result<Result<(), String>, ApiError> {
    let credential: WebAuthnCredential = from_canonical(&passkey.credential)
        .map_err(|e| ApiError::internal(format!("passkey {} is corrupt: {e}", passkey.id)))?;
    if state.rp_id.as_deref() != Some(credential.rp_id.as_str()) {
        return Ok(Err(format!(
            "passkey {:?} is bound to {:?}, not this console",
            passkey.name, credential.rp_id
        )));
    }
    let info = match verify_assertion(
        &credential,
        challenge,
        &assertion.authenticator_data,
        &assertion.client_data_json,
        &assertion.signature,
        true,
    ) {
        Ok(info) => info,
        Err(e) => return Ok(Err(format!("passkey {:?}: {e}", passkey.name))),
    };
    if !counter_acceptable(passkey.sign_count, info.sign_count) {
        state
            .store
            .record_event(
                NewAuditEvent::new(
                    now,
                    &operator.username,
                    AuditAction::PasskeyCounterRegressed,
                    &passkey.id,
                )
                .with_detail(format!(
                    "name={} stored={} received={}: possibly a cloned authenticator; refused",
                    passkey.name, passkey.sign_count, info.sign_count
                )),
            )
            .await;
        return Ok(Err(format!(
            "passkey {:?}: signature counter {} after {} (possibly cloned)",
            passkey.name, info.sign_count, passkey.sign_count
        )));
    }
    if !state
        .store
        .record_passkey_use(&passkey.id, passkey.sign_count, info.sign_count, now)
        .await?
    {
        return Ok(Err(format!(
            "passkey {:?}: used by another request at the same time",
            passkey.name
        )));
    }
    Ok(Ok(()))
}

/// The operator's passkey for `credential_id` (another's, or none: `None`).
async fn own_passkey(
    state: &Auth,
    operator: &Operator,
    credential_id: &[u8],
) -> Result<Option<Passkey>, ApiError> {
    Ok(state
        .store
        .passkey_by_credential_id(credential_id)
        .await?
        .filter(|p| p.operator_id == operator.id))
}

// ----------------------------------------------------------------- the policy

/// The roles that must sign in with a passkey (none unless an owner said so).
/// A name this build does not know is skipped: it matches no account.
pub async fn required_roles(state: &Auth) -> Result<Vec<Role>, ApiError> {
    let value = state.store.setting(REQUIRED_ROLES_SETTING).await?;
    Ok(value
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter_map(Role::parse)
        .collect())
}

/// Does the owner's passkey policy cover an account with this standing?
pub async fn required_for(state: &Auth, standing: &Standing) -> Result<bool, ApiError> {
    let required = required_roles(state).await?;
    Ok(!required.is_empty() && policy::passkey_required(&policy::roles_of(standing), &required))
}

/// The standing of `operator` (owner, or its grants).
async fn standing_of(state: &Auth, operator: &Operator) -> Result<Standing, ApiError> {
    Ok(match operator.role.as_str() {
        bulwark_store::ACCOUNT_OWNER => Standing::Owner,
        _ => Standing::Granted(
            state
                .store
                .operator_grants(&operator.id)
                .await?
                .into_iter()
                .filter_map(|g| {
                    Some(policy::TenantRole {
                        role: Role::parse_grant(&g.role)?,
                        tenant_id: g.tenant_id,
                        tenant_name: g.tenant_name,
                    })
                })
                .collect(),
        ),
    })
}

/// What authenticates a session's request, the passkey policy included:
/// a session whose account must use a passkey and that signed in without
/// one is [`Credential::NeedsPasskey`] (decided again on every request, so a
/// policy change applies to sessions already open).
pub async fn session_credential(
    state: &Auth,
    standing: &Standing,
    session_hash: [u8; 32],
    mfa_at: i64,
) -> Result<Credential, ApiError> {
    if !required_for(state, standing).await? {
        return Ok(Credential::Session { mfa_at });
    }
    Ok(match state.store.session_passkey(session_hash).await? {
        Some(_) => Credential::Session { mfa_at },
        None => Credential::NeedsPasskey { mfa_at },
    })
}

/// Sets the roles that must sign in with a passkey (owners; step-up
/// required). Audited as `settings.passkey_policy_changed`. Sessions of
/// those roles that signed in without a passkey are restricted from their
/// next request on.
pub async fn set_required_roles(
    state: &Auth,
    caller: &Caller,
    names: &[String],
) -> Result<Vec<Role>, ApiError> {
    caller.require(Action::SetPasskeyPolicy)?;
    if names.len() > 16 {
        return Err(ApiError::bad_request("name at most 16 roles"));
    }
    let mut roles = Vec::new();
    for name in names {
        let role = Role::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown role {name:?}: use owner, security_officer, technician, read_only or \
                 tenant_auditor"
            ))
        })?;
        roles.push(role);
    }
    let all = [
        Role::Owner,
        Role::SecurityOfficer,
        Role::Technician,
        Role::ReadOnly,
        Role::TenantAuditor,
    ];
    let roles: Vec<Role> = all.into_iter().filter(|r| roles.contains(r)).collect();
    let before = required_roles(state).await?;
    let text = |roles: &[Role]| {
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let value = text(&roles);
    let now = now_millis();
    state
        .store
        .put_setting(
            REQUIRED_ROLES_SETTING,
            &value,
            &NewAuditEvent::new(
                now,
                &caller.operator.username,
                AuditAction::SettingsPasskeyPolicyChanged,
                REQUIRED_ROLES_SETTING,
            )
            .with_detail(format!("roles=[{value}] before=[{}]", text(&before))),
        )
        .await?;
    Ok(roles)
}

// --------------------------------------------------------------- registration

/// Registration options for the caller (step-up required).
pub async fn registration_options(
    state: &Auth,
    caller: &Caller,
) -> Result<RegistrationCeremony, ApiError> {
    caller.require(Action::AddPasskey)?;
    let rp_id = rp_id(state)?;
    let existing = state.store.passkeys_of(&caller.operator.id).await?;
    if existing.len() >= MAX_PASSKEYS {
        return Err(ApiError::conflict(format!(
            "you hold {MAX_PASSKEYS} passkeys, the most allowed: remove one first"
        )));
    }
    let (ceremony, challenge) = ceremonies::start(
        &state.store,
        Purpose::Register {
            session: caller.session_hash,
        },
        Owner::Session(caller.session_hash),
        now_millis(),
    )
    .await?;
    let user_handle = uuid::Uuid::parse_str(&caller.operator.id)
        .map(|u| u.as_bytes().to_vec())
        .unwrap_or_else(|_| caller.operator.id.as_bytes().to_vec());
    Ok(RegistrationCeremony {
        ceremony,
        public_key: CreationOptions {
            challenge: URL_SAFE_NO_PAD.encode(challenge),
            rp: RelyingParty {
                id: rp_id.to_owned(),
                name: RP_NAME.to_owned(),
            },
            user: UserEntity {
                id: URL_SAFE_NO_PAD.encode(user_handle),
                name: caller.operator.username.clone(),
                display_name: caller.operator.username.clone(),
            },
            pub_key_cred_params: [-7, -8]
                .into_iter()
                .map(|alg| CredentialParameter {
                    kind: "public-key".to_owned(),
                    alg,
                })
                .collect(),
            timeout: CEREMONY_TIMEOUT_MS,
            exclude_credentials: existing
                .iter()
                .map(|p| credential_descriptor(&p.credential_id))
                .collect(),
            authenticator_selection: AuthenticatorSelection {
                resident_key: "preferred".to_owned(),
                user_verification: "required".to_owned(),
            },
            attestation: "none".to_owned(),
        },
    })
}

/// A passkey name: at most 64 characters as typed (the document's
/// `maxLength`), none a control character, not only spaces; trimmed.
pub fn check_name(name: &str) -> Result<&str, ApiError> {
    let (typed, name) = (name, name.trim());
    if name.is_empty() || typed.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "a passkey name is 1 to 64 printable characters",
        ));
    }
    Ok(name)
}

/// What the browser sent back from `navigator.credentials.create`.
pub struct Registration<'a> {
    pub ceremony: &'a str,
    pub name: &'a str,
    /// base64url
    pub attestation_object: &'a str,
    /// base64url
    pub client_data_json: &'a str,
}

fn registration_refused(reason: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::PasskeyRejected,
        format!("the passkey was not registered: {reason}"),
    )
}

/// Completes a registration started by this very session (step-up
/// required, again). Audited as `passkey.added` (by the store).
pub async fn register(
    state: &Auth,
    caller: &Caller,
    registration: Registration<'_>,
) -> Result<Passkey, ApiError> {
    caller.require(Action::AddPasskey)?;
    let name = check_name(registration.name)?;
    let rp_id = rp_id(state)?;
    let now = now_millis();
    let challenge = ceremonies::finish(
        &state.store,
        registration.ceremony,
        &Purpose::Register {
            session: caller.session_hash,
        },
        now,
    )
    .await?
    .ok_or_else(|| {
        registration_refused(
            "the ceremony is unknown, expired or used already (each works once, for \
                 3 minutes): start again",
        )
    })?;
    use bulwark_policy::webauthn as w;
    let attestation = base64url_field(
        "attestationObject",
        registration.attestation_object,
        w::MAX_ATTESTATION_OBJECT,
    )?;
    let client_data = base64url_field(
        "clientDataJSON",
        registration.client_data_json,
        w::MAX_CLIENT_DATA_JSON,
    )?;
    let registered = parse_registration(&attestation, &client_data, &challenge, rp_id, true)
        .map_err(registration_refused)?;
    if state
        .store
        .passkey_by_credential_id(&registered.credential_id)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict("this passkey is registered already"));
    }
    let new = NewPasskey {
        operator_id: caller.operator.id.clone(),
        name: name.to_owned(),
        credential_id: registered.credential_id,
        credential: to_canonical(&registered.credential),
        sign_count: registered.sign_count,
        backup_eligible: registered.flags.backup_eligible(),
        created_at: now,
    };
    match state
        .store
        .add_passkey(&new, &caller.operator.username)
        .await
    {
        Err(StoreError::Conflict(_)) => Err(ApiError::conflict(
            "you have a passkey of that name already: choose another name",
        )),
        other => Ok(other?),
    }
}

/// The caller's passkeys, oldest first.
pub async fn list(state: &Auth, caller: &Caller) -> Result<Vec<Passkey>, ApiError> {
    caller.require(Action::ManageOwnPasskeys)?;
    Ok(state.store.passkeys_of(&caller.operator.id).await?)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::not_found("passkey"));
    }
    Ok(())
}

/// Renames one of the caller's passkeys (another's: the same 404).
pub async fn rename(
    state: &Auth,
    caller: &Caller,
    id: &str,
    name: &str,
) -> Result<Passkey, ApiError> {
    caller.require(Action::ManageOwnPasskeys)?;
    check_id(id)?;
    let name = check_name(name)?;
    match state
        .store
        .rename_passkey(
            &caller.operator.id,
            id,
            name,
            &caller.operator.username,
            now_millis(),
        )
        .await
    {
        Err(StoreError::NotFound) => Err(ApiError::not_found("passkey")),
        other => Ok(other?),
    }
}

/// Removes one of the caller's passkeys (step-up required; another's: the
/// same 404). The last one stays while the caller's role requires one.
pub async fn remove(state: &Auth, caller: &Caller, id: &str) -> Result<(), ApiError> {
    caller.require(Action::RemovePasskey)?;
    check_id(id)?;
    let last = if required_for(state, &caller.standing).await? {
        LastPasskey::Keep
    } else {
        LastPasskey::MayRemove
    };
    match state
        .store
        .remove_passkey(
            &caller.operator.id,
            id,
            last,
            &caller.operator.username,
            now_millis(),
        )
        .await
    {
        Err(StoreError::NotFound) => Err(ApiError::not_found("passkey")),
        other => other.map(|_| ()).map_err(ApiError::from),
    }
}

// ---------------------------------------------------------------------- login

/// Login options for `username`: a challenge and that account's credentials.
/// Public, and it reveals nothing: an unknown account, or one without
/// passkeys, gets a stand-in credential id (stable per name), and the
/// password is checked only with the answer, in one step with the passkey
/// ([`super::flows::login_with`]), exactly as with a one-time code.
///
/// The ceremony counts against the budgets of `client` (the address asking)
/// and of `username`; when one is full its oldest ceremony gives way (see
/// the module notes), so this never answers "busy".
pub async fn login_options(
    state: &Auth,
    username: &str,
    client: IpAddr,
) -> Result<AssertionCeremony, ApiError> {
    let rp_id = rp_id(state)?;
    if username.is_empty() || username.chars().count() > 64 {
        return Err(ApiError::bad_request("give the username to sign in as"));
    }
    let operator = state.store.operator_by_username(username).await?;
    // The same two queries whoever asks (an unknown or disabled account
    // looks up the passkeys of no id), so the time tells nothing either.
    let operator_id = operator
        .filter(|o| o.disabled_at.is_none())
        .map(|o| o.id)
        .unwrap_or_default();
    let mut allow: Vec<Vec<u8>> = state
        .store
        .passkeys_of(&operator_id)
        .await?
        .into_iter()
        .map(|p| p.credential_id)
        .collect();
    if allow.is_empty() {
        allow.push(state.passkeys.decoy_credential(username));
    }
    let (ceremony, challenge) =
        ceremonies::start_login(&state.store, username, client, now_millis()).await?;
    Ok(AssertionCeremony {
        ceremony,
        public_key: request_options(rp_id, &challenge, allow),
    })
}

/// The challenge of a login ceremony for `username`, taken out (single use)
/// before the password is checked, so one answer is never tried twice.
pub async fn take_login_challenge(
    state: &Auth,
    ceremony: &str,
    username: &str,
) -> Result<Option<[u8; 32]>, StoreError> {
    ceremonies::finish(
        &state.store,
        ceremony,
        &Purpose::Login {
            username: username.to_owned(),
        },
        now_millis(),
    )
    .await
}

/// Checks a login assertion for `operator` against `challenge` (from
/// [`take_login_challenge`]). `Ok(Err(reason))` is a refusal, for the audit
/// log; the client gets the generic login failure.
pub async fn verify_login(
    state: &Auth,
    operator: &Operator,
    challenge: Option<[u8; 32]>,
    assertion: &Assertion,
) -> Result<Result<Passkey, String>, ApiError> {
    let Some(challenge) = challenge else {
        return Ok(Err(
            "passkey: the ceremony is unknown, expired, used or for another username".to_owned(),
        ));
    };
    let Some(passkey) = own_passkey(state, operator, &assertion.credential_id).await? else {
        return Ok(Err(
            "passkey: the credential is not registered to this account".to_owned(),
        ));
    };
    Ok(verify_with(
        state,
        operator,
        &passkey,
        &challenge,
        assertion,
        now_millis(),
    )
    .await?
    .map(|()| passkey))
}

/// Whether `operator` must sign in with a passkey, and whether it holds one.
pub async fn login_policy(state: &Auth, operator: &Operator) -> Result<(bool, bool), ApiError> {
    let standing = standing_of(state, operator).await?;
    let required = required_for(state, &standing).await?;
    let holds = state.store.passkey_count(&operator.id).await? > 0;
    Ok((required, holds))
}

// -------------------------------------------------------------------- step-up

/// Step-up options for the caller's own passkeys (409 if it holds none).
pub async fn step_up_options(state: &Auth, caller: &Caller) -> Result<AssertionCeremony, ApiError> {
    caller.require(Action::StepUp)?;
    own_assertion_options(
        state,
        caller,
        Purpose::StepUp {
            session: caller.session_hash,
        },
    )
    .await
}

/// Options for approving the CLI sign-in `user_code` with one of the
/// caller's own passkeys (409 if it holds none): a ceremony bound to this
/// session and that code ([`super::device`]).
pub async fn device_approval_options(
    state: &Auth,
    caller: &Caller,
    user_code: &str,
) -> Result<AssertionCeremony, ApiError> {
    caller.require(Action::ApproveDevice)?;
    own_assertion_options(
        state,
        caller,
        Purpose::DeviceApproval {
            session: caller.session_hash,
            user_code: user_code.to_owned(),
        },
    )
    .await
}

async fn own_assertion_options(
    state: &Auth,
    caller: &Caller,
    purpose: Purpose,
) -> Result<AssertionCeremony, ApiError> {
    let rp_id = rp_id(state)?;
    let allow: Vec<Vec<u8>> = state
        .store
        .passkeys_of(&caller.operator.id)
        .await?
        .into_iter()
        .map(|p| p.credential_id)
        .collect();
    if allow.is_empty() {
        return Err(ApiError::conflict(match purpose {
            Purpose::DeviceApproval { .. } => {
                "you hold no passkey: approving a sign-in needs one (add it on your account page)"
            }
            _ => "you hold no passkey: confirm with a one-time code instead",
        }));
    }
    let (ceremony, challenge) = ceremonies::start(
        &state.store,
        purpose,
        Owner::Session(caller.session_hash),
        now_millis(),
    )
    .await?;
    Ok(AssertionCeremony {
        ceremony,
        public_key: request_options(rp_id, &challenge, allow),
    })
}

/// Checks an assertion approving the CLI sign-in `user_code`, made for this
/// very session and code. `Ok(Err(reason))` is a refusal, for the audit log.
pub async fn verify_device_approval(
    state: &Auth,
    caller: &Caller,
    user_code: &str,
    assertion: &Assertion,
) -> Result<Result<Passkey, String>, ApiError> {
    verify_own(
        state,
        caller,
        &Purpose::DeviceApproval {
            session: caller.session_hash,
            user_code: user_code.to_owned(),
        },
        assertion,
    )
    .await
}

/// Checks a step-up assertion made for this very session. `Ok(Err(reason))`
/// is a refusal, for the audit log.
pub async fn verify_step_up(
    state: &Auth,
    caller: &Caller,
    assertion: &Assertion,
) -> Result<Result<Passkey, String>, ApiError> {
    verify_own(
        state,
        caller,
        &Purpose::StepUp {
            session: caller.session_hash,
        },
        assertion,
    )
    .await
}

async fn verify_own(
    state: &Auth,
    caller: &Caller,
    purpose: &Purpose,
    assertion: &Assertion,
) -> Result<Result<Passkey, String>, ApiError> {
    let now = now_millis();
    let Some(challenge) =
        ceremonies::finish(&state.store, &assertion.ceremony, purpose, now).await?
    else {
        return Ok(Err(
            "passkey: the ceremony is unknown, expired, used or for another session".to_owned(),
        ));
    };
    let Some(passkey) = own_passkey(state, &caller.operator, &assertion.credential_id).await?
    else {
        return Ok(Err(
            "passkey: the credential is not registered to this account".to_owned(),
        ));
    };
    Ok(verify_with(
        state,
        &caller.operator,
        &passkey,
        &challenge,
        assertion,
        now,
    )
    .await?
    .map(|()| passkey))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_rule_is_webauthn_step_21() {
        assert!(counter_acceptable(0, 0), "no counter kept");
        assert!(counter_acceptable(0, 1));
        assert!(counter_acceptable(5, 6));
        assert!(counter_acceptable(5, u32::MAX));
        assert!(!counter_acceptable(5, 5), "replayed or cloned");
        assert!(!counter_acceptable(5, 4), "went back");
        assert!(
            !counter_acceptable(5, 0),
            "a counting credential stopped counting"
        );
    }

    #[test]
    fn rp_id_is_the_console_host() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            rp_id_for(ServeMode::LoopbackHttp, &[]).as_deref(),
            Some("localhost")
        );
        assert_eq!(
            rp_id_for(ServeMode::Https, &names(&["RMM.Example.com", "other"])).as_deref(),
            Some("rmm.example.com")
        );
        assert_eq!(rp_id_for(ServeMode::Https, &[]), None);
        assert_eq!(rp_id_for(ServeMode::Https, &names(&["192.0.2.7"])), None);
        assert_eq!(
            rp_id_for(ServeMode::Https, &names(&["*.example.com"])),
            None
        );
    }

    #[test]
    fn names_and_base64() {
        assert_eq!(check_name("  laptop ").expect("ok"), "laptop");
        assert!(check_name("").is_err());
        assert!(check_name("a\u{7}b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert_eq!(base64url_field("x", "AQID", 3).expect("ok"), [1, 2, 3]);
        assert_eq!(base64url_field("x", "AQ==", 3).expect("padding"), [1]);
        assert!(base64url_field("x", "AQIDBA", 3).is_err(), "too long");
        assert!(
            base64url_field("x", "A+/=", 3).is_err(),
            "standard alphabet"
        );
    }
}
