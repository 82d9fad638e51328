//! The states of the policy's checks per device (`device_checks`,
//! migration 0025, RFD 0009).
//!
//! What an agent reports is untrusted: names and summaries are bounded and
//! NUL-free before they are stored, and a report lists at most
//! [`MAX_CHECKS_PER_DEVICE`] checks.

use bulwark_protocol::checks::{CheckReport, CheckState};
use sqlx::Row;

use crate::{Millis, Store, StoreError, TenantScope, in_scope};

/// Most checks stored per device (a policy defines at most 256).
pub const MAX_CHECKS_PER_DEVICE: usize = 256;

/// A check's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCheck {
    pub name: String,
    pub state: CheckState,
    pub value: Option<i64>,
    pub summary: String,
    /// Agent time the state began.
    pub since: Millis,
    /// Agent time of the last measurement (0: not measured yet).
    pub measured_at: Millis,
    pub policy_version: u64,
    /// Server time of the report.
    pub reported_at: Millis,
}

/// A check whose stored state a report changed (or that a full report no
/// longer lists: `to` ok, so its alerts resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTransition {
    pub name: String,
    /// `None`: the check was not stored before.
    pub from: Option<CheckState>,
    pub to: CheckState,
    pub summary: String,
    pub since: Millis,
}

fn clean(text: &str, max: usize) -> String {
    let mut text = text.replace('\0', "\u{fffd}");
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Store {
    /// Stores `report` from `device_id` (a full one replaces every row of
    /// the device) and returns the checks whose state changed.
    pub async fn record_check_report(
        &self,
        device_id: &str,
        report: &CheckReport,
        now: Millis,
    ) -> Result<Vec<CheckTransition>, StoreError> {
        let secs = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let version = i64::try_from(report.policy_version)
            .map_err(|_| StoreError::Invalid("policy version"))?;
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT name, state FROM device_checks WHERE device_id = $1")
            .bind(device_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut before = std::collections::HashMap::new();
        for row in &rows {
            let name: String = row.try_get("name")?;
            let state: String = row.try_get("state")?;
            before.insert(name, CheckState::parse(&state));
        }
        if report.full {
            sqlx::query("DELETE FROM device_checks WHERE device_id = $1")
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
        }
        let mut transitions = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for status in report.checks.iter().take(MAX_CHECKS_PER_DEVICE) {
            let name = clean(&status.name, 64);
            if !seen.insert(name.clone()) {
                continue; // listed twice: the first counts
            }
            let summary = clean(&status.summary, 256);
            sqlx::query(
                "INSERT INTO device_checks (device_id, name, state, value, summary, since, \
                 measured_at, policy_version, reported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (device_id, name) DO UPDATE SET state = excluded.state, \
                 value = excluded.value, summary = excluded.summary, since = excluded.since, \
                 measured_at = excluded.measured_at, policy_version = excluded.policy_version, \
                 reported_at = excluded.reported_at",
            )
            .bind(device_id)
            .bind(&name)
            .bind(status.state.as_str())
            .bind(status.value.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
            .bind(&summary)
            .bind(secs(status.since))
            .bind(secs(status.measured_at))
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let from = before.get(&name).copied().flatten();
            if from != Some(status.state) {
                transitions.push(CheckTransition {
                    name,
                    from,
                    to: status.state,
                    summary,
                    since: secs(status.since),
                });
            }
        }
        // A full report that no longer lists a check: the policy the agent
        // runs dropped it. It reads as back to ok, so its alerts resolve.
        if report.full {
            let mut gone: Vec<(&String, &Option<CheckState>)> = before
                .iter()
                .filter(|(name, _)| !seen.contains(*name))
                .collect();
            gone.sort();
            for (name, from) in gone {
                transitions.push(CheckTransition {
                    name: name.clone(),
                    from: *from,
                    to: CheckState::Ok,
                    summary: "no longer in the policy the agent runs".to_owned(),
                    since: now,
                });
            }
        }
        tx.commit().await?;
        Ok(transitions)
    }

    /// The checks of a device in `scope`, by name; `None` when the device
    /// is not in scope.
    pub async fn device_checks(
        &self,
        scope: &TenantScope,
        device_id: &str,
    ) -> Result<Option<Vec<DeviceCheck>>, StoreError> {
        if self.device(scope, device_id).await?.is_none() {
            return Ok(None);
        }
        let (all, operator) = scope.args();
        let rows = sqlx::query(concat!(
            "SELECT c.name, c.state, c.value, c.summary, c.since, c.measured_at, ",
            "c.policy_version, c.reported_at FROM device_checks c ",
            "JOIN devices d ON d.id = c.device_id WHERE ",
            in_scope!("d.tenant_id"),
            " AND c.device_id = $3 ORDER BY c.name"
        ))
        .bind(all)
        .bind(operator)
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        let checks = rows
            .iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                let version: i64 = row.try_get("policy_version")?;
                Ok(DeviceCheck {
                    name: row.try_get("name")?,
                    state: CheckState::parse(&state)
                        .ok_or(StoreError::Invalid("a stored check state"))?,
                    value: row.try_get("value")?,
                    summary: row.try_get("summary")?,
                    since: row.try_get("since")?,
                    measured_at: row.try_get("measured_at")?,
                    policy_version: u64::try_from(version).unwrap_or(0),
                    reported_at: row.try_get("reported_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(checks))
    }

    /// Unresolved alerts whose dedup key starts with `prefix`: (id, key).
    pub async fn unresolved_alerts_with_key_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut pattern = String::new();
        for c in prefix.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let rows = sqlx::query(
            "SELECT id, dedup_key FROM alerts WHERE state <> 'resolved' \
             AND dedup_key LIKE $1 ESCAPE '\\' ORDER BY id",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("dedup_key")?)))
            .collect()
    }
}
