//! Trust statements being signed by several people, on their own machines
//! (RFD 0002, "Proposals").
//!
//! The server only collects signatures here: a proposal holds the envelope
//! with every signature gathered so far. The server checks each statement
//! with `bulwark_policy` before it calls [`Store::publish_trust_proposal`],
//! which stores it as a trust statement and closes the proposal in one
//! transaction. Open proposals of a kind that a newer statement has
//! overtaken are withdrawn then too: they could never be published.

use crate::AuditAction;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::unique_or_missing;
use crate::trust::{from_db, insert_trust_statement, to_db};

use crate::{Millis, Store, StoreError, TenantScope, TrustKind, in_scope};

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalState {
    /// Gathering signatures.
    Open,
    /// Its statement was published.
    Published,
    /// Overtaken by a newer statement of its kind.
    Withdrawn,
    /// Not published before `expires_at`.
    Expired,
}

impl ProposalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Open => "open",
            ProposalState::Published => "published",
            ProposalState::Withdrawn => "withdrawn",
            ProposalState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(ProposalState::Open),
            "published" => Some(ProposalState::Published),
            "withdrawn" => Some(ProposalState::Withdrawn),
            "expired" => Some(ProposalState::Expired),
            _ => None,
        }
    }
}

impl std::fmt::Display for ProposalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A root rotation's companion envelopes (RFD 0002, "Proposals"): the
/// current policy re-signed as `policy_version`, the freeze statement
/// re-signed as `freeze_sequence`. `None`: no such companion (the versions
/// are then unused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Companions {
    pub policy: Option<Vec<u8>>,
    pub policy_version: u64,
    pub freeze: Option<Vec<u8>>,
    pub freeze_sequence: u64,
}

/// A new proposal, as the server checked it.
#[derive(Debug, Clone)]
pub struct NewTrustProposal {
    /// 32 lowercase hex characters.
    pub id: String,
    pub tenant_id: String,
    pub kind: TrustKind,
    pub version: u64,
    pub envelope: Vec<u8>,
    /// A root rotation's companions: the current policy re-signed as the
    /// next version, the freeze statement re-signed as the next sequence.
    pub policy_envelope: Option<Vec<u8>>,
    pub freeze_envelope: Option<Vec<u8>>,
    pub proposed_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustProposal {
    pub id: String,
    pub tenant_id: String,
    pub kind: TrustKind,
    pub version: u64,
    /// The envelope with every signature gathered so far.
    pub envelope: Vec<u8>,
    /// A root rotation's companions (migration 0010), each with every
    /// signature gathered so far; published with the root.
    pub policy_envelope: Option<Vec<u8>>,
    pub freeze_envelope: Option<Vec<u8>>,
    pub proposed_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// As stored; an open proposal past `expires_at` is shown as expired
    /// by the queries below even before [`Store::expire_trust_proposals`] runs.
    pub state: ProposalState,
    pub published_at: Option<Millis>,
}

const COLUMNS: &str = "p.id, p.tenant_id, p.kind, p.version, p.envelope, p.policy_envelope, \
     p.freeze_envelope, p.proposed_by, p.created_at, p.expires_at, p.state, p.published_at";

fn proposal_from_row(row: &AnyRow, now: Millis) -> Result<TrustProposal, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let expires_at: Millis = row.try_get("expires_at")?;
    let mut state = ProposalState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("proposal state {state:?}")))?;
    if state == ProposalState::Open && expires_at <= now {
        state = ProposalState::Expired;
    }
    Ok(TrustProposal {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        kind: TrustKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("trust kind {kind:?}")))?,
        version: from_db(row, "version")?,
        envelope: row.try_get("envelope")?,
        policy_envelope: row.try_get("policy_envelope")?,
        freeze_envelope: row.try_get("freeze_envelope")?,
        proposed_by: row.try_get("proposed_by")?,
        created_at: row.try_get("created_at")?,
        expires_at,
        state,
        published_at: row.try_get("published_at")?,
    })
}

