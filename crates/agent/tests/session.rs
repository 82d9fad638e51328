//! The real session code against a stand-in gateway on loopback (TLS with a
//! pinned CA, WebSocket, protocol frames): trust statements are applied and
//! reported, a job runs without holding up heartbeats, its result is sent
//! again after a reconnect until the gateway acknowledges it, and a replay
//! is refused. The server's own side is tested in `crates/server`.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_agent::connection::{self, Endpoint, ServerAddress, SessionOptions};
use bulwark_agent::inventory::Collector;
use bulwark_agent::jobs::{self, JobRunner};
use bulwark_agent::trust::TrustState;
use bulwark_policy::root::root_fingerprint;
use bulwark_protocol::message::{
    Ack, AgentMessage, Challenge, DeviceId, Enrolled, JobOutcome, JobResult, RefusalCode, Refused,
    ResultAck, ServerMessage, TrustStatus, Welcome,
};
use bulwark_protocol::token::{EnrollToken, certificate_fingerprint};
use bulwark_protocol::{
    Limits, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, decode_agent_frame, encode_server_frame,
};
use common::*;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Ws = WebSocketStream<tokio_rustls::server::TlsStream<TcpStream>>;

struct Gateway {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ca_fingerprint: [u8; 32],
}

impl Gateway {
    async fn start() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca = ca.self_signed(&ca_key).expect("CA");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf");
        let chain = vec![
            CertificateDer::from(leaf.der().to_vec()),
            CertificateDer::from(ca.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        Self {
            listener: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            acceptor: TlsAcceptor::from(Arc::new(config)),
            ca_fingerprint: certificate_fingerprint(ca.der()),
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("address").port()
    }

    /// The next agent connection: TLS and the WebSocket upgrade only.
    async fn accept_raw(&self) -> Ws {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), self.listener.accept())
            .await
            .expect("the agent connects")
            .expect("accept");
        let tls = self.acceptor.accept(tcp).await.expect("TLS");
        tokio_tungstenite::accept_async(tls)
            .await
            .expect("WebSocket")
    }

    /// The next agent connection, up to and including `Welcome`.
    async fn accept(&self) -> Ws {
        let mut ws = self.accept_raw().await;
        send(
            &mut ws,
            ServerMessage::Challenge(Challenge {
                nonce: [7; 32],
                server_version: "stand-in".into(),
            }),
        )
        .await;
        // The signature is the gateway's business (tested in crates/server).
        assert!(matches!(
            recv(&mut ws, &mut 0).await,
            AgentMessage::Hello(_)
        ));
        send(
            &mut ws,
            ServerMessage::Welcome(Welcome {
                device_id: DeviceId::parse(DEVICE).expect("device id"),
                tenant: "acme".into(),
                heartbeat_secs: 1,
            }),
        )
        .await;
        ws
    }
}

async fn send(ws: &mut Ws, message: ServerMessage) {
    send_in(ws, PROTOCOL_VERSION, message).await;
}

async fn send_in(ws: &mut Ws, version: u16, message: ServerMessage) {
    let frame = encode_server_frame(version, &message).expect("encodes");
    ws.send(Message::Binary(frame.into())).await.expect("send");
}

/// The next agent message other than a heartbeat or a running job's live
/// progress (`JobStarted`, `JobOutput`, RFD 0012); counts the heartbeats.
async fn recv(ws: &mut Ws, heartbeats: &mut u32) -> AgentMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the agent is silent")
            .expect("the agent closed the connection")
            .expect("frame");
        if let Message::Binary(bytes) = frame {
            let frame = decode_agent_frame(&bytes, &Limits::default()).expect("a valid frame");
            assert_eq!(frame.version, PROTOCOL_VERSION, "{frame:?}");
            match frame.message {
                AgentMessage::Heartbeat(_) => *heartbeats += 1,
                AgentMessage::JobStarted(_) | AgentMessage::JobOutput(_) => {}
                message => return message,
            }
        }
    }
}

fn result(message: AgentMessage) -> JobResult {
    match message {
        AgentMessage::JobResult(r) => r,
        other => panic!("expected a job result, got {other:?}"),
    }
}

fn stdout(result: &JobResult) -> String {
    match &result.outcome {
        JobOutcome::Ran(run) => String::from_utf8_lossy(&run.stdout).into_owned(),
        JobOutcome::Refused(r) => panic!("refused: {} ({})", r.reason, r.code),
    }
}

