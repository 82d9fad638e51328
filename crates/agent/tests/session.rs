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
    AgentMessage, Challenge, DeviceId, JobOutcome, JobResult, ResultAck, ServerMessage,
    TrustStatus, Welcome,
};
use bulwark_protocol::token::certificate_fingerprint;
use bulwark_protocol::{Limits, decode_agent_frame, encode_server_frame};
use common::*;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

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

    /// The next agent connection, up to and including `Welcome`.
    async fn accept(&self) -> Ws {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), self.listener.accept())
            .await
            .expect("the agent connects")
            .expect("accept");
        let tls = self.acceptor.accept(tcp).await.expect("TLS");
        let mut ws = tokio_tungstenite::accept_async(tls)
            .await
            .expect("WebSocket");
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
    ws.send(Message::Binary(encode_server_frame(&message).into()))
        .await
        .expect("send");
}

/// The next agent message other than a heartbeat; counts the heartbeats.
async fn recv(ws: &mut Ws, heartbeats: &mut u32) -> AgentMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the agent is silent")
            .expect("the agent closed the connection")
            .expect("frame");
        if let Message::Binary(bytes) = frame {
            match decode_agent_frame(&bytes, &Limits::default()).expect("a valid frame") {
                AgentMessage::Heartbeat(_) => *heartbeats += 1,
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
