//! Who may do what: the one authorisation decision, pure and I/O-free.
//!
//! Tenant scope is enforced twice over: here (may this role do this action)
//! and in every storage query (through [`bulwark_store::TenantScope`]), so a
//! handler that forgets a check still cannot read a foreign tenant's rows.

pub use bulwark_api::operators::Role;

/// Everything a route can do, named in the MSP's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListTenants,
    CreateTenant,
    ViewDevices,
    /// Set and remove a device's tags and group (RFD 0016).
    LabelDevices,
    IssueEnrollmentToken,
    WatchPresence,
    /// Read one tenant's audit log.
    ViewAudit,
    /// List operator accounts and their grants.
    ListOperators,
    /// List pending invitations and revoke them.
    ManageInvitations,
    /// Invite an operator (owners only; privileged).
    InviteOperator,
    /// Disable an operator account, ending its sessions (owners only; privileged).
    DisableOperator,
    /// See login lockouts (server-wide, not per tenant).
    ViewLockouts,
    /// Lift a login lockout (privileged).
    LiftLockout,
    /// See and revoke one's own sessions; anyone signed in.
    ManageOwnSessions,
    /// Refresh one's own MFA check; anyone signed in.
    StepUp,
    /// Replace one's own recovery codes; anyone signed in (privileged).
    RegenerateRecoveryCodes,
    /// List and revoke one's own API tokens; anyone signed in.
    ManageOwnApiTokens,
    /// Make an API token (its scope within one's own grants; privileged).
    CreateApiToken,
    /// Register and list one's own public signing keys; anyone signed in.
    ManageOwnSigningKeys,
    /// See a tenant's trust root, policy and freeze state.
    ViewTrust,
    /// Publish a root rotation or a new policy (signed elsewhere; privileged).
    ManageTrust,
    /// Pull the kill switch or release it (signed elsewhere): the customer's
    /// own auditor may, without asking the MSP.
    FreezeTenant,
    /// Add the signature of a customer-held root key to a proposed trust
    /// statement (privileged): the customer's own person co-signs with the
    /// customer's own key. Which signature needs which action is
    /// [`trust_signature_action`].
    SignTrustAsCustomer,
    /// See a tenant's jobs, their scripts and results.
    ViewJobs,
    /// Submit a job an operator signed.
    RequestJob,
    /// Add a signature to a pending job, or reject it (privileged).
    ApproveJob,
    /// Cancel a job (privileged): whoever may run jobs may stop them.
    CancelJob,
    /// List and rename one's own passkeys; anyone signed in.
    ManageOwnPasskeys,
    /// Register a passkey on one's own account (privileged).
    AddPasskey,
    /// Remove one of one's own passkeys (privileged).
    RemovePasskey,
    /// See which roles must sign in with a passkey (owners only).
    ViewPasskeyPolicy,
    /// Choose which roles must sign in with a passkey (owners only; privileged).
    SetPasskeyPolicy,
    /// Replace an operator's tenant grants (owners only; privileged).
    ManageGrants,
    /// Remove every passkey of an operator who lost theirs (owners only; privileged).
    ResetPasskeys,
    /// Approve (or deny) a CLI's device-code sign-in as oneself; anyone
    /// signed in, and each approval needs a fresh passkey assertion of its own.
    ApproveDevice,
    /// Read the transparency log's public key (what auditors and agents pin).
    ViewLogKey,
    /// Read one tenant's transparency log: entries, signed heads, proofs.
    ViewTenantLog,
    /// Read the MSP-wide transparency log (events of no tenant).
    ViewMspLog,
    /// Read Bulwark's own health metrics (no tenant's data in them).
    ViewMetrics,
    /// See alerts (the store's scope limits them to the caller's tenants;
    /// MSP-wide alerts are for owners).
    ViewAlerts,
    /// Acknowledge or resolve a tenant's alert.
    HandleAlerts,
    /// Add or remove where a tenant's alerts go, webhooks included (privileged).
    ManageAlertChannels,
    /// Add or remove an e-mail address for a tenant's alerts (privileged):
    /// the customer's own auditor may, so that the customer hears of a
    /// mass action without asking the MSP.
    ManageAlertEmail,
    /// See a tenant's SLA targets and how its alerts did against them:
    /// whoever sees its alerts, the customer's auditor included.
    ViewSla,
    /// Set a tenant's SLA targets and business calendar (owners only;
    /// privileged: loosening a target hides breaches from the customer).
    ManageSla,
    /// See the vulnerability database's status and check a package version
    /// against it (public advisory data, no tenant's).
    ViewVulnDb,
    /// Start an import of OSV data into the vulnerability database (owners
    /// only; privileged: the data decides which vulnerabilities people see).
    ImportVulnDb,
    /// Upload batches into an import already started, and switch it in
    /// (owners only; not privileged, so a long import outlives the MFA window).
    UploadVulnDbRecords,
    /// Read the agent release mirror's metadata (public release data,
    /// verified by whoever reads it).
    ViewReleases,
    /// Import files into the agent release mirror (owners only; not
    /// privileged: agents verify every file, so the mirror decides
    /// nothing, and a large import outlives the MFA window).
    ImportRelease,
    /// See the MSP's script library: scripts, versions, content, reviews
    /// (the MSP's own material, not a tenant's: not the tenant auditor).
    ViewScripts,
    /// Add a script or a new version of one, signed by its author.
    ManageScripts,
    /// Record one's own signed review of another operator's version.
    ReviewScript,
    /// See a tenant's shell grants and sessions (RFD 0015).
    ViewShells,
    /// Ask for a shell grant signed with one's own key, and open sessions
    /// under one's own grant.
    RequestShell,
    /// Add one's signature to a shell grant (privileged).
    ApproveShell,
    /// Revoke a shell grant: its live sessions end (the customer's auditor
    /// may: ending access is never the dangerous direction).
    RevokeShell,
    /// Read a shell session's recording: what was typed and shown.
    ViewShellRecordings,
}

