//! Remote shells end to end (RFD 0015): the real server of `bulwark up`, its
//! real agent, and the real CLI of two people (the owner, who asks, and a
//! technician with a key of their own, who approves).
//!
//! The grantee's `bulwark shell` and the agent run the shell's channel end
//! to end; the server relays sealed frames. The attacks play an owned
//! server: its database edited (the grant's envelope, the device's key),
//! an operator with no grant, another tenant's operator, and a revoke that
//! must end a live shell within a second.
//!
//! The agent runs unprivileged shells as `bulwark-shell`; `bulwark-agent
//! install` makes that account, and the test makes it the same way
//! (`useradd --system`) when it runs as root and the account is missing.
//! Run as another user, the identity line is not checked (the agent then
//! cannot switch accounts and refuses; the test says so and stops there).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bulwark_api::operators::InvitationCreated;
use bulwark_api::setup::SetupResponse;
use bulwark_api::shells::{ShellGrantView, ShellSessionView};
use bulwark_e2e::{OperatorSetup, sql_text};
use bulwark_e2e::{Owner, bulwark_bin, shell_account_ready, wait_for};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

const PASSPHRASE: &str = "remote shell e2e passphrase";
const WAIT: Duration = Duration::from_secs(30);

/// A technician of demo, `tech`, signed in with the CLI in its own
/// configuration directory, its key `tech` listed in demo's policy.
async fn listed_technician(s: &OperatorSetup) -> Result<PathBuf> {
    let password = "technician password, long enough";
    let invite: InvitationCreated = s
        .api
        .post_as(
            "/api/v1/invitations",
            &json!({ "username": "tech", "role": "technician", "tenants": ["demo"] }),
        )
        .await?;
    let redeemed: SetupResponse = s
        .api
        .post_as(
            "/api/v1/invitations/redeem",
            &json!({ "token": invite.token, "password": password }),
        )
        .await?;
    let tech = Owner::new("tech", password, &redeemed.totp_secret);
    s.api
        .post_json(
            "/api/v1/invitations/confirm",
            &json!({ "enrolment_id": redeemed.enrolment_id, "otp": tech.next_otp().await? }),
        )
        .await?;
    let config = s.work.path().join("tech-config");
    std::fs::create_dir_all(&config)?;
    let otp = tech.next_otp().await?;
    let server = s.up.info.console_url.clone();
    s.cli_in(
        &config,
        &[
            "login",
            "--server",
            &server,
            "--username",
            "tech",
            "--password-stdin",
            "--otp",
            &otp,
        ],
        Some(&format!("{password}\n")),
    )
    .await?
    .ok()?;
    for args in [["keys", "new"], ["keys", "register"]] {
        s.cli_in(&config, &[args[0], args[1], "--name", "tech"], None)
            .await?
            .ok()?;
    }
    let public = s
        .cli_in(&config, &["keys", "export", "--name", "tech"], None)
        .await?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    s.cli(
        &[
            "policy",
            "add-operator",
            "--tenant",
            "demo",
            "--public-key",
            &public,
            "--name",
            "tech",
        ],
        None,
    )
    .await?
    .ok()?;
    Ok(config)
}

/// Plain shells need two signers from the next policy version on.
async fn shells_need_two(s: &OperatorSetup) -> Result<()> {
    let toml = s
        .cli(&["policy", "show", "--tenant", "demo", "--toml"], None)
        .await?
        .ok()?
        .stdout;
    let mut out = String::new();
    let mut section = false;
    let mut changed = false;
    for line in toml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.contains("\"open-shell\"") || trimmed.ends_with(".open-shell]");
        }
        if section && trimmed.starts_with("signers") {
            out.push_str("signers = 2\n");
            changed = true;
            continue;
        }
        if (trimmed.starts_with("open-shell") || trimmed.starts_with("\"open-shell\""))
            && trimmed.contains("signers = 1")
        {
            out.push_str(&line.replacen("signers = 1", "signers = 2", 1));
            out.push('\n');
            changed = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    ensure!(changed, "no open-shell quorum in the policy TOML:\n{toml}");
    let file = s.work.path().join("shell-policy.toml");
    std::fs::write(&file, out)?;
    s.cli(
        &[
            "policy",
            "sign",
            "--tenant",
            "demo",
            "--file",
            &file.display().to_string(),
        ],
        None,
    )
    .await?
    .ok()?;
    Ok(())
}