async fn until_gone(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(Instant::now() < deadline, "{} stays", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn trust_jobs_and_results_over_a_real_session() {
    let k = keys();
    let gateway = Gateway::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().to_owned();

    // The agent: pinned at enrolment, then its job runner and sessions.
    TrustState::pin(&state_dir, &root_fingerprint(&signed_v1(&k))).expect("pin");
    TrustState::pin_log_key(&state_dir, &log_signer().verifier().to_vkey()).expect("pin log key");
    let held = TrustState::load(&state_dir, &bulwark_policy::Limits::default()).expect("trust");
    let runner = JobRunner::open(
        &state_dir,
        DEVICE,
        &DEVICE_PUBLIC_KEY,
        Arc::new(Mutex::new(held)),
    )
    .expect("job runner")
    .with_supervisor(env!("CARGO_BIN_EXE_bulwark-agent").into());
    let (handle, worker) = jobs::start(runner);
    tokio::spawn(worker);
    let endpoint = Endpoint {
        address: ServerAddress {
            host: "localhost".into(),
            port: gateway.port(),
        },
        pin: gateway.ca_fingerprint,
        device_id: DeviceId::parse(DEVICE).expect("device id"),
        key: SigningKey::from_bytes(&[42; 32]),
    };
    let options = SessionOptions {
        inventory_interval: Duration::from_secs(3600),
        jobs: Some(handle),
        ..SessionOptions::default()
    };
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(async move {
        let mut collector = Collector::new("test");
        let mut ends = Vec::new();
        loop {
            let end = connection::session(
                &endpoint,
                &mut collector,
                &options,
                &mut stopped,
                &mut || {},
            )
            .await;
            let stop_requested = end.is_ok();
            ends.push(end.map_err(|e| e.to_string()));
            if stop_requested {
                return ends;
            }
        }
    });

    let spooled = |id: u8| {
        state_dir
            .join("jobs/results")
            .join(format!("{}.cbor", hex::encode([id; 16])))
    };
    let mut heartbeats = 0;
    let mut ws = gateway.accept().await;
    assert!(matches!(
        recv(&mut ws, &mut heartbeats).await,
        AgentMessage::Inventory(r) if r.full
    ));

    // The tenant's root and policy: accepted, and the status says so.
    let policy_v1 = signed(&policy(&k, 1), &[&k.root_a, &k.customer]);
    send(
        &mut ws,
        ServerMessage::Trust(trust(&[&signed_v1(&k)], Some(&policy_v1), None)),
    )
    .await;
    let held = TrustStatus {
        root_version: Some(1),
        policy_version: Some(1),
        freeze_sequence: 0,
        frozen: false,
    };
    assert_eq!(
        recv(&mut ws, &mut heartbeats).await,
        AgentMessage::TrustStatus(held.clone())
    );
    // A policy the server signed itself: refused, reported, not adopted.
    let forged = signed(&policy(&k, 2), &[&k.mallory]);
    send(
        &mut ws,
        ServerMessage::Trust(trust(&[&signed_v1(&k)], Some(&forged), None)),
    )
    .await;
    match recv(&mut ws, &mut heartbeats).await {
        AgentMessage::TrustRefused(r) => {
            assert_eq!(
                (r.kind.as_str(), r.version, r.code.as_str()),
                ("policy", 2, "root_threshold_not_met")
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        recv(&mut ws, &mut heartbeats).await,
        AgentMessage::TrustStatus(held)
    );
    assert!(state_dir.join("trust/policy.signed").exists());

    // A job of two seconds: heartbeats go on while it runs.
    send(
        &mut ws,
        ServerMessage::Job(job(&k, 1, b"sleep 2\necho one\n", 30)),
    )
    .await;
    heartbeats = 0;
    let one = result(recv(&mut ws, &mut heartbeats).await);
    assert_eq!((one.job_id, stdout(&one).as_str()), ([1; 16], "one\n"));
    assert!(heartbeats >= 1, "no heartbeat while the job ran");
    assert!(spooled(1).exists());
    send(
        &mut ws,
        ServerMessage::ResultAck(ResultAck { job_id: [1; 16] }),
    )
    .await;
    until_gone(&spooled(1)).await;

    // Job 2's result is not acknowledged before the connection drops...
    send(&mut ws, ServerMessage::Job(job(&k, 2, b"echo two\n", 30))).await;
    let two = result(recv(&mut ws, &mut heartbeats).await);
    assert_eq!(stdout(&two), "two\n");
    drop(ws);

    // ...so after the next Welcome it comes again (and job 1's does not).
    let mut ws = gateway.accept().await;
    assert!(matches!(
        recv(&mut ws, &mut heartbeats).await,
        AgentMessage::Inventory(r) if r.full
    ));
    assert_eq!(result(recv(&mut ws, &mut heartbeats).await), two);
    send(
        &mut ws,
        ServerMessage::ResultAck(ResultAck { job_id: [2; 16] }),
    )
    .await;
    until_gone(&spooled(2)).await;

    // Job 1 delivered again after its result was acknowledged (a server
    // restored from a backup): not run again, not refused, answered with
    // what it did (the same result, timestamps and all).
    send(&mut ws, ServerMessage::Job(job(&k, 1, b"echo one\n", 30))).await;
    let again = result(recv(&mut ws, &mut heartbeats).await);
    assert_eq!(again, one, "job 1 ran again or was refused");

    stop.send(true).expect("stop");
    let ends = agent.await.expect("agent task");
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(
        ends[0].is_err(),
        "the first session ended with the connection"
    );
    assert!(ends[1].is_ok(), "the second ended on request");
}

// ---------------------------------------------------------------------------
// Protocol versions (RFD 0010): a server older than the agent, and servers
// that answer in a version the connection did not negotiate.
// ---------------------------------------------------------------------------

fn endpoint_of(gateway: &Gateway) -> Endpoint {
    Endpoint {
        address: ServerAddress {
            host: "localhost".into(),
            port: gateway.port(),
        },
        pin: gateway.ca_fingerprint,
        device_id: DeviceId::parse(DEVICE).expect("device id"),
        key: SigningKey::from_bytes(&[42; 32]),
    }
}

/// One session of an agent that runs no jobs, in the background.
fn spawn_session(
    endpoint: Endpoint,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut collector = Collector::new("test");
        connection::session(
            &endpoint,
            &mut collector,
            &SessionOptions::default(),
            &mut stopped,
            &mut || {},
        )
        .await
        .map_err(|e| e.to_string())
    });
    (stop, task)
}

/// The agent's next frame, of any version: (version, message).
async fn recv_frame(ws: &mut Ws) -> (u16, AgentMessage) {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the agent is silent")
            .expect("the agent closed the connection")
            .expect("frame");
        if let Message::Binary(bytes) = frame {
            let frame = decode_agent_frame(&bytes, &Limits::default()).expect("a valid frame");
            return (frame.version, frame.message);
        }
    }
}

fn challenge() -> ServerMessage {
    ServerMessage::Challenge(Challenge {
        nonce: [7; 32],
        server_version: "stand-in".into(),
    })
}

fn welcome() -> ServerMessage {
    ServerMessage::Welcome(Welcome {
        device_id: DeviceId::parse(DEVICE).expect("device id"),
        tenant: "acme".into(),
        heartbeat_secs: 1,
    })
}

/// What a server of protocol version 1 answers a frame of a later version:
/// the refusal it has always sent, in a version 1 frame.
fn old_servers_refusal() -> ServerMessage {
    ServerMessage::Refused(Refused {
        code: RefusalCode::UnsupportedVersion,
        message: "unsupported protocol version".into(),
    })
}

/// The agent closes the connection with a protocol-error close frame whose
/// reason says what the server did; frames before it are skipped.
async fn closed_for_protocol_error(ws: &mut Ws) -> String {
    // One deadline for the whole wait: an agent that keeps talking (its
    // heartbeats) instead of closing fails the test rather than hanging it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the agent closes in time");
        match frame {
            Some(Ok(Message::Close(Some(close)))) => {
                assert_eq!(close.code, CloseCode::Protocol, "{close:?}");
                return close.reason.to_string();
            }
            Some(Ok(Message::Close(None)) | Err(_)) | None => {
                panic!("closed without saying why")
            }
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn an_agent_newer_than_its_server_speaks_the_servers_version() {
    let gateway = Gateway::start().await;
    assert_eq!((MIN_PROTOCOL_VERSION, PROTOCOL_VERSION), (1, 7));

    // Enrolment: refused by an old server in version 1, then done in it.
    let token = EnrollToken {
        secret: [9; 32],
        ca_fingerprint: gateway.ca_fingerprint,
        root_fingerprint: [0; 32],
    };
    let address = endpoint_of(&gateway).address;
    let enrolling = tokio::spawn(async move {
        let key = SigningKey::from_bytes(&[42; 32]);
        connection::enroll(&address, &token, &key, "new-agent").await
    });
    let mut ws = gateway.accept_raw().await;
    send_in(&mut ws, 1, challenge()).await;
    let (version, first) = recv_frame(&mut ws).await;
    assert_eq!(
        version, PROTOCOL_VERSION,
        "the first try is in the newest version"
    );
    assert!(matches!(first, AgentMessage::Enroll(_)), "{first:?}");
    send_in(&mut ws, 1, old_servers_refusal()).await;
    let mut ws = gateway.accept_raw().await;
    send_in(&mut ws, 1, challenge()).await;
    let (version, first) = recv_frame(&mut ws).await;
    assert_eq!(
        version, 1,
        "then in the version the server's refusal came in"
    );
    assert!(matches!(first, AgentMessage::Enroll(_)), "{first:?}");
    let assigned = Enrolled {
        device_id: DeviceId::parse(DEVICE).expect("device id"),
        tenant: "acme".into(),
        log_key: "unused".into(),
    };
    send_in(&mut ws, 1, ServerMessage::Enrolled(assigned.clone())).await;
    assert_eq!(
        enrolling
            .await
            .expect("task")
            .expect("enrolled in version 1"),
        assigned
    );

    // A session: the same, and every frame after is in version 1.
    let (stop, session) = spawn_session(endpoint_of(&gateway));
    let mut ws = gateway.accept_raw().await;
    send_in(&mut ws, 1, challenge()).await;
    let (version, hello) = recv_frame(&mut ws).await;
    assert_eq!(version, PROTOCOL_VERSION);
    assert!(matches!(hello, AgentMessage::Hello(_)), "{hello:?}");
    send_in(&mut ws, 1, old_servers_refusal()).await;
    let mut ws = gateway.accept_raw().await;
    send_in(&mut ws, 1, challenge()).await;
    assert!(matches!(
        recv_frame(&mut ws).await,
        (1, AgentMessage::Hello(_))
    ));
    send_in(&mut ws, 1, welcome()).await;
    assert!(matches!(
        recv_frame(&mut ws).await,
        (1, AgentMessage::Inventory(r)) if r.full
    ));
    send_in(&mut ws, 1, ServerMessage::Ack(Ack { seq: 1 })).await;
    assert!(matches!(
        recv_frame(&mut ws).await,
        (1, AgentMessage::Heartbeat(_))
    ));
    stop.send(true).expect("stop");
    assert_eq!(session.await.expect("task"), Ok(()));
}

#[tokio::test]
async fn a_server_answering_in_another_version_is_refused_and_closed() {
    let gateway = Gateway::start().await;

    // welcome-in-another-version: a hello in 2 welcomed in 1.
    let (_stop, session) = spawn_session(endpoint_of(&gateway));
    let mut ws = gateway.accept_raw().await;
    send_in(&mut ws, 1, challenge()).await;
    assert!(matches!(
        recv_frame(&mut ws).await,
        (PROTOCOL_VERSION, AgentMessage::Hello(_))
    ));
    send_in(&mut ws, 1, welcome()).await;
    let reason = closed_for_protocol_error(&mut ws).await;
    assert!(
        reason.contains(&format!("negotiated version {PROTOCOL_VERSION}")),
        "{reason}"
    );
    let error = session.await.expect("task").expect_err("refused");
    assert!(error.contains("protocol version 1"), "{error}");

    // version-switch-mid-session: welcomed in 2, then an Ack in 1.
    let (_stop, session) = spawn_session(endpoint_of(&gateway));
    let mut ws = gateway.accept().await;
    send_in(&mut ws, 1, ServerMessage::Ack(Ack { seq: 1 })).await;
    let reason = closed_for_protocol_error(&mut ws).await;
    assert!(reason.contains("version 1"), "{reason}");
    assert!(session.await.expect("task").is_err());

    // version-outside-the-range: a frame of the version after this one,
    // which no encoder here writes (the version byte is changed by hand).
    let (_stop, session) = spawn_session(endpoint_of(&gateway));
    let mut ws = gateway.accept().await;
    let mut frame = encode_server_frame(PROTOCOL_VERSION, &ServerMessage::Ack(Ack { seq: 1 }))
        .expect("encodes");
    let next = PROTOCOL_VERSION + 1;
    frame[2] = u8::try_from(next).expect("a version byte");
    ws.send(Message::Binary(frame.into())).await.expect("send");
    let reason = closed_for_protocol_error(&mut ws).await;
    assert!(
        reason.contains(&format!("unsupported protocol version {next}")),
        "{reason}"
    );
    assert!(session.await.expect("task").is_err());

    // downgrade-below-the-floor: a refusal "in version 0" is not even read.
    let (_stop, session) = spawn_session(endpoint_of(&gateway));
    let mut ws = gateway.accept_raw().await;
    send_in(&mut ws, 1, challenge()).await;
    assert!(matches!(
        recv_frame(&mut ws).await,
        (PROTOCOL_VERSION, AgentMessage::Hello(_))
    ));
    let mut frame = encode_server_frame(1, &old_servers_refusal()).expect("encodes");
    frame[2] = 0;
    ws.send(Message::Binary(frame.into())).await.expect("send");
    let reason = closed_for_protocol_error(&mut ws).await;
    assert!(
        reason.contains("unsupported protocol version 0"),
        "{reason}"
    );
    assert!(session.await.expect("task").is_err());
}
