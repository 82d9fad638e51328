//! The remote shell relay (RFD 0015): moves sealed frames between an
//! operator's client (a WebSocket of the API, `api::shells::connect_shell`)
//! and the agent's own gateway connection. It reads nothing: the channel is
//! end to end between the grantee's `bulwark` and the agent, and what the
//! relay can do is drop frames or end sessions.
//!
//! Ending is its job too: a revoked grant or a disabled operator ends the
//! sessions here at once (the client's socket closes) and the agent is told
//! (`ShellRevoke`, `ShellClose`); the agent also ends sessions on its own
//! when the grant expires or no longer verifies.
//!
//! One node's relay knows the agents connected to that node only: a client
//! reaches a device held by another node as "offline" (the bus carries no
//! shell frames yet).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bulwark_protocol::message::{AgentMessage, ServerMessage, ShellClose, ShellOpen, ShellRevoke};
use tokio::sync::mpsc;

/// Frames queued towards one agent (all its sessions) or one client. A
/// peer that does not keep up loses its session, never the relay's memory.
const AGENT_QUEUE: usize = 256;
const CLIENT_QUEUE: usize = 256;

/// A frame queued towards an agent, boxed: every connected agent has a
/// queue whether or not a shell is ever opened, and a tokio channel
/// allocates its first block of 32 slots up front. Unboxed, 32 slots of a
/// `ServerMessage` were ~7 KiB of every idle connection (issue 18).
pub type ToAgent = Box<ServerMessage>;

/// What the relay tells a client's socket.
#[derive(Debug)]
pub enum ToClient {
    /// A frame of the agent's (`ShellOpened`, `ShellData`, `ShellClosed`).
    Agent(Box<AgentMessage>),
    /// The relay ended the session (revoked, operator disabled, device gone).
    End(String),
}

/// Why a session cannot be relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayError {
    /// The device has no connection of protocol version 5 or later here.
    DeviceOffline,
    /// A session of this id is relayed already.
    SessionExists,
    /// The agent's queue is full.
    AgentBusy,
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RelayError::DeviceOffline => {
                "the device is not connected to this server with an agent that speaks protocol version 5"
            }
            RelayError::SessionExists => "a session of this id is open already",
            RelayError::AgentBusy => "the device's connection is too busy",
        })
    }
}

struct Agent {
    connection: u64,
    to_agent: mpsc::Sender<ToAgent>,
}

struct Client {
    device_id: String,
    grant_id: [u8; 16],
    operator_id: String,
    to_client: mpsc::Sender<ToClient>,
}

#[derive(Default)]
struct Inner {
    agents: HashMap<String, Agent>,
    sessions: HashMap<[u8; 16], Client>,
}

/// The relay of one node; cheap to clone.
#[derive(Clone, Default)]
pub struct Relay {
    inner: Arc<Mutex<Inner>>,
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section is a few map operations: a panic inside
        // one cannot leave the maps half-changed.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A gateway connection of protocol 5 or later: what the relay sends
    /// its agent comes out of the receiver. A newer connection replaces an
    /// older one.
    pub fn attach_agent(&self, device_id: &str, connection: u64) -> mpsc::Receiver<ToAgent> {
        let (to_agent, receiver) = mpsc::channel(AGENT_QUEUE);
        self.lock().agents.insert(
            device_id.to_owned(),
            Agent {
                connection,
                to_agent,
            },
        );
        receiver
    }

