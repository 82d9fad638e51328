//! Owners manage other operators' access: replace an operator's tenant
//! grants (a role per tenant), and reset the passkeys of someone who lost
//! theirs. Both are privileged ([`Action::privileged`]) and audited in the
//! change's own transaction (`operator.grants_changed` with the grants
//! before and after, `operator.passkeys_reset`).
//!
//! Grants take effect on the operator's next request: a session caches no
//! grant (`session::authenticate` reads them on every request, and API
//! tokens are cut to the grants their operator still holds).

use bulwark_store::{Grant, StoreError};

use super::Auth;
use super::policy::{Action, Role};
use super::session::Caller;
use crate::api::error::ApiError;
use crate::now_millis;

/// Most grants one operator may hold.
pub const MAX_GRANTS: usize = 256;

/// One grant as asked for: a tenant name and a role.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    pub tenant: String,
    pub role: String,
}

fn check_operator_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::not_found("operator"));
    }
    Ok(())
}

/// Replaces every grant of operator `operator_id` with `requested` (owners;
/// step-up required). Returns (before, after). An owner holds no grants
/// (409); a tenant auditor's grant must be its only one (the customer's own
/// person); one tenant is named once.
pub async fn set_grants(
    state: &Auth,
    caller: &Caller,
    operator_id: &str,
    requested: &[GrantRequest],
) -> Result<(Vec<Grant>, Vec<Grant>), ApiError> {
    caller.require(Action::ManageGrants)?;
    check_operator_id(operator_id)?;
    if requested.len() > MAX_GRANTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_GRANTS} grants per operator"
        )));
    }
    let target = state
        .store
        .operator_by_id(operator_id)
        .await?
        .ok_or_else(|| ApiError::not_found("operator"))?;
    if target.role == bulwark_store::ACCOUNT_OWNER {
        return Err(ApiError::conflict(
            "an owner acts on every tenant and holds no grants",
        ));
    }
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(requested.len());
    let mut roles = Vec::with_capacity(requested.len());
    for grant in requested {
        let role = Role::parse_grant(&grant.role).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown role {:?} for tenant {:?}: use security_officer, technician, read_only \
                 or tenant_auditor",
                grant.role, grant.tenant
            ))
        })?;
        let tenant = state
            .store
            .tenant_by_name(&caller.scope(), &grant.tenant)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant"))?;
        if pairs.iter().any(|(id, _)| *id == tenant.id) {
            return Err(ApiError::bad_request(format!(
                "tenant {:?} is named twice: one role per tenant",
                grant.tenant
            )));
        }
        pairs.push((tenant.id, role.as_str().to_owned()));
        roles.push(role);
    }
    if roles.contains(&Role::TenantAuditor) && roles.len() > 1 {
        return Err(ApiError::bad_request(
            "a tenant auditor holds exactly one grant (the customer's own tenant)",
        ));
    }
    match state
        .store
        .set_operator_grants(operator_id, &pairs, &caller.operator.username, now_millis())
        .await
    {
        Err(StoreError::NotFound) => Err(ApiError::not_found("operator or tenant")),
        other => Ok(other?),
    }
}

/// Removes every passkey of operator `operator_id` and ends its sessions
/// (owners; step-up required): for a person who lost theirs, who then signs
/// in with password and one-time code and registers a new one. Returns how
/// many passkeys were removed.
pub async fn reset_passkeys(
    state: &Auth,
    caller: &Caller,
    operator_id: &str,
) -> Result<u64, ApiError> {
    caller.require(Action::ResetPasskeys)?;
    check_operator_id(operator_id)?;
    match state
        .store
        .reset_passkeys(operator_id, &caller.operator.username, now_millis())
        .await
    {
        Err(StoreError::NotFound) => Err(ApiError::not_found("operator")),
        other => Ok(other?),
    }
}
