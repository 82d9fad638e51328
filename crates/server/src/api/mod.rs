//! The JSON API under `/api/v1/`, described by the OpenAPI document at
//! `/api/v1/openapi.json` (generated from these handlers).
//!
//! Public routes (no session): `GET /healthz`, `GET /api/v1/openapi.json`,
//! `POST /api/v1/setup`, `POST /api/v1/setup/confirm`, `POST /api/v1/auth/login`,
//! `POST /api/v1/invitations/redeem`, `POST /api/v1/invitations/confirm`,
//! `POST /api/v1/auth/passkey/options`, `POST /api/v1/auth/passkey/login`,
//! `POST /api/v1/auth/device`, `POST /api/v1/auth/device/token`.
//! Agents enrol through the gateway, not this API. Every other route takes a
//! [`Caller`] and calls [`Caller::require`] before doing anything, or, for an
//! action on one tenant, finds the tenant inside the caller's scope first (a
//! foreign tenant's object is a 404, never a 403) and then calls
//! [`Caller::require_in`] with it (a role lacking the action there is a 403).
//! `tests/authz_matrix.rs` tries every route of [`router`] as every role.
//! Privileged actions ([`crate::auth::policy::Action::privileged`]) also need
//! an MFA check within five minutes: `Caller::require` answers 403
//! `step_up_required` otherwise, and `POST /api/v1/auth/step-up` refreshes it.

pub mod account;
pub mod alerts;
pub mod cli_sign_in;
pub mod device_checks;
pub mod device_search;
pub mod device_vulns;
pub mod devices;
pub mod error;
pub mod jobs;
pub mod log;
pub mod metrics;
pub mod metrics_history;
pub mod operators;
pub mod passkeys;
pub mod patch_policies;
pub mod proposals;
pub mod refusals;
pub mod releases;
pub mod schedules;
pub mod scripts;
pub mod setup;
pub mod shells;
pub mod signing_keys;
pub mod sla;
pub mod tenants;
pub mod trust;
pub mod views;
pub mod vulndb;

pub use refusals::{ApiJson, ApiPath, with_api_errors};

use bulwark_api::account::Health;
use bulwark_api::error::ErrorBody;
use bulwark_store::AuditAction;
use std::net::SocketAddr;

use axum::http::{HeaderMap, header};
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::auth::flows::ClientInfo;
use crate::now_millis;
use crate::state::AppState;

/// Largest request body accepted anywhere but job submission.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest job submission (also a schedule's and a script version's): the
/// largest envelope in base64, the largest script as JSON text (6 bytes a
/// byte at worst, `\u0001`) and 64 KiB for the rest. From the statement
/// caps, so that a job naming `max_targets` devices is never answered 413.
pub const MAX_JOB_BODY_BYTES: usize = {
    use bulwark_protocol::limits::statement as caps;
    let envelope = caps::envelope_cap(caps::MAX_PAYLOAD_BYTES, caps::MAX_SIGNATURES);
    envelope.div_ceil(3) * 4 + 6 * caps::MAX_SCRIPT_BYTES + 64 * 1024
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Bulwark API", description = "Remote monitoring and management where the customer's endpoints, not the server, decide what runs. Every error answers `application/json` in the `ErrorBody` shape, including a 404 for a path no route has and a 405 (with `Allow`) for a method a path does not take; the one exception is `POST /api/v1/auth/device/token`, whose RFC 8628 answers (400) are a `DeviceTokenError`."),
    modifiers(&SecurityAddon),
    components(schemas(ErrorBody)),
    tags((name = "setup"), (name = "auth"), (name = "tenants"), (name = "devices"), (name = "operators"), (name = "trust"), (name = "jobs"), (name = "schedules", description = "Scheduled jobs (RFD 0019): a schedule is signed once, with its class's quorum, on the operators' machines; every agent verifies each run itself (signatures under its current policy, the occurrence in the signed zone by its own clock, never twice). Revoking here stops delivery; against a server that keeps delivering, the root holders list the schedule in the policy's `revoked_schedules`."), (name = "shells", description = "Remote shells (RFD 0015): grants the grantee and the policy's approvers signed on their own machines, revocation, the sessions opened under them, their recordings (asciicast v2, checked against the digest the agent reported), and the relay's WebSocket, which carries frames sealed end to end between the grantee's `bulwark` and the agent."), (name = "scripts", description = "The MSP's script library (RFD 0013): scripts, immutable versions with their author's signed statement, and signed reviews. The server's word on a version or a review is not trusted: `bulwark script show` and `bulwark job run --library` check the content's SHA-256 and every signature against a tenant's verified policy."), (name = "alerts", description = "Alerts raised from the transparency logs (an agent's refusal, a mass action entering its delay), their handling, where they are sent (RFD 0007), and a tenant's SLA: targets in business time and attainment (RFD 0008)."), (name = "vulndb", description = "The offline vulnerability database: OSV advisories for Debian and Ubuntu releases, imported by owners (`bulwark vulndb import`) into a new generation that is switched in atomically, and matched with dpkg's version ordering."), (name = "releases", description = "The agent release mirror (RFD 0017): TUF metadata and agent binaries as the release keys' holders published them, imported by owners (`bulwark release import DIR`) and served to agents. Nothing here is trusted: agents and the CLI verify every file with the release root they hold."), (name = "log", description = "The transparency logs, read-only but for announcing an export (POST .../log/exports records `log.exported`): entries (`leaf`: standard padded base64 of the exact leaf bytes, whose RFC 6962 leaf hash SHA-256(0x00 || leaf) is in the tree), roots and proof hashes (standard base64 of 32 bytes; RFC 9162 §2.1.3 and §2.1.4 proofs) and signed heads (`note`: the C2SP checkpoint signed as a Go signed note by the key of GET /api/v1/log/key, verbatim)."))
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::session::COOKIE_NAME,
            ))),
        );
    }
}

