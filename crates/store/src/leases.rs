//! Background duties run by one node at a time, and the nodes' heartbeats
//! (RFD 0018).
//!
//! A lease row per duty names its holder until `expires_at`. [`Lease::claim`]
//! is the rule, pure (time is an argument); [`Store::claim_lease`] is the
//! same rule as one SQL statement, so two nodes claiming at once cannot
//! both win. Every change of holder adds one to the fencing token; a write
//! made under a lease ([`Store::lease_holds`], or a query that checks the
//! token in the same statement) is refused once another node took over.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Millis, Store, StoreError};

/// One duty's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub duty: String,
    pub holder: String,
    pub expires_at: Millis,
    pub fencing: i64,
}

impl Lease {
    /// The lease after `node` claims `duty` at `now` for `ttl_ms`, if the
    /// claim wins: the holder renews (same token); anyone takes an expired
    /// lease (token + 1); a lease held by another node until later than
    /// `now` is not taken. No lease yet: the first claim takes token 1.
    pub fn claim(
        current: Option<&Lease>,
        duty: &str,
        node: &str,
        now: Millis,
        ttl_ms: i64,
    ) -> Option<Lease> {
        let expires_at = now.saturating_add(ttl_ms);
        match current {
            None => Some(Lease {
                duty: duty.to_owned(),
                holder: node.to_owned(),
                expires_at,
                fencing: 1,
            }),
            Some(held) if held.holder == node => Some(Lease {
                expires_at,
                ..held.clone()
            }),
            Some(held) if held.expires_at <= now => Some(Lease {
                duty: duty.to_owned(),
                holder: node.to_owned(),
                expires_at,
                fencing: held.fencing.saturating_add(1),
            }),
            Some(_) => None,
        }
    }
}

/// A node's heartbeat row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBeat {
    pub node: String,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
    pub expires_at: Millis,
}

fn lease_from(duty: &str, row: &AnyRow) -> Result<Lease, StoreError> {
    Ok(Lease {
        duty: duty.to_owned(),
        holder: row.try_get("holder")?,
        expires_at: row.try_get("expires_at")?,
        fencing: row.try_get("fencing")?,
    })
}

