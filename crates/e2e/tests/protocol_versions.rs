//! Protocol versions (RFD 0010), end to end against `bulwark up`: an agent
//! deployed before version 2, played frame by frame in version 1, keeps
//! working against today's server with the device identity it enrolled
//! with: it enrols, says hello, reports, and receives and answers a signed
//! job, every frame both ways in version 1. The agent beside it (`bulwark
//! up`'s own, today's binary) negotiates version 2, and the API, the CLI and
//! the console show each device's version. The old agent switching version
//! mid-session is refused and disconnected.
//!
//! The stand-in speaks exactly the old frames: a version 1 frame written by
//! today's encoder is byte for byte what version 1 wrote (the vectors of
//! `crates/protocol/tests/canonical.rs`, `frame_vectors`, are version 1's).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bulwark_e2e::{OPERATOR_WAIT, OperatorSetup, wait_for};
use bulwark_policy::Signed;
use bulwark_policy::job::JobStatement;
use bulwark_protocol::envelope::{
    CHANNEL_BINDING_LABEL, DeviceStatement, EnrollStatement, HelloStatement,
};
use bulwark_protocol::inventory::Inventory;
use bulwark_protocol::message::{
    AgentMessage, AgentRefusalCode, DeviceId, Enroll, Heartbeat, Hello, InventoryReport,
    JobOutcome, JobRefused, JobResult, RefusalCode, ServerMessage, TrustStatus,
};
use bulwark_protocol::token::EnrollToken;
use bulwark_protocol::{Limits, PROTOCOL_VERSION, decode_server_frame, encode_agent_frame};
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const PASSPHRASE: &str = "protocol versions passphrase";
/// What agents deployed before RFD 0010 speak, in every frame.
const V1: u16 = 1;
const HOSTNAME: &str = "old-agent";

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// An agent of protocol version 1: the frames it sends and the checks it
/// makes on what it reads (a frame of any other version is refused).
struct OldAgent {
    ws: Ws,
}

impl OldAgent {
    /// TLS pinned to the token's CA, the WebSocket upgrade, and the
    /// challenge, which must come in version 1 for such an agent to read it.
    /// Returns the agent, the nonce and the channel binding.
    async fn connect(gateway_url: &str, pin: [u8; 32]) -> Result<(Self, [u8; 32], [u8; 32])> {
        let authority = gateway_url
            .strip_prefix("https://")
            .context("the gateway URL is https")?
            .trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').context("a port")?;
        let port: u16 = port.parse()?;
        let config = bulwark_agent::pinning::client_config(pin)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect((host, port)).await?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
        let tls = connector.connect(name, tcp).await?;
        let mut binding = [0u8; 32];
        tls.get_ref()
            .1
            .export_keying_material(&mut binding, CHANNEL_BINDING_LABEL, None)?;
        let url = format!("wss://{host}:{port}/agent/v1");
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tls).await?;
        let mut agent = Self { ws };
        match agent.next().await? {
            ServerMessage::Challenge(c) => Ok((agent, c.nonce, binding)),
            other => bail!("expected a challenge, got {other:?}"),
        }
    }

    async fn send(&mut self, message: &AgentMessage) -> Result<()> {
        self.send_in(V1, message).await
    }

    async fn send_in(&mut self, version: u16, message: &AgentMessage) -> Result<()> {
        let frame = encode_agent_frame(version, message)?;
        self.ws.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    /// The server's next message, from a frame that must be version 1.
    async fn next(&mut self) -> Result<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .context("the server is silent")?
                .context("the server closed the connection")??;
            match frame {
                Message::Binary(bytes) => {
                    let frame = decode_server_frame(&bytes, &Limits::default())?;
                    ensure!(
                        frame.version == V1,
                        "a version {} frame to a version 1 agent: {:?}",
                        frame.version,
                        frame.message
                    );
                    return Ok(frame.message);
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => bail!("unexpected {other:?}"),
            }
        }
    }

    /// The next message other than the tenant's trust statements, which it
    /// answers as an agent that verified none of them (it holds nothing).
    async fn next_work(&mut self) -> Result<ServerMessage> {
        loop {
            match self.next().await? {
                ServerMessage::Trust(_) => {
                    let status = TrustStatus {
                        root_version: None,
                        policy_version: None,
                        freeze_sequence: 0,
                        frozen: false,
                    };
                    self.send(&AgentMessage::TrustStatus(status)).await?;
                }
                other => return Ok(other),
            }
        }
    }

    /// The server closed the connection (after a refusal).
    async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await,
            Ok(None | Some(Ok(Message::Close(_))) | Some(Err(_)))
        )
    }
}

