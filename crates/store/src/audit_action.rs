//! Every action the audit logs record, by one name each. An event's
//! action is this enum when it is recorded, and its text (`login.failed`)
//! in the database, the transparency-log leaf, the SIEM feed and the API,
//! so renaming one is a change of the log format (RFD 0003) and is caught
//! here. Reading a log back keeps the text: an older or newer server's
//! action is still shown, and [`AuditAction::parse`] names the ones this
//! server knows.

macro_rules! audit_actions {
    ($($(#[$doc:meta])* $name:ident => $text:expr,)*) => {
        /// What an audit event records, in the MSP's words.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$doc])* $name,)*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$name,)*];

            /// The action's name as stored and logged, e.g. `login.failed`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$name => $text,)*
                }
            }
        }
    };
}

audit_actions! {
    // Signing in and sessions.
    LoginSucceeded => "login.succeeded",
    LoginFailed => "login.failed",
    LoginLocked => "login.locked",
    LoginUnlocked => "login.unlocked",
    LoginThrottleCleared => "login.throttle_cleared",
    LoginRecoveryCodeUsed => "login.recovery_code_used",
    /// The caller ended its own session (named before the `family.verb`
    /// convention; kept, since logs hold it).
    Logout => "logout",
    StepUpSucceeded => "step_up.succeeded",
    StepUpFailed => "step_up.failed",
    SessionRevoked => "session.revoked",
    SessionRevokedOthers => "session.revoked_others",
    /// A `bulwark login --device` sign-in approved in the console.
    SessionDeviceApproved => "session.device_approved",
    SessionDeviceDenied => "session.device_denied",
    SessionDeviceApprovalFailed => "session.device_approval_failed",
    RecoveryCodesGenerated => "recovery_codes.generated",
    ApiTokenCreated => "api_token.created",
    ApiTokenRevoked => "api_token.revoked",
    PasskeyAdded => "passkey.added",
    PasskeyRenamed => "passkey.renamed",
    PasskeyRemoved => "passkey.removed",
    /// A passkey's signature counter went backwards: a cloned authenticator.
    PasskeyCounterRegressed => "passkey.counter_regressed",
    SettingsPasskeyPolicyChanged => "settings.passkey_policy_changed",
    // Operators.
    OperatorCreated => "operator.created",
    OperatorInvited => "operator.invited",
    InvitationRevoked => "invitation.revoked",
    OperatorGrantsChanged => "operator.grants_changed",
    OperatorPasskeysReset => "operator.passkeys_reset",
    OperatorDisabled => "operator.disabled",
    // Tenants and devices.
    TenantCreated => "tenant.created",
    EnrollmentTokenIssued => "enrollment_token.issued",
    DeviceEnrolled => "device.enrolled",
    DeviceTrustApplied => "device.trust_applied",
    /// Tags added to or removed from a device (RFD 0016).
    DeviceTagsChanged => "device.tags_changed",
    /// A device put into a group, or taken out of one (RFD 0016).
    DeviceGroupChanged => "device.group_changed",
    SigningKeyRegistered => "signing_key.registered",
    // The script library (MSP-wide, RFD 0013).
    ScriptAdded => "script.added",
    ScriptVersionAdded => "script.version_added",
    ScriptReviewed => "script.reviewed",
    // Trust statements.
    TrustRootPublished => "trust.root_published",
    TrustPolicyPublished => "trust.policy_published",
    TrustFrozen => "trust.frozen",
    TrustUnfrozen => "trust.unfrozen",
    TrustProposed => "trust.proposed",
    TrustProposalSigned => "trust.proposal_signed",
    TrustProposalPublished => "trust.proposal_published",
    TrustProposalExpired => "trust.proposal_expired",
    // Jobs.
    JobRequested => "job.requested",
    JobCreated => "job.created",
    JobSigned => "job.signed",
    JobApproved => "job.approved",
    JobRejected => "job.rejected",
    JobExpired => "job.expired",
    /// An operator cancelled a job (RFD 0012): waiting targets are never sent,
    /// running ones are sent a cancel.
    JobCancelled => "job.cancelled",
    // Remote shells (RFD 0015).
    ShellGrantRequested => "shell.grant_requested",
    ShellGrantApproved => "shell.grant_approved",
    ShellGrantRevoked => "shell.grant_revoked",
    ShellSessionOpened => "shell.session_opened",
    /// A session ended; its detail holds the recording's SHA-256 and length
    /// as the agent reported them.
    ShellSession => "shell.session",
    /// The leaf an agent checks before it runs a job (RFD 0003).
    JobReleased => bulwark_protocol::audit_leaf::JOB_RELEASED,
    JobDelivered => "job.delivered",
    JobResult => "job.result",
    JobRefusedByAgent => "job.refused_by_agent",
    // Scheduled jobs (RFD 0019).
    /// The leaf naming a schedule's signed envelope: what agents check.
    ScheduleCreated => "schedule.created",
    ScheduleRevoked => "schedule.revoked",
    /// A node claimed an occurrence and delivers it.
    ScheduleOccurrenceDelivered => "schedule.occurrence_delivered",
    // Patch policies (RFD 0021): two schedules, a canary ring and ring 2.
    PatchPolicyCreated => "patch_policy.created",
    PatchPolicyRevoked => "patch_policy.revoked",
    // The logs themselves.
    LogExported => "log.exported",
    LogArchived => "log.archived",
    SiemSinkFailed => "siem.sink_failed",
    // Alerts as people handle them (RFD 0007), and where they are sent.
    AlertAcknowledged => "alerting.acknowledged",
    AlertResolved => "alerting.resolved",
    NotificationChannelAdded => "notification_channel.added",
    NotificationChannelRemoved => "notification_channel.removed",
    /// A notification given up on after its last attempt.
    NotificationFailed => "notification.failed",
    /// A tenant's SLA targets or business calendar changed (RFD 0008).
    SlaChanged => "sla.changed",
    // The vulnerability database.
    /// An owner switched a new OSV import in (issue 17).
    VulnDbImported => "vulndb.imported",
    // Agent releases (RFD 0017).
    /// An owner imported a release file (TUF metadata or a binary) into the mirror.
    ReleaseImported => "release.imported",
    // Security alerts: raised for people to look at now.
    AlertLoginBurst => "alert.login_burst",
    AlertTrustRefused => "alert.trust_refused",
    AlertLogRefused => "alert.log_refused",
}

