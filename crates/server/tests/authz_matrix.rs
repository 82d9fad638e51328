//! The authorisation matrix (DESIGN.md invariant 7): every route of
//! `bulwark_server::api::router()`, as every role, on its own tenant and on a
//! foreign one, plus without a session and with a revoked or an expired one,
//! over real HTTP against a real server.
//!
//! The route list comes from the router itself: `api::router()` builds the
//! axum routes and the OpenAPI document from one `routes!` list, and this test
//! fails unless [`TABLE`] has a row for exactly the routes of that document.
//! A new route therefore cannot ship without an expectation here.
//!
//! Every operator is created the way a person would be: the first owner
//! through setup, the others through invitations (redeem + TOTP confirm),
//! then a real login. Two devices (one per tenant) enrol through the agent
//! library, as `tests/gateway.rs` does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_agent::connection::{self, ServerAddress};
use bulwark_policy::Signed;
use bulwark_protocol::token::EnrollToken;
use bulwark_server::auth::session::new_token;
use bulwark_server::{RunningServer, ServerConfig, now_millis};
use bulwark_store::{NewSession, SessionKind};
use ed25519_dalek::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use totp_rs::{Algorithm, Secret, TOTP};

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

const OWN: &str = "own-tenant";
const FOREIGN: &str = "foreign-tenant";
const PASSWORD: &str = "correct horse battery staple 42";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Owner,
    SecurityOfficer,
    Technician,
    ReadOnly,
    TenantAuditor,
}

use Role::*;

const ROLES: [Role; 5] = [Owner, SecurityOfficer, Technician, ReadOnly, TenantAuditor];
const EVERY_ROLE: &[Role] = &ROLES;

impl Role {
    fn api_name(self) -> &'static str {
        match self {
            Owner => "owner",
            SecurityOfficer => "security_officer",
            Technician => "technician",
            ReadOnly => "read_only",
            TenantAuditor => "tenant_auditor",
        }
    }
}

/// Who sends the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    As(Role),
    NoSession,
    RevokedSession,
    ExpiredSession,
    /// A valid session of this role whose last MFA check is 10 minutes old.
    StaleMfa(Role),
}

/// Which tenant's objects the path (and body) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The tenant every non-owner role holds its grant on.
    Own,
    /// A tenant none of them holds anything on.
    Foreign,
}

