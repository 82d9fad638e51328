//! Who may do what: the one authorisation decision, pure and I/O-free.
//!
//! Tenant scope is enforced twice over: here (may this role do this action)
//! and in every storage query (through [`bulwark_store::TenantScope`]), so a
//! handler that forgets a check still cannot read a foreign tenant's rows.

/// An operator's role. The identity issue adds per-tenant grants for the
/// non-owner roles; owners act on every tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    SecurityOfficer,
    Technician,
    ReadOnly,
    TenantAuditor,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "owner" => Role::Owner,
            "security_officer" => Role::SecurityOfficer,
            "technician" => Role::Technician,
            "read_only" => Role::ReadOnly,
            "tenant_auditor" => Role::TenantAuditor,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::SecurityOfficer => "security_officer",
            Role::Technician => "technician",
            Role::ReadOnly => "read_only",
            Role::TenantAuditor => "tenant_auditor",
        }
    }
}

/// Everything a route can do, named in the MSP's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListTenants,
    CreateTenant,
    ViewDevices,
    IssueEnrollmentToken,
    WatchPresence,
}

/// May `role` perform `action` (within the tenants its scope allows)?
pub fn authorize(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Owner => true,
        Role::SecurityOfficer | Role::Technician => {
            matches!(
                action,
                ListTenants | ViewDevices | IssueEnrollmentToken | WatchPresence
            )
        }
        Role::ReadOnly | Role::TenantAuditor => {
            matches!(action, ListTenants | ViewDevices | WatchPresence)
        }
    }
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
