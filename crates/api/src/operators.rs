//! Operator accounts, their grants per tenant, and invitations.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An operator's role. Owners act on every tenant; every other role is held
/// per tenant (a grant), so one operator can be technician on A and B,
/// tenant auditor nowhere, and nothing at all on C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
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

    /// A role that can be granted on one tenant: every role but owner.
    pub fn parse_grant(text: &str) -> Option<Self> {
        Self::parse(text).filter(|r| *r != Role::Owner)
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub tenant: String,
    /// `security_officer`, `technician`, `read_only` or `tenant_auditor`.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperatorSummary {
    pub id: String,
    pub username: String,
    /// `owner` (every tenant) or `operator` (the tenants in `grants`).
    pub account: String,
    pub disabled: bool,
    pub created_at: String,
    pub grants: Vec<GrantView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    /// 2 to 64 letters, digits, '.', '_', '-' or '@'.
    #[schema(pattern = "^[A-Za-z0-9._@-]{2,64}$")]
    pub username: String,
    /// `owner`, `security_officer`, `technician`, `read_only` or `tenant_auditor`.
    #[schema(value_type = Role)]
    pub role: String,
    /// Tenant names the role is granted on: none for an owner, exactly one for a tenant auditor.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Lifetime of the link in hours (default 72, at most 168).
    #[schema(minimum = 1, maximum = 168)]
    #[serde(default, deserialize_with = "crate::numbers::optional_whole_number")]
    pub ttl_hours: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvitationView {
    pub id: String,
    pub username: String,
    /// The role granted (`owner` for an owner invitation).
    pub role: String,
    pub grants: Vec<GrantView>,
    pub created_at: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvitationCreated {
    #[serde(flatten)]
    pub invitation: InvitationView,
    /// The one-time secret of the link; shown once, stored hashed.
    pub token: String,
    /// The console path to send to the invited person (`/invite/<token>`).
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The token from the invitation link.
    pub token: String,
    /// At least 12 characters.
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantItem {
    /// Tenant name.
    pub tenant: String,
    /// `security_officer`, `technician`, `read_only` or `tenant_auditor`.
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsRequest {
    /// Every grant the operator is to hold (the others are removed); empty: none.
    pub grants: Vec<GrantItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantsChanged {
    pub before: Vec<GrantView>,
    pub after: Vec<GrantView>,
}
