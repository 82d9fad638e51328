//! Action classes and the policy a new tenant starts with.

use super::*;

pub(crate) const ALL_CLASSES: [ActionClass; 9] = ActionClass::ALL;

/// What a security officer would pick: routine work with one signer, the
/// dangerous classes with two; no customer co-signer, no window restriction.
pub(super) const DEFAULT_QUORUMS: [(ActionClass, u32); 9] = [
    (ActionClass::InventoryRefresh, 1),
    (ActionClass::RunAllowListedScript, 1),
    (ActionClass::RunScript, 1),
    (ActionClass::InstallPatches, 1),
    (ActionClass::OpenShell, 1),
    (ActionClass::OpenAdminShell, 2),
    (ActionClass::ChangeAgentSettings, 2),
    (ActionClass::UpdateAgent, 2),
    (ActionClass::RestoreBackup, 2),
];

/// The kebab-case name of a class (TOML, tables, `--classes`).
pub(crate) fn class_name(class: ActionClass) -> &'static str {
    class.name()
}

pub(crate) fn parse_class(text: &str) -> Result<ActionClass> {
    let text = text.trim();
    ActionClass::from_name(text).with_context(|| {
        format!(
            "unknown action class {text:?}; the classes are {}",
            ALL_CLASSES.map(class_name).join(", ")
        )
    })
}

/// An MSP-held operator key that may sign every class.
pub(crate) fn msp_operator(name: &str, key: PublicKey) -> OperatorKey {
    OperatorKey {
        key,
        name: name.to_owned(),
        holder: Holder::Msp,
        classes: ALL_CLASSES.to_vec(),
    }
}

/// Version 1 of a tenant's policy, with the defaults above, for a year.
pub(crate) fn default_policy(
    tenant_id: &str,
    tenant_name: &str,
    operators: Vec<OperatorKey>,
    now: u64,
) -> Policy {
    Policy {
        tenant: tenant_id.to_owned(),
        tenant_name: Some(tenant_name.to_owned()),
        witnessing: None,
        mass_action_delay: None,
        checks: None,
        revoked_schedules: None,
        device_groups: None,
        shell_notice: None,
        version: 1,
        expires_at: now + DEFAULT_POLICY_DAYS * DAY,
        operators,
        quorums: DEFAULT_QUORUMS
            .iter()
            .map(|&(class, signers)| Quorum {
                class,
                signers,
                customer_required: false,
                in_window_only: false,
            })
            .collect(),
        fan_out_limit: DEFAULT_FAN_OUT_LIMIT,
        allowed_scripts: Vec::new(),
        maintenance_windows: Vec::new(),
    }
}

pub(super) fn add_operator(operators: &mut Vec<OperatorKey>, operator: OperatorKey) -> Result<()> {
    if let Some(existing) = operators.iter().find(|o| o.key == operator.key) {
        bail!("this key is already in the policy, as {:?}", existing.name);
    }
    ensure!(
        !operators.iter().any(|o| o.name == operator.name),
        "the policy already has an operator key named {:?}",
        operator.name
    );
    operators.push(operator);
    Ok(())
}

pub(super) fn remove_operator(policy: &mut Policy, name: &str) -> Result<()> {
    let before = policy.operators.len();
    policy.operators.retain(|o| o.name != name);
    if policy.operators.len() == before {
        let names: Vec<&str> = policy.operators.iter().map(|o| o.name.as_str()).collect();
        bail!(
            "the policy has no operator key named {name:?} (it has: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(())
}

/// Things a policy allows on paper but nobody can do, said before signing.
pub(crate) fn policy_warnings(policy: &Policy, now: u64) -> Vec<String> {
    let mut warnings = Vec::new();
    for q in &policy.quorums {
        let name = class_name(q.class);
        let keys = policy.signers_for(q.class, None).count();
        if keys < usize::try_from(q.signers).unwrap_or(usize::MAX) {
            warnings.push(format!(
                "{name} needs {} distinct signers but only {keys} key(s) may sign it: such jobs cannot be approved",
                q.signers
            ));
        }
        if q.customer_required
            && policy
                .signers_for(q.class, Some(Holder::Customer))
                .next()
                .is_none()
        {
            warnings.push(format!(
                "{name} requires a customer co-signer but no customer-held key may sign it"
            ));
        }
        if q.in_window_only && policy.maintenance_windows.is_empty() {
            warnings.push(format!(
                "{name} may run only inside a maintenance window and there is none"
            ));
        }
    }
    if policy.expires_at <= now + 30 * DAY {
        warnings.push(format!(
            "the policy expires {}: agents then refuse every job",
            date_text(policy.expires_at)
        ));
    }
    warnings
}
