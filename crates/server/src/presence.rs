//! Which agents are connected to this node, and a stream of changes for the
//! console's live view.
//!
//! A device is online while its gateway connection lives (and the gateway
//! closes connections silent for three heartbeat intervals). A device that
//! reconnects replaces its older connection, which is told to close.
//! Every change is also a notice on the bus (RFD 0018): other nodes learn
//! which devices this node holds, and a nudge for a device reaches the node
//! its connection is on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};

use crate::bus::{Bus, Notice};

/// A change the console shows live.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PresenceEvent {
    pub device_id: String,
    pub tenant: String,
    pub online: bool,
    /// RFC 3339.
    pub last_seen_at: String,
}

struct Entry {
    connection: u64,
    /// The wire protocol version the connection negotiated (RFD 0010).
    protocol_version: u16,
    tenant_id: String,
    /// The tenant's name, for other nodes' live views.
    tenant: String,
    kick: Arc<Notify>,
    work: Arc<Notify>,
}

/// A device connected to another node, as that node's notices say.
struct Remote {
    node: String,
    connection: u64,
    protocol_version: u16,
    tenant_id: String,
    /// The tenant's name, for the live view when the node dies.
    tenant: String,
}

#[derive(Clone)]
pub struct Presence {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<PresenceEvent>,
    bus: Bus,
    /// The remote shell relay of this node's connections (RFD 0015).
    shells: crate::shell_relay::Relay,
}

struct Inner {
    next_connection: u64,
    online: HashMap<String, Entry>,
    /// Devices connected to other nodes. A node that dies sends no offline
    /// notices: its devices stay here until they reconnect somewhere or
    /// its heartbeat expires ([`Presence::forget_node`]).
    remote: HashMap<String, Remote>,
}

/// Proof of registration; the connection that holds it is the device's current one.
pub struct Registration {
    pub device_id: String,
    pub connection: u64,
    /// Notified when a newer connection of the same device replaces this one.
    pub kicked: Arc<Notify>,
    /// Notified when there may be something new to send: an approved job
    /// or a trust statement. The session reads what it is from storage.
    pub work: Arc<Notify>,
}