/// The API router and its OpenAPI document, built from the same handler list.
pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(setup::setup_start))
        .routes(routes!(setup::setup_confirm))
        .routes(routes!(account::login))
        .routes(routes!(account::logout))
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(tenants::create_enrollment_token))
        .routes(routes!(devices::list_devices))
        .routes(routes!(device_search::search_devices))
        .routes(routes!(device_search::device_tags))
        .routes(routes!(device_search::device_group))
        .routes(routes!(devices::get_device))
        .routes(routes!(devices::device_packages))
        .routes(routes!(device_checks::device_checks))
        .routes(routes!(metrics_history::device_metrics))
        .routes(routes!(metrics_history::tenant_metrics_route))
        .routes(routes!(metrics_history::dashboard))
        .routes(routes!(device_vulns::device_vulnerabilities))
        .routes(routes!(device_vulns::tenant_vulnerabilities))
        .routes(routes!(devices::events))
        .routes(routes!(account::list_lockouts))
        .routes(routes!(account::lift_lockout))
        .routes(routes!(tenants::list_audit))
        .routes(routes!(operators::list_operators))
        .routes(routes!(
            operators::list_invitations,
            operators::create_invitation
        ))
        .routes(routes!(operators::revoke_invitation))
        .routes(routes!(operators::redeem_invitation))
        .routes(routes!(operators::confirm_invitation))
        .routes(routes!(account::list_sessions))
        .routes(routes!(account::revoke_session))
        .routes(routes!(account::revoke_other_sessions))
        .routes(routes!(operators::disable_operator))
        .routes(routes!(account::step_up))
        .routes(routes!(account::regenerate_recovery_codes))
        .routes(routes!(account::list_api_tokens, account::create_api_token))
        .routes(routes!(account::revoke_api_token))
        .routes(routes!(passkeys::list_passkeys))
        .routes(routes!(passkeys::registration_options))
        .routes(routes!(passkeys::register_passkey))
        .routes(routes!(passkeys::rename_passkey, passkeys::remove_passkey))
        .routes(routes!(passkeys::login_options))
        .routes(routes!(passkeys::passkey_login))
        .routes(routes!(passkeys::step_up_options))
        .routes(routes!(passkeys::step_up_passkey))
        .routes(routes!(
            passkeys::get_passkey_policy,
            passkeys::set_passkey_policy
        ))
        .routes(routes!(cli_sign_in::device_authorization))
        .routes(routes!(cli_sign_in::device_token))
        .routes(routes!(cli_sign_in::device_approval_options))
        .routes(routes!(cli_sign_in::device_approve))
        .routes(routes!(cli_sign_in::device_deny))
        .routes(routes!(operators::set_operator_grants))
        .routes(routes!(operators::reset_operator_passkeys))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::get_alert))
        .routes(routes!(alerts::acknowledge_alert))
        .routes(routes!(alerts::resolve_alert))
        .routes(routes!(alerts::list_channels, alerts::add_channel))
        .routes(routes!(alerts::remove_channel))
        .routes(routes!(sla::get_sla, sla::put_sla))
        .routes(routes!(sla::get_sla_report))
        .routes(routes!(metrics::metrics))
        .routes(routes!(trust::get_trust))
        .routes(routes!(trust::publish_root))
        .routes(routes!(trust::publish_policy))
        .routes(routes!(trust::publish_freeze))
        .routes(routes!(
            proposals::list_proposals,
            proposals::create_proposal
        ))
        .routes(routes!(proposals::get_proposal))
        .routes(routes!(proposals::sign_proposal))
        .routes(routes!(
            signing_keys::register_signing_key,
            signing_keys::list_signing_keys
        ))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::approve_job))
        .routes(routes!(jobs::reject_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::job_output))
        .routes(routes!(schedules::get_schedule))
        .routes(routes!(schedules::revoke_schedule))
        .routes(routes!(patch_policies::get_patch_policy))
        .routes(routes!(patch_policies::revoke_patch_policy))
        .routes(routes!(
            shells::list_shell_grants,
            shells::request_shell_grant
        ))
        .routes(routes!(shells::get_shell_grant))
        .routes(routes!(shells::approve_shell_grant))
        .routes(routes!(shells::revoke_shell_grant))
        .routes(routes!(shells::connect_shell))
        .routes(routes!(shells::device_shell_sessions))
        .routes(routes!(shells::tenant_shell_sessions))
        .routes(routes!(shells::shell_recording))
        .routes(routes!(log::log_key))
        .routes(routes!(log::tenant_log_head))
        .routes(routes!(log::tenant_log_statements))
        .routes(routes!(log::tenant_log_entries))
        .routes(routes!(log::tenant_log_checkpoints))
        .routes(routes!(log::tenant_log_inclusion))
        .routes(routes!(log::tenant_log_consistency))
        .routes(routes!(log::tenant_log_export))
        .routes(routes!(log::msp_log_head))
        .routes(routes!(log::msp_log_entries))
        .routes(routes!(log::msp_log_checkpoints))
        .routes(routes!(log::msp_log_inclusion))
        .routes(routes!(log::msp_log_consistency))
        .routes(routes!(log::msp_log_export))
        .routes(routes!(vulndb::status))
        .routes(routes!(vulndb::check))
        .routes(routes!(vulndb::start_import))
        .routes(routes!(vulndb::switch_import))
        // A batch of OSV records: larger than other bodies, owners only.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(vulndb::add_records))
                .layer(axum::extract::DefaultBodyLimit::max(
                    vulndb::MAX_BATCH_BODY_BYTES,
                )),
        )
        .routes(routes!(releases::metadata))
        // A release file: a whole agent binary in base64, owners only.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(releases::upload_file))
                .layer(axum::extract::DefaultBodyLimit::max(
                    bulwark_api::releases::MAX_UPLOAD_BODY_BYTES,
                )),
        )
        .routes(routes!(scripts::get_script))
        .routes(routes!(scripts::get_version))
        .routes(routes!(scripts::review_version))
        // A job carries its script: a larger body than anywhere else; so
        // does a library script's new version.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(jobs::create_job))
                .routes(routes!(
                    schedules::list_schedules,
                    schedules::create_schedule
                ))
                .routes(routes!(
                    patch_policies::list_patch_policies,
                    patch_policies::create_patch_policy
                ))
                .routes(routes!(scripts::list_scripts, scripts::create_script))
                .routes(routes!(scripts::add_version))
                .layer(axum::extract::DefaultBodyLimit::max(MAX_JOB_BODY_BYTES)),
        )
        .split_for_parts();
    refusals::RefusedRequests.modify(&mut doc);
    (router, doc)
}

