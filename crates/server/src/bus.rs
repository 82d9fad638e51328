//! Notices between the parts of the server, and between nodes (RFD 0018).
//!
//! A notice says "look again": a device may have work, a tenant's trust
//! changed, a device's connection came or went on some node. It never
//! carries what to do: whoever receives one reads the database, which stays
//! the source of truth. So a lost notice only delays (each node also looks
//! again on its own, see [`Bus::resync_every`]), and a forged one (from
//! whoever can publish on the bus) makes a node read what it would read
//! anyway.
//!
//! Two transports behind one type: in one process a tokio broadcast (the
//! default, nothing to run), and NATS for several nodes. Every notice
//! reaches every subscriber of every node, the publisher's own included.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

/// The NATS subject every node of one deployment publishes on and listens
/// to: named after the deployment (the agent CA its nodes share), so that
/// two deployments, or two test runs, on one NATS never hear each other.
pub fn subject(deployment: &str) -> String {
    format!("bulwark.{deployment}.notices")
}

/// Largest notice accepted from NATS; a bigger one is dropped unread.
pub const MAX_NOTICE_BYTES: usize = 4096;

/// Longest id a notice may name (ids are 32 hex characters today).
const MAX_ID_LEN: usize = 128;

/// Notices queued for NATS before new ones are dropped (each drop only
/// delays: see the module notes).
const OUTBOX: usize = 8192;

/// Notices a slow local subscriber may fall behind by before it is told it
/// lagged (and so looks again at everything).
const LOCAL_CAPACITY: usize = 4096;

/// Something happened; read the database to see what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Notice {
    /// The device may have something new to receive: a released job, a cancel.
    DeviceWork { device_id: String },
    /// Every device of the tenant may have something new (its trust changed).
    TenantWork { tenant_id: String },
    /// A device's connection came (or went) on node `node`.
    Presence {
        node: String,
        device_id: String,
        tenant_id: String,
        /// The tenant's name, for the console's live view.
        tenant: String,
        online: bool,
        /// Which connection of that node: an offline notice for an older
        /// connection does not take a newer one offline.
        connection: u64,
        protocol_version: u16,
        /// RFC 3339.
        last_seen_at: String,
    },
    /// Node `node` joined (or came back to) the bus: every other node
    /// tells it, with `Presence` notices, which devices it holds.
    Announce { node: String },
    /// Notices may have been lost (the bus reconnected, or a subscriber
    /// lagged): look again at everything. Never sent between nodes.
    #[serde(skip)]
    Resync,
}

impl Notice {
    /// Whether every id and text in the notice is within bounds.
    fn is_bounded(&self) -> bool {
        let ok = |s: &str| !s.is_empty() && s.len() <= MAX_ID_LEN;
        match self {
            Notice::DeviceWork { device_id } => ok(device_id),
            Notice::TenantWork { tenant_id } => ok(tenant_id),
            Notice::Announce { node } => ok(node),
            Notice::Presence {
                node,
                device_id,
                tenant_id,
                tenant,
                last_seen_at,
                ..
            } => {
                ok(node)
                    && ok(device_id)
                    && ok(tenant_id)
                    && tenant.len() <= MAX_ID_LEN
                    && last_seen_at.len() <= 64
            }
            Notice::Resync => false,
        }
    }
}

/// A notice as it travels between nodes: who sent it, so a node skips its own.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    from: String,
    notice: Notice,
}

/// Encodes a notice for NATS.
fn encode(node: &str, notice: &Notice) -> Option<Vec<u8>> {
    let bytes = serde_json::to_vec(&Envelope {
        from: node.to_owned(),
        notice: notice.clone(),
    })
    .ok()?;
    (bytes.len() <= MAX_NOTICE_BYTES).then_some(bytes)
}

/// Decodes a notice from NATS: `None` for one too large, malformed, out of
/// bounds, or sent by `node` itself (already delivered locally).
fn decode(node: &str, bytes: &[u8]) -> Option<Notice> {
    if bytes.len() > MAX_NOTICE_BYTES {
        return None;
    }
    let envelope: Envelope = serde_json::from_slice(bytes).ok()?;
    (envelope.from != node && envelope.notice.is_bounded()).then_some(envelope.notice)
}

/// Which transport carries notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    InProcess,
    Nats,
}

#[derive(Clone)]
pub struct Bus(Arc<Inner>);

struct Inner {
    /// This process's name on the bus: random per start.
    node: String,
    local: broadcast::Sender<Notice>,
    /// To the NATS publisher task; `None` in process.
    outbox: Option<mpsc::Sender<Vec<u8>>>,
}