    /// The connection ended: its sessions end with it (the agent ends its
    /// side when the connection goes).
    pub fn detach_agent(&self, device_id: &str, connection: u64) {
        let mut inner = self.lock();
        if inner
            .agents
            .get(device_id)
            .is_some_and(|a| a.connection == connection)
        {
            inner.agents.remove(device_id);
            let gone: Vec<[u8; 16]> = inner
                .sessions
                .iter()
                .filter(|(_, c)| c.device_id == device_id)
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                if let Some(client) = inner.sessions.remove(&id) {
                    let _ = client
                        .to_client
                        .try_send(ToClient::End("the device disconnected".into()));
                }
            }
        }
    }

    /// Is there a connection to relay to for this device?
    pub fn agent_attached(&self, device_id: &str) -> bool {
        self.lock().agents.contains_key(device_id)
    }

    /// Starts relaying a session: sends the open to the agent and returns
    /// what the client's socket is to send.
    pub fn open(
        &self,
        device_id: &str,
        grant_id: [u8; 16],
        operator_id: &str,
        open: ShellOpen,
    ) -> Result<mpsc::Receiver<ToClient>, RelayError> {
        let mut inner = self.lock();
        let agent = inner
            .agents
            .get(device_id)
            .ok_or(RelayError::DeviceOffline)?;
        if inner.sessions.contains_key(&open.session_id) {
            return Err(RelayError::SessionExists);
        }
        let session_id = open.session_id;
        agent
            .to_agent
            .try_send(Box::new(ServerMessage::ShellOpen(open)))
            .map_err(|_| RelayError::AgentBusy)?;
        let (to_client, receiver) = mpsc::channel(CLIENT_QUEUE);
        inner.sessions.insert(
            session_id,
            Client {
                device_id: device_id.to_owned(),
                grant_id,
                operator_id: operator_id.to_owned(),
                to_client,
            },
        );
        Ok(receiver)
    }

    /// A sealed frame from the client towards its session's agent. False
    /// when the session is no longer relayed (the client should stop).
    pub fn client_data(&self, session_id: [u8; 16], sealed: Vec<u8>) -> bool {
        let mut inner = self.lock();
        let Some(device_id) = inner.sessions.get(&session_id).map(|c| c.device_id.clone()) else {
            return false;
        };
        let sent = inner.agents.get(&device_id).is_some_and(|a| {
            a.to_agent
                .try_send(Box::new(ServerMessage::ShellData(
                    bulwark_protocol::message::ShellData { session_id, sealed },
                )))
                .is_ok()
        });
        if !sent {
            end_session(
                &mut inner,
                session_id,
                "the device's connection did not keep up",
            );
        }
        sent
    }

    /// The client left: the agent is told to end the session.
    pub fn client_gone(&self, session_id: [u8; 16], reason: &str) {
        let mut inner = self.lock();
        end_session(&mut inner, session_id, reason);
    }

    /// A frame of an agent's about a session: passed on only to a session
    /// of that very device (another device's frames are dropped).
    pub fn from_agent(&self, device_id: &str, session_id: [u8; 16], message: AgentMessage) {
        let mut inner = self.lock();
        let Some(client) = inner.sessions.get(&session_id) else {
            return;
        };
        if client.device_id != device_id {
            return;
        }
        let last = matches!(message, AgentMessage::ShellClosed(_));
        let sent = client
            .to_client
            .try_send(ToClient::Agent(Box::new(message)))
            .is_ok();
        if last {
            inner.sessions.remove(&session_id);
        } else if !sent {
            end_session(&mut inner, session_id, "the client did not keep up");
        }
    }

    /// A grant was revoked: its sessions end here now, and the device is
    /// told (it also refuses new opens under it until it expires).
    pub fn revoke(&self, device_id: &str, grant_id: [u8; 16], expires_at: u64) {
        let mut inner = self.lock();
        let ended: Vec<[u8; 16]> = inner
            .sessions
            .iter()
            .filter(|(_, c)| c.grant_id == grant_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            if let Some(client) = inner.sessions.remove(&id) {
                let _ = client
                    .to_client
                    .try_send(ToClient::End("the grant was revoked".into()));
            }
        }
        if let Some(agent) = inner.agents.get(device_id) {
            let _ = agent
                .to_agent
                .try_send(Box::new(ServerMessage::ShellRevoke(ShellRevoke {
                    grant_id,
                    expires_at,
                })));
        }
    }

    /// An operator was disabled: every session they have ends.
    pub fn end_operator(&self, operator_id: &str) {
        let mut inner = self.lock();
        let ended: Vec<[u8; 16]> = inner
            .sessions
            .iter()
            .filter(|(_, c)| c.operator_id == operator_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            end_session(&mut inner, id, "the operator was disabled");
        }
    }

    /// Sessions relayed now (metrics, tests).
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }
}

