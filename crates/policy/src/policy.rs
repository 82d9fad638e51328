//! The tenant policy, signed by the root threshold.

use std::collections::BTreeSet;

use minicbor::{Decode, Encode};

use crate::Refusal;
use crate::envelope::{Signed, Statement};
use crate::keys::{KeyId, PublicKey};
use crate::limits::{Limits, cap};
use crate::root::{Holder, TrustRoot};

/// What a job does, in the MSP's language. Each class has its own quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum ActionClass {
    #[n(0)]
    InventoryRefresh,
    /// A script whose hash is on the policy's allow-list.
    #[n(1)]
    RunAllowListedScript,
    /// Any other script.
    #[n(2)]
    RunScript,
    #[n(3)]
    InstallPatches,
    #[n(4)]
    OpenShell,
    #[n(5)]
    OpenAdminShell,
    #[n(6)]
    ChangeAgentSettings,
    #[n(7)]
    UpdateAgent,
    #[n(8)]
    RestoreBackup,
}

impl ActionClass {
    /// Every class, in the order people see them.
    pub const ALL: [ActionClass; 9] = [
        ActionClass::InventoryRefresh,
        ActionClass::RunAllowListedScript,
        ActionClass::RunScript,
        ActionClass::InstallPatches,
        ActionClass::OpenShell,
        ActionClass::OpenAdminShell,
        ActionClass::ChangeAgentSettings,
        ActionClass::UpdateAgent,
        ActionClass::RestoreBackup,
    ];

    /// The kebab-case name used in the API, the CLI and policy files.
    pub fn name(self) -> &'static str {
        match self {
            ActionClass::InventoryRefresh => "inventory-refresh",
            ActionClass::RunAllowListedScript => "run-allow-listed-script",
            ActionClass::RunScript => "run-script",
            ActionClass::InstallPatches => "install-patches",
            ActionClass::OpenShell => "open-shell",
            ActionClass::OpenAdminShell => "open-admin-shell",
            ActionClass::ChangeAgentSettings => "change-agent-settings",
            ActionClass::UpdateAgent => "update-agent",
            ActionClass::RestoreBackup => "restore-backup",
        }
    }

    pub fn from_name(name: &str) -> Option<ActionClass> {
        Self::ALL.into_iter().find(|c| c.name() == name.trim())
    }
}

/// An operator key the policy authorises, and for which classes.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct OperatorKey {
    #[n(0)]
    pub key: PublicKey,
    #[n(1)]
    pub name: String,
    #[n(2)]
    pub holder: Holder,
    /// Classes this key may sign.
    #[n(3)]
    pub classes: Vec<ActionClass>,
}

/// How many distinct authorised signers a class needs.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Quorum {
    #[n(0)]
    pub class: ActionClass,
    #[n(1)]
    pub signers: u32,
    /// A customer-held key must be among the signers.
    #[n(2)]
    pub customer_required: bool,
    /// The class may only run inside a maintenance window.
    #[n(3)]
    pub in_window_only: bool,
}

/// A weekly window in UTC: on the days in `weekdays` (bit 0 Monday … bit 6
/// Sunday), from `start_minute` after midnight, for `duration_minutes`
/// (it may run past midnight).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct MaintenanceWindow {
    #[n(0)]
    pub weekdays: u8,
    #[n(1)]
    pub start_minute: u16,
    #[n(2)]
    pub duration_minutes: u16,
}

