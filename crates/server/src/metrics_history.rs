//! Metrics history (RFD 0014): samples from the values agents already
//! report for the policy's numeric checks (cpu, memory, disk, load,
//! tcp-port latency), kept in tiers by the store, and the compaction task.
//!
//! Which reported check is which metric comes from the tenant's policy as
//! the server holds it (the check report names a check, not its kind):
//! only checks of that policy whose probe yields a number are sampled, the
//! first [`MAX_METRICS_PER_DEVICE`] of them, so an agent cannot invent
//! metrics. A sample's time is the server's, never the agent's clock.

use std::time::Duration;

use bulwark_policy::checks::{CheckDefinition, Probe};
use bulwark_protocol::checks::CheckReport;
use bulwark_store::metrics_plan::{MAX_METRICS_PER_DEVICE, MAX_ROWS_PER_DEVICE, MetricKind};
use bulwark_store::{Store, TenantScope};
use tokio::sync::watch;
use tracing::{info, warn};

/// A numeric check of the policy: its name, kind and what labels it (the
/// mount of a disk check, host:port of a port check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDef {
    pub name: String,
    pub kind: MetricKind,
    pub label: String,
}

/// The policy's numeric checks, in policy order, at most
/// [`MAX_METRICS_PER_DEVICE`]; pure.
pub fn metric_defs(checks: &[CheckDefinition]) -> Vec<MetricDef> {
    checks
        .iter()
        .filter_map(|c| {
            let kind = MetricKind::of_probe(c.probe.kind())?;
            let label = match &c.probe {
                Probe::Disk { mount } => mount.clone(),
                Probe::TcpPort { host, port } => format!("{host}:{port}"),
                _ => String::new(),
            };
            Some(MetricDef {
                name: c.name.clone(),
                kind,
                label,
            })
        })
        .take(MAX_METRICS_PER_DEVICE)
        .collect()
}

/// The samples of one report: each numeric check of `defs` with its
/// latest value (`latest`: name and value as stored after the report);
/// pure. Agents send a value only when it changed, so the latest stored
/// one is carried forward: every report samples every numeric check.
pub fn samples(
    defs: &[MetricDef],
    latest: &[(String, Option<i64>)],
) -> Vec<(String, MetricKind, u64)> {
    defs.iter()
        .filter_map(|d| {
            let (_, value) = latest.iter().find(|(name, _)| *name == d.name)?;
            Some((d.name.clone(), d.kind, u64::try_from((*value)?).ok()?))
        })
        .collect()
}

/// The tenant's numeric checks (empty when it has no policy or the policy
/// cannot be read).
pub async fn tenant_metrics(store: &Store, tenant_id: &str) -> Vec<MetricDef> {
    match crate::transparency_log::witnessing::policy_of(store, tenant_id).await {
        Ok(Some(policy)) => metric_defs(policy.checks.as_deref().unwrap_or_default()),
        Ok(None) => Vec::new(),
        Err(error) => {
            warn!(error = %format!("{error:#}"), %tenant_id, "Cannot read the tenant's policy for its metrics.");
            Vec::new()
        }
    }
}

/// Stores the samples of a check report; a failure is logged, never
/// fails the report (its states are what alerts need).
pub async fn record(store: &Store, device_id: &str, tenant_id: &str, report: &CheckReport) {
    if report.checks.iter().all(|c| c.value.is_none()) {
        return;
    }
    let defs = tenant_metrics(store, tenant_id).await;
    if defs.is_empty() {
        return;
    }
    let latest = match store.device_checks(&TenantScope::All, device_id).await {
        Ok(Some(checks)) => checks
            .into_iter()
            .map(|c| (c.name, c.value))
            .collect::<Vec<_>>(),
        Ok(None) => return,
        Err(error) => {
            warn!(%device_id, %error, "Cannot read check values for metric samples.");
            return;
        }
    };
    let samples = samples(&defs, &latest);
    if samples.is_empty() {
        return;
    }
    if let Err(error) = store
        .record_metric_samples(device_id, &samples, crate::now_millis())
        .await
    {
        warn!(%device_id, %error, "Cannot store metric samples.");
    }
}

/// How often the compaction pass runs.
pub const COMPACT_EVERY: Duration = Duration::from_secs(300);

/// The compaction task: a pass every [`COMPACT_EVERY`], the first one
/// minute after start.
pub async fn compact(store: Store, mut shutdown: watch::Receiver<bool>) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = COMPACT_EVERY;
        let started = std::time::Instant::now();
        match store
            .compact_metrics(crate::now_millis(), MAX_ROWS_PER_DEVICE)
            .await
        {
            Ok(done) => info!(
                devices = done.devices,
                rolled = done.rolled,
                expired = done.expired,
                capped = done.capped,
                ms = started.elapsed().as_millis() as u64,
                "Metrics compacted."
            ),
            Err(error) => warn!(%error, "Metrics compaction failed; trying again later."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, probe: Probe) -> CheckDefinition {
        CheckDefinition {
            name: name.into(),
            probe,
            interval_secs: 60,
            warning: None,
            critical: None,
            for_secs: 0,
            timeout_secs: 10,
            groups: None,
        }
    }

    #[test]
    fn only_the_policys_numeric_checks_are_sampled() {
        let defs = metric_defs(&[
            check("cpu", Probe::Cpu),
            check("sshd", Probe::Service { unit: "ssh".into() }),
            check("disk-root", Probe::Disk { mount: "/".into() }),
            check(
                "app",
                Probe::TcpPort {
                    host: "127.0.0.1".into(),
                    port: 8080,
                },
            ),
        ]);
        let names: Vec<_> = defs
            .iter()
            .map(|d| (d.name.as_str(), d.kind, d.label.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("cpu", MetricKind::Cpu, ""),
                ("disk-root", MetricKind::Disk, "/"),
                ("app", MetricKind::Latency, "127.0.0.1:8080"),
            ]
        );
        let latest = vec![
            ("cpu".to_owned(), Some(12)),
            ("sshd".to_owned(), Some(0)),
            ("disk-root".to_owned(), None),
            ("invented".to_owned(), Some(5)),
            ("app".to_owned(), Some(-1)),
        ];
        assert_eq!(
            samples(&defs, &latest),
            [("cpu".to_owned(), MetricKind::Cpu, 12)]
        );
        let many: Vec<_> = (0..40)
            .map(|i| check(&format!("c{i}"), Probe::Memory))
            .collect();
        assert_eq!(metric_defs(&many).len(), MAX_METRICS_PER_DEVICE);
    }
}