impl Presence {
    /// Presence that tells, and learns from, the other nodes on `bus`.
    /// Nudges reach sessions only while [`follow_bus`] runs.
    pub fn new(bus: Bus) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                next_connection: 1,
                online: HashMap::new(),
                remote: HashMap::new(),
            })),
            events,
            bus,
            shells: crate::shell_relay::Relay::default(),
        }
    }

    /// The remote shell relay of the agents connected here.
    pub fn shells(&self) -> &crate::shell_relay::Relay {
        &self.shells
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every critical section is a single insert or remove).
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register(
        &self,
        device_id: &str,
        tenant_id: &str,
        tenant: &str,
        protocol_version: u16,
        last_seen_at: String,
    ) -> Registration {
        let kick = Arc::new(Notify::new());
        let work = Arc::new(Notify::new());
        let connection = {
            let mut inner = self.lock();
            let connection = inner.next_connection;
            inner.next_connection += 1;
            if let Some(old) = inner.online.insert(
                device_id.to_owned(),
                Entry {
                    connection,
                    protocol_version,
                    tenant_id: tenant_id.to_owned(),
                    tenant: tenant.to_owned(),
                    kick: kick.clone(),
                    work: work.clone(),
                },
            ) {
                old.kick.notify_one();
            }
            connection
        };
        self.bus.publish(Notice::Presence {
            node: self.bus.node().to_owned(),
            device_id: device_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            tenant: tenant.to_owned(),
            online: true,
            connection,
            protocol_version,
            last_seen_at: last_seen_at.clone(),
        });
        let _ = self.events.send(PresenceEvent {
            device_id: device_id.to_owned(),
            tenant: tenant.to_owned(),
            online: true,
            last_seen_at,
        });
        Registration {
            device_id: device_id.to_owned(),
            connection,
            kicked: kick,
            work,
        }
    }

    /// Marks the device offline unless a newer connection has replaced this one.
    pub fn unregister(&self, registration: &Registration, tenant: &str, last_seen_at: String) {
        let removed = {
            let mut inner = self.lock();
            match inner.online.get(&registration.device_id) {
                Some(e) if e.connection == registration.connection => {
                    inner.online.remove(&registration.device_id)
                }
                _ => None,
            }
        };
        if let Some(entry) = removed {
            self.bus.publish(Notice::Presence {
                node: self.bus.node().to_owned(),
                device_id: registration.device_id.clone(),
                tenant_id: entry.tenant_id,
                tenant: tenant.to_owned(),
                online: false,
                connection: registration.connection,
                protocol_version: entry.protocol_version,
                last_seen_at: last_seen_at.clone(),
            });
            let _ = self.events.send(PresenceEvent {
                device_id: registration.device_id.clone(),
                tenant: tenant.to_owned(),
                online: false,
                last_seen_at,
            });
        }
    }

    /// Tells a device's session, on whichever node holds it, to look for work.
    pub fn nudge_device(&self, device_id: &str) {
        self.bus.publish(Notice::DeviceWork {
            device_id: device_id.to_owned(),
        });
    }

    /// Tells every connected device of a tenant, on every node, to look for
    /// work (its trust changed).
    pub fn nudge_tenant(&self, tenant_id: &str) {
        self.bus.publish(Notice::TenantWork {
            tenant_id: tenant_id.to_owned(),
        });
    }

    fn wake_device(&self, device_id: &str) {
        if let Some(entry) = self.lock().online.get(device_id) {
            entry.work.notify_one();
        }
    }

    fn wake_tenant(&self, tenant_id: &str) {
        for entry in self.lock().online.values() {
            if entry.tenant_id == tenant_id {
                entry.work.notify_one();
            }
        }
    }

    /// This node's connections as presence notices (the answer to another
    /// node's `Announce`).
    fn announcements(&self) -> Vec<Notice> {
        let node = self.bus.node().to_owned();
        self.lock()
            .online
            .iter()
            .map(|(device_id, e)| Notice::Presence {
                node: node.clone(),
                device_id: device_id.clone(),
                tenant_id: e.tenant_id.clone(),
                tenant: e.tenant.clone(),
                online: true,
                connection: e.connection,
                protocol_version: e.protocol_version,
                last_seen_at: String::new(),
            })
            .collect()
    }

    fn wake_all(&self) {
        for entry in self.lock().online.values() {
            entry.work.notify_one();
        }
    }

    /// Applies another node's presence notice: remembers (or forgets) the
    /// device as connected there, and shows the change in this node's live
    /// view. A device that connected elsewhere has left this node: a
    /// connection it still holds here is stale and is told to close.
    #[allow(clippy::too_many_arguments)]
    fn apply_remote(
        &self,
        node: String,
        device_id: String,
        tenant_id: String,
        tenant: String,
        online: bool,
        connection: u64,
        protocol_version: u16,
        last_seen_at: String,
    ) {
        let show = {
            let mut inner = self.lock();
            if online {
                if let Some(local) = inner.online.remove(&device_id) {
                    local.kick.notify_one();
                }
                inner.remote.insert(
                    device_id.clone(),
                    Remote {
                        node,
                        connection,
                        protocol_version,
                        tenant_id,
                        tenant: tenant.clone(),
                    },
                );
                true
            } else {
                let theirs = inner
                    .remote
                    .get(&device_id)
                    .is_some_and(|r| r.node == node && r.connection == connection);
                if theirs {
                    inner.remote.remove(&device_id);
                }
                theirs && !inner.online.contains_key(&device_id)
            }
        };
        if show {
            let _ = self.events.send(PresenceEvent {
                device_id,
                tenant,
                online,
                last_seen_at,
            });
        }
    }

    /// This node's name on the bus (and in its heartbeat row).
    pub fn node(&self) -> &str {
        self.bus.node()
    }

    /// Tells every other node again which devices this node holds (after
    /// they took it for dead).
    pub fn republish(&self) {
        let answer = self.announcements();
        let bus = self.bus.clone();
        tokio::spawn(async move {
            for notice in answer {
                bus.publish_patiently(notice).await;
            }
        });
    }

    /// Forgets the devices `node` held: its heartbeat expired, so it sends
    /// no offline notices of its own. A device that already reconnected
    /// elsewhere is held by that node and stays. Returns how many went
    /// offline; each is shown so in the live view.
    pub fn forget_node(&self, node: &str) -> usize {
        let gone: Vec<(String, String)> = {
            let mut inner = self.lock();
            let ids: Vec<String> = inner
                .remote
                .iter()
                .filter(|(_, r)| r.node == node)
                .map(|(id, _)| id.clone())
                .collect();
            let mut gone = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(r) = inner.remote.remove(&id)
                    && !inner.online.contains_key(&id)
                {
                    gone.push((id, r.tenant));
                }
            }
            gone
        };
        for (device_id, tenant) in &gone {
            let _ = self.events.send(PresenceEvent {
                device_id: device_id.clone(),
                tenant: tenant.clone(),
                online: false,
                last_seen_at: String::new(),
            });
        }
        gone.len()
    }

    /// Connected to this node or, as far as the bus said, to another.
    pub fn is_online(&self, device_id: &str) -> bool {
        let inner = self.lock();
        inner.online.contains_key(device_id) || inner.remote.contains_key(device_id)
    }

    /// The wire protocol version the device's connection speaks; `None`
    /// while it is offline.
    pub fn protocol_version(&self, device_id: &str) -> Option<u16> {
        let inner = self.lock();
        inner
            .online
            .get(device_id)
            .map(|e| e.protocol_version)
            .or_else(|| inner.remote.get(device_id).map(|r| r.protocol_version))
    }

    /// Devices of the tenant connected to any node.
    pub fn online_in_tenant(&self, tenant_id: &str) -> usize {
        let inner = self.lock();
        let here = inner
            .online
            .values()
            .filter(|e| e.tenant_id == tenant_id)
            .count();
        let elsewhere = inner
            .remote
            .iter()
            .filter(|(id, r)| r.tenant_id == tenant_id && !inner.online.contains_key(*id))
            .count();
        here + elsewhere
    }

    /// The devices connected to this node now.
    pub fn online_devices(&self) -> Vec<String> {
        self.lock().online.keys().cloned().collect()
    }

    /// Agents connected to this node.
    pub fn online_count(&self) -> usize {
        self.lock().online.len()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PresenceEvent> {
        self.events.subscribe()
    }
}

