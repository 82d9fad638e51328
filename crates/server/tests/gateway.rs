//! The agent gateway under attack: a real server (in process, real TLS on a
//! loopback port) and clients that play a malicious agent or a network
//! attacker. Each test names the attack it plays.

use bulwark_store::AuditAction;
use std::sync::Arc;
use std::time::Duration;

use bulwark_agent::connection::{self, Endpoint, ServerAddress, SessionError, SessionOptions};
use bulwark_agent::inventory::Collector;
use bulwark_policy::Refusal;
use bulwark_policy::log::{JobLogProof, log_origin, verify_log_head};
use bulwark_protocol::envelope::{CHANNEL_BINDING_LABEL, DeviceStatement, HelloStatement};
use bulwark_protocol::message::{
    AgentMessage, AgentRefusalCode, DeviceId, Heartbeat, Hello, Job, JobOutcome, JobRefused,
    JobResult, LogProof, RefusalCode, ServerMessage,
};
use bulwark_protocol::token::EnrollToken;
use bulwark_protocol::{
    Frame, Limits, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, decode_server_frame,
};
use bulwark_server::{RunningServer, ServerConfig, now_millis};
use bulwark_store::{JobState, NewAuditEvent, NewJob, TargetState, TenantScope};
use bulwark_translog::{Checkpoint, Hash, NoteVerifier};
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

struct Harness {
    server: RunningServer,
    tenant_id: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    start_with(|_| {}).await
}

async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::quickstart(
        dir.path().join("data"),
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    config.heartbeat_secs = 2;
    configure(&mut config);
    let server = bulwark_server::start(config).await.expect("server starts");
    let tenant = server
        .store
        .ensure_tenant("demo", "test", now_millis())
        .await
        .expect("tenant");
    Harness {
        server,
        tenant_id: tenant.id,
        _dir: dir,
    }
}

impl Harness {
    fn address(&self) -> ServerAddress {
        ServerAddress::parse(&self.server.gateway_url).expect("gateway url")
    }

    async fn token(&self, ttl_ms: i64) -> EnrollToken {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        // The gateway does not read the root pin: only the agent does.
        let token = EnrollToken {
            secret,
            ca_fingerprint: self.server.ca_fingerprint,
            root_fingerprint: [0; 32],
        };
        let now = now_millis();
        self.server
            .store
            .create_enrollment_token(
                token.secret_hash(),
                &self.tenant_id,
                None,
                now,
                now + ttl_ms,
                &[],
            )
            .await
            .expect("token stored");
        token
    }

    async fn device_count(&self) -> usize {
        self.server
            .store
            .list_devices(&TenantScope::All, &self.tenant_id)
            .await
            .expect("list")
            .len()
    }

    /// A genuinely enrolled device.
    async fn enrolled(&self) -> Endpoint {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let token = self.token(60_000).await;
        let enrolled = connection::enroll(&self.address(), &token, &key, "honest")
            .await
            .expect("enrol");
        Endpoint {
            address: self.address(),
            pin: self.server.ca_fingerprint,
            device_id: enrolled.device_id,
            key,
        }
    }

