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
use bulwark_api::account::SetupResponse;
use bulwark_api::operators::InvitationCreated;
use bulwark_api::shells::{ShellGrantView, ShellSessionView};
use bulwark_e2e::operator::{OperatorSetup, sql_text};
use bulwark_e2e::{Owner, bulwark_bin, wait_for};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

const PASSPHRASE: &str = "remote shell e2e passphrase";
const WAIT: Duration = Duration::from_secs(30);

/// Is there a `bulwark-shell` account (made here when this test may)?
fn shell_account_ready() -> bool {
    let has = || {
        std::fs::read_to_string("/etc/passwd")
            .is_ok_and(|p| p.lines().any(|l| l.starts_with("bulwark-shell:")))
    };
    if has() {
        return true;
    }
    let _ = std::process::Command::new("useradd")
        .args([
            "--system",
            "--create-home",
            "--shell",
            "/bin/sh",
            "bulwark-shell",
        ])
        .status();
    has()
}

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
    ensure!(grant.state == "pending", "one signature approved: {grant:?}");
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
    ensure!(!own.success(), "the grantee approved their own grant: {own:?}");

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
    let no_grant = s.cli_in(&tech, &["shell", &device], Some("id\n")).await?;
    ensure!(
        !no_grant.success() && no_grant.stderr.contains("no approved grant"),
        "{no_grant:?}"
    );
    ensure!(sessions(&s, &device).await?.is_empty(), "a session was opened");

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
    ensure!(
        text.starts_with("{\"version\":2") && text.contains("hello"),
        "not an asciicast of the session: {text}"
    );
    let logged = s.api.audit("demo").await?;
    ensure!(
        logged
            .iter()
            .any(|e| e.action == "shell.session" && e.target == session.id && e.detail.contains(&digest)),
        "no shell.session entry with the digest in the log"
    );
    // A recording changed in storage is refused, by the server and the CLI.
    s.sql(&format!(
        "UPDATE shell_recording_pieces SET data = CAST('{{}}' AS BLOB) WHERE session_id = {}",
        sql_text(&session.id)
    ))?;
    let changed = s
        .cli(&["shell", "recording", &session.id], None)
        .await?;
    ensure!(!changed.success(), "a changed recording was served: {changed:?}");

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
        !edited_run.success() && edited_run.stderr.contains("does not verify"),
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
        ensure!(reply.status == 404, "{path} as another tenant's operator: {reply:?}");
    }
    let revoke = as_stranger
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/shell-grants/{}/revoke", grant.id),
            Some(&json!({ "reason": "not mine" })),
        )
        .await?;
    ensure!(revoke.status == 404, "{revoke:?}");
    ensure!(sessions(&s, &device).await?.is_empty(), "a session was opened");
    Ok(())
}
