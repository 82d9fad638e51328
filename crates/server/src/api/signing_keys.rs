//! Operators' public job-signing keys: an Ed25519 key or an approval
//! passkey registered per tenant, which the policy may then name as a signer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bulwark_api::error::ErrorBody;
use bulwark_api::signing_keys::{SigningKeyRequest, SigningKeyView};
use bulwark_policy::{APPROVAL_RP_ID, KeyId, PublicKey};
use bulwark_store::AuditAction;
use bulwark_store::{NewSigningKey, SigningKeyKind};

use super::error::ApiError;
use super::refusals::base64_field;
use super::{ApiJson, audit_event};
use crate::auth::{Action, Caller};
use crate::now_millis;
use crate::state::AppState;

// ---- operators' public signing keys ----

/// Registers the public half of one of the caller's signing keys (made on
/// the operator's own machine by `bulwark keys new`; the private half never
/// comes here).
#[utoipa::path(post, path = "/api/v1/signing-keys", tag = "trust", request_body = SigningKeyRequest,
    responses((status = 201, body = SigningKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn register_signing_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SigningKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Action::ManageOwnSigningKeys)?;
    let name = req.name.trim();
    if name.is_empty() || req.name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be 1 to 64 printable characters",
        ));
    }
    let (key, kind) = match (&req.public_key, &req.webauthn_credential) {
        (Some(public_key), None) => {
            let bytes: [u8; 32] = base64_field("public_key", public_key)?
                .try_into()
                .map_err(|_| ApiError::bad_request("public_key must be 32 bytes (Ed25519)"))?;
            if ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_err() {
                return Err(ApiError::bad_request("public_key is not an Ed25519 point"));
            }
            (PublicKey::Ed25519(bytes), SigningKeyKind::Ed25519)
        }
        (None, Some(credential)) => {
            let bytes = base64_field("webauthn_credential", credential)?;
            let credential = bulwark_protocol::codec::from_canonical::<
                bulwark_policy::webauthn::WebAuthnCredential,
            >(&bytes)
            .map_err(|e| {
                ApiError::bad_request(format!("webauthn_credential is not a credential: {e}"))
            })?;
            if credential.rp_id != APPROVAL_RP_ID {
                return Err(ApiError::bad_request(format!(
                    "an approval passkey has RP id {APPROVAL_RP_ID:?} (made by `bulwark keys \
                     add-passkey`), not {:?}",
                    credential.rp_id
                )));
            }
            (PublicKey::WebAuthn(credential), SigningKeyKind::Webauthn)
        }
        _ => {
            return Err(ApiError::bad_request(
                "send exactly one of `public_key` (Ed25519) and `webauthn_credential` (an approval passkey)",
            ));
        }
    };
    let key_id = hex::encode(key.id().0);
    let row = state
        .store
        .add_signing_key(
            &NewSigningKey {
                key_id: key_id.clone(),
                operator_id: caller.operator.id.clone(),
                name: name.to_owned(),
                kind,
                public_key: bulwark_protocol::codec::to_canonical(&key),
            },
            now_millis(),
            &[audit_event(
                &caller,
                None,
                AuditAction::SigningKeyRegistered,
                &key_id,
            )],
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::api::views::signing_key(row)),
    ))
}

/// The caller's own registered signing keys.
#[utoipa::path(get, path = "/api/v1/signing-keys", tag = "trust",
    responses((status = 200, body = [SigningKeyView]), (status = 401, body = ErrorBody)),
    security(("bearer" = []), ("session_cookie" = [])))]
pub async fn list_signing_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SigningKeyView>>, ApiError> {
    caller.require(Action::ManageOwnSigningKeys)?;
    let keys = state.store.signing_keys_of(&caller.operator.id).await?;
    Ok(Json(
        keys.into_iter()
            .map(crate::api::views::signing_key)
            .collect(),
    ))
}

/// The caller's unrevoked signing keys: Ed25519 keys and approval passkeys
/// (RP id [`APPROVAL_RP_ID`]), both registered by the operator's `bulwark`
/// (`keys register`, `keys add-passkey`). The console's sign-in passkeys
/// are not among them: no credential a server page can use approves a job.
pub async fn own_keys(state: &AppState, caller: &Caller) -> Result<Vec<PublicKey>, ApiError> {
    let registered = state.store.signing_keys_of(&caller.operator.id).await?;
    Ok(registered
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .filter_map(|k| bulwark_protocol::codec::from_canonical::<PublicKey>(&k.public_key).ok())
        .filter(|key| match key {
            PublicKey::WebAuthn(credential) => credential.rp_id == APPROVAL_RP_ID,
            _ => true,
        })
        .collect())
}

pub(crate) fn parse_key_id(text: &str) -> Result<KeyId, ApiError> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("key_id must be 64 hex characters"))?;
    Ok(KeyId(bytes))
}