impl Bus {
    /// The in-process bus: notices reach this process's subscribers only.
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(LOCAL_CAPACITY);
        Self(Arc::new(Inner {
            node: new_node_name(),
            local,
            outbox: None,
        }))
    }

    /// The NATS bus at `url` (`nats://host:port`, or `tls://` for TLS with
    /// the system's roots), for the nodes of `deployment` (see
    /// [`subject`]). Waits for the first connection; later
    /// disconnections are retried for ever, and each reconnection tells
    /// this node's subscribers to look again ([`Notice::Resync`]).
    pub async fn connect_nats(url: &str, deployment: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        let (local, _) = broadcast::channel(LOCAL_CAPACITY);
        let node = new_node_name();
        let events = local.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("bulwark-server {node}"))
            .max_reconnects(None::<usize>)
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            info!("The NATS bus is connected; looking again for work.");
                            let _ = events.send(Notice::Resync);
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            warn!("This node fell behind on the NATS bus; looking again for work.");
                            let _ = events.send(Notice::Resync);
                        }
                        async_nats::Event::Disconnected => {
                            warn!("The NATS bus is disconnected; notices wait until it is back.");
                        }
                        other => info!(event = %other, "NATS bus event."),
                    }
                }
            })
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to the NATS bus at {url}"))?;
        let subject = subject(deployment);
        let mut subscriber = client
            .subscribe(subject.clone())
            .await
            .context("cannot subscribe to the NATS bus")?;
        let (outbox, mut queued) = mpsc::channel::<Vec<u8>>(OUTBOX);
        let publisher = client.clone();
        tokio::spawn(async move {
            while let Some(bytes) = queued.recv().await {
                if let Err(error) = publisher.publish(subject.clone(), bytes.into()).await {
                    warn!(%error, "Cannot publish a notice on the NATS bus.");
                }
            }
        });
        let inbox = local.clone();
        let me = node.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(message) = subscriber.next().await {
                if let Some(notice) = decode(&me, &message.payload) {
                    let _ = inbox.send(notice);
                }
            }
        });
        info!(%node, %deployment, "Joined the NATS bus.");
        Ok(Self(Arc::new(Inner {
            node,
            local,
            outbox: Some(outbox),
        })))
    }

    pub fn transport(&self) -> Transport {
        match self.0.outbox {
            Some(_) => Transport::Nats,
            None => Transport::InProcess,
        }
    }

    /// This node's name on the bus.
    pub fn node(&self) -> &str {
        &self.0.node
    }

    /// Tells every subscriber of every node. Never waits: a notice that
    /// cannot be queued is dropped with a warning (it only delays).
    pub fn publish(&self, notice: Notice) {
        if let Some(outbox) = &self.0.outbox
            && notice != Notice::Resync
        {
            match encode(&self.0.node, &notice) {
                Some(bytes) => {
                    if outbox.try_send(bytes).is_err() {
                        warn!("The NATS bus outbox is full; a notice was dropped.");
                    }
                }
                None => warn!(?notice, "A notice is too large for the bus; dropped."),
            }
        }
        let _ = self.0.local.send(notice);
    }

    /// [`Bus::publish`] for a burst (the answer to an `Announce`): waits for
    /// room in the outbox instead of dropping.
    pub async fn publish_patiently(&self, notice: Notice) {
        if let Some(outbox) = &self.0.outbox
            && let Some(bytes) = encode(&self.0.node, &notice)
            && outbox.send(bytes).await.is_err()
        {
            warn!("The NATS bus publisher stopped; a notice was dropped.");
        }
        let _ = self.0.local.send(notice);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.0.local.subscribe()
    }

    /// How often a node looks again at every connected device's work
    /// without being told, in case a notice from another node was lost
    /// while the bus seemed up. `None` in process, where none can be lost.
    pub fn resync_every(&self) -> Option<Duration> {
        match self.transport() {
            Transport::InProcess => None,
            Transport::Nats => Some(Duration::from_secs(300)),
        }
    }
}

fn new_node_name() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(node: &str) -> Notice {
        Notice::Presence {
            node: node.into(),
            device_id: "d1".into(),
            tenant_id: "t1".into(),
            tenant: "demo".into(),
            online: true,
            connection: 7,
            protocol_version: 3,
            last_seen_at: "2026-12-07T10:00:00Z".into(),
        }
    }

    #[test]
    fn notices_round_trip_between_nodes_and_not_to_their_sender() {
        for notice in [
            Notice::DeviceWork {
                device_id: "d1".into(),
            },
            Notice::TenantWork {
                tenant_id: "t1".into(),
            },
            Notice::Announce { node: "a".into() },
            presence("a"),
        ] {
            let bytes = encode("a", &notice).expect("encodes");
            assert_eq!(decode("b", &bytes), Some(notice.clone()));
            assert_eq!(
                decode("a", &bytes),
                None,
                "its own notice, already delivered"
            );
        }
    }

    #[test]
    fn what_a_stranger_puts_on_the_bus_is_bounded() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("not json", b"\xff\xfe".to_vec()),
            (
                "unknown kind",
                br#"{"from":"x","notice":{"kind":"run_job","device_id":"d"}}"#.to_vec(),
            ),
            (
                "extra field",
                br#"{"from":"x","notice":{"kind":"device_work","device_id":"d","script":"rm"}}"#
                    .to_vec(),
            ),
            (
                "resync from outside",
                br#"{"from":"x","notice":{"kind":"resync"}}"#.to_vec(),
            ),
            (
                "empty id",
                br#"{"from":"x","notice":{"kind":"device_work","device_id":""}}"#.to_vec(),
            ),
            (
                "long id",
                format!(r#"{{"from":"x","notice":{{"kind":"device_work","device_id":"{long}"}}}}"#)
                    .into_bytes(),
            ),
            ("too large", {
                let mut b =
                    br#"{"from":"x","notice":{"kind":"device_work","device_id":"d"}}"#.to_vec();
                b.resize(MAX_NOTICE_BYTES + 1, b' ');
                b
            }),
        ];
        for (name, bytes) in cases {
            assert_eq!(decode("me", &bytes), None, "{name}");
        }
    }

    #[tokio::test]
    async fn in_process_notices_reach_every_subscriber() {
        let bus = Bus::in_process();
        assert_eq!(bus.transport(), Transport::InProcess);
        assert_eq!(bus.resync_every(), None);
        let mut one = bus.subscribe();
        let mut two = bus.subscribe();
        let notice = Notice::DeviceWork {
            device_id: "d1".into(),
        };
        bus.publish(notice.clone());
        assert_eq!(one.recv().await.expect("one"), notice);
        assert_eq!(two.recv().await.expect("two"), notice);
    }
}
