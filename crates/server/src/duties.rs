//! Background duties run by one node at a time, and the nodes' heartbeats
//! (RFD 0018, migration 0038).
//!
//! Every fleet-wide loop (alert mail, alert raising, the offline watcher,
//! SIEM export per sink, archiving, checkpoint signing, witnessing, job
//! expiry, metric compaction, the sign-in sweep) is a *duty*. On
//! PostgreSQL each duty has a lease row: the node holding it runs the loop,
//! renewing every [`Timing::renew_ms`]; the others try to take it as often.
//! A holder that cannot renew stops the loop [`Timing::margin_ms`] before
//! its lease ends, so it has stopped before anyone can take over; a holder
//! that dies is replaced within [`Timing::takeover_bound_ms`]. Every change
//! of holder moves the fencing token, and a duty whose writes matter
//! outside the database (alert mail) checks the token before each one
//! ([`Fence`]).
//!
//! With SQLite there is one node by construction (a bus is refused and the
//! data directory is locked): every duty runs at once, no lease, as
//! before.
//!
//! Nodes also heartbeat ([`heartbeat`]): a node whose heartbeat expired is
//! dead (or cut off from the database), and every other node stops showing
//! its agents online, so they go offline, and raise their alerts, the usual
//! way.

use std::future::Future;
use std::time::Duration;

use bulwark_store::{Backend, Lease, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::presence::Presence;

/// The lease timings, pure: time is an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a claim or renewal holds.
    pub ttl_ms: i64,
    /// How often the holder renews and the others try to take over.
    pub renew_ms: i64,
    /// A holder stops this long before its lease ends when it could not
    /// renew (covers the clocks of two nodes disagreeing by less).
    pub margin_ms: i64,
}

/// The deployment's timings: a duty moves within 13 s of its holder dying.
pub const TIMING: Timing = Timing {
    ttl_ms: 10_000,
    renew_ms: 3_000,
    margin_ms: 3_000,
};

/// How long a node's heartbeat holds, and how often it beats.
pub const NODE_TTL_MS: i64 = 10_000;
pub const NODE_BEAT_MS: i64 = 3_000;
/// Rows of nodes dead this long are deleted.
const FORGET_NODES_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

impl Timing {
    /// May a holder whose lease ends at `expires_at` still act at `now`?
    pub fn may_act(&self, expires_at: i64, now: i64) -> bool {
        now < expires_at.saturating_sub(self.margin_ms)
    }

    /// The longest a duty goes unheld after its holder's last renewal: the
    /// lease runs out, then the next try of another node takes it.
    pub fn takeover_bound_ms(&self) -> i64 {
        self.ttl_ms + self.renew_ms
    }

    /// Is the timing sound: a renewal is due well before the holder must
    /// stop, and the holder stops before anyone else may start?
    pub fn is_sound(&self) -> bool {
        self.renew_ms > 0 && self.margin_ms > 0 && self.renew_ms + self.margin_ms < self.ttl_ms
    }
}

/// A duty's lease as its holder last saw it: checked before a write that
/// must not be made by a holder that lost it.
#[derive(Debug, Clone)]
pub struct Fence {
    store: Store,
    lease: Lease,
}

impl Fence {
    /// True while this holder (and token) still holds the lease: no other
    /// node has taken the duty.
    pub async fn holds(&self) -> bool {
        match self
            .store
            .lease_holds(&self.lease, crate::now_millis())
            .await
        {
            Ok(holds) => holds,
            Err(error) => {
                warn!(duty = %self.lease.duty, %error, "Cannot check the duty's lease; not acting.");
                false
            }
        }
    }

    /// The fencing token.
    pub fn token(&self) -> i64 {
        self.lease.fencing
    }
}

/// Starts duties on one node.
#[derive(Clone)]
pub struct Duties {
    store: Store,
    node: String,
    shutdown: watch::Receiver<bool>,
    timing: Timing,
}

impl Duties {
    pub fn new(store: Store, node: &str, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            store,
            node: node.to_owned(),
            shutdown,
            timing: TIMING,
        }
    }

    /// Runs the duty `name` on `tasks`: `start(stop, fence)` makes its loop,
    /// which must end soon after `stop` turns true. With SQLite it starts
    /// at once with no fence; with PostgreSQL it starts whenever this node
    /// holds the lease, and is stopped (then aborted) when it loses it.
    pub fn spawn<F, Fut>(&self, tasks: &mut JoinSet<()>, name: &str, start: F)
    where
        F: Fn(watch::Receiver<bool>, Option<Fence>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.store.backend() == Backend::Sqlite {
            tasks.spawn(start(self.shutdown.clone(), None));
            return;
        }
        tasks.spawn(hold(self.clone(), name.to_owned(), start));
    }
}

