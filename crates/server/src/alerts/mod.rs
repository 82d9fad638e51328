//! Alerts (RFD 0007): raised from the transparency logs, handled by
//! people, sent to the channels of their tenant.
//!
//! The raiser reads every log from its own cursor (`siem_cursors` under
//! the name [`CURSOR`], which no SIEM sink can take) and asks [`rules`]
//! what each entry raises; [`bulwark_store::Store::raise_alert`] opens the
//! alert and queues its notifications in one transaction, and [`notify`]
//! sends them. Raising is at least once: a crash between raising and
//! moving the cursor raises the same entries again, which the alert's
//! dedup key turns into one more occurrence.
//!
//! Everything here is the server speaking: an owned server can drop an
//! alert or send a false one. What it cannot do is make an agent run a
//! job the log, the witnesses and the policy do not vouch for; alerts
//! tell people to look, the CLI's own checks tell them what is true.

pub mod business_time;
pub mod checks;
pub mod inventory;
pub mod notify;
pub mod patching;
pub mod rules;
pub mod sla;
pub mod uptime;

use std::sync::Arc;
use std::time::Duration;

use bulwark_protocol::audit_leaf::AuditLeaf;
use bulwark_store::{Raised, Store, TenantScope};
use tokio::sync::watch;
use tracing::{info, warn};

use rules::{At, Classified};

/// The raiser's cursor name (SIEM sink names cannot hold `:`).
pub const CURSOR: &str = "bulwark:alerts";
/// Entries read at a time.
const BATCH: u32 = 500;
/// How often the logs are read once caught up.
const POLL: Duration = Duration::from_secs(1);

/// Raises what one entry raises; whether a notification was queued.
async fn raise_from(
    store: &Store,
    log_id: &str,
    idx: u64,
    leaf: &AuditLeaf,
) -> anyhow::Result<bool> {
    let at = At { log_id, idx };
    let now = crate::now_millis();
    let alert = match rules::classify(at, leaf, now) {
        Classified::Nothing => return Ok(false),
        Classified::Raise(alert) => alert,
        Classified::Released { job_id } => {
            let Some(job) = store.job(&TenantScope::All, &job_id).await? else {
                return Ok(false);
            };
            let Some(policy) =
                crate::transparency_log::witnessing::policy_of(store, &job.tenant_id).await?
            else {
                return Ok(false);
            };
            let Some((rule, statement)) =
                crate::gateway::mass_action::delayed_by(&policy, &job.envelope)
            else {
                return Ok(false);
            };
            rules::mass_action_alert(at, leaf, &statement, rule)
        }
    };
    match open_alert(store, &alert, now).await? {
        Raised::Opened { id, queued } => {
            info!(alert = %id, kind = %alert.kind, severity = alert.severity.as_str(), queued, "Alert opened.");
            Ok(queued > 0)
        }
        Raised::Repeated { .. } => Ok(false),
    }
}

/// Stores an agent's inventory report, then raises what it changed in
/// listening ports and administrators ([`inventory`]). A failure to raise
/// is logged, not returned: the report is stored either way. One future
/// for both, so an idle session's task holds neither the stored inventory
/// nor the changes.
pub async fn store_inventory(
    store: &Store,
    device_id: &str,
    tenant_id: &str,
    full: bool,
    report: bulwark_protocol::inventory::Inventory,
) -> Result<(), bulwark_store::StoreError> {
    let (stored, changes) = store
        .update_inventory_with_changes(device_id, full, report, crate::now_millis())
        .await?;
    if changes != bulwark_store::SecurityChanges::default() {
        let hostname = stored.system.map(|s| s.hostname).unwrap_or_default();
        raise_inventory_alerts(store, device_id, tenant_id, &hostname, &changes).await;
    }
    Ok(())
}

/// Raises what a stored inventory report changed ([`inventory`]).
async fn raise_inventory_alerts(
    store: &Store,
    device_id: &str,
    tenant_id: &str,
    hostname: &str,
    changes: &bulwark_store::SecurityChanges,
) {
    for alert in inventory::inventory_alerts(device_id, tenant_id, hostname, changes) {
        match open_alert(store, &alert, crate::now_millis()).await {
            Ok(Raised::Opened { id, queued }) => {
                info!(alert = %id, %device_id, kind = %alert.kind, queued, "Inventory change: alert opened.");
            }
            Ok(Raised::Repeated { .. }) => {}
            Err(error) => warn!(%device_id, %error, "Cannot raise an inventory alert."),
        }
    }
}

/// One pass over every log; whether any log had more than a batch left.
async fn pass(store: &Store, nudge: &tokio::sync::Notify) -> anyhow::Result<bool> {
    let mut more = false;
    for log_id in store.log_ids().await? {
        let from = store.siem_cursor(CURSOR, &log_id).await?;
        let entries = store.log_entries(&log_id, from, BATCH).await?;
        let Some(last) = entries.last().map(|e| e.idx) else {
            continue;
        };
        let mut queued = false;
        for entry in &entries {
            // A leaf this server cannot read raises nothing (the log's
            // verifier reports it); the cursor still moves past it.
            if let Ok(leaf) = AuditLeaf::decode(&entry.leaf) {
                queued |= raise_from(store, &log_id, entry.idx, &leaf).await?;
            }
        }
        if queued {
            nudge.notify_one();
        }
        store
            .advance_siem_cursor(CURSOR, &log_id, last + 1, crate::now_millis())
            .await?;
        more |= entries.len() == BATCH as usize;
    }
    Ok(more)
}

