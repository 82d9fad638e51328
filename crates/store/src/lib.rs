//! Bulwark's one storage interface.
//!
//! [`Store`] is a cheap, cloneable handle over a connection pool to either an
//! embedded SQLite file (the default) or PostgreSQL. Both backends run the
//! same query text (`$1, $2` placeholders, which SQLite maps to positional
//! parameters) against schemas kept in step in `migrations/sqlite` and
//! `migrations/postgres`.
//!
//! Rules every query here follows:
//! - No clock: callers pass `now` (unix milliseconds, [`Millis`]).
//! - Tenant scope is enforced in the SQL: every tenant-scoped read takes a
//!   [`TenantScope`] and joins `operator_grants` in the query itself.
//! - Operations that change more than one row run in one transaction whose
//!   first statement is a write, so that concurrent callers serialise on
//!   both backends (a row lock on PostgreSQL, the write lock on SQLite).
//! - Unique-constraint violations become [`StoreError::Conflict`].
//! - Signed envelopes (trust statements, jobs) are stored as the bytes the
//!   server verified; the store checks no signature.
//! - Every audit event is appended to its transparency log (the tenant's,
//!   or the MSP-wide one) in the same transaction as the event and the
//!   change it records (`transparency_log`, RFD 0003).

mod alerts;
mod api_tokens;
mod audit;
mod audit_action;
mod ceremonies;
mod device_checks;
mod device_labels;
mod device_sign_ins;
mod device_vulns;
mod devices;
mod error;
mod inventory_sections;
mod invitations;
mod job_delivery;
mod job_live;
mod jobs;
mod leases;
mod metrics;
pub mod metrics_plan;
mod notifications;
mod operators;
mod packages;
mod passkeys;
mod patch_compliance;
mod patch_policies;
mod recovery;
mod releases;
mod schedules;
mod scripts;
mod server_secrets;
mod sessions;
mod setup;
mod shells;
mod siem;
mod signing_keys;
mod sla;
mod tenants;
pub mod testing;
mod throttle;
mod transparency_log;
mod trust;
mod trust_proposals;
mod vuln_findings;
mod vulndb;

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

pub use alerts::{
    Alert, AlertCounts, AlertPulse, AlertState, MAX_DETAIL as MAX_ALERT_DETAIL, NewAlert,
    OFFLINE_KEY_PREFIX, Raised, Severity,
};
pub use api_tokens::{ApiToken, NewApiToken};
pub use audit::{AuditEvent, NewAuditEvent, audit_log_id};
pub use audit_action::AuditAction;
pub use ceremonies::{CeremonyBudgets, CeremonyOwner, NewCeremony, TakenCeremony};
pub use device_checks::{CheckTransition, DeviceCheck, MAX_CHECKS_PER_DEVICE};
pub use device_labels::{DeviceLabels, LabelFilter, MAX_TAGS_PER_DEVICE};
pub use device_sign_ins::{DeviceAnswer, DeviceSignIn, DeviceStartRefused};
pub use device_vulns::{DeviceVulnerabilities, MAX_CANDIDATE_ROWS, TenantVulnerabilities};
pub use devices::{Device, DeviceKey, NewDevice};
pub use error::StoreError;
pub use inventory_sections::SecurityChanges;
pub use invitations::{
    ACCOUNT_OPERATOR, ACCOUNT_OWNER, Grant, Invitation, InvitationEnrolment, NewInvitation,
};
pub use job_delivery::{Delivery, TargetOutcome};
pub use job_live::{Appended, Cancelled, OutputChunk};
pub use jobs::{
    Decision, Job, JobApproval, JobState, JobTarget, NewJob, TargetCounts, TargetState,
};
pub use leases::{Lease, NodeBeat};
pub use metrics::{Compaction, MAX_SERIES_ROWS, MetricSeries, TenantCounts, TenantPoint};
pub use notifications::{
    ChannelHours, ChannelKind, DueNotification, Escalation, MAX_ROUTING_KEY,
    MAX_TARGET as MAX_CHANNEL_TARGET, NewChannel, NotificationChannel, NotificationEvent,
};
pub use operators::{NewOperator, Operator};
pub use packages::MAX_PACKAGES_PER_DEVICE;
pub use passkeys::{LastPasskey, NewPasskey, Passkey};
pub use patch_compliance::{PatchWatch, SecuritySpan};
pub use patch_policies::PatchPolicy;
pub use releases::ReleaseFileKind;
pub use schedules::{Claim, DeliverableRun, NewSchedule, Schedule, ScheduleRun};
pub use scripts::{NewScript, NewScriptVersion, Script, ScriptReview, ScriptVersion};
pub use sessions::{NewSession, Session, SessionKind};
pub use setup::SetupEnrolment;
pub use shells::{NewShellGrant, ShellEnd, ShellGrant, ShellSession};
pub use signing_keys::{NewSigningKey, SigningKey, SigningKeyKind};
pub use sla::{Outage, SeverityTargets, SlaAlert, SlaSettings, UptimeDevice, UptimeTarget};
pub use tenants::{Tenant, TenantSummary};
pub use throttle::{Lockout, ThrottleCounter};
pub use transparency_log::{
    ArchiveCandidates, AuditLeaf, LogAppend, LogCheckpoint, LogEntry, LogHash, LogHead, MSP_LOG,
};
pub use trust::{DeviceTrust, TrustKind, TrustSet};
pub use trust_proposals::{Companions, NewTrustProposal, ProposalState, TrustProposal};
pub use vuln_findings::{DeviceVulnerability, TenantVulnerability, VulnerablePackage};
pub use vulndb::{
    NewVulnAdvisory, NewVulnAffected, VulnCandidate, VulnDbStatus, VulnEcosystemCount,
    VulnGeneration, VulnSeverity,
};

