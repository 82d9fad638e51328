//! Replaying a tenant log for meaning: every trust statement and job
//! envelope through `bulwark_policy::replay::TrustReplay`.

use super::*;

/// The log's checked parts, fed entry by entry.
pub(super) struct Checker {
    pub(super) auditor: LogAuditor,
    pub(super) tenant: Option<String>,
    pub(super) log_id: String,
    /// The meaning of a tenant log's entries, replayed from entry 0.
    pub(super) replay: Option<Replay>,
    /// The `log.archived` entries about this log among those fed: what
    /// accounts for an absent prefix (`archiving`).
    pub(super) archive_records: Vec<ArchiveRecord>,
    /// Agents' recorded alarms, looked for among the entries fed (`--alarms`).
    pub(super) alarms: Option<bulwark_protocol::alarm_record::AlarmCheck>,
}

/// A tenant log's trust history and jobs, replayed with the agents' rules
/// (`bulwark_policy::replay`); the first problem is kept and reported once
/// the tree itself verified, so a rewritten entry is named as such first.
pub(super) struct Replay {
    pub(super) replay: TrustReplay,
    pub(super) statements: Statements,
    pub(super) problem: Option<ReplayProblem>,
    /// The replay started from the root this machine pinned (else from the
    /// statements' own first root).
    pub(super) pinned: bool,
    /// The version of the policy in force after the entries fed so far
    /// (the last one the log published and the replay accepted).
    pub(super) policy: Option<u64>,
}

impl Replay {
    /// The witnesses of the policy in force at the end of the replay, if
    /// the replay found no problem and that policy names witnesses.
    pub(super) fn witnesses(&self) -> Result<Option<Witnesses>> {
        let (None, Some(version)) = (&self.problem, self.policy) else {
            return Ok(None);
        };
        let signed = self
            .statements
            .policies
            .get(&version)
            .with_context(|| format!("policy v{version} is not among the statements"))?;
        policy_witnesses(signed, self.pinned, &bulwark_policy::Limits::default())
    }
}

/// The version a trust event names: its target ends in ` v<N>` (as
/// `bulwark_policy::replay` reads it).
fn named_version(target: &str) -> Option<u64> {
    target.rsplit_once(" v").and_then(|(_, v)| v.parse().ok())
}

impl Checker {
    pub(super) fn feed(&mut self, index: u64, leaf: &[u8]) -> Result<(), Bad> {
        let event = AuditLeaf::decode(leaf).map_err(|e| {
            Bad::entry(
                index,
                "bad_leaf",
                format!("entry {index} is not a canonical audit event leaf: {e}"),
            )
        })?;
        if event.tenant != self.tenant {
            return Err(Bad::entry(
                index,
                "foreign_leaf",
                format!(
                    "entry {index} is an event of log {:?}, not of this log {:?}",
                    event.log_id(),
                    self.log_id
                ),
            ));
        }
        self.auditor
            .push(index, leaf)
            .map_err(|p| Bad::from_problem(&p))?;
        if let Some(record) = ArchiveRecord::read(index, &event, &self.log_id) {
            self.archive_records.push(record);
        }
        if let Some(alarms) = &mut self.alarms {
            alarms.feed(index, &event);
        }
        if let Some(replay) = &mut self.replay
            && replay.problem.is_none()
        {
            match replay.replay.feed(index, &event, &replay.statements) {
                Err(problem) => replay.problem = Some(problem),
                // Accepted: this policy is the one in force from here on.
                Ok(()) if event.action == "trust.policy_published" => {
                    replay.policy = named_version(&event.target);
                }
                Ok(()) => {}
            }
        }
        Ok(())
    }
}

/// What replaying a tenant's log needs, from the server: every statement
/// and job envelope (`GET …/log/statements`), and the root this machine
/// pinned for the tenant.
pub(super) async fn replay_for(
    session: &Session,
    base: &str,
    tenant_id: &str,
    quiet: bool,
) -> Result<Replay> {
    let reply: LogStatementsView = session.get(&format!("{base}/statements")).await?;
    let pin = crate::pins::pin_by_tenant_id(session.server(), tenant_id)?.map(|p| p.root);
    replay_from(&reply, tenant_id, pin, quiet)
}

/// A replay over `reply` (the statements, as served or exported) from the
/// pinned root, or, unpinned, from the statements' first root (said so).
pub(super) fn replay_from(
    reply: &LogStatementsView,
    tenant_id: &str,
    pin: Option<[u8; 32]>,
    quiet: bool,
) -> Result<Replay> {
    let limits = bulwark_policy::Limits::default();
    let envelope = |text: &str| -> Result<Signed> {
        let bytes = B64.decode(text).context("a statement is not base64")?;
        Signed::from_bytes(&bytes, &limits)
            .map_err(|e| anyhow!("a statement is not an envelope: {e}"))
    };
    let mut statements = Statements::default();
    for item in &reply.trust {
        let signed = envelope(&item.envelope)?;
        match item.kind.as_str() {
            "root" => statements.roots.insert(item.version, signed),
            "policy" => statements.policies.insert(item.version, signed),
            "freeze" => statements.freezes.insert(item.version, signed),
            other => bail!("a trust statement of kind {other:?}"),
        };
    }
    for item in &reply.jobs {
        statements
            .jobs
            .insert(item.id.clone(), envelope(&item.envelope)?);
    }
    let pinned = match pin {
        Some(pin) => pin,
        None => {
            let first = statements
                .roots
                .get(&1)
                .map(bulwark_policy::root::root_fingerprint)
                .unwrap_or_default();
            if !quiet {
                eprintln!(
                    "warning: this machine pinned no root for tenant {tenant_id}: its history is \
                     replayed from the statements' first root {}. Pin it with `bulwark policy \
                     show --tenant NAME` and compare it out of band.",
                    bulwark_protocol::token::fingerprint_text(&first)
                );
            }
            first
        }
    };
    Ok(Replay {
        replay: TrustReplay::new(tenant_id, pinned),
        statements,
        problem: None,
        pinned: pin.is_some(),
        policy: None,
    })
}