impl Action {
    /// Actions on one tenant's objects: a non-owner needs a role allowing
    /// them on that very tenant ([`authorize_in`] with `Some(tenant)`).
    pub fn on_tenant(self) -> bool {
        matches!(
            self,
            Action::ViewDevices
                | Action::LabelDevices
                | Action::IssueEnrollmentToken
                | Action::ViewAudit
                | Action::ViewTenantLog
                | Action::ViewTrust
                | Action::ManageTrust
                | Action::FreezeTenant
                | Action::SignTrustAsCustomer
                | Action::ViewJobs
                | Action::RequestJob
                | Action::ApproveJob
                | Action::CancelJob
                | Action::HandleAlerts
                | Action::ManageAlertChannels
                | Action::ManageAlertEmail
                | Action::ViewSla
                | Action::ManageSla
                | Action::ViewShells
                | Action::RequestShell
                | Action::ApproveShell
                | Action::RevokeShell
                | Action::ViewShellRecordings
        )
    }

    /// Actions on the caller's own account: every account may do them,
    /// whatever it holds (an operator with no grant left can still sign its
    /// sessions out).
    pub fn on_self(self) -> bool {
        matches!(
            self,
            Action::ManageOwnSessions
                | Action::StepUp
                | Action::RegenerateRecoveryCodes
                | Action::ManageOwnApiTokens
                | Action::CreateApiToken
                | Action::ManageOwnSigningKeys
                | Action::ManageOwnPasskeys
                | Action::AddPasskey
                | Action::RemovePasskey
                | Action::ApproveDevice
        )
    }

    /// What a session without the passkey its role requires may still do
    /// ([`Credential::NeedsPasskey`]): register one (and list them), step
    /// up so that it can, and see or end its own sessions. Signing out
    /// needs no action.
    pub fn allowed_without_passkey(self) -> bool {
        matches!(
            self,
            Action::ManageOwnPasskeys
                | Action::AddPasskey
                | Action::StepUp
                | Action::ManageOwnSessions
        )
    }

    /// Privileged actions need an MFA check within [`STEP_UP_WINDOW_MS`]
    /// ([`decide`]): what a stolen, hours-old session must not do alone.
    /// Later work adds approving jobs, admin shells and security settings.
    pub fn privileged(self) -> bool {
        matches!(
            self,
            Action::IssueEnrollmentToken
                | Action::InviteOperator
                | Action::DisableOperator
                | Action::LiftLockout
                | Action::RegenerateRecoveryCodes
                | Action::CreateApiToken
                | Action::ManageTrust
                | Action::FreezeTenant
                | Action::SignTrustAsCustomer
                | Action::ApproveJob
                | Action::CancelJob
                | Action::AddPasskey
                | Action::RemovePasskey
                | Action::SetPasskeyPolicy
                | Action::ManageGrants
                | Action::ResetPasskeys
                | Action::ManageAlertChannels
                | Action::ManageAlertEmail
                | Action::ManageSla
                | Action::ImportVulnDb
                | Action::ApproveShell
        )
    }
}

