//! Alerts from the policy's checks (RFD 0009): an agent reports a check's
//! state after the policy's thresholds and "for N seconds"; a warning or
//! critical state opens an alert of that severity (one per device, check
//! and severity, however often it is reported), and a check back to ok
//! resolves them, as `bulwark`, audited.

use bulwark_protocol::checks::{CheckReport, CheckState};
use bulwark_store::{AlertState, CheckTransition, NewAlert, Raised, Severity, Store, TenantScope};
use tokio::sync::Notify;
use tracing::info;

/// The prefix of every check alert's dedup key for one device and check.
pub fn key_prefix(device_id: &str, check: &str) -> String {
    format!("check:{device_id}:{check}:")
}

/// Is `name` a check name as policies write them? Anything else an agent
/// reports is stored but raises nothing (it could not be in the policy).
pub fn is_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// The alert a transition to `warning` or `critical` opens; pure.
pub fn check_alert(
    device_id: &str,
    tenant_id: &str,
    hostname: &str,
    t: &CheckTransition,
) -> Option<NewAlert> {
    let severity = match t.to {
        CheckState::Warning => Severity::Warning,
        CheckState::Critical => Severity::Critical,
        CheckState::Ok | CheckState::Unknown => return None,
    };
    if !is_policy_name(&t.name) {
        return None;
    }
    Some(NewAlert {
        tenant_id: Some(tenant_id.to_owned()),
        device_id: Some(device_id.to_owned()),
        kind: "check.failed".to_owned(),
        severity,
        dedup_key: format!("{}{}", key_prefix(device_id, &t.name), severity.as_str()),
        summary: format!("Check {} is {} on {hostname}", t.name, t.to.as_str()),
        detail: format!(
            "The agent of {hostname} ({device_id}) reports check {} {} since {}: {}. The check \
             and its thresholds are in the tenant's root-signed policy; the agent judged the \
             state itself. The alert resolves itself when the check is ok again.",
            t.name,
            t.to.as_str(),
            crate::rfc3339(t.since),
            t.summary
        ),
        log_id: None,
        log_idx: None,
        silenced: None,
    })
}

/// Stores a report and raises or resolves the alerts its transitions mean.
pub async fn record(
    store: &Store,
    nudge: &Notify,
    device_id: &str,
    tenant_id: &str,
    report: &CheckReport,
) -> anyhow::Result<()> {
    let now = crate::now_millis();
    let transitions = store.record_check_report(device_id, report, now).await?;
    crate::metrics_history::record(store, device_id, tenant_id, report).await;
    if transitions.is_empty() {
        return Ok(());
    }
    let hostname = store
        .device(&TenantScope::All, device_id)
        .await?
        .map_or_else(|| device_id.to_owned(), |d| d.hostname);
    for t in &transitions {
        if !is_policy_name(&t.name) || t.to == CheckState::Unknown {
            continue; // unknown keeps what is open: it says nothing new
        }
        let keep = check_alert(device_id, tenant_id, &hostname, t);
        // Another severity's alert of this check is over.
        for (id, key) in store
            .unresolved_alerts_with_key_prefix(&key_prefix(device_id, &t.name))
            .await?
        {
            if keep.as_ref().is_some_and(|k| k.dedup_key == key) {
                continue;
            }
            store
                .set_alert_state(&TenantScope::All, &id, AlertState::Resolved, "bulwark", now)
                .await?;
            info!(alert = %id, device = %device_id, check = %t.name, state = t.to.as_str(), "Check alert resolved.");
        }
        if let Some(mut alert) = keep {
            alert.silenced = crate::alerts::maintenance_silence(store, tenant_id, now).await;
            let Raised::Opened { id, queued } =
                crate::alerts::open_alert(store, &alert, now).await?
            else {
                continue;
            };
            info!(alert = %id, device = %device_id, check = %t.name, queued, "Check alert opened.");
            if queued > 0 {
                nudge.notify_one();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(name: &str, to: CheckState) -> CheckTransition {
        CheckTransition {
            name: name.into(),
            from: Some(CheckState::Ok),
            to,
            summary: "91% used".into(),
            since: 1_800_000_000_000,
        }
    }

    #[test]
    fn warning_and_critical_open_alerts_of_their_severity() {
        let a = check_alert(
            "d1",
            "t1",
            "web-1",
            &transition("disk-root", CheckState::Critical),
        )
        .expect("critical raises");
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.dedup_key, "check:d1:disk-root:critical");
        assert!(a.summary.contains("disk-root is critical on web-1"));
        let w = check_alert(
            "d1",
            "t1",
            "web-1",
            &transition("disk-root", CheckState::Warning),
        )
        .expect("warning raises");
        assert_eq!(w.dedup_key, "check:d1:disk-root:warning");
        assert!(check_alert("d1", "t1", "h", &transition("disk-root", CheckState::Ok)).is_none());
        assert!(
            check_alert(
                "d1",
                "t1",
                "h",
                &transition("disk-root", CheckState::Unknown)
            )
            .is_none()
        );
    }

    #[test]
    fn names_no_policy_could_hold_raise_nothing() {
        for name in ["", "Disk", "a:critical", "a%", &"x".repeat(65)] {
            assert!(
                check_alert("d1", "t1", "h", &transition(name, CheckState::Critical)).is_none(),
                "{name:?}"
            );
        }
    }
}