/// What a route must answer.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// No session needed: this status whoever asks, with or without a session.
    Public(u16),
    /// An action on no tenant: the status for these roles, 403 for the others.
    Global(&'static [Role], u16),
    /// An action on the tenant or device in the path: the status for these
    /// roles on their own tenant, 403 for the others there; 404 for every
    /// non-owner on a foreign tenant (its existence is not revealed).
    Tenant(&'static [Role], u16),
}

use Rule::*;

/// The expected answers, one row per route of `api::router()`.
const TABLE: &[(&str, &str, Rule)] = &[
    ("GET", "/healthz", Public(200)),
    // An owner exists: setup is over.
    ("POST", "/api/v1/setup", Public(409)),
    ("POST", "/api/v1/setup/confirm", Public(404)),
    // Wrong credentials (the minimal valid body that changes nothing).
    ("POST", "/api/v1/auth/login", Public(401)),
    ("POST", "/api/v1/auth/logout", Global(EVERY_ROLE, 204)),
    ("GET", "/api/v1/tenants", Global(EVERY_ROLE, 200)),
    ("POST", "/api/v1/tenants", Global(&[Owner], 201)),
    (
        "POST",
        "/api/v1/tenants/{tenant}/enrollment-tokens",
        Tenant(&[Owner, SecurityOfficer, Technician], 201),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/devices",
        Tenant(EVERY_ROLE, 200),
    ),
    ("GET", "/api/v1/devices/{id}", Tenant(EVERY_ROLE, 200)),
    // Searched with `?tenant=` naming the side's tenant (without it: every
    // tenant in scope, `device_search_stays_in_scope`).
    ("GET", "/api/v1/devices", Tenant(EVERY_ROLE, 200)),
    (
        "POST",
        "/api/v1/devices/{id}/tags",
        Tenant(&[Owner, SecurityOfficer, Technician], 200),
    ),
    (
        "PUT",
        "/api/v1/devices/{id}/group",
        Tenant(&[Owner, SecurityOfficer, Technician], 200),
    ),
    (
        "GET",
        "/api/v1/devices/{id}/packages",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/devices/{id}/vulnerabilities",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/devices/{id}/checks",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/devices/{id}/metrics",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/metrics",
        Tenant(EVERY_ROLE, 200),
    ),
    ("GET", "/api/v1/dashboard", Global(EVERY_ROLE, 200)),
    (
        "GET",
        "/api/v1/tenants/{tenant}/vulnerabilities",
        Tenant(EVERY_ROLE, 200),
    ),
    ("GET", "/api/v1/events", Global(EVERY_ROLE, 200)),
    (
        "GET",
        "/api/v1/tenants/{tenant}/audit",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 200),
    ),
    (
        "GET",
        "/api/v1/operators",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    ("GET", "/api/v1/invitations", Global(&[Owner], 200)),
    ("POST", "/api/v1/invitations", Global(&[Owner], 201)),
    ("DELETE", "/api/v1/invitations/{id}", Global(&[Owner], 204)),
    (
        "GET",
        "/api/v1/lockouts",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    (
        "DELETE",
        "/api/v1/lockouts/{key}",
        Global(&[Owner, SecurityOfficer], 204),
    ),
    ("POST", "/api/v1/invitations/redeem", Public(201)),
    ("POST", "/api/v1/invitations/confirm", Public(201)),
    ("GET", "/api/v1/sessions", Global(EVERY_ROLE, 200)),
    // One of the caller's own sessions (made for the request).
    ("DELETE", "/api/v1/sessions/{id}", Global(EVERY_ROLE, 204)),
    (
        "POST",
        "/api/v1/operators/{id}/disable",
        Global(&[Owner], 204),
    ),
    // A wrong code (a right one works once per time step).
    ("POST", "/api/v1/auth/step-up", Global(EVERY_ROLE, 400)),
    (
        "POST",
        "/api/v1/auth/recovery-codes",
        Global(EVERY_ROLE, 201),
    ),
    ("GET", "/api/v1/api-tokens", Global(EVERY_ROLE, 200)),
    // A token holding the caller's own role on the tenant named in the body.
    ("POST", "/api/v1/api-tokens", Tenant(EVERY_ROLE, 201)),
    ("DELETE", "/api/v1/api-tokens/{id}", Global(EVERY_ROLE, 204)),
    ("GET", "/api/v1/passkeys", Global(EVERY_ROLE, 200)),
    (
        "POST",
        "/api/v1/passkeys/registration/options",
        Global(EVERY_ROLE, 200),
    ),
    // A real registration by a software passkey, when the options call
    // succeeds (a stale session's does not: its bogus ceremony never counts,
    // the step-up refusal comes first).
    (
        "POST",
        "/api/v1/passkeys/registration",
        Global(EVERY_ROLE, 201),
    ),
    // One of the caller's own passkeys (made for the request).
    ("PATCH", "/api/v1/passkeys/{id}", Global(EVERY_ROLE, 200)),
    ("DELETE", "/api/v1/passkeys/{id}", Global(EVERY_ROLE, 204)),
    // Options for any username (they reveal nothing).
    ("POST", "/api/v1/auth/passkey/options", Public(200)),
    // An answer to no ceremony, for a fresh username: the login failure.
    ("POST", "/api/v1/auth/passkey/login", Public(401)),
    // The caller holds a passkey (one is made for it if not).
    (
        "POST",
        "/api/v1/auth/step-up/passkey/options",
        Global(EVERY_ROLE, 200),
    ),
    // An answer to no ceremony.
    (
        "POST",
        "/api/v1/auth/step-up/passkey",
        Global(EVERY_ROLE, 400),
    ),
    (
        "GET",
        "/api/v1/settings/passkey-policy",
        Global(&[Owner], 200),
    ),
    // No role required: nothing changes for the other rows.
    (
        "PUT",
        "/api/v1/settings/passkey-policy",
        Global(&[Owner], 200),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/trust",
        Tenant(EVERY_ROLE, 200),
    ),
    // A body the schema accepts but no root would sign: 400 after the role check.
    (
        "POST",
        "/api/v1/tenants/{tenant}/trust/roots",
        Tenant(&[Owner, SecurityOfficer], 400),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/trust/policy",
        Tenant(&[Owner, SecurityOfficer], 400),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/trust/freeze",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 400),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/trust/proposals",
        Tenant(EVERY_ROLE, 200),
    ),
    // An envelope that does not decode: 400 after the widest role check
    // (a freeze may be proposed by the customer's auditor).
    (
        "POST",
        "/api/v1/tenants/{tenant}/trust/proposals",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 400),
    ),
    // The unsigned policy proposal made at start-up in each tenant.
    (
        "GET",
        "/api/v1/trust-proposals/{id}",
        Tenant(EVERY_ROLE, 200),
    ),
    // A malformed key id: 400 after the widest role check (a customer
    // root key's holder may co-sign as tenant auditor).
    (
        "POST",
        "/api/v1/trust-proposals/{id}/signatures",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 400),
    ),
    // The MSP's script library: no tenant's (the tenant auditor, the
    // customer's person, sees none of it). Bodies that parse but are
    // refused, and a script that does not exist: 400 and 404 come only
    // after the role check.
    (
        "GET",
        "/api/v1/scripts",
        Global(&[Owner, SecurityOfficer, Technician, ReadOnly], 200),
    ),
    (
        "POST",
        "/api/v1/scripts",
        Global(&[Owner, SecurityOfficer, Technician], 400),
    ),
    (
        "GET",
        "/api/v1/scripts/{name}",
        Global(&[Owner, SecurityOfficer, Technician, ReadOnly], 404),
    ),
    (
        "POST",
        "/api/v1/scripts/{name}/versions",
        Global(&[Owner, SecurityOfficer, Technician], 404),
    ),
    (
        "GET",
        "/api/v1/scripts/{name}/versions/{version}",
        Global(&[Owner, SecurityOfficer, Technician, ReadOnly], 404),
    ),
    (
        "POST",
        "/api/v1/scripts/{name}/versions/{version}/reviews",
        Global(&[Owner, SecurityOfficer, Technician], 404),
    ),
    // A fresh Ed25519 public key each time.
    ("POST", "/api/v1/signing-keys", Global(EVERY_ROLE, 201)),
    ("GET", "/api/v1/signing-keys", Global(EVERY_ROLE, 200)),
    (
        "GET",
        "/api/v1/tenants/{tenant}/jobs",
        Tenant(EVERY_ROLE, 200),
    ),
    // An envelope that does not decode: 400 after the role check.
    (
        "POST",
        "/api/v1/tenants/{tenant}/jobs",
        Tenant(&[Owner, SecurityOfficer, Technician], 400),
    ),
    // The job made at start-up in each tenant.
    ("GET", "/api/v1/jobs/{id}", Tenant(EVERY_ROLE, 200)),
    // That job is already approved (quorum 1): 409 after the role check.
    (
        "POST",
        "/api/v1/jobs/{id}/approvals",
        Tenant(&[Owner, SecurityOfficer, Technician, TenantAuditor], 409),
    ),
    (
        "POST",
        "/api/v1/jobs/{id}/reject",
        Tenant(&[Owner, SecurityOfficer, Technician, TenantAuditor], 409),
    ),
    // Live output of the start-up job on its device (none yet: an empty page).
    ("GET", "/api/v1/jobs/{id}/output", Tenant(EVERY_ROLE, 200)),
    // Whoever may run jobs may cancel them; an empty reason: 400 after the
    // role and MFA checks (the job stays as it is for the next caller).
    (
        "POST",
        "/api/v1/jobs/{id}/cancel",
        Tenant(&[Owner, SecurityOfficer, Technician], 400),
    ),
    // Scheduled jobs (RFD 0019): seen as jobs are, created by whoever may
    // request jobs, revoked by whoever may cancel them (an empty reason:
    // 400 after the role and MFA checks, the schedule stays).
    (
        "GET",
        "/api/v1/tenants/{tenant}/schedules",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/schedules",
        Tenant(&[Owner, SecurityOfficer, Technician], 400),
    ),
    // The schedule made at start-up in each tenant.
    ("GET", "/api/v1/schedules/{id}", Tenant(EVERY_ROLE, 200)),
    (
        "POST",
        "/api/v1/schedules/{id}/revoke",
        Tenant(&[Owner, SecurityOfficer, Technician], 400),
    ),
    // Patch policies (RFD 0021): as schedules (an undecodable canary: 400
    // after the role check; an empty revoke reason: 400, the policy stays).
    (
        "GET",
        "/api/v1/tenants/{tenant}/patch-policies",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/patch-policies",
        Tenant(&[Owner, SecurityOfficer, Technician], 400),
    ),
    // The patch policy made at start-up in each tenant.
    (
        "GET",
        "/api/v1/patch-policies/{id}",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "POST",
        "/api/v1/patch-policies/{id}/revoke",
        Tenant(&[Owner, SecurityOfficer, Technician], 400),
    ),
    // Remote shells (RFD 0015). The grant made at start-up in each tenant
    // was requested by the read-only operator: nobody else may connect
    // under it (403 for every role, before the upgrade), a key that is
    // not the approver's is a 400 after the role and MFA checks, and an
    // empty revoke reason a 400 (the grant stays for the next caller).
    (
        "GET",
        "/api/v1/tenants/{tenant}/shell-grants",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/shell-grants",
        Tenant(&[Owner, SecurityOfficer, Technician], 400),
    ),
    ("GET", "/api/v1/shell-grants/{id}", Tenant(EVERY_ROLE, 200)),
    (
        "POST",
        "/api/v1/shell-grants/{id}/approvals",
        Tenant(&[Owner, SecurityOfficer, Technician, TenantAuditor], 400),
    ),
    (
        "POST",
        "/api/v1/shell-grants/{id}/revoke",
        Tenant(&[Owner, SecurityOfficer, Technician, TenantAuditor], 400),
    ),
    ("GET", "/api/v1/shell-grants/{id}/connect", Tenant(&[], 403)),
    (
        "GET",
        "/api/v1/devices/{id}/shell-sessions",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/shell-sessions",
        Tenant(EVERY_ROLE, 200),
    ),
    // The start-up session is still open: no recording yet (409), after
    // the role check; recordings are for owners, security officers and
    // the customer's auditor.
    (
        "GET",
        "/api/v1/shell-sessions/{id}/recording",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 409),
    ),
    // The transparency logs (read-only): the key is for everyone with a
    // role; a tenant's log for every role on that tenant; the MSP log for
    // owners and security officers.
    ("GET", "/api/v1/log/key", Global(EVERY_ROLE, 200)),
    // The vulnerability database: public advisory data for every role;
    // imports for owners only (no such import: 404 after the role check).
    ("GET", "/api/v1/vulndb", Global(EVERY_ROLE, 200)),
    ("GET", "/api/v1/vulndb/check", Global(EVERY_ROLE, 200)),
    ("POST", "/api/v1/vulndb/imports", Global(&[Owner], 201)),
    (
        "POST",
        "/api/v1/vulndb/imports/{generation}/records",
        Global(&[Owner], 404),
    ),
    (
        "POST",
        "/api/v1/vulndb/imports/{generation}/switch",
        Global(&[Owner], 404),
    ),
    // The agent release mirror (RFD 0017): its metadata is public release
    // data for every role (none imported: 404 after the role check);
    // imports for owners only (a bad name: 400 after the role check).
    (
        "GET",
        "/api/v1/releases/metadata/{name}",
        Global(EVERY_ROLE, 404),
    ),
    ("POST", "/api/v1/releases/files", Global(&[Owner], 400)),
    (
        "GET",
        "/api/v1/tenants/{tenant}/log",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/log/entries",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/log/checkpoints",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/log/statements",
        Tenant(EVERY_ROLE, 200),
    ),
    // index=0&tree_size=1: every tenant's log holds its creation.
    (
        "GET",
        "/api/v1/tenants/{tenant}/log/proof/inclusion",
        Tenant(EVERY_ROLE, 200),
    ),
    // from=1&to=1.
    (
        "GET",
        "/api/v1/tenants/{tenant}/log/proof/consistency",
        Tenant(EVERY_ROLE, 200),
    ),
    // Announcing an export (the one write): exactly who may read the log.
    // {"purpose": "export", "tree_size": 1}.
    (
        "POST",
        "/api/v1/tenants/{tenant}/log/exports",
        Tenant(EVERY_ROLE, 201),
    ),
    (
        "GET",
        "/api/v1/msp/log",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    (
        "GET",
        "/api/v1/msp/log/entries",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    (
        "GET",
        "/api/v1/msp/log/checkpoints",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    (
        "GET",
        "/api/v1/msp/log/proof/inclusion",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    (
        "GET",
        "/api/v1/msp/log/proof/consistency",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    (
        "POST",
        "/api/v1/msp/log/exports",
        Global(&[Owner, SecurityOfficer], 201),
    ),
    // A CLI's device sign-in (RFC 8628): anyone may start one.
    ("POST", "/api/v1/auth/device", Public(200)),
    // An unknown device code: RFC 8628's `invalid_grant`.
    ("POST", "/api/v1/auth/device/token", Public(400)),
    // Approving is one's own business; a malformed code is refused after
    // the check (and before any lookup, so no wrong-code throttle).
    (
        "POST",
        "/api/v1/auth/device/approve/options",
        Global(EVERY_ROLE, 400),
    ),
    (
        "POST",
        "/api/v1/auth/device/approve",
        Global(EVERY_ROLE, 400),
    ),
    ("POST", "/api/v1/auth/device/deny", Global(EVERY_ROLE, 400)),
    // A fresh operator's grants (read-only on the own tenant).
    (
        "PUT",
        "/api/v1/operators/{id}/grants",
        Global(&[Owner], 200),
    ),
    (
        "DELETE",
        "/api/v1/operators/{id}/passkeys",
        Global(&[Owner], 204),
    ),
    // Alerts: seen by every role (the store's scope keeps them to the
    // caller's tenants), handled by those who run the tenant; e-mail
    // channels also by the customer's auditor.
    ("GET", "/api/v1/alerts", Global(EVERY_ROLE, 200)),
    // Bulwark's own health, for the MSP's Prometheus.
    (
        "GET",
        "/api/v1/metrics",
        Global(&[Owner, SecurityOfficer], 200),
    ),
    ("GET", "/api/v1/alerts/{id}", Tenant(EVERY_ROLE, 200)),
    (
        "POST",
        "/api/v1/alerts/{id}/acknowledge",
        Tenant(&[Owner, SecurityOfficer, Technician], 200),
    ),
    (
        "POST",
        "/api/v1/alerts/{id}/resolve",
        Tenant(&[Owner, SecurityOfficer, Technician], 200),
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant}/alert-channels",
        Tenant(EVERY_ROLE, 200),
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant}/alert-channels",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 201),
    ),
    (
        "DELETE",
        "/api/v1/alert-channels/{id}",
        Tenant(&[Owner, SecurityOfficer, TenantAuditor], 204),
    ),
    // SLAs: read by everyone who sees the tenant's alerts (the customer's
    // auditor too), set by owners only.
    (
        "GET",
        "/api/v1/tenants/{tenant}/sla",
        Tenant(EVERY_ROLE, 200),
    ),
    ("PUT", "/api/v1/tenants/{tenant}/sla", Tenant(&[Owner], 200)),
    (
        "GET",
        "/api/v1/tenants/{tenant}/sla/report",
        Tenant(EVERY_ROLE, 200),
    ),
    // Keep last: a stale-MFA session calling it signs out the role's main session.
    (
        "POST",
        "/api/v1/sessions/revoke-others",
        Global(EVERY_ROLE, 200),
    ),
];

/// The routes whose action is privileged (`Action::privileged`): a session
/// whose MFA check is older than five minutes gets 403 `step_up_required`
/// where a fresh one would succeed.
const PRIVILEGED: &[(&str, &str)] = &[
    ("POST", "/api/v1/tenants/{tenant}/enrollment-tokens"),
    ("POST", "/api/v1/invitations"),
    ("DELETE", "/api/v1/lockouts/{key}"),
    ("POST", "/api/v1/operators/{id}/disable"),
    ("POST", "/api/v1/auth/recovery-codes"),
    ("POST", "/api/v1/api-tokens"),
    ("POST", "/api/v1/tenants/{tenant}/trust/roots"),
    ("POST", "/api/v1/tenants/{tenant}/trust/policy"),
    ("POST", "/api/v1/tenants/{tenant}/trust/freeze"),
    ("POST", "/api/v1/tenants/{tenant}/trust/proposals"),
    ("POST", "/api/v1/trust-proposals/{id}/signatures"),
    ("POST", "/api/v1/jobs/{id}/approvals"),
    ("POST", "/api/v1/jobs/{id}/reject"),
    ("POST", "/api/v1/jobs/{id}/cancel"),
    ("POST", "/api/v1/schedules/{id}/revoke"),
    ("POST", "/api/v1/patch-policies/{id}/revoke"),
    ("POST", "/api/v1/shell-grants/{id}/approvals"),
    ("POST", "/api/v1/passkeys/registration/options"),
    ("POST", "/api/v1/passkeys/registration"),
    ("DELETE", "/api/v1/passkeys/{id}"),
    ("PUT", "/api/v1/settings/passkey-policy"),
    ("PUT", "/api/v1/operators/{id}/grants"),
    ("DELETE", "/api/v1/operators/{id}/passkeys"),
    ("POST", "/api/v1/tenants/{tenant}/alert-channels"),
    ("DELETE", "/api/v1/alert-channels/{id}"),
    ("PUT", "/api/v1/tenants/{tenant}/sla"),
    ("POST", "/api/v1/vulndb/imports"),
];

/// The expected status and error code (for 401, 403 and 404 answers).
fn expected_with_code(
    method: &str,
    route: &str,
    rule: Rule,
    who: Who,
    side: Side,
) -> (u16, &'static str) {
    let code = |status| match status {
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        _ => "",
    };
    if let (Who::StaleMfa(role), false) = (who, matches!(rule, Public(_))) {
        let fresh = expected(rule, Who::As(role), side);
        let privileged = PRIVILEGED.contains(&(method, route));
        // The MFA check comes right after the role check, before the body is read.
        return if privileged && !matches!(fresh, 401 | 403 | 404) {
            (403, "step_up_required")
        } else {
            (fresh, code(fresh))
        };
    }
    let status = expected(rule, who, side);
    (
        status,
        if matches!(rule, Public(_)) {
            ""
        } else {
            code(status)
        },
    )
}

fn expected(rule: Rule, who: Who, side: Side) -> u16 {
    let role = match (rule, who) {
        (Public(status), _) => return status,
        (_, Who::NoSession | Who::RevokedSession | Who::ExpiredSession) => return 401,
        (_, Who::As(role) | Who::StaleMfa(role)) => role,
    };
    match rule {
        Public(status) => status,
        Global(allowed, ok) => {
            if allowed.contains(&role) {
                ok
            } else {
                403
            }
        }
        Tenant(allowed, ok) => {
            if side == Side::Foreign && role != Owner {
                404
            } else if allowed.contains(&role) {
                ok
            } else {
                403
            }
        }
    }
}

/// Every (method, path) in the OpenAPI document of `api::router()`.
fn documented_routes() -> BTreeSet<(String, String)> {
    let (_router, doc) = bulwark_server::api::router();
    let mut routes = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        for (method, operation) in [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("OPTIONS", &item.options),
            ("HEAD", &item.head),
            ("PATCH", &item.patch),
            ("TRACE", &item.trace),
        ] {
            if operation.is_some() {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

fn totp_code(secret: &str, at_secs: u64) -> String {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32 secret");
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).generate(at_secs)
}

fn now_secs() -> u64 {
    u64::try_from(now_millis() / 1000).expect("after 1970")
}

struct Harness {
    server: RunningServer,
    base: String,
    http: reqwest::Client,
    /// A bearer token per role, from a real login.
    sessions: BTreeMap<Role, String>,
    operator_ids: BTreeMap<Role, String>,
    revoked: String,
    expired: String,
    devices: BTreeMap<&'static str, String>,
    jobs: BTreeMap<&'static str, String>,
    schedules: BTreeMap<&'static str, String>,
    patch_policies: BTreeMap<&'static str, String>,
    /// The owner's registered signing key, listed in each tenant's policy.
    operator_key: Option<SigningKey>,
    /// A shell grant (asked for by the read-only operator) and an open
    /// session under it, per tenant.
    shell_grants: BTreeMap<&'static str, String>,
    shell_sessions: BTreeMap<&'static str, String>,
    /// An open (unsigned) policy proposal per tenant.
    proposals: BTreeMap<&'static str, String>,
    tenant_ids: BTreeMap<&'static str, String>,
    counter: u32,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Harness {
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let streaming = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let body = if streaming {
            Value::Null // an endless stream: the status is the answer
        } else {
            let bytes = response.bytes().await.expect("body");
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Reply { status, body }
    }

    async fn ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Value {
        let reply = self.send(method, path, token, body).await;
        assert!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    fn owner(&self) -> &str {
        &self.sessions[&Owner]
    }

    fn unique(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{}", self.counter)
    }

    /// A new open alert of `tenant`, raised in the store as the log raiser
    /// would: each handling request gets its own.
    async fn alert(&mut self, tenant: &str) -> String {
        let key = self.unique("alert");
        let raised = self
            .server
            .store
            .raise_alert(
                &bulwark_store::NewAlert {
                    tenant_id: Some(self.tenant_ids[tenant].clone()),
                    device_id: None,
                    kind: "alert.log_refused".to_owned(),
                    severity: bulwark_store::Severity::Critical,
                    dedup_key: key,
                    summary: "an agent refused a job".to_owned(),
                    detail: String::new(),
                    log_id: Some(self.tenant_ids[tenant].clone()),
                    log_idx: Some(0),
                    silenced: None,
                },
                now_millis(),
                None,
            )
            .await
            .expect("alert");
        match raised {
            bulwark_store::Raised::Opened { id, .. } => id,
            other => panic!("{other:?}"),
        }
    }

    /// A new e-mail channel of `tenant`.
    async fn channel(&mut self, tenant: &str) -> String {
        let target = format!("{}@example.com", self.unique("soc"));
        self.server
            .store
            .add_notification_channel(
                &bulwark_store::NewChannel {
                    tenant_id: Some(self.tenant_ids[tenant].clone()),
                    kind: bulwark_store::ChannelKind::Email,
                    target,
                    min_severity: bulwark_store::Severity::Warning,
                    created_by: "olivia".to_owned(),
                    escalate_after_ms: None,
                    routing_key: None,
                    hours: bulwark_store::ChannelHours::Always,
                },
                now_millis(),
            )
            .await
            .expect("channel")
            .id
    }

    /// A new pending invitation: (id, link token).
    async fn invitation(&mut self, role: Role, tenant: Option<&str>) -> (String, String) {
        let username = self.unique("invitee");
        let tenants: Vec<&str> = tenant.into_iter().collect();
        let body = json!({"username": username, "role": role.api_name(), "tenants": tenants});
        let created = self
            .ok(
                "POST",
                "/api/v1/invitations",
                Some(self.owner()),
                Some(&body),
            )
            .await;
        assert_eq!(
            created["path"].as_str(),
            Some(format!("/invite/{}", created["token"].as_str().expect("token")).as_str())
        );
        (
            created["id"].as_str().expect("id").to_owned(),
            created["token"].as_str().expect("token").to_owned(),
        )
    }

    /// Redeems an invitation link: (enrolment id, TOTP secret).
    async fn redeem(&self, token: &str) -> (String, String) {
        let started = self
            .ok(
                "POST",
                "/api/v1/invitations/redeem",
                None,
                Some(&json!({"token": token, "password": PASSWORD})),
            )
            .await;
        (
            started["enrolment_id"]
                .as_str()
                .expect("enrolment")
                .to_owned(),
            started["totp_secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// A session made directly in the store for `operator_id` (for logout,
    /// which ends the session it is called with, and for the expired case).
    async fn mint_session(&self, operator_id: &str, created_at: i64, expires_at: i64) -> String {
        self.mint_session_mfa(operator_id, created_at, expires_at, created_at)
            .await
            .0
    }

    /// A session with its MFA check at `mfa_at`: (token, public id).
    async fn mint_session_mfa(
        &self,
        operator_id: &str,
        created_at: i64,
        expires_at: i64,
        mfa_at: i64,
    ) -> (String, String) {
        let (token, hash) = new_token();
        let (csrf_token, _) = new_token();
        let session = self
            .server
            .store
            .create_session(
                NewSession {
                    id_hash: hash,
                    operator_id: operator_id.to_owned(),
                    kind: SessionKind::Cli,
                    csrf_token,
                    created_at,
                    expires_at,
                    mfa_at,
                    ip: None,
                    user_agent: None,
                    passkey_id: None,
                },
                &[],
            )
            .await
            .expect("session stored");
        (token, session.public_id)
    }

    /// A passkey of `role`'s operator, stored directly (its key is never
    /// used): its id.
    async fn mint_passkey(&mut self, role: Role) -> String {
        let name = self.unique("minted");
        let mut credential_id = vec![0; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut credential_id);
        self.server
            .store
            .add_passkey(
                &bulwark_store::NewPasskey {
                    operator_id: self.operator_ids[&role].clone(),
                    name,
                    credential_id,
                    credential: vec![0xa0],
                    sign_count: 0,
                    backup_eligible: false,
                    created_at: now_millis(),
                },
                "test",
            )
            .await
            .expect("passkey stored")
            .id
    }

    /// A live session of `role` whose MFA check is 10 minutes old.
    async fn stale_session(&self, role: Role) -> (String, String) {
        let now = now_millis();
        self.mint_session_mfa(
            &self.operator_ids[&role].clone(),
            now - 600_000,
            now + 3_600_000,
            now - 600_000,
        )
        .await
    }

    async fn enrol_device(&self, tenant: &str) -> String {
        let issued = self
            .ok(
                "POST",
                &format!("/api/v1/tenants/{tenant}/enrollment-tokens"),
                Some(self.owner()),
                Some(&json!({})),
            )
            .await;
        let token = EnrollToken::parse(issued["token"].as_str().expect("token")).expect("token");
        let address = ServerAddress::parse(&self.server.gateway_url).expect("gateway url");
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let enrolled = connection::enroll(&address, &token, &key, &format!("host-{tenant}"))
            .await
            .expect("enrol");
        enrolled.device_id.to_string()
    }

    /// The path, body and bearer token of one matrix request.
    /// A grant for `tenant`'s device, requested by the read-only operator
    /// (unsigned: the routes under test never send it to an agent), and a
    /// session opened under it.
    async fn shell_grant(&self, tenant: &'static str) -> (String, String) {
        let now = now_secs();
        let grant_id: [u8; 16] = rand::random();
        let statement = bulwark_policy::shell::ShellGrant {
            tenant: self.tenant_ids[tenant].clone(),
            tenant_name: tenant.to_owned(),
            grant_id,
            device: bulwark_policy::JobTarget {
                device_id: self.devices[tenant].clone(),
                hostname: "matrix".to_owned(),
                device_key: None,
            },
            grantee: bulwark_policy::KeyId([0; 32]),
            account: bulwark_policy::shell::ShellAccount::Unprivileged,
            reason: "matrix".to_owned(),
            not_before: now - 60,
            expires_at: now + 3600,
            nonce: rand::random(),
        };
        let id = hex::encode(grant_id);
        self.server
            .store
            .create_shell_grant(
                &bulwark_store::NewShellGrant {
                    id: id.clone(),
                    tenant_id: self.tenant_ids[tenant].clone(),
                    device_id: self.devices[tenant].clone(),
                    requested_by: self.operator_ids[&ReadOnly].clone(),
                    grantee_key: "00".repeat(32),
                    account: "unprivileged".to_owned(),
                    reason: "matrix".to_owned(),
                    not_before: i64::try_from(now - 60).expect("time"),
                    expires_at: i64::try_from(now + 3600).expect("time"),
                    envelope: Signed::new(&statement).to_bytes(),
                },
                now_millis(),
                &[],
            )
            .await
            .expect("grant stored");
        let session = hex::encode(rand::random::<[u8; 16]>());
        self.server
            .store
            .open_shell_session(
                &session,
                &id,
                &self.operator_ids[&ReadOnly],
                now_millis(),
                &[],
            )
            .await
            .expect("session stored");
        (id, session)
    }

    async fn request_for(
        &mut self,
        method: &str,
        route: &str,
        who: Who,
        side: Side,
    ) -> (String, Option<Value>, Option<String>) {
        let tenant = match side {
            Side::Own => OWN,
            Side::Foreign => FOREIGN,
        };
        let token = match who {
            Who::NoSession => None,
            Who::RevokedSession => Some(self.revoked.clone()),
            Who::ExpiredSession => Some(self.expired.clone()),
            // Logout ends the session it is called with: give it a fresh one.
            Who::As(role) if route == "/api/v1/auth/logout" => {
                let now = now_millis();
                Some(
                    self.mint_session(&self.operator_ids[&role].clone(), now, now + 60_000)
                        .await,
                )
            }
            Who::StaleMfa(role) => Some(self.stale_session(role).await.0),
            Who::As(role) => Some(self.sessions[&role].clone()),
        };
        // The operator whose own objects (sessions) the path names.
        let subject = match who {
            Who::As(role) | Who::StaleMfa(role) => role,
            _ => Technician,
        };
        let path = route.replace("{tenant}", tenant);
        let (path, body) = match (method, route) {
            ("POST", "/api/v1/setup") => (
                path,
                Some(
                    json!({"code": "AAAA-BBBB-CCCC-DDDD", "username": "late", "password": PASSWORD}),
                ),
            ),
            ("POST", "/api/v1/setup/confirm") => (
                path,
                Some(json!({"enrolment_id": "no-such-enrolment", "otp": "000000"})),
            ),
            ("POST", "/api/v1/auth/login") => {
                let username = self.unique("nobody");
                (
                    path,
                    Some(json!({"username": username, "password": PASSWORD, "otp": "000000"})),
                )
            }
            ("POST", "/api/v1/tenants") => {
                let name = self.unique("made");
                (path, Some(json!({"name": name})))
            }
            ("POST", "/api/v1/tenants/{tenant}/enrollment-tokens") => (path, Some(json!({}))),
            (
                "GET",
                "/api/v1/devices/{id}"
                | "/api/v1/devices/{id}/packages"
                | "/api/v1/devices/{id}/checks"
                | "/api/v1/devices/{id}/metrics"
                | "/api/v1/devices/{id}/vulnerabilities"
                | "/api/v1/devices/{id}/shell-sessions",
            ) => (path.replace("{id}", &self.devices[tenant]), None),
            ("GET", "/api/v1/shell-grants/{id}" | "/api/v1/shell-grants/{id}/connect") => {
                (path.replace("{id}", &self.shell_grants[tenant]), None)
            }
            ("POST", "/api/v1/shell-grants/{id}/approvals") => (
                path.replace("{id}", &self.shell_grants[tenant]),
                Some(json!({"key_id": "00".repeat(32), "signature": "AAAA"})),
            ),
            ("POST", "/api/v1/shell-grants/{id}/revoke") => (
                path.replace("{id}", &self.shell_grants[tenant]),
                Some(json!({"reason": ""})),
            ),
            ("POST", "/api/v1/tenants/{tenant}/shell-grants") => {
                (path, Some(json!({"envelope": "AAAA"})))
            }
            ("GET", "/api/v1/shell-sessions/{id}/recording") => {
                (path.replace("{id}", &self.shell_sessions[tenant]), None)
            }
            ("GET", "/api/v1/devices") => (format!("{path}?tenant={tenant}&tag=matrix"), None),
            ("POST", "/api/v1/devices/{id}/tags") => (
                path.replace("{id}", &self.devices[tenant]),
                Some(json!({"add": ["matrix"], "remove": ["gone"]})),
            ),
            ("PUT", "/api/v1/devices/{id}/group") => (
                path.replace("{id}", &self.devices[tenant]),
                Some(json!({"group": "Branch Leeds"})),
            ),
            ("GET", "/api/v1/tenants/{tenant}/metrics") => (format!("{path}?metric=cpu"), None),
            (
                "POST",
                "/api/v1/tenants/{tenant}/trust/roots"
                | "/api/v1/tenants/{tenant}/trust/policy"
                | "/api/v1/tenants/{tenant}/trust/freeze"
                | "/api/v1/tenants/{tenant}/trust/proposals",
            ) => (path, Some(json!({"envelope": "AAAA"}))),
            ("GET", "/api/v1/trust-proposals/{id}") => {
                (path.replace("{id}", &self.proposals[tenant]), None)
            }
            ("POST", "/api/v1/trust-proposals/{id}/signatures") => (
                path.replace("{id}", &self.proposals[tenant]),
                Some(json!({"key_id": "not hex", "signature": "AAAA"})),
            ),
            ("POST", "/api/v1/signing-keys") => {
                let name = self.unique("key");
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                (
                    path,
                    Some(
                        json!({"name": name, "public_key": B64.encode(key.verifying_key().to_bytes())}),
                    ),
                )
            }
            ("POST", "/api/v1/tenants/{tenant}/jobs" | "/api/v1/tenants/{tenant}/schedules") => {
                (path, Some(json!({"envelope": "AAAA", "script": "true"})))
            }
            ("POST", "/api/v1/tenants/{tenant}/patch-policies") => {
                let bad = json!({"envelope": "AAAA", "script": ""});
                (
                    path,
                    Some(json!({"name": "x", "canary": bad, "rest": bad, "soak_secs": 0})),
                )
            }
            ("GET", "/api/v1/patch-policies/{id}") => {
                (path.replace("{id}", &self.patch_policies[tenant]), None)
            }
            ("POST", "/api/v1/patch-policies/{id}/revoke") => (
                path.replace("{id}", &self.patch_policies[tenant]),
                Some(json!({"reason": ""})),
            ),
            ("GET", "/api/v1/schedules/{id}") => {
                (path.replace("{id}", &self.schedules[tenant]), None)
            }
            ("POST", "/api/v1/schedules/{id}/revoke") => (
                path.replace("{id}", &self.schedules[tenant]),
                Some(json!({"reason": ""})),
            ),
            ("POST", "/api/v1/scripts") => (
                path,
                Some(
                    json!({"name": "Not A Name", "description": "", "interpreter": "sh",
                    "params": [], "content": "true", "author_envelope": "AAAA"}),
                ),
            ),
            ("POST", "/api/v1/releases/files") => (
                path,
                Some(json!({"kind": "metadata", "path": "x.json", "content": ""})),
            ),
            ("GET", "/api/v1/releases/metadata/{name}") => {
                (path.replace("{name}", "timestamp.json"), None)
            }
            ("GET", "/api/v1/scripts/{name}") => (path.replace("{name}", "missing"), None),
            ("POST", "/api/v1/scripts/{name}/versions") => (
                path.replace("{name}", "missing"),
                Some(
                    json!({"version": 2, "interpreter": "sh", "params": [], "content": "true",
                    "author_envelope": "AAAA"}),
                ),
            ),
            ("GET", "/api/v1/scripts/{name}/versions/{version}") => (
                path.replace("{name}", "missing").replace("{version}", "1"),
                None,
            ),
            ("POST", "/api/v1/scripts/{name}/versions/{version}/reviews") => (
                path.replace("{name}", "missing").replace("{version}", "1"),
                Some(json!({"envelope": "AAAA"})),
            ),
            ("GET", "/api/v1/jobs/{id}") => (path.replace("{id}", &self.jobs[tenant]), None),
            (
                "GET" | "POST",
                "/api/v1/alerts/{id}"
                | "/api/v1/alerts/{id}/acknowledge"
                | "/api/v1/alerts/{id}/resolve",
            ) => {
                let id = self.alert(tenant).await;
                (path.replace("{id}", &id), None)
            }
            ("POST", "/api/v1/tenants/{tenant}/alert-channels") => (
                path,
                Some(json!({"kind": "email", "target": "soc@customer.example"})),
            ),
            ("PUT", "/api/v1/tenants/{tenant}/sla") => (
                path,
                Some(json!({
                    "time_zone": "Europe/Berlin",
                    "business_hours": [{"day": "mon", "start": "09:00", "end": "17:00"}],
                    "holidays": ["2026-12-25"],
                    "targets": [{"severity": "critical", "acknowledge_minutes": 30, "resolve_minutes": 240}],
                    "patch_critical_days": 14
                })),
            ),
            ("DELETE", "/api/v1/alert-channels/{id}") => {
                let id = self.channel(tenant).await;
                (path.replace("{id}", &id), None)
            }
            ("POST", "/api/v1/jobs/{id}/approvals") => (
                path.replace("{id}", &self.jobs[tenant]),
                Some(json!({"key_id": "00".repeat(32), "signature": "AAAA"})),
            ),
            ("POST", "/api/v1/jobs/{id}/reject") => (
                path.replace("{id}", &self.jobs[tenant]),
                Some(json!({"reason": "not today"})),
            ),
            ("POST", "/api/v1/jobs/{id}/cancel") => (
                path.replace("{id}", &self.jobs[tenant]),
                Some(json!({"reason": ""})),
            ),
            ("GET", "/api/v1/jobs/{id}/output") => (
                format!(
                    "{}?device={}",
                    path.replace("{id}", &self.jobs[tenant]),
                    self.devices[tenant]
                ),
                None,
            ),
            ("POST", "/api/v1/invitations") => {
                let username = self.unique("invited");
                (
                    path,
                    Some(json!({"username": username, "role": "read_only", "tenants": [tenant]})),
                )
            }
            ("DELETE", "/api/v1/invitations/{id}") => {
                let (id, _) = self.invitation(ReadOnly, Some(tenant)).await;
                (path.replace("{id}", &id), None)
            }
            ("DELETE", "/api/v1/lockouts/{key}") => {
                // A failed login leaves a throttle counter to lift.
                let username = self.unique("failing");
                let reply = self
                    .send(
                        "POST",
                        "/api/v1/auth/login",
                        None,
                        Some(&json!({"username": username, "password": PASSWORD, "otp": "000000"})),
                    )
                    .await;
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
                (path.replace("{key}", &format!("user:{username}")), None)
            }
            ("POST", "/api/v1/invitations/redeem") => {
                let (_, link) = self.invitation(Technician, Some(tenant)).await;
                (path, Some(json!({"token": link, "password": PASSWORD})))
            }
            ("POST", "/api/v1/invitations/confirm") => {
                let (_, link) = self.invitation(Technician, Some(tenant)).await;
                let (enrolment_id, secret) = self.redeem(&link).await;
                let otp = totp_code(&secret, now_secs());
                (
                    path,
                    Some(json!({"enrolment_id": enrolment_id, "otp": otp})),
                )
            }
            ("DELETE", "/api/v1/sessions/{id}") => {
                let now = now_millis();
                let (_, id) = self
                    .mint_session_mfa(&self.operator_ids[&subject].clone(), now, now + 60_000, now)
                    .await;
                (path.replace("{id}", &id), None)
            }
            ("POST", "/api/v1/operators/{id}/disable") => {
                let username = self.unique("to-disable");
                let operator = self
                    .server
                    .store
                    .create_operator(
                        &bulwark_store::NewOperator {
                            username,
                            password_hash: "$argon2id$unused".to_owned(),
                            totp_secret: "UNUSED".to_owned(),
                        },
                        "operator",
                        "test",
                        now_millis(),
                    )
                    .await
                    .expect("operator");
                (path.replace("{id}", &operator.id), None)
            }
            ("POST", "/api/v1/auth/step-up") => (path, Some(json!({"otp": "000000"}))),
            ("POST", "/api/v1/api-tokens") => {
                let role = match subject {
                    Owner => Technician,
                    other => other,
                };
                let name = self.unique("integration");
                (
                    path,
                    Some(json!({"name": name, "role": role.api_name(), "tenants": [tenant]})),
                )
            }
            ("DELETE", "/api/v1/api-tokens/{id}") => {
                let (_, hash) = new_token();
                let now = now_millis();
                let token = self
                    .server
                    .store
                    .create_api_token(
                        &bulwark_store::NewApiToken {
                            token_hash: hash,
                            operator_id: self.operator_ids[&subject].clone(),
                            name: "to revoke".to_owned(),
                            role: "read_only".to_owned(),
                            tenant_ids: Vec::new(),
                            created_at: now,
                            expires_at: now + 60_000,
                        },
                        "test",
                    )
                    .await
                    .expect("token");
                (path.replace("{id}", &token.id), None)
            }
            ("POST", "/api/v1/passkeys/registration") => {
                let name = self.unique("passkey");
                let options = self
                    .send(
                        "POST",
                        "/api/v1/passkeys/registration/options",
                        token.as_deref(),
                        None,
                    )
                    .await;
                let body = if options.status == StatusCode::OK {
                    soft_passkey::SoftPasskey::new(&self.server.console_url).create(&options.body)
                } else {
                    json!({"ceremony": "none", "attestationObject": "", "clientDataJSON": ""})
                };
                (path, Some(soft_passkey::with(body, json!({"name": name}))))
            }
            ("PATCH", "/api/v1/passkeys/{id}") => {
                let id = self.mint_passkey(subject).await;
                let name = self.unique("renamed");
                (path.replace("{id}", &id), Some(json!({"name": name})))
            }
            ("DELETE", "/api/v1/passkeys/{id}") => {
                let id = self.mint_passkey(subject).await;
                (path.replace("{id}", &id), None)
            }
            ("POST", "/api/v1/auth/passkey/options") => (path, Some(json!({"username": "olivia"}))),
            ("POST", "/api/v1/auth/passkey/login") => {
                let username = self.unique("nobody");
                (
                    path,
                    Some(json!({
                        "username": username, "password": PASSWORD, "ceremony": "none",
                        "credentialId": "AAAA", "authenticatorData": "", "clientDataJSON": "",
                        "signature": ""
                    })),
                )
            }
            ("POST", "/api/v1/auth/step-up/passkey/options") => {
                let held = self
                    .server
                    .store
                    .passkey_count(&self.operator_ids[&subject])
                    .await
                    .expect("count");
                if held == 0 {
                    self.mint_passkey(subject).await;
                }
                (path, None)
            }
            ("POST", "/api/v1/auth/step-up/passkey") => (
                path,
                Some(json!({
                    "ceremony": "none", "credentialId": "AAAA", "authenticatorData": "",
                    "clientDataJSON": "", "signature": ""
                })),
            ),
            ("PUT", "/api/v1/settings/passkey-policy") => (path, Some(json!({"roles": []}))),
            ("POST", "/api/v1/auth/device/token") => {
                (path, Some(json!({"device_code": "no-such-device-code"})))
            }
            ("POST", "/api/v1/auth/device/approve/options" | "/api/v1/auth/device/deny") => {
                (path, Some(json!({"user_code": "not a code"})))
            }
            ("POST", "/api/v1/auth/device/approve") => (
                path,
                Some(json!({
                    "user_code": "not a code", "ceremony": "none", "credentialId": "AAAA",
                    "authenticatorData": "", "clientDataJSON": "", "signature": ""
                })),
            ),
            (
                "PUT" | "DELETE",
                "/api/v1/operators/{id}/grants" | "/api/v1/operators/{id}/passkeys",
            ) => {
                let username = self.unique("regranted");
                let operator = self
                    .server
                    .store
                    .create_operator(
                        &bulwark_store::NewOperator {
                            username,
                            password_hash: "$argon2id$unused".to_owned(),
                            totp_secret: "UNUSED".to_owned(),
                        },
                        "operator",
                        "test",
                        now_millis(),
                    )
                    .await
                    .expect("operator");
                let body = (method == "PUT")
                    .then(|| json!({"grants": [{"tenant": OWN, "role": "read_only"}]}));
                (path.replace("{id}", &operator.id), body)
            }
            (
                "GET",
                "/api/v1/tenants/{tenant}/log/proof/inclusion" | "/api/v1/msp/log/proof/inclusion",
            ) => (format!("{path}?index=0&tree_size=1"), None),
            (
                "GET",
                "/api/v1/tenants/{tenant}/log/proof/consistency"
                | "/api/v1/msp/log/proof/consistency",
            ) => (format!("{path}?from=1&to=1"), None),
            ("POST", "/api/v1/tenants/{tenant}/log/exports" | "/api/v1/msp/log/exports") => {
                (path, Some(json!({"purpose": "export", "tree_size": 1})))
            }
            ("GET", "/api/v1/vulndb/check") => (
                format!("{path}?ecosystem=Debian%3A12&package=openssl&version=3.0.11-1"),
                None,
            ),
            ("POST", "/api/v1/vulndb/imports/{generation}/records") => (
                path.replace("{generation}", "999999"),
                Some(json!({"records": []})),
            ),
            ("POST", "/api/v1/vulndb/imports/{generation}/switch") => {
                (path.replace("{generation}", "999999"), None)
            }
            (_, _) if method == "POST" => (path, Some(json!({}))),
            _ => (path, None),
        };
        (path, body, token)
    }
}

/// A root of one key (threshold 1) and a policy letting `operator` sign every class alone.
fn trust_statements(
    tenant_id: &str,
    root_key: &SigningKey,
    operator: &SigningKey,
) -> (Signed, Signed) {
    use bulwark_policy::{
        ActionClass, Holder, OperatorKey, Policy, PublicKey, Quorum, RootKey, TrustRoot,
    };
    let root = TrustRoot {
        tenant: tenant_id.to_owned(),
        version: 1,
        threshold: 1,
        keys: vec![RootKey {
            key: PublicKey::Ed25519(root_key.verifying_key().to_bytes()),
            holder: Holder::Msp,
            name: "root".into(),
        }],
    };
    let classes = vec![ActionClass::RunScript, ActionClass::InstallPatches];
    let policy = Policy {
        tenant: tenant_id.to_owned(),
        version: 1,
        expires_at: now_secs() + 86_400,
        operators: vec![OperatorKey {
            key: PublicKey::Ed25519(operator.verifying_key().to_bytes()),
            name: "owner laptop".into(),
            holder: Holder::Msp,
            classes: classes.clone(),
        }],
        quorums: vec![
            Quorum {
                class: ActionClass::RunScript,
                signers: 1,
                customer_required: false,
                in_window_only: false,
            },
            Quorum {
                class: ActionClass::InstallPatches,
                signers: 1,
                customer_required: false,
                in_window_only: false,
            },
        ],
        fan_out_limit: 10,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
        tenant_name: None,
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
    };
    let mut root_signed = Signed::new(&root);
    root_signed.sign(root_key);
    let mut policy_signed = Signed::new(&policy);
    policy_signed.sign(root_key);
    (root_signed, policy_signed)
}

fn job_envelope(tenant_id: &str, tenant_name: &str, device: &str, operator: &SigningKey) -> Signed {
    use sha2::Digest;
    let now = now_secs();
    let mut job_id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut job_id);
    let statement = bulwark_policy::JobStatement {
        tenant: tenant_id.to_owned(),
        job_id,
        targets: vec![bulwark_policy::JobTarget {
            device_id: device.to_owned(),
            hostname: format!("host-{tenant_name}"),
            device_key: None,
        }],
        class: bulwark_policy::ActionClass::RunScript,
        action: bulwark_policy::JobAction::RunScript {
            interpreter: bulwark_policy::Interpreter::Sh,
            script_sha256: bulwark_policy::policy::ScriptHash(sha2::Sha256::digest(b"true").into()),
        },
        not_before: now - 60,
        expires_at: now + 3600,
        nonce: job_id,
        reason: "authorisation matrix".into(),
        timeout_secs: 60,
        tenant_name: tenant_name.to_owned(),
    };
    let mut signed = Signed::new(&statement);
    signed.sign(operator);
    signed
}

/// A patch policy's ring: every pending security update on `device`,
/// every minute in UTC for a day from `not_before`, signed by the operator.
fn patch_ring_envelope(
    tenant_id: &str,
    tenant_name: &str,
    device: &str,
    not_before: u64,
    operator: &SigningKey,
) -> Signed {
    let statement = bulwark_policy::schedule::ScheduleStatement {
        tenant: tenant_id.to_owned(),
        tenant_name: tenant_name.to_owned(),
        schedule_id: rand::random(),
        targets: vec![bulwark_policy::JobTarget {
            device_id: device.to_owned(),
            hostname: format!("host-{tenant_name}"),
            device_key: None,
        }],
        class: bulwark_policy::ActionClass::InstallPatches,
        action: bulwark_policy::JobAction::InstallPatches {
            packages: Vec::new(),
        },
        cron: "* * * * *".into(),
        zone: "UTC".into(),
        window: None,
        not_before,
        not_after: not_before + 86_400,
        nonce: rand::random(),
        reason: "authorisation matrix".into(),
        timeout_secs: 60,
    };
    let mut signed = Signed::new(&statement);
    signed.sign(operator);
    signed
}

/// A schedule every minute in UTC for a day, signed once by the operator.
fn schedule_envelope(
    tenant_id: &str,
    tenant_name: &str,
    device: &str,
    operator: &SigningKey,
) -> Signed {
    let job = job_envelope(tenant_id, tenant_name, device, operator);
    let job: bulwark_policy::JobStatement = job
        .statement(&bulwark_policy::Limits::default())
        .expect("a job");
    let now = now_secs();
    let statement = bulwark_policy::schedule::ScheduleStatement {
        tenant: job.tenant,
        tenant_name: job.tenant_name,
        schedule_id: job.job_id,
        targets: job.targets,
        class: job.class,
        action: job.action,
        cron: "* * * * *".into(),
        zone: "UTC".into(),
        window: None,
        not_before: now - 60,
        not_after: now + 86_400,
        nonce: job.nonce,
        reason: "authorisation matrix".into(),
        timeout_secs: 60,
    };
    let mut signed = Signed::new(&statement);
    signed.sign(operator);
    signed
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig::quickstart(
        dir.path().join("data"),
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    let server = bulwark_server::start(config).await.expect("server starts");
    let port = server
        .console_url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    // Plain HTTP only; reqwest still wants a TLS configuration (the
    // workspace builds it without a default crypto provider).
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut h = Harness {
        base: format!("http://127.0.0.1:{port}"),
        server,
        http,
        sessions: BTreeMap::new(),
        operator_ids: BTreeMap::new(),
        revoked: String::new(),
        expired: String::new(),
        devices: BTreeMap::new(),
        jobs: BTreeMap::new(),
        schedules: BTreeMap::new(),
        patch_policies: BTreeMap::new(),
        operator_key: None,
        shell_grants: BTreeMap::new(),
        shell_sessions: BTreeMap::new(),
        proposals: BTreeMap::new(),
        tenant_ids: BTreeMap::new(),
        counter: 0,
        _dir: dir,
    };

    // The first owner, through setup; each account's codes come from its own
    // secret, so the one-step-per-account replay rule never bites: confirm
    // uses the current step, login the next one (the server accepts both).
    let code = h.server.setup_code.clone().expect("setup code");
    let started = h
        .ok(
            "POST",
            "/api/v1/setup",
            None,
            Some(&json!({"code": code, "username": "olivia", "password": PASSWORD})),
        )
        .await;
    let secret = started["totp_secret"].as_str().expect("secret").to_owned();
    let enrolment = started["enrolment_id"].as_str().expect("enrolment");
    h.ok(
        "POST",
        "/api/v1/setup/confirm",
        None,
        Some(&json!({"enrolment_id": enrolment, "otp": totp_code(&secret, now_secs())})),
    )
    .await;
    let login = h
        .ok(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&json!({"username": "olivia", "password": PASSWORD, "otp": totp_code(&secret, now_secs() + 30)})),
        )
        .await;
    h.sessions
        .insert(Owner, login["token"].as_str().expect("token").to_owned());

    for tenant in [OWN, FOREIGN] {
        h.ok(
            "POST",
            "/api/v1/tenants",
            Some(h.owner()),
            Some(&json!({"name": tenant})),
        )
        .await;
    }
    // Each tenant gets a trust root and a policy (the owner's signing key
    // may sign everything alone), a device, and one approved job.
    let root_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let operator_key = SigningKey::generate(&mut rand::rngs::OsRng);
    h.operator_key = Some(operator_key.clone());
    h.ok(
        "POST",
        "/api/v1/signing-keys",
        Some(h.owner()),
        Some(&json!({"name": "owner laptop", "public_key": B64.encode(operator_key.verifying_key().to_bytes())})),
    )
    .await;
    for tenant in [OWN, FOREIGN] {
        let trust = h
            .ok(
                "GET",
                &format!("/api/v1/tenants/{tenant}/trust"),
                Some(h.owner()),
                None,
            )
            .await;
        let tenant_id = trust["tenant_id"].as_str().expect("tenant id").to_owned();
        let (root, policy) = trust_statements(&tenant_id, &root_key, &operator_key);
        for (kind, envelope) in [("roots", root), ("policy", policy.clone())] {
            h.ok(
                "POST",
                &format!("/api/v1/tenants/{tenant}/trust/{kind}"),
                Some(h.owner()),
                Some(&json!({"envelope": B64.encode(envelope.to_bytes())})),
            )
            .await;
        }
        // An unsigned policy v2: it stays open.
        let mut next: bulwark_policy::Policy = policy
            .statement(&bulwark_policy::Limits::default())
            .expect("policy");
        next.version = 2;
        let proposal = h
            .ok(
                "POST",
                &format!("/api/v1/tenants/{tenant}/trust/proposals"),
                Some(h.owner()),
                Some(&json!({"envelope": B64.encode(Signed::new(&next).to_bytes())})),
            )
            .await;
        assert_eq!(proposal["state"], "open", "{proposal}");
        h.proposals
            .insert(tenant, proposal["id"].as_str().expect("id").to_owned());
        let device = h.enrol_device(tenant).await;
        let job = job_envelope(&tenant_id, tenant, &device, &operator_key);
        let created = h
            .ok(
                "POST",
                &format!("/api/v1/tenants/{tenant}/jobs"),
                Some(h.owner()),
                Some(&json!({"envelope": B64.encode(job.to_bytes()), "script": "true"})),
            )
            .await;
        assert_eq!(created["state"], "approved", "{created}");
        h.jobs
            .insert(tenant, created["id"].as_str().expect("id").to_owned());
        let schedule = schedule_envelope(&tenant_id, tenant, &device, &operator_key);
        let created = h
            .ok(
                "POST",
                &format!("/api/v1/tenants/{tenant}/schedules"),
                Some(h.owner()),
                Some(&json!({"envelope": B64.encode(schedule.to_bytes()), "script": "true"})),
            )
            .await;
        assert_eq!(created["revoked_at"], Value::Null, "{created}");
        h.schedules
            .insert(tenant, created["id"].as_str().expect("id").to_owned());
        let second = h.enrol_device(tenant).await;
        let start = now_secs() - 60;
        let canary = patch_ring_envelope(&tenant_id, tenant, &device, start, &operator_key);
        let rest = patch_ring_envelope(&tenant_id, tenant, &second, start + 60, &operator_key);
        let created = h
            .ok(
                "POST",
                &format!("/api/v1/tenants/{tenant}/patch-policies"),
                Some(h.owner()),
                Some(&json!({
                    "name": "nightly",
                    "canary": {"envelope": B64.encode(canary.to_bytes()), "script": ""},
                    "rest": {"envelope": B64.encode(rest.to_bytes()), "script": ""},
                    "soak_secs": 60,
                })),
            )
            .await;
        assert_eq!(created["rings"][1]["ring"], "ring 2", "{created}");
        h.patch_policies
            .insert(tenant, created["id"].as_str().expect("id").to_owned());
        h.devices.insert(tenant, device);
        h.tenant_ids.insert(tenant, tenant_id);
    }

    // Every other role, invited on the own tenant only, through the real flow.
    for role in [SecurityOfficer, Technician, ReadOnly, TenantAuditor] {
        let username = format!("op-{}", role.api_name().replace('_', "-"));
        let body = json!({"username": username, "role": role.api_name(), "tenants": [OWN]});
        let created = h
            .ok("POST", "/api/v1/invitations", Some(h.owner()), Some(&body))
            .await;
        let (enrolment, secret) = h.redeem(created["token"].as_str().expect("token")).await;
        let operator = h
            .ok(
                "POST",
                "/api/v1/invitations/confirm",
                None,
                Some(&json!({"enrolment_id": enrolment, "otp": totp_code(&secret, now_secs())})),
            )
            .await;
        assert_eq!(operator["username"], username);
        assert_eq!(operator["role"], "operator");
        let login = h
            .ok(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(&json!({"username": username, "password": PASSWORD, "otp": totp_code(&secret, now_secs() + 30)})),
            )
            .await;
        h.sessions
            .insert(role, login["token"].as_str().expect("token").to_owned());
    }
    for role in ROLES {
        let username = match role {
            Owner => "olivia".to_owned(),
            other => format!("op-{}", other.api_name().replace('_', "-")),
        };
        let operator = h
            .server
            .store
            .operator_by_username(&username)
            .await
            .expect("store")
            .expect("operator exists");
        h.operator_ids.insert(role, operator.id);
    }

    // A shell grant and an open session per tenant, stored directly.
    for tenant in [OWN, FOREIGN] {
        let (grant_id, session_id) = h.shell_grant(tenant).await;
        h.shell_grants.insert(tenant, grant_id);
        h.shell_sessions.insert(tenant, session_id);
    }

    // A session ended through the API, and one past its absolute lifetime.
    let now = now_millis();
    let technician = h.operator_ids[&Technician].clone();
    let revoked = h.mint_session(&technician, now, now + 60_000).await;
    let reply = h
        .send("POST", "/api/v1/auth/logout", Some(&revoked), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    h.revoked = revoked;
    h.expired = h
        .mint_session(&technician, now - 9 * 3_600_000, now - 3_600_000)
        .await;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_as_every_role_on_own_and_foreign_tenants() {
    // 1. The table covers exactly the routes the router serves.
    let documented = documented_routes();
    let tabled: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        tabled.len(),
        TABLE.len(),
        "a route is listed twice in TABLE"
    );
    let missing: Vec<_> = documented.difference(&tabled).collect();
    let stale: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "TABLE must have one row per route of api::router(): add rows for {missing:?}, remove {stale:?}"
    );

    let mut h = start().await;

    // The OpenAPI document itself is served outside the router's list: public.
    let doc = h.send("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);

    // 2. Every route x every case.
    let mut cases: Vec<(Who, Side)> = Vec::new();
    for role in ROLES {
        cases.push((Who::As(role), Side::Own));
        cases.push((Who::As(role), Side::Foreign));
    }
    for who in [Who::NoSession, Who::RevokedSession, Who::ExpiredSession] {
        cases.push((who, Side::Own));
    }
    // Stale MFA: privileged routes ask for a step-up, everything else reads
    // (and acts) as with a fresh session.
    for role in ROLES {
        cases.push((Who::StaleMfa(role), Side::Own));
    }
    let mut stepped_up = BTreeSet::new();
    let mut failures = Vec::new();
    let mut sent = 0;
    for (method, route, rule) in TABLE {
        for &(who, side) in &cases {
            let (path, body, token) = h.request_for(method, route, who, side).await;
            let reply = h.send(method, &path, token.as_deref(), body.as_ref()).await;
            sent += 1;
            let (want, want_code) = expected_with_code(method, route, *rule, who, side);
            let code = reply.body["error"]["code"].as_str().unwrap_or_default();
            let shape_ok = want_code.is_empty() || code == want_code;
            if code == "step_up_required" {
                stepped_up.insert((*method, *route));
            }
            if reply.status.as_u16() != want || !shape_ok {
                failures.push(format!(
                    "{method} {route} as {who:?} on {side:?} ({path}): want {want}, got {} {}",
                    reply.status, reply.body
                ));
            }

            // A foreign tenant's object answers exactly like one that does not exist.
            if want == 404 && matches!(rule, Tenant(..)) {
                let nowhere = path
                    .replace(FOREIGN, "no-such-tenant")
                    .replace(&h.devices[FOREIGN], &uuid_nil());
                let absent = h
                    .send(method, &nowhere, token.as_deref(), body.as_ref())
                    .await;
                if absent.status != reply.status || absent.body != reply.body {
                    failures.push(format!(
                        "{method} {route} as {who:?}: a foreign object ({} {}) differs from a missing one ({} {})",
                        reply.status, reply.body, absent.status, absent.body
                    ));
                }
            }
        }
    }
    assert_eq!(sent, TABLE.len() * cases.len());
    let privileged: BTreeSet<(&str, &str)> = PRIVILEGED.iter().copied().collect();
    assert_eq!(
        stepped_up, privileged,
        "exactly the privileged routes ask a stale session to step up"
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} requests answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "authorisation matrix: {} routes x {} cases = {sent} requests",
        TABLE.len(),
        cases.len()
    );
}

fn uuid_nil() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

/// The text between `start` and the next `<` in an HTML page.
fn html_text_after<'a>(html: &'a str, start: &str) -> &'a str {
    let from = html.find(start).map(|i| i + start.len()).expect(start);
    let rest = &html[from..];
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_one_time_expiring_and_owner_only() {
    let mut h = start().await;
    let owner = h.owner().to_owned();

    // Refused invitations: bad lifetimes, roles and tenant lists.
    for (body, want) in [
        (
            json!({"username": "x1", "role": "technician", "tenants": [OWN], "ttl_hours": 169}),
            400,
        ),
        (
            json!({"username": "x2", "role": "technician", "tenants": [OWN], "ttl_hours": 0}),
            400,
        ),
        (
            json!({"username": "x3", "role": "tenant_auditor", "tenants": [OWN, FOREIGN]}),
            400,
        ),
        (
            json!({"username": "x4", "role": "owner", "tenants": [OWN]}),
            400,
        ),
        (
            json!({"username": "x5", "role": "technician", "tenants": []}),
            400,
        ),
        (
            json!({"username": "x6", "role": "wizard", "tenants": [OWN]}),
            400,
        ),
        (
            json!({"username": "x7", "role": "technician", "tenants": ["no-such"]}),
            404,
        ),
        (
            json!({"username": "olivia", "role": "technician", "tenants": [OWN]}),
            409,
        ),
    ] {
        let reply = h
            .send("POST", "/api/v1/invitations", Some(&owner), Some(&body))
            .await;
        assert_eq!(reply.status.as_u16(), want, "{body}: {}", reply.body);
    }
    let created = h
        .ok(
            "POST",
            "/api/v1/invitations",
            Some(&owner),
            Some(&json!({"username": "vera", "role": "technician", "tenants": [OWN, FOREIGN]})),
        )
        .await;
    let expires = created["expires_at"].as_str().expect("expiry");
    let created_at = created["created_at"].as_str().expect("creation");
    assert_ne!(expires, created_at);
    let link = created["token"].as_str().expect("token").to_owned();
    let pending = h.ok("GET", "/api/v1/invitations", Some(&owner), None).await;
    assert!(
        pending
            .as_array()
            .expect("list")
            .iter()
            .any(|i| i["username"] == "vera" && i["grants"].as_array().map(Vec::len) == Some(2)),
        "{pending}"
    );

    // The console redeems it: page, password, TOTP page, code.
    let page = h
        .http
        .get(format!("{}/invite/{link}", h.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert_eq!(html_text_after(&html, "id=\"invite-username\">"), "vera");
    let missing = h.send("GET", "/invite/not-a-real-token", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let no_redirects = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("tls")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let totp_page = no_redirects
        .post(format!("{}/invite/{link}", h.base))
        .form(&[("password", PASSWORD), ("password_confirm", PASSWORD)])
        .send()
        .await
        .expect("redeem");
    assert_eq!(totp_page.status(), StatusCode::OK);
    let html = totp_page.text().await.expect("html");
    assert!(html.contains("action=\"/invite/totp\""), "{html}");
    let secret = html_text_after(&html, "id=\"totp-secret\" class=\"secret\">").to_owned();
    let enrolment = html_text_after(&html, "name=\"enrolment\" value=\"")
        .split('"')
        .next()
        .expect("enrolment")
        .to_owned();
    let wrong = no_redirects
        .post(format!("{}/invite/totp", h.base))
        .form(&[("enrolment", enrolment.as_str()), ("otp", "000000")])
        .send()
        .await
        .expect("confirm");
    assert_eq!(
        wrong.status(),
        StatusCode::BAD_REQUEST,
        "a wrong code is refused"
    );
    let code = totp_code(&secret, now_secs());
    let done = no_redirects
        .post(format!("{}/invite/totp", h.base))
        .form(&[("enrolment", enrolment.as_str()), ("otp", code.as_str())])
        .send()
        .await
        .expect("confirm");
    // Success shows the recovery codes, once.
    assert_eq!(done.status(), StatusCode::OK);
    let html = done.text().await.expect("html");
    let codes = html_text_after(&html, "id=\"recovery-codes\">");
    assert_eq!(
        codes.lines().filter(|l| l.len() == 19).count(),
        10,
        "{html}"
    );
    assert!(html.contains("href=\"/login?welcome=1\""), "{html}");

    // One time: the link and the enrolment are spent.
    let again = h
        .send(
            "POST",
            "/api/v1/invitations/redeem",
            None,
            Some(&json!({"token": link, "password": PASSWORD})),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let replay = h
        .send(
            "POST",
            "/api/v1/invitations/confirm",
            None,
            Some(&json!({"enrolment_id": enrolment, "otp": code})),
        )
        .await;
    assert_eq!(replay.status, StatusCode::NOT_FOUND);
    let vera = h
        .server
        .store
        .operator_by_username("vera")
        .await
        .expect("store")
        .expect("vera exists");
    let grants: Vec<(String, String)> = h
        .server
        .store
        .operator_grants(&vera.id)
        .await
        .expect("grants")
        .into_iter()
        .map(|g| (g.tenant_name, g.role))
        .collect();
    assert_eq!(
        grants,
        [
            (FOREIGN.to_owned(), "technician".to_owned()),
            (OWN.to_owned(), "technician".to_owned())
        ]
    );

    // Revoked: the link stops working at once.
    let (id, revoked_link) = h.invitation(ReadOnly, Some(OWN)).await;
    let reply = h
        .send(
            "DELETE",
            &format!("/api/v1/invitations/{id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = h
        .send(
            "DELETE",
            &format!("/api/v1/invitations/{id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = h
        .send(
            "POST",
            "/api/v1/invitations/redeem",
            None,
            Some(&json!({"token": revoked_link, "password": PASSWORD})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // Audited, and the log of each tenant is its own.
    let events = h
        .ok(
            "GET",
            &format!("/api/v1/tenants/{OWN}/audit"),
            Some(&h.sessions[&TenantAuditor]),
            None,
        )
        .await;
    assert!(
        events
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["action"] != "operator.invited"),
        "account events belong to no tenant: {events}"
    );
    let actions: Vec<String> = h
        .server
        .store
        .list_audit(&bulwark_store::TenantScope::All, None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["operator.invited", "operator.created", "invitation.revoked"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }

    // A security officer sees the operators of its tenants, and only those grants.
    let listed = h
        .ok(
            "GET",
            "/api/v1/operators",
            Some(&h.sessions[&SecurityOfficer]),
            None,
        )
        .await;
    let vera_seen = listed
        .as_array()
        .expect("operators")
        .iter()
        .find(|o| o["username"] == "vera")
        .expect("vera listed");
    assert_eq!(
        vera_seen["grants"],
        json!([{"tenant": OWN, "role": "technician"}])
    );

    // The console's operators page: owners only.
    let now = now_millis();
    for (role, want) in [(Owner, StatusCode::OK), (Technician, StatusCode::FORBIDDEN)] {
        let (token, hash) = new_token();
        let (csrf_token, _) = new_token();
        h.server
            .store
            .create_session(
                NewSession {
                    id_hash: hash,
                    operator_id: h.operator_ids[&role].clone(),
                    kind: SessionKind::Browser,
                    csrf_token,
                    created_at: now,
                    expires_at: now + 60_000,
                    mfa_at: now,
                    ip: None,
                    user_agent: None,
                    passkey_id: None,
                },
                &[],
            )
            .await
            .expect("session");
        let page = h
            .http
            .get(format!("{}/operators", h.base))
            .header("cookie", format!("bulwark_session={token}"))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), want, "{role:?}");
        if want == StatusCode::OK {
            let html = page.text().await.expect("html");
            assert!(
                html.contains("vera") && html.contains("invite-form"),
                "{html}"
            );
        }
    }
}

/// Sessions listed and revoked, step-up, recovery codes and disabling, end
/// to end for one technician invited for the purpose (so its TOTP steps are
/// this test's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_step_up_recovery_codes_and_disable() {
    let mut h = start().await;
    let owner = h.owner().to_owned();
    let (_, link) = h.invitation(Technician, Some(OWN)).await;
    let (enrolment, secret) = h.redeem(&link).await;
    let created = h
        .ok(
            "POST",
            "/api/v1/invitations/confirm",
            None,
            Some(&json!({"enrolment_id": enrolment, "otp": totp_code(&secret, now_secs())})),
        )
        .await;
    let username = created["username"].as_str().expect("username").to_owned();
    let tess_id = created["id"].as_str().expect("id").to_owned();
    let codes: Vec<String> = created["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(codes.len(), 10);

    // A recovery code stands in for the TOTP code at login, once.
    let login = |otp: String| json!({"username": username, "password": PASSWORD, "otp": otp});
    let by_code = h
        .ok(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&login(codes[0].to_lowercase())),
        )
        .await;
    let recovered = by_code["token"].as_str().expect("token").to_owned();
    let again = h
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&login(codes[0].clone())),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);

    // A stale MFA check: reads work, privileged actions ask for a step-up.
    let now = now_millis();
    let (stale, _) = h
        .mint_session_mfa(&tess_id, now - 600_000, now + 3_600_000, now - 600_000)
        .await;
    let tokens = format!("/api/v1/tenants/{OWN}/enrollment-tokens");
    let refused = h
        .send("POST", &tokens, Some(&stale), Some(&json!({})))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "step_up_required");
    h.ok(
        "GET",
        &format!("/api/v1/tenants/{OWN}/devices"),
        Some(&stale),
        None,
    )
    .await;
    let step_up = |otp: String| json!({"otp": otp});
    let wrong = h
        .send(
            "POST",
            "/api/v1/auth/step-up",
            Some(&stale),
            Some(&step_up("000000".into())),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.body["error"]["code"], "step_up_failed");
    let code = totp_code(&secret, now_secs() + 30);
    let passed = h
        .send(
            "POST",
            "/api/v1/auth/step-up",
            Some(&stale),
            Some(&step_up(code.clone())),
        )
        .await;
    assert_eq!(passed.status, StatusCode::NO_CONTENT, "{}", passed.body);
    h.ok("POST", &tokens, Some(&stale), Some(&json!({}))).await;
    let replay = h
        .send(
            "POST",
            "/api/v1/auth/step-up",
            Some(&stale),
            Some(&step_up(code)),
        )
        .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "a code works once");

    // New recovery codes (fresh now) replace the old ones.
    let regenerated = h
        .ok("POST", "/api/v1/auth/recovery-codes", Some(&stale), None)
        .await;
    assert_eq!(
        regenerated["recovery_codes"].as_array().map(Vec::len),
        Some(10)
    );
    let old = h
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&login(codes[1].clone())),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);

    // The session list: both sessions, the current one marked.
    let listed = h.ok("GET", "/api/v1/sessions", Some(&stale), None).await;
    let listed = listed.as_array().expect("sessions").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed.iter().filter(|s| s["current"] == true).count(), 1);
    let other = listed
        .iter()
        .find(|s| s["current"] == false)
        .expect("the recovery-code session");
    assert_eq!(other["kind"], "cli");
    assert_eq!(other["ip"], "127.0.0.1");
    let other_id = other["id"].as_str().expect("id").to_owned();
    // Another operator's session is not found; the own one is revoked.
    let owners = h.ok("GET", "/api/v1/sessions", Some(&owner), None).await;
    let owner_session = owners[0]["id"].as_str().expect("id").to_owned();
    let foreign = h
        .send(
            "DELETE",
            &format!("/api/v1/sessions/{owner_session}"),
            Some(&stale),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.body["error"]["code"], "not_found");
    let reply = h
        .send(
            "DELETE",
            &format!("/api/v1/sessions/{other_id}"),
            Some(&stale),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let gone = h
        .send("GET", "/api/v1/sessions", Some(&recovered), None)
        .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);

    // Every other session at once.
    let now = now_millis();
    let extra = h.mint_session(&tess_id, now, now + 60_000).await;
    let revoked = h
        .ok("POST", "/api/v1/sessions/revoke-others", Some(&stale), None)
        .await;
    assert_eq!(revoked["revoked"], 1);
    let gone = h.send("GET", "/api/v1/tenants", Some(&extra), None).await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    h.ok("GET", "/api/v1/tenants", Some(&stale), None).await;

    // Disabling: owners only, never oneself, and the sessions end at once.
    let disable = format!("/api/v1/operators/{tess_id}/disable");
    let so = h.sessions[&SecurityOfficer].clone();
    let reply = h.send("POST", &disable, Some(&so), None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let owner_id = h.operator_ids[&Owner].clone();
    let reply = h
        .send(
            "POST",
            &format!("/api/v1/operators/{owner_id}/disable"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    let reply = h.send("POST", &disable, Some(&owner), None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = h.send("GET", "/api/v1/tenants", Some(&stale), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = h.send("POST", &disable, Some(&owner), None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Even a session row left unrevoked is refused for a disabled operator.
    let now = now_millis();
    let late = h.mint_session(&tess_id, now, now + 60_000).await;
    let reply = h.send("GET", "/api/v1/tenants", Some(&late), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = h
        .send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&login(totp_code(&secret, now_secs() + 30))),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let actions: Vec<String> = h
        .server
        .store
        .list_audit(&bulwark_store::TenantScope::All, None, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in [
        "login.recovery_code_used",
        "recovery_codes.generated",
        "step_up.failed",
        "step_up.succeeded",
        "session.revoked",
        "session.revoked_others",
        "operator.disabled",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

/// The console: a stale session's privileged form answers with the step-up
/// form; the account page lists the sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_asks_for_step_up_and_lists_sessions() {
    let h = start().await;
    let now = now_millis();
    let (token, hash) = new_token();
    let csrf = "console-csrf-token".to_owned();
    h.server
        .store
        .create_session(
            NewSession {
                id_hash: hash,
                operator_id: h.operator_ids[&Owner].clone(),
                kind: SessionKind::Browser,
                csrf_token: csrf.clone(),
                created_at: now - 600_000,
                expires_at: now + 3_600_000,
                mfa_at: now - 600_000,
                ip: Some("192.0.2.9".to_owned()),
                user_agent: Some("Console <Test>".to_owned()),
                passkey_id: None,
            },
            &[],
        )
        .await
        .expect("session");
    let cookie = format!("bulwark_session={token}");
    let page = h
        .http
        .post(format!("{}/tenants/{OWN}/enrollment-tokens", h.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("form");
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let html = page.text().await.expect("html");
    assert!(html.contains("id=\"step-up-form\""), "{html}");
    assert!(
        html.contains(&format!("name=\"next\" value=\"/tenants/{OWN}\"")),
        "{html}"
    );
    let page = h
        .http
        .get(format!("{}/account", h.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("account");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("Console &#60;Test&#62;"), "escaped: {html}");
    assert!(html.contains("(this session)"), "{html}");
    assert!(html.contains("id=\"revoke-others\""), "{html}");
    assert!(html.contains("id=\"api-token-form\""), "{html}");
    // Making an API token from the console is privileged too.
    let page = h
        .http
        .post(format!("{}/account/api-tokens", h.base))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "psa"),
            ("role", "read_only"),
            ("tenant", OWN),
            ("ttl_days", "30"),
        ])
        .send()
        .await
        .expect("form");
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let html = page.text().await.expect("html");
    assert!(html.contains("id=\"step-up-form\""), "{html}");
}

/// API tokens: made from a fresh session, scoped to their tenants and role,
/// never passing a step-up nor managing the account, revocable at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_scoped_and_never_step_up() {
    let h = start().await;
    let tech = h.sessions[&Technician].clone();
    // Only a role the maker holds on each tenant.
    for (body, want) in [
        (
            json!({"name": "x", "role": "security_officer", "tenants": [OWN]}),
            403,
        ),
        (
            json!({"name": "x", "role": "technician", "tenants": [FOREIGN]}),
            404,
        ),
        (json!({"name": "x", "role": "owner", "tenants": [OWN]}), 400),
        (
            json!({"name": "", "role": "technician", "tenants": [OWN]}),
            400,
        ),
        (
            json!({"name": "x", "role": "technician", "tenants": []}),
            400,
        ),
        (
            json!({"name": "x", "role": "technician", "tenants": [OWN], "ttl_days": 366}),
            400,
        ),
    ] {
        let reply = h
            .send("POST", "/api/v1/api-tokens", Some(&tech), Some(&body))
            .await;
        assert_eq!(reply.status.as_u16(), want, "{body}: {}", reply.body);
    }
    let created = h
        .ok(
            "POST",
            "/api/v1/api-tokens",
            Some(&tech),
            Some(&json!({"name": "PSA sync", "role": "technician", "tenants": [OWN]})),
        )
        .await;
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("bwk_"), "{secret}");
    assert_eq!(created["tenants"], json!([OWN]));

    // It reads what its role allows on its tenants, and nothing else.
    h.ok(
        "GET",
        &format!("/api/v1/tenants/{OWN}/devices"),
        Some(&secret),
        None,
    )
    .await;
    let tenants = h.ok("GET", "/api/v1/tenants", Some(&secret), None).await;
    assert_eq!(tenants.as_array().map(Vec::len), Some(1), "{tenants}");
    let foreign = h
        .send(
            "GET",
            &format!("/api/v1/tenants/{FOREIGN}/devices"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    // An owner's token is no owner.
    let owner_token = h
        .ok(
            "POST",
            "/api/v1/api-tokens",
            Some(h.owner()),
            Some(&json!({"name": "reports", "role": "read_only", "tenants": [OWN]})),
        )
        .await;
    let owner_secret = owner_token["secret"].as_str().expect("secret").to_owned();
    let reply = h
        .send(
            "POST",
            "/api/v1/tenants",
            Some(&owner_secret),
            Some(&json!({"name": "nope"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let tenants = h
        .ok("GET", "/api/v1/tenants", Some(&owner_secret), None)
        .await;
    assert_eq!(tenants.as_array().map(Vec::len), Some(1), "{tenants}");

    // Privileged actions want a person: never satisfied by a token.
    let reply = h
        .send(
            "POST",
            &format!("/api/v1/tenants/{OWN}/enrollment-tokens"),
            Some(&secret),
            Some(&json!({})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"]["code"], "step_up_required");
    // And it cannot manage the account it acts for.
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/auth/step-up",
            Some(json!({"otp": "000000"})),
        ),
        ("GET", "/api/v1/sessions", None),
        ("POST", "/api/v1/sessions/revoke-others", None),
        ("GET", "/api/v1/api-tokens", None),
        ("POST", "/api/v1/auth/recovery-codes", None),
        ("POST", "/api/v1/auth/logout", None),
        (
            "POST",
            "/api/v1/api-tokens",
            Some(json!({"name": "child", "role": "technician", "tenants": [OWN]})),
        ),
    ] {
        let reply = h.send(method, path, Some(&secret), body.as_ref()).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "forbidden", "{method} {path}");
    }

    // Listed for its maker only; revoked at once; another's is a 404.
    let listed = h.ok("GET", "/api/v1/api-tokens", Some(&tech), None).await;
    assert!(
        listed
            .as_array()
            .expect("tokens")
            .iter()
            .any(|t| t["id"] == id.as_str()
                && t["last_used_at"].is_string()
                && t.get("secret").is_none()),
        "{listed}"
    );
    let reply = h
        .send(
            "DELETE",
            &format!("/api/v1/api-tokens/{id}"),
            Some(h.owner()),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = h
        .send(
            "DELETE",
            &format!("/api/v1/api-tokens/{id}"),
            Some(&tech),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = h.send("GET", "/api/v1/tenants", Some(&secret), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// Revoking a session ends its live event stream too, not only its next
/// request (the stream re-checks its credential every 10 s).
#[tokio::test]
async fn revoking_a_session_ends_its_event_stream() {
    let h = start().await;
    let now = now_millis();
    let (token, public_id) = h
        .mint_session_mfa(
            &h.operator_ids[&Technician].clone(),
            now,
            now + 3_600_000,
            now,
        )
        .await;
    let mut stream = h
        .http
        .get(format!("{}/api/v1/events", h.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream opened");
    assert_eq!(stream.status(), StatusCode::OK);
    let reply = h
        .send(
            "DELETE",
            &format!("/api/v1/sessions/{public_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    // Keep-alive comments may arrive; the stream must end within a recheck.
    let ended = tokio::time::timeout(Duration::from_secs(25), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the event stream outlived its revoked session"
    );
}

/// A root rotation that would leave the stored policy unverifiable is
/// refused: new agents would get no policy and every later change would be
/// blocked. The same rotation passes once the policy is re-signed under both
/// roots.
#[tokio::test]
async fn a_rotation_that_orphans_the_policy_is_refused() {
    use bulwark_policy::{Holder, Policy, PublicKey, RootKey, TrustRoot};
    let h = start().await;
    let root_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let new_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let operator = SigningKey::generate(&mut rand::rngs::OsRng);
    let created = h
        .ok(
            "POST",
            "/api/v1/tenants",
            Some(h.owner()),
            Some(&json!({"name": "rotating"})),
        )
        .await;
    let tenant_id = created["id"].as_str().expect("id").to_owned();
    let (root, policy) = trust_statements(&tenant_id, &root_key, &operator);
    for (kind, envelope) in [("roots", &root), ("policy", &policy)] {
        h.ok(
            "POST",
            &format!("/api/v1/tenants/rotating/trust/{kind}"),
            Some(h.owner()),
            Some(&json!({"envelope": B64.encode(envelope.to_bytes())})),
        )
        .await;
    }
    // Root v2: only the new key, signed by the old and the new threshold.
    let next = TrustRoot {
        tenant: tenant_id.clone(),
        version: 2,
        threshold: 1,
        keys: vec![RootKey {
            key: PublicKey::Ed25519(new_key.verifying_key().to_bytes()),
            holder: Holder::Msp,
            name: "new".into(),
        }],
    };
    let mut rotation = Signed::new(&next);
    rotation.sign(&root_key);
    rotation.sign(&new_key);
    let body = json!({"envelope": B64.encode(rotation.to_bytes())});
    let path = "/api/v1/tenants/rotating/trust/roots";
    let refused = h.send("POST", path, Some(h.owner()), Some(&body)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "rotation_orphans_trust");
    let trust = h
        .ok(
            "GET",
            "/api/v1/tenants/rotating/trust",
            Some(h.owner()),
            None,
        )
        .await;
    assert_eq!(trust["root_version"], 1, "nothing changed: {trust}");

    // The policy re-signed by both roots first, then the same rotation passes.
    let mut statement: Policy = policy
        .statement(&bulwark_policy::Limits::default())
        .expect("policy");
    statement.version = 2;
    let mut resigned = Signed::new(&statement);
    resigned.sign(&root_key);
    resigned.sign(&new_key);
    h.ok(
        "POST",
        "/api/v1/tenants/rotating/trust/policy",
        Some(h.owner()),
        Some(&json!({"envelope": B64.encode(resigned.to_bytes())})),
    )
    .await;
    h.ok("POST", path, Some(h.owner()), Some(&body)).await;
    let trust = h
        .ok(
            "GET",
            "/api/v1/tenants/rotating/trust",
            Some(h.owner()),
            None,
        )
        .await;
    assert_eq!(trust["root_version"], 2, "{trust}");
    assert_eq!(trust["problems"], json!([]), "{trust}");
}

/// The customer's person (a tenant auditor) co-signs trust statements only
/// with a customer root key: a valid signature by an MSP root key (a stolen
/// copy) on the same proposal is refused, though it would complete the
/// threshold; the customer's own key is accepted.
#[tokio::test]
async fn a_tenant_auditor_cannot_sign_with_an_msp_root_key() {
    use bulwark_policy::{Holder, Policy, PublicKey, RootKey, TrustRoot};
    let h = start().await;
    let msp_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let customer_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let operator = SigningKey::generate(&mut rand::rngs::OsRng);
    let created = h
        .ok(
            "POST",
            "/api/v1/tenants",
            Some(h.owner()),
            Some(&json!({"name": "shared-root"})),
        )
        .await;
    let tenant_id = created["id"].as_str().expect("id").to_owned();
    // Root v1: 2 of 2, one MSP key and one customer key; policy v1 by both.
    let root = TrustRoot {
        tenant: tenant_id.clone(),
        version: 1,
        threshold: 2,
        keys: vec![
            RootKey {
                key: PublicKey::Ed25519(msp_key.verifying_key().to_bytes()),
                holder: Holder::Msp,
                name: "msp".into(),
            },
            RootKey {
                key: PublicKey::Ed25519(customer_key.verifying_key().to_bytes()),
                holder: Holder::Customer,
                name: "customer".into(),
            },
        ],
    };
    let (_, policy_v1) = trust_statements(&tenant_id, &msp_key, &operator);
    let mut root_signed = Signed::new(&root);
    root_signed.sign(&msp_key);
    root_signed.sign(&customer_key);
    let mut policy: Policy = policy_v1
        .statement(&bulwark_policy::Limits::default())
        .expect("policy");
    let mut policy_signed = Signed::new(&policy);
    policy_signed.sign(&msp_key);
    policy_signed.sign(&customer_key);
    for (kind, envelope) in [("roots", &root_signed), ("policy", &policy_signed)] {
        h.ok(
            "POST",
            &format!("/api/v1/tenants/shared-root/trust/{kind}"),
            Some(h.owner()),
            Some(&json!({"envelope": B64.encode(envelope.to_bytes())})),
        )
        .await;
    }
    // The auditor's one grant moves to this tenant.
    h.ok(
        "PUT",
        &format!(
            "/api/v1/operators/{}/grants",
            h.operator_ids[&TenantAuditor]
        ),
        Some(h.owner()),
        Some(&json!({"grants": [{"tenant": "shared-root", "role": "tenant_auditor"}]})),
    )
    .await;
    // Policy v2, proposed unsigned by the owner.
    policy.version = 2;
    let proposed = Signed::new(&policy);
    let proposal = h
        .ok(
            "POST",
            "/api/v1/tenants/shared-root/trust/proposals",
            Some(h.owner()),
            Some(&json!({"envelope": B64.encode(proposed.to_bytes())})),
        )
        .await;
    let id = proposal["id"].as_str().expect("proposal id").to_owned();
    let signature = |key: &SigningKey| {
        let mut signed = proposed.clone();
        signed.sign(key);
        let entry = signed.signatures.last().expect("signed").clone();
        json!({
            "key_id": hex::encode(entry.key_id.0),
            "signature": B64.encode(entry.signature),
        })
    };
    let auditor = &h.sessions[&TenantAuditor];
    let path = format!("/api/v1/trust-proposals/{id}/signatures");
    let refused = h
        .send("POST", &path, Some(auditor), Some(&signature(&msp_key)))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let view = h
        .ok(
            "GET",
            &format!("/api/v1/trust-proposals/{id}"),
            Some(h.owner()),
            None,
        )
        .await;
    assert_eq!(view["state"], "open", "{view}");
    // The customer's own key is the auditor's to use.
    h.ok(
        "POST",
        &path,
        Some(auditor),
        Some(&signature(&customer_key)),
    )
    .await;
}

/// A browser session of `role`'s operator, made in the store: its cookie.
async fn console_cookie(h: &Harness, role: Role) -> String {
    let now = now_millis();
    let (token, hash) = new_token();
    let (csrf_token, _) = new_token();
    h.server
        .store
        .create_session(
            NewSession {
                id_hash: hash,
                operator_id: h.operator_ids[&role].clone(),
                kind: SessionKind::Browser,
                csrf_token,
                created_at: now,
                expires_at: now + 600_000,
                mfa_at: now,
                ip: None,
                user_agent: None,
                passkey_id: None,
            },
            &[],
        )
        .await
        .expect("session");
    format!("bulwark_session={token}")
}

async fn console_get(h: &Harness, cookie: &str, path: &str) -> (StatusCode, String) {
    let page = h
        .http
        .get(format!("{}{path}", h.base))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page");
    let status = page.status();
    (status, page.text().await.expect("html"))
}

/// The console's audit-log pages: shown to exactly who reads the log through
/// the API (a tenant's to every role holding a grant on it, a foreign one is
/// a 404; the MSP log to owners and security officers), rows read from the
/// leaves with every text escaped, a leaf that does not decode shown in red
/// whatever the filters, and the filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_audit_pages_show_the_log_to_its_readers() {
    let h = start().await;
    let head = h
        .ok(
            "GET",
            &format!("/api/v1/tenants/{OWN}/log"),
            Some(h.owner()),
            None,
        )
        .await;
    let own_id = head["log_id"].as_str().expect("log id").to_owned();
    let device = h.devices[OWN].clone();
    let now = now_millis();
    h.server
        .store
        .append_audit(bulwark_store::NewAuditEvent {
            at: now,
            tenant_id: Some(own_id.clone()),
            actor: "<script>alert(1)</script>".to_owned(),
            action: bulwark_store::AuditAction::AlertLogRefused,
            target: device.clone(),
            detail: "<b>bold</b> & \"quoted\"".to_owned(),
        })
        .await
        .expect("event");
    let garbage = h
        .server
        .store
        .append_log_entries(&own_id, &[b"not an audit event".to_vec()], now)
        .await
        .expect("leaf");

    for role in ROLES {
        let cookie = console_cookie(&h, role).await;
        let (status, html) = console_get(&h, &cookie, &format!("/tenants/{OWN}/audit")).await;
        assert_eq!(status, StatusCode::OK, "{role:?}: {html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                && !html.contains("<script>alert(1)")
                && html.contains("&#60;b&#62;bold&#60;/b&#62; &#38; &#34;quoted&#34;"),
            "escaped: {html}"
        );
        assert!(html.contains("job.released"), "{html}");
        assert!(
            html.contains(&format!("data-index=\"{}\"", garbage.first_idx))
                && html.contains("does not decode as an audit event"),
            "{html}"
        );
        assert!(
            html.contains(&format!("data-api=\"/api/v1/tenants/{own_id}/log\""))
                && html.contains(&format!("/{own_id}</code>"))
                && html.contains("id=\"head-root\"")
                && html.contains("class=\"chart-alert\"")
                && html.contains("src=\"/assets/audit.js\""),
            "{html}"
        );
        let msp_reader = matches!(role, Owner | SecurityOfficer);
        assert_eq!(
            html.contains("id=\"msp-audit-link\""),
            msp_reader,
            "{role:?}"
        );

        let (status, _) = console_get(&h, &cookie, &format!("/tenants/{FOREIGN}/audit")).await;
        let want = if role == Owner {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, want, "{role:?} on the foreign tenant");
        let (status, html) = console_get(&h, &cookie, "/audit/msp").await;
        let want = if msp_reader {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, want, "{role:?} on the MSP log: {html}");
        if msp_reader {
            // The owner's setup and the invitations are MSP events.
            assert!(
                html.contains("data-api=\"/api/v1/msp/log\"") && html.contains("invitation"),
                "{html}"
            );
        }
        // The API agrees.
        let token = &h.sessions[&role];
        let reply = h.send("GET", "/api/v1/msp/log", Some(token), None).await;
        assert_eq!(reply.status == StatusCode::OK, msp_reader, "{role:?}");
    }

    // The SLA page: every role on its own tenant, a foreign one is a 404.
    for role in ROLES {
        let cookie = console_cookie(&h, role).await;
        let (status, html) = console_get(&h, &cookie, &format!("/tenants/{OWN}/sla")).await;
        assert_eq!(status, StatusCode::OK, "{role:?}: {html}");
        assert!(
            html.contains("id=\"sla-chart\"") && html.contains("No SLA is set"),
            "{role:?}: {html}"
        );
        let (status, _) = console_get(&h, &cookie, &format!("/tenants/{FOREIGN}/sla")).await;
        let want = if role == Owner {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, want, "{role:?} on the foreign tenant's SLA");
    }

    // The tenant page links to its audit log.
    let auditor = console_cookie(&h, TenantAuditor).await;
    let (_, html) = console_get(&h, &auditor, &format!("/tenants/{OWN}")).await;
    assert!(
        html.contains(&format!("href=\"/tenants/{OWN}/audit\"")),
        "{html}"
    );

    // Filters: the action prefix, the actor, the device; a leaf that does
    // not decode stays whatever they say.
    let path = format!("/tenants/{OWN}/audit");
    let (status, html) = console_get(&h, &auditor, &format!("{path}?what=job.&who=")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("job.released")
            && !html.contains("alert.log_refused")
            && html.contains("does not decode"),
        "{html}"
    );
    let (_, html) = console_get(&h, &auditor, &format!("{path}?who=%3Cscript")).await;
    assert!(
        html.contains("alert.log_refused") && !html.contains("job.released"),
        "{html}"
    );
    let (_, html) = console_get(&h, &auditor, &format!("{path}?device={device}")).await;
    assert!(
        html.contains("alert.log_refused") && !html.contains("tenant.created"),
        "{html}"
    );
    let (_, html) = console_get(
        &h,
        &auditor,
        &format!("{path}?what=alert.&from=2000-01-01&to=2000-01-02"),
    )
    .await;
    assert!(
        !html.contains("alert.log_refused") && html.contains("does not decode"),
        "{html}"
    );
    // Pages: the page before the garbage leaf no longer holds it.
    let (_, html) = console_get(
        &h,
        &auditor,
        &format!("{path}?before={}", garbage.first_idx),
    )
    .await;
    assert!(
        !html.contains("does not decode")
            && html.contains("alert.log_refused")
            && html.contains("id=\"newest-page\""),
        "{html}"
    );
    let (status, _) = console_get(&h, &auditor, &format!("{path}?from=2020-13-01")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = console_get(&h, &auditor, &format!("{path}?before=x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A filter search stops after SCAN_CAP entries and says so, with a link
    // that goes on below where it stopped.
    let noise: Vec<Vec<u8>> = (0..50_100)
        .map(|i| {
            bulwark_store::AuditLeaf::new(
                now,
                Some(own_id.clone()),
                "bulk",
                "bulk.noise",
                format!("n{i}"),
                "",
            )
            .encode()
        })
        .collect();
    for chunk in noise.chunks(10_000) {
        h.server
            .store
            .append_log_entries(&own_id, chunk, now)
            .await
            .expect("noise");
    }
    let (status, html) = console_get(&h, &auditor, &format!("{path}?what=job.")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("id=\"scan-capped\"")
            && html.contains("The chart counts only the newest")
            && !html.contains("job.released"),
        "{html}"
    );
    let older = html_text_after(&html, "<a href=\"/tenants/own-tenant/audit?before=")
        .split('"')
        .next()
        .expect("link")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let (status, html) = console_get(
        &h,
        &auditor,
        &format!("/tenants/own-tenant/audit?before={older}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{older}");
    assert!(
        html.contains("job.released") && !html.contains("bulk.noise"),
        "{html}"
    );
}

/// The dashboard, the device page's charts and the tenant page's charts
/// (RFD 0014): every role sees its own tenant's row and device, never the
/// foreign one's (a 404 page for the device, no row on the dashboard); a
/// metric name the database holds (an owned server writes anything) is
/// escaped in the chart; a device whose tenant has no numeric check says
/// there is nothing to chart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_dashboard_and_charts_stay_in_scope() {
    use bulwark_store::metrics_plan::MetricKind;
    let h = start().await;
    let own = h.devices[OWN].clone();
    let foreign = h.devices[FOREIGN].clone();
    let now = now_millis();
    for device in [&own, &foreign] {
        h.server
            .store
            .record_metric_samples(
                device,
                &[("<script>x</script>".to_owned(), MetricKind::Cpu, 42)],
                now,
            )
            .await
            .expect("sample");
    }
    for role in ROLES {
        let cookie = console_cookie(&h, role).await;
        let (status, html) = console_get(&h, &cookie, "/dashboard").await;
        assert_eq!(status, StatusCode::OK, "{role:?}: {html}");
        assert!(
            html.contains(&format!("data-tenant=\"{OWN}\"")),
            "{role:?}: {html}"
        );
        assert_eq!(
            html.contains(&format!("data-tenant=\"{FOREIGN}\"")),
            role == Owner,
            "{role:?} and the foreign tenant's row"
        );
        let (status, html) = console_get(&h, &cookie, &format!("/devices/{own}?range=1h")).await;
        assert_eq!(status, StatusCode::OK, "{role:?}: {html}");
        assert!(
            html.contains("id=\"nothing-to-chart\"") || html.contains("id=\"charts\""),
            "{html}"
        );
        assert!(
            html.contains("&#60;script&#62;x&#60;/script&#62;") && !html.contains("<script>x"),
            "{role:?}: {html}"
        );
        assert!(html.contains("class=\"range-current\">1h<"), "{html}");
        let (status, _) = console_get(&h, &cookie, &format!("/devices/{foreign}")).await;
        let want = if role == Owner {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, want, "{role:?} on the foreign device");
        let (status, html) = console_get(&h, &cookie, &format!("/tenants/{OWN}?range=30d")).await;
        assert_eq!(status, StatusCode::OK, "{role:?}: {html}");
        // The API agrees: the foreign device's series is a 404.
        let token = &h.sessions[&role];
        let reply = h
            .send(
                "GET",
                &format!("/api/v1/devices/{foreign}/metrics"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(reply.status == StatusCode::OK, role == Owner, "{role:?}");
    }
    // Bad ranges: a clear 400, the same for every spelling of nonsense.
    for query in [
        "from=NaN",
        "to=inf",
        "from=1e308",
        "from=-5",
        "from=10&to=5",
        "from=0&to=99999999999",
        "metric=%3Cx%3E",
        "bogus=1",
    ] {
        let reply = h
            .send(
                "GET",
                &format!("/api/v1/devices/{own}/metrics?{query}"),
                Some(h.owner()),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
}

/// The console's script library and Run panel: the library for the roles
/// that see it through the API (not the customer's auditor), the Run page
/// for the roles that may request jobs on that tenant, a foreign tenant's
/// Run page a 404 for every non-owner, and what a page shows escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_script_library_and_run_panel_follow_the_roles() {
    let h = start().await;
    for role in ROLES {
        let cookie = console_cookie(&h, role).await;
        let (status, _) = console_get(&h, &cookie, "/scripts").await;
        let sees = role != TenantAuditor;
        assert_eq!(
            status.as_u16(),
            if sees { 200 } else { 403 },
            "{role:?} /scripts"
        );
        let (status, html) = console_get(&h, &cookie, &format!("/tenants/{OWN}/run")).await;
        let runs = matches!(role, Owner | SecurityOfficer | Technician);
        assert_eq!(
            status.as_u16(),
            if runs { 200 } else { 403 },
            "{role:?} own run"
        );
        if runs {
            assert!(html.contains("id=\"run-panel\""), "{role:?}");
        }
        let (status, _) = console_get(&h, &cookie, &format!("/tenants/{FOREIGN}/run")).await;
        assert_eq!(
            status.as_u16(),
            if role == Owner { 200 } else { 404 },
            "{role:?} foreign run"
        );
        // A prepared one-off command is shown escaped.
        if runs {
            let (status, html) = console_get(
                &h,
                &cookie,
                &format!(
                    "/tenants/{OWN}/run?source=command&command=echo+%27%3Cb%3Ex%3C%2Fb%3E%27&targets=h1"
                ),
            )
            .await;
            assert_eq!(status.as_u16(), 200);
            assert!(
                html.contains("id=\"run-command\"")
                    && html.contains("&#60;b&#62;x&#60;/b&#62;")
                    && !html.contains("<b>x</b>"),
                "{html}"
            );
        }
    }
}

/// `GET /api/v1/devices` without `tenant` searches every tenant the caller
/// may see and no other: a technician of one tenant never finds the other's
/// device, by tag or by text, even when both carry the tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_search_stays_in_scope() {
    let h = start().await;
    let owner = h.sessions[&Owner].clone();
    for side in [OWN, FOREIGN] {
        let path = format!("/api/v1/devices/{}/tags", h.devices[side]);
        let reply = h
            .send(
                "POST",
                &path,
                Some(&owner),
                Some(&json!({"add": ["shared"]})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let everything = h
        .send("GET", "/api/v1/devices?tag=shared", Some(&owner), None)
        .await;
    assert_eq!(everything.body["total"], 2, "{}", everything.body);
    for role in [SecurityOfficer, Technician, ReadOnly, TenantAuditor] {
        let token = h.sessions[&role].clone();
        for query in ["", "?tag=shared", "?q=a", "?status=offline&limit=500"] {
            let reply = h
                .send(
                    "GET",
                    &format!("/api/v1/devices{query}"),
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{role:?} {query}: {}",
                reply.body
            );
            let ids: Vec<&str> = reply.body["devices"]
                .as_array()
                .expect("devices")
                .iter()
                .filter_map(|d| d["id"].as_str())
                .collect();
            assert!(
                !ids.contains(&h.devices[FOREIGN].as_str()),
                "{role:?} {query} found the foreign device: {}",
                reply.body
            );
        }
        let reply = h
            .send("GET", "/api/v1/devices?tag=shared", Some(&token), None)
            .await;
        assert_eq!(reply.body["total"], 1, "{role:?}: {}", reply.body);
        // A bad parameter is a 400 that says which.
        let bad = h
            .send("GET", "/api/v1/devices?tag=a%20b", Some(&token), None)
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(
            bad.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("tag:")),
            "{}",
            bad.body
        );
    }
}

async fn schedule_count(h: &Harness, path: &str) -> usize {
    let list = h.ok("GET", path, Some(h.owner()), None).await;
    list.as_array().expect("a list").len()
}

/// A schedule that agents would refuse is refused at the desk (400) and
/// nothing is stored; a good one is stored once, shows its next
/// occurrences, and is revoked once (RFD 0019).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_the_agents_would_refuse_are_refused_and_nothing_is_stored() {
    use bulwark_policy::schedule::ScheduleStatement;
    let h = start().await;
    let key = h.operator_key.clone().expect("the owner's key");
    let tenant_id = h.tenant_ids[OWN].clone();
    let device = h.devices[OWN].clone();
    let path = format!("/api/v1/tenants/{OWN}/schedules");
    let before = schedule_count(&h, &path).await;
    let good = schedule_envelope(&tenant_id, OWN, &device, &key);
    let statement: ScheduleStatement = good
        .statement(&bulwark_policy::Limits::default())
        .expect("a schedule");
    let signed = |s: &ScheduleStatement| {
        let mut signed = Signed::new(s);
        signed.sign(&key);
        signed
    };
    let post = |envelope: Signed, script: &'static str| {
        let path = path.clone();
        let owner = h.owner().to_owned();
        let h = &h;
        async move {
            h.send(
                "POST",
                &path,
                Some(&owner),
                Some(&json!({"envelope": B64.encode(envelope.to_bytes()), "script": script})),
            )
            .await
        }
    };
    let mut unsigned = good.clone();
    unsigned.signatures.clear();
    let mut edited = good.clone();
    edited.payload = Signed::new(&ScheduleStatement {
        zone: "America/New_York".into(),
        ..statement.clone()
    })
    .payload;
    let stranger = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut by_stranger = Signed::new(&statement);
    by_stranger.sign(&stranger);
    let cases: Vec<(&str, Signed, &'static str)> = vec![
        ("no signature", unsigned, "true"),
        ("a field edited after signing", edited, "true"),
        ("a key nobody registered", by_stranger, "true"),
        (
            "another script than the signed hash",
            good.clone(),
            "rm -rf /",
        ),
        (
            "an unknown zone",
            signed(&ScheduleStatement {
                zone: "Mars/Olympus_Mons".into(),
                ..statement.clone()
            }),
            "true",
        ),
        (
            "a life beyond 90 days",
            signed(&ScheduleStatement {
                not_after: statement.not_before + 91 * 86_400,
                ..statement.clone()
            }),
            "true",
        ),
        (
            "a cron expression out of range",
            signed(&ScheduleStatement {
                cron: "61 * * * *".into(),
                ..statement.clone()
            }),
            "true",
        ),
        (
            "another tenant",
            signed(&ScheduleStatement {
                tenant: h.tenant_ids[FOREIGN].clone(),
                tenant_name: FOREIGN.into(),
                ..statement.clone()
            }),
            "true",
        ),
        (
            "a window with no occurrence left",
            signed(&ScheduleStatement {
                not_after: statement.not_before + 30,
                ..statement.clone()
            }),
            "true",
        ),
    ];
    for (what, envelope, script) in cases {
        let reply = post(envelope, script).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.body
        );
    }
    assert_eq!(
        schedule_count(&h, &path).await,
        before,
        "nothing refused was stored"
    );

    let created = post(good.clone(), "true").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body["zone"], "UTC");
    assert_eq!(
        created.body["next_occurrences"].as_array().map(Vec::len),
        Some(5)
    );
    let again = post(good, "true").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(schedule_count(&h, &path).await, before + 1);

    let revoke = format!("/api/v1/schedules/{id}/revoke");
    let reason = json!({"reason": "not any more"});
    let revoked = h.ok("POST", &revoke, Some(h.owner()), Some(&reason)).await;
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(revoked["next_occurrences"], json!([]));
    let twice = h
        .send("POST", &revoke, Some(h.owner()), Some(&reason))
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.body);
}

/// The console's shell pages (RFD 0015): the tenant's sessions and the
/// device page's panel to every role of the tenant; the Play link and a
/// session's page only to who may read recordings (the API's
/// `ViewShellRecordings`); another tenant's list and session: 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shell_pages_follow_the_recording_right() {
    let h = start().await;
    let device = h.devices[OWN].clone();
    let owner_id = h.operator_ids[&Owner].clone();
    let (grant_id, session_id) = ("ab".repeat(16), "cd".repeat(16));
    let store = &h.server.store;
    store
        .create_shell_grant(
            &bulwark_store::NewShellGrant {
                id: grant_id.clone(),
                tenant_id: h.tenant_ids[OWN].clone(),
                device_id: device.clone(),
                requested_by: owner_id.clone(),
                grantee_key: "ef".repeat(32),
                account: "unprivileged".into(),
                reason: "<script>alert(1)</script>".into(),
                not_before: 0,
                expires_at: 1,
                envelope: vec![1],
            },
            now_millis(),
            &[],
        )
        .await
        .expect("grant");
    store
        .open_shell_session(&session_id, &grant_id, &owner_id, now_millis(), &[])
        .await
        .expect("session");
    let play = format!("href=\"/shell-sessions/{session_id}\"");
    for role in ROLES {
        let reads = matches!(role, Owner | SecurityOfficer | TenantAuditor);
        let cookie = console_cookie(&h, role).await;
        let (status, html) =
            console_get(&h, &cookie, &format!("/tenants/{OWN}/shell-sessions")).await;
        assert_eq!(status, StatusCode::OK, "{role:?}: {html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)") && !html.contains("<script>alert(1)"),
            "escaped: {html}"
        );
        assert_eq!(html.contains(&play), reads, "{role:?}: the Play link");
        let (status, html) = console_get(&h, &cookie, &format!("/devices/{device}")).await;
        assert_eq!(status, StatusCode::OK, "{role:?}");
        assert!(
            html.contains("id=\"shell-panel\"")
                && !html.contains(&format!("data-grant-id=\"{grant_id}\"")),
            "{role:?}: an expired grant is not live: {html}"
        );
        assert_eq!(
            html.contains(&play),
            reads,
            "{role:?}: the device's Play link"
        );
        let (status, html) =
            console_get(&h, &cookie, &format!("/shell-sessions/{session_id}")).await;
        let want = if reads {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, want, "{role:?} on the session: {html}");
        if reads {
            assert!(
                html.contains("still open") && html.contains("id=\"not-playable\""),
                "{html}"
            );
        }
        let (status, _) =
            console_get(&h, &cookie, &format!("/tenants/{FOREIGN}/shell-sessions")).await;
        let want = if role == Owner {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, want, "{role:?} on the foreign tenant's sessions");
        let (status, _) =
            console_get(&h, &cookie, &format!("/shell-sessions/{}", "0".repeat(32))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{role:?}: no such session");
    }
}