/// How recent an MFA check a privileged action needs (5 minutes).
pub const STEP_UP_WINDOW_MS: i64 = 5 * 60 * 1000;

/// May `role` perform `action` (within the tenants its scope allows)?
pub fn authorize(role: Role, action: Action) -> bool {
    use Action::*;
    if action.on_self() {
        return true;
    }
    match role {
        Role::Owner => true,
        Role::SecurityOfficer => matches!(
            action,
            ViewScripts
                | ManageScripts
                | ReviewScript
                | ListTenants
                | ViewVulnDb
                | ViewReleases
                | ViewDevices
                | LabelDevices
                | IssueEnrollmentToken
                | WatchPresence
                | ViewAudit
                | ViewLogKey
                | ViewTenantLog
                | ViewMspLog
                | ListOperators
                | ViewLockouts
                | LiftLockout
                | ViewTrust
                | ManageTrust
                | FreezeTenant
                | SignTrustAsCustomer
                | ViewJobs
                | RequestJob
                | ApproveJob
                | CancelJob
                | ViewAlerts
                | ViewSla
                | HandleAlerts
                | ManageAlertChannels
                | ManageAlertEmail
                | ViewMetrics
                | ViewShells
                | RequestShell
                | ApproveShell
                | RevokeShell
                | ViewShellRecordings
        ),
        Role::Technician => {
            matches!(
                action,
                ViewScripts
                    | ManageScripts
                    | ReviewScript
                    | ListTenants
                    | ViewVulnDb
                    | ViewReleases
                    | ViewDevices
                    | LabelDevices
                    | IssueEnrollmentToken
                    | WatchPresence
                    | ViewTrust
                    | ViewJobs
                    | RequestJob
                    | ApproveJob
                    | CancelJob
                    | ViewLogKey
                    | ViewTenantLog
                    | ViewAlerts
                    | ViewSla
                    | HandleAlerts
                    | ViewShells
                    | RequestShell
                    | ApproveShell
                    | RevokeShell
            )
        }
        Role::ReadOnly => matches!(
            action,
            ViewScripts
                | ListTenants
                | ViewVulnDb
                | ViewReleases
                | ViewDevices
                | WatchPresence
                | ViewTrust
                | ViewJobs
                | ViewLogKey
                | ViewTenantLog
                | ViewAlerts
                | ViewSla
                | ViewShells
        ),
        // The customer's own person: reads everything of its tenant, may
        // co-sign a job where the policy wants a customer key, and may pull
        // the kill switch.
        Role::TenantAuditor => {
            matches!(
                action,
                ListTenants
                    | ViewVulnDb
                    | ViewReleases
                    | ViewDevices
                    | WatchPresence
                    | ViewAudit
                    | ViewTrust
                    | ViewJobs
                    | ApproveJob
                    | FreezeTenant
                    | SignTrustAsCustomer
                    | ViewLogKey
                    | ViewTenantLog
                    | ViewAlerts
                    | ViewSla
                    | ManageAlertEmail
                    | ViewShells
                    | ApproveShell
                    | RevokeShell
                    | ViewShellRecordings
            )
        }
    }
}

/// The action adding one signature to a proposed trust statement needs:
/// for a freeze or unfreeze, [`Action::FreezeTenant`] (the customer's
/// auditor may pull the kill switch); with a customer-held root key,
/// [`Action::SignTrustAsCustomer`] (the customer's person co-signs with the
/// customer's key); anything else [`Action::ManageTrust`]. With
/// `customer_key: true` it is the widest action a statement of that kind
/// may take, checked before the key is known.
pub fn trust_signature_action(freeze: bool, customer_key: bool) -> Action {
    match (freeze, customer_key) {
        (true, _) => Action::FreezeTenant,
        (false, true) => Action::SignTrustAsCustomer,
        (false, false) => Action::ManageTrust,
    }
}

/// A role held on one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRole {
    pub tenant_id: String,
    pub tenant_name: String,
    pub role: Role,
}

/// What an account holds: owners every tenant, everyone else only its grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Owner,
    Granted(Vec<TenantRole>),
}

impl Standing {
    /// The role held on `tenant_id`, if any (owners hold [`Role::Owner`] everywhere).
    pub fn role_on(&self, tenant_id: &str) -> Option<Role> {
        match self {
            Standing::Owner => Some(Role::Owner),
            Standing::Granted(grants) => grants
                .iter()
                .find(|g| g.tenant_id == tenant_id)
                .map(|g| g.role),
        }
    }
}