#[tokio::test]
async fn a_version_1_agent_keeps_working_beside_one_that_negotiates_2() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let gateway = s.up.info.gateway_url.clone();

    // Today's agent (`bulwark up`'s) negotiated the newest version.
    assert_eq!(PROTOCOL_VERSION, 7);
    let local = s.api.device(&s.local).await?;
    ensure!(
        local.protocol_version == Some(PROTOCOL_VERSION),
        "the current agent: {local:?}"
    );
    let shown = s.cli(&["device", "show", &s.local], None).await?.ok()?;
    ensure!(
        shown
            .stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["Protocol", "7"])),
        "`bulwark device show`:\n{}",
        shown.stdout
    );

    // Enrolment in version 1, with a token issued today.
    let token = EnrollToken::parse(&s.api.issue_token("demo").await?)?;
    let key = SigningKey::from_bytes(&rand::random());
    let (mut old, nonce, channel_binding) =
        OldAgent::connect(&gateway, token.ca_fingerprint).await?;
    let device_key = key.verifying_key().to_bytes();
    let statement = EnrollStatement {
        nonce,
        channel_binding,
        device_key,
        token_hash: token.secret_hash(),
    };
    old.send(&AgentMessage::Enroll(Enroll {
        token_secret: token.secret,
        device_key,
        hostname: HOSTNAME.into(),
        agent_version: "0.1.0".into(),
        signature: statement.sign(&key),
    }))
    .await?;
    let device: DeviceId = match old.next().await? {
        ServerMessage::Enrolled(enrolled) => enrolled.device_id,
        other => bail!("expected enrolment, got {other:?}"),
    };
    let id = device.to_string();

    // Hello, a report and a heartbeat in version 1.
    let (mut old, nonce, channel_binding) =
        OldAgent::connect(&gateway, token.ca_fingerprint).await?;
    let statement = HelloStatement {
        nonce,
        channel_binding,
        device_id: device.clone(),
    };
    old.send(&AgentMessage::Hello(Hello {
        device_id: device.clone(),
        agent_version: "0.1.0".into(),
        signature: statement.sign(&key),
        log_size: None,
    }))
    .await?;
    match old.next().await? {
        ServerMessage::Welcome(w) => ensure!(w.device_id == device, "{w:?}"),
        other => bail!("expected a welcome, got {other:?}"),
    }
    old.send(&AgentMessage::Inventory(InventoryReport {
        seq: 1,
        full: true,
        inventory: Inventory::default(),
    }))
    .await?;
    old.send(&AgentMessage::Heartbeat(Heartbeat { seq: 2 }))
        .await?;
    match old.next_work().await? {
        ServerMessage::Ack(ack) => ensure!(ack.seq == 1, "{ack:?}"),
        other => bail!("expected the report's ack, got {other:?}"),
    }
    let view = s.api.device(&id).await?;
    ensure!(
        view.online && view.protocol_version == Some(V1) && view.hostname == HOSTNAME,
        "the version 1 agent: {view:?}"
    );
    let page = s.console_page(&format!("/devices/{id}")).await?;
    ensure!(
        page.contains("agent 0.1.0 (protocol 1)"),
        "the console's device page does not show protocol 1"
    );

    // A signed job reaches it in version 1; its answer is stored and
    // acknowledged in version 1.
    let (job, _) = s.submit(&id, "for-the-old-agent", &[]).await?;
    let delivered = match old.next_work().await? {
        ServerMessage::Job(job) => job,
        other => bail!("expected the job, got {other:?}"),
    };
    let limits = bulwark_policy::Limits::default();
    let signed = Signed::from_bytes(&delivered.envelope, &limits)
        .map_err(|r| anyhow::anyhow!("the envelope: {r:?}"))?;
    let statement: JobStatement = signed
        .statement(&limits)
        .map_err(|r| anyhow::anyhow!("the statement: {r:?}"))?;
    ensure!(hex::encode(statement.job_id) == job, "another job arrived");
    // Cancelled while it "runs" there (RFD 0012): a version 1 session has
    // no cancel message, so none is sent (sending one would have ended the
    // connection); the old agent's answer is still stored as it came.
    s.cli(&["job", "cancel", &job, "--reason", "old agent"], None)
        .await?
        .ok()?;
    let view = s.job_view(&job).await?;
    ensure!(
        bulwark_e2e::target_of(&view, &id)?.protocol_version == Some(V1),
        "{view:?}"
    );
    old.send(&AgentMessage::JobResult(JobResult {
        job_id: statement.job_id,
        outcome: JobOutcome::Refused(JobRefused {
            code: AgentRefusalCode::JobsDisabled,
            reason: "this version 1 stand-in runs no jobs".into(),
            log_size: None,
        }),
    }))
    .await?;
    match old.next_work().await? {
        ServerMessage::ResultAck(ack) => ensure!(ack.job_id == statement.job_id, "{ack:?}"),
        other => bail!("expected the result's ack, got {other:?}"),
    }
    let target = s.wait_final(&job, &id).await?;
    ensure!(
        target.state == "refused" && target.refusal_code.as_deref() == Some("jobs_disabled"),
        "the old agent's answer as stored: {target:?}"
    );

    // version-switch-mid-session: a version 2 frame on its version 1
    // connection is refused (in version 1, which it reads) and ends it.
    old.send_in(
        PROTOCOL_VERSION,
        &AgentMessage::Heartbeat(Heartbeat { seq: 3 }),
    )
    .await?;
    match old.next_work().await? {
        ServerMessage::Refused(r) => ensure!(
            r.code == RefusalCode::UnsupportedVersion && r.message.contains("negotiated version 1"),
            "{r:?}"
        ),
        other => bail!("expected a refusal, got {other:?}"),
    }
    ensure!(old.closed().await, "the connection stays open");
    wait_for(OPERATOR_WAIT, "the old agent to be offline", async || {
        Ok((!s.api.device(&id).await?.online).then_some(()))
    })
    .await?;
    // The current agent did not notice any of it.
    let local = s.api.device(&s.local).await?;
    ensure!(
        local.online && local.protocol_version == Some(PROTOCOL_VERSION),
        "{local:?}"
    );
    Ok(())
}
