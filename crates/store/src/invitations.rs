//! Operator invitations and per-tenant grants.
//!
//! An owner invites a new operator by a one-time, expiring link; the store
//! keeps the SHA-256 of the link's token, the username and the grants the
//! operator will receive. Redeeming is two steps, like first-owner setup: an
//! enrolment (password hash and TOTP secret chosen) and then, once the TOTP
//! code is proven, [`Store::accept_invitation`] consumes the invitation and
//! creates the operator with its grants in one transaction.
//!
//! `operators.role` is `owner` (every tenant) or `operator` (only the tenants
//! in `operator_grants`, with the role held on each).

use crate::AuditAction;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::error::{unique, unique_or_missing};
use crate::operators::{insert_operator, operator_columns, operator_from_row};
use crate::{Millis, NewAuditEvent, NewOperator, Operator, Store, StoreError};

/// The stored account role of an owner.
pub const ACCOUNT_OWNER: &str = "owner";
/// The stored account role of every other operator: what it may do is in its grants.
pub const ACCOUNT_OPERATOR: &str = "operator";

/// A role held on one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant_id: String,
    pub tenant_name: String,
    pub role: String,
}

/// An invitation to store. `grants` are (tenant id, role) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvitation {
    pub token_hash: [u8; 32],
    pub username: String,
    /// [`ACCOUNT_OWNER`] or [`ACCOUNT_OPERATOR`].
    pub account_role: String,
    pub grants: Vec<(String, String)>,
    /// Operator id of the owner who invites.
    pub created_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// A pending invitation (unused, unrevoked, unexpired when read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: String,
    pub username: String,
    pub account_role: String,
    /// Ordered by tenant name.
    pub grants: Vec<Grant>,
    pub created_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// An invitation being redeemed: waiting for the TOTP proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationEnrolment {
    pub invitation_id: String,
    /// The invitation's username (read only; not stored with the enrolment).
    pub username: String,
    pub password_hash: String,
    pub totp_secret: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

const PENDING: &str = "i.used_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $1";

fn grant_from_row(row: &AnyRow) -> Result<Grant, StoreError> {
    Ok(Grant {
        tenant_id: row.try_get("tenant_id")?,
        tenant_name: row.try_get("tenant_name")?,
        role: row.try_get("role")?,
    })
}

fn grants_detail(grants: &[Grant]) -> String {
    grants
        .iter()
        .map(|g| format!("{}:{}", g.tenant_name, g.role))
        .collect::<Vec<_>>()
        .join(",")
}