/// Applies the bus's notices to this node's sessions until shutdown: nudges
/// wake the sessions they name, other nodes' presence is remembered, and
/// when notices may have been lost (the bus reconnected, this node lagged,
/// or [`Bus::resync_every`] passed) every session looks again.
pub async fn follow_bus(presence: Presence, mut shutdown: watch::Receiver<bool>) {
    let mut notices = presence.bus.subscribe();
    let every = presence.bus.resync_every();
    let mut resync = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    resync.tick().await;
    let announce = || {
        presence.bus.publish(Notice::Announce {
            node: presence.bus.node().to_owned(),
        })
    };
    // Ask the nodes already running which devices they hold.
    announce();
    loop {
        let notice = tokio::select! {
            received = notices.recv() => match received {
                Ok(notice) => notice,
                Err(broadcast::error::RecvError::Lagged(_)) => Notice::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = resync.tick(), if every.is_some() => Notice::Resync,
            _ = shutdown.changed() => return,
        };
        match notice {
            Notice::DeviceWork { device_id } => presence.wake_device(&device_id),
            Notice::TenantWork { tenant_id } => presence.wake_tenant(&tenant_id),
            Notice::Announce { node } if node == presence.bus.node() => {}
            Notice::Announce { .. } => {
                let answer = presence.announcements();
                let bus = presence.bus.clone();
                tokio::spawn(async move {
                    for notice in answer {
                        bus.publish_patiently(notice).await;
                    }
                });
            }
            Notice::Presence { node, .. } if node == presence.bus.node() => {}
            Notice::Presence {
                node,
                device_id,
                tenant_id,
                tenant,
                online,
                connection,
                protocol_version,
                last_seen_at,
            } => presence.apply_remote(
                node,
                device_id,
                tenant_id,
                tenant,
                online,
                connection,
                protocol_version,
                last_seen_at,
            ),
            Notice::Resync => {
                // Notices may have been lost both ways: look again for
                // work here, and ask the others who they hold.
                presence.wake_all();
                announce();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn remote(node: &str, connection: u64, online: bool) -> Notice {
        Notice::Presence {
            node: node.into(),
            device_id: "d1".into(),
            tenant_id: "t1".into(),
            tenant: "demo".into(),
            online,
            connection,
            protocol_version: 3,
            last_seen_at: String::new(),
        }
    }

    fn apply(p: &Presence, n: Notice) {
        if let Notice::Presence {
            node,
            device_id,
            tenant_id,
            tenant,
            online,
            connection,
            protocol_version,
            last_seen_at,
        } = n
        {
            p.apply_remote(
                node,
                device_id,
                tenant_id,
                tenant,
                online,
                connection,
                protocol_version,
                last_seen_at,
            );
        }
    }

    #[test]
    fn a_dead_nodes_devices_go_offline_unless_they_moved() {
        let p = Presence::new(Bus::in_process());
        let mut events = p.subscribe();
        apply(&p, remote("b", 1, true));
        let mut moved = remote("b", 2, true);
        if let Notice::Presence { device_id, .. } = &mut moved {
            *device_id = "d2".into();
        }
        apply(&p, moved);
        // d2 reconnected through node c before b's heartbeat expired.
        let mut elsewhere = remote("c", 7, true);
        if let Notice::Presence { device_id, .. } = &mut elsewhere {
            *device_id = "d2".into();
        }
        apply(&p, elsewhere);
        while events.try_recv().is_ok() {}
        assert_eq!(p.forget_node("b"), 1);
        assert!(!p.is_online("d1"));
        assert!(p.is_online("d2"), "held by node c now");
        let shown = events.try_recv().expect("an offline event");
        assert_eq!(
            (
                shown.device_id.as_str(),
                shown.tenant.as_str(),
                shown.online
            ),
            ("d1", "demo", false)
        );
        // Forgetting again, or a node with nothing, changes nothing.
        assert_eq!(p.forget_node("b"), 0);
        assert_eq!(p.forget_node("zz"), 0);
        assert_eq!(p.online_in_tenant("t1"), 1);
    }

    #[test]
    fn a_device_on_another_node_counts_and_moves() {
        let p = Presence::new(Bus::in_process());
        apply(&p, remote("b", 1, true));
        assert!(p.is_online("d1"));
        assert_eq!(p.online_in_tenant("t1"), 1);
        assert_eq!(p.online_count(), 0, "not connected to this node");

        // It comes here: node b's late offline notice leaves it online.
        let here = p.register("d1", "t1", "demo", 3, String::new());
        apply(&p, remote("b", 1, false));
        assert!(p.is_online("d1"));
        assert_eq!(p.online_in_tenant("t1"), 1);

        // It goes to node c: this node's stale connection is told to close.
        apply(&p, remote("c", 9, true));
        assert!(
            here.kicked.notified().now_or_never().is_some(),
            "the stale connection here was not kicked"
        );
        // An offline notice for another connection of c changes nothing.
        apply(&p, remote("c", 8, false));
        assert!(p.is_online("d1"));
        apply(&p, remote("c", 9, false));
        assert!(!p.is_online("d1"));
    }

    #[tokio::test]
    async fn a_nudge_reaches_the_session_through_the_bus() {
        let p = Presence::new(Bus::in_process());
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(follow_bus(p.clone(), shutdown));
        tokio::task::yield_now().await;
        let r = p.register("d1", "t1", "demo", 3, String::new());
        p.nudge_device("d1");
        tokio::time::timeout(Duration::from_secs(5), r.work.notified())
            .await
            .expect("the nudge arrived");
        p.nudge_tenant("t1");
        tokio::time::timeout(Duration::from_secs(5), r.work.notified())
            .await
            .expect("the tenant nudge arrived");
    }

    #[test]
    fn a_replaced_connection_does_not_take_the_device_offline() {
        let p = Presence::new(Bus::in_process());
        let first = p.register("d1", "t1", "demo", 1, String::new());
        let second = p.register("d1", "t1", "demo", 2, String::new());
        assert_eq!(p.protocol_version("d1"), Some(2));
        p.unregister(&first, "demo", String::new());
        assert!(p.is_online("d1"));
        p.unregister(&second, "demo", String::new());
        assert!(!p.is_online("d1"));
    }
}