async fn request(s: &OperatorSetup, device: &str, reason: &str) -> Result<ShellGrantView> {
    s.cli_as(&[
        "shell", "request", device, "--tenant", "demo", "--reason", reason, "--for", "30m",
        "--json",
    ])
    .await
}

async fn sessions(s: &OperatorSetup, device: &str) -> Result<Vec<ShellSessionView>> {
    s.api
        .get_as(&format!("/api/v1/devices/{device}/shell-sessions"))
        .await
}

/// `bulwark shell DEVICE --grant G` in the background, its stdin held open.
fn shell_in_background(config: &Path, device: &str, grant: &str) -> Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(bulwark_bin()?);
    command
        .args(["shell", device, "--grant", grant])
        .env("BULWARK_CONFIG_DIR", config)
        .env("BULWARK_KEY_PASSPHRASE", PASSPHRASE)
        .env("NO_COLOR", "1")
        .env_remove("BULWARK_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(command.spawn()?)
}

#[tokio::test]
async fn an_approved_shell_runs_is_recorded_and_ends_when_revoked() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let account = shell_account_ready();
    let device = s.local.clone();
    let tech = listed_technician(&s).await?;
    shells_need_two(&s).await?;

    // The owner asks; alone it is not enough, and `bulwark shell` says so
    // with the agent's own check before anything is sent.
    let grant = request(&s, &device, "disk full on /var").await?;
    ensure!(
        grant.state == "pending",
        "one signature approved: {grant:?}"
    );
    let early = s
        .cli(&["shell", &device, "--grant", &grant.id], Some("id\n"))
        .await?;
    ensure!(
        !early.success() && early.stderr.contains("does not verify"),
        "a pending grant opened a shell: {early:?}"
    );
    // The requester cannot approve their own grant.
    let own = s
        .cli(&["shell", "approve", &grant.id, "--yes"], None)
        .await?;
    ensure!(
        !own.success(),
        "the grantee approved their own grant: {own:?}"
    );

    // The technician approves on their own machine.
    let approved = s
        .cli_in(
            &tech,
            &["shell", "approve", &grant.id, "--key", "tech", "--yes"],
            None,
        )
        .await?
        .ok()?;
    ensure!(approved.stdout.contains("approved"), "{approved:?}");

    // An operator without a grant of theirs gets nothing.
    let no_grant = s
        .cli_in(&tech, &["shell", &device, "--key", "tech"], Some("id\n"))
        .await?;
    ensure!(
        !no_grant.success() && no_grant.stderr.contains("no approved grant"),
        "{no_grant:?}"
    );
    ensure!(
        sessions(&s, &device).await?.is_empty(),
        "a session was opened"
    );

    if !account {
        eprintln!(
            "SKIPPED the shell itself: no bulwark-shell account and this test cannot make one (not root)"
        );
        return Ok(());
    }

    // The shell: what was typed runs as the unprivileged account.
    let started = Instant::now();
    let shell = s
        .cli(
            &["shell", &device, "--grant", &grant.id],
            Some("echo hello; id -un\nexit\n"),
        )
        .await?
        .ok()?;
    eprintln!("shell round trip: {:?}", started.elapsed());
    ensure!(
        shell.stdout.contains("hello") && shell.stdout.contains("bulwark-shell"),
        "the shell's output: {shell:?}"
    );

    // Its recording: stored whole, its digest the one in the tenant's log.
    let session = wait_for(WAIT, "the session's recording", async || {
        Ok(sessions(&s, &device)
            .await?
            .into_iter()
            .find(|x| x.recording_len.is_some_and(|len| len == x.stored_len)))
    })
    .await?;
    let file = s.work.path().join("session.cast");
    s.cli(
        &[
            "shell",
            "recording",
            &session.id,
            "--output",
            &file.display().to_string(),
        ],
        None,
    )
    .await?
    .ok()?;
    let cast = std::fs::read(&file)?;
    let digest = hex::encode(Sha256::digest(&cast));
    ensure!(Some(&digest) == session.recording_sha256.as_ref());
    let text = String::from_utf8_lossy(&cast);
    let header: serde_json::Value = text
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    ensure!(
        header["version"] == 2 && text.contains("hello"),
        "not an asciicast of the session: {text}"
    );
    let logged = s.api.audit("demo").await?;
    ensure!(
        logged.iter().any(|e| e.action == "shell.session"
            && e.target == session.id
            && e.detail.contains(&digest)),
        "no shell.session entry with the digest in the log"
    );
    // A recording changed in storage is refused, by the server and the CLI.
    s.sql(&format!(
        "UPDATE shell_recording_pieces SET data = CAST('{{}}' AS BLOB) WHERE session_id = {}",
        sql_text(&session.id)
    ))?;
    let changed = s.cli(&["shell", "recording", &session.id], None).await?;
    ensure!(
        !changed.success(),
        "a changed recording was served: {changed:?}"
    );
    // An owned server that rewrites the bytes and the row's digest alike
    // gets past its own check, not the CLI's: the digest the CLI holds the
    // recording to comes from the session's entry in the signed log.
    let fake = "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"all is well\"]\n";
    let fake_digest = hex::encode(Sha256::digest(fake.as_bytes()));
    let id = sql_text(&session.id);
    s.sql(&format!(
        "DELETE FROM shell_recording_pieces WHERE session_id = {id}; \
         INSERT INTO shell_recording_pieces (session_id, \"offset\", data) \
         VALUES ({id}, 0, CAST({} AS BLOB)); \
         UPDATE shell_sessions SET recording_sha256 = '{fake_digest}', recording_len = {len}, \
         recording_stored = {len} WHERE id = {id}",
        sql_text(fake),
        len = fake.len()
    ))?;
    let served = s
        .api
        .request(
            bulwark_e2e::Method::GET,
            &format!("/api/v1/shell-sessions/{}/recording", session.id),
        )
        .send()
        .await?;
    ensure!(
        served.status() == 200 && served.text().await?.contains("all is well"),
        "the rewritten recording did not get past the server's own check"
    );
    let rewritten = s.cli(&["shell", "recording", &session.id], None).await?;
    ensure!(
        !rewritten.success()
            && rewritten.stderr.contains("in the tenant's")
            && !rewritten.stdout.contains("all is well"),
        "a recording the server rewrote with its row was accepted: {rewritten:?}"
    );

    // Revoked while live: the relay and the agent end it within a second.
    let mut live = shell_in_background(&s.config, &device, &grant.id)?;
    let mut stdin = live.stdin.take().context("stdin")?;
    stdin.write_all(b"echo started\n").await?;
    wait_for(WAIT, "the live session", async || {
        Ok(sessions(&s, &device)
            .await?
            .into_iter()
            .find(|x| x.closed_at.is_none()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let revoked_at = Instant::now();
    s.cli(&["shell", "revoke", &grant.id, "--reason", "done"], None)
        .await?
        .ok()?;
    let ended = tokio::time::timeout(Duration::from_secs(5), live.wait()).await;
    let took = revoked_at.elapsed();
    ensure!(ended.is_ok(), "the live shell outlived its revoke by 5 s");
    eprintln!("revoke to end of the live shell: {took:?}");
    ensure!(
        took < Duration::from_millis(1500),
        "the revoke took {took:?} to end the shell (the CLI's own round trip included)"
    );
    drop(stdin);
    let refused = s
        .cli(&["shell", &device, "--grant", &grant.id], Some("id\n"))
        .await?;
    ensure!(!refused.success(), "a revoked grant opened a shell");
    Ok(())
}

#[tokio::test]
async fn an_owned_server_cannot_open_or_read_a_shell() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let device = s.local.clone();
    let tech = listed_technician(&s).await?;
    shells_need_two(&s).await?;
    let grant = request(&s, &device, "edited later").await?;
    s.cli_in(
        &tech,
        &["shell", "approve", &grant.id, "--key", "tech", "--yes"],
        None,
    )
    .await?
    .ok()?;

    // The device's key swapped in the database: the answer key the server
    // would vouch for is not the one the grant's signers named.
    let key = s.sql(&format!(
        "SELECT hex(public_key) FROM devices WHERE id = {}",
        sql_text(&device)
    ))?;
    let forged = hex::encode(rand::random::<[u8; 32]>());
    s.sql(&format!(
        "UPDATE devices SET public_key = X'{forged}' WHERE id = {}",
        sql_text(&device)
    ))?;
    let swapped = s
        .cli(&["shell", &device, "--grant", &grant.id], Some("id\n"))
        .await?;
    ensure!(
        !swapped.success() && swapped.stderr.contains("does not match the key"),
        "a swapped device key was accepted: {swapped:?}"
    );
    s.sql(&format!(
        "UPDATE devices SET public_key = X'{}' WHERE id = {}",
        key.trim(),
        sql_text(&device)
    ))?;

    // The grant's envelope edited (root instead of the plain account, a
    // day instead of 30 minutes): its signatures no longer verify.
    let envelope = s.sql(&format!(
        "SELECT hex(envelope) FROM shell_grants WHERE id = {}",
        sql_text(&grant.id)
    ))?;
    let mut signed = bulwark_policy::Signed::from_bytes(
        &hex::decode(envelope.trim())?,
        &bulwark_policy::Limits::default(),
    )?;
    let mut statement: bulwark_policy::shell::ShellGrant =
        signed.statement(&bulwark_policy::Limits::default())?;
    statement.account = bulwark_policy::shell::ShellAccount::Root;
    statement.expires_at += 24 * 3600;
    let signatures = std::mem::take(&mut signed.signatures);
    let mut edited = bulwark_policy::Signed::new(&statement);
    edited.signatures = signatures;
    s.sql(&format!(
        "UPDATE shell_grants SET envelope = X'{}', account = 'root' WHERE id = {}",
        hex::encode(edited.to_bytes()),
        sql_text(&grant.id)
    ))?;
    let edited_run = s
        .cli(&["shell", &device, "--grant", &grant.id], Some("id\n"))
        .await?;
    ensure!(
        !edited_run.success()
            && (edited_run.stderr.contains("does not verify")
                || edited_run.stderr.contains("not valid")),
        "an edited grant opened a shell: {edited_run:?}"
    );

    // Another tenant's operator sees no grant (the same 404 as none).
    let foreign = s
        .api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/shell-grants/{}", "0".repeat(32)),
            None,
        )
        .await?;
    ensure!(foreign.status == 404, "{foreign:?}");
    let other_tenant = s
        .api
        .post_json("/api/v1/tenants", &json!({ "name": "other" }))
        .await?;
    ensure!(other_tenant["name"] == "other");
    let invite: InvitationCreated = s
        .api
        .post_as(
            "/api/v1/invitations",
            &json!({ "username": "stranger", "role": "technician", "tenants": ["other"] }),
        )
        .await?;
    let password = "stranger password, long enough";
    let redeemed: SetupResponse = s
        .api
        .post_as(
            "/api/v1/invitations/redeem",
            &json!({ "token": invite.token, "password": password }),
        )
        .await?;
    let stranger = Owner::new("stranger", password, &redeemed.totp_secret);
    s.api
        .post_json(
            "/api/v1/invitations/confirm",
            &json!({ "enrolment_id": redeemed.enrolment_id, "otp": stranger.next_otp().await? }),
        )
        .await?;
    let token = s.api.login(&stranger).await?;
    let as_stranger = s.api.with_token(&token);
    for path in [
        format!("/api/v1/shell-grants/{}", grant.id),
        format!("/api/v1/shell-grants/{}/connect", grant.id),
        format!("/api/v1/devices/{device}/shell-sessions"),
    ] {
        let reply = as_stranger.call(reqwest::Method::GET, &path, None).await?;
        ensure!(
            reply.status == 404,
            "{path} as another tenant's operator: {reply:?}"
        );
    }
    let revoke = as_stranger
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/shell-grants/{}/revoke", grant.id),
            Some(&json!({ "reason": "not mine" })),
        )
        .await?;
    ensure!(revoke.status == 404, "{revoke:?}");
    ensure!(
        sessions(&s, &device).await?.is_empty(),
        "a session was opened"
    );
    Ok(())
}