/// Claims `duty` until shutdown; runs it while held.
async fn hold<F, Fut>(duties: Duties, duty: String, start: F)
where
    F: Fn(watch::Receiver<bool>, Option<Fence>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Duties {
        store,
        node,
        mut shutdown,
        timing,
    } = duties;
    let every = Duration::from_millis(u64::try_from(timing.renew_ms).unwrap_or(3_000));
    // The running loop, its stop switch and the lease it runs under.
    let mut running: Option<(tokio::task::JoinHandle<()>, watch::Sender<bool>, Lease)> = None;
    loop {
        let now = crate::now_millis();
        match store.claim_lease(&duty, &node, now, timing.ttl_ms).await {
            Ok(Some(lease)) => {
                let fresh = running
                    .as_ref()
                    .is_none_or(|(_, _, held)| held.fencing != lease.fencing);
                if fresh {
                    if let Some((task, stop, _)) = running.take() {
                        stop_loop(task, stop).await;
                    }
                    info!(%duty, %node, fencing = lease.fencing, "This node now runs the duty.");
                    let (stop, stopped) = watch::channel(false);
                    let fence = Fence {
                        store: store.clone(),
                        lease: lease.clone(),
                    };
                    let task = tokio::spawn(start(stopped, Some(fence)));
                    running = Some((task, stop, lease));
                } else if let Some((_, _, held)) = running.as_mut() {
                    *held = lease;
                }
            }
            Ok(None) => {
                if let Some((task, stop, _)) = running.take() {
                    warn!(%duty, %node, "Another node took the duty; stopping it here.");
                    stop_loop(task, stop).await;
                }
            }
            Err(error) => {
                warn!(%duty, %error, "Cannot renew or claim the duty's lease.");
                let late = running
                    .as_ref()
                    .is_some_and(|(_, _, held)| !timing.may_act(held.expires_at, now));
                if late && let Some((task, stop, _)) = running.take() {
                    warn!(%duty, "The lease is about to end unrenewed; stopping the duty.");
                    stop_loop(task, stop).await;
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    if let Some((task, stop, lease)) = running.take() {
        stop_loop(task, stop).await;
        // Another node takes over at its next try, not when the lease ends.
        if let Err(error) = store.release_lease(&lease, crate::now_millis()).await {
            warn!(%duty, %error, "Cannot release the duty's lease.");
        }
    }
}

/// Asks a duty's loop to stop, waits a moment, then aborts it.
async fn stop_loop(mut task: tokio::task::JoinHandle<()>, stop: watch::Sender<bool>) {
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(2), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

/// This node's heartbeat, until shutdown (PostgreSQL only: with SQLite
/// there is no other node). Each beat also looks for dead nodes: their
/// agents are no longer shown online here ([`Presence::forget_node`]).
pub async fn heartbeat(store: Store, presence: Presence, mut shutdown: watch::Receiver<bool>) {
    if store.backend() == Backend::Sqlite {
        return;
    }
    let node = presence.node().to_owned();
    let every = Duration::from_millis(u64::try_from(NODE_BEAT_MS).unwrap_or(3_000));
    loop {
        let now = crate::now_millis();
        match store
            .node_heartbeat(&node, now, now.saturating_add(NODE_TTL_MS))
            .await
        {
            Ok(Some(was)) if was <= now => {
                // The others took this node for dead and forgot its
                // devices: tell them again.
                warn!(%node, "This node's heartbeat had expired; announcing its devices again.");
                presence.republish();
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "Cannot record this node's heartbeat."),
        }
        match store.expired_nodes(now).await {
            Ok(dead) => {
                for beat in dead.iter().filter(|b| b.node != node) {
                    let gone = presence.forget_node(&beat.node);
                    if gone > 0 {
                        warn!(dead = %beat.node, devices = gone, "A node's heartbeat expired: its devices are offline.");
                    }
                }
            }
            Err(error) => warn!(%error, "Cannot look for dead nodes."),
        }
        let _ = store
            .forget_nodes(now.saturating_sub(FORGET_NODES_AFTER_MS), None)
            .await;
        tokio::select! {
            _ = shutdown.changed() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    let _ = store.forget_nodes(i64::MIN, Some(&node)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timing_is_sound_and_bounded() {
        assert!(TIMING.is_sound());
        assert_eq!(TIMING.takeover_bound_ms(), 13_000);
        // A holder that renewed at 0 (lease to 10 s) acts until 7 s, then
        // stops; the earliest another node may start is 10 s.
        assert!(TIMING.may_act(10_000, 6_999));
        assert!(!TIMING.may_act(10_000, 7_000));
        assert!(!TIMING.may_act(10_000, 10_000));
        for bad in [
            Timing {
                renew_ms: 8_000,
                ..TIMING
            },
            Timing {
                margin_ms: 0,
                ..TIMING
            },
            Timing {
                renew_ms: 0,
                ..TIMING
            },
        ] {
            assert!(!bad.is_sound(), "{bad:?}");
        }
        // The heartbeat expires only after several missed beats.
        const { assert!(NODE_TTL_MS >= 3 * NODE_BEAT_MS) };
    }
}