impl MaintenanceWindow {
    /// Is `now` (Unix seconds) inside this window?
    pub fn contains(&self, now: u64) -> bool {
        let minute_of_week = |t: u64| {
            let days = t / 86_400;
            // 1970-01-01 was a Thursday: weekday 3 with Monday = 0.
            let weekday = (days + 3) % 7;
            (weekday, (t % 86_400) / 60)
        };
        let (weekday, minute) = minute_of_week(now);
        let start = u64::from(self.start_minute);
        let duration = u64::from(self.duration_minutes);
        let opens_on = |day: u64| self.weekdays & (1 << day) != 0;
        // Today's window, or yesterday's running past midnight.
        (opens_on(weekday) && minute >= start && minute < start + duration)
            || (opens_on((weekday + 6) % 7)
                && start + duration > 1440
                && minute < start + duration - 1440)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Policy {
    #[n(0)]
    pub tenant: String,
    /// Only moves forward; an agent refuses anything not newer than what it holds.
    #[n(1)]
    pub version: u64,
    /// Unix seconds after which the agent refuses the policy (and every job).
    #[n(2)]
    pub expires_at: u64,
    #[n(3)]
    pub operators: Vec<OperatorKey>,
    /// Classes absent here are not permitted at all.
    #[n(4)]
    pub quorums: Vec<Quorum>,
    /// A job targeting more devices than this needs one more signer.
    #[n(5)]
    pub fan_out_limit: u32,
    /// SHA-256 of scripts that `RunAllowListedScript` may run.
    #[n(6)]
    pub allowed_scripts: Vec<ScriptHash>,
    #[n(7)]
    pub maintenance_windows: Vec<MaintenanceWindow>,
    /// The tenant's name as its root holders signed it. Jobs name the
    /// tenant they were chosen for, and an agent refuses a job that names
    /// another; `None` in policies signed before names were (no check).
    #[n(8)]
    pub tenant_name: Option<String>,
    /// The witnesses whose fresh cosignatures a job's tree head needs
    /// (RFD 0006); `None` in policies that ask for none.
    #[n(9)]
    pub witnessing: Option<crate::witness::Witnessing>,
    /// Which jobs wait after they enter the witnessed log, and how long.
    #[n(10)]
    pub mass_action_delay: Option<crate::delay::MassActionDelay>,
    /// What every agent of the tenant monitors (RFD 0009); `None` in
    /// policies that define no checks.
    #[n(11)]
    pub checks: Option<Vec<crate::checks::CheckDefinition>>,
    /// Schedules the root holders stopped (RFD 0019): agents refuse every
    /// run of them, whatever the server delivers. `None` in older policies.
    #[n(12)]
    pub revoked_schedules: Option<Vec<ScheduleId>>,
    /// Devices named by id and key, for checks on a group (RFD 0022);
    /// `None` in older policies and in policies without groups.
    #[n(13)]
    pub device_groups: Option<Vec<crate::groups::DeviceGroup>>,
    /// Whether the device's logged-in users are told when a remote shell
    /// starts and ends (RFD 0015). `None` in older policies: no notices.
    #[n(14)]
    pub shell_notice: Option<crate::shell::ShellNotice>,
}

/// A schedule's id, as a policy lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(transparent)]
pub struct ScheduleId(#[cbor(n(0), with = "minicbor::bytes")] pub [u8; 16]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(transparent)]
pub struct ScriptHash(#[cbor(n(0), with = "minicbor::bytes")] pub [u8; 32]);

impl Statement for Policy {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.policy.v1+cbor";
}

impl Policy {
    /// What makes a policy well formed, whoever signed it (step 1 of
    /// [`Policy::verify_update`]): within `limits`, no key listed twice, no
    /// class with two quorums or a quorum of zero, passkeys only under the
    /// approval RP id. Root holders check it before they sign.
    pub fn validate(&self, limits: &Limits) -> Result<(), Refusal> {
        cap(self.tenant.len(), limits.max_text, "tenant")?;
        if let Some(name) = &self.tenant_name {
            cap(name.len(), limits.max_text, "tenant name")?;
        }
        cap(
            self.operators.len(),
            limits.max_operator_keys,
            "operator keys",
        )?;
        cap(
            self.allowed_scripts.len(),
            limits.max_allowed_scripts,
            "allowed scripts",
        )?;
        cap(
            self.maintenance_windows.len(),
            limits.max_windows,
            "maintenance windows",
        )?;
        cap(self.quorums.len(), 64, "quorums")?;
        cap(
            self.revoked_schedules().len(),
            limits.max_revoked_schedules,
            "revoked schedules",
        )?;
        for o in &self.operators {
            cap(o.name.len(), limits.max_text, "operator name")?;
            cap(o.classes.len(), 64, "operator classes")?;
            // A passkey approves only under the approval RP id: one a
            // console credential (sign-in, step-up) can never be listed as.
            if let PublicKey::WebAuthn(credential) = &o.key
                && credential.rp_id != crate::webauthn::APPROVAL_RP_ID
            {
                return Err(Refusal::Malformed(format!(
                    "operator {:?}'s passkey is bound to {:?}: only approval passkeys ({}) approve jobs",
                    o.name,
                    credential.rp_id,
                    crate::webauthn::APPROVAL_RP_ID
                )));
            }
        }
        let ids: BTreeSet<KeyId> = self.operators.iter().map(|o| o.key.id()).collect();
        if ids.len() != self.operators.len() {
            return Err(Refusal::Malformed("an operator key is listed twice".into()));
        }
        let classes: BTreeSet<ActionClass> = self.quorums.iter().map(|q| q.class).collect();
        if classes.len() != self.quorums.len() {
            return Err(Refusal::Malformed("an action class has two quorums".into()));
        }
        if self.quorums.iter().any(|q| q.signers == 0) {
            return Err(Refusal::Malformed("a quorum of zero signers".into()));
        }
        if let Some(witnessing) = &self.witnessing {
            witnessing.validate(limits)?;
        }
        if let Some(delay) = &self.mass_action_delay {
            delay.validate(self.witnessing.as_ref())?;
        }
        if let Some(notice) = &self.shell_notice {
            notice.validate()?;
        }
        if let Some(checks) = &self.checks {
            crate::checks::validate_checks(checks, limits, &self.allowed_scripts)?;
        }
        crate::groups::validate_groups(self.device_groups(), self.checks(), limits)?;
        if self
            .maintenance_windows
            .iter()
            .any(|w| w.start_minute >= 1440 || w.duration_minutes > 1440)
        {
            return Err(Refusal::Malformed(
                "a maintenance window outside the day".into(),
            ));
        }
        Ok(())
    }

    pub fn quorum(&self, class: ActionClass) -> Option<&Quorum> {
        self.quorums.iter().find(|q| q.class == class)
    }

    /// Keys allowed to sign `class`, optionally only those of one holder.
    pub fn signers_for(
        &self,
        class: ActionClass,
        holder: Option<Holder>,
    ) -> impl Iterator<Item = &PublicKey> {
        self.operators
            .iter()
            .filter(move |o| o.classes.contains(&class) && holder.is_none_or(|h| o.holder == h))
            .map(|o| &o.key)
    }

    /// The schedules this policy revokes.
    pub fn revoked_schedules(&self) -> &[ScheduleId] {
        self.revoked_schedules.as_deref().unwrap_or_default()
    }

    /// The checks agents run under this policy.
    pub fn checks(&self) -> &[crate::checks::CheckDefinition] {
        self.checks.as_deref().unwrap_or_default()
    }

    /// The device groups checks may apply to.
    pub fn device_groups(&self) -> &[crate::groups::DeviceGroup] {
        self.device_groups.as_deref().unwrap_or_default()
    }

    pub fn in_window(&self, now: u64) -> bool {
        self.maintenance_windows.iter().any(|w| w.contains(now))
    }

    /// Accepts a new policy: signed by the root threshold, for this tenant,
    /// newer than `current`, unexpired.
    pub fn verify_update(
        root: &TrustRoot,
        current: Option<&Policy>,
        signed: &Signed,
        now: u64,
        limits: &Limits,
    ) -> Result<Policy, Refusal> {
        // 1. Well formed, within limits.
        let policy: Policy = signed.statement(limits)?;
        policy.validate(limits)?;
        // 2. For this tenant.
        if policy.tenant != root.tenant {
            return Err(Refusal::WrongTenant);
        }
        // 3. Signed by the root threshold (distinct root keys).
        root.require_threshold(signed)?;
        // 4. Strictly newer: an older, still validly signed policy is a rollback.
        if let Some(current) = current
            && policy.version <= current.version
        {
            return Err(Refusal::Rollback {
                what: "policy version",
                accepted: current.version,
                offered: policy.version,
            });
        }
        // 5. Not expired.
        if now >= policy.expires_at {
            return Err(Refusal::PolicyExpired);
        }
        Ok(policy)
    }
}