/// Stops relaying a session: the client is told why, the agent to close it.
fn end_session(inner: &mut Inner, session_id: [u8; 16], reason: &str) {
    let Some(client) = inner.sessions.remove(&session_id) else {
        return;
    };
    let _ = client.to_client.try_send(ToClient::End(reason.to_owned()));
    if let Some(agent) = inner.agents.get(&client.device_id) {
        let _ = agent
            .to_agent
            .try_send(Box::new(ServerMessage::ShellClose(ShellClose {
                session_id,
                reason: reason.to_owned(),
            })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_protocol::message::{ShellClosed, ShellData};

    fn open(session: u8) -> ShellOpen {
        ShellOpen {
            session_id: [session; 16],
            grant: vec![1],
            open: vec![2],
        }
    }

    /// Every connected agent has a queue from its first second, and tokio
    /// allocates a channel's first block of 32 slots when it is made: an
    /// unboxed `ServerMessage` slot made that ~7 KiB of every idle
    /// connection (issue 18).
    #[test]
    fn an_idle_agents_queue_holds_pointers_not_messages() {
        const TOKIO_BLOCK_SLOTS: usize = 32;
        let message = std::mem::size_of::<ServerMessage>();
        let slot = std::mem::size_of::<ToAgent>();
        println!("ServerMessage: {message} bytes, a queue slot: {slot} bytes");
        assert!(
            TOKIO_BLOCK_SLOTS * slot <= 512,
            "an agent's shell queue holds {} bytes before any shell is opened",
            TOKIO_BLOCK_SLOTS * slot
        );
    }

    #[tokio::test]
    async fn frames_go_only_to_their_own_session_and_revoking_ends_it() {
        let relay = Relay::default();
        assert_eq!(
            relay.open("dev-a", [9; 16], "op", open(1)).err(),
            Some(RelayError::DeviceOffline)
        );
        let mut agent_a = relay.attach_agent("dev-a", 1);
        let _agent_b = relay.attach_agent("dev-b", 2);
        let mut client = relay.open("dev-a", [9; 16], "op", open(1)).expect("opened");
        assert!(matches!(
            agent_a.recv().await.map(|m| *m),
            Some(ServerMessage::ShellOpen(_))
        ));
        assert_eq!(
            relay.open("dev-a", [9; 16], "op", open(1)).err(),
            Some(RelayError::SessionExists)
        );
        // Another device's agent cannot speak for this session.
        let data = |b: u8| {
            AgentMessage::ShellData(ShellData {
                session_id: [1; 16],
                sealed: vec![b],
            })
        };
        relay.from_agent("dev-b", [1; 16], data(7));
        relay.from_agent("dev-a", [1; 16], data(8));
        match client.recv().await {
            Some(ToClient::Agent(m)) => match *m {
                AgentMessage::ShellData(d) => assert_eq!(d.sealed, [8]),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert!(relay.client_data([1; 16], vec![3]));
        assert!(matches!(
            agent_a.recv().await.map(|m| *m),
            Some(ServerMessage::ShellData(_))
        ));
        // Revoked: the client hears it at once, the agent is told.
        relay.revoke("dev-a", [9; 16], 100);
        assert!(matches!(client.recv().await, Some(ToClient::End(_))));
        assert!(matches!(
            agent_a.recv().await.map(|m| *m),
            Some(ServerMessage::ShellRevoke(ShellRevoke {
                expires_at: 100,
                ..
            }))
        ));
        assert!(!relay.client_data([1; 16], vec![3]));
        assert_eq!(relay.session_count(), 0);
    }

    #[tokio::test]
    async fn a_disabled_operator_and_a_closed_session_stop_relaying() {
        let relay = Relay::default();
        let mut agent = relay.attach_agent("dev", 1);
        let mut mine = relay
            .open("dev", [1; 16], "alice", open(1))
            .expect("opened");
        let mut theirs = relay.open("dev", [2; 16], "bob", open(2)).expect("opened");
        relay.end_operator("alice");
        assert!(matches!(mine.recv().await, Some(ToClient::End(_))));
        let _open1 = agent.recv().await;
        let _open2 = agent.recv().await;
        assert!(matches!(
            agent.recv().await.map(|m| *m),
            Some(ServerMessage::ShellClose(ShellClose { session_id, .. })) if session_id == [1; 16]
        ));
        relay.from_agent(
            "dev",
            [2; 16],
            AgentMessage::ShellClosed(ShellClosed {
                session_id: [2; 16],
                refusal: None,
                reason: "exit".into(),
                recording: None,
            }),
        );
        assert!(matches!(
            theirs.recv().await,
            Some(ToClient::Agent(m)) if matches!(*m, AgentMessage::ShellClosed(_))
        ));
        assert_eq!(relay.session_count(), 0);
        // A replaced connection's end does not end the newer one's sessions.
        let _newer = relay.attach_agent("dev", 2);
        let _kept = relay.open("dev", [3; 16], "bob", open(3)).expect("opened");
        relay.detach_agent("dev", 1);
        assert_eq!(relay.session_count(), 1);
        relay.detach_agent("dev", 2);
        assert_eq!(relay.session_count(), 0);
    }
}