/// The one authorisation decision. `tenant_id` is the tenant the action
/// touches, already found inside the caller's scope; `None` for actions on
/// no particular tenant.
///
/// 1. Owners: [`authorize`] with [`Role::Owner`].
/// 2. A tenant action ([`Action::on_tenant`]) by anyone else needs its
///    tenant: without one it is refused (fail closed).
/// 3. With a tenant: the role held on that tenant decides; no grant, no action.
/// 4. Without one: allowed if any role held allows it (the data returned is
///    still limited to the caller's tenants by the store's scope).
pub fn authorize_in(standing: &Standing, action: Action, tenant_id: Option<&str>) -> bool {
    if action.on_self() {
        return true;
    }
    let grants = match standing {
        // 1.
        Standing::Owner => return authorize(Role::Owner, action),
        Standing::Granted(grants) => grants,
    };
    match tenant_id {
        // 3.
        Some(tenant) => standing
            .role_on(tenant)
            .is_some_and(|role| authorize(role, action)),
        // 2.
        None if action.on_tenant() => false,
        // 4.
        None => grants.iter().any(|g| authorize(g.role, action)),
    }
}

/// The answer to one request's authorisation, MFA freshness included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The role does not allow it here (403 `forbidden`).
    Forbidden,
    /// Allowed, but only after a fresh MFA check (403 `step_up_required`).
    StepUpRequired,
    /// The role requires a passkey login, and this session signed in
    /// without one (403 `passkey_required`).
    PasskeyRequired,
}

/// What authenticated a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A person's session (browser or CLI), which passed MFA at `mfa_at`
    /// (login or the last step-up).
    Session { mfa_at: i64 },
    /// A person's session signed in with a one-time or recovery code while
    /// the owner's passkey policy requires a passkey of one of its roles: it
    /// may only do [`Action::allowed_without_passkey`] (register a passkey,
    /// then sign in again with it).
    NeedsPasskey { mfa_at: i64 },
    /// An integration's API token: no person behind it, so it never passes
    /// a step-up and never manages the account (its sessions, tokens or
    /// recovery codes).
    ApiToken,
}

/// The one authorisation decision every route reaches through
/// `Caller::require`/`require_in`:
///
/// 1. An API token may not act on the account itself ([`Action::on_self`]).
/// 2. A session that signed in without the passkey its role requires may
///    only enrol one ([`Action::allowed_without_passkey`]); anything else
///    is [`Decision::PasskeyRequired`]. This is the one place the owner's
///    passkey policy restricts a session: no handler tests for it.
/// 3. [`authorize_in`] (the role, on this tenant): no means [`Decision::Forbidden`].
/// 4. A [`Action::privileged`] action also needs a session whose MFA check
///    is within [`STEP_UP_WINDOW_MS`] before `now`; an API token never is.
///    A time in the future (clock skew between nodes) counts as fresh only
///    up to the same window.
pub fn decide(
    standing: &Standing,
    action: Action,
    tenant_id: Option<&str>,
    credential: Credential,
    now: i64,
) -> Decision {
    // 1.
    if credential == Credential::ApiToken && action.on_self() {
        return Decision::Forbidden;
    }
    // 2.
    if matches!(credential, Credential::NeedsPasskey { .. }) && !action.allowed_without_passkey() {
        return Decision::PasskeyRequired;
    }
    // 3.
    if !authorize_in(standing, action, tenant_id) {
        return Decision::Forbidden;
    }
    // 4.
    let fresh = match credential {
        Credential::Session { mfa_at } | Credential::NeedsPasskey { mfa_at } => {
            mfa_fresh(Some(mfa_at), now)
        }
        Credential::ApiToken => false,
    };
    if action.privileged() && !fresh {
        return Decision::StepUpRequired;
    }
    Decision::Allow
}

/// The roles an account holds: [`Role::Owner`] for an owner, else the role
/// of each grant.
pub fn roles_of(standing: &Standing) -> Vec<Role> {
    match standing {
        Standing::Owner => vec![Role::Owner],
        Standing::Granted(grants) => grants.iter().map(|g| g.role).collect(),
    }
}

/// Does the owner's passkey policy (`required`: the roles that must sign
/// in with a passkey) cover an account holding `held`? Yes if any role it
/// holds, on any tenant, is required: a passkey protects the whole account,
/// so the strictest of its roles decides.
pub fn passkey_required(held: &[Role], required: &[Role]) -> bool {
    held.iter().any(|role| required.contains(role))
}