impl Store {
    /// The tenants an operator holds a role on, ordered by tenant name.
    pub async fn operator_grants(&self, operator_id: &str) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.tenant_id, t.name AS tenant_name, g.role FROM operator_grants g \
             JOIN tenants t ON t.id = g.tenant_id WHERE g.operator_id = $1 ORDER BY t.name",
        )
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Every operator with its grants, ordered by username.
    pub async fn list_operators(&self) -> Result<Vec<(Operator, Vec<Grant>)>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            operator_columns!(),
            " FROM operators o ORDER BY o.username"
        );
        let operators = sqlx::query(SQL).fetch_all(&self.pool).await?;
        let grants = sqlx::query(
            "SELECT g.operator_id, g.tenant_id, t.name AS tenant_name, g.role FROM operator_grants g \
             JOIN tenants t ON t.id = g.tenant_id ORDER BY t.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let grants = grants
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("operator_id")?,
                    grant_from_row(row)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        operators
            .iter()
            .map(|row| {
                let operator = operator_from_row(row)?;
                let mine = grants
                    .iter()
                    .filter(|(id, _)| *id == operator.id)
                    .map(|(_, g)| g.clone())
                    .collect();
                Ok((operator, mine))
            })
            .collect()
    }

    /// Stores an invitation and records [`AuditAction::OperatorInvited`] by `actor`, in
    /// one transaction. `Conflict` if an operator already has the username
    /// (or the token hash exists), `NotFound` if a granted tenant does not exist.
    pub async fn create_invitation(
        &self,
        new: &NewInvitation,
        actor: &str,
    ) -> Result<Invitation, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO invitations (id, token_hash, username, account_role, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&new.token_hash[..])
        .bind(&new.username)
        .bind(&new.account_role)
        .bind(&new.created_by)
        .bind(new.created_at)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(unique("invitation already exists"))?;
        let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operators WHERE username = $1")
            .bind(&new.username)
            .fetch_one(&mut *tx)
            .await?;
        if taken != 0 {
            return Err(StoreError::Conflict("username already taken"));
        }
        for (tenant_id, role) in &new.grants {
            sqlx::query(
                "INSERT INTO invitation_grants (invitation_id, tenant_id, role) VALUES ($1, $2, $3)",
            )
            .bind(&id)
            .bind(tenant_id)
            .bind(role)
            .execute(&mut *tx)
            .await
            .map_err(unique_or_missing("tenant granted twice"))?;
        }
        let grants = invitation_grants(&mut tx, &id).await?;
        insert_audit(
            &mut tx,
            &NewAuditEvent {
                at: new.created_at,
                tenant_id: None,
                actor: actor.to_owned(),
                action: AuditAction::OperatorInvited,
                target: id.clone(),
                detail: format!(
                    "username={} role={} grants={} expires_at={}",
                    new.username,
                    new.account_role,
                    grants_detail(&grants),
                    new.expires_at
                ),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Invitation {
            id,
            username: new.username.clone(),
            account_role: new.account_role.clone(),
            grants,
            created_by: new.created_by.clone(),
            created_at: new.created_at,
            expires_at: new.expires_at,
        })
    }

    /// Invitations still usable at `now`, oldest first.
    pub async fn pending_invitations(&self, now: Millis) -> Result<Vec<Invitation>, StoreError> {
        let sql = format!(
            "SELECT i.id, i.username, i.account_role, i.created_by, i.created_at, i.expires_at \
             FROM invitations i WHERE {PENDING} ORDER BY i.created_at, i.id"
        );
        let rows = sqlx::query(&sql).bind(now).fetch_all(&self.pool).await?;
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let grants = invitation_grants(&mut conn, &id).await?;
            out.push(invitation_from_row(row, grants)?);
        }
        Ok(out)
    }

    /// The pending invitation whose token hashes to `token_hash`, if usable at `now`.
    pub async fn invitation_by_token(
        &self,
        token_hash: [u8; 32],
        now: Millis,
    ) -> Result<Option<Invitation>, StoreError> {
        let sql = format!(
            "SELECT i.id, i.username, i.account_role, i.created_by, i.created_at, i.expires_at \
             FROM invitations i WHERE {PENDING} AND i.token_hash = $2"
        );
        let row = sqlx::query(&sql)
            .bind(now)
            .bind(&token_hash[..])
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut conn = self.pool.acquire().await?;
        let id: String = row.try_get("id")?;
        let grants = invitation_grants(&mut conn, &id).await?;
        Ok(Some(invitation_from_row(&row, grants)?))
    }

    /// Revokes a pending invitation and records [`AuditAction::InvitationRevoked`] by
    /// `actor`, in one transaction. `NotFound` unless it is pending at `now`.
    pub async fn revoke_invitation(
        &self,
        id: &str,
        actor: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE invitations SET revoked_at = $1 WHERE id = $2 \
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 RETURNING username",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound);
        };
        let username: String = row.try_get("username")?;
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(now, actor, AuditAction::InvitationRevoked, id)
                .with_detail(format!("username={username}")),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores an enrolment under the hash of its id, and deletes enrolments
    /// that expired before `enrolment.created_at`. `NotFound` if the
    /// invitation does not exist.
    pub async fn create_invitation_enrolment(
        &self,
        id_hash: [u8; 32],
        enrolment: &InvitationEnrolment,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM invitation_enrolments WHERE expires_at <= $1")
            .bind(enrolment.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO invitation_enrolments (id_hash, invitation_id, password_hash, totp_secret, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id_hash[..])
        .bind(&enrolment.invitation_id)
        .bind(&enrolment.password_hash)
        .bind(&enrolment.totp_secret)
        .bind(enrolment.created_at)
        .bind(enrolment.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(unique_or_missing("invitation enrolment already exists"))?;
        tx.commit().await?;
        Ok(())
    }

    /// The enrolment with this id hash, if it and its invitation are usable at `now`.
    pub async fn invitation_enrolment(
        &self,
        id_hash: [u8; 32],
        now: Millis,
    ) -> Result<Option<InvitationEnrolment>, StoreError> {
        let sql = format!(
            "SELECT e.invitation_id, i.username, e.password_hash, e.totp_secret, e.created_at, e.expires_at \
             FROM invitation_enrolments e JOIN invitations i ON i.id = e.invitation_id \
             WHERE {PENDING} AND e.expires_at > $1 AND e.id_hash = $2"
        );
        let row = sqlx::query(&sql)
            .bind(now)
            .bind(&id_hash[..])
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(InvitationEnrolment {
            invitation_id: row.try_get("invitation_id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            totp_secret: row.try_get("totp_secret")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// Redeems an invitation once its TOTP enrolment is proven, in one transaction:
    ///
    /// 1. mark the enrolment's invitation used, only if the enrolment is
    ///    unexpired and the invitation still pending at `now` (else
    ///    `NotFound`); this first write takes the invitation's row lock
    ///    (PostgreSQL) or the write lock (SQLite), so of two concurrent
    ///    redemptions exactly one gets past here, and the others hold no
    ///    other lock meanwhile (no deadlock with step 5);
    /// 2. delete the enrolment, taking its password hash and TOTP secret;
    /// 3. insert the operator with the invitation's account role (a taken
    ///    username gives `Conflict("username already taken")`);
    /// 4. copy the invitation's grants to `operator_grants`;
    /// 5. delete the invitation's other enrolments;
    /// 6. append [`AuditAction::OperatorCreated`] to the audit log.
    ///
    /// On any error nothing changes.
    pub async fn accept_invitation(
        &self,
        enrolment_id_hash: [u8; 32],
        now: Millis,
    ) -> Result<(Operator, Vec<Grant>), StoreError> {
        let mut tx = self.pool.begin().await?;
        // 1.
        let invitation = sqlx::query(
            "UPDATE invitations SET used_at = $2 WHERE id = \
             (SELECT e.invitation_id FROM invitation_enrolments e WHERE e.id_hash = $1 AND e.expires_at > $2) \
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
             RETURNING id, username, account_role, created_by",
        )
        .bind(&enrolment_id_hash[..])
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(invitation) = invitation else {
            return Err(StoreError::NotFound);
        };
        let invitation_id: String = invitation.try_get("id")?;
        // 2.
        let enrolment = sqlx::query(
            "DELETE FROM invitation_enrolments WHERE id_hash = $1 AND invitation_id = $2 \
             RETURNING password_hash, totp_secret",
        )
        .bind(&enrolment_id_hash[..])
        .bind(&invitation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(enrolment) = enrolment else {
            return Err(StoreError::NotFound);
        };
        let account_role: String = invitation.try_get("account_role")?;
        let created_by: String = invitation.try_get("created_by")?;
        let new = NewOperator {
            username: invitation.try_get("username")?,
            password_hash: enrolment.try_get("password_hash")?,
            totp_secret: enrolment.try_get("totp_secret")?,
        };
        // 3.
        let operator = insert_operator(&mut tx, &new, &account_role, now).await?;
        sqlx::query("UPDATE invitations SET used_by_operator = $1 WHERE id = $2")
            .bind(&operator.id)
            .bind(&invitation_id)
            .execute(&mut *tx)
            .await?;
        // 4.
        sqlx::query(
            "INSERT INTO operator_grants (operator_id, tenant_id, role) \
             SELECT $1, tenant_id, role FROM invitation_grants WHERE invitation_id = $2",
        )
        .bind(&operator.id)
        .bind(&invitation_id)
        .execute(&mut *tx)
        .await?;
        let grants = invitation_grants(&mut tx, &invitation_id).await?;
        // 5.
        sqlx::query("DELETE FROM invitation_enrolments WHERE invitation_id = $1")
            .bind(&invitation_id)
            .execute(&mut *tx)
            .await?;
        // 6.
        insert_audit(
            &mut tx,
            &NewAuditEvent {
                at: now,
                tenant_id: None,
                actor: operator.username.clone(),
                action: AuditAction::OperatorCreated,
                target: operator.id.clone(),
                detail: format!(
                    "username={} role={} grants={} invitation={invitation_id} invited_by={created_by}",
                    operator.username,
                    operator.role,
                    grants_detail(&grants)
                ),
            },
        )
        .await?;
        tx.commit().await?;
        Ok((operator, grants))
    }
}

async fn invitation_grants(
    conn: &mut sqlx::AnyConnection,
    invitation_id: &str,
) -> Result<Vec<Grant>, StoreError> {
    let rows = sqlx::query(
        "SELECT g.tenant_id, t.name AS tenant_name, g.role FROM invitation_grants g \
         JOIN tenants t ON t.id = g.tenant_id WHERE g.invitation_id = $1 ORDER BY t.name",
    )
    .bind(invitation_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(grant_from_row).collect()
}

fn invitation_from_row(row: &AnyRow, grants: Vec<Grant>) -> Result<Invitation, StoreError> {
    Ok(Invitation {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        account_role: row.try_get("account_role")?,
        grants,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// Replaces every grant of the non-owner operator `operator_id` with
    /// `grants` ((tenant id, role) pairs) and records
    /// [`AuditAction::OperatorGrantsChanged`] by `actor` with the grants before and
    /// after, in one transaction. Returns (before, after). `NotFound` for an
    /// unknown operator or an owner (owners hold every tenant, no grants),
    /// or a tenant id that does not exist. Sessions cache nothing: the
    /// operator's next request reads the new grants.
    pub async fn set_operator_grants(
        &self,
        operator_id: &str,
        grants: &[(String, String)],
        actor: &str,
        now: Millis,
    ) -> Result<(Vec<Grant>, Vec<Grant>), StoreError> {
        let mut tx = self.pool.begin().await?;
        // A write that changes nothing, first: it takes the operator's row
        // lock (PostgreSQL) or the write lock (SQLite), so two edits of one
        // operator's grants run one after the other.
        let found = sqlx::query(
            "UPDATE operators SET disabled_at = disabled_at WHERE id = $1 AND role = $2",
        )
        .bind(operator_id)
        .bind(ACCOUNT_OPERATOR)
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let read = |rows: Vec<AnyRow>| {
            rows.iter()
                .map(grant_from_row)
                .collect::<Result<Vec<_>, _>>()
        };
        const SELECT: &str = "SELECT g.tenant_id, t.name AS tenant_name, g.role FROM operator_grants g \
             JOIN tenants t ON t.id = g.tenant_id WHERE g.operator_id = $1 ORDER BY t.name";
        let before = read(
            sqlx::query(SELECT)
                .bind(operator_id)
                .fetch_all(&mut *tx)
                .await?,
        )?;
        sqlx::query("DELETE FROM operator_grants WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        for (tenant_id, role) in grants {
            sqlx::query(
                "INSERT INTO operator_grants (operator_id, tenant_id, role) VALUES ($1, $2, $3)",
            )
            .bind(operator_id)
            .bind(tenant_id)
            .bind(role)
            .execute(&mut *tx)
            .await
            .map_err(unique_or_missing("one grant per tenant"))?;
        }
        let after = read(
            sqlx::query(SELECT)
                .bind(operator_id)
                .fetch_all(&mut *tx)
                .await?,
        )?;
        insert_audit(
            &mut tx,
            &NewAuditEvent::new(now, actor, AuditAction::OperatorGrantsChanged, operator_id)
                .with_detail(format!(
                    "before=[{}] after=[{}]",
                    grants_detail(&before),
                    grants_detail(&after)
                )),
        )
        .await?;
        tx.commit().await?;
        Ok((before, after))
    }
}