/// What the device answered a session-open the test sent itself.
enum Answer {
    /// The shell is open: the channel and the socket.
    Opened(
        Box<bulwark_policy::shell::channel::Channel>,
        Box<RawSocket>,
        [u8; 16],
    ),
    /// The agent refused: its refusal code and reason.
    Refused(String),
    /// The server ended the connection before the agent answered.
    ServerEnded(String),
}

type RawSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A grantee's key of the test's own, listed in demo's policy for every
/// class and registered to the owner's account (so the owner may ask with it).
async fn grantee_key(s: &OperatorSetup, name: &str) -> Result<ed25519_dalek::SigningKey> {
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public = hex::encode(key.verifying_key().to_bytes());
    s.cli(
        &[
            "policy",
            "add-operator",
            "--tenant",
            "demo",
            "--public-key",
            &public,
            "--name",
            name,
        ],
        None,
    )
    .await?
    .ok()?;
    let _: serde_json::Value = s
        .api
        .post_as(
            "/api/v1/signing-keys",
            &json!({ "name": name, "public_key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.verifying_key().to_bytes()) }),
        )
        .await?;
    Ok(key)
}

fn key_id(key: &ed25519_dalek::SigningKey) -> bulwark_policy::KeyId {
    bulwark_policy::PublicKey::Ed25519(key.verifying_key().to_bytes()).id()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The device's public key as the database holds it.
fn device_public_key(s: &OperatorSetup, device: &str) -> Result<[u8; 32]> {
    let hex_key = s.sql(&format!(
        "SELECT hex(public_key) FROM devices WHERE id = {}",
        sql_text(device)
    ))?;
    <[u8; 32]>::try_from(hex::decode(hex_key.trim())?.as_slice()).context("a 32-byte device key")
}

/// A grant statement for demo's `device`, naming `grantee`.
async fn grant_statement(
    s: &OperatorSetup,
    device: &str,
    grantee: &ed25519_dalek::SigningKey,
    account: bulwark_policy::shell::ShellAccount,
) -> Result<bulwark_policy::shell::ShellGrant> {
    let view = s.api.device(device).await?;
    let tenant = s
        .api
        .tenants()
        .await?
        .into_iter()
        .find(|t| t.name == "demo")
        .context("no demo tenant")?;
    let now = now_secs();
    Ok(bulwark_policy::shell::ShellGrant {
        tenant: tenant.id,
        tenant_name: "demo".to_owned(),
        grant_id: rand::random(),
        device: bulwark_policy::JobTarget {
            device_id: device.to_owned(),
            hostname: view.hostname,
            device_key: Some(Sha256::digest(device_public_key(s, device)?).into()),
        },
        grantee: key_id(grantee),
        account,
        reason: "e2e".to_owned(),
        not_before: now - 60,
        expires_at: now + 1800,
        nonce: rand::random(),
    })
}

/// Stores a grant signed by `signers` through the API, as `bulwark shell
/// request` does.
async fn store_grant(
    s: &OperatorSetup,
    grant: &bulwark_policy::shell::ShellGrant,
    signers: &[&ed25519_dalek::SigningKey],
) -> Result<ShellGrantView> {
    let mut signed = bulwark_policy::Signed::new(grant);
    for key in signers {
        signed.sign(key);
    }
    s.api
        .post_as(
            "/api/v1/tenants/demo/shell-grants",
            &json!({ "envelope": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signed.to_bytes()) }),
        )
        .await
}

/// Opens a session the way `bulwark shell` does, but sends `grant_bytes`
/// as they are (no check of its own: what reaches the agent is what an
/// owned relay would put in the frame), the session-open signed by `key`.
async fn raw_open(
    s: &OperatorSetup,
    grant_id: &str,
    grant_bytes: Vec<u8>,
    key: &ed25519_dalek::SigningKey,
    device: &str,
) -> Result<Answer> {
    use bulwark_policy::shell::channel::{Ephemeral, Side, establish};
    use bulwark_protocol::message::{AgentMessage, ServerMessage, ShellOpen};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let device_key = device_public_key(s, device)?;
    let ephemeral = Ephemeral::generate(&ring::rand::SystemRandom::new())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let session_id: [u8; 16] = rand::random();
    let grant_id_bytes: [u8; 16] = hex::decode(grant_id)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("grant id"))?;
    let mut open = bulwark_policy::Signed::new(&bulwark_policy::shell::SessionOpen {
        grant_id: grant_id_bytes,
        device_id: device.to_owned(),
        session_id,
        client_ephemeral: ephemeral.public(),
        nonce: rand::random(),
        time: now_secs(),
        cols: 80,
        rows: 24,
    });
    open.sign(key);

    let base = s.up.base_url();
    let authority = base
        .strip_prefix("http://")
        .context("the console is plain http in tests")?
        .trim_end_matches('/')
        .to_owned();
    let mut request =
        format!("ws://{authority}/api/v1/shell-grants/{grant_id}/connect").into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", s.api.token().context("a token")?).parse()?,
    );
    let address = authority.replace("localhost", "127.0.0.1");
    let tcp = tokio::net::TcpStream::connect(&address).await?;
    let (mut socket, _) = tokio_tungstenite::client_async(request, tcp).await?;
    let first = bulwark_protocol::encode_server_frame(
        bulwark_protocol::PROTOCOL_VERSION,
        &ServerMessage::ShellOpen(ShellOpen {
            session_id,
            grant: grant_bytes,
            open: open.to_bytes(),
        }),
    )?;
    socket.send(Message::Binary(first.into())).await?;
    let limits = bulwark_protocol::Limits::default();
    loop {
        let next = tokio::time::timeout(WAIT, socket.next())
            .await
            .context("no answer within 30 s")?;
        match next {
            Some(Ok(Message::Binary(bytes))) => {
                match bulwark_protocol::decode_agent_frame(&bytes, &limits)?.message {
                    AgentMessage::ShellOpened(opened) => {
                        let answer = bulwark_policy::Signed::from_bytes(
                            &opened.answer,
                            &bulwark_policy::Limits::default(),
                        )?;
                        let answered = bulwark_policy::shell::verify_answer(
                            &answer,
                            &open,
                            &device_key,
                            &bulwark_policy::Limits::default(),
                        )?;
                        let channel = establish(
                            Side::Client,
                            ephemeral,
                            &answered.agent_ephemeral,
                            &open,
                            &answer,
                        )
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                        return Ok(Answer::Opened(
                            Box::new(channel),
                            Box::new(socket),
                            session_id,
                        ));
                    }
                    AgentMessage::ShellClosed(closed) => {
                        return Ok(Answer::Refused(format!(
                            "{}: {}",
                            closed.refusal.map_or("none".into(), |c| c.to_string()),
                            closed.reason
                        )));
                    }
                    other => anyhow::bail!("an unexpected frame: {other:?}"),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Ok(Answer::ServerEnded(
                    frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Ok(Answer::ServerEnded(e.to_string())),
            None => return Ok(Answer::ServerEnded("closed".into())),
        }
    }
}

/// Types `input` into an open session and reads until `until` shows up;
/// the time it took.
async fn type_and_read(
    channel: &mut bulwark_policy::shell::channel::Channel,
    socket: &mut RawSocket,
    session_id: [u8; 16],
    input: &[u8],
    until: &[u8],
) -> Result<(Duration, usize)> {
    use bulwark_policy::shell::channel::{ShellInput, ShellOutput};
    use bulwark_protocol::message::{AgentMessage, ServerMessage, ShellData};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let limits = bulwark_protocol::Limits::default();
    let sealed = channel
        .seal(&ShellInput::Data(input.to_vec()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let frame = bulwark_protocol::encode_server_frame(
        bulwark_protocol::PROTOCOL_VERSION,
        &ServerMessage::ShellData(ShellData { session_id, sealed }),
    )?;
    let started = Instant::now();
    socket.send(Message::Binary(frame.into())).await?;
    let mut seen: Vec<u8> = Vec::new();
    let mut total = 0;
    loop {
        let next = tokio::time::timeout(WAIT, socket.next())
            .await
            .with_context(|| {
                format!(
                    "no {:?} within 30 s; saw {:?}",
                    String::from_utf8_lossy(until),
                    String::from_utf8_lossy(&seen)
                )
            })?;
        let Some(Ok(Message::Binary(bytes))) = next else {
            anyhow::bail!("the session ended: {next:?}");
        };
        if let AgentMessage::ShellData(data) =
            bulwark_protocol::decode_agent_frame(&bytes, &limits)?.message
        {
            match channel.open::<ShellOutput>(&data.sealed) {
                Ok(ShellOutput::Data(out)) => {
                    total += out.len();
                    seen.extend_from_slice(&out);
                    if seen.windows(until.len()).any(|w| w == until) {
                        return Ok((started.elapsed(), total));
                    }
                    // Keep the tail only: enough to find `until` across frames.
                    if seen.len() > 4096 {
                        seen.drain(..seen.len() - 1024);
                    }
                }
                Ok(ShellOutput::Ended { reason, .. }) => anyhow::bail!("the shell ended: {reason}"),
                Err(e) => anyhow::bail!("a frame failed the channel: {e}"),
            }
        }
    }
}

/// The agent's own checks, with the grant's bytes put in the frame as an
/// owned server would: edited in the database (stretched, another
/// grantee, root instead of the plain account), and a root grant with the
/// grantee's signature alone. The same client with the genuine grant
/// opens a shell (so each refusal is the agent's, not the harness's); that
/// session also gives the figures: keystroke round trip, output
/// throughput through the relay, the agent's memory with a shell open.
#[tokio::test]
async fn the_agent_refuses_grants_an_owned_server_edited() -> Result<()> {
    use bulwark_policy::shell::{ShellAccount, ShellGrant};
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let account = shell_account_ready();
    let device = s.local.clone();
    let alice = grantee_key(&s, "alice-laptop").await?;
    let mallory = grantee_key(&s, "mallory-laptop").await?;

    let statement = grant_statement(&s, &device, &alice, ShellAccount::Unprivileged).await?;
    let view = store_grant(&s, &statement, &[&alice]).await?;
    ensure!(
        view.state == "approved",
        "one signer is the default quorum: {view:?}"
    );
    let genuine =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &view.envelope)?;
    let signed = bulwark_policy::Signed::from_bytes(&genuine, &bulwark_policy::Limits::default())?;

    // The envelope edited in the database, its signatures kept.
    let edited = |edit: &dyn Fn(&mut ShellGrant)| -> Result<Vec<u8>> {
        let mut grant: ShellGrant = signed.statement(&bulwark_policy::Limits::default())?;
        edit(&mut grant);
        let mut forged = bulwark_policy::Signed::new(&grant);
        forged.signatures = signed.signatures.clone();
        Ok(forged.to_bytes())
    };
    let store_and_read = |bytes: Vec<u8>| {
        let s = &s;
        let id = view.id.clone();
        async move {
            s.sql(&format!(
                "UPDATE shell_grants SET envelope = X'{}' WHERE id = {}",
                hex::encode(bytes),
                sql_text(&id)
            ))?;
            let stored: ShellGrantView =
                s.api.get_as(&format!("/api/v1/shell-grants/{id}")).await?;
            anyhow::Ok(base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                &stored.envelope,
            )?)
        }
    };
    let stretched = store_and_read(edited(&|g| g.expires_at += 4 * 3600)?).await?;
    let other_grantee = edited(&|g| g.grantee = key_id(&mallory))?;
    let as_root = edited(&|g| g.account = ShellAccount::Root)?;
    for (what, bytes, key) in [
        ("stretched by four hours", stretched, &alice),
        ("with another grantee", other_grantee, &mallory),
        ("as root", as_root, &alice),
    ] {
        match raw_open(&s, &view.id, bytes, key, &device).await? {
            Answer::Refused(reason) => eprintln!("the agent refused the grant {what}: {reason}"),
            Answer::Opened(..) => anyhow::bail!("the agent opened a shell under the grant {what}"),
            Answer::ServerEnded(reason) => {
                anyhow::bail!("the relay ended the grant {what} before the agent saw it: {reason}")
            }
        }
    }
    store_and_read(genuine.clone()).await?;

    // A root grant with the grantee's signature only: the admin quorum
    // (two signers, one not the grantee) is not met.
    let root = grant_statement(&s, &device, &alice, ShellAccount::Root).await?;
    let root_view = store_grant(&s, &root, &[&alice]).await?;
    ensure!(root_view.state == "pending", "{root_view:?}");
    let root_bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &root_view.envelope,
    )?;
    match raw_open(&s, &root_view.id, root_bytes, &alice, &device).await? {
        Answer::Refused(reason) => {
            eprintln!("the agent refused a root shell on one signature: {reason}")
        }
        Answer::Opened(..) => anyhow::bail!("a root shell opened on the grantee's signature alone"),
        Answer::ServerEnded(reason) => anyhow::bail!("the relay ended it first: {reason}"),
    }

    if !account {
        eprintln!(
            "SKIPPED the genuine shell: no bulwark-shell account and this test cannot make one"
        );
        return Ok(());
    }
    // The genuine grant, the same client: a shell.
    let Answer::Opened(mut channel, mut socket, session_id) =
        raw_open(&s, &view.id, genuine, &alice, &device).await?
    else {
        anyhow::bail!("the genuine grant did not open a shell");
    };
    type_and_read(
        &mut channel,
        &mut socket,
        session_id,
        b"stty -echo; echo rea''dy\n",
        b"ready",
    )
    .await?;
    // Keystroke round trip: one byte typed to `cat`, its echo back.
    type_and_read(&mut channel, &mut socket, session_id, b"cat\nz\n", b"z").await?;
    let mut trips = Vec::new();
    for i in 0..20u8 {
        let c = b'a' + i;
        let (took, _) =
            type_and_read(&mut channel, &mut socket, session_id, &[c, b'\n'], &[c]).await?;
        trips.push(took);
    }
    trips.sort();
    eprintln!(
        "FIGURE keystroke round trip through the relay: median {:?}, max {:?} (20 keystrokes)",
        trips[trips.len() / 2],
        trips[trips.len() - 1]
    );
    type_and_read(&mut channel, &mut socket, session_id, &[0x03], b"$")
        .await
        .ok();
    // Agent memory with the shell open.
    let rss = agent_rss_kib(s.up.info.pid);
    eprintln!("FIGURE agent RSS with a shell open: {rss}");
    // Output throughput: 3 MiB base64-encoded by the shell, through the relay
    // (full 16 KiB reads: before the agent left room for the CBOR around
    // them, such a read could not be sealed and ended the session).
    let (took, bytes) = type_and_read(
        &mut channel,
        &mut socket,
        session_id,
        b"head -c 3145728 /dev/zero | base64 -w 1000; echo don''e\n",
        b"done",
    )
    .await?;
    eprintln!(
        "FIGURE output throughput through the relay: {bytes} bytes in {took:?} = {:.1} MiB/s",
        bytes as f64 / took.as_secs_f64() / 1048576.0
    );
    eprintln!(
        "FIGURE agent RSS after that output: {}",
        agent_rss_kib(s.up.info.pid)
    );
    Ok(())
}

/// The resident memory (VmRSS) of the `bulwark-agent` that `bulwark up`
/// (process `parent`) runs.
fn agent_rss_kib(parent: u64) -> String {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        if !first.ends_with(b"bulwark-agent") {
            continue;
        }
        if let Ok(status) = std::fs::read_to_string(entry.path().join("status")) {
            let ppid = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|p| p.trim().parse::<u64>().ok());
            if ppid != Some(parent) {
                continue;
            }
            if let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) {
                found.push(format!(
                    "pid {} {}",
                    entry.file_name().to_string_lossy(),
                    line.trim_start_matches("VmRSS:").trim()
                ));
            }
        }
    }
    if found.is_empty() {
        "no bulwark-agent process found".to_owned()
    } else {
        found.join(", ")
    }
}