/// How a login that passed its password and second factor ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A session that may do whatever its roles allow.
    Full,
    /// A session restricted to enrolling a passkey
    /// ([`Credential::NeedsPasskey`], decided again on every request).
    PasskeyEnrolmentOnly,
    /// No session: a passkey is required and the account holds one, so a
    /// one-time code is not enough (it could have been phished).
    Refused,
}

/// The owner's passkey policy at login:
///
/// 1. Not required, or signed in with a passkey: [`LoginOutcome::Full`].
/// 2. Required, signed in with a one-time (or recovery) code, and the
///    account holds a passkey: [`LoginOutcome::Refused`]. Otherwise a phished
///    code would open a session, or register the phisher's own passkey.
/// 3. Required, and the account holds no passkey yet: the code opens a
///    session that can only register one ([`LoginOutcome::PasskeyEnrolmentOnly`]);
///    the operator then signs in again with it. (Whoever holds password and
///    code first can enrol: that is the bootstrap, as with TOTP itself.)
pub fn login_outcome(required: bool, by_passkey: bool, holds_passkey: bool) -> LoginOutcome {
    match (required, by_passkey, holds_passkey) {
        // 1.
        (false, _, _) | (true, true, _) => LoginOutcome::Full,
        // 2.
        (true, false, true) => LoginOutcome::Refused,
        // 3.
        (true, false, false) => LoginOutcome::PasskeyEnrolmentOnly,
    }
}

/// May a one-time code refresh the MFA check (step-up)? Not for an account
/// that must use, and holds, a passkey (rule 2 of [`login_outcome`]).
pub fn code_step_up_allowed(required: bool, holds_passkey: bool) -> bool {
    login_outcome(required, false, holds_passkey) != LoginOutcome::Refused
}

/// Did the MFA check at `mfa_at` happen within [`STEP_UP_WINDOW_MS`] of `now`?
pub fn mfa_fresh(mfa_at: Option<i64>, now: i64) -> bool {
    mfa_at.is_some_and(|at| now.saturating_sub(at).abs() < STEP_UP_WINDOW_MS)
}

/// Session lifetimes (NIST SP 800-63B AAL2: 30 min idle at most, 12 h absolute).
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_timeout_ms: i64,
    pub absolute_lifetime_ms: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 15 * 60 * 1000,
            absolute_lifetime_ms: 8 * 60 * 60 * 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Valid,
    Revoked,
    Idle,
    Expired,
}