/// A point in time: milliseconds since the Unix epoch.
pub type Millis = i64;

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Which tenants a read may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant (owners).
    All,
    /// Only the tenants granted to this operator id in `operator_grants`;
    /// nothing at all if the operator is disabled.
    Operator(String),
    /// Only the tenants of this API token id, while it is unrevoked and its
    /// operator enabled, and only those its operator still holds a grant on
    /// (or all of them for an owner's token).
    ApiToken(String),
}

impl TenantScope {
    /// The two leading bind parameters of every scoped query: `$1` is 1 for
    /// [`TenantScope::All`], 0 for an operator, 2 for an API token; `$2`
    /// the operator or token id.
    fn args(&self) -> (i64, &str) {
        match self {
            TenantScope::All => (1, ""),
            TenantScope::Operator(id) => (0, id.as_str()),
            TenantScope::ApiToken(id) => (2, id.as_str()),
        }
    }
}

/// The SQL condition "tenant id `$col` is inside the scope bound as `$1, $2`".
macro_rules! in_scope {
    ($col:literal) => {
        concat!(
            "($1 = 1 OR ($1 = 0 AND ",
            $col,
            " IN (SELECT g.tenant_id FROM operator_grants g",
            " JOIN operators go ON go.id = g.operator_id",
            " WHERE g.operator_id = $2 AND go.disabled_at IS NULL))",
            " OR ($1 = 2 AND ",
            $col,
            " IN (SELECT kt.tenant_id FROM api_token_tenants kt",
            " JOIN api_tokens k ON k.id = kt.token_id",
            " JOIN operators ko ON ko.id = k.operator_id",
            " WHERE kt.token_id = $2 AND k.revoked_at IS NULL AND ko.disabled_at IS NULL",
            " AND (ko.role = 'owner' OR kt.tenant_id IN (SELECT kg.tenant_id",
            " FROM operator_grants kg WHERE kg.operator_id = ko.id)))))"
        )
    };
}
pub(crate) use in_scope;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Run on every pooled SQLite connection. (`foreign_keys` and `busy_timeout`
/// are sqlx's defaults too; they are stated here because the schema's
/// integrity and the concurrency story depend on them.)
const SQLITE_CONNECTION_PRAGMAS: &str =
    "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;";

/// The storage handle. Cloning is cheap (it shares one pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating if the URL says so) and migrates a database.
    ///
    /// Accepts `sqlite://PATH?mode=rwc` style URLs and `postgres://...` URLs.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let options = AnyConnectOptions::from_str(url)?;
        Self::open_with(options).await
    }

    /// Opens (creating the file if needed) and migrates an SQLite database.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Self::open(&sqlite_url(path)?).await
    }

    async fn open_with(options: AnyConnectOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = match options.database_url.scheme() {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            // The URL itself may hold a password: name only the scheme.
            other => {
                return Err(StoreError::Database(sqlx::Error::Configuration(
                    format!("unsupported database URL scheme {other:?}").into(),
                )));
            }
        };

        if backend == Backend::Sqlite {
            // WAL is a property of the file: set it once, on one connection,
            // before the pool opens others (the switch needs an exclusive lock
            // that busy_timeout does not wait for).
            let mut conn = AnyConnection::connect_with(&options).await?;
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
                .fetch_one(&mut conn)
                .await?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(journal_mode = %mode, "SQLite database is not in WAL mode.");
            }
            conn.close().await?;
        }

        let pool = AnyPoolOptions::new()
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(sqlx::raw_sql(SQLITE_CONNECTION_PRAGMAS))
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;

        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        if let Err(error) = migrator.run(&pool).await {
            pool.close().await;
            return Err(StoreError::Database(error.into()));
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; later calls on any clone fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The `sqlite://` URL of the file at `path` (made absolute), created if missing.
///
/// Every byte but unreserved ones and `/` is percent-encoded: sqlx decodes the
/// path once, so a directory called `%41` or `a?b` must arrive escaped.
pub(crate) fn sqlite_url(path: &Path) -> Result<String, StoreError> {
    let path = std::path::absolute(path).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    let mut url = String::from("sqlite://");
    for &byte in path.as_os_str().as_encoded_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pooled SQLite connection runs with the pragmas the store relies on.
    #[tokio::test]
    async fn sqlite_connections_are_configured() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&testing::sqlite_test_url(dir.path()))
            .await
            .expect("open");
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut conn = store.pool.acquire().await.expect("connection");
            for (pragma, expected) in [
                ("journal_mode", "wal"),
                ("synchronous", "1"),
                ("foreign_keys", "1"),
                ("busy_timeout", "5000"),
            ] {
                let row = sqlx::query(&format!("PRAGMA {pragma}"))
                    .fetch_one(&mut *conn)
                    .await
                    .expect(pragma);
                let value = sqlx::Row::try_get::<String, _>(&row, 0)
                    .or_else(|_| sqlx::Row::try_get::<i64, _>(&row, 0).map(|v| v.to_string()))
                    .expect(pragma);
                assert_eq!(value, expected, "PRAGMA {pragma}");
            }
            conns.push(conn); // hold it, so the next iteration gets another connection
        }
        drop(conns);
        store.close().await;
    }
}