/// Devices silent for longer than this are raised again only if they went
/// silent within it: a server started after a week away pages once for
/// yesterday's silences, not for every machine retired last year.
const OFFLINE_LOOKBACK_MS: i64 = 24 * 3600 * 1000;

/// One look at the fleet: an alert for each device silent for
/// `offline_after` that is not connected, and the offline alerts of
/// devices that came back resolved (by `bulwark`, in the audit log).
pub async fn watch_offline_once(
    store: &Store,
    presence: &crate::presence::Presence,
    offline_after: Duration,
    nudge: &tokio::sync::Notify,
) -> anyhow::Result<()> {
    let now = crate::now_millis();
    let after_ms = i64::try_from(offline_after.as_millis()).unwrap_or(i64::MAX);
    let silent = store
        .devices_gone_silent(now - OFFLINE_LOOKBACK_MS, now - after_ms, 500)
        .await?;
    for (device, tenant, hostname, last_seen) in silent {
        if presence.is_online(&device) {
            continue;
        }
        let mut alert = rules::offline_alert(&device, &tenant, &hostname, last_seen, offline_after);
        alert.silenced = maintenance_silence(store, &tenant, now).await;
        if let Raised::Opened { id, queued } = open_alert(store, &alert, now).await? {
            info!(alert = %id, %device, %hostname, queued, "Device offline: alert opened.");
            if queued > 0 {
                nudge.notify_one();
            }
        }
    }
    for (alert, device) in store.unresolved_offline_alerts().await? {
        if presence.is_online(&device) {
            store
                .set_alert_state(
                    &TenantScope::All,
                    &alert,
                    bulwark_store::AlertState::Resolved,
                    "bulwark",
                    crate::now_millis(),
                )
                .await?;
            info!(%alert, %device, "Device back online: its offline alert resolved.");
        }
    }
    Ok(())
}

/// Opens `alert` (or counts a repeat): the one way the server raises
/// alerts, so that channels kept for business hours or for after hours
/// are told by the tenant's own calendar.
pub async fn open_alert(
    store: &Store,
    alert: &bulwark_store::NewAlert,
    now: i64,
) -> Result<Raised, bulwark_store::StoreError> {
    let hours = business_hours(store, alert.tenant_id.as_deref(), now).await;
    store.raise_alert(alert, now, hours).await
}

/// Whether `tenant_id` is inside its business hours (its SLA calendar) at
/// `now`; `None` when it has no calendar or it cannot be read (every
/// channel is then told, so a missing setting never drops an alert).
pub async fn business_hours(store: &Store, tenant_id: Option<&str>, now: i64) -> Option<bool> {
    let settings = store
        .sla_settings(&TenantScope::All, tenant_id?)
        .await
        .inspect_err(|error| warn!(%error, "Cannot read a tenant's business hours."))
        .ok()??;
    let calendar = crate::api::sla::calendar_of(&settings)
        .inspect_err(|error| warn!(?error, "A tenant's business hours do not read."))
        .ok()?;
    Some(calendar.is_open(now))
}

/// Why an alert opened now for `tenant_id` is told to nobody: the tenant's
/// policy is in one of its maintenance windows (reboots and failing
/// services are expected then). Only device and check alerts are
/// silenced; security alerts never are. The alert is still recorded.
pub async fn maintenance_silence(store: &Store, tenant_id: &str, now_ms: i64) -> Option<String> {
    let now_secs = u64::try_from(now_ms / 1000).unwrap_or_default();
    match crate::transparency_log::witnessing::policy_of(store, tenant_id).await {
        Ok(Some(policy)) if policy.in_window(now_secs) => Some(format!(
            "opened in a maintenance window of policy v{}",
            policy.version
        )),
        Ok(_) => None,
        Err(error) => {
            warn!(error = %format!("{error:#}"), %tenant_id, "Cannot read the tenant's policy for its maintenance windows; the alert is not silenced.");
            None
        }
    }
}

/// The offline watcher's task: a look every quarter of `offline_after`
/// (between 1 and 30 s).
pub async fn watch_offline(
    store: Store,
    presence: crate::presence::Presence,
    offline_after: Duration,
    notifier: Arc<notify::Notifier>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = (offline_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        if let Err(error) =
            watch_offline_once(&store, &presence, offline_after, &notifier.nudge).await
        {
            warn!(error = %format!("{error:#}"), "Looking for offline devices failed; trying again.");
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// The raiser's task.
pub async fn raise_alerts(
    store: Store,
    notifier: Arc<notify::Notifier>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let more = match pass(&store, &notifier.nudge).await {
            Ok(more) => more,
            Err(error) => {
                warn!(error = %format!("{error:#}"), "Raising alerts from the logs failed; trying again.");
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}