    /// Runs an honest agent session in the background.
    fn run_agent(&self, endpoint: Endpoint) -> tokio::sync::watch::Sender<bool> {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut collector = Collector::new("test");
            let options = SessionOptions {
                inventory_interval: Duration::from_secs(1),
                jobs: None,
                ..SessionOptions::default()
            };
            let _ = connection::session(
                &endpoint,
                &mut collector,
                &options,
                &mut stopped,
                &mut || {},
            )
            .await;
        });
        stop
    }

    async fn wait_online(&self, device_id: &str, online: bool) {
        for _ in 0..200 {
            if self.server.presence.is_online(device_id) == online {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "device {device_id} never became {}",
            if online { "online" } else { "offline" }
        );
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A hand-driven client: TLS with the right pin, WebSocket, nothing else.
async fn raw_connect(h: &Harness) -> (Ws, [u8; 32]) {
    let config =
        bulwark_agent::pinning::client_config(h.server.ca_fingerprint).expect("tls config");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = h.address();
    let tcp = TcpStream::connect((address.host.as_str(), address.port))
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::try_from(address.host.clone()).expect("name");
    let tls = connector.connect(name, tcp).await.expect("tls");
    let mut binding = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut binding, CHANNEL_BINDING_LABEL, None)
        .expect("exporter");
    let url = format!("wss://{}:{}/agent/v1", address.host, address.port);
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("upgrade");
    (ws, binding)
}

/// A frame in the newest protocol version, as a current agent sends it.
fn encode_agent_frame(message: &AgentMessage) -> Vec<u8> {
    bulwark_protocol::encode_agent_frame(PROTOCOL_VERSION, message).expect("encodes")
}

async fn next_frame(ws: &mut Ws) -> Option<Frame<ServerMessage>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("server answers in time")
        {
            Some(Ok(Message::Binary(b))) => {
                return Some(decode_server_frame(&b, &Limits::default()).expect("valid frame"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return None,
        }
    }
}

async fn next_message(ws: &mut Ws) -> Option<ServerMessage> {
    next_frame(ws).await.map(|f| f.message)
}

async fn nonce(ws: &mut Ws) -> [u8; 32] {
    match next_message(ws).await {
        Some(ServerMessage::Challenge(c)) => c.nonce,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn refusal(message: Option<ServerMessage>) -> RefusalCode {
    match message {
        Some(ServerMessage::Refused(r)) => r.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// After a refusal the server closes the connection.
async fn closed(ws: &mut Ws) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), ws.next()).await,
        Ok(None | Some(Ok(Message::Close(_))) | Some(Err(_)))
    )
}

#[tokio::test]
async fn used_expired_unknown_or_tampered_tokens_enrol_nothing() {
    let h = start().await;
    let key = || SigningKey::generate(&mut rand::rngs::OsRng);
    let refused = |r: Result<_, SessionError>| match r {
        Err(SessionError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };

    let token = h.token(60_000).await;
    connection::enroll(&h.address(), &token, &key(), "first")
        .await
        .expect("first use works");
    assert_eq!(h.device_count().await, 1);

    // used-token
    assert_eq!(
        refused(connection::enroll(&h.address(), &token, &key(), "again").await),
        RefusalCode::BadToken
    );
    // expired-token
    let expired = h.token(-1).await;
    assert_eq!(
        refused(connection::enroll(&h.address(), &expired, &key(), "late").await),
        RefusalCode::BadToken
    );
    // unknown-token
    let mut unknown = h.token(60_000).await;
    unknown.secret[0] ^= 1;
    assert_eq!(
        refused(connection::enroll(&h.address(), &unknown, &key(), "guess").await),
        RefusalCode::BadToken
    );
    // token-with-another-ca: the agent refuses the server itself
    let mut other_ca = h.token(60_000).await;
    other_ca.ca_fingerprint[0] ^= 1;
    match connection::enroll(&h.address(), &other_ca, &key(), "pin").await {
        Err(SessionError::Transport(e)) => assert!(format!("{e:#}").contains("pinned"), "{e:#}"),
        other => panic!("a server with another CA must be refused by the agent, got {other:?}"),
    }
    assert_eq!(
        h.device_count().await,
        1,
        "no refused enrolment may create a device"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_hello_signed_by_another_key_is_refused() {
    let h = start().await;
    let honest = h.enrolled().await;
    let (mut ws, binding) = raw_connect(&h).await;
    let nonce = nonce(&mut ws).await;
    let thief = SigningKey::generate(&mut rand::rngs::OsRng);
    let statement = HelloStatement {
        nonce,
        channel_binding: binding,
        device_id: honest.device_id.clone(),
    };
    let hello = Hello {
        device_id: honest.device_id.clone(),
        agent_version: "x".into(),
        signature: statement.sign(&thief),
        log_size: None,
    };
    ws.send(Message::Binary(
        encode_agent_frame(&AgentMessage::Hello(hello)).into(),
    ))
    .await
    .expect("send");
    assert_eq!(
        refusal(next_message(&mut ws).await),
        RefusalCode::BadSignature
    );
    assert!(closed(&mut ws).await);
    assert!(!h.server.presence.is_online(honest.device_id.as_str()));
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_hello_replayed_on_another_connection_is_refused() {
    let h = start().await;
    let honest = h.enrolled().await;
    // The attacker captured a valid hello (signed for connection 1's nonce and
    // TLS session) and plays it on connection 2.
    let (mut first, binding) = raw_connect(&h).await;
    let nonce1 = nonce(&mut first).await;
    let statement = HelloStatement {
        nonce: nonce1,
        channel_binding: binding,
        device_id: honest.device_id.clone(),
    };
    let captured = encode_agent_frame(&AgentMessage::Hello(Hello {
        device_id: honest.device_id.clone(),
        agent_version: "x".into(),
        signature: statement.sign(&honest.key),
        log_size: None,
    }));
    drop(first);
    let (mut second, _) = raw_connect(&h).await;
    let _ = nonce(&mut second).await;
    second
        .send(Message::Binary(captured.into()))
        .await
        .expect("send");
    assert_eq!(
        refusal(next_message(&mut second).await),
        RefusalCode::BadSignature
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_device_is_refused() {
    let h = start().await;
    let (mut ws, binding) = raw_connect(&h).await;
    let nonce = nonce(&mut ws).await;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let device_id = DeviceId::from_random_bytes([7; 16]);
    let statement = HelloStatement {
        nonce,
        channel_binding: binding,
        device_id: device_id.clone(),
    };
    let hello = Hello {
        device_id,
        agent_version: "x".into(),
        signature: statement.sign(&key),
        log_size: None,
    };
    ws.send(Message::Binary(
        encode_agent_frame(&AgentMessage::Hello(hello)).into(),
    ))
    .await
    .expect("send");
    assert_eq!(
        refusal(next_message(&mut ws).await),
        RefusalCode::UnknownDevice
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn malformed_oversized_and_non_canonical_frames_close_only_their_connection() {
    let h = start().await;
    let honest = h.enrolled().await;
    let honest_id = honest.device_id.to_string();
    let _stop = h.run_agent(honest);
    h.wait_online(&honest_id, true).await;

    // garbage-bytes
    let (mut ws, _) = raw_connect(&h).await;
    let _ = nonce(&mut ws).await;
    ws.send(Message::Binary(vec![0xff, 0x00, 0x13].into()))
        .await
        .expect("send");
    assert_eq!(refusal(next_message(&mut ws).await), RefusalCode::Malformed);

    // non-canonical-encoding: a valid heartbeat frame with one trailing byte
    let (mut ws, _) = raw_connect(&h).await;
    let _ = nonce(&mut ws).await;
    let mut frame = encode_agent_frame(&AgentMessage::Heartbeat(Heartbeat { seq: 1 }));
    frame.push(0);
    ws.send(Message::Binary(frame.into())).await.expect("send");
    assert_eq!(refusal(next_message(&mut ws).await), RefusalCode::Malformed);

    // unexpected-message-before-authentication
    let (mut ws, _) = raw_connect(&h).await;
    let _ = nonce(&mut ws).await;
    let frame = encode_agent_frame(&AgentMessage::Heartbeat(Heartbeat { seq: 1 }));
    ws.send(Message::Binary(frame.into())).await.expect("send");
    assert_eq!(
        refusal(next_message(&mut ws).await),
        RefusalCode::UnexpectedMessage
    );

    // text-frame
    let (mut ws, _) = raw_connect(&h).await;
    let _ = nonce(&mut ws).await;
    ws.send(Message::Text("hello".into())).await.expect("send");
    assert_eq!(refusal(next_message(&mut ws).await), RefusalCode::Malformed);

    // oversized-frame: 2 MiB against a 1 MiB limit; the WebSocket layer drops it
    let (mut ws, _) = raw_connect(&h).await;
    let _ = nonce(&mut ws).await;
    let _ = ws
        .send(Message::Binary(vec![0u8; 2 * 1024 * 1024].into()))
        .await;
    assert!(
        closed(&mut ws).await,
        "an oversized frame must end the connection"
    );

    // The honest agent never noticed.
    assert!(h.server.presence.is_online(&honest_id));
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_silent_connections_does_not_lock_out_honest_agents() {
    let h = start().await;
    let address = h.address();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(
            TcpStream::connect((address.host.as_str(), address.port))
                .await
                .expect("tcp"),
        );
    }
    let honest = h.enrolled().await;
    let honest_id = honest.device_id.to_string();
    let _stop = h.run_agent(honest);
    h.wait_online(&honest_id, true).await;
    drop(idle);
    h.server.shutdown().await;
}

/// A reconnect storm (issue 18), played with one handshake at a time: a
/// connection that stalls in its TLS handshake holds the only turn; the
/// next one is closed after the admission wait, before any TLS work, not
/// left to time out; silent connections take no turn; once the stalled one
/// is gone, an honest agent gets in at once.
#[tokio::test]
async fn handshakes_past_the_admission_limit_are_closed_fast_and_retried() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = start_with(|c| c.max_agent_handshakes = Some(1)).await;
    let honest = h.enrolled().await;
    let address = h.address();
    let tcp = || TcpStream::connect((address.host.as_str(), address.port));
    // Silent connections: nothing sent, no turn taken.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tcp().await.expect("tcp"));
    }
    // Half a TLS record: it has its turn, and keeps it while it stalls.
    let mut stalled = tcp().await.expect("tcp");
    stalled.write_all(&[0x16, 0x03]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    let mut turned_away = tcp().await.expect("tcp");
    turned_away
        .write_all(&[0x16, 0x03, 0x01])
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(8), turned_away.read(&mut buf))
        .await
        .expect("closed before the handshake deadline");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without a byte of TLS: {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "closed after the admission wait, not the handshake deadline: {waited:?}"
    );

    // The stalled handshake ends: the turn is free for an honest agent.
    drop(stalled);
    let id = honest.device_id.to_string();
    let _stop = h.run_agent(honest);
    h.wait_online(&id, true).await;
    drop(silent);
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_killed_connection_goes_offline_and_a_reconnect_replaces_the_old_one() {
    let h = start().await;
    let honest = h.enrolled().await;
    let id = honest.device_id.to_string();
    let stop = h.run_agent(honest);
    h.wait_online(&id, true).await;
    stop.send(true).expect("stop");
    h.wait_online(&id, false).await;
    let device = h
        .server
        .store
        .device(&TenantScope::All, &id)
        .await
        .expect("read")
        .expect("device");
    let inventory = device.inventory.expect("inventory stored");
    assert!(
        inventory.system.is_some() && inventory.memory.is_some(),
        "full snapshot stored"
    );
    h.server.shutdown().await;
}

/// The task of every connected agent lives as long as its connection, so
/// its size is paid once per agent (TESTING.md, "Connection cost"). A
/// storage future awaited inline in the session loop once made it tens of
/// KiB; keep it small.
#[tokio::test]
async fn an_idle_connection_task_stays_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = bulwark_store::Store::open_sqlite(&dir.path().join("db.sqlite"))
        .await
        .expect("store");
    let tls = bulwark_server::tls::ServerTls::load_or_create(dir.path(), &[]).expect("tls");
    let state = Arc::new(bulwark_server::gateway::GatewayState {
        store: store.clone(),
        presence: bulwark_server::presence::Presence::new(bulwark_server::bus::Bus::in_process()),
        acceptor: tokio_rustls::TlsAcceptor::from(tls.rustls_config.clone()),
        limits: Limits::default(),
        heartbeat: Duration::from_secs(30),
        slots: Arc::new(tokio::sync::Semaphore::new(1)),
        log: Arc::new(
            bulwark_server::transparency_log::checkpoints::LogSigner::load_or_create(
                dir.path(),
                &[],
            )
            .expect("log key"),
        ),
        witnesses: Arc::new(
            bulwark_server::transparency_log::witnessing::WitnessClient::new()
                .expect("witness client"),
        ),
        alert_nudge: Arc::new(tokio::sync::Notify::new()),
        downloads: bulwark_server::gateway::releases::download_slots(),
        deliveries: bulwark_server::gateway::fanout::Recorder::start(store.clone()),
        proofs: Default::default(),
        admission: bulwark_server::gateway::admission::Admission::new(1, Duration::from_secs(1)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (server_side, peer) = listener.accept().await.expect("accept");
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let turn = state.admission.admit().await.expect("a turn");
    let size = bulwark_server::gateway::session_task_size(state, server_side, peer, shutdown, turn);
    println!("connection task: {size} bytes");
    assert!(
        // 5,528 bytes before frames were handled in their own boxed future.
        size < 5 * 1024,
        "an agent connection's task is {size} bytes"
    );
    drop(client);
}

/// The server's belief of the agent's tree head drifted: the agent said it
/// held one size at `Hello`, but by the time a job comes it holds another
/// (it accepted a larger head meanwhile), so the job's consistency proof
/// starts from a size it does not hold. A real agent refuses that as
/// `log_head_stale`, naming the size it holds. That is no answer and no
/// alarm: the gateway acknowledges it, records no result and no security
/// alert, and sends the same job again on the same connection, proven from
/// the size the agent named — a proof the agent's own check accepts.
#[tokio::test]
async fn a_job_proven_from_a_stale_tree_head_comes_again_proven_from_the_head_the_agent_holds() {
    let h = start().await;
    let store = &h.server.store;
    let customer = h.tenant_id.clone();

    // The customer's workstation enrols and pins the log key, as an agent does.
    let device_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let token = h.token(60_000).await;
    let enrolled = connection::enroll(&h.address(), &token, &device_key, "front-desk")
        .await
        .expect("enrol");
    let log_key = NoteVerifier::from_vkey(&enrolled.log_key).expect("the pinned log key");
    let device_id = enrolled.device_id;

    // Some history in the customer's log, so that it has several tree sizes.
    for n in 0..5 {
        store
            .append_audit(
                NewAuditEvent::new(
                    now_millis(),
                    "test",
                    AuditAction::TenantCreated,
                    &format!("ticket {n}"),
                )
                .in_tenant(Some(&customer)),
            )
            .await
            .expect("audit event");
    }

    // The agent connects and says it holds the head of size 2.
    let said_at_hello = 2;
    let (mut ws, binding) = raw_connect(&h).await;
    let nonce = nonce(&mut ws).await;
    let statement = HelloStatement {
        nonce,
        channel_binding: binding,
        device_id: device_id.clone(),
    };
    let hello = Hello {
        device_id: device_id.clone(),
        agent_version: "x".into(),
        signature: statement.sign(&device_key),
        log_size: Some(said_at_hello),
    };
    ws.send(Message::Binary(
        encode_agent_frame(&AgentMessage::Hello(hello)).into(),
    ))
    .await
    .expect("send");
    match next_message(&mut ws).await {
        Some(ServerMessage::Welcome(_)) => {}
        other => panic!("expected a welcome, got {other:?}"),
    }

    // A technician's job for that workstation is approved: released into the
    // customer's log, and the gateway is told, as the API does.
    let job_id: [u8; 16] = rand::random();
    let job_hex = hex::encode(job_id);
    let technician = store
        .create_operator(
            &bulwark_store::NewOperator {
                username: "technician".to_owned(),
                password_hash: "$argon2id$unused".to_owned(),
                totp_secret: "UNUSED".to_owned(),
            },
            "operator",
            "test",
            now_millis(),
        )
        .await
        .expect("operator");
    let now = now_millis();
    // The gateway sends what is stored; only the agent checks signatures.
    let envelope = b"the job's signed envelope".to_vec();
    let job = store
        .create_job(
            &NewJob {
                id: job_hex.clone(),
                tenant_id: customer.clone(),
                requested_by: technician.id.clone(),
                class: "diagnostics".to_owned(),
                reason: "printer queue stuck".to_owned(),
                script: b"Restart-Service Spooler".to_vec(),
                script_sha256: [1; 32],
                envelope: envelope.clone(),
                signed_sha256: [2; 32],
                not_before: now - 1_000,
                expires_at: now + 600_000,
                state: JobState::Approved,
                signed_with: Vec::new(),
            },
            &[device_id.to_string()],
            now,
            &[
                NewAuditEvent::new(now, &technician.id, AuditAction::JobRequested, &job_hex)
                    .in_tenant(Some(&customer)),
                NewAuditEvent::new(now, &technician.id, AuditAction::JobApproved, &job_hex)
                    .in_tenant(Some(&customer)),
            ],
        )
        .await
        .expect("job stored");
    let released_at = job.release_log_idx.expect("the job is in the log");
    h.server.presence.nudge_device(device_id.as_str());

    // First delivery: proven from the size said at Hello.
    let first = tokio::time::timeout(Duration::from_secs(5), next_job(&mut ws))
        .await
        .expect("the job is delivered");
    assert_eq!(first.envelope, envelope);
    let first_proof = first.log.expect("delivered with its log proof");
    assert_eq!(first_proof.index, released_at);
    assert_eq!(first_proof.consistency_from, said_at_hello);

    // But the agent holds the head of size 4 by now (4 <= the log's size,
    // != 2). Its own check refuses the proof as stale, naming that size.
    let held_size = 4;
    let held = Checkpoint::new(
        log_origin(log_key.name(), &customer),
        held_size,
        Hash(store.log_root_at(&customer, held_size).await.expect("root")),
        vec![],
    )
    .expect("held head");
    let limits = Limits::default();
    assert!(
        matches!(
            verify_log_head(
                &log_key,
                &customer,
                Some(&held),
                &as_policy_proof(&first_proof),
                &limits
            ),
            Err(Refusal::LogHeadStale { held: 4, from: 2 })
        ),
        "a real agent holding size {held_size} answers this proof with log_head_stale"
    );
    let stale = AgentMessage::JobResult(JobResult {
        job_id,
        outcome: JobOutcome::Refused(JobRefused {
            code: AgentRefusalCode::LogHeadStale,
            reason: "the consistency proof starts at size 2, the agent holds size 4".into(),
            log_size: Some(held_size),
        }),
    });
    ws.send(Message::Binary(encode_agent_frame(&stale).into()))
        .await
        .expect("send");

    // Acknowledged (the agent drops it from its spool)...
    match next_message(&mut ws).await {
        Some(ServerMessage::ResultAck(ack)) => assert_eq!(ack.job_id, job_id),
        other => panic!("expected the stale answer to be acknowledged, got {other:?}"),
    }
    // ...and the same job comes again on this connection, proven from the
    // head the agent holds, with a proof its check accepts.
    let again = tokio::time::timeout(Duration::from_secs(5), next_job(&mut ws))
        .await
        .expect("the job comes again on the same connection, proven from the head the agent holds");
    assert_eq!(again.envelope, envelope, "the same job");
    let proof = again.log.expect("sent again with its log proof");
    assert_eq!(proof.index, released_at);
    assert_eq!(proof.consistency_from, held_size);
    let head = verify_log_head(
        &log_key,
        &customer,
        Some(&held),
        &as_policy_proof(&proof),
        &limits,
    )
    .expect("the agent's check accepts the new proof");
    assert!(head.size() > released_at);

    // Not recorded as the workstation's answer, and no alarm raised.
    let targets = store
        .job_targets(&TenantScope::All, &job_hex)
        .await
        .expect("targets");
    assert_eq!(targets.len(), 1);
    assert_eq!(
        targets[0].state,
        TargetState::Delivered,
        "still waiting for its answer"
    );
    assert_eq!(targets[0].refusal_code, None);
    assert_eq!(targets[0].reported_at, None);
    let events = store
        .list_audit(&TenantScope::All, Some(&customer), 1_000)
        .await
        .expect("audit");
    for action in ["job.refused_by_agent", "alert.log_refused"] {
        assert!(
            !events.iter().any(|e| e.action == action),
            "no {action} may be recorded for a stale tree head"
        );
    }
    h.server.shutdown().await;
}

/// The next job the server sends (trust statements skipped).
async fn next_job(ws: &mut Ws) -> Job {
    loop {
        match next_message(ws).await {
            Some(ServerMessage::Job(job)) => return job,
            Some(ServerMessage::Trust(_)) => continue,
            other => panic!("expected a job, got {other:?}"),
        }
    }
}

/// A wire log proof as the agent's check reads it.
fn as_policy_proof(proof: &LogProof) -> JobLogProof<'_> {
    JobLogProof {
        leaf: &proof.leaf,
        index: proof.index,
        checkpoint: &proof.checkpoint,
        inclusion: &proof.inclusion,
        consistency_from: proof.consistency_from,
        consistency: &proof.consistency,
        witnessed_since: None,
        witnessed_since_consistency: &[],
    }
}

/// Connects as `endpoint` and sends its hello in protocol `version` (RFD
/// 0010), as an agent of that version does. The challenge comes in the
/// oldest version the server speaks, which every agent it serves reads.
async fn hello_in(h: &Harness, endpoint: &Endpoint, version: u16) -> Ws {
    let (mut ws, binding) = raw_connect(h).await;
    let challenge = next_frame(&mut ws).await.expect("a challenge");
    assert_eq!(challenge.version, MIN_PROTOCOL_VERSION);
    let ServerMessage::Challenge(challenge) = challenge.message else {
        panic!("expected a challenge, got {challenge:?}");
    };
    let statement = HelloStatement {
        nonce: challenge.nonce,
        channel_binding: binding,
        device_id: endpoint.device_id.clone(),
    };
    let hello = AgentMessage::Hello(Hello {
        device_id: endpoint.device_id.clone(),
        agent_version: format!("speaks {version}"),
        signature: statement.sign(&endpoint.key),
        log_size: None,
    });
    let frame = bulwark_protocol::encode_agent_frame(version, &hello).expect("encodes");
    ws.send(Message::Binary(frame.into())).await.expect("send");
    ws
}

fn inventory_report(seq: u64) -> AgentMessage {
    AgentMessage::Inventory(bulwark_protocol::message::InventoryReport {
        seq,
        full: true,
        inventory: bulwark_protocol::inventory::Inventory::default(),
    })
}

#[tokio::test]
async fn each_connection_speaks_the_version_of_the_agents_first_frame() {
    let h = start().await;
    let endpoint = h.enrolled().await;
    let id = endpoint.device_id.to_string();
    for version in MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION {
        let mut ws = hello_in(&h, &endpoint, version).await;
        let welcome = next_frame(&mut ws).await.expect("a welcome");
        assert!(
            matches!(welcome.message, ServerMessage::Welcome(_)),
            "{welcome:?}"
        );
        assert_eq!(
            welcome.version, version,
            "the welcome is in the hello's version"
        );
        h.wait_online(&id, true).await;
        assert_eq!(h.server.presence.protocol_version(&id), Some(version));
        // Reports in that version are stored and acknowledged in it.
        let frame =
            bulwark_protocol::encode_agent_frame(version, &inventory_report(1)).expect("encodes");
        ws.send(Message::Binary(frame.into())).await.expect("send");
        let ack = next_frame(&mut ws).await.expect("an ack");
        assert!(matches!(ack.message, ServerMessage::Ack(_)), "{ack:?}");
        assert_eq!(ack.version, version);
        let _ = ws.close(None).await;
        h.wait_online(&id, false).await;
    }
    // The agent library speaks the newest.
    let _stop = h.run_agent(endpoint);
    h.wait_online(&id, true).await;
    assert_eq!(
        h.server.presence.protocol_version(&id),
        Some(PROTOCOL_VERSION)
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_newer_agent_is_told_the_newest_version_and_a_switch_mid_session_is_refused() {
    let h = start().await;
    let endpoint = h.enrolled().await;
    let id = endpoint.device_id.to_string();

    // agent-newer-than-server: a hello in the version after this build's.
    // The encoder refuses to write one, so the version byte is changed by
    // hand (the body is the same, as it would be for a message both have).
    let (mut ws, binding) = raw_connect(&h).await;
    let nonce = nonce(&mut ws).await;
    let statement = HelloStatement {
        nonce,
        channel_binding: binding,
        device_id: endpoint.device_id.clone(),
    };
    let hello = AgentMessage::Hello(Hello {
        device_id: endpoint.device_id.clone(),
        agent_version: "from the future".into(),
        signature: statement.sign(&endpoint.key),
        log_size: None,
    });
    let mut frame = encode_agent_frame(&hello);
    assert_eq!(frame[2], u8::try_from(PROTOCOL_VERSION).expect("small"));
    frame[2] += 1;
    ws.send(Message::Binary(frame.into())).await.expect("send");
    let answer = next_frame(&mut ws).await.expect("a refusal");
    assert_eq!(
        answer.version, PROTOCOL_VERSION,
        "the refusal is in the newest version the server speaks: the agent's offer to fall back to"
    );
    match answer.message {
        ServerMessage::Refused(r) => {
            assert_eq!(r.code, RefusalCode::UnsupportedVersion);
            assert!(r.message.contains("this server speaks"), "{}", r.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(closed(&mut ws).await);

    // version-switch-mid-session: welcomed in the newest version, then a
    // heartbeat in the oldest.
    let mut ws = hello_in(&h, &endpoint, PROTOCOL_VERSION).await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Welcome(_))
    ));
    h.wait_online(&id, true).await;
    let old = bulwark_protocol::encode_agent_frame(
        MIN_PROTOCOL_VERSION,
        &AgentMessage::Heartbeat(Heartbeat { seq: 1 }),
    )
    .expect("encodes");
    assert_ne!(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION);
    ws.send(Message::Binary(old.into())).await.expect("send");
    let answer = next_frame(&mut ws).await.expect("a refusal");
    assert_eq!(answer.version, PROTOCOL_VERSION, "in the session's version");
    assert_eq!(
        refusal(Some(answer.message)),
        RefusalCode::UnsupportedVersion
    );
    assert!(closed(&mut ws).await);
    h.wait_online(&id, false).await;
    h.server.shutdown().await;
}

/// An approved job for `device`, stored as the API stores one, and the
/// gateway nudged. Returns its id.
async fn approved_job_for(h: &Harness, device: &str) -> [u8; 16] {
    let store = &h.server.store;
    let job_id: [u8; 16] = rand::random();
    let job_hex = hex::encode(job_id);
    let technician = store
        .create_operator(
            &bulwark_store::NewOperator {
                username: format!("tech-{}", &job_hex[..8]),
                password_hash: "$argon2id$unused".to_owned(),
                totp_secret: "UNUSED".to_owned(),
            },
            "operator",
            "test",
            now_millis(),
        )
        .await
        .expect("operator");
    let now = now_millis();
    store
        .create_job(
            &NewJob {
                id: job_hex.clone(),
                tenant_id: h.tenant_id.clone(),
                requested_by: technician.id.clone(),
                class: "diagnostics".to_owned(),
                reason: "flood".to_owned(),
                script: b"yes".to_vec(),
                script_sha256: [1; 32],
                envelope: b"envelope".to_vec(),
                signed_sha256: [2; 32],
                not_before: now - 1_000,
                expires_at: now + 600_000,
                state: JobState::Approved,
                signed_with: Vec::new(),
            },
            &[device.to_owned()],
            now,
            &[],
        )
        .await
        .expect("job stored");
    h.server.presence.nudge_device(device);
    job_id
}

/// RFD 0012, a malicious agent: a flood of live output pieces for a job it
/// runs is cut at its own connection (a rate) and in storage (1 MiB per
/// target), pieces for a job it was not sent are dropped, its connection
/// and another agent's go on, and the cancel still reaches it. A version 2
/// connection is never sent a cancel (it has no such message).
#[tokio::test]
async fn a_flood_of_live_output_is_capped_and_a_cancel_still_arrives() {
    use bulwark_protocol::message::{JobOutput, JobStarted, OutputStream};
    let h = start().await;
    let store = &h.server.store;
    let honest = h.enrolled().await;
    let honest_id = honest.device_id.to_string();
    let _stop = h.run_agent(honest);
    h.wait_online(&honest_id, true).await;

    let flooder = h.enrolled().await;
    let device = flooder.device_id.to_string();
    let mut ws = hello_in(&h, &flooder, 3).await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Welcome(_))
    ));
    let job_id = approved_job_for(&h, &device).await;
    let job_hex = hex::encode(job_id);
    next_job(&mut ws).await;
    let send = |m: AgentMessage| bulwark_protocol::encode_agent_frame(3, &m).expect("encodes");
    ws.send(Message::Binary(
        send(AgentMessage::JobStarted(JobStarted {
            job_id,
            started_at_ms: 1,
        }))
        .into(),
    ))
    .await
    .expect("send");
    // 2,000 full pieces (31 MiB) as fast as the socket takes them, and
    // pieces for a job this device was never sent.
    let limits = Limits::default();
    let piece = vec![b'x'; limits.max_output_chunk_bytes];
    for seq in 0..2_000u64 {
        let message = AgentMessage::JobOutput(JobOutput {
            job_id: if seq % 10 == 9 { [7; 16] } else { job_id },
            seq,
            stream: OutputStream::Stdout,
            data: piece.clone(),
            skipped: 0,
        });
        ws.send(Message::Binary(send(message).into()))
            .await
            .expect("send");
    }
    // Still connected, and heard: a heartbeat's frame is read after the flood.
    ws.send(Message::Binary(
        send(AgentMessage::Heartbeat(Heartbeat { seq: 1 })).into(),
    ))
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        h.server.presence.is_online(&device),
        "the flooder was disconnected"
    );
    assert!(
        h.server.presence.is_online(&honest_id),
        "the honest agent was hurt"
    );
    let target = store
        .job_targets(&TenantScope::All, &job_hex)
        .await
        .expect("targets")
        .remove(0);
    assert!(target.running_at.is_some());
    assert!(
        usize::try_from(target.live_bytes).expect("size") <= limits.max_live_output_bytes,
        "{} bytes kept",
        target.live_bytes
    );
    let rows = store
        .job_output(&TenantScope::All, &job_hex, Some(&device), None, 10_000)
        .await
        .expect("output");
    assert!(
        rows.len() <= 200,
        "{} pieces stored: the rate did not hold",
        rows.len()
    );
    assert!(
        store
            .job_output(&TenantScope::All, &hex::encode([7u8; 16]), None, None, 10)
            .await
            .expect("output")
            .is_empty()
    );

    // The operator cancels: the cancel reaches this version 3 connection.
    let cancelled = store
        .cancel_job(
            &job_hex,
            &target_operator(&h, &job_hex).await,
            "enough",
            now_millis(),
            &[],
        )
        .await
        .expect("cancel");
    assert_eq!(cancelled.delivered, vec![device.clone()]);
    h.server.presence.nudge_device(&device);
    let cancel = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match next_message(&mut ws).await {
                Some(ServerMessage::CancelJob(c)) => return c,
                Some(_) => continue,
                None => panic!("closed"),
            }
        }
    })
    .await
    .expect("a cancel arrives");
    assert_eq!((cancel.job_id, cancel.reason.as_str()), (job_id, "enough"));

    // A version 2 connection with a cancelled job gets no cancel, and stays.
    let old = h.enrolled().await;
    let old_id = old.device_id.to_string();
    let mut old_ws = hello_in(&h, &old, 2).await;
    assert!(matches!(
        next_message(&mut old_ws).await,
        Some(ServerMessage::Welcome(_))
    ));
    let old_job = hex::encode(approved_job_for(&h, &old_id).await);
    next_job(&mut old_ws).await;
    store
        .cancel_job(
            &old_job,
            &target_operator(&h, &old_job).await,
            "enough",
            now_millis(),
            &[],
        )
        .await
        .expect("cancel");
    h.server.presence.nudge_device(&old_id);
    let next = tokio::time::timeout(Duration::from_secs(2), next_message(&mut old_ws)).await;
    assert!(
        !matches!(next, Ok(Some(ServerMessage::CancelJob(_))) | Ok(None)),
        "{next:?}"
    );
    assert!(h.server.presence.is_online(&old_id));
    h.server.shutdown().await;
}

/// The operator who requested a job.
async fn target_operator(h: &Harness, job_hex: &str) -> String {
    h.server
        .store
        .job(&TenantScope::All, job_hex)
        .await
        .expect("job")
        .expect("exists")
        .requested_by
}

/// RFD 0015, a malicious agent reporting shell sessions: its own session's
/// end goes into the tenant's log with the digest it reported, once; an end
/// for another device's session is ignored; recording pieces are stored
/// only in order and within the reported length.
#[tokio::test]
async fn shell_session_ends_are_logged_once_and_recordings_stay_in_bounds() {
    use bulwark_protocol::message::{RecordingDigest, ShellClosed, ShellRecording};
    use bulwark_store::NewShellGrant;
    use sha2::Digest;
    let h = start().await;
    let store = &h.server.store;
    let agent = h.enrolled().await;
    let device = agent.device_id.to_string();
    let other = h.enrolled().await;
    let other_device = other.device_id.to_string();
    let operator = store
        .create_operator(
            &bulwark_store::NewOperator {
                username: "shell-tech".to_owned(),
                password_hash: "$argon2id$unused".to_owned(),
                totp_secret: "UNUSED".to_owned(),
            },
            "operator",
            "test",
            now_millis(),
        )
        .await
        .expect("operator");
    let now = now_millis();
    for (grant, on) in [("aa", &device), ("bb", &other_device)] {
        store
            .create_shell_grant(
                &NewShellGrant {
                    id: grant.repeat(16),
                    tenant_id: h.tenant_id.clone(),
                    device_id: on.clone(),
                    requested_by: operator.id.clone(),
                    grantee_key: "cd".repeat(32),
                    account: "unprivileged".to_owned(),
                    reason: "test".to_owned(),
                    not_before: now / 1000,
                    expires_at: now / 1000 + 600,
                    envelope: vec![1],
                },
                now,
                &[],
            )
            .await
            .expect("grant");
    }
    let mine = [0x11; 16];
    let theirs = [0x22; 16];
    store
        .open_shell_session(&hex::encode(mine), &"aa".repeat(16), &operator.id, now, &[])
        .await
        .expect("session");
    store
        .open_shell_session(
            &hex::encode(theirs),
            &"bb".repeat(16),
            &operator.id,
            now,
            &[],
        )
        .await
        .expect("session");

    let mut ws = hello_in(&h, &agent, PROTOCOL_VERSION).await;
    assert!(matches!(
        next_message(&mut ws).await,
        Some(ServerMessage::Welcome(_))
    ));
    let recording = b"{\"version\": 2}\n[0.1, \"o\", \"hi\"]\n".to_vec();
    let digest: [u8; 32] = sha2::Sha256::digest(&recording).into();
    let closed = |session_id| {
        AgentMessage::ShellClosed(ShellClosed {
            session_id,
            refusal: None,
            reason: "the shell exited".to_owned(),
            recording: Some(RecordingDigest {
                sha256: digest,
                len: recording.len() as u64,
                truncated: false,
            }),
        })
    };
    let piece = |offset: usize, data: &[u8]| {
        AgentMessage::ShellRecording(ShellRecording {
            session_id: mine,
            offset: offset as u64,
            data: data.to_vec(),
        })
    };
    for message in [
        closed(theirs),
        closed(mine),
        closed(mine),
        piece(5, &recording[5..]),
        piece(0, &recording[..10]),
        piece(10, &recording[10..]),
        piece(recording.len(), b"more"),
    ] {
        ws.send(Message::Binary(encode_agent_frame(&message).into()))
            .await
            .expect("send");
    }
    // The connection lives on, and every report before this one was
    // handled: an inventory report after them is acknowledged.
    ws.send(Message::Binary(
        encode_agent_frame(&inventory_report(7)).into(),
    ))
    .await
    .expect("send");
    loop {
        match next_message(&mut ws).await {
            Some(ServerMessage::Ack(ack)) if ack.seq == 7 => break,
            Some(_) => {}
            None => panic!("the connection closed"),
        }
    }
    let sessions = store
        .shell_sessions(&TenantScope::All, &device)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].end.recording_sha256.as_deref(),
        Some(hex::encode(digest).as_str())
    );
    let (_, stored) = store
        .shell_recording(&TenantScope::All, &hex::encode(mine))
        .await
        .expect("recording")
        .expect("exists");
    assert_eq!(stored, recording);
    let theirs_now = store
        .shell_sessions(&TenantScope::All, &other_device)
        .await
        .expect("sessions");
    assert_eq!(theirs_now[0].closed_at, None, "another device closed it");
    let logged: Vec<String> = store
        .log_entries(&h.tenant_id, 0, 1000)
        .await
        .expect("log")
        .iter()
        .filter_map(|e| bulwark_protocol::audit_leaf::AuditLeaf::decode(&e.leaf).ok())
        .filter(|l| l.action == AuditAction::ShellSession.as_str())
        .map(|l| l.detail.to_string())
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains(&hex::encode(digest)), "{logged:?}");
}