impl Store {
    /// Stores a new open proposal. `NotFound` for an unknown tenant or
    /// operator, `Conflict("proposal already exists")` for a known id,
    /// `Invalid` for a version above `i64::MAX`.
    pub async fn create_trust_proposal(
        &self,
        new: &NewTrustProposal,
        events: &[crate::NewAuditEvent],
    ) -> Result<TrustProposal, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO trust_proposals (id, tenant_id, kind, version, envelope, proposed_by, \
             created_at, expires_at, state, published_at, policy_envelope, freeze_envelope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', NULL, $9, $10)",
        )
        .bind(&new.id)
        .bind(&new.tenant_id)
        .bind(new.kind.as_str())
        .bind(to_db(new.version, "proposal version out of range")?)
        .bind(&new.envelope)
        .bind(&new.proposed_by)
        .bind(new.created_at)
        .bind(new.expires_at)
        .bind(new.policy_envelope.as_deref())
        .bind(new.freeze_envelope.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("proposal already exists"))?;
        crate::audit::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(TrustProposal {
            id: new.id.clone(),
            tenant_id: new.tenant_id.clone(),
            kind: new.kind,
            version: new.version,
            envelope: new.envelope.clone(),
            policy_envelope: new.policy_envelope.clone(),
            freeze_envelope: new.freeze_envelope.clone(),
            proposed_by: new.proposed_by.clone(),
            created_at: new.created_at,
            expires_at: new.expires_at,
            state: ProposalState::Open,
            published_at: None,
        })
    }

    /// One proposal, if its tenant is in scope.
    pub async fn trust_proposal(
        &self,
        scope: &TenantScope,
        id: &str,
        now: Millis,
    ) -> Result<Option<TrustProposal>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM trust_proposals p WHERE {} AND p.id = $3",
            in_scope!("p.tenant_id")
        );
        let (all, operator) = scope.args();
        let row = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| proposal_from_row(&r, now)).transpose()
    }

    /// The open, unexpired proposals of a tenant in scope, oldest first.
    pub async fn open_trust_proposals(
        &self,
        scope: &TenantScope,
        tenant_id: &str,
        now: Millis,
    ) -> Result<Vec<TrustProposal>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM trust_proposals p WHERE {} AND p.tenant_id = $3 \
             AND p.state = 'open' AND p.expires_at > $4 ORDER BY p.created_at, p.id",
            in_scope!("p.tenant_id")
        );
        let (all, operator) = scope.args();
        let rows = sqlx::query(&sql)
            .bind(all)
            .bind(operator)
            .bind(tenant_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| proposal_from_row(r, now)).collect()
    }

    /// Replaces an open proposal's envelope by `new_envelope` (the one read,
    /// `previous_envelope`, with one more signature). `NotFound` for an
    /// unknown proposal; `Conflict("proposal is not open")` once published,
    /// withdrawn or expired; `Conflict("proposal changed since it was read")`
    /// if another signature landed meanwhile (read it again and retry).
    /// `companions`: a root rotation's policy and freeze envelopes with the
    /// same signer's signature added (stored as given; `None` for none).
    pub async fn add_proposal_signature(
        &self,
        id: &str,
        previous_envelope: &[u8],
        new_envelope: &[u8],
        companions: &Companions,
        now: Millis,
        events: &[crate::NewAuditEvent],
    ) -> Result<(), StoreError> {
        // Every signature lands on the root envelope, so comparing it alone
        // tells whether anything changed since it was read.
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE trust_proposals SET envelope = $2, policy_envelope = $5, freeze_envelope = $6 \
             WHERE id = $1 AND envelope = $3 AND state = 'open' AND expires_at > $4",
        )
        .bind(id)
        .bind(new_envelope)
        .bind(previous_envelope)
        .bind(now)
        .bind(companions.policy.as_deref())
        .bind(companions.freeze.as_deref())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            crate::audit::insert_events(&mut tx, events).await?;
            tx.commit().await?;
            return Ok(());
        }
        let row = sqlx::query("SELECT state, expires_at FROM trust_proposals WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let state: String = row.try_get("state")?;
        let expires_at: Millis = row.try_get("expires_at")?;
        Err(StoreError::Conflict(
            if state != ProposalState::Open.as_str() || expires_at <= now {
                "proposal is not open"
            } else {
                "proposal changed since it was read"
            },
        ))
    }

    /// Publishes an open proposal's statement (the server verified
    /// `envelope` as its publish route would) in one transaction: stores it
    /// as a trust statement (with [`Store::add_trust_statement`]'s answers),
    /// marks the proposal published, and withdraws the tenant's other open
    /// proposals of the same kind that it overtakes. `Conflict("proposal is
    /// not open")` if it is no longer open; nothing changes on any error.
    ///
    /// A root rotation's `companions` (verified too) are stored first, the
    /// policy (`policy_version`) then the freeze statement
    /// (`freeze_sequence`), so at no moment does the latest root lack a
    /// policy and freeze statement it verifies.
    pub async fn publish_trust_proposal(
        &self,
        id: &str,
        envelope: &[u8],
        companions: &Companions,
        now: Millis,
        events: &[crate::NewAuditEvent],
    ) -> Result<TrustProposal, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE trust_proposals SET state = 'published', published_at = $2, envelope = $3, \
             policy_envelope = $4, freeze_envelope = $5 \
             WHERE id = $1 AND state = 'open' AND expires_at > $2",
        )
        .bind(id)
        .bind(now)
        .bind(envelope)
        .bind(companions.policy.as_deref())
        .bind(companions.freeze.as_deref())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("proposal is not open"));
        }
        let sql = format!("SELECT {COLUMNS} FROM trust_proposals p WHERE p.id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?;
        let proposal = proposal_from_row(&row, now)?;
        for (kind, version, companion) in [
            (
                TrustKind::Policy,
                companions.policy_version,
                &companions.policy,
            ),
            (
                TrustKind::Freeze,
                companions.freeze_sequence,
                &companions.freeze,
            ),
        ] {
            if let Some(bytes) = companion {
                insert_trust_statement(
                    &mut tx,
                    &proposal.tenant_id,
                    kind,
                    version,
                    bytes,
                    Some(&proposal.proposed_by),
                    now,
                )
                .await?;
            }
        }
        insert_trust_statement(
            &mut tx,
            &proposal.tenant_id,
            proposal.kind,
            proposal.version,
            envelope,
            Some(&proposal.proposed_by),
            now,
        )
        .await?;
        crate::audit::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(proposal)
    }

    /// Marks open proposals past `expires_at` as expired; returns the
    /// (proposal id, tenant id) of each, sorted.
    pub async fn expire_trust_proposals(
        &self,
        now: Millis,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.expire_returning(
            "UPDATE trust_proposals SET state = 'expired' \
             WHERE state = 'open' AND expires_at <= $1 RETURNING id, tenant_id",
            AuditAction::TrustProposalExpired,
            now,
        )
        .await
    }
}