impl AuditAction {
    /// The action named `text`, if this server knows it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == text)
    }

    /// A security alert (`alert.*`): shown first and sent on at once.
    pub fn is_alert(self) -> bool {
        self.as_str().starts_with("alert.")
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for action in AuditAction::ALL {
            assert!(seen.insert(action.as_str()), "{action} named twice");
            assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
            if *action != AuditAction::Logout {
                let (family, verb) = action.as_str().split_once('.').expect("family.verb");
                assert!(!family.is_empty() && !verb.is_empty(), "{action}");
            }
        }
        assert_eq!(AuditAction::parse("job.launched"), None);
        assert!(AuditAction::AlertLogRefused.is_alert());
        assert!(!AuditAction::JobReleased.is_alert());
    }

    /// Agents record their alarms under these actions (and auditors look
    /// for them): the names are the log format, defined once there.
    #[test]
    fn alarm_actions_are_the_ones_agents_record() {
        use bulwark_protocol::alarm_record::{ALERT_LOG_REFUSED, ALERT_TRUST_REFUSED};
        assert_eq!(AuditAction::AlertLogRefused.as_str(), ALERT_LOG_REFUSED);
        assert_eq!(AuditAction::AlertTrustRefused.as_str(), ALERT_TRUST_REFUSED);
    }
}
