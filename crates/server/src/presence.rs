//! Which agents are connected to this node, and a stream of changes for the
//! console's live view.
//!
//! A device is online while its gateway connection lives (and the gateway
//! closes connections silent for three heartbeat intervals). A device that
//! reconnects replaces its older connection, which is told to close.
//! Multi-node deployments will publish the same events on the bus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};

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
    kick: Arc<Notify>,
    work: Arc<Notify>,
}

#[derive(Clone)]
pub struct Presence {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<PresenceEvent>,
}

struct Inner {
    next_connection: u64,
    online: HashMap<String, Entry>,
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

impl Default for Presence {
    fn default() -> Self {
        Self::new()
    }
}

impl Presence {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                next_connection: 1,
                online: HashMap::new(),
            })),
            events,
        }
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
                    kick: kick.clone(),
                    work: work.clone(),
                },
            ) {
                old.kick.notify_one();
            }
            connection
        };
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
                    inner.online.remove(&registration.device_id);
                    true
                }
                _ => false,
            }
        };
        if removed {
            let _ = self.events.send(PresenceEvent {
                device_id: registration.device_id.clone(),
                tenant: tenant.to_owned(),
                online: false,
                last_seen_at,
            });
        }
    }

    /// Tells a connected device's session to look for work.
    pub fn nudge_device(&self, device_id: &str) {
        if let Some(entry) = self.lock().online.get(device_id) {
            entry.work.notify_one();
        }
    }

    /// Tells every connected device of a tenant to look for work (its trust changed).
    pub fn nudge_tenant(&self, tenant_id: &str) {
        for entry in self.lock().online.values() {
            if entry.tenant_id == tenant_id {
                entry.work.notify_one();
            }
        }
    }

    pub fn is_online(&self, device_id: &str) -> bool {
        self.lock().online.contains_key(device_id)
    }

    /// The wire protocol version the device's connection speaks; `None`
    /// while it is offline.
    pub fn protocol_version(&self, device_id: &str) -> Option<u16> {
        self.lock()
            .online
            .get(device_id)
            .map(|e| e.protocol_version)
    }

    pub fn online_in_tenant(&self, tenant_id: &str) -> usize {
        self.lock()
            .online
            .values()
            .filter(|e| e.tenant_id == tenant_id)
            .count()
    }

    /// The devices connected to this node now.
    pub fn online_devices(&self) -> Vec<String> {
        self.lock().online.keys().cloned().collect()
    }

    pub fn online_count(&self) -> usize {
        self.lock().online.len()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PresenceEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_connection_does_not_take_the_device_offline() {
        let p = Presence::new();
        let first = p.register("d1", "t1", "demo", 1, String::new());
        let second = p.register("d1", "t1", "demo", 2, String::new());
        assert_eq!(p.protocol_version("d1"), Some(2));
        p.unregister(&first, "demo", String::new());
        assert!(p.is_online("d1"));
        p.unregister(&second, "demo", String::new());
        assert!(!p.is_online("d1"));
    }
}