/// Is a session with these timestamps still usable at `now`?
pub fn session_state(
    policy: &SessionPolicy,
    last_seen_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    now: i64,
) -> SessionState {
    if revoked_at.is_some() {
        SessionState::Revoked
    } else if now >= expires_at {
        SessionState::Expired
    } else if now - last_seen_at >= policy.idle_timeout_ms {
        SessionState::Idle
    } else {
        SessionState::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_roles_cannot_issue_tokens() {
        assert!(authorize(Role::Owner, Action::IssueEnrollmentToken));
        assert!(authorize(Role::Technician, Action::IssueEnrollmentToken));
        assert!(!authorize(Role::ReadOnly, Action::IssueEnrollmentToken));
        assert!(!authorize(
            Role::TenantAuditor,
            Action::IssueEnrollmentToken
        ));
        assert!(!authorize(Role::Technician, Action::CreateTenant));
    }

    fn granted(grants: &[(&str, Role)]) -> Standing {
        Standing::Granted(
            grants
                .iter()
                .map(|(t, role)| TenantRole {
                    tenant_id: (*t).to_owned(),
                    tenant_name: (*t).to_owned(),
                    role: *role,
                })
                .collect(),
        )
    }

    #[test]
    fn transparency_logs_are_read_by_their_tenants_roles_and_the_msp_log_by_few() {
        let all = [
            Role::Owner,
            Role::SecurityOfficer,
            Role::Technician,
            Role::ReadOnly,
            Role::TenantAuditor,
        ];
        // A tenant's log: every role holding a grant on that tenant.
        for role in all {
            let standing = granted(&[("a", role)]);
            assert!(
                authorize_in(&standing, Action::ViewTenantLog, Some("a")),
                "{role:?}"
            );
            assert!(
                !authorize_in(&standing, Action::ViewTenantLog, Some("b")),
                "{role:?} on a tenant it holds nothing on"
            );
            // A tenant action: never without its tenant.
            assert!(!authorize_in(&standing, Action::ViewTenantLog, None));
            // The log key is public to everyone signed in with a role.
            assert!(authorize_in(&standing, Action::ViewLogKey, None));
        }
        assert!(authorize_in(
            &Standing::Owner,
            Action::ViewTenantLog,
            Some("b")
        ));
        // The MSP log: owners and security officers only.
        assert!(authorize_in(&Standing::Owner, Action::ViewMspLog, None));
        for role in all.into_iter().skip(1) {
            let expected = role == Role::SecurityOfficer;
            assert_eq!(
                authorize_in(&granted(&[("a", role)]), Action::ViewMspLog, None),
                expected,
                "{role:?}"
            );
        }
        // Reading a log is never privileged: an hours-old session, or an
        // API token, reads it.
        for action in [
            Action::ViewLogKey,
            Action::ViewTenantLog,
            Action::ViewMspLog,
        ] {
            assert!(!action.privileged());
            assert_eq!(
                decide(
                    &granted(&[("a", Role::SecurityOfficer)]),
                    action,
                    action.on_tenant().then_some("a"),
                    Credential::ApiToken,
                    0
                ),
                Decision::Allow
            );
        }
        // An operator with no grant left reads nothing.
        assert!(!authorize_in(&granted(&[]), Action::ViewLogKey, None));
    }

    #[test]
    fn only_owners_and_security_officers_manage_lockouts() {
        for (role, allowed) in [
            (Role::Owner, true),
            (Role::SecurityOfficer, true),
            (Role::Technician, false),
            (Role::ReadOnly, false),
            (Role::TenantAuditor, false),
        ] {
            assert_eq!(authorize(role, Action::LiftLockout), allowed, "{role:?}");
            assert_eq!(authorize(role, Action::ViewLockouts), allowed, "{role:?}");
        }
    }

    #[test]
    fn grants_decide_per_tenant() {
        let tech_a_ro_b = granted(&[("a", Role::Technician), ("b", Role::ReadOnly)]);
        let check = |standing: &Standing, action, tenant, expect: bool| {
            assert_eq!(
                authorize_in(standing, action, tenant),
                expect,
                "{standing:?} {action:?} on {tenant:?}"
            );
        };
        check(&tech_a_ro_b, Action::IssueEnrollmentToken, Some("a"), true);
        check(&tech_a_ro_b, Action::IssueEnrollmentToken, Some("b"), false);
        check(&tech_a_ro_b, Action::IssueEnrollmentToken, Some("c"), false);
        check(&tech_a_ro_b, Action::ViewDevices, Some("c"), false);
        // A tenant action without its tenant is refused, even if every grant allows it.
        check(&tech_a_ro_b, Action::ViewDevices, None, false);
        check(&tech_a_ro_b, Action::ListTenants, None, true);
        check(&tech_a_ro_b, Action::CreateTenant, None, false);
        check(&granted(&[]), Action::ListTenants, None, false);

        let auditor = granted(&[("a", Role::TenantAuditor)]);
        check(&auditor, Action::ViewAudit, Some("a"), true);
        check(&auditor, Action::ViewAudit, Some("b"), false);
        check(&auditor, Action::ListOperators, None, false);
        check(
            &granted(&[("a", Role::SecurityOfficer)]),
            Action::ListOperators,
            None,
            true,
        );
        check(
            &granted(&[("a", Role::SecurityOfficer)]),
            Action::ManageInvitations,
            None,
            false,
        );
        check(
            &granted(&[("a", Role::SecurityOfficer)]),
            Action::InviteOperator,
            None,
            false,
        );

        check(&Standing::Owner, Action::ViewDevices, None, true);
        check(&Standing::Owner, Action::ManageInvitations, None, true);
        assert_eq!(Role::parse_grant("owner"), None);
        assert_eq!(Role::parse_grant("technician"), Some(Role::Technician));
    }

    #[test]
    fn privileged_actions_need_fresh_mfa() {
        let now = 1_000 * 60 * 60 * 1000;
        let session = |mfa_at| Credential::Session { mfa_at };
        let fresh = session(now - STEP_UP_WINDOW_MS + 1);
        let stale = session(now - STEP_UP_WINDOW_MS);
        let token = Credential::ApiToken;
        let tech = granted(&[("a", Role::Technician)]);
        let check = |standing: &Standing, action, tenant, mfa_at, expect: Decision| {
            assert_eq!(
                decide(standing, action, tenant, mfa_at, now),
                expect,
                "{standing:?} {action:?} on {tenant:?} with MFA at {mfa_at:?}"
            );
        };
        check(
            &tech,
            Action::IssueEnrollmentToken,
            Some("a"),
            fresh,
            Decision::Allow,
        );
        check(
            &tech,
            Action::IssueEnrollmentToken,
            Some("a"),
            stale,
            Decision::StepUpRequired,
        );
        check(
            &tech,
            Action::IssueEnrollmentToken,
            Some("a"),
            token,
            Decision::StepUpRequired,
        );
        check(
            &tech,
            Action::ViewDevices,
            Some("a"),
            token,
            Decision::Allow,
        );
        check(
            &tech,
            Action::ViewDevices,
            Some("b"),
            token,
            Decision::Forbidden,
        );
        // A token never manages the account it acts for.
        for action in [
            Action::ManageOwnSessions,
            Action::StepUp,
            Action::RegenerateRecoveryCodes,
            Action::ManageOwnApiTokens,
            Action::CreateApiToken,
        ] {
            check(&Standing::Owner, action, None, token, Decision::Forbidden);
        }
        // The role decides first: no grant is forbidden whatever the MFA.
        check(
            &tech,
            Action::IssueEnrollmentToken,
            Some("b"),
            stale,
            Decision::Forbidden,
        );
        check(
            &tech,
            Action::DisableOperator,
            None,
            fresh,
            Decision::Forbidden,
        );
        // Reads never need a step-up.
        check(
            &tech,
            Action::ViewDevices,
            Some("a"),
            stale,
            Decision::Allow,
        );
        check(
            &Standing::Owner,
            Action::ListOperators,
            None,
            token,
            Decision::Allow,
        );
        check(
            &Standing::Owner,
            Action::InviteOperator,
            None,
            stale,
            Decision::StepUpRequired,
        );
        check(
            &Standing::Owner,
            Action::InviteOperator,
            None,
            fresh,
            Decision::Allow,
        );
        // Far-future MFA times (skew, tampering) are not fresh forever.
        check(
            &Standing::Owner,
            Action::LiftLockout,
            None,
            session(now + STEP_UP_WINDOW_MS),
            Decision::StepUpRequired,
        );
        // One's own account: every standing, even no grant at all.
        check(
            &granted(&[]),
            Action::ManageOwnSessions,
            None,
            stale,
            Decision::Allow,
        );
        check(&granted(&[]), Action::StepUp, None, stale, Decision::Allow);
        check(
            &granted(&[]),
            Action::RegenerateRecoveryCodes,
            None,
            stale,
            Decision::StepUpRequired,
        );
        check(
            &granted(&[]),
            Action::RegenerateRecoveryCodes,
            None,
            fresh,
            Decision::Allow,
        );
    }

    #[test]
    fn passkey_policy_restricts_sessions_in_one_place() {
        let now = 1_000 * 60 * 60 * 1000;
        let fresh = now - 1;
        let tech = granted(&[("a", Role::Technician)]);
        let pending = Credential::NeedsPasskey { mfa_at: fresh };
        // Only enrolling a passkey (and what it takes) is left.
        for action in [
            Action::ManageOwnPasskeys,
            Action::AddPasskey,
            Action::StepUp,
            Action::ManageOwnSessions,
        ] {
            assert_eq!(
                decide(&tech, action, None, pending, now),
                Decision::Allow,
                "{action:?}"
            );
        }
        for (action, tenant) in [
            (Action::ViewDevices, Some("a")),
            (Action::ListTenants, None),
            (Action::RemovePasskey, None),
            (Action::RegenerateRecoveryCodes, None),
            (Action::CreateApiToken, None),
            (Action::ManageOwnApiTokens, None),
        ] {
            assert_eq!(
                decide(&tech, action, tenant, pending, now),
                Decision::PasskeyRequired,
                "{action:?}"
            );
            assert_ne!(
                decide(
                    &tech,
                    action,
                    tenant,
                    Credential::Session { mfa_at: fresh },
                    now
                ),
                Decision::PasskeyRequired,
            );
        }
        // Registering is privileged there too.
        assert_eq!(
            decide(
                &tech,
                Action::AddPasskey,
                None,
                Credential::NeedsPasskey {
                    mfa_at: now - STEP_UP_WINDOW_MS
                },
                now
            ),
            Decision::StepUpRequired
        );
        // The policy itself: owners only.
        for role in [Role::SecurityOfficer, Role::Technician, Role::ReadOnly] {
            assert!(!authorize(role, Action::ViewPasskeyPolicy));
            assert!(!authorize(role, Action::SetPasskeyPolicy));
        }
        assert!(authorize(Role::Owner, Action::SetPasskeyPolicy));
        assert!(Action::SetPasskeyPolicy.privileged());
        // Grants and passkey resets: owners only, privileged.
        for action in [Action::ManageGrants, Action::ResetPasskeys] {
            assert!(action.privileged());
            assert!(authorize(Role::Owner, action));
            for role in [
                Role::SecurityOfficer,
                Role::Technician,
                Role::ReadOnly,
                Role::TenantAuditor,
            ] {
                assert!(!authorize(role, action), "{role:?} {action:?}");
            }
        }
        // Approving a CLI sign-in is one's own business, never an API token's.
        assert_eq!(
            decide(
                &tech,
                Action::ApproveDevice,
                None,
                Credential::Session { mfa_at: 0 },
                now
            ),
            Decision::Allow
        );
        assert_eq!(
            decide(
                &tech,
                Action::ApproveDevice,
                None,
                Credential::ApiToken,
                now
            ),
            Decision::Forbidden
        );

        // Any role held, on any tenant, brings the requirement.
        let mixed = granted(&[("a", Role::ReadOnly), ("b", Role::Technician)]);
        assert!(passkey_required(&roles_of(&mixed), &[Role::Technician]));
        assert!(!passkey_required(&roles_of(&mixed), &[Role::Owner]));
        assert!(passkey_required(
            &roles_of(&Standing::Owner),
            &[Role::Owner]
        ));
        assert!(!passkey_required(
            &roles_of(&granted(&[])),
            &[Role::ReadOnly]
        ));

        use LoginOutcome::*;
        for (required, by_passkey, holds, outcome) in [
            (false, false, false, Full),
            (false, false, true, Full),
            (false, true, true, Full),
            (true, true, true, Full),
            (true, false, true, Refused),
            (true, false, false, PasskeyEnrolmentOnly),
        ] {
            assert_eq!(
                login_outcome(required, by_passkey, holds),
                outcome,
                "required {required}, by passkey {by_passkey}, holds {holds}"
            );
        }
        assert!(code_step_up_allowed(false, true));
        assert!(code_step_up_allowed(true, false));
        assert!(!code_step_up_allowed(true, true));
    }

    #[test]
    fn trust_signatures_need_the_action_of_their_key() {
        let auditor = granted(&[("a", Role::TenantAuditor)]);
        let officer = granted(&[("a", Role::SecurityOfficer)]);
        let tech = granted(&[("a", Role::Technician)]);
        let may = |standing: &Standing, freeze, customer| {
            authorize_in(
                standing,
                trust_signature_action(freeze, customer),
                Some("a"),
            )
        };
        // The customer's person co-signs any statement with a customer key,
        // and a freeze with any key; never a statement with an MSP key.
        assert!(may(&auditor, false, true));
        assert!(may(&auditor, true, false));
        assert!(!may(&auditor, false, false));
        for freeze in [false, true] {
            for customer in [false, true] {
                assert!(may(&officer, freeze, customer));
                assert!(may(&Standing::Owner, freeze, customer));
                assert!(!may(&tech, freeze, customer));
                assert!(trust_signature_action(freeze, customer).privileged());
            }
        }
    }

    #[test]
    fn sla_reports_are_read_like_alerts_and_set_by_owners() {
        for role in [
            Role::Owner,
            Role::SecurityOfficer,
            Role::Technician,
            Role::ReadOnly,
            Role::TenantAuditor,
        ] {
            assert_eq!(
                authorize(role, Action::ViewSla),
                authorize(role, Action::ViewAlerts),
                "{role:?}"
            );
            assert_eq!(
                authorize(role, Action::ManageSla),
                role == Role::Owner,
                "{role:?}"
            );
        }
        assert!(authorize(Role::TenantAuditor, Action::ViewSla));
        assert!(Action::ViewSla.on_tenant() && Action::ManageSla.on_tenant());
        assert!(Action::ManageSla.privileged() && !Action::ViewSla.privileged());
        let auditor = granted(&[("t1", Role::TenantAuditor)]);
        assert!(authorize_in(&auditor, Action::ViewSla, Some("t1")));
        assert!(!authorize_in(&auditor, Action::ViewSla, Some("t2")));
    }

    #[test]
    fn session_expiry() {
        let p = SessionPolicy::default();
        let min = 60 * 1000;
        assert_eq!(
            session_state(&p, 0, 100 * min, None, 14 * min),
            SessionState::Valid
        );
        assert_eq!(
            session_state(&p, 0, 100 * min, None, 15 * min),
            SessionState::Idle
        );
        assert_eq!(
            session_state(&p, 99 * min, 100 * min, None, 100 * min),
            SessionState::Expired
        );
        assert_eq!(
            session_state(&p, 0, 100 * min, Some(1), 1),
            SessionState::Revoked
        );
    }
}