pub fn client_info(addr: Option<SocketAddr>, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: addr.map(|a| a.ip().to_string()).unwrap_or_default(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Liveness: no authentication, no storage access.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// The audit event of `caller` doing `action` on `target`, for a store
/// method that records it in the change's own transaction.
pub fn audit_event(
    caller: &Caller,
    tenant_id: Option<&str>,
    action: AuditAction,
    target: &str,
) -> bulwark_store::NewAuditEvent {
    bulwark_store::NewAuditEvent::new(now_millis(), &caller.operator.username, action, target)
        .in_tenant(tenant_id)
}

#[cfg(test)]
mod tests {
    /// A job naming every target it may, with the largest script of the
    /// worst escaping, is a body the API reads (issue 18: it answered 413).
    #[test]
    fn the_largest_job_submission_fits_the_body_limit() {
        use base64::Engine;
        let limits = bulwark_protocol::Limits::default();
        let request =
            bulwark_api::jobs::JobRequest {
                envelope: base64::engine::general_purpose::STANDARD
                    .encode(vec![0xa5; limits.max_envelope_bytes]),
                script: "\u{1}".repeat(limits.max_script_bytes),
            };
        let body = serde_json::to_vec(&request).expect("encodes");
        assert!(
            body.len() <= super::MAX_JOB_BODY_BYTES,
            "{} > {}",
            body.len(),
            super::MAX_JOB_BODY_BYTES
        );
        assert_eq!(limits.max_script_bytes, super::jobs::MAX_SCRIPT_BYTES);
    }
}