fn beat_from(row: &AnyRow) -> Result<NodeBeat, StoreError> {
    Ok(NodeBeat {
        node: row.try_get("node")?,
        started_at: row.try_get("started_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// [`Lease::claim`] in one statement: the lease if `node` holds `duty`
    /// now (until `now + ttl_ms`), `None` if another node does.
    pub async fn claim_lease(
        &self,
        duty: &str,
        node: &str,
        now: Millis,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let row = sqlx::query(
            "INSERT INTO duty_leases (duty, holder, expires_at, fencing) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (duty) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at, \
             fencing = CASE WHEN duty_leases.holder = excluded.holder \
                       THEN duty_leases.fencing ELSE duty_leases.fencing + 1 END \
             WHERE duty_leases.holder = excluded.holder OR duty_leases.expires_at <= $4 \
             RETURNING holder, expires_at, fencing",
        )
        .bind(duty)
        .bind(node)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| lease_from(duty, &row)).transpose()
    }

    /// The lease of `duty`, if any node ever held it.
    pub async fn lease(&self, duty: &str) -> Result<Option<Lease>, StoreError> {
        let row =
            sqlx::query("SELECT holder, expires_at, fencing FROM duty_leases WHERE duty = $1")
                .bind(duty)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| lease_from(duty, &row)).transpose()
    }

    /// Is `lease` still the holder's at `now` (same holder, same token, not
    /// expired)? The fence a duty checks before each write it makes.
    pub async fn lease_holds(&self, lease: &Lease, now: Millis) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM duty_leases WHERE duty = $1 AND holder = $2 AND fencing = $3 \
             AND expires_at > $4",
        )
        .bind(&lease.duty)
        .bind(&lease.holder)
        .bind(lease.fencing)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(n == 1)
    }

    /// Gives `lease` up (a node shutting down), so another node takes the
    /// duty at once rather than when it expires. Only the same holder and
    /// token.
    pub async fn release_lease(&self, lease: &Lease, now: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE duty_leases SET expires_at = $4 WHERE duty = $1 AND holder = $2 \
             AND fencing = $3",
        )
        .bind(&lease.duty)
        .bind(&lease.holder)
        .bind(lease.fencing)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records `node`'s heartbeat at `now`, good until `expires_at`.
    /// Returns the expiry it had before (`None` for a new node): a node
    /// that finds its heartbeat had expired was taken for dead by the
    /// others, and tells them again which devices it holds. (Only the node
    /// itself writes its row.)
    pub async fn node_heartbeat(
        &self,
        node: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let previous: Option<i64> =
            sqlx::query_scalar("SELECT expires_at FROM server_nodes WHERE node = $1")
                .bind(node)
                .fetch_optional(&self.pool)
                .await?;
        sqlx::query(
            "INSERT INTO server_nodes (node, started_at, heartbeat_at, expires_at) \
             VALUES ($1, $2, $2, $3) ON CONFLICT (node) DO UPDATE SET \
             heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
        )
        .bind(node)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(previous)
    }

    /// The nodes whose heartbeat expired at `now` (dead, or cut off from
    /// the database), oldest first, at most 100.
    pub async fn expired_nodes(&self, now: Millis) -> Result<Vec<NodeBeat>, StoreError> {
        let rows = sqlx::query(
            "SELECT node, started_at, heartbeat_at, expires_at FROM server_nodes \
             WHERE expires_at <= $1 ORDER BY expires_at, node LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(beat_from).collect()
    }

    /// Forgets nodes whose heartbeat expired before `before` (every other
    /// node has long stopped showing their devices), and `leaving` (a node
    /// shutting down cleanly; its sessions said goodbye themselves).
    pub async fn forget_nodes(
        &self,
        before: Millis,
        leaving: Option<&str>,
    ) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM server_nodes WHERE expires_at < $1 OR node = $2")
                .bind(before)
                .bind(leaving.unwrap_or(""))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Lease;

    const T0: i64 = 1_700_000_000_000;

    fn check(current: Option<&Lease>, node: &str, now: i64, expect: Option<(&str, i64, i64)>) {
        let got = Lease::claim(current, "alert_mail", node, now, 15_000);
        let got = got
            .as_ref()
            .map(|l| (l.holder.as_str(), l.expires_at, l.fencing));
        assert_eq!(got, expect);
    }

    #[test]
    fn one_holder_at_a_time_and_every_takeover_moves_the_fence() {
        check(None, "a", T0, Some(("a", T0 + 15_000, 1)));
        let held = Lease {
            duty: "alert_mail".into(),
            holder: "a".into(),
            expires_at: T0 + 15_000,
            fencing: 1,
        };
        // The holder renews, keeping its token.
        check(Some(&held), "a", T0 + 5_000, Some(("a", T0 + 20_000, 1)));
        // Another node waits until it expires...
        check(Some(&held), "b", T0, None);
        check(Some(&held), "b", T0 + 14_999, None);
        // ...then takes it with the next token.
        check(Some(&held), "b", T0 + 15_000, Some(("b", T0 + 30_000, 2)));
        // The old holder, back from a pause, renews its own expired lease
        // only while nobody took it: same token (nobody else wrote).
        check(Some(&held), "a", T0 + 60_000, Some(("a", T0 + 75_000, 1)));
        let taken = Lease {
            holder: "b".into(),
            expires_at: T0 + 30_000,
            fencing: 2,
            ..held
        };
        check(Some(&taken), "a", T0 + 20_000, None);
        let top = Lease {
            fencing: i64::MAX,
            ..taken
        };
        check(Some(&top), "c", i64::MAX, Some(("c", i64::MAX, i64::MAX)));
    }
}
